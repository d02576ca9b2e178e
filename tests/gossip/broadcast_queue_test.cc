// BroadcastQueue against a reference model: the std::set implementation it replaced (copied
// here as ReferenceQueue, unchanged but for its name), driven by the same random sequences of
// push and fill. Every fill must write the same bytes, return the same count, and leave the same
// size, dropped() and sent(). Sequences mix kinds (kinds past 3 alias subjects, as the key is
// subject * 4 + kind), subjects with repeats, priorities, message sizes up to 1,400 B, limits and
// writer capacities; small items_max exercises the drop path. A failure prints its seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/gossip/broadcast.h"
#include "tests/gossip/reference_queue.h"
#include "engine/wire/wire.h"

namespace rumor {
namespace {

// ---- the reference: BroadcastQueue as of b840303 ---------------------------------------------

using reference::ReferenceQueue;

// ---- the differential driver ----------------------------------------------------------------

constexpr std::size_t kBytesMax = 1400;

// One sequence's shape, drawn from its seed, so that sequences differ in what they stress:
// a deep backlog (pushes outrun fills), a drained queue, tight packets, many drops.
struct Shape {
  std::size_t items_max;
  std::uint64_t subjects;  // subjects are drawn from [0, subjects): repeats replace
  std::uint8_t kinds;
  unsigned push_percent;  // share of operations that push
  std::uint32_t limit_max;
  std::size_t capacity_max;
  unsigned large_percent;  // share of messages over 128 B
};

Shape draw_shape(std::mt19937_64& rng) {
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  Shape s{};
  const std::size_t maxes[] = {0, 1, 2, 5, 17, 64, 300, 100000};
  s.items_max = maxes[pick(std::size(maxes))];
  s.subjects = 1 + pick(pick(2) ? 20 : 2000);
  s.kinds = static_cast<std::uint8_t>(1 + pick(6));
  s.push_percent = static_cast<unsigned>(20 + pick(75));
  s.limit_max = static_cast<std::uint32_t>(pick(4) == 0 ? 60 : 1 + pick(12));
  s.capacity_max = pick(3) == 0 ? 200 + pick(300) : 1500;
  s.large_percent = static_cast<unsigned>(pick(50));
  return s;
}

std::string make_message(std::mt19937_64& rng, const Shape& s, std::uint64_t serial) {
  std::size_t n;
  if (rng() % 100 < s.large_percent) {
    n = 129 + rng() % (kBytesMax - 128);
  } else {
    n = rng() % 64 == 0 ? 0 : 1 + rng() % 128;
  }
  // Distinct contents per push (the serial, then a pattern), so that a wrong item or a wrong
  // order shows in the bytes.
  std::string m(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    m[i] = static_cast<char>((serial >> (8 * (i % 8))) + i * 131);
  }
  return m;
}

struct Stats {
  std::uint64_t fills = 0;
  std::uint64_t appended = 0;
  std::uint64_t drops = 0;
};

void run_sequence(std::uint64_t seed, std::size_t ops, Stats& stats) {
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const Shape s = draw_shape(rng);
  BroadcastQueue q(s.items_max);
  ReferenceQueue ref(s.items_max);
  std::vector<std::byte> got(kBytesMax + 200);
  std::vector<std::byte> want(kBytesMax + 200);
  std::uint64_t serial = 0;
  auto do_fill = [&](std::uint32_t limit, std::size_t capacity, std::size_t prefix) {
    wire::Writer wg(std::span<std::byte>(got.data(), capacity));
    wire::Writer ww(std::span<std::byte>(want.data(), capacity));
    // A packet's header and earlier messages come first: fill gets what is left.
    for (std::size_t i = 0; i < prefix; ++i) {
      wg.u8(0xEE);
      ww.u8(0xEE);
    }
    const std::size_t n_got = q.fill(wg, limit);
    const std::size_t n_want = ref.fill(ww, limit);
    ASSERT_EQ(n_got, n_want);
    ASSERT_EQ(wg.size(), ww.size());
    ASSERT_EQ(wg.ok(), ww.ok());
    ASSERT_TRUE(std::equal(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(wg.size()),
                           want.begin()));
    ++stats.fills;
    stats.appended += n_got;
  };
  for (std::size_t op = 0; op < ops; ++op) {
    if (rng() % 100 < s.push_percent) {
      const auto kind = static_cast<std::uint8_t>(rng() % s.kinds);
      const std::uint64_t subject = rng() % s.subjects;
      const auto prio = static_cast<BroadcastQueue::Priority>(rng() % 3);
      std::string m = make_message(rng, s, serial++);
      q.push(kind, subject, prio, m);
      ref.push(kind, subject, prio, std::move(m));
    } else {
      const auto limit = static_cast<std::uint32_t>(rng() % (s.limit_max + 1));
      const std::size_t capacity = rng() % (s.capacity_max + 1);
      const std::size_t prefix = rng() % 4 == 0 ? rng() % (capacity + 1) : 0;
      do_fill(limit, capacity, prefix);
      if (testing::Test::HasFatalFailure()) return;
    }
    ASSERT_EQ(q.size(), ref.size());
    ASSERT_EQ(q.empty(), ref.empty());
    ASSERT_EQ(q.dropped(), ref.dropped());
    ASSERT_EQ(q.sent(), ref.sent());
  }
  // Drain with roomy packets: what is left must come out in the same order too. Items too big
  // for any packet stay.
  for (int round = 0; round < 200 && !ref.empty(); ++round) {
    do_fill(s.limit_max, kBytesMax + 200, 0);
    if (testing::Test::HasFatalFailure()) return;
    ASSERT_EQ(q.size(), ref.size());
  }
  stats.drops += ref.dropped();
}

TEST(BroadcastQueueDifferential, RandomSequencesMatchTheReference) {
  Stats stats;
  constexpr std::uint64_t kSequences = 3000;
  for (std::uint64_t seed = 1; seed <= kSequences; ++seed) {
    run_sequence(seed, 600, stats);
    if (HasFatalFailure()) return;
  }
  // The sequences must reach what they are meant to test.
  EXPECT_GT(stats.appended, stats.fills);
  EXPECT_GT(stats.drops, 1000u);
}

TEST(BroadcastQueueDifferential, LongSequencesMatchTheReference) {
  Stats stats;
  for (std::uint64_t seed = 1'000'001; seed <= 1'000'020; ++seed) {
    run_sequence(seed, 20'000, stats);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(stats.appended, stats.fills);
}

// ---- documented behaviour, spelled out ------------------------------------------------------

std::string fill_bytes(BroadcastQueue& q, std::size_t capacity, std::uint32_t limit,
                       std::size_t* appended = nullptr) {
  std::vector<std::byte> buf(capacity);
  wire::Writer w(buf);
  const std::size_t n = q.fill(w, limit);
  if (appended != nullptr) *appended = n;
  return std::string(reinterpret_cast<const char*>(buf.data()), w.size());
}

TEST(BroadcastQueue, ClassesInOrderFewestSentFirstNewestFirstAmongEquals) {
  BroadcastQueue q(100);
  q.push(1, 1, BroadcastQueue::kLargeUpdate, "L");
  q.push(1, 2, BroadcastQueue::kSmallUpdate, "s");
  q.push(1, 3, BroadcastQueue::kSmallUpdate, "t");
  q.push(0, 1, BroadcastQueue::kMembership, "m");
  EXPECT_EQ(fill_bytes(q, 100, 10), "mtsL");
  q.push(1, 4, BroadcastQueue::kSmallUpdate, "u");
  // u has been sent fewer times than t and s.
  EXPECT_EQ(fill_bytes(q, 100, 10), "mutsL");
  q.push(1, 2, BroadcastQueue::kSmallUpdate, "S");  // replaces s; its count starts again
  EXPECT_EQ(fill_bytes(q, 100, 10), "mSutL");
}

TEST(BroadcastQueue, RetiresAfterLimitAndCounts) {
  BroadcastQueue q(100);
  q.push(0, 7, BroadcastQueue::kMembership, "a");
  std::size_t n = 0;
  EXPECT_EQ(fill_bytes(q, 10, 2, &n), "a");
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(fill_bytes(q, 10, 2), "a");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(fill_bytes(q, 10, 2, &n), "");
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(q.sent(), 2u);
}

TEST(BroadcastQueue, SkipsWhatDoesNotFitAndTakesSmallerOnesBehind) {
  BroadcastQueue q(100);
  q.push(1, 1, BroadcastQueue::kSmallUpdate, "small");
  q.push(1, 2, BroadcastQueue::kSmallUpdate, std::string(50, 'x'));
  EXPECT_EQ(fill_bytes(q, 10, 5), "small");
}

TEST(BroadcastQueue, DropsTheMostSentOfTheLowestClassPastItemsMax) {
  BroadcastQueue q(3);
  q.push(0, 1, BroadcastQueue::kMembership, "m");
  q.push(1, 1, BroadcastQueue::kLargeUpdate, "a");
  q.push(1, 2, BroadcastQueue::kLargeUpdate, "b");
  EXPECT_EQ(fill_bytes(q, 100, 10), "mba");
  q.push(1, 3, BroadcastQueue::kLargeUpdate, "c");  // drops a: sent once, older than b
  EXPECT_EQ(q.dropped(), 1u);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(fill_bytes(q, 100, 10), "mcb");
}

TEST(BroadcastQueue, FreshWhileAnUpdateWaitsOrMembershipIsBelowItsFreshCount) {
  BroadcastQueue q(100);
  EXPECT_FALSE(q.has_fresh(8));
  q.push(0, 1, BroadcastQueue::kMembership, "m");
  EXPECT_TRUE(q.has_fresh(1));
  EXPECT_FALSE(q.has_fresh(0));
  fill_bytes(q, 100, 100);  // m sent once
  EXPECT_FALSE(q.has_fresh(1));
  EXPECT_TRUE(q.has_fresh(2));
  // Past the first word of the bucket bitmap: m sent 70 times is fresh below 71 only.
  for (int i = 1; i < 70; ++i) fill_bytes(q, 100, 100);
  EXPECT_FALSE(q.has_fresh(64));
  EXPECT_FALSE(q.has_fresh(70));
  EXPECT_TRUE(q.has_fresh(71));
  EXPECT_TRUE(q.has_fresh(200));
  EXPECT_FALSE(q.empty());
  // Any update is fresh, however often it has been sent.
  q.push(1, 1, BroadcastQueue::kLargeUpdate, "L");
  EXPECT_TRUE(q.has_fresh(0));
  for (int i = 0; i < 9; ++i) fill_bytes(q, 100, 100);
  EXPECT_TRUE(q.has_fresh(0));
  fill_bytes(q, 100, 10);  // L retires at 10; m at 80 transmissions > 10 too
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.has_fresh(200));
}

// An ack to a peer whose fingerprints match ours: the news of a class it holds is charged (it
// retires after the same number of packets) and takes its room, but is not written.
TEST(BroadcastQueue, NewsTheDestinationHoldsIsChargedButNotWritten) {
  BroadcastQueue q(100);
  q.push(0, 1, BroadcastQueue::kMembership, "m");
  q.push(1, 1, BroadcastQueue::kSmallUpdate, "u");
  auto fill_holding = [&](bool members, bool store, std::size_t capacity = 100) {
    std::vector<std::byte> buf(capacity);
    wire::Writer w(buf);
    q.fill(w, 3, 3, members, store);
    return std::string(reinterpret_cast<const char*>(buf.data()), w.size());
  };
  EXPECT_EQ(fill_holding(true, false), "u");
  EXPECT_EQ(fill_holding(false, true), "m");
  EXPECT_EQ(q.sent(), 4u);
  EXPECT_EQ(fill_holding(true, true), "");  // both charged their third transmission: retired
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.sent(), 6u);
  // A held item takes the room it would have taken: with 4 bytes, "bb" (the newer) is charged
  // and "aaa" no longer fits, as when "bb" is written; so "aaa" is not charged.
  q.push(0, 2, BroadcastQueue::kMembership, "aaa");
  q.push(0, 3, BroadcastQueue::kMembership, "bb");
  EXPECT_EQ(fill_holding(true, false, 4), "");
  EXPECT_EQ(fill_holding(false, false, 4), "aaa");  // sent fewer times than bb: first
  EXPECT_EQ(q.size(), 2u);
}

// Tables agree with a peer's: membership news sent `from` times or more retires at once, except
// news about the kept subject; fresher membership news and every update stay as they were.
TEST(BroadcastQueue, RetireMembershipDropsOnlyTheTailExceptTheKeptSubject) {
  BroadcastQueue q(100);
  q.push(0, 1, BroadcastQueue::kMembership, "a");
  q.push(0, 2, BroadcastQueue::kMembership, "b");
  q.push(0, 9, BroadcastQueue::kMembership, "s");  // about the node itself
  q.push(1, 1, BroadcastQueue::kSmallUpdate, "u");
  for (int i = 0; i < 3; ++i) fill_bytes(q, 100, 10);  // all sent 3 times
  q.push(0, 3, BroadcastQueue::kMembership, "c");        // fresh: sent 0 times
  q.push(1, 2, BroadcastQueue::kSmallUpdate, "v");
  EXPECT_EQ(q.retire_membership(4, 0, 9), 0u);  // nothing has been sent 4 times
  EXPECT_EQ(q.size(), 6u);
  // Kind 1 with subject 9 is another subject: "s" is kept only as (kind 0, subject 9).
  EXPECT_EQ(q.retire_membership(3, 1, 9), 3u);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(fill_bytes(q, 100, 10), "cvu");
  q.push(0, 9, BroadcastQueue::kMembership, "s");
  for (int i = 0; i < 3; ++i) fill_bytes(q, 100, 10);
  EXPECT_EQ(q.retire_membership(1, 0, 9), 1u);  // c goes, s stays
  EXPECT_EQ(fill_bytes(q, 100, 10), "svu");
  EXPECT_EQ(q.dropped(), 0u);  // retiring is not an overflow drop
}

}  // namespace
}  // namespace rumor
