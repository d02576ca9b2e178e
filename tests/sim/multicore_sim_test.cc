// Nodes whose shards are spread over several owner cores (store.owners > 1), on the simulator:
// the cores of a node run on the simulator's one thread in a fixed order, so these runs replay
// from their seed like every other simulation. They check the cross-core paths the reactor
// uses on real threads: entries merged on a core that does not own them are handed to the
// owner, every core reconciles its own shards (with peers of any core count), and every core's
// changes reach core 0's rumor mongering.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/node/internal.h"
#include "tests/sim/sim_test_util.h"

namespace rumor {
namespace {

using simtest::membership_complete;
using simtest::seeds;
using simtest::WriteLog;

SimCluster::Options opts(std::vector<std::uint32_t> cores, std::uint64_t seed) {
  SimCluster::Options o = simtest::opts(cores.size(), seed);
  o.cores = std::move(cores);
  return o;
}

// Every node holds exactly `n` live keys under `prefix`.
bool all_hold(SimCluster& c, std::size_t n, std::string_view prefix = "key-") {
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c.node(i).scan_prefix(prefix).size() != n) return false;
  }
  return true;
}

TEST(MultiCoreSim, MixedCoreCountsConvergeByGossip) {
  for (std::uint64_t seed : seeds(3, 2000)) {
    SEED_TRACE(seed);
    // 2-core nodes next to 1-, 3- and 4-core ones: a peer's shards map to different cores.
    SimCluster c(opts({2, 1, 2, 3, 1, 4}, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    constexpr int kKeys = 600;
    WriteLog log;
    for (int k = 0; k < kKeys; ++k) {
      ASSERT_TRUE(
          log.set(c, k % c.size(), "key-" + std::to_string(k), "value-" + std::to_string(k)));
    }
    ASSERT_TRUE(c.run_until([&] { return all_hold(c, kKeys); }, 30'000, 20));
    // Every key on every node at the version its write got (whatever core owns it there).
    EXPECT_TRUE(log.all_hold_winners(c));
    // Deletes travel the same way: every node ends with each deleted key's tombstone, at the
    // delete's version (higher than the write's), and the rest untouched.
    for (int k = 0; k < kKeys; k += 2) ASSERT_TRUE(log.del(c, 0, "key-" + std::to_string(k)));
    ASSERT_TRUE(c.run_until([&] { return all_hold(c, kKeys / 2); }, 30'000, 20));
    EXPECT_TRUE(log.all_hold_winners(c));
    // Core 0 of a 2-core node received entries for core 1's shards and handed them over.
    EXPECT_GT(c.node(0).counters().core_handoffs, 0u);
    EXPECT_EQ(c.node(0).counters().core_handoff_drops, 0u);
    for (std::size_t i = 0; i < c.size(); ++i) {
      const StoreCounters sc = NodeInternals::store(c.node(i)).counters();
      EXPECT_EQ(sc.write_queue_full, 0u);
    }
  }
}

TEST(MultiCoreSim, MultiCoreLateJoinerCatchesUpByAntiEntropyOnEveryCore) {
  for (std::uint64_t seed : seeds(2, 2000)) {
    SEED_TRACE(seed);
    SimCluster c(opts({1, 2, 3, 2}, seed));
    for (std::size_t i = 0; i < 3; ++i) c.start(i);
    ASSERT_TRUE(c.run_until([&] {
      for (std::size_t i = 0; i < 3; ++i) {
        if (NodeDriver::of(c.node(i)).live_members() != 2) return false;
      }
      return true;
    }, 5'000));
    constexpr int kKeys = 5'000;
    WriteLog log;
    for (int k = 0; k < kKeys; ++k) {
      ASSERT_TRUE(log.set(c, k % 3, "key-" + std::to_string(k), "value-" + std::to_string(k)));
    }
    // Rumor mongering finishes among the three, so the newcomer can only get keys by syncing.
    c.run_for(20'000);
    c.start(3);
    ASSERT_TRUE(c.run_until([&] { return c.node(3).scan_prefix("key-").size() == kKeys; },
                            30'000, 50));
    // Both of the newcomer's cores ran sessions, and they completed.
    const NodeCounters nc = c.node(3).counters();
    std::printf("joiner: syncs started %llu completed %llu entries recv %llu handoffs %llu merged %llu\n", (unsigned long long)nc.syncs_started, (unsigned long long)nc.syncs_completed, (unsigned long long)nc.sync_entries_received, (unsigned long long)nc.core_handoffs, (unsigned long long)nc.updates_merged);
    EXPECT_GE(nc.syncs_completed, 2u);
    EXPECT_GT(nc.sync_entries_received, 0u);
    // Every key, on every node, at the version it was written with.
    EXPECT_TRUE(log.all_hold_winners(c));
  }
}

TEST(MultiCoreSim, EveryCoreSpreadsItsOwnShardsChanges) {
  for (std::uint64_t seed : seeds(2, 2000)) {
    SEED_TRACE(seed);
    SimCluster c(opts({2, 2, 2, 1, 3}, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    constexpr int kKeys = 300;
    WriteLog log;
    for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(log.set(c, 0, "key-" + std::to_string(k), "v"));
    // Rumor mongering reaches nearly every node (each copy is sent 4 log10(N + 1) times per
    // node, so a few keys miss a node); anti-entropy, on every core, repairs the rest.
    c.run_for(5'000);
    std::size_t held = 0;
    for (std::size_t i = 0; i < c.size(); ++i) held += c.node(i).scan_prefix("key-").size();
    EXPECT_GE(held, c.size() * kKeys * 97 / 100);
    ASSERT_TRUE(c.run_until([&] { return all_hold(c, kKeys); }, 30'000, 20));
    EXPECT_TRUE(log.all_hold_winners(c));
    // The writer's core 1 queued and sent its own shards' changes; core 0 queued only its own.
    std::uint64_t on_core1 = 0;
    const Store& st = NodeInternals::store(c.node(0));
    for (int k = 0; k < kKeys; ++k) {
      if (st.owner_of_shard(st.shard_of("key-" + std::to_string(k))) == 1) ++on_core1;
    }
    const NodeCounters k0 = NodeInternals::core_counters(c.node(0), 0);
    const NodeCounters k1 = NodeInternals::core_counters(c.node(0), 1);
    EXPECT_GE(k1.broadcasts_queued, on_core1);
    EXPECT_GT(k1.broadcasts_sent, 0u);
    EXPECT_LT(k0.broadcasts_queued, kKeys - on_core1 + 100) << "core 0 queued core 1's changes";
  }
}

TEST(MultiCoreSim, SubscriptionsOnCoreZeroSeeChangesOfEveryCore) {
  SimCluster c(opts({1, 2}, 5));
  std::vector<std::string> seen;
  c.node(1).subscribe("sub-", [&](const Change& ch) { seen.push_back(ch.key); });
  std::vector<std::pair<std::string, Version>> order;
  c.node(1).subscribe("ord-", [&](const Change& ch) { order.emplace_back(ch.key, ch.version); });
  c.start_all();
  ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 5'000));
  constexpr int kKeys = 64;  // over every virtual shard's neighbourhood: both cores own some
  for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(c.node(0).set("sub-" + std::to_string(k), "x").is_ok());
  ASSERT_TRUE(c.run_until([&] { return seen.size() >= kKeys; }, 10'000));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end()) << "a change delivered twice";
  std::size_t on_core1 = 0;
  const Store& st = NodeInternals::store(c.node(1));
  for (int k = 0; k < kKeys; ++k) {
    if (st.owner_of_shard(st.shard_of("sub-" + std::to_string(k))) == 1) ++on_core1;
  }
  EXPECT_GT(on_core1, 0u);

  // Each key's changes reach the callbacks in the order of their versions, whichever core
  // applied them and whether they were written here or merged from the other node.
  for (int round = 0; round < 30; ++round) {
    for (int k = 0; k < 8; ++k) {
      ASSERT_TRUE(c.node(round % 2).set("ord-" + std::to_string(k), std::to_string(round)).is_ok());
    }
    c.run_for(round % 3 == 0 ? 50 : 1);
  }
  c.run_for(3'000);
  std::map<std::string, Version> last;
  std::set<std::string> seen_on_core1;
  for (const auto& [key, v] : order) {
    auto [it, fresh] = last.emplace(key, v);
    if (!fresh) {
      EXPECT_LT(it->second, v) << key << ": a change delivered after a newer one";
      it->second = v;
    }
    if (st.owner_of_shard(st.shard_of(key)) == 1) seen_on_core1.insert(key);
  }
  EXPECT_EQ(last.size(), 8u);
  EXPECT_GT(seen_on_core1.size(), 0u);
  EXPECT_GT(order.size(), 8u * 10);
  // Every key ends at the version the node holds.
  for (const auto& [key, v] : last) EXPECT_EQ(v, c.node(1).get_entry(key)->version) << key;
}

TEST(MultiCoreSim, ReplaysExactlyFromItsSeed) {
  auto run = [](std::uint64_t seed) {
    SimCluster::Options o = opts({2, 1, 3, 2, 1, 2, 4, 1}, seed);
    o.net.link.loss = 0.05;
    SimCluster c(o);
    c.start_all();
    c.run_for(2'000);
    for (int k = 0; k < 200; ++k) (void)c.node(k % 8).set("k" + std::to_string(k), "v");
    c.run_for(4'000);
    return std::make_pair(c.net().trace_hash(), c.events());
  };
  EXPECT_EQ(run(77), run(77));
  EXPECT_NE(run(77), run(78));
}

}  // namespace
}  // namespace rumor
