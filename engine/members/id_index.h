// IdIndex: member id -> position in the member table, as a flat open-addressing table
// (linear probing, backward-shift deletion). Node ids are XXH3 hashes, so their bits index the
// table directly. A thousand-node view is looked up on every membership record received; with
// std::unordered_map each lookup was two dependent cache misses and dominated simulations.
//
// A slot holds only the position (4 bytes): the id is read from the member table through the
// caller's `id_of(pos)`. Every node holds one entry per member, so a 10,000-node simulation
// holds 10^8 of them; 16-byte {id, pos} slots cost 5 GiB there, positions alone 1.3 GiB. The
// price is one more load per probe, into the record that the caller reads next anyway.
// Not thread-safe: owned by the node's driver thread.
#pragma once

#include <cstdint>
#include <vector>

namespace rumor {

class IdIndex {
 public:
  static constexpr std::uint32_t kNone = UINT32_MAX;

  // IdOf: std::uint64_t(std::uint32_t pos), the id of the member at a position in the index.
  template <class IdOf>
  std::uint32_t find(std::uint64_t id, const IdOf& id_of) const {
    if (slots_.empty()) return kNone;
    for (std::size_t i = home(id);; i = (i + 1) & mask_) {
      const std::uint32_t pos = slots_[i];
      if (pos == kNone) return kNone;
      if (id_of(pos) == id) return pos;
    }
  }

  // Adds id at pos, or moves it to pos. id_of must answer for every position already indexed
  // (a position being replaced still answers with its old id).
  template <class IdOf>
  void put(std::uint64_t id, std::uint32_t pos, const IdOf& id_of) {
    if ((size_ + 1) * 2 > slots_.size()) grow(id_of);
    for (std::size_t i = home(id);; i = (i + 1) & mask_) {
      std::uint32_t& s = slots_[i];
      if (s == kNone) {
        s = pos;
        ++size_;
        return;
      }
      if (id_of(s) == id) {
        s = pos;
        return;
      }
    }
  }

  template <class IdOf>
  void erase(std::uint64_t id, const IdOf& id_of) {
    if (slots_.empty()) return;
    std::size_t i = home(id);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i] == kNone) return;
      if (id_of(slots_[i]) == id) break;
    }
    // Backward-shift: move later members of the run into the hole so probes stay unbroken.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask_; slots_[j] != kNone; j = (j + 1) & mask_) {
      const std::size_t h = home(id_of(slots_[j]));
      // Move j into the hole if its home is not in (hole, j] cyclically.
      const bool in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (!in_range) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = kNone;
    --size_;
  }

  // Room for n ids without growing.
  template <class IdOf>
  void reserve(std::size_t n, const IdOf& id_of) {
    while (n * 2 > slots_.size()) grow(id_of);
  }

  std::size_t size() const { return size_; }
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(std::uint32_t); }

 private:
  std::size_t home(std::uint64_t id) const { return (id * 0x9e3779b97f4a7c15ull) >> shift_; }
  template <class IdOf>
  void grow(const IdOf& id_of) {
    std::vector<std::uint32_t> old = std::move(slots_);
    const std::size_t cap = old.empty() ? 16 : old.size() * 2;
    slots_.assign(cap, kNone);
    mask_ = cap - 1;
    shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(cap));
    size_ = 0;
    for (std::uint32_t pos : old) {
      if (pos != kNone) put(id_of(pos), pos, id_of);
    }
  }

  std::vector<std::uint32_t> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace rumor
