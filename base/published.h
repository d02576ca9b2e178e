// Published<T>: a copy of a counters struct that one thread writes and others read, for summing
// per-core counters (a node's NodeCounters, a reactor's ReactorCounters and TransportCounters).
// T is a struct of std::uint64_t words only. The owner publishes after its turn; a reader adds
// the copy into its own sum word by word.
//
// Thread-safety: publish() from the owning thread only; add_to() and load() from any thread.
// Relaxed atomics: these are statistics, each word on its own, and they order nothing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace rumor {

template <class T>
class Published {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % sizeof(std::uint64_t) == 0,
                "Published<T> needs a struct of uint64 words");

 public:
  static constexpr std::size_t kWords = sizeof(T) / sizeof(std::uint64_t);

  void publish(const T& value) {
    std::uint64_t w[kWords];
    std::memcpy(w, &value, sizeof(w));
    for (std::size_t i = 0; i < kWords; ++i) words_[i].store(w[i], std::memory_order_relaxed);
  }
  T load() const {
    std::uint64_t w[kWords];
    for (std::size_t i = 0; i < kWords; ++i) w[i] = words_[i].load(std::memory_order_relaxed);
    T out;
    std::memcpy(&out, w, sizeof(w));
    return out;
  }
  // sum += this copy, word by word.
  void add_to(T& sum) const { add_words(sum, load()); }

  static void add_words(T& sum, const T& more) {
    std::uint64_t a[kWords], b[kWords];
    std::memcpy(a, &sum, sizeof(a));
    std::memcpy(b, &more, sizeof(b));
    for (std::size_t i = 0; i < kWords; ++i) a[i] += b[i];
    std::memcpy(&sum, a, sizeof(a));
  }

 private:
  std::array<std::atomic<std::uint64_t>, kWords> words_{};
};

}  // namespace rumor
