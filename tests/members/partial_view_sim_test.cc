// Partial views (membership = partial; docs/protocol.md "Partial views") in the simulator:
// HyParView forms a connected overlay with bounded views, Plumtree spreads updates along it and
// settles into a tree, and with loss and crashed nodes every live node still converges (tree
// repair plus anti-entropy). Every test runs over several seeds; a failure prints its seed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "engine/members/hyparview.h"
#include "engine/node/internal.h"
#include "tests/sim/sim_test_util.h"

namespace rumor {
namespace {

using simtest::opts;

SimCluster::Options partial_opts(std::size_t n, std::uint64_t seed) {
  SimCluster::Options o = opts(n, seed);
  o.node.membership = Membership::kPartial;
  o.node.expected_nodes = static_cast<std::uint32_t>(n);
  return o;
}

std::size_t active_of(SimCluster& c, std::size_t i) {
  return NodeDriver::of(c.node(i)).live_members();
}

// Every running node has at least `k` active peers.
bool views_formed(SimCluster& c, std::size_t k) {
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!c.crashed(i) && active_of(c, i) < k) return false;
  }
  return true;
}

std::size_t holding(SimCluster& c, const std::string& key, const std::string& value) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c.crashed(i)) continue;
    auto v = c.node(i).get(key);
    n += v && *v == value ? 1 : 0;
  }
  return n;
}

std::size_t running(SimCluster& c) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < c.size(); ++i) n += c.crashed(i) ? 0 : 1;
  return n;
}

std::uint64_t sum(SimCluster& c, std::uint64_t NodeCounters::*field) {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!c.crashed(i)) s += c.node(i).counters().*field;
  }
  return s;
}

TEST(PartialViews, FormBoundedViewsAndConvergeWithinTheBound) {
  constexpr std::size_t kN = 500;
  for (std::uint64_t seed : simtest::seeds(3)) {
    SEED_TRACE(seed);
    SimCluster c(partial_opts(kN, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return views_formed(c, 2); }, 30'000));
    c.run_for(2'000);
    const std::size_t active_max = HyParView::active_size_for(kN);
    for (std::size_t i = 0; i < kN; ++i) {
      const NodeCounters k = c.node(i).counters();
      EXPECT_GE(k.view_active, 1u) << "node " << i;
      EXPECT_LE(k.view_active, active_max) << "node " << i;
      EXPECT_LE(k.view_passive, 30u) << "node " << i;
      // members(): this node and its two views, never the cluster.
      EXPECT_EQ(c.node(i).members().size(), 1 + k.view_active + k.view_passive);
    }
    // One update reaches every node within ceil(log2 N) + ceil(ln N) + 3 gossip rounds.
    const double bound_rounds =
        std::ceil(std::log2(double(kN))) + std::ceil(std::log(double(kN))) + 3;
    const std::uint64_t round_ms = c.node(0).config().gossip_interval_ms;
    ASSERT_TRUE(c.node(7).set("service_version", "v1.2.4"));
    const std::uint64_t t0 = c.now_ms();
    ASSERT_TRUE(c.run_until([&] { return holding(c, "service_version", "v1.2.4") == kN; },
                            60'000, 5));
    const double rounds = double(c.now_ms() - t0) / double(round_ms);
    EXPECT_LE(rounds, bound_rounds);
  }
}

TEST(PartialViews, TheTreeSettlesToAboutOneCopyPerNode) {
  constexpr std::size_t kN = 400;
  for (std::uint64_t seed : simtest::seeds(3)) {
    SEED_TRACE(seed);
    SimCluster c(partial_opts(kN, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return views_formed(c, 2); }, 30'000));
    c.run_for(3'000);
    // The first updates flood and prune the tree into shape.
    for (int u = 0; u < 5; ++u) {
      const std::string v = "warm-" + std::to_string(u);
      ASSERT_TRUE(c.node(u * 13 % kN).set("k", v));
      ASSERT_TRUE(c.run_until([&] { return holding(c, "k", v) == kN; }, 30'000, 5));
      c.run_for(500);
    }
    const std::uint64_t before = sum(c, &NodeCounters::tree_payloads_sent);
    const std::uint64_t dups = sum(c, &NodeCounters::tree_duplicates);
    constexpr int kUpdates = 20;
    for (int u = 0; u < kUpdates; ++u) {
      const std::string v = "v" + std::to_string(u);
      ASSERT_TRUE(c.node(u * 37 % kN).set("k", v));
      ASSERT_TRUE(c.run_until([&] { return holding(c, "k", v) == kN; }, 30'000, 5));
      c.run_for(500);
    }
    const double copies =
        double(sum(c, &NodeCounters::tree_payloads_sent) - before) / double(kN * kUpdates);
    EXPECT_LE(copies, 1.5) << "payload copies per node per update";
    std::printf("seed %llu: %.3f payload copies per node per update, %llu duplicates\n",
                static_cast<unsigned long long>(seed), copies,
                static_cast<unsigned long long>(sum(c, &NodeCounters::tree_duplicates) - dups));
    EXPECT_GT(sum(c, &NodeCounters::tree_prunes), 0u);
  }
}

TEST(PartialViews, EveryLiveNodeConvergesWithLossAndFivePercentCrashed) {
  constexpr std::size_t kN = 400;
  for (std::uint64_t seed : simtest::seeds(20)) {
    SEED_TRACE(seed);
    SimCluster::Options o = partial_opts(kN, seed);
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return views_formed(c, 2); }, 30'000));
    c.run_for(2'000);
    ASSERT_TRUE(c.node(1).set("warm", "1"));
    ASSERT_TRUE(c.run_until([&] { return holding(c, "warm", "1") == kN; }, 30'000));
    // 10% loss, and 5% of the nodes crash at once (never node 0, the seed, nor the writers).
    io::LinkConfig link = c.net().config().link;
    link.loss = 0.10;
    c.net().set_default_link(link);
    Rng pick(seed);
    std::size_t crashed = 0;
    while (crashed < kN / 20) {
      const std::size_t i = 3 + pick.below(kN - 3);
      if (c.crashed(i)) continue;
      c.crash(i);
      ++crashed;
    }
    for (int u = 0; u < 5; ++u) {
      ASSERT_TRUE(c.node(1 + u % 2).set("key-" + std::to_string(u), "value"));
      c.run_for(100);
    }
    const std::size_t up = running(c);
    const bool ok = c.run_until(
        [&] {
          for (int u = 0; u < 5; ++u) {
            if (holding(c, "key-" + std::to_string(u), "value") != up) return false;
          }
          return true;
        },
        120'000, 50);
    EXPECT_TRUE(ok) << "every live node holds every update";
    // Crashed peers leave every active view within view_failure_probes + 2 probe intervals.
    const NodeConfig& cfg = c.node(0).config();
    c.run_for(std::uint64_t{cfg.view_failure_probes + 2} * cfg.probe_interval_ms);
    EXPECT_GT(sum(c, &NodeCounters::view_failures), 0u);
    std::set<NodeId> dead;
    for (std::size_t i = 0; i < kN; ++i) {
      if (c.crashed(i)) dead.insert(c.node(i).id());
    }
    for (std::size_t i = 0; i < kN; ++i) {
      if (c.crashed(i)) continue;
      const std::vector<Member> view = c.node(i).members();  // self, active..., passive...
      const std::size_t active = c.node(i).counters().view_active;
      EXPECT_GE(active, 1u) << "node " << i;
      for (std::size_t j = 1; j <= active && j < view.size(); ++j) {
        EXPECT_FALSE(dead.contains(view[j].id)) << "node " << i << " still links a crashed node";
      }
    }
  }
}

TEST(PartialViews, ReplaysExactlyFromItsSeed) {
  auto run = [](std::uint64_t seed) {
    SimCluster c(partial_opts(100, seed));
    c.start_all();
    c.run_for(3'000);
    EXPECT_TRUE(c.node(3).set("a", "b"));
    c.run_for(2'000);
    return std::make_pair(c.events(), sum(c, &NodeCounters::packets_sent));
  };
  EXPECT_EQ(run(5), run(5));
}

}  // namespace
}  // namespace rumor
