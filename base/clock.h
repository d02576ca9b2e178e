// Time, the one place it enters rumor. The protocol and the store never read a clock: they take
// a `TimeSource` (or a plain millisecond value) handed in by whoever drives them. The reactor
// hands in the system clock below; the simulator hands in virtual time; tests hand in whatever
// skewed or backward-jumping clock they need. `std::chrono::*::now()` appears only in clock.cc.
#pragma once

#include <cstdint>

#include "rumor/time_source.h"

namespace rumor {

// The real wall clock.
class SystemTimeSource final : public TimeSource {
 public:
  std::uint64_t now_ms() override;
};

// Monotonic nanoseconds for measuring intervals in tools (never for versions).
std::uint64_t monotonic_ns();

// CPU time the calling thread has used, in nanoseconds (user and system, the kernel work it does
// in its own system calls included), for tools that report CPU per operation.
std::uint64_t thread_cpu_ns();

// A manual clock for tests and the simulator.
class ManualTimeSource final : public TimeSource {
 public:
  explicit ManualTimeSource(std::uint64_t start_ms = 0) : now_(start_ms) {}
  std::uint64_t now_ms() override { return now_; }
  void set(std::uint64_t ms) { now_ = ms; }
  void advance(std::uint64_t ms) { now_ += ms; }

 private:
  std::uint64_t now_;
};

}  // namespace rumor
