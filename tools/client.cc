#include "tools/client.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "base/clock.h"
#include "rumor/transport.h"
#include "rumor/version.h"

namespace rumor::tools {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string format_hlc(std::uint64_t hlc) {
  const std::uint64_t ms = hlc_physical_ms(hlc);
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z+{}", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000,
                     hlc_logical(hlc));
}

namespace {

std::uint64_t deadline_after(double seconds) {
  if (seconds < 0) return UINT64_MAX;
  return monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
}

int poll_ms_until(std::uint64_t deadline) {
  if (deadline == UINT64_MAX) return -1;
  const std::uint64_t now = monotonic_ns();
  if (now >= deadline) return 0;
  return static_cast<int>(std::min<std::uint64_t>((deadline - now) / 1'000'000 + 1, 60'000));
}

std::string no_agent_hint(const std::string& admin) {
  return fmt::format(
      "is `rumor agent --admin {}` running? (set the address with --admin or $RUMOR_ADMIN)",
      admin);
}

int fail(const Status& s) {
  std::fprintf(stderr, "rumor: %s\n", s.message().c_str());
  return 1;
}

// Turns an error response into a message a person can act on.
int fail_response(const Message& m) {
  const auto code = static_cast<Code>(m.kind);
  std::string msg = m.fields.empty() ? std::string(code_name(code)) : m.fields[0];
  if (code == Code::kTooLarge) msg += " (the limits are the agent's store.key_bytes_max and "
                                      "store.value_bytes_max)";
  if (code == Code::kBusy) msg += " (the agent is overloaded: retry)";
  std::fprintf(stderr, "rumor: %s\n", msg.c_str());
  return 1;
}

std::string writer_text(const std::string& id, const std::string& name) {
  return name.empty() ? id : fmt::format("{} ({})", name, id);
}

std::string version_json(const std::string& hlc_text, const std::string& id,
                         const std::string& name) {
  const std::uint64_t hlc = std::strtoull(hlc_text.c_str(), nullptr, 10);
  return fmt::format(
      "{{\"hlc\":{},\"physical_ms\":{},\"logical\":{},\"time\":{},\"writer\":{},"
      "\"writer_name\":{}}}",
      hlc, hlc_physical_ms(hlc), hlc_logical(hlc), json_string(format_hlc(hlc)),
      json_string(id), json_string(name));
}

Result<Message> one_call(const ClientOptions& o, Message req) {
  auto c = AdminClient::connect(o.admin, o.timeout_s);
  if (!c) return c.status();
  return c->call(req);
}

}  // namespace

// ---- AdminClient ----

Result<AdminClient> AdminClient::connect(const std::string& admin, double timeout_s) {
  auto addr = Address::parse(admin);
  if (!addr) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("--admin {}: {}", admin, addr.status().message()));
  }
  const int fd = ::socket(addr->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(Code::kIo, fmt::format("socket: {}", std::strerror(errno)));
  AdminClient client(fd, admin, timeout_s);
  if (::connect(fd, addr->sockaddr_ptr(), addr->sockaddr_len()) != 0 && errno != EINPROGRESS) {
    const int err = errno;
    return Status::error(Code::kUnavailable,
                         fmt::format("no rumor agent at {} ({}): {}", admin, std::strerror(err),
                                     no_agent_hint(admin)));
  }
  pollfd p{fd, POLLOUT, 0};
  const int r = ::poll(&p, 1, poll_ms_until(deadline_after(timeout_s)));
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (r == 0) {
    return Status::error(Code::kUnavailable,
                         fmt::format("no rumor agent at {}: connecting timed out after {} s; {}",
                                     admin, timeout_s, no_agent_hint(admin)));
  }
  if (err != 0) {
    return Status::error(Code::kUnavailable,
                         fmt::format("no rumor agent at {} ({}): {}", admin, std::strerror(err),
                                     no_agent_hint(admin)));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return client;
}

AdminClient::AdminClient(AdminClient&& o) noexcept
    : fd_(o.fd_), admin_(std::move(o.admin_)), timeout_s_(o.timeout_s_), in_(std::move(o.in_)) {
  o.fd_ = -1;
}

AdminClient::~AdminClient() {
  if (fd_ >= 0) ::close(fd_);
}

Status AdminClient::send(const Message& request) {
  std::string frame;
  encode_request(request, frame);
  if (frame.size() > kRequestBytesMax + kFrameHeaderBytes) {
    return Status::error(Code::kTooLarge,
                         fmt::format("request of {} bytes exceeds the admin protocol's limit of "
                                     "{} bytes",
                                     frame.size(), kRequestBytesMax));
  }
  const std::uint64_t deadline = deadline_after(timeout_s_);
  std::size_t off = 0;
  while (off < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, poll_ms_until(deadline)) == 0) {
        return Status::error(Code::kUnavailable,
                             fmt::format("the agent at {} did not take the request within {} s",
                                         admin_, timeout_s_));
      }
      continue;
    }
    return Status::error(Code::kUnavailable, fmt::format("sending to the agent at {}: {}",
                                                         admin_, std::strerror(errno)));
  }
  return Status::ok();
}

Result<Message> AdminClient::receive(double timeout_s) {
  const std::uint64_t deadline = deadline_after(timeout_s);
  for (;;) {
    Message m;
    auto used = decode_response(in_, m);
    if (!used) return used.status();
    if (*used > 0) {
      in_.erase(0, *used);
      return m;
    }
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, poll_ms_until(deadline));
    if (r == 0) {
      if (monotonic_ns() < deadline) continue;
      return Status::error(Code::kUnavailable,
                           fmt::format("the agent at {} did not answer within {} s", admin_,
                                       timeout_s));
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::error(Code::kIo, fmt::format("poll: {}", std::strerror(errno)));
    }
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return Status::error(Code::kUnavailable,
                           fmt::format("the agent at {} closed the connection", admin_));
    } else if (errno != EAGAIN && errno != EINTR) {
      return Status::error(Code::kUnavailable,
                           fmt::format("reading from the agent at {}: {}", admin_,
                                       std::strerror(errno)));
    }
  }
}

Result<Message> AdminClient::call(const Message& request) {
  if (Status s = send(request); !s) return s;
  return receive(timeout_s_);
}

// ---- Commands ----

int cmd_get(const ClientOptions& o, const std::string& key, bool verbose) {
  auto r = one_call(o, make_request(Op::kGet, {key}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  const Message& m = *r;
  if (m.rows() != 1) return fail(Status::error(Code::kMalformed, "unexpected answer"));
  if (o.json) {
    std::printf("{\"key\":%s,\"value\":%s,\"version\":%s}\n", json_string(m.at(0, 0)).c_str(),
                json_string(m.at(0, 1)).c_str(),
                version_json(m.at(0, 2), m.at(0, 3), m.at(0, 4)).c_str());
    return 0;
  }
  std::fwrite(m.at(0, 1).data(), 1, m.at(0, 1).size(), stdout);
  std::fputc('\n', stdout);
  if (verbose) {
    const std::uint64_t hlc = std::strtoull(m.at(0, 2).c_str(), nullptr, 10);
    std::printf("# version %s written by %s\n", format_hlc(hlc).c_str(),
                writer_text(m.at(0, 3), m.at(0, 4)).c_str());
  }
  return 0;
}

static int write_result(const ClientOptions& o, const Result<Message>& r, const char* verb,
                        const std::string& key, const std::string* value) {
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  const Message& m = *r;
  if (m.rows() != 1) return fail(Status::error(Code::kMalformed, "unexpected answer"));
  if (o.json) {
    std::printf("{\"ok\":true,\"op\":\"%s\",\"key\":%s,\"version\":%s}\n", verb,
                json_string(key).c_str(),
                version_json(m.at(0, 1), m.at(0, 2), m.at(0, 3)).c_str());
    return 0;
  }
  const std::uint64_t hlc = std::strtoull(m.at(0, 1).c_str(), nullptr, 10);
  if (value != nullptr) {
    std::printf("%s = %s  (version %s on %s)\n", key.c_str(), value->c_str(),
                format_hlc(hlc).c_str(), writer_text(m.at(0, 2), m.at(0, 3)).c_str());
  } else {
    std::printf("deleted %s  (version %s on %s)\n", key.c_str(), format_hlc(hlc).c_str(),
                writer_text(m.at(0, 2), m.at(0, 3)).c_str());
  }
  return 0;
}

Result<std::string> read_value_arg(const std::string& arg) {
  if (arg != "-" && (arg.empty() || arg[0] != '@')) return arg;
  const bool stdin_value = arg == "-";
  const std::string path = stdin_value ? "standard input" : arg.substr(1);
  std::FILE* f = stdin_value ? stdin : std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("cannot read the value from {}: {}", path,
                                     std::strerror(errno)));
  }
  // Bounded: at most one byte past the largest value any agent accepts.
  std::string value;
  char buf[65536];
  bool failed = false;
  while (value.size() <= kValueBytesLimit) {
    const std::size_t n = std::fread(buf, 1, sizeof(buf), f);
    value.append(buf, n);
    if (n < sizeof(buf)) {
      failed = std::ferror(f) != 0;
      break;
    }
  }
  if (!stdin_value) std::fclose(f);
  if (failed) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("cannot read the value from {}", path));
  }
  if (value.size() > kValueBytesLimit) {
    return Status::error(Code::kTooLarge, fmt::format("the value from {} is more than {} bytes",
                                                      path, kValueBytesLimit));
  }
  return value;
}

int cmd_set(const ClientOptions& o, const std::string& key, const std::string& value_arg) {
  Result<std::string> value = read_value_arg(value_arg);
  if (!value) return fail(value.status());
  // A value read from a file or stdin is not echoed back whole.
  const std::string shown =
      value->size() > 256 ? fmt::format("({} bytes)", value->size()) : *value;
  return write_result(o, one_call(o, make_request(Op::kSet, {key, std::move(*value)})), "set",
                      key, &shown);
}

int cmd_del(const ClientOptions& o, const std::string& key) {
  return write_result(o, one_call(o, make_request(Op::kDel, {key})), "del", key, nullptr);
}

int cmd_keys(const ClientOptions& o, const std::string& prefix, std::size_t limit) {
  auto r = one_call(o, make_request(Op::kKeys, {prefix, std::to_string(limit)}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  const Message& m = *r;
  if (o.json) {
    std::string out = "[";
    for (std::size_t i = 0; i < m.rows(); ++i) {
      out += fmt::format("{}{{\"key\":{},\"value\":{},\"version\":{}}}", i ? "," : "",
                         json_string(m.at(i, 0)), json_string(m.at(i, 1)),
                         version_json(m.at(i, 2), m.at(i, 3), m.at(i, 4)));
    }
    out += "]\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  for (std::size_t i = 0; i < m.rows(); ++i) {
    std::printf("%s = %s\n", m.at(i, 0).c_str(), m.at(i, 1).c_str());
  }
  if (m.rows() == limit) {
    std::fprintf(stderr, "rumor: stopped at --limit %zu keys\n", limit);
  }
  return 0;
}

int cmd_keyring(const ClientOptions& o, const std::string& action, const std::string& argument) {
  auto r = one_call(o, make_request(Op::kKeyring, {action, argument}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  const Message& m = *r;
  std::string mode;
  std::vector<std::pair<std::string, bool>> keys;  // fingerprint, primary
  for (std::size_t i = 0; i < m.rows(); ++i) {
    if (m.at(i, 0) == "mode") mode = m.at(i, 1);
    if (m.at(i, 0) == "key") keys.emplace_back(m.at(i, 1), m.at(i, 2) == "primary");
  }
  if (o.json) {
    std::string out = fmt::format("{{\"mode\":{},\"keys\":[", json_string(mode));
    for (std::size_t i = 0; i < keys.size(); ++i) {
      out += fmt::format("{}{{\"id\":{},\"fingerprint\":{},\"primary\":{}}}", i ? "," : "",
                         std::stoul(keys[i].first.substr(0, 2), nullptr, 16),
                         json_string(keys[i].first), keys[i].second ? "true" : "false");
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  std::printf("encryption: %s\n", mode.c_str());
  if (keys.empty()) {
    std::printf("no keys\n");
    return 0;
  }
  std::printf("%-4s  %-16s  %s\n", "ID", "FINGERPRINT", "ROLE");
  for (const auto& [fp, primary] : keys) {
    std::printf("0x%s  %-16s  %s\n", fp.substr(0, 2).c_str(), fp.c_str(),
                primary ? "primary" : "accepted");
  }
  return 0;
}

int cmd_members(const ClientOptions& o) {
  auto r = one_call(o, make_request(Op::kMembers, {}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  const Message& m = *r;
  std::vector<std::size_t> order(m.rows());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return m.at(a, 0) < m.at(b, 0); });
  if (o.json) {
    std::string out = "[";
    bool first = true;
    for (std::size_t i : order) {
      out += fmt::format(
          "{}{{\"name\":{},\"id\":{},\"address\":{},\"state\":{},\"incarnation\":{},"
          "\"metadata\":{}}}",
          first ? "" : ",", json_string(m.at(i, 0)), json_string(m.at(i, 1)),
          json_string(m.at(i, 2)), json_string(m.at(i, 3)), m.at(i, 4),
          json_string(m.at(i, 5)));
      first = false;
    }
    out += "]\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  // Column widths from the content.
  std::size_t w[6] = {4, 2, 7, 5, 11, 8};  // NAME ID ADDRESS STATE INCARNATION METADATA
  for (std::size_t i : order) {
    for (std::size_t col = 0; col < 6; ++col) w[col] = std::max(w[col], m.at(i, col).size());
  }
  auto row = [&](const std::string& name, const std::string& addr, const std::string& state,
                 const std::string& inc, const std::string& id, const std::string& meta) {
    std::printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", static_cast<int>(w[0]), name.c_str(),
                static_cast<int>(w[2]), addr.c_str(), static_cast<int>(w[3]), state.c_str(),
                static_cast<int>(w[4]), inc.c_str(), static_cast<int>(w[1]), id.c_str(),
                meta.c_str());
  };
  row("NAME", "ADDRESS", "STATE", "INCARNATION", "ID", "METADATA");
  for (std::size_t i : order) {
    row(m.at(i, 0), m.at(i, 2), m.at(i, 3), m.at(i, 4), m.at(i, 1), m.at(i, 5));
  }
  return 0;
}

static int print_pairs(const ClientOptions& o, const Message& m, const std::string& filter) {
  if (o.json) {
    std::string out = "{";
    bool first = true;
    for (std::size_t i = 0; i < m.rows(); ++i) {
      if (m.at(i, 0).find(filter) == std::string::npos) continue;
      const std::string& v = m.at(i, 1);
      char* end = nullptr;
      std::strtod(v.c_str(), &end);
      const bool numeric = !v.empty() && end == v.c_str() + v.size() &&
                           v.find_first_not_of("0123456789.e+-") == std::string::npos;
      out += fmt::format("{}{}:{}", first ? "" : ",", json_string(m.at(i, 0)),
                         numeric ? v : json_string(v));
      first = false;
    }
    out += "}\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < m.rows(); ++i) w = std::max(w, m.at(i, 0).size());
  for (std::size_t i = 0; i < m.rows(); ++i) {
    if (m.at(i, 0).find(filter) == std::string::npos) continue;
    std::printf("%-*s  %s\n", static_cast<int>(w), m.at(i, 0).c_str(), m.at(i, 1).c_str());
  }
  return 0;
}

int cmd_stats(const ClientOptions& o, const std::string& filter) {
  auto r = one_call(o, make_request(Op::kStats, {}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  return print_pairs(o, *r, filter);
}

int cmd_info(const ClientOptions& o) {
  auto r = one_call(o, make_request(Op::kInfo, {}));
  if (!r) return fail(r.status());
  if (!r->ok()) return fail_response(*r);
  return print_pairs(o, *r, "");
}

int cmd_watch(const ClientOptions& o, const std::string& prefix, std::uint64_t count) {
  auto c = AdminClient::connect(o.admin, o.timeout_s);
  if (!c) return fail(c.status());
  auto first = c->call(make_request(Op::kWatch, {prefix}));
  if (!first) return fail(first.status());
  if (!first->ok()) return fail_response(*first);
  if (!o.json) {
    std::fprintf(stderr, "rumor: watching %s (Ctrl-C to stop)\n",
                 prefix.empty() ? "every key" : ("keys under '" + prefix + "'").c_str());
  }
  std::uint64_t seen = 0;
  while (count == 0 || seen < count) {
    auto r = c->receive(-1);
    if (!r) return fail(r.status());
    if (!r->ok()) return fail_response(*r);
    const Message& m = *r;
    for (std::size_t i = 0; i < m.rows() && (count == 0 || seen < count); ++i, ++seen) {
      const bool deleted = m.at(i, 5) == "1";
      const bool local = m.at(i, 6) == "1";
      if (o.json) {
        std::printf("{\"key\":%s,\"value\":%s,\"deleted\":%s,\"local\":%s,\"version\":%s}\n",
                    json_string(m.at(i, 0)).c_str(), json_string(m.at(i, 1)).c_str(),
                    deleted ? "true" : "false", local ? "true" : "false",
                    version_json(m.at(i, 2), m.at(i, 3), m.at(i, 4)).c_str());
      } else {
        const std::uint64_t hlc = std::strtoull(m.at(i, 2).c_str(), nullptr, 10);
        const std::string who = writer_text(m.at(i, 3), m.at(i, 4));
        if (deleted) {
          std::printf("%s  deleted %s  (by %s)\n", format_hlc(hlc).c_str(), m.at(i, 0).c_str(),
                      who.c_str());
        } else {
          std::printf("%s  %s = %s  (by %s)\n", format_hlc(hlc).c_str(), m.at(i, 0).c_str(),
                      m.at(i, 1).c_str(), who.c_str());
        }
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace rumor::tools
