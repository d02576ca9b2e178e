// What a node is handed instead of reaching the OS (sans-I/O, docs/architecture.md): the
// time, randomness for nonces, and the identity of the calling thread. Under the reactor these
// are the system's (base/clock.h, base/entropy.h); in the simulator they are virtual and seeded,
// so a run replays from its seed; tests hand in skewed or backward-jumping clocks.
//
// Thread-safety: a TimeSource is called from the driver threads of the node's cores; an
// EntropySource from the home core's driver thread; a ThreadIdentity from any thread (it is
// what tells a writer thread from a driver thread). Implementations must allow that.
#pragma once

// The public headers use C++20 (std::span, operator<=>): say so before anything else fails.
#if !defined(__cplusplus) || __cplusplus < 202002L
#error "rumor needs C++20 or later: compile with -std=c++20 (CMake: rumor::rumor sets cxx_std_20)"
#endif

#include <cstddef>
#include <cstdint>
#include <span>

namespace rumor {

// Milliseconds since the Unix epoch (wall clock) for HLC physical time and protocol timers.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual std::uint64_t now_ms() = 0;
};

// Unpredictable bytes (the per-start salt of packet nonces). The simulator's is seeded.
class EntropySource {
 public:
  virtual ~EntropySource() = default;
  virtual void fill(std::span<std::byte> out) = 0;
};

// A token for the calling thread, never 0, distinct between live threads. A write from the
// driver thread of its key's core applies at once; from any other thread it is queued.
class ThreadIdentity {
 public:
  virtual ~ThreadIdentity() = default;
  virtual std::uint64_t current() = 0;
};

// Everything a node is handed. Null members take the system's (base/entropy.h).
struct NodeEnvironment {
  TimeSource& time;
  EntropySource* entropy = nullptr;
  ThreadIdentity* threads = nullptr;
};

}  // namespace rumor
