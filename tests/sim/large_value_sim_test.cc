// Large values in the simulator (docs/protocol.md "Large values"): a value too big for one
// datagram is announced, pulled in chunks, verified and merged whole. Under loss, duplication
// and reordering it reaches every node, and a reader on any node sees the old value or the new
// one, never a mix; a node cut off while it spread gets it from anti-entropy; a multi-core node
// gets it too (merged on the key's owner core).
#include <gtest/gtest.h>

#include <string>

#include "tests/sim/sim_test_util.h"

namespace rumor {
namespace {

using simtest::opts;
using simtest::seeds;

// A value of n bytes that differs from any other (tag) at every 8-byte word, so a value mixed
// from two of them, or shifted, never equals either.
std::string big_value(std::size_t n, std::uint64_t tag) {
  std::string v(n, '\0');
  std::uint64_t x = tag * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 8 == 0) x = splitmix64(x);
    v[i] = static_cast<char>(x >> (8 * (i % 8)));
  }
  return v;
}

// What node i holds for key: "none", "old", "new", or "MIXED" (anything else).
std::string held(SimCluster& c, std::size_t i, const std::string& key, const std::string& old_v,
                 const std::string& new_v) {
  std::optional<std::string> v = c.node(i).get(key);
  if (!v) return "none";
  if (*v == new_v) return "new";
  if (*v == old_v) return "old";
  return "MIXED (" + std::to_string(v->size()) + " bytes)";
}

// The large-value counters, summed over the cluster.
NodeCounters bulk_sums(SimCluster& c) {
  return simtest::sum_counters(c, &NodeCounters::bulk_pulls, &NodeCounters::bulk_pulled,
                               &NodeCounters::bulk_abandoned, &NodeCounters::bulk_bad_hash,
                               &NodeCounters::bulk_chunks_sent, &NodeCounters::bulk_chunks_received,
                               &NodeCounters::bulk_announced, &NodeCounters::updates_refused);
}

// Runs until every node holds new_v, checking at every `step_ms` that no node holds anything
// but nothing, old_v or new_v. Returns false (with a message) at the first mixed read or at
// the deadline.
::testing::AssertionResult spread_whole(SimCluster& c, const std::string& key,
                                        const std::string& old_v, const std::string& new_v,
                                        std::uint64_t max_ms, std::uint64_t step_ms = 5) {
  for (std::uint64_t t = 0; t <= max_ms; t += step_ms) {
    bool all = true;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c.crashed(i)) continue;
      const std::string h = held(c, i, key, old_v, new_v);
      if (h.rfind("MIXED", 0) == 0) {
        return ::testing::AssertionFailure() << "node " << i << " read " << h << " at +" << t
                                             << " ms";
      }
      if (h != "new") all = false;
    }
    if (all) return ::testing::AssertionSuccess() << "after " << t << " ms";
    c.run_for(step_ms);
  }
  std::string who;
  for (std::size_t i = 0; i < c.size(); ++i) {
    who += " " + std::to_string(i) + ":" + held(c, i, key, old_v, new_v);
  }
  return ::testing::AssertionFailure() << "not every node holds the new value after " << max_ms
                                       << " ms:" << who;
}

TEST(LargeValueSim, ReachesEveryNodeWholeUnderLossAndReadersNeverSeeAMix) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(8, seed);
    o.net.link.loss = 0.10;
    o.net.link.duplicate = 0.02;
    o.net.link.reorder = 0.05;
    o.net.link.reorder_delay_ns = 2'000'000;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 30'000, 50));

    const std::string key = "blob";
    const std::string v1 = big_value(200 * 1024, seed);
    const std::string v2 = big_value(512 * 1024, seed + 1);
    ASSERT_TRUE(c.node(0).set(key, v1));
    ::testing::AssertionResult r = spread_whole(c, key, "", v1, 20'000);
    ASSERT_TRUE(r) << r.message();
    std::printf("seed %llu: 200 KiB on 8 nodes at 10%% loss %s\n",
                static_cast<unsigned long long>(seed), r.message());
    // A newer value of the same key, from another node: every read is v1 or v2, whole.
    ASSERT_TRUE(c.node(5).set(key, v2));
    r = spread_whole(c, key, v1, v2, 20'000);
    ASSERT_TRUE(r) << r.message();
    std::printf("seed %llu: 512 KiB over it %s\n", static_cast<unsigned long long>(seed),
                r.message());

    const NodeCounters k = bulk_sums(c);
    // Every node but the writer pulled each value whole at least once; nothing was refused.
    EXPECT_GE(k.bulk_pulled, 2u * (c.size() - 1));
    EXPECT_EQ(k.bulk_bad_hash, 0u);
    EXPECT_EQ(k.updates_refused, 0u);
    // 512 KiB is ~400 chunks of 1,328 bytes: losses cost retransmissions, not whole values.
    EXPECT_LT(k.bulk_chunks_sent, 3u * (c.size() - 1) * (700 * 1024 / 1328 + 1));
  }
}

TEST(LargeValueSim, NodeCutOffWhileItSpreadGetsItFromAntiEntropy) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(5, seed);
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 30'000, 50));
    // Node 4 is cut off while the value spreads and its news retires (local preset: ~150 ms).
    const io::NodeId cut[] = {c.net_id(4)};
    c.net().partition(cut);
    const std::string v = big_value(300 * 1024, seed);
    ASSERT_TRUE(c.node(0).set("far", v));
    ASSERT_TRUE(c.run_until(
        [&] {
          for (std::size_t i = 0; i < 4; ++i) {
            if (c.node(i).get("far") != v) return false;
          }
          return true;
        },
        10'000, 10));
    c.run_for(400);
    ASSERT_FALSE(c.node(4).get("far").has_value());
    c.net().heal();
    ::testing::AssertionResult r = spread_whole(c, "far", "", v, 15'000, 10);
    ASSERT_TRUE(r) << r.message();
    // Gossip had stopped: the announcement that node 4 pulled came from reconciliation.
    std::uint64_t announced = 0;
    for (std::size_t i = 0; i < 4; ++i) announced += c.node(i).counters().bulk_announced;
    EXPECT_GT(announced, 0u);
    EXPECT_GE(c.node(4).counters().bulk_pulled, 1u);
  }
}

// Many large values at once against small pull bounds: announcements over the bounds are
// refused (counted), and the ones refused are pulled later (gossip retransmissions, then
// anti-entropy's announcements), so every node ends with every value.
TEST(LargeValueSim, AnnouncementsOverTheBoundsArePulledLater) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(5, seed);
    o.node.store.value_bytes_max = 128 * 1024;
    o.node.bulk_transfers_max = 2;
    o.node.bulk_peer_bytes_max = 128 * 1024;  // one value per source at a time
    o.node.bulk_bytes_max = 256 * 1024;
    o.net.link.loss = 0.02;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 30'000, 50));
    constexpr int kValues = 24;
    std::vector<std::string> values;
    for (int i = 0; i < kValues; ++i) {
      values.push_back(big_value(100 * 1024, seed * 100 + static_cast<std::uint64_t>(i)));
      ASSERT_TRUE(c.node(static_cast<std::size_t>(i) % 2).set("v" + std::to_string(i),
                                                              values.back()));
    }
    const std::uint64_t t0 = c.now_ms();
    ASSERT_TRUE(c.run_until(
        [&] {
          for (std::size_t n = 0; n < c.size(); ++n) {
            for (int i = 0; i < kValues; ++i) {
              if (c.node(n).get("v" + std::to_string(i)) != values[static_cast<std::size_t>(i)]) {
                return false;
              }
            }
          }
          return true;
        },
        60'000, 50));
    std::uint64_t refused = 0, pulled = 0;
    for (std::size_t n = 0; n < c.size(); ++n) {
      refused += c.node(n).counters().bulk_refused;
      pulled += c.node(n).counters().bulk_pulled;
    }
    std::printf("seed %llu: %d values of 100 KiB on 5 nodes after %llu ms; %llu pulls, %llu "
                "announcements refused at the bounds\n",
                static_cast<unsigned long long>(seed), kValues,
                static_cast<unsigned long long>(c.now_ms() - t0),
                static_cast<unsigned long long>(pulled),
                static_cast<unsigned long long>(refused));
    EXPECT_GT(refused, 0u) << "the bounds were never reached: the test tests nothing";
    EXPECT_GE(pulled, static_cast<std::uint64_t>(kValues) * 3);
  }
}

// Encrypted clusters (docs/security.md): every announcement, request and chunk is sealed; the
// chunks still fit their datagrams (the seal's room is kept in every one) and arrive whole.
TEST(LargeValueSim, EncryptedClusterPullsSealedChunks) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(4, seed);
    o.node.keys = {std::string(32, 'k')};
    o.node.encryption = EncryptionMode::kRequire;
    o.net.link.loss = 0.05;
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 30'000, 50));
    const std::string v = big_value(256 * 1024, seed);
    ASSERT_TRUE(c.node(1).set("sealed", v));
    ::testing::AssertionResult r = spread_whole(c, "sealed", "", v, 20'000);
    ASSERT_TRUE(r) << r.message();
    for (std::size_t i = 0; i < c.size(); ++i) {
      const NodeCounters k = c.node(i).counters();
      EXPECT_GT(k.packets_sealed, 0u);
      EXPECT_EQ(k.drop_plaintext_refused + k.drop_auth_failed + k.drop_malformed, 0u) << i;
    }
    EXPECT_GE(bulk_sums(c).bulk_pulled, c.size() - 1);
  }
}

// Over a WAN-like link (25 ms each way, the wan preset) a pull moves two windows of 64 chunks
// per round trip: 1 MiB (790 chunks, 13 windows) takes about 7 round trips after the
// announcement arrives. Printed (virtual time, so it replays exactly); the test checks the value
// arrives whole and within the transfer's own bound of attempts.
TEST(LargeValueSim, OneMebibyteOverAWanLink) {
  SimCluster::Options o = opts(2, seeds(1)[0]);
  o.node = NodeConfig::wan();
  o.net.link.latency_ns = 25'000'000;
  o.net.link.jitter_ns = 0;
  SimCluster c(o);
  c.start_all();
  ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 60'000, 50));
  const std::string v = big_value(1u << 20, 7);
  ASSERT_TRUE(c.node(0).set("wan", v));
  ASSERT_TRUE(c.run_until([&] { return c.node(1).counters().bulk_pulls > 0; }, 10'000, 1));
  const std::uint64_t t0 = c.now_ms();
  ASSERT_TRUE(c.run_until([&] { return c.node(1).get("wan") == v; }, 10'000, 1));
  std::printf("1 MiB over a 50 ms round trip: %llu ms from the first request\n",
              static_cast<unsigned long long>(c.now_ms() - t0));
  EXPECT_EQ(c.node(1).counters().bulk_abandoned, 0u);
}

TEST(LargeValueSim, MultiCoreNodesAssembleAndMergeOnTheOwnerCore) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    SimCluster::Options o = opts(4, seed);
    o.cores = {1, 2, 4, 2};
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return simtest::membership_complete(c); }, 30'000, 50));
    // Several keys, so their shards fall on different cores.
    std::vector<std::string> keys, values;
    for (int i = 0; i < 6; ++i) {
      keys.push_back("k" + std::to_string(i));
      values.push_back(big_value(64 * 1024 + static_cast<std::size_t>(i) * 1000, seed + i));
      ASSERT_TRUE(c.node(static_cast<std::size_t>(i) % 4).set(keys.back(), values.back()));
    }
    ASSERT_TRUE(c.run_until(
        [&] {
          for (std::size_t n = 0; n < c.size(); ++n) {
            for (std::size_t i = 0; i < keys.size(); ++i) {
              if (c.node(n).get(keys[i]) != values[i]) return false;
            }
          }
          return true;
        },
        20'000, 10));
  }
}

}  // namespace
}  // namespace rumor
