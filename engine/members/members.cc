#include "engine/members/members.h"

#include <algorithm>
#include <cmath>

#include "base/assert.h"

namespace rumor {

namespace {
wire::WireState to_wire(MemberState s) { return static_cast<wire::WireState>(s); }
MemberState from_wire(wire::WireState s) { return static_cast<MemberState>(s); }
bool is_live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// Incarnations above this are refused (see apply): 2^62 leaves room for 2^61 refutations above
// any millisecond start time.
constexpr std::uint64_t kIncarnationMax = std::uint64_t{1} << 62;
}  // namespace

Members::Members(const NodeConfig& config, TimeSource& time, Rng& rng, NodeCounters& counters,
                 Gossip& gossip)
    : config_(config), time_(time), rng_(rng), counters_(counters), gossip_(gossip) {
  names_ = std::make_shared<MemberNames>();
  Rec self;
  self.id = config_.id;
  self.text = names_->intern(config_.name, config_.metadata);
  self.address = config_.advertise;
  members_.push_back(std::move(self));
  index_put(config_.id, 0);
}

Members::~Members() {
  for (const Rec& m : members_) names_->release(m.text);
}

void Members::share_names(std::shared_ptr<MemberNames> names) {
  RUMOR_ASSERT(!started_);
  for (Rec& m : members_) {
    const MemberNames::Handle h = names->intern(name_of(m), metadata_of(m));
    names_->release(m.text);
    m.text = h;
  }
  names_ = std::move(names);
}

Members::Rec* Members::find(NodeId id) {
  const std::uint32_t pos = index_.find(id, [this](std::uint32_t p) { return members_[p].id; });
  return pos == IdIndex::kNone ? nullptr : &members_[pos];
}

const Members::Rec* Members::find(NodeId id) const {
  const std::uint32_t pos = index_.find(id, [this](std::uint32_t p) { return members_[p].id; });
  return pos == IdIndex::kNone ? nullptr : &members_[pos];
}

void Members::index_put(NodeId id, std::uint32_t pos) {
  index_.put(id, pos, [this](std::uint32_t p) { return members_[p].id; });
}

Member Members::to_member(const Rec& m) const {
  return Member{m.id, std::string(name_of(m)), m.address, m.state, m.incarnation,
                std::string(metadata_of(m))};
}

wire::MemberMsg Members::to_msg(const Rec& m, NodeId from) const {
  return wire::MemberMsg{to_wire(m.state), m.incarnation, m.id, from, m.address, name_of(m),
                         metadata_of(m)};
}

const Address* Members::address_of(NodeId id) const {
  const Rec* m = find(id);
  return m ? &m->address : nullptr;
}

bool Members::is_alive(NodeId id) const {
  const Rec* m = find(id);
  return m && m->state == MemberState::kAlive;
}

void Members::note_state(NodeId id, MemberState previous, MemberState next, bool is_new) {
  // Incremental: a thousand-node view must not be rescanned on every change.
  if (!is_new && is_live(previous)) --live_count_;
  if (is_live(next)) ++live_count_;
  gossip_.set_live_members(live_count_);
  const bool was_suspect = !is_new && previous == MemberState::kSuspect;
  if (was_suspect && next != MemberState::kSuspect) {
    auto it = std::find(suspects_.begin(), suspects_.end(), id);
    if (it != suspects_.end()) {
      *it = suspects_.back();
      suspects_.pop_back();
    }
  } else if (!was_suspect && next == MemberState::kSuspect) {
    suspects_.push_back(id);
  }
}

void Members::adjust_health(int delta) {
  if (delta > 0 && lhm_ < config_.awareness_max) ++lhm_;
  if (delta < 0 && lhm_ > 0) --lhm_;
  counters_.local_health = lhm_;
}

void Members::emit(const Rec& rec, MemberState previous, bool joined) {
  if (!gossip_.wants_membership_events()) return;
  gossip_.emit_membership(MembershipEvent{to_member(rec), previous, joined});
}

void Members::start(std::uint64_t t) {
  started_ = true;
  leaving_ = false;
  // A fresh incarnation above any this node used before a restart: its start time.
  self().incarnation = std::max<std::uint64_t>(self().incarnation + 1, t);
  self().state = MemberState::kAlive;
  self().state_since_ms = t;
  announce(self(), config_.id);
  // Spread the first probes so a thousand nodes started at once do not probe in lockstep.
  next_probe_ms_ = t + rng_.below(config_.probe_interval_ms) + 1;
}

std::vector<Address> Members::leave(std::size_t tell) {
  leaving_ = true;
  self().incarnation += 1;
  self().state = MemberState::kLeft;
  announce(self(), config_.id);
  ++counters_.leaves;
  std::vector<Address> out;
  for (NodeId id : random_alive(tell, config_.id, config_.id)) out.push_back(find(id)->address);
  return out;
}

void Members::send_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                         const wire::Outbox& out) {
  // Push-pull of membership (memberlist's state sync).
  wire::Packet p(out);
  bool first = true;
  std::size_t i = 0;
  std::size_t records_at = 0;  // where this datagram's first member record starts
  while (i < members_.size()) {
    if (!p.is_open()) {
      if (!p.open()) return;
      const std::size_t at = p.w().begin(kind);
      if (kind == wire::MsgType::kJoin) {
        p.w().u8(first && reply_wanted ? 1 : 0);
      } else {
        p.w().u32(static_cast<std::uint32_t>(members_.size()));
      }
      p.w().end(at);
      records_at = p.w().size();
      first = false;
    }
    const std::size_t mark = p.w().size();
    wire::encode(p.w(), to_msg(members_[i], config_.id));
    if (!p.w().ok()) {
      p.w().rollback(mark);
      if (mark == records_at) {
        ++i;  // cannot fit even an empty datagram (validate() prevents it): skip, never spin
        continue;
      }
      p.send(to, /*piggyback=*/false);
      continue;  // this member again, in a fresh datagram
    }
    ++i;
  }
  if (p.is_open()) p.send(to, /*piggyback=*/false);
}

bool Members::random_dead(Address* address) {
  std::size_t seen = 0, pick = 0;
  for (std::size_t i = 1; i < members_.size(); ++i) {
    if (members_[i].state != MemberState::kDead) continue;
    if (rng_.below(++seen) == 0) pick = i;
  }
  if (seen == 0) return false;
  *address = members_[pick].address;
  return true;
}

std::vector<NodeId> Members::gossip_targets(std::size_t fanout) {
  // Alive and suspect members both hear gossip: a suspect may be alive and must learn of the
  // suspicion to refute it.
  std::vector<NodeId> targets = random_alive(fanout, config_.id, config_.id);
  if (!suspects_.empty() && targets.size() == fanout) {
    // Now and then one slot goes to a suspect, in proportion to how many there are.
    if (rng_.below(live_count_ ? live_count_ : 1) < suspects_.size()) {
      targets.back() = suspects_[rng_.below(suspects_.size())];
    }
  } else if (targets.size() < fanout && !suspects_.empty()) {
    targets.push_back(suspects_[rng_.below(suspects_.size())]);
  }
  return targets;
}

void Members::on_ping(const Address& from, const wire::Ping& m, const wire::Outbox& out) {
  if (m.target != config_.id) return;  // meant for a previous owner of this address
  wire::Packet p(out);
  if (!p.open()) return;
  wire::encode_ack(p.w(), m.seq);
  p.send(from, /*piggyback=*/true);
}

void Members::tick(std::uint64_t t, const wire::Outbox& out) {
  probe_tick(t, out);
  relay_tick(t, out);
  suspicion_tick(t);
}

void Members::suspicion_tick(std::uint64_t t) {
  // A suspect that did not refute in time is declared dead.
  for (std::size_t i = 0; i < suspects_.size();) {
    Rec& m = *find(suspects_[i]);
    if (t >= m.suspect_start_ms + suspicion_timeout_ms(m)) {
      set_state(m, MemberState::kDead, m.incarnation, config_.id);  // removes it from suspects_
      ++counters_.deaths_declared;
    } else {
      ++i;
    }
  }
}

void Members::reclaim(std::uint64_t t) {
  for (std::size_t i = members_.size(); i-- > 1;) {
    const Rec& m = members_[i];
    if (is_live(m.state) || t < m.state_since_ms + config_.dead_reclaim_ms) continue;
    index_.erase(m.id, [this](std::uint32_t p) { return members_[p].id; });
    names_->release(m.text);
    if (i != members_.size() - 1) {
      members_[i] = std::move(members_.back());
      index_put(members_[i].id, static_cast<std::uint32_t>(i));
    }
    members_.pop_back();
  }
}

std::uint64_t Members::next_deadline_ms() const {
  std::uint64_t d = next_probe_ms_;
  if (probe_.active && !probe_.acked && !probe_.indirect_sent) d = std::min(d, probe_.indirect_at_ms);
  for (const auto& r : relays_) {
    if (r.nack_at_ms) d = std::min(d, r.nack_at_ms);
    d = std::min(d, r.expire_ms);
  }
  for (NodeId id : suspects_) {
    const Rec& m = *find(id);
    d = std::min(d, m.suspect_start_ms + suspicion_timeout_ms(m));
  }
  return d;
}

Members::Rec& Members::add(const wire::MemberMsg& m) {
  Rec rec;
  rec.id = m.node;
  rec.text = names_->intern(m.name, m.metadata);
  rec.address = m.address;
  rec.state = from_wire(m.state);
  rec.incarnation = m.incarnation;
  rec.state_since_ms = now();
  if (rec.state == MemberState::kSuspect) {
    rec.suspect_start_ms = rec.state_since_ms;
    rec.confirmations.push_back(m.from);
  }
  note_state(rec.id, MemberState::kDead, rec.state, /*is_new=*/true);
  members_.push_back(std::move(rec));
  index_put(members_.back().id, static_cast<std::uint32_t>(members_.size() - 1));
  probe_order_.push_back(m.node);  // probed in the current round, in a random spot
  if (probe_order_.size() > 1) {
    const std::size_t j = probe_pos_ + rng_.below(probe_order_.size() - probe_pos_);
    std::swap(probe_order_[j], probe_order_.back());
  }
  ++counters_.joins;
  return members_.back();
}

void Members::set_state(Rec& rec, MemberState state, std::uint64_t incarnation,
                         NodeId from) {
  const MemberState previous = rec.state;
  note_state(rec.id, previous, state, false);
  rec.state = state;
  rec.incarnation = incarnation;
  rec.state_since_ms = now();
  if (state == MemberState::kSuspect) {
    rec.suspect_start_ms = rec.state_since_ms;
    rec.confirmations.assign(1, from);
    ++counters_.suspicions;
  } else {
    rec.confirmations.clear();
  }
  announce(rec, from);
  emit(rec, previous, !is_live(previous) && is_live(state));
}

void Members::refute(std::uint64_t claimed_incarnation) {
  if (leaving_) return;
  self().incarnation = std::max(self().incarnation, claimed_incarnation) + 1;
  RUMOR_ASSERT(self().incarnation <= kIncarnationMax);
  announce(self(), config_.id);
  ++counters_.refutations;
  // Lifeguard: being suspected is a hint that this node is the slow one.
  adjust_health(+1);
}

void Members::apply(const wire::MemberMsg& m_in, bool state_sync) {
  // Incarnations start at a node's start time in ms and grow by one per refutation; anything
  // near the top of the range is forged and would wrap a refutation to zero.
  if (m_in.incarnation > kIncarnationMax - 1) {
    ++counters_.drop_malformed;
    return;
  }
  wire::MemberMsg m = m_in;
  // In a table exchange, "dead" is somebody else's old belief: treat it as a suspicion, which
  // the member refutes if it is alive (memberlist does the same in its push-pull merge).
  if (state_sync && m.state == wire::WireState::kDead) m.state = wire::WireState::kSuspect;
  if (m.node == config_.id) {
    // Claims about this node: refute suspicion and death; ignore our own echoes.
    if ((m.state == wire::WireState::kSuspect || m.state == wire::WireState::kDead ||
         (m.state == wire::WireState::kLeft && m.from != config_.id)) &&
        m.incarnation >= self().incarnation) {
      refute(m.incarnation);
    }
    return;
  }
  Rec* rec = find(m.node);
  if (!rec) {
    // Only an alive claim introduces a member. A suspicion or death of someone unknown (a
    // member this node already forgot) must not bring it back (memberlist does the same).
    if (m_in.state != wire::WireState::kAlive) return;
    if (members_.size() >= config_.members_max) return;
    Rec& added = add(m);
    if (!state_sync || m.node == m.from) announce(added, m.from);
    emit(added, MemberState::kDead, /*joined=*/true);
    return;
  }
  switch (m.state) {
    case wire::WireState::kAlive: {
      if (m.incarnation <= rec->incarnation) return;
      const MemberState previous = rec->state;
      rec->address = m.address;  // identity is the id; the address may change
      if (name_of(*rec) != m.name || metadata_of(*rec) != m.metadata) {
        const MemberNames::Handle h = names_->intern(m.name, m.metadata);
        names_->release(rec->text);
        rec->text = h;
      }
      note_state(rec->id, previous, MemberState::kAlive, false);
      rec->state = MemberState::kAlive;
      rec->incarnation = m.incarnation;
      rec->state_since_ms = now();
      rec->confirmations.clear();
      // A table record (state sync) is not news: the member broadcast its own alive. Only a
      // sender speaking for itself, or a fresh broadcast, is passed on.
      if (!state_sync || m.node == m.from) announce(*rec, m.from);
      if (previous != MemberState::kAlive) {
        emit(*rec, previous, !is_live(previous));
        if (!is_live(previous)) ++counters_.joins;
      }
      return;
    }
    case wire::WireState::kSuspect: {
      if (m.incarnation < rec->incarnation || !is_live(rec->state)) return;
      if (rec->state == MemberState::kSuspect && m.incarnation == rec->incarnation) {
        // Another member's independent suspicion shortens the timeout (Lifeguard).
        if (std::find(rec->confirmations.begin(), rec->confirmations.end(), m.from) ==
                rec->confirmations.end() &&
            rec->confirmations.size() < config_.indirect_checks + 1u) {
          rec->confirmations.push_back(m.from);
          announce(*rec, m.from);
        }
        return;
      }
      set_state(*rec, MemberState::kSuspect, m.incarnation, m.from);
      return;
    }
    case wire::WireState::kDead:
    case wire::WireState::kLeft: {
      const MemberState to = from_wire(m.state);
      if (m.incarnation < rec->incarnation) return;
      if (rec->state == MemberState::kLeft) return;
      if (rec->state == MemberState::kDead && to == MemberState::kDead) return;
      set_state(*rec, to, m.incarnation, m.from);
      return;
    }
  }
}

std::uint64_t Members::suspicion_timeout_ms(const Rec& rec) const {
  // Lifeguard: start long, shrink toward the minimum as independent confirmations arrive.
  const double n = std::max<double>(static_cast<double>(live_count_ + 1), 1.0);
  const double min_ms = config_.suspicion_mult * std::max(1.0, std::log10(n)) *
                        config_.probe_interval_ms;
  const double max_ms = config_.suspicion_max_timeout_mult * min_ms;
  const double k = std::max<double>(1.0, std::min<double>(config_.indirect_checks,
                                                          static_cast<double>(live_count_) - 1));
  const double c = static_cast<double>(rec.confirmations.empty() ? 0 : rec.confirmations.size() - 1);
  const double t = max_ms - (max_ms - min_ms) * std::log(c + 1) / std::log(k + 1);
  return static_cast<std::uint64_t>(std::max(min_ms, t));
}

std::vector<Member> Members::list() const {
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& m : members_) {
    out.push_back(to_member(m));
  }
  return out;
}

void Members::preload(NodeId id, MemberNames::Handle text, const Address& address,
                      std::uint64_t incarnation) {
  RUMOR_ASSERT(!started_);
  // No lookup first (10^8 of them are cache misses): ids are distinct by construction, and the
  // index size says if one was not.
  if (id == config_.id || members_.size() >= config_.members_max) return;
  Rec rec;
  rec.id = id;
  names_->retain(text);
  rec.text = text;
  rec.address = address;
  rec.incarnation = incarnation;
  rec.state_since_ms = now();
  note_state(id, MemberState::kDead, MemberState::kAlive, /*is_new=*/true);
  members_.push_back(rec);
  index_put(id, static_cast<std::uint32_t>(members_.size() - 1));
  RUMOR_ASSERT(index_.size() == members_.size());  // a duplicate id would have replaced one
  // Not in probe_order_: the first probe finds it empty and shuffles the whole table.
}

void Members::reserve(std::size_t n) {
  members_.reserve(n);
  probe_order_.reserve(n);
  index_.reserve(n, [this](std::uint32_t p) { return members_[p].id; });
}

std::vector<NodeId> Members::random_alive(std::size_t k, NodeId exclude1, NodeId exclude2) {
  // Up to k distinct alive members, uniformly: random picks from the table (O(k) while most
  // members are alive), falling back to a full scan when picks keep missing.
  std::vector<NodeId> out;
  if (members_.size() <= 1 || k == 0) return out;
  const std::size_t m = members_.size() - 1;
  for (std::size_t attempts = 0; out.size() < k && attempts < 8 * k + 16; ++attempts) {
    const Rec& c = members_[1 + rng_.below(m)];
    if (c.state != MemberState::kAlive || c.id == exclude1 || c.id == exclude2) continue;
    if (std::find(out.begin(), out.end(), c.id) != out.end()) continue;
    out.push_back(c.id);
  }
  if (out.size() == k) return out;
  out.clear();
  std::size_t seen = 0;
  for (std::size_t i = 1; i < members_.size(); ++i) {
    const Rec& c = members_[i];
    if (c.state != MemberState::kAlive || c.id == exclude1 || c.id == exclude2) continue;
    ++seen;
    if (out.size() < k) {
      out.push_back(c.id);
    } else {
      const std::uint64_t j = rng_.below(seen);
      if (j < k) out[j] = c.id;
    }
  }
  return out;
}

// ---- probing --------------------------------------------------------------------------------

NodeId Members::next_probe_target() {
  // Randomised round robin (SWIM 4.3): every member once per round, in a fresh random order.
  for (std::size_t attempts = 0; attempts < 2; ++attempts) {
    while (probe_pos_ < probe_order_.size()) {
      const NodeId id = probe_order_[probe_pos_++];
      const Rec* m = find(id);
      if (m && is_live(m->state)) return id;
    }
    probe_order_.clear();
    for (std::size_t i = 1; i < members_.size(); ++i) {
      if (is_live(members_[i].state)) probe_order_.push_back(members_[i].id);
    }
    for (std::size_t i = probe_order_.size(); i > 1; --i) {
      std::swap(probe_order_[i - 1], probe_order_[rng_.below(i)]);
    }
    probe_pos_ = 0;
  }
  return 0;
}

void Members::finish_probe() {
  if (!probe_.active) return;
  probe_.active = false;
  if (probe_.acked) {
    adjust_health(-1);
    return;
  }
  ++counters_.probes_failed;
  // Do not accuse when this node itself was late: it never got to ask others (the indirect
  // stage did not run), or its loop stalled past the probe's end (a paused process, a long GC
  // in the embedder). Lifeguard counts that against our own health instead.
  if (!probe_.indirect_sent || now() > probe_.end_ms + config_.probe_interval_ms) {
    adjust_health(+1);
    return;
  }
  // Lifeguard: relays that could not reach the target either answer with a nack. Missing nacks
  // mean our own messages are not getting through: we are the unhealthy one.
  if (probe_.expected_nacks > 0 && probe_.nacks < probe_.expected_nacks) adjust_health(+1);
  Rec* m = find(probe_.target);
  if (m && m->state == MemberState::kAlive) {
    set_state(*m, MemberState::kSuspect, m->incarnation, config_.id);
  }
}

void Members::probe_tick(std::uint64_t t, const wire::Outbox& out) {
  if (probe_.active && !probe_.acked && !probe_.indirect_sent && t >= probe_.indirect_at_ms) {
    probe_.indirect_sent = true;
    const Rec* target = find(probe_.target);
    if (target) {
      const auto relays = random_alive(config_.indirect_checks, probe_.target, config_.id);
      for (NodeId r : relays) {
        wire::Packet p(out);
        if (!p.open()) break;
        wire::encode(p.w(), wire::PingReq{probe_.seq, probe_.target, target->address});
        p.send(find(r)->address, /*piggyback=*/true);
        ++probe_.expected_nacks;
        probe_.relays.push_back(r);
        ++counters_.indirect_probes;
      }
    }
  }
  if (t < next_probe_ms_) return;
  finish_probe();
  next_probe_ms_ = t + scaled(config_.probe_interval_ms);
  const NodeId target = next_probe_target();
  if (target == 0) return;
  probe_ = Probe{};
  probe_.active = true;
  probe_.target = target;
  probe_.seq = next_seq_++;
  probe_.indirect_at_ms = t + scaled(config_.probe_timeout_ms);
  probe_.end_ms = next_probe_ms_;
  wire::Packet p(out);
  if (!p.open()) return;
  wire::encode(p.w(), wire::Ping{probe_.seq, target});
  p.send(find(target)->address, /*piggyback=*/true);
  ++counters_.probes_sent;
}

void Members::on_ack(NodeId sender, std::uint32_t seq, const wire::Outbox& out) {
  if (probe_.active && seq == probe_.seq) {
    // Only the target itself, or a relay we asked, can vouch for it: a forged ack from anyone
    // else must not keep a dead member alive.
    if (sender == probe_.target ||
        std::find(probe_.relays.begin(), probe_.relays.end(), sender) != probe_.relays.end()) {
      probe_.acked = true;
    }
    return;
  }
  // An ack for a ping we sent on someone's behalf: forward it.
  for (auto it = relays_.begin(); it != relays_.end(); ++it) {
    if (it->local_seq != seq) continue;
    wire::Packet p(out);
    if (p.open()) {
      wire::encode_ack(p.w(), it->requester_seq);
      p.send(it->requester, /*piggyback=*/true);
    }
    relays_.erase(it);
    return;
  }
}

void Members::on_nack(NodeId sender, std::uint32_t seq) {
  if (!probe_.active || seq != probe_.seq) return;
  // Each relay we asked counts once.
  auto it = std::find(probe_.relays.begin(), probe_.relays.end(), sender);
  if (it == probe_.relays.end()) return;
  const auto bit = std::uint64_t{1} << (static_cast<std::size_t>(it - probe_.relays.begin()) & 63);
  if (probe_.nacked & bit) return;
  probe_.nacked |= bit;
  ++probe_.nacks;
}

void Members::on_ping_req(const Address& from, const wire::PingReq& m, const wire::Outbox& out) {
  constexpr std::size_t kRelaysMax = 1024;  // bounded: a flood of ping-reqs cannot grow memory
  if (relays_.size() >= kRelaysMax) return;
  const std::uint64_t t = now();
  Relay r;
  r.local_seq = next_seq_++;
  r.requester = from;
  r.requester_seq = m.seq;
  r.nack_at_ms = t + config_.probe_timeout_ms * 4 / 5;
  r.expire_ms = t + config_.probe_interval_ms;
  wire::Packet p(out);
  if (!p.open()) return;
  wire::encode(p.w(), wire::Ping{r.local_seq, m.target});
  p.send(m.target_addr, /*piggyback=*/true);
  relays_.push_back(r);
}

void Members::relay_tick(std::uint64_t t, const wire::Outbox& out) {
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->nack_at_ms != 0 && t >= it->nack_at_ms) {
      wire::Packet p(out);
      if (p.open()) {
        wire::encode_nack(p.w(), it->requester_seq);
        p.send(it->requester, /*piggyback=*/false);
      }
      it->nack_at_ms = 0;
    }
    if (t >= it->expire_ms) {
      it = relays_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace rumor
