#include "tools/load.h"
namespace rumor::tools {
Result<std::unique_ptr<LoadCluster>> make_udp_cluster(const LoadOptions&) {
  return Status::error(Code::kUnavailable, "udp mode: not yet");
}
}  // namespace rumor::tools
