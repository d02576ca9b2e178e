// Large values (docs/protocol.md "Large values"): the CPU cost of pulling one value through
// engine/gossip/bulk.h between two stores, every chunk encoded into a datagram buffer, decoded
// and assembled, the whole value hashed and merged; against the floor of what any transfer
// must do (copy the bytes once and hash them once).
//
//   bulk/pull/S     announce, pull (windows of 64 chunks of 1,328 bytes), verify, merge S bytes
//   bulk/pull2/S    two peers pulling two different values of S bytes from one holder at once,
//                   window by window in turn (the holder's value cache alternates)
//   bulk/floor/S    memcpy of S bytes plus XXH3-64 of them
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/gossip/bulk.h"
#include "engine/wire/packet.h"

namespace rumor {
namespace {

struct Sink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::vector<std::pair<Address, std::vector<std::byte>>> sent;
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address& to, std::size_t len) override {
    sent.emplace_back(to, std::vector<std::byte>(buf.begin(),
                                                 buf.begin() + static_cast<std::ptrdiff_t>(len)));
  }
};

struct Side {
  Side(const NodeConfig& c, NodeId id, TimeSource& time, Address a)
      : store(std::move(Store::create(c.store, id, time)).value()),
        rng(id),
        framing{c.datagram_bytes_max, 1, id, nullptr},
        addr(a) {
    lim.value_bytes_max = c.store.value_bytes_max;
    bulk = std::make_unique<Bulk>(c, lim, *store, counters, rng);
  }
  wire::Outbox out() { return wire::Outbox{framing, sink, counters, nullptr}; }
  wire::Limits lim;
  std::unique_ptr<Store> store;
  NodeCounters counters;
  Rng rng;
  wire::Framing framing;
  Sink sink;
  std::unique_ptr<Bulk> bulk;
  Address addr;
};

// Delivers what `from` sent to `to`; returns whether `to` applied a value.
bool deliver(Side& from, Side& to, TimeSource& time) {
  bool applied = false;
  std::vector<std::pair<Address, std::vector<std::byte>>> batch;
  batch.swap(from.sink.sent);
  for (auto& [addr, bytes] : batch) {
    wire::Reader mr(std::span<const std::byte>(bytes).subspan(wire::kHeaderBytes));
    wire::Message m;
    while (wire::next_message(mr, &m)) {
      const wire::Outbox o = to.out();
      if (m.type == wire::MsgType::kChunkRequest) {
        wire::ChunkRequestMsg q;
        if (wire::decode(m.body, to.lim, &q)) to.bulk->serve(from.addr, q, time.now_ms(), o);
      } else if (m.type == wire::MsgType::kChunk) {
        wire::ChunkMsg c;
        if (!wire::decode(m.body, &c)) continue;
        to.bulk->on_chunk(from.addr, c, time.now_ms(), o, [&](const EntryView& e) {
          (void)to.store->merge(e);
          applied = true;
        });
      }
    }
  }
  return applied;
}

void BM_Pull(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  NodeConfig config = NodeConfig::local();
  config.store.value_bytes_max = 1u << 20;
  ManualTimeSource time(1'764'000'000'000);
  std::string value(size, '\0');
  for (std::size_t i = 0; i < size; ++i) value[i] = static_cast<char>(i * 131 + i / 977);
  std::uint64_t chunks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Side a(config, 1, time, Address::ipv4(0x7f000001, 1000));
    Side b(config, 2, time, Address::ipv4(0x7f000001, 2000));
    time.advance(1);
    const Version v = *a.store->set("big", value);
    state.ResumeTiming();
    b.bulk->on_announce(a.addr, announcement(config, EntryView{"big", value, v, false}),
                        time.now_ms(), b.out());
    bool done = false;
    for (int rounds = 0; rounds < 100'000 && !done; ++rounds) {
      deliver(b, a, time);
      done = deliver(a, b, time);
    }
    if (!done) state.SkipWithError("transfer did not complete");
    chunks += a.counters.bulk_chunks_sent;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.counters["chunks"] = benchmark::Counter(static_cast<double>(chunks),
                                                benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_Pull)->Name("bulk/pull")->Arg(64 << 10)->Arg(512 << 10)->Arg(1 << 20)
    ->Unit(benchmark::kMicrosecond);

void BM_PullTwo(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  NodeConfig config = NodeConfig::local();
  config.store.value_bytes_max = 1u << 20;
  ManualTimeSource time(1'764'000'000'000);
  std::string v1(size, '\0'), v2(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    v1[i] = static_cast<char>(i * 131 + i / 977);
    v2[i] = static_cast<char>(i * 137 + i / 983);
  }
  for (auto _ : state) {
    state.PauseTiming();
    Side a(config, 1, time, Address::ipv4(0x7f000001, 1000));
    Side b(config, 2, time, Address::ipv4(0x7f000001, 2000));
    Side c(config, 3, time, Address::ipv4(0x7f000001, 3000));
    time.advance(1);
    const Version x = *a.store->set("one", v1);
    const Version y = *a.store->set("two", v2);
    state.ResumeTiming();
    b.bulk->on_announce(a.addr, announcement(config, EntryView{"one", v1, x, false}),
                        time.now_ms(), b.out());
    c.bulk->on_announce(a.addr, announcement(config, EntryView{"two", v2, y, false}),
                        time.now_ms(), c.out());
    bool done_b = false, done_c = false;
    for (int rounds = 0; rounds < 100'000 && !(done_b && done_c); ++rounds) {
      deliver(b, a, time);
      done_b |= deliver(a, b, time);
      deliver(c, a, time);
      done_c |= deliver(a, c, time);
    }
    if (!done_b || !done_c) state.SkipWithError("transfers did not complete");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
}
BENCHMARK(BM_PullTwo)->Name("bulk/pull2")->Arg(1 << 20)->Unit(benchmark::kMicrosecond);

void BM_Floor(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::string value(size, 'v'), copy(size, '\0');
  for (auto _ : state) {
    std::memcpy(copy.data(), value.data(), size);
    benchmark::DoNotOptimize(wire::value_hash(copy));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_Floor)->Name("bulk/floor")->Arg(64 << 10)->Arg(512 << 10)->Arg(1 << 20)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace rumor
