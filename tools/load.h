// `rumor load`: large-cluster load tests (docs/load.md).
//
//   rumor load --nodes 10000 --mode sim --workload update --out /tmp/run
//   rumor load --nodes 1000 --mode udp --procs 2
//
// One workload driver (load.cc) runs against a LoadCluster: the simulator (load_sim.cc, every
// node in this process over io::SimNetwork with virtual time, deterministic from --seed) or real
// loopback UDP (load_udp.cc, worker processes each driving many whole nodes, every node with its
// own socket and its own ReactorLoop, on one thread). The driver writes, waits for convergence
// with bounded loops, samples the convergence curve once per gossip round, and ends with a
// summary table, a CSV and a gnuplot PNG.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rumor/status.h"

namespace rumor::tools {

struct LoadOptions {
  std::size_t nodes = 0;
  std::string mode = "sim";          // sim | udp
  std::string workload = "update";   // update | writes | churn | crash | partition
  std::uint64_t seed = 1;
  std::size_t seeds = 1;             // join seeds: nodes 0..seeds-1
  std::string bootstrap = "join";    // join (honest: through the seeds) | static (preloaded)
  std::string preset = "local";      // node timers: local | lan | wan
  // full (SWIM, every node knows every node) | partial (HyParView views + Plumtree).
  std::string membership = "full";
  // Network (sim: every option; udp: loss only, applied on receive).
  double loss = 0, duplicate = 0, reorder = 0;
  double latency_ms = 1, jitter_ms = 0.5;
  // Workloads.
  std::size_t keys = 16;             // writes: keys written in turn
  double write_rate = 50;            // writes: writes per second, cluster-wide
  double churn_rate = 2;             // churn: node restarts per second
  double duration_s = 5;             // writes/churn: length of the write or churn phase
  double max_time_s = 120;           // bound on every wait (virtual s in sim, wall s in udp)
  // After the cluster formed and before the workload: join traffic drains, and the idle cost
  // is measured over this window. Negative: five gossip rounds of the preset.
  double settle_s = -1;
  // udp.
  std::size_t procs = 2;             // worker processes
  std::string backend = "auto";      // auto | uring | mmsg
  std::string host = "127.0.0.1";
  // Multi-host: instead of forking --procs workers, listen here (TCP) for --procs
  // `rumor load-worker --coordinator ADDR` processes, on this machine or others.
  std::string workers_listen;
  double worker_wait_s = 120;        // how long to wait for them to connect
  // Output.
  std::string out_dir;
  std::string progress = "auto";     // auto | tty | plain | none
  double progress_s = 1;             // plain-line period (wall seconds)

  Status validate() const;
};

// What the workload driver needs from a cluster, whichever runs it. Indices are 0..size()-1.
class LoadCluster {
 public:
  virtual ~LoadCluster() = default;
  virtual std::size_t size() const = 0;
  // Time the protocol runs on (virtual ms in sim, wall ms in udp) since the cluster was made.
  virtual std::uint64_t elapsed_ms() = 0;
  // Lets the cluster run for ms of its time.
  virtual void run_for(std::uint64_t ms) = 0;
  virtual void start_all() = 0;
  // Running nodes whose view holds every other running node alive or suspect.
  virtual std::size_t members_complete() = 0;
  // Running nodes that hold every key = value of `kv`.
  using KeyValues = std::vector<std::pair<std::string, std::string>>;
  virtual std::size_t holding(const KeyValues& kv) = 0;
  virtual std::size_t running() = 0;
  virtual Status write(std::size_t node, const std::string& key, const std::string& value) = 0;
  virtual void crash(std::size_t node) = 0;
  virtual void restart(std::size_t node) = 0;
  // Splits nodes [0, at) from [at, size()); heal() reconnects them.
  virtual void partition(std::size_t at) = 0;
  virtual void heal() = 0;

  struct Stats {
    std::uint64_t packets_sent = 0, bytes_sent = 0;
    std::uint64_t events = 0;              // datagrams received + ticks handled
    std::uint64_t false_suspicions = 0;    // distinct (member, incarnation) suspected while up
    std::uint64_t false_deaths = 0;        // distinct (member, incarnation) declared dead while up
    std::uint64_t peak_rss_bytes = 0;      // largest process (udp: largest worker)
    std::uint64_t total_rss_bytes = 0;     // sum over processes
    // Member records received, in tables and as gossip (sim only; 0 where not counted).
    std::uint64_t member_table_records = 0, member_news_records = 0;
    // Processes that did not answer in time; their last answer stands in (udp only).
    std::uint64_t late_answers = 0;
    // Payload copies: entries piggybacked by rumor mongering (membership news included),
    // Plumtree pushes, and entries sent by anti-entropy.
    std::uint64_t broadcasts_sent = 0, tree_payloads = 0, sync_entries_sent = 0;
    // Plumtree's repairs and duplicates; HyParView's views (sim only).
    std::uint64_t tree_duplicates = 0, tree_grafts = 0, tree_prunes = 0, view_failures = 0;
    std::uint64_t view_active_min = 0, view_active_max = 0, view_active_sum = 0,
                  view_passive_sum = 0;
    // Membership state held, summed over the nodes (sim only): NodeInternals::membership_bytes.
    std::uint64_t membership_bytes = 0;
  };
  virtual Stats stats() = 0;
  // "sim", "udp over 2 processes, io_uring", ...
  virtual std::string describe() = 0;
  // Why formation is not complete: for up to `nodes` running nodes whose views lack a running
  // member, which members and in what state they are held there and elsewhere. Empty where the
  // mode cannot see views (udp).
  virtual std::string why_incomplete(std::size_t /*nodes*/) { return ""; }
};

Result<std::unique_ptr<LoadCluster>> make_sim_cluster(const LoadOptions& o);
Result<std::unique_ptr<LoadCluster>> make_udp_cluster(const LoadOptions& o);

// The peak resident set size of this process, from getrusage.
std::uint64_t peak_rss_bytes();

// Runs a load test; returns the process exit status (0: converged; 1: it did not, or an
// operating error; 2: usage).
int run_load(const LoadOptions& o);

// `rumor load-worker`: connects to a coordinator (`rumor load --mode udp --workers-listen`),
// receives its share of the nodes and runs them, binding and advertising `host` (default: this
// end of the connection to the coordinator), until the coordinator says quit or goes away.
struct LoadWorkerOptions {
  std::string coordinator;
  std::string host;
  double connect_timeout_s = 120;  // the coordinator may start after its workers
};
int run_load_worker(const LoadWorkerOptions& o);

}  // namespace rumor::tools
