// Rate limits against hostile or runaway peers (docs/security.md "Hostile input").
//
// TokenBucket: `rate` units per second, up to `burst` banked. PeerLimiter: one bucket per source
// address in a fixed table, so a flood from any number of (spoofed) addresses never grows
// memory: an address takes one of two slots picked by a keyed hash; a slot idle for a second is
// taken over, otherwise a newcomer shares the fuller slot's bucket (so a spray of addresses
// ends up rate-limited together instead of each getting a fresh burst).
//
// Thread-safety: none; one per node driver thread. Sans-I/O: the time is handed in.
#pragma once

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
