// BroadcastQueue: what a node still has to tell others (rumor mongering). Every item is an
// encoded message (membership change or key-value update) that rides on outgoing packets until
// it has been sent `limit` times (memberlist's TransmitLimitedQueue; Gossip sets one limit for
// membership news and one for updates). Packets take items by priority (membership first, then small updates,
// then large ones), fewest transmissions first, newest first among equals, and pack as many as
// fit. A newer item for the same subject (a member, a key) replaces the older one.
//
// Bounded: at most `items_max` items; past that the item with the most transmissions in the
// lowest priority class is dropped and counted (anti-entropy repairs what it would have spread).
//
// Cost: transmit counts are small integers below the limit, so each class keeps one list per
// count instead of one ordered tree, items live in reused slots and a flat map finds them by
// subject; nothing allocates once the queue has reached its working size. Push is O(1)
// amortised; fill is O(1) per item it looks at, plus, for each item it sends, the search for
// its place among the items sent as often (kept in seqno order). That search starts from both
// ends and from where the last one ended; in rumor load --nodes 1000 it takes 0.04 steps per
// item on average (at most 319 once), where starting from the ends alone took 13.
//
// Not thread-safe: owned by the node's driver thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  std::size_t fill(wire::Writer& w, std::uint32_t limit) { return fill(w, limit, limit); }
  // Membership items retire after membership_limit transmissions, updates after update_limit.
  // When the destination holds all membership news (`holds_membership`) or all updates
  // (`holds_updates`) already, the items of that class that would have been appended are
  // charged their transmission as usual, and take the room they would have taken, but are not
  // written: the packet is smaller and each item is sent the same number of times to nodes that
  // may lack it. Returns how many were written.
  std::size_t fill(wire::Writer& w, std::uint32_t membership_limit, std::uint32_t update_limit,
                   bool holds_membership = false, bool holds_updates = false);

  // True while an update waits, or a membership item has been sent fewer than
  // `membership_fresh` times: what is worth a packet of its own. Older membership items still
  // ride on packets sent anyway (probes, acks, gossip packets for fresh items) until their limit.
  bool has_fresh(std::uint32_t membership_fresh) const;

  // Retires the membership items sent `from_transmits` times or more, except those about
  // (kind, keep_subject). Returns how many it retired. For news that has had its fresh budget
  // once the node learns the cluster's tables already agree (docs/protocol.md "Dissemination").
  std::size_t retire_membership(std::uint32_t from_transmits, std::uint8_t kind,
                                std::uint64_t keep_subject);

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::uint64_t dropped() const { return dropped_; }
  std::uint64_t sent() const { return sent_; }

 private:
  using Index = std::uint32_t;  // an item's slot in items_
  static constexpr Index kNil = ~Index{0};
  static constexpr int kClasses = 3;

  struct Item {
    std::uint64_t key = 0;
    std::uint64_t seqno = 0;  // insertion order: newer first among equals
    std::uint32_t transmits = 0;
    Index prev = kNil;  // neighbours in its bucket, newer side
    Index next = kNil;  // older side; the next free slot while the slot is free
    Priority prio = kMembership;
    bool linked = false;  // in its bucket (not free, not in the packet being filled)
    std::string message;
  };
  // The items of one class with one transmit count, newest (highest seqno) at the head.
  struct Bucket {
    Index head = kNil;
    Index tail = kNil;
    Index finger = kNil;  // the item linked here last, if it is still here: a search start
  };
  // One priority class: buckets[t] holds the items sent t times, so the class's order (fewest
  // transmissions first, newest first among equals) is the buckets in turn, each head to tail.
  // `nonempty` has bit t set while buckets[t] holds items, so fill and the drop skip empty
  // counts a word at a time.
  struct Class {
    std::vector<Bucket> buckets;
    std::vector<std::uint64_t> nonempty;
    std::size_t size = 0;
  };
  // Open addressing, linear probing: (kind, subject) key -> slot. kNil marks an empty cell.
  struct Cell {
    std::uint64_t key = 0;
    Index index = kNil;
  };

  Index allocate();
  void release(Index i);  // forgets the key and frees the slot; the item is in no bucket
  void link(Index i);     // into the bucket of its class and transmit count, by seqno
  void unlink(Index i);
  void erase(Index i) {
    unlink(i);
    release(i);
  }
  Index find(std::uint64_t key) const;
  void map_insert(std::uint64_t key, Index i);
  void map_erase(std::uint64_t key);
  void map_grow();
  std::size_t home(std::uint64_t key) const;

  std::size_t items_max_;
  // One bucketed list per priority class: a packet takes what fits from the first class, then
  // fills the space left with the next, so a backlog of membership news (a mass join) does not
  // starve a small update that fits in the gap.
  Class classes_[kClasses];
  std::vector<Item> items_;   // slots; indices stay valid while the vector grows
  Index free_ = kNil;         // free slots, linked through Item::next
  std::vector<Cell> cells_;   // power-of-two size, at most half full
  int cell_shift_ = 64;       // 64 - log2(cells_.size())
  std::vector<Index> taken_;  // the packet being filled, reused across fills
  std::size_t size_ = 0;
  std::uint64_t next_seqno_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t sent_ = 0;
};

}  // namespace rumor
