#include "digest/bloom.h"

#include <cstring>

#include "base/assert.h"

namespace rumor::digest {

std::uint32_t BloomFilter::blocks_for(std::size_t items, std::uint32_t bits_per_item,
                                      std::uint32_t blocks_max) {
  RUMOR_ASSERT(blocks_max >= 1);
  const std::uint64_t bits = static_cast<std::uint64_t>(items) * bits_per_item;
  std::uint64_t blocks = (bits + kBloomBlockBytes * 8 - 1) / (kBloomBlockBytes * 8);
  if (blocks < 1) blocks = 1;
  if (blocks > blocks_max) blocks = blocks_max;
  return static_cast<std::uint32_t>(blocks);
}

BloomFilter::BloomFilter(std::uint32_t blocks, std::uint32_t k, std::uint64_t seed)
    : blocks_(blocks), k_(k), seed_(seed), blocks_data_(new Block[blocks]()) {
  RUMOR_ASSERT(blocks >= 1);
  RUMOR_ASSERT(k >= 1);
  RUMOR_ASSERT(k <= kBloomKMax);
}

void BloomFilter::encode(ByteWriter& w) const {
  w.u8(static_cast<std::uint8_t>(k_));
  w.u8(kBloomHashXxh3);
  w.u16(0);
  w.u32(blocks_);
  w.u64(seed_);
  w.bytes(blocks_data_.get(), std::size_t{blocks_} * kBloomBlockBytes);
}

bool BloomView::decode(ByteReader& r, std::uint32_t blocks_max, BloomView* out) {
  const std::uint8_t k = r.u8();
  const std::uint8_t kind = r.u8();
  const std::uint16_t reserved = r.u16();
  const std::uint32_t blocks = r.u32();
  const std::uint64_t seed = r.u64();
  if (!r.ok() || k < 1 || k > kBloomKMax || kind != kBloomHashXxh3 || reserved != 0 ||
      blocks < 1 || blocks > blocks_max) {
    r.fail();
    return false;
  }
  // blocks <= blocks_max keeps the product far from overflow; bytes() checks what is present.
  std::span<const std::uint8_t> bits = r.bytes(std::size_t{blocks} * kBloomBlockBytes);
  if (!r.ok()) return false;
  out->bits_ = bits.data();
  out->blocks_ = blocks;
  out->k_ = k;
  out->seed_ = seed;
  return true;
}

void BloomView::encode(ByteWriter& w) const {
  RUMOR_ASSERT(blocks_ != 0);
  w.u8(static_cast<std::uint8_t>(k_));
  w.u8(kBloomHashXxh3);
  w.u16(0);
  w.u32(blocks_);
  w.u64(seed_);
  w.bytes(bits_, std::size_t{blocks_} * kBloomBlockBytes);
}

bool BloomView::may_contain(std::uint64_t item) const {
  RUMOR_ASSERT(blocks_ != 0);
  const std::uint8_t* b =
      bits_ + std::size_t{bloom_detail::block_of(item, blocks_)} * kBloomBlockBytes;
  for (std::uint32_t w = 0; w < k_; ++w) {
    std::uint32_t word;
    std::memcpy(&word, b + 4 * w, 4);
    if (!((word >> bloom_detail::bit_of(item, w)) & 1)) return false;
  }
  return true;
}

}  // namespace rumor::digest
