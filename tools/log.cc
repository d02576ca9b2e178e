#include "tools/log.h"

#include <spdlog/details/null_mutex.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

namespace rumor::tools {

namespace {

std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};  // relaxed: a setting

std::string_view level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

spdlog::level::level_enum to_spdlog(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

LogLevel from_spdlog(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LogLevel::kDebug;
    case spdlog::level::info: return LogLevel::kInfo;
    case spdlog::level::warn: return LogLevel::kWarn;
    default: return LogLevel::kError;
  }
}

// The event travels through spdlog as "msg<US>fields": a unit separator cannot occur in either
// (messages are literals; logfmt_value escapes control characters).
constexpr char kSeparator = '\x1f';

std::string rfc3339_ms(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

// Formats each event itself and writes it to stderr with one write(2); no mutex (see log.h).
class StderrLineSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    const std::string_view payload(m.payload.data(), m.payload.size());
    const std::size_t sep = payload.find(kSeparator);
    const std::string_view msg = payload.substr(0, sep);
    const std::string_view fields =
        sep == std::string_view::npos ? std::string_view() : payload.substr(sep + 1);
    std::string line = format_log_line(static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)),
                                       rfc3339_ms(m.time), from_spdlog(m.level), msg, fields);
    line.push_back('\n');
    std::string_view rest = line;  // a short write to a terminal or pipe is retried
    while (!rest.empty()) {
      const ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
      if (n <= 0) break;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void flush_() override {}
};

spdlog::logger& logger() {
  // Built on first use, before the agent starts any thread; never destroyed (logging from a
  // static destructor stays safe).
  static spdlog::logger* l = [] {
    auto* lg = new spdlog::logger("rumor", std::make_shared<StderrLineSink>());
    lg->set_level(spdlog::level::info);
    return lg;
  }();
  return *l;
}

void append_quoted(std::string& out, std::string_view v) {
  out.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn" || s == "warning") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return std::nullopt;
}

std::optional<LogFormat> parse_log_format(std::string_view s) {
  if (s == "text" || s == "logfmt") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  return std::nullopt;
}

void set_log_level(LogLevel level) { logger().set_level(to_spdlog(level)); }

void set_log_format(LogFormat format) {
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

bool log_enabled(LogLevel level) { return logger().should_log(to_spdlog(level)); }

std::string logfmt_value(std::string_view v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) <= 0x20 ||
        c == 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) return std::string(v);
  std::string out;
  append_quoted(out, v);
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_logfmt(
    std::string_view s) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t eq = s.find('=', i);
    if (eq == std::string_view::npos || eq == i) return std::nullopt;
    std::string key(s.substr(i, eq - i));
    if (key.find_first_of(" \"") != std::string::npos) return std::nullopt;
    i = eq + 1;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      for (;;) {
        if (i >= s.size()) return std::nullopt;
        const char c = s[i++];
        if (c == '"') break;
        if (c != '\\') {
          value.push_back(c);
          continue;
        }
        if (i >= s.size()) return std::nullopt;
        const char e = s[i++];
        if (e == 'n') {
          value.push_back('\n');
        } else if (e == 'r') {
          value.push_back('\r');
        } else if (e == 't') {
          value.push_back('\t');
        } else if (e == 'u' && i + 4 <= s.size()) {
          value.push_back(static_cast<char>(std::stoul(std::string(s.substr(i, 4)), nullptr, 16)));
          i += 4;
        } else {
          value.push_back(e);
        }
      }
    } else {
      const std::size_t end = s.find(' ', i);
      value = std::string(s.substr(i, end == std::string_view::npos ? s.size() - i : end - i));
      i = end == std::string_view::npos ? s.size() : end;
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

std::string format_log_line(LogFormat format, std::string_view time, LogLevel level,
                            std::string_view msg, std::string_view fields) {
  if (format == LogFormat::kText) {
    std::string line = fmt::format("time={} level={} msg={}", time, level_name(level),
                                   logfmt_value(msg));
    if (!fields.empty()) {
      line.push_back(' ');
      line.append(fields);
    }
    return line;
  }
  nlohmann::ordered_json j;
  j["time"] = time;
  j["level"] = level_name(level);
  j["msg"] = msg;
  if (auto pairs = parse_logfmt(fields)) {
    for (auto& [k, v] : *pairs) {
      if (k == "time" || k == "level" || k == "msg") k = "field." + k;
      // Whole numbers and booleans as JSON's own; the rest as strings.
      const bool digits = !v.empty() && v.size() < 19 && (v[0] != '0' || v.size() == 1) &&
                          v.find_first_not_of("0123456789") == std::string::npos;
      if (digits) {
        j[k] = std::stoull(v);
      } else if (v == "true" || v == "false") {
        j[k] = v == "true";
      } else {
        j[k] = v;
      }
    }
  } else {
    j["fields"] = fields;  // never expected: our call sites write logfmt
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void log_line(LogLevel level, std::string_view msg, std::string_view fields) {
  std::string payload(msg);
  payload.push_back(kSeparator);
  payload.append(fields);
  logger().log(to_spdlog(level), std::string_view(payload));
}

}  // namespace rumor::tools
