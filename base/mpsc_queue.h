// MpscQueue: a bounded multi-producer queue with one consumer, after Dmitry Vyukov's bounded
// MPMC queue (each cell carries a sequence number, so producers claim cells with one CAS and
// never wait for each other). Used where application threads hand writes to a shard's owner.
// push fails when full: the caller gets a value error (kBusy), never a block or an allocation.
//
// Thread safety: any number of threads push; exactly one thread pops.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "base/assert.h"
#include "base/spsc_queue.h"

namespace rumor {

template <typename T>
class MpscQueue {
 public:
  explicit MpscQueue(std::size_t capacity)
      : mask_(capacity - 1), cells_(std::make_unique<Cell[]>(capacity)) {
    RUMOR_ASSERT(capacity >= 2);
    RUMOR_ASSERT((capacity & (capacity - 1)) == 0);
    for (std::size_t i = 0; i < capacity; ++i) {
      cells_[i].seq.store(i, std::memory_order_relaxed);
    }
  }

  std::size_t capacity() const { return mask_ + 1; }

  bool push(T value) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      // Acquire: the consumer's release of seq means it finished reading this cell.
      const std::uint64_t seq = cell.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        // Relaxed CAS: claiming the cell orders nothing by itself; the release below publishes.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.value = std::move(value);
          // Release: the value is written before the consumer sees seq == pos + 1.
          cell.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  std::optional<T> pop() {
    Cell& cell = cells_[head_ & mask_];
    // Acquire: pairs with the producer's release, so value is fully written.
    const std::uint64_t seq = cell.seq.load(std::memory_order_acquire);
    if (seq != head_ + 1) return std::nullopt;
    T value = std::move(cell.value);
    // Release: the cell is free for the producer that wraps around to it.
    cell.seq.store(head_ + mask_ + 1, std::memory_order_release);
    ++head_;
    return value;
  }

 private:
  struct alignas(kCacheLineBytes) Cell {
    std::atomic<std::uint64_t> seq;
    T value;
  };
  const std::uint64_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> tail_{0};
  alignas(kCacheLineBytes) std::uint64_t head_ = 0;  // consumer only
};

}  // namespace rumor
