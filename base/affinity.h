// Pinning a thread to one CPU: rumor's reactors (one per core) and the benchmarks that stand in
// for them.
#pragma once

#include <cstdint>
#include <string>

namespace rumor {

struct PinResult {
  bool pinned = false;
  std::string note;  // for the log: "pinned to CPU 3", "not pinned: sched_setaffinity: ..."
};

// Pins the calling thread to `cpu`, or (cpu < 0) to the nth CPU this thread may run on (wrapping
// when there are fewer CPUs than n). Never fails hard: EPERM (a restricted container) or EINVAL
// (a cpuset changed under us) leave the thread unpinned, and the note says why.
PinResult pin_current_thread(int cpu, std::uint32_t nth);

}  // namespace rumor
