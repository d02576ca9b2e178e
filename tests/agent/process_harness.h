// Multi-process test harness: starts `rumor agent` processes on loopback (ports chosen by the
// kernel, reported through --ready-file), runs `rumor` client commands and captures their
// output, and polls with deadlines. Nothing sleeps to synchronise: every wait is "poll until
// this holds or the deadline passes", and a failure prints the agent's log.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"

extern char** environ;

namespace rumor::testing {

inline std::string rumor_bin() { return RUMOR_BIN; }

inline std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The value of "key":"value" in a one-line JSON object (enough for ready files).
inline std::string json_field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":\"";
  const std::size_t at = json.find(needle);
  if (at == std::string::npos) return {};
  const std::size_t start = at + needle.size();
  return json.substr(start, json.find('"', start) - start);
}

// Polls pred every few milliseconds until it holds or `seconds` pass.
template <typename Pred>
bool eventually(Pred pred, double seconds) {
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
  for (;;) {
    if (pred()) return true;
    if (monotonic_ns() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct RunResult {
  int status = -1;  // exit status, or -1 when it had to be killed
  std::string out, err;
};

// Runs argv (argv[0] a path), capturing stdout and stderr, killing it after `seconds`.
inline RunResult run_command(const std::vector<std::string>& command, double seconds = 20) {
  RunResult r;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<std::string> argv_s = command;
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    r.err = "posix_spawn failed";
    return r;
  }
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
  bool out_open = true, err_open = true, killed = false;
  while (out_open || err_open) {
    pollfd p[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0},
                   {err_open ? err_pipe[0] : -1, POLLIN, 0}};
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    poll(p, 2, static_cast<int>((deadline - now) / 1'000'000 + 1));
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) continue;
      const ssize_t n = read(i == 0 ? out_pipe[0] : err_pipe[0], buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      } else {
        (i == 0 ? out_open : err_open) = false;
      }
    }
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = (!killed && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `rumor args...`, capturing stdout and stderr, killing it after `seconds`.
inline RunResult run_rumor(const std::vector<std::string>& args, double seconds = 20) {
  std::vector<std::string> command = {rumor_bin()};
  command.insert(command.end(), args.begin(), args.end());
  return run_command(command, seconds);
}

// iproute2's `ip`, or empty when it is not installed.
inline std::string ip_bin() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

// Runs `ip args...`; returns the error text, empty on success.
inline std::string ip(std::vector<std::string> args) {
  args.insert(args.begin(), ip_bin());
  RunResult r = run_command(args, 10);
  if (r.status == 0) return {};
  std::string cmd;
  for (const auto& a : args) cmd += a + " ";
  return cmd + ": " + r.err + r.out;
}

// One `rumor agent` process.
class AgentProcess {
 public:
  AgentProcess(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {}
  ~AgentProcess() { kill9(); }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  // Starts the agent and waits (bounded) for its ready file. Returns false, with the log in
  // `error`, when it exits or does not get ready in time.
  bool start(const std::vector<std::string>& join, std::vector<std::string> extra = {},
             double seconds = 30) {
    const std::string ready = dir_ + "/" + name_ + ".ready";
    log_ = dir_ + "/" + name_ + ".log";
    std::remove(ready.c_str());
    std::vector<std::string> args = wrapper_;
    const std::vector<std::string> agent_args = {rumor_bin(), "agent",        "--name",
                                     name_,       "--bind",       bind_,
                                     "--admin",   "127.0.0.1:0",  "--preset",
                                     "local",     "--no-pin",     "--ready-file",
                                     ready,       "--log-level",  "debug"};
    args.insert(args.end(), agent_args.begin(), agent_args.end());
    std::string seeds;
    for (const std::string& j : join) seeds += (seeds.empty() ? "" : ",") + j;
    if (!seeds.empty()) {
      args.push_back("--join");
      args.push_back(seeds);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      error = "posix_spawn failed";
      pid_ = -1;
      return false;
    }
    const bool ok = eventually(
        [&] {
          if (exited()) return true;
          return !read_file(ready).empty();
        },
        seconds);
    if (!ok || exited()) {
      error = "agent " + name_ + " did not become ready; log:\n" + read_file(log_);
      kill9();
      return false;
    }
    const std::string r = read_file(ready);
    gossip = json_field(r, "gossip");
    admin = json_field(r, "admin");
    metrics = json_field(r, "metrics");
    bind_ = gossip;  // a restart comes back on the same address
    return true;
  }

  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      pid_ = -1;
      return true;
    }
    return false;
  }

  void kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGTERM, then waits (bounded) for a clean exit. Returns the exit status, -1 if killed.
  int terminate(double seconds = 10) {
    if (pid_ <= 0) return exit_status_;
    kill(pid_, SIGTERM);
    if (!eventually([&] { return exited(); }, seconds)) {
      kill9();
      return -1;
    }
    return exit_status_;
  }

  // A client command against this agent.
  RunResult rumor(std::vector<std::string> args, double seconds = 20) const {
    args.push_back("--admin");
    args.push_back(admin);
    std::vector<std::string> command = wrapper_;
    command.push_back(rumor_bin());
    command.insert(command.end(), args.begin(), args.end());
    return run_command(command, seconds);
  }
  // A command that the agent and its client commands run under (argv[0] a path), such as
  // `ip netns exec NS`: the agent then lives in that network namespace.
  void set_wrapper(std::vector<std::string> w) { wrapper_ = std::move(w); }

  std::string log() const { return read_file(log_); }
  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  void set_bind(std::string b) { bind_ = std::move(b); }

  std::string gossip, admin, metrics, error;

 private:
  std::string dir_, name_, log_;
  std::string bind_ = "127.0.0.1:0";
  std::vector<std::string> wrapper_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

// A temporary directory, removed with its files.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rumor-agent-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    if (!path_.empty() && std::getenv("RUMOR_KEEP_LOGS") == nullptr) {
      std::string cmd = "rm -rf '" + path_ + "'";
      (void)!std::system(cmd.c_str());
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace rumor::testing
