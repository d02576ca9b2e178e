// Names and sums of the transport counters (include/rumor/transport.h).
#include "rumor/transport.h"

namespace rumor {

std::string_view drop_reason_name(DropReason reason) {
  switch (reason) {
    case DropReason::kOversized: return "oversized";
    case DropReason::kTruncated: return "truncated";
    case DropReason::kSocketOverflow: return "socket_overflow";
    case DropReason::kSendFailed: return "send_failed";
    case DropReason::kBadAddress: return "bad_address";
    case DropReason::kLoss: return "loss";
    case DropReason::kPartition: return "partition";
    case DropReason::kInboxFull: return "inbox_full";
    case DropReason::kNoRoute: return "no_route";
    case DropReason::kUplinkFull: return "uplink_full";
    case DropReason::kBadFrame: return "bad_frame";
    case DropReason::kCount: break;
  }
  return "unknown";
}

std::uint64_t TransportCounters::drops_total() const {
  std::uint64_t n = 0;
  for (std::uint64_t d : drops) n += d;
  return n;
}

}  // namespace rumor
