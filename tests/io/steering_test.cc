// Steering datagrams to the core that owns their shard: the shard field, and the reuseport BPF
// program over real sockets.
#include <optional>

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

}  // namespace
}  // namespace rumor::io
