// Steering datagrams to the core that owns their shard: the reuseport BPF program over real
// sockets, and the SPSC hand-off that replaces it where it cannot be attached.
#include <atomic>
#include <optional>
#include <thread>

#include "harness.h"
#include "io/steering.h"

namespace rumor::io {
namespace {

using testing::Family;
using testing::Kind;

std::vector<std::byte> shard_payload(std::uint16_t shard, std::uint32_t seq) {
  std::vector<std::byte> p(16);
  std::memcpy(p.data() + 8, &seq, 4);
  EXPECT_TRUE(write_shard_id(p, shard));
  return p;
}

std::unique_ptr<Transport> open_backend(Kind kind, const TransportConfig& c) {
  if (kind == Kind::kUring) {
    auto t = UringTransport::open(c);
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t ? std::move(t.value()) : nullptr;
  }
  auto t = MmsgTransport::open(c);
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return t ? std::move(t.value()) : nullptr;
}

// The field the BPF program loads: two bytes, big-endian, at kShardIdOffset.
TEST(TargetShard, PeekReadsTheBigEndianFieldAndRefusesShortDatagrams) {
  const std::vector<std::byte> p = shard_payload(0x1234, 7);
  EXPECT_EQ(p[kShardIdOffset], std::byte{0x12});
  EXPECT_EQ(peek_target_shard(p), std::optional<std::uint16_t>(0x1234));
  EXPECT_EQ(peek_target_shard(std::span<const std::byte>(p.data(), kShardIdOffset + 2)),
            std::optional<std::uint16_t>(0x1234));
  EXPECT_EQ(peek_target_shard(std::span<const std::byte>(p.data(), kShardIdOffset + 1)),
            std::nullopt);
  EXPECT_EQ(peek_target_shard({}), std::nullopt);
}

class ReuseportSteering : public ::testing::TestWithParam<Kind> {};

TEST_P(ReuseportSteering, EachShardLandsOnItsOwnersSocket) {
  constexpr std::uint32_t kSockets = 4;
  testing::SocketHarness h(GetParam());
  TransportConfig c;
  c.reuse_port = true;
  std::vector<Transport*> cores;
  auto first = h.open(Family::kV4, c);
  if (!first) GTEST_SKIP() << first.status().to_string();
  cores.push_back(*first);
  // Every other core binds the same port; socket index = the order they joined.
  const std::uint16_t port = cores[0]->local_address().port();
  std::vector<std::unique_ptr<Transport>> owned;
  for (std::uint32_t i = 1; i < kSockets; ++i) {
    TransportConfig same = c;
    same.bind = Address::ipv4(0x7f000001, port);
    owned.push_back(open_backend(GetParam(), same));
    ASSERT_NE(owned.back(), nullptr);
    cores.push_back(owned.back().get());
  }
  auto* base = dynamic_cast<UdpTransportBase*>(cores[0]);
  ASSERT_NE(base, nullptr);
  const Status attached = attach_reuseport_steering(base->socket_fd(), kSockets);
  if (!attached) GTEST_SKIP() << attached.to_string();

  // 64 shards from one sender: the kernel's 4-tuple hash alone would put them all on one
  // socket; the program spreads them by shard.
  constexpr std::uint16_t kShards = 64;
  for (std::uint16_t s = 0; s < kShards; ++s) {
    h.inject(Address::ipv4(0x7f000001, port), shard_payload(s, s));
  }
  // Too short to carry a shard id: socket 0.
  h.inject(Address::ipv4(0x7f000001, port), std::vector<std::byte>(3, std::byte{1}));
  std::size_t total = 0;
  for (std::uint32_t core = 0; core < kSockets; ++core) {
    const std::size_t want = kShards / kSockets + (core == 0 ? 1 : 0);
    const auto got = testing::collect(h, *cores[core], want);
    ASSERT_EQ(got.size(), want) << "core " << core;
    for (const auto& g : got) {
      const std::optional<std::uint16_t> shard = peek_target_shard(g.bytes);
      if (!shard) {
        EXPECT_EQ(core, 0u);
        continue;
      }
      EXPECT_EQ(owner_core(*shard, kSockets), core) << "shard " << *shard;
    }
    EXPECT_EQ(testing::count_stragglers(h, *cores[core], 2), 0u);
    total += got.size();
  }
  EXPECT_EQ(total, kShards + 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, ReuseportSteering,
                         ::testing::Values(Kind::kUring, Kind::kMmsg),
                         [](const auto& info) { return std::string(testing::kind_name(info.param)); });

// ---- Handoff ----

Datagram fake(std::uint32_t handle) {
  Datagram d;
  d.handle = handle;
  d.len = handle;
  return d;
}

TEST(Handoff, ForwardsToTheOwnerAndBackToTheLender) {
  Handoff h(3, 4);
  EXPECT_TRUE(h.forward(0, 2, fake(10)));
  EXPECT_TRUE(h.forward(1, 2, fake(20)));
  std::vector<Handed> got(8);
  ASSERT_EQ(h.take(2, got), 2u);
  EXPECT_EQ(got[0].datagram.handle, 10u);
  EXPECT_EQ(got[0].from, 0u);
  EXPECT_EQ(got[1].datagram.handle, 20u);
  EXPECT_EQ(got[1].from, 1u);
  h.give_back(2, got[1]);
  h.give_back(2, got[0]);
  std::vector<Datagram> back(8);
  ASSERT_EQ(h.reclaim(0, back), 1u);
  EXPECT_EQ(back[0].handle, 10u);
  ASSERT_EQ(h.reclaim(1, back), 1u);
  EXPECT_EQ(back[0].handle, 20u);
  EXPECT_EQ(h.reclaim(2, back), 0u);
}

TEST(Handoff, CreditBoundsWhatOneCoreHasOutWithAnother) {
  Handoff h(2, 4);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(h.forward(0, 1, fake(i)));
  EXPECT_FALSE(h.forward(0, 1, fake(99)));  // queue full
  std::vector<Handed> got(8);
  ASSERT_EQ(h.take(1, got), 4u);
  // Taken but not given back: the credit is still used up, so the return queue cannot fill.
  EXPECT_FALSE(h.forward(0, 1, fake(98)));
  EXPECT_EQ(h.counters(0).refused, 2u);
  for (std::size_t i = 0; i < 4; ++i) h.give_back(1, got[i]);
  std::vector<Datagram> back(8);
  EXPECT_EQ(h.reclaim(0, back), 4u);
  EXPECT_TRUE(h.forward(0, 1, fake(5)));
  EXPECT_EQ(h.counters(0).forwarded, 5u);
}

TEST(Handoff, TwoCoresExchangeUnderLoadWithoutLossOrReordering) {
  // Core 0 receives everything and forwards shard-odd datagrams to core 1, which checks order
  // and hands each back; core 0 reclaims them. Bounded in count and time; no sleeping.
  constexpr std::uint32_t kCount = 200'000;
  Handoff h(2, 256);
  std::atomic<bool> failed{false};
  std::thread core1([&] {
    std::vector<Handed> got(64);
    std::uint32_t expect = 0;
    const std::uint64_t start = monotonic_ns();
    while (expect < kCount && monotonic_ns() - start < 20'000'000'000ull) {
      const std::size_t n = h.take(1, got);
      for (std::size_t i = 0; i < n; ++i) {
        if (got[i].datagram.handle != expect || got[i].from != 0) failed = true;
        ++expect;
        h.give_back(1, got[i]);
      }
    }
    if (expect != kCount) failed = true;
  });
  std::vector<Datagram> back(64);
  std::uint32_t next = 0;
  std::uint32_t reclaimed = 0;
  const std::uint64_t start = monotonic_ns();
  while ((next < kCount || reclaimed < kCount) &&
         monotonic_ns() - start < 20'000'000'000ull) {
    if (next < kCount && h.forward(0, 1, fake(next))) ++next;
    reclaimed += static_cast<std::uint32_t>(h.reclaim(0, back));
  }
  core1.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(next, kCount);
  EXPECT_EQ(reclaimed, kCount);
}

TEST(Handoff, SteersRealDatagramsWithoutTheBpfProgram) {
  // Two cores, two sockets on one port, no program attached: each datagram lands wherever
  // the kernel hashes it; the receiving core forwards what it does not own, the owner
  // processes it, and it goes back to be released by the transport that lent it.
  constexpr std::uint32_t kCores = 2;
  testing::SocketHarness harness(Kind::kMmsg);
  TransportConfig c;
  // Small pools: 40 datagrams pass through 8 buffers per core only if every one comes home.
  c.recv_buffers = 8;
  auto t0 = harness.open(Family::kV4, c);
  ASSERT_TRUE(t0.is_ok());
  const std::uint16_t port = (*t0)->local_address().port();
  c.bind = Address::ipv4(0x7f000001, port);
  auto t1 = MmsgTransport::open(c);
  ASSERT_TRUE(t1.is_ok());
  Transport* cores[kCores] = {*t0, t1->get()};
  Handoff handoff(kCores, 64);

  constexpr std::uint16_t kShards = 40;
  for (std::uint16_t s = 0; s < kShards; ++s) {
    harness.inject(Address::ipv4(0x7f000001, port), shard_payload(s, s));
  }
  // Sent from one socket, all 40 hash to the same core: half of them must cross.
  std::vector<std::vector<std::uint16_t>> processed(kCores);
  std::vector<Datagram> batch(64);
  std::vector<Handed> handed(64);
  std::vector<Datagram> back(64);
  std::size_t done = 0;
  for (int it = 0; it < 2000 && done < kShards; ++it) {
    for (std::uint32_t core = 0; core < kCores; ++core) {
      Transport& t = *cores[core];
      ASSERT_TRUE(t.poll(testing::kPollNs / 10, 1).is_ok());
      const std::size_t n = t.receive(batch);
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t shard = 0;
        ASSERT_TRUE(read_shard_id(batch[i].bytes(), &shard));
        const std::uint32_t owner = owner_core(shard, kCores);
        if (owner == core) {
          processed[core].push_back(shard);
          ++done;
          t.release({&batch[i], 1});
        } else if (!handoff.forward(core, owner, batch[i])) {
          t.release({&batch[i], 1});  // refused: counted, dropped
        }
      }
      const std::size_t k = handoff.take(core, handed);
      for (std::size_t i = 0; i < k; ++i) {
        std::uint16_t shard = 0;
        ASSERT_TRUE(read_shard_id(handed[i].datagram.bytes(), &shard));
        EXPECT_EQ(owner_core(shard, kCores), core);
        processed[core].push_back(shard);
        ++done;
        handoff.give_back(core, handed[i]);
      }
      const std::size_t r = handoff.reclaim(core, back);
      t.release({back.data(), r});
    }
  }
  ASSERT_EQ(done, kShards);
  for (std::uint32_t core = 0; core < kCores; ++core) {
    for (std::uint16_t s : processed[core]) EXPECT_EQ(owner_core(s, kCores), core);
  }
  EXPECT_EQ(processed[0].size(), kShards / 2);
  EXPECT_EQ(processed[1].size(), kShards / 2);
}

}  // namespace
}  // namespace rumor::io
