#include "engine/store/hlc.h"

#include <gtest/gtest.h>

namespace rumor {
namespace {

TEST(Hlc, StrictlyIncreasingWhenTheWallClockStands) {
  ManualTimeSource t(1000);
  Hlc c(t, 500);
  std::uint64_t prev = c.now();
  EXPECT_EQ(hlc_physical_ms(prev), 1000u);
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t next = c.now();
    EXPECT_GT(next, prev);
    EXPECT_EQ(hlc_physical_ms(next), 1000u);
    prev = next;
  }
  t.advance(1);
  EXPECT_EQ(c.now(), hlc_pack(1001, 0));
}

TEST(Hlc, NeverGoesBackwardWhenTheWallClockDoes) {
  ManualTimeSource t(10'000);
  Hlc c(t, 500);
  const std::uint64_t before = c.now();
  t.set(5'000);  // NTP step backward by 5 s
  const std::uint64_t after = c.now();
  EXPECT_GT(after, before);
  EXPECT_EQ(hlc_physical_ms(after), 10'000u);
  EXPECT_EQ(c.stats().backward_jumps, 1u);
  t.set(10'001);
  EXPECT_EQ(c.now(), hlc_pack(10'001, 0));
}

TEST(Hlc, ObserveMakesLaterLocalWritesHigher) {
  ManualTimeSource t(1000);
  Hlc c(t, 500);
  const std::uint64_t remote = hlc_pack(1300, 7);  // a peer 300 ms ahead
  ASSERT_TRUE(c.observe(remote).is_ok());
  EXPECT_GT(c.now(), remote);
  EXPECT_EQ(c.stats().max_ahead_ms, 300u);
}

TEST(Hlc, RefusesFarFutureAndKeepsItsClock) {
  ManualTimeSource t(1000);
  Hlc c(t, 500);
  const std::uint64_t before = c.now();
  const std::uint64_t year_ahead = hlc_pack(1000 + 365ull * 24 * 3600 * 1000, 0);
  Status st = c.observe(year_ahead);
  EXPECT_EQ(st.code(), Code::kClockSkew);
  EXPECT_NE(st.message().find("max_clock_skew_ms is 500"), std::string::npos);
  EXPECT_EQ(c.stats().refused_far_future, 1u);
  EXPECT_LT(c.now(), hlc_pack(1001, 0));  // not dragged forward
  EXPECT_GT(c.last(), before);
  // Exactly at the bound is accepted, one past is not.
  EXPECT_TRUE(c.check(hlc_pack(1500, 0)).is_ok());
  EXPECT_FALSE(c.check(hlc_pack(1501, 0)).is_ok());
}

TEST(Hlc, LogicalOverflowBorrowsTheNextMillisecond) {
  ManualTimeSource t(1000);
  Hlc c(t, 500);
  std::uint64_t prev = 0;
  for (std::uint64_t i = 0; i <= kHlcLogicalMask + 10; ++i) {
    const std::uint64_t next = c.now();
    ASSERT_GT(next, prev);
    prev = next;
  }
  EXPECT_EQ(hlc_physical_ms(prev), 1001u);
  EXPECT_EQ(c.stats().logical_overflows, 1u);
}

TEST(Version, TotalOrderOnTimestampThenNode) {
  EXPECT_LT((Version{hlc_pack(5, 0), 9}), (Version{hlc_pack(5, 1), 1}));
  EXPECT_LT((Version{hlc_pack(5, 1), 1}), (Version{hlc_pack(5, 1), 2}));
  EXPECT_LT((Version{hlc_pack(5, 9), 9}), (Version{hlc_pack(6, 0), 0}));
}

}  // namespace
}  // namespace rumor
