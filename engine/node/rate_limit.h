// Rate limits against hostile or runaway peers (docs/security.md "Hostile input").
//
// TokenBucket: `rate` units per second, up to `burst` banked. PeerLimiter: one bucket per source
// address in a fixed table, so a flood from any number of (spoofed) addresses never grows
// memory: an address takes one of two slots picked by a keyed hash; a slot idle for a second is
// taken over, otherwise a newcomer shares the fuller slot's bucket (so a spray of addresses
// ends up rate-limited together instead of each getting a fresh burst).
//
// SharedTokenBucket and SharedPeerLimiter: the same limits for every core of a node together,
// lock-free. Each bucket is one atomic word (GCRA: the "theoretical arrival time", at which the
// bucket would be full again), so takes from several cores add up exactly.
//
// Thread-safety: TokenBucket and PeerLimiter none (one per core's driver thread); the Shared
// ones any thread. Sans-I/O: the time is handed in.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rumor/transport.h"

namespace rumor {

class TokenBucket {
 public:
  TokenBucket(double rate_per_s, double burst) : rate_(rate_per_s), burst_(burst), tokens_(burst) {}
  // Takes `cost` tokens if there are that many.
  bool take(double cost, std::uint64_t now_ms);

 private:
  double rate_, burst_, tokens_;
  std::uint64_t last_ms_ = 0;
};

class SharedTokenBucket {
 public:
  SharedTokenBucket(double rate_per_s, double burst);
  bool take(double cost, std::uint64_t now_ms);

 private:
  double us_per_token_, burst_us_;
  // The "theoretical arrival time" in microseconds: the bucket holds (burst_us_ - (tat - now))
  // / us_per_token_ tokens; taking `cost` moves it cost * us_per_token_ later.
  std::atomic<std::uint64_t> tat_us_{0};
};

// A PeerLimiter whose slots every core shares (same slot choice and takeover rule).
class SharedPeerLimiter {
 public:
  SharedPeerLimiter(std::size_t slots, double rate_per_s, double burst, std::uint64_t key);
  bool allow(const Address& from, double cost, std::uint64_t now_ms);

 private:
  struct Slot {
    std::atomic<std::uint64_t> tag{0};     // 0: free
    std::atomic<std::uint64_t> tat_us{0};  // as SharedTokenBucket's
  };
  bool take(Slot& s, double cost, std::uint64_t now_us) const;
  std::vector<Slot> slots_;
  std::size_t mask_;
  double us_per_token_, burst_us_;
  std::uint64_t key_;
};

class PeerLimiter {
 public:
  // `slots` is rounded up to a power of two; `key` salts the slot hash (a node's random seed),
  // so nobody can pick addresses that collide with a given peer.
  PeerLimiter(std::size_t slots, double rate_per_s, double burst, std::uint64_t key);
  bool allow(const Address& from, double cost, std::uint64_t now_ms);
  std::size_t slots() const { return slots_.size(); }

 private:
  struct Slot {
    std::uint64_t tag = 0;  // 0: free
    std::uint64_t last_ms = 0;
    double tokens = 0;
  };
  void refill(Slot& s, std::uint64_t now_ms) const;
  std::vector<Slot> slots_;
  std::size_t mask_;
  double rate_, burst_;
  std::uint64_t key_;
};

}  // namespace rumor
