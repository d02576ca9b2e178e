// The Merkle tree against a from-scratch rebuild (the oracle), alone and hooked into the store.
#include "digest/merkle.h"
#include "digest/riblt.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <bit>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/clock.h"
#include "digest/hash.h"
#include "engine/store/store.h"
#include "engine/wire/wire.h"

namespace rumor {
namespace {

using digest::decode_one;
using digest::inverse_odd;
using digest::MerkleTree;
using digest::OneDiff;
using digest::rev64;
using digest::SetSums;

// Every node of `a` equals the same node of a tree rebuilt from `model` at a.leaf_bits().
void expect_equals_rebuild(const MerkleTree& a, const std::map<std::uint64_t, std::uint64_t>& model,
                           std::uint32_t max_bits_checked = 12) {
  MerkleTree b(a.leaf_bits());
  for (const auto& [kh, eh] : model) b.insert(kh, eh);
  b.fold_all();
  ASSERT_EQ(a.entries(), model.size());
  ASSERT_TRUE(a.sums() == b.sums()) << "linear sums differ from the rebuild";
  const std::uint32_t top = std::min(a.leaf_bits(), max_bits_checked);
  for (std::uint32_t k = 0; k <= top; ++k) {
    for (std::uint64_t i = 0; i < (std::uint64_t{1} << k); ++i) {
      ASSERT_EQ(a.hash(k, i), b.hash(k, i)) << "bits " << k << " index " << i;
      ASSERT_EQ(a.count(k, i), b.count(k, i)) << "bits " << k << " index " << i;
    }
  }
}

TEST(MerkleTree, EmptyTreeIsZero) {
  MerkleTree t(5);
  EXPECT_TRUE(t.folded());
  EXPECT_EQ(t.root_hash(), 0u);
  EXPECT_EQ(t.count(0, 0), 0u);
  EXPECT_EQ(t.fold(), 0u);
}

TEST(MerkleTree, IncrementalEqualsRebuildAfterRandomUpdates) {
  // From 6 bits the dirty bitset has several words; at 14 its summary has several words too.
  for (std::uint32_t bits : {0u, 1u, 4u, 6u, 7u, 10u, 14u}) {
    const std::uint64_t seed = 1000 + bits;
    std::mt19937_64 rng(seed);
    MerkleTree t(bits);
    std::map<std::uint64_t, std::uint64_t> model;
    std::vector<std::uint64_t> keys;
    for (int step = 0; step < 20000; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 5 || keys.empty()) {
        const std::uint64_t kh = rng() | 1, eh = rng();
        if (model.count(kh)) continue;
        model[kh] = eh;
        keys.push_back(kh);
        t.add(kh, eh);
      } else if (op < 8) {
        const std::uint64_t kh = keys[rng() % keys.size()];
        const std::uint64_t eh = rng();
        t.replace(kh, model[kh], eh);
        model[kh] = eh;
      } else {
        const std::size_t j = rng() % keys.size();
        const std::uint64_t kh = keys[j];
        t.remove(kh, model[kh]);
        model.erase(kh);
        keys[j] = keys.back();
        keys.pop_back();
      }
      if (rng() % 500 == 0) {
        t.fold();
        expect_equals_rebuild(t, model);
        if (HasFatalFailure()) {
          ADD_FAILURE() << "seed " << seed << " step " << step;
          return;
        }
      }
    }
    t.fold();
    expect_equals_rebuild(t, model);
  }
}

RC_GTEST_PROP(MerkleTree, FoldEqualsRebuild, ()) {
  const auto bits = *rc::gen::inRange<std::uint32_t>(0, 9);
  const auto ops = *rc::gen::container<std::vector<std::pair<std::uint64_t, std::uint64_t>>>(
      rc::gen::pair(rc::gen::arbitrary<std::uint64_t>(), rc::gen::arbitrary<std::uint64_t>()));
  MerkleTree t(bits);
  std::map<std::uint64_t, std::uint64_t> model;
  for (const auto& [kh, eh] : ops) {
    auto it = model.find(kh);
    if (it == model.end()) {
      t.add(kh, eh);
      model[kh] = eh;
    } else if (eh & 1) {
      t.replace(kh, it->second, eh);
      it->second = eh;
    } else {
      t.remove(kh, it->second);
      model.erase(it);
    }
    if ((eh >> 8) % 7 == 0) t.fold();
  }
  t.fold();
  MerkleTree b(bits);
  for (const auto& [kh, eh] : model) b.insert(kh, eh);
  b.fold_all();
  for (std::uint32_t k = 0; k <= bits; ++k) {
    for (std::uint64_t i = 0; i < (std::uint64_t{1} << k); ++i) {
      RC_ASSERT(t.hash(k, i) == b.hash(k, i));
      RC_ASSERT(t.count(k, i) == b.count(k, i));
    }
  }
  // The linear sums follow every add, remove and replace exactly.
  RC_ASSERT(t.sums() == b.sums());
  RC_ASSERT(t.sums().hash == t.root_hash());
  RC_ASSERT(t.sums().count == t.entries());
}

TEST(SetSums, BitReversalAndInverse) {
  EXPECT_EQ(rev64(1), std::uint64_t{1} << 63);
  EXPECT_EQ(rev64(0x00000000000000f0ull), 0x0f00000000000000ull);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t x = rng();
    EXPECT_EQ(rev64(rev64(x)), x);
    const std::uint64_t odd = x | 1;
    EXPECT_EQ(odd * inverse_odd(odd), 1u);
  }
}

// A set pair that differs by one entry of any kind decodes to that entry's key hash; pairs that
// differ by two or more say kMany (for random key hashes: the cross check is weaker for key
// hashes that differ in a few bits, which is why callers also check each decoded entry's hash).
TEST(SetSums, DecodesExactlyOneDifference) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 3000; ++round) {
    SetSums a, b;
    for (int i = 0; i < 50; ++i) {
      const std::uint64_t k = rng() | 1, e = rng();
      a.add(k, e);
      b.add(k, e);
    }
    const std::uint64_t k = rng() | 1, e1 = rng(), e2 = rng();
    switch (round % 4) {
      case 0: {  // a holds one more entry
        a.add(k, e1);
        const OneDiff d = decode_one(a - b);
        ASSERT_EQ(d.kind, OneDiff::Kind::kMine);
        EXPECT_EQ(d.lo, k);
        EXPECT_EQ(d.entry_hash, e1);
        EXPECT_EQ(decode_one(b - a).kind, OneDiff::Kind::kTheirs);
        EXPECT_EQ(decode_one(b - a).lo, k);
        break;
      }
      case 1: {  // one key, two versions
        a.add(k, e1);
        b.add(k, e2);
        const OneDiff d = decode_one(a - b, 64);
        ASSERT_EQ(d.kind, OneDiff::Kind::kVersion);
        EXPECT_LE(d.lo, k);
        EXPECT_GE(d.hi, k);
        EXPECT_EQ(d.hi - d.lo, (std::uint64_t{1} << std::countr_zero(e1 - e2)) - 1);
        break;
      }
      case 2: {  // two differences (random key hashes, as XXH3 makes them)
        a.add(k, e1);
        b.add(rng() | 1, e2);
        EXPECT_EQ(decode_one(a - b).kind, OneDiff::Kind::kMany);
        a.add(rng() | 1, e2);
        EXPECT_EQ(decode_one(a - b).kind, OneDiff::Kind::kMany);
        break;
      }
      case 3: {  // a replaced entry's sums equal a set built with the new one
        SetSums c = a;
        a.add(k, e1);
        a.replace(k, e1, e2);
        c.add(k, e2);
        EXPECT_EQ(a, c);
        EXPECT_EQ(decode_one(a - c).kind, OneDiff::Kind::kEqual);
        break;
      }
    }
  }
}

TEST(MerkleTree, NodesDoNotDependOnLeafDepth) {
  std::mt19937_64 rng(7);
  MerkleTree shallow(3), deep(11);
  for (int i = 0; i < 5000; ++i) {
    const std::uint64_t kh = rng(), eh = rng();
    shallow.add(kh, eh);
    deep.add(kh, eh);
  }
  shallow.fold();
  deep.fold();
  for (std::uint32_t k = 0; k <= 3; ++k) {
    for (std::uint64_t i = 0; i < (std::uint64_t{1} << k); ++i) {
      EXPECT_EQ(shallow.hash(k, i), deep.hash(k, i));
      EXPECT_EQ(shallow.count(k, i), deep.count(k, i));
    }
  }
}

TEST(MerkleTree, SizingPolicy) {
  EXPECT_EQ(MerkleTree::leaf_bits_for(0), 0u);
  EXPECT_EQ(MerkleTree::leaf_bits_for(MerkleTree::kLeafEntriesTarget), 0u);
  EXPECT_EQ(MerkleTree::leaf_bits_for(MerkleTree::kLeafEntriesTarget + 1), 1u);
  EXPECT_EQ(MerkleTree::leaf_bits_for(15625), 10u);  // 16 per leaf: 1,024 leaves
  EXPECT_EQ(MerkleTree::leaf_bits_for(std::uint64_t{1} << 40), MerkleTree::kLeafBitsMax);
  MerkleTree tiny(0);
  // An almost-empty shard costs next to nothing: a few hundred bytes (32 of them the sums).
  EXPECT_LT(tiny.memory_bytes(), 320u);
}

TEST(Hash, KeyHashMatchesStore) {
  for (const std::string& k : std::vector<std::string>{"a", "service_version", std::string(300, 'x'),
                                                  std::string("\0", 1)}) {
    EXPECT_EQ(digest::key_hash(k), Store::hash_key(k));
  }
}

// Known answers, taken from the code before these hashes moved into digest/hash.h: node ids,
// label hashes and member-name hashes cross the wire or a peer's tables, so they never change.
TEST(Hash, EngineHashesKeepTheirValues) {
  EXPECT_EQ(digest::node_id_of_name(""), 0x2d06800538d394c2ull);
  EXPECT_EQ(digest::node_id_of_name("a"), 0xe6c632b61e964e1full);
  EXPECT_EQ(digest::node_id_of_name("node-1"), 0x0db09edfd9458385ull);
  EXPECT_EQ(digest::node_id_of_name("a-rather-longer-node-name.example.org:7946"),
            0x812dc63873653d42ull);
  EXPECT_EQ(digest::label_hash(""), 0x38d394c2u);
  EXPECT_EQ(digest::label_hash("node-1"), 0xd9458385u);
  EXPECT_EQ(wire::label_hash("a"), 0x1e964e1fu);
  EXPECT_EQ(wire::label_hash("a-rather-longer-node-name.example.org:7946"), 0x73653d42u);
  EXPECT_EQ(digest::name_metadata_hash("ab", "c"), 0xc5101ba6cf8e0459ull);
  EXPECT_EQ(digest::name_metadata_hash("a", "bc"), 0x672d7ce5c4e3dab0ull);
  EXPECT_EQ(digest::name_metadata_hash("node-1", ""), 0x6bc322693537425bull);
  EXPECT_EQ(digest::name_metadata_hash("", "meta"), 0x53267258173ead75ull);
}

// ---- hooked into the store ----

class StoreMerkleTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> make(StoreConfig cfg = {}) {
    auto r = Store::create(cfg, 1, time_);
    EXPECT_TRUE(r.is_ok());
    return std::move(r).value();
  }
  // The shard's tree against one rebuilt from its sorted entries.
  static void check_shard(Shard& sh) {
    std::map<std::uint64_t, std::uint64_t> model;
    std::uint64_t n = 0;
    sh.for_each_sorted([&](std::uint64_t h, const EntryView& e) {
      model[h] += digest::entry_hash(h, e.version, e.tombstone);  // += : equal key hashes add up
      ++n;
    });
    const MerkleTree* t = sh.merkle();
    if (n == 0 && !t) return;
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->entries(), n);
    MerkleTree b(t->leaf_bits());
    for (const auto& [kh, eh] : model) b.insert(kh, eh);
    b.fold_all();
    for (std::uint32_t k = 0; k <= std::min(t->leaf_bits(), 10u); ++k) {
      for (std::uint64_t i = 0; i < (std::uint64_t{1} << k); ++i) {
        ASSERT_EQ(t->hash(k, i), b.hash(k, i)) << "shard " << sh.index() << " bits " << k;
      }
    }
    EXPECT_FALSE(t->wants_resize());
    // The rateless IBLT prefix, kept by the same writes, against one computed from the entries.
    // A shard that never held more than kRibltPrefixEntriesMin entries keeps none.
    digest::RibltPrefix* p = sh.riblt();
    if (n <= Shard::kRibltPrefixEntriesMin && p == nullptr) return;
    ASSERT_NE(p, nullptr);
    std::vector<digest::RibltSymbol> want(p->size());
    sh.for_each_sorted([&](std::uint64_t h, const EntryView& e) {
      digest::riblt_accumulate(
          digest::riblt_element(h, e.version.hlc, digest::entry_hash(h, e.version, e.tombstone),
                                p->key()),
          1, p->key(), 0, want);
    });
    const auto got = p->symbols();
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "shard " << sh.index() << " symbol " << i;
    }
  }
  ManualTimeSource time_{10'000'000};
};

TEST_F(StoreMerkleTest, EveryChangeKindKeepsTheTreeExact) {
  StoreConfig cfg;
  cfg.virtual_shards = 4;
  cfg.tombstone_grace_ms = 1000;
  auto s = make(cfg);
  const std::uint64_t seed = 42;
  std::mt19937_64 rng(seed);
  for (int step = 0; step < 30000; ++step) {
    // Keys of 8 and 16 bytes take the store's inline fast merge path; others the general one.
    const std::uint64_t id = rng() % 6000;
    char buf[32];
    if (id % 3 == 0) {
      std::snprintf(buf, sizeof buf, "k%llu", static_cast<unsigned long long>(id));
    } else if (id % 3 == 1) {
      std::snprintf(buf, sizeof buf, "k%07llu", static_cast<unsigned long long>(id));
    } else {
      std::snprintf(buf, sizeof buf, "key-%012llu", static_cast<unsigned long long>(id));
    }
    const std::string key = buf;
    const int op = static_cast<int>(rng() % 10);
    if (op < 5) {
      ASSERT_TRUE(s->set(key, std::string(rng() % 100, 'v')).is_ok());
    } else if (op < 7) {
      ASSERT_TRUE(s->del(key).is_ok());
    } else {
      // A remote write, sometimes older than what we hold (stale), sometimes newer.
      const std::uint64_t ms = time_.now_ms() - 2000 + rng() % 2500;
      (void)s->merge(EntryView{key, "remote", Version{hlc_pack(ms, rng() % 4), 2 + rng() % 3},
                               (rng() % 4) == 0});
    }
    if (step % 5000 == 4999) {
      time_.advance(700);
      for (std::uint32_t i = 0; i < s->shard_count(); ++i) {
        s->shard(i).purge_tombstones(time_.now_ms());
        check_shard(s->shard(i));
        if (HasFatalFailure()) {
          ADD_FAILURE() << "seed " << seed << " step " << step;
          return;
        }
      }
    }
  }
  EXPECT_GT(s->counters().tombstones_purged, 0u);
}

TEST_F(StoreMerkleTest, TreeGrowsAndShrinksWithTheShard) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  cfg.tombstone_grace_ms = 10;
  auto s = make(cfg);
  EXPECT_EQ(s->shard(0).merkle(), nullptr);  // never held an entry: no tree at all
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(s->set("key" + std::to_string(i), "v").is_ok());
  const MerkleTree* t = s->shard(0).merkle();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->leaf_bits(), MerkleTree::leaf_bits_for(20000));
  check_shard(s->shard(0));
  for (int i = 0; i < 19900; ++i) ASSERT_TRUE(s->del("key" + std::to_string(i)).is_ok());
  time_.advance(1000);
  s->shard(0).purge_tombstones(time_.now_ms());
  t = s->shard(0).merkle();
  EXPECT_EQ(t->entries(), 100u);
  EXPECT_LE(t->leaf_bits(), MerkleTree::leaf_bits_for(100) + 2);
  check_shard(s->shard(0));
}

TEST_F(StoreMerkleTest, HashRangeScanFindsExactlyTheRange) {
  StoreConfig cfg;
  cfg.virtual_shards = 2;
  auto s = make(cfg);
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(s->set("r" + std::to_string(i), "v").is_ok());
  for (int i = 0; i < 3000; i += 3) ASSERT_TRUE(s->del("r" + std::to_string(i)).is_ok());
  std::mt19937_64 rng(3);
  for (std::uint32_t sh = 0; sh < 2; ++sh) {
    std::vector<std::uint64_t> all;
    s->shard(sh).for_each_sorted([&](std::uint64_t h, const EntryView&) { all.push_back(h); });
    for (int round = 0; round < 200; ++round) {
      std::uint64_t lo = rng(), hi = rng();
      if (round % 4 == 0) {  // narrow ranges, like a node deep in the tree
        hi = lo + (rng() >> (round % 40 + 4));
        if (hi < lo) hi = ~std::uint64_t{0};
      }
      if (round == 1) lo = 0, hi = ~std::uint64_t{0};
      if (lo > hi) std::swap(lo, hi);
      std::vector<std::uint64_t> want, got;
      for (std::uint64_t h : all) {
        if (h >= lo && h <= hi) want.push_back(h);
      }
      s->shard(sh).for_each_in_hash_range(lo, hi, [&](std::uint64_t h, const EntryView& e) {
        EXPECT_EQ(Store::hash_key(e.key), h);
        got.push_back(h);
      });
      std::sort(got.begin(), got.end());
      ASSERT_EQ(got, want) << "range [" << lo << ", " << hi << "]";
    }
  }
}

}  // namespace
}  // namespace rumor
