// Fuzz target: the large-value messages (engine/wire/wire.h kEntryRef, kChunkRequest, kChunk)
// and the pull state machine they drive (engine/gossip/bulk.h). The input is a sequence of
// steps, each `op:u8 len:u16 body[len]`: op % 5 = 0 an announcement, 1 a chunk request (served
// from a store that holds one large value), 2 a chunk, 3 time passes (tick), 4 a chunk for the
// transfer the last request named (so bodies reach the assembly, not only the id check).
// Whatever decodes must re-encode to the same bytes; nothing may crash or assert, and the
// bounds (transfers, bytes in flight) must hold after every step.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/gossip/bulk.h"
#include "engine/wire/packet.h"

namespace {

using namespace rumor;

void check(bool ok) {
  if (!ok) std::abort();
}

struct DiscardSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::vector<std::byte> last;  // the last datagram committed
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address&, std::size_t len) override {
    last.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(len));
  }
};

struct Harness {
  Harness() {
    config = NodeConfig::local();
    config.store.value_bytes_max = 1u << 20;
    config.bulk_transfers_max = 4;
    config.bulk_bytes_max = 3u << 20;
    config.bulk_peer_bytes_max = 2u << 20;
    lim.value_bytes_max = config.store.value_bytes_max;
    store = std::move(Store::create(config.store, 1, time)).value();
    // A held value that requests can name: "big", 20,000 bytes, at the version set returns.
    value.assign(20'000, 'v');
    version = *store->set("big", value);
    bulk = std::make_unique<Bulk>(config, lim, *store, counters, rng);
  }
  wire::Outbox out() { return wire::Outbox{framing, sink, counters, nullptr}; }

  NodeConfig config;
  wire::Limits lim;
  ManualTimeSource time{1'764'000'000'000};
  std::unique_ptr<Store> store;
  NodeCounters counters;
  Rng rng{7};
  wire::Framing framing{1400, 1, 1, nullptr};
  DiscardSink sink;
  std::unique_ptr<Bulk> bulk;
  std::string value;
  Version version;
};

// Re-encodes m and checks it gives `body` back.
template <typename Msg>
void round_trip(const Msg& m, std::span<const std::byte> body) {
  std::vector<std::byte> buf(70000);
  wire::Writer w(buf);
  wire::encode(w, m);
  check(w.ok());
  check(w.size() == wire::kMessageHeaderBytes + body.size());
  check(std::equal(body.begin(), body.end(), buf.begin() + wire::kMessageHeaderBytes));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness* h = new Harness();
  // A fresh state machine per input, so inputs replay alone; the store and its value stay.
  h->bulk = std::make_unique<Bulk>(h->config, h->lim, *h->store, h->counters, h->rng);
  const Address peer = Address::ipv4(0x7f000001, 2000);
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  for (int steps = 0; steps < 256 && in.size() >= 3; ++steps) {
    const auto op = static_cast<std::uint8_t>(in[0]) % 5;
    const std::size_t len = std::min<std::size_t>(
        static_cast<std::size_t>(in[1]) | static_cast<std::size_t>(in[2]) << 8, in.size() - 3);
    const std::span<const std::byte> body = in.subspan(3, len);
    in = in.subspan(3 + len);
    const wire::Outbox o = h->out();
    switch (op) {
      case 0: {
        wire::EntryRefMsg m;
        if (!wire::decode(body, h->lim, &m)) break;
        round_trip(m, body);
        h->bulk->on_announce(peer, m, h->time.now_ms(), o);
        break;
      }
      case 1: {
        wire::ChunkRequestMsg m;
        if (!wire::decode(body, h->lim, &m)) break;
        round_trip(m, body);
        // Aimed at the held value half of the time, so serving reaches its chunk loop.
        if (m.xfer & 1) {
          m.key = "big";
          m.version = h->version;
          m.size = static_cast<std::uint32_t>(h->value.size());
          if (m.first >= wire::chunk_count(m.size, m.chunk_bytes)) break;
          const std::uint32_t span =
              std::min<std::uint32_t>(wire::chunk_count(m.size, m.chunk_bytes) - m.first, 64);
          if (span < 64) m.mask &= (std::uint64_t{1} << span) - 1;
          if (m.mask == 0) break;
        }
        h->bulk->serve(peer, m, h->time.now_ms(), o);
        break;
      }
      case 2:
      case 4: {
        wire::ChunkMsg m;
        if (!wire::decode(body, &m)) break;
        round_trip(m, body);
        if (op == 4 && h->sink.last.size() > wire::kHeaderBytes + wire::kMessageHeaderBytes) {
          // The transfer id of the last request sent.
          wire::ChunkRequestMsg q;
          const auto req = std::span<const std::byte>(h->sink.last)
                               .subspan(wire::kHeaderBytes + wire::kMessageHeaderBytes);
          if (static_cast<std::uint8_t>(h->sink.last[wire::kHeaderBytes]) ==
                  static_cast<std::uint8_t>(wire::MsgType::kChunkRequest) &&
              wire::decode(req, h->lim, &q)) {
            m.xfer = q.xfer;
          }
        }
        h->bulk->on_chunk(peer, m, h->time.now_ms(), o, [&](const EntryView& e) {
          check(!e.value.empty() && e.value.size() <= h->lim.value_bytes_max);
        });
        break;
      }
      case 3:
        h->time.advance(body.empty() ? 1 : static_cast<std::uint8_t>(body[0]) * 10u);
        h->bulk->tick(h->time.now_ms(), o);
        break;
    }
    check(h->bulk->transfers() <= h->config.bulk_transfers_max);
    check(h->bulk->bytes_in_flight() <= bulk_bytes_limit(h->config));
  }
  return 0;
}
