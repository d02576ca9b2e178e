// Encryption, key rotation, the plaintext -> encrypted migration and cluster labels, end to end
// on the simulator (seeded, virtual time). A failure names its seed; RUMOR_SIM_SEED replays it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/sim/sim_cluster.h"
#include "tests/sim/sim_test_util.h"
#include "tests/support/test_keys.h"
#include "rumor/security.h"

namespace rumor {
namespace {

using simtest::membership_complete;
using simtest::WriteLog;

std::vector<std::uint64_t> seeds(std::size_t n) { return simtest::seeds(n, 4000); }

const std::string kKeyA = testing::test_key_a();
const std::string kKeyB = testing::test_key_b();

SimCluster::Options encrypted(SimCluster::Options o) {
  o.node.keys = {kKeyA};
  o.node.encryption = EncryptionMode::kRequire;
  return o;
}

// The simulation tests' cluster, with 2% loss.
SimCluster::Options opts(std::size_t n, std::uint64_t seed) {
  SimCluster::Options o = simtest::opts(n, seed);
  o.net.link.loss = 0.02;
  return o;
}

std::size_t live_seen(SimCluster& c, std::size_t i) {
  std::size_t n = 0;
  for (const Member& m : c.node(i).members()) {
    if (m.id != c.node(i).id() && (m.state == MemberState::kAlive || m.state == MemberState::kSuspect)) ++n;
  }
  return n;
}

NodeCounters sum(SimCluster& c) {
  return simtest::sum_counters(c, &NodeCounters::packets_sealed, &NodeCounters::packets_opened,
                               &NodeCounters::drop_auth_failed, &NodeCounters::drop_unknown_key,
                               &NodeCounters::drop_sealed_refused,
                               &NodeCounters::drop_plaintext_refused, &NodeCounters::drop_replayed,
                               &NodeCounters::drop_wrong_label);
}

// Single-core nodes, and nodes with two owner cores, each core sealing with its own nonces and
// opening with its own replay windows.
class SecuritySimCores : public ::testing::TestWithParam<std::uint32_t> {};
INSTANTIATE_TEST_SUITE_P(Owners, SecuritySimCores, ::testing::Values(1u, 2u));

TEST_P(SecuritySimCores, EncryptedClusterConvergesAndEveryPacketIsSealed) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    auto o = encrypted(opts(5, seed));
    o.node.store.owners = GetParam();
    o.net.link.duplicate = 0.05;  // duplicated datagrams are replays: refused, and harmless
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    WriteLog log;
    ASSERT_TRUE(log.set(c, 0, "service_version", "v1.2.4"));
    for (int k = 0; k < 20; ++k) ASSERT_TRUE(log.set(c, k % c.size(), "k" + std::to_string(k), "v"));
    ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 5'000))
        << log.all_hold_winners(c).message();
    const NodeCounters t = sum(c);
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < c.size(); ++i) sent += c.node(i).counters().packets_sent;
    EXPECT_EQ(t.packets_sealed, sent);
    EXPECT_GT(t.packets_opened, 0u);
    EXPECT_EQ(t.drop_auth_failed + t.drop_unknown_key, 0u);
    EXPECT_GT(t.drop_replayed, 0u) << "the network duplicated datagrams; none was a replay?";
  }
}

TEST_P(SecuritySimCores, KeyRotationUnderWritesLosesNothing) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    auto o = encrypted(opts(5, seed));
    // Multi-core nodes beside single-core ones: every core of every node must follow the
    // rotation, or a datagram sealed by one core reaches a node that no longer holds its key.
    if (GetParam() > 1) o.cores = {GetParam(), 1, GetParam(), 1, GetParam()};
    SimCluster c(o);
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    // Every write has the same value: only its version tells a node that holds it from one
    // that holds some other write.
    WriteLog log;
    int w = 0;
    auto write_some = [&] {
      for (std::size_t i = 0; i < c.size(); ++i) {
        ASSERT_TRUE(log.set(c, i, "k" + std::to_string(w++), "v"));
        c.run_for(30);
      }
    };
    // Install on every node (one at a time, with traffic in between), then use, then remove.
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(c.node(i).install_key(kKeyB).is_ok());
      write_some();
    }
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(c.node(i).use_key(key_fingerprint(kKeyB)).is_ok());
      write_some();
    }
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(c.node(i).remove_key(kKeyA).is_ok());
      ASSERT_EQ(c.node(i).keys().size(), 1u);
      EXPECT_TRUE(c.node(i).keys()[0].primary);
      write_some();
    }
    ASSERT_TRUE(c.run_until([&] { return bool(log.all_hold_winners(c)); }, 30'000, 100))
        << log.all_hold_winners(c).message();
    // Anti-entropy runs on every core: a core still sealing with the removed key would be
    // refused now.
    c.run_for(3 * o.node.sync_interval_ms);
    EXPECT_TRUE(membership_complete(c));
    const NodeCounters t = sum(c);
    EXPECT_EQ(t.drop_unknown_key + t.drop_auth_failed, 0u)
        << "the rotation order (install, use, remove) never strands a datagram";
  }
}

TEST(SecuritySim, MigrationFromPlaintextAcceptsBothThenRequires) {
  for (std::uint64_t seed : seeds(3)) {
    SEED_TRACE(seed);
    SimCluster c(opts(4, seed));
    c.start_all();
    ASSERT_TRUE(c.run_until([&] { return membership_complete(c); }, 10'000));
    WriteLog log;
    int w = 0;
    // Each step's writes, and every earlier one, reach every node at their versions.
    auto step = [&](const char* what, auto&& change) {
      SCOPED_TRACE(what);
      for (std::size_t i = 0; i < c.size(); ++i) {
        change(c.node(i));
        ASSERT_TRUE(log.set(c, i, "m" + std::to_string(w++), what));
        c.run_for(50);
      }
      ASSERT_TRUE(c.run_until([&] { return log.all_hold_winners(c) && membership_complete(c); },
                              20'000, 50))
          << log.all_hold_winners(c).message();
    };
    step("accept", [](Node& n) {
      ASSERT_TRUE(n.install_key(kKeyA).is_ok());
      ASSERT_TRUE(n.set_encryption(EncryptionMode::kAccept).is_ok());
    });
    EXPECT_EQ(sum(c).packets_sealed, 0u);
    step("send", [](Node& n) { ASSERT_TRUE(n.set_encryption(EncryptionMode::kSend).is_ok()); });
    const std::uint64_t sealed_before = sum(c).packets_sealed;
    EXPECT_GT(sealed_before, 0u);
    step("require", [](Node& n) { ASSERT_TRUE(n.set_encryption(EncryptionMode::kRequire).is_ok()); });
    const NodeCounters t = sum(c);
    EXPECT_EQ(t.drop_sealed_refused + t.drop_plaintext_refused + t.drop_auth_failed, 0u)
        << "no step of the migration drops a datagram";
  }
}

// Half the nodes under another label (or without the key) use a node of the first half as their
// seed: whatever they send is dropped, and neither side ever lists a member of the other.
void expect_never_merge(SimCluster& c, std::size_t split, std::uint64_t run_ms) {
  c.start_all();
  c.run_for(run_ms);
  for (std::size_t i = 0; i < c.size(); ++i) {
    for (const Member& m : c.node(i).members()) {
      bool other_side = false;
      for (std::size_t j = 0; j < c.size(); ++j) {
        if (c.node(j).id() == m.id) other_side = (i < split) != (j < split);
      }
      EXPECT_FALSE(other_side) << "node " << i << " lists " << m.name;
    }
  }
  // The first side still formed its cluster.
  for (std::size_t i = 0; i < split; ++i) EXPECT_EQ(live_seen(c, i) + 1, split) << "node " << i;
}

TEST(SecuritySim, DifferentLabelsNeverMergeInAnyDirection) {
  for (bool sealed : {false, true}) {
    for (std::uint64_t seed : seeds(2)) {
      SEED_TRACE(seed);
      SCOPED_TRACE(sealed ? "encrypted" : "plaintext");
      // Encrypted, all share the key: only the label differs.
      auto o = sealed ? encrypted(opts(6, seed)) : opts(6, seed);
      o.configure = [](std::size_t i, NodeConfig& cfg) {
        cfg.cluster_label = i < 3 ? "prod" : "staging";
      };
      SimCluster c(o);
      expect_never_merge(c, 3, 10'000);
      std::uint64_t dropped = 0;
      for (std::size_t i = 0; i < c.size(); ++i) dropped += c.node(i).counters().drop_wrong_label;
      EXPECT_GT(dropped, 0u);
    }
  }
}

TEST(SecuritySim, NodesWithoutTheKeyNeverMerge) {
  for (std::uint64_t seed : seeds(2)) {
    SEED_TRACE(seed);
    auto o = opts(6, seed);
    o.configure = [](std::size_t i, NodeConfig& cfg) {
      if (i < 3) {
        cfg.keys = {kKeyA};
        cfg.encryption = EncryptionMode::kRequire;
      } else if (i == 3) {
        cfg.keys = {kKeyB};  // another key
        cfg.encryption = EncryptionMode::kRequire;
      }  // 4, 5: plaintext
    };
    SimCluster c(o);
    expect_never_merge(c, 3, 10'000);
    EXPECT_GT(c.node(0).counters().drop_plaintext_refused, 0u);
    EXPECT_GT(c.node(0).counters().drop_unknown_key, 0u);
  }
}

}  // namespace
}  // namespace rumor
