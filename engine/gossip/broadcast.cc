#include "engine/gossip/broadcast.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "base/assert.h"

namespace rumor {

namespace {
constexpr std::size_t kCellsMin = 16;
}  // namespace

// ---- slots and the key map --------------------------------------------------------------------

BroadcastQueue::Index BroadcastQueue::allocate() {
  if (free_ != kNil) {
    const Index i = free_;
    free_ = items_[i].next;
    return i;
  }
  RUMOR_ASSERT(items_.size() < kNil);
  items_.emplace_back();
  return static_cast<Index>(items_.size() - 1);
}

void BroadcastQueue::release(Index i) {
  Item& item = items_[i];
  map_erase(item.key);
  --size_;
  std::string().swap(item.message);  // a retired message gives its memory back now, not on reuse
  item.next = free_;
  free_ = i;
}

std::size_t BroadcastQueue::home(std::uint64_t key) const {
  // Fibonacci hashing: member ids are small consecutive numbers, key hashes are already mixed;
  // the multiply spreads both over the top bits.
  return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> cell_shift_);
}

BroadcastQueue::Index BroadcastQueue::find(std::uint64_t key) const {
  if (cells_.empty()) return kNil;
  const std::size_t mask = cells_.size() - 1;
  for (std::size_t c = home(key);; c = (c + 1) & mask) {
    const Cell& cell = cells_[c];
    if (cell.index == kNil) return kNil;
    if (cell.key == key) return cell.index;
  }
}

void BroadcastQueue::map_grow() {
  std::vector<Cell> old = std::move(cells_);
  const std::size_t n = old.empty() ? kCellsMin : old.size() * 2;
  cells_.assign(n, Cell{});
  cell_shift_ = 64 - std::countr_zero(n);
  const std::size_t mask = n - 1;
  for (const Cell& cell : old) {
    if (cell.index == kNil) continue;
    std::size_t c = home(cell.key);
    while (cells_[c].index != kNil) c = (c + 1) & mask;
    cells_[c] = cell;
  }
}

void BroadcastQueue::map_insert(std::uint64_t key, Index i) {
  // At most half full, so probe sequences stay short and always end at an empty cell.
  if ((size_ + 1) * 2 > cells_.size()) map_grow();
  const std::size_t mask = cells_.size() - 1;
  std::size_t c = home(key);
  while (cells_[c].index != kNil) c = (c + 1) & mask;
  cells_[c] = Cell{key, i};
}

void BroadcastQueue::map_erase(std::uint64_t key) {
  const std::size_t mask = cells_.size() - 1;
  std::size_t c = home(key);
  while (cells_[c].key != key || cells_[c].index == kNil) {
    RUMOR_ASSERT(cells_[c].index != kNil);
    c = (c + 1) & mask;
  }
  // Backward-shift deletion: pull later cells of the probe run into the hole when their home
  // does not lie (cyclically) between the hole and them, so no tombstones are needed.
  std::size_t hole = c;
  for (std::size_t j = (hole + 1) & mask; cells_[j].index != kNil; j = (j + 1) & mask) {
    const std::size_t h = home(cells_[j].key);
    if (((j - h) & mask) >= ((j - hole) & mask)) {
      cells_[hole] = cells_[j];
      hole = j;
    }
  }
  cells_[hole] = Cell{};
}

// ---- buckets --------------------------------------------------------------------------------

void BroadcastQueue::link(Index i) {
  Item& item = items_[i];
  Class& cls = classes_[item.prio];
  const std::size_t t = item.transmits;
  if (t >= cls.buckets.size()) {
    cls.buckets.resize(t + 1);
    cls.nonempty.resize(t / 64 + 1, 0);
  }
  Bucket& b = cls.buckets[t];
  ++cls.size;
  const std::uint64_t s = item.seqno;
  if (b.head == kNil) {
    item.prev = item.next = kNil;
    item.linked = true;
    b.head = b.tail = b.finger = i;
    cls.nonempty[t / 64] |= std::uint64_t{1} << (t % 64);
    return;
  }
  // Within a bucket the order is by seqno, but items reach it out of that order: an item
  // promoted from the bucket below may be older than some already here and newer than others
  // (they were sent more often sooner). New items go to the head; a backlog sent at last goes to
  // the tail; a packet's items from one bucket land next to each other, and next to the ones the
  // previous packet promoted, so the search also starts from the item linked here last. Three
  // walks in step, each stopping at a bucket end at the latest: the cost is the shortest.
  Index before = kNil;  // insert i in front of this item (kNil: at the tail)
  if (s > items_[b.head].seqno) {
    before = b.head;
  } else if (s > items_[b.tail].seqno) {
    // seqno(head) > s > seqno(tail): the bucket holds two items at least, head != tail.
    Index front = items_[b.head].next;
    Index back = items_[b.tail].prev;
    Index finger = b.finger;
    if (finger != kNil && !(items_[finger].linked && items_[finger].prio == item.prio &&
                            items_[finger].transmits == t)) {
      finger = kNil;
    }
    // From a finger newer than s, walk toward the tail (its next exists, it is not the tail);
    // from one older, toward the head (not the head either).
    const bool finger_older_side = finger != kNil && items_[finger].seqno > s;
    if (finger_older_side) finger = items_[finger].next;
    for (;;) {
      if (items_[front].seqno < s) {
        before = front;
        break;
      }
      if (items_[back].seqno > s) {
        before = items_[back].next;
        break;
      }
      if (finger != kNil) {
        if (finger_older_side) {
          if (items_[finger].seqno < s) {
            before = finger;
            break;
          }
          finger = items_[finger].next;
        } else {
          const Index newer = items_[finger].prev;
          if (items_[newer].seqno > s) {
            before = finger;
            break;
          }
          finger = newer;
        }
      }
      front = items_[front].next;
      back = items_[back].prev;
    }
  }
  if (before == kNil) {
    item.prev = b.tail;
    item.next = kNil;
    items_[b.tail].next = i;
    b.tail = i;
  } else {
    Item& after = items_[before];
    item.prev = after.prev;
    item.next = before;
    if (after.prev == kNil) {
      b.head = i;
    } else {
      items_[after.prev].next = i;
    }
    after.prev = i;
  }
  item.linked = true;
  b.finger = i;
}

void BroadcastQueue::unlink(Index i) {
  Item& item = items_[i];
  Class& cls = classes_[item.prio];
  const std::size_t t = item.transmits;
  Bucket& b = cls.buckets[t];
  if (item.prev == kNil) {
    b.head = item.next;
  } else {
    items_[item.prev].next = item.next;
  }
  if (item.next == kNil) {
    b.tail = item.prev;
  } else {
    items_[item.next].prev = item.prev;
  }
  item.prev = item.next = kNil;
  item.linked = false;
  --cls.size;
  if (b.head == kNil) cls.nonempty[t / 64] &= ~(std::uint64_t{1} << (t % 64));
}

// ---- the queue ------------------------------------------------------------------------------

void BroadcastQueue::push(std::uint8_t kind, std::uint64_t subject, Priority prio,
                          std::string message) {
  RUMOR_ASSERT(prio < kClasses);
  // Subjects of different kinds never replace each other (a key hash equal to a member id).
  const std::uint64_t key = subject * 4 + kind;
  if (const Index old = find(key); old != kNil) erase(old);
  if (size_ >= items_max_) {
    // Drop the most-sent item of the lowest non-empty priority class: it has done most of its
    // work. Among the most-sent, the oldest (the tail), as it is last in the class's order.
    for (int c = kClasses - 1; c >= 0; --c) {
      const Class& cls = classes_[c];
      if (cls.size == 0) continue;
      std::size_t w = cls.nonempty.size() - 1;
      while (cls.nonempty[w] == 0) --w;
      const std::size_t t =
          w * 64 + 63 - static_cast<std::size_t>(std::countl_zero(cls.nonempty[w]));
      erase(cls.buckets[t].tail);
      ++dropped_;
      break;
    }
  }
  const Index i = allocate();
  Item& item = items_[i];
  item.key = key;
  item.seqno = next_seqno_++;
  item.transmits = 0;
  item.prio = prio;
  item.message = std::move(message);
  map_insert(key, i);
  ++size_;
  link(i);
}

bool BroadcastQueue::has_fresh(std::uint32_t membership_fresh) const {
  if (classes_[kSmallUpdate].size != 0 || classes_[kLargeUpdate].size != 0) return true;
  const Class& cls = classes_[kMembership];
  if (cls.size == 0) return false;
  // Buckets 0 .. membership_fresh - 1, a word of the nonempty bitmap at a time.
  const std::size_t words = std::min<std::size_t>(cls.nonempty.size(), (membership_fresh + 63) / 64);
  for (std::size_t w = 0; w < words; ++w) {
    std::uint64_t bits = cls.nonempty[w];
    const std::size_t below = membership_fresh - w * 64;  // buckets of this word that count
    if (below < 64) bits &= (std::uint64_t{1} << below) - 1;
    if (bits != 0) return true;
  }
  return false;
}

std::size_t BroadcastQueue::retire_membership(std::uint32_t from_transmits, std::uint8_t kind,
                                              std::uint64_t keep_subject) {
  Class& cls = classes_[kMembership];
  const std::uint64_t keep = keep_subject * 4 + kind;
  std::size_t retired = 0;
  for (std::size_t t = from_transmits; t < cls.buckets.size(); ++t) {
    for (Index i = cls.buckets[t].head; i != kNil;) {
      const Index next = items_[i].next;
      if (items_[i].key != keep) {
        erase(i);
        ++retired;
      }
      i = next;
    }
  }
  return retired;
}

std::size_t BroadcastQueue::fill(wire::Writer& w, std::uint32_t membership_limit,
                                 std::uint32_t update_limit, bool holds_membership,
                                 bool holds_updates) {
  if (size_ == 0) return 0;
  // Membership first, but while updates wait it may take only half of the room, so a backlog of
  // membership news (a mass join) delays updates by a round, not by the whole backlog. Room the
  // updates leave goes back to membership at the end. Within a class, a bounded scan skips a
  // few items that do not fit so that smaller ones behind them get in.
  //
  // An appended item leaves its bucket at once (a later pass over the same class must not take
  // it twice) and joins the next bucket only after the packet is full, as the order of the
  // items it has not reached yet must not change under the scan.
  constexpr std::size_t kSkipsMax = 8;
  taken_.clear();
  // The room the packet would have left had every taken item been written: items of a class the
  // destination holds are taken (and charged) against it, but not written.
  std::size_t room = w.remaining();
  std::size_t written = 0;
  auto take = [&](int c, std::size_t keep_free) {
    const bool write = c == kMembership ? !holds_membership : !holds_updates;
    Class& cls = classes_[c];
    std::size_t skips = 0;
    for (std::size_t word = 0; word < cls.nonempty.size() && skips < kSkipsMax; ++word) {
      // A copy of the word: taking items empties at most the bucket being scanned, whose bit
      // is cleared from the copy before its scan.
      std::uint64_t bits = cls.nonempty[word];
      while (bits != 0 && skips < kSkipsMax) {
        const auto bit = static_cast<std::size_t>(std::countr_zero(bits));
        bits &= bits - 1;
        for (Index i = cls.buckets[word * 64 + bit].head; i != kNil && skips < kSkipsMax;) {
          Item& item = items_[i];
          const Index next = item.next;
          if (item.message.size() + keep_free > room) {
            ++skips;
          } else {
            if (write) {
              w.bytes(item.message.data(), item.message.size());
              ++written;
            }
            room -= item.message.size();
            unlink(i);
            taken_.push_back(i);
          }
          i = next;
        }
      }
    }
  };
  const bool updates_waiting = classes_[kSmallUpdate].size != 0 || classes_[kLargeUpdate].size != 0;
  take(kMembership, updates_waiting ? room / 2 : 0);
  take(kSmallUpdate, 0);
  take(kLargeUpdate, 0);
  if (updates_waiting) take(kMembership, 0);
  // In packet order: the items taken from one bucket come newest first, so each lands just
  // behind the one before it, where the bucket's finger points.
  for (const Index i : taken_) {
    Item& item = items_[i];
    if (++item.transmits >= (item.prio == kMembership ? membership_limit : update_limit)) {
      release(i);
    } else {
      link(i);
    }
  }
  sent_ += taken_.size();
  return written;
}

}  // namespace rumor
