// `rumor sim explore`: a fault explorer in the manner of TigerBeetle's VOPR. Each seed draws a
// cluster (3 to --max-nodes nodes), a workload of writes and deletes, and a fault schedule
// (loss bursts, duplication and reordering, symmetric and one-way partitions, paused nodes,
// clock jumps within the allowed skew, crashes with and without restart, restarts on a new
// address), runs it in the simulator, heals everything, and checks the invariants
// (docs/protocol.md "Fault explorer"):
//   1. agreement: every live node holds the same version of every key;
//   2. no loss: for every key, that version is at least the newest accepted write that was
//      safe (its writer never crashed, or another running node held it when the writer did);
//   3. no invention: that version is one some node accepted;
//   4. membership: every live node sees every other live node alive and no crashed one alive;
//   5. no false deaths: for 10 s after convergence, no running node is declared dead.
// With data directories (a third of the seeds), writes a node acknowledged survive its crash.
// A run replays exactly from its seed; a failure prints the seed and the schedule, then
// minimises it: the faults that can be left out (greedily, one at a time, each tried by a full
// rerun) while the same invariant still fails, and a replay command with --skip-faults.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace rumor::tools {

struct ExploreOptions {
  std::uint64_t first_seed = 1, last_seed = 100;  // inclusive
  std::size_t max_nodes = 16;
  double max_wall_s = 0;   // stop starting new seeds after this long (0: no bound)
  bool verbose = false;    // print every seed's schedule, not only failures'
  // Faults (numbered in the order the schedule draws them, from 0) drawn but not applied.
  std::set<std::size_t> skip_faults;
  bool minimize = true;    // on a failure, find the faults it needs
  // [node] and [store] keys applied to every explored node (`-o node.sync_interval_ms=...`,
  // as `rumor agent -o`): to explore a configuration other than the `local` preset.
  std::vector<std::string> overrides;
};

// Returns the exit status: 0 when every seed held every invariant, 1 otherwise, 2 on usage.
int run_explore(const ExploreOptions& o);

// "A..B" or "A" -> the range.
bool parse_seed_range(const std::string& text, std::uint64_t* first, std::uint64_t* last);

}  // namespace rumor::tools
