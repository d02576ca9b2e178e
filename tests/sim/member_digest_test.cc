// Member-table push-pull by digest (docs/protocol.md "Member tables"): two real nodes whose
// views differ in a few members end with the same view, and the exchange carries far fewer
// records than whole tables would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"
#include "rumor/node.h"

namespace rumor {
namespace {

constexpr std::uint64_t kStartMs = 1'764'000'000'000;
constexpr std::size_t kShared = 400;  // members both views hold
constexpr std::size_t kOnlyA = 20, kOnlyB = 20;

struct Datagram {
  Address to;
  std::vector<std::byte> bytes;
};

// Keeps every datagram a node sends, to be routed by the test.
struct QueueSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1500);
  std::deque<Datagram>* queue = nullptr;
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address& to, std::size_t len) override {
    queue->push_back({to, std::vector<std::byte>(buf.begin(), buf.begin() + len)});
  }
};

NodeConfig config(std::string_view name, std::uint16_t port) {
  NodeConfig c = NodeConfig::local();
  c.name = std::string(name);
  c.advertise = Address::ipv4(0x7f000001, port);
  c.probe_interval_ms = 3'600'000;  // no probing: the fake members stay as they are
  c.probe_timeout_ms = 1'000'000;
  c.reconnect_interval_ms = 3'600'000;
  c.sync_interval_ms = 100;
  return c;
}

Address fake_address(std::size_t i) {
  return Address::ipv4(0x0a000000u + static_cast<std::uint32_t>(i) + 1, 7946);
}

NodeId fake_id(std::size_t i) { return 0x1000 + i * 0x9e3779b97f4a7c15ull; }

// A member alive in the view at `inc`, as if a join had told it.
void hold(Node& node, NodeId id, const std::string& name, const Address& addr, std::uint64_t inc) {
  Members& m = NodeInternals::members(node);
  const MemberDirectory::Text t = m.directory().intern(name, "", addr);
  m.preload(id, t, inc);
  m.directory().release(t);
}

// The members both views hold become suspects, so that random peer picks (alive members only)
// find the real peer more often; the members that differ stay alive, since only an alive record
// introduces a member.
void suspect_shared(Node& node) {
  Members& m = NodeInternals::members(node);
  for (const Member& x : m.list()) {
    if (x.address.port() != 7946 || x.name.size() < 2) continue;
    if (std::stoul(x.name.substr(2)) >= kShared || x.name == "m-5") continue;
    m.apply(wire::MemberMsg{wire::WireState::kSuspect, x.incarnation, x.id, 7, x.address,
                            x.name, x.metadata},
            /*state_sync=*/false);
  }
}

// Member records in a table datagram (one that opens with Join); gossip is not counted.
std::size_t table_records(const std::vector<std::byte>& d) {
  wire::Reader r(d);
  wire::Header h;
  if (wire::read_header(r, &h) != wire::HeaderError::kNone) return 0;
  std::size_t n = 0;
  wire::Message m;
  if (!wire::next_message(r, &m) || m.type != wire::MsgType::kJoin) return 0;
  while (wire::next_message(r, &m)) n += m.type == wire::MsgType::kMember ? 1 : 0;
  return n;
}

std::vector<std::pair<NodeId, std::uint64_t>> view(Node& node) {
  std::vector<std::pair<NodeId, std::uint64_t>> v;
  for (const Member& m : node.members()) v.emplace_back(m.id, m.incarnation);
  std::sort(v.begin(), v.end());
  return v;
}

TEST(MemberDigest, ViewsThatDifferInAFewMembersConvergeWithoutWholeTables) {
  ManualTimeSource time{kStartMs};
  NodeConfig ca = config("a", 7000), cb = config("b", 7001);
  auto a = std::move(Node::create(ca, time)).value();
  auto b = std::move(Node::create(cb, time)).value();
  for (std::size_t i = 0; i < kShared + kOnlyA + kOnlyB; ++i) {
    const std::string name = "m-" + std::to_string(i);
    // Member 5 restarted: b has heard of its newer incarnation, a has not.
    if (i < kShared + kOnlyA) hold(*a, fake_id(i), name, fake_address(i), kStartMs - 10);
    if (i < kShared || i >= kShared + kOnlyA) {
      hold(*b, fake_id(i), name, fake_address(i), kStartMs - 10 + (i == 5 ? 1 : 0));
    }
  }
  hold(*a, b->id(), "b", cb.advertise, kStartMs);
  hold(*b, a->id(), "a", ca.advertise, kStartMs);

  std::deque<Datagram> queue;
  QueueSink sa, sb;
  sa.queue = sb.queue = &queue;
  NodeDriver& da = NodeDriver::of(*a);
  NodeDriver& db = NodeDriver::of(*b);
  da.start(sa);
  db.start(sb);
  suspect_shared(*a);
  suspect_shared(*b);
  queue.clear();  // the suspicions' gossip goes nowhere

  std::size_t records = 0, digests = 0;
  for (int step = 0; step < 3000 && view(*a) != view(*b); ++step) {
    time.advance(10);
    da.tick(sa);
    db.tick(sb);
    for (std::size_t hops = 0; !queue.empty() && hops < 10'000; ++hops) {
      Datagram d = std::move(queue.front());
      queue.pop_front();
      const bool to_a = d.to == ca.advertise, to_b = d.to == cb.advertise;
      if (!to_a && !to_b) continue;  // a fake member: nobody there
      records += table_records(d.bytes);
      wire::Reader r(d.bytes);
      wire::Header h;
      wire::Message m;
      if (wire::read_header(r, &h) == wire::HeaderError::kNone && wire::next_message(r, &m) &&
          m.type == wire::MsgType::kMemberDigest) {
        ++digests;
      }
      const ReceivedDatagram rd{to_a ? cb.advertise : ca.advertise, d.bytes};
      (to_a ? da : db).receive(0, std::span<const ReceivedDatagram>(&rd, 1), to_a ? sa : sb);
    }
  }
  const auto va = view(*a);
  EXPECT_EQ(va, view(*b));
  EXPECT_EQ(va.size(), kShared + kOnlyA + kOnlyB + 2);
  // Member 5 at its newer incarnation on both.
  const auto five = std::find_if(va.begin(), va.end(), [](const auto& p) { return p.first == fake_id(5); });
  ASSERT_NE(five, va.end());
  EXPECT_EQ(five->second, kStartMs - 9);
  EXPECT_GT(digests, 0u);
  std::printf("member records in table datagrams: %zu, digest datagrams: %zu\n", records, digests);
  // Whole-table push-pull sends both tables: 2 x 422 records per exchange. By digest, only the
  // ~41 buckets (of 128) that differ cross, about 3.5 members each, both ways.
  EXPECT_LT(records, kShared + kOnlyA) << "records sent: " << records;
  EXPECT_GT(records, kOnlyA + kOnlyB) << "each side sent at least what the other lacked";
  da.stop(sa);
  db.stop(sb);
}

}  // namespace
}  // namespace rumor
