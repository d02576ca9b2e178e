// SimCluster: N rumor::Nodes on one thread over io::SimNetwork, with virtual time. The driver
// behind the simulation tests (tests/sim) and `rumor load --mode sim`.
//
// Determinism: one seed drives the network (loss, latency, duplication) and each node's
// randomness (derived from the cluster seed and the node index), and events are processed in a
// fixed order, so a run replays exactly from its seed. Nothing here sleeps or reads a clock.
//
// Virtual time starts at a fixed wall time (kEpochMs) so HLC timestamps look real; each node
// may run with its own clock skew.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "base/rng.h"
#include "engine/members/member_directory.h"
#include "io/sim_network.h"
#include "rumor/driver.h"
#include "rumor/node.h"

namespace rumor {

class SimCluster {
 public:
  static constexpr std::uint64_t kEpochMs = 1'764'000'000'000;  // 2025-11-24, arbitrary

  struct Options {
    std::size_t nodes = 3;
    std::uint64_t seed = 1;
    NodeConfig node = NodeConfig::local();  // template; name, id, addresses filled per node
    io::SimConfig net;                      // net.seed is overwritten with `seed`
    std::size_t seeds = 1;                  // nodes 0..seeds-1 are the others' join seeds
    std::vector<std::int64_t> skew_ms;      // per node clock skew (missing: 0)
    // Per node adjustments of the template (a label, keys, an encryption mode), if set.
    std::function<void(std::size_t, NodeConfig&)> configure;
    // Called with every Node made (at construction and at restart), before it starts: where a
    // driver subscribes or registers membership callbacks.
    std::function<void(std::size_t, Node&)> on_create;
    // Load tests: every node starts knowing every other as alive (NodeImpl::preload_member), no
    // join traffic. Not how a real cluster forms; `rumor load` says when it is used.
    bool static_members = false;
    // Per node owner cores (store.owners; missing: the template's). The cores of a node run on
    // this one thread in a fixed order, so a multi-core node replays from its seed too.
    std::vector<std::uint32_t> cores;
  };

  explicit SimCluster(const Options& options);
  ~SimCluster();

  std::size_t size() const { return nodes_.size(); }
  Node& node(std::size_t i) { return *nodes_[i]->node; }
  io::SimNetwork& net() { return *net_; }
  io::NodeId net_id(std::size_t i) const { return nodes_[i]->transport->id(); }
  std::uint64_t now_ms() const { return kEpochMs + net_->now_ns() / 1'000'000; }
  std::uint64_t seed() const { return options_.seed; }

  // Starts node i (joining through the seeds) or all of them.
  void start(std::size_t i);
  void start_all();
  // Graceful leave.
  void stop(std::size_t i);
  // Crash: the node stops processing and sending, without a word (the process is gone).
  void crash(std::size_t i);
  bool crashed(std::size_t i) const { return nodes_[i]->crashed; }
  // A crashed node comes back as a new process with the same name: empty store, same id. With
  // new_address, it comes back on another address (a rescheduled container, a new IP).
  void restart(std::size_t i, bool new_address = false);
  Address address(std::size_t i) const { return nodes_[i]->config.advertise; }
  void pause(std::size_t i) { net_->pause(net_id(i)); }
  // A clock jump: node i's clock runs `skew_ms` from virtual time from now on.
  void set_skew(std::size_t i, std::int64_t skew_ms) { nodes_[i]->clock.skew_ms = skew_ms; }
  void resume(std::size_t i) { net_->resume(net_id(i)); }
  // A stall: node i's process stops running (a VM paused, a long GC in the embedder) — no
  // timers, nothing received, its datagrams wait in its socket — until unstall, when it runs
  // late: its timers fire at once and it reads what waited.
  void stall(std::size_t i);
  void unstall(std::size_t i);

  // Runs the cluster for `ms` of virtual time.
  void run_for(std::uint64_t ms);
  // Runs until pred() holds (checked every check_every_ms) or max_ms passes. Returns whether it
  // held, and leaves time where it became true (to the check granularity).
  bool run_until(const std::function<bool()>& pred, std::uint64_t max_ms,
                 std::uint64_t check_every_ms = 10);

  // Events processed (datagrams received + ticks) so far.
  std::uint64_t events() const { return events_; }

 private:
  struct Sink;
  struct SimNode;
  struct Clock final : TimeSource {
    io::SimNetwork* net = nullptr;
    std::int64_t skew_ms = 0;
    std::uint64_t now_ms() override {
      return static_cast<std::uint64_t>(static_cast<std::int64_t>(kEpochMs + net->now_ns() / 1'000'000) +
                                        skew_ms);
    }
  };
  // Each node's nonce salt from its seed, so a run replays exactly, encrypted or not.
  struct Entropy final : EntropySource {
    Rng rng{0};
    void reseed(std::uint64_t seed) { rng = Rng(seed); }
    void fill(std::span<std::byte> out) override {
      for (std::byte& b : out) b = static_cast<std::byte>(rng.next());
    }
  };
  struct SimNode {
    Clock clock;
    Entropy entropy;
    io::SimTransport* transport = nullptr;
    std::unique_ptr<Node> node;
    NodeConfig config;
    bool crashed = false;
    bool stalled = false;
    std::uint64_t scheduled_ns = UINT64_MAX;  // deadline currently in the timer heap
  };
  struct Timer {
    std::uint64_t time_ns;
    std::size_t node;
    bool operator>(const Timer& o) const {
      return time_ns != o.time_ns ? time_ns > o.time_ns : node > o.node;
    }
  };

  void make_node(std::size_t i);
  std::uint64_t entropy_seed(std::size_t i);
  void preload_members();
  // Gives node i a transport at addr on the network.
  void attach(SimNode& sn, std::size_t i, const Address& addr);
  void schedule(std::size_t i);
  void step_node_receive(std::size_t i);
  void step_node_tick(std::size_t i);
  std::uint64_t deadline_ns(std::size_t i) const;
  void run_to(std::uint64_t t_ns);

  Options options_;
  std::unique_ptr<io::SimNetwork> net_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<std::size_t> by_net_id_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::unique_ptr<Sink> sink_;
  // One thread drives every node: they share one member directory (member_directory.h).
  std::shared_ptr<MemberDirectory> directory_;
  std::vector<io::NodeId> ready_;
  std::vector<std::vector<ReceivedDatagram>> per_core_;  // a received batch, by target core
  std::uint64_t events_ = 0;
  std::uint32_t moves_ = 0;
  std::uint64_t starts_ = 0;  // nodes made, for entropy_seed
};

}  // namespace rumor
