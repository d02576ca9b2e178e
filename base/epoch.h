// Epoch-based reclamation (Fraser's EBR): memory that lock-free readers may still see is freed
// only after every reader that could have seen it has left.
//
// Thread-safety contract:
// - Any thread may `pin()` (readers). Pins nest. A pinned thread may dereference any pointer it
//   loads from a structure protected by the domain until it unpins.
// - A writer unlinks an object (so no new reader can reach it), then hands it to its own
//   `Retirer::retire()`. A Retirer belongs to one thread (a shard owner).
// - `Retirer::collect()` frees what no reader can still hold.
//
// Why it is safe: a reader announces the global epoch e it saw when pinning. The global epoch
// moves from g to g + 1 only when every pinned reader has announced g. An object retired when
// the global epoch was E was unlinked before then, so any reader that can hold it pinned at an
// epoch <= E. Reaching E + 2 needs every pinned reader to have announced E + 1, so all such
// readers have unpinned: the object is freed only when the global epoch is >= E + 2.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/assert.h"
#include "base/spsc_queue.h"

namespace rumor {

class EpochDomain {
 public:
  // Threads that may pin at once. A fixed limit (no allocation per reader); exceeding it is a
  // programmer error.
  static constexpr std::size_t kReaderThreadsMax = 512;

  static EpochDomain& global();

  EpochDomain() = default;
  EpochDomain(const EpochDomain&) = delete;
  EpochDomain& operator=(const EpochDomain&) = delete;

  class Guard {
   public:
    explicit Guard(EpochDomain& d);
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    EpochDomain& domain_;
    std::size_t slot_;
  };

  Guard pin() { return Guard(*this); }

  std::uint64_t epoch() const { return global_.load(std::memory_order_acquire); }

  // Advances the global epoch if every pinned reader has seen the current one. Returns the
  // global epoch after the attempt.
  std::uint64_t try_advance();

 private:
  friend class Guard;
  struct alignas(kCacheLineBytes) ReaderSlot {
    // 0 = not pinned; otherwise the announced epoch (epochs start at 1).
    std::atomic<std::uint64_t> announced{0};
    std::atomic<bool> in_use{false};
    std::uint32_t depth = 0;  // pin nesting, touched only by the owning thread
  };

  std::size_t claim_slot();
  void release_slot(std::size_t slot);
  std::size_t this_thread_slot();

  alignas(kCacheLineBytes) std::atomic<std::uint64_t> global_{1};
  std::atomic<std::size_t> slots_high_water_{0};
  ReaderSlot slots_[kReaderThreadsMax];
};

// One per writing thread: a list of unlinked objects waiting for readers to leave.
class Retirer {
 public:
  explicit Retirer(EpochDomain& domain = EpochDomain::global()) : domain_(domain) {}
  ~Retirer();  // frees everything: the owner guarantees no reader remains (shutdown)
  Retirer(const Retirer&) = delete;
  Retirer& operator=(const Retirer&) = delete;

  void retire(void* p, void (*deleter)(void*));
  template <typename T>
  void retire(T* p) {
    retire(static_cast<void*>(p), [](void* q) { delete static_cast<T*>(q); });
  }
  // Frees what is safe; returns how many objects were freed.
  std::size_t collect();
  std::size_t pending() const { return pending_.size(); }

 private:
  struct Item {
    void* p;
    void (*deleter)(void*);
    std::uint64_t epoch;
  };
  EpochDomain& domain_;
  std::vector<Item> pending_;
};

}  // namespace rumor
