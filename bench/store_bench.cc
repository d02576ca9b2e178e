// Store benchmarks: rumor's sharded store against the obvious baseline, a
// std::unordered_map<std::string, Entry> behind a std::mutex, with the same LWW rule, the same
// checks and the same inputs, in the same binary. 16-byte keys, 64-byte values, 1,000,000 keys.
// Both sides take entries in batches of 13, one 1,200-byte datagram's worth; the baseline locks
// once per batch, not per entry.
//
//   merge/update/{rumor,baseline}  newer versions of existing keys (rumor's Merkle trees sized
//                                  to the million entries first, as a syncing node has them;
//                                  folds happen at sync time and are measured in digest/*)
//   merge/insert/{rumor,baseline}  new keys into an empty store (growth included)
//   get/{rumor,baseline}           lookups of present keys by one reader thread while an owner
//                                  thread merges updates at full speed
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "engine/store/store.h"

namespace rumor {
namespace {

constexpr std::size_t kKeys = 1'000'000;
constexpr std::size_t kKeyBytes = 16;
constexpr std::size_t kValueBytes = 64;
constexpr std::size_t kBatch = 13;
constexpr std::uint64_t kBaseMs = 1'700'000'000'000;
constexpr std::uint64_t kWriterRunNsMax = 120'000'000'000;  // a writer thread's hard stop

// Keys and values, generated once: keys in random order, so consecutive merges hit random
// slots as datagrams from many peers would.
struct Data {
  std::vector<char> keys = std::vector<char>(kKeys * kKeyBytes);
  std::vector<char> values = std::vector<char>(kKeys * kValueBytes);
  Data() {
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < kKeys; ++i) {
      char k[kKeyBytes + 1];
      std::snprintf(k, sizeof k, "%016llx", static_cast<unsigned long long>(rng()));
      std::memcpy(&keys[i * kKeyBytes], k, kKeyBytes);
      for (std::size_t j = 0; j < kValueBytes; ++j) {
        values[i * kValueBytes + j] = static_cast<char>('a' + (rng() % 26));
      }
    }
  }
  std::string_view key(std::size_t i) const { return {&keys[i * kKeyBytes], kKeyBytes}; }
  std::string_view value(std::size_t i) const { return {&values[i * kValueBytes], kValueBytes}; }
};

const Data& data() {
  static const Data d;
  return d;
}

// Versions for pass p: every key gets a newer version each pass.
Version version_for(std::uint64_t pass, std::size_t i) {
  return Version{hlc_pack(kBaseMs + pass, 0), 2 + (i & 7)};
}

// ---- baseline -------------------------------------------------------------------------------

class BaselineStore {
 public:
  struct Entry {
    std::string value;
    Version version;
    bool tombstone = false;
  };
  explicit BaselineStore(TimeSource& t) : time_(t) {}

  void merge_batch(std::span<const EntryView> in, std::span<MergeOutcome> out) {
    const std::uint64_t horizon = time_.now_ms() + max_clock_skew_ms_;
    std::lock_guard<std::mutex> lock(mu_);
    for (std::size_t j = 0; j < in.size(); ++j) {
      const EntryView& e = in[j];
      if (e.key.empty() || e.key.size() > key_bytes_max_ || e.value.size() > value_bytes_max_ ||
          e.version.physical_ms() > horizon) {
        out[j] = MergeOutcome::kRefused;
        continue;
      }
      auto [it, inserted] = map_.try_emplace(std::string(e.key));
      if (!inserted && e.version <= it->second.version) {
        out[j] = MergeOutcome::kStale;
        continue;
      }
      it->second.value.assign(e.value);
      it->second.version = e.version;
      it->second.tombstone = e.tombstone;
      out[j] = MergeOutcome::kApplied;
    }
  }

  void settle() {}
  bool get(std::string_view key, std::string* value) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(std::string(key));
    if (it == map_.end() || it->second.tombstone) return false;
    value->assign(it->second.value);
    return true;
  }

 private:
  TimeSource& time_;
  std::uint64_t max_clock_skew_ms_ = 60'000;
  std::size_t key_bytes_max_ = 256, value_bytes_max_ = 1024;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
};

// ---- rumor adapter --------------------------------------------------------------------------

struct RumorSide {
  explicit RumorSide(TimeSource& t) {
    StoreConfig cfg;  // defaults: 64 virtual shards, one owner
    store = std::move(Store::create(cfg, 1, t)).value();
  }
  void merge_batch(std::span<const EntryView> in, std::span<MergeOutcome> out) {
    store->merge_batch(0, in, out);
  }
  bool get(std::string_view key, std::string* value) { return store->get(key, value); }
  // Sizes every shard's Merkle tree to its entries, as a node's first sync does (merkle()
  // resizes on the digest read path only). Without it the trees stay one leaf deep after the
  // fill, and every write's leaf update and dirty mark hit one hot node: cheaper than any
  // running node's merge path.
  void settle() {
    for (std::uint32_t s = 0; s < store->shard_count(); ++s) (void)store->shard(s).merkle();
  }
  std::unique_ptr<Store> store;
};

// Merges keys [from, from + n) at pass p, in batches.
template <typename Side>
void merge_range(Side& side, std::uint64_t pass, std::size_t from, std::size_t n) {
  const Data& d = data();
  EntryView batch[kBatch];
  MergeOutcome out[kBatch];
  for (std::size_t at = 0; at < n; at += kBatch) {
    const std::size_t m = std::min(kBatch, n - at);
    for (std::size_t j = 0; j < m; ++j) {
      const std::size_t i = (from + at + j) % kKeys;
      batch[j] = EntryView{d.key(i), d.value(i), version_for(pass, i), false};
    }
    side.merge_batch(std::span<const EntryView>(batch, m), std::span<MergeOutcome>(out, m));
  }
}

ManualTimeSource& bench_time() {
  static ManualTimeSource t(kBaseMs + 1'000'000'000);  // far enough ahead for every pass
  return t;
}

template <typename Side>
void BM_MergeUpdate(benchmark::State& state) {
  // One store per side for the whole process: filling 1M keys is setup, not the measurement.
  static Side* side = [] {
    auto* s = new Side(bench_time());
    merge_range(*s, 0, 0, kKeys);
    s->settle();
    return s;
  }();
  static std::uint64_t pass = 1;
  static std::size_t pos = 0;
  const Data& d = data();
  EntryView batch[kBatch];
  MergeOutcome out[kBatch];
  std::uint64_t applied = 0;
  for (auto _ : state) {
    for (std::size_t j = 0; j < kBatch; ++j) {
      const std::size_t i = pos + j;
      batch[j] = EntryView{d.key(i), d.value(i), version_for(pass, i), false};
    }
    side->merge_batch(batch, out);
    for (auto o : out) applied += (o == MergeOutcome::kApplied);
    pos += kBatch;
    if (pos + kBatch > kKeys) {
      pos = 0;
      ++pass;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  // Every merge in this benchmark carries a newer version: all must apply.
  if (applied != static_cast<std::uint64_t>(state.iterations()) * kBatch) state.SkipWithError("a merge did not apply");
}

template <typename Side>
void BM_MergeInsert(benchmark::State& state) {
  std::unique_ptr<Side> side = std::make_unique<Side>(bench_time());
  std::size_t pos = 0;
  const Data& d = data();
  EntryView batch[kBatch];
  MergeOutcome out[kBatch];
  std::uint64_t applied = 0;
  for (auto _ : state) {
    if (pos + kBatch > kKeys) {
      state.PauseTiming();
      side = std::make_unique<Side>(bench_time());
      pos = 0;
      state.ResumeTiming();
    }
    for (std::size_t j = 0; j < kBatch; ++j) {
      const std::size_t i = pos + j;
      batch[j] = EntryView{d.key(i), d.value(i), version_for(0, i), false};
    }
    side->merge_batch(batch, out);
    for (auto o : out) applied += (o == MergeOutcome::kApplied);
    pos += kBatch;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  if (applied != static_cast<std::uint64_t>(state.iterations()) * kBatch) state.SkipWithError("an insert did not apply");
}

// One reader (the benchmark thread) and one owner thread merging updates at full speed.
template <typename Side>
void BM_Get(benchmark::State& state) {
  auto side = std::make_unique<Side>(bench_time());
  merge_range(*side, 0, 0, kKeys);
  side->settle();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> writer_merges{0};
  std::thread writer([&] {
    if constexpr (std::is_same_v<Side, RumorSide>) side->store->bind_owner(0);
    const std::uint64_t deadline = monotonic_ns() + kWriterRunNsMax;
    std::uint64_t pass = 1, merges = 0;
    std::size_t pos = 0;
    while (!stop.load(std::memory_order_relaxed) && monotonic_ns() < deadline) {
      for (int r = 0; r < 64; ++r) {
        merge_range(*side, pass, pos, kBatch);
        pos += kBatch;
        if (pos + kBatch > kKeys) {
          pos = 0;
          ++pass;
        }
        merges += kBatch;
      }
      if constexpr (std::is_same_v<Side, RumorSide>) side->store->collect_garbage(0);
    }
    writer_merges.store(merges, std::memory_order_relaxed);
  });

  const Data& d = data();
  std::string value;
  value.reserve(kValueBytes);
  std::uint64_t x = 0x2545f4914f6cdd1dull, found = 0;
  for (auto _ : state) {
    for (int j = 0; j < 16; ++j) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      found += side->get(d.key(x % kKeys), &value);
    }
  }
  stop.store(true, std::memory_order_relaxed);
  writer.join();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 16));
  state.counters["writer_merges_per_s"] = benchmark::Counter(
      static_cast<double>(writer_merges.load()), benchmark::Counter::kIsRate);
  if (found != static_cast<std::uint64_t>(state.iterations()) * 16) state.SkipWithError("a present key was not found");
}

BENCHMARK(BM_MergeUpdate<RumorSide>)->Name("merge/update/rumor");
BENCHMARK(BM_MergeUpdate<BaselineStore>)->Name("merge/update/baseline");
BENCHMARK(BM_MergeInsert<RumorSide>)->Name("merge/insert/rumor");
BENCHMARK(BM_MergeInsert<BaselineStore>)->Name("merge/insert/baseline");
BENCHMARK(BM_Get<RumorSide>)->Name("get/rumor")->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Get<BaselineStore>)->Name("get/baseline")->UseRealTime()->MinTime(1.0);

}  // namespace
}  // namespace rumor
