// What a second owner core buys a Node: remote entries merged per second through the node's
// receive path (header checks, decode, validation, LWW merge into the shard, change feed into
// rumor mongering), with the datagrams split by target shard exactly as the kernel's steering
// splits them and each core's share driven by its own thread. This is the shape of an
// anti-entropy catch-up (docs/agent.md "Threading model"): answers to core c's session carry
// entries of core c's shards. The socket is left out (on this machine a datagram costs 4-5 us of
// kernel work on the receiving core, which also parallelises per socket).
//
// node/cores/1 is the baseline in the same binary: the same datagrams, all on core 0. Read
// node/cores/2 over node/cores/1: items_per_second = entries merged per second (the time until
// every core merged its share); queued_s = the time until core 0 also queued every change for
// rumor mongering, which is serial on core 0 whatever the core count. A fresh node per
// iteration, so every entry is a new key (table growth included).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/store/store.h"
#include "rumor/driver.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"
#include "tests/support/discard_sink.h"

namespace rumor {
namespace {

constexpr std::size_t kEntries = 131072;
constexpr std::size_t kDatagramBytes = 1200;
constexpr NodeId kSender = 0x5e4d;

struct Datagram {
  std::uint16_t shard;
  std::vector<std::byte> bytes;
};

// Datagrams of 16-byte keys and 64-byte values, each holding entries of one parity of shard
// (shard % 2), with that shard in its header: on two cores, each goes to the core owning all of
// its entries; on one, all go to core 0.
const std::vector<Datagram>& datagrams(std::uint32_t shards, const std::string& label) {
  static std::vector<Datagram> out;
  if (!out.empty()) return out;
  const std::uint64_t hlc = hlc_pack(SystemTimeSource().now_ms() - 3'600'000, 0);
  std::vector<std::vector<std::string>> keys(2);
  for (std::size_t i = 0; i < kEntries; ++i) {
    char key[17];
    std::snprintf(key, sizeof(key), "k%015zu", i);
    const std::uint32_t shard = static_cast<std::uint32_t>(Store::hash_key(key) & (shards - 1));
    keys[shard % 2].emplace_back(key);
  }
  const std::string value(64, 'v');
  for (std::uint16_t parity = 0; parity < 2; ++parity) {
    std::size_t i = 0;
    while (i < keys[parity].size()) {
      Datagram d;
      d.shard = parity;
      d.bytes.resize(kDatagramBytes);
      wire::Writer w(d.bytes);
      wire::write_header(w, wire::Header{parity, wire::label_hash(label), kSender});
      for (; i < keys[parity].size(); ++i) {
        const std::size_t mark = w.size();
        wire::encode(w, wire::EntryMsg{false, Version{hlc + i, kSender}, keys[parity][i], value});
        if (!w.ok()) {
          w.rollback(mark);
          break;
        }
      }
      d.bytes.resize(w.size());
      out.push_back(std::move(d));
    }
  }
  return out;
}

void BM_NodeCores(benchmark::State& state) {
  const auto cores = static_cast<std::uint32_t>(state.range(0));
  SystemTimeSource clock;
  NodeConfig nc = NodeConfig::local();
  nc.name = "bench";
  nc.advertise = Address::ipv4(0x7f000001, 1);
  nc.store.owners = cores;
  nc.peer_bytes_per_s_max = UINT32_MAX;  // one sender floods on purpose
  const auto& dgs = datagrams(nc.store.virtual_shards, nc.cluster_label);
  const Address from = Address::ipv4(0x7f000001, 2);
  std::uint64_t merged = 0, overruns = 0, queued = 0;
  double queued_s = 0;
  for (auto _ : state) {
    auto node = Node::create(nc, clock);
    if (!node) {
      state.SkipWithError(node.status().to_string().c_str());
      return;
    }
    Node& n = **node;
    NodeDriver& drv = NodeDriver::of(n);
    std::atomic<std::uint32_t> ready{0};
    std::atomic<bool> go{false};
    std::atomic<bool> all_queued{false};
    std::vector<std::chrono::steady_clock::time_point> merged_at(cores);
    auto run_core = [&](std::uint32_t c) {
      testing::DiscardSink sink;
      drv.start(c, sink);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      std::size_t handled = 0;
      for (const Datagram& d : dgs) {
        if (d.shard % cores != c) continue;
        drv.receive(c, from, d.bytes, sink);
        if (++handled % 64 == 0) drv.tick(c, sink);
      }
      // Every entry this core was sent is merged (steered datagrams: no entry crosses cores).
      merged_at[c] = std::chrono::steady_clock::now();
      // Done when core 0 has queued every change for rumor mongering (its own start-up
      // announcement is the one more): the other cores keep feeding it until then. Bounded.
      const std::uint64_t want = kEntries + 1;
      const std::uint64_t give_up = monotonic_ns() + 20'000'000'000ull;
      if (c != 0) {
        while (!all_queued.load(std::memory_order_acquire) && monotonic_ns() < give_up) {
          drv.tick(c, sink);
        }
        return;
      }
      while (n.counters().broadcasts_queued < want && monotonic_ns() < give_up) drv.tick(0, sink);
      all_queued.store(true, std::memory_order_release);
    };
    std::vector<std::thread> threads;
    for (std::uint32_t c = 0; c < cores; ++c) threads.emplace_back(run_core, c);
    while (ready.load() < cores) {
    }
    const auto t0 = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    const auto t1 = std::chrono::steady_clock::now();
    const auto merged_t = *std::max_element(merged_at.begin(), merged_at.end());
    state.SetIterationTime(std::chrono::duration<double>(merged_t - t0).count());
    queued_s += std::chrono::duration<double>(t1 - t0).count();
    const StoreCounters sc = NodeInternals::store(n).counters();
    if (sc.merges_applied != kEntries || n.counters().broadcasts_queued != kEntries + 1) {
      state.SkipWithError("not every entry was merged and queued for rumor mongering");
      return;
    }
    merged += sc.merges_applied;
    overruns += sc.feed_overruns;
    queued += n.counters().broadcasts_queued;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(merged));
  state.counters["cores"] = cores;
  // Changes that skipped rumor mongering (the feed fell behind; anti-entropy covers them) and
  // changes queued for it, per iteration: the work core 0 did for the other cores.
  state.counters["feed_overruns"] =
      benchmark::Counter(static_cast<double>(overruns), benchmark::Counter::kAvgIterations);
  state.counters["broadcasts_queued"] =
      benchmark::Counter(static_cast<double>(queued), benchmark::Counter::kAvgIterations);
  // Until every change also sat in core 0's broadcast queue (the serial part: core 0 queues
  // the changes of every core).
  state.counters["queued_s"] = benchmark::Counter(queued_s, benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_NodeCores)->Name("node/cores")->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rumor
