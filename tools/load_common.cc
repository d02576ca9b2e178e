#include "tools/load_common.h"

#include <sys/resource.h>

#include "tools/load.h"

namespace rumor::tools {

bool holds_all(const Node& n, const std::vector<std::pair<std::string, std::string>>& kv) {
  for (const auto& [key, value] : kv) {
    auto v = n.get(key);
    if (!v || *v != value) return false;
  }
  return true;
}

NodeConfig preset_config(const std::string& preset) {
  if (preset == "lan") return NodeConfig::lan();
  if (preset == "wan") return NodeConfig::wan();
  return NodeConfig::local();
}

std::uint64_t peak_rss_bytes() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

void FalsePositives::watch(std::size_t observer, Node& n) {
  n.on_membership([this, observer](const MembershipEvent& e) { on_event(observer, e); });
}

void FalsePositives::set_up(std::size_t i, bool up, std::uint64_t now_ms) {
  up_[i] = up;
  if (up) since_ms_[i] = now_ms;
}

void FalsePositives::on_event(std::size_t observer, const MembershipEvent& e) {
  const bool suspect = e.member.state == MemberState::kSuspect;
  if (!suspect && e.member.state != MemberState::kDead) return;
  auto it = index_.find(e.member.id);
  if (it == index_.end()) return;
  const std::size_t subject = it->second;
  const std::pair<NodeId, std::uint64_t> key{e.member.id, e.member.incarnation};
  const bool cut = partition_at_ != 0 && (observer < partition_at_) != (subject < partition_at_);
  // Down, cut off, or an incarnation of a previous process: a real detection.
  if (!up_[subject] || cut || e.member.incarnation < since_ms_[subject]) {
    real_.insert(key);
    return;
  }
  if (real_.count(key)) return;  // the same detection, reaching this view later
  (suspect ? false_suspect_ : false_dead_).insert(key);
}

}  // namespace rumor::tools
