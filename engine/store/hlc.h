// Hybrid logical clock over an injected time source (Kulkarni et al. 2014).
//
// - now() ticks for a local write: max(last, physical) with a logical counter for ties, so it
//   never goes backward even when the wall clock does.
// - observe() folds in a remote timestamp, so a write made after seeing a remote version gets a
//   higher version, whatever the two wall clocks say.
// - A remote timestamp whose physical part is more than max_clock_skew_ms ahead of local time is
//   refused and counted: trusting it would drag every later local version into the future
//   (Cassandra's "generation a year ahead" outage).
//
// Not thread-safe: one Hlc per owner thread (versions stay unique because a key always lives on
// one shard, and the node id breaks ties across nodes).
#pragma once

#include <cstdint>

#include "base/clock.h"
#include "rumor/status.h"
#include "rumor/version.h"

namespace rumor {

class Hlc {
 public:
  struct Stats {
    std::uint64_t refused_far_future = 0;  // remote timestamps refused for skew
    std::uint64_t max_ahead_ms = 0;        // largest accepted lead of a remote over local time
    std::uint64_t backward_jumps = 0;      // local wall clock went backward
    std::uint64_t logical_overflows = 0;   // >65,535 ticks in one ms: borrowed the next ms
  };

  Hlc(TimeSource& time, std::uint64_t max_clock_skew_ms)
      : time_(time), max_skew_ms_(max_clock_skew_ms) {}

  // A fresh timestamp for a local event, strictly greater than every earlier one.
  std::uint64_t now();
  // Folds a remote timestamp in; refused (Code::kClockSkew) when too far ahead.
  Status observe(std::uint64_t remote_hlc);
  // A timestamp this clock (or this node before a restart) already issued or saw, read back
  // from a durable backend: the clock moves past it whatever the skew bound says.
  void restore(std::uint64_t high_water) {
    if (high_water > last_) last_ = high_water;
  }
  // Would observe() accept this timestamp? (Does not change the clock.)
  Status check(std::uint64_t remote_hlc);

  std::uint64_t last() const { return last_; }
  std::uint64_t max_clock_skew_ms() const { return max_skew_ms_; }
  const Stats& stats() const { return stats_; }
  TimeSource& time() { return time_; }

 private:
  std::uint64_t read_physical();
  std::uint64_t advance_to(std::uint64_t candidate);

  TimeSource& time_;
  std::uint64_t max_skew_ms_;
  std::uint64_t last_ = 0;
  std::uint64_t last_wall_ms_ = 0;
  Stats stats_;
};

}  // namespace rumor
