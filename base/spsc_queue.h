// SpscQueue: a fixed-capacity single-producer/single-consumer ring (Seastar's cross-core
// queues). Capacity is a power of two fixed at construction; push fails when full (the caller
// counts it and applies back-pressure), it never allocates after construction.
//
// Thread safety: exactly one thread calls push/push_batch, exactly one other thread calls
// pop/pop_batch. Each side caches the other side's index to avoid touching its cache line on
// every call.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "base/assert.h"

namespace rumor {

inline constexpr std::size_t kCacheLineBytes = 64;

template <typename T>
class SpscQueue {
 public:
  explicit SpscQueue(std::size_t capacity)
      : mask_(capacity - 1), slots_(std::make_unique<T[]>(capacity)) {
    RUMOR_ASSERT(capacity >= 2);
    RUMOR_ASSERT((capacity & (capacity - 1)) == 0);
  }

  std::size_t capacity() const { return mask_ + 1; }

  // Producer side.
  bool push(T value) {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      // Acquire: the consumer's release store of head_ orders its reads of the slot before
      // our overwrite of it.
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_] = std::move(value);
    // Release: publishes the slot contents before the consumer can observe the new tail.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Producer side: fills the next slot in place (fill(T&)), reusing what the slot owns (a
  // string's capacity, say), so a steady stream allocates nothing. Pair with visit_batch.
  template <typename Fill>
  bool push_in_place(Fill&& fill) {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);  // see push()
      if (tail - head_cache_ > mask_) return false;
    }
    fill(slots_[tail & mask_]);
    tail_.store(tail + 1, std::memory_order_release);  // see push()
    return true;
  }

  // Consumer side.
  std::optional<T> pop() {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      // Acquire: pairs with the producer's release of tail_, so the slot is fully written.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return std::nullopt;
    }
    T value = std::move(slots_[head & mask_]);
    // Release: our read of the slot happens before the producer may reuse it.
    head_.store(head + 1, std::memory_order_release);
    return value;
  }

  // Consumer side: pops up to max items into out, returns how many. One acquire and one
  // release for the whole batch.
  template <typename OutIt>
  std::size_t pop_batch(OutIt out, std::size_t max) {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    tail_cache_ = tail_.load(std::memory_order_acquire);  // see pop()
    std::size_t n = static_cast<std::size_t>(tail_cache_ - head);
    if (n > max) n = max;
    for (std::size_t i = 0; i < n; ++i) *out++ = std::move(slots_[(head + i) & mask_]);
    head_.store(head + n, std::memory_order_release);  // see pop()
    return n;
  }

  // Consumer side: visits up to max items (fn(const T&)) without moving them out, so their
  // buffers stay in the slots for push_in_place to reuse; returns how many.
  template <typename Fn>
  std::size_t visit_batch(Fn&& fn, std::size_t max) {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    tail_cache_ = tail_.load(std::memory_order_acquire);  // see pop()
    std::size_t n = static_cast<std::size_t>(tail_cache_ - head);
    if (n > max) n = max;
    for (std::size_t i = 0; i < n; ++i) fn(static_cast<const T&>(slots_[(head + i) & mask_]));
    head_.store(head + n, std::memory_order_release);  // see pop()
    return n;
  }

  // Approximate; exact only when called from one of the two sides while the other is idle.
  std::size_t size_approx() const {
    return static_cast<std::size_t>(tail_.load(std::memory_order_relaxed) -
                                    head_.load(std::memory_order_relaxed));
  }

 private:
  const std::uint64_t mask_;
  std::unique_ptr<T[]> slots_;
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> head_{0};
  std::uint64_t tail_cache_ = 0;  // consumer's copy of tail_
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> tail_{0};
  std::uint64_t head_cache_ = 0;  // producer's copy of head_
};

}  // namespace rumor
