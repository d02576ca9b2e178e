// What in-tree drivers of many nodes (the simulator, `rumor load`, benchmarks and tests) reach
// beyond the public API: the member table (to preload and to share names between thousands of
// simulated nodes) and the store (its counters). Not installed, not for embedders.
//
// Thread-safety: as the component reached (members: the home core's driver thread, before
// start for preloading; the store: include/rumor/driver.h's rules).
#pragma once

#include "engine/members/members.h"
#include "engine/store/store.h"
#include "rumor/node.h"

namespace rumor {

struct NodeInternals {
  static Members& members(Node& node);
  static Store& store(Node& node);
  static const Store& store(const Node& node);
  // One owner core's counters (the home core's live ones, another core's last published copy).
  static NodeCounters core_counters(const Node& node, std::uint32_t core);
  // Bytes of membership state this node holds: its member table (a shared directory not
  // included) and, in partial mode, its views and Plumtree's tables.
  static std::size_t membership_bytes(Node& node);
};

}  // namespace rumor
