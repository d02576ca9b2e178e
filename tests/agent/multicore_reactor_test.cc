// Nodes with two owner cores on real threads and real loopback UDP, next to single-core nodes:
// application threads write (their writes cross to the owning core through the store's MPSC
// queues), entries gossiped to core 0 are handed to core 1, core 1's changes are fed back to
// core 0's subscriptions, each core spreads its own changes, both cores reconcile with peers,
// and every core seals and opens through a key rotation. Labelled
// tsan: under ThreadSanitizer this is the race check of every cross-core queue. It runs with
// the kernel's steering program and with the user-space fallback.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "rumor/node.h"
#include "rumor/reactor.h"
#include "rumor/security.h"
#include "tests/agent/eventually.h"
#include "tests/support/test_keys.h"

namespace rumor::testing {
namespace {

// Bound on each wait: cross-core convergence, also under TSan on two shared CPUs.
constexpr double kWaitS = 60;

const std::string kKeyA = test_key_a();
const std::string kKeyB = test_key_b();

struct Peer {
  std::unique_ptr<Reactor> reactor;
  std::unique_ptr<Node> node;
  std::atomic<std::uint64_t> changes{0};  // written by the node's core 0 (callbacks)
};

// Opens peer i's reactor on loopback with `cores` reactor threads: the first peer is the
// others' seed. Returns its node configuration for the test to adjust before creating the node.
NodeConfig open_peer(Peer* m, int i, std::uint32_t cores, bool kernel_steering) {
  ReactorConfig rc;
  rc.transport.bind = Address::ipv4(0x7f000001, 0);
  rc.transport.recv_buffers = 256;
  rc.transport.send_buffers = 256;
  rc.pin = false;
  rc.cores = cores;
  rc.kernel_steering = kernel_steering;
  auto r = Reactor::open(rc);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r.is_ok()) return {};
  m[i].reactor = std::move(r.value());
  NodeConfig nc = NodeConfig::local();
  nc.name = "n" + std::to_string(i);
  nc.advertise = m[i].reactor->local_address();
  nc.store.owners = cores;
  if (i > 0) nc.seeds.push_back(m[0].reactor->local_address());
  return nc;
}

class MultiCoreReactor : public ::testing::TestWithParam<bool> {};

TEST_P(MultiCoreReactor, TwoCoreNodesConvergeWithSingleCoreNodes) {
  const bool kernel_steering = GetParam();
  SystemTimeSource clock;
  const std::uint32_t cores[3] = {2, 1, 2};
  Peer m[3];
  for (int i = 0; i < 3; ++i) {
    NodeConfig nc = open_peer(m, i, cores[i], kernel_steering);
    ASSERT_TRUE(m[i].reactor);
    if (cores[i] > 1) {
      EXPECT_EQ(m[i].reactor->steering().rfind(kernel_steering ? "kernel" : "user space", 0), 0u)
          << m[i].reactor->steering();
    }
    nc.sync_interval_ms = 500;
    // Sealed: every core seals with its own nonces and opens with its own windows.
    nc.keys = {kKeyA};
    nc.encryption = EncryptionMode::kRequire;
    auto n = Node::create(nc, clock);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    m[i].node = std::move(n.value());
    std::atomic<std::uint64_t>* changes = &m[i].changes;
    m[i].node->subscribe("key-", [changes](const Change&) {
      changes->fetch_add(1, std::memory_order_relaxed);
    });
    ASSERT_TRUE(m[i].reactor->start(*m[i].node, clock).is_ok());
  }
  // Two application threads write to the two-core nodes at once: keys of both cores.
  constexpr int kKeys = 2000;
  auto writer = [&](int node, int from) {
    for (int k = from; k < kKeys; k += 2) {
      const std::string key = "key-" + std::to_string(k);
      while (m[node].node->set(key, "value-" + std::to_string(k)).code() == Code::kBusy) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  };
  std::thread w0(writer, 0, 0), w2(writer, 2, 1);
  w0.join();
  w2.join();
  auto holds_all = [&](int i) {
    return m[i].node->scan_prefix("key-").size() == static_cast<std::size_t>(kKeys);
  };
  ASSERT_TRUE(eventually([&] { return holds_all(0) && holds_all(1) && holds_all(2); }, kWaitS))
      << m[0].node->scan_prefix("key-").size() << " " << m[1].node->scan_prefix("key-").size()
      << " " << m[2].node->scan_prefix("key-").size();
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < kKeys; k += 101) {
      EXPECT_EQ(m[i].node->get("key-" + std::to_string(k)).value_or(""),
                "value-" + std::to_string(k)) << "node " << i;
    }
  }
  // Every node's subscription saw every key (core 1's changes reach core 0's callbacks).
  ASSERT_TRUE(eventually([&] {
    for (auto& x : m) {
      if (x.changes.load(std::memory_order_relaxed) < static_cast<std::uint64_t>(kKeys)) return false;
    }
    return true;
  }, kWaitS));
  // A key rotation, made on each node's core 0 as the keyring calls require: the new keys reach
  // core 1 over its link while both cores seal and open.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(run_on_core0(*m[i].reactor, [&] { EXPECT_TRUE(m[i].node->install_key(kKeyB)); }));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(run_on_core0(*m[i].reactor,
                             [&] { EXPECT_TRUE(m[i].node->use_key(key_fingerprint(kKeyB))); }));
  }
  // Deletes from an application thread on the single-core node reach both cores elsewhere.
  for (int k = 0; k < kKeys; k += 2) ASSERT_TRUE(m[1].node->del("key-" + std::to_string(k)).is_ok());
  ASSERT_TRUE(eventually([&] {
    for (auto& x : m) {
      if (x.node->scan_prefix("key-").size() != static_cast<std::size_t>(kKeys / 2)) return false;
    }
    return true;
  }, kWaitS));
  // Read the two-core node's counters on its core 0, as the API asks.
  std::atomic<bool> done{false};
  NodeCounters c;
  ASSERT_TRUE(m[0].reactor->post([&] {
    c = m[0].node->counters();
    done.store(true, std::memory_order_release);
  }).is_ok());
  ASSERT_TRUE(eventually([&] { return done.load(std::memory_order_acquire); }, kWaitS));
  EXPECT_GT(c.core_handoffs, 0u);
  EXPECT_GE(c.syncs_completed, 1u);
  EXPECT_EQ(c.packets_sealed, c.packets_sent);
  EXPECT_EQ(c.drop_unknown_key + c.drop_auth_failed, 0u);
  for (auto& x : m) x.reactor->stop();
}

// Large values on real threads: values too big for a datagram set by an application thread on
// a two-core node are pulled by the other nodes (assembled on core 0, merged on the key's owner
// core) while reader threads on the other nodes read the key in a loop: every read is nothing,
// the old value or the new one, whole (under TSan, also the race check of that path).
TEST_P(MultiCoreReactor, LargeValuesAreReadWholeWhileTheyArrive) {
  const bool kernel_steering = GetParam();
  SystemTimeSource clock;
  const std::uint32_t cores[3] = {2, 1, 2};
  Peer m[3];
  for (int i = 0; i < 3; ++i) {
    NodeConfig nc = open_peer(m, i, cores[i], kernel_steering);
    ASSERT_TRUE(m[i].reactor);
    auto n = Node::create(nc, clock);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    m[i].node = std::move(n.value());
    ASSERT_TRUE(m[i].reactor->start(*m[i].node, clock).is_ok());
  }
  auto value = [](std::size_t n, char base) {
    std::string v(n, ' ');
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>(base + (i * 7 + i / 4099) % 26);
    return v;
  };
  const std::string old_v = value(256 * 1024, 'A'), new_v = value(512 * 1024, 'a');
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0}, reads{0}, found{0};
  auto reader = [&](int i) {
    // Bounded by `stop` and by a count no plausible run reaches.
    for (std::uint64_t k = 0; k < 100'000'000 && !stop.load(std::memory_order_relaxed); ++k) {
      const std::optional<std::string> v = m[i].node->get("blob");
      reads.fetch_add(1, std::memory_order_relaxed);
      if (v) found.fetch_add(1, std::memory_order_relaxed);
      if (v && *v != old_v && *v != new_v) bad.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::thread r1(reader, 1), r2(reader, 2);
  auto all_hold = [&](const std::string& v) {
    for (auto& x : m) {
      if (x.node->get("blob") != v) return false;
    }
    return true;
  };
  // Wait for the cluster to form: the first set must spread by gossip, not by a join's sync.
  // members() is a core-0 call: posted, its answer read through an atomic the command owns a
  // share of (so a command that runs late writes nothing freed).
  const bool formed = eventually([&] {
    auto members = std::make_shared<std::atomic<int>>(-1);
    Node* node = m[0].node.get();
    if (!m[0].reactor->post([members, node] {
          members->store(static_cast<int>(node->members().size()), std::memory_order_release);
        }).is_ok()) {
      return false;
    }
    return eventually([&] { return members->load(std::memory_order_acquire) >= 0; }, kWaitS) &&
           members->load(std::memory_order_acquire) == 3;
  }, kWaitS);
  EXPECT_TRUE(formed);
  EXPECT_TRUE(m[0].node->set("blob", old_v).is_ok());
  EXPECT_TRUE(eventually([&] { return all_hold(old_v); }, kWaitS));
  EXPECT_TRUE(m[2].node->set("blob", new_v).is_ok());
  EXPECT_TRUE(eventually([&] { return all_hold(new_v); }, kWaitS));
  stop.store(true, std::memory_order_relaxed);
  r1.join();
  r2.join();
  EXPECT_EQ(bad.load(), 0u) << "reads of neither value, of " << reads.load();
  EXPECT_GT(found.load(), 0u);
  std::printf("%llu reads on two reader threads, %llu of them found a value: the old or the new, "
              "whole\n",
              static_cast<unsigned long long>(reads.load()),
              static_cast<unsigned long long>(found.load()));
  for (auto& x : m) x.reactor->stop();
}

INSTANTIATE_TEST_SUITE_P(Steering, MultiCoreReactor, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "kernel" : "user_space"; });

}  // namespace
}  // namespace rumor::testing
