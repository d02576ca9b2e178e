// HyParView (Leitão, Pereira, Rodrigues, DSN 2007): the partial-view membership of
// `membership = partial` (docs/protocol.md "Partial views"). A node keeps a small symmetric
// *active view* (about log2 N + 1 peers: the links updates travel on, probed for failure) and a
// larger *passive view* (candidates to replace a failed active peer, refreshed by shuffles). A
// join walks the overlay: the contact adds the joiner and sends FORWARD_JOIN along each of its
// other links, each walk landing in an active view after active_walk_length hops (or where a
// view has one link) and leaving the joiner in a passive view at passive_walk_length hops.
//
// Over UDP there is no TCP connection to fail: every datagram from an active peer proves it
// alive, an idle link is pinged (the SWIM ping/ack messages), and a peer silent for
// view_failure_probes probe intervals is dropped and replaced by a passive peer asked with
// NEIGHBOR (high priority when this node has no active peer left, so it is always accepted).
//
// Memory is O(active + passive), whatever the cluster size: a node never holds the member table.
// It sends through a wire::Outbox it is handed per call, reads time only as arguments, and draws
// randomness from the node's Rng.
//
// Not thread-safe: owned by the node's home core, on its driver thread.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/rng.h"
#include "engine/wire/overlay.h"
#include "engine/wire/packet.h"
#include "rumor/node.h"

namespace rumor {

class HyParView {
 public:
  // A link came up (true) or went down (false): Plumtree's eager and lazy sets follow it.
  using LinkListener = std::function<void(const wire::PeerRef&, bool up)>;

  HyParView(const NodeConfig& config, Rng& rng, NodeCounters& counters);

  // ceil(log2 n) + 1 within [4, 8]: HyParView's active view for a cluster of about n nodes.
  static std::uint32_t active_size_for(std::uint64_t n);
  std::size_t active_max() const { return active_max_; }
  std::size_t passive_max() const { return passive_max_; }

  void set_link_listener(LinkListener l) { link_ = std::move(l); }
  // Joins through one of `seeds` (retried while the views are empty).
  void start(std::uint64_t now, std::span<const Address> seeds, const wire::Outbox& out);
  // Tells every active peer (DISCONNECT); the views empty.
  void leave(const wire::Outbox& out);
  void set_seeds(std::span<const Address> seeds);

  // ---- what datagrams say ----
  // Any datagram from `sender`: an active peer's link is alive.
  void heard_from(NodeId sender, std::uint64_t now);
  // Acked when the pinger is an active peer; otherwise answered with DISCONNECT, so that a
  // link only one side holds (a reply and a DISCONNECT reordered) is dropped within a probe.
  void on_ping(const Address& from, NodeId sender, const wire::Ping& m, const wire::Outbox& out);
  void on_join(const Address& from, NodeId sender, std::uint64_t now, const wire::Outbox& out);
  void on_forward_join(const Address& from, NodeId sender, const wire::ForwardJoinMsg& m,
                       std::uint64_t now, const wire::Outbox& out);
  void on_neighbor(const Address& from, NodeId sender, bool high_priority, std::uint64_t now,
                   const wire::Outbox& out);
  void on_neighbor_reply(const Address& from, NodeId sender, bool accepted, std::uint64_t now,
                         const wire::Outbox& out);
  void on_disconnect(const Address& from, NodeId sender);
  void on_shuffle(const Address& from, NodeId sender, const wire::ShuffleMsg& m,
                  const wire::Outbox& out);
  void on_shuffle_reply(const wire::ShuffleMsg& m);

  // ---- timers ----
  // Probes idle links, drops silent peers, refills the active view, shuffles, rejoins.
  void tick(std::uint64_t now, const wire::Outbox& out);
  std::uint64_t next_deadline_ms() const { return next_tick_ms_; }

  // ---- the views ----
  struct Active {
    wire::PeerRef peer;
    std::uint64_t heard_ms = 0;  // last datagram from it
    std::uint64_t pinged_ms = 0;
  };
  std::span<const Active> active() const { return active_; }
  std::span<const wire::PeerRef> passive() const { return passive_; }
  bool is_active(NodeId id) const { return find_active(id) != nullptr; }
  // A uniformly random active peer; false when there is none.
  bool random_active(wire::PeerRef* out);
  // Whether `id` is in either view at `from` (a peer this node may serve).
  bool knows(NodeId id, const Address& from) const;
  std::size_t memory_bytes() const;

 private:
  Active* find_active(NodeId id);
  const Active* find_active(NodeId id) const;
  std::size_t passive_index(NodeId id) const;
  // Adds p to the active view (dropping a random peer with DISCONNECT when full). False when p
  // is this node or already active (its address is then refreshed).
  bool add_active(const wire::PeerRef& p, std::uint64_t now, const wire::Outbox& out);
  void remove_active(std::size_t i, bool to_passive);
  void add_passive(const wire::PeerRef& p, std::span<const wire::PeerRef> prefer_evict = {});
  void remove_passive(NodeId id);
  void send_join(const wire::Outbox& out);
  void send_neighbor_request(std::uint64_t now, const wire::Outbox& out);
  void send_shuffle(const wire::Outbox& out);
  void sample(std::span<const wire::PeerRef> from, std::size_t k, std::vector<wire::PeerRef>& into);
  template <class Encode>
  void send(const Address& to, const wire::Outbox& out, const Encode& encode);

  const NodeConfig& config_;
  Rng& rng_;
  NodeCounters& counters_;
  wire::PeerRef self_;
  std::size_t active_max_ = 5, passive_max_ = 30;
  std::vector<Active> active_;
  std::vector<wire::PeerRef> passive_;
  // NEIGHBOR requests in flight: a peer that does not answer within a probe interval is dropped
  // from the passive view.
  struct Pending {
    wire::PeerRef peer;
    std::uint64_t sent_ms = 0;
  };
  std::vector<Pending> pending_;
  std::vector<wire::PeerRef> shuffled_;  // what the last shuffle sent: evicted first
  std::vector<Address> seeds_;
  LinkListener link_;
  std::uint32_t next_seq_ = 1;
  std::uint64_t next_tick_ms_ = 0, next_shuffle_ms_ = 0, next_join_ms_ = 0;
  bool started_ = false;
};

}  // namespace rumor
