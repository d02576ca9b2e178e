// ReferenceQueue: BroadcastQueue as of b840303 (one std::set per priority class, a heap item
// per entry), kept as the model that tests/gossip/broadcast_queue_test.cc compares the queue
// against byte for byte, and as the baseline of bench/broadcast_bench.cc. Not for production.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/gossip/broadcast.h"
#include "engine/wire/wire.h"

namespace rumor::reference {

class ReferenceQueue {
 public:
  using Priority = BroadcastQueue::Priority;
  explicit ReferenceQueue(std::size_t items_max) : items_max_(items_max) {}

  void push(std::uint8_t kind, std::uint64_t subject, Priority prio, std::string message) {
    const std::uint64_t key = subject * 4 + kind;
    auto it = by_key_.find(key);
    if (it != by_key_.end()) erase(it->second.get());
    if (by_key_.size() >= items_max_) {
      for (int c = kClasses - 1; c >= 0; --c) {
        if (order_[c].empty()) continue;
        erase(*std::prev(order_[c].end()));
        ++dropped_;
        break;
      }
    }
    auto item = std::make_unique<Item>();
    item->prio = prio;
    item->seqno = next_seqno_++;
    item->key = key;
    item->message = std::move(message);
    order_[prio].insert(item.get());
    by_key_.emplace(key, std::move(item));
  }

  std::size_t fill(wire::Writer& w, std::uint32_t limit) {
    if (by_key_.empty()) return 0;
    constexpr std::size_t kSkipsMax = 8;
    std::vector<Item*> taken;
    auto take = [&](int c, std::size_t keep_free) {
      std::size_t skips = 0;
      for (auto it = order_[c].begin(); it != order_[c].end() && skips < kSkipsMax; ++it) {
        Item* item = *it;
        if (item->in_packet) continue;
        if (item->message.size() + keep_free > w.remaining()) {
          ++skips;
          continue;
        }
        w.bytes(item->message.data(), item->message.size());
        item->in_packet = true;
        taken.push_back(item);
      }
    };
    const bool updates_waiting = !order_[BroadcastQueue::kSmallUpdate].empty() ||
                                 !order_[BroadcastQueue::kLargeUpdate].empty();
    take(BroadcastQueue::kMembership, updates_waiting ? w.remaining() / 2 : 0);
    take(BroadcastQueue::kSmallUpdate, 0);
    take(BroadcastQueue::kLargeUpdate, 0);
    if (updates_waiting) take(BroadcastQueue::kMembership, 0);
    for (Item* item : taken) {
      item->in_packet = false;
      order_[item->prio].erase(item);
      if (++item->transmits >= limit) {
        by_key_.erase(item->key);
      } else {
        order_[item->prio].insert(item);
      }
    }
    sent_ += taken.size();
    return taken.size();
  }

  std::size_t size() const { return by_key_.size(); }
  bool empty() const { return by_key_.empty(); }
  std::uint64_t dropped() const { return dropped_; }
  std::uint64_t sent() const { return sent_; }

 private:
  struct Item {
    Priority prio;
    std::uint32_t transmits = 0;
    std::uint64_t seqno = 0;
    std::uint64_t key = 0;
    bool in_packet = false;
    std::string message;
  };
  struct Order {
    bool operator()(const Item* a, const Item* b) const {
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      return a->seqno > b->seqno;
    }
  };
  static constexpr int kClasses = 3;
  void erase(Item* item) {
    order_[item->prio].erase(item);
    by_key_.erase(item->key);
  }

  std::size_t items_max_;
  std::set<Item*, Order> order_[kClasses];
  std::unordered_map<std::uint64_t, std::unique_ptr<Item>> by_key_;
  std::uint64_t next_seqno_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t sent_ = 0;
};

}  // namespace rumor::reference
