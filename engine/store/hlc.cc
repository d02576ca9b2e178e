#include "engine/store/hlc.h"

#include <string>

namespace rumor {

std::uint64_t Hlc::read_physical() {
  const std::uint64_t wall = time_.now_ms();
  if (wall < last_wall_ms_) ++stats_.backward_jumps;
  last_wall_ms_ = wall;
  return wall;
}

std::uint64_t Hlc::advance_to(std::uint64_t candidate) {
  // The result is strictly above last_. When ticking last_ carries out of the logical bits, the
  // clock borrows the next millisecond: still monotonic, counted so it can be seen.
  if (candidate <= last_) {
    if (hlc_logical(last_) == kHlcLogicalMask) ++stats_.logical_overflows;
    candidate = last_ + 1;
  }
  last_ = candidate;
  return candidate;
}

std::uint64_t Hlc::now() {
  const std::uint64_t pt = read_physical();
  // hlc_pack(pt, 0) > last_ when the wall clock moved on; otherwise tick the logical counter.
  return advance_to(hlc_pack(pt, 0));
}

Status Hlc::check(std::uint64_t remote_hlc) {
  const std::uint64_t pt = time_.now_ms();
  const std::uint64_t remote_pt = hlc_physical_ms(remote_hlc);
  if (remote_pt > pt && remote_pt - pt > max_skew_ms_) {
    return Status::error(Code::kClockSkew,
                         "remote version is " + std::to_string(remote_pt - pt) +
                             " ms ahead of local time, max_clock_skew_ms is " +
                             std::to_string(max_skew_ms_));
  }
  return Status::ok();
}

Status Hlc::observe(std::uint64_t remote_hlc) {
  const std::uint64_t pt = read_physical();
  const std::uint64_t remote_pt = hlc_physical_ms(remote_hlc);
  if (remote_pt > pt) {
    const std::uint64_t ahead = remote_pt - pt;
    if (ahead > max_skew_ms_) {
      ++stats_.refused_far_future;
      return Status::error(Code::kClockSkew,
                           "remote version is " + std::to_string(ahead) +
                               " ms ahead of local time, max_clock_skew_ms is " +
                               std::to_string(max_skew_ms_));
    }
    if (ahead > stats_.max_ahead_ms) stats_.max_ahead_ms = ahead;
  }
  // The HLC receive rule: new = max(last, remote, physical), ticking the logical part on ties.
  std::uint64_t candidate = hlc_pack(pt, 0);
  if (remote_hlc >= candidate) candidate = remote_hlc + 1;
  advance_to(candidate);
  return Status::ok();
}

}  // namespace rumor
