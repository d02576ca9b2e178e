// Gossip: what a node tells the cluster and what it tells the application. It owns
//   - the broadcast queue (rumor mongering): membership news and applied key-value changes,
//     piggybacked on outgoing packets; membership news is retransmitted
//     retransmit_mult * ceil(log2(N + 1)) times, updates retransmit_mult * ceil(log10(N + 1))
//     times (engine/gossip/broadcast.h);
//   - subscriptions and membership callbacks, with the bounded queue of events they wait in until
//     the driver calls dispatch_events() (never inside a packet).
// It knows nothing of members or the store: the node hands it what changed.
//
// Not thread-safe: one per owner core, on that core's driver thread. Each core spreads its own
// shards' changes from its own queue; membership news, subscriptions and membership callbacks
// are the home core's (the core that runs membership). subscribe/on_membership are called
// before start.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gossip/broadcast.h"
#include "engine/store/store.h"
#include "engine/wire/packet.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"

namespace rumor {

class Gossip final : public wire::Piggyback {
 public:
  Gossip(const NodeConfig& config, NodeCounters& counters);

  // ---- what to spread ----
  // Membership news about member `m.node` (replaces older news about it).
  void broadcast_member(const wire::MemberMsg& m);
  // A change applied to the store, from any origin: queued for rumor mongering and offered to
  // the subscriptions whose prefix matches.
  void offer_change(const EntryView& e, bool local) {
    spread(e);
    offer_event(e, local);
  }
  // The two halves: queued for rumor mongering (every core's Gossip), and offered to the
  // subscriptions (the home core's).
  void spread(const EntryView& e);
  void offer_event(const EntryView& e, bool local);
  // Whether any subscription exists. Subscriptions are made before start, so after it any
  // thread may ask.
  bool wants_changes() const { return !subscriptions_.empty(); }
  // How many members are alive (self excluded): sets the retransmission limit.
  void set_live_members(std::size_t live) { live_ = live; }
  std::uint32_t retransmit_limit() const;         // membership news
  std::uint32_t update_retransmit_limit() const;  // key-value updates
  // wire::Piggyback: the queued broadcasts that fit.
  std::size_t fill(wire::Writer& w, wire::Holds holds) override;
  bool empty() const { return queue_.empty(); }
  // Whether a gossip round should send packets of its own: an update waits, or membership news
  // has had fewer than update_retransmit_limit() transmissions (memberlist's budget for
  // everything). Membership news past that keeps riding the packets a node sends anyway, up to
  // retransmit_limit(): the log2 budget costs bytes on probes, not packets.
  bool wants_round() const { return queue_.has_fresh(update_retransmit_limit()); }
  // A peer was found holding this node's whole member table (equal fingerprints on a ping):
  // membership news that has had its fresh budget (update_retransmit_limit(), memberlist's
  // whole budget) is retired instead of riding further probes to the log2 limit, except news
  // about `self` (its own refutation keeps the full budget). Returns how many were retired.
  std::size_t tables_agree(NodeId self) {
    return queue_.retire_membership(update_retransmit_limit(), kSubjectMember, self);
  }
  // Subject kinds in the broadcast queue: a member's news and a key's news never replace each
  // other.
  static constexpr std::uint8_t kSubjectMember = 0;
  static constexpr std::uint8_t kSubjectKey = 1;
  std::uint64_t dropped() const { return queue_.dropped(); }

  // ---- what to tell the application ----
  void subscribe(std::string_view prefix, Node::ChangeCallback cb);
  void on_membership(Node::MembershipCallback cb);
  bool wants_membership_events() const { return !membership_cbs_.empty(); }
  void emit_membership(MembershipEvent event);
  // Runs the callbacks of the events queued when the call began. Returns how many ran.
  std::size_t dispatch_events();

 private:
  struct Pending {
    bool is_change = false;
    Change change;
    MembershipEvent membership;
  };
  struct Subscription {
    std::string prefix;
    Node::ChangeCallback cb;
  };
  bool event_room();

  const NodeConfig& config_;
  NodeCounters& counters_;
  BroadcastQueue queue_;
  std::size_t live_ = 0;
  std::vector<Subscription> subscriptions_;
  std::vector<Node::MembershipCallback> membership_cbs_;
  std::deque<Pending> events_;
};

}  // namespace rumor
