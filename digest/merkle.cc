#include "digest/merkle.h"

#include <roaring/roaring.h>

#include "base/assert.h"

namespace rumor::digest {

MerkleTree::MerkleTree(std::uint32_t leaf_bits) { reset(leaf_bits); }

MerkleTree::~MerkleTree() {
  if (dirty_) roaring_bitmap_free(dirty_);
}

std::uint32_t MerkleTree::leaf_bits_for(std::uint64_t entries) {
  std::uint32_t bits = 0;
  while (bits < kLeafBitsMax && (kLeafEntriesTarget << bits) < entries) ++bits;
  return bits;
}

bool MerkleTree::wants_resize() const {
  const std::uint32_t want = leaf_bits_for(entries_);
  return want > leaf_bits_ || want + 2 < leaf_bits_;
}

std::size_t MerkleTree::memory_bytes() const {
  std::size_t n = sizeof(*this) + hash_.capacity() * sizeof(std::uint64_t) +
                  count_.capacity() * sizeof(std::uint32_t) +
                  scratch_.capacity() * sizeof(std::uint32_t);
  if (dirty_) n += roaring_bitmap_size_in_bytes(dirty_);
  return n;
}

void MerkleTree::reset(std::uint32_t leaf_bits) {
  RUMOR_ASSERT(leaf_bits <= kLeafBitsMax);
  leaf_bits_ = leaf_bits;
  entries_ = 0;
  const std::size_t slots = std::size_t{2} << leaf_bits;
  hash_.assign(slots, 0);
  count_.assign(slots, 0);
  hash_.shrink_to_fit();
  count_.shrink_to_fit();
  if (leaf_bits > 0 && !dirty_) dirty_ = roaring_bitmap_create();
  if (leaf_bits == 0 && dirty_) {
    roaring_bitmap_free(dirty_);
    dirty_ = nullptr;
  }
  if (dirty_) roaring_bitmap_clear(dirty_);
  last_dirty_ = ~0u;
  dirty_any_ = false;
}

void MerkleTree::mark_dirty(std::size_t leaf_slot) {
  if (leaf_bits_ == 0) return;  // the leaf is the root
  const auto leaf = static_cast<std::uint32_t>(leaf_slot - (std::size_t{1} << leaf_bits_));
  if (leaf == last_dirty_) return;
  last_dirty_ = leaf;
  roaring_bitmap_add(dirty_, leaf);
  dirty_any_ = true;
}

void MerkleTree::add(std::uint64_t key_hash, std::uint64_t entry_hash) {
  const std::size_t s = leaf_slot(key_hash);
  hash_[s] += entry_hash;
  RUMOR_ASSERT(count_[s] != ~0u);
  ++count_[s];
  ++entries_;
  mark_dirty(s);
}

void MerkleTree::remove(std::uint64_t key_hash, std::uint64_t entry_hash) {
  const std::size_t s = leaf_slot(key_hash);
  RUMOR_ASSERT(count_[s] > 0);
  hash_[s] -= entry_hash;
  --count_[s];
  --entries_;
  mark_dirty(s);
}

void MerkleTree::replace(std::uint64_t key_hash, std::uint64_t old_entry_hash,
                         std::uint64_t new_entry_hash) {
  const std::size_t s = leaf_slot(key_hash);
  hash_[s] += new_entry_hash - old_entry_hash;
  mark_dirty(s);
}

std::size_t MerkleTree::fold() {
  if (!dirty_any_) return 0;
  const auto n = static_cast<std::size_t>(roaring_bitmap_get_cardinality(dirty_));
  scratch_.resize(n);
  roaring_bitmap_to_uint32_array(dirty_, scratch_.data());  // ascending
  roaring_bitmap_clear(dirty_);
  last_dirty_ = ~0u;
  dirty_any_ = false;
  // scratch_ holds the dirty nodes of depth k, ascending and distinct; their parents are then
  // ascending too, so one pass per level dedups them.
  std::size_t live = n;
  for (std::uint32_t k = leaf_bits_; k > 0; --k) {
    std::size_t out = 0;
    std::uint32_t prev = ~0u;
    const std::size_t child_base = std::size_t{1} << k;
    const std::size_t parent_base = std::size_t{1} << (k - 1);
    for (std::size_t j = 0; j < live; ++j) {
      const std::uint32_t p = scratch_[j] >> 1;
      if (p == prev) continue;
      prev = p;
      const std::size_t c = child_base + 2 * std::size_t{p};
      hash_[parent_base + p] = hash_[c] + hash_[c + 1];
      count_[parent_base + p] = count_[c] + count_[c + 1];
      scratch_[out++] = p;
    }
    live = out;
  }
  return n;
}

void MerkleTree::insert(std::uint64_t key_hash, std::uint64_t entry_hash) {
  const std::size_t s = leaf_slot(key_hash);
  hash_[s] += entry_hash;
  ++count_[s];
  ++entries_;
}

void MerkleTree::fold_all() {
  for (std::uint32_t k = leaf_bits_; k > 0; --k) {
    const std::size_t child_base = std::size_t{1} << k;
    const std::size_t parent_base = std::size_t{1} << (k - 1);
    for (std::size_t p = 0; p < parent_base; ++p) {
      const std::size_t c = child_base + 2 * p;
      hash_[parent_base + p] = hash_[c] + hash_[c + 1];
      count_[parent_base + p] = count_[c] + count_[c + 1];
    }
  }
  if (dirty_) roaring_bitmap_clear(dirty_);
  last_dirty_ = ~0u;
  dirty_any_ = false;
}

std::uint64_t MerkleTree::hash(std::uint32_t bits, std::uint64_t index) const {
  RUMOR_ASSERT(!dirty_any_);
  RUMOR_ASSERT(bits <= leaf_bits_);
  RUMOR_ASSERT(index < (std::uint64_t{1} << bits));
  return hash_[slot(bits, index)];
}

std::uint32_t MerkleTree::count(std::uint32_t bits, std::uint64_t index) const {
  RUMOR_ASSERT(!dirty_any_);
  RUMOR_ASSERT(bits <= leaf_bits_);
  RUMOR_ASSERT(index < (std::uint64_t{1} << bits));
  return count_[slot(bits, index)];
}

}  // namespace rumor::digest
