// Hostile and forged input against one node, fed datagrams directly (no simulator): claims that
// must be refused, and state that must not come back.
#include <gtest/gtest.h>

#include <vector>

#include "base/clock.h"
#include "engine/node_impl.h"
#include "engine/wire.h"
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
    node->start(sink);
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
  node->receive(peer, p, sink);
  EXPECT_EQ(self_view().incarnation, before);  // not wrapped to 0, not moved at all
  EXPECT_EQ(node->counters().drop_malformed, 1u);
  // An ordinary suspicion is refuted with a higher incarnation.
  p = member_packet(42, wire::MemberMsg{wire::WireState::kSuspect, before, node->id(), 42,
                                        Address::ipv4(0x7f000001, 7000), "target", ""},
                    false);
  node->receive(peer, p, sink);
  EXPECT_EQ(self_view().incarnation, before + 1);
  EXPECT_EQ(node->counters().refutations, 1u);
}

TEST_F(HostileTest, DeathOrSuspicionOfAnUnknownMemberDoesNotAddIt) {
  for (bool table : {false, true}) {
    for (auto st : {wire::WireState::kDead, wire::WireState::kSuspect, wire::WireState::kLeft}) {
      auto p = member_packet(42, wire::MemberMsg{st, 5, 777, 42, Address::ipv4(0x7f000003, 7002),
                                                 "ghost", ""},
                             table);
      node->receive(peer, p, sink);
    }
  }
  EXPECT_EQ(node->members().size(), 1u);  // only itself
  // An alive claim does introduce it.
  auto p = member_packet(42, wire::MemberMsg{wire::WireState::kAlive, 5, 777, 777,
                                             Address::ipv4(0x7f000003, 7002), "ghost", ""},
                         false);
  node->receive(peer, p, sink);
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

}  // namespace
}  // namespace rumor
