#include "engine/store/store.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

namespace rumor {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> make(StoreConfig cfg = {}, NodeId self = 1) {
    auto r = Store::create(cfg, self, time_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return std::move(r).value();
  }
  ManualTimeSource time_{1'000'000};
};

TEST_F(StoreTest, SetGetDel) {
  auto s = make();
  std::string v;
  EXPECT_FALSE(s->get("service_version", &v));
  auto ver = s->set("service_version", "v1.2.3");
  ASSERT_TRUE(ver.is_ok());
  Version got;
  ASSERT_TRUE(s->get("service_version", &v, &got));
  EXPECT_EQ(v, "v1.2.3");
  EXPECT_EQ(got, *ver);
  EXPECT_EQ(got.node, 1u);
  ASSERT_TRUE(s->del("service_version").is_ok());
  EXPECT_FALSE(s->get("service_version", &v));
  auto e = s->get_entry("service_version");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->tombstone);
  EXPECT_GT(e->version, got);
  const StoreCounters c = s->counters();
  EXPECT_EQ(c.tombstones, 1u);
  EXPECT_EQ(c.live_entries, 0u);
}

TEST_F(StoreTest, OversizedInputIsRefusedNotTruncated) {
  StoreConfig cfg;
  cfg.key_bytes_max = 8;
  cfg.value_bytes_max = 16;
  auto s = make(cfg);
  auto r = s->set("123456789", "x");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_EQ(r.status().message(), "key is 9 bytes, key_bytes_max is 8");
  r = s->set("k", std::string(17, 'v'));
  EXPECT_EQ(r.status().message(), "value is 17 bytes, value_bytes_max is 16");
  EXPECT_EQ(s->set("", "x").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(s->get("k", nullptr));
  // Remote entries are refused the same way, and counted.
  auto m = s->merge(EntryView{"k", std::string(17, 'v'), Version{hlc_pack(1'000'000, 0), 2}});
  EXPECT_EQ(m.status().code(), Code::kTooLarge);
  EXPECT_EQ(s->counters().refused_too_large, 3u);
  EXPECT_EQ(s->counters().refused_invalid, 1u);
}

TEST_F(StoreTest, RemoteMergeIsLastWriterWins) {
  auto s = make();
  const Version v5{hlc_pack(999'000, 5), 7};
  const Version v6{hlc_pack(999'000, 6), 3};
  EXPECT_EQ(*s->merge(EntryView{"k", "five", v5}), MergeOutcome::kApplied);
  EXPECT_EQ(*s->merge(EntryView{"k", "six", v6}), MergeOutcome::kApplied);
  EXPECT_EQ(*s->merge(EntryView{"k", "five", v5}), MergeOutcome::kStale);
  EXPECT_EQ(*s->merge(EntryView{"k", "six", v6}), MergeOutcome::kStale);  // idempotent
  std::string v;
  ASSERT_TRUE(s->get("k", &v));
  EXPECT_EQ(v, "six");
  // Same timestamp: the higher node id wins.
  const Version tie{hlc_pack(999'000, 6), 4};
  EXPECT_EQ(*s->merge(EntryView{"k", "six-b", tie}), MergeOutcome::kApplied);
  ASSERT_TRUE(s->get("k", &v));
  EXPECT_EQ(v, "six-b");
  // A later local write beats what the HLC has seen.
  auto local = s->set("k", "local");
  ASSERT_TRUE(local.is_ok());
  EXPECT_GT(*local, tie);
  ASSERT_TRUE(s->get("k", &v));
  EXPECT_EQ(v, "local");
}

TEST_F(StoreTest, FarFutureVersionIsRefusedAndCounted) {
  StoreConfig cfg;
  cfg.max_clock_skew_ms = 1000;
  auto s = make(cfg);
  auto r = s->merge(EntryView{"k", "v", Version{hlc_pack(1'000'000 + 5000, 0), 2}});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kClockSkew);
  EXPECT_FALSE(s->get("k", nullptr));
  EXPECT_EQ(s->counters().refused_clock_skew, 1u);
  // The batch path refuses per entry and keeps the rest.
  const EntryView in[2] = {{"a", "1", Version{hlc_pack(1'000'500, 0), 2}},
                           {"b", "2", Version{hlc_pack(1'009'000, 0), 2}}};
  MergeOutcome out[2];
  s->merge_batch(0, in, out);
  EXPECT_EQ(out[0], MergeOutcome::kApplied);
  EXPECT_EQ(out[1], MergeOutcome::kRefused);
  EXPECT_EQ(s->counters().refused_clock_skew, 2u);
  // The accepted remote version was folded into the HLC.
  EXPECT_GT(s->hlc(0).now(), hlc_pack(1'000'500, 0));
}

TEST_F(StoreTest, LargeValuesLiveOutOfLineAndReplaceCleanly) {
  StoreConfig cfg;
  cfg.value_bytes_max = 4096;
  auto s = make(cfg);
  std::string v;
  for (int i = 0; i < 50; ++i) {
    const std::string big(100 + i * 50, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(s->set("big", big).is_ok());
    ASSERT_TRUE(s->get("big", &v));
    ASSERT_EQ(v, big);
    // Alternate between inline and out-of-line for the same key.
    ASSERT_TRUE(s->set("big", "small").is_ok());
    ASSERT_TRUE(s->get("big", &v));
    ASSERT_EQ(v, "small");
    s->collect_garbage(0);
  }
}

TEST_F(StoreTest, GrowthKeepsEveryEntry) {
  StoreConfig cfg;
  cfg.virtual_shards = 4;
  auto s = make(cfg);
  std::string v;
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE(s->set("key-" + std::to_string(i), "value-" + std::to_string(i)).is_ok());
  }
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE(s->get("key-" + std::to_string(i), &v)) << i;
    ASSERT_EQ(v, "value-" + std::to_string(i));
  }
  EXPECT_EQ(s->counters().live_entries, 20000u);
  EXPECT_GT(s->counters().table_grows, 4u);
}

TEST_F(StoreTest, SortedIterationIsStableAndComplete) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  auto a = make(cfg, 1);
  auto b = make(cfg, 2);
  std::vector<int> order(500);
  for (int i = 0; i < 500; ++i) order[i] = i;
  // Insert the same entries in two different orders: iteration order must agree.
  const Version v{hlc_pack(999'000, 0), 9};
  for (int i : order) (void)a->merge(EntryView{"k" + std::to_string(i), "v", v});
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    (void)b->merge(EntryView{"k" + std::to_string(*it), "v", v});
  }
  std::vector<std::string> ka, kb;
  std::uint64_t prev = 0;
  a->shard(0).for_each_sorted([&](std::uint64_t h, const EntryView& e) {
    EXPECT_GE(h, prev);
    prev = h;
    ka.emplace_back(e.key);
  });
  b->shard(0).for_each_sorted([&](std::uint64_t, const EntryView& e) { kb.emplace_back(e.key); });
  EXPECT_EQ(ka.size(), 500u);
  EXPECT_EQ(ka, kb);
}

TEST_F(StoreTest, ChangeFeedRecordsAppliedChangesInOrder) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  cfg.change_feed_depth = 4;
  auto s = make(cfg);
  ASSERT_TRUE(s->set("a", "1").is_ok());
  ASSERT_TRUE(s->set("b", "2").is_ok());
  (void)s->merge(EntryView{"a", "old", Version{hlc_pack(1, 0), 5}});  // stale: no record
  ASSERT_TRUE(s->del("a").is_ok());
  std::uint64_t cursor = 0;
  std::vector<ChangeRecord> got;
  s->shard(0).read_feed(&cursor, 100, [&](const ChangeRecord& r) { got.push_back(r); });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].key_hash, Store::hash_key("a"));
  EXPECT_EQ(got[1].key_hash, Store::hash_key("b"));
  EXPECT_TRUE(got[2].tombstone);
  EXPECT_TRUE(got[2].local);
  bool found = false;
  s->shard(0).find_hash(got[1].key_hash, [&](const EntryView& e) {
    found = e.key == "b" && e.value == "2";
  });
  EXPECT_TRUE(found);
  // A reader that falls behind more than the depth skips ahead and the overrun is counted.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(s->set("c", std::to_string(i)).is_ok());
  got.clear();
  s->shard(0).read_feed(&cursor, 100, [&](const ChangeRecord& r) { got.push_back(r); });
  EXPECT_EQ(got.size(), 4u);
  EXPECT_EQ(s->counters().feed_overruns, 1u);
}

// The ring grows from a few records to change_feed_depth as changes come: a reader that keeps
// up, or lags by less than the depth, sees every record in order across the growth; one that
// lags by more skips ahead exactly as with a full-size ring.
TEST_F(StoreTest, ChangeFeedGrowsWithoutLosingRecords) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  cfg.change_feed_depth = 256;
  auto s = make(cfg);
  std::uint64_t cursor = 0, next = 0;
  auto read = [&](std::size_t max) {
    return s->shard(0).read_feed(&cursor, max, [&](const ChangeRecord& r) {
      EXPECT_EQ(r.key_hash, Store::hash_key("k" + std::to_string(next))) << "record " << next;
      ++next;
    });
  };
  int written = 0;
  auto write = [&](int n) {
    for (int i = 0; i < n; ++i, ++written) {
      ASSERT_TRUE(s->set("k" + std::to_string(written), "v").is_ok());
    }
  };
  write(10);
  EXPECT_EQ(read(5), 5u);  // mid-ring, before any growth
  write(100);              // 16 -> 32 -> 64 -> 128 records
  EXPECT_EQ(read(1000), 105u);
  write(250);              // to 256, then wrapping: the reader lags 250 < 256
  EXPECT_EQ(read(1000), 250u);
  EXPECT_EQ(s->counters().feed_overruns, 0u);
  write(300);  // lags 300: skips to the last 256
  next = static_cast<std::uint64_t>(written) - 256;
  EXPECT_EQ(read(1000), 256u);
  EXPECT_EQ(s->counters().feed_overruns, 1u);
}

TEST_F(StoreTest, TombstonesArePurgedAfterTheGracePeriod) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  cfg.tombstone_grace_ms = 10'000;
  auto s = make(cfg);
  ASSERT_TRUE(s->set("keep", "v").is_ok());
  ASSERT_TRUE(s->set("gone", "v").is_ok());
  ASSERT_TRUE(s->del("gone").is_ok());
  time_.advance(5'000);
  EXPECT_EQ(s->shard(0).purge_tombstones(time_.now_ms()), 0u);
  EXPECT_TRUE(s->get_entry("gone").has_value());
  time_.advance(5'001);
  EXPECT_EQ(s->shard(0).purge_tombstones(time_.now_ms()), 1u);
  EXPECT_FALSE(s->get_entry("gone").has_value());
  EXPECT_TRUE(s->get("keep", nullptr));
  // The freed slot is reused and lookups past it still work.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s->set("n" + std::to_string(i), "x").is_ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s->get("n" + std::to_string(i), nullptr));
  EXPECT_EQ(s->counters().tombstones_purged, 1u);
}

// The resurrection scenario of docs/store.md: a key is deleted while this node is cut off, the
// cluster purges the tombstone after the grace period, and this node comes back still holding
// the old live value. reset_if_stale drops what a peer is known to hold and keeps what was
// written since, so the old value is not served and cannot spread.
TEST_F(StoreTest, NodeAwayLongerThanGraceDropsPossiblyDeletedKeys) {
  StoreConfig cfg;
  cfg.virtual_shards = 1;
  cfg.tombstone_grace_ms = 10'000;
  auto s = make(cfg);
  Shard& sh = s->shard(0);
  ASSERT_TRUE(s->set("deleted-elsewhere", "old").is_ok());
  const std::uint32_t token = sh.begin_sync();
  ASSERT_TRUE(s->set("written-during-sync", "new").is_ok());
  sh.complete_sync(token, time_.now_ms());
  // Cut off; keeps accepting local writes.
  time_.advance(3'000);
  ASSERT_TRUE(s->set("written-while-away", "mine").is_ok());
  // Within the grace period nothing is dropped.
  EXPECT_EQ(sh.reset_if_stale(time_.now_ms()), 0u);
  time_.advance(20'000);
  EXPECT_EQ(sh.reset_if_stale(time_.now_ms()), 1u);
  EXPECT_FALSE(s->get_entry("deleted-elsewhere").has_value());
  EXPECT_TRUE(s->get("written-during-sync", nullptr));  // may not have reached the peer
  EXPECT_TRUE(s->get("written-while-away", nullptr));   // accepted writes are never dropped
  EXPECT_EQ(s->counters().reset_discarded, 1u);
}

TEST_F(StoreTest, WritesFromOtherThreadsReachTheOwner) {
  StoreConfig cfg;
  cfg.write_queue_depth = 8;
  auto s = make(cfg);
  std::thread app([&] {
    for (int i = 0; i < 8; ++i) EXPECT_TRUE(s->submit_set("q" + std::to_string(i), "v").is_ok());
    Status full = s->submit_set("overflow", "v");
    EXPECT_EQ(full.code(), Code::kBusy);
    EXPECT_EQ(s->submit_set("", "v").code(), Code::kInvalidArgument);
  });
  app.join();
  EXPECT_FALSE(s->get("q0", nullptr));  // not applied until the owner drains
  EXPECT_EQ(s->drain_writes(0, 100), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(s->get("q" + std::to_string(i), nullptr));
  EXPECT_EQ(s->counters().write_queue_full, 1u);
}

TEST(StoreConfig, ValidateNamesTheBadLimit) {
  StoreConfig cfg;
  cfg.virtual_shards = 48;
  Status st = cfg.validate();
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("virtual_shards"), std::string::npos);
  cfg = {};
  cfg.owners = 0;
  EXPECT_FALSE(cfg.validate().is_ok());
  ManualTimeSource t;
  EXPECT_FALSE(Store::create(cfg, 1, t).is_ok());
}

TEST(StoreOwnership, WriteFromAnotherThreadThanTheBoundOwnerAborts) {
  ManualTimeSource t(1000);
  auto s = std::move(Store::create({}, 1, t)).value();
  s->bind_owner(0);
  EXPECT_DEATH(
      {
        std::thread other([&] { (void)s->set("k", "v"); });
        other.join();
      },
      "assertion failed");
}

}  // namespace
}  // namespace rumor
