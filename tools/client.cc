#include "tools/client.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sodium.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/clock.h"
#include "tools/agent.h"
#include "tools/agent_config.h"
#include "rumor/transport.h"
#include "rumor/version.h"

namespace rumor::tools {

namespace {
// Ordered: fields print in the order they are set, as the docs list them.
using Json = nlohmann::ordered_json;
void print_json(const Json& j);
}  // namespace

bool is_utf8(std::string_view s) {
  // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (std::size_t i = 2; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
    }
    p += n + 1;
  }
  return true;
}

std::string base64_encode(std::string_view s) {
  std::string out(sodium_base64_encoded_len(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

// Sets obj[field] to the bytes: as text when they are UTF-8, else base64 with
// obj[field + "_encoding"] = "base64" (always present when always_encoding).
static void put_bytes(Json& obj, const std::string& field, std::string_view bytes,
               bool always_encoding) {
  const bool text = is_utf8(bytes);
  obj[field] = text ? std::string(bytes) : base64_encode(bytes);
  if (always_encoding || !text) obj[field + "_encoding"] = text ? "utf-8" : "base64";
}

std::string text_or_base64(std::string_view s) {
  return is_utf8(s) ? std::string(s) : base64_encode(s);
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

// An error: a line for people on stderr, or with --json one object on stdout (where a script
// reads the answer): {"ok":false,"error":{"code":"not_found","message":"..."}}. A request the
// agent calls invalid (an empty key, a mode that does not exist) is a usage error: exit 2.
int report_error(const ClientOptions& o, Code code, const std::string& message) {
  if (o.json) {
    Json err;
    err["code"] = std::string(code_name(code));
    put_bytes(err, "message", message, false);
    Json j;
    j["ok"] = false;
    j["error"] = std::move(err);
    print_json(j);
  } else {
    std::fprintf(stderr, "rumor: %s\n", message.c_str());
  }
  return code == Code::kInvalidArgument ? 2 : 1;
}

int fail(const ClientOptions& o, const Status& s) {
  return report_error(o, s.code(), s.message());
}

// Turns an error response into a message a person can act on.
int fail_response(const ClientOptions& o, const Message& m) {
  const auto code = static_cast<Code>(m.kind);
  std::string msg = m.fields.empty() ? std::string(code_name(code)) : m.fields[0];
  if (code == Code::kTooLarge) msg += " (the limits are the agent's store.key_bytes_max and "
                                      "store.value_bytes_max)";
  if (code == Code::kBusy) msg += " (the agent is overloaded: retry)";
  return report_error(o, code, msg);
}

std::string writer_text(const std::string& id, const std::string& name) {
  return name.empty() ? id : fmt::format("{} ({})", name, id);
}

Json version_json(const std::string& hlc_text, const std::string& id,
                  const std::string& name) {
  const std::uint64_t hlc = std::strtoull(hlc_text.c_str(), nullptr, 10);
  Json v;
  v["hlc"] = hlc;
  v["physical_ms"] = hlc_physical_ms(hlc);
  v["logical"] = hlc_logical(hlc);
  v["time"] = format_hlc(hlc);
  v["writer"] = id;
  put_bytes(v, "writer_name", name, false);
  return v;
}

// An entry row [key, value, hlc, writer, writer_name]; `deleted` adds that field.
Json entry_json(const Message& m, std::size_t i, const bool* deleted) {
  Json j;
  put_bytes(j, "key", m.at(i, 0), false);
  put_bytes(j, "value", m.at(i, 1), true);
  if (deleted != nullptr) j["deleted"] = *deleted;
  j["version"] = version_json(m.at(i, 2), m.at(i, 3), m.at(i, 4));
  return j;
}

// One JSON document per line. Every string was checked for UTF-8 (or base64-encoded) on its
// way in, so dump() cannot throw; `replace` is the belt to those braces.
void print_json(const Json& j) {
  std::string out = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stdout);
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

int cmd_get(const ClientOptions& o, const std::string& key, bool verbose, bool raw) {
  auto r = one_call(o, make_request(Op::kGet, {key}));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  if (m.rows() != 1) return fail(o, Status::error(Code::kMalformed, "unexpected answer"));
  if (o.json) {
    print_json(entry_json(m, 0, nullptr));
    return 0;
  }
  std::fwrite(m.at(0, 1).data(), 1, m.at(0, 1).size(), stdout);
  if (raw) return 0;  // the bytes exactly, as `set KEY @FILE` took them
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
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  if (m.rows() != 1) return fail(o, Status::error(Code::kMalformed, "unexpected answer"));
  if (o.json) {
    Json j;
    j["ok"] = true;
    j["op"] = verb;
    put_bytes(j, "key", key, false);
    j["version"] = version_json(m.at(0, 1), m.at(0, 2), m.at(0, 3));
    print_json(j);
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
  if (f == nullptr) {  // an operating error (exit 1), as cat(1) says of a missing file
    return Status::error(Code::kIo,
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
    return Status::error(Code::kIo, fmt::format("cannot read the value from {}", path));
  }
  if (value.size() > kValueBytesLimit) {
    return Status::error(Code::kTooLarge, fmt::format("the value from {} is more than {} bytes",
                                                      path, kValueBytesLimit));
  }
  return value;
}

int cmd_set(const ClientOptions& o, const std::string& key, const std::string& value_arg) {
  Result<std::string> value = read_value_arg(value_arg);
  if (!value) return fail(o, value.status());
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
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  if (o.json) {
    Json out = Json::array();
    for (std::size_t i = 0; i < m.rows(); ++i) out.push_back(entry_json(m, i, nullptr));
    print_json(out);
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
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  std::string mode;
  std::vector<std::pair<std::string, bool>> keys;  // fingerprint, primary
  for (std::size_t i = 0; i < m.rows(); ++i) {
    if (m.at(i, 0) == "mode") mode = m.at(i, 1);
    if (m.at(i, 0) == "key") keys.emplace_back(m.at(i, 1), m.at(i, 2) == "primary");
  }
  if (o.json) {
    Json j;
    j["mode"] = mode;
    j["keys"] = Json::array();
    for (const auto& [fp, primary] : keys) {
      Json k;
      k["id"] = std::strtoul(fp.substr(0, 2).c_str(), nullptr, 16);
      k["fingerprint"] = fp;
      k["primary"] = primary;
      j["keys"].push_back(std::move(k));
    }
    print_json(j);
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

int cmd_members(const ClientOptions& o, const MembersFilter& filter) {
  auto want = parse_tags(filter.tags);
  if (!want) return report_error(o, Code::kInvalidArgument, "--" + want.status().message());
  auto r = one_call(o, make_request(Op::kMembers, {}));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  // Rows: [name, id, address, state, incarnation, metadata]; tags decoded from the metadata.
  std::vector<std::size_t> order;
  std::vector<Tags> tags(m.rows());
  for (std::size_t i = 0; i < m.rows(); ++i) {
    tags[i] = decode_tags(m.at(i, 5)).value_or(Tags{});
    if (!filter.status.empty() && m.at(i, 3) != filter.status) continue;
    bool match = true;
    for (const auto& [k, v] : *want) {
      auto it = tags[i].find(k);
      match = match && it != tags[i].end() && it->second == v;
    }
    if (match) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return m.at(a, 0) < m.at(b, 0); });
  if (o.json) {
    Json out = Json::array();
    for (std::size_t i : order) {
      Json row;
      put_bytes(row, "name", m.at(i, 0), false);
      row["id"] = m.at(i, 1);
      row["address"] = m.at(i, 2);
      row["state"] = m.at(i, 3);
      row["incarnation"] = std::strtoull(m.at(i, 4).c_str(), nullptr, 10);
      Json t = Json::object();
      for (const auto& [k, v] : tags[i]) t[k] = text_or_base64(v);
      row["tags"] = std::move(t);
      put_bytes(row, "metadata", m.at(i, 5), false);
      out.push_back(std::move(row));
    }
    print_json(out);
    return 0;
  }
  // NAME ADDRESS STATE [INCARNATION ID] TAGS: the tags as the agent gossips them (its metadata).
  std::vector<std::vector<std::string>> table;
  table.push_back(filter.detailed
                      ? std::vector<std::string>{"NAME", "ADDRESS", "STATE", "INCARNATION", "ID", "TAGS"}
                      : std::vector<std::string>{"NAME", "ADDRESS", "STATE", "TAGS"});
  for (std::size_t i : order) {
    if (filter.detailed) {
      table.push_back({m.at(i, 0), m.at(i, 2), m.at(i, 3), m.at(i, 4), m.at(i, 1), m.at(i, 5)});
    } else {
      table.push_back({m.at(i, 0), m.at(i, 2), m.at(i, 3), m.at(i, 5)});
    }
  }
  std::vector<std::size_t> w(table[0].size(), 0);
  for (const auto& row : table) {
    for (std::size_t c = 0; c < row.size(); ++c) w[c] = std::max(w[c], row[c].size());
  }
  for (const auto& row : table) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(w[c] - row[c].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

int cmd_tags(const ClientOptions& o, const std::string& action,
             const std::vector<std::string>& args) {
  std::vector<std::string> fields = {action};
  fields.insert(fields.end(), args.begin(), args.end());
  auto r = one_call(o, make_request(Op::kTags, std::move(fields)));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  if (o.json) {
    Json out = Json::object();
    for (std::size_t i = 0; i < m.rows(); ++i) {
      out[m.at(i, 0)] = text_or_base64(m.at(i, 1));
    }
    print_json(out);
    return 0;
  }
  if (m.rows() == 0) std::printf("no tags\n");
  for (std::size_t i = 0; i < m.rows(); ++i) {
    std::printf("%s=%s\n", m.at(i, 0).c_str(), m.at(i, 1).c_str());
  }
  return 0;
}

int cmd_join(const ClientOptions& o, const std::vector<std::string>& addresses) {
  std::vector<std::string> errors;
  const std::vector<Address> addrs = resolve_seeds(addresses, &errors);
  if (addrs.empty()) {
    std::string msg = "no address to join";
    for (const std::string& e : errors) msg += "; " + e;
    return report_error(o, Code::kInvalidArgument, msg);
  }
  auto c = AdminClient::connect(o.admin, o.timeout_s);
  if (!c) return fail(o, c.status());
  auto count_alive = [&]() -> long {
    auto r = c->call(make_request(Op::kMembers, {}));
    if (!r || !r->ok()) return -1;
    long n = 0;
    for (std::size_t i = 0; i < r->rows(); ++i) n += r->at(i, 3) == "alive";
    return n;
  };
  const long before = count_alive();
  std::vector<std::string> fields;
  for (const Address& a : addrs) fields.push_back(a.to_string());
  auto r = c->call(make_request(Op::kJoin, fields));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  // The join is asynchronous: wait (bounded by --timeout) for members to arrive.
  long after = before;
  const std::uint64_t deadline = deadline_after(std::min(o.timeout_s, 5.0));
  while (monotonic_ns() < deadline) {
    after = count_alive();
    if (after > before) break;
    ::usleep(100'000);
  }
  if (o.json) {
    Json j;
    j["ok"] = true;
    j["addresses"] = fields;
    j["unresolved"] = errors;
    j["alive_before"] = before;
    j["alive_after"] = after;
    print_json(j);
  } else {
    for (const std::string& e : errors) std::fprintf(stderr, "rumor: not resolved: %s\n", e.c_str());
    std::printf("asked %zu address(es) to join; alive members: %ld before, %ld now%s\n",
                fields.size(), before, after,
                after > before ? "" : " (no answer yet: see `rumor members` and the agent's log)");
  }
  return 0;
}

int cmd_leave(const ClientOptions& o) {
  auto r = one_call(o, make_request(Op::kLeave, {}));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  if (o.json) {
    print_json(Json{{"ok", true}, {"op", "leave"}});
  } else {
    std::printf("the agent at %s is leaving the cluster and will exit\n", o.admin.c_str());
  }
  return 0;
}

int cmd_reload(const ClientOptions& o) {
  auto r = one_call(o, make_request(Op::kReload, {}));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  const Message& m = *r;
  if (o.json) {
    Json j;
    j["ok"] = true;
    j["applied"] = Json::array();
    j["restart_needed"] = Json::array();
    for (std::size_t i = 0; i < m.rows(); ++i) {
      if (m.at(i, 0) == "applied" || m.at(i, 0) == "restart_needed") j[m.at(i, 0)].push_back(m.at(i, 1));
    }
    print_json(j);
    return 0;
  }
  for (std::size_t i = 0; i < m.rows(); ++i) {
    if (m.at(i, 0) == "unchanged") {
      std::printf("configuration unchanged\n");
    } else if (m.at(i, 0) == "applied") {
      std::printf("applied  %s\n", m.at(i, 1).c_str());
    } else {
      std::printf("restart needed  %s (the running agent keeps its old value)\n", m.at(i, 1).c_str());
    }
  }
  return 0;
}

// A number when the text is one, else the text.
static Json scalar_json(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  const bool numeric = !v.empty() && end == v.c_str() + v.size() &&
                       v.find_first_not_of("0123456789.e+-") == std::string::npos;
  if (!numeric) return Json(text_or_base64(v));
  if (v.find_first_of(".e") == std::string::npos && v[0] != '-') {
    return Json(std::strtoull(v.c_str(), nullptr, 10));
  }
  return Json(d);
}

std::optional<Series> parse_series(std::string_view s) {
  Series out;
  const std::size_t brace = s.find('{');
  out.name = std::string(s.substr(0, brace));
  if (out.name.empty()) return std::nullopt;
  if (brace == std::string_view::npos) return out;
  if (s.back() != '}') return std::nullopt;
  std::size_t i = brace + 1;
  const std::size_t end = s.size() - 1;
  while (i < end) {
    const std::size_t eq = s.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= end || s[eq + 1] != '"') return std::nullopt;
    std::string label(s.substr(i, eq - i)), value;
    i = eq + 2;
    for (;;) {
      if (i >= end) return std::nullopt;
      const char c = s[i++];
      if (c == '"') break;
      if (c == '\\') {
        if (i >= end) return std::nullopt;
        const char e = s[i++];
        value.push_back(e == 'n' ? '\n' : e);
      } else {
        value.push_back(c);
      }
    }
    out.labels.emplace_back(std::move(label), std::move(value));
    if (i < end) {
      if (s[i] != ',') return std::nullopt;
      ++i;
    }
  }
  return out;
}

static int print_pairs(const ClientOptions& o, const Message& m, const std::string& filter,
                       bool metrics) {
  if (o.json) {
    // Metrics as a list of {name, labels, value}; info as one object of its fields.
    Json out = metrics ? Json::array() : Json::object();
    for (std::size_t i = 0; i < m.rows(); ++i) {
      if (m.at(i, 0).find(filter) == std::string::npos) continue;
      if (!metrics) {
        out[text_or_base64(m.at(i, 0))] = scalar_json(m.at(i, 1));
        continue;
      }
      Json r;
      auto series = parse_series(m.at(i, 0));
      if (!series) series = Series{m.at(i, 0), {}};
      put_bytes(r, "name", series->name, false);
      r["labels"] = Json::object();
      for (const auto& [k, v] : series->labels) r["labels"][k] = text_or_base64(v);
      r["value"] = scalar_json(m.at(i, 1));
      out.push_back(std::move(r));
    }
    print_json(out);
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
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  return print_pairs(o, *r, filter, /*metrics=*/true);
}

int cmd_info(const ClientOptions& o) {
  auto r = one_call(o, make_request(Op::kInfo, {}));
  if (!r) return fail(o, r.status());
  if (!r->ok()) return fail_response(o, *r);
  return print_pairs(o, *r, "", /*metrics=*/false);
}

int cmd_watch(const ClientOptions& o, const std::string& prefix, std::uint64_t count) {
  auto c = AdminClient::connect(o.admin, o.timeout_s);
  if (!c) return fail(o, c.status());
  auto first = c->call(make_request(Op::kWatch, {prefix}));
  if (!first) return fail(o, first.status());
  if (!first->ok()) return fail_response(o, *first);
  if (!o.json) {
    std::fprintf(stderr, "rumor: watching %s (Ctrl-C to stop)\n",
                 prefix.empty() ? "every key" : ("keys under '" + prefix + "'").c_str());
  }
  std::uint64_t seen = 0;
  while (count == 0 || seen < count) {
    auto r = c->receive(-1);
    if (!r) return fail(o, r.status());
    if (!r->ok()) return fail_response(o, *r);
    const Message& m = *r;
    for (std::size_t i = 0; i < m.rows() && (count == 0 || seen < count); ++i, ++seen) {
      const bool deleted = m.at(i, 5) == "1";
      const bool local = m.at(i, 6) == "1";
      if (o.json) {
        Json j = entry_json(m, i, &deleted);
        j["local"] = local;
        print_json(j);
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
