// The durable store (engine/store/durable.h, include/rumor/durable.h): what a data directory
// gives back after a restart, what it refuses, and the paths that only trouble reaches (a full
// journal queue, a damaged file, a node away longer than the tombstone grace period).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/store/durable.h"
#include "engine/store/store.h"
#include "rumor/driver.h"
#include "rumor/durable.h"
#include "rumor/node.h"
#include "tests/support/discard_sink.h"

namespace rumor {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "rumor-durable-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string data() const { return path_ + "/data"; }

 private:
  std::string path_;
};

NodeConfig config(const std::string& name) {
  NodeConfig c = NodeConfig::local();
  c.name = name;
  c.advertise = *Address::parse("127.0.0.1:1");
  return c;
}

// A node with a data directory, driven from the test's thread.
struct DurableNode {
  std::unique_ptr<Node> node;
  std::unique_ptr<Durability> durability;
  testing::DiscardSink sink;

  Status open(const std::string& dir, const NodeConfig& cfg, TimeSource& time,
              SyncMode mode = SyncMode::kAlways, std::uint32_t queue_depth = 65536) {
    auto n = Node::create(cfg, time);
    if (!n) return n.status();
    node = std::move(n.value());
    DurableConfig dc;
    dc.dir = dir;
    dc.sync = mode;
    dc.queue_depth = queue_depth;
    auto d = Durability::open(dc);
    if (!d) return d.status();
    durability = std::move(d.value());
    if (Status s = durability->restore(*node, time); !s) return s;
    if (Status s = durability->start(*node); !s) return s;
    NodeDriver::of(*node).start(sink);
    return Status::ok();
  }
  // Everything this node wrote is on disk.
  void settle() {
    ASSERT_TRUE(durability->wait_durable(0, durability->ticket(0), 10'000).is_ok())
        << durability->last_error();
  }
  void close() {
    durability->stop();
    durability.reset();
    node.reset();
  }
};

TEST(Durable, WritesDeletesAndVersionsSurviveARestart) {
  TempDir dir;
  SystemTimeSource clock;
  Version before;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock).is_ok());
    ASSERT_TRUE(a.node->set("service_version", "v1.2.4").is_ok());
    ASSERT_TRUE(a.node->set("gone", "soon").is_ok());
    ASSERT_TRUE(a.node->del("gone").is_ok());
    ASSERT_TRUE(a.node->set(std::string(300, 'k').substr(0, 200), std::string(5000, 'x')).is_ok());
    before = a.node->get_entry("service_version")->version;
    a.settle();
    EXPECT_EQ(a.durability->counters().queue_full, 0u);
    a.close();
  }
  DurableNode b;
  ASSERT_TRUE(b.open(dir.data(), config("a"), clock).is_ok());
  EXPECT_TRUE(b.durability->existed());
  auto e = b.node->get_entry("service_version");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, "v1.2.4");
  EXPECT_EQ(e->version, before);
  auto g = b.node->get_entry("gone");
  ASSERT_TRUE(g.has_value());
  EXPECT_TRUE(g->deleted);  // the tombstone came back, so the key cannot be resurrected
  EXPECT_EQ(b.node->get(std::string(200, 'k')), std::string(5000, 'x'));
  EXPECT_EQ(b.durability->counters().loaded_entries, 2u);
  EXPECT_EQ(b.durability->counters().loaded_tombstones, 1u);
  // A new write after the restart is newer than everything written before it.
  ASSERT_TRUE(b.node->set("service_version", "v1.2.5").is_ok());
  EXPECT_GT(b.node->get_entry("service_version")->version, before);
  b.close();
}

TEST(Durable, TheClockGoingBackAcrossARestartCannotReissueVersions) {
  TempDir dir;
  ManualTimeSource clock(10'000'000);
  Version before;
  std::uint64_t incarnation = 0;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock).is_ok());
    ASSERT_TRUE(a.node->set("k", "v1").is_ok());
    before = a.node->get_entry("k")->version;
    incarnation = a.node->members()[0].incarnation;
    a.settle();
    a.close();
  }
  clock.set(5'000'000);  // an hour and a half earlier
  DurableNode b;
  ASSERT_TRUE(b.open(dir.data(), config("a"), clock).is_ok());
  ASSERT_TRUE(b.node->set("k", "v2").is_ok());
  EXPECT_GT(b.node->get_entry("k")->version, before);
  EXPECT_EQ(b.node->get("k"), "v2");
  // The incarnation too: peers must take the restarted node's alive over its old record.
  EXPECT_GT(b.node->members()[0].incarnation, incarnation);
  b.close();
}

TEST(Durable, AnotherNodesDirectoryIsRefused) {
  TempDir dir;
  SystemTimeSource clock;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock).is_ok());
    a.close();
  }
  DurableNode b;
  Status s = b.open(dir.data(), config("b"), clock);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("belongs to node 'a'"), std::string::npos) << s.to_string();
}

TEST(Durable, ADirectoryIsUsedByOneProcessAtATime) {
  TempDir dir;
  DurableConfig dc;
  dc.dir = dir.data();
  auto first = Durability::open(dc);
  ASSERT_TRUE(first.is_ok());
  auto second = Durability::open(dc);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable) << second.status().to_string();
}

TEST(Durable, TombstonesPastTheGracePeriodAreDroppedAtLoad) {
  TempDir dir;
  ManualTimeSource clock(100'000'000);
  NodeConfig cfg = config("a");
  cfg.store.tombstone_grace_ms = 60'000;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), cfg, clock).is_ok());
    ASSERT_TRUE(a.node->set("live", "1").is_ok());
    ASSERT_TRUE(a.node->del("dead").is_ok());
    a.settle();
    a.close();
  }
  clock.advance(120'000);
  {
    DurableNode b;
    ASSERT_TRUE(b.open(dir.data(), cfg, clock).is_ok());
    EXPECT_FALSE(b.node->get_entry("dead").has_value());
    EXPECT_EQ(b.node->get("live"), "1");
    EXPECT_EQ(b.durability->counters().expired_tombstones, 1u);
    b.close();
  }
  DurableNode c;  // and they were erased from the directory, not only skipped
  ASSERT_TRUE(c.open(dir.data(), cfg, clock).is_ok());
  EXPECT_EQ(c.durability->counters().expired_tombstones, 0u);
  EXPECT_EQ(c.durability->counters().loaded_tombstones, 0u);
  c.close();
}

TEST(Durable, AFullJournalQueueIsRecoveredByARewriteFromMemory) {
  TempDir dir;
  SystemTimeSource clock;
  const std::uint64_t hlc = hlc_pack(clock.now_ms(), 0);
  constexpr int kEntries = 5000;
  {
    DurableNode a;
    // A queue of 4 records: merges (a peer's entries) overflow it at once. Local writes would be
    // refused with kBusy instead; merges cannot be, so their records are dropped and the
    // persister rewrites the core's shards from memory.
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock, SyncMode::kAlways, 4).is_ok());
    Store& store = NodeInternals::store(*a.node);
    for (int i = 0; i < kEntries; ++i) {
      const std::string k = "peer-key-" + std::to_string(i);
      ASSERT_TRUE(store.merge(EntryView{k, "value", Version{hlc + static_cast<std::uint64_t>(i), 77},
                                        false})
                      .is_ok());
    }
    // Then a delete of one of them, also through the merge path.
    ASSERT_TRUE(store.merge(EntryView{"peer-key-7", "", Version{hlc + kEntries, 77}, true}).is_ok());
    a.settle();
    const DurableCounters c = a.durability->counters();
    EXPECT_GT(c.queue_full, 0u);
    EXPECT_GE(c.rewrites, 1u);
    a.close();
  }
  DurableNode b;
  ASSERT_TRUE(b.open(dir.data(), config("a"), clock).is_ok());
  for (int i = 0; i < kEntries; ++i) {
    auto e = b.node->get_entry("peer-key-" + std::to_string(i));
    ASSERT_TRUE(e.has_value()) << i;
    EXPECT_EQ(e->deleted, i == 7) << i;
  }
  b.close();
}

TEST(Durable, LocalWritesWaitWhenTheJournalIsFull) {
  TempDir dir;
  SystemTimeSource clock;
  DurableNode a;
  ASSERT_TRUE(a.open(dir.data(), config("a"), clock, SyncMode::kBatch, 4).is_ok());
  int busy = 0, ok = 0;
  for (int i = 0; i < 2000 && busy == 0; ++i) {
    Status s = a.node->set("k" + std::to_string(i), "v");
    (s ? ok : busy) += 1;
    if (!s) {
      EXPECT_EQ(s.code(), Code::kBusy) << s.to_string();
    }
  }
  EXPECT_GT(busy, 0);  // a queue of 4 and a persister that commits every 100 ms
  a.settle();
  EXPECT_EQ(a.durability->counters().queue_full, 0u);  // refused, not dropped
  a.close();
  DurableNode b;
  ASSERT_TRUE(b.open(dir.data(), config("a"), clock).is_ok());
  EXPECT_EQ(b.durability->counters().loaded_entries, static_cast<std::uint64_t>(ok));
  b.close();
}

// Meta values alone (a keyring change on an idle node, an incarnation) are committed too, in
// every mode, and before stop() returns.
TEST(Durable, MetaValuesAloneAreCommitted) {
  for (SyncMode mode : {SyncMode::kAlways, SyncMode::kBatch, SyncMode::kOff}) {
    TempDir dir;
    SystemTimeSource clock;
    {
      DurableNode a;
      ASSERT_TRUE(a.open(dir.data(), config("a"), clock, mode).is_ok());
      a.durability->put_meta("keyring", "require\nsecret");
      a.close();
    }
    DurableConfig dc;
    dc.dir = dir.data();
    auto d = Durability::open(dc);
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ((*d)->get_meta("keyring"), std::optional<std::string>("require\nsecret"))
        << sync_mode_name(mode);
  }
}

// Merges arriving faster than a tiny queue drains, round after round: every round's rewrite
// must finish and the core's ticket must move past its gaps (the deadline is for liveness; the
// speed of a rewrite is the benchmarks' business).
TEST(Durable, RewritesKeepUpWithSustainedMerges) {
  TempDir dir;
  SystemTimeSource clock;
  DurableNode a;
  ASSERT_TRUE(a.open(dir.data(), config("a"), clock, SyncMode::kOff, 64).is_ok());
  Store& store = NodeInternals::store(*a.node);
  const std::uint64_t hlc = hlc_pack(clock.now_ms(), 0);
  std::uint64_t v = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 400; ++i) {
      const std::string k = "m" + std::to_string((round * 400 + i) % 5000);
      ASSERT_TRUE(store.merge(EntryView{k, "v", Version{hlc + ++v, 9}, false}).is_ok());
    }
    ASSERT_TRUE(a.durability->wait_durable(0, a.durability->ticket(0), 5'000).is_ok())
        << "round " << round << ": " << a.durability->last_error();
  }
  EXPECT_GT(a.durability->counters().rewrites, 0u);
  a.close();
  DurableNode b;
  ASSERT_TRUE(b.open(dir.data(), config("a"), clock).is_ok());
  EXPECT_EQ(b.durability->counters().loaded_entries, 5000u);
  b.close();
}

void damage(const std::string& dir, const std::string& suffix) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const auto size = fs::file_size(e.path());
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    // Overwrite a stretch in the middle (not the tail a crash may tear).
    for (std::uintmax_t at = size / 3; at < size / 3 + 64 && at < size; ++at) {
      f.seekp(static_cast<std::streamoff>(at));
      f.put('\x5a');
    }
  }
}

TEST(Durable, ADamagedLogIsAClearErrorNotACrashOrASilentLoss) {
  TempDir dir;
  SystemTimeSource clock;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock).is_ok());
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(a.node->set("k" + std::to_string(i), "value").is_ok());
    a.settle();
    a.close();
  }
  damage(dir.data(), ".log");
  DurableNode b;
  Status s = b.open(dir.data(), config("a"), clock);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kMalformed) << s.to_string();
  EXPECT_NE(s.message().find("move the directory aside"), std::string::npos) << s.to_string();
}

TEST(Durable, ADamagedManifestIsAClearError) {
  TempDir dir;
  SystemTimeSource clock;
  {
    DurableNode a;
    ASSERT_TRUE(a.open(dir.data(), config("a"), clock).is_ok());
    ASSERT_TRUE(a.node->set("k", "v").is_ok());
    a.settle();
    a.close();
  }
  for (const auto& e : fs::directory_iterator(dir.data())) {
    if (e.path().filename().string().rfind("MANIFEST", 0) == 0) {
      std::ofstream(e.path(), std::ios::trunc) << "not a manifest";
    }
  }
  DurableNode b;
  Status s = b.open(dir.data(), config("a"), clock);
  ASSERT_FALSE(s.is_ok());
  EXPECT_TRUE(s.code() == Code::kMalformed || s.code() == Code::kIo) << s.to_string();
}

TEST(Durable, ADirectoryRumorDidNotWriteIsRefused) {
  TempDir dir;
  fs::create_directories(dir.data());
  std::ofstream(dir.data() + "/CURRENT") << "MANIFEST-000001\n";
  DurableConfig dc;
  dc.dir = dir.data();
  auto d = Durability::open(dc);
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().code(), Code::kOk);
}

// The sync-epoch state survives a restart, so a node that was away longer than the tombstone
// grace period still discards what a peer held (and may have deleted and purged since), keeping
// only what it wrote after its last completed sync.
TEST(Durable, SyncEpochsSurviveARestartSoStaleDataIsStillDiscarded) {
  TempDir dir;
  ManualTimeSource clock(50'000'000);
  StoreConfig sc;
  sc.virtual_shards = 1;
  sc.tombstone_grace_ms = 60'000;
  {
    auto db = DurableStore::open(dir.data());
    ASSERT_TRUE(db.is_ok()) << db.status().to_string();
    auto store = Store::create(sc, 1, clock);
    ASSERT_TRUE(store.is_ok());
    ASSERT_TRUE((*db)->load(**store, clock.now_ms()).is_ok());
    JournalQueues q(1, 1024);
    (*store)->set_journal(&q);
    ASSERT_TRUE((*store)->set("held-by-a-peer", "1").is_ok());
    Shard& shard = (*store)->shard(0);
    const std::uint32_t token = shard.begin_sync();
    shard.complete_sync(token, clock.now_ms());  // a peer now holds "held-by-a-peer"
    clock.advance(1);
    ASSERT_TRUE((*store)->set("written-after", "2").is_ok());
    const std::size_t n =
        q.visit([&](std::uint32_t, const JournalRecord& r) { (*db)->add(r); }, SIZE_MAX);
    EXPECT_EQ(n, 3u);  // two puts and the sync state
    ASSERT_TRUE((*db)->commit(true).is_ok());
  }
  clock.advance(120'000);  // away longer than the grace period
  auto db = DurableStore::open(dir.data());
  ASSERT_TRUE(db.is_ok());
  auto store = Store::create(sc, 1, clock);
  ASSERT_TRUE(store.is_ok());
  ASSERT_TRUE((*db)->load(**store, clock.now_ms()).is_ok());
  EXPECT_EQ((*store)->shard(0).sync_state().safe_sync_epoch, 1u);
  EXPECT_EQ((*store)->shard(0).reset_if_stale(clock.now_ms()), 1u);
  EXPECT_FALSE((*store)->get_entry("held-by-a-peer").has_value());
  EXPECT_TRUE((*store)->get_entry("written-after").has_value());
}

TEST(Durable, SyncModesParseAndPrint) {
  for (SyncMode m : {SyncMode::kOff, SyncMode::kBatch, SyncMode::kAlways}) {
    auto p = parse_sync_mode(sync_mode_name(m));
    ASSERT_TRUE(p.is_ok());
    EXPECT_EQ(*p, m);
  }
  EXPECT_FALSE(parse_sync_mode("sometimes").is_ok());
}

}  // namespace
}  // namespace rumor
