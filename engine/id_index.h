// IdIndex: member id -> position in the member table, as a flat open-addressing table
// (linear probing, backward-shift deletion). Node ids are XXH3 hashes, so their bits index the
// table directly. A thousand-node view is looked up on every membership record received; with
// std::unordered_map each lookup was two dependent cache misses and dominated simulations.
// Not thread-safe: owned by the node's driver thread.
#pragma once

#include <cstdint>
#include <vector>

namespace rumor {

class IdIndex {
 public:
  static constexpr std::uint32_t kNone = UINT32_MAX;

  std::uint32_t find(std::uint64_t id) const {
    if (slots_.empty()) return kNone;
    for (std::size_t i = home(id);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.pos == kNone) return kNone;
      if (s.id == id) return s.pos;
    }
  }

  void put(std::uint64_t id, std::uint32_t pos) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    for (std::size_t i = home(id);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.pos == kNone) {
        s = Slot{id, pos};
        ++size_;
        return;
      }
      if (s.id == id) {
        s.pos = pos;
        return;
      }
    }
  }

  void erase(std::uint64_t id) {
    if (slots_.empty()) return;
    std::size_t i = home(id);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].pos == kNone) return;
      if (slots_[i].id == id) break;
    }
    // Backward-shift: move later members of the run into the hole so probes stay unbroken.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask_; slots_[j].pos != kNone; j = (j + 1) & mask_) {
      const std::size_t h = home(slots_[j].id);
      // Move j into the hole if its home is not in (hole, j] cyclically.
      const bool in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (!in_range) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
  }

  std::size_t size() const { return size_; }

 private:
  struct Slot {
    std::uint64_t id = 0;
    std::uint32_t pos = kNone;
  };
  std::size_t home(std::uint64_t id) const { return (id * 0x9e3779b97f4a7c15ull) >> shift_; }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    const std::size_t cap = old.empty() ? 16 : old.size() * 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(cap));
    size_ = 0;
    for (const Slot& s : old) {
      if (s.pos != kNone) put(s.id, s.pos);
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace rumor
