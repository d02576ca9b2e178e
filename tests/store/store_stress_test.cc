// Concurrency stress (LevelDB's skiplist ConcurrentTest, adapted): owner threads merge
// generation-tagged entries while reader threads check, without any lock, that they never see
//   - a torn entry (a value, length and version that do not belong to one write),
//   - a version of a key that goes backward,
//   - a miss, or an older generation, for a key whose generation was published before the read.
// Tables grow, blobs are replaced and memory is reclaimed while readers run. Bounded in time
// and in count; synchronisation is by atomics only, never by sleeping; a thread that fails
// stops the others. Run under TSan by `tools/dev test`.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "engine/store/store.h"

namespace rumor {
namespace {

constexpr std::uint64_t kBaseMs = 1'000'000;
#if defined(__SANITIZE_THREAD__) || defined(__has_feature)
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
constexpr std::uint64_t kRunNs = 3'000'000'000;  // TSan is ~10x slower: fewer generations
#else
constexpr std::uint64_t kRunNs = 2'000'000'000;
#endif
#else
constexpr std::uint64_t kRunNs = 2'000'000'000;
#endif

// Each reader's loop is bounded in count too; the deadline comes first at any plausible speed.
constexpr std::uint64_t kReadsPerReaderMax = 4'000'000'000;

std::string key_of(int i) { return "stress-key-" + std::to_string(i); }

// Generation g of key i: tombstones every fifth generation; value lengths cross the 80-byte
// inline limit so slots switch between inline and out-of-line.
bool is_tombstone(std::uint64_t g) { return g % 5 == 4; }
std::string value_of(int i, std::uint64_t g) {
  std::string v = std::to_string(i) + ":" + std::to_string(g) + ":";
  const std::size_t pad = (g % 3 == 0) ? 150 : (g % 3 == 1 ? 10 : 60);
  v.append(pad, static_cast<char>('a' + (i + g) % 26));
  return v;
}
Version version_of(std::uint64_t g, NodeId node) { return Version{hlc_pack(kBaseMs + g, 0), node}; }

void run_stress(const int kKeys, const std::uint64_t kGenerationsMax) {
  ManualTimeSource time(kBaseMs + kGenerationsMax + 10);
  StoreConfig cfg;
  cfg.virtual_shards = 16;
  cfg.owners = 2;
  cfg.value_bytes_max = 1024;
  auto store = std::move(Store::create(cfg, 1, time)).value();

  // Published generation per owner: every key of that owner holds at least this generation.
  std::atomic<std::uint64_t> published[2] = {0, 0};
  std::atomic<bool> stop{false};
  const std::uint64_t deadline = monotonic_ns() + kRunNs;

  std::vector<std::vector<int>> keys_of_owner(2);
  for (int i = 0; i < kKeys; ++i) {
    keys_of_owner[store->owner_of_shard(store->shard_of(key_of(i)))].push_back(i);
  }

  // Returns early on a failed ASSERT; run_owner stops the rest either way.
  auto owner_fn = [&](std::uint32_t owner) {
    store->bind_owner(owner);
    std::vector<std::string> keys, values;
    for (std::uint64_t g = 1; g <= kGenerationsMax && !stop.load(std::memory_order_relaxed); ++g) {
      std::vector<EntryView> batch;
      keys.clear();
      values.clear();
      for (int i : keys_of_owner[owner]) {
        keys.push_back(key_of(i));
        values.push_back(is_tombstone(g) ? std::string() : value_of(i, g));
      }
      for (std::size_t k = 0; k < keys.size(); ++k) {
        batch.push_back(EntryView{keys[k], values[k], version_of(g, owner + 1), is_tombstone(g)});
      }
      std::vector<MergeOutcome> out(batch.size());
      for (std::size_t at = 0; at < batch.size(); at += 13) {
        const std::size_t n = std::min<std::size_t>(13, batch.size() - at);
        store->merge_batch(owner, std::span(batch).subspan(at, n), std::span(out).subspan(at, n));
      }
      for (auto o : out) ASSERT_EQ(o, MergeOutcome::kApplied);
      // Release: every merge of generation g happens before a reader sees g published.
      published[owner].store(g, std::memory_order_release);
      store->collect_garbage(owner);
      if (monotonic_ns() > deadline) break;
    }
  };
  auto run_owner = [&](std::uint32_t owner) {
    owner_fn(owner);
    // Also after a failed ASSERT, which returns before the end of owner_fn: the other threads
    // must stop, or the readers would spin forever (a hang instead of a failure).
    stop.store(true, std::memory_order_relaxed);
  };

  std::atomic<std::uint64_t> reads{0};
  std::atomic<bool> reader_bound_hit{false};
  // Returns on `stop`, on a failed ASSERT, or at its count or time bound (the owners' deadline
  // plus as long again: an owner stuck inside a merge does not hold the readers forever).
  auto reader_fn = [&](int seed, std::uint64_t& n) {
    std::vector<std::uint64_t> last_gen(kKeys, 0);
    std::uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    while (!stop.load(std::memory_order_relaxed)) {
      if (n == kReadsPerReaderMax || (n % 1024 == 0 && monotonic_ns() > deadline + kRunNs)) {
        reader_bound_hit.store(true, std::memory_order_relaxed);
        return;
      }
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const int i = static_cast<int>(x % kKeys);
      const std::string k = key_of(i);
      const std::uint32_t owner = store->owner_of_shard(store->shard_of(k));
      // Acquire: pairs with the owner's release; generation `pub` of k is in the store.
      const std::uint64_t pub = published[owner].load(std::memory_order_acquire);
      auto e = store->get_entry(k);
      ++n;
      if (!e) {
        ASSERT_EQ(pub, 0u) << "miss on " << k << " published at generation " << pub;
        continue;
      }
      const std::uint64_t g = hlc_physical_ms(e->version.hlc) - kBaseMs;
      ASSERT_GE(g, 1u);
      ASSERT_LE(g, kGenerationsMax);
      ASSERT_EQ(e->version, version_of(g, owner + 1)) << "torn version for " << k;
      ASSERT_EQ(e->tombstone, is_tombstone(g)) << "torn flag for " << k;
      ASSERT_EQ(e->value, is_tombstone(g) ? std::string() : value_of(i, g)) << "torn value";
      ASSERT_GE(g, pub) << k << " older than its published generation";
      ASSERT_GE(g, last_gen[i]) << k << " went backward";
      last_gen[i] = g;
    }
  };
  auto run_reader = [&](int seed) {
    std::uint64_t n = 0;
    reader_fn(seed, n);
    reads.fetch_add(n, std::memory_order_relaxed);
    // Normally `stop` is already set; after a failed ASSERT or a bound this stops the rest.
    stop.store(true, std::memory_order_relaxed);
  };

  std::thread o0(run_owner, 0), o1(run_owner, 1);
  std::thread r0(run_reader, 0), r1(run_reader, 1);
  o0.join();
  o1.join();
  r0.join();
  r1.join();
  const std::uint64_t gens = std::min(published[0].load(), published[1].load());
  std::printf("generations: %llu, reads checked: %llu\n", static_cast<unsigned long long>(gens),
              static_cast<unsigned long long>(reads.load()));
  EXPECT_FALSE(reader_bound_hit.load()) << "a reader outlived its bound: an owner stalled";
  EXPECT_GE(gens, 3u);  // the run did real work under concurrency
  EXPECT_GT(reads.load(), 1000u);
}

// Many keys: tables grow and old tables and blobs are reclaimed while readers run.
TEST(StoreStress, WideReadersNeverSeeTornMissingOrBackwardEntries) { run_stress(3000, 400); }

// Few keys rewritten as fast as the owners can: readers land inside writes all the time, so a
// broken seqlock shows up as a torn entry.
TEST(StoreStress, HotReadersNeverSeeTornMissingOrBackwardEntries) { run_stress(8, 1'000'000); }

}  // namespace
}  // namespace rumor
