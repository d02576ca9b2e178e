// ReactorLoop over real loopback UDP, with a fake machine in place of the Node: datagrams flow
// both ways through the zero-copy sink, posted commands and wake-ups reach a loop that would
// otherwise sleep for an hour, doorbells never reach the machine, stop() flushes the last sends,
// and deadlines fire ticks. Each case runs on io_uring and on sendmmsg.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "base/clock.h"
#include "engine/runtime/reactor.h"
#include "tests/agent/eventually.h"
#include "tests/agent/fake_driven.h"

namespace rumor::testing {
namespace {

struct Endpoint {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<ReactorLoop> loop;
  std::unique_ptr<FakeDriven> fake;
  std::thread thread;

  void run() {
    thread = std::thread([this] { loop->run(*fake); });
  }
  void stop() {
    if (thread.joinable()) {
      loop->request_stop();
      thread.join();
    }
  }
  ~Endpoint() { stop(); }
};

// A clock only the test moves, read by the loop thread and the fake. Relaxed: the time is the
// only thing shared through it; nothing else is published by a step.
class SteppedClock final : public TimeSource {
 public:
  explicit SteppedClock(std::uint64_t start_ms) : now_(start_ms) {}
  std::uint64_t now_ms() override { return now_.load(std::memory_order_relaxed); }
  void advance(std::uint64_t ms) { now_.fetch_add(ms, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> now_;
};

class ReactorTest : public ::testing::TestWithParam<Backend> {
 protected:
  ReactorConfig config() {
    ReactorConfig rc;
    rc.transport.bind = Address::ipv4(0x7f000001, 0);
    rc.transport.reuse_port = false;
    rc.transport.recv_buffers = 256;
    rc.transport.send_buffers = 256;
    rc.transport.backend = GetParam();
    rc.idle_wait_ms_max = 60'000;  // a loop that is not woken sleeps for a minute
    return rc;
  }

  // Opens a transport and a loop on `time` (the wall clock unless a test hands in its own);
  // skips the test when io_uring is unavailable here.
  std::unique_ptr<Endpoint> open(const ReactorConfig& rc) { return open(rc, clock_); }
  std::unique_ptr<Endpoint> open(const ReactorConfig& rc, TimeSource& time) {
    auto choice = open_transport(rc.transport);
    if (!choice) {
      if (GetParam() == Backend::kUring && choice.status().code() == Code::kUnavailable) {
        skip_ = choice.status().message();
        return nullptr;
      }
      ADD_FAILURE() << choice.status().to_string();
      return nullptr;
    }
    auto e = std::make_unique<Endpoint>();
    e->transport = std::move(choice->transport);
    auto loop = ReactorLoop::create(rc, *e->transport, time);
    EXPECT_TRUE(loop.is_ok()) << loop.status().to_string();
    if (!loop) return nullptr;
    e->loop = std::move(loop.value());
    return e;
  }

  SystemTimeSource clock_;
  std::string skip_;
};

#define OPEN_OR_SKIP(var, ...)               \
  auto var = open(__VA_ARGS__);              \
  if (!skip_.empty()) GTEST_SKIP() << skip_; \
  ASSERT_NE(var, nullptr)

TEST_P(ReactorTest, PingPongThroughTheZeroCopySink) {
  const ReactorConfig rc = config();
  OPEN_OR_SKIP(a, rc);
  OPEN_OR_SKIP(b, rc);
  constexpr std::uint64_t kPings = 5000;
  a->fake = std::make_unique<FakeDriven>(clock_, b->transport->local_address(), kPings, 16);
  b->fake = std::make_unique<FakeDriven>(clock_, Address(), 0, 0);
  b->run();
  a->run();
  ASSERT_TRUE(eventually([&] { return a->fake->pongs.load() == kPings; }))
      << "pongs " << a->fake->pongs.load();
  EXPECT_EQ(b->fake->received.load(), kPings);
  // Every pong was an event, dispatched after its batch (the fake asserts: never inside
  // receive()).
  ASSERT_TRUE(eventually([&] { return a->fake->events.load() == kPings; }));
  a->stop();
  b->stop();
  const ReactorCounters ca = a->loop->counters();
  EXPECT_EQ(ca.datagrams, kPings);
  EXPECT_EQ(ca.sink_empty, 0u);
  EXPECT_EQ(ca.send_refused, 0u);
  EXPECT_GE(ca.batch_max, 1u);
}

TEST_P(ReactorTest, PostedCommandWakesASleepingLoop) {
  const ReactorConfig rc = config();
  OPEN_OR_SKIP(a, rc);
  a->fake = std::make_unique<FakeDriven>(clock_, Address(), 0, 0);
  a->run();
  ASSERT_TRUE(eventually([&] { return a->fake->started.load(); }));
  // The fake's deadline is an hour away and the loop's cap is a minute: only the doorbell can
  // run these within the test's bound. Several rounds, so some land while the loop is parked.
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> ran{false};
    ASSERT_TRUE(a->loop->post([&] { ran.store(true); }).is_ok());
    ASSERT_TRUE(eventually([&] { return ran.load(); }, 10)) << "round " << round;
  }
  a->stop();
  const ReactorCounters c = a->loop->counters();
  EXPECT_EQ(c.commands_run, 20u);
  EXPECT_GE(c.doorbells_rung, 1u);
  // Doorbells are wake-ups, not packets: the machine never saw one.
  EXPECT_EQ(a->fake->received.load(), 0u);
  EXPECT_EQ(c.datagrams, 0u);
}

TEST_P(ReactorTest, ManyWakersCoalesceAndEveryCommandRuns) {
  const ReactorConfig rc = config();
  OPEN_OR_SKIP(a, rc);
  a->fake = std::make_unique<FakeDriven>(clock_, Address(), 0, 0);
  a->run();
  std::atomic<std::uint64_t> ran{0};
  std::atomic<int> given_up{0};  // posters that ran out of tries
  constexpr int kThreads = 4, kEach = 500;
  // Bounds on retrying one command: a loop that stopped draining its queue fails the test
  // instead of leaving the posters spinning.
  constexpr std::uint64_t kTriesMax = 10'000'000;
  constexpr std::uint64_t kRetryNsMax = 20'000'000'000;
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        // kBusy is back-pressure: retry until accepted, within the bounds.
        const std::uint64_t deadline = monotonic_ns() + kRetryNsMax;
        std::uint64_t tries = 0;
        while (!a->loop->post([&] { ran.fetch_add(1); }).is_ok()) {
          if (++tries == kTriesMax || monotonic_ns() > deadline) {
            given_up.fetch_add(1);
            return;
          }
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : posters) t.join();
  ASSERT_EQ(given_up.load(), 0) << "the loop refused a command for 20 s or " << kTriesMax
                                << " tries";
  ASSERT_TRUE(eventually([&] { return ran.load() == kThreads * kEach; }, 20)) << ran.load();
  a->stop();
  const ReactorCounters c = a->loop->counters();
  // Coalescing: far fewer doorbells than wake-ups.
  EXPECT_LT(c.doorbells_rung, static_cast<std::uint64_t>(kThreads * kEach));
}

// The loop sleeps until the driven machine's deadline, read on the machine's clock. Loop and fake
// run on a clock only the test moves, so when the deadline is due is the test's decision, and
// the loop's wake-ups are counted by the fake, independently of that clock. While the clock
// stands still the deadline stays kStepMs away: with nothing else to wake it (its cap is a
// minute, the fake's idle deadline an hour) the loop must wake about once per kStepMs of real
// time and find it not yet due. A loop that ignored the deadline would not wake at all (the
// wait fails); one that spun instead of sleeping would tick hundreds of times per millisecond
// (the bound fails). Once the test moves the clock past the deadline, a wake-up fires it.
TEST_P(ReactorTest, DeadlineFiresATick) {
  SteppedClock time(1'000'000);
  const ReactorConfig rc = config();
  OPEN_OR_SKIP(a, rc, time);
  a->fake = std::make_unique<FakeDriven>(time, Address(), 0, 0);
  a->run();
  FakeDriven* fake = a->fake.get();
  ASSERT_TRUE(eventually([&] { return fake->started.load(); }));
  constexpr std::uint64_t kStepMs = 20;
  constexpr std::uint64_t kWakes = 5;
  // Room for the test thread (which looks every millisecond) being descheduled: each tick past
  // kWakes needs another kStepMs of that, a second in all; a spinning loop needs a millisecond.
  constexpr std::uint64_t kTicksSlack = 50;
  const std::uint64_t at = time.now_ms() + kStepMs;
  std::atomic<std::uint64_t> ticks_at_set{UINT64_MAX};
  ASSERT_TRUE(a->loop->post([fake, at, &ticks_at_set] {
    fake->set_deadline(at);
    ticks_at_set.store(fake->ticks.load());
  }).is_ok());
  ASSERT_TRUE(eventually([&] { return ticks_at_set.load() != UINT64_MAX; }));
  const std::uint64_t base = ticks_at_set.load();
  ASSERT_TRUE(eventually([&] { return fake->ticks.load() >= base + kWakes; }))
      << "the loop did not wake for a deadline " << kStepMs << " ms away";
  const std::uint64_t woke = fake->ticks.load() - base;
  EXPECT_LE(woke, kWakes + kTicksSlack) << "the loop spun instead of sleeping until the deadline";
  EXPECT_EQ(fake->deadline_ticks.load(), 0u);
  time.advance(kStepMs);
  ASSERT_TRUE(eventually([&] { return fake->deadline_ticks.load() == 1; }))
      << "the deadline came and no tick fired it";
  a->stop();
  EXPECT_EQ(fake->deadline_ticks.load(), 1u);
}

TEST_P(ReactorTest, StopFlushesTheLastSends) {
  const ReactorConfig rc = config();
  OPEN_OR_SKIP(a, rc);
  OPEN_OR_SKIP(b, rc);
  a->fake = std::make_unique<FakeDriven>(clock_, b->transport->local_address(), 0, 0);
  b->fake = std::make_unique<FakeDriven>(clock_, Address(), 0, 0);
  b->run();
  a->run();
  ASSERT_TRUE(eventually([&] { return a->fake->started.load(); }));
  a->stop();  // the fake's stop() sends "bye"; the loop must submit it before returning
  EXPECT_TRUE(a->fake->stopped.load());
  ASSERT_TRUE(eventually([&] { return b->fake->byes.load() == 1; }, 10));
  EXPECT_EQ(a->loop->post([] {}).code(), Code::kUnavailable);
}

TEST_P(ReactorTest, SinkReportsBackPressureWhenThePoolIsEmpty) {
  ReactorConfig rc = config();
  rc.transport.send_buffers = 8;
  rc.send_stash = 4;
  OPEN_OR_SKIP(a, rc);
  TransportSink& sink = a->loop->sink();
  // Take every buffer without committing: buffer() hands out the same one until commit, so
  // commit each to an address nobody listens on, without polling, until the pool runs dry.
  const Address nowhere = Address::ipv4(0x7f000001, 9);
  std::size_t got = 0;
  for (int i = 0; i < 64; ++i) {
    std::span<std::byte> b = sink.buffer();
    if (b.empty()) break;
    EXPECT_GE(b.size(), 1400u);
    b[0] = std::byte{1};
    sink.commit(nowhere, 1);
    ++got;
  }
  // The sink polls once when empty, which submits and recycles: it may get buffers back, but
  // it never blocks and never hands out more than it has.
  EXPECT_GE(got, 8u);
  EXPECT_EQ(sink.refused(), 0u);
}

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kUring ? "uring" : "mmsg";
}

INSTANTIATE_TEST_SUITE_P(Backends, ReactorTest, ::testing::Values(Backend::kUring, Backend::kMmsg),
                         backend_name);

}  // namespace
}  // namespace rumor::testing
