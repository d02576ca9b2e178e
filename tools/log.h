// Structured logs for the agent: one logfmt line per event on stderr,
//   2026-11-25T10:11:12.345Z info listening gossip=127.0.0.1:7946 backend=uring
// Each line is formatted first and written with one write(2), so lines from different threads
// never interleave (a write of less than PIPE_BUF bytes to a pipe is atomic) and no lock is
// taken. The level is an atomic read relaxed: a statistic-like setting that orders nothing.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <optional>
#include <string>
#include <string_view>

namespace rumor::tools {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::optional<LogLevel> parse_log_level(std::string_view s);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view msg, std::string_view fields);

// A logfmt value: bare when it needs no quoting, else quoted with escapes.
std::string logfmt_value(std::string_view v);

template <typename... Args>
void log(LogLevel level, std::string_view msg, fmt::format_string<Args...> fields,
         Args&&... args) {
  if (!log_enabled(level)) return;
  log_line(level, msg, fmt::format(fields, std::forward<Args>(args)...));
}

}  // namespace rumor::tools
