// `rumor agent` under a Type=notify systemd unit (docs/agent.md, "Running under systemd"): the
// test plays the service manager. It binds the $NOTIFY_SOCKET datagram socket itself (as
// systemd does, with SO_PASSCRED), starts the agent, and checks the contract: READY=1 from the
// agent's main PID (what NotifyAccess=main accepts) naming an admin address that answers, a
// STATUS= line (serving, joined when there is a seed), and STOPPING=1 on SIGTERM before a clean
// exit. Runs without systemd as PID 1.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/agent/process_harness.h"

namespace rumor::testing {
namespace {

struct Notification {
  std::string text;
  pid_t pid = -1;  // the sender's pid, from SCM_CREDENTIALS
};

// The manager's end of the notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof(a.sun_path) - 1);
    const int on = 1;
    ok_ = fd_ >= 0 && setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0 &&
          bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  bool ok() const { return ok_; }

  // The next notification, or nothing within `seconds`.
  std::optional<Notification> next(double seconds) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(seconds * 1000)) != 1) return std::nullopt;
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec iov{buf, sizeof(buf)};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(fd_, &m, 0);
    if (n < 0) return std::nullopt;
    Notification out;
    out.text.assign(buf, static_cast<std::size_t>(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred;
        std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
        out.pid = cred.pid;
      }
    }
    return out;
  }

  // Reads notifications until one contains `needle`; every one read is appended to `seen`.
  std::optional<Notification> until(const std::string& needle, double seconds, std::string* seen) {
    const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
    while (monotonic_ns() < deadline) {
      auto n = next(static_cast<double>(deadline - monotonic_ns()) / 1e9);
      if (!n) break;
      *seen += "[" + n->text + "] ";
      if (n->text.find(needle) != std::string::npos) return n;
    }
    return std::nullopt;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool ok_ = false;
};

// The value of `KEY=` on its own line of a notification.
std::string field(const std::string& text, const std::string& key) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    if (text.compare(at, key.size() + 1, key + "=") == 0) {
      return text.substr(at + key.size() + 1, end - at - key.size() - 1);
    }
    at = end + 1;
  }
  return {};
}

TEST(SdNotify, ReadyWhenListeningThenStoppingOnSigterm) {
  TempDir dir;
  NotifySocket manager(dir.path() + "/notify");
  ASSERT_TRUE(manager.ok()) << "cannot bind a unix datagram socket in " << dir.path();
  // posix_spawn hands the agent this process's environment (one thread: no race on it).
  const std::string notify_path = dir.path() + "/notify";
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify_path.c_str(), 1), 0);
  AgentProcess agent(dir.path(), "n1");
  const bool started = agent.start({});
  unsetenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  ASSERT_TRUE(started) << agent.error;

  std::string seen;
  const auto ready = manager.until("READY=1", 10, &seen);
  ASSERT_TRUE(ready) << "no READY=1 from the agent; received: " << seen << "\n" << agent.log();
  EXPECT_EQ(ready->pid, agent.pid()) << "READY=1 must come from the main PID (NotifyAccess=main)";
  // READY=1 names the listening addresses, and the admin one answers.
  const std::string status = field(ready->text, "STATUS");
  EXPECT_NE(status.find("gossip " + agent.gossip), std::string::npos) << status;
  EXPECT_NE(status.find("admin " + agent.admin), std::string::npos) << status;
  const RunResult info = agent.rumor({"info"});
  EXPECT_EQ(info.status, 0) << info.err;
  // Then the status moves on from "listening".
  const auto serving = manager.until("STATUS=serving", 10, &seen);
  EXPECT_TRUE(serving) << "no STATUS=serving line; received: " << seen;

  const pid_t pid = agent.pid();
  kill(pid, SIGTERM);
  const auto stopping = manager.until("STOPPING=1", 10, &seen);
  ASSERT_TRUE(stopping) << "no STOPPING=1 after SIGTERM; received: " << seen << "\n" << agent.log();
  EXPECT_EQ(stopping->pid, pid);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

TEST(SdNotify, ServingAfterJoiningASeed) {
  TempDir dir;
  AgentProcess seed(dir.path(), "seed");
  ASSERT_TRUE(seed.start({})) << seed.error;
  NotifySocket manager(dir.path() + "/notify");
  ASSERT_TRUE(manager.ok());
  const std::string notify_path = dir.path() + "/notify";
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify_path.c_str(), 1), 0);
  AgentProcess agent(dir.path(), "n1");
  const bool started = agent.start({seed.gossip});
  unsetenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  ASSERT_TRUE(started) << agent.error;
  std::string seen;
  // READY=1 comes first (listening), then the join is reported.
  ASSERT_TRUE(manager.until("READY=1", 10, &seen)) << seen;
  EXPECT_TRUE(manager.until("STATUS=serving: joined the cluster", 10, &seen)) << seen;
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  EXPECT_EQ(seed.terminate(), 0) << seed.log();
}

}  // namespace
}  // namespace rumor::testing
