#include "engine/gossip/broadcast.h"

#include <vector>

namespace rumor {

void BroadcastQueue::erase(Item* item) {
  order_[item->prio].erase(item);
  by_key_.erase(item->key);
}

void BroadcastQueue::push(std::uint8_t kind, std::uint64_t subject, Priority prio,
                          std::string message) {
  // Subjects of different kinds never replace each other (a key hash equal to a member id).
  const std::uint64_t key = subject * 4 + kind;
  auto it = by_key_.find(key);
  if (it != by_key_.end()) erase(it->second.get());
  if (by_key_.size() >= items_max_) {
    // Drop the most-sent item of the lowest non-empty priority class: it has done most of its
    // work.
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

std::size_t BroadcastQueue::fill(wire::Writer& w, std::uint32_t limit) {
  if (by_key_.empty()) return 0;
  // Membership first, but while updates wait it may take only half of the room, so a backlog of
  // membership news (a mass join) delays updates by a round, not by the whole backlog. Room the
  // updates leave goes back to membership at the end. Within a class, a bounded scan skips a
  // few items that do not fit so that smaller ones behind them get in.
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
  const bool updates_waiting = !order_[kSmallUpdate].empty() || !order_[kLargeUpdate].empty();
  take(kMembership, updates_waiting ? w.remaining() / 2 : 0);
  take(kSmallUpdate, 0);
  take(kLargeUpdate, 0);
  if (updates_waiting) take(kMembership, 0);
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

}  // namespace rumor
