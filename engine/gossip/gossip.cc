#include "engine/gossip/gossip.h"

#include <cmath>

#include "base/assert.h"
#include "engine/gossip/bulk.h"

namespace rumor {


Gossip::Gossip(const NodeConfig& config, NodeCounters& counters)
    : config_(config), counters_(counters), queue_(config.broadcast_queue_max) {}

std::uint32_t Gossip::retransmit_limit() const {
  const auto n = static_cast<double>(live_ + 1);
  return config_.retransmit_mult * static_cast<std::uint32_t>(std::ceil(std::log2(n + 1)));
}

std::uint32_t Gossip::update_retransmit_limit() const {
  // memberlist's scale. A node an update misses is repaired by anti-entropy, so the update
  // needs only enough copies to reach nearly everyone (a node is missed with probability about
  // e^-limit); membership keeps log2, since a refutation that misses is a false death.
  const auto n = static_cast<double>(live_ + 1);
  return config_.retransmit_mult * static_cast<std::uint32_t>(std::ceil(std::log10(n + 1)));
}

void Gossip::broadcast_member(const wire::MemberMsg& m) {
  std::string msg(wire::kMessageHeaderBytes + 64 + m.name.size() + m.metadata.size(), '\0');
  wire::Writer w(std::as_writable_bytes(std::span<char>(msg.data(), msg.size())));
  wire::encode(w, m);
  RUMOR_ASSERT(w.ok());
  msg.resize(w.size());
  queue_.push(kSubjectMember, m.node, BroadcastQueue::kMembership, std::move(msg));
  ++counters_.broadcasts_queued;
}

void Gossip::spread(const EntryView& e) {
  std::string msg;
  if (travels_whole(config_, e)) {
    msg.assign(entry_message_bytes(e.key.size(), e.value.size()), '\0');
    wire::Writer w(std::as_writable_bytes(std::span<char>(msg.data(), msg.size())));
    wire::encode(w, wire::EntryMsg{e.tombstone, e.version, e.key, e.value});
    RUMOR_ASSERT(w.ok());
  } else {
    // Too large for a datagram: its announcement spreads instead, and nodes that lack this
    // version pull the value from whoever announced it (engine/gossip/bulk.h).
    msg = encode_announcement(config_, e);
  }
  const auto prio = msg.size() <= BroadcastQueue::kSmallUpdateBytes ? BroadcastQueue::kSmallUpdate
                                                                    : BroadcastQueue::kLargeUpdate;
  queue_.push(kSubjectKey, Store::hash_key(e.key), prio, std::move(msg));
  ++counters_.broadcasts_queued;
}

void Gossip::offer_event(const EntryView& e, bool local) {
  if (subscriptions_.empty()) return;
  bool wanted = false;
  for (const auto& sub : subscriptions_) {
    if (e.key.substr(0, sub.prefix.size()) == sub.prefix) wanted = true;
  }
  if (!wanted || !event_room()) return;
  Pending p;
  p.is_change = true;
  p.change = Change{std::string(e.key), std::string(e.value), e.version, e.tombstone, local};
  events_.push_back(std::move(p));
}

std::size_t Gossip::fill(wire::Writer& w, wire::Holds holds) {
  return queue_.fill(w, retransmit_limit(), update_retransmit_limit(),
                     (holds & wire::kHoldsMembers) != 0, (holds & wire::kHoldsStore) != 0);
}

void Gossip::subscribe(std::string_view prefix, Node::ChangeCallback cb) {
  subscriptions_.push_back(Subscription{std::string(prefix), std::move(cb)});
}

void Gossip::on_membership(Node::MembershipCallback cb) {
  membership_cbs_.push_back(std::move(cb));
}

bool Gossip::event_room() {
  if (events_.size() < config_.events_max) return true;
  ++counters_.events_dropped;
  return false;
}

void Gossip::emit_membership(MembershipEvent event) {
  if (membership_cbs_.empty() || !event_room()) return;
  Pending p;
  p.membership = std::move(event);
  events_.push_back(std::move(p));
}

std::size_t Gossip::dispatch_events() {
  std::size_t n = 0;
  // Bounded by what was queued when the call began: callbacks that write do not loop forever.
  std::size_t budget = events_.size();
  while (budget-- > 0 && !events_.empty()) {
    Pending p = std::move(events_.front());
    events_.pop_front();
    if (p.is_change) {
      for (const auto& sub : subscriptions_) {
        if (p.change.key.compare(0, sub.prefix.size(), sub.prefix) == 0) sub.cb(p.change);
      }
    } else {
      for (const auto& cb : membership_cbs_) cb(p.membership);
    }
    ++n;
  }
  return n;
}

}  // namespace rumor
