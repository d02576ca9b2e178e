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
  dir_ = std::make_shared<MemberDirectory>();
  self_ = dir_->hold(config_.id);
  cover(self_);
  text_[self_] = dir_->intern(config_.name, config_.metadata, config_.advertise);
  word_[self_] = pack(0, MemberState::kAlive);
}

Members::~Members() {
  for_known([&](Slot s) {
    dir_->release(text_[s]);
    dir_->release_slot(s);
  });
  dir_->release(text_[self_]);
  dir_->release_slot(self_);
}

void Members::cover(Slot s) {
  if (s < text_.size()) return;
  // Grown to the directory's size at once: in a simulation every node's slots are the same
  // thousands, and growing one at a time would reallocate on every few joins.
  const std::size_t n = std::max<std::size_t>(s + 1, dir_->slot_limit());
  word_.resize(n, 0);
  text_.resize(n, kNone);
}

void Members::share_directory(std::shared_ptr<MemberDirectory> dir) {
  RUMOR_ASSERT(!started_);
  RUMOR_ASSERT(count_ == 0);  // before any member is added or preloaded
  const std::uint64_t word = word_[self_];
  const MemberDirectory::Text text =
      dir->intern(dir_->name(text_[self_]), dir_->metadata(text_[self_]), dir_->address(text_[self_]));
  dir_->release(text_[self_]);
  dir_->release_slot(self_);
  dir_ = std::move(dir);
  word_.clear();
  text_.clear();
  self_ = dir_->hold(config_.id);
  cover(self_);
  word_[self_] = word;
  text_[self_] = text;
  sums_.clear();
}

Members::Suspicion* Members::suspicion(Slot s) {
  for (Suspicion& x : suspects_) {
    if (x.slot == s) return &x;
  }
  return nullptr;
}

Member Members::to_member(Slot s) const {
  const MemberDirectory::Text t = text_[s];
  return Member{id(s), std::string(dir_->name(t)), dir_->address(t), state(s), incarnation(s),
                std::string(dir_->metadata(t))};
}

wire::MemberMsg Members::to_msg(Slot s, NodeId from) const {
  const MemberDirectory::Text t = text_[s];
  return wire::MemberMsg{to_wire(state(s)), incarnation(s), id(s), from, dir_->address(t),
                         dir_->name(t), dir_->metadata(t)};
}

const Address* Members::address_of(NodeId id) const {
  const Slot s = find(id);
  return s == kNone ? nullptr : &address(s);
}

bool Members::is_alive(NodeId id) const {
  const Slot s = find(id);
  return s != kNone && state(s) == MemberState::kAlive;
}

void Members::note_state(MemberState previous, MemberState next, bool is_new) {
  // Incremental: a thousand-node view must not be rescanned on every change.
  if (!is_new && is_live(previous)) --live_count_;
  if (is_live(next)) ++live_count_;
  gossip_.set_live_members(live_count_);
}

void Members::adjust_health(int delta) {
  if (delta > 0 && lhm_ < config_.awareness_max) ++lhm_;
  if (delta < 0 && lhm_ > 0) --lhm_;
  counters_.local_health = lhm_;
}

void Members::emit(Slot s, MemberState previous, bool joined) {
  if (!gossip_.wants_membership_events()) return;
  gossip_.emit_membership(MembershipEvent{to_member(s), previous, joined});
}

void Members::start(std::uint64_t t) {
  started_ = true;
  leaving_ = false;
  // A fresh incarnation above any this node used before a restart: its start time.
  rewrite(self_, pack(std::max<std::uint64_t>(incarnation(self_) + 1, t), MemberState::kAlive));
  announce(self_, config_.id);
  // Spread the first probes so a thousand nodes started at once do not probe in lockstep.
  next_probe_ms_ = t + rng_.below(config_.probe_interval_ms) + 1;
}

std::vector<Address> Members::leave(std::size_t tell) {
  leaving_ = true;
  rewrite(self_, pack(incarnation(self_) + 1, MemberState::kLeft));
  announce(self_, config_.id);
  ++counters_.leaves;
  std::vector<Address> out;
  for (NodeId id : random_alive(tell, config_.id, config_.id)) out.push_back(*address_of(id));
  return out;
}

void Members::send_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                         const wire::Outbox& out) {
  // Push-pull of the whole table (memberlist's state sync): joins and their answers.
  // Self first, then every slot this view knows.
  std::size_t i = 0;
  bool self_sent = false;
  send_records(to, kind, reply_wanted, size(), [&]() -> Slot {
    if (!self_sent) {
      self_sent = true;
      return self_;
    }
    while (i < text_.size()) {
      const auto s = static_cast<Slot>(i++);
      if (s != self_ && text_[s] != kNone) return s;
    }
    return kNone;
  }, out);
}

template <class Next>
void Members::send_records(const Address& to, wire::MsgType kind, bool reply_wanted,
                           std::size_t total, const Next& next, const wire::Outbox& out) {
  wire::Packet p(out);
  bool first = true;
  std::size_t records_at = 0;  // where this datagram's first member record starts
  Slot s = next();
  while (s != kNone) {
    if (!p.is_open()) {
      if (!p.open()) return;
      const std::size_t at = p.w().begin(kind);
      if (kind == wire::MsgType::kJoin) {
        p.w().u8(first && reply_wanted ? 1 : 0);
      } else {
        p.w().u32(static_cast<std::uint32_t>(total));
      }
      p.w().end(at);
      records_at = p.w().size();
      first = false;
    }
    const std::size_t mark = p.w().size();
    wire::encode(p.w(), to_msg(s, config_.id));
    if (!p.w().ok()) {
      p.w().rollback(mark);
      if (mark != records_at) {
        p.send(to, /*piggyback=*/false);
        continue;  // this member again, in a fresh datagram
      }
      // Cannot fit even an empty datagram (validate() prevents it): skip, never spin.
    }
    s = next();
  }
  if (p.is_open()) p.send(to, /*piggyback=*/false);
}

unsigned Members::digest_bits(std::size_t members) {
  // About four members a bucket, up to 2,048 buckets (4 KiB of sums: three datagrams).
  unsigned bits = 0;
  while (bits < kDigestBitsMax && (std::size_t{4} << bits) < members) ++bits;
  return bits;
}

std::uint16_t Members::coarse_sum(unsigned bits, std::size_t bucket, std::uint32_t salt) const {
  // A coarse bucket is a run of fine ones (both are top bits of the id); the salted fold makes
  // a 16-bit collision between two different sums a fresh coin toss in every exchange.
  const unsigned shift = kDigestBitsMax - bits;
  std::uint32_t sum = fine_bucket(self_) >> shift == bucket ? contribution(self_) : 0;
  if (!sums_.empty()) {
    for (std::size_t f = bucket << shift; f < (bucket + 1) << shift; ++f) sum += sums_[f];
  }
  std::uint64_t x = (std::uint64_t{salt} << 32 | sum) ^ 0x5375'6d73'4469'6773ull;  // "SumsDigs"
  const std::uint64_t v = splitmix64(x);
  return static_cast<std::uint16_t>(v ^ v >> 16 ^ v >> 32 ^ v >> 48);
}

std::uint32_t Members::fingerprint() const {
  std::uint32_t sum = contribution(self_);
  for (std::uint32_t s : sums_) sum += s;  // 2,048 additions, once per probe
  std::uint64_t x = sum ^ 0x7461'626c'6566'7072ull;  // "tablefpr"
  const auto v = static_cast<std::uint32_t>(splitmix64(x));
  return v ? v : 1;
}

void Members::rewrite(Slot s, std::uint64_t word) {
  sum_out(s);
  word_[s] = word;
  sum_in(s);
  if (s == self_ && journal_ != nullptr) journal_->incarnation(incarnation(s));
}

void Members::restore_incarnation(std::uint64_t inc) {
  if (inc > incarnation(self_)) rewrite(self_, pack(inc, state(self_)));
}

std::uint32_t Members::contribution(Slot s) const {
  std::uint64_t x = id(s) ^ 0x6d65'6d62'6572'7321ull;  // "members!"
  x += word_[s] * 0x9e3779b97f4a7c15ull;
  return static_cast<std::uint32_t>(splitmix64(x));
}

void Members::send_digest(const Address& to, std::uint32_t salt, const wire::Outbox& out) {
  const unsigned bits = digest_bits(size());
  const std::size_t n = std::size_t{1} << bits;
  pending_salt_ = salt;
  pending_peer_ = to;
  pending_bits_ = bits;
  pending_sent_.assign(n, false);
  // As many datagrams as the sums take, each a self-contained range the peer answers alone.
  std::size_t first = 0;
  while (first < n) {
    wire::Packet p(out);
    if (!p.open()) return;
    const std::size_t at = p.w().begin(wire::MsgType::kMemberDigest);
    p.w().u8(static_cast<std::uint8_t>(bits));
    p.w().u32(salt);
    p.w().u32(static_cast<std::uint32_t>(size()));
    p.w().u16(static_cast<std::uint16_t>(first));
    const std::size_t room = p.w().remaining() > 8 ? (p.w().remaining() - 8) / 2 : 0;
    const std::size_t count = std::min(n - first, room);
    if (count == 0) return;
    p.w().u16(static_cast<std::uint16_t>(count));
    for (std::size_t b = first; b < first + count; ++b) p.w().u16(coarse_sum(bits, b, salt));
    p.w().end(at);
    p.send(to, /*piggyback=*/false);
    first += count;
  }
}

std::size_t Members::bucket_records(unsigned bits, std::size_t bucket) const {
  std::size_t n = 0;
  for_bucket(bits, bucket, [&](Slot) { ++n; });
  return n;
}

void Members::send_buckets(const Address& to, unsigned bits, std::span<const std::uint16_t> buckets,
                           const wire::Outbox& out) {
  // Walks the directory's per-bucket slot lists: the cost is the records sent, not the table.
  std::vector<Slot> slots;
  for (std::uint16_t b : buckets) for_bucket(bits, b, [&](Slot s) { slots.push_back(s); });
  std::size_t i = 0;
  send_records(to, wire::MsgType::kJoin, /*reply_wanted=*/false, slots.size(),
               [&]() { return i < slots.size() ? slots[i++] : kNone; }, out);
}

bool Members::on_digest(const Address& from, std::span<const std::byte> body,
                        const wire::Outbox& out, const std::function<bool(double)>& answer) {
  wire::Reader r(body);
  const unsigned bits = r.u8();
  const std::uint32_t salt = r.u32();
  (void)r.u32();  // the initiator's member count: informative
  const std::size_t first = r.u16();
  const std::size_t count = r.u16();
  if (!r.ok() || bits > kDigestBitsMax || count == 0 || first + count > (std::size_t{1} << bits)) {
    return false;
  }
  const std::span<const std::byte> theirs = r.take(2 * count);
  if (!r.ok() || !r.empty()) return false;
  std::vector<std::uint16_t> differ;
  std::size_t records = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto theirs_i = static_cast<std::uint16_t>(static_cast<std::uint16_t>(theirs[2 * i]) |
                                                     static_cast<std::uint16_t>(theirs[2 * i + 1]) << 8);
    if (coarse_sum(bits, first + i, salt) == theirs_i) continue;
    differ.push_back(static_cast<std::uint16_t>(first + i));
    records += bucket_records(bits, first + i);
  }
  if (differ.empty()) return true;  // equal: nothing to say
  // About 25 records fit a datagram; the diff itself is one more.
  if (!answer(2.0 + static_cast<double>(records) / 25.0)) return true;
  wire::Packet p(out);
  if (!p.open()) return true;
  const std::size_t at = p.w().begin(wire::MsgType::kMemberDiff);
  p.w().u8(static_cast<std::uint8_t>(bits));
  p.w().u32(salt);
  p.w().u16(static_cast<std::uint16_t>(first));
  p.w().u16(static_cast<std::uint16_t>(count));
  std::vector<std::uint8_t> bitmap((count + 7) / 8, 0);
  for (std::uint16_t b : differ) bitmap[(b - first) / 8] |= static_cast<std::uint8_t>(1u << ((b - first) % 8));
  p.w().bytes(bitmap.data(), bitmap.size());
  p.w().end(at);
  p.send(from, /*piggyback=*/false);
  send_buckets(from, bits, differ, out);
  return true;
}

bool Members::on_diff(const Address& from, std::span<const std::byte> body,
                      const wire::Outbox& out) {
  wire::Reader r(body);
  const unsigned bits = r.u8();
  const std::uint32_t salt = r.u32();
  const std::size_t first = r.u16();
  const std::size_t count = r.u16();
  if (!r.ok() || bits > kDigestBitsMax || first + count > (std::size_t{1} << bits)) return false;
  const std::span<const std::byte> bitmap = r.take((count + 7) / 8);
  if (!r.ok() || !r.empty()) return false;
  // Only an answer to the exchange we started, from the peer we asked, and each bucket once: a
  // forged or replayed diff cannot make this node send its table anywhere, or twice.
  if (salt != pending_salt_ || pending_salt_ == 0 || !(from == pending_peer_) ||
      bits != pending_bits_) {
    return true;
  }
  std::vector<std::uint16_t> want;
  for (std::size_t i = 0; i < count; ++i) {
    if (!(static_cast<std::uint8_t>(bitmap[i / 8]) & (1u << (i % 8)))) continue;
    if (pending_sent_[first + i]) continue;
    pending_sent_[first + i] = true;
    want.push_back(static_cast<std::uint16_t>(first + i));
  }
  learned_from_diff_ = true;
  send_buckets(from, bits, want, out);
  return true;
}

bool Members::random_dead(Address* address) {
  std::size_t seen = 0;
  Slot pick = kNone;
  for_known([&](Slot s) {
    if (state(s) == MemberState::kDead && rng_.below(++seen) == 0) pick = s;
  });
  if (seen == 0) return false;
  *address = this->address(pick);
  return true;
}

std::vector<NodeId> Members::gossip_targets(std::size_t fanout) {
  // Alive and suspect members both hear gossip: a suspect may be alive and must learn of the
  // suspicion to refute it.
  std::vector<NodeId> targets = random_alive(fanout, config_.id, config_.id);
  if (!suspects_.empty() && targets.size() == fanout) {
    // Now and then one slot goes to a suspect, in proportion to how many there are.
    if (rng_.below(live_count_ ? live_count_ : 1) < suspects_.size()) {
      targets.back() = id(suspects_[rng_.below(suspects_.size())].slot);
    }
  } else if (targets.size() < fanout && !suspects_.empty()) {
    targets.push_back(id(suspects_[rng_.below(suspects_.size())].slot));
  }
  return targets;
}

void Members::on_ping(const Address& from, const wire::Ping& m, const wire::Outbox& out,
                      wire::Holds holds) {
  if (m.target != config_.id) return;  // meant for a previous owner of this address
  wire::Packet p(out);
  if (!p.open()) return;
  wire::encode_ack(p.w(), m.seq);
  p.send(from, /*piggyback=*/true, holds);
}

void Members::tick(std::uint64_t t, const wire::Outbox& out) {
  probe_tick(t, out);
  relay_tick(t, out);
  suspicion_tick(t);
}

void Members::suspicion_tick(std::uint64_t t) {
  // A suspect that did not refute in time is declared dead.
  for (std::size_t i = 0; i < suspects_.size();) {
    const Suspicion& sus = suspects_[i];
    if (t >= sus.start_ms + suspicion_timeout_ms(sus)) {
      const Slot s = sus.slot;
      set_state(s, MemberState::kDead, incarnation(s), config_.id);  // removes it from suspects_
      ++counters_.deaths_declared;
    } else {
      ++i;
    }
  }
}

void Members::reclaim(std::uint64_t t) {
  if (down_since_.empty()) return;
  for (auto it = down_since_.begin(); it != down_since_.end();) {
    if (t < it->second + config_.dead_reclaim_ms) {
      ++it;
      continue;
    }
    const Slot s = it->first;
    sum_out(s);
    dir_->release(text_[s]);
    dir_->release_slot(s);
    text_[s] = kNone;
    word_[s] = 0;
    it = down_since_.erase(it);
    --count_;
  }
}

std::uint64_t Members::next_deadline_ms() const {
  std::uint64_t d = next_probe_ms_;
  if (probe_.active && !probe_.acked && !probe_.indirect_sent) d = std::min(d, probe_.indirect_at_ms);
  for (const auto& r : relays_) {
    if (r.nack_at_ms) d = std::min(d, r.nack_at_ms);
    d = std::min(d, r.expire_ms);
  }
  for (const Suspicion& sus : suspects_) d = std::min(d, sus.start_ms + suspicion_timeout_ms(sus));
  return d;
}

void Members::set_word(Slot s, std::uint64_t inc, MemberState next, NodeId from, bool is_new) {
  // The one place a member's state changes: the live count, the suspect list, the down-since
  // table and the digest sums follow it.
  const MemberState previous = is_new ? MemberState::kDead : state(s);
  note_state(previous, next, is_new);
  if (is_new) {
    word_[s] = pack(inc, next);
    sum_in(s);
  } else {
    rewrite(s, pack(inc, next));
  }
  if (!is_new && previous == MemberState::kSuspect && next != MemberState::kSuspect) {
    for (std::size_t i = 0; i < suspects_.size(); ++i) {
      if (suspects_[i].slot != s) continue;
      suspects_[i] = std::move(suspects_.back());
      suspects_.pop_back();
      break;
    }
  }
  if (next == MemberState::kSuspect) {
    Suspicion* sus = is_new || previous != MemberState::kSuspect ? nullptr : suspicion(s);
    if (!sus) {
      suspects_.push_back(Suspicion{s, 0, {}});
      sus = &suspects_.back();
    }
    sus->start_ms = now();
    sus->confirmations.assign(1, from);
  }
  if (is_live(next)) {
    if (!is_new && !is_live(previous)) down_since_.erase(s);
  } else if (is_new || is_live(previous) || previous != next) {
    down_since_[s] = now();
  }
}

Members::Slot Members::add(const wire::MemberMsg& m) {
  const Slot s = dir_->hold(m.node);
  cover(s);
  text_[s] = dir_->intern(m.name, m.metadata, m.address, s);
  set_word(s, m.incarnation, from_wire(m.state), m.from, /*is_new=*/true);
  ++count_;  // probed when the round's walk reaches its slot, or in the next round
  ++counters_.joins;
  return s;
}

void Members::set_state(Slot s, MemberState next, std::uint64_t inc, NodeId from) {
  const MemberState previous = state(s);
  set_word(s, inc, next, from, /*is_new=*/false);
  if (next == MemberState::kSuspect) ++counters_.suspicions;
  announce(s, from);
  emit(s, previous, !is_live(previous) && is_live(next));
}

void Members::set_metadata(std::string_view metadata) {
  const MemberDirectory::Text old = text_[self_];
  if (dir_->metadata(old) == metadata) return;
  // Copies: interning may grow the directory's storage, which the views point into.
  const std::string name(dir_->name(old));
  const Address address = dir_->address(old);
  text_[self_] = dir_->intern(name, metadata, address, self_);
  dir_->release(old);
  if (!started_ || leaving_) return;  // start() announces it
  const std::uint64_t inc = incarnation(self_) + 1;
  RUMOR_ASSERT(inc <= kIncarnationMax);
  rewrite(self_, pack(inc, state(self_)));
  announce(self_, config_.id);
}

void Members::refute(std::uint64_t claimed_incarnation) {
  if (leaving_) return;
  const std::uint64_t inc = std::max(incarnation(self_), claimed_incarnation) + 1;
  RUMOR_ASSERT(inc <= kIncarnationMax);
  rewrite(self_, pack(inc, state(self_)));
  announce(self_, config_.id);
  ++counters_.refutations;
  // Lifeguard: being suspected is a hint that this node is the slow one.
  adjust_health(+1);
}

void Members::apply_batch(std::span<const Record> records) {
  if (records.size() > 1) {
    for (const Record& r : records) {
      const Slot s = dir_->find(r.msg.node);
      if (s < text_.size()) {
        __builtin_prefetch(&word_[s]);
        __builtin_prefetch(&text_[s]);
      }
    }
  }
  for (const Record& r : records) apply(r.msg, r.state_sync);
}

void Members::apply(const wire::MemberMsg& m_in, bool state_sync) {
  // Incarnations start at a node's start time in ms and grow by one per refutation; anything
  // near the top of the range is forged and would wrap a refutation to zero.
  if (m_in.incarnation > kIncarnationMax - 1) {
    ++counters_.drop_malformed;
    return;
  }
  ++(state_sync ? table_records_ : news_records_);
  wire::MemberMsg m = m_in;
  // In a table exchange, "dead" is somebody else's old belief: treat it as a suspicion, which
  // the member refutes if it is alive (memberlist does the same in its push-pull merge).
  if (state_sync && m.state == wire::WireState::kDead) m.state = wire::WireState::kSuspect;
  if (m.node == config_.id) {
    // Claims about this node: refute suspicion and death; ignore our own echoes.
    if ((m.state == wire::WireState::kSuspect || m.state == wire::WireState::kDead ||
         (m.state == wire::WireState::kLeft && m.from != config_.id)) &&
        m.incarnation >= incarnation(self_)) {
      refute(m.incarnation);
    }
    return;
  }
  const Slot s = find(m.node);
  if (s == kNone) {
    // Only an alive claim introduces a member. A suspicion or death of someone unknown (a
    // member this node already forgot) must not bring it back (memberlist does the same).
    if (m_in.state != wire::WireState::kAlive) return;
    if (size() >= config_.members_max) return;
    const Slot added = add(m);
    if ((!state_sync && relay_alive_) || (state_sync && m.node == m.from)) {
      announce(added, m.from);
    }
    emit(added, MemberState::kDead, /*joined=*/true);
    return;
  }
  const MemberState cur = state(s);
  const std::uint64_t cur_inc = incarnation(s);
  switch (m.state) {
    case wire::WireState::kAlive: {
      if (m.incarnation <= cur_inc) return;
      // Identity is the id; the address and metadata may change with the incarnation.
      const MemberDirectory::Text t = text_[s];
      if (dir_->name(t) != m.name || dir_->metadata(t) != m.metadata ||
          dir_->address(t) != m.address) {
        text_[s] = dir_->intern(m.name, m.metadata, m.address, s);
        dir_->release(t);
      }
      set_word(s, m.incarnation, MemberState::kAlive, m.from, /*is_new=*/false);
      // A table record (state sync) is not news: the member broadcast its own alive. Only a
      // sender speaking for itself, or a fresh broadcast, is passed on.
      if ((!state_sync && relay_alive_) || (state_sync && m.node == m.from)) {
        announce(s, m.from);
      }
      if (cur != MemberState::kAlive) {
        emit(s, cur, !is_live(cur));
        if (!is_live(cur)) ++counters_.joins;
      }
      return;
    }
    case wire::WireState::kSuspect: {
      if (m.incarnation < cur_inc || !is_live(cur)) return;
      if (cur == MemberState::kSuspect && m.incarnation == cur_inc) {
        // Another member's independent suspicion shortens the timeout (Lifeguard).
        Suspicion* sus = suspicion(s);
        if (sus &&
            std::find(sus->confirmations.begin(), sus->confirmations.end(), m.from) ==
                sus->confirmations.end() &&
            sus->confirmations.size() < config_.indirect_checks + 1u) {
          sus->confirmations.push_back(m.from);
          announce(s, m.from);
        }
        return;
      }
      set_state(s, MemberState::kSuspect, m.incarnation, m.from);
      return;
    }
    case wire::WireState::kDead:
    case wire::WireState::kLeft: {
      const MemberState to = from_wire(m.state);
      if (m.incarnation < cur_inc) return;
      if (cur == MemberState::kLeft) return;
      if (cur == MemberState::kDead && to == MemberState::kDead) return;
      set_state(s, to, m.incarnation, m.from);
      return;
    }
  }
}

std::uint64_t Members::suspicion_timeout_ms(const Suspicion& sus) const {
  // Lifeguard: start long, shrink toward the minimum as independent confirmations arrive.
  const double n = std::max<double>(static_cast<double>(live_count_ + 1), 1.0);
  const double min_ms = config_.suspicion_mult * std::max(1.0, std::log10(n)) *
                        config_.probe_interval_ms;
  const double max_ms = config_.suspicion_max_timeout_mult * min_ms;
  const double k = std::max<double>(1.0, std::min<double>(config_.indirect_checks,
                                                          static_cast<double>(live_count_) - 1));
  const double c =
      static_cast<double>(sus.confirmations.empty() ? 0 : sus.confirmations.size() - 1);
  const double t = max_ms - (max_ms - min_ms) * std::log(c + 1) / std::log(k + 1);
  return static_cast<std::uint64_t>(std::max(min_ms, t));
}

std::vector<Member> Members::list() const {
  std::vector<Member> out;
  out.reserve(size());
  out.push_back(to_member(self_));
  for_known([&](Slot s) { out.push_back(to_member(s)); });
  return out;
}

void Members::preload(NodeId id, MemberDirectory::Text text, std::uint64_t inc) {
  RUMOR_ASSERT(!started_);
  if (id == config_.id || size() >= config_.members_max) return;
  const Slot s = dir_->hold(id);
  cover(s);
  RUMOR_ASSERT(text_[s] == kNone);  // ids are distinct by construction
  dir_->retain(text);
  text_[s] = text;
  word_[s] = pack(inc, MemberState::kAlive);
  sum_in(s);
  note_state(MemberState::kDead, MemberState::kAlive, /*is_new=*/true);
  ++count_;
}

void Members::reserve(std::size_t n) {
  word_.reserve(std::max(n, dir_->slot_limit()));
  text_.reserve(std::max(n, dir_->slot_limit()));
}

std::size_t Members::memory_bytes() const {
  return word_.capacity() * sizeof(std::uint64_t) +
         text_.capacity() * sizeof(MemberDirectory::Text) + 
         suspects_.capacity() * sizeof(Suspicion) + down_since_.size() * 32;
}

std::vector<NodeId> Members::random_alive(std::size_t k, NodeId exclude1, NodeId exclude2) {
  // Up to k distinct alive members, uniformly: random picks from the table (O(k) while most
  // members are alive), falling back to a full scan when picks keep missing.
  std::vector<NodeId> out;
  if (count_ == 0 || k == 0) return out;
  const std::size_t m = text_.size();
  for (std::size_t attempts = 0; out.size() < k && attempts < 8 * k + 16; ++attempts) {
    const auto c = static_cast<Slot>(rng_.below(m));
    if (c == self_ || text_[c] == kNone) continue;
    const NodeId cid = id(c);
    if (state(c) != MemberState::kAlive || cid == exclude1 || cid == exclude2) continue;
    if (std::find(out.begin(), out.end(), cid) != out.end()) continue;
    out.push_back(cid);
  }
  if (out.size() == k) return out;
  out.clear();
  std::size_t seen = 0;
  for_known([&](Slot c) {
    const NodeId cid = id(c);
    if (state(c) != MemberState::kAlive || cid == exclude1 || cid == exclude2) return;
    ++seen;
    if (out.size() < k) {
      out.push_back(cid);
    } else {
      const std::uint64_t j = rng_.below(seen);
      if (j < k) out[j] = cid;
    }
  });
  return out;
}

// ---- probing --------------------------------------------------------------------------------

NodeId Members::next_probe_target() {
  // Randomised round robin (SWIM 4.3): every member once per round, in a fresh order each round.
  // The order is a walk over the slot space by x -> a*x + c mod 2^k (a = 1 mod 4, c odd: a full
  // cycle), with a and c drawn each round, so the table needs no list of its own; a member added
  // during a round is probed when the walk reaches its slot.
  for (std::size_t rounds = 0; rounds < 2; ++rounds) {
    while (probe_steps_ < probe_mod_) {
      const std::size_t x = probe_x_;
      probe_x_ = (probe_a_ * probe_x_ + probe_c_) & (probe_mod_ - 1);
      ++probe_steps_;
      if (x >= text_.size()) continue;
      const auto s = static_cast<Slot>(x);
      if (s != self_ && text_[s] != kNone && is_live(state(s))) return id(s);
    }
    probe_mod_ = 1;
    while (probe_mod_ < text_.size()) probe_mod_ <<= 1;
    probe_a_ = (rng_.next() & ~std::size_t{3}) | 1;
    probe_c_ = rng_.next() | 1;
    probe_x_ = rng_.below(probe_mod_);
    probe_steps_ = 0;
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
  const Slot s = find(probe_.target);
  if (s == kNone) return;
  if (state(s) == MemberState::kAlive) {
    set_state(s, MemberState::kSuspect, incarnation(s), config_.id);
  } else if (state(s) == MemberState::kSuspect) {
    // Already suspected by someone else: our own failed probe is an independent confirmation
    // (Lifeguard), counted here and told to the others so their timeouts shrink too.
    Suspicion* sus = suspicion(s);
    if (sus && sus->confirmations.size() < config_.indirect_checks + 1u &&
        std::find(sus->confirmations.begin(), sus->confirmations.end(), config_.id) ==
            sus->confirmations.end()) {
      sus->confirmations.push_back(config_.id);
      announce(s, config_.id);
    }
  }
}

void Members::probe_tick(std::uint64_t t, const wire::Outbox& out) {
  if (probe_.active && !probe_.acked && !probe_.indirect_sent && t >= probe_.indirect_at_ms) {
    probe_.indirect_sent = true;
    const Slot target = find(probe_.target);
    if (target != kNone) {
      const auto relays = random_alive(config_.indirect_checks, probe_.target, config_.id);
      for (NodeId r : relays) {
        wire::Packet p(out);
        if (!p.open()) break;
        wire::encode(p.w(), wire::PingReq{probe_.seq, probe_.target, address(target)});
        p.send(*address_of(r), /*piggyback=*/true);
        ++probe_.expected_nacks;
        probe_.relays.push_back(r);
        ++counters_.indirect_probes;
      }
    }
    // The indirect stage gets its time as this node lives it: a node that ran late (a stall,
    // a swamped loop) reaches this tick with the probe's end passed too, and judging now
    // would accuse a target whose relays have not had a moment to answer. On time, this is
    // the end already set.
    probe_.end_ms =
        std::max(probe_.end_ms, t + scaled(config_.probe_interval_ms - config_.probe_timeout_ms));
    next_probe_ms_ = std::max(next_probe_ms_, probe_.end_ms);
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
  // The fingerprints first: a receiver that reads them before the ping leaves out of its ack
  // the news this node holds already (older receivers read them in any order).
  wire::encode(p.w(), wire::StateSums{fingerprint(), store_fingerprint_ ? store_fingerprint_() : 0});
  wire::encode(p.w(), wire::Ping{probe_.seq, target});
  p.send(*address_of(target), /*piggyback=*/true);
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
