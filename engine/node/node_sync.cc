// Anti-entropy for NodeImpl: every sync_interval_ms, a push-pull reconciliation of the whole
// store with one random live member through engine/sync/reconcile.h. Its datagrams ride in
// kSyncRequest / kSyncResponse messages; the session retransmits after a lost datagram, and a
// session that does not finish within sync_timeout_ms is abandoned (the next one repairs).
// Responses are rate-limited per peer address so one peer cannot monopolise a node.
//
// With several owner cores, core 0 schedules the rounds and picks the peer; each core runs the
// session for its own shards (ReconcileSession of owner c) over its own socket. Its requests
// name one of its shards (shard c) in the header, and responders echo that shard, so the
// answers are steered back to the core that asked. A request reaching a core holding only some
// of the shards it covers is answered there for those and handed to the owners of the rest.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "base/assert.h"
#include "engine/node/node_impl.h"

#include "engine/sync/reconcile.h"

namespace rumor {

struct NodeImpl::SyncState {
  ReconcileConfig rc;
  std::unique_ptr<ReconcileResponder> responder;
  std::unique_ptr<ReconcileSession> session;
  NodeId peer = 0;
  Address peer_addr;
  NodeId preferred_peer = 0;  // the seed that answered our join: sync with it first
  std::uint64_t started_ms = 0;
  std::uint64_t retransmit_at_ms = 0;
  std::vector<std::uint32_t> tokens;  // per shard, from begin_sync()
};

namespace {
std::span<std::uint8_t> as_u8(std::span<std::byte> s) {
  return {reinterpret_cast<std::uint8_t*>(s.data()), s.size()};
}
std::span<const std::uint8_t> as_u8(std::span<const std::byte> s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
}  // namespace

void NodeImpl::SyncDeleter::operator()(SyncState* s) const { delete s; }

void NodeImpl::init_sync() {
  for (auto& core : cores_) {
    core->sync.reset(new SyncState());
    SyncState& st = *core->sync;
    st.rc = ReconcileConfig::for_store(config_.store);
    st.rc.datagram_bytes_max = static_cast<std::uint32_t>(
        config_.datagram_bytes_max - crypto::kSealOverheadBytes - wire::kHeaderBytes -
        wire::kMessageHeaderBytes);
    RUMOR_ASSERT(st.rc.validate().is_ok());
    st.responder = std::make_unique<ReconcileResponder>(*store_, core->index, st.rc);
  }
}

void NodeImpl::session_tick(std::uint32_t c, std::uint64_t t, PacketSink& out) {
  SyncState& st = *cores_[c]->sync;
  if (!st.session) return;
  if (st.session->done()) {
    finish_sync(c, st.session->complete());
  } else if (t >= st.started_ms + config_.sync_timeout_ms) {
    finish_sync(c, false);
  } else if (t >= st.retransmit_at_ms) {
    st.session->on_timeout();
    st.retransmit_at_ms = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
    pump_sync(c, out);
  }
}

void NodeImpl::sync_tick(std::uint64_t t, PacketSink& out) {
  session_tick(0, t, out);
  if (!cores_[0]->sync->session && t >= next_sync_ms_) {
    // memberlist's push-pull scaling: past 32 members the interval grows with log2(N), so the
    // cluster-wide cost of table exchanges stays near O(N log N) per interval instead of O(N^2).
    std::uint64_t interval = config_.sync_interval_ms;
    const double n = static_cast<double>(live_count_ + 1);
    if (n > 32) interval *= static_cast<std::uint64_t>(std::ceil(std::log2(n) - 5.0)) + 1;
    next_sync_ms_ = t + interval / 2 + rng_.below(interval);
    start_sync(t, out);
  }
}

void NodeImpl::start_sync(std::uint64_t t, PacketSink& out) {
  SyncState& st = *cores_[0]->sync;
  NodeId peer = 0;
  if (st.preferred_peer) {
    const MemberRec* m = find(st.preferred_peer);
    if (m && m->state == MemberState::kAlive) peer = st.preferred_peer;
    st.preferred_peer = 0;
  }
  if (!peer) {
    auto pick = random_members(1, config_.id, config_.id);
    if (pick.empty()) return;
    peer = pick[0];
  }
  const Address addr = find(peer)->address;
  // Membership rides along (memberlist's periodic push-pull): tables are exchanged with the
  // same peer, which repairs any membership news that rumor mongering failed to deliver.
  send_member_table(addr, wire::MsgType::kJoin, /*reply_wanted=*/true, out);
  // A random session id: echoed by the peer, and it salts the truncated hashes, so a collision
  // that hides a difference in one session does not hide it in the next.
  begin_session(0, peer, addr, static_cast<std::uint32_t>(rng_.next()), t, out);
  // The other cores reconcile their shards with the same peer, each in its own session.
  for (std::uint32_t c = 1; c < cores(); ++c) {
    CoreMsg m;
    m.kind = CoreMsg::Kind::kStartSync;
    m.peer = peer;
    m.addr = addr;
    m.session = static_cast<std::uint32_t>(rng_.next());
    hand(0, c, std::move(m));
  }
}

void NodeImpl::begin_session(std::uint32_t c, NodeId peer, const Address& addr,
                             std::uint32_t session, std::uint64_t t, PacketSink& out) {
  SyncState& st = *cores_[c]->sync;
  if (st.session) return;  // the previous round is still running on this core
  // A shard that has not completed a sync within the grace period may hold keys the cluster
  // deleted and purged meanwhile: drop what a peer is known to hold before talking again.
  const std::uint32_t step = cores();
  for (std::uint32_t s = c; s < store_->shard_count(); s += step) store_->shard(s).reset_if_stale(t);
  st.peer = peer;
  st.peer_addr = addr;
  st.tokens.resize(store_->shard_count());
  for (std::uint32_t s = c; s < store_->shard_count(); s += step) {
    st.tokens[s] = store_->shard(s).begin_sync();
  }
  st.session = std::make_unique<ReconcileSession>(*store_, c, st.rc, session);
  st.started_ms = t;
  st.retransmit_at_ms = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
  ++counters_of(c).syncs_started;
  pump_sync(c, out);
}

void NodeImpl::pump_sync(std::uint32_t c, PacketSink& out) {
  SyncState& st = *cores_[c]->sync;
  NodeCounters& k = counters_of(c);
  for (std::uint32_t n = 0; st.session && n < config_.sync_datagrams_per_tick_max; ++n) {
    Packet p(*this, out, k);
    // Shard c is this core's: the peer echoes it, so its answers come back to this core.
    if (!p.open(static_cast<std::uint16_t>(c))) return;
    const std::size_t at = p.w().begin(wire::MsgType::kSyncRequest);
    auto space = p.w().tail();
    if (space.size() > st.rc.datagram_bytes_max) space = space.first(st.rc.datagram_bytes_max);
    const std::size_t len = st.session->next_datagram(as_u8(space));
    if (len == 0) return;  // nothing to send now; the opened buffer is simply not committed
    p.w().advance(len);
    p.w().end(at);
    k.sync_bytes += p.w().size();
    p.send(st.peer_addr, /*piggyback=*/false);
  }
}

void NodeImpl::finish_sync(std::uint32_t c, bool complete) {
  SyncState& st = *cores_[c]->sync;
  if (!st.session) return;
  NodeCounters& k = counters_of(c);
  const ReconcileStats& s = st.session->stats();
  k.sync_entries_sent += s.entries_sent;
  k.sync_entries_received += s.entries_received;
  if (complete) {
    const std::uint64_t t = now();
    for (std::uint32_t i = c; i < store_->shard_count(); i += cores()) {
      store_->shard(i).complete_sync(st.tokens[i], t);
    }
    ++k.syncs_completed;
  }
  st.session.reset();
}

bool NodeImpl::answer_allowed(std::uint32_t c, const Address& from, std::uint64_t t,
                              double cost) {
  // The address's own share first, so one address cannot drain the global budget.
  if (c == 0) return peer_answers_.allow(from, cost, t) && answers_.take(cost, t);
  CoreState& core = *cores_[c];
  return core.peer_answers->allow(from, cost, t) && core.answers->take(cost, t);
}

void NodeImpl::handle_sync_request(std::uint32_t c, const Address& from, std::uint16_t shard,
                                   std::span<const std::byte> body, PacketSink& out,
                                   bool answer_only) {
  SyncState& st = *cores_[c]->sync;
  NodeCounters& k = counters_of(c);
  std::uint64_t owners = 1;  // bit per core with records to answer
  if (cores() > 1) {
    owners = request_owner_mask(*store_, st.rc, as_u8(body));
    if (owners == 0) owners = std::uint64_t{1} << c;  // malformed: counted by our responder
    if (!answer_only) {
      // The other owners answer for their shards, from their own sockets.
      for (std::uint32_t o = 0; o < cores(); ++o) {
        if (o == c || !(owners >> o & 1)) continue;
        CoreMsg m;
        m.kind = CoreMsg::Kind::kAnswer;
        m.addr = from;
        m.session = shard;
        m.key.assign(reinterpret_cast<const char*>(body.data()), body.size());
        hand(c, o, std::move(m));
      }
    }
    if (!(owners >> c & 1)) return;
  }
  if (!answer_allowed(c, from, now())) {
    ++k.sync_rate_limited;
    return;
  }
  (void)st.responder->respond(as_u8(body), [&](std::span<const std::uint8_t> resp) {
    Packet p(*this, out, k);
    if (!p.open(shard)) return;  // echo the request's shard: the asking core gets the answer
    const std::size_t at = p.w().begin(wire::MsgType::kSyncResponse);
    p.w().bytes(resp.data(), resp.size());
    p.w().end(at);
    if (!p.w().ok()) return;  // cannot happen: responses fit datagram_bytes_max - overhead
    k.sync_bytes += p.w().size();
    p.send(from, /*piggyback=*/false);
  });
}

void NodeImpl::handle_sync_response(std::uint32_t c, NodeId sender,
                                    std::span<const std::byte> body, PacketSink& out) {
  SyncState& st = *cores_[c]->sync;
  if (!st.session || sender != st.peer) return;  // late, or not ours
  (void)st.session->on_datagram(as_u8(body));
  pump_sync(c, out);
  if (st.session->done()) finish_sync(c, st.session->complete());
}

void NodeImpl::prefer_sync_peer(NodeId peer) {
  cores_[0]->sync->preferred_peer = peer;
  next_sync_ms_ = now();
}

std::uint64_t NodeImpl::sync_deadline_ms(std::uint32_t c) const {
  const SyncState& st = *cores_[c]->sync;
  const std::uint64_t next = c == 0 ? next_sync_ms_ : UINT64_MAX;
  if (!st.session) return next;
  return std::min(st.retransmit_at_ms, st.started_ms + config_.sync_timeout_ms);
}

}  // namespace rumor
