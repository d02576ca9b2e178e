// Plumtree (Leitão, Pereira, Rodrigues, SRDS 2007): how key-value updates spread in
// `membership = partial` (docs/protocol.md "Partial views"). Over HyParView's active view each
// link is *eager* (a new update is pushed whole along it) or *lazy* (only its id is announced,
// in IHAVE batches once per gossip round). Every link starts eager, so the first update floods;
// a node that receives a payload it already had answers PRUNE, and the link turns lazy. What
// remains eager is a spanning tree: an update then crosses each node about once. A node that
// hears of an update by IHAVE and does not receive it within graft_timeout_ms asks the
// announcer with GRAFT, which turns that link eager again: the tree repairs itself around
// failed nodes and lost datagrams. Anti-entropy between active neighbours repairs whatever
// the tree still misses.
//
// A message id is (key hash, version). Payloads are kept tree_cache_ms for grafts and to
// recognise duplicates; entries too large for one datagram are not pushed (anti-entropy
// announces them). Bounded: cached payloads, missing ids, and ids queued per lazy link.
//
// Not thread-safe: owned by the node's home core, on its driver thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/rng.h"
#include "engine/store/store.h"
#include "engine/wire/overlay.h"
#include "engine/wire/packet.h"
#include "rumor/node.h"

namespace rumor {

class Plumtree {
 public:
  // Limits (each bounds one table; see the class comment).
  static constexpr std::size_t kCacheMax = 8192;
  static constexpr std::size_t kMissingMax = 8192;
  static constexpr std::size_t kLazyQueueMax = 1024;
  static constexpr std::size_t kAnnouncersMax = 4;

  // `held(id)`: whether the store holds that version of the key or a newer one.
  Plumtree(const NodeConfig& config, NodeCounters& counters,
           std::function<bool(const wire::TreeId&)> held);

  static wire::TreeId id_of(const EntryView& e);

  // HyParView's links: a new one is eager and is announced the ids this node holds (IHAVE), so
  // a neighbour that was cut off grafts what it missed; a lost one is forgotten.
  void link_up(const wire::PeerRef& p);
  void link_down(NodeId id);

  // An update that starts here (a local write): pushed to every eager link and announced to
  // the lazy ones at the next tick (due at once). Not pushed when it does not fit a datagram.
  void broadcast(const EntryView& e, std::uint64_t now);
  // A payload from `sender`. True when it is new here (the caller merges it); it has then been
  // pushed on along the tree.
  bool on_gossip(NodeId sender, const wire::TreeGossipMsg& m, std::uint64_t now,
                 const wire::Outbox& out);
  void on_ihave(NodeId sender, const wire::TreeIdsMsg& m, std::uint64_t now);
  void on_graft(NodeId sender, const wire::TreeIdsMsg& m, const wire::Outbox& out);
  void on_prune(NodeId sender);

  // IHAVE batches, GRAFT timers, cache expiry.
  void tick(std::uint64_t now, const wire::Outbox& out);
  std::uint64_t next_deadline_ms() const {
    return std::min(has_work() ? next_tick_ms_ : UINT64_MAX, next_graft_scan_ms_);
  }

  std::size_t eager_links() const;
  std::size_t lazy_links() const { return links_.size() - eager_links(); }
  std::size_t memory_bytes() const;

 private:
  struct IdHash {
    std::size_t operator()(const wire::TreeId& id) const {
      return static_cast<std::size_t>(id.key_hash ^ (id.version.hlc * 0x9e3779b97f4a7c15ull) ^
                                      (id.version.node >> 7));
    }
  };
  struct Link {
    wire::PeerRef peer;
    bool eager = true;
    std::vector<wire::TreeId> ihave;  // ids to announce at the next tick
  };
  struct Payload {
    bool tombstone = false;
    std::uint8_t hops = 0;
    std::string key, value;
  };
  struct Missing {
    std::uint64_t graft_at_ms = 0;
    std::size_t announcers = 0;
    NodeId from[kAnnouncersMax] = {};
  };

  // A tick is due only when something waits to be sent; expired payloads go at the next tick
  // that comes anyway (the cache is bounded by count too), so an idle node is not woken.
  bool has_work() const {
    if (!originate_.empty()) return true;
    for (const Link& l : links_) {
      if (!l.ihave.empty()) return true;
    }
    return false;
  }
  Link* link(NodeId id);
  void remember(const wire::TreeId& id, const wire::EntryMsg& e, std::uint8_t hops,
                std::uint64_t now);
  // Pushes to every eager link and queues the id for every lazy one, except `except`.
  void spread(const wire::TreeId& id, const wire::EntryMsg& e, std::uint8_t hops, NodeId except,
              const wire::Outbox& out);
  void push(const Address& to, const wire::EntryMsg& e, std::uint8_t hops,
            const wire::Outbox& out);
  void send_ids(const Address& to, wire::MsgType t, std::span<const wire::TreeId> ids,
                const wire::Outbox& out);

  const NodeConfig& config_;
  NodeCounters& counters_;
  std::function<bool(const wire::TreeId&)> held_;
  std::uint64_t graft_timeout_ms_;
  std::vector<Link> links_;
  std::unordered_map<wire::TreeId, Payload, IdHash> cache_;
  std::deque<std::pair<std::uint64_t, wire::TreeId>> expiry_;  // (expires, id), oldest first
  std::vector<wire::TreeId> originate_;  // local writes to push at the next tick
  std::unordered_map<wire::TreeId, Missing, IdHash> missing_;
  std::uint64_t next_tick_ms_ = 0;
  std::uint64_t next_graft_scan_ms_ = UINT64_MAX;
};

}  // namespace rumor
