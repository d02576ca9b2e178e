// One node fed receive batches and ticks directly (no simulator): what a whole batch does, and
// that the node's deadline always moves on.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"
#include "rumor/node.h"

namespace rumor {
namespace {

constexpr std::uint64_t kStartMs = 1'764'000'000'000;
constexpr NodeId kPeer = 42;

struct CountingSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::size_t sent = 0;
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address&, std::size_t) override { ++sent; }
};

NodeConfig config(std::string_view name) {
  NodeConfig c = NodeConfig::local();
  c.name = std::string(name);
  c.advertise = Address::ipv4(0x7f000001, 7000);
  return c;
}

// A datagram from kPeer carrying one entry, sealed by `seal` when given.
std::vector<std::byte> entry_datagram(std::string_view key, std::string_view value,
                                      std::uint64_t hlc, crypto::FrameCrypto* seal) {
  std::vector<std::byte> b(1400);
  wire::Writer w(std::span<std::byte>(b).first(b.size() - crypto::kSealOverheadBytes));
  wire::write_header(w, wire::Header{0, wire::label_hash(""), kPeer});
  wire::encode(w, wire::EntryMsg{false, Version{hlc, kPeer}, key, value});
  EXPECT_TRUE(w.ok());
  std::size_t len = w.size();
  if (seal) len = seal->seal(b, len);
  b.resize(len);
  return b;
}

std::vector<ReceivedDatagram> batch_of(const std::vector<std::vector<std::byte>>& datagrams) {
  std::vector<ReceivedDatagram> batch;
  for (const auto& d : datagrams) batch.push_back({Address::ipv4(0x7f000002, 7001), d});
  return batch;
}

TEST(NodeBatch, EveryEntryOfAPlaintextBatchMergesWithItsOwnVersion) {
  ManualTimeSource time{kStartMs};
  auto node = std::move(Node::create(config("target"), time)).value();
  CountingSink sink;
  NodeDriver& driver = NodeDriver::of(*node);
  driver.start(sink);
  const std::uint64_t hlc = hlc_pack(kStartMs - 10, 0);
  const std::vector<std::vector<std::byte>> datagrams = {
      entry_datagram("aaaa", "1", hlc, nullptr),
      entry_datagram("bbbbbbbbbbbb", "22222", hlc + 1, nullptr),
      entry_datagram("c", "333", hlc + 2, nullptr)};
  const auto batch = batch_of(datagrams);
  driver.receive(0, batch, sink);
  EXPECT_EQ(node->get("aaaa"), "1");
  EXPECT_EQ(node->get("bbbbbbbbbbbb"), "22222");
  EXPECT_EQ(node->get("c"), "333");
  EXPECT_EQ(node->get_entry("c")->version, (Version{hlc + 2, kPeer}));
  EXPECT_EQ(node->counters().updates_merged, 3u);
}

// A sealed datagram's messages are decrypted into the crypto's buffer, which the next sealed
// datagram of the same batch overwrites: each must still merge its own entry, and no entry
// made of one datagram's bytes and another's lengths may appear.
TEST(NodeBatch, SealedDatagramsInOneBatchEachMergeTheirOwnEntry) {
  ManualTimeSource time{kStartMs};
  const std::string key(kKeyBytes, 'K');
  NodeConfig c = config("target");
  c.keys = {key};
  c.encryption = EncryptionMode::kRequire;
  auto node = std::move(Node::create(c, time)).value();
  CountingSink sink;
  NodeDriver& driver = NodeDriver::of(*node);
  driver.start(sink);

  crypto::FrameCrypto peer("", 1400, 16);
  ASSERT_TRUE(peer.keyring().install(key).is_ok());
  ASSERT_TRUE(peer.set_mode(EncryptionMode::kSend).is_ok());
  peer.start(kStartMs);
  const std::uint64_t hlc = hlc_pack(kStartMs - 10, 0);
  const std::vector<std::vector<std::byte>> datagrams = {
      entry_datagram("aaaa", "1", hlc, &peer), entry_datagram("bbbbbbbbbbbb", "22222", hlc, &peer)};
  const auto batch = batch_of(datagrams);
  driver.receive(0, batch, sink);
  EXPECT_EQ(node->counters().packets_opened, 2u);
  EXPECT_EQ(node->get("aaaa"), "1");
  EXPECT_EQ(node->get("bbbbbbbbbbbb"), "22222");
  EXPECT_FALSE(node->get("bbbb").has_value());
  EXPECT_EQ(node->counters().updates_merged, 2u);
}

// A session with a peer that never answers runs until sync_timeout_ms, which may be longer than
// the sync interval. Meanwhile the node's deadline must move on: a deadline stuck at "now"
// makes a reactor spin and stops a simulator's virtual time.
TEST(NodeBatch, DeadlineMovesOnWhileASyncWaitsForADeadPeer) {
  ManualTimeSource time{kStartMs};
  NodeConfig c = config("target");
  c.sync_interval_ms = 1000;
  c.sync_timeout_ms = 5000;
  c.probe_interval_ms = 100'000;  // the silent peer stays alive in the view throughout
  c.probe_timeout_ms = 50'000;
  auto node = std::move(Node::create(c, time)).value();
  Members& members = NodeInternals::members(*node);
  const MemberDirectory::Text name =
      members.directory().intern("silent", "", Address::ipv4(0x7f000002, 7001));
  members.preload(kPeer, name, kStartMs);
  members.directory().release(name);
  CountingSink sink;
  NodeDriver& driver = NodeDriver::of(*node);
  driver.start(sink);

  const std::uint64_t end = kStartMs + 12'000;
  std::uint64_t ticks = 0, ticks_at_one_instant = 0, most_at_one_instant = 0;
  while (time.now_ms() < end && ticks < 100'000) {
    const std::uint64_t deadline = driver.next_deadline_ms(0);
    if (deadline > time.now_ms()) {
      time.set(std::min(deadline, end));
      ticks_at_one_instant = 0;
    }
    driver.tick(0, sink);
    ++ticks;
    most_at_one_instant = std::max(most_at_one_instant, ++ticks_at_one_instant);
  }
  EXPECT_GE(time.now_ms(), end) << "virtual time stopped at +" << time.now_ms() - kStartMs << " ms";
  EXPECT_LE(most_at_one_instant, 4u);
  // Sessions start, time out against the silent peer, and start again.
  EXPECT_GE(node->counters().syncs_started, 2u);
  EXPECT_EQ(node->counters().syncs_completed, 0u);
}

}  // namespace
}  // namespace rumor
