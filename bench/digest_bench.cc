// Digest layer and reconciliation benchmarks, each next to its baseline:
//   digest/update/rumor    incremental Merkle update per changed entry (two entry hashes, one
//                          leaf delta, a dirty mark; a fold every 1,024 updates, as if a digest
//                          were read once per gossip round)
//   digest/update/rebuild  the naive baseline: rebuild the shard's tree from all its entries per
//                          changed entry (same 15,625-entry shard = 1M entries / 64 shards)
//   digest/update/store    Store::merge_batch with the tree hook, end to end (for reference);
//                          /no_riblt: the same store without rateless IBLT symbols
//   digest/bloom/insert, digest/bloom/query   split-block filter, 1M items at 16 bits each
//   digest/riblt/update    rateless IBLT prefix maintenance per changed entry (the old element
//                          out, the new one in, over a 1,024-symbol shard prefix; logged and
//                          folded in batches as in the store)
//   digest/riblt/decode/d  peeling d differences from a stream of difference symbols
//   digest/riblt/tail/D    the spread behind a stream's sizing, over many random differences of
//                          D elements: percentiles of the symbols decoding needs (per element),
//                          of the responder's estimate of D, and how often the stream a session
//                          gets (riblt_stream_symbols of the estimate) is short: the rate of
//                          third round trips
//   digest/sketch/update/C  BCH sketch (capacity C) maintenance per changed entry, batched as
//                          the prefix's log is; /portable without the carry-less multiply
//   digest/sketch/decode/D  decoding D differences from a sketch of capacity D + 1
//   reconcile/1000000/d    one anti-entropy exchange between two 1M-entry stores that differ in
//                          d entries, driven in lock-step rounds (one round = one round trip):
//                          the sums, then the Merkle walk with bloom filters
//   reconcile/riblt/1000000/d   the same exchange by rateless IBLT symbols after the sums
//   reconcile/auto/1000000/d    the same exchange as a node runs it: the responder picks
// Counters of reconcile/*: bytes (both directions, every datagram), meta_bytes_per_diff (bytes
// that are not applied entry payload, / d), round_trips, full_state_bytes (shipping every entry
// one way in 1,400-byte datagrams: the baseline).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/clock.h"
#include "digest/bloom.h"
#include "digest/hash.h"
#include "digest/merkle.h"
#include "digest/messages.h"
#include "digest/riblt.h"
#include "digest/sketch.h"
#include "engine/sync/reconcile.h"
#include "engine/sync/reconcile_detail.h"
#include "engine/store/store.h"

namespace rumor {
namespace {

using digest::MerkleTree;

// The bytes needed to ship every entry of `owner`'s shards one way in PUSH-style datagrams of
// datagram_bytes_max: the full-state baseline reconciliation is measured against.
std::uint64_t full_state_bytes(Store& store, std::uint32_t owner, const ReconcileConfig& config) {
  const std::size_t fixed = digest::kHeaderBytes + 1 + 3 + 2 + 2;  // header + one push record
  std::uint64_t total = 0;
  std::size_t cur = fixed;
  for (std::uint32_t s = 0; s < store.shard_count(); ++s) {
    if (store.owner_of_shard(s) != owner) continue;
    store.shard(s).for_each_in_hash_range(0, ~std::uint64_t{0}, [&](std::uint64_t,
                                                                     const EntryView& e) {
      const std::size_t sz =
          digest::entry_bytes(digest::EntryRef{e.key, e.value, e.version, e.tombstone});
      if (cur + sz > config.datagram_bytes_max) {
        total += cur;
        cur = fixed;
      }
      cur += sz;
    });
  }
  if (cur > fixed) total += cur;
  return total;
}

constexpr std::size_t kShardEntries = 15'625;  // 1,000,000 entries over 64 virtual shards

struct ShardModel {
  std::vector<std::uint64_t> kh;
  std::vector<Version> v;
  explicit ShardModel(std::size_t n) : kh(n), v(n) {
    std::mt19937_64 rng(1);
    for (std::size_t i = 0; i < n; ++i) {
      kh[i] = rng() | 1;
      v[i] = Version{hlc_pack(1'700'000'000'000 + i, 0), 3};
    }
  }
};

void BM_UpdateRumor(benchmark::State& state) {
  ShardModel m(kShardEntries);
  MerkleTree t(MerkleTree::leaf_bits_for(kShardEntries));
  for (std::size_t i = 0; i < kShardEntries; ++i) {
    t.add(m.kh[i], digest::entry_hash(m.kh[i], m.v[i], false));
  }
  t.fold();
  std::uint64_t x = 88172645463325252ull, n = 0;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::size_t i = x % kShardEntries;
    const Version nv{m.v[i].hlc + 1, 4};
    t.replace(m.kh[i], digest::entry_hash(m.kh[i], m.v[i], false),
              digest::entry_hash(m.kh[i], nv, false));
    m.v[i] = nv;
    if ((++n & 1023) == 0) t.fold();
  }
  t.fold();
  benchmark::DoNotOptimize(t.root_hash());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_UpdateRumor)->Name("digest/update/rumor");

void BM_UpdateRebuild(benchmark::State& state) {
  ShardModel m(kShardEntries);
  MerkleTree t(MerkleTree::leaf_bits_for(kShardEntries));
  std::uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::size_t i = x % kShardEntries;
    m.v[i] = Version{m.v[i].hlc + 1, 4};
    // The naive way: hash every entry of the shard again and rebuild every level.
    t.reset(MerkleTree::leaf_bits_for(kShardEntries));
    for (std::size_t j = 0; j < kShardEntries; ++j) {
      t.insert(m.kh[j], digest::entry_hash(m.kh[j], m.v[j], false));
    }
    t.fold_all();
    benchmark::DoNotOptimize(t.root_hash());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_UpdateRebuild)->Name("digest/update/rebuild");

void update_store(benchmark::State& state, std::uint32_t riblt_prefix_symbols) {
  ManualTimeSource time(1'700'000'100'000);
  StoreConfig cfg;
  cfg.riblt_prefix_symbols = riblt_prefix_symbols;
  auto store = std::move(Store::create(cfg, 1, time).value());
  constexpr std::size_t kKeys = 1'000'000;
  std::vector<std::string> keys(kKeys);
  for (std::size_t i = 0; i < kKeys; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "key-%012zu", i);
    keys[i] = buf;
  }
  const std::string value(64, 'v');
  std::vector<EntryView> batch(256);
  std::vector<MergeOutcome> out(256);
  std::uint64_t tick = 1, x = 88172645463325252ull;
  auto fill = [&]() {
    for (auto& e : batch) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      e = EntryView{keys[x % kKeys], value, Version{hlc_pack(1'700'000'000'000, 0) + tick++, 5},
                    false};
    }
  };
  for (std::size_t i = 0; i < 4 * kKeys / batch.size(); ++i) {  // warm: every key present
    fill();
    store->merge_batch(0, batch, out);
  }
  for (auto _ : state) {
    state.PauseTiming();
    fill();
    state.ResumeTiming();
    store->merge_batch(0, batch, out);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch.size()));
}
void BM_UpdateStore(benchmark::State& state) { update_store(state, StoreConfig{}.riblt_prefix_symbols); }
BENCHMARK(BM_UpdateStore)->Name("digest/update/store");
// The same without rateless IBLT symbols: what keeping them costs the merge path.
void BM_UpdateStoreNoRiblt(benchmark::State& state) { update_store(state, 0); }
BENCHMARK(BM_UpdateStoreNoRiblt)->Name("digest/update/store/no_riblt");

constexpr std::size_t kBloomItems = 1 << 20;

void BM_BloomInsert(benchmark::State& state) {
  digest::BloomFilter f(digest::BloomFilter::blocks_for(kBloomItems, 16, ~0u), 8, 7);
  std::uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f.insert(x);
  }
  benchmark::DoNotOptimize(f.may_contain(x));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_BloomInsert)->Name("digest/bloom/insert");

void BM_BloomQuery(benchmark::State& state) {
  digest::BloomFilter f(digest::BloomFilter::blocks_for(kBloomItems, 16, ~0u), 8, 7);
  std::mt19937_64 rng(3);
  std::vector<std::uint64_t> inserted(kBloomItems);
  for (auto& v : inserted) {
    v = rng();
    f.insert(v);
  }
  // Queries alternate between an inserted item and a random one (almost surely absent).
  std::uint64_t x = 88172645463325252ull, n = 0, absent = 0, false_pos = 0, found = 0;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const bool probe_present = (++n & 1) != 0;
    const bool r = f.may_contain(probe_present ? inserted[x % kBloomItems] : x);
    found += r;
    if (!probe_present) {
      ++absent;
      false_pos += r;
    }
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["fpr"] = absent ? static_cast<double>(false_pos) / static_cast<double>(absent) : 0;
}
BENCHMARK(BM_BloomQuery)->Name("digest/bloom/query");

constexpr std::uint64_t kRibltBenchKey = 0x5eed'5eed'5eed'5eedull;

void BM_RibltUpdate(benchmark::State& state) {
  ShardModel m(kShardEntries);
  digest::RibltPrefix p(1024, kRibltBenchKey);
  auto elem = [&](std::size_t i, const Version& v) {
    return digest::riblt_element(m.kh[i], v.hlc, digest::entry_hash(m.kh[i], v, false),
                                 kRibltBenchKey);
  };
  for (std::size_t i = 0; i < kShardEntries; ++i) p.add(elem(i, m.v[i]));
  p.fold();
  std::uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::size_t i = x % kShardEntries;
    const Version nv{m.v[i].hlc + (1u << 24), 4};
    p.replace(elem(i, m.v[i]), elem(i, nv));
    m.v[i] = nv;
  }
  benchmark::DoNotOptimize(p.symbols()[0]);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_RibltUpdate)->Name("digest/riblt/update");

void BM_RibltDecode(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  std::mt19937_64 rng(5);
  // The difference symbols of d elements, half on each side: more than any decoding needs.
  std::vector<digest::RibltSymbol> diff(3 * d + 64);
  for (std::size_t i = 0; i < d; ++i) {
    const std::uint64_t kh = rng() | 1;
    const Version v{rng() >> 8, rng()};
    digest::riblt_accumulate(
        digest::riblt_element(kh, v.hlc, digest::entry_hash(kh, v, false), kRibltBenchKey),
        (i & 1) ? 1 : -1, kRibltBenchKey, 0, diff);
  }
  double symbols = 0;
  for (auto _ : state) {
    digest::RibltDecoder dec(kRibltBenchKey, {});
    for (std::size_t i = 0; i < diff.size() && !dec.decoded(); ++i) (void)dec.add(diff[i]);
    if (dec.elements().size() != d) state.SkipWithError("not decoded");
    symbols += static_cast<double>(dec.received());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * d));
  state.counters["symbols_per_diff"] =
      symbols / static_cast<double>(state.iterations()) / static_cast<double>(d);
}
BENCHMARK(BM_RibltDecode)->Name("digest/riblt/decode")->Arg(100)->Arg(10000)
    ->Unit(benchmark::kMillisecond);

void BM_RibltTail(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const std::uint32_t prefix = 1024;  // the store's default riblt_prefix_symbols
  std::mt19937_64 rng(17 + d);
  std::vector<double> need, est;
  std::uint64_t short_streams = 0, failed = 0;
  double streamed = 0;
  // A BCH sketch sized from the same estimate (digest/sketch.h; candidate rules, not used by
  // sessions yet): capacity c = ceil(2 D^ + 6) (rule a) or ceil(1.6 D^ + 8) (rule b), decoding
  // at most c - 1 elements (one syndrome kept to check), eligible while c <= 64. Short:
  // D > c - 1, which would cost a third round trip.
  std::uint64_t sketch_eligible[2] = {0, 0}, sketch_short[2] = {0, 0};
  double sketch_bytes[2] = {0, 0};
  // Symbols past the last estimate index and well past what decoding ever needed here.
  std::vector<digest::RibltSymbol> diff(std::max<std::size_t>(prefix, 12 * d));
  const auto idx = digest::riblt_estimate_indices();
  std::vector<std::int8_t> residues(idx.size());
  for (auto _ : state) {
    state.PauseTiming();
    std::fill(diff.begin(), diff.end(), digest::RibltSymbol{});
    std::int64_t delta0 = 0;
    for (std::size_t i = 0; i < d; ++i) {
      const std::uint64_t kh = rng() | 1;
      const Version v{rng() >> 8, rng()};
      const std::int32_t sign = (i & 1) ? 1 : -1;
      delta0 += sign;
      digest::riblt_accumulate(
          digest::riblt_element(kh, v.hlc, digest::entry_hash(kh, v, false), kRibltBenchKey),
          sign, kRibltBenchKey, 0, diff);
    }
    for (std::size_t j = 0; j < idx.size(); ++j) {
      residues[j] = static_cast<std::int8_t>(static_cast<std::uint8_t>(diff[idx[j]].count));
    }
    state.ResumeTiming();
    digest::RibltDecoder dec(kRibltBenchKey, {});
    for (std::size_t i = 0; i < diff.size() && !dec.decoded() && !dec.failed(); ++i) {
      (void)dec.add(diff[i]);
    }
    if (!dec.decoded()) {
      // A false peel (a checksum collision) ends a decoding with an error; a session then
      // walks. Counted, not sampled.
      ++failed;
      continue;
    }
    const double e = digest::riblt_estimate(residues, delta0, prefix);
    const std::uint64_t m = reconcile_detail::riblt_stream_symbols(e);
    for (int rule = 0; rule < 2; ++rule) {
      const double c = rule == 0 ? std::ceil(2.0 * e + 6.0) : std::ceil(1.6 * e + 8.0);
      if (c > digest::kSketchCapacityMax) continue;
      ++sketch_eligible[rule];
      sketch_bytes[rule] += c * static_cast<double>(digest::kSketchSyndromeBytes);
      sketch_short[rule] += static_cast<double>(d) > c - 1;
    }
    need.push_back(static_cast<double>(dec.received()) / static_cast<double>(d));
    est.push_back(e / static_cast<double>(d));
    streamed += static_cast<double>(m);
    short_streams += dec.received() > m;
  }
  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
  };
  const double it = static_cast<double>(state.iterations());
  state.counters["need_p50"] = pct(need, 0.5);
  state.counters["need_p90"] = pct(need, 0.9);
  state.counters["need_p99"] = pct(need, 0.99);
  state.counters["need_p999"] = pct(need, 0.999);
  state.counters["est_p001"] = pct(est, 0.001);
  state.counters["est_p01"] = pct(est, 0.01);
  state.counters["est_p10"] = pct(est, 0.1);
  state.counters["est_p90"] = pct(est, 0.9);
  state.counters["streamed_per_elem"] =
      streamed / static_cast<double>(need.size()) / static_cast<double>(d);
  state.counters["short_rate"] = static_cast<double>(short_streams) / it;
  state.counters["failed"] = static_cast<double>(failed);
  for (int rule = 0; rule < 2; ++rule) {
    const std::string n = rule == 0 ? "sketch_a_" : "sketch_b_";
    const auto el = static_cast<double>(sketch_eligible[rule]);
    state.counters[n + "eligible"] = el / it;
    state.counters[n + "short_rate"] = el > 0 ? static_cast<double>(sketch_short[rule]) / el : 0;
    state.counters[n + "bytes_per_elem"] =
        el > 0 ? sketch_bytes[rule] / el / static_cast<double>(d) : 0;
  }
}
// Element counts of reconcile/riblt/1000000/{10,100,1000} (1.5 elements per difference: a key
// one side lacks is one element, a version difference two).
BENCHMARK(BM_RibltTail)->Name("digest/riblt/tail")->Arg(15)->Iterations(20000);
BENCHMARK(BM_RibltTail)->Name("digest/riblt/tail")->Arg(150)->Iterations(4000);
BENCHMARK(BM_RibltTail)->Name("digest/riblt/tail")->Arg(1500)->Iterations(400);

// ---- digest/sketch: BCH set sketches (PinSketch over GF(2^48)) ----

// Maintenance per changed entry, as a shard would keep a capacity-C sketch next to its symbol
// prefix: the old element out and the new one in (both a toggle), logged and applied in
// batches of 2,048 as the prefix's log is. /portable: without the carry-less multiply.
void sketch_update(benchmark::State& state, bool portable) {
  const auto c = static_cast<std::uint32_t>(state.range(0));
  ShardModel m(kShardEntries);
  auto elem = [&](std::size_t i, const Version& v) {
    return digest::riblt_element(m.kh[i], v.hlc, digest::entry_hash(m.kh[i], v, false),
                                 kRibltBenchKey).data;
  };
  digest::Sketch sk(c);
  std::vector<std::uint64_t> log;
  log.reserve(digest::RibltPrefix::kPendingMax);
  auto flush = [&] {
    if (portable) {
      std::vector<std::uint64_t> s(sk.syndromes().begin(), sk.syndromes().end());
      digest::sketch_toggle_batch_portable(s, log);
      sk.clear();
      sk.merge(s);
    } else {
      sk.toggle_batch(log);
    }
    log.clear();
  };
  std::uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::size_t i = x % kShardEntries;
    const Version nv{m.v[i].hlc + (1u << 24), 4};
    log.push_back(elem(i, m.v[i]));
    log.push_back(elem(i, nv));
    m.v[i] = nv;
    if (log.size() >= digest::RibltPrefix::kPendingMax) flush();
  }
  flush();
  benchmark::DoNotOptimize(sk.syndromes()[0]);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["clmul"] = digest::gf48::clmul_available() && !portable ? 1 : 0;
}
void BM_SketchUpdate(benchmark::State& state) { sketch_update(state, false); }
void BM_SketchUpdatePortable(benchmark::State& state) { sketch_update(state, true); }
BENCHMARK(BM_SketchUpdate)->Name("digest/sketch/update")->Arg(16)->Arg(32)->Arg(64);
BENCHMARK(BM_SketchUpdatePortable)->Name("digest/sketch/update/portable")->Arg(32);

// Decoding D differences (half on each side) from a sketch of capacity D + 1: one syndrome
// kept to check the answer, as a session decodes.
void BM_SketchDecode(benchmark::State& state) {
  const auto d = static_cast<std::uint32_t>(state.range(0));
  std::mt19937_64 rng(11 + d);
  std::vector<std::uint64_t> syn;
  std::vector<std::uint64_t> out;
  std::uint64_t decoded = 0;
  for (auto _ : state) {
    state.PauseTiming();
    digest::Sketch sk(d + 1);
    for (std::uint32_t i = 0; i < d; ++i) sk.toggle((rng() & digest::kSketchElementMask) | 1);
    syn.assign(sk.syndromes().begin(), sk.syndromes().end());
    state.ResumeTiming();
    decoded += digest::sketch_decode(syn, d, out) == digest::SketchDecodeResult::kDecoded &&
               out.size() == d;
  }
  if (decoded != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("not decoded");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * d));
}
BENCHMARK(BM_SketchDecode)->Name("digest/sketch/decode")->Arg(1)->Arg(10)->Arg(30)->Arg(63)
    ->Unit(benchmark::kMicrosecond);

// ---- reconcile/1000000/d ----

constexpr std::uint64_t kNowMs = 1'700'000'500'000;

struct Fixture {
  ManualTimeSource time{kNowMs};
  std::unique_ptr<Store> a, b;
  ReconcileConfig cfg;
  std::uint64_t full_state = 0;
  std::uint64_t fresh = 0;  // counter for new keys and newer versions across iterations
  std::vector<std::uint8_t> buf;

  Fixture() {
    StoreConfig sc;  // 64 virtual shards
    a = std::move(Store::create(sc, 1, time).value());
    b = std::move(Store::create(sc, 2, time).value());
    cfg = ReconcileConfig::for_store(sc);
    buf.resize(cfg.datagram_bytes_max);
    const std::string value(64, 'v');
    std::vector<std::string> keys(1024);
    std::vector<EntryView> batch(1024);
    std::vector<MergeOutcome> out(1024);
    for (std::size_t base = 0; base < 1'000'000; base += batch.size()) {
      for (std::size_t j = 0; j < batch.size(); ++j) {
        char k[32];
        std::snprintf(k, sizeof k, "key-%012zu", base + j);
        keys[j] = k;
        batch[j] = EntryView{keys[j], value, Version{hlc_pack(kNowMs - 400'000, base + j), 3},
                             false};
      }
      a->merge_batch(0, batch, out);
      b->merge_batch(0, batch, out);
    }
    full_state = full_state_bytes(*a, 0, cfg);
  }

  // d differences of four kinds in turn: a key only a holds, a key only b holds, a newer value
  // on a, a newer delete on b.
  void diverge(std::size_t d) {
    const std::string value(64, 'w');
    for (std::size_t j = 0; j < d; ++j, ++fresh) {
      const Version v{hlc_pack(kNowMs - 300'000 + fresh / 65536, fresh % 65536), 4};
      char k[32];
      switch (j % 4) {
        case 0:
          std::snprintf(k, sizeof k, "new-a-%010zu", static_cast<std::size_t>(fresh));
          (void)a->merge(EntryView{k, value, v, false});
          break;
        case 1:
          std::snprintf(k, sizeof k, "new-b-%010zu", static_cast<std::size_t>(fresh));
          (void)b->merge(EntryView{k, value, v, false});
          break;
        case 2:
          std::snprintf(k, sizeof k, "key-%012zu", static_cast<std::size_t>(fresh % 1'000'000));
          (void)a->merge(EntryView{k, value, v, false});
          break;
        case 3:
          std::snprintf(k, sizeof k, "key-%012zu",
                        static_cast<std::size_t>((fresh * 7919) % 1'000'000));
          (void)b->merge(EntryView{k, {}, v, true});
          break;
      }
    }
  }

  bool equal_roots() {
    for (std::uint32_t s = 0; s < a->shard_count(); ++s) {
      const digest::MerkleTree* ta = a->shard(s).merkle();
      const digest::MerkleTree* tb = b->shard(s).merkle();
      if ((ta ? ta->root_hash() : 0) != (tb ? tb->root_hash() : 0)) return false;
    }
    return true;
  }

  struct Cost {
    std::uint64_t bytes = 0, payload = 0, rounds = 0, sessions = 0;
  };
  // Sessions until the roots match (a second one only after a bloom or hash false positive).
  Cost reconcile(std::uint64_t seed) {
    Cost c;
    do {
      ++c.sessions;
      ReconcileSession s(*a, 0, cfg, static_cast<std::uint32_t>(seed * 0x9e3779b97f4a7c15ull >> 32));
      ReconcileResponder r(*b, 0, cfg);
      while (!s.done()) {
        ++c.rounds;
        std::vector<std::vector<std::uint8_t>> responses;
        while (std::size_t n = s.next_datagram(buf)) {
          (void)r.respond(std::span(buf.data(), n), [&](std::span<const std::uint8_t> d) {
            responses.emplace_back(d.begin(), d.end());
          });
        }
        for (auto& d : responses) (void)s.on_datagram(d);
        if (s.in_flight()) s.on_timeout();  // lossless: never, but keep the driver honest
      }
      c.bytes += s.stats().bytes_sent + r.stats().bytes_sent;
      c.payload += s.stats().entry_bytes_applied + r.stats().entry_bytes_applied;
      ++seed;
    } while (!equal_roots() && c.sessions < 8);
    return c;
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture();  // built once, shared by every reconcile benchmark
  return *f;
}

void reconcile(benchmark::State& state, ReconcileConfig::Method method) {
  Fixture& f = fixture();
  f.cfg.method = method;
  const auto d = static_cast<std::size_t>(state.range(1));
  std::uint64_t seed = 1;
  double bytes = 0, meta = 0, rounds = 0, sessions = 0;
  for (auto _ : state) {
    state.PauseTiming();
    f.diverge(d);
    state.ResumeTiming();
    const Fixture::Cost c = f.reconcile(seed++);
    bytes += static_cast<double>(c.bytes);
    meta += static_cast<double>(c.bytes - c.payload);
    rounds += static_cast<double>(c.rounds);
    sessions += static_cast<double>(c.sessions);
  }
  const double it = static_cast<double>(state.iterations());
  state.counters["bytes"] = bytes / it;
  state.counters["meta_bytes_per_diff"] = meta / it / static_cast<double>(d);
  state.counters["round_trips"] = rounds / it;
  state.counters["sessions"] = sessions / it;
  state.counters["full_state_bytes"] = static_cast<double>(f.full_state);
}

// The Merkle walk with bloom filters (after the sums, which settle d = 1).
void BM_Reconcile(benchmark::State& state) { reconcile(state, ReconcileConfig::Method::kMerkle); }
// Rateless IBLT symbols (after the sums, which settle d = 1), whatever the estimate.
void BM_ReconcileRiblt(benchmark::State& state) {
  reconcile(state, ReconcileConfig::Method::kRiblt);
}
// What a node does: the responder picks by its estimate of d.
void BM_ReconcileAuto(benchmark::State& state) { reconcile(state, ReconcileConfig::Method::kAuto); }
BENCHMARK(BM_ReconcileRiblt)
    ->Name("reconcile/riblt")
    ->Args({1'000'000, 1})
    ->Args({1'000'000, 10})
    ->Args({1'000'000, 100})
    ->Args({1'000'000, 1000})
    ->Args({1'000'000, 10000})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReconcileAuto)
    ->Name("reconcile/auto")
    ->Args({1'000'000, 1})
    ->Args({1'000'000, 10})
    ->Args({1'000'000, 100})
    ->Args({1'000'000, 1000})
    ->Args({1'000'000, 10000})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Reconcile)
    ->Name("reconcile")
    ->Args({1'000'000, 1})
    ->Args({1'000'000, 10})
    ->Args({1'000'000, 100})
    ->Args({1'000'000, 1000})
    ->Args({1'000'000, 10000})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rumor
