// A network for AF_XDP tests and benchmarks, made of namespaces this process creates: a hub
// namespace holding a Linux bridge (address .254 / ::fe), and one namespace per endpoint whose
// interface `x0` is one end of a veth pair, the other end a bridge port in the hub. Endpoints
// reach each other over the bridge, so every datagram crosses two veth pairs, and each
// endpoint's interface carries its own XDP program and AF_XDP socket.
//
// The calling thread enters a namespace (setns) to open a socket there and comes back; sockets
// stay in the namespace they were made in. Everything is deleted by the destructor, and
// namespaces left behind by a process that died are deleted by the next one. Needs root and
// iproute2; available() says why not otherwise.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "rumor/transport.h"

namespace rumor::testing {

class NetnsTopology {
 public:
  // `tag` keeps names apart when one process makes several topologies at once.
  explicit NetnsTopology(const std::string& tag = "t") {
    if (geteuid() != 0) {
      error_ = "needs root to create network namespaces";
      return;
    }
    if (ip_bin().empty()) {
      error_ = "needs iproute2's `ip`";
      return;
    }
    remove_stale();
    static int made = 0;
    prefix_ = "rxdp" + std::to_string(getpid()) + "-" + tag + std::to_string(made++);
    hub_ = prefix_ + "h";
    if (std::string e = run({"netns", "add", hub_}); !e.empty()) {
      error_ = "cannot create a network namespace: " + e;
      return;
    }
    namespaces_.push_back(hub_);
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"-n", hub_, "link", "add", "br0", "type", "bridge"},
             {"-n", hub_, "addr", "add", "10.66.0.254/24", "dev", "br0"},
             {"-n", hub_, "addr", "add", "fd66::fe/64", "dev", "br0", "nodad"},
             {"-n", hub_, "link", "set", "br0", "up"},
             {"-n", hub_, "link", "set", "lo", "up"}}) {
      if (std::string e = run(cmd); !e.empty()) {
        error_ = e;
        return;
      }
    }
  }
  ~NetnsTopology() {
    for (const std::string& ns : namespaces_) (void)run({"netns", "del", ns});
  }
  NetnsTopology(const NetnsTopology&) = delete;
  NetnsTopology& operator=(const NetnsTopology&) = delete;

  bool available() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& hub() const { return hub_; }

  // Adds endpoint k (1..250): namespace name returned, interface x0, 10.66.0.k and fd66::k.
  // Empty on failure (error() says why).
  std::string add_endpoint(int k, std::uint32_t mtu = 1500) {
    const std::string ns = prefix_ + "e" + std::to_string(k);
    const std::string port = "e" + std::to_string(k);
    if (std::string e = run({"netns", "add", ns}); !e.empty()) {
      error_ = e;
      return {};
    }
    namespaces_.push_back(ns);
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"-n", hub_, "link", "add", port, "mtu", std::to_string(mtu), "type", "veth", "peer",
              "name", "x0", "netns", ns, "mtu", std::to_string(mtu)},
             {"-n", hub_, "link", "set", port, "master", "br0"},
             {"-n", hub_, "link", "set", port, "up"},
             {"-n", ns, "addr", "add", "10.66.0." + std::to_string(k) + "/24", "dev", "x0"},
             {"-n", ns, "addr", "add", "fd66::" + std::to_string(k) + "/64", "dev", "x0", "nodad"},
             {"-n", ns, "link", "set", "x0", "up"},
             {"-n", ns, "link", "set", "lo", "up"}}) {
      if (std::string e = run(cmd); !e.empty()) {
        error_ = e;
        return {};
      }
    }
    return ns;
  }

  // Two namespaces joined by one veth pair, no bridge: `v0` on each side, 10.67.0.1 and .2,
  // fd67::1 and ::2, fixed MACs 02:00:00:00:67:0k, and (static_neighbours) permanent neighbour
  // entries so nothing waits for ARP or neighbour discovery. Returns the two namespace names
  // (empty on failure).
  // `queues` receive and transmit queues on each end (one AF_XDP socket per queue).
  std::pair<std::string, std::string> add_veth_pair(bool static_neighbours = true,
                                                    std::uint32_t queues = 1,
                                                    std::uint32_t mtu = 1500) {
    const std::string a = prefix_ + "pa";
    const std::string b = prefix_ + "pb";
    for (const std::string& ns : {a, b}) {
      if (std::string e = run({"netns", "add", ns}); !e.empty()) {
        error_ = e;
        return {};
      }
      namespaces_.push_back(ns);
    }
    const std::string m = std::to_string(mtu);
    const std::string q = std::to_string(queues);
    std::vector<std::vector<std::string>> cmds = {{"-n",
                                                   a,
                                                   "link",
                                                   "add",
                                                   "v0",
                                                   "address",
                                                   "02:00:00:00:67:01",
                                                   "mtu",
                                                   m,
                                                   "numtxqueues",
                                                   q,
                                                   "numrxqueues",
                                                   q,
                                                   "type",
                                                   "veth",
                                                   "peer",
                                                   "name",
                                                   "v0",
                                                   "address",
                                                   "02:00:00:00:67:02",
                                                   "mtu",
                                                   m,
                                                   "numtxqueues",
                                                   q,
                                                   "numrxqueues",
                                                   q,
                                                   "netns",
                                                   b}};
    for (int k = 1; k <= 2; ++k) {
      const std::string& ns = k == 1 ? a : b;
      const std::string other = std::to_string(3 - k);
      const std::string other_mac = "02:00:00:00:67:0" + other;
      cmds.push_back(
          {"-n", ns, "addr", "add", "10.67.0." + std::to_string(k) + "/24", "dev", "v0"});
      cmds.push_back(
          {"-n", ns, "addr", "add", "fd67::" + std::to_string(k) + "/64", "dev", "v0", "nodad"});
      cmds.push_back({"-n", ns, "link", "set", "v0", "up"});
      cmds.push_back({"-n", ns, "link", "set", "lo", "up"});
      if (!static_neighbours) continue;
      cmds.push_back({"-n", ns, "neigh", "replace", "10.67.0." + other, "lladdr", other_mac, "dev",
                      "v0", "nud", "permanent"});
      cmds.push_back({"-n", ns, "neigh", "replace", "fd67::" + other, "lladdr", other_mac, "dev",
                      "v0", "nud", "permanent"});
    }
    for (const auto& cmd : cmds) {
      if (std::string e = run(cmd); !e.empty()) {
        error_ = e;
        return {};
      }
    }
    return {a, b};
  }
  static Address pair_address(int k, bool v6, std::uint16_t port = 0) {
    if (!v6) return Address::ipv4((10u << 24) | (67u << 16) | static_cast<std::uint32_t>(k), port);
    std::array<std::uint8_t, 16> ip{0xfd, 0x67};
    ip[15] = static_cast<std::uint8_t>(k);
    return Address::ipv6(ip, port);
  }

  static Address endpoint_address(int k, bool v6, std::uint16_t port = 0) {
    if (!v6) return Address::ipv4((10u << 24) | (66u << 16) | static_cast<std::uint32_t>(k), port);
    std::array<std::uint8_t, 16> ip{0xfd, 0x66};
    ip[15] = static_cast<std::uint8_t>(k);
    return Address::ipv6(ip, port);
  }

  // Runs fn with the calling thread in namespace `ns`, then returns it to where it was.
  static bool in_namespace(const std::string& ns, const std::function<void()>& fn) {
    const int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int there = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = home >= 0 && there >= 0 && setns(there, CLONE_NEWNET) == 0;
    if (ok) {
      fn();
      ok = setns(home, CLONE_NEWNET) == 0;
    }
    if (home >= 0) close(home);
    if (there >= 0) close(there);
    return ok;
  }

  // `ip netns exec NS` as an argv prefix (for child processes).
  std::vector<std::string> exec_prefix(const std::string& ns) const {
    return {ip_bin(), "netns", "exec", ns};
  }

  static std::string ip_bin() {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
      if (access(p, X_OK) == 0) return p;
    }
    return {};
  }

  // Runs `ip args...`; the error text, empty on success.
  static std::string run(const std::vector<std::string>& args) {
    std::string cmd = ip_bin();
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return "popen failed";
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    const int status = pclose(p);
    if (status == 0) return {};
    return cmd + ": " + out;
  }

 private:
  // Namespaces named rxdp<pid>-... whose process is gone.
  static void remove_stale() {
    DIR* d = opendir("/run/netns");
    if (d == nullptr) return;
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() < 6 || name.compare(0, 4, "rxdp") != 0) continue;
      const long pid = std::strtol(name.c_str() + 4, nullptr, 10);
      if (pid <= 0 || pid == getpid()) continue;
      if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
    }
    closedir(d);
    for (const std::string& ns : stale) (void)run({"netns", "del", ns});
  }

  std::string error_;
  std::string prefix_;
  std::string hub_;
  std::vector<std::string> namespaces_;
};

}  // namespace rumor::testing
