// Large values, unit level: the three wire messages (round trips, and every malformed body
// refused), and engine/gossip/bulk.h between two stores with the datagrams shuttled by hand:
// windows of equal chunks to one address, losses re-asked for, the whole value applied once and
// only when complete and verified, the memory bounds, giving up, the second announcer, and chunks
// that name nothing of ours.
#include "engine/gossip/bulk.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/wire/packet.h"

namespace rumor {
namespace {

// ---- wire -----------------------------------------------------------------------------------

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// The body of the one message `encode` writes.
template <typename Msg>
std::vector<std::byte> body_of(const Msg& m) {
  std::vector<std::byte> buf(70000);
  wire::Writer w(buf);
  wire::encode(w, m);
  EXPECT_TRUE(w.ok());
  return std::vector<std::byte>(buf.begin() + wire::kMessageHeaderBytes,
                                buf.begin() + static_cast<std::ptrdiff_t>(w.size()));
}

wire::Limits limits() {
  wire::Limits l;
  l.value_bytes_max = 1u << 20;
  return l;
}

TEST(BulkWire, MessagesRoundTrip) {
  const wire::EntryRefMsg ref{Version{123456789, 42}, 700000, 0xfeedface12345678ull, 1328, "big"};
  wire::EntryRefMsg r;
  auto b = body_of(ref);
  EXPECT_EQ(b.size(), wire::kEntryRefFixedBytes + 3);
  ASSERT_TRUE(wire::decode(b, limits(), &r));
  EXPECT_EQ(r.version, ref.version);
  EXPECT_EQ(r.size, ref.size);
  EXPECT_EQ(r.hash, ref.hash);
  EXPECT_EQ(r.chunk_bytes, ref.chunk_bytes);
  EXPECT_EQ(r.key, "big");

  const wire::ChunkRequestMsg req{7, Version{5, 6}, 700000, 1328, 64, 0x8000'0000'0000'0001ull,
                                  "big"};
  wire::ChunkRequestMsg q;
  b = body_of(req);
  EXPECT_EQ(b.size(), wire::kChunkRequestFixedBytes + 3);
  ASSERT_TRUE(wire::decode(b, limits(), &q));
  EXPECT_EQ(q.xfer, 7u);
  EXPECT_EQ(q.first, 64u);
  EXPECT_EQ(q.mask, req.mask);
  EXPECT_EQ(q.size, req.size);

  const std::string data(1328, 'x');
  wire::ChunkMsg c;
  b = body_of(wire::ChunkMsg{9, 3, bytes_of(data)});
  ASSERT_TRUE(wire::decode(b, &c));
  EXPECT_EQ(c.xfer, 9u);
  EXPECT_EQ(c.index, 3u);
  EXPECT_EQ(c.data.size(), data.size());
}

// Bodies written field by field: the encoders assert what the decoders check, so malformed
// bodies are made by hand.
std::vector<std::byte> ref_body(const wire::EntryRefMsg& m) {
  std::vector<std::byte> buf(70000);
  wire::Writer w(buf);
  w.u8(0);
  w.u64(m.version.hlc);
  w.u64(m.version.node);
  w.u32(m.size);
  w.u64(m.hash);
  w.u16(m.chunk_bytes);
  w.str16(m.key);
  buf.resize(w.size());
  return buf;
}
std::vector<std::byte> req_body(const wire::ChunkRequestMsg& m) {
  std::vector<std::byte> buf(70000);
  wire::Writer w(buf);
  w.u32(m.xfer);
  w.u64(m.version.hlc);
  w.u64(m.version.node);
  w.u32(m.size);
  w.u16(m.chunk_bytes);
  w.u32(m.first);
  w.u64(m.mask);
  w.str16(m.key);
  buf.resize(w.size());
  return buf;
}

TEST(BulkWire, MalformedBodiesAreRefused) {
  const wire::Limits lim = limits();
  const wire::EntryRefMsg good{Version{1, 2}, 5000, 3, 1000, "k"};
  EXPECT_EQ(ref_body(good), body_of(good));
  auto ref_ok = [&](wire::EntryRefMsg m) {
    wire::EntryRefMsg out;
    return wire::decode(ref_body(m), lim, &out);
  };
  EXPECT_TRUE(ref_ok(good));
  auto m = good;
  m.size = 0;
  EXPECT_FALSE(ref_ok(m));
  m = good;
  m.size = lim.value_bytes_max + 1;
  EXPECT_FALSE(ref_ok(m));
  m = good;
  m.chunk_bytes = wire::kChunkBytesMin - 1;
  EXPECT_FALSE(ref_ok(m));
  m = good;
  m.version = Version{};
  EXPECT_FALSE(ref_ok(m));
  m = good;
  m.key = "";
  EXPECT_FALSE(ref_ok(m));
  const std::string long_key(lim.key_bytes_max + 1, 'k');
  m = good;
  m.key = long_key;
  EXPECT_FALSE(ref_ok(m));
  {
    auto b = body_of(good);
    wire::EntryRefMsg out;
    b[0] = std::byte{1};  // flags: none defined
    EXPECT_FALSE(wire::decode(b, lim, &out));
    b[0] = std::byte{0};
    b.push_back(std::byte{0});  // trailing byte
    EXPECT_FALSE(wire::decode(b, lim, &out));
    for (std::size_t n = 0; n + 1 < b.size(); ++n) {  // every truncation
      EXPECT_FALSE(wire::decode(std::span(b).first(n), lim, &out)) << n;
    }
  }

  // 5000 bytes at 1000 a chunk: chunks 0..4.
  const wire::ChunkRequestMsg req{1, Version{1, 2}, 5000, 1000, 0, 0x1f, "k"};
  EXPECT_EQ(req_body(req), body_of(req));
  auto req_ok = [&](wire::ChunkRequestMsg q) {
    wire::ChunkRequestMsg out;
    return wire::decode(req_body(q), lim, &out);
  };
  EXPECT_TRUE(req_ok(req));
  auto q = req;
  q.mask = 0x3f;  // chunk 5 does not exist
  EXPECT_FALSE(req_ok(q));
  q = req;
  q.first = 4;
  q.mask = 0x1;
  EXPECT_TRUE(req_ok(q));
  q.mask = 0x2;
  EXPECT_FALSE(req_ok(q));
  q = req;
  q.first = 5;  // past the last chunk
  q.mask = 1;
  EXPECT_FALSE(req_ok(q));
  q = req;
  q.mask = 0;
  EXPECT_FALSE(req_ok(q));
  q = req;
  q.chunk_bytes = wire::kChunkBytesMin - 1;
  EXPECT_FALSE(req_ok(q));
  q = req;
  q.size = 0;
  EXPECT_FALSE(req_ok(q));
  {
    // A window of 64 from 0 over 100 chunks is fine with every bit set.
    q = req;
    q.size = 100'000;
    q.mask = ~std::uint64_t{0};
    EXPECT_TRUE(req_ok(q));
  }

  wire::ChunkMsg c;
  std::vector<std::byte> eight(8);
  EXPECT_FALSE(wire::decode(eight, &c)) << "a chunk without data";
  EXPECT_FALSE(wire::decode(std::span(eight).first(7), &c));
}

// ---- Bulk between two nodes ------------------------------------------------------------------

struct Datagram {
  Address to;
  std::vector<std::byte> bytes;
};

struct RecordingSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::vector<Datagram> sent;
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address& to, std::size_t len) override {
    sent.push_back(Datagram{to, std::vector<std::byte>(buf.begin(), buf.begin() +
                                                                   static_cast<std::ptrdiff_t>(len))});
  }
};

// One side: a store, a Bulk, and its outgoing datagrams.
struct Side {
  Side(const NodeConfig& c, NodeId id, ManualTimeSource& time, Address a)
      : config(c),
        store(std::move(Store::create(c.store, id, time)).value()),
        rng(id),
        framing{c.datagram_bytes_max, 1, id, nullptr},
        addr(a) {
    lim.value_bytes_max = c.store.value_bytes_max;
    bulk = std::make_unique<Bulk>(config, lim, *store, counters, rng);
  }
  wire::Outbox out() { return wire::Outbox{framing, sink, counters, nullptr}; }

  NodeConfig config;
  wire::Limits lim;
  std::unique_ptr<Store> store;
  NodeCounters counters;
  Rng rng;
  wire::Framing framing;
  RecordingSink sink;
  std::unique_ptr<Bulk> bulk;
  Address addr;
  std::vector<Entry> applied;
};

class BulkTest : public ::testing::Test {
 protected:
  BulkTest() {
    config = NodeConfig::local();
    config.store.value_bytes_max = 1u << 20;
  }
  void make() {
    a = std::make_unique<Side>(config, 1, time, Address::ipv4(0x7f000001, 1000));
    b = std::make_unique<Side>(config, 2, time, Address::ipv4(0x7f000001, 2000));
  }
  // Delivers every datagram `from` sent to `to` (except those `drop` picks), once.
  void deliver(Side& from, Side& to, const std::function<bool(std::size_t)>& drop = nullptr) {
    std::vector<Datagram> batch;
    batch.swap(from.sink.sent);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (drop && drop(i)) continue;
      wire::Reader r(batch[i].bytes);
      wire::Header h;
      ASSERT_EQ(wire::read_header(r, &h), wire::HeaderError::kNone);
      wire::Message m;
      const auto rest = std::span<const std::byte>(batch[i].bytes).subspan(wire::kHeaderBytes);
      wire::Reader mr(rest);
      while (wire::next_message(mr, &m)) {
        const wire::Outbox o = to.out();
        if (m.type == wire::MsgType::kEntryRef) {
          wire::EntryRefMsg e;
          ASSERT_TRUE(wire::decode(m.body, to.lim, &e));
          to.bulk->on_announce(from.addr, e, time.now_ms(), o);
        } else if (m.type == wire::MsgType::kChunkRequest) {
          wire::ChunkRequestMsg q;
          ASSERT_TRUE(wire::decode(m.body, to.lim, &q));
          to.bulk->serve(from.addr, q, time.now_ms(), o);
        } else if (m.type == wire::MsgType::kChunk) {
          wire::ChunkMsg c;
          ASSERT_TRUE(wire::decode(m.body, &c));
          to.bulk->on_chunk(from.addr, c, time.now_ms(), o, [&](const EntryView& e) {
            to.applied.push_back(
                Entry{std::string(e.key), std::string(e.value), e.version, e.tombstone});
            ASSERT_EQ(to.store->merge(e).value(), MergeOutcome::kApplied);
          });
        } else {
          ADD_FAILURE() << "unexpected message type " << static_cast<int>(m.type);
        }
      }
    }
  }
  // s holds key = value (set locally); returns its announcement as others would receive it
  // (its key a view of a string the fixture keeps).
  wire::EntryRefMsg hold(Side& s, const std::string& key_in, const std::string& value) {
    const std::string& key = keys_.emplace_back(key_in);
    auto v = s.store->set(key, value);
    EXPECT_TRUE(v.is_ok());
    const EntryView e{key, value, *v, false};
    EXPECT_FALSE(travels_whole(config, e));
    return announcement(config, e);
  }
  static std::string value_of(std::size_t n, char seed) {
    std::string v(n, '\0');
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>(seed + i * 7 + i / 251);
    return v;
  }

  NodeConfig config;
  ManualTimeSource time{1'764'000'000'000};
  std::unique_ptr<Side> a, b;
  std::deque<std::string> keys_;
};

TEST_F(BulkTest, SmallEntriesTravelWholeAndLargeOnesAreAnnounced) {
  const std::string key = "k";
  // The largest value whose kEntry message fits the datagram's room still travels whole.
  const std::size_t room = datagram_message_room(config);
  const std::size_t fits = room - entry_message_bytes(key.size(), 0);
  const std::string v(fits, 'x'), w(fits + 1, 'x');
  EXPECT_TRUE(travels_whole(config, EntryView{key, v, Version{1, 1}, false}));
  EXPECT_FALSE(travels_whole(config, EntryView{key, w, Version{1, 1}, false}));
  EXPECT_TRUE(travels_whole(config, EntryView{key, "", Version{1, 1}, true}));
  // The default value limit of before (1 KiB) still travels whole at the default datagram size.
  EXPECT_TRUE(travels_whole(NodeConfig{}, EntryView{std::string(256, 'k'), std::string(1024, 'v'),
                                                    Version{1, 1}, false}));
  const std::string msg = encode_announcement(config, EntryView{key, w, Version{1, 1}, false});
  EXPECT_EQ(msg.size(), wire::kMessageHeaderBytes + wire::kEntryRefFixedBytes + key.size());
  EXPECT_EQ(chunk_bytes_max(config), config.datagram_bytes_max - 72u);
}

TEST_F(BulkTest, PullsWholeUnderLossInWindowsOfEqualChunksAndAppliesOnce) {
  make();
  const std::string value = value_of(300'000, 3);
  b->bulk->on_announce(a->addr, hold(*a, "big", value), time.now_ms(), b->out());
  EXPECT_EQ(b->bulk->transfers(), 1u);
  EXPECT_EQ(b->bulk->bytes_in_flight(), value.size());
  const std::uint32_t chunks = wire::chunk_count(300'000, chunk_bytes_max(config));
  std::size_t rounds = 0, lost = 0, windows = 0;
  std::uint32_t chunk_size = 0;
  while (b->applied.empty() && rounds++ < 200) {
    ASSERT_LE(b->sink.sent.size(), 2u) << "two windows in flight at most";
    windows += b->sink.sent.size();
    deliver(*b, *a);  // requests
    // a answers the windows: at most 64 chunks each, all to b, all but the last chunk of the
    // value the same size (so the transport sends each window as one GSO batch).
    ASSERT_LE(a->sink.sent.size(), 128u);
    for (const Datagram& d : a->sink.sent) {
      EXPECT_EQ(d.to, b->addr);
      if (chunk_size == 0) chunk_size = static_cast<std::uint32_t>(d.bytes.size());
    }
    for (std::size_t i = 0; i + 1 < a->sink.sent.size(); ++i) {
      EXPECT_EQ(a->sink.sent[i].bytes.size(), chunk_size);
    }
    // Every 7th chunk datagram is lost.
    deliver(*a, *b, [&](std::size_t i) {
      const bool drop = i % 7 == 3;
      lost += drop;
      return drop;
    });
    if (b->sink.sent.empty() && b->applied.empty()) {
      ASSERT_FALSE(b->store->get("big", nullptr)) << "nothing is applied before it is whole";
      time.advance(config.bulk_timeout_ms);
      b->bulk->tick(time.now_ms(), b->out());
    }
  }
  ASSERT_EQ(b->applied.size(), 1u);
  EXPECT_EQ(b->applied[0].value, value);
  std::string got;
  ASSERT_TRUE(b->store->get("big", &got));
  EXPECT_EQ(got, value);
  EXPECT_EQ(b->bulk->transfers(), 0u);
  EXPECT_EQ(b->bulk->bytes_in_flight(), 0u);
  EXPECT_EQ(b->counters.bulk_pulled, 1u);
  EXPECT_EQ(b->counters.bulk_chunks_received, chunks);
  EXPECT_GT(lost, 0u);
  EXPECT_GE(windows, (chunks + 63) / 64 + 1) << "losses were asked for again";
  EXPECT_EQ(a->counters.bulk_chunks_sent, chunks + lost);
  // Announced again once held: nothing to pull.
  b->bulk->on_announce(a->addr, announcement(config, EntryView{"big", value,
                                                               b->applied[0].version, false}),
                       time.now_ms(), b->out());
  EXPECT_TRUE(b->sink.sent.empty());
  EXPECT_EQ(b->bulk->transfers(), 0u);
}

// Against a plain oracle (the value itself): over many seeds, values of random sizes pulled
// through a link that drops, duplicates and reorders datagrams both ways arrive whole and are
// applied exactly once, within a bounded number of rounds; a transfer the link starves is given
// up, never applied in part.
TEST_F(BulkTest, RandomLossDuplicationAndReorderNeverApplyAPartOrATwice) {
  std::size_t applied = 0;
  std::uint64_t abandoned = 0;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    make();
    Rng rng(seed);
    const std::size_t size = 1 + static_cast<std::size_t>(rng.below(300'000));
    const double loss = static_cast<double>(rng.below(40)) / 100.0;  // 0..39%
    const std::string value = value_of(size, static_cast<char>(seed));
    const std::string key = "k" + std::to_string(seed);
    const wire::EntryRefMsg m = hold(*a, key, value);
    if (travels_whole(config, EntryView{key, value, m.version, false})) continue;
    b->bulk->on_announce(a->addr, m, time.now_ms(), b->out());
    // The link: each datagram is lost with `loss`, duplicated with 5%, and the batch shuffled.
    auto mangle = [&](Side& from) {
      std::vector<Datagram> out;
      for (Datagram& d : from.sink.sent) {
        if (static_cast<double>(rng.below(1000)) / 1000.0 < loss) continue;
        if (rng.below(20) == 0) out.push_back(d);
        out.push_back(std::move(d));
      }
      for (std::size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng.below(i)]);
      from.sink.sent = std::move(out);
    };
    std::size_t rounds = 0;
    while (b->bulk->transfers() > 0 && rounds++ < 2000) {
      mangle(*b);
      deliver(*b, *a);
      mangle(*a);
      deliver(*a, *b);
      if (b->sink.sent.empty()) {
        time.advance(config.bulk_timeout_ms);
        b->bulk->tick(time.now_ms(), b->out());
      }
      if (b->applied.empty()) {
        ASSERT_FALSE(b->store->get(key, nullptr)) << "applied in part";
      }
    }
    ASSERT_EQ(b->bulk->transfers(), 0u) << "a transfer outlived 2,000 rounds";
    ASSERT_LE(b->applied.size(), 1u);
    if (b->applied.size() == 1) {
      EXPECT_EQ(b->applied[0].value, value);
      EXPECT_EQ(b->counters.bulk_pulled, 1u);
    } else {
      EXPECT_EQ(b->counters.bulk_abandoned, 1u) << "neither applied nor given up";
    }
    EXPECT_EQ(b->counters.bulk_bad_hash, 0u);
    EXPECT_EQ(b->bulk->bytes_in_flight(), 0u);
    applied += b->applied.size();
    abandoned += b->counters.bulk_abandoned;
  }
  std::printf("60 seeds: %zu values applied whole, %llu transfers given up\n", applied,
              static_cast<unsigned long long>(abandoned));
  EXPECT_GT(applied, 40u);
}

TEST_F(BulkTest, AValueThatDoesNotMatchItsHashIsNotApplied) {
  make();
  wire::EntryRefMsg m = hold(*a, "big", value_of(5000, 1));
  m.hash ^= 1;
  b->bulk->on_announce(a->addr, m, time.now_ms(), b->out());
  deliver(*b, *a);
  deliver(*a, *b);
  EXPECT_TRUE(b->applied.empty());
  EXPECT_EQ(b->counters.bulk_bad_hash, 1u);
  EXPECT_EQ(b->bulk->transfers(), 0u);
  EXPECT_FALSE(b->store->get("big", nullptr));
}

TEST_F(BulkTest, AnnouncementsOverTheBoundsAreRefusedAndCounted) {
  config.bulk_transfers_max = 2;
  config.bulk_peer_bytes_max = 1u << 20;  // one 600 KB value per peer at a time
  config.bulk_bytes_max = 1u << 21;
  make();
  const Address c = Address::ipv4(0x7f000001, 3000), d = Address::ipv4(0x7f000001, 4000);
  auto ref = [&](const std::string& key, std::uint32_t size) {
    return wire::EntryRefMsg{Version{time.now_ms() << 16, 9}, size, 1, 1000, key};
  };
  // A version further ahead than the store would accept is not pulled at all.
  wire::EntryRefMsg ahead = ref("w", 1000);
  ahead.version.hlc = (time.now_ms() + config.store.max_clock_skew_ms + 1) << 16;
  b->bulk->on_announce(c, ahead, time.now_ms(), b->out());
  EXPECT_EQ(b->bulk->transfers(), 0u);
  EXPECT_TRUE(b->sink.sent.empty());
  b->bulk->on_announce(c, ref("x", 600'000), time.now_ms(), b->out());
  b->bulk->on_announce(c, ref("y", 600'000), time.now_ms(), b->out());  // c's share is full
  EXPECT_EQ(b->counters.bulk_refused, 2u);
  b->bulk->on_announce(d, ref("y", 600'000), time.now_ms(), b->out());  // from another peer
  EXPECT_EQ(b->bulk->transfers(), 2u);
  b->bulk->on_announce(Address::ipv4(0x7f000001, 5000), ref("z", 1000), time.now_ms(),
                       b->out());  // transfers_max
  EXPECT_EQ(b->counters.bulk_refused, 3u);
  EXPECT_EQ(b->bulk->bytes_in_flight(), 1'200'000u);
  EXPECT_EQ(b->counters.bulk_pulls, 2u);
}

TEST_F(BulkTest, ASilentPeerIsGivenUpAfterTheAttemptsOrItsAlternateTakesOver) {
  make();
  const Address c = Address::ipv4(0x7f000001, 3000);
  const wire::EntryRefMsg m = hold(*a, "big", value_of(50'000, 5));
  b->bulk->on_announce(c, m, time.now_ms(), b->out());         // c will never answer
  b->bulk->on_announce(a->addr, m, time.now_ms(), b->out());   // a holds the same version
  EXPECT_EQ(b->bulk->transfers(), 1u);
  std::size_t to_c = 0;
  for (std::uint32_t i = 0; i < 3 * config.bulk_attempts_max && b->applied.empty(); ++i) {
    for (const Datagram& d : b->sink.sent) to_c += d.to == c;
    if (!b->sink.sent.empty() && b->sink.sent.back().to == a->addr) {
      deliver(*b, *a);
      deliver(*a, *b);
      continue;
    }
    b->sink.sent.clear();
    time.advance(config.bulk_timeout_ms);
    b->bulk->tick(time.now_ms(), b->out());
  }
  EXPECT_EQ(to_c, config.bulk_attempts_max);
  ASSERT_EQ(b->applied.size(), 1u);

  // Without an alternate: given up after exactly bulk_attempts_max requests.
  Side lone(config, 3, time, Address::ipv4(0x7f000001, 6000));
  lone.bulk->on_announce(c, m, time.now_ms(), lone.out());
  for (std::uint32_t i = 0; i < 3 * config.bulk_attempts_max; ++i) {
    time.advance(config.bulk_timeout_ms);
    lone.bulk->tick(time.now_ms(), lone.out());
  }
  EXPECT_EQ(lone.sink.sent.size(), config.bulk_attempts_max);
  EXPECT_EQ(lone.counters.bulk_abandoned, 1u);
  EXPECT_EQ(lone.bulk->transfers(), 0u);
  EXPECT_EQ(lone.bulk->bytes_in_flight(), 0u);
  EXPECT_EQ(lone.bulk->deadline_ms(), UINT64_MAX);
}

TEST_F(BulkTest, ANewerVersionReplacesTheTransferAndOlderOnesAreIgnored) {
  make();
  const wire::EntryRefMsg old_ref = hold(*a, "big", value_of(20'000, 1));
  b->bulk->on_announce(a->addr, old_ref, time.now_ms(), b->out());
  time.advance(5);
  const std::string newer = value_of(30'000, 2);
  const wire::EntryRefMsg new_ref = hold(*a, "big", newer);
  b->bulk->on_announce(a->addr, new_ref, time.now_ms(), b->out());
  EXPECT_EQ(b->counters.bulk_superseded, 1u);
  b->bulk->on_announce(a->addr, old_ref, time.now_ms(), b->out());  // older: ignored
  EXPECT_EQ(b->bulk->transfers(), 1u);
  EXPECT_EQ(b->bulk->bytes_in_flight(), newer.size());
  // The first transfer's request reaches a, which no longer holds that version: refused.
  for (int i = 0; i < 3 && b->applied.empty(); ++i) {
    deliver(*b, *a);
    deliver(*a, *b);
  }
  ASSERT_EQ(b->applied.size(), 1u);
  EXPECT_EQ(b->applied[0].value, newer);
  EXPECT_EQ(a->counters.bulk_serve_refused, 1u);
}

// A newer version that lands while a transfer runs (here a local write) stops the transfer
// at its next complete window: the rest is not pulled, and the newer value stays.
TEST_F(BulkTest, ATransferStopsWhenANewerVersionLandsMeanwhile) {
  make();
  const wire::EntryRefMsg m = hold(*a, "big", value_of(400'000, 6));  // 302 chunks, 5 windows
  b->bulk->on_announce(a->addr, m, time.now_ms(), b->out());
  time.advance(1);
  ASSERT_TRUE(b->store->set("big", "newer, local").is_ok());
  for (int i = 0; i < 3 && b->bulk->transfers() > 0; ++i) {
    deliver(*b, *a);
    deliver(*a, *b);
  }
  EXPECT_EQ(b->bulk->transfers(), 0u);
  EXPECT_EQ(b->counters.bulk_superseded, 1u);
  EXPECT_TRUE(b->applied.empty());
  EXPECT_LE(a->counters.bulk_chunks_sent, 128u) << "no window past the first two";
  std::string v;
  ASSERT_TRUE(b->store->get("big", &v));
  EXPECT_EQ(v, "newer, local");
}

TEST_F(BulkTest, ChunksThatNameNothingOfOursAreCountedAndIgnored) {
  make();
  const wire::EntryRefMsg m = hold(*a, "big", value_of(10'000, 4));
  b->bulk->on_announce(a->addr, m, time.now_ms(), b->out());
  ASSERT_EQ(b->sink.sent.size(), 1u);
  // The transfer id from b's request.
  wire::ChunkRequestMsg q;
  {
    const auto body = std::span<const std::byte>(b->sink.sent[0].bytes)
                          .subspan(wire::kHeaderBytes + wire::kMessageHeaderBytes);
    ASSERT_TRUE(wire::decode(body, b->lim, &q));
  }
  const std::string data(q.chunk_bytes, 'z');
  auto chunk = [&](std::uint32_t xfer, std::uint32_t index, std::size_t len, const Address& from) {
    b->bulk->on_chunk(from, wire::ChunkMsg{xfer, index, bytes_of(data).first(len)}, time.now_ms(),
                      b->out(), [&](const EntryView&) { ADD_FAILURE() << "applied"; });
  };
  chunk(q.xfer + 1, 0, q.chunk_bytes, a->addr);     // another transfer
  chunk(q.xfer, 0, q.chunk_bytes, Address::ipv4(0x7f000001, 9));  // another source
  EXPECT_EQ(b->counters.bulk_chunks_unexpected, 2u);
  chunk(q.xfer, 1000, q.chunk_bytes, a->addr);      // past the last chunk
  chunk(q.xfer, 0, q.chunk_bytes - 1, a->addr);     // short
  chunk(q.xfer, wire::chunk_count(m.size, q.chunk_bytes) - 1, q.chunk_bytes, a->addr);  // long
  EXPECT_EQ(b->counters.bulk_chunks_bad, 3u);
  EXPECT_EQ(b->counters.bulk_chunks_received, 0u);
  // The real chunks still complete it.
  deliver(*b, *a);
  deliver(*a, *b);
  ASSERT_EQ(b->applied.size(), 1u);
  EXPECT_EQ(b->applied[0].value, value_of(10'000, 4));
}

}  // namespace
}  // namespace rumor
