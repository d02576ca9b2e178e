#include "base/epoch.h"

namespace rumor {

EpochDomain& EpochDomain::global() {
  static EpochDomain domain;
  return domain;
}

namespace {
// Each thread's slot in each domain it has pinned. Threads touch few domains (normally only the
// global one), so a tiny linear list is enough.
struct ThreadSlots {
  struct Entry {
    EpochDomain* domain;
    std::size_t slot;
  };
  std::vector<Entry> entries;
  void (*release)(EpochDomain*, std::size_t) = nullptr;
  ~ThreadSlots() {
    for (auto& e : entries) release(e.domain, e.slot);
  }
};
thread_local ThreadSlots t_slots;
}  // namespace

std::size_t EpochDomain::claim_slot() {
  for (std::size_t i = 0; i < kReaderThreadsMax; ++i) {
    bool expected = false;
    // Acquire: we take over a slot a finished thread released; its last writes are done.
    if (!slots_[i].in_use.load(std::memory_order_relaxed) &&
        slots_[i].in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      std::size_t hw = slots_high_water_.load(std::memory_order_relaxed);
      while (hw < i + 1 &&
             !slots_high_water_.compare_exchange_weak(hw, i + 1, std::memory_order_release)) {
      }
      return i;
    }
  }
  RUMOR_ASSERT(false && "more than kReaderThreadsMax threads pinned an EpochDomain");
  return 0;
}

void EpochDomain::release_slot(std::size_t slot) {
  RUMOR_ASSERT(slots_[slot].depth == 0);
  // Release: the slot's last announcement (0) is visible before another thread claims it.
  slots_[slot].in_use.store(false, std::memory_order_release);
}

std::size_t EpochDomain::this_thread_slot() {
  for (auto& e : t_slots.entries) {
    if (e.domain == this) return e.slot;
  }
  std::size_t slot = claim_slot();
  t_slots.release = [](EpochDomain* d, std::size_t s) { d->release_slot(s); };
  t_slots.entries.push_back({this, slot});
  return slot;
}

EpochDomain::Guard::Guard(EpochDomain& d) : domain_(d), slot_(d.this_thread_slot()) {
  ReaderSlot& s = domain_.slots_[slot_];
  if (s.depth++ > 0) return;
  const std::uint64_t e = domain_.global_.load(std::memory_order_relaxed);
  s.announced.store(e, std::memory_order_relaxed);
  // Seq-cst fence: our announcement is visible to any advancer before we load any protected
  // pointer; otherwise an advancer could miss us and a retirer free what we are about to read.
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

EpochDomain::Guard::~Guard() {
  ReaderSlot& s = domain_.slots_[slot_];
  if (--s.depth > 0) return;
  // Release: all our reads of protected memory happen before an advancer sees us leave (and so
  // before anything is freed on the strength of that).
  s.announced.store(0, std::memory_order_release);
}

std::uint64_t EpochDomain::try_advance() {
  std::uint64_t g = global_.load(std::memory_order_acquire);
  // Seq-cst fence pairs with the readers' fence in Guard: either we see a reader's
  // announcement, or that reader sees the unlink that preceded this call.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::size_t n = slots_high_water_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    // Acquire: pairs with the reader's release on unpin (see ~Guard).
    const std::uint64_t a = slots_[i].announced.load(std::memory_order_acquire);
    if (a != 0 && a != g) return g;
  }
  // Acq-rel: a retirer that sees the new epoch also sees every unpin we observed.
  if (global_.compare_exchange_strong(g, g + 1, std::memory_order_acq_rel)) return g + 1;
  return g;  // another thread advanced it; g now holds the current value
}

Retirer::~Retirer() {
  for (auto& item : pending_) item.deleter(item.p);
}

void Retirer::retire(void* p, void (*deleter)(void*)) {
  pending_.push_back({p, deleter, domain_.epoch()});
}

std::size_t Retirer::collect() {
  if (pending_.empty()) return 0;
  const std::uint64_t g = domain_.try_advance();
  std::size_t kept = 0, freed = 0;
  for (auto& item : pending_) {
    if (item.epoch + 2 <= g) {
      item.deleter(item.p);
      ++freed;
    } else {
      pending_[kept++] = item;
    }
  }
  pending_.resize(kept);
  return freed;
}

}  // namespace rumor
