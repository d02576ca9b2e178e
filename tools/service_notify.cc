#include "tools/service_notify.h"

#include <systemd/sd-daemon.h>

#include <cstring>
#include <string>

#include "tools/log.h"

namespace rumor::tools {
namespace {

// A STATUS= value is one line: the manager shows it in `systemctl status`.
std::string one_line(std::string_view status) {
  std::string s(status);
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

void send(std::string_view what, const std::string& state) {
  // unset_environment = 0: later notifications (STATUS, STOPPING) need $NOTIFY_SOCKET too.
  const int rc = sd_notify(0, state.c_str());
  if (rc < 0) {
    // The main thread is the only caller (header): strerror's buffer is not shared.
    log(LogLevel::kWarn, "cannot notify the service manager", "what={} error={}", what,
        logfmt_value(std::strerror(-rc)));  // NOLINT(concurrency-mt-unsafe)
  }
}

}  // namespace

void notify_ready(std::string_view status) { send("READY", "READY=1\nSTATUS=" + one_line(status)); }

void notify_status(std::string_view status) { send("STATUS", "STATUS=" + one_line(status)); }

void notify_stopping(std::string_view status) {
  send("STOPPING", "STOPPING=1\nSTATUS=" + one_line(status));
}

}  // namespace rumor::tools
