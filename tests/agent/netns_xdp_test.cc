// Two real `rumor agent` processes on AF_XDP, one at each end of a veth pair between two
// network namespaces this test creates (tests/io/xdp_netns.h), replicate the seed story
// (docs/walkthrough.md): v1.2.3 set on one is read on the other, then v1.2.4 replaces it, over
// IPv4 and over IPv6. No static neighbour entries: the first datagrams take the kernel's path
// and resolve the neighbour, the rest go through the XDP program and the AF_XDP sockets.
//
// Needs root, iproute2 and a kernel and build with AF_XDP; otherwise it skips and says why
// (an agent that fell back to io_uring logs the reason, which the skip message carries).
// Every wait is bounded; the namespaces go with the test, even when it fails.
#include <unistd.h>

#include "tests/agent/process_harness.h"
#include "tests/io/xdp_netns.h"

namespace rumor::testing {
namespace {

std::string value_at(const AgentProcess& a, const std::string& key) {
  const RunResult r = a.rumor({"get", key});
  if (r.status != 0) return "<" + r.err + ">";
  std::string v = r.out;
  if (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

// The "reason=..." of the agent's "io backend" log line.
std::string backend_line(const AgentProcess& a) {
  const std::string log = a.log();
  const std::size_t at = log.find("msg=\"io backend\"");
  if (at == std::string::npos) return "<no io backend line>";
  return log.substr(at, log.find('\n', at) - at);
}

TEST(NetnsXdp, TwoAgentsReplicateTheSeedStoryOverAfXdp) {
  NetnsTopology topo("a");
  if (!topo.available()) GTEST_SKIP() << topo.error();
  const auto [ns1, ns2] = topo.add_veth_pair(/*static_neighbours=*/false);
  ASSERT_FALSE(ns1.empty()) << topo.error();
  TempDir dir;
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    const auto endpoint = [v6](int k) {
      return NetnsTopology::pair_address(k, v6, static_cast<std::uint16_t>(17946 + (v6 ? 1 : 0)))
          .to_string();
    };
    AgentProcess a1(dir.path(), v6 ? "x6a" : "x4a");
    AgentProcess a2(dir.path(), v6 ? "x6b" : "x4b");
    a1.set_wrapper(topo.exec_prefix(ns1));
    a2.set_wrapper(topo.exec_prefix(ns2));
    a1.set_bind(endpoint(1));
    a2.set_bind(endpoint(2));
    const std::vector<std::string> xdp = {"--backend", "xdp", "--xdp-interface", "v0"};
    ASSERT_TRUE(a1.start({}, xdp)) << a1.error;
    if (backend_line(a1).find("backend=xdp") == std::string::npos) {
      GTEST_SKIP() << "AF_XDP is not available here: " << backend_line(a1);
    }
    ASSERT_TRUE(a2.start({endpoint(1)}, xdp)) << a2.error;
    EXPECT_NE(backend_line(a2).find("backend=xdp"), std::string::npos) << backend_line(a2);
    EXPECT_EQ(a1.gossip, endpoint(1));
    // The program is on both ends of the pair while the agents run (ip shows "xdp" or
    // "xdpgeneric" with the program's id).
    for (const std::string& ns : {ns1, ns2}) {
      FILE* p = popen((NetnsTopology::ip_bin() + " -n " + ns + " link show dev v0").c_str(), "r");
      ASSERT_NE(p, nullptr);
      std::string out;
      char buf[256];
      while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
      pclose(p);
      EXPECT_NE(out.find("prog/xdp id"), std::string::npos) << ns << ": " << out;
    }

    RunResult set = a1.rumor({"set", "service_version", "v1.2.3"});
    ASSERT_EQ(set.status, 0) << set.err;
    EXPECT_TRUE(eventually([&] { return value_at(a2, "service_version") == "v1.2.3"; }, 20))
        << "a2 has " << value_at(a2, "service_version") << "\n"
        << a2.log();
    set = a1.rumor({"set", "service_version", "v1.2.4"});
    ASSERT_EQ(set.status, 0) << set.err;
    for (const AgentProcess* a : {&a1, &a2}) {
      EXPECT_TRUE(eventually([&] { return value_at(*a, "service_version") == "v1.2.4"; }, 20))
          << a->name() << " has " << value_at(*a, "service_version");
    }
    // And back the other way: a write on the joiner reaches the seed.
    set = a2.rumor({"set", "owner", "node-2"});
    ASSERT_EQ(set.status, 0) << set.err;
    EXPECT_TRUE(eventually([&] { return value_at(a1, "owner") == "node-2"; }, 20))
        << "a1 has " << value_at(a1, "owner");
    EXPECT_EQ(a2.terminate(), 0) << a2.log();
    EXPECT_EQ(a1.terminate(), 0) << a1.log();
  }
}

// Two cores a node, on a veth pair with two queues a side: core k's AF_XDP socket binds queue
// k, the cores share one XDP program, and what lands on the wrong core is handed over in user
// space as with any backend without kernel steering.
TEST(NetnsXdp, TwoCoreAgentsShareTheProgramOneSocketPerQueue) {
  NetnsTopology topo("m");
  if (!topo.available()) GTEST_SKIP() << topo.error();
  const auto [ns1, ns2] = topo.add_veth_pair(/*static_neighbours=*/false, /*queues=*/2);
  ASSERT_FALSE(ns1.empty()) << topo.error();
  TempDir dir;
  AgentProcess a1(dir.path(), "mc1");
  AgentProcess a2(dir.path(), "mc2");
  a1.set_wrapper(topo.exec_prefix(ns1));
  a2.set_wrapper(topo.exec_prefix(ns2));
  const std::string e1 = NetnsTopology::pair_address(1, false, 17950).to_string();
  const std::string e2 = NetnsTopology::pair_address(2, false, 17950).to_string();
  a1.set_bind(e1);
  a2.set_bind(e2);
  const std::vector<std::string> xdp = {"--backend", "xdp",     "--xdp-interface",
                                        "v0",        "--cores", "2"};
  ASSERT_TRUE(a1.start({}, xdp)) << a1.error;
  if (backend_line(a1).find("backend=xdp") == std::string::npos) {
    GTEST_SKIP() << "AF_XDP is not available here: " << backend_line(a1);
  }
  ASSERT_TRUE(a2.start({e1}, xdp)) << a2.error;
  EXPECT_NE(backend_line(a2).find("backend=xdp"), std::string::npos) << backend_line(a2);
  EXPECT_NE(a1.log().find("threads=2"), std::string::npos) << a1.log();
  for (int i = 0; i < 8; ++i) {  // keys spread over both cores' shards
    const std::string key = "svc" + std::to_string(i);
    RunResult set = a1.rumor({"set", key, "v1.2." + std::to_string(i)});
    ASSERT_EQ(set.status, 0) << set.err;
  }
  for (int i = 0; i < 8; ++i) {
    const std::string key = "svc" + std::to_string(i);
    EXPECT_TRUE(eventually([&] { return value_at(a2, key) == "v1.2." + std::to_string(i); }, 20))
        << key << ": a2 has " << value_at(a2, key) << "\n"
        << a2.log();
  }
  EXPECT_EQ(a2.terminate(), 0) << a2.log();
  EXPECT_EQ(a1.terminate(), 0) << a1.log();
}

}  // namespace
}  // namespace rumor::testing
