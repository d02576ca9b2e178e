// Broadcast queue benchmarks: rumor's BroadcastQueue (buckets by transmit count, slots, a flat
// map) against the std::set implementation it replaced (copied here as ReferenceQueue), same
// inputs, same binary. Messages are a node's mix: half membership news of 40-80 B, 40% small
// updates of 40-128 B, 10% large updates of 129-1,000 B.
//
//   gossip/broadcast/push/{rumor,baseline}       pushes over 2 x 16,384 subjects, so past the
//                                                warm-up each one replaces an older item
//   gossip/broadcast/push_full/{rumor,baseline}  the same into items_max = 4,096: most pushes
//                                                also drop an item
//   gossip/broadcast/fill/{rumor,baseline}       one 1,200-byte packet per iteration at limit 40
//                                                (1,000 nodes) from 4,096-8,192 queued items;
//                                                items/s counts the messages appended
//
// The caller's std::string for each message is built outside the timed region: gossip encodes
// into it before it pushes, on either implementation.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/gossip/broadcast.h"
#include "tests/gossip/reference_queue.h"
#include "engine/wire/wire.h"

namespace rumor {
namespace {

// ---- baseline: BroadcastQueue as of b840303 -------------------------------------------------

using reference::ReferenceQueue;

// ---- inputs ---------------------------------------------------------------------------------

constexpr std::size_t kBatch = 4096;  // pushes per timed batch; also the fill bench's refill
constexpr std::uint32_t kLimit = 40;  // 4 * ceil(log2(1,000 + 2))
constexpr std::size_t kPacketBytes = 1200;

struct Push {
  std::uint8_t kind;
  std::uint64_t subject;
  BroadcastQueue::Priority prio;
  std::string message;
};

// A batch of pushes; subjects drawn from [0, subjects) per kind.
void make_batch(std::mt19937_64& rng, std::uint64_t subjects, std::vector<Push>& out) {
  out.clear();
  for (std::size_t i = 0; i < kBatch; ++i) {
    Push p;
    const unsigned r = static_cast<unsigned>(rng() % 10);
    std::size_t bytes;
    if (r < 5) {
      p.kind = 0;
      p.prio = BroadcastQueue::kMembership;
      bytes = 40 + rng() % 41;
    } else if (r < 9) {
      p.kind = 1;
      p.prio = BroadcastQueue::kSmallUpdate;
      bytes = 40 + rng() % 89;
    } else {
      p.kind = 1;
      p.prio = BroadcastQueue::kLargeUpdate;
      bytes = 129 + rng() % 872;
    }
    p.subject = rng() % subjects;
    p.message.assign(bytes, static_cast<char>('a' + i % 26));
    out.push_back(std::move(p));
  }
}

template <typename Queue>
void push_all(Queue& q, std::vector<Push>& batch) {
  for (Push& p : batch) q.push(p.kind, p.subject, p.prio, std::move(p.message));
}

template <typename Queue>
void BM_Push(benchmark::State& state, std::size_t items_max) {
  constexpr std::uint64_t kSubjects = 16384;
  std::mt19937_64 rng(7);
  Queue q(items_max);
  std::vector<Push> batch;
  // Warm up to the steady state: every subject queued (or the queue full).
  for (int i = 0; i < 16; ++i) {
    make_batch(rng, kSubjects, batch);
    push_all(q, batch);
  }
  for (auto _ : state) {
    state.PauseTiming();
    make_batch(rng, kSubjects, batch);
    state.ResumeTiming();
    push_all(q, batch);
  }
  benchmark::DoNotOptimize(q.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["queued"] = static_cast<double>(q.size());
  state.counters["dropped"] = static_cast<double>(q.dropped());
}

template <typename Queue>
void BM_Fill(benchmark::State& state) {
  std::mt19937_64 rng(11);
  Queue q(65536);
  std::vector<Push> batch;
  for (int i = 0; i < 2; ++i) {
    make_batch(rng, std::uint64_t{1} << 40, batch);
    push_all(q, batch);
  }
  std::vector<std::byte> packet(kPacketBytes);
  std::uint64_t appended = 0;
  for (auto _ : state) {
    if (q.size() < kBatch) {
      state.PauseTiming();
      make_batch(rng, std::uint64_t{1} << 40, batch);
      push_all(q, batch);
      state.ResumeTiming();
    }
    wire::Writer w(packet);
    appended += q.fill(w, kLimit);
    benchmark::DoNotOptimize(packet.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(appended));
  state.counters["per_packet"] =
      benchmark::Counter(static_cast<double>(appended), benchmark::Counter::kAvgIterations);
}

void BM_PushRumor(benchmark::State& s) { BM_Push<BroadcastQueue>(s, 65536); }
void BM_PushBaseline(benchmark::State& s) { BM_Push<ReferenceQueue>(s, 65536); }
void BM_PushFullRumor(benchmark::State& s) { BM_Push<BroadcastQueue>(s, 4096); }
void BM_PushFullBaseline(benchmark::State& s) { BM_Push<ReferenceQueue>(s, 4096); }

BENCHMARK(BM_PushRumor)->Name("gossip/broadcast/push/rumor");
BENCHMARK(BM_PushBaseline)->Name("gossip/broadcast/push/baseline");
BENCHMARK(BM_PushFullRumor)->Name("gossip/broadcast/push_full/rumor");
BENCHMARK(BM_PushFullBaseline)->Name("gossip/broadcast/push_full/baseline");
BENCHMARK(BM_Fill<BroadcastQueue>)->Name("gossip/broadcast/fill/rumor");
BENCHMARK(BM_Fill<ReferenceQueue>)->Name("gossip/broadcast/fill/baseline");

}  // namespace
}  // namespace rumor
