// `rumor load` on small clusters: each mode (sim, udp) with each workload (update, writes,
// churn, partition) must converge, and write a CSV with one row per round whose convergence
// never goes down and ends at 100%, and a PNG plot. Runs the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string temp_dir(const std::string& tag) {
  std::string t = ::testing::TempDir() + "rumor-load-" + tag + "-" + std::to_string(::getpid());
  std::system(("rm -rf '" + t + "'").c_str());
  return t;
}

// Runs `rumor load ARGS`; returns its exit status and keeps its output for failure messages.
int run_load(const std::string& args, const std::string& dir, std::string* output) {
  const std::string log = dir + ".log";
  const std::string cmd = std::string(RUMOR_BIN) + " load --progress plain " + args +
                          " --out '" + dir + "' > '" + log + "' 2>&1";
  const int st = std::system(cmd.c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  *output = ss.str();
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct Row {
  double round, fraction;
  long converged, running;
};

std::vector<Row> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<Row> rows;
  EXPECT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "round,time_ms,converged,running,fraction");
  while (std::getline(in, line)) {
    Row r{};
    long t = 0;
    EXPECT_EQ(std::sscanf(line.c_str(), "%lf,%ld,%ld,%ld,%lf", &r.round, &t, &r.converged,
                          &r.running, &r.fraction),
              5)
        << line;
    rows.push_back(r);
  }
  return rows;
}

// `min_rows`: a curve has at least two samples, except where the workload may already have
// converged at its reference point (churn: the restarted nodes catch up while the last ones are
// still being restarted, before "the last restart" that convergence is counted from).
void check_outputs(const std::string& dir, const std::string& output, bool sim,
                   std::size_t min_rows) {
  const auto rows = read_csv(dir + "/convergence.csv");
  ASSERT_GE(rows.size(), min_rows) << output;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_GT(rows[i].round, rows[i - 1].round) << "one row per round, in order";
    EXPECT_GE(rows[i].fraction, rows[i - 1].fraction) << "convergence went down at row " << i;
  }
  EXPECT_EQ(rows.back().fraction, 1.0) << output;
  EXPECT_EQ(rows.back().converged, rows.back().running);
  // A sample every fifth of a gossip round, every one of them a row. (On UDP the samples are
  // taken between wall-clock steps and thin out on a loaded machine: checked in sim only.)
  if (sim) {
    EXPECT_GE(static_cast<double>(rows.size()), 4.0 * rows.back().round) << output;
  }
  std::ifstream png(dir + "/convergence.png", std::ios::binary);
  ASSERT_TRUE(png.good()) << "no PNG: " << output;
  std::string head(8, '\0');
  png.read(head.data(), 8);
  EXPECT_EQ(head, "\x89PNG\r\n\x1a\n");
  png.seekg(0, std::ios::end);
  EXPECT_GT(png.tellg(), 5000) << "a plot with axes, a curve and labels is larger than that";
}

struct Case {
  const char* mode;
  const char* workload;
  const char* args;
};

class LoadTest : public ::testing::TestWithParam<Case> {};

TEST_P(LoadTest, ConvergesAndWritesCurve) {
  const Case& c = GetParam();
  const std::string dir = temp_dir(std::string(c.mode) + "-" + c.workload);
  std::string out;
  const std::string args = std::string("--mode ") + c.mode + " --workload " + c.workload + " " +
                           c.args + " --max-time-s 30";
  ASSERT_EQ(run_load(args, dir, &out), 0) << out;
  EXPECT_NE(out.find("result             CONVERGED"), std::string::npos) << out;
  EXPECT_NE(out.find("ceil(log2 N) + ceil(ln N)"), std::string::npos) << out;
  EXPECT_NE(out.find("false positives"), std::string::npos) << out;
  // Like-for-like cost: what the settled cluster sends at idle, and what the workload cost.
  double idle_packets = -1;
  const auto idle = out.find("idle (settled)");
  ASSERT_NE(idle, std::string::npos) << out;
  EXPECT_EQ(std::sscanf(out.c_str() + idle, "idle (settled) %lf packets", &idle_packets), 1) << out;
  EXPECT_GT(idle_packets, 0) << "a formed cluster probes and gossips even when idle: " << out;
  const auto cost = out.find(std::string(c.workload) == "update" ? "update cost" : "workload cost");
  ASSERT_NE(cost, std::string::npos) << out;
  double cost_packets = -1;
  EXPECT_EQ(std::sscanf(out.c_str() + cost, "%*s cost %lf packets", &cost_packets), 1) << out;
  const bool churn = std::string(c.workload) == "churn";
  if (churn) {
    EXPECT_GE(cost_packets, 0) << out;  // zero when already converged at the reference point
  } else {
    EXPECT_GT(cost_packets, 0) << out;
  }
  check_outputs(dir, out, std::string(c.mode) == "sim", churn ? 1 : 2);
}

// Partial views over real UDP: every node forms an active view of its own, the update travels
// by Plumtree pushes, and the summary reports the views and the tree as the simulator does.
TEST(LoadUdp, PartialViewsReportViewsAndTree) {
  std::string out;
  const std::string dir = temp_dir("udp-partial");
  ASSERT_EQ(run_load("--mode udp --nodes 60 --procs 2 --membership partial --max-time-s 30", dir,
                     &out),
            0)
      << out;
  EXPECT_NE(out.find("mode partial (HyParView views, Plumtree broadcast)"), std::string::npos)
      << out;
  unsigned long active_min = 0, active_max = 0;
  const auto views = out.find("views              active");
  ASSERT_NE(views, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + views, "views active %lu..%lu", &active_min, &active_max), 2)
      << out;
  EXPECT_GE(active_min, 2u) << "membership was complete: every node holds two active peers";
  EXPECT_LE(active_max, 8u) << out;
  double pushes = -1;
  const auto copies = out.find("Plumtree pushes ");
  ASSERT_NE(copies, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + copies, "Plumtree pushes %lf", &pushes), 1) << out;
  EXPECT_GT(pushes, 0.9) << "every node but the writer received the update by a push: " << out;
  double state_kib = -1;
  const auto state = out.find("membership state");
  ASSERT_NE(state, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + state, "membership state %lf KiB", &state_kib), 1) << out;
  EXPECT_LT(state_kib, 16) << "views, not a table of the cluster: " << out;
}

// --settle-s sets the window over which the idle cost is measured, in cluster seconds.
TEST(LoadSim, SettleWindowIsTheOneAskedFor) {
  std::string out;
  const std::string dir = temp_dir("settle");
  ASSERT_EQ(run_load("--mode sim --nodes 20 --settle-s 3", dir, &out), 0) << out;
  EXPECT_NE(out.find("per node per second over 3.00 s"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(
    Small, LoadTest,
    ::testing::Values(
        Case{"sim", "update", "--nodes 40 --loss 0.05 --duplicate 0.02 --reorder 0.02"},
        Case{"sim", "writes", "--nodes 30 --keys 8 --write-rate 40 --duration-s 1"},
        Case{"sim", "churn", "--nodes 30 --churn-rate 4 --duration-s 2"},
        Case{"sim", "partition", "--nodes 30 --duration-s 2"},
        Case{"udp", "update", "--nodes 30 --procs 2"},
        Case{"udp", "writes", "--nodes 20 --procs 2 --keys 8 --write-rate 40 --duration-s 1"},
        Case{"udp", "churn", "--nodes 20 --procs 2 --churn-rate 4 --duration-s 2"},
        Case{"udp", "partition", "--nodes 20 --procs 2 --duration-s 2"},
        Case{"udp", "crash", "--nodes 40 --procs 2 --membership partial --loss 0.05"}),
    [](const auto& info) { return std::string(info.param.mode) + "_" + info.param.workload; });

// The simulator replays exactly from its seed: two runs write the same curve.
TEST(LoadSim, SameSeedSameCurve) {
  std::string a_out, b_out;
  const std::string a = temp_dir("replay-a"), b = temp_dir("replay-b");
  const std::string args = "--mode sim --nodes 50 --seed 7 --loss 0.1";
  ASSERT_EQ(run_load(args, a, &a_out), 0) << a_out;
  ASSERT_EQ(run_load(args, b, &b_out), 0) << b_out;
  std::ifstream fa(a + "/convergence.csv"), fb(b + "/convergence.csv");
  std::stringstream sa, sb;
  sa << fa.rdbuf();
  sb << fb.rdbuf();
  EXPECT_EQ(sa.str(), sb.str());
}

}  // namespace
