// `rumor agent`: one Node on a Reactor, an admin server for the `rumor` client commands and an
// optional Prometheus endpoint.
//
// Threads
// - main: configuration, start-up, the join check, then waits for SIGINT/SIGTERM and shuts down
//   (admin thread first, then the reactor: the node announces its leave and flushes).
// - reactor (rumor::Reactor): the Node's driver thread. Runs admin commands posted to it
//   (set/del, snapshots of members and counters, which are driver-thread only), and the Node's
//   callbacks: membership changes are logged, changes feed `rumor watch` and the convergence-lag
//   histogram.
// - admin: one poll(2) loop serving admin TCP connections and metrics HTTP connections. It reads
//   keys straight from the Node (lock-free store reads) and hands everything else to the reactor.
//
// Reactor -> admin traffic (snapshots, command results, watched changes) goes through two
// single-producer/single-consumer queues and one eventfd, rung at most once per admin drain
// (`admin_signaled_`). Admin -> reactor goes through Reactor::post. No lock anywhere.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/spsc_queue.h"
#include "rumor/durable.h"
#include "rumor/node.h"
#include "rumor/reactor.h"
#include "tools/admin_protocol.h"
#include "tools/agent_config.h"

namespace rumor::tools {

// Convergence lag: for each change from another node, the time from the write's HLC physical
// time (at its writer) to its merge here, as a Prometheus histogram (docs/agent.md).
struct LagHistogram {
  static constexpr std::array<double, 16> kBoundsSeconds = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  std::array<std::uint64_t, kBoundsSeconds.size() + 1> buckets{};  // last: +Inf
  std::uint64_t count = 0;
  double sum_seconds = 0;
  double last_seconds = 0;
  void observe(double seconds);
};

// Everything `rumor stats`, `rumor members` and /metrics show, copied on the reactor thread.
struct Snapshot {
  std::vector<Member> members;
  NodeCounters node;
  TransportCounters transport;
  ReactorCounters reactor;
  LagHistogram lag;
  std::optional<DurableCounters> durable;  // with a data directory
  std::uint64_t changes_seen = 0;
  std::uint64_t watch_dropped = 0;
  std::uint64_t taken_ms = 0;
};

// A reactor -> admin answer to one request.
struct Completion {
  std::uint64_t conn = 0;  // admin connection id (0: the admin's own name-cache refresh)
  std::uint64_t seq = 0;   // the request it answers
  Op op = Op::kInfo;
  bool metrics = false;    // an HTTP /metrics request
  Status status;
  std::vector<std::string> rows;  // a keyring answer: 3 columns
  std::string key;
  Version version;
  std::shared_ptr<const Snapshot> snapshot;
  // A write under `sync = always`: answered once the data directory holds it (a ticket of the
  // key's owner core, include/rumor/durable.h).
  bool wait_durable = false;
  std::uint32_t durable_core = 0;
  std::uint64_t durable_ticket = 0;
};

// A change for `rumor watch`.
struct WatchedChange {
  std::string key, value;
  Version version;
  bool deleted = false, local = false;
};

class AdminServer;

// Resolves HOST:PORT seeds: numeric addresses as they are, names through getaddrinfo (every
// IPv4 and IPv6 address a name has). What does not resolve is described in *errors.
std::vector<Address> resolve_seeds(const std::vector<std::string>& seeds,
                                   std::vector<std::string>* errors);

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();
  // Runs until SIGINT/SIGTERM (or a start-up failure). Returns the process exit status.
  int run();

  // ---- used by the admin server (tools/admin_server.cc) ----
  Node& node() { return *node_; }
  Reactor& reactor() { return *reactor_; }
  const AgentConfig& config() const { return config_; }
  int admin_eventfd() const { return admin_eventfd_; }
  // Admin thread: clears the eventfd and the coalescing flag before draining the queues.
  void admin_acknowledge();
  SpscQueue<std::unique_ptr<Completion>>& completions() { return completions_; }
  SpscQueue<WatchedChange>& changes() { return changes_; }
  void set_watching(bool on) { watching_.store(on, std::memory_order_relaxed); }
  std::uint64_t watch_dropped() const { return watch_dropped_.load(std::memory_order_relaxed); }
  // Reactor thread: builds a snapshot (driver-thread-only Node calls are allowed here).
  std::shared_ptr<const Snapshot> take_snapshot();
  // Reactor thread (core 0): a set or del, made on the key's owner core when the answer must
  // wait for the disk (the write's ticket is that core's); completes `done` on core 0.
  void write_command(std::unique_ptr<Completion> done, std::string value);
  // nullptr without a data directory.
  Durability* durability() { return durability_.get(); }
  // Reactor thread: runs a keyring action (admin Op::kKeyring) and lists the keyring after it.
  Status keyring_command(const std::string& action, const std::string& argument,
                         std::vector<std::string>* rows);
  // Reactor thread: `rumor tags list|set|del` (args newline-separated); rows of [key, value].
  Status tags_command(const std::string& action, const std::string& args,
                      std::vector<std::string>* rows);
  // Reactor thread: `rumor join`: numeric addresses, newline-separated; rows of [address].
  Status join_command(const std::string& args, std::vector<std::string>* rows);
  // Any thread: a graceful leave and exit, as on SIGTERM.
  void request_stop();
  // Main or admin thread (`rumor reload`, SIGHUP): reads the configuration again and applies
  // what can change at run time; rows of [applied|restart_needed|unchanged, key].
  Status reload(std::vector<std::string>* rows);
  // Where the configuration comes from, to read it again on reload (rumor_main.cc).
  void set_config_source(std::function<Result<AgentConfig>()> source) {
    config_source_ = std::move(source);
  }
  // Reactor thread: queues a completion for the admin thread and rings it.
  void complete(std::unique_ptr<Completion> c);
  std::string backend_line() const;

 private:
  int start();  // 0 or an exit status
  void shutdown();
  void signal_admin();
  void on_change(const Change& c);  // reactor thread
  void on_member(const MembershipEvent& e);  // reactor thread
  enum class JoinResult { kJoined, kTimeout, kInterrupted };
  JoinResult wait_for_join();
  // Resolves the seeds and hands their addresses to the node.
  void join_attempt();
  // The next attempt after a failed one: the wait doubles (to its bound); returns its deadline.
  std::uint64_t join_again();
  // Live members other than this one, or -1.
  int others_alive();
  // The background join's turn (run()); false when it gave up (retry_max).
  bool retry_tick();
  // Reactor thread: debug lines with what the node did since the last call.
  void debug_activity();
  void write_ready_file();
  // Opens the data directory and reads a saved keyring into nc (before the node exists).
  int open_durability(NodeConfig& nc);
  // Saves the node's keyring (raw keys, primary first, and the mode) in the data directory.
  void save_keyring();

  AgentConfig config_;
  SystemTimeSource clock_;
  std::unique_ptr<Reactor> reactor_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<Durability> durability_;
  bool sync_always_ = false;
  std::map<std::string, std::string> raw_keys_;  // fingerprint -> key (reactor thread)
  std::unique_ptr<AdminServer> admin_;

  std::function<Result<AgentConfig>()> config_source_;
  AgentConfig loaded_;  // as configured (config_ gains what start-up derives, like the name)
  std::atomic<bool> reloading_{false};  // one reload at a time (SIGHUP and `rumor reload`)
  Tags tags_;  // reactor thread after start

  // Joining (main thread).
  Address advertise_;
  std::vector<std::string> seeds_;  // --join and --retry-join, as given
  std::uint64_t retry_wait_ms_ = 0;
  std::uint64_t next_retry_ns_ = 0;  // 0: no background join pending
  std::uint32_t join_attempts_ = 0;
  std::string last_resolve_errors_;
  std::uint64_t next_debug_ns_ = 0;
  NodeCounters debug_last_;  // reactor thread

  // Reactor-thread state.
  LagHistogram lag_;
  std::uint64_t changes_seen_ = 0;

  SpscQueue<std::unique_ptr<Completion>> completions_;
  SpscQueue<WatchedChange> changes_;
  int admin_eventfd_ = -1;
  // acq_rel exchanges on both sides: the admin's exchange(false) reads the reactor's
  // exchange(true), so everything pushed before the ring is visible to the drain after it.
  std::atomic<bool> admin_signaled_{false};
  // Relaxed: set by the admin thread, read by the reactor's callback; a change missed while a
  // watcher registers is acceptable (the watch starts "from now").
  std::atomic<bool> watching_{false};
  std::atomic<std::uint64_t> watch_dropped_{0};  // relaxed: a statistic
};

}  // namespace rumor::tools
