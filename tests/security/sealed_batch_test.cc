// A receive batch of sealed frames, fed to a node directly (no simulator): every frame is opened
// into its own part of the core's batch buffer and the entries of the whole batch merge
// together, across the buffer's wrap, with frames that fail to open mixed in. On one core and on
// each core of a two-core node.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"
#include "rumor/node.h"
#include "tests/support/discard_sink.h"
#include "tests/support/test_keys.h"

namespace rumor {
namespace {

constexpr NodeId kSender = 0x5e4d;

class SealedBatch : public ::testing::TestWithParam<std::uint32_t> {};
INSTANTIATE_TEST_SUITE_P(Owners, SealedBatch, ::testing::Values(1u, 2u));

TEST_P(SealedBatch, EveryEntryOfABatchOfSealedFramesMerges) {
  const std::uint32_t cores = GetParam();
  ManualTimeSource time{1'764'000'000'000};
  testing::DiscardSink sink;
  NodeConfig cfg = NodeConfig::local();
  cfg.name = "target";
  cfg.advertise = Address::ipv4(0x7f000001, 7000);
  cfg.store.owners = cores;
  cfg.keys = {testing::test_key_a()};
  cfg.encryption = EncryptionMode::kRequire;
  cfg.peer_bytes_per_s_max = UINT32_MAX;
  auto node = std::move(Node::create(cfg, time)).value();
  NodeDriver& drv = NodeDriver::of(*node);
  for (std::uint32_t c = 0; c < cores; ++c) drv.start(c, sink);

  crypto::FrameCrypto tx(cfg.cluster_label, cfg.datagram_bytes_max, 16);
  ASSERT_TRUE(tx.keyring().install(testing::test_key_a()).is_ok());
  ASSERT_TRUE(tx.set_mode(EncryptionMode::kRequire).is_ok());
  tx.start(time.now_ms());
  // 300 sealed frames of 10 entries each (~1 KB sealed): several times the batch buffer, so
  // it fills and starts over mid-batch. Every 7th frame is damaged and must be refused alone.
  constexpr int kFrames = 300, kPerFrame = 10;
  std::vector<std::vector<std::byte>> frames;
  int good = 0;
  for (int f = 0; f < kFrames; ++f) {
    std::vector<std::byte> b(cfg.datagram_bytes_max);
    wire::Writer w(std::span<std::byte>(b).first(b.size() - crypto::kSealOverheadBytes));
    // Shard 0 on both configurations: on two cores the entries of core 1's shards are handed
    // over, as a datagram steered wrong would be.
    wire::write_header(w, wire::Header{0, wire::label_hash(cfg.cluster_label), kSender});
    for (int e = 0; e < kPerFrame; ++e) {
      const std::string key = "k" + std::to_string(f * kPerFrame + e);
      const std::string value = "value-of-" + key + std::string(40, '.');
      wire::encode(w, wire::EntryMsg{false, Version{hlc_pack(time.now_ms(), 0), kSender}, key,
                                     value});
    }
    ASSERT_TRUE(w.ok());
    b.resize(tx.seal(b, w.size()));
    if (f % 7 == 3) {
      b[b.size() - 1] ^= std::byte{1};
    } else {
      ++good;
    }
    frames.push_back(std::move(b));
  }
  std::vector<ReceivedDatagram> batch;
  const Address from = Address::ipv4(0x7f000002, 7001);
  for (const auto& f : frames) batch.push_back(ReceivedDatagram{from, f});
  drv.receive(0, batch, sink);
  for (int turn = 0; turn < 10; ++turn) {
    for (std::uint32_t c = 0; c < cores; ++c) drv.tick(c, sink);
  }
  int held = 0;
  for (int f = 0; f < kFrames; ++f) {
    for (int e = 0; e < kPerFrame; ++e) {
      const std::string key = "k" + std::to_string(f * kPerFrame + e);
      const auto got = node->get(key);
      const bool has = got.has_value();
      EXPECT_EQ(has, f % 7 != 3) << "frame " << f << " entry " << e;
      if (has) {
        EXPECT_EQ(*got, "value-of-" + key + std::string(40, '.'));
      }
      held += has ? 1 : 0;
    }
  }
  EXPECT_EQ(held, good * kPerFrame);
  const NodeCounters c = node->counters();
  EXPECT_EQ(c.packets_opened, static_cast<std::uint64_t>(good));
  EXPECT_EQ(c.drop_auth_failed, static_cast<std::uint64_t>(kFrames - good));
}

}  // namespace
}  // namespace rumor
