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

// GCRA's parameters, and a take on one atomic word holding the time (us) at which the bucket
// would be full again: it holds (burst_us - (tat - now)) / us_per_token tokens.
struct Gcra {
  Gcra(double rate_per_s, double burst);
  bool take(std::atomic<std::uint64_t>& tat_us, double cost, std::uint64_t now_us) const;
  double us_per_token, burst_us;
};

class SharedTokenBucket {
 public:
  SharedTokenBucket(double rate_per_s, double burst) : gcra_(rate_per_s, burst) {}
  bool take(double cost, std::uint64_t now_ms) { return gcra_.take(tat_us_, cost, now_ms * 1000); }

 private:
  Gcra gcra_;
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
    std::atomic<std::uint64_t> tat_us{0};  // as Gcra's
  };
  std::vector<Slot> slots_;
  std::size_t mask_;
  Gcra gcra_;
  std::uint64_t key_;
};

class PeerLimiter {
 public:
  // `slots` is rounded up to a power of two; `key` salts the slot hash (a node's random seed),
  // so nobody can pick addresses that collide with a given peer.
  PeerLimiter(std::size_t slots, double rate_per_s, double burst, std::uint64_t key);
  bool allow(const Address& from, double cost, std::uint64_t now_ms);
  // The table's slots now: it starts at kSlotsFirst and doubles, up to `slots`, when a new
  // address finds both its places busy (most nodes hear from a few dozen peers).
  std::size_t slots() const { return slots_.size(); }

 private:
  static constexpr std::size_t kSlotsFirst = 16;
  struct Slot {
    std::uint64_t tag = 0;  // 0: free
    std::uint64_t last_ms = 0;
    double tokens = 0;
  };
  void refill(Slot& s, std::uint64_t now_ms) const;
  // An address's two places, from its tag (so that growing can recompute them).
  static std::size_t first_of(std::uint64_t tag, std::size_t mask);
  static std::size_t second_of(std::uint64_t tag, std::size_t mask);
  void grow();
  std::size_t slots_max_;
  std::vector<Slot> slots_;
  std::size_t mask_;
  double rate_, burst_;
  std::uint64_t key_;
};

}  // namespace rumor
