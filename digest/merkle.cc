#include "digest/merkle.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "base/assert.h"

namespace rumor::digest {

MerkleTree::MerkleTree(std::uint32_t leaf_bits) { reset(leaf_bits); }

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
  return sizeof(*this) + nodes_.capacity() * sizeof(Node) +
         (dirty_.capacity() + dirty_words_.capacity()) * sizeof(std::uint64_t) +
         scratch_.capacity() * sizeof(std::uint32_t);
}

void MerkleTree::reset(std::uint32_t leaf_bits) {
  RUMOR_ASSERT(leaf_bits <= kLeafBitsMax);
  leaf_bits_ = leaf_bits;
  entries_ = 0;
  sums_ = SetSums{};
  nodes_.assign(std::size_t{2} << leaf_bits, Node{});
  nodes_.shrink_to_fit();
  const std::size_t leaves = leaf_bits > 0 ? std::size_t{1} << leaf_bits : 0;
  dirty_.assign((leaves + 63) / 64, 0);
  dirty_.shrink_to_fit();
  dirty_words_.assign((dirty_.size() + 63) / 64, 0);
  dirty_words_.shrink_to_fit();
  dirty_any_ = false;
}

std::size_t MerkleTree::fold() {
  if (!dirty_any_) return 0;
  // The dirty leaves in ascending order, clearing the marks on the way.
  scratch_.clear();
  for (std::size_t sw = 0; sw < dirty_words_.size(); ++sw) {
    for (std::uint64_t s = std::exchange(dirty_words_[sw], 0); s != 0; s &= s - 1) {
      const std::size_t w = sw * 64 + static_cast<std::size_t>(std::countr_zero(s));
      for (std::uint64_t d = std::exchange(dirty_[w], 0); d != 0; d &= d - 1) {
        scratch_.push_back(static_cast<std::uint32_t>(w * 64 + std::countr_zero(d)));
      }
    }
  }
  dirty_any_ = false;
  const std::size_t n = scratch_.size();
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
  std::fill(dirty_.begin(), dirty_.end(), 0);
  std::fill(dirty_words_.begin(), dirty_words_.end(), 0);
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
