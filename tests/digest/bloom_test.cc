// The split-block bloom filter: no false negatives, the false-positive rates its sizing promises,
// and a decoder that refuses every parameter a peer could use to read out of bounds.
#include "digest/bloom.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <random>
#include <vector>

namespace rumor::digest {
namespace {

double measured_fpr(std::uint32_t bits_per_item, std::size_t items = 100'000) {
  BloomFilter f(BloomFilter::blocks_for(items, bits_per_item, ~0u), 8, 42);
  std::mt19937_64 rng(bits_per_item);
  for (std::size_t i = 0; i < items; ++i) f.insert(rng());
  std::size_t fp = 0;
  const std::size_t probes = 1'000'000;
  for (std::size_t i = 0; i < probes; ++i) fp += f.may_contain(rng());
  return static_cast<double>(fp) / probes;
}

TEST(Bloom, FalsePositiveRatesMatchTheSizing) {
  const double at10 = measured_fpr(10), at16 = measured_fpr(16), at20 = measured_fpr(20);
  std::printf("false positives: %.4f%% at 10 bits, %.4f%% at 16, %.4f%% at 20\n", at10 * 100,
              at16 * 100, at20 * 100);
  EXPECT_LT(at10, 0.025);
  EXPECT_LT(at16, 0.003);
  EXPECT_LT(at20, 0.001);
  EXPECT_GT(at10, at16);
}

RC_GTEST_PROP(Bloom, NoFalseNegativesAndTheWireFormRoundTrips, ()) {
  const auto items = *rc::gen::container<std::vector<std::uint64_t>>(rc::gen::arbitrary<std::uint64_t>());
  const auto k = *rc::gen::inRange<std::uint32_t>(1, 9);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  BloomFilter f(BloomFilter::blocks_for(items.size(), 12, 1024), k, seed);
  for (std::uint64_t x : items) f.insert(x);
  std::vector<std::uint8_t> wire(f.encoded_size());
  ByteWriter w(wire);
  f.encode(w);
  RC_ASSERT(w.ok());
  RC_ASSERT(w.size() == wire.size());
  ByteReader r(wire);
  BloomView v;
  RC_ASSERT(BloomView::decode(r, 1024, &v));
  RC_ASSERT(r.empty());
  RC_ASSERT(v.k() == k);
  RC_ASSERT(v.seed() == seed);
  for (std::uint64_t x : items) {
    RC_ASSERT(f.may_contain(x));
    RC_ASSERT(v.may_contain(x));
  }
  // The view answers exactly as the filter, for anything.
  for (int i = 0; i < 64; ++i) {
    const std::uint64_t q = *rc::gen::arbitrary<std::uint64_t>();
    RC_ASSERT(f.may_contain(q) == v.may_contain(q));
  }
}

TEST(Bloom, EntrySummariesUseTheFiltersSeed) {
  BloomFilter a(4, 8, 1), b(4, 8, 2);
  const Version v{123, 4};
  a.insert_entry(99, v);
  b.insert_entry(99, v);
  EXPECT_TRUE(a.may_contain_entry(99, v));
  EXPECT_NE(bloom_item(99, v, 1), bloom_item(99, v, 2));
}

std::vector<std::uint8_t> wire_of(std::uint8_t k, std::uint8_t kind, std::uint16_t reserved,
                                  std::uint32_t blocks, std::size_t bit_bytes) {
  std::vector<std::uint8_t> out(kBloomHeaderBytes + bit_bytes, 0xff);
  ByteWriter w(out);
  w.u8(k);
  w.u8(kind);
  w.u16(reserved);
  w.u32(blocks);
  w.u64(7);
  return out;
}

TEST(Bloom, DecoderRejectsBadParameters) {
  auto decode = [](const std::vector<std::uint8_t>& bytes, std::uint32_t max) {
    ByteReader r(bytes);
    BloomView v;
    const bool ok = BloomView::decode(r, max, &v);
    EXPECT_EQ(ok, r.ok());
    return ok;
  };
  EXPECT_TRUE(decode(wire_of(8, 1, 0, 2, 64), 16));
  EXPECT_FALSE(decode(wire_of(0, 1, 0, 2, 64), 16));    // k = 0
  EXPECT_FALSE(decode(wire_of(9, 1, 0, 2, 64), 16));    // k > 8
  EXPECT_FALSE(decode(wire_of(8, 2, 0, 2, 64), 16));    // unknown hash kind
  EXPECT_FALSE(decode(wire_of(8, 1, 1, 2, 64), 16));    // reserved bits
  EXPECT_FALSE(decode(wire_of(8, 1, 0, 0, 0), 16));     // no blocks
  EXPECT_FALSE(decode(wire_of(8, 1, 0, 17, 17 * 32), 16));  // above the caller's limit
  EXPECT_FALSE(decode(wire_of(8, 1, 0, 2, 63), 16));    // bits truncated by one byte
  // Blocks that would overflow a 32-bit byte count, with few bytes present.
  EXPECT_FALSE(decode(wire_of(8, 1, 0, 0x08000001u, 64), ~0u));
  EXPECT_FALSE(decode(wire_of(8, 1, 0, 0xffffffffu, 64), ~0u));
  for (std::size_t n = 0; n < kBloomHeaderBytes; ++n) {
    auto w = wire_of(8, 1, 0, 1, 32);
    w.resize(n);
    EXPECT_FALSE(decode(w, 16)) << "header truncated to " << n;
  }
}

}  // namespace
}  // namespace rumor::digest
