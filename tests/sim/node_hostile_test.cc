// Hostile and forged input against one node, fed datagrams directly (no simulator): claims that
// must be refused, and state that must not come back.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "engine/node/rate_limit.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"
#include "rumor/node.h"

namespace rumor {
namespace {

struct CaptureSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::size_t sent = 0;
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address&, std::size_t) override { ++sent; }
};

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeConfig cfg = NodeConfig::local();
    cfg.name = "target";
    cfg.advertise = Address::ipv4(0x7f000001, 7000);
    node = std::move(Node::create(cfg, time)).value();
    NodeDriver::of(*node).start(sink);
  }
  // A datagram from `sender` carrying one member record.
  std::vector<std::byte> member_packet(NodeId sender, const wire::MemberMsg& m, bool table) {
    std::vector<std::byte> b(1400);
    wire::Writer w(b);
    wire::write_header(w, wire::Header{0, wire::label_hash(""), sender});
    if (table) {
      const std::size_t at = w.begin(wire::MsgType::kJoin);
      w.u8(0);
      w.end(at);
    }
    wire::encode(w, m);
    b.resize(w.size());
    return b;
  }
  Member self_view() {
    for (const Member& m : node->members()) {
      if (m.id == node->id()) return m;
    }
    return {};
  }
  ManualTimeSource time{1'764'000'000'000};
  CaptureSink sink;
  std::unique_ptr<Node> node;
  Address peer = Address::ipv4(0x7f000002, 7001);
};

TEST_F(HostileTest, ForgedSuspicionAtTheTopIncarnationIsRefusedNotWrapped) {
  const std::uint64_t before = self_view().incarnation;
  auto p = member_packet(42, wire::MemberMsg{wire::WireState::kSuspect, UINT64_MAX, node->id(), 42,
                                             Address::ipv4(0x7f000001, 7000), "target", ""},
                         false);
  NodeDriver::of(*node).receive(peer, p, sink);
  EXPECT_EQ(self_view().incarnation, before);  // not wrapped to 0, not moved at all
  EXPECT_EQ(node->counters().drop_malformed, 1u);
  // An ordinary suspicion is refuted with a higher incarnation.
  p = member_packet(42, wire::MemberMsg{wire::WireState::kSuspect, before, node->id(), 42,
                                        Address::ipv4(0x7f000001, 7000), "target", ""},
                    false);
  NodeDriver::of(*node).receive(peer, p, sink);
  EXPECT_EQ(self_view().incarnation, before + 1);
  EXPECT_EQ(node->counters().refutations, 1u);
}

TEST_F(HostileTest, DeathOrSuspicionOfAnUnknownMemberDoesNotAddIt) {
  for (bool table : {false, true}) {
    for (auto st : {wire::WireState::kDead, wire::WireState::kSuspect, wire::WireState::kLeft}) {
      auto p = member_packet(42, wire::MemberMsg{st, 5, 777, 42, Address::ipv4(0x7f000003, 7002),
                                                 "ghost", ""},
                             table);
      NodeDriver::of(*node).receive(peer, p, sink);
    }
  }
  EXPECT_EQ(node->members().size(), 1u);  // only itself
  // An alive claim does introduce it.
  auto p = member_packet(42, wire::MemberMsg{wire::WireState::kAlive, 5, 777, 777,
                                             Address::ipv4(0x7f000003, 7002), "ghost", ""},
                         false);
  NodeDriver::of(*node).receive(peer, p, sink);
  EXPECT_EQ(node->members().size(), 2u);
}

TEST_F(HostileTest, ConfigRefusesMemberRecordsThatCannotFitADatagram) {
  NodeConfig cfg = NodeConfig::local();
  cfg.name = "x";
  cfg.advertise = Address::ipv4(0x7f000001, 7000);
  cfg.datagram_bytes_max = 576;
  cfg.store.key_bytes_max = 64;
  cfg.store.value_bytes_max = 256;
  Status st = cfg.validate();
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("member record"), std::string::npos) << st.message();
}

// ---- Floods (docs/security.md "Hostile input") -------------------------------------------

class FloodTest : public ::testing::Test {
 protected:
  void start(NodeConfig cfg) {
    cfg.name = "target";
    cfg.advertise = Address::ipv4(0x7f000001, 7000);
    node = std::move(Node::create(cfg, time)).value();
    NodeDriver::of(*node).start(sink);
  }
  // A join request (asks for the member table back) from `sender` at `addr`.
  static std::vector<std::byte> join_packet(NodeId sender, const Address& addr) {
    std::vector<std::byte> b(1400);
    wire::Writer w(b);
    wire::write_header(w, wire::Header{0, wire::label_hash(""), sender});
    const std::size_t at = w.begin(wire::MsgType::kJoin);
    w.u8(1);
    w.end(at);
    wire::encode(w, wire::MemberMsg{wire::WireState::kAlive, 1, sender, sender, addr, "peer", ""});
    b.resize(w.size());
    return b;
  }
  ManualTimeSource time{1'764'000'000'000};
  CaptureSink sink;
  std::unique_ptr<Node> node;
};

TEST_F(FloodTest, JunkFromOneAddressIsCutOffUnreadAndOtherPeersAreStillServed) {
  NodeConfig cfg = NodeConfig::local();
  cfg.peer_bytes_per_s_max = 64 * 1024;
  start(cfg);
  const Address attacker = Address::ipv4(0x7f000009, 9999);
  std::vector<std::byte> junk(1000);
  std::uint64_t x = 12345;
  constexpr int kFlood = 20'000;
  for (int i = 0; i < kFlood; ++i) {
    for (auto& b : junk) b = static_cast<std::byte>((x = x * 6364136223846793005ull + 1) >> 56);
    NodeDriver::of(*node).receive(attacker, junk, sink);
    if (i % 1000 == 0) time.advance(10);  // 200 ms of flood in all
  }
  const NodeCounters c = node->counters();
  // What got through: the one-second burst plus 200 ms of refill, 1000 bytes each.
  const std::uint64_t through = kFlood - c.drop_rate_limited;
  EXPECT_LE(through, (64u * 1024 + 64u * 1024 / 5) / 1000 + 1);
  EXPECT_GE(c.drop_rate_limited, static_cast<std::uint64_t>(kFlood) - 100);
  // Another peer is answered at once.
  const std::size_t sent_before = sink.sent;
  const Address peer = Address::ipv4(0x7f000002, 7001);
  NodeDriver::of(*node).receive(peer, join_packet(42, peer), sink);
  EXPECT_GT(sink.sent, sent_before);
  EXPECT_EQ(node->members().size(), 2u);
}

TEST_F(FloodTest, WellFormedRequestsFromOneAddressGetBoundedAnswers) {
  NodeConfig cfg = NodeConfig::local();
  start(cfg);
  const Address attacker = Address::ipv4(0x7f000009, 9999);
  const auto req = join_packet(66, attacker);
  constexpr int kFlood = 5'000;
  for (int i = 0; i < kFlood; ++i) NodeDriver::of(*node).receive(attacker, req, sink);
  // The per-address answer budget: 8 ticks' worth of sync datagrams, at about one datagram
  // per answer here (a two-member table).
  const double budget = 8.0 * cfg.sync_datagrams_per_tick_max;
  EXPECT_LE(sink.sent, static_cast<std::size_t>(budget) + 1);
  EXPECT_GE(node->counters().sync_rate_limited, static_cast<std::uint64_t>(kFlood - budget));
  const std::size_t sent_before = sink.sent;
  const Address peer = Address::ipv4(0x7f000002, 7001);
  NodeDriver::of(*node).receive(peer, join_packet(42, peer), sink);
  EXPECT_GT(sink.sent, sent_before) << "another address still gets its answer";
}

TEST_F(FloodTest, SpoofedAddressesShareOneGlobalAnswerBudgetAndFixedTables) {
  NodeConfig cfg = NodeConfig::local();
  cfg.answer_datagrams_per_s_max = 300;
  cfg.members_max = 64;
  start(cfg);
  constexpr std::uint32_t kFlood = 50'000;
  for (std::uint32_t i = 0; i < kFlood; ++i) {
    const Address a = Address::ipv4(0x0b000000u + i, static_cast<std::uint16_t>(1000 + i % 50000));
    NodeDriver::of(*node).receive(a, join_packet(1000 + i, a), sink);
  }
  // Each answer is a datagram or two (the table is at most members_max = 64 records).
  EXPECT_LE(sink.sent, 300u);
  EXPECT_GT(sink.sent, 0u);
  // Memory stays bounded: the member table by members_max; the limiters are fixed tables.
  EXPECT_LE(node->members().size(), 64u);
  // A second later the budget is back.
  time.advance(1000);
  const std::size_t sent_before = sink.sent;
  const Address peer = Address::ipv4(0x7f000002, 7001);
  NodeDriver::of(*node).receive(peer, join_packet(42, peer), sink);
  EXPECT_GT(sink.sent, sent_before);
}

TEST(MultiCoreFlood, AMultiCoreNodeAcceptsNoMoreFromOneAddressThanASingleCoreOne) {
  // Junk from one address, spread over both cores of a 2-core node (as the kernel spreads a
  // peer's traffic by shard): the cores' shares add up to the node's budget, not twice it.
  ManualTimeSource time{1'764'000'000'000};
  CaptureSink sink;
  NodeConfig cfg = NodeConfig::local();
  cfg.name = "target";
  cfg.advertise = Address::ipv4(0x7f000001, 7000);
  cfg.peer_bytes_per_s_max = 64 * 1024;
  cfg.store.owners = 2;
  auto node = std::move(Node::create(cfg, time)).value();
  NodeDriver& drv = NodeDriver::of(*node);
  drv.start(0, sink);
  drv.start(1, sink);
  const Address attacker = Address::ipv4(0x7f000009, 9999);
  std::vector<std::byte> junk(1000, std::byte{0x5a});
  constexpr int kFlood = 20'000;
  for (int i = 0; i < kFlood; ++i) {
    drv.receive(static_cast<std::uint32_t>(i % 2), attacker, junk, sink);
    if (i % 1000 == 0) time.advance(10);
  }
  const NodeCounters c = node->counters();
  const std::uint64_t through = kFlood - c.drop_rate_limited;
  EXPECT_LE(through, (64u * 1024 + 64u * 1024 / 5) / 1000 + 2);
  EXPECT_GE(through, (64u * 1024) / 1000 - 2);
}

TEST(RateLimit, SharedLimitersAddUpExactlyAcrossThreads) {
  // At one instant, two threads together take exactly the burst, however they interleave.
  SharedTokenBucket bucket(1000.0, 500.0);
  SharedPeerLimiter peers(64, 1000.0, 300.0, 7);
  const Address a = Address::ipv4(0x7f000001, 1);
  std::atomic<int> from_bucket{0}, from_peer{0};
  auto take = [&] {
    for (int i = 0; i < 2000; ++i) {
      if (bucket.take(1, 5000)) from_bucket.fetch_add(1);
      if (peers.allow(a, 1, 5000)) from_peer.fetch_add(1);
    }
  };
  std::thread t1(take), t2(take);
  t1.join();
  t2.join();
  EXPECT_EQ(from_bucket.load(), 500);
  EXPECT_EQ(from_peer.load(), 300);
  // And refill at the rate: 100 ms later, 100 more.
  int later = 0;
  for (int i = 0; i < 1000; ++i) later += bucket.take(1, 5100) ? 1 : 0;
  EXPECT_EQ(later, 100);
  // A spray of addresses shares the fixed table as PeerLimiter's does.
  int allowed = 0;
  for (std::uint32_t i = 0; i < 10'000; ++i) {
    allowed += peers.allow(Address::ipv4(0x0b000000u + i, 9), 1, 6000) ? 1 : 0;
  }
  EXPECT_LE(allowed, 64 * 300 + 300);
  // Idle slots are taken over later: a new address gets its own full burst.
  const Address b = Address::ipv4(0x7f000003, 3);
  for (int i = 0; i < 300; ++i) EXPECT_TRUE(peers.allow(b, 1, 20'000)) << i;
}

TEST(RateLimit, PeerLimiterSharesSlotsUnderASprayAndFreesIdleOnes) {
  PeerLimiter lim(64, 10.0, 10.0, 7);
  const Address a = Address::ipv4(0x7f000001, 1);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(lim.allow(a, 1, 1000));
  EXPECT_FALSE(lim.allow(a, 1, 1000));
  EXPECT_TRUE(lim.allow(a, 1, 1100));  // 100 ms: one token back
  // A spray of 10,000 addresses in one instant: the table stays 64 slots, and the spray gets
  // at most the burst of every slot, not a fresh burst per address.
  int allowed = 0;
  for (std::uint32_t i = 0; i < 10'000; ++i) {
    allowed += lim.allow(Address::ipv4(0x0b000000u + i, 9), 1, 2000) ? 1 : 0;
  }
  EXPECT_EQ(lim.slots(), 64u);
  EXPECT_LE(allowed, 64 * 10 + 10);
  // Idle slots are taken over a second later: a new address gets its own full burst.
  const Address b = Address::ipv4(0x7f000003, 3);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(lim.allow(b, 1, 5000));
}

// The table starts small and doubles as addresses arrive: every address keeps its own bucket
// across the growths (one that spent its burst stays refused in the same instant, instead of
// getting a fresh one), and the table never passes its limit.
TEST(RateLimit, PeerLimiterGrowsKeepingEveryBucket) {
  PeerLimiter lim(4096, 10.0, 10.0, 7);
  EXPECT_EQ(lim.slots(), 16u);
  auto addr = [](std::uint32_t i) { return Address::ipv4(0x0c000000u + i, 5); };
  for (std::uint32_t i = 0; i < 200; ++i) {
    for (int k = 0; k < 10; ++k) EXPECT_TRUE(lim.allow(addr(i), 1, 1000)) << i;
    EXPECT_FALSE(lim.allow(addr(i), 1, 1000)) << i;
  }
  EXPECT_GE(lim.slots(), 256u);
  EXPECT_LE(lim.slots(), 4096u);
  for (std::uint32_t i = 0; i < 200; ++i) EXPECT_FALSE(lim.allow(addr(i), 1, 1000)) << i;
  // A small limit is a limit: 16 slots stay 16.
  PeerLimiter small(16, 10.0, 10.0, 7);
  for (std::uint32_t i = 0; i < 200; ++i) (void)small.allow(addr(i), 1, 1000);
  EXPECT_EQ(small.slots(), 16u);
}

// Large values: an announcement or a chunk request from an address that is not a live member's
// makes the node send nothing (no request to pull from it, no chunks to it), and is counted.
TEST_F(HostileTest, LargeValueMessagesFromStrangersDrawNothing) {
  ASSERT_TRUE(node->set("big", std::string(100'000, 'v')));
  const Version v = node->get_entry("big")->version;
  auto packet = [&](auto encode) {
    std::vector<std::byte> b(1400);
    wire::Writer w(b);
    wire::write_header(w, wire::Header{0, wire::label_hash(""), 42});
    encode(w);
    b.resize(w.size());
    return b;
  };
  const std::size_t sent_before = sink.sent;
  auto ref = packet([&](wire::Writer& w) {
    wire::encode(w, wire::EntryRefMsg{Version{v.hlc + 1, 42}, 200'000, 1, 1328, "big"});
  });
  NodeDriver::of(*node).receive(peer, ref, sink);
  auto req = packet([&](wire::Writer& w) {
    wire::encode(w, wire::ChunkRequestMsg{1, v, 100'000, 1328, 0, ~std::uint64_t{0}, "big"});
  });
  NodeDriver::of(*node).receive(peer, req, sink);
  EXPECT_EQ(sink.sent, sent_before);
  EXPECT_EQ(node->counters().bulk_refused, 1u);
  EXPECT_EQ(node->counters().bulk_serve_refused, 1u);
  EXPECT_EQ(node->counters().bulk_pulls, 0u);
  EXPECT_EQ(node->counters().drop_malformed, 0u);
}

}  // namespace
}  // namespace rumor
