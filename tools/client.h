// The `rumor` client commands: each connects to an agent's admin address, sends one request
// (tools/admin_protocol.h) and prints the answer for people, or as JSON with --json.
// Exit status: 0 success, 1 an operating error (no agent, key not found, value too large...),
// 2 a usage error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rumor/status.h"
#include "tools/admin_protocol.h"

namespace rumor::tools {

struct ClientOptions {
  std::string admin = "127.0.0.1:7373";  // or $RUMOR_ADMIN
  bool json = false;
  double timeout_s = 5;
};

// A blocking connection with a deadline per call.
class AdminClient {
 public:
  static Result<AdminClient> connect(const std::string& admin, double timeout_s);
  AdminClient(AdminClient&& o) noexcept;
  AdminClient& operator=(AdminClient&&) = delete;
  ~AdminClient();
  Status send(const Message& request);
  // Waits for one response; timeout_s < 0 waits forever (watch).
  Result<Message> receive(double timeout_s);
  Result<Message> call(const Message& request);

 private:
  AdminClient(int fd, std::string admin, double timeout_s)
      : fd_(fd), admin_(std::move(admin)), timeout_s_(timeout_s) {}
  int fd_ = -1;
  std::string admin_;
  double timeout_s_;
  std::string in_;
};

// raw: the value's bytes only, without the newline (binary values, `> FILE`).
int cmd_get(const ClientOptions& o, const std::string& key, bool verbose, bool raw = false);
// VALUE as given, or read from standard input (`-`) or a file (`@FILE`), at most
// kValueBytesLimit bytes.
Result<std::string> read_value_arg(const std::string& arg);
int cmd_set(const ClientOptions& o, const std::string& key, const std::string& value_arg);
int cmd_del(const ClientOptions& o, const std::string& key);
int cmd_keys(const ClientOptions& o, const std::string& prefix, std::size_t limit);
struct MembersFilter {
  std::vector<std::string> tags;  // KEY=VALUE, all must hold
  std::string status;             // empty: any
  bool detailed = false;
};
int cmd_members(const ClientOptions& o, const MembersFilter& filter);
int cmd_tags(const ClientOptions& o, const std::string& action,
             const std::vector<std::string>& args);
// Resolves names here (the agent is on this machine: admin is loopback-only) and asks the agent
// to join through every address; waits up to --timeout for new members to appear.
int cmd_join(const ClientOptions& o, const std::vector<std::string>& addresses);
int cmd_leave(const ClientOptions& o);
int cmd_reload(const ClientOptions& o);
// `rumor keys install|use|remove|list|mode`: the agent's keyring (docs/security.md).
int cmd_keyring(const ClientOptions& o, const std::string& action, const std::string& argument);
int cmd_stats(const ClientOptions& o, const std::string& filter);
int cmd_info(const ClientOptions& o);
// Streams changes under prefix; stops after `count` changes when count > 0.
int cmd_watch(const ClientOptions& o, const std::string& prefix, std::uint64_t count);

// JSON helpers. Bytes that are not UTF-8 print as base64 (docs/agent.md "JSON output").
bool is_utf8(std::string_view s);
std::string base64_encode(std::string_view s);
// s as JSON carries it: itself when it is UTF-8, else its base64.
std::string text_or_base64(std::string_view s);
// A Prometheus series name as `rumor stats` lists it: name{label="value",...}.
struct Series {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
};
std::optional<Series> parse_series(std::string_view s);
// "2026-11-25T10:11:12.345Z+3" for an HLC timestamp.
std::string format_hlc(std::uint64_t hlc);

}  // namespace rumor::tools
