#include "engine/broadcast.h"

#include <vector>

namespace rumor {

void BroadcastQueue::erase(Item* item) {
  order_.erase(item);
  by_key_.erase(item->key);
}

void BroadcastQueue::push(std::uint8_t kind, std::uint64_t subject, Priority prio,
                          std::string message) {
  // Subjects of different kinds never replace each other (a key hash equal to a member id).
  const std::uint64_t key = subject * 4 + kind;
  auto it = by_key_.find(key);
  if (it != by_key_.end()) erase(it->second.get());
  if (order_.size() >= items_max_) {
    // Drop the most-sent item of the lowest-priority class: it has done most of its work.
    Item* victim = *std::prev(order_.end());
    erase(victim);
    ++dropped_;
  }
  auto item = std::make_unique<Item>();
  item->prio = prio;
  item->seqno = next_seqno_++;
  item->key = key;
  item->message = std::move(message);
  order_.insert(item.get());
  by_key_.emplace(key, std::move(item));
}

std::size_t BroadcastQueue::fill(wire::Writer& w, std::uint32_t limit) {
  if (order_.empty()) return 0;
  // Bounded scan: skipping a few items that do not fit lets smaller ones behind them in.
  constexpr std::size_t kSkipsMax = 32;
  std::vector<Item*> taken;
  std::size_t skips = 0;
  for (auto it = order_.begin(); it != order_.end() && skips < kSkipsMax; ++it) {
    Item* item = *it;
    if (item->message.size() > w.remaining()) {
      ++skips;
      continue;
    }
    w.bytes(item->message.data(), item->message.size());
    taken.push_back(item);
  }
  for (Item* item : taken) {
    order_.erase(item);
    if (++item->transmits >= limit) {
      by_key_.erase(item->key);
    } else {
      order_.insert(item);
    }
  }
  sent_ += taken.size();
  return taken.size();
}

}  // namespace rumor
