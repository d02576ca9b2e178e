// BCH set sketches (digest/sketch.h): the field against its definition, incremental maintenance
// against a rebuild, both multiplication paths against each other, decoding against the true
// symmetric difference, detection of differences beyond what a decoding accepts, and hostile
// syndromes.
#include "digest/sketch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <random>
#include <set>
#include <vector>

namespace rumor::digest {
namespace {

constexpr std::uint64_t kMask = kSketchElementMask;

std::uint64_t nonzero48(std::mt19937_64& rng) {
  for (;;) {
    const std::uint64_t x = rng() & kMask;
    if (x != 0) return x;
  }
}

// Multiplication by shift-and-add straight from the definition of the field, as the reference.
std::uint64_t mul_reference(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  for (int i = 0; i < 48; ++i) {
    if ((b >> i) & 1) r ^= a;
    const bool carry = (a >> 47) & 1;
    a = (a << 1) & kMask;
    if (carry) a ^= 0x2D;  // x^48 = x^5 + x^3 + x^2 + 1
  }
  return r;
}

std::uint64_t pow48(std::uint64_t a, std::uint64_t e) {
  std::uint64_t r = 1;
  while (e != 0) {
    if (e & 1) r = gf48::mul(r, a);
    a = gf48::mul(a, a);
    e >>= 1;
  }
  return r;
}

TEST(Sketch, FieldMultiplicationMatchesTheDefinitionOnBothPaths) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t a = rng() & kMask;
    const std::uint64_t b = rng() & kMask;
    const std::uint64_t want = mul_reference(a, b);
    ASSERT_EQ(gf48::mul_portable(a, b), want) << a << " " << b;
    ASSERT_EQ(gf48::mul(a, b), want) << a << " " << b;
  }
  // Edge values: the top bit, all ones, one.
  for (const std::uint64_t a : {std::uint64_t{1}, kMask, std::uint64_t{1} << 47}) {
    for (const std::uint64_t b : {std::uint64_t{1}, kMask, std::uint64_t{1} << 47, std::uint64_t{2}}) {
      EXPECT_EQ(gf48::mul(a, b), mul_reference(a, b));
      EXPECT_EQ(gf48::mul_portable(a, b), mul_reference(a, b));
    }
  }
  EXPECT_EQ(gf48::mul(std::uint64_t{1} << 47, 2), 0x2Du);
}

TEST(Sketch, FieldIsAFieldOfOrder2To48) {
  // In a field of 2^48 elements every nonzero a has a^(2^48 - 1) = 1 and an inverse; with a
  // reducible modulus some a would fail both (zero divisors).
  std::mt19937_64 rng(2);
  for (int i = 0; i < 300; ++i) {
    const std::uint64_t a = nonzero48(rng);
    EXPECT_EQ(pow48(a, (std::uint64_t{1} << 48) - 1), 1u) << a;
    EXPECT_EQ(gf48::mul(a, gf48::inv(a)), 1u) << a;
  }
  // x generates a subgroup whose order divides 2^48 - 1 = 3^2 5 7 13 17 97 241 257 673; if f is
  // irreducible, x^(2^48) = x (which the decoder's split test relies on).
  EXPECT_EQ(pow48(2, std::uint64_t{1} << 48), 2u);
}

Sketch sketch_of(const std::vector<std::uint64_t>& xs, std::uint32_t c) {
  Sketch s(c);
  for (const std::uint64_t x : xs) s.toggle(x);
  return s;
}

TEST(Sketch, SyndromesAreTheOddPowerSums) {
  std::mt19937_64 rng(3);
  std::vector<std::uint64_t> xs;
  for (int i = 0; i < 7; ++i) xs.push_back(nonzero48(rng));
  const Sketch s = sketch_of(xs, 9);
  for (std::uint32_t k = 0; k < 9; ++k) {
    std::uint64_t want = 0;
    for (const std::uint64_t x : xs) want ^= pow48(x, 2 * k + 1);
    EXPECT_EQ(s.syndromes()[k], want) << k;
  }
}

TEST(Sketch, BatchesPathsAndMergesAgreeWithOneAtATime) {
  std::mt19937_64 rng(4);
  for (const std::uint32_t c : {1u, 2u, 5u, 32u, 64u}) {
    std::vector<std::uint64_t> xs;
    for (int i = 0; i < 37; ++i) xs.push_back(rng());  // high bits set: masked
    const Sketch one = sketch_of(xs, c);
    Sketch batch(c);
    batch.toggle_batch(xs);
    EXPECT_EQ(batch, one);
    std::vector<std::uint64_t> portable(c, 0);
    sketch_toggle_batch_portable(portable, xs);
    EXPECT_TRUE(std::equal(portable.begin(), portable.end(), one.syndromes().begin()));
    // Two halves merged: the sketch of the whole.
    Sketch a(c);
    Sketch b(c);
    a.toggle_batch(std::span(xs).first(20));
    b.toggle_batch(std::span(xs).subspan(20));
    a.merge(b.syndromes());
    EXPECT_EQ(a, one);
    // Removing every element again: the empty sketch.
    batch.toggle_batch(xs);
    EXPECT_EQ(batch, Sketch(c));
  }
}

TEST(Sketch, AFirstSyndromesArePrefixOfALargerCapacity) {
  std::mt19937_64 rng(5);
  std::vector<std::uint64_t> xs;
  for (int i = 0; i < 10; ++i) xs.push_back(nonzero48(rng));
  const Sketch big = sketch_of(xs, 40);
  const Sketch small = sketch_of(xs, 12);
  EXPECT_TRUE(std::equal(small.syndromes().begin(), small.syndromes().end(), big.syndromes().begin()));
}

TEST(Sketch, WireFormRoundTripsAndXorsIntoTheReader) {
  std::mt19937_64 rng(6);
  std::vector<std::uint64_t> xs;
  for (int i = 0; i < 5; ++i) xs.push_back(nonzero48(rng));
  const Sketch s = sketch_of(xs, 8);
  std::array<std::uint8_t, 8 * kSketchSyndromeBytes> buf{};
  ByteWriter w(buf);
  put_sketch(w, s.syndromes());
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w.written().size(), 48u);
  std::vector<std::uint64_t> got(s.syndromes().begin(), s.syndromes().end());
  ByteReader r(w.written());
  read_sketch_xor(r, got);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::uint64_t v) { return v == 0; }));
  ByteReader shortr(w.written().first(47));
  read_sketch_xor(shortr, got);
  EXPECT_FALSE(shortr.ok());
}

// Two sides sharing `common` elements and differing in d; returns the true difference.
struct Pair {
  Sketch mine;
  Sketch theirs;
  std::vector<std::uint64_t> diff;
};
Pair make_pair(std::mt19937_64& rng, std::uint32_t c, int common, int d) {
  Pair p{Sketch(c), Sketch(c), {}};
  std::set<std::uint64_t> used;
  auto fresh = [&] {
    for (;;) {
      const std::uint64_t x = nonzero48(rng);
      if (used.insert(x).second) return x;
    }
  };
  for (int i = 0; i < common; ++i) {
    const std::uint64_t x = fresh();
    p.mine.toggle(x);
    p.theirs.toggle(x);
  }
  for (int i = 0; i < d; ++i) {
    const std::uint64_t x = fresh();
    (rng() & 1 ? p.mine : p.theirs).toggle(x);
    p.diff.push_back(x);
  }
  std::sort(p.diff.begin(), p.diff.end());
  return p;
}

TEST(Sketch, DecodesEveryDifferenceUpToItsCapacity) {
  std::mt19937_64 rng(7);
  for (const std::uint32_t c : {1u, 2u, 3u, 8u, 16u, 33u, 64u}) {
    for (std::uint32_t d = 0; d <= c; ++d) {
      const int trials = c <= 16 ? 6 : 2;
      for (int t = 0; t < trials; ++t) {
        Pair p = make_pair(rng, c, 50, static_cast<int>(d));
        Sketch diff = p.mine;
        diff.merge(p.theirs.syndromes());
        std::vector<std::uint64_t> out;
        ASSERT_EQ(sketch_decode(diff.syndromes(), c, out), SketchDecodeResult::kDecoded)
            << "c=" << c << " d=" << d;
        ASSERT_EQ(out, p.diff) << "c=" << c << " d=" << d;
        if (c <= 16) {
          std::vector<std::uint64_t> out2;
          ASSERT_EQ(sketch_decode_portable(diff.syndromes(), c, out2), SketchDecodeResult::kDecoded);
          ASSERT_EQ(out2, p.diff);
        }
      }
    }
  }
}

TEST(Sketch, ADifferenceLargerThanAcceptedIsDetected) {
  // With one syndrome kept for checking (elements_max = c - 1), a larger difference must come
  // back kTooMany: mistaking it for a smaller one has probability ~2^-48 per decoding.
  std::mt19937_64 rng(8);
  int decoded_wrong = 0;
  int trials = 0;
  for (const std::uint32_t c : {1u, 2u, 4u, 9u, 20u}) {
    for (std::uint32_t d = c; d <= 2 * c + 3; ++d) {
      for (int t = 0; t < 10; ++t, ++trials) {
        Pair p = make_pair(rng, c, 10, static_cast<int>(d));
        Sketch diff = p.mine;
        diff.merge(p.theirs.syndromes());
        std::vector<std::uint64_t> out;
        const SketchDecodeResult r = sketch_decode(diff.syndromes(), c - 1, out);
        if (r == SketchDecodeResult::kDecoded) ++decoded_wrong;
        EXPECT_NE(r, SketchDecodeResult::kInvalid);
        if (r != SketchDecodeResult::kDecoded) {
          EXPECT_TRUE(out.empty());
        }
      }
    }
  }
  EXPECT_EQ(decoded_wrong, 0) << "of " << trials;
}

TEST(Sketch, HostileArgumentsAreRefusedAndRandomSyndromesNeverCrash) {
  std::vector<std::uint64_t> out;
  std::vector<std::uint64_t> big(kSketchCapacityMax + 1, 1);
  EXPECT_EQ(sketch_decode(big, 1, out), SketchDecodeResult::kInvalid);
  std::vector<std::uint64_t> three{1, 2, 3};
  EXPECT_EQ(sketch_decode(three, 4, out), SketchDecodeResult::kInvalid);
  std::vector<std::uint64_t> high{std::uint64_t{1} << 48};
  EXPECT_EQ(sketch_decode(high, 1, out), SketchDecodeResult::kInvalid);
  std::vector<std::uint64_t> none;
  EXPECT_EQ(sketch_decode(none, 0, out), SketchDecodeResult::kDecoded);
  EXPECT_TRUE(out.empty());

  // Random syndromes: whatever comes back, a "decoded" set must give back every syndrome.
  std::mt19937_64 rng(9);
  for (int t = 0; t < 400; ++t) {
    const std::uint32_t c = 1 + static_cast<std::uint32_t>(rng() % 24);
    std::vector<std::uint64_t> syn(c);
    for (auto& s : syn) s = rng() & kMask;
    if (rng() % 4 == 0) std::fill(syn.begin() + c / 2, syn.end(), 0);
    if (sketch_decode(syn, c, out) == SketchDecodeResult::kDecoded) {
      const Sketch again = sketch_of(out, c);
      EXPECT_TRUE(std::equal(syn.begin(), syn.end(), again.syndromes().begin()));
      EXPECT_LE(out.size(), c);
    }
  }
}

}  // namespace
}  // namespace rumor::digest
