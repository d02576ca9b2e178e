#include "digest/merkle.h"

#include <roaring/roaring.h>

#include <algorithm>

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
  std::size_t n = sizeof(*this) + nodes_.capacity() * sizeof(Node) +
                  scratch_.capacity() * sizeof(std::uint32_t);
  if (dirty_) n += roaring_bitmap_size_in_bytes(dirty_);
  return n;
}

void MerkleTree::reset(std::uint32_t leaf_bits) {
  RUMOR_ASSERT(leaf_bits <= kLeafBitsMax);
  leaf_bits_ = leaf_bits;
  entries_ = 0;
  sums_ = SetSums{};
  nodes_.assign(std::size_t{2} << leaf_bits, Node{});
  nodes_.shrink_to_fit();
  if (leaf_bits > 0 && !dirty_) dirty_ = roaring_bitmap_create();
  if (leaf_bits == 0 && dirty_) {
    roaring_bitmap_free(dirty_);
    dirty_ = nullptr;
  }
  if (dirty_) roaring_bitmap_clear(dirty_);
  pending_n_ = 0;
  last_dirty_ = ~0u;
  dirty_any_ = false;
}

void MerkleTree::flush_pending() {
  std::sort(pending_, pending_ + pending_n_);
  roaring_bitmap_add_many(dirty_, pending_n_, pending_);
  pending_n_ = 0;
}

std::size_t MerkleTree::fold() {
  if (!dirty_any_) return 0;
  flush_pending();
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
      const Node& a = nodes_[child_base + 2 * std::size_t{p}];
      const Node& b = nodes_[child_base + 2 * std::size_t{p} + 1];
      Node& parent = nodes_[parent_base + p];
      parent.hash = a.hash + b.hash;
      parent.count = a.count + b.count;
      scratch_[out++] = p;
    }
    live = out;
  }
  return n;
}

void MerkleTree::insert(std::uint64_t key_hash, std::uint64_t entry_hash) {
  Node& n = nodes_[leaf_slot(key_hash)];
  n.hash += entry_hash;
  ++n.count;
  ++entries_;
  sums_.add(key_hash, entry_hash);
}

void MerkleTree::fold_all() {
  for (std::uint32_t k = leaf_bits_; k > 0; --k) {
    const std::size_t child_base = std::size_t{1} << k;
    const std::size_t parent_base = std::size_t{1} << (k - 1);
    for (std::size_t p = 0; p < parent_base; ++p) {
      const Node& a = nodes_[child_base + 2 * p];
      const Node& b = nodes_[child_base + 2 * p + 1];
      nodes_[parent_base + p].hash = a.hash + b.hash;
      nodes_[parent_base + p].count = a.count + b.count;
    }
  }
  if (dirty_) roaring_bitmap_clear(dirty_);
  pending_n_ = 0;
  last_dirty_ = ~0u;
  dirty_any_ = false;
}

std::uint64_t MerkleTree::hash(std::uint32_t bits, std::uint64_t index) const {
  RUMOR_ASSERT(!dirty_any_);
  RUMOR_ASSERT(bits <= leaf_bits_);
  RUMOR_ASSERT(index < (std::uint64_t{1} << bits));
  return nodes_[slot(bits, index)].hash;
}

std::uint32_t MerkleTree::count(std::uint32_t bits, std::uint64_t index) const {
  RUMOR_ASSERT(!dirty_any_);
  RUMOR_ASSERT(bits <= leaf_bits_);
  RUMOR_ASSERT(index < (std::uint64_t{1} << bits));
  return nodes_[slot(bits, index)].count;
}

}  // namespace rumor::digest
