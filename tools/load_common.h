// Pieces shared by the sim and udp load clusters (tools/load.h).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rumor/node.h"

namespace rumor::tools {

// Whether node n holds every key = value of kv (any thread: Node::get is lock-free).
bool holds_all(const Node& n, const std::vector<std::pair<std::string, std::string>>& kv);

// Timers of a preset by name (validated by LoadOptions::validate).
NodeConfig preset_config(const std::string& preset);

// Failure detections about members that were up: a suspicion or a death that some node's view
// recorded while the member was running and reachable from that node. Counted once per
// (member, incarnation). Detections made while the member was down or cut off are real; the
// same (member, incarnation) seen later by others is the same detection, not a false one.
// Not thread-safe: one driver thread (the callbacks run inside Node::dispatch_events).
class FalsePositives {
 public:
  explicit FalsePositives(std::size_t nodes) : up_(nodes, true), since_ms_(nodes, 0) {}

  // Node i's id, so events about it can be told apart.
  void name(std::size_t i, NodeId id) { index_[id] = i; }
  // Registers the callback on node i (before it starts).
  void watch(std::size_t observer, Node& n);
  // Records that node i went down or came back (a new process whose incarnation starts at
  // now_ms or later: detections of older incarnations are about the previous process).
  void set_up(std::size_t i, bool up, std::uint64_t now_ms = 0);
  // Nodes [0, at) are cut off from the rest; 0: no partition.
  void set_partition(std::size_t at) { partition_at_ = at; }

  std::uint64_t suspicions() const { return false_suspect_.size(); }
  std::uint64_t deaths() const { return false_dead_.size(); }
  // The false (member, incarnation) pairs, for merging the counts of several processes.
  const std::set<std::pair<NodeId, std::uint64_t>>& false_suspicions() const {
    return false_suspect_;
  }
  const std::set<std::pair<NodeId, std::uint64_t>>& false_deaths() const { return false_dead_; }

 private:
  void on_event(std::size_t observer, const MembershipEvent& e);

  std::vector<bool> up_;
  std::vector<std::uint64_t> since_ms_;
  std::unordered_map<NodeId, std::size_t> index_;
  std::size_t partition_at_ = 0;
  std::set<std::pair<NodeId, std::uint64_t>> real_, false_suspect_, false_dead_;
};

}  // namespace rumor::tools
