// Fault tests with real `rumor agent` processes, each in a network namespace this test creates,
// wired to one switch namespace by veth pairs. Faults: 20% loss; 200 ms delay with jitter; a
// partition made by taking a link down, then healed; SIGSTOP then SIGCONT; kill -9 and a
// restart. After each, every live node converges and no accepted write is lost. The cluster
// runs sealed (encryption `require`), half of its agents on two cores, and the keys rotate
// between real agents; agents under another label or without the key never merge with it.
//
// The switch: this machine's kernel has no sch_netem (tc netem fails with "Specified qdisc kind
// is unknown"), so loss and delay come from a small learning Ethernet switch in this process
// (UserSwitch): it reads frames from the switch ends of the veth pairs with AF_PACKET sockets
// and forwards them, dropping and delaying as netem would. Partitions are real: `ip link set
// down` on a switch port. The agents run without UDP GSO here (the switch does not split GSO
// super-frames, which a kernel bridge would hand on whole).
//
// Needs root and `ip netns add` (CI here has both); otherwise every test skips and says why.
// Every wait is bounded; the whole suite takes about two minutes.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>

#include "tests/agent/process_harness.h"

namespace rumor::testing {
namespace {

// A counter from `rumor stats` output ("name{labels}   value" lines); -1 when absent.
long long stat(const std::string& out, const std::string& name) {
  std::size_t at = 0;
  while ((at = out.find(name, at)) != std::string::npos) {
    if (at == 0 || out[at - 1] == '\n') {
      const std::size_t eol = out.find('\n', at);
      const std::string line = out.substr(at, eol == std::string::npos ? eol : eol - at);
      return std::atoll(line.substr(line.find_last_of(' ') + 1).c_str());
    }
    at += name.size();
  }
  return -1;
}

// A learning Ethernet switch over AF_PACKET sockets in the switch namespace, with netem-like
// impairments: each frame is dropped with probability `loss`, else delivered after
// delay_ms + uniform[-jitter_ms, jitter_ms] (so jitter reorders, as netem does).
class UserSwitch {
 public:
  struct Impairment {
    double loss = 0;
    int delay_ms = 0, jitter_ms = 0;
  };
  ~UserSwitch() { stop(); }

  std::string start(const std::string& netns, const std::vector<std::string>& ports) {
    std::promise<std::string> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, netns, ports, &ready] { run(netns, ports, ready); });
    return started.get();
  }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  void impair(Impairment i) {
    std::lock_guard<std::mutex> g(mu_);
    impair_ = i;
  }
  std::uint64_t dropped() const { return dropped_.load(); }
  std::uint64_t forwarded() const { return forwarded_.load(); }

 private:
  struct Pending {
    std::uint64_t at_ns;
    std::size_t port;
    std::uint64_t order;
    std::string frame;
    bool operator>(const Pending& o) const {
      return at_ns != o.at_ns ? at_ns > o.at_ns : order > o.order;
    }
  };

  void run(const std::string& netns, const std::vector<std::string>& ports,
           std::promise<std::string>& ready) {
    // setns moves this thread only: its sockets live in the switch namespace.
    const int nsfd = open(("/var/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
      ready.set_value("setns " + netns + ": " + std::strerror(errno));
      if (nsfd >= 0) close(nsfd);
      return;
    }
    close(nsfd);
    std::vector<int> fds;
    for (const std::string& p : ports) {
      const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(ETH_P_ALL);
      sll.sll_ifindex = static_cast<int>(if_nametoindex(p.c_str()));
      if (fd < 0 || sll.sll_ifindex == 0 ||
          bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
        ready.set_value("AF_PACKET socket on " + p + ": " + std::strerror(errno));
        for (int f : fds) close(f);
        if (fd >= 0) close(fd);
        return;
      }
      fds.push_back(fd);
    }
    ready.set_value("");
    std::mt19937_64 rng(12345);
    std::map<std::string, std::size_t> mac_port;
    std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> queue;
    constexpr std::size_t kQueueMax = 200'000;  // frames in flight; beyond it, dropped
    std::uint64_t order = 0;
    std::vector<pollfd> pfds(fds.size());
    char buf[65536];
    while (!stop_.load()) {
      const std::uint64_t now = monotonic_ns();
      while (!queue.empty() && queue.top().at_ns <= now) {
        const Pending& p = queue.top();
        // A port that is down refuses the send: the frame is lost, as on a dead link.
        (void)send(fds[p.port], p.frame.data(), p.frame.size(), MSG_DONTWAIT);
        queue.pop();
      }
      int timeout_ms = 10;
      if (!queue.empty()) {
        const std::uint64_t wait = queue.top().at_ns > now ? queue.top().at_ns - now : 0;
        timeout_ms = static_cast<int>(std::min<std::uint64_t>(wait / 1'000'000, 10));
      }
      for (std::size_t i = 0; i < fds.size(); ++i) pfds[i] = {fds[i], POLLIN, 0};
      if (poll(pfds.data(), pfds.size(), timeout_ms) <= 0) continue;
      Impairment imp;
      {
        std::lock_guard<std::mutex> g(mu_);
        imp = impair_;
      }
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        for (int k = 0; k < 64; ++k) {  // bounded per port per turn
          sockaddr_ll from{};
          socklen_t fl = sizeof from;
          const ssize_t n = recvfrom(fds[i], buf, sizeof buf, 0,
                                     reinterpret_cast<sockaddr*>(&from), &fl);
          if (n <= 0) break;
          if (from.sll_pkttype == PACKET_OUTGOING || n < 14) continue;  // our own sends
          std::string frame(buf, static_cast<std::size_t>(n));
          // veths leave UDP checksums to "hardware" (CHECKSUM_PARTIAL): a frame read here has an
          // unfinished one, which the receiver would refuse. IPv4 UDP allows 0, "no checksum".
          if (frame.size() >= 14 + 20 + 8 && frame[12] == 0x08 && frame[13] == 0x00 &&
              frame[14 + 9] == 17) {
            const std::size_t ihl = (static_cast<unsigned char>(frame[14]) & 0x0f) * 4u;
            if (frame.size() >= 14 + ihl + 8) {
              frame[14 + ihl + 6] = 0;
              frame[14 + ihl + 7] = 0;
            }
          }
          mac_port[frame.substr(6, 6)] = i;
          const std::string dst = frame.substr(0, 6);
          std::vector<std::size_t> out;
          auto known = mac_port.find(dst);
          if (known != mac_port.end() && !(static_cast<unsigned char>(dst[0]) & 1)) {
            if (known->second != i) out.push_back(known->second);
          } else {
            for (std::size_t j = 0; j < fds.size(); ++j) {
              if (j != i) out.push_back(j);
            }
          }
          for (std::size_t j : out) {
            if (std::uniform_real_distribution<double>(0, 1)(rng) < imp.loss ||
                queue.size() >= kQueueMax) {
              dropped_.fetch_add(1);
              continue;
            }
            std::int64_t d = imp.delay_ms;
            if (imp.jitter_ms > 0) {
              d += std::uniform_int_distribution<int>(-imp.jitter_ms, imp.jitter_ms)(rng);
            }
            queue.push(Pending{monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(d, 0)) * 1'000'000ull,
                               j, order++, frame});
            forwarded_.fetch_add(1);
          }
        }
      }
    }
    for (int f : fds) close(f);
  }

  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // test-only: the impairment is set from the test thread
  Impairment impair_;
  std::atomic<std::uint64_t> dropped_{0}, forwarded_{0};
};

constexpr std::size_t kNodes = 4;

class NetnsFault : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_ = "not root: network namespaces cannot be created here";
      return;
    }
    if (ip_bin().empty()) {
      skip_ = "no `ip` command (iproute2)";
      return;
    }
    // Namespaces left by an earlier run of this test that died (its pid is gone).
    RunResult list = run_command({ip_bin(), "netns", "list"}, 10);
    std::istringstream lines(list.out);
    for (std::string line; std::getline(lines, line);) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind("rft", 0) != 0) continue;
      const long pid = std::atol(name.c_str() + 3);
      if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0) (void)ip({"netns", "del", name});
    }
    prefix_ = "rft" + std::to_string(getpid());
    sw_ = prefix_ + "sw";
    if (std::string e = ip({"netns", "add", sw_}); !e.empty()) {
      skip_ = "cannot create a network namespace (" + e + ")";
      return;
    }
    std::vector<std::string> ports;
    // Nodes 0..3 are the cluster; 4 runs under another label, 5 without the key.
    for (std::size_t i = 0; i < kNodes + 2; ++i) {
      const std::string ns = node_ns(i), port = "p" + std::to_string(i);
      for (std::vector<std::string> cmd : std::vector<std::vector<std::string>>{
               {"netns", "add", ns},
               {"-n", ns, "link", "set", "lo", "up"},
               {"-n", sw_, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
               {"-n", sw_, "link", "set", port, "up"},
               {"-n", ns, "addr", "add", address(i) + "/24", "dev", "eth0"},
               {"-n", ns, "link", "set", "eth0", "up"}}) {
        if (std::string e = ip(cmd); !e.empty()) {
          setup_error_ = e;
          return;
        }
      }
      ports.push_back(port);
    }
    switch_ = new UserSwitch();
    setup_error_ = switch_->start(sw_, ports);
    if (!setup_error_.empty()) return;
    key_ = run_rumor({"keys", "generate"}).out;
    while (!key_.empty() && key_.back() == '\n') key_.pop_back();
    dir_ = new TempDir();
    for (std::size_t i = 0; i < kNodes; ++i) agents_[i] = make_agent(i);
    // Node 0 starts the cluster; the others join it.
    for (std::size_t i = 0; i < kNodes; ++i) {
      if (!agents_[i]->start(seeds_for(i), agent_flags(i), 30)) {
        setup_error_ = agents_[i]->error + "\nswitch forwarded " +
                       std::to_string(switch_->forwarded()) + ", dropped " +
                       std::to_string(switch_->dropped());
        return;
      }
    }
  }

  static void TearDownTestSuite() {
    for (auto*& a : agents_) {
      if (a) a->kill9();
      delete a;
      a = nullptr;
    }
    if (switch_) switch_->stop();
    delete switch_;
    switch_ = nullptr;
    if (!prefix_.empty()) {
      for (std::size_t i = 0; i < kNodes + 2; ++i) (void)ip({"netns", "del", node_ns(i)});
      (void)ip({"netns", "del", sw_});
    }
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << "netns fault tests skipped: " << skip_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    switch_->impair({});
  }

  static std::string node_ns(std::size_t i) { return prefix_ + "n" + std::to_string(i); }
  static std::string address(std::size_t i) { return "10.77.0." + std::to_string(i + 1); }
  static std::string gossip(std::size_t i) { return address(i) + ":7946"; }
  static std::vector<std::string> seeds_for(std::size_t i) {
    return i == 0 ? std::vector<std::string>{} : std::vector<std::string>{gossip(0)};
  }
  static AgentProcess* make_agent(std::size_t i) {
    auto* a = new AgentProcess(dir_->path(), "n" + std::to_string(i));
    a->set_wrapper({ip_bin(), "netns", "exec", node_ns(i)});
    a->set_bind(gossip(i));
    return a;
  }
  // Timers that tolerate 200 ms (+-50) each way: probes time out after 600 ms.
  static std::vector<std::string> agent_flags(std::size_t i, std::string label = "faults",
                                              bool keyed = true) {
    std::vector<std::string> f = {"--label", label,
                                  "-o", "node.probe_interval_ms=1000",
                                  "-o", "node.probe_timeout_ms=600",
                                  "-o", "node.gossip_interval_ms=100",
                                  "-o", "node.sync_interval_ms=1000",
                                  "-o", "node.sync_timeout_ms=3000",
                                  "-o", "node.reconnect_interval_ms=1000",
                                  "-o", "join_timeout_ms=0",
                                  // The switch forwards frames as it reads them: a UDP GSO
                                  // super-frame would arrive as one oversized datagram.
                                  "-o", "transport.gso=false"};
    if (keyed) {
      f.insert(f.end(), {"-o", "encryption.mode=require", "-o", "encryption.keys=" + key_});
    }
    // Odd agents run two reactor threads: every fault, the rotation and the restart also hold
    // for multi-core agents sealing on every core, beside single-core ones.
    if (i % 2 == 1) f.insert(f.end(), {"--cores", "2"});
    return f;
  }

  // Writes key=value through node i; remembers it when the agent accepted it.
  bool write(std::size_t i, const std::string& key, const std::string& value) {
    RunResult r = agents_[i]->rumor({"set", key, value}, 10);
    if (r.status != 0) return false;
    accepted_[key] = value;
    return true;
  }

  // Every live node holds every accepted write, and lists every live node as alive.
  bool converged(const std::vector<std::size_t>& live, std::string* why) {
    for (std::size_t i : live) {
      RunResult r = agents_[i]->rumor({"keys", "--json", "--limit", "100000"}, 10);
      if (r.status != 0) {
        *why = "n" + std::to_string(i) + ": rumor keys failed: " + r.err;
        return false;
      }
      for (const auto& [k, v] : accepted_) {
        if (r.out.find("{\"key\":\"" + k + "\",\"value\":\"" + v + "\"") ==
            std::string::npos) {
          *why = "n" + std::to_string(i) + " lacks " + k + "=" + v;
          return false;
        }
      }
      RunResult m = agents_[i]->rumor({"members", "--json"}, 10);
      for (std::size_t j : live) {
        const std::string want = "\"name\":\"n" + std::to_string(j) + "\"";
        const std::size_t at = m.out.find(want);
        if (at == std::string::npos ||
            m.out.find("\"state\":\"alive\"", at) != m.out.find("\"state\":", at)) {
          *why = "n" + std::to_string(i) + " does not list n" + std::to_string(j) + " alive";
          return false;
        }
      }
    }
    return true;
  }

  void expect_converged(const std::vector<std::size_t>& live, double seconds) {
    std::string why;
    // Bounded: polls every 20 ms for at most `seconds`.
    const bool ok = eventually([&] { return converged(live, &why); }, seconds);
    if (ok) return;
    std::string state;
    for (std::size_t i : live) {
      RunResult m = agents_[i]->rumor({"members"}, 10);
      RunResult st = agents_[i]->rumor({"stats"}, 10);
      state += "n" + std::to_string(i) + ":\n" + m.out;
      for (const char* c : {"drops_total", "reconciliation", "sealed", "opened", "packets_received"}) {
        std::size_t at = 0;
        while ((at = st.out.find(c, at)) != std::string::npos) {
          const std::size_t bol = st.out.rfind('\n', at) + 1, eol = st.out.find('\n', at);
          const std::string line = st.out.substr(bol, eol - bol);
          if (line.back() != '0' || line[line.size() - 2] != ' ') state += "  " + line + "\n";
          at = eol;
        }
      }
    }
    ADD_FAILURE() << "not converged after " << seconds << " s: " << why << "\n"
                  << "switch forwarded " << switch_->forwarded() << ", dropped "
                  << switch_->dropped() << "\n" << state;
  }

  std::vector<std::size_t> all() const { return {0, 1, 2, 3}; }

  bool sees_dead(std::size_t observer, const std::string& name) {
    RunResult m = agents_[observer]->rumor({"members", "--json"}, 10);
    const std::size_t at = m.out.find("\"name\":\"" + name + "\"");
    return at != std::string::npos &&
           m.out.find("\"state\":\"dead\"", at) == m.out.find("\"state\":", at);
  }

  static inline std::string skip_, setup_error_, prefix_, sw_, key_;
  static inline UserSwitch* switch_ = nullptr;
  static inline TempDir* dir_ = nullptr;
  static inline AgentProcess* agents_[kNodes] = {};
  static inline std::map<std::string, std::string> accepted_;
};

TEST_F(NetnsFault, EncryptedClusterFormsAcrossNamespaces) {
  for (std::size_t i = 0; i < kNodes; ++i) ASSERT_TRUE(write(i, "start-" + std::to_string(i), "v"));
  expect_converged(all(), 30);
  for (std::size_t i = 0; i < kNodes; ++i) {
    RunResult s = agents_[i]->rumor({"stats", "packets"}, 10);
    EXPECT_GT(stat(s.out, "rumor_packets_sealed_total"), 0) << s.out;
    EXPECT_GT(stat(s.out, "rumor_packets_opened_total"), 0) << s.out;
    RunResult info = agents_[i]->rumor({"info", "--json"}, 10);
    EXPECT_NE(info.out.find(i % 2 ? "\"cores\":2," : "\"cores\":1,"), std::string::npos)
        << info.out;
  }
}

TEST_F(NetnsFault, TwentyPercentLoss) {
  switch_->impair({0.20, 0, 0});
  for (int k = 0; k < 12; ++k) ASSERT_TRUE(write(k % kNodes, "loss-" + std::to_string(k), "v"));
  expect_converged(all(), 40);  // with the loss still on
  EXPECT_GT(switch_->dropped(), 0u);
}

TEST_F(NetnsFault, DelayOf200msWithJitter) {
  switch_->impair({0, 200, 50});
  for (int k = 0; k < 12; ++k) ASSERT_TRUE(write(k % kNodes, "delay-" + std::to_string(k), "v"));
  expect_converged(all(), 40);  // with the delay still on
}

TEST_F(NetnsFault, PartitionByLinkDownThenHealed) {
  // Node 3 is cut off; both sides keep accepting writes.
  ASSERT_EQ(ip({"-n", sw_, "link", "set", "p3", "down"}), "");
  for (int k = 0; k < 6; ++k) {
    ASSERT_TRUE(write(k % 3, "part-" + std::to_string(k), "v"));
    ASSERT_TRUE(write(3, "part-minority-" + std::to_string(k), "v"));
  }
  // Long enough for the majority to declare n3 dead (n3, alone, blames its own health first:
  // Lifeguard slows its suspicions down).
  EXPECT_TRUE(eventually([&] { return sees_dead(0, "n3"); }, 20)) << "n0 never saw n3 dead";
  ASSERT_EQ(ip({"-n", sw_, "link", "set", "p3", "up"}), "");
  expect_converged(all(), 40);
}

TEST_F(NetnsFault, SigstopThenSigcont) {
  const pid_t pid = agents_[2]->pid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  for (int k = 0; k < 6; ++k) ASSERT_TRUE(write(k % 2, "stop-" + std::to_string(k), "v"));
  // Stopped until the others declare it dead (bounded); then it must refute and catch up.
  EXPECT_TRUE(eventually([&] { return sees_dead(0, "n2"); }, 20)) << "n0 never saw n2 dead";
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ASSERT_TRUE(write(3, "stop-after", "v"));
  expect_converged(all(), 40);
}

TEST_F(NetnsFault, KillNineAndRestart) {
  // Writes through n1 reach another node before n1 dies (rumor keeps no disk: a write that no
  // other node received is gone with its process; docs/security.md).
  ASSERT_TRUE(write(1, "kill-before", "v"));
  std::string why;
  ASSERT_TRUE(eventually([&] { return converged({0, 2, 3}, &why); }, 30)) << why;
  agents_[1]->kill9();
  for (int k = 0; k < 6; ++k) ASSERT_TRUE(write(k % 2 == 0 ? 0 : 2, "kill-" + std::to_string(k), "v"));
  expect_converged({0, 2, 3}, 30);
  ASSERT_TRUE(agents_[1]->start(seeds_for(1), agent_flags(1), 30)) << agents_[1]->error;
  ASSERT_TRUE(write(1, "kill-after-restart", "v"));
  expect_converged(all(), 40);
}

TEST_F(NetnsFault, KeyRotationBetweenRealAgents) {
  std::string k2 = run_rumor({"keys", "generate"}).out;
  while (!k2.empty() && k2.back() == '\n') k2.pop_back();
  RunResult fp;
  for (std::size_t i = 0; i < kNodes; ++i) {
    fp = agents_[i]->rumor({"keys", "install", k2, "--json"}, 10);
    ASSERT_EQ(fp.status, 0) << fp.err;
    ASSERT_TRUE(write(i, "rot-install-" + std::to_string(i), "v"));
  }
  // The new key's fingerprint: the non-primary entry.
  const std::size_t at = fp.out.find("\"primary\":false");
  ASSERT_NE(at, std::string::npos) << fp.out;
  const std::size_t f = fp.out.rfind("\"fingerprint\":\"", at) + 15;
  const std::string new_fp = fp.out.substr(f, 16);
  for (std::size_t i = 0; i < kNodes; ++i) {
    ASSERT_EQ(agents_[i]->rumor({"keys", "use", new_fp}, 10).status, 0);
    ASSERT_TRUE(write(i, "rot-use-" + std::to_string(i), "v"));
  }
  for (std::size_t i = 0; i < kNodes; ++i) {
    RunResult r = agents_[i]->rumor({"keys", "remove", key_}, 10);
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(write(i, "rot-remove-" + std::to_string(i), "v"));
  }
  expect_converged(all(), 30);
  RunResult list = agents_[0]->rumor({"keys", "list"}, 10);
  EXPECT_NE(list.out.find(new_fp + "  primary"), std::string::npos) << list.out;
  for (std::size_t i = 0; i < kNodes; ++i) {
    RunResult s = agents_[i]->rumor({"stats", "drops"}, 10);
    EXPECT_EQ(stat(s.out, "rumor_packet_drops_total{reason=\"unknown_key\"}"), 0)
        << "n" << i << " refused datagrams during the rotation:\n" << s.out;
  }
  key_ = k2;  // a restart later must use the current key
}

TEST_F(NetnsFault, OtherLabelsAndKeylessAgentsNeverMerge) {
  // An agent under another label (same key) and one without the key try to join n0. Neither
  // may get in: each gives up after its join timeout (no seed answered), n0 counts their
  // datagrams as refused, and no cluster member ever lists them.
  ASSERT_TRUE(write(0, "private", "v"));
  auto refused = [&] {
    RunResult s = agents_[0]->rumor({"stats", "drops"}, 10);
    return std::make_pair(stat(s.out, "rumor_packet_drops_total{reason=\"wrong_label\"}"),
                          stat(s.out, "rumor_packet_drops_total{reason=\"plaintext_refused\"}"));
  };
  const auto before = refused();
  struct Outsider {
    const char* name;
    std::size_t slot;
    std::string label;
    bool keyed;
  };
  for (const Outsider& o : {Outsider{"other-label", kNodes, "elsewhere", true},
                            Outsider{"keyless", kNodes + 1, "faults", false}}) {
    SCOPED_TRACE(o.name);
    AgentProcess a(dir_->path(), o.name);
    a.set_wrapper({ip_bin(), "netns", "exec", node_ns(o.slot)});
    a.set_bind(gossip(o.slot));
    std::vector<std::string> flags = agent_flags(o.slot, o.label, o.keyed);
    flags.insert(flags.end(), {"-o", "join_timeout_ms=4000"});  // after the flags' 0: wins
    EXPECT_FALSE(a.start({gossip(0)}, flags, 30)) << "an outsider joined";
    EXPECT_NE(a.log().find("no seed answered"), std::string::npos) << a.log();
  }
  const auto after = refused();
  EXPECT_GT(after.first, before.first) << "n0 saw no datagram under the other label";
  EXPECT_GT(after.second, before.second) << "n0 saw no plaintext datagram";
  for (std::size_t i = 0; i < kNodes; ++i) {
    RunResult m = agents_[i]->rumor({"members", "--json"}, 10);
    EXPECT_EQ(m.out.find("other-label"), std::string::npos) << m.out;
    EXPECT_EQ(m.out.find("keyless"), std::string::npos) << m.out;
  }
}

}  // namespace
}  // namespace rumor::testing
