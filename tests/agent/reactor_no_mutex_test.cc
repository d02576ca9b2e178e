// "No mutex on the packet path", checked rather than claimed: this binary interposes
// pthread_mutex_lock (std::mutex, std::condition_variable and most of libstdc++ lock through it)
// and counts calls per thread. Two loops exchange datagrams through real loopback UDP; once they
// are in steady state, the loop threads must take no lock at all while thousands of datagrams
// flow through receive, the sink, the transport, tick and dispatch.
//
// The interposer is checked too: a std::mutex locked on a counted thread must be seen, or the
// test would prove nothing. Not built under ThreadSanitizer, which intercepts the same symbol.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "engine/runtime/reactor.h"
#include "rumor/node.h"
#include "rumor/reactor.h"
#include "rumor/security.h"
#include "tests/agent/eventually.h"
#include "tests/agent/fake_driven.h"
#include "tests/support/test_keys.h"

namespace {
thread_local bool t_counting = false;
thread_local std::uint64_t t_locks = 0;
std::atomic<std::uint64_t> g_counted_locks{0};
}  // namespace

using LockFn = int (*)(pthread_mutex_t*);
// glibc's own definition, found once (ld.so takes its internal locks, not this symbol).
LockFn real_lock() {
  static const LockFn fn = reinterpret_cast<LockFn>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  return fn;
}

extern "C" int pthread_mutex_lock(pthread_mutex_t* m) {
  if (t_counting) {
    ++t_locks;
    g_counted_locks.fetch_add(1, std::memory_order_relaxed);
  }
  return real_lock()(m);
}

namespace rumor::testing {
namespace {

TEST(ReactorNoMutex, InterposerSeesStdMutex) {
  std::mutex m;
  t_counting = true;
  const std::uint64_t before = t_locks;
  m.lock();
  m.unlock();
  t_counting = false;
  EXPECT_EQ(t_locks, before + 1);
}

TEST(ReactorNoMutex, SteadyStatePacketPathTakesNoLock) {
  for (Backend backend : {Backend::kUring, Backend::kMmsg}) {
    SCOPED_TRACE(backend == Backend::kUring ? "uring" : "mmsg");
    SystemTimeSource clock;
    ReactorConfig rc;
    rc.transport.bind = Address::ipv4(0x7f000001, 0);
    rc.transport.reuse_port = false;
    rc.transport.recv_buffers = 256;
    rc.transport.send_buffers = 256;
    rc.transport.backend = backend;
    auto ta = open_transport(rc.transport);
    if (!ta && ta.status().code() == Code::kUnavailable) continue;  // no io_uring here
    ASSERT_TRUE(ta.is_ok()) << ta.status().to_string();
    auto tb = open_transport(rc.transport);
    ASSERT_TRUE(tb.is_ok()) << tb.status().to_string();
    auto la = ReactorLoop::create(rc, *ta->transport, clock);
    auto lb = ReactorLoop::create(rc, *tb->transport, clock);
    ASSERT_TRUE(la.is_ok() && lb.is_ok());

    constexpr std::uint64_t kPings = 20000;
    // Each loop warms up (first-use allocations, lazy binding) on its first kWarmup datagrams,
    // then counts locks over whole turns for the rest of the exchange. The loop decides by its
    // own count, so the counted window holds at least kPings - kWarmup - a batch of datagrams
    // however the threads are scheduled; that is checked, or an empty window would pass.
    constexpr std::uint64_t kWarmup = 1000;
    constexpr std::uint64_t kCountedMin = kPings - kWarmup - 256;  // 256: the largest batch
    FakeDriven fa(clock, tb->transport->local_address(), kPings, 16);
    FakeDriven fb(clock, Address(), 0, 0);
    std::atomic<std::uint64_t> locks_a{0}, locks_b{0}, counted_a{0}, counted_b{0};
    auto body = [&](ReactorLoop& loop, FakeDriven& fake, std::atomic<std::uint64_t>& locks,
                    std::atomic<std::uint64_t>& counted) {
      loop.start(fake);
      std::uint64_t counted_from = UINT64_MAX;  // datagrams when counting began
      while (!loop.stop_requested()) {
        const std::uint64_t datagrams = loop.counters().datagrams;
        if (counted_from == UINT64_MAX && datagrams >= kWarmup) counted_from = datagrams;
        t_counting = counted_from != UINT64_MAX;
        loop.run_turn(fake, 1000);
        t_counting = false;
      }
      locks.store(t_locks);
      counted.store(counted_from == UINT64_MAX ? 0 : loop.counters().datagrams - counted_from);
      loop.stop(fake);
    };
    std::thread b([&] { body(**lb, fb, locks_b, counted_b); });
    std::thread a([&] { body(**la, fa, locks_a, counted_a); });
    const bool done = eventually([&] { return fa.pongs.load() == kPings; });
    (*la)->request_stop();
    (*lb)->request_stop();
    a.join();
    b.join();
    ASSERT_TRUE(done) << "pongs " << fa.pongs.load() << " of " << kPings;
    EXPECT_GE(counted_a.load(), kCountedMin) << "the pinging loop's counted window was short";
    EXPECT_GE(counted_b.load(), kCountedMin) << "the echoing loop's counted window was short";
    EXPECT_EQ(locks_a.load(), 0u) << "the pinging loop took a lock on the packet path";
    EXPECT_EQ(locks_b.load(), 0u) << "the echoing loop took a lock on the packet path";
  }
}

// The same check with the real protocol: two Nodes on Reactors gossip writes made from this
// thread. Counting is switched on and off by commands posted to each reactor thread (every core
// of a multi-core node), so it covers every turn in between: receive, tick, dispatch, the node's
// store merges, the sink, and for a multi-core node the cross-core handoffs (entries merged on
// core 0 for core 1's shards, core 1's changes fed to core 0, anti-entropy on both cores).
// The window is not a length of time: it stays open until each of those paths is seen to have
// run in it (every write arrived on the other side; node a's counters show a completed sync
// and, with several cores, a handoff).
// With `sealed`, both nodes require encryption and node a rotates its key inside the window
// (the keyring change reaching its other core over the link).
void real_nodes_take_no_lock(std::uint32_t cores_a, bool sealed = false) {
  const std::string& key_a = test_key_a();
  const std::string& key_b = test_key_b();
  SystemTimeSource clock;
  struct Side {
    std::unique_ptr<Reactor> reactor;
    std::unique_ptr<Node> node;
  };
  Side sides[2];
  const std::uint32_t cores[2] = {cores_a, 1};
  for (int i = 0; i < 2; ++i) {
    ReactorConfig rc;
    rc.transport.bind = Address::ipv4(0x7f000001, 0);
    rc.transport.reuse_port = false;
    rc.pin = false;
    rc.cores = cores[i];
    auto r = Reactor::open(rc);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    sides[i].reactor = std::move(r.value());
    NodeConfig nc = NodeConfig::local();
    nc.name = i == 0 ? "a" : "b";
    nc.advertise = sides[i].reactor->local_address();
    nc.store.owners = cores[i];
    nc.sync_interval_ms = 300;  // anti-entropy rounds inside the counted window too
    if (i == 1) nc.seeds.push_back(sides[0].reactor->local_address());
    if (sealed) {
      nc.keys = {key_a};
      nc.encryption = EncryptionMode::kRequire;
    }
    auto n = Node::create(nc, clock);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    sides[i].node = std::move(n.value());
    sides[i].node->subscribe("", [](const Change&) {});
    ASSERT_TRUE(sides[i].reactor->start(*sides[i].node, clock).is_ok());
  }
  // Warm up: b has a's writes, on keys of every core (membership, first allocations, table
  // growth behind us).
  for (int k = 0; k < 8; ++k) ASSERT_TRUE(sides[0].node->set("k" + std::to_string(k), "up").is_ok());
  ASSERT_TRUE(eventually([&] {
    for (int k = 0; k < 8; ++k) {
      if (!sides[1].node->get("k" + std::to_string(k))) return false;
    }
    return true;
  }));
  // Node i's counters, read on its driver thread with counting paused for the read, so it may be
  // called inside the counted window.
  auto node_counters = [&](int i) {
    std::atomic<bool> done{false};
    NodeCounters c;
    EXPECT_TRUE(sides[i].reactor->post([&] {
      const bool counting = t_counting;
      t_counting = false;
      c = sides[i].node->counters();
      t_counting = counting;
      done.store(true, std::memory_order_release);
    }).is_ok());
    EXPECT_TRUE(eventually([&] { return done.load(std::memory_order_acquire); }));
    return c;
  };
  std::atomic<std::uint32_t> counting{0};
  std::uint32_t threads = 0;
  for (Side& s : sides) {
    for (std::uint32_t k = 0; k < s.reactor->cores(); ++k, ++threads) {
      ASSERT_TRUE(s.reactor->post_core(k, [&] {
        t_locks = 0;
        t_counting = true;
        counting.fetch_add(1);
      }).is_ok());
    }
  }
  ASSERT_TRUE(eventually([&] { return counting.load() == threads; }));
  const NodeCounters before = node_counters(0);  // read inside the window
  // Steady traffic: rewrite a few keys (no growth), each write from alternating sides, and wait
  // until gossip has carried it to the other side before the next.
  constexpr int kRounds = 32;
  for (int round = 0; round < kRounds; ++round) {
    // Rotation (install everywhere, then use) while counting.
    if (sealed && round == 8) {
      for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(run_on_core0(*sides[i].reactor,
                                 [&] { EXPECT_TRUE(sides[i].node->install_key(key_b)); }));
      }
    }
    if (sealed && round == 16) {
      ASSERT_TRUE(run_on_core0(*sides[0].reactor,
                               [&] { EXPECT_TRUE(sides[0].node->use_key(key_fingerprint(key_b))); }));
    }
    const std::string key = "k" + std::to_string(round % 8), value = "v" + std::to_string(round);
    ASSERT_TRUE(sides[round % 2].node->set(key, value).is_ok());
    ASSERT_TRUE(eventually([&] { return sides[1 - round % 2].node->get(key) == value; }))
        << "round " << round;
  }
  // Keep counting until anti-entropy (and, with several cores, a cross-core handoff) ran
  // inside the window too.
  ASSERT_TRUE(eventually([&] {
    const NodeCounters now = node_counters(0);
    return now.syncs_completed > before.syncs_completed &&
           (cores_a == 1 || now.core_handoffs > before.core_handoffs);
  })) << "no sync completed (or no core handoff) while counting";
  std::vector<std::atomic<std::uint64_t>> locks(threads);
  for (auto& l : locks) l.store(UINT64_MAX);
  std::uint32_t t = 0;
  for (int i = 0; i < 2; ++i) {
    for (std::uint32_t k = 0; k < sides[i].reactor->cores(); ++k, ++t) {
      ASSERT_TRUE(sides[i].reactor->post_core(k, [&, t] {
        t_counting = false;
        locks[t].store(t_locks);
      }).is_ok());
    }
  }
  ASSERT_TRUE(eventually([&] {
    for (auto& l : locks) {
      if (l.load() == UINT64_MAX) return false;
    }
    return true;
  }));
  t = 0;
  for (int i = 0; i < 2; ++i) {
    for (std::uint32_t k = 0; k < sides[i].reactor->cores(); ++k, ++t) {
      EXPECT_EQ(locks[t].load(), 0u) << "node " << (i == 0 ? "a" : "b") << " core " << k
                                     << " took a lock";
    }
  }
  if (sealed) {
    const NodeCounters a = node_counters(0), b = node_counters(1);
    EXPECT_EQ(a.packets_sealed, a.packets_sent);
    EXPECT_EQ(b.packets_sealed, b.packets_sent);
    EXPECT_GT(a.packets_opened, 0u);
    EXPECT_EQ(a.drop_unknown_key + a.drop_auth_failed + b.drop_unknown_key + b.drop_auth_failed,
              0u);
  }
  for (Side& s : sides) s.reactor->stop();
}

TEST(ReactorNoMutex, RealNodesOnReactorsTakeNoLockInSteadyState) { real_nodes_take_no_lock(1); }

TEST(ReactorNoMutex, MultiCoreNodeTakesNoLockOnAnyCore) { real_nodes_take_no_lock(2); }

TEST(ReactorNoMutex, SealedMultiCoreNodeTakesNoLockOnAnyCoreThroughARotation) {
  real_nodes_take_no_lock(2, /*sealed=*/true);
}

}  // namespace
}  // namespace rumor::testing
