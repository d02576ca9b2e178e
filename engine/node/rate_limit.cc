#include "engine/node/rate_limit.h"

#include <algorithm>
#include <bit>

#include "base/assert.h"

namespace rumor {

namespace {
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// Idle this long, a slot goes to whichever address needs one.
constexpr std::uint64_t kSlotIdleMs = 1000;
}  // namespace

bool TokenBucket::take(double cost, std::uint64_t now_ms) {
  if (now_ms > last_ms_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
    last_ms_ = now_ms;
  }
  if (tokens_ < cost) return false;
  tokens_ -= cost;
  return true;
}

Gcra::Gcra(double rate_per_s, double burst)
    : us_per_token(1e6 / rate_per_s), burst_us(burst * 1e6 / rate_per_s) {
  RUMOR_ASSERT(rate_per_s > 0);
  RUMOR_ASSERT(burst > 0);
}

bool Gcra::take(std::atomic<std::uint64_t>& tat_us, double cost, std::uint64_t now_us) const {
  // Refused when taking would put the bucket below empty.
  const auto step = static_cast<std::uint64_t>(cost * us_per_token);
  std::uint64_t tat = tat_us.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t next = std::max(tat, now_us) + step;
    if (static_cast<double>(next - now_us) > burst_us) return false;
    // Relaxed: the word orders nothing else; the CAS alone makes takes add up exactly.
    if (tat_us.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
}

SharedPeerLimiter::SharedPeerLimiter(std::size_t slots, double rate_per_s, double burst,
                                     std::uint64_t key)
    : slots_(std::bit_ceil(std::max<std::size_t>(slots, 2))),
      mask_(slots_.size() - 1),
      gcra_(rate_per_s, burst),
      key_(key) {}

bool SharedPeerLimiter::allow(const Address& from, double cost, std::uint64_t now_ms) {
  const std::uint64_t now_us = now_ms * 1000;
  const std::uint64_t h = mix(from.hash() ^ key_);
  const std::uint64_t tag = h | 1;
  Slot& a = slots_[h & mask_];
  Slot& b = slots_[mix(h) & mask_];
  if (a.tag.load(std::memory_order_relaxed) == tag) return gcra_.take(a.tat_us, cost, now_us);
  if (b.tag.load(std::memory_order_relaxed) == tag) return gcra_.take(b.tat_us, cost, now_us);
  // A new address: a free slot, or one idle for kSlotIdleMs past full, is taken over with a full
  // bucket; two cores racing for it are decided by the tag's CAS (the loser shares it).
  const std::uint64_t ta = a.tat_us.load(std::memory_order_relaxed);
  const std::uint64_t tb = b.tat_us.load(std::memory_order_relaxed);
  Slot& idle = ta <= tb ? a : b;
  std::uint64_t old = idle.tag.load(std::memory_order_relaxed);
  if ((old == 0 || std::min(ta, tb) + kSlotIdleMs * 1000 <= now_us) &&
      idle.tag.compare_exchange_strong(old, tag, std::memory_order_relaxed)) {
    idle.tat_us.store(now_us, std::memory_order_relaxed);  // full
  }
  // Otherwise (both busy) the slot with more tokens is shared, as PeerLimiter does.
  return gcra_.take(idle.tat_us, cost, now_us);
}

PeerLimiter::PeerLimiter(std::size_t slots, double rate_per_s, double burst, std::uint64_t key)
    : slots_max_(std::bit_ceil(std::max<std::size_t>(slots, 2))),
      slots_(std::min(slots_max_, kSlotsFirst)),
      mask_(slots_.size() - 1),
      rate_(rate_per_s),
      burst_(burst),
      key_(key) {
  RUMOR_ASSERT(rate_per_s > 0);
  RUMOR_ASSERT(burst > 0);
}

std::size_t PeerLimiter::first_of(std::uint64_t tag, std::size_t mask) {
  return static_cast<std::size_t>(tag >> 1) & mask;
}
std::size_t PeerLimiter::second_of(std::uint64_t tag, std::size_t mask) {
  return static_cast<std::size_t>(mix(tag)) & mask;
}

void PeerLimiter::grow() {
  // Doubling: a slot's two places in the new table are its old ones or those plus the old size,
  // so an address keeps the choice (first or second) it had and lands at its old index or that
  // plus the old size. Two addresses held distinct old indexes, so they never collide: every
  // bucket keeps its state, and a spray gets no more fresh bursts than the final table has slots.
  const std::size_t old_mask = mask_;
  std::vector<Slot> next(slots_.size() * 2);
  const std::size_t mask = next.size() - 1;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.tag == 0) continue;
    const std::size_t at =
        first_of(s.tag, old_mask) == i ? first_of(s.tag, mask) : second_of(s.tag, mask);
    RUMOR_ASSERT((at & old_mask) == i);
    next[at] = s;
  }
  slots_ = std::move(next);
  mask_ = mask;
}

void PeerLimiter::refill(Slot& s, std::uint64_t now_ms) const {
  if (now_ms > s.last_ms) {
    s.tokens =
        std::min(burst_, s.tokens + rate_ * static_cast<double>(now_ms - s.last_ms) / 1000.0);
    s.last_ms = now_ms;
  }
}

bool PeerLimiter::allow(const Address& from, double cost, std::uint64_t now_ms) {
  const std::uint64_t tag = mix(from.hash() ^ key_) | 1;  // never 0 (free)
  Slot* a = &slots_[first_of(tag, mask_)];
  Slot* b = &slots_[second_of(tag, mask_)];
  Slot* s = nullptr;
  if (a->tag == tag) {
    s = a;
  } else if (b->tag == tag) {
    s = b;
  } else {
    // A new address: a free or idle slot (the idler of the two), full bucket. When both are
    // busy, a table below its size limit doubles first (addresses cannot be in it yet: it
    // held neither place, and growing keeps every address at one of its places).
    auto idler = [&] { return a->last_ms <= b->last_ms ? a : b; };
    auto takeable = [&](const Slot* x) {
      return x->tag == 0 || now_ms >= x->last_ms + kSlotIdleMs;
    };
    if (!takeable(idler()) && slots_.size() < slots_max_) {
      grow();
      a = &slots_[first_of(tag, mask_)];
      b = &slots_[second_of(tag, mask_)];
    }
    Slot* idle = idler();
    if (takeable(idle)) {
      idle->tag = tag;
      idle->tokens = burst_;
      idle->last_ms = now_ms;
      s = idle;
    } else {
      // Both busy at full size: share the bucket with more tokens, without taking it over.
      s = a->tokens >= b->tokens ? a : b;
    }
  }
  refill(*s, now_ms);
  if (s->tokens < cost) return false;
  s->tokens -= cost;
  return true;
}

}  // namespace rumor
