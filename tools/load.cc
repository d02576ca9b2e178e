// The workload driver of `rumor load` (tools/load.h): forms the cluster, runs a workload, samples
// convergence, prints progress and the summary, writes the CSV and the plot.
#include "tools/load.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <spawn.h>

#include "base/clock.h"
#include "base/rng.h"
#include "tools/load_common.h"

extern char** environ;

namespace rumor::tools {

Status LoadOptions::validate() const {
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  if (nodes < 2) return bad("--nodes must be at least 2");
  if (mode != "sim" && mode != "udp") return bad("--mode must be sim or udp");
  if (workload != "update" && workload != "writes" && workload != "churn" && workload != "crash" &&
      workload != "partition") {
    return bad("--workload must be update, writes, churn, crash or partition");
  }
  if (bootstrap != "join" && bootstrap != "static") return bad("--bootstrap must be join or static");
  if (membership != "full" && membership != "partial") {
    return bad("--membership must be full or partial");
  }
  if (membership == "partial" && bootstrap != "join") {
    return bad("--membership partial runs with --bootstrap join");
  }
  if (preset != "local" && preset != "lan" && preset != "wan") {
    return bad("--preset must be local, lan or wan");
  }
  if (seeds < 1 || seeds > nodes) return bad("--seeds must be in [1, --nodes]");
  for (double p : {loss, duplicate, reorder}) {
    if (!(p >= 0 && p < 1)) return bad("--loss, --duplicate and --reorder must be in [0, 1)");
  }
  if (!(latency_ms >= 0 && jitter_ms >= 0 && latency_ms <= 10'000 && jitter_ms <= 10'000)) {
    return bad("--latency-ms and --jitter-ms must be in [0, 10000]");
  }
  if (keys < 1 || keys > 100'000) return bad("--keys must be in [1, 100000]");
  if (!(write_rate > 0 && write_rate <= 100'000)) return bad("--write-rate must be in (0, 100000]");
  if (!(churn_rate > 0 && churn_rate <= 10'000)) return bad("--churn-rate must be in (0, 10000]");
  if (!(duration_s > 0 && duration_s <= 3600)) return bad("--duration-s must be in (0, 3600]");
  if (!(max_time_s > 0 && max_time_s <= 36'000)) return bad("--max-time-s must be in (0, 36000]");
  if (!(settle_s < 0 || settle_s <= 3600)) return bad("--settle-s must be in [0, 3600]");
  if (progress != "auto" && progress != "tty" && progress != "plain" && progress != "none") {
    return bad("--progress must be auto, tty, plain or none");
  }
  if (!(progress_s > 0)) return bad("--progress-s must be positive");
  if (mode == "udp") {
    if (procs < 1 || procs > 64 || procs > nodes) return bad("--procs must be in [1, min(64, N)]");
    if (backend != "auto" && backend != "uring" && backend != "mmsg") {
      return bad("--backend must be auto, uring or mmsg");
    }
    if (duplicate > 0 || reorder > 0 || jitter_ms > 0.5 || latency_ms != 1) {
      // Real loopback has its own latency; only loss is injected (on receive).
      if (duplicate > 0 || reorder > 0) return bad("--duplicate and --reorder are sim only");
    }
    if (bootstrap == "static") return bad("--bootstrap static is sim only");
  }
  return Status::ok();
}

namespace {

struct Sample {
  double round = 0;         // gossip rounds since the workload's reference point
  std::uint64_t t_ms = 0;   // cluster ms since the reference point
  std::size_t converged = 0;
  std::size_t running = 0;
};

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.{}f} {}", b, u == 0 ? 0 : 2, units[u]);
}

class Progress {
 public:
  explicit Progress(const LoadOptions& o) : period_s_(o.progress_s) {
    tty_ = o.progress == "tty" || (o.progress == "auto" && ::isatty(STDOUT_FILENO));
    none_ = o.progress == "none";
    start_ns_ = last_ns_ = monotonic_ns();
  }
  double wall_s() const { return static_cast<double>(monotonic_ns() - start_ns_) / 1e9; }
  // Prints a line now and then: in place on a terminal (10 times a second), else every period.
  void update(const std::string& what, std::uint64_t events, bool force = false) {
    if (none_) return;
    const std::uint64_t now = monotonic_ns();
    const double since = static_cast<double>(now - last_ns_) / 1e9;
    if (!force && since < (tty_ ? 0.1 : period_s_)) return;
    const double rate =
        since > 0 && events >= last_events_ ? static_cast<double>(events - last_events_) / since : 0;
    last_ns_ = now;
    last_events_ = events;
    const std::string line =
        fmt::format("{} | elapsed {:.1f}s | {:.0f} events/s", what, wall_s(), rate);
    if (tty_) {
      std::printf("\r\033[K%s", line.c_str());
      dirty_ = true;
    } else {
      std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
  }
  void end_line() {
    if (tty_ && dirty_) std::printf("\n");
    dirty_ = false;
  }

 private:
  double period_s_;
  bool tty_ = false, none_ = false, dirty_ = false;
  std::uint64_t start_ns_, last_ns_, last_events_ = 0;
};

// The workload run: what the summary and the files report.
struct Run {
  const LoadOptions& o;
  LoadCluster& c;
  Progress progress;
  std::uint64_t round_ms;
  std::uint64_t step_ms;  // sampling step: a fifth of a round
  std::vector<Sample> samples;
  std::string reference;  // what convergence is counted from
  std::uint64_t join_ms = 0;
  LoadCluster::Stats formed;  // totals when membership was complete (or the wait gave up)
  std::string incomplete;     // when it was not: which views lack whom (sim)
  double join_wall_s = 0;
  bool joined = false;
  std::size_t complete_at_end = 0;  // nodes with a complete view when forming ended
  double build_wall_s = 0;  // making the nodes (and preloading members), before the clock
  bool converged = false;
  std::uint64_t ref_ms = 0;  // cluster ms of the reference point
  LoadCluster::Stats at_ref;
  LoadCluster::Stats at_converged;  // when every running node held the state
  LoadCluster::Stats before_workload;
  std::uint64_t updates = 1;  // writes the workload made (payload copies are per update)
  std::size_t crashed_at_once = 0;  // workload crash
  // The settle window: cluster ms, and the traffic and memory over it.
  std::uint64_t settle_ms = 0;
  LoadCluster::Stats settle_from, settle_to;

  Run(const LoadOptions& opts, LoadCluster& cluster)
      : o(opts), c(cluster), progress(opts),
        round_ms(preset_config(opts.preset).gossip_interval_ms),
        step_ms(std::max<std::uint64_t>(1, round_ms / 5)) {}

  std::uint64_t max_ms() const { return static_cast<std::uint64_t>(o.max_time_s * 1000); }

  // Runs until done() holds, checking every step_ms, for at most max_ms of cluster time.
  bool run_until(const std::function<bool()>& done, const std::function<std::string()>& what) {
    const std::uint64_t end = c.elapsed_ms() + max_ms();
    for (;;) {
      const bool d = done();
      progress.update(what(), c.stats().events, d);
      if (d) return true;
      if (c.elapsed_ms() >= end) return false;
      c.run_for(step_ms);
    }
  }

  bool form() {
    const std::size_t n = c.size();
    c.start_all();
    std::size_t complete = 0;
    joined = run_until(
        [&] { return (complete_at_end = complete = c.members_complete()) == n; },
        [&] {
          return fmt::format("joining: {}/{} nodes {}, {:.1f} s of cluster time", complete, n,
                             o.membership == "partial" ? "have their views"
                                                       : "know every member",
                             static_cast<double>(c.elapsed_ms()) / 1000.0);
        });
    join_ms = c.elapsed_ms();
    join_wall_s = progress.wall_s();
    formed = c.stats();
    if (!joined) incomplete = c.why_incomplete(3);
    progress.end_line();
    return joined;
  }

  // Lets join traffic drain for the settle window, measuring what an idle cluster sends.
  void settle() {
    settle_ms = o.settle_s < 0 ? 5 * round_ms : static_cast<std::uint64_t>(o.settle_s * 1000);
    settle_from = c.stats();
    const std::uint64_t end = c.elapsed_ms() + settle_ms;
    while (c.elapsed_ms() < end) {
      c.run_for(std::min<std::uint64_t>(step_ms, end - c.elapsed_ms()));
      progress.update(fmt::format("settling: {:.1f}/{:.1f} s", static_cast<double>(
                                      settle_ms - (end - c.elapsed_ms())) / 1000.0,
                                  static_cast<double>(settle_ms) / 1000.0),
                      c.stats().events);
    }
    settle_to = c.stats();
    progress.end_line();
  }
  // Packets and bytes per node per second over the settle window.
  std::pair<double, double> idle_rate() const {
    const double node_s = static_cast<double>(c.size()) * static_cast<double>(settle_ms) / 1000.0;
    if (node_s <= 0) return {0, 0};
    return {static_cast<double>(settle_to.packets_sent - settle_from.packets_sent) / node_s,
            static_cast<double>(settle_to.bytes_sent - settle_from.bytes_sent) / node_s};
  }

  // Samples convergence (nodes for which have() holds) from now until all running nodes do.
  bool converge(const std::function<std::size_t()>& have) {
    ref_ms = c.elapsed_ms();
    at_ref = c.stats();
    std::size_t got = 0, up = 0;
    converged = run_until(
        [&] {
          got = have();
          up = c.running();
          const std::uint64_t t = c.elapsed_ms() - ref_ms;
          samples.push_back(Sample{static_cast<double>(t) / static_cast<double>(round_ms), t,
                                   got, up});
          if (got == up) at_converged = c.stats();
          return got == up;
        },
        [&] {
          return fmt::format("converging: {}/{} nodes ({:.1f}%) | round {:.1f}", got, up,
                             up ? 100.0 * static_cast<double>(got) / static_cast<double>(up) : 0.0,
                             samples.empty() ? 0.0 : samples.back().round);
        });
    progress.end_line();
    return converged;
  }

  bool workload() {
    before_workload = c.stats();
    const std::size_t n = c.size();
    updates = o.workload == "update" || o.workload == "churn" || o.workload == "crash" ? 1
              : o.workload == "partition"                     ? 4
                                                              : std::max<std::uint64_t>(
                                                                    1, static_cast<std::uint64_t>(
                                                                           o.write_rate * o.duration_s));
    if (o.workload == "update") {
      reference = "the write";
      const std::size_t writer = n - 1;  // not a seed: the farthest from the join point
      if (Status s = c.write(writer, "load/update", "v1"); !s) return false;
      return converge([&] { return c.holding({{"load/update", "v1"}}); });
    }
    if (o.workload == "writes") {
      reference = "the last write";
      const std::uint64_t gap_ms =
          std::max<std::uint64_t>(1, static_cast<std::uint64_t>(1000.0 / o.write_rate));
      const std::uint64_t count = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(o.write_rate * o.duration_s));
      LoadCluster::KeyValues last(std::min<std::uint64_t>(o.keys, count));
      Rng rng(o.seed * 31 + 7);
      for (std::uint64_t j = 0; j < count; ++j) {
        const std::size_t k = j % o.keys;
        std::string key = fmt::format("load/k{}", k), value = fmt::format("w{}", j);
        if (Status s = c.write(rng.below(n), key, value); !s) {
          std::fprintf(stderr, "rumor load: write refused: %s\n", s.to_string().c_str());
          return false;
        }
        last[k] = {std::move(key), std::move(value)};
        c.run_for(gap_ms);
        progress.update(fmt::format("writing: {}/{} writes", j + 1, count), c.stats().events);
      }
      progress.end_line();
      return converge([&] { return c.holding(last); });
    }
    if (o.workload == "crash") {
      // 5% of the nodes (never a seed, never the writer) crash at once, without a word; then
      // the last node writes, and every node still running must get it (issue 22's floor:
      // tree repair and anti-entropy around the holes).
      reference = "the write after the crashes";
      Rng rng(o.seed * 977 + 3);
      const std::size_t victims = n / 20;
      std::size_t crashed = 0;
      std::vector<bool> down(n, false);
      if (n > o.seeds + 1) {
        for (std::size_t tries = 0; crashed < victims && tries < 20 * victims + 100; ++tries) {
          const std::size_t v = o.seeds + rng.below(n - o.seeds - 1);
          if (down[v]) continue;
          c.crash(v);
          down[v] = true;
          ++crashed;
        }
      }
      crashed_at_once = crashed;
      if (Status s = c.write(n - 1, "load/update", "v1"); !s) return false;
      return converge([&] { return c.holding({{"load/update", "v1"}}); });
    }
    if (o.workload == "churn") {
      reference = "the last restart";
      if (Status s = c.write(n - 1, "load/update", "v1"); !s) return false;
      // Crash a random non-seed node at churn_rate per second; each comes back (empty, same
      // name and address) one second later. Bounded: duration_s * churn_rate crashes.
      const std::uint64_t gap_ms =
          std::max<std::uint64_t>(1, static_cast<std::uint64_t>(1000.0 / o.churn_rate));
      const std::uint64_t down_ms = 1000;
      const std::uint64_t count = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(o.churn_rate * o.duration_s));
      std::vector<std::pair<std::uint64_t, std::size_t>> back;  // (time, node)
      std::vector<bool> down(n, false);
      Rng rng(o.seed * 131 + 11);
      std::uint64_t crashes = 0, restarts = 0;
      auto restart_due = [&](std::uint64_t now) {
        for (auto it = back.begin(); it != back.end();) {
          if (it->first > now) {
            ++it;
            continue;
          }
          c.restart(it->second);
          down[it->second] = false;
          ++restarts;
          it = back.erase(it);
        }
      };
      if (n > o.seeds) {
        for (std::uint64_t j = 0; j < count; ++j) {
          const std::size_t victim = o.seeds + rng.below(n - o.seeds);
          if (!down[victim]) {
            c.crash(victim);
            down[victim] = true;
            back.emplace_back(c.elapsed_ms() + down_ms, victim);
            ++crashes;
          }
          c.run_for(gap_ms);
          restart_due(c.elapsed_ms());
          progress.update(fmt::format("churning: {} crashed, {} restarted", crashes, restarts),
                          c.stats().events);
        }
      }
      while (!back.empty()) {
        c.run_for(step_ms);
        restart_due(c.elapsed_ms());
      }
      progress.end_line();
      // Converged: every running node holds the update and knows every member.
      return converge([&] {
        const std::size_t have = c.holding({{"load/update", "v1"}});
        return std::min(have, c.members_complete());
      });
    }
    // partition: split in halves, write on both sides (one key each, and one key on both:
    // last writer wins), run cut off, heal.
    reference = "the heal";
    const std::size_t at = n / 2;
    c.partition(at);
    c.run_for(round_ms);
    if (!c.write(0, "load/left", "a") || !c.write(0, "load/both", "from-left")) return false;
    c.run_for(round_ms);  // the right side writes later: its version is higher and wins
    if (!c.write(n - 1, "load/right", "b") || !c.write(n - 1, "load/both", "from-right")) {
      return false;
    }
    const std::uint64_t end = c.elapsed_ms() + static_cast<std::uint64_t>(o.duration_s * 1000);
    while (c.elapsed_ms() < end) {
      c.run_for(step_ms);
      progress.update(fmt::format("partitioned: {} | {} nodes", at, n - at), c.stats().events);
    }
    progress.end_line();
    c.heal();
    const LoadCluster::KeyValues want = {
        {"load/left", "a"}, {"load/right", "b"}, {"load/both", "from-right"}};
    return converge([&] { return c.holding(want); });
  }

  // Rounds from the reference point until `fraction` of the running nodes held the state.
  std::optional<Sample> first_reaching(double fraction) const {
    for (const Sample& s : samples) {
      if (s.running > 0 &&
          static_cast<double>(s.converged) >= fraction * static_cast<double>(s.running) - 1e-9) {
        return s;
      }
    }
    return std::nullopt;
  }
};

Status write_outputs(const Run& r, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::error(Code::kIo, fmt::format("--out {}: {}", dir, std::strerror(errno)));
  }
  const std::string csv = dir + "/convergence.csv";
  FILE* f = std::fopen(csv.c_str(), "w");
  if (!f) return Status::error(Code::kIo, fmt::format("{}: {}", csv, std::strerror(errno)));
  // Every sample: five per gossip round, from the reference point until convergence.
  std::fprintf(f, "round,time_ms,converged,running,fraction\n");
  std::size_t rows = 0;
  for (const Sample& s : r.samples) {
    std::fprintf(f, "%.2f,%llu,%zu,%zu,%.6f\n", s.round, static_cast<unsigned long long>(s.t_ms),
                 s.converged, s.running,
                 s.running ? static_cast<double>(s.converged) / static_cast<double>(s.running) : 0.0);
    ++rows;
  }
  std::fclose(f);
  const double n = static_cast<double>(r.c.size());
  const std::string gp = dir + "/convergence.gp";
  f = std::fopen(gp.c_str(), "w");
  if (!f) return Status::error(Code::kIo, fmt::format("{}: {}", gp, std::strerror(errno)));
  const double log2n = std::log2(n);
  const double bound = std::ceil(std::log2(n)) + std::ceil(std::log(n));
  // Wide enough to show log2 N and the bound even when the curve ends well before them.
  const double x_max = std::ceil(std::max(r.samples.back().round, bound)) + 1;
  std::fprintf(f,
               "set terminal pngcairo size 900,540 noenhanced\n"
               "set output '%s/convergence.png'\n"
               "set datafile separator ','\n"
               "set title 'rumor load: %s, %zu nodes, workload %s (seed %llu)'\n"
               "set xlabel 'gossip rounds since %s (%llu ms each)'\n"
               "set ylabel 'nodes converged (%%)'\n"
               "set yrange [0:105]\n"
               "set xrange [0:%.0f]\n"
               "set grid\n"
               "set key at graph 0.72, graph 0.5 right\n"
               "set arrow 1 from %.3f, graph 0 to %.3f, graph 1 nohead dt 2 lc rgb 'red'\n"
               "set label 1 'log2 N = %.1f' at %.3f, graph 0.06 offset 0.5,0 tc rgb 'red'\n"
               "set arrow 2 from %.0f, graph 0 to %.0f, graph 1 nohead dt 2 lw 2 "
               "lc rgb 'dark-green' front\n"
               "set label 2 'bound ceil(log2 N)+ceil(ln N) = %.0f' at %.0f, graph 0.12 right "
               "offset -0.5,0 tc rgb 'dark-green' front\n"
               "plot '%s' using 1:($5*100) skip 1 with linespoints pt 7 ps 0.6 lw 2 "
               "title 'converged'\n",
               dir.c_str(), r.o.mode.c_str(), r.c.size(), r.o.workload.c_str(),
               static_cast<unsigned long long>(r.o.seed), r.reference.c_str(),
               static_cast<unsigned long long>(r.round_ms), x_max, log2n, log2n, log2n, log2n, bound,
               bound, bound, bound, csv.c_str());
  std::fclose(f);
  pid_t pid = 0;
  const char* argv[] = {"gnuplot", gp.c_str(), nullptr};
  if (posix_spawnp(&pid, "gnuplot", nullptr, nullptr, const_cast<char* const*>(argv), environ) !=
      0) {
    return Status::error(Code::kUnavailable,
                         "gnuplot not found: install gnuplot-nox (tools/dev does); the CSV is "
                         "written");
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::error(Code::kIo, "gnuplot failed on " + gp);
  }
  std::printf("wrote %s (%zu rows) and %s/convergence.png\n", csv.c_str(), rows, dir.c_str());
  return Status::ok();
}

void print_summary(const Run& r, bool ok) {
  const LoadOptions& o = r.o;
  const auto s = r.c.stats();
  const double n = static_cast<double>(r.c.size());
  const double run_s = static_cast<double>(r.c.elapsed_ms()) / 1000.0;
  const double phase_s = static_cast<double>(r.c.elapsed_ms() - r.ref_ms) / 1000.0;
  const double wall = r.progress.wall_s();
  const unsigned bound_log2 = static_cast<unsigned>(std::ceil(std::log2(n)));
  const unsigned bound_ln = static_cast<unsigned>(std::ceil(std::log(n)));
  std::printf("\nrumor load: %zu nodes, %s, workload %s, seed %llu\n", r.c.size(),
              r.c.describe().c_str(), o.workload.c_str(), static_cast<unsigned long long>(o.seed));
  std::printf("  membership         mode %s\n",
              o.membership == "partial" ? "partial (HyParView views, Plumtree broadcast)"
                                        : "full (SWIM member table, rumor mongering)");
  std::printf("  bootstrap          %s\n",
              o.membership == "partial" ? fmt::format("HyParView join through {} seed(s)", o.seeds).c_str() :
              o.bootstrap == "static"
                  ? "static: every node starts with the full member list (not a real join)"
                  : fmt::format("join through {} seed(s), then catch-up by member digests", o.seeds).c_str());
  if (o.mode == "sim") {
    std::printf("  network            loss %.1f%%, latency %.1f ms + jitter %.1f ms, dup %.1f%%, "
                "reorder %.1f%%\n",
                o.loss * 100, o.latency_ms, o.jitter_ms, o.duplicate * 100, o.reorder * 100);
  } else {
    std::printf("  network            %s, injected receive loss %.1f%%\n",
                o.workers_listen.empty() ? "loopback UDP" : "UDP between the workers' hosts",
                o.loss * 100);
  }
  std::printf("  timers             preset %s: gossip round %llu ms\n", o.preset.c_str(),
              static_cast<unsigned long long>(r.round_ms));
  std::printf("  membership         %s after %.2f s of cluster time (%.1f s wall)\n",
              r.joined ? "complete"
                       : fmt::format("NOT complete ({} of {} views)", r.complete_at_end,
                                     r.c.size()).c_str(),
              static_cast<double>(r.join_ms) / 1000.0, r.join_wall_s);
  if (!r.incomplete.empty()) std::printf("%s\n", r.incomplete.c_str());
  {
    // What forming cost, against the model's floor: every node must receive every member once
    // (N^2 records; docs/protocol.md "Member tables").
    const double n2 = static_cast<double>(r.c.size()) * static_cast<double>(r.c.size());
    const std::uint64_t recs = r.formed.member_table_records + r.formed.member_news_records;
    std::printf("  forming cost       %llu packets and %s cluster-wide%s\n",
                static_cast<unsigned long long>(r.formed.packets_sent),
                human_bytes(static_cast<double>(r.formed.bytes_sent)).c_str(),
                recs == 0 ? ""
                          : fmt::format("; member records received: {} in tables + {} as news "
                                        "= {:.2f} x N^2",
                                        r.formed.member_table_records,
                                        r.formed.member_news_records,
                                        static_cast<double>(recs) / n2)
                                .c_str());
  }
  if (o.workload == "crash") {
    std::printf("  crashed            %zu of %zu nodes at once, before the write\n",
                r.crashed_at_once, r.c.size());
  }
  std::printf("  convergence        counted from %s\n", r.reference.c_str());
  std::printf("    %-10s %10s %12s\n", "nodes", "rounds", "time");
  for (double f : {0.5, 0.99, 1.0}) {
    const auto hit = r.first_reaching(f);
    if (hit) {
      std::printf("    %-10s %10.1f %9llu ms\n", fmt::format("{:g}%", f * 100).c_str(), hit->round,
                  static_cast<unsigned long long>(hit->t_ms));
    } else {
      std::printf("    %-10s %10s %12s\n", fmt::format("{:g}%", f * 100).c_str(), "not reached",
                  "-");
    }
  }
  const auto all = r.first_reaching(1.0);
  std::printf("  bound              ceil(log2 N) + ceil(ln N) = %u + %u = %u rounds; measured %s\n",
              bound_log2, bound_ln, bound_log2 + bound_ln,
              all ? fmt::format("{:.1f}", all->round).c_str() : "not converged");
  const double pk = static_cast<double>(s.packets_sent), by = static_cast<double>(s.bytes_sent);
  const double ppk = static_cast<double>(s.packets_sent - r.at_ref.packets_sent),
               pby = static_cast<double>(s.bytes_sent - r.at_ref.bytes_sent);
  const auto [idle_pk, idle_by] = r.idle_rate();
  std::printf("  idle (settled)     %.2f packets and %s per node per second over %.2f s; peak RSS "
              "so far %s per node\n",
              idle_pk, human_bytes(idle_by).c_str(), static_cast<double>(r.settle_ms) / 1000.0,
              human_bytes(static_cast<double>(r.settle_to.total_rss_bytes) / n).c_str());
  if (r.converged) {
    // Cluster-wide, from the reference point until every running node held the state (idle
    // traffic included: compare with the idle line).
    const double cost_pk = static_cast<double>(r.at_converged.packets_sent - r.at_ref.packets_sent);
    const double cost_by = static_cast<double>(r.at_converged.bytes_sent - r.at_ref.bytes_sent);
    std::printf("  %-18s %.0f packets and %s cluster-wide from %s until 100%%\n",
                o.workload == "update" ? "update cost" : "workload cost", cost_pk,
                human_bytes(cost_by).c_str(), r.reference.c_str());
  }
  {
    // Entries sent per node per update, from the workload's start until every running node
    // held the state: rumor mongering's piggybacked broadcasts (membership news included) and
    // Plumtree's pushes, plus the entries anti-entropy sent.
    const LoadCluster::Stats& end = r.converged ? r.at_converged : s;
    const LoadCluster::Stats& b = r.before_workload;
    const double per = n * static_cast<double>(std::max<std::uint64_t>(r.updates, 1));
    const double gossip = static_cast<double>(end.broadcasts_sent - b.broadcasts_sent) / per;
    const double tree = static_cast<double>(end.tree_payloads - b.tree_payloads) / per;
    const double sync = static_cast<double>(end.sync_entries_sent - b.sync_entries_sent) / per;
    std::printf("  payload copies     %.2f per node per update over %llu update(s): %s %.2f + "
                "anti-entropy %.2f\n",
                gossip + tree + sync, static_cast<unsigned long long>(r.updates),
                o.membership == "partial" ? "Plumtree pushes" : "rumor mongering broadcasts",
                o.membership == "partial" ? tree : gossip, sync);
  }
  if (o.membership == "partial") {
    std::printf("  views              active %llu..%llu (mean %.2f), passive mean %.2f; %llu active "
                "peers dropped as failed\n",
                static_cast<unsigned long long>(s.view_active_min),
                static_cast<unsigned long long>(s.view_active_max),
                static_cast<double>(s.view_active_sum) / n,
                static_cast<double>(s.view_passive_sum) / n,
                static_cast<unsigned long long>(s.view_failures));
    std::printf("  tree               %llu grafts, %llu prunes, %llu duplicate payloads (whole "
                "run)\n",
                static_cast<unsigned long long>(s.tree_grafts),
                static_cast<unsigned long long>(s.tree_prunes),
                static_cast<unsigned long long>(s.tree_duplicates));
  }
  if (s.membership_bytes > 0) {
    std::printf("  membership state   %s per node (%s)\n",
                human_bytes(static_cast<double>(s.membership_bytes) / n).c_str(),
                o.membership == "partial" ? "active + passive views and Plumtree's tables"
                                          : "member table; names shared by the process");
  }
  std::printf("  traffic, whole run %.1f packets and %s per node per second (%.1f s)\n",
              pk / n / std::max(run_s, 1e-3), human_bytes(by / n / std::max(run_s, 1e-3)).c_str(),
              run_s);
  std::printf("  traffic, converging %.1f packets and %s per node per second (%.1f s)\n",
              ppk / n / std::max(phase_s, 1e-3),
              human_bytes(pby / n / std::max(phase_s, 1e-3)).c_str(), phase_s);
  if (s.late_answers > 0) {
    std::printf("  late answers       %llu worker(s) too busy to answer the last count in 5 s: "
                "their previous counts stand in (the CPU is saturated)\n",
                static_cast<unsigned long long>(s.late_answers));
  }
  std::printf("  false positives    %llu suspicions, %llu deaths of running nodes\n",
              static_cast<unsigned long long>(s.false_suspicions),
              static_cast<unsigned long long>(s.false_deaths));
  // Per member: every node holds a view of all n, so the whole process holds n^2 records.
  std::printf("  peak memory        %s (%s per node, %.1f B per member of a view)%s\n",
              human_bytes(static_cast<double>(s.peak_rss_bytes)).c_str(),
              human_bytes(static_cast<double>(s.total_rss_bytes) / n).c_str(),
              static_cast<double>(s.total_rss_bytes) / (n * n),
              o.mode == "udp" ? fmt::format(", {} over all workers", human_bytes(static_cast<double>(s.total_rss_bytes))).c_str() : "");
  std::printf("  wall time          %.1f s building the cluster, then %.1f s running: %llu events "
              "(%.0f/s)\n", r.build_wall_s, wall,
              static_cast<unsigned long long>(s.events),
              static_cast<double>(s.events) / std::max(wall, 1e-3));
  std::printf("  result             %s\n", ok ? "CONVERGED" : "DID NOT CONVERGE");
}

}  // namespace

int run_load(const LoadOptions& o) {
  if (Status s = o.validate(); !s) {
    std::fprintf(stderr, "rumor load: %s\n", s.message().c_str());
    return 2;
  }
  const std::uint64_t t0 = monotonic_ns();
  auto made = o.mode == "sim" ? make_sim_cluster(o) : make_udp_cluster(o);
  if (!made) {
    std::fprintf(stderr, "rumor load: %s\n", made.status().to_string().c_str());
    return 1;
  }
  LoadCluster& c = **made;
  Run r(o, c);
  r.build_wall_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  // The workload runs even if some views are still incomplete after --max-time-s: the update
  // may reach every node anyway, and the summary says membership was not complete.
  if (!r.form()) {
    std::fprintf(stderr,
                 "rumor load: membership not complete within --max-time-s %g; running the "
                 "workload anyway\n",
                 o.max_time_s);
  }
  r.settle();
  const bool ok = r.workload();
  print_summary(r, ok);
  if (!o.out_dir.empty() && !r.samples.empty()) {
    if (Status s = write_outputs(r, o.out_dir); !s) {
      std::fprintf(stderr, "rumor load: %s\n", s.message().c_str());
      return 1;
    }
  }
  return ok ? 0 : 1;
}

}  // namespace rumor::tools
