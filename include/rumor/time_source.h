// The time a node runs on, handed in by whoever drives it (sans-I/O): the system clock under
// the reactor, virtual time in the simulator, skewed or backward-jumping clocks in tests.
#pragma once

#include <cstdint>

namespace rumor {

// Milliseconds since the Unix epoch (wall clock) for HLC physical time and protocol timers.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual std::uint64_t now_ms() = 0;
};

}  // namespace rumor
