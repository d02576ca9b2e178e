// A multi-host load test without the hosts: `rumor load --mode udp --workers-listen` as the
// coordinator in a "switch" namespace, and four `rumor load-worker` processes, each in its own
// network namespace joined to the switch's bridge by a veth pair, standing in for four hosts
// (or four pods of a Kubernetes Indexed Job). The workers' nodes bind and advertise their own
// namespace's address, so every gossip datagram crosses the bridge.
//
// Needs root and `ip netns add` (CI here has both); otherwise it skips and says why. Every wait
// is bounded.
#include <unistd.h>

#include <future>

#include "tests/agent/process_harness.h"

namespace rumor::testing {
namespace {

class Namespaces {
 public:
  ~Namespaces() {
    for (const std::string& ns : made_) ip({"netns", "del", ns});
  }
  std::string ip(std::vector<std::string> args) { return testing::ip(std::move(args)); }
  std::string add(const std::string& ns) {
    std::string e = ip({"netns", "add", ns});
    if (e.empty()) made_.push_back(ns);
    return e;
  }

 private:
  std::vector<std::string> made_;
};

TEST(NetnsLoad, ThousandNodesOnWorkersInFourNamespacesConverge) {
  if (geteuid() != 0 || ip_bin().empty()) {
    GTEST_SKIP() << "needs root and iproute2's `ip` to create network namespaces";
  }
  Namespaces n;
  const std::string tag = std::to_string(getpid() % 100000);
  const std::string sw = "rl" + tag + "-sw";
  if (std::string e = n.add(sw); !e.empty()) GTEST_SKIP() << "cannot create namespaces: " << e;
  const std::string subnet = "10.231." + std::to_string(getpid() % 200 + 20) + ".";
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"-n", sw, "link", "add", "br0", "type", "bridge"},
           {"-n", sw, "addr", "add", subnet + "1/24", "dev", "br0"},
           {"-n", sw, "link", "set", "br0", "up"},
           {"-n", sw, "link", "set", "lo", "up"}}) {
    ASSERT_EQ(n.ip(cmd), "");
  }
  const int workers = 4;
  std::vector<std::string> ns;
  for (int k = 1; k <= workers; ++k) {
    ns.push_back("rl" + tag + "-w" + std::to_string(k));
    ASSERT_EQ(n.add(ns.back()), "");
    const std::string port = "p" + std::to_string(k);
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"link", "add", "eth0", "netns", ns.back(), "type", "veth", "peer", "name", port,
              "netns", sw},
             {"-n", sw, "link", "set", port, "master", "br0"},
             {"-n", sw, "link", "set", port, "up"},
             {"-n", ns.back(), "addr", "add", subnet + std::to_string(k + 1) + "/24", "dev",
              "eth0"},
             {"-n", ns.back(), "link", "set", "eth0", "up"},
             {"-n", ns.back(), "link", "set", "lo", "up"}}) {
      ASSERT_EQ(n.ip(cmd), "");
    }
  }
  const std::string coordinator = subnet + "1:17950";
  auto coord = std::async(std::launch::async, [&] {
    return run_command({ip_bin(), "netns", "exec", sw, rumor_bin(), "load", "--mode", "udp",
                        "--nodes", "1000", "--procs", std::to_string(workers), "--preset", "lan",
                        "--workers-listen", coordinator, "--worker-wait-s", "60",
                        "--max-time-s", "120", "--progress", "none"},
                       400);
  });
  std::vector<std::future<RunResult>> ws;
  for (int k = 0; k < workers; ++k) {
    ws.push_back(std::async(std::launch::async, [&, k] {
      return run_command({ip_bin(), "netns", "exec", ns[static_cast<std::size_t>(k)],
                          rumor_bin(), "load-worker", "--coordinator", coordinator,
                          "--connect-timeout-s", "60"},
                         400);
    }));
  }
  const RunResult c = coord.get();
  std::printf("%s", c.out.c_str());  // the summary, for the test log
  std::string hosts;
  for (auto& w : ws) {
    const RunResult r = w.get();
    EXPECT_EQ(r.status, 0) << r.err;
    hosts += r.err;
  }
  EXPECT_EQ(c.status, 0) << c.out << c.err;
  EXPECT_NE(c.out.find("result             CONVERGED"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("4 worker process(es)"), std::string::npos) << c.out;
  for (int k = 1; k <= workers; ++k) {
    // Each worker's nodes live on its own namespace's address, not on loopback.
    EXPECT_NE(hosts.find("of 1000 on " + subnet + std::to_string(k + 1)), std::string::npos)
        << hosts;
  }
}

}  // namespace
}  // namespace rumor::testing
