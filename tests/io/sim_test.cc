// The simulated network's fault model and determinism. Every test names its seed in failure
// output (replay: RUMOR_SEED=<seed> ./io_sim_test --gtest_filter=...).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "harness.h"
#include "io/sim_network.h"

namespace rumor::io {
namespace {

using testing::payload;
using testing::test_seed;

#define TRACE_SEED(seed) SCOPED_TRACE("replay with RUMOR_SEED=" + std::to_string(seed))

Address node_address(std::uint32_t i) {
  // 10.x.y.z:7000, one per node.
  return Address::ipv4(0x0a000000u + i + 1, 7000);
}

SimConfig config_with(std::uint64_t seed, LinkConfig link = {}) {
  SimConfig c;
  c.seed = seed;
  c.link = link;
  return c;
}

std::vector<SimTransport*> add_nodes(SimNetwork& net, std::uint32_t n) {
  std::vector<SimTransport*> v;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto t = net.add_node(node_address(i));
    EXPECT_TRUE(t.is_ok());
    v.push_back(*t);
  }
  return v;
}

// Queues one datagram (index in its first four bytes) and flushes.
void send_one(SimTransport& from, const Address& to, std::uint32_t index, std::uint32_t len = 64) {
  Datagram d;
  ASSERT_EQ(from.acquire({&d, 1}), 1u);
  const auto p = payload(index, len);
  std::memcpy(d.data, p.data(), p.size());
  d.len = len;
  d.peer = to;
  ASSERT_TRUE(from.send({&d, 1}).is_ok());
  ASSERT_TRUE(from.flush().is_ok());
}

struct Arrival {
  std::uint32_t index;
  std::uint32_t len;
  std::uint64_t time_ns;
  Address peer;
};

// Drains a node's inbox, releasing buffers.
std::vector<Arrival> drain(SimTransport& t) {
  std::vector<Arrival> out;
  std::vector<Datagram> batch(64);
  for (int it = 0; it < 100000; ++it) {
    const std::size_t n = t.receive(batch);
    if (n == 0) break;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t index = 0;
      if (batch[i].len >= 4) std::memcpy(&index, batch[i].data, 4);
      out.push_back(Arrival{index, batch[i].len, batch[i].rx_time_ns, batch[i].peer});
    }
    t.release({batch.data(), n});
  }
  return out;
}

// Advances until nothing is in flight (bounded).
void run_until_idle(SimNetwork& net) {
  for (int it = 0; it < 1'000'000 && net.next_event_ns() != UINT64_MAX; ++it) {
    net.advance_to(net.next_event_ns());
  }
  ASSERT_EQ(net.in_flight(), 0u);
}

// A busy scenario with every fault on; returns the trace hash.
std::uint64_t chaotic_run(std::uint64_t seed, SimCounters* counters) {
  LinkConfig l;
  l.latency_ns = 2'000'000;
  l.jitter_ns = 3'000'000;
  l.loss = 0.1;
  l.duplicate = 0.05;
  l.reorder = 0.1;
  l.reorder_delay_ns = 10'000'000;
  l.bandwidth_bytes_per_s = 50'000'000;
  SimNetwork net(config_with(seed, l));
  auto nodes = add_nodes(net, 50);
  std::mt19937_64 pick(seed);  // the test's own choices also come from the seed
  for (int round = 0; round < 20; ++round) {
    for (std::uint32_t i = 0; i < nodes.size(); ++i) {
      const auto to = static_cast<std::uint32_t>(pick() % nodes.size());
      send_one(*nodes[i], node_address(to), round * 1000 + i,
               static_cast<std::uint32_t>(16 + pick() % 1000));
    }
    if (round == 10) net.partition(std::vector<NodeId>{0, 1, 2, 3, 4});
    if (round == 15) net.heal();
    net.advance_by(5'000'000);
    for (auto* n : nodes) drain(*n);
  }
  run_until_idle(net);
  for (auto* n : nodes) drain(*n);
  *counters = net.counters();
  return net.trace_hash();
}

TEST(SimNetwork, SameSeedSameRunDifferentSeedDifferentRun) {
  const std::uint64_t seed = test_seed(42);
  TRACE_SEED(seed);
  SimCounters c1, c2, c3;
  const std::uint64_t h1 = chaotic_run(seed, &c1);
  const std::uint64_t h2 = chaotic_run(seed, &c2);
  EXPECT_EQ(h1, h2);
  EXPECT_EQ(c1.delivered, c2.delivered);
  EXPECT_EQ(c1.drops, c2.drops);
  EXPECT_GT(c1.drop_count(DropReason::kLoss), 0u);
  EXPECT_GT(c1.drop_count(DropReason::kPartition), 0u);
  EXPECT_GT(c1.duplicated, 0u);
  EXPECT_GT(c1.reordered, 0u);
  const std::uint64_t h3 = chaotic_run(seed + 1, &c3);
  EXPECT_NE(h1, h3);
}

TEST(SimNetwork, LatencyIsExactWithoutJitter) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  LinkConfig l;
  l.latency_ns = 5'000'000;
  SimNetwork net(config_with(seed, l));
  auto n = add_nodes(net, 2);
  net.advance_to(1'000'000);
  send_one(*n[0], node_address(1), 1);
  net.advance_to(5'999'999);
  EXPECT_TRUE(drain(*n[1]).empty());
  net.advance_to(6'000'000);
  const auto got = drain(*n[1]);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].time_ns, 6'000'000u);
  EXPECT_EQ(got[0].peer, node_address(0));
}

TEST(SimNetwork, LossRateMatchesConfiguration) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  LinkConfig l;
  l.loss = 0.2;
  SimNetwork net(config_with(seed, l));
  auto n = add_nodes(net, 2);
  std::size_t got = 0;
  for (std::uint32_t i = 0; i < 10'000; ++i) {
    send_one(*n[0], node_address(1), i);
    if (i % 500 == 499) {
      run_until_idle(net);
      got += drain(*n[1]).size();
    }
  }
  // Binomial(10000, 0.8): standard deviation 40, so +-300 is beyond 7 sigma for any seed.
  EXPECT_GT(got, 7700u);
  EXPECT_LT(got, 8300u);
  EXPECT_EQ(net.counters().drop_count(DropReason::kLoss) + got, 10'000u);
}

TEST(SimNetwork, DuplicatesAreIdenticalCopies) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  LinkConfig l;
  l.duplicate = 0.5;
  l.jitter_ns = 1'000'000;
  SimNetwork net(config_with(seed, l));
  auto n = add_nodes(net, 2);
  for (std::uint32_t i = 0; i < 200; ++i) send_one(*n[0], node_address(1), i, 100);
  run_until_idle(net);
  std::vector<Datagram> batch(64);
  std::vector<int> seen(200, 0);
  std::size_t k = 0;
  for (int it = 0; it < 100; ++it) {
    const std::size_t got = n[1]->receive(batch);
    if (got == 0) break;
    for (std::size_t i = 0; i < got; ++i) {
      std::uint32_t index = 0;
      std::memcpy(&index, batch[i].data, 4);
      ASSERT_LT(index, 200u);
      ++seen[index];
      EXPECT_EQ(std::vector<std::byte>(batch[i].data, batch[i].data + batch[i].len),
                payload(index, 100));
    }
    n[1]->release({batch.data(), got});
    k += got;
  }
  EXPECT_EQ(k, 200u + net.counters().duplicated);
  EXPECT_GT(net.counters().duplicated, 60u);
  for (int s : seen) EXPECT_GE(s, 1);
}

TEST(SimNetwork, JitterAndReorderingChangeOrderButLoseNothing) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  for (const bool faulty : {false, true}) {
    LinkConfig l;
    if (faulty) {
      l.jitter_ns = 2'000'000;
      l.reorder = 0.2;
      l.reorder_delay_ns = 5'000'000;
    }
    SimNetwork net(config_with(seed, l));
    auto n = add_nodes(net, 2);
    for (std::uint32_t i = 0; i < 100; ++i) send_one(*n[0], node_address(1), i);
    run_until_idle(net);
    const auto got = drain(*n[1]);
    ASSERT_EQ(got.size(), 100u);
    const bool in_order = std::is_sorted(got.begin(), got.end(), [](auto& a, auto& b) {
      return a.index < b.index;
    });
    EXPECT_EQ(in_order, !faulty);
    EXPECT_TRUE(std::is_sorted(got.begin(), got.end(),
                               [](auto& a, auto& b) { return a.time_ns < b.time_ns; }));
  }
}

TEST(SimNetwork, BandwidthCapSerialisesTheUplink) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  LinkConfig l;
  l.latency_ns = 1'000'000;
  l.bandwidth_bytes_per_s = 1'000'000;  // 1 MB/s: a 972 + 28 byte datagram takes 1 ms
  SimNetwork net(config_with(seed, l));
  auto n = add_nodes(net, 2);
  for (std::uint32_t i = 0; i < 50; ++i) send_one(*n[0], node_address(1), i, 972);
  run_until_idle(net);
  const auto got = drain(*n[1]);
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got.front().time_ns, 2'000'000u);   // 1 ms on the wire + 1 ms latency
  EXPECT_EQ(got.back().time_ns, 51'000'000u);   // the 50th waits for 49 before it
}

TEST(SimNetwork, UplinkBacklogBeyondItsBoundIsDropped) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimConfig c = config_with(seed);
  c.link.bandwidth_bytes_per_s = 1'000'000;
  c.uplink_queue_ns_max = 10'000'000;  // 10 ms of backlog
  SimNetwork net(c);
  auto n = add_nodes(net, 2);
  for (std::uint32_t i = 0; i < 50; ++i) send_one(*n[0], node_address(1), i, 972);
  run_until_idle(net);
  const std::size_t got = drain(*n[1]).size();
  EXPECT_GE(got, 10u);
  EXPECT_LE(got, 12u);
  EXPECT_EQ(net.counters().drop_count(DropReason::kUplinkFull), 50u - got);
}

TEST(SimNetwork, SymmetricPartitionAndHeal) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 3);
  net.partition(std::vector<NodeId>{0});
  send_one(*n[0], node_address(1), 1);
  send_one(*n[1], node_address(0), 2);
  send_one(*n[1], node_address(2), 3);  // same side: unaffected
  run_until_idle(net);
  EXPECT_TRUE(drain(*n[0]).empty());
  EXPECT_TRUE(drain(*n[1]).empty());
  EXPECT_EQ(drain(*n[2]).size(), 1u);
  EXPECT_EQ(net.counters().drop_count(DropReason::kPartition), 2u);
  net.heal();
  send_one(*n[0], node_address(1), 4);
  run_until_idle(net);
  EXPECT_EQ(drain(*n[1]).size(), 1u);
}

TEST(SimNetwork, OneWayCuts) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 4);
  net.cut(0, 1);
  send_one(*n[0], node_address(1), 1);
  send_one(*n[1], node_address(0), 2);
  // Group-level: group 1 = {2}, group 0 cannot reach it, it can reach group 0.
  net.set_group(2, 1);
  net.cut_groups(0, 1);
  send_one(*n[3], node_address(2), 3);
  send_one(*n[2], node_address(3), 4);
  run_until_idle(net);
  EXPECT_TRUE(drain(*n[1]).empty());
  EXPECT_EQ(drain(*n[0]).size(), 1u);
  EXPECT_TRUE(drain(*n[2]).empty());
  EXPECT_EQ(drain(*n[3]).size(), 1u);
}

TEST(SimNetwork, DatagramInFlightIsLostWhenTheLinkIsCut) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 2);
  send_one(*n[0], node_address(1), 1);
  net.cut(0, 1);
  run_until_idle(net);
  EXPECT_TRUE(drain(*n[1]).empty());
  EXPECT_EQ(net.counters().drop_count(DropReason::kPartition), 1u);
}

TEST(SimNetwork, PausedNodeNeitherSendsNorReceivesUntilResumed) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 2);
  net.pause(1);
  send_one(*n[0], node_address(1), 1);
  send_one(*n[1], node_address(0), 2);  // queued, held by the pause
  run_until_idle(net);
  EXPECT_TRUE(drain(*n[1]).empty());
  EXPECT_EQ(n[1]->inbox_size(), 1u);
  EXPECT_TRUE(drain(*n[0]).empty());
  net.resume(1);
  ASSERT_TRUE(n[1]->flush().is_ok());
  run_until_idle(net);
  EXPECT_EQ(drain(*n[1]).size(), 1u);
  EXPECT_EQ(drain(*n[0]).size(), 1u);
}

TEST(SimNetwork, InboxIsBoundedLikeASocketBuffer) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimConfig c = config_with(seed);
  c.inbox_datagrams_max = 10;
  SimNetwork net(c);
  auto n = add_nodes(net, 2);
  for (std::uint32_t i = 0; i < 25; ++i) send_one(*n[0], node_address(1), i);
  run_until_idle(net);
  EXPECT_EQ(drain(*n[1]).size(), 10u);
  EXPECT_EQ(n[1]->counters().drop_count(DropReason::kInboxFull), 15u);
}

TEST(SimNetwork, UnknownDestinationIsDroppedQuietly) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 1);
  send_one(*n[0], node_address(99), 1);
  run_until_idle(net);
  EXPECT_EQ(net.counters().drop_count(DropReason::kNoRoute), 1u);
  EXPECT_EQ(n[0]->counters().datagrams_sent, 1u);  // like UDP: the sender cannot tell
}

TEST(SimNetwork, LinkOverrideAppliesToOneDirection) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));  // default latency 1 ms
  auto n = add_nodes(net, 2);
  LinkConfig slow;
  slow.latency_ns = 50'000'000;
  net.set_link(0, 1, slow);
  send_one(*n[0], node_address(1), 1);
  send_one(*n[1], node_address(0), 2);
  run_until_idle(net);
  const auto at1 = drain(*n[1]);
  const auto at0 = drain(*n[0]);
  ASSERT_EQ(at1.size(), 1u);
  ASSERT_EQ(at0.size(), 1u);
  EXPECT_EQ(at1[0].time_ns, 50'000'000u);
  EXPECT_EQ(at0[0].time_ns, 1'000'000u);
}

TEST(SimNetwork, BuffersAreRecycled) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  SimNetwork net(config_with(seed));
  auto n = add_nodes(net, 2);
  for (int round = 0; round < 100; ++round) {
    for (std::uint32_t i = 0; i < 100; ++i) send_one(*n[0], node_address(1), i);
    run_until_idle(net);
    ASSERT_EQ(drain(*n[1]).size(), 100u);
  }
  // 10,000 datagrams went through; the pool never needed more than one round's worth.
  EXPECT_LE(net.buffers_allocated(), 256u);
}

TEST(SimNetwork, TenThousandNodesInOneProcess) {
  const std::uint64_t seed = test_seed();
  TRACE_SEED(seed);
  constexpr std::uint32_t kNodes = 10'000;
  LinkConfig l;
  l.latency_ns = 500'000;
  l.jitter_ns = 1'000'000;
  l.loss = 0.01;
  SimNetwork net(config_with(seed, l));
  auto nodes = add_nodes(net, kNodes);
  static_assert(sizeof(SimTransport) <= 512, "a simulated node stays small");
  std::vector<NodeId> ready;
  std::uint64_t received = 0;
  std::vector<Datagram> batch(16);
  std::mt19937_64 pick(seed);
  for (int round = 0; round < 5; ++round) {
    // Each node gossips to three random peers per round.
    for (std::uint32_t i = 0; i < kNodes; ++i) {
      std::vector<Datagram> out(3);
      ASSERT_EQ(nodes[i]->acquire(out), 3u);
      for (auto& d : out) {
        d.len = 64;
        std::memset(d.data, 0x5a, 64);
        d.peer = node_address(static_cast<std::uint32_t>(pick() % kNodes));
      }
      ASSERT_TRUE(nodes[i]->send(out).is_ok());
      ASSERT_TRUE(nodes[i]->flush().is_ok());
    }
    // Deliver, stepping only nodes that have something to read.
    for (int it = 0; it < 100'000 && net.next_event_ns() != UINT64_MAX; ++it) {
      net.advance_to(net.next_event_ns());
      ready.clear();
      net.take_ready(&ready);
      for (NodeId id : ready) {
        for (int k = 0; k < 100; ++k) {
          const std::size_t got = nodes[id]->receive(batch);
          if (got == 0) break;
          received += got;
          nodes[id]->release({batch.data(), got});
        }
      }
    }
  }
  const std::uint64_t sent = 5ull * kNodes * 3;
  EXPECT_EQ(received + net.counters().drop_count(DropReason::kLoss), sent);
  EXPECT_GT(received, sent * 95 / 100);
  // The whole network, nodes and pools, stays within a few MiB per 10,000 nodes.
  const std::size_t bytes = net.memory_bytes();
  RecordProperty("memory_bytes", std::to_string(bytes));
  EXPECT_LT(bytes, 128u << 20) << bytes;
  EXPECT_LT(net.memory_bytes() - net.buffers_allocated() * kDatagramBytesDefault,
            kNodes * 1024u)
      << "per-node overhead beyond datagram buffers";
}

TEST(SimNetworkDeathTest, ReleasingTwiceAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SimNetwork net(config_with(1));
  auto n = add_nodes(net, 2);
  send_one(*n[0], node_address(1), 1);
  run_until_idle(net);
  Datagram d;
  ASSERT_EQ(n[1]->receive({&d, 1}), 1u);
  n[1]->release({&d, 1});
  EXPECT_DEATH(n[1]->release({&d, 1}), "assertion failed");
}

}  // namespace
}  // namespace rumor::io
