// rumor::Node and NodeImpl: SWIM membership with Lifeguard, rumor mongering, anti-entropy
// (engine/node/node_sync.cc), and the API. docs/protocol.md explains the algorithms.
#include <algorithm>
#include <cmath>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "engine/node/node_impl.h"

namespace rumor {

namespace {
thread_local const char t_token = 0;

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

wire::WireState to_wire(MemberState s) { return static_cast<wire::WireState>(s); }
MemberState from_wire(wire::WireState s) { return static_cast<MemberState>(s); }
bool is_live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// Incarnations above this are refused (see apply_member): 2^62 leaves room for 2^61 refutations
// above any millisecond start time.
constexpr std::uint64_t kIncarnationMax = std::uint64_t{1} << 62;
// Where the first member record of a table datagram starts: header + Join/JoinReply message.
constexpr std::size_t kTableFirstRecordAt = wire::kHeaderBytes + wire::kMessageHeaderBytes + 4;

// The keys that salt the rate limiters' slot hashes: from the node's seed, not from its random
// stream, so adding a limiter does not change what a simulation replays.
std::uint64_t limiter_key(const NodeConfig& c, std::uint64_t which) {
  std::uint64_t x = (c.seed ? c.seed : c.id) * 0x9e3779b97f4a7c15ull + which;
  return splitmix64(x);
}

// Subject kinds in the broadcast queue.
constexpr std::uint8_t kSubjectMember = 0;
constexpr std::uint8_t kSubjectKey = 1;
}  // namespace

std::uint64_t thread_token() { return reinterpret_cast<std::uintptr_t>(&t_token); }

// ---------------------------------------------------------------------------------------------
// Rng

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() {
  auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Config

std::string_view member_state_name(MemberState s) {
  switch (s) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "unknown";
}

NodeConfig NodeConfig::lan() { return NodeConfig{}; }

NodeConfig NodeConfig::wan() {
  NodeConfig c;
  c.probe_interval_ms = 5000;
  c.probe_timeout_ms = 3000;
  c.suspicion_mult = 6;
  c.gossip_interval_ms = 500;
  c.gossip_fanout = 4;
  c.sync_interval_ms = 60'000;
  c.sync_timeout_ms = 20'000;
  c.dead_reclaim_ms = 6ull * 3'600'000;
  c.reconnect_interval_ms = 30'000;
  return c;
}

NodeConfig NodeConfig::local() {
  NodeConfig c;
  c.probe_interval_ms = 200;
  c.probe_timeout_ms = 100;
  c.suspicion_mult = 3;
  c.gossip_interval_ms = 50;
  c.sync_interval_ms = 2000;
  c.sync_timeout_ms = 1000;
  c.dead_reclaim_ms = 600'000;
  c.reconnect_interval_ms = 1000;
  return c;
}

Status NodeConfig::validate() const {
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  if (name.empty()) return bad("name is empty");
  if (name.size() > name_bytes_max || name_bytes_max > 255) {
    return bad("name is " + std::to_string(name.size()) + " bytes, name_bytes_max is " +
               std::to_string(name_bytes_max) + " (at most 255)");
  }
  if (metadata.size() > metadata_bytes_max) {
    return bad("metadata is " + std::to_string(metadata.size()) +
               " bytes, metadata_bytes_max is " + std::to_string(metadata_bytes_max));
  }
  if (advertise.empty()) return bad("advertise address is empty");
  if (Status s = store.validate(); !s) return s;
  if (store.owners > 64) return bad("store.owners must be at most 64");
  if (store.owners > 1 && encryption != EncryptionMode::kOff) {
    // Sealing and replay windows are one core's state (engine/wire/crypto.h); a multi-core node
    // would need one per core and windows per (sender, core). Not built yet.
    return bad("encryption needs a single-core node for now (store.owners = 1, rumor agent "
               "--cores 1)");
  }
  // One update must fit one datagram: header, message frame, flags, version, two lengths.
  // Every datagram leaves room for the seal (crypto::kSealOverheadBytes), sealed or not.
  const std::size_t entry_max = crypto::kSealOverheadBytes + wire::kHeaderBytes +
                                wire::kMessageHeaderBytes + 1 + 16 + 4 + store.key_bytes_max +
                                store.value_bytes_max;
  if (datagram_bytes_max < 576 || datagram_bytes_max > kDatagramBytesLimit) {
    return bad("datagram_bytes_max must be in [576, 65507], got " +
               std::to_string(datagram_bytes_max));
  }
  if (entry_max > datagram_bytes_max) {
    return bad("key_bytes_max + value_bytes_max (" +
               std::to_string(store.key_bytes_max + store.value_bytes_max) +
               ") leave no room in datagram_bytes_max " + std::to_string(datagram_bytes_max));
  }
  // One member record of the largest name and metadata must fit a datagram after a table
  // message, or table exchanges could not carry it.
  const std::size_t member_max = crypto::kSealOverheadBytes + kTableFirstRecordAt +
                                 wire::kMessageHeaderBytes + 1 + 24 + 19 + 1 + name_bytes_max +
                                 2 + metadata_bytes_max;
  if (member_max > datagram_bytes_max) {
    return bad("name_bytes_max + metadata_bytes_max (" +
               std::to_string(name_bytes_max + metadata_bytes_max) +
               ") leave no room for a member record in datagram_bytes_max " +
               std::to_string(datagram_bytes_max));
  }
  if (store.value_bytes_max > 65535 || store.key_bytes_max > 65535) {
    return bad("key_bytes_max and value_bytes_max must be at most 65535");
  }
  if (probe_interval_ms == 0 || probe_timeout_ms == 0 || probe_timeout_ms >= probe_interval_ms) {
    return bad("probe_timeout_ms must be positive and below probe_interval_ms");
  }
  if (gossip_interval_ms == 0 || sync_interval_ms == 0 || sync_timeout_ms == 0) {
    return bad("gossip_interval_ms, sync_interval_ms and sync_timeout_ms must be positive");
  }
  if (members_max < 2) return bad("members_max must be at least 2");
  if (cluster_label.size() > crypto::kLabelBytesMax) {
    return bad("cluster_label is " + std::to_string(cluster_label.size()) +
               " bytes, at most 255");
  }
  if (keys.size() > kKeysMax) {
    return bad("at most " + std::to_string(kKeysMax) + " keys, got " + std::to_string(keys.size()));
  }
  for (const std::string& k : keys) {
    if (k.size() != kKeyBytes) return bad("a key is 32 bytes, got " + std::to_string(k.size()));
  }
  if (encryption >= EncryptionMode::kSend && keys.empty()) {
    return bad("encryption mode " + std::string(encryption_mode_name(encryption)) +
               " needs at least one key");
  }
  if (peer_bytes_per_s_max < datagram_bytes_max || answer_datagrams_per_s_max == 0 ||
      rate_limit_peers_max == 0 || sync_datagrams_per_tick_max == 0) {
    return bad("peer_bytes_per_s_max must be at least datagram_bytes_max; "
               "answer_datagrams_per_s_max, rate_limit_peers_max and "
               "sync_datagrams_per_tick_max must be positive");
  }
  if (retransmit_mult == 0 || gossip_fanout == 0) {
    return bad("retransmit_mult and gossip_fanout must be positive");
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// NodeImpl

NodeImpl::NodeImpl(const NodeConfig& config, TimeSource& time, std::unique_ptr<Store> store)
    : config_(config),
      time_(time),
      store_(std::move(store)),
      rng_(config.seed ? config.seed : config.id),
      crypto_(config.cluster_label, config.datagram_bytes_max, config.members_max),
      // A burst of one second's worth.
      peer_bytes_(config.rate_limit_peers_max, config.peer_bytes_per_s_max,
                  config.peer_bytes_per_s_max, limiter_key(config, 1)),
      // Per peer, a burst of 8 ticks' worth of a sync's bulk, refilled in one second.
      peer_answers_(config.rate_limit_peers_max, 8.0 * config.sync_datagrams_per_tick_max,
                    8.0 * config.sync_datagrams_per_tick_max, limiter_key(config, 2)),
      answers_(config.answer_datagrams_per_s_max, config.answer_datagrams_per_s_max),
      broadcasts_(config.broadcast_queue_max),
      feed_cursor_(config.store.virtual_shards, 0) {
  limits_.name_bytes_max = config_.name_bytes_max;
  limits_.metadata_bytes_max = config_.metadata_bytes_max;
  limits_.key_bytes_max = config_.store.key_bytes_max;
  limits_.value_bytes_max = config_.store.value_bytes_max;
  label_hash_ = wire::label_hash(config_.cluster_label);
  for (const std::string& k : config_.keys) {
    Status st = crypto_.keyring().install(k);
    RUMOR_ASSERT(st.is_ok());  // validate() checked sizes; duplicates are no-ops
  }
  RUMOR_ASSERT(crypto_.set_mode(config_.encryption).is_ok());
  names_ = std::make_shared<MemberNames>();
  MemberRec self;
  self.id = config_.id;
  self.text = names_->intern(config_.name, config_.metadata);
  self.address = config_.advertise;
  members_.push_back(std::move(self));
  index_put(config_.id, 0);
  const std::uint32_t n = store_->owner_count();
  for (std::uint32_t c = 0; c < n; ++c) {
    auto core = std::make_unique<CoreState>();
    core->index = c;
    constexpr std::size_t kWords = sizeof(NodeCounters) / sizeof(std::uint64_t);
    core->published = std::make_unique<std::atomic<std::uint64_t>[]>(kWords);
    if (c > 0) {
      // The same limits as core 0's below, each core with its own keys.
      core->peer_bytes = std::make_unique<PeerLimiter>(
          config.rate_limit_peers_max, config.peer_bytes_per_s_max, config.peer_bytes_per_s_max,
          limiter_key(config, 1 + 2 * c));
      core->peer_answers = std::make_unique<PeerLimiter>(
          config.rate_limit_peers_max, 8.0 * config.sync_datagrams_per_tick_max,
          8.0 * config.sync_datagrams_per_tick_max, limiter_key(config, 2 + 2 * c));
      core->answers = std::make_unique<TokenBucket>(config.answer_datagrams_per_s_max,
                                                    config.answer_datagrams_per_s_max);
    }
    cores_.push_back(std::move(core));
  }
  // One SPSC link per ordered pair of cores (none for a single-core node), as deep as the
  // store's write queue: everything that crosses is bounded by it.
  if (n > 1) {
    links_.resize(static_cast<std::size_t>(n) * n);
    for (std::uint32_t from = 0; from < n; ++from) {
      for (std::uint32_t to = 0; to < n; ++to) {
        if (from != to) {
          links_[static_cast<std::size_t>(from) * n + to] =
              std::make_unique<SpscQueue<CoreMsg>>(config_.store.write_queue_depth);
        }
      }
    }
  }
  init_sync();
}

NodeImpl::~NodeImpl() {
  for (const MemberRec& m : members_) names_->release(m.text);
}

void NodeImpl::share_names(std::shared_ptr<MemberNames> names) {
  RUMOR_ASSERT(!running_);
  for (MemberRec& m : members_) {
    const MemberNames::Handle h = names->intern(name_of(m), metadata_of(m));
    names_->release(m.text);
    m.text = h;
  }
  names_ = std::move(names);
}

std::uint32_t NodeImpl::retransmit_limit() const {
  const auto n = static_cast<double>(live_count_ + 1);
  return config_.retransmit_mult * static_cast<std::uint32_t>(std::ceil(std::log2(n + 1)));
}

NodeImpl::MemberRec* NodeImpl::find(NodeId id) {
  const std::uint32_t pos = index_of(id);
  return pos == IdIndex::kNone ? nullptr : &members_[pos];
}

void NodeImpl::note_state(NodeId id, MemberState previous, MemberState next, bool is_new) {
  // Incremental: a thousand-node view must not be rescanned on every change.
  if (!is_new && is_live(previous)) --live_count_;
  if (is_live(next)) ++live_count_;
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

void NodeImpl::adjust_health(int delta) {
  if (delta > 0 && lhm_ < config_.awareness_max) ++lhm_;
  if (delta < 0 && lhm_ > 0) --lhm_;
  counters_.local_health = lhm_;
}

void NodeImpl::start(PacketSink& out) {
  RUMOR_ASSERT(!running_);
  // Release: the store binding and everything start() set up are visible to writer threads
  // that see this token (they then queue instead of writing directly).
  store_->bind_owner(0);
  cores_[0]->thread.store(thread_token(), std::memory_order_release);
  running_ = true;
  leaving_ = false;
  const std::uint64_t t = now();
  // A fresh incarnation above any this node used before a restart: its start time.
  self().incarnation = std::max<std::uint64_t>(self().incarnation + 1, t);
  self().state = MemberState::kAlive;
  self().state_since_ms = t;
  crypto_.start(t);
  broadcast_member(self(), config_.id);
  // Spread the first timers so a thousand nodes started at once do not probe in lockstep.
  next_probe_ms_ = t + rng_.below(config_.probe_interval_ms) + 1;
  next_gossip_ms_ = t + rng_.below(config_.gossip_interval_ms) + 1;
  next_sync_ms_ = t + config_.sync_interval_ms / 2 + rng_.below(config_.sync_interval_ms);
  next_maintenance_ms_ = t + 1000;
  joined_ = config_.seeds.empty();
  if (!joined_) send_join(out);
  next_reconnect_ms_ = t + config_.reconnect_interval_ms;
}

void NodeImpl::stop(PacketSink& out) {
  if (!running_) return;
  leaving_ = true;
  self().incarnation += 1;
  self().state = MemberState::kLeft;
  broadcast_member(self(), config_.id);
  // Tell a few members directly; the rest hear it by gossip from them.
  const auto targets = random_members(config_.gossip_fanout * 2, config_.id, config_.id);
  for (NodeId id : targets) {
    Packet p(*this, out);
    if (!p.open()) break;
    p.send(find(id)->address, /*piggyback=*/true);
  }
  ++counters_.leaves;
  running_ = false;
}

void NodeImpl::send_join(PacketSink& out) {
  next_join_ms_ = now() + 2ull * config_.probe_interval_ms;
  for (const Address& seed : config_.seeds) {
    if (seed == config_.advertise) continue;
    send_member_table(seed, wire::MsgType::kJoin, /*reply_wanted=*/true, out);
  }
}

void NodeImpl::send_member_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                                 PacketSink& out) {
  // Push-pull of membership (memberlist's state sync): this node's whole table, as many
  // datagrams as it takes (bounded by members_max). Every datagram opens with a kJoin or
  // kJoinReply message so the receiver treats its records as state, not as fresh news; only the
  // first kJoin asks for the receiver's table back. Dead and suspect members are included:
  // that is how a partition that healed finds out (docs/protocol.md, "Healing").
  Packet p(*this, out);
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
    const MemberRec& m = members_[i];
    const std::size_t mark = p.w().size();
    wire::encode(p.w(), wire::MemberMsg{to_wire(m.state), m.incarnation, m.id, config_.id,
                                        m.address, name_of(m), metadata_of(m)});
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

void NodeImpl::reconnect_tick(std::uint64_t t, PacketSink& out) {
  if (t < next_reconnect_ms_) return;
  next_reconnect_ms_ = t + config_.reconnect_interval_ms;
  // A node with no live member left goes back to its seeds.
  if (live_count_ == 0 && !config_.seeds.empty()) send_join(out);
  // Serf's reconnect: offer our table to one random dead (not left) member. If it was only cut
  // off, it answers with its own, both sides learn what the other believes, and refutations
  // bring the two views back together.
  std::size_t seen = 0, pick = 0;
  for (std::size_t i = 1; i < members_.size(); ++i) {
    if (members_[i].state != MemberState::kDead) continue;
    if (rng_.below(++seen) == 0) pick = i;
  }
  if (seen == 0) return;
  send_member_table(members_[pick].address, wire::MsgType::kJoin, /*reply_wanted=*/true, out);
}

// ---- membership ----------------------------------------------------------------------------

void NodeImpl::broadcast_member(const MemberRec& rec, NodeId from) {
  const std::string_view name = name_of(rec), metadata = metadata_of(rec);
  std::string msg(wire::kMessageHeaderBytes + 64 + name.size() + metadata.size(), '\0');
  wire::Writer w(std::as_writable_bytes(std::span<char>(msg.data(), msg.size())));
  wire::encode(w, wire::MemberMsg{to_wire(rec.state), rec.incarnation, rec.id, from, rec.address,
                                  name, metadata});
  RUMOR_ASSERT(w.ok());
  msg.resize(w.size());
  broadcasts_.push(kSubjectMember, rec.id, BroadcastQueue::kMembership, std::move(msg));
  ++counters_.broadcasts_queued;
}

void NodeImpl::emit_membership(const MemberRec& rec, MemberState previous, bool joined) {
  if (membership_cbs_.empty()) return;
  if (events_.size() >= config_.events_max) {
    ++counters_.events_dropped;
    return;
  }
  Pending p;
  p.membership.member = to_member(rec);
  p.membership.previous = previous;
  p.membership.joined = joined;
  events_.push_back(std::move(p));
}

NodeImpl::MemberRec& NodeImpl::add_member(const wire::MemberMsg& m) {
  MemberRec rec;
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

void NodeImpl::set_state(MemberRec& rec, MemberState state, std::uint64_t incarnation,
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
  broadcast_member(rec, from);
  emit_membership(rec, previous, !is_live(previous) && is_live(state));
}

void NodeImpl::refute(std::uint64_t claimed_incarnation) {
  if (leaving_) return;
  self().incarnation = std::max(self().incarnation, claimed_incarnation) + 1;
  RUMOR_ASSERT(self().incarnation <= kIncarnationMax);
  broadcast_member(self(), config_.id);
  ++counters_.refutations;
  // Lifeguard: being suspected is a hint that this node is the slow one.
  adjust_health(+1);
}

void NodeImpl::apply_member(const wire::MemberMsg& m_in, bool state_sync) {
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
  MemberRec* rec = find(m.node);
  if (!rec) {
    // Only an alive claim introduces a member. A suspicion or death of someone unknown (a
    // member this node already forgot) must not bring it back (memberlist does the same).
    if (m_in.state != wire::WireState::kAlive) return;
    if (members_.size() >= config_.members_max) return;
    MemberRec& added = add_member(m);
    if (!state_sync || m.node == m.from) broadcast_member(added, m.from);
    emit_membership(added, MemberState::kDead, /*joined=*/true);
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
      if (!state_sync || m.node == m.from) broadcast_member(*rec, m.from);
      if (previous != MemberState::kAlive) {
        emit_membership(*rec, previous, !is_live(previous));
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
          broadcast_member(*rec, m.from);
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

std::uint64_t NodeImpl::suspicion_timeout_ms(const MemberRec& rec) const {
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

std::vector<Member> NodeImpl::members() const {
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& m : members_) {
    out.push_back(to_member(m));
  }
  return out;
}

void NodeImpl::preload_member(NodeId id, MemberNames::Handle text, const Address& address,
                              std::uint64_t incarnation) {
  RUMOR_ASSERT(!running_);
  // No lookup first (10^8 of them are cache misses): ids are distinct by construction, and the
  // index size says if one was not.
  if (id == config_.id || members_.size() >= config_.members_max) return;
  MemberRec rec;
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

void NodeImpl::reserve_members(std::size_t n) {
  members_.reserve(n);
  probe_order_.reserve(n);
  index_.reserve(n, [this](std::uint32_t p) { return members_[p].id; });
}

std::vector<NodeId> NodeImpl::random_members(std::size_t k, NodeId exclude1, NodeId exclude2) {
  // Up to k distinct alive members, uniformly: random picks from the table (O(k) while most
  // members are alive), falling back to a full scan when picks keep missing.
  std::vector<NodeId> out;
  if (members_.size() <= 1 || k == 0) return out;
  const std::size_t m = members_.size() - 1;
  for (std::size_t attempts = 0; out.size() < k && attempts < 8 * k + 16; ++attempts) {
    const MemberRec& c = members_[1 + rng_.below(m)];
    if (c.state != MemberState::kAlive || c.id == exclude1 || c.id == exclude2) continue;
    if (std::find(out.begin(), out.end(), c.id) != out.end()) continue;
    out.push_back(c.id);
  }
  if (out.size() == k) return out;
  out.clear();
  std::size_t seen = 0;
  for (std::size_t i = 1; i < members_.size(); ++i) {
    const MemberRec& c = members_[i];
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

NodeId NodeImpl::next_probe_target() {
  // Randomised round robin (SWIM 4.3): every member once per round, in a fresh random order.
  for (std::size_t attempts = 0; attempts < 2; ++attempts) {
    while (probe_pos_ < probe_order_.size()) {
      const NodeId id = probe_order_[probe_pos_++];
      const MemberRec* m = find(id);
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

void NodeImpl::finish_probe() {
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
  MemberRec* m = find(probe_.target);
  if (m && m->state == MemberState::kAlive) {
    set_state(*m, MemberState::kSuspect, m->incarnation, config_.id);
  }
}

void NodeImpl::probe_tick(std::uint64_t t, PacketSink& out) {
  if (probe_.active && !probe_.acked && !probe_.indirect_sent && t >= probe_.indirect_at_ms) {
    probe_.indirect_sent = true;
    const MemberRec* target = find(probe_.target);
    if (target) {
      const auto relays = random_members(config_.indirect_checks, probe_.target, config_.id);
      for (NodeId r : relays) {
        Packet p(*this, out);
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
  Packet p(*this, out);
  if (!p.open()) return;
  wire::encode(p.w(), wire::Ping{probe_.seq, target});
  p.send(find(target)->address, /*piggyback=*/true);
  ++counters_.probes_sent;
}

void NodeImpl::handle_ack(NodeId sender, std::uint32_t seq, PacketSink& out) {
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
    Packet p(*this, out);
    if (p.open()) {
      wire::encode_ack(p.w(), it->requester_seq);
      p.send(it->requester, /*piggyback=*/true);
    }
    relays_.erase(it);
    return;
  }
}

void NodeImpl::handle_nack(NodeId sender, std::uint32_t seq) {
  if (!probe_.active || seq != probe_.seq) return;
  // Each relay we asked counts once.
  auto it = std::find(probe_.relays.begin(), probe_.relays.end(), sender);
  if (it == probe_.relays.end()) return;
  const auto bit = std::uint64_t{1} << (static_cast<std::size_t>(it - probe_.relays.begin()) & 63);
  if (probe_.nacked & bit) return;
  probe_.nacked |= bit;
  ++probe_.nacks;
}

void NodeImpl::handle_ping_req(const Address& from, const wire::PingReq& m, PacketSink& out) {
  constexpr std::size_t kRelaysMax = 1024;  // bounded: a flood of ping-reqs cannot grow memory
  if (relays_.size() >= kRelaysMax) return;
  const std::uint64_t t = now();
  Relay r;
  r.local_seq = next_seq_++;
  r.requester = from;
  r.requester_seq = m.seq;
  r.nack_at_ms = t + config_.probe_timeout_ms * 4 / 5;
  r.expire_ms = t + config_.probe_interval_ms;
  Packet p(*this, out);
  if (!p.open()) return;
  wire::encode(p.w(), wire::Ping{r.local_seq, m.target});
  p.send(m.target_addr, /*piggyback=*/true);
  relays_.push_back(r);
}

void NodeImpl::relay_tick(std::uint64_t t, PacketSink& out) {
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->nack_at_ms != 0 && t >= it->nack_at_ms) {
      Packet p(*this, out);
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

// ---- dissemination --------------------------------------------------------------------------

void NodeImpl::queue_entry(const EntryView& e) {
  std::string msg(wire::kMessageHeaderBytes + 1 + 16 + 4 + e.key.size() + e.value.size(), '\0');
  wire::Writer w(std::as_writable_bytes(std::span<char>(msg.data(), msg.size())));
  wire::encode(w, wire::EntryMsg{e.tombstone, e.version, e.key, e.value});
  RUMOR_ASSERT(w.ok());
  const auto prio = msg.size() <= BroadcastQueue::kSmallUpdateBytes ? BroadcastQueue::kSmallUpdate
                                                                    : BroadcastQueue::kLargeUpdate;
  broadcasts_.push(kSubjectKey, Store::hash_key(e.key), prio, std::move(msg));
  ++counters_.broadcasts_queued;
}

void NodeImpl::pump_feeds() {
  // Every change applied to the store — local writes, merges from packets, anti-entropy — is
  // re-broadcast (rumor mongering: an infected node spreads) and offered to subscribers. Here
  // the shards of core 0; the other cores send theirs over (pump_core_feeds).
  const std::uint32_t step = cores();
  for (std::uint32_t s = 0; s < store_->shard_count(); s += step) {
    Shard& shard = store_->shard(s);
    if (feed_cursor_[s] == shard.feed_head()) continue;
    shard.read_feed(&feed_cursor_[s], SIZE_MAX, [&](const ChangeRecord& rec) {
      shard.find_hash(rec.key_hash, [&](const EntryView& e) {
        if (e.version != rec.version) return;  // superseded: a later record carries it
        offer_change(e, rec.local);
      });
    });
  }
}

void NodeImpl::offer_change(const EntryView& e, bool local) {
  queue_entry(e);
  if (subscriptions_.empty()) return;
  bool wanted = false;
  for (const auto& sub : subscriptions_) {
    if (e.key.substr(0, sub.prefix.size()) == sub.prefix) wanted = true;
  }
  if (!wanted) return;
  if (events_.size() >= config_.events_max) {
    ++counters_.events_dropped;
    return;
  }
  Pending p;
  p.is_change = true;
  p.change = Change{std::string(e.key), std::string(e.value), e.version, e.tombstone, local};
  events_.push_back(std::move(p));
}

void NodeImpl::gossip_tick(PacketSink& out) {
  if (broadcasts_.empty()) return;
  // Alive and suspect members both hear gossip: a suspect may be alive and must learn of the
  // suspicion to refute it.
  std::vector<NodeId> targets = random_members(config_.gossip_fanout, config_.id, config_.id);
  if (!suspects_.empty() && targets.size() == config_.gossip_fanout) {
    // Now and then one slot goes to a suspect, in proportion to how many there are.
    if (rng_.below(live_count_ ? live_count_ : 1) < suspects_.size()) {
      targets.back() = suspects_[rng_.below(suspects_.size())];
    }
  } else if (targets.size() < config_.gossip_fanout && !suspects_.empty()) {
    targets.push_back(suspects_[rng_.below(suspects_.size())]);
  }
  for (NodeId id : targets) {
    if (broadcasts_.empty()) break;
    Packet p(*this, out);
    if (!p.open()) return;
    p.send(find(id)->address, /*piggyback=*/true);
  }
}

// ---- receive and tick -----------------------------------------------------------------------

void NodeImpl::receive(const Address& from, std::span<const std::byte> datagram,
                       PacketSink& out) {
  ++counters_.packets_received;
  counters_.bytes_received += datagram.size();
  receive_counted(from, datagram, out);
}

bool NodeImpl::admit(PeerLimiter& limiter, NodeCounters& k, const Address& from,
                     std::span<const std::byte> datagram, wire::Reader& r, wire::Header* h) {
  if (!limiter.allow(from, static_cast<double>(datagram.size()), now())) {
    ++k.drop_rate_limited;
    return false;
  }
  switch (wire::read_header(r, h)) {
    case wire::HeaderError::kNone: break;
    case wire::HeaderError::kTruncated: ++k.drop_truncated; return false;
    case wire::HeaderError::kBadMagic: ++k.drop_bad_magic; return false;
    case wire::HeaderError::kBadVersion: ++k.drop_bad_version; return false;
  }
  if (h->label_hash != label_hash_) {
    ++k.drop_wrong_label;
    return false;
  }
  if (h->sender == config_.id) {
    ++k.drop_from_self;
    return false;
  }
  return true;
}

void NodeImpl::receive_counted(const Address& from, std::span<const std::byte> datagram,
                               PacketSink& out) {
  if (!running_) return;
  wire::Reader hr(datagram);
  wire::Header h;
  if (!admit(peer_bytes_, counters_, from, datagram, hr, &h)) return;
  if (cores() > 1) {
    // The kernel steers by the target shard; where it could not (no steering program), the
    // datagram goes to its core here. Membership and gossip name shard 0, core 0's.
    const std::uint32_t t = h.shard % cores();
    if (t != 0) {
      hand_datagram(0, t, from, datagram);
      return;
    }
  }
  // The seal/open layer (engine/wire/crypto.h): from here on only authenticated (or, by the mode,
  // accepted plaintext) messages are read.
  const crypto::Opened opened = crypto_.open(datagram, h.sender);
  switch (opened.kind) {
    case crypto::Opened::Kind::kPlain: break;
    case crypto::Opened::Kind::kOpened: ++counters_.packets_opened; break;
    case crypto::Opened::Kind::kBadFlags: ++counters_.drop_malformed; return;
    case crypto::Opened::Kind::kTruncated: ++counters_.drop_truncated; return;
    case crypto::Opened::Kind::kSealedRefused: ++counters_.drop_sealed_refused; return;
    case crypto::Opened::Kind::kUnknownKey: ++counters_.drop_unknown_key; return;
    case crypto::Opened::Kind::kAuthFailed: ++counters_.drop_auth_failed; return;
    case crypto::Opened::Kind::kReplayed: ++counters_.drop_replayed; return;
    case crypto::Opened::Kind::kPlaintextRefused: ++counters_.drop_plaintext_refused; return;
  }
  wire::Reader r(opened.messages);
  store_->drain_writes(0, 1024);

  std::vector<EntryView>& merge_in = cores_[0]->merge_in;
  merge_in.clear();
  bool join_requested = false;
  bool state_sync = false;  // this datagram's member records are a table, not news
  bool malformed = false;
  wire::Message msg;
  while (wire::next_message(r, &msg)) {
    switch (msg.type) {
      case wire::MsgType::kPing: {
        wire::Ping m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        if (m.target != config_.id) break;  // meant for a previous owner of this address
        Packet p(*this, out);
        if (p.open()) {
          wire::encode_ack(p.w(), m.seq);
          p.send(from, /*piggyback=*/true);
        }
        break;
      }
      case wire::MsgType::kAck: {
        std::uint32_t seq;
        if (!wire::decode_seq(msg.body, &seq)) {
          malformed = true;
          break;
        }
        handle_ack(h.sender, seq, out);
        break;
      }
      case wire::MsgType::kNack: {
        std::uint32_t seq;
        if (!wire::decode_seq(msg.body, &seq)) {
          malformed = true;
          break;
        }
        handle_nack(h.sender, seq);
        break;
      }
      case wire::MsgType::kPingReq: {
        wire::PingReq m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        handle_ping_req(from, m, out);
        break;
      }
      case wire::MsgType::kMember: {
        wire::MemberMsg m;
        if (!wire::decode(msg.body, limits_, &m)) {
          malformed = true;
          break;
        }
        apply_member(m, state_sync);
        break;
      }
      case wire::MsgType::kEntry:
        if (!take_entry(msg.body, merge_in)) malformed = true;
        break;
      case wire::MsgType::kJoin: {
        wire::Reader jr(msg.body);
        const std::uint8_t flags = jr.u8();
        if (!jr.ok() || !jr.empty() || flags > 1) {
          malformed = true;
          break;
        }
        state_sync = true;
        if (flags & 1) join_requested = true;
        break;
      }
      case wire::MsgType::kJoinReply:
        // The first seed to answer is the first anti-entropy peer: a joining node catches up
        // on the whole state right away instead of waiting for its first sync interval.
        if (!joined_ && config_.join_sync) prefer_sync_peer(h.sender);
        joined_ = true;
        state_sync = true;
        break;
      case wire::MsgType::kSyncRequest:
        handle_sync_request(0, from, h.shard, msg.body, out, /*answer_only=*/false);
        break;
      case wire::MsgType::kSyncResponse:
        handle_sync_response(0, h.sender, msg.body, out);
        break;
      default:
        ++counters_.drop_unknown_type;
        break;
    }
    if (malformed) break;
  }
  if (malformed || !r.ok()) ++counters_.drop_malformed;

  // Entries of this datagram (everything decoded before any malformed message) merge as one
  // batch; the views point into the datagram, which outlives this call.
  if (cores() > 1) split_foreign(0, merge_in);
  merge_core(0);
  // A join answer is many datagrams for one small request: rate-limited per source address
  // like anti-entropy, so a spoofed flood of joins cannot turn a node into an amplifier.
  if (join_requested) {
    // Charged by the datagrams the answer takes (about 25 members each).
    if (answer_allowed(0, from, now(), 1.0 + static_cast<double>(members_.size()) / 25.0)) {
      send_member_table(from, wire::MsgType::kJoinReply, false, out);
    } else {
      ++counters_.sync_rate_limited;
    }
  }
  if (live_count_ > 0) joined_ = true;
  pump_feeds();
}

void NodeImpl::tick(PacketSink& out) {
  store_->drain_writes(0, 4096);
  if (!running_) return;
  if (cores() > 1) drain_links(0, out);
  const std::uint64_t t = now();
  if (!joined_ && t >= next_join_ms_) send_join(out);
  reconnect_tick(t, out);
  probe_tick(t, out);
  relay_tick(t, out);
  // Suspicion timeouts: a suspect that did not refute in time is declared dead.
  for (std::size_t i = 0; i < suspects_.size();) {
    MemberRec& m = *find(suspects_[i]);
    if (t >= m.suspect_start_ms + suspicion_timeout_ms(m)) {
      set_state(m, MemberState::kDead, m.incarnation, config_.id);  // removes it from suspects_
      ++counters_.deaths_declared;
    } else {
      ++i;
    }
  }
  pump_feeds();
  if (t >= next_gossip_ms_) {
    gossip_tick(out);
    next_gossip_ms_ = t + config_.gossip_interval_ms;
  }
  sync_tick(t, out);
  if (t >= next_maintenance_ms_) {
    maintenance_tick(t);
    next_maintenance_ms_ = t + 1000;
  }
}

void NodeImpl::maintenance_tick(std::uint64_t t) {
  core_maintenance(0, t);
  // Forget members dead or gone for longer than dead_reclaim_ms.
  for (std::size_t i = members_.size(); i-- > 1;) {
    const MemberRec& m = members_[i];
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

void NodeImpl::core_maintenance(std::uint32_t c, std::uint64_t t) {
  store_->collect_garbage(c);
  // Purge expired tombstones, a few shards per second in turn (a purge scans the shard's whole
  // table), and only shards that hold tombstones at all. With a grace period of hours, visiting
  // each shard every few seconds is plenty. Each core purges its own shards.
  CoreState& core = *cores_[c];
  const std::uint32_t owned = store_->shard_count() / cores();
  constexpr std::uint32_t kShardsPerTick = 4;
  for (std::uint32_t k = 0; k < kShardsPerTick && k < owned; ++k) {
    Shard& shard = store_->shard((core.purge_cursor++ % owned) * cores() + c);
    if (shard.counters().tombstones > 0) shard.purge_tombstones(t);
  }
}

std::uint64_t NodeImpl::next_deadline_ms() const {
  if (!running_) return UINT64_MAX;
  if (cores() > 1 && links_pending(0)) return 0;  // another core handed work over
  std::uint64_t d = std::min({next_probe_ms_, next_gossip_ms_, sync_deadline_ms(0),
                              next_maintenance_ms_});
  if (probe_.active && !probe_.acked && !probe_.indirect_sent) d = std::min(d, probe_.indirect_at_ms);
  if (!joined_) d = std::min(d, next_join_ms_);
  d = std::min(d, next_reconnect_ms_);
  for (const auto& r : relays_) {
    if (r.nack_at_ms) d = std::min(d, r.nack_at_ms);
    d = std::min(d, r.expire_ms);
  }
  for (NodeId id : suspects_) {
    const MemberRec& m = members_[index_of(id)];
    d = std::min(d, m.suspect_start_ms + suspicion_timeout_ms(m));
  }
  return d;
}

std::size_t NodeImpl::dispatch_events() {
  std::size_t n = 0;
  // Bounded by what was queued when the call began: callbacks that write do not loop forever.
  std::size_t budget = events_.size();
  while (budget-- > 0 && !events_.empty()) {
    Pending p = std::move(events_.front());
    events_.pop_front();
    if (p.is_change) {
      for (const auto& sub : subscriptions_) {
        if (p.change.key.compare(0, sub.prefix.size(), sub.prefix) == 0) sub.cb(p.change);
      }
    } else {
      for (const auto& cb : membership_cbs_) cb(p.membership);
    }
    ++n;
  }
  return n;
}

Status NodeImpl::write(std::string_view key, std::string_view value, bool tombstone) {
  // On the driver thread of the key's owner core (or before start) the store takes the write
  // directly; from any other thread it is queued for that core, which its waker calls up.
  const std::uint32_t owner = cores() > 1 ? store_->owner_of_shard(store_->shard_of(key)) : 0;
  CoreState& core = *cores_[owner];
  const std::uint64_t driver = core.thread.load(std::memory_order_acquire);  // see start()
  if (driver == 0 || driver == thread_token()) {
    auto r = tombstone ? store_->del(key) : store_->set(key, value);
    return r ? Status::ok() : r.status();
  }
  Status st = tombstone ? store_->submit_del(key) : store_->submit_set(key, value);
  if (st) {
    if (owner == 0 && waker_) waker_();
    if (owner != 0 && core.waker) core.waker();
  }
  return st;
}

Status NodeImpl::set(std::string_view key, std::string_view value) {
  return write(key, value, false);
}

Status NodeImpl::del(std::string_view key) { return write(key, {}, true); }

void NodeImpl::subscribe(std::string_view prefix, Node::ChangeCallback cb) {
  subscriptions_.push_back(Subscription{std::string(prefix), std::move(cb)});
}

void NodeImpl::on_membership(Node::MembershipCallback cb) {
  membership_cbs_.push_back(std::move(cb));
}

const NodeCounters& NodeImpl::counters() const {
  counters_.local_health = lhm_;
  counters_.broadcasts_dropped = broadcasts_.dropped();
  if (cores() == 1) return counters_;
  // The other cores' published copies, summed word by word (NodeCounters is all uint64_t).
  constexpr std::size_t kWords = sizeof(NodeCounters) / sizeof(std::uint64_t);
  std::uint64_t words[kWords];
  std::memcpy(words, &counters_, sizeof(words));
  for (std::uint32_t c = 1; c < cores(); ++c) {
    // Relaxed: statistics, each word on its own; they order nothing.
    for (std::size_t i = 0; i < kWords; ++i) {
      words[i] += cores_[c]->published[i].load(std::memory_order_relaxed);
    }
  }
  std::memcpy(&summed_, words, sizeof(words));
  return summed_;
}

// ---------------------------------------------------------------------------------------------
// Node

Node::Node(std::unique_ptr<NodeImpl> impl) : impl_(std::move(impl)) {}
Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::create(const NodeConfig& config_in, TimeSource& time) {
  NodeConfig config = config_in;
  if (config.id == 0 && !config.name.empty()) {
    config.id = XXH3_64bits(config.name.data(), config.name.size());
    if (config.id == 0) config.id = 1;
  }
  if (Status s = config.validate(); !s) return s;
  auto store = Store::create(config.store, config.id, time);
  if (!store) return store.status();
  return std::unique_ptr<Node>(
      new Node(std::make_unique<NodeImpl>(config, time, std::move(store).value())));
}

const NodeConfig& Node::config() const { return impl_->config(); }
NodeId Node::id() const { return impl_->id(); }
void Node::start(PacketSink& out) { impl_->start(out); }
void Node::stop(PacketSink& out) { impl_->stop(out); }
bool Node::running() const { return impl_->running(); }
void Node::receive(const Address& from, std::span<const std::byte> d, PacketSink& out) {
  impl_->receive(from, d, out);
}
void Node::tick(PacketSink& out) { impl_->tick(out); }
std::uint64_t Node::next_deadline_ms() const { return impl_->next_deadline_ms(); }
std::size_t Node::dispatch_events() { return impl_->dispatch_events(); }
Status Node::set(std::string_view key, std::string_view value) { return impl_->set(key, value); }
Status Node::del(std::string_view key) { return impl_->del(key); }

std::optional<std::string> Node::get(std::string_view key) const {
  std::string v;
  if (!impl_->store().get(key, &v)) return std::nullopt;
  return v;
}

std::optional<Node::Entry> Node::get_entry(std::string_view key) const {
  auto e = impl_->store().get_entry(key);
  if (!e) return std::nullopt;
  return Entry{std::move(e->key), std::move(e->value), e->version, e->tombstone};
}

std::vector<Node::Entry> Node::scan_prefix(std::string_view prefix, std::size_t limit) const {
  std::vector<Entry> out;
  const Store& s = impl_->store();
  for (std::uint32_t i = 0; i < s.shard_count(); ++i) {
    s.shard(i).scan([&](const rumor::Entry& e) {
      if (e.tombstone || e.key.compare(0, prefix.size(), prefix) != 0) return;
      out.push_back(Entry{e.key, e.value, e.version, false});
    });
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<Member> Node::members() const { return impl_->members(); }

Status Node::install_key(std::string_view raw_key) {
  return impl_->crypto().keyring().install(raw_key);
}
Status Node::use_key(std::string_view ref) { return impl_->crypto().keyring().use(ref); }
Status Node::remove_key(std::string_view ref) { return impl_->crypto().remove_key(ref); }
std::vector<KeyInfo> Node::keys() const { return impl_->crypto().keyring().list(); }
Status Node::set_encryption(EncryptionMode mode) {
  if (impl_->cores() > 1 && mode != EncryptionMode::kOff) {
    return Status::error(Code::kInvalidArgument,
                         "encryption needs a single-core node for now (this one has " +
                             std::to_string(impl_->cores()) + " owner cores: rumor agent --cores 1)");
  }
  return impl_->crypto().set_mode(mode);
}
EncryptionMode Node::encryption() const { return impl_->crypto().mode(); }
void Node::subscribe(std::string_view prefix, ChangeCallback cb) {
  impl_->subscribe(prefix, std::move(cb));
}
void Node::on_membership(MembershipCallback cb) { impl_->on_membership(std::move(cb)); }
void Node::set_waker(std::function<void()> waker) { impl_->set_waker(std::move(waker)); }
NodeCounters Node::counters() const { return impl_->counters(); }

}  // namespace rumor
