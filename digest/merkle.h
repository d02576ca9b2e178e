// The Merkle tree of one virtual shard: prefix sums of entry hashes over the key-hash space.
//
// Node (bits k, index i) covers the key hashes whose top k bits are i; its hash is the sum
// (mod 2^64) of entry_hash() over those entries and its count is how many there are. Because a
// node is defined by its prefix alone, two trees with different leaf depths agree on every node
// both hold, and the reconciliation protocol can use any fan-out that is a power of two: a
// protocol node at level l with fan-out 2^f is this tree's node at k = l * f bits.
//
// Layout: a complete binary tree in heap order, node (k, i) at slot (1 << k) + i, leaves at
// k = leaf_bits(). The shard sizes leaf_bits from its entry count (about kLeafEntriesTarget
// entries per leaf) and rebuilds the tree only when that count has grown or shrunk several-fold,
// on the digest read path, never on the write path. An empty shard has no tree at all.
//
// Write path (O(1), inline): add/remove/replace change one leaf by the entry hash delta and mark
// the leaf dirty: one bit in a plain bitset of leaves plus one bit in a summary of its nonzero
// words, both a few instructions on lines that stay in cache (2^leaf_bits / 8 bytes). fold()
// walks the summary to the dirty leaves in ascending order and recomputes their ancestors,
// level by level, before a digest is read; reads assert the tree is folded. (A CRoaring bitmap
// of dirty leaves, fed by a sorted add_many, costs ~200 instructions per write: a third of the
// whole merge once a tree has its real depth.)
//
// Thread-safety: none. The tree belongs to its shard's owner thread, which writes and reads it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "digest/hash.h"
#include "digest/sums.h"

namespace rumor::digest {

class MerkleTree {
 public:
  // Deepest leaf level: 2^24 leaves (16M), for a shard at keys_per_shard_max = 2^24 and more.
  static constexpr std::uint32_t kLeafBitsMax = 24;
  // Entries per leaf the sizing policy aims at. The store's merge path updates one leaf per
  // write, so the leaves of all shards should stay in cache while slots stream past: at 16
  // entries per leaf a 1M-entry store has 64 x 1,024 leaves, 1 MiB (at 4 per leaf they were
  // 4 MiB, evicted between touches, and merge/update ran ~20% slower). Nodes below the leaf
  // level are summed from a hash-range scan of the shard when a digest needs them, which at
  // ~16 entries is cheap. 16 bytes per node: 1-2 bytes per entry.
  static constexpr std::uint64_t kLeafEntriesTarget = 16;

  explicit MerkleTree(std::uint32_t leaf_bits);
  MerkleTree(const MerkleTree&) = delete;
  MerkleTree& operator=(const MerkleTree&) = delete;

  // The leaf depth the sizing policy wants for `entries` entries.
  static std::uint32_t leaf_bits_for(std::uint64_t entries);
  // True when the entry count has moved far enough from what leaf_bits() was sized for that a
  // rebuild at leaf_bits_for(entries()) pays for itself (grow at 1x over, shrink at 4x under, so
  // the rebuild cost amortises to O(1) per write).
  bool wants_resize() const;

  std::uint32_t leaf_bits() const { return leaf_bits_; }
  std::uint64_t entries() const { return entries_; }
  std::size_t memory_bytes() const;

  // ---- write path: O(1), marks the leaf dirty ----
  void add(std::uint64_t key_hash, std::uint64_t entry_hash) {
    Node& n = nodes_[leaf_slot(key_hash)];
    n.hash += entry_hash;
    ++n.count;
    ++entries_;
    sums_.add(key_hash, entry_hash);
    mark_dirty(key_hash);
  }
  void remove(std::uint64_t key_hash, std::uint64_t entry_hash) {
    Node& n = nodes_[leaf_slot(key_hash)];
    RUMOR_ASSERT(n.count > 0);
    n.hash -= entry_hash;
    --n.count;
    --entries_;
    sums_.remove(key_hash, entry_hash);
    mark_dirty(key_hash);
  }
  void replace(std::uint64_t key_hash, std::uint64_t old_entry_hash,
               std::uint64_t new_entry_hash) {
    nodes_[leaf_slot(key_hash)].hash += new_entry_hash - old_entry_hash;
    sums_.replace(key_hash, old_entry_hash, new_entry_hash);
    mark_dirty(key_hash);
  }
  // The leaf a write to key_hash will touch (for callers that prefetch ahead).
  const void* leaf_address(std::uint64_t key_hash) const { return &nodes_[leaf_slot(key_hash)]; }

  // ---- digest read path ----
  // The linear sums over every entry (digest/sums.h). Exact at any time: no fold needed.
  const SetSums& sums() const { return sums_; }
  bool folded() const { return !dirty_any_; }
  // Recomputes every dirty leaf's path to the root. Returns how many leaves were dirty.
  std::size_t fold();
  // Node at depth `bits` (0..leaf_bits()) and index (< 2^bits). The tree must be folded.
  std::uint64_t hash(std::uint32_t bits, std::uint64_t index) const;
  std::uint32_t count(std::uint32_t bits, std::uint64_t index) const;
  std::uint64_t root_hash() const { return hash(0, 0); }

  // Rebuild from scratch: reset(bits), then insert() every entry, then fold_all(). This is the
  // naive baseline the incremental path is measured against, and how a resize happens.
  void reset(std::uint32_t leaf_bits);
  void insert(std::uint64_t key_hash, std::uint64_t entry_hash);  // no dirty marking
  void fold_all();

 private:
  // One node: its hash and count share a cache line, so a write misses at most once.
  struct Node {
    std::uint64_t hash = 0;
    std::uint32_t count = 0;
    std::uint32_t unused = 0;
  };
  std::size_t slot(std::uint32_t bits, std::uint64_t index) const {
    return (std::size_t{1} << bits) + index;
  }
  std::size_t leaf_slot(std::uint64_t key_hash) const {
    return slot(leaf_bits_, prefix_of(key_hash, leaf_bits_));
  }
  void mark_dirty(std::uint64_t key_hash) {
    if (leaf_bits_ == 0) return;  // the leaf is the root
    const auto leaf = static_cast<std::size_t>(prefix_of(key_hash, leaf_bits_));
    dirty_[leaf >> 6] |= std::uint64_t{1} << (leaf & 63);
    dirty_words_[leaf >> 12] |= std::uint64_t{1} << ((leaf >> 6) & 63);
    dirty_any_ = true;
  }

  std::uint32_t leaf_bits_ = 0;
  std::uint64_t entries_ = 0;
  SetSums sums_;
  std::vector<Node> nodes_;                 // heap order, slot 0 unused
  std::vector<std::uint64_t> dirty_;        // one bit per leaf; only when leaf_bits_ > 0
  std::vector<std::uint64_t> dirty_words_;  // one bit per nonzero word of dirty_
  bool dirty_any_ = false;
  std::vector<std::uint32_t> scratch_;  // fold's work list, kept to avoid reallocating
};

}  // namespace rumor::digest
