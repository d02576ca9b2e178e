#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "base/mpsc_queue.h"
#include "base/spsc_queue.h"
#include "rumor/status.h"

namespace rumor {
namespace {

TEST(SpscQueue, FifoAndFull) {
  SpscQueue<int> q(4);
  EXPECT_TRUE(q.push(1));
  EXPECT_TRUE(q.push(2));
  EXPECT_TRUE(q.push(3));
  EXPECT_TRUE(q.push(4));
  EXPECT_FALSE(q.push(5));
  EXPECT_EQ(q.pop().value(), 1);
  EXPECT_TRUE(q.push(5));
  std::vector<int> out;
  EXPECT_EQ(q.pop_batch(std::back_inserter(out), 10), 4u);
  EXPECT_EQ(out, (std::vector<int>{2, 3, 4, 5}));
  EXPECT_FALSE(q.pop().has_value());
}

TEST(SpscQueue, TwoThreadsKeepOrder) {
  SpscQueue<std::uint64_t> q(64);
  constexpr std::uint64_t kCount = 200000;
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < kCount;) {
      if (q.push(i)) ++i;
    }
  });
  std::uint64_t expect = 0;
  while (expect < kCount) {
    if (auto v = q.pop()) {
      ASSERT_EQ(*v, expect);
      ++expect;
    }
  }
  producer.join();
}

TEST(MpscQueue, ManyProducersDeliverEverythingOnce) {
  MpscQueue<std::uint64_t> q(256);
  constexpr int kProducers = 3;
  constexpr std::uint64_t kPer = 50000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < kPer;) {
        if (q.push((static_cast<std::uint64_t>(p) << 32) | i)) ++i;
      }
    });
  }
  std::vector<std::uint64_t> next(kProducers, 0);
  std::uint64_t received = 0;
  while (received < kProducers * kPer) {
    if (auto v = q.pop()) {
      const auto p = static_cast<int>(*v >> 32);
      // Per-producer FIFO: each producer's items arrive in the order it pushed them.
      ASSERT_EQ(*v & 0xffffffffu, next[p]);
      ++next[p];
      ++received;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_FALSE(q.pop().has_value());
}

TEST(Status, ValuesAndMessages) {
  Status s = Status::error(Code::kTooLarge, "value is 2048 bytes, value_bytes_max is 1024");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.to_string(), "too_large: value is 2048 bytes, value_bytes_max is 1024");
  Result<int> r = 5;
  EXPECT_TRUE(r.is_ok());
  EXPECT_EQ(*r, 5);
  Result<int> e = Status::error(Code::kBusy, "queue full");
  EXPECT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().code(), Code::kBusy);
}

}  // namespace
}  // namespace rumor
