// Helpers shared by the simulation tests: seeds that replay, and cluster-wide predicates.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "engine/sim/sim_cluster.h"
#include "rumor/driver.h"

namespace rumor::simtest {

// n seeds from `base`, or only $RUMOR_SIM_SEED when set (to replay a failure).
inline std::vector<std::uint64_t> seeds(std::size_t n, std::uint64_t base = 1000) {
  if (const char* s = std::getenv("RUMOR_SIM_SEED")) return {std::strtoull(s, nullptr, 10)};
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(base + i * 7919);
  return out;
}

#define SEED_TRACE(seed) \
  SCOPED_TRACE(::testing::Message() << "replay with RUMOR_SIM_SEED=" << (seed))

// n nodes with the local preset, links of 1 ms (+ up to 0.5 ms jitter).
inline SimCluster::Options opts(std::size_t n, std::uint64_t seed) {
  SimCluster::Options o;
  o.nodes = n;
  o.seed = seed;
  o.node = NodeConfig::local();
  o.net.link.latency_ns = 1'000'000;
  o.net.link.jitter_ns = 500'000;
  return o;
}

// The writes a test made, and the version each got: read back with get_entry on its writer
// right after the write (a local write is applied at once on the simulator's one thread). Last
// writer wins, so the write that must survive on every node is the one with the highest Version
// (rumor/version.h orders them): checking that, and not only that the nodes agree, catches a
// cluster that converged on the wrong write.
class WriteLog {
 public:
  struct Write {
    std::size_t writer = 0;
    Version version;
    std::string value;
    bool deleted = false;
  };

  // Writes on node `writer` and records the write; fails if the write fails or the entry read
  // back is not this write.
  ::testing::AssertionResult set(SimCluster& c, std::size_t writer, std::string_view key,
                                 std::string_view value) {
    if (Status st = c.node(writer).set(key, value); !st) {
      return ::testing::AssertionFailure()
             << "set " << key << " on node " << writer << ": " << st.to_string();
    }
    return record(c, writer, key, value, false);
  }
  ::testing::AssertionResult del(SimCluster& c, std::size_t writer, std::string_view key) {
    if (Status st = c.node(writer).del(key); !st) {
      return ::testing::AssertionFailure()
             << "del " << key << " on node " << writer << ": " << st.to_string();
    }
    return record(c, writer, key, {}, true);
  }

  // The write of `key` with the highest version (the test wrote `key`).
  const Write& winner(std::string_view key) const {
    auto it = writes_.find(key);
    RUMOR_ASSERT(it != writes_.end());
    const std::vector<Write>& w = it->second;
    const Write* best = &w.front();
    for (const Write& x : w) {
      if (x.version > best->version) best = &x;
    }
    return *best;
  }

  // Node i holds the winner of `key`: its version, value and deletion.
  ::testing::AssertionResult holds_winner(SimCluster& c, std::size_t i,
                                          std::string_view key) const {
    const Write& win = winner(key);
    auto e = c.node(i).get_entry(key);
    if (!e) return ::testing::AssertionFailure() << "node " << i << " has no " << key;
    if (e->version != win.version || e->value != win.value || e->deleted != win.deleted) {
      return ::testing::AssertionFailure()
             << "node " << i << " holds " << key << " = \"" << e->value << "\""
             << (e->deleted ? " (deleted)" : "") << " at version (" << e->version.hlc << ", "
             << e->version.node << "); the highest version written is (" << win.version.hlc << ", "
             << win.version.node << ") = \"" << win.value << "\""
             << (win.deleted ? " (deleted)" : "") << " by node " << win.writer;
    }
    return ::testing::AssertionSuccess();
  }

  // Every node not skipped and not crashed holds the winner of every key written.
  ::testing::AssertionResult all_hold_winners(SimCluster& c,
                                              const std::set<std::size_t>& skip = {}) const {
    for (const auto& [key, w] : writes_) {
      for (std::size_t i = 0; i < c.size(); ++i) {
        if (skip.count(i) || c.crashed(i)) continue;
        if (auto r = holds_winner(c, i, key); !r) return r;
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  ::testing::AssertionResult record(SimCluster& c, std::size_t writer, std::string_view key,
                                    std::string_view value, bool deleted) {
    auto e = c.node(writer).get_entry(key);
    if (!e || e->value != value || e->deleted != deleted ||
        e->version.node != c.node(writer).id()) {
      return ::testing::AssertionFailure()
             << "node " << writer << " does not hold its own write of " << key << " right after it";
    }
    writes_[std::string(key)].push_back(Write{writer, e->version, std::string(value), deleted});
    return ::testing::AssertionSuccess();
  }

  std::map<std::string, std::vector<Write>, std::less<>> writes_;
};

// Every running node sees every other running node alive or suspect.
// The named counters (pointers to NodeCounters members) summed over every node of the cluster;
// the others stay 0.
template <typename... Field>
NodeCounters sum_counters(SimCluster& c, Field... fields) {
  NodeCounters t;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const NodeCounters k = c.node(i).counters();
    ((t.*fields += k.*fields), ...);
  }
  return t;
}

inline bool membership_complete(SimCluster& c) {
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c.crashed(i)) continue;
    if (NodeDriver::of(c.node(i)).live_members() + 1 != c.size()) return false;
  }
  return true;
}

}  // namespace rumor::simtest
