// Concurrency stress (LevelDB's skiplist ConcurrentTest, adapted): owner threads merge
// generation-tagged entries while reader threads check, without any lock, that they never see
//   - a torn entry (a value, length and version that do not belong to one write),
//   - a version of a key that goes backward,
//   - a miss, or an older generation, for a key whose generation was published before the read.
// Tables grow, blobs are replaced and memory is reclaimed while readers run. The run is a count
// (so many generations, so many reads checked between them), not a time, so it does the same
// work on any machine; a deadline far above its length only turns a stall into a failure.
// Synchronisation is by atomics only, never by sleeping; a thread that fails stops the others.
// Run under TSan by `tools/dev test`.
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
// ThreadSanitizer runs this about ten times slower: it runs a fifth of the generations, so a
// case takes a few seconds there too.
#if defined(__SANITIZE_THREAD__) || defined(__has_feature)
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
constexpr std::uint64_t kGenerationsDivisor = 5;
#else
constexpr std::uint64_t kGenerationsDivisor = 1;
#endif
#else
constexpr std::uint64_t kGenerationsDivisor = 1;
#endif
// Not a run length: a bound that only a stalled or livelocked run reaches (a case takes a
// second or two, and a few under ThreadSanitizer).
constexpr std::uint64_t kRunNsMax = 120'000'000'000;
// Each reader's loop is bounded in count too; the deadline comes first at any plausible speed.
constexpr std::uint64_t kReadsPerReaderMax = 4'000'000'000;

std::string key_of(int i) { return "stress-key-" + std::to_string(i); }

// Generation g of key i: tombstones every fifth generation; value lengths cross the 80-byte
// inline limit so slots switch between inline and out-of-line, and key 0 holds a large value
// (64 KiB, what a chunked pull merges whole: docs/protocol.md "Large values") every third
// generation, so a reader that saw part of one would report a torn value.
bool is_tombstone(std::uint64_t g) { return g % 5 == 4; }
std::string value_of(int i, std::uint64_t g) {
  std::string v = std::to_string(i) + ":" + std::to_string(g) + ":";
  const std::size_t pad =
      (g % 3 == 0) ? (i == 0 ? 64u << 10 : 150) : (g % 3 == 1 ? 10 : 60);
  v.append(pad, static_cast<char>('a' + (i + g) % 26));
  return v;
}
Version version_of(std::uint64_t g, NodeId node) { return Version{hlc_pack(kBaseMs + g, 0), node}; }

// kGenerations generations of every key, written by two owners; before publishing generation
// g + 1 each owner waits until the readers have checked g * kReadsPerGeneration entries, so
// reads interleave with writes throughout, however the threads are scheduled.
void run_stress(const int kKeys, const std::uint64_t kGenerations,
                const std::uint64_t kReadsPerGeneration) {
  ManualTimeSource time(kBaseMs + kGenerations + 10);
  StoreConfig cfg;
  cfg.virtual_shards = 16;
  cfg.owners = 2;
  cfg.value_bytes_max = 1u << 20;
  auto store = std::move(Store::create(cfg, 1, time)).value();

  // Published generation per owner: every key of that owner holds at least this generation.
  std::atomic<std::uint64_t> published[2] = {0, 0};
  // Relaxed flags and counts: they end loops and gate progress; the data readers check is
  // ordered by `published` alone.
  std::atomic<bool> stop{false};
  std::atomic<bool> timed_out{false};
  std::atomic<bool> read_bound_hit{false};
  std::atomic<int> owners_running{2};
  std::atomic<std::uint64_t> reads{0};
  const std::uint64_t deadline = monotonic_ns() + kRunNsMax;

  std::vector<std::vector<int>> keys_of_owner(2);
  for (int i = 0; i < kKeys; ++i) {
    keys_of_owner[store->owner_of_shard(store->shard_of(key_of(i)))].push_back(i);
  }

  // Returns early on a failed ASSERT, on `stop`, or at the deadline; run_owner stops the rest.
  auto owner_fn = [&](std::uint32_t owner) {
    store->bind_owner(owner);
    std::vector<std::string> keys, values;
    for (std::uint64_t g = 1; g <= kGenerations; ++g) {
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
      // Bounded by the deadline (and by `stop`, when another thread failed or gave up).
      while (reads.load(std::memory_order_relaxed) < g * kReadsPerGeneration) {
        if (stop.load(std::memory_order_relaxed)) return;
        if (monotonic_ns() > deadline) {
          timed_out.store(true, std::memory_order_relaxed);
          return;
        }
        std::this_thread::yield();
      }
    }
  };
  auto run_owner = [&](std::uint32_t owner) {
    owner_fn(owner);
    // An owner that did not finish stops everyone now; otherwise the last one out stops the
    // readers.
    if (published[owner].load() != kGenerations || owners_running.fetch_sub(1) == 1) {
      stop.store(true, std::memory_order_relaxed);
    }
  };

  // Returns on `stop`, on a failed ASSERT, at the deadline or at its count bound.
  auto reader_fn = [&](int seed) {
    std::vector<std::uint64_t> last_gen(kKeys, 0);
    std::uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      if (n == kReadsPerReaderMax) {
        read_bound_hit.store(true, std::memory_order_relaxed);
        return;
      }
      if (n % 1024 == 0 && monotonic_ns() > deadline) {
        timed_out.store(true, std::memory_order_relaxed);
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
      if (!e) {
        ASSERT_EQ(pub, 0u) << "miss on " << k << " published at generation " << pub;
        reads.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const std::uint64_t g = hlc_physical_ms(e->version.hlc) - kBaseMs;
      ASSERT_GE(g, 1u);
      ASSERT_LE(g, kGenerations);
      ASSERT_EQ(e->version, version_of(g, owner + 1)) << "torn version for " << k;
      ASSERT_EQ(e->tombstone, is_tombstone(g)) << "torn flag for " << k;
      ASSERT_EQ(e->value, is_tombstone(g) ? std::string() : value_of(i, g)) << "torn value";
      ASSERT_GE(g, pub) << k << " older than its published generation";
      ASSERT_GE(g, last_gen[i]) << k << " went backward";
      last_gen[i] = g;
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  };
  auto run_reader = [&](int seed) {
    reader_fn(seed);
    // Normally `stop` is already set; after a failed ASSERT or a bound this stops the rest, so
    // a failure fails the test instead of leaving the others to spin.
    stop.store(true, std::memory_order_relaxed);
  };

  std::thread o0(run_owner, 0), o1(run_owner, 1);
  std::thread r0(run_reader, 0), r1(run_reader, 1);
  o0.join();
  o1.join();
  r0.join();
  r1.join();
  std::printf("generations: %llu and %llu of %llu, reads checked: %llu\n",
              static_cast<unsigned long long>(published[0].load()),
              static_cast<unsigned long long>(published[1].load()),
              static_cast<unsigned long long>(kGenerations),
              static_cast<unsigned long long>(reads.load()));
  EXPECT_FALSE(timed_out.load()) << "the run stalled: not done after " << kRunNsMax / 1'000'000'000
                                 << " s";
  EXPECT_FALSE(read_bound_hit.load()) << "a reader reached its count bound";
  // The whole run happened: every generation of every key, with reads checked in between.
  EXPECT_EQ(published[0].load(), kGenerations);
  EXPECT_EQ(published[1].load(), kGenerations);
  EXPECT_GE(reads.load(), kGenerations * kReadsPerGeneration);
}

// Many keys: tables grow and old tables and blobs are reclaimed while readers run.
TEST(StoreStress, WideReadersNeverSeeTornMissingOrBackwardEntries) {
  run_stress(3000, 1'000 / kGenerationsDivisor, 100);
}

// Few keys rewritten as fast as the owners can: readers land inside writes all the time, so a
// broken seqlock shows up as a torn entry.
TEST(StoreStress, HotReadersNeverSeeTornMissingOrBackwardEntries) {
  run_stress(8, 400'000 / kGenerationsDivisor, 2);
}

}  // namespace
}  // namespace rumor
