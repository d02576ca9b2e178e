// One list of metrics, two renderings: Prometheus text format (GET /metrics) and the rows of
// `rumor stats`. docs/agent.md "Metrics" lists them.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tools/agent.h"

namespace rumor::tools {

struct Metric {
  std::string name;    // rumor_packets_sent_total
  std::string labels;  // reason="bad_magic" (without braces), or empty
  std::string type;    // counter | gauge
  std::string help;
  double value = 0;
};

struct AgentInfo {
  std::string name, backend, version;
};

std::vector<Metric> collect_metrics(const Snapshot& s);
std::string render_prometheus(const Snapshot& s, const AgentInfo& info);
// name{labels} value, for `rumor stats`.
std::vector<std::pair<std::string, std::string>> stats_rows(const Snapshot& s);

}  // namespace rumor::tools
