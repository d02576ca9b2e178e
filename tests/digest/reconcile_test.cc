// Reconciliation against an oracle: after a session both stores hold exactly the LWW merge of
// what they held before (a naive full comparison), over random store pairs, every tree shape the
// protocol allows, and a lossy, duplicating, reordering channel. Failures print their seed.
#include "engine/sync/reconcile.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/clock.h"
#include "digest/hash.h"
#include "digest/riblt.h"
#include "engine/sync/reconcile_detail.h"

namespace rumor {
namespace {

using Contents = std::map<std::string, Entry>;

Contents contents(const Store& s) {
  Contents m;
  for (std::uint32_t i = 0; i < s.shard_count(); ++i) {
    s.shard(i).scan([&](const Entry& e) { m[e.key] = e; });
  }
  return m;
}

// The oracle: per key, the entry with the highest version of either side.
Contents lww_merge(const Contents& a, const Contents& b) {
  Contents m = a;
  for (const auto& [k, e] : b) {
    auto it = m.find(k);
    if (it == m.end() || it->second.version < e.version) m[k] = e;
  }
  return m;
}

constexpr std::uint64_t kNowMs = 50'000'000;

struct Pair {
  explicit Pair(std::uint32_t shards) {
    StoreConfig cfg;
    cfg.virtual_shards = shards;
    a = std::move(Store::create(cfg, 1, time).value());
    b = std::move(Store::create(cfg, 2, time).value());
  }
  ManualTimeSource time{kNowMs};
  std::unique_ptr<Store> a, b;
};

void put(Store& s, const std::string& key, const std::string& value, std::uint64_t ms,
         std::uint64_t node, bool tomb = false) {
  auto r = s.merge(EntryView{key, value, Version{hlc_pack(ms, 0), node}, tomb});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
}

// n common entries, then d differences of every kind. Returns how many are same-tick writes of
// one key by two nodes (one side's copy is then necessarily sent and found stale).
std::size_t fill(Pair& p, std::uint64_t seed, std::size_t n, std::size_t d,
                 std::size_t value_max = 40) {
  std::size_t ties = 0;
  std::mt19937_64 rng(seed);
  auto value = [&]() { return std::string(rng() % (value_max + 1), static_cast<char>('a' + rng() % 26)); };
  const std::uint64_t base = kNowMs - 100'000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string k = "key-" + std::to_string(i);
    const std::string v = value();
    const std::uint64_t ms = base + rng() % 1000;
    const bool tomb = rng() % 20 == 0;
    put(*p.a, k, v, ms, 3, tomb);
    put(*p.b, k, v, ms, 3, tomb);
  }
  for (std::size_t j = 0; j < d; ++j) {
    const std::string fresh = "new-" + std::to_string(j);
    const std::string old = "key-" + std::to_string(n ? rng() % n : 0);
    const std::uint64_t ms = base + 2000 + rng() % 1000;
    switch (n ? rng() % 7 : rng() % 2) {
      case 0: put(*p.a, fresh, value(), ms, 4); break;                 // only on a
      case 1: put(*p.b, fresh, value(), ms, 5); break;                 // only on b
      case 2: put(*p.a, old, value(), ms, 4); break;                   // b holds it older
      case 3: put(*p.b, old, value(), ms, 5); break;                   // a holds it older
      case 4: put(*p.a, old, "", ms, 4, true); break;                  // deleted on a
      case 5: put(*p.b, old, "", ms, 5, true); break;                  // deleted on b
      case 6:                                                          // same tick, two writers
        put(*p.a, old, value(), ms, 4);
        put(*p.b, old, value(), ms, 5);
        ++ties;
        break;
    }
  }
  return ties;
}

struct Channel {
  double loss = 0;        // per datagram, each direction
  double duplicate = 0;   // per delivered datagram
  bool reorder = false;
};

struct RunResult {
  int rounds = 0;
  bool complete = false;
  std::uint64_t bytes = 0;
  ReconcileStats initiator, responder;
};

// One session from `a` (initiator) to `b` (responder), in lock-step rounds: all requests the
// session will send, then all responses; a request still unanswered after a round was lost, so
// the driver's retransmission timer fires.
RunResult run_session(Store& a, Store& b, const ReconcileConfig& cfg, std::uint64_t seed,
                      const Channel& ch = {}, int rounds_max = 200) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  ReconcileSession s(a, 0, cfg, static_cast<std::uint32_t>(rng()));
  ReconcileResponder r(b, 0, cfg);
  std::vector<std::uint8_t> buf(cfg.datagram_bytes_max);
  RunResult out;
  while (!s.done() && out.rounds < rounds_max) {
    ++out.rounds;
    std::vector<std::vector<std::uint8_t>> requests, responses;
    while (std::size_t n = s.next_datagram(buf)) requests.emplace_back(buf.begin(), buf.begin() + n);
    for (auto& q : requests) {
      EXPECT_LE(q.size(), cfg.datagram_bytes_max);
      out.bytes += q.size();
      if (u(rng) < ch.loss) continue;
      const int copies = u(rng) < ch.duplicate ? 2 : 1;
      for (int c = 0; c < copies; ++c) {
        EXPECT_TRUE(r.respond(q, [&](std::span<const std::uint8_t> d) {
                     EXPECT_LE(d.size(), cfg.datagram_bytes_max);
                     out.bytes += d.size();
                     if (u(rng) >= ch.loss) responses.emplace_back(d.begin(), d.end());
                     if (u(rng) < ch.duplicate) responses.emplace_back(d.begin(), d.end());
                   }).is_ok());
      }
    }
    if (ch.reorder) std::shuffle(responses.begin(), responses.end(), rng);
    for (auto& d : responses) EXPECT_TRUE(s.on_datagram(d).is_ok());
    if (s.in_flight() > 0) s.on_timeout();
  }
  out.complete = s.complete();
  out.initiator = s.stats();
  out.responder = r.stats();
  return out;
}

// Sessions with fresh seeds until both sides are equal (a session can leave a difference behind
// only through a bloom false positive, a truncated-hash collision or an abandoned request).
int converge(Pair& p, const ReconcileConfig& cfg, std::uint64_t seed, const Channel& ch = {},
             int sessions_max = 8) {
  for (int i = 1; i <= sessions_max; ++i) {
    run_session(*p.a, *p.b, cfg, seed * 1000 + i, ch);
    if (contents(*p.a) == contents(*p.b)) return i;
  }
  return -1;
}

// The sums, then the Merkle walk: the tests of the walk (the Riblt tests below pick the
// rateless IBLT method, or let the responder choose).
ReconcileConfig config_for(std::uint32_t shards) {
  StoreConfig sc;
  sc.virtual_shards = shards;
  ReconcileConfig cfg = ReconcileConfig::for_store(sc);
  cfg.method = ReconcileConfig::Method::kMerkle;
  return cfg;
}

void expect_converged_to(const Pair& p, const Contents& want, std::uint64_t seed) {
  const Contents ga = contents(*p.a), gb = contents(*p.b);
  EXPECT_EQ(ga.size(), want.size()) << "seed " << seed;
  EXPECT_TRUE(ga == want) << "a differs from the LWW merge; seed " << seed;
  EXPECT_TRUE(gb == want) << "b differs from the LWW merge; seed " << seed;
}

TEST(Reconcile, EqualStoresTakeOneRoundTrip) {
  Pair p(64);
  fill(p, 1, 5000, 0);
  const RunResult r = run_session(*p.a, *p.b, config_for(64), 1);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.rounds, 1);
  EXPECT_EQ(r.initiator.datagrams_sent, 1u);  // 64 roots in one datagram
  EXPECT_EQ(r.responder.entries_sent + r.initiator.entries_sent, 0u);
}

// One difference of any kind is named by the sums (digest/sums.h): one round trip for the
// summary, one for the push or pull (none when the responder holds the entry: it comes with the
// verdict), no tree walk, nothing stale on the wire.
TEST(Reconcile, OneDifferenceSettlesFromTheSums) {
  for (int kind = 0; kind < 6; ++kind) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE("kind " + std::to_string(kind) + " seed " + std::to_string(seed));
      Pair p(64);
      fill(p, seed, 3000, 0);
      const std::string old = "key-" + std::to_string(seed * 37);
      const std::uint64_t ms = kNowMs - 50'000;
      switch (kind) {
        case 0: put(*p.a, "fresh", "value", ms, 4); break;
        case 1: put(*p.b, "fresh", "value", ms, 5); break;
        case 2: put(*p.a, old, "newer", ms, 4); break;
        case 3: put(*p.b, old, "newer", ms, 5); break;
        case 4: put(*p.a, old, "", ms, 4, true); break;
        case 5: put(*p.b, old, "", ms, 5, true); break;
      }
      const Contents want = lww_merge(contents(*p.a), contents(*p.b));
      const RunResult r = run_session(*p.a, *p.b, config_for(64), seed);
      EXPECT_TRUE(r.complete);
      expect_converged_to(p, want, seed);
      EXPECT_LE(r.rounds, kind == 1 ? 1 : 2);
      EXPECT_EQ(r.initiator.entries_applied + r.responder.entries_applied, 1u);
      EXPECT_EQ(r.initiator.entries_stale + r.responder.entries_stale, 0u);
      EXPECT_LT(r.bytes, 250u);
    }
  }
}

TEST(Reconcile, OracleOneSessionSmallAndMedium) {
  struct Case {
    std::uint32_t shards;
    std::size_t n, d;
  };
  for (const Case c : {Case{1, 0, 10}, Case{4, 200, 50}, Case{16, 20000, 300}, Case{64, 50000, 1},
                       Case{64, 50000, 2000}}) {
    const std::uint64_t seed = c.n * 31 + c.d;
    SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(c.n) + " d " +
                 std::to_string(c.d));
    Pair p(c.shards);
    const std::size_t ties = fill(p, seed, c.n, c.d);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    const ReconcileConfig cfg = config_for(c.shards);
    const RunResult r = run_session(*p.a, *p.b, cfg, seed);
    EXPECT_TRUE(r.complete);
    expect_converged_to(p, want, seed);
    // Round trips: roots, then one per two tree levels, the summaries, and the last pushes.
    EXPECT_LE(r.rounds, cfg.tree.depth_max + 2);
    // Nothing is sent twice and nothing stale crosses: every entry sent is applied.
    EXPECT_EQ(r.initiator.entries_stale + r.responder.entries_stale,
              r.initiator.entries_sent + r.responder.entries_sent -
                  (r.initiator.entries_applied + r.responder.entries_applied));
    EXPECT_LE(r.initiator.entries_stale + r.responder.entries_stale, ties);  // ties only
  }
}

TEST(Reconcile, FullSyncEitherDirection) {
  for (const bool empty_initiator : {true, false}) {
    Pair p(8);
    fill(p, 5, 0, 0);
    for (int i = 0; i < 30000; ++i) {
      put(empty_initiator ? *p.b : *p.a, "k" + std::to_string(i), "value", kNowMs - 5000, 7);
    }
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    const RunResult r = run_session(*p.a, *p.b, config_for(8), 9);
    EXPECT_TRUE(r.complete);
    expect_converged_to(p, want, 9);
    EXPECT_EQ(r.initiator.entries_applied + r.responder.entries_applied, 30000u);
  }
}

TEST(Reconcile, BloomFiltersAtDepthMax) {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Pair p(4);
    fill(p, seed, 8000, 400);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    ReconcileConfig cfg = config_for(4);
    cfg.tree.fanout_log2 = 2;  // depth 1: 4 buckets of ~500 entries per shard
    cfg.tree.depth_max = 1;
    const int sessions = converge(p, cfg, seed);
    EXPECT_GE(sessions, 1);
    EXPECT_LE(sessions, 3);  // a false positive costs a session, rarely two
    expect_converged_to(p, want, seed);
  }
}

TEST(Reconcile, LossDuplicationAndReorderStillConverge) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Pair p(16);
    fill(p, seed + 100, 10000, 500);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    ReconcileConfig cfg = config_for(16);
    cfg.attempts_max = 40;
    const Channel ch{0.2, 0.1, true};
    const RunResult r = run_session(*p.a, *p.b, cfg, seed, ch);
    EXPECT_TRUE(r.complete);
    EXPECT_GT(r.initiator.retransmits, 0u);
    expect_converged_to(p, want, seed);
  }
}

TEST(Reconcile, AbandonedRequestsAreMadeUpByTheNextSession) {
  const std::uint64_t seed = 77;
  Pair p(16);
  fill(p, seed, 10000, 500);
  const Contents want = lww_merge(contents(*p.a), contents(*p.b));
  ReconcileConfig cfg = config_for(16);
  cfg.attempts_max = 1;
  const Channel lossy{0.3, 0, false};
  const RunResult first = run_session(*p.a, *p.b, cfg, seed, lossy);
  EXPECT_FALSE(first.complete);  // with one attempt, 30% loss abandons requests
  EXPECT_NE(contents(*p.a), want);
  cfg.attempts_max = 6;
  EXPECT_GT(converge(p, cfg, seed, lossy, 10), 0);
  expect_converged_to(p, want, seed);
}

TEST(Reconcile, SmallBoundsStillConverge) {
  // Tiny in-flight and tracking bounds force the exchange over many datagrams and sessions.
  const std::uint64_t seed = 8;
  Pair p(4);
  fill(p, seed, 3000, 800);
  const Contents want = lww_merge(contents(*p.a), contents(*p.b));
  ReconcileConfig cfg = config_for(4);
  cfg.requests_in_flight_max = 3;
  cfg.requests_tracked_max = 40;
  cfg.datagram_bytes_max = 600;
  cfg.list_items_max = 8;
  EXPECT_GT(converge(p, cfg, seed, {}, 200), 0);
  expect_converged_to(p, want, seed);
}

// Two different keys whose key-hash fingerprints collide (same top 32 bits in a one-shard store)
// cannot be told apart by summaries; the conservative rule still converges.
TEST(Reconcile, FingerprintCollisionConverges) {
  std::vector<std::pair<std::uint32_t, int>> fps;
  for (int i = 0; i < 400000; ++i) {
    fps.emplace_back(static_cast<std::uint32_t>(Store::hash_key("c" + std::to_string(i)) >> 32), i);
  }
  std::sort(fps.begin(), fps.end());
  int x = -1, y = -1;
  for (std::size_t i = 1; i < fps.size() && x < 0; ++i) {
    if (fps[i].first == fps[i - 1].first) x = fps[i - 1].second, y = fps[i].second;
  }
  ASSERT_GE(x, 0) << "no collision among 400k keys";
  for (int variant = 0; variant < 4; ++variant) {
    Pair p(1);
    const std::string kx = "c" + std::to_string(x), ky = "c" + std::to_string(y);
    const bool x_newer = variant & 1;
    put(*p.a, kx, "x", kNowMs - (x_newer ? 10 : 20), 4);
    put(*p.b, ky, "y", kNowMs - (x_newer ? 20 : 10), 5);
    if (variant & 2) put(*p.a, "other", "o", kNowMs - 30, 4);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    EXPECT_GT(converge(p, config_for(1), 11 + variant), 0) << "variant " << variant;
    expect_converged_to(p, want, 11);
  }
}

TEST(Reconcile, MismatchedParametersAndGarbageAreDropped) {
  Pair p(4);
  fill(p, 3, 100, 10);
  ReconcileConfig cfg = config_for(4);
  ReconcileSession s(*p.a, 0, cfg, 1);
  std::vector<std::uint8_t> buf(cfg.datagram_bytes_max);
  const std::size_t n = s.next_datagram(buf);
  ASSERT_GT(n, 0u);
  ReconcileConfig other = cfg;
  other.tree.fanout_log2 = 4;
  ReconcileResponder r(*p.b, 0, other);
  int emitted = 0;
  EXPECT_FALSE(r.respond(std::span(buf.data(), n), [&](auto) { ++emitted; }).is_ok());
  EXPECT_EQ(r.stats().mismatched, 1u);
  const std::uint8_t junk[] = {1, 1, 4, 4, 4, 2, 0};
  EXPECT_FALSE(r.respond(junk, [&](auto) { ++emitted; }).is_ok());
  EXPECT_EQ(r.stats().malformed, 1u);
  EXPECT_EQ(emitted, 0);
  // A response to another session is dropped by the initiator.
  ReconcileResponder good(*p.b, 0, cfg);
  ReconcileSession other_session(*p.a, 0, cfg, 99);
  (void)good.respond(std::span(buf.data(), n), [&](std::span<const std::uint8_t> d) {
    EXPECT_FALSE(other_session.on_datagram(d).is_ok());
  });
  EXPECT_GT(other_session.stats().mismatched, 0u);
}

// Random parameters, sizes and difference mixes: converges to the oracle.
RC_GTEST_PROP(Reconcile, ConvergesToTheLwwMergeForAnyParameters, ()) {
  const auto seed = *rc::gen::arbitrary<std::uint32_t>();
  const auto shards_log2 = *rc::gen::inRange<std::uint32_t>(0, 4);
  const auto f = *rc::gen::inRange<std::uint32_t>(1, 7);
  const auto depth = *rc::gen::inRange<std::uint32_t>(1, std::min(6u, 32 / f) + 1);
  const auto hash_bytes = *rc::gen::inRange<std::uint32_t>(3, 9);
  const auto list_max = *rc::gen::inRange<std::uint32_t>(1, 40);
  const auto n = *rc::gen::inRange<std::size_t>(0, 600);
  const auto d = *rc::gen::inRange<std::size_t>(0, 120);
  const bool lossy = *rc::gen::arbitrary<bool>();
  Pair p(1u << shards_log2);
  fill(p, seed, n, d);
  const Contents want = lww_merge(contents(*p.a), contents(*p.b));
  ReconcileConfig cfg = config_for(1u << shards_log2);
  cfg.tree.fanout_log2 = static_cast<std::uint8_t>(f);
  cfg.tree.depth_max = static_cast<std::uint8_t>(depth);
  cfg.tree.hash_bytes = static_cast<std::uint8_t>(hash_bytes);
  cfg.list_items_max = list_max;
  cfg.attempts_max = 30;
  RC_ASSERT(cfg.validate().is_ok());
  const Channel ch{lossy ? 0.15 : 0.0, lossy ? 0.05 : 0.0, lossy};
  const int sessions = converge(p, cfg, seed, ch, 10);
  RC_ASSERT(sessions > 0);
  RC_ASSERT(contents(*p.a) == want);
  RC_ASSERT(contents(*p.b) == want);
}

// ---- rateless IBLT (docs/reconciliation.md "Rateless IBLT") ----

ReconcileConfig riblt_config(std::uint32_t shards) {
  ReconcileConfig cfg = config_for(shards);
  cfg.method = ReconcileConfig::Method::kRiblt;
  return cfg;
}

TEST(Riblt, OracleOneSessionEveryKindOfDifference) {
  struct Case {
    std::uint32_t shards;
    std::size_t n, d;
  };
  for (const Case c : {Case{1, 0, 10}, Case{4, 200, 50}, Case{16, 20000, 300}, Case{64, 50000, 2},
                       Case{64, 50000, 2000}, Case{8, 3000, 3000}}) {
    const std::uint64_t seed = c.n * 31 + c.d;
    SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(c.n) + " d " +
                 std::to_string(c.d));
    Pair p(c.shards);
    const std::size_t ties = fill(p, seed, c.n, c.d);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    const RunResult r = run_session(*p.a, *p.b, riblt_config(c.shards), seed);
    EXPECT_TRUE(r.complete);
    expect_converged_to(p, want, seed);
    EXPECT_EQ(r.initiator.method_riblt, 1u);
    EXPECT_EQ(r.initiator.riblt_failed, 0u);
    // The stream is sized to decode at once: the symbols, then the pushes and pulls (a short
    // stream costs one more round trip).
    EXPECT_LE(r.rounds, 3);
    // Only same-tick writes of one key by two writers send an entry that loses, and a few
    // pairs of differing keys that share a 20-bit key id (~D^2 / 2^21 of them).
    EXPECT_LE(r.initiator.entries_stale + r.responder.entries_stale, ties + 1 + c.d / 200);
  }
}

// A store's symbols (reconcile_detail::owner_symbols) against symbols computed from its
// entries, in ranges before, across and past the prefix, while shards grow past
// Shard::kRibltPrefixEntriesMin (from then on they keep a prefix) and others stay below it (their
// symbols come from their entries).
TEST(Riblt, OwnerSymbolsEqualTheEntriesSymbolsWithAndWithoutPrefixes) {
  ManualTimeSource time{kNowMs};
  StoreConfig cfg;
  cfg.virtual_shards = 8;
  auto store = std::move(Store::create(cfg, 1, time).value());
  const std::uint64_t k = cfg.riblt_prefix_symbols;
  std::mt19937_64 rng(7);
  auto check = [&](const char* when) {
    for (const auto& range : {std::pair<std::uint64_t, std::uint64_t>{0, 300}, {k - 100, 300},
                              {k + 10, 50}}) {
      // Plain variables, not structured bindings: clang 14 cannot capture those in a lambda.
      const std::uint64_t first = range.first, count = range.second;
      std::vector<digest::RibltSymbol> want(count), got(count);
      for (std::uint32_t s = 0; s < store->shard_count(); ++s) {
        store->shard(s).for_each_in_hash_range(0, ~std::uint64_t{0}, [&](std::uint64_t h,
                                                                           const EntryView& e) {
          digest::riblt_accumulate(
              digest::riblt_element(h, e.version.hlc,
                                    digest::entry_hash(h, e.version, e.tombstone),
                                    store->riblt_key()),
              1, store->riblt_key(), first, want);
        });
      }
      reconcile_detail::owner_symbols(*store, 0, first, got);
      for (std::size_t i = 0; i < count; ++i) {
        ASSERT_EQ(got[i], want[i]) << when << ": symbol " << first + i;
      }
    }
  };
  std::size_t with_prefix = 0;
  for (int i = 0; i < 400; ++i) {
    // Shards 0..3 take most keys (they outgrow the threshold), 4..7 a few.
    std::string key;
    do {
      key = "k" + std::to_string(rng());
    } while ((store->shard_of(key) < 4) != (i % 40 != 0));
    put(*store, key, "v", kNowMs - 1000 + i, 3, rng() % 10 == 0);
    if (i % 50 == 0) check("growing");
  }
  for (std::uint32_t s = 0; s < store->shard_count(); ++s) {
    with_prefix += store->shard(s).riblt() != nullptr ? 1 : 0;
  }
  EXPECT_EQ(with_prefix, 4u);
  check("grown");
}

TEST(Riblt, LossDuplicationAndReorderStillConverge) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Pair p(16);
    fill(p, seed + 100, 10000, 500);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    ReconcileConfig cfg = riblt_config(16);
    cfg.attempts_max = 40;
    const Channel ch{0.2, 0.1, true};
    const RunResult r = run_session(*p.a, *p.b, cfg, seed, ch);
    EXPECT_TRUE(r.complete);
    EXPECT_GT(r.initiator.retransmits, 0u);
    expect_converged_to(p, want, seed);
  }
}

TEST(Riblt, LosingAnyOneDatagramStillConverges) {
  // Each run drops exactly the k-th datagram of the exchange (either direction).
  for (int k = 0; k < 12; ++k) {
    SCOPED_TRACE("dropped datagram " + std::to_string(k));
    Pair p(8);
    fill(p, 300 + k, 2000, 40);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    const ReconcileConfig cfg = riblt_config(8);
    ReconcileSession s(*p.a, 0, cfg, 1234 + k);
    ReconcileResponder r(*p.b, 0, cfg);
    std::vector<std::uint8_t> buf(cfg.datagram_bytes_max);
    int seen = 0, rounds = 0;
    while (!s.done() && rounds++ < 50) {
      std::vector<std::vector<std::uint8_t>> responses;
      while (std::size_t n = s.next_datagram(buf)) {
        if (seen++ == k) continue;
        (void)r.respond(std::span(buf.data(), n), [&](std::span<const std::uint8_t> d) {
          if (seen++ != k) responses.emplace_back(d.begin(), d.end());
        });
      }
      for (auto& d : responses) EXPECT_TRUE(s.on_datagram(d).is_ok());
      if (s.in_flight() > 0) s.on_timeout();
    }
    EXPECT_TRUE(s.complete());
    expect_converged_to(p, want, 300 + k);
  }
}

TEST(Riblt, SetsThatChangeUnderTheStreamStartItOver) {
  // The first answer's later datagrams are lost and both sides write before the retransmission:
  // the symbols asked for again come from other snapshots, so the stream starts over (tags
  // tell), and the session still ends with both sides at the LWW merge.
  Pair p(8);
  fill(p, 77, 3000, 400);
  const ReconcileConfig cfg = riblt_config(8);
  ReconcileSession s(*p.a, 0, cfg, 4242);
  ReconcileResponder r(*p.b, 0, cfg);
  std::vector<std::uint8_t> buf(cfg.datagram_bytes_max);
  int round = 0;
  while (!s.done() && round < 60) {
    ++round;
    std::vector<std::vector<std::uint8_t>> responses;
    while (std::size_t n = s.next_datagram(buf)) {
      (void)r.respond(std::span(buf.data(), n), [&](std::span<const std::uint8_t> d) {
        responses.emplace_back(d.begin(), d.end());
      });
    }
    if (round == 1) responses.resize(1);  // only the verdict's datagram arrives
    for (auto& d : responses) EXPECT_TRUE(s.on_datagram(d).is_ok());
    if (round == 1) {
      put(*p.a, "late-a", "x", kNowMs - 7, 4);
      put(*p.b, "late-b", "y", kNowMs - 7, 5);
    }
    if (s.in_flight() > 0) s.on_timeout();
  }
  EXPECT_TRUE(s.complete());
  EXPECT_GE(s.stats().riblt_moved, 1u);
  EXPECT_EQ(s.stats().method_riblt, 1u);
  EXPECT_EQ(contents(*p.a), contents(*p.b));
}

TEST(Riblt, VersionsFurtherApartThanTheTickWindowConverge) {
  // Ticks order versions only within +-35 minutes; beyond, the wrong side may send first, and
  // the protocol repairs it (a stale push is answered with the newer entry, a stale pull is
  // followed by a push).
  for (int variant = 0; variant < 4; ++variant) {
    Pair p(4);
    fill(p, 40 + variant, 500, 0);
    const std::uint64_t far = (variant & 1) ? 50ull * 60 * 1000 : 3ull * 3600 * 1000;
    for (int i = 0; i < 5; ++i) {
      const std::string k = "key-" + std::to_string(i * 7);
      Store& newer = (variant & 2) ? *p.a : *p.b;
      put(newer, k, "newer", kNowMs - 1000 + static_cast<std::uint64_t>(i), 6);
      Store& older = (variant & 2) ? *p.b : *p.a;
      put(older, k, "older", kNowMs - 1000 - far, 6);
    }
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    EXPECT_GT(converge(p, riblt_config(4), 50 + variant), 0) << "variant " << variant;
    expect_converged_to(p, want, 50 + variant);
  }
}

TEST(Riblt, AutoPicksSumsRibltOrWalkByTheEstimate) {
  for (const std::size_t d : {std::size_t{1}, std::size_t{40}, std::size_t{2000}}) {
    SCOPED_TRACE("d " + std::to_string(d));
    Pair p(16);
    fill(p, 7, 20000, 0);
    for (std::size_t j = 0; j < d; ++j) put(*p.a, "only-a-" + std::to_string(j), "v", kNowMs - 9, 4);
    const Contents want = lww_merge(contents(*p.a), contents(*p.b));
    ReconcileConfig cfg = config_for(16);
    cfg.method = ReconcileConfig::Method::kAuto;
    cfg.riblt_walk_every = 0;
    const RunResult r = run_session(*p.a, *p.b, cfg, 1);
    expect_converged_to(p, want, 7);
    EXPECT_EQ(r.initiator.method_sums, d == 1 ? 1u : 0u);
    EXPECT_EQ(r.initiator.method_riblt, d == 40 ? 1u : 0u);
    EXPECT_EQ(r.initiator.method_walk, d == 2000 ? 1u : 0u);
    EXPECT_EQ(r.responder.method_riblt, d == 40 ? 1u : 0u);
  }
}

TEST(Riblt, StoresWithoutSymbolsUseTheWalk) {
  StoreConfig sc;
  sc.virtual_shards = 8;
  sc.riblt_prefix_symbols = 0;
  ManualTimeSource time{kNowMs};
  auto a = std::move(Store::create(sc, 1, time).value());
  auto b = std::move(Store::create(sc, 2, time).value());
  for (int i = 0; i < 300; ++i) {
    put(*a, "k" + std::to_string(i), "v", kNowMs - 100, 3);
    if (i % 10) put(*b, "k" + std::to_string(i), "v", kNowMs - 100, 3);
  }
  const Contents want = lww_merge(contents(*a), contents(*b));
  ReconcileConfig cfg = config_for(8);
  cfg.method = ReconcileConfig::Method::kAuto;
  const RunResult r = run_session(*a, *b, cfg, 3);
  EXPECT_EQ(r.initiator.method_walk, 1u);
  EXPECT_EQ(contents(*a), want);
  EXPECT_EQ(contents(*b), want);
}

TEST(Riblt, ForeignKeysSymbolsDecodeNothing) {
  // Two stores with different cluster keys: checksums never match, the stream does not decode
  // within its bound, and the session walks instead.
  StoreConfig sa, sb;
  sa.virtual_shards = sb.virtual_shards = 4;
  sa.riblt_key = 1;
  sb.riblt_key = 2;
  ManualTimeSource time{kNowMs};
  auto a = std::move(Store::create(sa, 1, time).value());
  auto b = std::move(Store::create(sb, 2, time).value());
  for (int i = 0; i < 200; ++i) put(i % 2 ? *a : *b, "k" + std::to_string(i), "v", kNowMs - 100, 3);
  const Contents want = lww_merge(contents(*a), contents(*b));
  ReconcileConfig cfg = riblt_config(4);
  cfg.riblt_symbols_max = 2048;
  const RunResult r = run_session(*a, *b, cfg, 5);
  EXPECT_EQ(r.initiator.riblt_failed, 1u);
  EXPECT_EQ(r.initiator.method_walk, 1u);
  EXPECT_EQ(contents(*a), want);
  EXPECT_EQ(contents(*b), want);
}

}  // namespace
}  // namespace rumor
