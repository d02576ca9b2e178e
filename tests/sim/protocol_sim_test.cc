// The protocol, end to end, on the simulator. Every test runs over several seeds; a failure
// names the seed, and RUMOR_SIM_SEED=<seed> replays just that one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "engine/sim/sim_cluster.h"
#include "rumor/driver.h"
#include "tests/sim/sim_test_util.h"

namespace rumor {
namespace {

using simtest::seeds;
using simtest::WriteLog;

std::size_t count_state(SimCluster& c, std::size_t observer, NodeId about, MemberState st) {
  for (const Member& m : c.node(observer).members()) {
    if (m.id == about) return m.state == st ? 1 : 0;
  }
  return 0;
}

using simtest::membership_complete;

// The probe-comparison counters, summed over the cluster.
NodeCounters probe_sums(SimCluster& c) {
  return simtest::sum_counters(c, &NodeCounters::syncs_started, &NodeCounters::syncs_skipped,
                               &NodeCounters::state_sums_differ);
}

using simtest::opts;

// The seed example (README): three servers hold service_version = v1.2.3; server 1 sets
// v1.2.4; within a few gossip rounds all hold it (its value and version: the highest written).
// With server 2 dead, server 3 still gets it.
TEST(ProtocolSim, SeedExample) {
  for (std::uint64_t seed : seeds(5)) {
    SEED_TRACE(seed);
    SimCluster c(opts(3, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 5'000));
    WriteLog log;
    ASSERT_TRUE(log.set(c, 0, "service_version", "v1.2.3"));
    ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 2'000))
        << log.all_hold_winners(c).message();
    const std::uint64_t round_ms = c.node(0).config().gossip_interval_ms;
    const std::uint64_t t0 = c.now_ms();
    ASSERT_TRUE(log.set(c, 0, "service_version", "v1.2.4"));
    ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 2'000, 1))
        << log.all_hold_winners(c).message();
    EXPECT_LE(c.now_ms() - t0, 4 * round_ms) << "took more than a few gossip rounds";

    c.crash(1);
    ASSERT_TRUE(log.set(c, 0, "service_version", "v1.2.5"));
    ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 2'000))
        << log.all_hold_winners(c).message();
    EXPECT_EQ(c.node(1).get("service_version").value_or(""), "v1.2.4");  // it is gone
  }
}

// Convergence: 1,000 nodes, one update; with no loss every node has it within
// ceil(log2 N) + ceil(ln N) + 3 gossip rounds (Demers et al.'s push-pull bound); with 10% and
// 30% loss every node still gets it. The cluster forms on a clean network first; then the
// network turns lossy and a fresh update is written for each loss level.
TEST(ProtocolSim, ThousandNodesConvergeWithinTheBoundAndUnderLoss) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    const std::size_t n = 1000;
    SimCluster::Options o = opts(n, seed);
    o.seeds = 3;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 120'000, 100))
        << "membership did not converge";
    const std::uint64_t round_ms = c.node(0).config().gossip_interval_ms;
    const double bound = std::ceil(std::log2(n)) + std::ceil(std::log(n)) + 3;
    WriteLog log;
    for (double loss : {0.0, 0.10, 0.30}) {
      io::LinkConfig link = o.net.link;
      link.loss = loss;
      c.net().set_default_link(link);
      const std::string value = "v-" + std::to_string(static_cast<int>(loss * 100));
      const std::size_t writer = static_cast<std::size_t>(loss * 1000) % n;
      const std::uint64_t t0 = c.now_ms();
      ASSERT_TRUE(log.set(c, writer, "service_version", value));
      ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 60'000, round_ms / 5))
          << "not every node received the update at loss " << loss << ": "
          << log.all_hold_winners(c).message();
      const double rounds = static_cast<double>(c.now_ms() - t0) / static_cast<double>(round_ms);
      std::printf("N=%zu loss=%2.0f%% seed=%llu: every node after %.1f gossip rounds (bound %.0f)\n",
                  n, loss * 100, static_cast<unsigned long long>(seed), rounds, bound);
      if (loss == 0.0) {
        EXPECT_LE(rounds, bound);
      }
    }
  }
}

// Concurrent writes of one key on many nodes (with skewed clocks) end with the same winner
// everywhere, and that winner is the write with the highest version.
TEST(ProtocolSim, ConcurrentWritesPickOneWinnerEverywhere) {
  for (std::uint64_t seed : seeds(5)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(20, seed);
    for (std::size_t i = 0; i < 20; ++i) o.skew_ms.push_back(static_cast<std::int64_t>(i % 7) * 13 - 40);
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    WriteLog log;
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(log.set(c, i, "leader", "node-" + std::to_string(i)));
    }
    auto agree = [&] {
      auto first = c.node(0).get_entry("leader");
      if (!first) return false;
      for (std::size_t i = 1; i < c.size(); ++i) {
        auto e = c.node(i).get_entry("leader");
        if (!e || e->version != first->version || e->value != first->value) return false;
      }
      return true;
    };
    ASSERT_TRUE(c.run_until(agree, 10'000));
    EXPECT_TRUE(log.all_hold_winners(c));
  }
}

// A partition into halves with writes on both sides; after healing, every node holds the LWW
// result of all accepted writes (for each key, the write with the highest version): nothing
// accepted is lost.
TEST(ProtocolSim, PartitionHealsWithoutLosingAcceptedWrites) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(16, seed);
    o.seeds = 2;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    std::vector<io::NodeId> side;
    for (std::size_t i = 0; i < 8; ++i) side.push_back(c.net_id(i));
    c.net().partition(side);
    // Both sides write: distinct keys, and one key both sides write (the later write wins).
    WriteLog log;
    for (std::size_t i = 0; i < 16; ++i) {
      ASSERT_TRUE(log.set(c, i, "k-" + std::to_string(i), "from-" + std::to_string(i)));
    }
    ASSERT_TRUE(log.set(c, 3, "shared", "left-side"));
    c.run_for(5);
    ASSERT_TRUE(log.set(c, 12, "shared", "right-side"));  // later: it must win
    EXPECT_EQ(log.winner("shared").value, "right-side") << "a later write got a lower version";
    c.run_for(8'000);  // long enough for each side to declare the other dead
    c.net().heal();
    auto healed = [&] { return log.all_hold_winners(c) && membership_complete(c); };
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 60'000, 50)) << "membership";
    ASSERT_TRUE(c.run_until(healed, 60'000, 50)) << log.all_hold_winners(c).message();
  }
}

// A crashed node is declared dead by every other node within the SWIM bound: first probe
// (at most a probe interval, plus the probe) + the longest suspicion + dissemination.
TEST(ProtocolSim, CrashIsDetectedByEveryNodeWithinTheBound) {
  for (std::uint64_t seed : seeds(5)) {
    SEED_TRACE(seed);
    const std::size_t n = 32;
    SimCluster c(opts(n, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    const NodeConfig& cfg = c.node(0).config();
    const double min_susp = cfg.suspicion_mult * std::max(1.0, std::log10(double(n))) *
                            cfg.probe_interval_ms;
    const std::uint64_t bound =
        2 * cfg.probe_interval_ms +
        static_cast<std::uint64_t>(cfg.suspicion_max_timeout_mult * min_susp) +
        (static_cast<std::uint64_t>(std::ceil(std::log2(n))) + 3) * cfg.gossip_interval_ms;
    const NodeId victim = c.node(7).id();
    c.crash(7);
    const std::uint64_t t0 = c.now_ms();
    auto everyone_knows = [&] {
      for (std::size_t i = 0; i < n; ++i) {
        if (i == 7) continue;
        if (!count_state(c, i, victim, MemberState::kDead)) return false;
      }
      return true;
    };
    ASSERT_TRUE(c.run_until(everyone_knows, 3 * bound, 10));
    EXPECT_LE(c.now_ms() - t0, bound);
    std::printf("seed %llu: crash known to all %zu nodes after %llu ms (bound %llu ms)\n",
                static_cast<unsigned long long>(seed), n - 1,
                static_cast<unsigned long long>(c.now_ms() - t0),
                static_cast<unsigned long long>(bound));
  }
}

// With 10% loss and one node paused for a few probe intervals, no node is ever declared dead,
// over many seeds (Lifeguard: the slow node stretches its own timeouts and refutes).
TEST(ProtocolSim, NoFalsePositivesUnderLossAndAPause) {
  std::uint64_t declared = 0;
  for (std::uint64_t seed : seeds(10)) {
    SEED_TRACE(seed);
    const std::size_t n = 24;
    SimCluster::Options o = opts(n, seed);
    o.net.link.loss = 0.10;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 20'000));
    const std::uint64_t interval = c.node(0).config().probe_interval_ms;
    std::uint64_t before = 0;
    for (std::size_t i = 0; i < n; ++i) before += c.node(i).counters().deaths_declared;
    c.run_for(5 * interval);
    c.pause(5);
    c.run_for(3 * interval);
    c.resume(5);
    c.run_for(40 * interval);
    std::uint64_t after = 0;
    for (std::size_t i = 0; i < n; ++i) after += c.node(i).counters().deaths_declared;
    EXPECT_EQ(after, before) << "a healthy node was declared dead";
    declared += after - before;
    EXPECT_TRUE(membership_complete(c));
  }
  EXPECT_EQ(declared, 0u);
}

// Every node stalls at once for a little longer than a probe interval (a host's VM paused, a
// long GC in an embedder running several nodes), then runs late: its probe's direct and
// indirect stages are both overdue at the first tick. The indirect probes it sends then must
// get their time before it judges; otherwise every prober accuses a target that was stalled
// too and answers a moment later.
TEST(ProtocolSim, NoSuspicionsAfterTheWholeClusterStalls) {
  std::uint64_t raised = 0;
  for (std::uint64_t seed : seeds(10)) {
    SEED_TRACE(seed);
    const std::size_t n = 16;
    SimCluster c(opts(n, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 20'000));
    const std::uint64_t interval = c.node(0).config().probe_interval_ms;
    c.run_for(5 * interval);
    std::uint64_t before = 0;
    for (std::size_t i = 0; i < n; ++i) before += c.node(i).counters().suspicions;
    for (int stall = 0; stall < 3; ++stall) {
      for (std::size_t i = 0; i < n; ++i) c.stall(i);
      c.run_for(interval + interval / 5);
      for (std::size_t i = 0; i < n; ++i) c.unstall(i);
      c.run_for(4 * interval);
    }
    std::uint64_t after = 0;
    for (std::size_t i = 0; i < n; ++i) after += c.node(i).counters().suspicions;
    EXPECT_EQ(after, before) << "a stalled prober accused a member that answered";
    raised += after - before;
    EXPECT_TRUE(membership_complete(c));
  }
  EXPECT_EQ(raised, 0u);
}

// A node that joins late receives a 10,000-key state by anti-entropy.
TEST(ProtocolSim, LateJoinerReceivesTenThousandKeysByAntiEntropy) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    SimCluster c(opts(4, seed));
    for (std::size_t i = 0; i < 3; ++i) c.start(i);
    ASSERT_TRUE(c.run_until([&] {
      for (std::size_t i = 0; i < 3; ++i) {
        if (NodeDriver::of(c.node(i)).live_members() != 2) return false;
      }
      return true;
    }, 5'000));
    WriteLog log;
    for (int k = 0; k < 10'000; ++k) {
      ASSERT_TRUE(log.set(c, k % 3, "key-" + std::to_string(k), "value-" + std::to_string(k)));
    }
    // Let rumor mongering finish with the three, so the newcomer cannot get the keys that way.
    c.run_for(20'000);
    const std::uint64_t syncs_before = c.node(3).counters().syncs_completed;
    c.start(3);
    auto caught_up = [&] {
      return c.node(3).scan_prefix("key-").size() == 10'000;
    };
    ASSERT_TRUE(c.run_until(caught_up, 30'000, 50));
    EXPECT_GT(c.node(3).counters().syncs_completed, syncs_before);
    // Every key, on every node, at the version it was written with.
    EXPECT_TRUE(log.all_hold_winners(c));
  }
}

// A node that missed a few dozen writes while cut off catches up by anti-entropy, and the
// exchanges that repair it stream rateless IBLT symbols (issue 18): the method a real cluster
// picks for a difference small against the store.
TEST(ProtocolSim, FewMissedWritesAreRepairedByRatelessIblt) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(4, seed);
    // Node 3 stays a member through its 3 s away: declared dead, it would rejoin and catch up
    // by the join's whole-state exchange instead.
    o.node.suspicion_mult = 100;  // a suspicion lasts 20 s or more
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    WriteLog log;
    for (int k = 0; k < 2'000; ++k) {
      ASSERT_TRUE(log.set(c, k % 4, "base-" + std::to_string(k), "v"));
    }
    c.run_for(20'000);
    const io::NodeId cut[] = {c.net_id(3)};
    c.net().partition(cut);
    for (int k = 0; k < 30; ++k) {
      ASSERT_TRUE(log.set(c, k % 3, "missed-" + std::to_string(k), "v"));
    }
    c.run_for(3'000);  // rumor mongering ends without node 3
    c.net().heal();
    std::uint64_t riblt_before = 0;
    for (std::size_t i = 0; i < 4; ++i) riblt_before += c.node(i).counters().syncs_by_riblt;
    ASSERT_TRUE(c.run_until([&] { return c.node(3).scan_prefix("missed-").size() == 30; },
                            60'000, 50));
    // A session counts its method when it completes, which can be a little after its entries
    // have landed.
    c.run_for(1'000);
    EXPECT_TRUE(log.all_hold_winners(c));
    std::uint64_t riblt = 0;
    for (std::size_t i = 0; i < 4; ++i) riblt += c.node(i).counters().syncs_by_riblt;
    EXPECT_GT(riblt, riblt_before);
  }
}

// Forms the cluster, writes one key and lets it spread for `ms`.
void form_and_spread(SimCluster& c, WriteLog& log, std::uint64_t ms) {
  c.start_all();
  ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
  ASSERT_TRUE(log.set(c, 0, "base", "v"));
  c.run_for(ms);
  ASSERT_TRUE(log.all_hold_winners(c)) << log.all_hold_winners(c).message();
}

// Every ping carries the sender's store and table fingerprints (docs/protocol.md "State on every
// probe"). A settled cluster compares state on every probe and starts no reconciliation: the
// scheduled ones are skipped.
TEST(ProtocolSim, SettledClusterComparesStateOnProbesAndSkipsExchanges) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster c(opts(16, seed));  // local preset: 200 ms probes, 2 s sync interval
    WriteLog log;
    ASSERT_NO_FATAL_FAILURE(form_and_spread(c, log, 5'000));
    const NodeCounters before = probe_sums(c);
    c.run_for(20'000);
    const NodeCounters after = probe_sums(c);
    EXPECT_EQ(after.syncs_started, before.syncs_started) << "an idle cluster reconciled";
    // About 10 scheduled exchanges per node in 20 s.
    EXPECT_GE(after.syncs_skipped - before.syncs_skipped, 16u * 5);
    EXPECT_EQ(after.state_sums_differ, before.state_sums_differ);
  }
}

// A node that missed a write while cut off gets it from a reconciliation that a probe starts
// within a few probe intervals of healing, though every scheduled exchange is a minute away.
TEST(ProtocolSim, MissedWriteIsRepairedByProbesLongBeforeTheScheduledExchange) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(16, seed);
    o.node.sync_interval_ms = 60'000;
    SimCluster c(o);
    WriteLog log;
    ASSERT_NO_FATAL_FAILURE(form_and_spread(c, log, 2'000));
    // Cut off while the write spreads and its news retires (local preset: ~150 ms).
    const io::NodeId cut[] = {c.net_id(5)};
    c.net().partition(cut);
    ASSERT_TRUE(log.set(c, 0, "missed", "v"));
    c.run_for(400);
    c.net().heal();
    ASSERT_FALSE(c.node(5).get("missed").has_value()) << "the write reached the cut-off node";
    const std::uint64_t healed_at = c.now_ms();
    ASSERT_TRUE(c.run_until([&] { return c.node(5).get("missed").has_value(); }, 10'000, 10));
    EXPECT_LE(c.now_ms() - healed_at, 3'000)
        << "repaired only after " << c.now_ms() - healed_at << " ms";
    EXPECT_GT(probe_sums(c).state_sums_differ, 0u);
  }
}

// A crashed node restarts as a new process (empty store, same name) on a new address: every
// node sees the same member alive again at its new address, and it catches up on the state.
TEST(ProtocolSim, RestartedNodeRejoinsWithItsIdentityAtANewAddress) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    const std::size_t n = 12;
    SimCluster c(opts(n, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    WriteLog log;
    ASSERT_TRUE(log.set(c, 0, "config", "before"));
    const NodeId id = c.node(4).id();
    c.crash(4);
    ASSERT_TRUE(c.run_until([&] {
      for (std::size_t i = 0; i < n; ++i) {
        if (i != 4 && !count_state(c, i, id, MemberState::kDead)) return false;
      }
      return true;
    }, 20'000));
    ASSERT_TRUE(log.set(c, 0, "config", "while-away"));
    c.restart(4, /*new_address=*/true);
    EXPECT_EQ(c.node(4).id(), id);
    const Address moved = c.address(4);
    auto rejoined = [&] {
      for (std::size_t i = 0; i < n; ++i) {
        if (i == 4) continue;
        bool ok = false;
        for (const Member& m : c.node(i).members()) {
          if (m.id == id) ok = m.state == MemberState::kAlive && m.address == moved;
        }
        if (!ok) return false;
      }
      return bool(log.all_hold_winners(c));
    };
    ASSERT_TRUE(c.run_until(rejoined, 20'000, 20)) << log.all_hold_winners(c).message();
  }
}

// Same seed, same run: the simulation is deterministic.
TEST(ProtocolSim, ReplaysExactlyFromItsSeed) {
  auto run = [](std::uint64_t seed) {
    SimCluster::Options o = opts(12, seed);
    o.net.link.loss = 0.05;
    SimCluster c(o);
    c.start_all();
    c.run_for(2'000);
    (void)c.node(3).set("k", "v");
    c.run_for(2'000);
    return std::make_pair(c.net().trace_hash(), c.events());
  };
  EXPECT_EQ(run(77), run(77));
  EXPECT_NE(run(77), run(78));
}

// Node::set_metadata at run time (the agent's tags): a new incarnation carries it, and every
// node replaces what it held, under loss too.
TEST(ProtocolSim, MetadataChangedAtRunTimeReachesEveryNode) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(24, seed);
    o.net.link.loss = 0.05;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    const NodeId changed = c.node(5).id();
    const std::string name = c.node(5).config().name;
    auto everyone_sees = [&](const std::string& want) {
      for (std::size_t i = 0; i < c.size(); ++i) {
        bool seen = false;
        for (const Member& m : c.node(i).members()) {
          if (m.id == changed) seen = m.metadata == want && m.name == name;
        }
        if (!seen) return false;
      }
      return true;
    };
    ASSERT_TRUE(c.node(5).set_metadata("role=db zone=a").is_ok());
    EXPECT_TRUE(c.run_until([&] { return everyone_sees("role=db zone=a"); }, 10'000));
    ASSERT_TRUE(c.node(5).set_metadata("role=db zone=b").is_ok());
    EXPECT_TRUE(c.run_until([&] { return everyone_sees("role=db zone=b"); }, 10'000));
    EXPECT_EQ(c.node(5).set_metadata(std::string(4096, 'x')).code(), Code::kTooLarge);
    EXPECT_TRUE(everyone_sees("role=db zone=b")) << "a refused change changes nothing";
  }
}

}  // namespace
}  // namespace rumor
