// The CRoaring evaluation of issue 18 (README "CRoaring"), kept as a probe rather than a
// benchmark because rumor does not link CRoaring: no use measured better than what is there.
// Build and run: g++ -O2 -std=c++20 bench/probes/roaring_probe.cc -lroaring -o /tmp/roaring_probe
//   1. sets of differing children or shards on the wire: plain bitmap of the universe (what
//      ROOTS_DIFF / EXPAND carry), CRoaring's portable serialization, sorted varint deltas;
//   2. dirty-leaf marks per write: a plain bitset (digest/merkle.h) against roaring_bitmap_add.
#include <roaring/roaring.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <random>
#include <vector>
#include <algorithm>
int main() {
  std::mt19937_64 rng(1);
  // 1. A set of differing children/shards on the wire: plain bitmap of the universe vs roaring
  // portable serialization vs sorted varint deltas.
  for (std::uint32_t universe : {8u, 64u, 256u, 1024u, 65536u}) {
    for (std::uint32_t k : {1u, 4u, 16u, 64u, 1024u}) {
      if (k > universe) continue;
      std::vector<std::uint32_t> v;
      while (v.size() < k) { std::uint32_t x = rng() % universe; if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x); }
      std::sort(v.begin(), v.end());
      roaring_bitmap_t* r = roaring_bitmap_of_ptr(v.size(), v.data());
      roaring_bitmap_run_optimize(r);
      const std::size_t rb = roaring_bitmap_portable_size_in_bytes(r);
      std::size_t vb = 0; std::uint32_t prev = 0;
      for (auto x : v) { std::uint32_t d = x - prev; prev = x; do { ++vb; d >>= 7; } while (d); }
      std::printf("universe %6u k %5u: plain bitmap %6u B, roaring portable %6zu B, varint deltas %6zu B\n", universe, k, (universe + 7) / 8, rb, vb);
      roaring_bitmap_free(r);
    }
  }
  // 2. Dirty-leaf tracking per write: plain bitset + summary word vs roaring add (random order).
  constexpr std::uint32_t kLeaves = 1024; constexpr int kWrites = 10'000'000;
  std::vector<std::uint32_t> leaf(kWrites); for (auto& l : leaf) l = rng() % kLeaves;
  {
    std::vector<std::uint64_t> bits(kLeaves / 64); std::uint64_t summary = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kWrites; ++i) { const auto l = leaf[i]; bits[l >> 6] |= 1ull << (l & 63); summary |= 1ull << (l >> 6); if ((i & 1023) == 1023) { std::fill(bits.begin(), bits.end(), 0); summary = 0; } }
    auto t1 = std::chrono::steady_clock::now();
    std::printf("dirty marks, plain bitset: %.1f ns/write (%lu)\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / kWrites, summary + bits[0]);
  }
  {
    roaring_bitmap_t* r = roaring_bitmap_create();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kWrites; ++i) { roaring_bitmap_add(r, leaf[i]); if ((i & 1023) == 1023) roaring_bitmap_clear(r); }
    auto t1 = std::chrono::steady_clock::now();
    std::printf("dirty marks, roaring_bitmap_add: %.1f ns/write (%lu)\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / kWrites, (unsigned long)roaring_bitmap_get_cardinality(r));
    roaring_bitmap_free(r);
  }
}
