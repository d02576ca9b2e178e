// HyParView over UDP (engine/members/hyparview.h; docs/protocol.md "Partial views").
#include "engine/members/hyparview.h"

#include <algorithm>
#include <cmath>

#include "base/assert.h"

namespace rumor {

namespace {
// HyParView's shuffle: this node, k_a active and k_p passive peers.
constexpr std::size_t kShuffleActive = 3, kShufflePassive = 4;
static_assert(1 + kShuffleActive + kShufflePassive <= wire::kShufflePeersMax);
}  // namespace

std::uint32_t HyParView::active_size_for(std::uint64_t n) {
  const auto log = static_cast<std::uint32_t>(std::ceil(std::log2(static_cast<double>(std::max<std::uint64_t>(n, 2)))));
  return std::clamp<std::uint32_t>(log + 1, 4, 8);
}

HyParView::HyParView(const NodeConfig& config, Rng& rng, NodeCounters& counters)
    : config_(config), rng_(rng), counters_(counters) {
  self_.id = config.id;
  self_.address = config.advertise;
  active_max_ = config.active_view_max ? config.active_view_max
                                       : active_size_for(config.expected_nodes);
  passive_max_ = config.passive_view_max;
  RUMOR_ASSERT(active_max_ >= 1);
  RUMOR_ASSERT(passive_max_ >= 1);
}

void HyParView::set_seeds(std::span<const Address> seeds) {
  seeds_.clear();
  for (const Address& a : seeds) {
    if (!(a == self_.address)) seeds_.push_back(a);
  }
}

void HyParView::start(std::uint64_t now, std::span<const Address> seeds, const wire::Outbox& out) {
  started_ = true;
  set_seeds(seeds);
  // Spread the first timers so nodes started together do not probe and shuffle in lockstep.
  next_tick_ms_ = now + 1 + rng_.below(config_.probe_interval_ms);
  next_shuffle_ms_ = now + config_.shuffle_interval_ms / 2 + rng_.below(config_.shuffle_interval_ms);
  next_join_ms_ = now + 2ull * config_.probe_interval_ms;
  send_join(out);
}

template <class Encode>
void HyParView::send(const Address& to, const wire::Outbox& out, const Encode& encode) {
  wire::Packet p(out);
  if (!p.open()) return;
  encode(p.w());
  p.send(to, /*piggyback=*/false);
}

void HyParView::send_join(const wire::Outbox& out) {
  if (seeds_.empty()) return;
  const Address& seed = seeds_[rng_.below(seeds_.size())];
  send(seed, out, [](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvJoin); });
  ++counters_.joins;
}

void HyParView::leave(const wire::Outbox& out) {
  for (const Active& a : active_) {
    send(a.peer.address, out,
         [](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvDisconnect); });
  }
  while (!active_.empty()) remove_active(active_.size() - 1, false);
  passive_.clear();
  pending_.clear();
  started_ = false;
}

HyParView::Active* HyParView::find_active(NodeId id) {
  for (Active& a : active_) {
    if (a.peer.id == id) return &a;
  }
  return nullptr;
}
const HyParView::Active* HyParView::find_active(NodeId id) const {
  return const_cast<HyParView*>(this)->find_active(id);
}

std::size_t HyParView::passive_index(NodeId id) const {
  for (std::size_t i = 0; i < passive_.size(); ++i) {
    if (passive_[i].id == id) return i;
  }
  return SIZE_MAX;
}

bool HyParView::knows(NodeId id, const Address& from) const {
  if (const Active* a = find_active(id)) return a->peer.address == from;
  const std::size_t i = passive_index(id);
  return i != SIZE_MAX && passive_[i].address == from;
}

bool HyParView::random_active(wire::PeerRef* out) {
  if (active_.empty()) return false;
  *out = active_[rng_.below(active_.size())].peer;
  return true;
}

std::size_t HyParView::memory_bytes() const {
  return sizeof(*this) + active_.capacity() * sizeof(Active) +
         (passive_.capacity() + shuffled_.capacity()) * sizeof(wire::PeerRef) +
         pending_.capacity() * sizeof(Pending) + seeds_.capacity() * sizeof(Address);
}

bool HyParView::add_active(const wire::PeerRef& p, std::uint64_t now, const wire::Outbox& out) {
  if (p.id == self_.id || p.id == 0 || p.address.empty()) return false;
  if (Active* a = find_active(p.id)) {
    a->peer.address = p.address;  // a restarted peer on a new address
    a->heard_ms = now;
    return false;
  }
  if (active_.size() >= active_max_) {
    // Make room: a random peer is told (DISCONNECT) and kept as a candidate.
    const std::size_t victim = rng_.below(active_.size());
    send(active_[victim].peer.address, out,
         [](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvDisconnect); });
    remove_active(victim, /*to_passive=*/true);
  }
  remove_passive(p.id);
  std::erase_if(pending_, [&](const Pending& q) { return q.peer.id == p.id; });
  active_.push_back(Active{p, now, now});
  counters_.view_active = active_.size();
  if (link_) link_(p, true);
  return true;
}

void HyParView::remove_active(std::size_t i, bool to_passive) {
  RUMOR_ASSERT(i < active_.size());
  const wire::PeerRef p = active_[i].peer;
  active_[i] = active_.back();
  active_.pop_back();
  counters_.view_active = active_.size();
  if (to_passive) add_passive(p);
  if (link_) link_(p, false);
}

void HyParView::add_passive(const wire::PeerRef& p, std::span<const wire::PeerRef> prefer_evict) {
  if (p.id == self_.id || p.id == 0 || p.address.empty() || find_active(p.id)) return;
  const std::size_t at = passive_index(p.id);
  if (at != SIZE_MAX) {
    passive_[at].address = p.address;
    return;
  }
  if (passive_.size() >= passive_max_) {
    // Evict a peer this node just sent away in a shuffle (the other side holds it now), else a
    // random one.
    std::size_t victim = SIZE_MAX;
    for (const wire::PeerRef& e : prefer_evict) {
      victim = passive_index(e.id);
      if (victim != SIZE_MAX) break;
    }
    if (victim == SIZE_MAX) victim = rng_.below(passive_.size());
    passive_[victim] = passive_.back();
    passive_.pop_back();
  }
  passive_.push_back(p);
  counters_.view_passive = passive_.size();
}

void HyParView::remove_passive(NodeId id) {
  const std::size_t i = passive_index(id);
  if (i == SIZE_MAX) return;
  passive_[i] = passive_.back();
  passive_.pop_back();
  counters_.view_passive = passive_.size();
}

void HyParView::heard_from(NodeId sender, std::uint64_t now) {
  if (Active* a = find_active(sender)) a->heard_ms = now;
}

void HyParView::on_ping(const Address& from, NodeId sender, const wire::Ping& m,
                        const wire::Outbox& out) {
  if (m.target != self_.id) return;  // meant for a previous owner of this address
  if (!started_) return;
  if (!find_active(sender)) {
    send(from, out,
         [](wire::Writer& w) { wire::encode_flags_only(w, wire::MsgType::kHvDisconnect); });
    return;
  }
  send(from, out, [&](wire::Writer& w) { wire::encode_ack(w, m.seq); });
}

void HyParView::on_join(const Address& from, NodeId sender, std::uint64_t now,
                        const wire::Outbox& out) {
  if (!started_ || sender == self_.id) return;
  const wire::PeerRef joiner{sender, from};
  add_active(joiner, now, out);
  // The joiner adds this node when it hears that it was accepted.
  send(from, out, [](wire::Writer& w) { wire::encode_neighbor_reply(w, true); });
  const wire::ForwardJoinMsg fj{static_cast<std::uint8_t>(config_.active_walk_length), joiner};
  for (const Active& a : active_) {
    if (a.peer.id == sender) continue;
    send(a.peer.address, out, [&](wire::Writer& w) { wire::encode(w, fj); });
  }
}

void HyParView::on_forward_join(const Address& /*from*/, NodeId sender,
                                const wire::ForwardJoinMsg& m, std::uint64_t now,
                                const wire::Outbox& out) {
  if (!started_ || m.joiner.id == self_.id) return;
  // Pick the next hop before deciding: a walk that cannot go on ends here.
  std::size_t next = SIZE_MAX;
  if (m.ttl > 0 && active_.size() > 1) {
    std::size_t candidates = 0;
    for (const Active& a : active_) {
      candidates += a.peer.id != sender && a.peer.id != m.joiner.id ? 1 : 0;
    }
    if (candidates > 0) {
      std::size_t k = rng_.below(candidates);
      for (std::size_t i = 0; i < active_.size(); ++i) {
        const NodeId id = active_[i].peer.id;
        if (id == sender || id == m.joiner.id) continue;
        if (k-- == 0) {
          next = i;
          break;
        }
      }
    }
  }
  if (next == SIZE_MAX) {
    // The walk ends: the joiner becomes an active peer, told with a high-priority NEIGHBOR so
    // that it always accepts (and the link is symmetric).
    if (add_active(m.joiner, now, out)) {
      send(m.joiner.address, out, [](wire::Writer& w) { wire::encode_neighbor(w, true); });
    }
    return;
  }
  if (m.ttl == config_.passive_walk_length) add_passive(m.joiner);
  const wire::ForwardJoinMsg fwd{static_cast<std::uint8_t>(m.ttl - 1), m.joiner};
  send(active_[next].peer.address, out, [&](wire::Writer& w) { wire::encode(w, fwd); });
}

void HyParView::on_neighbor(const Address& from, NodeId sender, bool high_priority,
                            std::uint64_t now, const wire::Outbox& out) {
  if (!started_ || sender == self_.id) return;
  const bool accept =
      find_active(sender) != nullptr || high_priority || active_.size() < active_max_;
  if (accept) {
    add_active(wire::PeerRef{sender, from}, now, out);
  } else {
    add_passive(wire::PeerRef{sender, from});
  }
  send(from, out, [&](wire::Writer& w) { wire::encode_neighbor_reply(w, accept); });
}

void HyParView::on_neighbor_reply(const Address& from, NodeId sender, bool accepted,
                                  std::uint64_t now, const wire::Outbox& out) {
  if (!started_) return;
  std::erase_if(pending_, [&](const Pending& q) { return q.peer.id == sender; });
  if (accepted) {
    if (add_active(wire::PeerRef{sender, from}, now, out)) ++counters_.view_promotions;
  }
  // Rejected: it stays a passive candidate; the next tick asks another.
}

void HyParView::on_disconnect(const Address& from, NodeId sender) {
  for (std::size_t i = 0; i < active_.size(); ++i) {
    if (active_[i].peer.id == sender && active_[i].peer.address == from) {
      remove_active(i, /*to_passive=*/true);
      return;
    }
  }
}

void HyParView::sample(std::span<const wire::PeerRef> from, std::size_t k,
                       std::vector<wire::PeerRef>& into) {
  // k distinct elements by a partial Fisher-Yates over indices (views are small).
  std::size_t idx[1024];
  const std::size_t n = std::min<std::size_t>(from.size(), 1024);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  for (std::size_t i = 0; i < k && i < n; ++i) {
    const std::size_t j = i + rng_.below(n - i);
    std::swap(idx[i], idx[j]);
    into.push_back(from[idx[i]]);
  }
}

void HyParView::send_shuffle(const wire::Outbox& out) {
  if (active_.empty()) return;
  std::vector<wire::PeerRef> act;
  act.reserve(active_.size());
  for (const Active& a : active_) act.push_back(a.peer);
  wire::ShuffleMsg m;
  m.ttl = static_cast<std::uint8_t>(config_.active_walk_length);
  m.origin = self_;
  shuffled_.clear();
  shuffled_.push_back(self_);
  sample(act, kShuffleActive, shuffled_);
  sample(passive_, kShufflePassive, shuffled_);
  for (const wire::PeerRef& p : shuffled_) m.peers[m.count++] = p;
  const Address& to = active_[rng_.below(active_.size())].peer.address;
  send(to, out, [&](wire::Writer& w) { wire::encode_shuffle(w, m, false); });
  ++counters_.view_shuffles;
}

void HyParView::on_shuffle(const Address& /*from*/, NodeId sender, const wire::ShuffleMsg& m,
                           const wire::Outbox& out) {
  if (!started_ || m.origin.id == self_.id) return;
  if (m.ttl > 0 && active_.size() > 1) {
    // Walk on, to a random active peer other than the one it came from.
    std::size_t i = rng_.below(active_.size());
    if (active_[i].peer.id == sender) i = (i + 1) % active_.size();
    wire::ShuffleMsg fwd = m;
    fwd.ttl = static_cast<std::uint8_t>(m.ttl - 1);
    send(active_[i].peer.address, out, [&](wire::Writer& w) { wire::encode_shuffle(w, fwd, false); });
    return;
  }
  // The walk ends here: answer the origin with as many passive peers, then keep what came.
  std::vector<wire::PeerRef> mine;
  sample(passive_, m.count, mine);
  wire::ShuffleMsg reply;
  for (const wire::PeerRef& p : mine) reply.peers[reply.count++] = p;
  send(m.origin.address, out, [&](wire::Writer& w) { wire::encode_shuffle(w, reply, true); });
  for (const wire::PeerRef& p : m.list()) add_passive(p, mine);
}

void HyParView::on_shuffle_reply(const wire::ShuffleMsg& m) {
  if (!started_) return;
  for (const wire::PeerRef& p : m.list()) add_passive(p, shuffled_);
}

void HyParView::send_neighbor_request(std::uint64_t now, const wire::Outbox& out) {
  // A random passive peer not already asked.
  std::size_t candidates = 0;
  auto asked = [&](NodeId id) {
    return std::any_of(pending_.begin(), pending_.end(),
                       [&](const Pending& q) { return q.peer.id == id; });
  };
  for (const wire::PeerRef& p : passive_) candidates += asked(p.id) ? 0 : 1;
  if (candidates == 0) return;
  std::size_t k = rng_.below(candidates);
  for (const wire::PeerRef& p : passive_) {
    if (asked(p.id) || k-- != 0) continue;
    // High priority (always accepted) below two links: with one link a node hangs by a thread,
    // and in a formed cluster almost every view is full, so low-priority requests are refused.
    const bool high = active_.size() < 2;
    send(p.address, out, [&](wire::Writer& w) { wire::encode_neighbor(w, high); });
    pending_.push_back(Pending{p, now});
    return;
  }
}

void HyParView::tick(std::uint64_t now, const wire::Outbox& out) {
  if (!started_ || now < next_tick_ms_) return;
  next_tick_ms_ = now + config_.probe_interval_ms;
  const std::uint64_t interval = config_.probe_interval_ms;
  // Silent peers are dropped; idle links are pinged.
  for (std::size_t i = 0; i < active_.size();) {
    Active& a = active_[i];
    if (now >= a.heard_ms + interval * config_.view_failure_probes) {
      ++counters_.view_failures;
      ++counters_.probes_failed;
      remove_active(i, /*to_passive=*/false);
      continue;
    }
    // Idle for a whole interval: ping. The two ends tick at independent phases, so the first to
    // find the link idle pings, and the ping itself keeps the other end from pinging too: about
    // one ping and one ack per idle link and interval.
    if (now >= a.heard_ms + interval) {
      const wire::Ping ping{next_seq_++, a.peer.id};
      send(a.peer.address, out, [&](wire::Writer& w) { wire::encode(w, ping); });
      ++counters_.probes_sent;
      a.pinged_ms = now;
    }
    ++i;
  }
  // NEIGHBOR requests unanswered for a probe interval: that candidate is gone.
  for (std::size_t i = 0; i < pending_.size();) {
    if (now >= pending_[i].sent_ms + interval) {
      remove_passive(pending_[i].peer.id);
      pending_[i] = pending_.back();
      pending_.pop_back();
    } else {
      ++i;
    }
  }
  // Refill: one request per missing link (at most two a tick), from the passive view.
  const std::size_t want = active_max_ - std::min(active_max_, active_.size());
  for (std::size_t k = pending_.size(); k < std::min<std::size_t>(want, 2); ++k) {
    send_neighbor_request(now, out);
  }
  // Nothing left to ask: back to the seeds.
  if (active_.empty() && pending_.empty() && now >= next_join_ms_) {
    next_join_ms_ = now + 2ull * interval;
    send_join(out);
  }
  if (now >= next_shuffle_ms_) {
    next_shuffle_ms_ = now + config_.shuffle_interval_ms;
    send_shuffle(out);
  }
}

}  // namespace rumor
