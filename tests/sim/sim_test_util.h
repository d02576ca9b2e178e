// Helpers shared by the simulation tests: seeds that replay, and cluster-wide predicates.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string_view>
#include <vector>

#include "engine/node/internal.h"
#include "rumor/driver.h"
#include "engine/sim/sim_cluster.h"

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

// Every node not skipped and not crashed holds key = value.
inline bool all_have(SimCluster& c, std::string_view key, std::string_view value,
                     const std::set<std::size_t>& skip = {}) {
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (skip.count(i) || c.crashed(i)) continue;
    auto v = c.node(i).get(key);
    if (!v || *v != value) return false;
  }
  return true;
}

// Every running node sees every other running node alive or suspect.
inline bool membership_complete(SimCluster& c) {
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c.crashed(i)) continue;
    if (NodeDriver::of(c.node(i)).live_members() + 1 != c.size()) return false;
  }
  return true;
}

}  // namespace rumor::simtest
