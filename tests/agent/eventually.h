// Waiting in the in-process agent tests: poll until a condition holds or a deadline passes.
// Nothing sleeps to synchronise. (The multi-process harness, process_harness.h, has its own,
// slower poll: each of its predicates runs a `rumor` process.)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "base/clock.h"

namespace rumor::testing {

// Polls pred every millisecond until it holds or `seconds` pass. Returns whether it held.
template <typename Pred>
bool eventually(Pred pred, double seconds = 20) {
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
  while (monotonic_ns() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// Runs f on the reactor's core 0 thread (where the keyring calls and counters belong) and
// waits for it. False when it could not be posted or did not run in time.
template <typename Reactor, typename F>
bool run_on_core0(Reactor& reactor, F f, double seconds = 60) {
  std::atomic<bool> done{false};
  if (!reactor.post([&] {
        f();
        done.store(true, std::memory_order_release);
      })) {
    return false;
  }
  return eventually([&] { return done.load(std::memory_order_acquire); }, seconds);
}

}  // namespace rumor::testing
