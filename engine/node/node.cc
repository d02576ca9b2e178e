// NodeImpl: receiving, one dispatch of message types for every core, the home core's duties,
// and local writes. Cross-core work is in engine/node/cores.cc; the facades in node_api.cc.
#include <algorithm>
#include <bit>
#include <cmath>

#include "base/assert.h"
#include "digest/hash.h"
#include "engine/node/node_impl.h"

namespace rumor {

namespace {
// The keys that salt the rate limiters' slot hashes: from the node's seed, not from its random
// stream, so adding a limiter does not change what a simulation replays.
std::uint64_t limiter_key(const NodeConfig& c, std::uint64_t which) {
  std::uint64_t x = (c.seed ? c.seed : c.id) * 0x9e3779b97f4a7c15ull + which;
  return splitmix64(x);
}
}  // namespace

Core::Core(std::uint32_t i, const NodeConfig& config, Store& store, TimeSource& time,
           EntropySource& entropy, std::uint32_t label_hash)
    : index(i),
      crypto(config.cluster_label, config.datagram_bytes_max, config.members_max, entropy,
             static_cast<std::uint8_t>(i)),
      framing{config.datagram_bytes_max, label_hash, config.id, &crypto},
      // This core's share of the address's bytes (see core.h); a burst of one second's worth,
      // and at least a datagram.
      peer_bytes(config.rate_limit_peers_max,
                 static_cast<double>(config.peer_bytes_per_s_max) / store.owner_count(),
                 std::max(static_cast<double>(config.peer_bytes_per_s_max) / store.owner_count(),
                          static_cast<double>(config.datagram_bytes_max)),
                 limiter_key(config, 1 + 2 * i)),
      // Chunks are answers to small requests too, but a value's worth at a time: their own
      // budget, so a large transfer neither starves nor is starved by anti-entropy answers.
      bulk_peer(config.rate_limit_peers_max, config.bulk_datagrams_per_s_max / 4.0,
                config.bulk_datagrams_per_s_max / 4.0, limiter_key(config, 1001 + 2 * i)),
      bulk_all(config.bulk_datagrams_per_s_max, config.bulk_datagrams_per_s_max),
      sync(store, i, config, time, counters) {}

std::vector<std::unique_ptr<Core>> NodeImpl::make_cores(const NodeConfig& config, Store& store,
                                                        TimeSource& time,
                                                        EntropySource& entropy) {
  std::vector<std::unique_ptr<Core>> cores;
  const std::uint32_t label = wire::label_hash(config.cluster_label);
  for (std::uint32_t c = 0; c < store.owner_count(); ++c) {
    cores.push_back(std::make_unique<Core>(c, config, store, time, entropy, label));
  }
  return cores;
}

NodeImpl::NodeImpl(const NodeConfig& config, const NodeEnvironment& env,
                   std::unique_ptr<Store> store)
    : config_(config),
      time_(env.time),
      threads_(*env.threads),
      store_(std::move(store)),
      rng_(config.seed ? config.seed : config.id),
      cores_(make_cores(config_, *store_, env.time, *env.entropy)),
      // Per peer, a burst of 8 ticks' worth of a sync's bulk, refilled in one second.
      peer_answers_(config.rate_limit_peers_max, 8.0 * config.sync_datagrams_per_tick_max,
                    8.0 * config.sync_datagrams_per_tick_max, limiter_key(config, 2)),
      answers_(config.answer_datagrams_per_s_max, config.answer_datagrams_per_s_max),
      links_(store_->owner_count(), config.store.write_queue_depth),
      gossip_(config_, cores_[kHomeCore]->counters),
      members_(config_, env.time, rng_, cores_[kHomeCore]->counters, gossip_),
      bulk_(config_, limits_, *store_, cores_[kHomeCore]->counters, rng_),
      feed_cursor_(config.store.virtual_shards, 0) {
  limits_.name_bytes_max = config_.name_bytes_max;
  limits_.metadata_bytes_max = config_.metadata_bytes_max;
  limits_.key_bytes_max = config_.store.key_bytes_max;
  limits_.value_bytes_max = config_.store.value_bytes_max;
  home().gossip = &gossip_;
  for (std::uint32_t c = 1; c < cores(); ++c) {
    cores_[c]->own_gossip = std::make_unique<Gossip>(config_, cores_[c]->counters);
    cores_[c]->gossip = cores_[c]->own_gossip.get();
  }
  // Entries too large for a reconciliation record are announced, and pulled like gossip's.
  for (auto& c : cores_) {
    c->sync.set_announce([this](const EntryView& e) { return encode_announcement(config_, e); });
  }
  members_.set_store_fingerprint([this] { return store_fingerprint(); });
  for (const std::string& k : config_.keys) {
    Status st = crypto().keyring().install(k);
    RUMOR_ASSERT(st.is_ok());  // validate() checked sizes; duplicates are no-ops
  }
  RUMOR_ASSERT(crypto().set_mode(config_.encryption).is_ok());
  spread_keys();
  if (config_.membership == Membership::kPartial) make_partial();
}

NodeImpl::~NodeImpl() = default;

// ---- lifecycle ------------------------------------------------------------------------------

void NodeImpl::start(std::uint32_t ci, PacketSink& out) {
  RUMOR_ASSERT(ci < cores());
  Core& c = *cores_[ci];
  RUMOR_ASSERT(!c.running);
  store_->bind_owner(ci);
  // Release: the store binding is visible to writer threads that see the token (see write()).
  c.thread.store(threads_.current(), std::memory_order_release);
  c.running = true;
  const std::uint64_t t = now();
  c.next_maintenance_ms = t + 1000;
  c.crypto.start(t);
  if (is_home(c)) {
    members_.start(t);
    // Spread the first timers so a thousand nodes started at once do not gossip in lockstep.
    next_gossip_ms_ = t + rng_.below(config_.gossip_interval_ms) + 1;
    next_sync_ms_ = t + config_.sync_interval_ms / 2 + rng_.below(config_.sync_interval_ms);
    seeds_ = config_.seeds;
    joined_ = seeds_.empty() || partial();
    if (partial()) {
      views_->start(t, seeds_, outbox(c, out));
    } else if (!joined_) {
      send_join(out);
    }
    next_reconnect_ms_ = t + config_.reconnect_interval_ms;
  }
  if (cores() > 1) publish_core(c);
}

void NodeImpl::stop(std::uint32_t ci, PacketSink& out) {
  RUMOR_ASSERT(ci < cores());
  Core& c = *cores_[ci];
  if (!c.running) return;
  c.sync.finish(false);
  if (is_home(c) && partial()) {
    views_->leave(outbox(c, out));
  } else if (is_home(c)) {
    // Tell a few members directly; the rest hear it by gossip from them.
    const wire::Outbox o = outbox(c, out);
    for (const Address& to : members_.leave(config_.gossip_fanout * 2)) {
      wire::Packet p(o);
      if (!p.open()) break;
      p.send(to, /*piggyback=*/true);
    }
  }
  c.running = false;
  if (cores() > 1) publish_core(c);
}

// ---- receiving ------------------------------------------------------------------------------

std::uint32_t NodeImpl::core_of(std::span<const std::byte> datagram) const {
  if (cores() == 1) return 0;
  const std::optional<std::uint16_t> shard = peek_target_shard(datagram);
  return shard ? *shard % cores() : 0;
}

void NodeImpl::receive(std::uint32_t ci, std::span<const ReceivedDatagram> batch,
                       PacketSink& out) {
  RUMOR_ASSERT(ci < cores());
  Core& c = *cores_[ci];
  // Writes other threads queued for this core apply first, once per batch.
  if (c.running) store_->drain_writes(ci, 1024);
  c.merge_in.clear();
  for (const ReceivedDatagram& d : batch) receive_one(c, d.from, d.bytes, out);
  // The entries of the whole batch merge as one store batch (the prefetch pipeline runs across
  // all of them); the views point into the datagrams, which the driver holds until we return,
  // and into the opened frames' buffer.
  merge(c);
  c.opened_used = 0;
  if (c.running) pump_feeds(c);
  if (is_home(c) && members_.live() > 0) set_joined();
  if (cores() > 1) publish_core(c);
}

void NodeImpl::receive_one(Core& c, const Address& from, std::span<const std::byte> datagram,
                           PacketSink& out) {
  ++c.counters.packets_received;
  c.counters.bytes_received += datagram.size();
  if (!c.running) return;
  wire::Reader hr(datagram);
  wire::Header h;
  if (!admit(c, from, datagram, hr, &h)) return;
  const std::uint32_t target = h.shard % cores();
  if (target != c.index) {
    // The kernel steers by the target shard; where it could not (no steering program, or a
    // peer's odd shard), the datagram goes to its core here.
    hand_datagram(c, target, from, datagram);
    return;
  }
  open_and_dispatch(c, from, h, datagram, out);
}

void NodeImpl::receive_handed(Core& c, const Address& from, std::span<const std::byte> datagram,
                              PacketSink& out) {
  // Counted and admitted on the core it arrived at, which handed it here because it is for one
  // of this core's shards.
  wire::Reader hr(datagram);
  wire::Header h;
  if (wire::read_header(hr, &h) != wire::HeaderError::kNone) return;
  open_and_dispatch(c, from, h, datagram, out);
}

void NodeImpl::open_and_dispatch(Core& c, const Address& from, const wire::Header& h,
                                 std::span<const std::byte> datagram, PacketSink& out) {
  // The seal/open layer (engine/wire/crypto.h): from here on only authenticated (or, by the mode,
  // accepted plaintext) messages are read. Every core opens with its own windows.
  crypto::Opened opened;
  if (static_cast<std::uint8_t>(datagram[3]) & crypto::kFlagSealed) {
    // Into this batch's buffer, after the frames opened before it; when it is full, what the
    // batch holds so far merges first, and the buffer starts over.
    if (c.opened.empty()) {
      c.opened.resize(std::max<std::size_t>(48 * 1024, 2 * config_.datagram_bytes_max));
    }
    if (c.opened.size() - c.opened_used < datagram.size()) {
      merge(c);
      c.opened_used = 0;
    }
    opened = c.crypto.open(datagram, h.sender, std::span(c.opened).subspan(c.opened_used));
    if (opened.kind == crypto::Opened::Kind::kOpened) c.opened_used += opened.messages.size();
  } else {
    opened = c.crypto.open(datagram, h.sender);
  }
  NodeCounters& k = c.counters;
  switch (opened.kind) {
    case crypto::Opened::Kind::kPlain: break;
    case crypto::Opened::Kind::kOpened: ++k.packets_opened; break;
    case crypto::Opened::Kind::kBadFlags: ++k.drop_malformed; return;
    case crypto::Opened::Kind::kTruncated: ++k.drop_truncated; return;
    case crypto::Opened::Kind::kSealedRefused: ++k.drop_sealed_refused; return;
    case crypto::Opened::Kind::kUnknownKey: ++k.drop_unknown_key; return;
    case crypto::Opened::Kind::kAuthFailed: ++k.drop_auth_failed; return;
    case crypto::Opened::Kind::kReplayed: ++k.drop_replayed; return;
    case crypto::Opened::Kind::kPlaintextRefused: ++k.drop_plaintext_refused; return;
  }
  dispatch(c, from, h, opened.messages, out);
}

bool NodeImpl::admit(Core& c, const Address& from, std::span<const std::byte> datagram,
                     wire::Reader& r, wire::Header* h) {
  NodeCounters& k = c.counters;
  if (!c.peer_bytes.allow(from, static_cast<double>(datagram.size()), now())) {
    ++k.drop_rate_limited;
    return false;
  }
  switch (wire::read_header(r, h)) {
    case wire::HeaderError::kNone: break;
    case wire::HeaderError::kTruncated: ++k.drop_truncated; return false;
    case wire::HeaderError::kBadMagic: ++k.drop_bad_magic; return false;
    case wire::HeaderError::kBadVersion: ++k.drop_bad_version; return false;
  }
  if (h->label_hash != c.framing.label_hash) {
    ++k.drop_wrong_label;
    return false;
  }
  if (h->sender == config_.id) {
    ++k.drop_from_self;
    return false;
  }
  return true;
}

void NodeImpl::dispatch(Core& c, const Address& from, const wire::Header& h,
                        std::span<const std::byte> messages, PacketSink& out) {
  const wire::Outbox o = outbox(c, out);
  NodeCounters& k = c.counters;
  wire::Reader r(messages);
  bool join_requested = false;
  bool state_sync = false;  // this datagram's member records are a table, not news
  bool malformed = false;
  // What the pinger holds of our state, as a StateSums read before its ping shows: the ack
  // leaves that news out.
  wire::Holds pinger_holds = wire::kHoldsNothing;
  wire::Message msg;
  while (!malformed && wire::next_message(r, &msg)) {
    // Membership and gossip name the home core's shard; every core takes entries and
    // anti-entropy for its own shards.
    const bool home_only = msg.type != wire::MsgType::kEntry &&
                           msg.type != wire::MsgType::kSyncRequest &&
                           msg.type != wire::MsgType::kSyncResponse;
    if (home_only && !is_home(c)) {
      ++k.drop_unknown_type;
      continue;
    }
    if (partial()) {
      const Handled done = dispatch_partial(c, from, h, msg, o);
      if (done == Handled::kMalformed) malformed = true;
      if (done != Handled::kNo) continue;
    }
    switch (msg.type) {
      case wire::MsgType::kPing: {
        wire::Ping m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        members_.on_ping(from, m, o, pinger_holds);
        break;
      }
      case wire::MsgType::kAck:
      case wire::MsgType::kNack: {
        std::uint32_t seq;
        if (!wire::decode_seq(msg.body, &seq)) {
          malformed = true;
          break;
        }
        if (msg.type == wire::MsgType::kAck) {
          members_.on_ack(h.sender, seq, o);
        } else {
          members_.on_nack(h.sender, seq);
        }
        break;
      }
      case wire::MsgType::kPingReq: {
        wire::PingReq m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        members_.on_ping_req(from, m, o);
        break;
      }
      case wire::MsgType::kMember: {
        wire::MemberMsg m;
        if (!wire::decode(msg.body, limits_, &m)) {
          malformed = true;
          break;
        }
        member_in_.push_back({m, state_sync});
        break;
      }
      case wire::MsgType::kEntry:
        if (!take_entry(msg.body, c.merge_in)) malformed = true;
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
        if (!joined_ && config_.join_sync) {
          preferred_sync_peer_ = h.sender;
          next_sync_ms_ = now();
        }
        set_joined();
        state_sync = true;
        break;
      case wire::MsgType::kStateSums: {
        wire::StateSums m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        on_state_sums(c, from, h.sender, m, out);
        pinger_holds = holds_of(m);
        break;
      }
      case wire::MsgType::kMemberDigest:
        // An answer is charged by the datagrams it takes, like a join's.
        if (!members_.on_digest(from, msg.body, o,
                                [&](double cost) { return answer_allowed(from, cost); })) {
          malformed = true;
        }
        break;
      case wire::MsgType::kMemberDiff:
        if (!members_.on_diff(from, msg.body, o)) malformed = true;
        break;
      case wire::MsgType::kEntryRef: {
        wire::EntryRefMsg m;
        if (!wire::decode(msg.body, limits_, &m)) {
          malformed = true;
          break;
        }
        // Pulled only from a live member at its own address: a forged announcement cannot
        // make this node send requests to an address of the forger's choosing.
        if (!is_member_at(h.sender, from)) {
          ++k.bulk_refused;
          break;
        }
        bulk_.on_announce(from, m, now(), o);
        break;
      }
      case wire::MsgType::kChunkRequest: {
        wire::ChunkRequestMsg m;
        if (!wire::decode(msg.body, limits_, &m)) {
          malformed = true;
          break;
        }
        if (!bulk_serve_allowed(c, from, h.sender, std::popcount(m.mask))) {
          ++k.bulk_serve_refused;
          break;
        }
        bulk_.serve(from, m, now(), o);
        break;
      }
      case wire::MsgType::kChunk: {
        wire::ChunkMsg m;
        if (!wire::decode(msg.body, &m)) {
          malformed = true;
          break;
        }
        // A whole, verified value merges at once (the rest of the batch merges after it:
        // LWW does not care about the order).
        bulk_.on_chunk(from, m, now(), o, [&](const EntryView& e) {
          c.merge_in.push_back(e);
          merge(c);
        });
        break;
      }
      case wire::MsgType::kSyncRequest:
        on_sync_request(c, from, h.shard, msg.body, out, /*answer_only=*/false);
        break;
      case wire::MsgType::kSyncResponse:
        c.sync.on_response(h.sender, msg.body, o);
        break;
      default:
        ++k.drop_unknown_type;
        break;
    }
  }
  if (malformed || !r.ok()) ++k.drop_malformed;
  // A datagram's records are applied together: their table lookups are issued at once instead
  // of one cache miss after another (a table transfer carries ~25). The buffer is the home
  // core's: other cores never read it.
  if (is_home(c) && !member_in_.empty()) {
    members_.apply_batch(member_in_);
    member_in_.clear();
  }
  // A join answer is many datagrams for one small request: rate-limited per source address
  // like anti-entropy, so a spoofed flood of joins cannot turn a node into an amplifier.
  if (join_requested) {
    // Charged by the datagrams the answer takes (about 25 members each).
    if (answer_allowed(from, 1.0 + static_cast<double>(members_.size()) / 25.0)) {
      members_.send_table(from, wire::MsgType::kJoinReply, false, o);
    } else {
      ++k.sync_rate_limited;
    }
  }
}

bool NodeImpl::take_entry(std::span<const std::byte> body, std::vector<EntryView>& in) const {
  wire::EntryMsg m;
  if (!wire::decode(body, limits_, &m)) return false;
  in.push_back(EntryView{m.key, m.value, m.version, m.tombstone});
  return true;
}

void NodeImpl::merge(Core& c) {
  if (c.merge_in.empty()) return;
  if (cores() > 1) {
    // Entries of other cores' shards go to their owners; the rest stay, in order.
    std::size_t keep = 0;
    for (const EntryView& e : c.merge_in) {
      const std::uint32_t o = store_->owner_of_shard(store_->shard_of(e.key));
      if (o == c.index) {
        c.merge_in[keep++] = e;
        continue;
      }
      CoreMsg m;
      m.kind = CoreMsg::Kind::kMerge;
      m.tombstone = e.tombstone;
      m.version = e.version;
      m.key.assign(e.key);
      m.value.assign(e.value);
      hand(c, o, std::move(m));
    }
    c.merge_in.resize(keep);
  }
  NodeCounters& k = c.counters;
  c.merge_out.resize(c.merge_in.size());
  store_->merge_batch(c.index, c.merge_in, c.merge_out);
  for (MergeOutcome o : c.merge_out) {
    if (o == MergeOutcome::kApplied) ++k.updates_merged;
    if (o == MergeOutcome::kStale) ++k.updates_stale;
    if (o == MergeOutcome::kRefused) ++k.updates_refused;
  }
  c.merge_in.clear();
}

void NodeImpl::on_sync_request(Core& c, const Address& from, std::uint16_t shard,
                               std::span<const std::byte> body, PacketSink& out,
                               bool answer_only) {
  if (cores() > 1) {
    std::uint64_t owners = c.sync.owners_of_request(body);  // bit per core with records
    if (owners == 0) owners = std::uint64_t{1} << c.index;  // malformed: our responder counts it
    if (!answer_only) {
      // The other owners answer for their shards, from their own sockets.
      for (std::uint32_t o = 0; o < cores(); ++o) {
        if (o == c.index || !(owners >> o & 1)) continue;
        CoreMsg m;
        m.kind = CoreMsg::Kind::kAnswer;
        m.addr = from;
        m.session = shard;
        m.key.assign(reinterpret_cast<const char*>(body.data()), body.size());
        hand(c, o, std::move(m));
      }
    }
    if (!(owners >> c.index & 1)) return;
  }
  if (!answer_allowed(from)) {
    ++c.counters.sync_rate_limited;
    return;
  }
  c.sync.answer(from, shard, body, outbox(c, out));
}

bool NodeImpl::is_member_at(NodeId id, const Address& from) const {
  if (partial()) return views_->knows(id, from);
  const Address* addr = members_.address_of(id);
  return addr && *addr == from && members_.is_alive(id);
}

bool NodeImpl::bulk_serve_allowed(Core& c, const Address& from, NodeId sender, int chunks) {
  // Only a member asking from its own address is served: a request with a forged source
  // cannot aim a window of chunks at an address of the forger's choosing.
  if (!is_member_at(sender, from)) return false;
  const std::uint64_t t = now();
  return c.bulk_peer.allow(from, chunks, t) && c.bulk_all.take(chunks, t);
}

bool NodeImpl::answer_allowed(const Address& from, double cost) {
  // The address's own share first, so one address cannot drain the node's budget. Both are the
  // node's, whichever core answers.
  const std::uint64_t t = now();
  return peer_answers_.allow(from, cost, t) && answers_.take(cost, t);
}

// ---- timers ---------------------------------------------------------------------------------

void NodeImpl::tick(std::uint32_t ci, PacketSink& out) {
  RUMOR_ASSERT(ci < cores());
  Core& c = *cores_[ci];
  store_->drain_writes(ci, 4096);
  if (!c.running) return;
  if (cores() > 1) drain_links(c, out);
  const std::uint64_t t = now();
  c.sync.tick(t, outbox(c, out));
  if (is_home(c)) {
    bulk_.tick(t, outbox(c, out));
    home_tick(out);
  }
  pump_feeds(c);
  if (t >= c.next_maintenance_ms) {
    maintenance(c, t);
    if (is_home(c)) members_.reclaim(t);
    c.next_maintenance_ms = t + 1000;
  }
  if (cores() > 1) publish_core(c);
}

void NodeImpl::home_tick(PacketSink& out) {
  Core& c = home();
  const std::uint64_t t = now();
  if (!keys_due_.empty()) hand_keys();
  if (partial()) {
    pump_feeds(c);
    partial_tick(out);
    sync_tick(t, out);
    return;
  }
  // Members may have arrived in datagrams other cores handed over (drain_links).
  if (members_.live() > 0) set_joined();
  if ((!joined_ && t >= next_join_ms_) || join_requested_) {
    join_requested_ = false;
    send_join(out);
  }
  reconnect_tick(t, out);
  members_.tick(t, outbox(c, out));
  pump_feeds(c);
  if (t >= next_gossip_ms_) {
    gossip_tick(out);
    next_gossip_ms_ = t + config_.gossip_interval_ms;
  }
  sync_tick(t, out);
  catchup_tick(t, out);
}

void NodeImpl::set_joined() {
  if (joined_) return;
  joined_ = true;
  // However this node got in (a join answer, or gossip from members that heard of it first),
  // it holds only part of the table: it catches up by digest.
  members_.set_relay_alive(false);
  next_catchup_ms_ = now() + 2ull * config_.gossip_interval_ms;
  catchup_quiet_ = 0;
  catchup_size_ = members_.size();
}

void NodeImpl::catchup_tick(std::uint64_t t, PacketSink& out) {
  if (t < next_catchup_ms_) return;
  const bool news = members_.size() != catchup_size_ || members_.take_diff_seen();
  catchup_size_ = members_.size();
  catchup_quiet_ = news ? 0 : catchup_quiet_ + 1;
  // Late in a mass join most peers hold what this node holds, so a streak of equal tables
  // says less the larger the cluster: the streak grows with log N (4 at 64 members, 7 at 10,000).
  const auto quiet_rounds = static_cast<std::uint32_t>(std::max(
      4.0, std::ceil(std::log2(static_cast<double>(members_.size()) + 1.0) / 2.0)));
  if (catchup_quiet_ >= quiet_rounds) {
    next_catchup_ms_ = UINT64_MAX;
    members_.set_relay_alive(true);
    return;
  }
  next_catchup_ms_ = t + 2ull * config_.gossip_interval_ms;
  digest_with_random_member(out);
}

void NodeImpl::digest_with_random_member(PacketSink& out) {
  auto pick = members_.random_alive(1, config_.id, config_.id);
  if (pick.empty()) return;
  members_.send_digest(*members_.address_of(pick[0]), static_cast<std::uint32_t>(rng_.next()) | 1,
                       outbox(home(), out));
}

std::uint64_t NodeImpl::next_deadline_ms(std::uint32_t ci) const {
  RUMOR_ASSERT(ci < cores());
  const Core& c = *cores_[ci];
  if (!c.running) return UINT64_MAX;
  if (cores() > 1 && links_.pending_for(ci)) return 0;  // another core handed work over
  std::uint64_t d = std::min(c.sync.deadline_ms(), c.next_maintenance_ms);
  if (!is_home(c)) return d;
  if (partial()) {
    d = std::min({d, views_->next_deadline_ms(), tree_->next_deadline_ms(), bulk_.deadline_ms()});
    return c.sync.active() ? d : std::min(d, next_sync_ms_);
  }
  d = std::min({d, members_.next_deadline_ms(), next_gossip_ms_, next_reconnect_ms_,
                bulk_.deadline_ms()});
  // While a session runs, the next one waits for it (sync_tick), whatever next_sync_ms_ says.
  if (!c.sync.active()) d = std::min(d, next_sync_ms_);
  if (!joined_) d = std::min(d, next_join_ms_);
  if (join_requested_) d = 0;
  d = std::min(d, next_catchup_ms_);
  return d;
}

void NodeImpl::join(std::span<const Address> seeds) {
  if (partial()) {
    views_->set_seeds(seeds);
    return;
  }
  seeds_.clear();
  for (const Address& a : seeds) {
    if (a == config_.advertise) continue;
    if (std::find(seeds_.begin(), seeds_.end(), a) == seeds_.end()) seeds_.push_back(a);
  }
  join_requested_ = !seeds_.empty();
  // Alone (never joined, or every member gone): this is a first join, retried every two probe
  // intervals and followed by catching up (set_joined). In a cluster: a merge, sent once.
  if (join_requested_ && members_.live() == 0) joined_ = false;
}

void NodeImpl::send_join(PacketSink& out) {
  next_join_ms_ = now() + 2ull * config_.probe_interval_ms;
  for (const Address& seed : seeds_) {
    if (seed == config_.advertise) continue;
    members_.send_table(seed, wire::MsgType::kJoin, /*reply_wanted=*/true, outbox(home(), out));
  }
}

void NodeImpl::reconnect_tick(std::uint64_t t, PacketSink& out) {
  if (t < next_reconnect_ms_) return;
  next_reconnect_ms_ = t + config_.reconnect_interval_ms;
  // A node with no live member left goes back to its seeds.
  if (members_.live() == 0 && !seeds_.empty()) send_join(out);
  // Serf's reconnect: offer our table to one random dead (not left) member. If it was only cut
  // off, it answers with its own, both sides learn what the other believes, and refutations
  // bring the two views back together.
  Address dead;
  if (!members_.random_dead(&dead)) return;
  members_.send_table(dead, wire::MsgType::kJoin, /*reply_wanted=*/true, outbox(home(), out));
}

void NodeImpl::gossip_tick(PacketSink& out) {
  // Every other core with changes to spread gets targets of its own (chosen here, where the
  // member table is) and sends from its own socket and queue.
  for (std::uint32_t ci = 1; ci < cores(); ++ci) {
    Core& c = *cores_[ci];
    if (!c.broadcasts_pending.load(std::memory_order_relaxed)) continue;
    CoreMsg m;
    m.kind = CoreMsg::Kind::kGossip;
    m.session = static_cast<std::uint32_t>(members_.live());
    m.targets = gossip_addresses();
    if (!m.targets.empty()) hand(home(), ci, std::move(m));
  }
  if (gossip_.wants_round()) gossip_round(home(), gossip_addresses(), out);
}

std::vector<Address> NodeImpl::gossip_addresses() {
  std::vector<Address> to;
  for (NodeId id : members_.gossip_targets(config_.gossip_fanout)) {
    to.push_back(*members_.address_of(id));
  }
  return to;
}

void NodeImpl::sync_tick(std::uint64_t t, PacketSink& out) {
  if (home().sync.active() || t < next_sync_ms_) return;
  const std::uint64_t interval = sync_interval();
  next_sync_ms_ = t + interval / 2 + rng_.below(interval);
  // A probe that found our store (or table) equal to a peer's within the last interval, with no
  // differing one since, did that exchange's work: state is compared on every probe, and any
  // node that differs starts the repair when it is pinged (on_state_sums). Peers that send no
  // fingerprints (older versions, multi-core stores) leave the times unset, and the schedule
  // runs as before.
  auto matched = [&](std::uint64_t at) { return at != 0 && t < at + interval; };
  const bool store_due = !matched(store_matched_ms_) || preferred_sync_peer_ != 0;
  const bool members_due = !matched(members_matched_ms_);
  if (!store_due) {
    ++home().counters.syncs_skipped;
    if (members_due) digest_with_random_member(out);
    return;
  }
  start_sync(out, 0, members_due);
}

void NodeImpl::gossip_round(Core& c, std::span<const Address> targets, PacketSink& out) {
  const wire::Outbox o = outbox(c, out);
  for (const Address& to : targets) {
    if (!c.gossip->wants_round()) break;
    wire::Packet p(o);
    // Naming one of this core's shards: a receiver with as many cores steers the packet to the
    // core that owns its entries.
    if (!p.open(static_cast<std::uint16_t>(c.index))) return;
    p.send(to, /*piggyback=*/true);
  }
}

std::uint64_t NodeImpl::sync_interval() const {
  // memberlist's push-pull scaling: past 32 members the interval grows with log2(N), so the
  // cluster-wide cost of table exchanges stays near O(N log N) per interval instead of O(N^2).
  std::uint64_t interval = config_.sync_interval_ms;
  const double n = static_cast<double>(members_.live() + 1);
  if (n > 32) interval *= static_cast<std::uint64_t>(std::ceil(std::log2(n) - 5.0)) + 1;
  return interval;
}

std::uint32_t NodeImpl::store_fingerprint() {
  if (cores() > 1) return 0;  // other cores' shards are theirs to read
  const digest::SetSums sums = store_->sums();
  const auto v = static_cast<std::uint32_t>(
      digest::fmix64(sums.hash ^ digest::fmix64(sums.count ^ 0x73746f7265667072ull)));
  return v ? v : 1;
}

void NodeImpl::on_state_sums(Core& c, const Address& from, NodeId sender,
                             const wire::StateSums& m, PacketSink& out) {
  // Only a member pinging from its own address is believed: a forged fingerprint cannot make
  // this node start exchanges with an address of the forger's choosing.
  const std::uint64_t t = now();
  const Address* addr = members_.address_of(sender);
  if (!addr || !(*addr == from) || !members_.is_alive(sender)) {
    // But a ping from a member this node does not hold alive at that address proves the two
    // tables differ, whatever the fingerprints say: the pinger holds us, we do not hold it.
    // Neither side's schedule repairs that when each matches the rest of its own side (the
    // fault explorer found two seeds restarted together forming a cluster of their own, that
    // the others probed for ever). Offer our digest back to the address that pinged, at most
    // once a probe interval, only after catching up, and charged to that address's answer
    // budget like a join's answer, so a forged ping cannot aim much traffic anywhere.
    const double datagrams =
        1.0 + static_cast<double>(std::size_t{2} << Members::digest_bits(members_.size())) / 1200.0;
    if (m.members != 0 && next_catchup_ms_ == UINT64_MAX &&
        t >= members_probe_digest_ms_ + config_.probe_interval_ms &&
        answer_allowed(from, datagrams)) {
      members_probe_digest_ms_ = t;
      ++c.counters.state_sums_differ;
      members_.send_digest(from, static_cast<std::uint32_t>(rng_.next()) | 1, outbox(home(), out));
    }
    return;
  }
  // A difference is acted on only when it outlives the news in flight: rumor mongering
  // delivers a write or a join within a few gossip rounds, and an exchange started meanwhile
  // would repeat its work. So the repair starts at the first differing ping at least two probe
  // intervals after the first one, with no equal ping between; and probe-started exchanges
  // are spaced (a reconciliation by a quarter of the sync interval, a member digest by a probe
  // interval), so a steady stream of writes, never equal anywhere, costs at most four
  // reconciliations per sync interval instead of one per probe.
  const std::uint64_t grace = 2ull * config_.probe_interval_ms;
  auto persists = [&](std::uint64_t& since) {
    if (since == 0) since = t;
    return t >= since + grace;
  };
  bool differs = false, reconcile = false, digest = false;
  if (m.store != 0) {
    const std::uint32_t mine = store_fingerprint();
    if (mine != 0 && mine == m.store) {
      store_matched_ms_ = t;
      store_differ_since_ = 0;
    } else if (mine != 0) {
      differs = true;
      store_matched_ms_ = 0;  // a match before this says nothing about the state now
      reconcile = persists(store_differ_since_) && !home().sync.active() &&
                  t >= probe_sync_ms_ + sync_interval() / 4;
    }
  }
  if (m.members != 0) {
    if (m.members == members_.fingerprint()) {
      members_matched_ms_ = t;
      members_differ_since_ = 0;
      // The tables agree, so the tail of the news that made them agree (past memberlist's
      // budget, riding probes toward the log2 limit) would mostly reach nodes that hold it.
      // Where tables still differ (a formation under way, a one-sided view) no ping matches
      // and the tail keeps riding; a node still lacking something is repaired by the probes'
      // fingerprint comparison.
      gossip_.tables_agree(id());
    } else {
      differs = true;
      members_matched_ms_ = 0;
      // While catching up after a join this node exchanges digests every other round anyway.
      digest = persists(members_differ_since_) && next_catchup_ms_ == UINT64_MAX &&
               t >= members_probe_digest_ms_ + config_.probe_interval_ms;
    }
  }
  if (differs) ++c.counters.state_sums_differ;
  if (digest) {
    members_probe_digest_ms_ = t;
    members_differ_since_ = 0;
  }
  if (reconcile) {
    probe_sync_ms_ = t;
    store_differ_since_ = 0;
    start_sync(out, sender, digest);
  } else if (digest) {
    members_.send_digest(from, static_cast<std::uint32_t>(rng_.next()) | 1, outbox(home(), out));
  }
}

wire::Holds NodeImpl::holds_of(const wire::StateSums& m) {
  // Equal fingerprints: the peer holds every member record (or entry) ours does, up to a 32-bit
  // collision (which costs one copy that peer does not get, of the several the news is sent).
  // Believed from anyone: a forged match only makes the ack to the forger shorter.
  unsigned holds = wire::kHoldsNothing;
  if (m.members != 0 && m.members == members_.fingerprint()) holds |= wire::kHoldsMembers;
  if (m.store != 0 && m.store == store_fingerprint()) holds |= wire::kHoldsStore;
  return static_cast<wire::Holds>(holds);
}

void NodeImpl::start_sync(PacketSink& out, NodeId peer, bool members) {
  if (!peer && preferred_sync_peer_ && members_.is_alive(preferred_sync_peer_)) {
    peer = preferred_sync_peer_;
  }
  preferred_sync_peer_ = 0;
  if (partial()) {
    // Anti-entropy with a random active-view neighbour: it repairs what the tree missed.
    wire::PeerRef p;
    if (!views_->random_active(&p)) return;
    home().sync.begin(p.id, p.address, static_cast<std::uint32_t>(rng_.next()),
                      outbox(home(), out));
    return;
  }
  if (!peer) {
    auto pick = members_.random_alive(1, config_.id, config_.id);
    if (pick.empty()) return;
    peer = pick[0];
  }
  const Address addr = *members_.address_of(peer);
  const wire::Outbox o = outbox(home(), out);
  // Membership rides along (memberlist's periodic push-pull): tables are compared with the
  // same peer, which repairs any membership news that rumor mongering failed to deliver. Only
  // the buckets that differ cross.
  if (members) members_.send_digest(addr, static_cast<std::uint32_t>(rng_.next()) | 1, o);
  // A random session id: echoed by the peer, and it salts the truncated hashes, so a collision
  // that hides a difference in one session does not hide it in the next.
  home().sync.begin(peer, addr, static_cast<std::uint32_t>(rng_.next()), o);
  // The other cores reconcile their shards with the same peer, each in its own session.
  for (std::uint32_t c = 0; c < cores(); ++c) {
    if (c == kHomeCore) continue;
    CoreMsg m;
    m.kind = CoreMsg::Kind::kStartSync;
    m.peer = peer;
    m.addr = addr;
    m.session = static_cast<std::uint32_t>(rng_.next());
    hand(home(), c, std::move(m));
  }
}

void NodeImpl::maintenance(Core& c, std::uint64_t t) {
  store_->collect_garbage(c.index);
  // Purge expired tombstones, a few shards per second in turn (a purge scans the shard's whole
  // table), and only shards that hold tombstones at all. With a grace period of hours, visiting
  // each shard every few seconds is plenty. Each core purges its own shards.
  const std::uint32_t owned = store_->shard_count() / cores();
  constexpr std::uint32_t kShardsPerTick = 4;
  for (std::uint32_t k = 0; k < kShardsPerTick && k < owned; ++k) {
    Shard& shard = store_->shard((c.purge_cursor++ % owned) * cores() + c.index);
    if (shard.counters().tombstones > 0) shard.purge_tombstones(t);
  }
}

// ---- application ----------------------------------------------------------------------------

Status NodeImpl::write(std::string_view key, std::string_view value, bool tombstone) {
  // On the driver thread of the key's owner core (or before start) the store takes the write
  // directly; from any other thread it is queued for that core, which its waker calls up.
  const std::uint32_t owner = cores() > 1 ? store_->owner_of_shard(store_->shard_of(key)) : 0;
  Core& core = *cores_[owner];
  const std::uint64_t driver = core.thread.load(std::memory_order_acquire);  // see start()
  if (driver == 0 || driver == threads_.current()) {
    auto r = tombstone ? store_->del(key) : store_->set(key, value);
    return r ? Status::ok() : r.status();
  }
  Status st = tombstone ? store_->submit_del(key) : store_->submit_set(key, value);
  if (st) wake(owner);
  return st;
}

const NodeCounters& NodeImpl::counters() const {
  // The home core's live counters plus every other core's published copy.
  NodeCounters& home_k = cores_[kHomeCore]->counters;
  home_k.local_health = members_.local_health();
  home_k.broadcasts_dropped = gossip_.dropped();  // the other cores set theirs (publish_core)
  if (cores() == 1) return home_k;
  summed_ = home_k;
  for (std::uint32_t c = 0; c < cores(); ++c) {
    if (c != kHomeCore) cores_[c]->published.add_to(summed_);
  }
  return summed_;
}

}  // namespace rumor
