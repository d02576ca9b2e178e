#include "tools/admin_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "tools/log.h"
#include "tools/metrics.h"

namespace rumor::tools {

bool is_loopback(const Address& a) {
  if (a.is_ipv4()) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
    return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.is_ipv6()) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
    return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
  }
  return false;
}

Result<int> listen_tcp(const Address& at, std::string_view what) {
  const int fd = ::socket(at.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::error(Code::kIo, fmt::format("{} socket: {}", what, std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, at.sockaddr_ptr(), at.sockaddr_len()) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) {
      return Status::error(Code::kIo,
                           fmt::format("cannot listen on {} address {}: address already in use "
                                       "(another agent? choose another port)",
                                       what, at.to_string()));
    }
    return Status::error(Code::kIo, fmt::format("cannot listen on {} address {}: {}", what,
                                                at.to_string(), std::strerror(err)));
  }
  if (::listen(fd, 64) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::error(Code::kIo, fmt::format("listen on {}: {}", what, std::strerror(err)));
  }
  return fd;
}

namespace {

Address bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return Address();
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

std::string hex_id(NodeId id) { return fmt::format("{:016x}", id); }

}  // namespace

AdminServer::AdminServer(Agent& agent)
    : agent_(agent),
      request_bytes_max_(request_bytes_limit(agent.config().node.store.key_bytes_max,
                                             agent.config().node.store.value_bytes_max)) {}

Result<std::unique_ptr<AdminServer>> AdminServer::open(Agent& agent) {
  const AgentConfig& cfg = agent.config();
  if (!is_loopback(cfg.admin)) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("--admin {}: the admin address must be on loopback "
                                     "(127.0.0.0/8 or ::1); the admin protocol has no "
                                     "authentication",
                                     cfg.admin.to_string()));
  }
  std::unique_ptr<AdminServer> s(new AdminServer(agent));
  auto fd = listen_tcp(cfg.admin, "admin");
  if (!fd) return fd.status();
  s->admin_fd_ = *fd;
  s->admin_addr_ = bound_address(*fd);
  if (cfg.metrics) {
    auto mfd = listen_tcp(*cfg.metrics, "metrics");
    if (!mfd) return mfd.status();
    s->metrics_fd_ = *mfd;
    s->metrics_addr_ = bound_address(*mfd);
  }
  s->stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->stop_fd_ < 0) {
    return Status::error(Code::kIo, fmt::format("eventfd: {}", std::strerror(errno)));
  }
  return s;
}

AdminServer::~AdminServer() {
  stop();
  for (auto& [id, c] : conns_) ::close(c.fd);
  if (admin_fd_ >= 0) ::close(admin_fd_);
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void AdminServer::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "rumor-admin");
    loop();
  });
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof(one));
  thread_.join();
}

void AdminServer::loop() {
  std::vector<pollfd> fds;
  std::vector<std::uint64_t> ids;
  for (;;) {
    const std::uint64_t now = monotonic_ns();
    // Keep a recent view of member names for "writer" columns.
    if (now >= next_refresh_ns_) {
      // At most one refresh in flight: the next is posted when it is answered (or 5 s late).
      next_refresh_ns_ = now + kReactorAnswerMs * 1'000'000ull;
      Conn none;
      post_to_reactor(none, Op::kMembers, false, {}, {});
    }
    std::uint64_t wait_ms = 1000;
    for (auto& [id, c] : conns_) {
      if (c.pending) {
        const std::uint64_t left =
            c.pending_deadline_ns > now ? (c.pending_deadline_ns - now) / 1'000'000 + 1 : 0;
        wait_ms = std::min(wait_ms, left);
      }
    }
    fds.clear();
    ids.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    fds.push_back({agent_.admin_eventfd(), POLLIN, 0});
    fds.push_back({admin_fd_, POLLIN, 0});
    fds.push_back({metrics_fd_, static_cast<short>(metrics_fd_ >= 0 ? POLLIN : 0), 0});
    for (auto& [id, c] : conns_) {
      short ev = 0;
      if (!c.read_closed && !c.close_after_write) ev |= POLLIN;
      if (c.out.size() > c.out_off) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
      ids.push_back(id);
    }
    const int r = ::poll(fds.data(), fds.size(), static_cast<int>(wait_ms));
    if (r < 0 && errno != EINTR) {
      log(LogLevel::kError, "admin poll failed", "error={}", logfmt_value(std::strerror(errno)));
      return;
    }
    if (fds[0].revents != 0) return;  // stop
    if (fds[1].revents != 0) {
      agent_.admin_acknowledge();
      while (auto done = agent_.completions().pop()) on_completion(std::move(*done));
      on_changes();
    }
    check_durable();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto it = conns_.find(ids[i]);
      if (it == conns_.end()) continue;
      const short re = fds[4 + i].revents;
      if (re & (POLLIN | POLLHUP | POLLERR)) on_readable(it->second);
      if (re & POLLOUT) on_writable(it->second);
    }
    if (fds[2].revents != 0) accept_all(admin_fd_, false);
    if (metrics_fd_ >= 0 && fds[3].revents != 0) accept_all(metrics_fd_, true);
    // Requests the reactor did not answer in time.
    const std::uint64_t after = monotonic_ns();
    for (auto& [id, c] : conns_) {
      if (c.pending && after >= c.pending_deadline_ns) {
        c.pending = false;
        if (c.waiting_durable) {
          c.waiting_durable = false;
          const std::string e = agent_.durability()->last_error();
          respond(c, make_error(Status::error(
                         Code::kUnavailable,
                         fmt::format("the write was applied but is not on disk after {} ms{}",
                                     kReactorAnswerMs, e.empty() ? "" : ": " + e))));
          process_admin(c);
        } else if (c.http) {
          respond_http(c, 503, "Service Unavailable", "text/plain",
                       "the reactor did not answer in time\n");
        } else {
          respond(c, make_error(Status::error(
                         Code::kUnavailable,
                         fmt::format("the agent's reactor did not answer within {} ms",
                                     kReactorAnswerMs))));
          process_admin(c);
        }
      }
    }
    // Close what is finished.
    std::vector<std::uint64_t> done;
    for (auto& [id, c] : conns_) {
      const bool drained = c.out.size() == c.out_off;
      if (drained && (c.close_after_write || (c.read_closed && !c.pending))) done.push_back(id);
    }
    for (std::uint64_t id : done) close_conn(conns_.at(id));
  }
}

void AdminServer::accept_all(int listen_fd, bool http) {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a connection that died before we took it
    if (conns_.size() >= agent_.config().admin_connections_max) {
      ::close(fd);  // bounded: the client sees a reset and can retry
      log(LogLevel::kWarn, "admin connection refused", "reason=too_many_connections max={}",
          agent_.config().admin_connections_max);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Conn c;
    c.id = next_conn_++;
    c.fd = fd;
    c.http = http;
    conns_.emplace(c.id, std::move(c));
  }
}

void AdminServer::on_readable(Conn& c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      c.in.append(buf, static_cast<std::size_t>(n));
      const std::size_t cap =
          c.http ? kHttpRequestBytesMax : 2 * (std::size_t{request_bytes_max_} + kFrameHeaderBytes);
      if (c.in.size() > cap) break;  // processing below refuses it
      continue;
    }
    if (n == 0) {
      c.read_closed = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c.read_closed = true;
      c.out.clear();
      c.out_off = 0;
      c.close_after_write = true;  // a reset: nothing more can be delivered
    }
    break;
  }
  if (c.http) {
    process_http(c);
  } else {
    process_admin(c);
  }
  on_writable(c);
}

void AdminServer::on_writable(Conn& c) {
  while (c.out.size() > c.out_off) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    // The peer is gone.
    c.out.clear();
    c.out_off = 0;
    c.read_closed = true;
    c.close_after_write = true;
    return;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1u << 20) && c.out_off > c.out.size() / 2) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
}

void AdminServer::respond(Conn& c, const Message& m) { encode_response(m, c.out); }

void AdminServer::respond_http(Conn& c, int status, std::string_view reason,
                               std::string_view type, const std::string& body) {
  c.out += fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      status, reason, type, body.size());
  c.out += body;
  c.close_after_write = true;
}

void AdminServer::process_admin(Conn& c) {
  while (!c.pending && !c.watching && !c.close_after_write) {
    Message req;
    auto used = decode_request_within(c.in, req, request_bytes_max_);
    if (!used) {
      respond(c, make_error(used.status()));
      c.close_after_write = true;
      return;
    }
    if (*used == 0) return;  // need more bytes
    c.in.erase(0, *used);
    handle(c, req);
  }
}

void AdminServer::process_http(Conn& c) {
  if (c.pending || c.close_after_write) return;
  const std::size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.in.size() > kHttpRequestBytesMax) {
      respond_http(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n");
    } else if (c.read_closed) {
      c.close_after_write = true;
    }
    return;
  }
  const std::string_view line = std::string_view(c.in).substr(0, c.in.find("\r\n"));
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.find(' ', sp1 == std::string_view::npos ? 0 : sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    respond_http(c, 400, "Bad Request", "text/plain", "bad request line\n");
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (const std::size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (method != "GET") {
    respond_http(c, 405, "Method Not Allowed", "text/plain", "only GET\n");
  } else if (path == "/metrics") {
    post_to_reactor(c, Op::kStats, true, {}, {});
  } else if (path == "/") {
    respond_http(c, 200, "OK", "text/plain", "rumor agent: metrics at /metrics\n");
  } else {
    respond_http(c, 404, "Not Found", "text/plain", "not found: try /metrics\n");
  }
}

void AdminServer::post_to_reactor(Conn& c, Op op, bool metrics, std::string key,
                                  std::string value) {
  const std::uint64_t seq = next_seq_++;
  const std::uint64_t conn = c.id;  // 0 for the name refresh
  Agent* agent = &agent_;
  Status s = agent_.reactor().post([agent, conn, seq, op, metrics, key = std::move(key),
                                    value = std::move(value)] {
    auto done = std::make_unique<Completion>();
    done->conn = conn;
    done->seq = seq;
    done->op = op;
    done->metrics = metrics;
    done->key = key;
    if (op == Op::kKeyring) {
      done->status = agent->keyring_command(key, value, &done->rows);
    } else if (op == Op::kTags) {
      done->status = agent->tags_command(key, value, &done->rows);
    } else if (op == Op::kJoin) {
      done->status = agent->join_command(value, &done->rows);
    } else if (op == Op::kSet || op == Op::kDel) {
      agent->write_command(std::move(done), std::string(value));
      return;
    } else {
      done->snapshot = agent->take_snapshot();
    }
    agent->complete(std::move(done));
  });
  if (conn == 0) return;  // a refresh: if the queue is full, the next one will do
  if (!s.is_ok()) {
    if (c.http) {
      respond_http(c, 503, "Service Unavailable", "text/plain", s.to_string() + "\n");
    } else {
      respond(c, make_error(s));
    }
    return;
  }
  c.pending = true;
  c.pending_seq = seq;
  c.pending_deadline_ns = monotonic_ns() + kReactorAnswerMs * 1'000'000ull;
}

void AdminServer::handle(Conn& c, const Message& req) {
  const auto op = static_cast<Op>(req.kind);
  auto need = [&](std::size_t n) {
    if (req.fields.size() == n) return true;
    respond(c, make_error(Status::error(
                   Code::kInvalidArgument,
                   fmt::format("{} takes {} field(s), got {}", op_name(op), n,
                               req.fields.size()))));
    return false;
  };
  auto entry_row = [&](const Node::Entry& e, std::vector<std::string>& f) {
    f.push_back(e.key);
    f.push_back(e.value);
    f.push_back(std::to_string(e.version.hlc));
    f.push_back(hex_id(e.version.node));
    f.push_back(writer_name(e.version.node));
  };
  if (log_enabled(LogLevel::kDebug)) {
    log(LogLevel::kDebug, "admin request", "op={} key={}", op_name(op),
        logfmt_value(op == Op::kGet || op == Op::kSet || op == Op::kDel || op == Op::kKeys ||
                             op == Op::kWatch
                         ? (req.fields.empty() ? std::string() : req.fields[0].substr(0, 256))
                         : std::string()));
  }
  switch (op) {
    case Op::kGet: {
      if (!need(1)) return;
      auto e = agent_.node().get_entry(req.fields[0]);
      if (!e || e->deleted) {
        respond(c, make_error(Status::error(Code::kNotFound,
                                            fmt::format("key not found: {}", req.fields[0]))));
        return;
      }
      std::vector<std::string> f;
      entry_row(*e, f);
      respond(c, make_response(5, std::move(f)));
      return;
    }
    case Op::kKeys: {
      if (!need(2)) return;
      std::size_t limit = kKeysLimitMax;
      if (!req.fields[1].empty()) {
        limit = std::min<std::size_t>(std::strtoull(req.fields[1].c_str(), nullptr, 10),
                                      kKeysLimitMax);
      }
      std::vector<std::string> f;
      for (const Node::Entry& e : agent_.node().scan_prefix(req.fields[0], limit)) {
        entry_row(e, f);
      }
      respond(c, make_response(5, std::move(f)));
      return;
    }
    case Op::kSet:
      if (!need(2)) return;
      post_to_reactor(c, op, false, req.fields[0], req.fields[1]);
      return;
    case Op::kDel:
      if (!need(1)) return;
      post_to_reactor(c, op, false, req.fields[0], {});
      return;
    case Op::kKeyring:
      if (!need(2)) return;
      post_to_reactor(c, op, false, req.fields[0], req.fields[1]);
      return;
    case Op::kTags: {
      if (req.fields.empty()) {
        respond(c, make_error(Status::error(Code::kInvalidArgument, "tags takes an action")));
        return;
      }
      std::string args;  // newline-separated: no tag holds one
      for (std::size_t i = 1; i < req.fields.size(); ++i) {
        args += (i > 1 ? "\n" : "") + req.fields[i];
      }
      post_to_reactor(c, op, false, req.fields[0], std::move(args));
      return;
    }
    case Op::kJoin: {
      std::string args;
      for (std::size_t i = 0; i < req.fields.size(); ++i) {
        args += (i > 0 ? "\n" : "") + req.fields[i];
      }
      post_to_reactor(c, op, false, {}, std::move(args));
      return;
    }
    case Op::kLeave:
      if (!need(0)) return;
      log(LogLevel::kInfo, "leave requested", "by=admin");
      respond(c, make_response(0, {}));
      agent_.request_stop();
      return;
    case Op::kReload: {
      if (!need(0)) return;
      std::vector<std::string> rows;
      Status s = agent_.reload(&rows);
      respond(c, s.is_ok() ? make_response(2, std::move(rows)) : make_error(s));
      return;
    }
    case Op::kMembers:
    case Op::kStats:
    case Op::kInfo:
      if (!need(0)) return;
      post_to_reactor(c, op, false, {}, {});
      return;
    case Op::kWatch:
      if (!need(1)) return;
      c.watching = true;
      c.watch_prefix = req.fields[0];
      update_watching();
      respond(c, make_response(7, {}));
      return;
  }
  respond(c, make_error(Status::error(Code::kInvalidArgument,
                                      fmt::format("unknown admin op {}", req.kind))));
  c.close_after_write = true;
}

void AdminServer::check_durable() {
  if (durable_waits_.empty()) return;
  Durability& d = *agent_.durability();
  std::vector<std::unique_ptr<Completion>> still;
  for (auto& w : durable_waits_) {
    auto it = conns_.find(w->conn);
    if (it == conns_.end() || !it->second.waiting_durable || it->second.pending_seq != w->seq) {
      continue;  // the client left, or the wait timed out
    }
    if (!d.durable(w->durable_core, w->durable_ticket)) {
      still.push_back(std::move(w));
      continue;
    }
    Conn& c = it->second;
    c.waiting_durable = false;
    w->wait_durable = false;
    on_completion(std::move(w));  // answers, then serves what the client pipelined behind
  }
  durable_waits_ = std::move(still);
}

void AdminServer::on_completion(std::unique_ptr<Completion> done) {
  if (done->snapshot) refresh_names(*done->snapshot);
  if (done->conn == 0) {
    next_refresh_ns_ = monotonic_ns() + 1'000'000'000ull;  // the next, a second from now
    return;
  }
  auto it = conns_.find(done->conn);
  if (it == conns_.end()) return;  // the client left
  Conn& c = it->second;
  if (!c.pending || c.pending_seq != done->seq) return;  // answered already (timed out)
  c.pending = false;
  if (done->metrics) {
    AgentInfo info{agent_.config().node.name, agent_.reactor().backend(),
                   std::string(RUMOR_VERSION_STRING)};
    respond_http(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                 render_prometheus(*done->snapshot, info));
    on_writable(c);
    return;
  }
  const AgentConfig& cfg = agent_.config();
  switch (done->op) {
    case Op::kSet:
    case Op::kDel:
      if (done->status.is_ok() && done->wait_durable &&
          !agent_.durability()->durable(done->durable_core, done->durable_ticket)) {
        c.pending = true;  // answered by check_durable() once a commit holds it
        c.waiting_durable = true;
        durable_waits_.push_back(std::move(done));
        return;
      }
      if (!done->status.is_ok()) {
        respond(c, make_error(done->status));
      } else {
        respond(c, make_response(4, {done->key, std::to_string(done->version.hlc),
                                     hex_id(done->version.node),
                                     writer_name(done->version.node)}));
      }
      break;
    case Op::kMembers: {
      std::vector<std::string> f;
      for (const Member& m : done->snapshot->members) {
        f.push_back(m.name);
        f.push_back(hex_id(m.id));
        f.push_back(m.address.to_string());
        f.push_back(std::string(member_state_name(m.state)));
        f.push_back(std::to_string(m.incarnation));
        f.push_back(m.metadata);
      }
      respond(c, make_response(6, std::move(f)));
      break;
    }
    case Op::kStats: {
      std::vector<std::string> f;
      for (auto& [name, value] : stats_rows(*done->snapshot)) {
        f.push_back(std::move(name));
        f.push_back(std::move(value));
      }
      respond(c, make_response(2, std::move(f)));
      break;
    }
    case Op::kInfo: {
      std::size_t alive = 0;
      for (const Member& m : done->snapshot->members) alive += m.state == MemberState::kAlive;
      std::vector<std::string> f = {
          "name", cfg.node.name,
          "id", hex_id(agent_.node().id()),
          "gossip", agent_.reactor().local_address().to_string(),
          "advertise", agent_.node().config().advertise.to_string(),
          "admin", admin_addr_.to_string(),
          "metrics", metrics_addr_ ? metrics_addr_->to_string() : "",
          "backend", agent_.reactor().backend(),
          "backend_reason", agent_.reactor().backend_reason(),
          "pin", agent_.reactor().pin_note(),
          "cores", std::to_string(agent_.reactor().cores()),
          "steering", agent_.reactor().steering(),
          "preset", cfg.preset,
          "label", cfg.node.cluster_label,
          "members_alive", std::to_string(alive),
          "members_known", std::to_string(done->snapshot->members.size()),
          "version", RUMOR_VERSION_STRING,
      };
      respond(c, make_response(2, std::move(f)));
      break;
    }
    case Op::kKeyring:
      if (!done->status.is_ok()) {
        respond(c, make_error(done->status));
      } else {
        respond(c, make_response(3, std::move(done->rows)));
      }
      break;
    case Op::kTags:
    case Op::kJoin:
      if (!done->status.is_ok()) {
        respond(c, make_error(done->status));
      } else {
        respond(c, make_response(done->op == Op::kTags ? 2 : 1, std::move(done->rows)));
      }
      break;
    default:
      respond(c, make_error(Status::error(Code::kInvalidArgument, "unexpected completion")));
      break;
  }
  process_admin(c);  // pipelined requests behind this one
  on_writable(c);
}

void AdminServer::on_changes() {
  std::vector<std::uint64_t> slow;
  while (auto ch = agent_.changes().pop()) {
    if (watchers_ == 0) continue;
    for (auto& [id, c] : conns_) {
      if (!c.watching || c.close_after_write) continue;
      if (ch->key.compare(0, c.watch_prefix.size(), c.watch_prefix) != 0) continue;
      respond(c, make_response(7, {ch->key, ch->value, std::to_string(ch->version.hlc),
                                   hex_id(ch->version.node), writer_name(ch->version.node),
                                   ch->deleted ? "1" : "0", ch->local ? "1" : "0"}));
      if (c.out.size() - c.out_off > kConnOutputBytesMax) slow.push_back(id);
    }
  }
  for (std::uint64_t id : slow) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.close_after_write) continue;
    log(LogLevel::kWarn, "watch stream dropped", "reason=client_too_slow buffered_bytes={}",
        it->second.out.size() - it->second.out_off);
    close_conn(it->second);
  }
  for (auto& [id, c] : conns_) {
    if (c.watching) on_writable(c);
  }
}

void AdminServer::close_conn(Conn& c) {
  ::close(c.fd);
  const bool watching = c.watching;
  conns_.erase(c.id);  // c is gone from here on
  if (watching) update_watching();
}

void AdminServer::update_watching() {
  watchers_ = 0;
  for (auto& [id, c] : conns_) watchers_ += c.watching;
  agent_.set_watching(watchers_ > 0);
}

std::string AdminServer::writer_name(NodeId id) const {
  if (id == agent_.node().id()) return agent_.config().node.name;
  auto it = names_.find(id);
  return it == names_.end() ? std::string() : it->second;
}

void AdminServer::refresh_names(const Snapshot& s) {
  for (const Member& m : s.members) names_[m.id] = m.name;
}

}  // namespace rumor::tools
