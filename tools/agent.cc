#include "tools/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tools/admin_server.h"
#include "tools/log.h"
#include "tools/service_notify.h"

namespace rumor::tools {

void LagHistogram::observe(double seconds) {
  if (seconds < 0) seconds = 0;
  std::size_t i = 0;
  while (i < kBoundsSeconds.size() && seconds > kBoundsSeconds[i]) ++i;
  ++buckets[i];
  ++count;
  sum_seconds += seconds;
  last_seconds = seconds;
}

Agent::Agent(AgentConfig config)
    : config_(std::move(config)),
      completions_(1024),
      changes_(config_.watch_queue_depth) {}

Agent::~Agent() {
  shutdown();
  if (admin_eventfd_ >= 0) ::close(admin_eventfd_);
}

std::string Agent::backend_line() const {
  return fmt::format("backend={} reason={}", reactor_->backend(),
                     logfmt_value(reactor_->backend_reason()));
}

void Agent::signal_admin() {
  // acq_rel: see admin_signaled_ in the header.
  if (admin_signaled_.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  (void)!::write(admin_eventfd_, &one, sizeof(one));
}

void Agent::admin_acknowledge() {
  std::uint64_t v = 0;
  (void)!::read(admin_eventfd_, &v, sizeof(v));
  admin_signaled_.exchange(false, std::memory_order_acq_rel);
}

void Agent::complete(std::unique_ptr<Completion> c) {
  // The admin thread has at most one request per connection and one refresh outstanding, so
  // the queue (1024) fills only after a long reactor stall, when the answers are late anyway:
  // their requests were answered with a timeout error. Drop them.
  if (!completions_.push(std::move(c))) return;
  signal_admin();
}

std::shared_ptr<const Snapshot> Agent::take_snapshot() {
  auto s = std::make_shared<Snapshot>();
  s->members = node_->members();
  s->node = node_->counters();
  // Every core's (core 0 live, the others as of their last turn).
  s->transport = reactor_->transport_counters_all_cores();
  s->reactor = reactor_->counters_all_cores();
  s->lag = lag_;
  s->changes_seen = changes_seen_;
  s->watch_dropped = watch_dropped_.load(std::memory_order_relaxed);
  s->taken_ms = clock_.now_ms();
  return s;
}

Status Agent::keyring_command(const std::string& action, const std::string& argument,
                              std::vector<std::string>* rows) {
  Node& n = *node_;
  // use and remove take a fingerprint or the key itself (base64).
  auto ref = [&]() -> std::string {
    if (argument.size() == 16) return argument;
    auto raw = decode_key(argument);
    return raw ? *raw : argument;
  };
  Status st;
  if (action == "install") {
    auto raw = decode_key(argument);
    if (!raw) return raw.status();
    st = n.install_key(*raw);
  } else if (action == "use") {
    st = n.use_key(ref());
  } else if (action == "remove") {
    st = n.remove_key(ref());
  } else if (action == "mode") {
    auto m = parse_encryption_mode(argument);
    if (!m) return m.status();
    st = n.set_encryption(*m);
  } else if (action != "list") {
    return Status::error(Code::kInvalidArgument,
                         "keyring action '" + action +
                             "' is not list, install, use, remove or mode");
  }
  if (!st) return st;
  if (action != "list") {
    log(LogLevel::kInfo, "keyring changed", "action={} mode={} keys={}", action,
        encryption_mode_name(n.encryption()), n.keys().size());
  }
  *rows = {"mode", std::string(encryption_mode_name(n.encryption())), ""};
  for (const KeyInfo& k : n.keys()) {
    rows->insert(rows->end(), {"key", k.fingerprint, k.primary ? "primary" : "accepted"});
  }
  return Status::ok();
}

void Agent::on_change(const Change& c) {
  ++changes_seen_;
  if (!c.local) {
    const std::uint64_t now = clock_.now_ms();
    const std::uint64_t written = c.version.physical_ms();
    lag_.observe(now > written ? static_cast<double>(now - written) / 1000.0 : 0.0);
  }
  if (!watching_.load(std::memory_order_relaxed)) return;
  WatchedChange w{c.key, c.value, c.version, c.deleted, c.local};
  if (!changes_.push(std::move(w))) {
    watch_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  signal_admin();
}

void Agent::on_member(const MembershipEvent& e) {
  const Member& m = e.member;
  if (e.joined) {
    log(LogLevel::kInfo, "member joined", "name={} address={} state={} incarnation={}",
        logfmt_value(m.name), m.address.to_string(), member_state_name(m.state),
        m.incarnation);
    return;
  }
  const LogLevel level =
      m.state == MemberState::kAlive || m.state == MemberState::kLeft ? LogLevel::kInfo
                                                                      : LogLevel::kWarn;
  log(level, "member changed", "name={} address={} state={} previous={} incarnation={}",
      logfmt_value(m.name), m.address.to_string(), member_state_name(m.state),
      member_state_name(e.previous), m.incarnation);
}

int Agent::start() {
  set_log_level(config_.log_level);
  // Gossip socket first: a taken port is the most common start-up failure.
  ReactorConfig rc = config_.reactor;
  rc.transport.bind = config_.bind;
  // A taken port must fail loudly: one socket without SO_REUSEPORT, or with several cores, a
  // probe bind without it before the cores' sockets share the port (Reactor::open).
  rc.transport.reuse_port = false;
  rc.cores = config_.cores;
  rc.transport.datagram_bytes_max =
      std::max(rc.transport.datagram_bytes_max, config_.node.datagram_bytes_max);
  auto reactor = Reactor::open(rc);
  if (!reactor) {
    std::string msg = reactor.status().message();
    if (msg.find("in use") != std::string::npos) {
      msg += " (another agent on this port? choose another --bind port)";
    }
    std::fprintf(stderr, "rumor agent: cannot bind gossip address %s: %s\n",
                 config_.bind.to_string().c_str(), msg.c_str());
    return 1;
  }
  reactor_ = std::move(reactor.value());

  // Node configuration: advertise, seeds, name.
  NodeConfig nc = config_.node;
  nc.store.owners = config_.cores;  // one owner core per reactor thread
  nc.advertise = config_.advertise.empty() ? reactor_->local_address() : config_.advertise;
  if (config_.advertise.empty()) {
    const Address& a = nc.advertise;
    const bool wildcard =
        (a.is_ipv4() &&
         reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr())->sin_addr.s_addr == 0) ||
        (a.is_ipv6() &&
         IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr())
                                      ->sin6_addr));
    if (wildcard) {
      std::fprintf(stderr,
                   "rumor agent: --bind %s is a wildcard address: peers cannot send to it; "
                   "give --advertise HOST:PORT\n",
                   a.to_string().c_str());
      return 2;
    }
  }
  if (nc.name.empty()) nc.name = nc.advertise.to_string();
  config_.node.name = nc.name;
  nc.seeds.clear();
  for (const std::string& s : config_.join) {
    auto a = Address::parse(s);
    if (!a) {
      std::fprintf(stderr, "rumor agent: --join %s: %s\n", s.c_str(),
                   a.status().message().c_str());
      return 2;
    }
    if (*a == nc.advertise) continue;  // joining ourselves is a no-op
    nc.seeds.push_back(*a);
  }
  auto node = Node::create(nc, clock_);
  if (!node) {
    std::fprintf(stderr, "rumor agent: invalid node configuration: %s\n",
                 node.status().to_string().c_str());
    return 2;
  }
  node_ = std::move(node.value());
  node_->subscribe("", [this](const Change& c) { on_change(c); });
  node_->on_membership([this](const MembershipEvent& e) { on_member(e); });

  admin_eventfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (admin_eventfd_ < 0) {
    std::fprintf(stderr, "rumor agent: eventfd: %s\n", std::strerror(errno));
    return 1;
  }
  auto admin = AdminServer::open(*this);
  if (!admin) {
    std::fprintf(stderr, "rumor agent: %s\n", admin.status().message().c_str());
    return 1;
  }
  admin_ = std::move(admin.value());

  if (Status s = reactor_->start(*node_, clock_); !s) {
    std::fprintf(stderr, "rumor agent: %s\n", s.to_string().c_str());
    return 1;
  }
  const TransportInfo ti = reactor_->transport_info();
  log(LogLevel::kInfo, "agent started", "name={} id={:016x} version={} preset={} label={}",
      logfmt_value(nc.name), node_->id(), RUMOR_VERSION_STRING, config_.preset,
      logfmt_value(nc.cluster_label));
  log(LogLevel::kInfo, "listening", "gossip={} advertise={} admin={} metrics={}",
      reactor_->local_address().to_string(), nc.advertise.to_string(),
      admin_->admin_address().to_string(),
      admin_->metrics_address() ? admin_->metrics_address()->to_string() : "off");
  log(LogLevel::kInfo, "io backend", "{} gso={} gro={} rcvbuf={} sndbuf={} datagram_max={}",
      backend_line(), ti.gso, ti.gro, ti.socket_rcvbuf_bytes, ti.socket_sndbuf_bytes,
      ti.datagram_bytes_max);
  log(LogLevel::kInfo, "reactor", "threads={} steering={} pin={}", reactor_->cores(),
      logfmt_value(reactor_->steering()), logfmt_value(reactor_->pin_note()));
  admin_->start();
  // Listening: the gossip socket is bound and the admin server accepts connections.
  notify_ready(fmt::format("listening: gossip {} admin {}", reactor_->local_address().to_string(),
                           admin_->admin_address().to_string()));

  if (!nc.seeds.empty()) {
    std::string seeds;
    for (const Address& a : nc.seeds) seeds += (seeds.empty() ? "" : ",") + a.to_string();
    log(LogLevel::kInfo, "joining", "seeds={}", seeds);
    const JoinResult joined = wait_for_join();
    if (joined == JoinResult::kInterrupted) return 0;  // run() sees the pending signal
    if (joined == JoinResult::kTimeout) {
      std::fprintf(stderr,
                   "rumor agent: could not join the cluster: no seed answered within %llu ms "
                   "(%s). Is an agent running there, with the same --label?\n",
                   static_cast<unsigned long long>(config_.join_timeout_ms), seeds.c_str());
      return 1;
    }
  }
  notify_status(nc.seeds.empty() ? "serving (no seeds)" : "serving: joined the cluster");
  write_ready_file();
  return 0;
}

Agent::JoinResult Agent::wait_for_join() {
  // Polls a count of other live members, computed on the reactor thread (members() is a
  // driver-thread call), until one appears or the timeout passes. A signal ends the wait early.
  const std::uint64_t deadline = monotonic_ns() + config_.join_timeout_ms * 1'000'000ull;
  const NodeId self = node_->id();
  for (;;) {
    // Shared with the command, which may outlive a wait that gave up.
    auto others = std::make_shared<std::atomic<int>>(-1);
    Node* node = node_.get();
    Status s = reactor_->post([node, self, others] {
      int n = 0;
      for (const Member& m : node->members()) {
        n += m.id != self && m.state == MemberState::kAlive;
      }
      // Release: the count is complete when the waiter sees it.
      others->store(n, std::memory_order_release);
    });
    // Wait for this answer (bounded: the reactor runs commands every turn).
    const std::uint64_t answer_by = monotonic_ns() + 5'000'000'000ull;
    while (s.is_ok() && others->load(std::memory_order_acquire) < 0 &&
           monotonic_ns() < answer_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (others->load(std::memory_order_acquire) > 0) return JoinResult::kJoined;
    if (config_.join_timeout_ms != 0 && monotonic_ns() >= deadline) return JoinResult::kTimeout;
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM)) {
      return JoinResult::kInterrupted;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void Agent::write_ready_file() {
  if (config_.ready_file.empty()) return;
  const std::string tmp = config_.ready_file + ".tmp";
  const std::string line = fmt::format(
      "{{\"name\":\"{}\",\"id\":\"{:016x}\",\"gossip\":\"{}\",\"admin\":\"{}\","
      "\"metrics\":\"{}\",\"backend\":\"{}\",\"pid\":{}}}\n",
      config_.node.name, node_->id(), reactor_->local_address().to_string(),
      admin_->admin_address().to_string(),
      admin_->metrics_address() ? admin_->metrics_address()->to_string() : "",
      reactor_->backend(), static_cast<long>(::getpid()));
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    log(LogLevel::kWarn, "cannot write the ready file", "path={} error={}",
        logfmt_value(tmp), logfmt_value(std::strerror(errno)));
    return;
  }
  std::fputs(line.c_str(), f);
  std::fclose(f);
  std::rename(tmp.c_str(), config_.ready_file.c_str());  // atomic: readers see all or nothing
}

void Agent::shutdown() {
  if (admin_) {
    admin_->stop();
    admin_.reset();
  }
  if (reactor_ && reactor_->running()) {
    log(LogLevel::kInfo, "leaving", "name={}", logfmt_value(config_.node.name));
    reactor_->stop();  // node.stop() announces the leave and the reactor flushes it
    log(LogLevel::kInfo, "stopped", "name={}", logfmt_value(config_.node.name));
  }
  // The reactor references the node: destroy it first.
  reactor_.reset();
  node_.reset();
}

int Agent::run() {
  // Signals go to this thread only: block them before any thread starts (threads inherit the
  // mask), then wait for them synchronously.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (const int rc = start(); rc != 0) {
    shutdown();
    return rc;
  }
  int sig = 0;
  for (;;) {
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      log(LogLevel::kInfo, "SIGHUP ignored", "hint={}",
          logfmt_value("restart the agent to change its configuration"));
      continue;
    }
    break;
  }
  log(LogLevel::kInfo, "signal received", "signal={}", sig == SIGINT ? "SIGINT" : "SIGTERM");
  notify_stopping("leaving the cluster");
  shutdown();
  return 0;
}

}  // namespace rumor::tools
