// The partial-view codecs (engine/wire/overlay.h): every message round-trips, and every
// truncation, trailing byte, bad flag and oversized count is refused. Then a partial-view node
// fed datagrams by hand: who may push payloads to it, duplicates, disconnects.
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "base/clock.h"
#include "engine/wire/overlay.h"
#include "rumor/driver.h"
#include "tests/support/discard_sink.h"

namespace rumor::wire {
namespace {

template <class Encode>
std::vector<std::byte> message(const Encode& encode) {
  std::array<std::byte, 2048> buf{};
  Writer w(buf);
  encode(w);
  EXPECT_TRUE(w.ok());
  return {buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(w.size())};
}

// The body of the one message in `m`, after checking its type.
std::span<const std::byte> body(const std::vector<std::byte>& m, MsgType t) {
  Reader r(m);
  Message msg;
  EXPECT_TRUE(next_message(r, &msg));
  EXPECT_EQ(msg.type, t);
  EXPECT_TRUE(r.empty());
  return msg.body;
}

// Every proper prefix of the body fails to decode, and so does the body with a byte appended.
template <class Decode>
void refuses_damage(std::span<const std::byte> b, const Decode& decode) {
  for (std::size_t n = 0; n < b.size(); ++n) EXPECT_FALSE(decode(b.first(n))) << "prefix " << n;
  std::vector<std::byte> longer(b.begin(), b.end());
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode(std::span<const std::byte>(longer)));
}

PeerRef peer(std::uint64_t id, std::uint32_t ip) { return PeerRef{id, Address::ipv4(ip, 7946)}; }

TEST(OverlayWire, FlagsOnlyMessages) {
  for (MsgType t : {MsgType::kHvJoin, MsgType::kHvDisconnect, MsgType::kTreePrune}) {
    const auto m = message([&](Writer& w) { encode_flags_only(w, t); });
    const auto b = body(m, t);
    EXPECT_TRUE(decode_flags_only(b));
    refuses_damage(b, [](auto s) { return decode_flags_only(s); });
    const std::byte bad[] = {std::byte{1}};
    EXPECT_FALSE(decode_flags_only(bad));
  }
}

TEST(OverlayWire, ForwardJoinRoundTrips) {
  const ForwardJoinMsg in{6, peer(0x1234567890abcdefull, 0x0a000001)};
  const auto m = message([&](Writer& w) { encode(w, in); });
  const auto b = body(m, MsgType::kHvForwardJoin);
  ForwardJoinMsg out;
  ASSERT_TRUE(decode(b, &out));
  EXPECT_EQ(out.ttl, 6);
  EXPECT_EQ(out.joiner.id, in.joiner.id);
  EXPECT_EQ(out.joiner.address, in.joiner.address);
  refuses_damage(b, [](auto s) { ForwardJoinMsg x; return decode(s, &x); });
}

TEST(OverlayWire, NeighborAndReply) {
  for (bool high : {false, true}) {
    const auto m = message([&](Writer& w) { encode_neighbor(w, high); });
    bool out = !high;
    ASSERT_TRUE(decode_neighbor(body(m, MsgType::kHvNeighbor), &out));
    EXPECT_EQ(out, high);
    const auto r = message([&](Writer& w) { encode_neighbor_reply(w, high); });
    ASSERT_TRUE(decode_neighbor_reply(body(r, MsgType::kHvNeighborReply), &out));
    EXPECT_EQ(out, high);
  }
  const std::byte two[] = {std::byte{2}};
  bool x;
  EXPECT_FALSE(decode_neighbor(two, &x));
  EXPECT_FALSE(decode_neighbor_reply(two, &x));
}

TEST(OverlayWire, ShuffleAndReplyRoundTrip) {
  for (bool reply : {false, true}) {
    ShuffleMsg in;
    in.ttl = 5;
    in.origin = peer(77, 0x0a000009);
    for (std::uint32_t i = 0; i < 8; ++i) in.peers[in.count++] = peer(100 + i, 0x0a000100 + i);
    const auto m = message([&](Writer& w) { encode_shuffle(w, in, reply); });
    const auto b = body(m, reply ? MsgType::kHvShuffleReply : MsgType::kHvShuffle);
    ShuffleMsg out;
    ASSERT_TRUE(decode_shuffle(b, reply, &out));
    ASSERT_EQ(out.count, in.count);
    for (std::size_t i = 0; i < in.count; ++i) {
      EXPECT_EQ(out.peers[i].id, in.peers[i].id);
      EXPECT_EQ(out.peers[i].address, in.peers[i].address);
    }
    if (!reply) {
      EXPECT_EQ(out.ttl, 5);
      EXPECT_EQ(out.origin.id, 77u);
    }
    refuses_damage(b, [&](auto s) { ShuffleMsg x; return decode_shuffle(s, reply, &x); });
  }
  // A count past the limit is refused before anything is read.
  std::vector<std::byte> big(1 + 17 * 15, std::byte{0});
  big[0] = std::byte{17};
  ShuffleMsg x;
  EXPECT_FALSE(decode_shuffle(big, true, &x));
}

TEST(OverlayWire, TreeGossipRoundTripsAndKeepsEntryRules) {
  const Limits lim;
  const TreeGossipMsg in{3, EntryMsg{false, Version{42, 7}, "service_version", "v1.2.4"}};
  const auto m = message([&](Writer& w) { encode(w, in); });
  EXPECT_EQ(m.size(), tree_gossip_bytes(in.entry));
  const auto b = body(m, MsgType::kTreeGossip);
  TreeGossipMsg out;
  ASSERT_TRUE(decode(b, lim, &out));
  EXPECT_EQ(out.hops, 3);
  EXPECT_EQ(out.entry.key, "service_version");
  EXPECT_EQ(out.entry.value, "v1.2.4");
  EXPECT_EQ(out.entry.version, in.entry.version);
  refuses_damage(b, [&](auto s) { TreeGossipMsg x; return decode(s, lim, &x); });
  // A tombstone with a value, a zero version and an oversized key are refused.
  const auto tomb = message([&](Writer& w) {
    encode(w, TreeGossipMsg{0, EntryMsg{true, Version{1, 1}, "k", ""}});
  });
  std::vector<std::byte> t(tomb.begin(), tomb.end());
  ASSERT_TRUE(decode(body(t, MsgType::kTreeGossip), lim, &out));
  Limits small = lim;
  small.key_bytes_max = 4;
  EXPECT_FALSE(decode(b, small, &out));
}

TEST(OverlayWire, IdsRoundTripAndBounds) {
  std::vector<TreeId> ids;
  for (std::uint64_t i = 0; i < kTreeIdsMax; ++i) ids.push_back(TreeId{i * 31, Version{i + 1, i}});
  for (MsgType t : {MsgType::kTreeIHave, MsgType::kTreeGraft}) {
    const auto m = message([&](Writer& w) { encode_ids(w, t, ids); });
    const auto b = body(m, t);
    TreeIdsMsg out;
    ASSERT_TRUE(decode_ids(b, &out));
    ASSERT_EQ(out.count, ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(out.ids[i], ids[i]);
    refuses_damage(b, [](auto s) { TreeIdsMsg x; return decode_ids(s, &x); });
  }
  // Zero ids, too many, and a zero version are refused.
  TreeIdsMsg out;
  const std::byte zero[] = {std::byte{0}};
  EXPECT_FALSE(decode_ids(zero, &out));
  std::vector<std::byte> many(1 + (kTreeIdsMax + 1) * kTreeIdBytes, std::byte{1});
  many[0] = std::byte{kTreeIdsMax + 1};
  EXPECT_FALSE(decode_ids(many, &out));
  std::vector<std::byte> zv(1 + kTreeIdBytes, std::byte{0});
  zv[0] = std::byte{1};
  EXPECT_FALSE(decode_ids(zv, &out));
}

}  // namespace
}  // namespace rumor::wire

// ---- A partial-view node fed datagrams by hand ----------------------------------------------

namespace rumor {
namespace {

struct PartialNode {
  PartialNode() {
    NodeConfig cfg = NodeConfig::local();
    cfg.name = "partial-target";
    cfg.advertise = Address::ipv4(0x7f000001, 7946);
    cfg.membership = Membership::kPartial;
    node = std::move(Node::create(cfg, time)).value();
    NodeDriver::of(*node).start(sink);
  }
  // One datagram from `sender` at 127.0.0.x:7946 carrying what `fill` writes.
  template <class Fill>
  void feed(NodeId sender, std::uint32_t host, const Fill& fill) {
    std::array<std::byte, 1400> buf{};
    wire::Writer w(buf);
    wire::write_header(w, wire::Header{0, wire::label_hash(""), sender});
    fill(w);
    ASSERT_TRUE(w.ok());
    NodeDriver::of(*node).receive(Address::ipv4(0x7f000000 + host, 7946),
                                  std::span<const std::byte>(buf.data(), w.size()), sink);
    time.advance(1);
  }
  ManualTimeSource time{1'764'000'000'000};
  testing::DiscardSink sink;
  std::unique_ptr<Node> node;
};

wire::TreeGossipMsg payload(std::string_view key, std::string_view value, std::uint64_t hlc) {
  return wire::TreeGossipMsg{0, wire::EntryMsg{false, Version{hlc, 99}, key, value}};
}

TEST(PartialNode, TakesPayloadsFromActivePeersOnlyAndPrunesDuplicates) {
  PartialNode t;
  const std::uint64_t hlc = std::uint64_t{1'764'000'000'000} << 16;
  // A stranger's payload is not merged.
  t.feed(1111, 2, [&](wire::Writer& w) { wire::encode(w, payload("k", "stranger", hlc)); });
  EXPECT_FALSE(t.node->get("k").has_value());
  // A join makes the sender an active peer; its payload then merges.
  t.feed(2222, 3, [&](wire::Writer& w) {
    wire::encode_flags_only(w, wire::MsgType::kHvJoin);
    wire::encode(w, payload("k", "v", hlc + 1));
  });
  EXPECT_EQ(t.node->get("k"), "v");
  NodeCounters k = t.node->counters();
  EXPECT_EQ(k.view_active, 1u);
  EXPECT_EQ(k.tree_duplicates, 0u);
  // The same payload again is a duplicate: the link is pruned.
  t.feed(2222, 3, [&](wire::Writer& w) { wire::encode(w, payload("k", "v", hlc + 1)); });
  k = t.node->counters();
  EXPECT_EQ(k.tree_duplicates, 1u);
  EXPECT_EQ(k.tree_prunes, 1u);
  // members(): this node and its views, never more.
  EXPECT_EQ(t.node->members().size(), 1 + k.view_active + k.view_passive);
  // A disconnect from the peer at another address is ignored; from its own, obeyed.
  t.feed(2222, 4, [&](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvDisconnect); });
  EXPECT_EQ(t.node->counters().view_active, 1u);
  t.feed(2222, 3, [&](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvDisconnect); });
  EXPECT_EQ(t.node->counters().view_active, 0u);
  EXPECT_EQ(t.node->counters().view_passive, 1u);
}

}  // namespace
}  // namespace rumor
