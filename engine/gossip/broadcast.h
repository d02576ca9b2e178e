// BroadcastQueue: what a node still has to tell others (rumor mongering). Every item is an
// encoded message (membership change or key-value update) that rides on outgoing packets until
// it has been sent `limit` times, where limit = retransmit_mult * ceil(log2(N + 1)) (memberlist's
// TransmitLimitedQueue). Packets take items by priority (membership first, then small updates,
// then large ones), fewest transmissions first, newest first among equals, and pack as many as
// fit. A newer item for the same subject (a member, a key) replaces the older one.
//
// Bounded: at most `items_max` items; past that the item with the most transmissions in the
// lowest priority class is dropped and counted (anti-entropy repairs what it would have spread).
//
// Not thread-safe: owned by the node's driver thread.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "engine/wire/wire.h"

namespace rumor {

class BroadcastQueue {
 public:
  enum Priority : std::uint8_t { kMembership = 0, kSmallUpdate = 1, kLargeUpdate = 2 };
  static constexpr std::size_t kSmallUpdateBytes = 128;

  explicit BroadcastQueue(std::size_t items_max) : items_max_(items_max) {}

  // `subject` names what the item is about (member id, key hash); kind separates namespaces.
  // `message` is a complete encoded message (type, length, body).
  void push(std::uint8_t kind, std::uint64_t subject, Priority prio, std::string message);
  // Appends items to w while they fit; each appended item counts one transmission and retires
  // after `limit`. Returns how many were appended.
  std::size_t fill(wire::Writer& w, std::uint32_t limit);

  std::size_t size() const { return by_key_.size(); }
  bool empty() const { return by_key_.empty(); }
  std::uint64_t dropped() const { return dropped_; }
  std::uint64_t sent() const { return sent_; }

 private:
  struct Item {
    Priority prio;
    std::uint32_t transmits = 0;
    std::uint64_t seqno = 0;  // insertion order: newer first among equals
    std::uint64_t key = 0;
    bool in_packet = false;  // appended to the packet being filled (not part of the order)
    std::string message;
  };
  struct Order {
    bool operator()(const Item* a, const Item* b) const {
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      return a->seqno > b->seqno;
    }
  };
  static constexpr int kClasses = 3;
  void erase(Item* item);

  std::size_t items_max_;
  // One ordered set per priority class: a packet takes what fits from the first class, then
  // fills the space left with the next, so a backlog of membership news (a mass join) does not
  // starve a small update that fits in the gap.
  std::set<Item*, Order> order_[kClasses];
  std::unordered_map<std::uint64_t, std::unique_ptr<Item>> by_key_;
  std::uint64_t next_seqno_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t sent_ = 0;
};

}  // namespace rumor
