// Rateless IBLT symbols (digest/riblt.h): the mapping's density, incremental maintenance against
// a rebuild, the wire form, decoding against the true difference, and hostile streams.
#include "digest/riblt.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "digest/hash.h"

namespace rumor::digest {
namespace {

constexpr std::uint64_t kKey = 0x0123456789abcdefull;

RibltElement random_element(std::mt19937_64& rng) {
  const std::uint64_t kh = rng() | 1;
  const Version v{rng() >> 8, rng()};
  return riblt_element(kh, v.hlc, entry_hash(kh, v, false), kKey);
}

TEST(Riblt, MappingHitsIndexIWithProbabilityAboutTwoOverIPlusTwo) {
  constexpr int kElements = 20000;
  constexpr std::uint64_t kIndices = 256;
  std::vector<int> hits(kIndices, 0);
  std::mt19937_64 rng(1);
  for (int e = 0; e < kElements; ++e) {
    RibltMapping m(rng());
    for (std::uint64_t i = 0; i < kIndices; i = m.next()) ++hits[i];
  }
  EXPECT_EQ(hits[0], kElements);
  for (std::uint64_t i : {1u, 2u, 5u, 10u, 50u, 100u, 200u}) {
    const double p = 2.0 / (static_cast<double>(i) + 2.0);
    const double got = static_cast<double>(hits[i]) / kElements;
    // The gap is drawn from a continuous approximation: within a few percent of 2/(i+2).
    EXPECT_NEAR(got, p, 4 * std::sqrt(p * (1 - p) / kElements) + 0.05 * p) << "index " << i;
  }
}

TEST(Riblt, MappingIsStrictlyIncreasingAndEnds) {
  RibltMapping m(0);  // the worst seed is made odd
  std::uint64_t last = 0;
  for (int i = 0; i < 200; ++i) {
    const std::uint64_t n = m.next();
    ASSERT_GT(n, last);
    last = n;
    if (n == kRibltIndexNever) break;
  }
}

TEST(Riblt, ElementFieldsAndTimeOrder) {
  const std::uint64_t kh = 0xabcdef0123456789ull;
  const Version v{hlc_pack(1'700'000'000'000, 5), 9};
  const RibltElement e = riblt_element(kh, v.hlc, entry_hash(kh, v, false), kKey);
  EXPECT_EQ(riblt_kid(e.data), kh >> (64 - kRibltKidBits));
  EXPECT_EQ(riblt_time(e.data), (v.hlc >> kRibltTimeShift) & ((1u << kRibltTimeBits) - 1));
  EXPECT_EQ(e.data & ~kRibltDataMask, 0u);
  EXPECT_LE(riblt_kid_lo(riblt_kid(e.data)), kh);
  EXPECT_GE(riblt_kid_hi(riblt_kid(e.data)), kh);
  // Same key and tick, another writer or a tombstone: another element.
  const RibltElement other = riblt_element(kh, v.hlc, entry_hash(kh, Version{v.hlc, 10}, false), kKey);
  const RibltElement tomb = riblt_element(kh, v.hlc, entry_hash(kh, v, true), kKey);
  EXPECT_NE(e, other);
  EXPECT_NE(e, tomb);
  // Another cluster key: another checksum.
  EXPECT_NE(e.chk, riblt_element(kh, v.hlc, entry_hash(kh, v, false), kKey + 1).chk);
  EXPECT_EQ(riblt_time_cmp(10, 9), 1);
  EXPECT_EQ(riblt_time_cmp(9, 10), -1);
  EXPECT_EQ(riblt_time_cmp(3, 3), 0);
  EXPECT_EQ(riblt_time_cmp(2, (1u << kRibltTimeBits) - 2), 1);  // across the wrap
}

TEST(Riblt, PrefixMaintainedIncrementallyEqualsRebuild) {
  constexpr std::uint32_t kK = 512;
  constexpr std::uint32_t kSketch = 24;
  RibltPrefix p(kK, kKey, kSketch);
  std::mt19937_64 rng(2);
  std::vector<RibltElement> live;
  for (int step = 0; step < 5000; ++step) {
    const auto op = rng() % 3;
    if (op == 0 || live.empty()) {
      live.push_back(random_element(rng));
      p.add(live.back());
    } else if (op == 1) {
      const std::size_t i = rng() % live.size();
      p.remove(live[i]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      const std::size_t i = rng() % live.size();
      const RibltElement n = random_element(rng);
      p.replace(live[i], n);
      live[i] = n;
    }
    if (step % 777 == 0) p.fold();
  }
  std::vector<RibltSymbol> want(kK);
  for (const auto& e : live) riblt_accumulate(e, 1, kKey, 0, want);
  const auto got = p.symbols();
  ASSERT_EQ(got.size(), want.size());
  for (std::uint32_t i = 0; i < kK; ++i) ASSERT_EQ(got[i], want[i]) << i;
  EXPECT_EQ(got[0].count, static_cast<std::int32_t>(live.size()));
  // A window beyond the start equals the same symbols computed from index 0.
  std::vector<RibltSymbol> tail(100);
  for (const auto& e : live) riblt_accumulate(e, 1, kKey, 300, tail);
  for (std::uint32_t i = 0; i < 100; ++i) ASSERT_EQ(tail[i], want[300 + i]);
  // The sketch kept from the same log equals the sketch of the live elements' data.
  Sketch sk(kSketch);
  for (const auto& e : live) sk.toggle(e.data);
  const auto got_sketch = p.sketch();
  ASSERT_EQ(got_sketch.size(), kSketch);
  EXPECT_TRUE(std::equal(got_sketch.begin(), got_sketch.end(), sk.syndromes().begin()));
  EXPECT_TRUE(RibltPrefix(kK, kKey).sketch().empty());
}

TEST(Riblt, WireFormCarriesTheDifference) {
  RibltSymbol local{0x123456789abcull, 0x654321, 1000};
  RibltSymbol remote{0x0f0f0f0f0f0full, 0x00ff00, 1001};
  std::vector<std::uint8_t> buf(kRibltSymbolBytes);
  ByteWriter w(buf);
  put_riblt_symbol(w, remote);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w.size(), kRibltSymbolBytes);
  ByteReader r(buf);
  const RibltSymbol d = riblt_read_diff(r, local);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(d.data, remote.data ^ local.data);
  EXPECT_EQ(d.chk, remote.chk ^ local.chk);
  EXPECT_EQ(d.count, 1);
  local.count = 1300;  // the wire keeps the count mod 4: -299 reads as 1
  ByteReader r2(buf);
  EXPECT_EQ(riblt_read_diff(r2, local).count, (1001 - 1300) & 3);
  local.count = 1002;  // -1 reads as 3
  ByteReader r3(buf);
  EXPECT_EQ(riblt_read_diff(r3, local).count, 3);
}

// Two sets sharing `common` elements, with `only_r` and `only_l` more on each side; the
// decoder is fed remote - local until it decodes. Returns the symbols it took.
std::uint64_t decode_once(std::uint64_t seed, int common, int only_r, int only_l,
                          bool* exact) {
  std::mt19937_64 rng(seed);
  std::vector<RibltElement> r_only, l_only;
  for (int i = 0; i < only_r; ++i) r_only.push_back(random_element(rng));
  for (int i = 0; i < only_l; ++i) l_only.push_back(random_element(rng));
  std::vector<RibltElement> shared;
  for (int i = 0; i < common; ++i) shared.push_back(random_element(rng));
  RibltDecoder dec(kKey, {});
  const std::uint64_t chunk = 64;
  for (std::uint64_t first = 0; first < 100000 && !dec.decoded(); first += chunk) {
    std::vector<RibltSymbol> remote(chunk), local(chunk);
    for (const auto& e : shared) {
      riblt_accumulate(e, 1, kKey, first, remote);
      riblt_accumulate(e, 1, kKey, first, local);
    }
    for (const auto& e : r_only) riblt_accumulate(e, 1, kKey, first, remote);
    for (const auto& e : l_only) riblt_accumulate(e, 1, kKey, first, local);
    for (std::uint64_t i = 0; i < chunk && !dec.decoded(); ++i) {
      std::vector<std::uint8_t> buf(kRibltSymbolBytes);
      ByteWriter w(buf);
      put_riblt_symbol(w, remote[i]);
      ByteReader rd(buf);
      EXPECT_TRUE(dec.add(riblt_read_diff(rd, local[i])).is_ok());
    }
  }
  std::set<std::uint64_t> want_r, want_l, got_r, got_l;
  for (const auto& e : r_only) want_r.insert(e.data);
  for (const auto& e : l_only) want_l.insert(e.data);
  for (const auto& d : dec.elements()) (d.remote ? got_r : got_l).insert(d.e.data);
  *exact = dec.decoded() && want_r == got_r && want_l == got_l;
  return dec.received();
}

TEST(Riblt, DecodesEveryDifferenceWithFewSymbolsPerElement) {
  for (int d : {1, 2, 10, 100, 1000}) {
    double symbols = 0;
    const int runs = d >= 1000 ? 3 : 10;
    for (int run = 0; run < runs; ++run) {
      bool exact = false;
      symbols += static_cast<double>(
          decode_once(static_cast<std::uint64_t>(d * 100 + run), 300, d / 2 + d % 2, d / 2, &exact));
      ASSERT_TRUE(exact) << "d " << d << " run " << run;
    }
    const double per = symbols / runs / d;
    // The paper's overhead: 1.35 to 1.72 symbols per difference once d is not tiny.
    if (d >= 100) {
      EXPECT_LT(per, 1.8) << d;
    }
    std::printf("d=%d: %.2f symbols per difference\n", d, per);
  }
}

TEST(Riblt, CountsThatWrapModulo4StillDecode) {
  // 600 more elements on one side: symbol 0's count difference wraps the wire's 2 bits.
  bool exact = false;
  decode_once(11, 50, 600, 20, &exact);
  EXPECT_TRUE(exact);
}

TEST(Riblt, EmptyDifferenceDecodesAtTheFirstSymbol) {
  bool exact = false;
  EXPECT_EQ(decode_once(7, 100, 0, 0, &exact), 1u);
  EXPECT_TRUE(exact);
}

TEST(Riblt, HostileStreamsEndWithAnErrorNotACrash) {
  std::mt19937_64 rng(9);
  // Random symbols: never "decoded" by accident, and the limits stop the decoder.
  RibltDecoder dec(kKey, RibltDecoder::Limits{1000, 50});
  Status last = Status::ok();
  for (int i = 0; i < 2000 && last.is_ok(); ++i) {
    RibltSymbol s{rng() & kRibltDataMask, static_cast<std::uint32_t>(rng()) & kRibltChkMask,
                  static_cast<std::int32_t>(rng() % 5) - 2};
    last = dec.add(s);
  }
  EXPECT_FALSE(last.is_ok());
  EXPECT_TRUE(dec.failed());
  EXPECT_FALSE(dec.decoded());
  EXPECT_FALSE(dec.add(RibltSymbol{}).is_ok());  // final
  // Forged pure symbols (valid checksums) everywhere: bounded by elements_max.
  RibltDecoder dec2(kKey, RibltDecoder::Limits{100000, 64});
  Status st = Status::ok();
  for (int i = 0; i < 10000 && st.is_ok(); ++i) {
    const std::uint64_t data = rng() & kRibltDataMask;
    st = dec2.add(RibltSymbol{data, static_cast<std::uint32_t>(riblt_data_hash(data, kKey)) &
                                        kRibltChkMask, 1});
  }
  EXPECT_FALSE(st.is_ok());
  EXPECT_LE(dec2.elements().size(), 64u);
}

TEST(Riblt, EstimateIsWithinAFactorOfTwo) {
  for (int d : {10, 100, 1000, 10000}) {
    int within = 0;
    constexpr int kRuns = 10;
    for (int run = 0; run < kRuns; ++run) {
      std::mt19937_64 rng(static_cast<std::uint64_t>(d * 31 + run));
      const auto idx = riblt_estimate_indices();
      const std::uint32_t prefix = 1024;
      std::vector<RibltSymbol> diff(prefix);
      for (int i = 0; i < d; ++i) riblt_accumulate(random_element(rng), (i % 2) ? 1 : -1, kKey, 0, diff);
      std::vector<std::int8_t> res;
      for (std::uint16_t i : idx) {
        res.push_back(i < prefix ? static_cast<std::int8_t>(diff[i].count) : 0);
      }
      const double est = riblt_estimate(res, diff[0].count, prefix);
      within += est >= d / 2.0 && est <= d * 2.0;
    }
    EXPECT_GE(within, 8) << d;
  }
}

}  // namespace
}  // namespace rumor::digest
