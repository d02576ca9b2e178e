// Split-block bloom filter (Putze, Sanders, Singler, "Cache-, Hash- and Space-Efficient Bloom
// Filters", 2007; the block layout and salts of Apache Parquet's SBBF).
//
// The filter is an array of 256-bit blocks, each eight 32-bit words. An item (a 64-bit hash)
// picks one block from its high half and sets one bit in each of the first k words from its low
// half, so an insert or query touches one 32-byte block, which never straddles a cache line.
// With k = 8 the false-positive rate is about 1.3% at 10 bits per item, 0.13% at 16 and 0.04%
// at 20 (measured in bloom_test).
//
// Items are entry summaries (key hash, version) hashed with the filter's own seed, so a filter
// is self-contained: its parameters (k, blocks, seed) travel with it. A filter received from a
// peer is untrusted input (Firedancer's gossip read out of bounds from attacker-chosen bloom
// parameters): BloomView::decode checks every parameter against the bytes actually present and
// against the caller's block limit before anything indexes the bits, and the block index is
// computed by a multiply-shift that is below `blocks` by construction.
//
// Wire format (little-endian), 16 bytes of parameters then the bits:
//   u8  k          bits set per item, 1..8
//   u8  hash_kind  1 = XXH3-64 item hashes, Parquet salts (the only kind)
//   u16 reserved   0
//   u32 blocks     1..blocks_max (caller's limit)
//   u64 seed       item hash seed
//   blocks * 32 bytes: block b's word w at offset 32 b + 4 w
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "digest/codec.h"
#include "digest/hash.h"

namespace rumor::digest {

inline constexpr std::size_t kBloomBlockBytes = 32;
inline constexpr std::size_t kBloomHeaderBytes = 16;
inline constexpr std::uint8_t kBloomHashXxh3 = 1;
inline constexpr std::uint32_t kBloomKMax = 8;

namespace bloom_detail {
inline constexpr std::uint32_t kSalt[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                                           0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};
inline std::uint32_t block_of(std::uint64_t h, std::uint32_t blocks) {
  return static_cast<std::uint32_t>(((h >> 32) * blocks) >> 32);  // < blocks for any h
}
inline std::uint32_t bit_of(std::uint64_t h, std::uint32_t w) {
  return (static_cast<std::uint32_t>(h) * kSalt[w]) >> 27;  // 0..31
}
}  // namespace bloom_detail

// The item hash of an entry summary under a filter seed.
inline std::uint64_t bloom_item(std::uint64_t key_hash, const Version& v, std::uint64_t seed) {
  const std::uint64_t words[3] = {key_hash, v.hlc, v.node};
  return XXH3_64bits_withSeed(words, sizeof words, seed);
}

class BloomFilter {
 public:
  // Blocks for `items` at `bits_per_item`, clamped to [1, blocks_max].
  static std::uint32_t blocks_for(std::size_t items, std::uint32_t bits_per_item,
                                  std::uint32_t blocks_max);

  BloomFilter(std::uint32_t blocks, std::uint32_t k, std::uint64_t seed);

  std::uint32_t blocks() const { return blocks_; }
  std::uint32_t k() const { return k_; }
  std::uint64_t seed() const { return seed_; }
  std::size_t encoded_size() const { return kBloomHeaderBytes + blocks_ * kBloomBlockBytes; }

  void insert(std::uint64_t item) {
    Block& b = blocks_data_[bloom_detail::block_of(item, blocks_)];
    for (std::uint32_t w = 0; w < kBloomKMax; ++w) {
      if (w < k_) b.w[w] |= std::uint32_t{1} << bloom_detail::bit_of(item, w);
    }
  }
  bool may_contain(std::uint64_t item) const {
    const Block& b = blocks_data_[bloom_detail::block_of(item, blocks_)];
    bool all = true;
    for (std::uint32_t w = 0; w < kBloomKMax; ++w) {
      if (w < k_) all &= (b.w[w] >> bloom_detail::bit_of(item, w)) & 1;
    }
    return all;
  }
  void insert_entry(std::uint64_t key_hash, const Version& v) {
    insert(bloom_item(key_hash, v, seed_));
  }
  bool may_contain_entry(std::uint64_t key_hash, const Version& v) const {
    return may_contain(bloom_item(key_hash, v, seed_));
  }

  void encode(ByteWriter& w) const;

 private:
  struct alignas(kBloomBlockBytes) Block {
    std::uint32_t w[8];
  };
  std::uint32_t blocks_;
  std::uint32_t k_;
  std::uint64_t seed_;
  std::unique_ptr<Block[]> blocks_data_;
};

// A filter decoded in place from a message: no copy, words read with memcpy (the bytes need not
// be aligned). Valid while the message bytes are.
class BloomView {
 public:
  BloomView() = default;
  // Reads a filter from r. Fails (false, r failed) on truncation, k outside 1..8, an unknown
  // hash kind, nonzero reserved bits, or blocks outside 1..blocks_max.
  static bool decode(ByteReader& r, std::uint32_t blocks_max, BloomView* out);

  bool valid() const { return blocks_ != 0; }
  std::uint32_t blocks() const { return blocks_; }
  std::uint32_t k() const { return k_; }
  std::uint64_t seed() const { return seed_; }
  std::size_t encoded_size() const { return kBloomHeaderBytes + blocks_ * kBloomBlockBytes; }

  bool may_contain(std::uint64_t item) const;
  bool may_contain_entry(std::uint64_t key_hash, const Version& v) const {
    return may_contain(bloom_item(key_hash, v, seed_));
  }
  // Writes the filter back in wire form (to keep a copy beyond the message's lifetime).
  void encode(ByteWriter& w) const;

 private:
  const std::uint8_t* bits_ = nullptr;
  std::uint32_t blocks_ = 0;
  std::uint32_t k_ = 0;
  std::uint64_t seed_ = 0;
};

}  // namespace rumor::digest
