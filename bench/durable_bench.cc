// What durability costs a write (docs/store.md "Durability"): acknowledged writes per second
// through a started single-core Node's write path (Node::set on its driver thread: HLC, LWW
// merge, Merkle leaf and symbols, change feed, then rumor mongering at each tick), with
//
//   store/memory/write          no data directory: acknowledged when applied (the baseline);
//   store/durable/write/batch   a Durability with sync = batch (100 ms): acknowledged when
//                               applied, and the iteration lasts until the persister has synced
//                               the last write, so the disk keeps up or the figure says it;
//   (both: 1M writes into a fresh node per iteration, so they compare like with like)
//   store/durable/write/always  sync = always, 64 concurrent writers: 64 writes in flight, each
//                               acknowledged only once a synced commit holds it (group commit),
//                               and a writer's next write waits for its acknowledgement.
//
// Writers are slots on the driver thread, as the agent's admin writes are (its reactor applies
// them; the answer waits for the ticket). 16-byte keys over a 1M key space (inserts, then
// updates), 64-byte values; the data directory lives under $TMPDIR (default /tmp) and is removed
// after each benchmark. items_per_second = acknowledged writes per second.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "rumor/driver.h"
#include "rumor/durable.h"
#include "rumor/node.h"
#include "tests/support/discard_sink.h"

namespace rumor {
namespace {

constexpr std::size_t kKeySpace = 1u << 20;
constexpr std::size_t kWriters = 64;

std::string temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/rumor-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

struct Rig {
  SystemTimeSource clock;
  testing::DiscardSink sink;
  std::unique_ptr<Node> node;
  std::unique_ptr<Durability> durability;
  std::string dir;
  std::vector<std::string> keys;
  std::string value = std::string(64, 'v');

  bool open(benchmark::State& state, std::optional<SyncMode> mode) {
    NodeConfig cfg = NodeConfig::local();
    cfg.name = "bench";
    cfg.advertise = *Address::parse("127.0.0.1:1");
    auto n = Node::create(cfg, clock);
    if (!n) {
      state.SkipWithError(n.status().to_string().c_str());
      return false;
    }
    node = std::move(n.value());
    if (mode) {
      dir = temp_dir();
      DurableConfig dc;
      dc.dir = dir + "/data";
      dc.sync = *mode;
      auto d = Durability::open(dc);
      if (!d) {
        state.SkipWithError(d.status().to_string().c_str());
        return false;
      }
      durability = std::move(d.value());
      if (Status s = durability->restore(*node, clock); !s) {
        state.SkipWithError(s.to_string().c_str());
        return false;
      }
      if (Status s = durability->start(*node); !s) {
        state.SkipWithError(s.to_string().c_str());
        return false;
      }
    }
    NodeDriver::of(*node).start(sink);
    keys.reserve(kKeySpace);
    for (std::size_t i = 0; i < kKeySpace; ++i) {
      char k[17];
      std::snprintf(k, sizeof k, "key-%012zu", i * 0x9e3779b1 % kKeySpace);
      keys.emplace_back(k, 16);
    }
    return true;
  }

  ~Rig() {
    if (durability) durability->stop();
    durability.reset();
    node.reset();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }

  // One write on the driver thread; its ticket (0 without a data directory).
  std::uint64_t write(std::size_t i) {
    // kBusy: the data directory's queue is full, the disk is behind; the writer waits for it,
    // as a client retrying its write would.
    for (;;) {
      Status s = node->set(keys[i % kKeySpace], value);
      if (s) break;
      if (s.code() != Code::kBusy) std::abort();
      std::this_thread::yield();
    }
    if ((i & 255) == 255) NodeDriver::of(*node).tick(sink);  // rumor mongering takes its turn
    return durability ? durability->ticket(0) : 0;
  }
};

void report(benchmark::State& state, Rig& r, std::size_t writes) {
  state.SetItemsProcessed(static_cast<std::int64_t>(writes));
  if (r.durability) {
    const DurableCounters c = r.durability->counters();
    state.counters["commits"] = static_cast<double>(c.commits);
    state.counters["writes_per_commit"] =
        c.commits ? static_cast<double>(c.records_written) / static_cast<double>(c.commits) : 0;
    state.counters["queue_full"] = static_cast<double>(c.queue_full);
    state.counters["file_MiB"] = static_cast<double>(c.file_bytes) / (1 << 20);
  }
}

// Memory and batch measure the same thing: 1M writes into a fresh node (a million inserts;
// the store's tables grow from empty), so the ratio compares like with like.
void write_fresh_million(benchmark::State& state, std::optional<SyncMode> mode) {
  std::size_t writes = 0;
  for (auto _ : state) {
    Rig r;
    if (!r.open(state, mode)) return;
    const std::uint64_t t0 = monotonic_ns();
    std::uint64_t ticket = 0;
    for (std::size_t n = 0; n < kKeySpace; ++n) ticket = r.write(n);
    // The iteration ends when the disk holds its last write: a persister that falls behind
    // shows in the rate instead of hiding in a queue.
    if (r.durability && !r.durability->wait_durable(0, ticket, 60'000)) {
      state.SkipWithError("the last write did not reach the disk within 60 s");
      return;
    }
    state.SetIterationTime(static_cast<double>(monotonic_ns() - t0) / 1e9);
    writes += kKeySpace;
    if (r.durability) {
      report(state, r, writes);
    } else {
      state.SetItemsProcessed(static_cast<std::int64_t>(writes));
    }
  }
}

void BM_MemoryWrite(benchmark::State& state) { write_fresh_million(state, std::nullopt); }
void BM_DurableBatch(benchmark::State& state) { write_fresh_million(state, SyncMode::kBatch); }

void BM_DurableAlways(benchmark::State& state) {
  Rig r;
  if (!r.open(state, SyncMode::kAlways)) return;
  std::size_t i = 0, acked = 0;
  std::vector<std::uint64_t> in_flight(kWriters, 0);  // each writer's unacknowledged ticket
  constexpr std::size_t kAcksPerIteration = 16384;
  for (auto _ : state) {
    const std::uint64_t t0 = monotonic_ns();
    std::size_t acked_here = 0;
    while (acked_here < kAcksPerIteration) {
      // Every writer whose last write is on disk writes again.
      bool waiting = true;
      for (std::uint64_t& t : in_flight) {
        if (t != 0 && !r.durability->durable(0, t)) continue;
        if (t != 0) ++acked_here;
        t = r.write(i++);
        waiting = false;
      }
      if (waiting) {
        // All 64 are in flight: wait for the oldest.
        const std::uint64_t oldest = *std::min_element(in_flight.begin(), in_flight.end());
        if (!r.durability->wait_durable(0, oldest, 30'000)) {
          state.SkipWithError("always: a write did not reach the disk within 30 s");
          return;
        }
      }
    }
    acked += acked_here;
    state.SetIterationTime(static_cast<double>(monotonic_ns() - t0) / 1e9);
  }
  report(state, r, acked);
}

BENCHMARK(BM_MemoryWrite)->Name("store/memory/write")->UseManualTime()->MinTime(1.0);
BENCHMARK(BM_DurableBatch)->Name("store/durable/write/batch")->UseManualTime()->MinTime(1.0);
BENCHMARK(BM_DurableAlways)->Name("store/durable/write/always")->UseManualTime()->MinTime(1.0);

}  // namespace
}  // namespace rumor
