// Structured logs for the agent, through spdlog: one line per event on stderr, strict logfmt
//   time=2026-11-25T10:11:12.345Z level=info msg=listening gossip=127.0.0.1:7946 backend=uring
// or with --log-format json one object per line
//   {"time":"2026-11-25T10:11:12.345Z","level":"info","msg":"listening","gossip":"127.0.0.1:7946",...}
// Call sites give the message and logfmt fields (`k={} k={}`, values through logfmt_value); the
// JSON form is built from the same fields. spdlog filters by level and hands each event to one
// sink that formats it and writes it with one write(2): lines from different threads never
// interleave (a write of less than PIPE_BUF bytes to a pipe is atomic) and no lock is taken.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rumor::tools {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat : int { kText = 0, kJson = 1 };

std::optional<LogLevel> parse_log_level(std::string_view s);
std::optional<LogFormat> parse_log_format(std::string_view s);
void set_log_level(LogLevel level);
void set_log_format(LogFormat format);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view msg, std::string_view fields);

// A logfmt value: bare when it needs no quoting, else quoted with Go-style escapes.
std::string logfmt_value(std::string_view v);
// Splits `k=v k="quoted \"v\""` into pairs, unquoting; nullopt when it is not logfmt.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_logfmt(
    std::string_view fields);
// The whole line, without the newline (exposed for tests).
std::string format_log_line(LogFormat format, std::string_view time, LogLevel level,
                            std::string_view msg, std::string_view fields);

template <typename... Args>
void log(LogLevel level, std::string_view msg, fmt::format_string<Args...> fields,
         Args&&... args) {
  if (!log_enabled(level)) return;
  log_line(level, msg, fmt::format(fields, std::forward<Args>(args)...));
}

}  // namespace rumor::tools
