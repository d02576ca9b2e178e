// The systemd readiness protocol (sd_notify(3), through libsystemd) for `rumor agent` run by a
// `Type=notify` unit (dist/systemd/rumor.service; the contract is in docs/agent.md, "Running
// under systemd"): READY=1 once the gossip socket is bound and the admin server accepts
// connections, STATUS= lines while it joins, STOPPING=1 when a signal starts the shutdown.
//
// Without $NOTIFY_SOCKET (not started by a service manager) every call does nothing. A failure to
// reach the manager is logged, never fatal: the manager then times the start out itself.
//
// Thread-safety: call from the agent's main thread (sd_notify reads the environment).
#pragma once

#include <string_view>

namespace rumor::tools {

void notify_ready(std::string_view status);
void notify_status(std::string_view status);
void notify_stopping(std::string_view status);

}  // namespace rumor::tools
