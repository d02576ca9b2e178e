// Anti-entropy for NodeImpl: every sync_interval_ms, a push-pull reconciliation of the whole
// store with one random live member through engine/reconcile.h. Its datagrams ride in
// kSyncRequest / kSyncResponse messages; the session retransmits after a lost datagram, and a
// session that does not finish within sync_timeout_ms is abandoned (the next one repairs).
// Responses are rate-limited per peer address so one peer cannot monopolise a node.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "base/assert.h"
#include "engine/node_impl.h"

#include "engine/reconcile.h"

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
  sync_.reset(new SyncState());
  sync_->rc = ReconcileConfig::for_store(config_.store);
  sync_->rc.datagram_bytes_max = static_cast<std::uint32_t>(
      config_.datagram_bytes_max - crypto::kSealOverheadBytes - wire::kHeaderBytes -
      wire::kMessageHeaderBytes);
  RUMOR_ASSERT(sync_->rc.validate().is_ok());
  sync_->responder = std::make_unique<ReconcileResponder>(*store_, 0, sync_->rc);
}

void NodeImpl::sync_tick(std::uint64_t t, PacketSink& out) {
  SyncState& st = *sync_;
  if (st.session) {
    if (st.session->done()) {
      finish_sync(st.session->complete());
    } else if (t >= st.started_ms + config_.sync_timeout_ms) {
      finish_sync(false);
    } else if (t >= st.retransmit_at_ms) {
      st.session->on_timeout();
      st.retransmit_at_ms = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
      pump_sync(out);
    }
  }
  if (!st.session && t >= next_sync_ms_) {
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
  SyncState& st = *sync_;
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
  // A shard that has not completed a sync within the grace period may hold keys the cluster
  // deleted and purged meanwhile: drop what a peer is known to hold before talking again.
  for (std::uint32_t s = 0; s < store_->shard_count(); ++s) store_->shard(s).reset_if_stale(t);
  st.peer = peer;
  st.peer_addr = find(peer)->address;
  // Membership rides along (memberlist's periodic push-pull): tables are exchanged with the
  // same peer, which repairs any membership news that rumor mongering failed to deliver.
  send_member_table(st.peer_addr, wire::MsgType::kJoin, /*reply_wanted=*/true, out);
  st.tokens.resize(store_->shard_count());
  for (std::uint32_t s = 0; s < store_->shard_count(); ++s) {
    st.tokens[s] = store_->shard(s).begin_sync();
  }
  // A random session id: echoed by the peer, and it salts the truncated hashes, so a collision
  // that hides a difference in one session does not hide it in the next.
  st.session = std::make_unique<ReconcileSession>(*store_, 0, st.rc,
                                                  static_cast<std::uint32_t>(rng_.next()));
  st.started_ms = t;
  st.retransmit_at_ms = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
  ++counters_.syncs_started;
  pump_sync(out);
}

void NodeImpl::pump_sync(PacketSink& out) {
  SyncState& st = *sync_;
  for (std::uint32_t n = 0; st.session && n < config_.sync_datagrams_per_tick_max; ++n) {
    Packet p(*this, out);
    if (!p.open()) return;
    const std::size_t at = p.w().begin(wire::MsgType::kSyncRequest);
    auto space = p.w().tail();
    if (space.size() > st.rc.datagram_bytes_max) space = space.first(st.rc.datagram_bytes_max);
    const std::size_t len = st.session->next_datagram(as_u8(space));
    if (len == 0) return;  // nothing to send now; the opened buffer is simply not committed
    p.w().advance(len);
    p.w().end(at);
    counters_.sync_bytes += p.w().size();
    p.send(st.peer_addr, /*piggyback=*/false);
  }
}

void NodeImpl::finish_sync(bool complete) {
  SyncState& st = *sync_;
  if (!st.session) return;
  const ReconcileStats& s = st.session->stats();
  counters_.sync_entries_sent += s.entries_sent;
  counters_.sync_entries_received += s.entries_received;
  if (complete) {
    const std::uint64_t t = now();
    for (std::uint32_t i = 0; i < store_->shard_count(); ++i) {
      store_->shard(i).complete_sync(st.tokens[i], t);
    }
    ++counters_.syncs_completed;
  }
  st.session.reset();
}

bool NodeImpl::answer_allowed(const Address& from, std::uint64_t t, double cost) {
  // The address's own share first, so one address cannot drain the global budget.
  return peer_answers_.allow(from, cost, t) && answers_.take(cost, t);
}

void NodeImpl::handle_sync_request(const Address& from, NodeId sender,
                                   std::span<const std::byte> body, PacketSink& out) {
  (void)sender;
  if (!answer_allowed(from, now())) {
    ++counters_.sync_rate_limited;
    return;
  }
  (void)sync_->responder->respond(as_u8(body), [&](std::span<const std::uint8_t> resp) {
    Packet p(*this, out);
    if (!p.open()) return;
    const std::size_t at = p.w().begin(wire::MsgType::kSyncResponse);
    p.w().bytes(resp.data(), resp.size());
    p.w().end(at);
    if (!p.w().ok()) return;  // cannot happen: responses fit datagram_bytes_max - overhead
    counters_.sync_bytes += p.w().size();
    p.send(from, /*piggyback=*/false);
  });
}

void NodeImpl::handle_sync_response(NodeId sender, std::span<const std::byte> body,
                                    PacketSink& out) {
  SyncState& st = *sync_;
  if (!st.session || sender != st.peer) return;  // late, or not ours
  (void)st.session->on_datagram(as_u8(body));
  pump_sync(out);
  if (st.session->done()) finish_sync(st.session->complete());
}

void NodeImpl::prefer_sync_peer(NodeId peer) {
  sync_->preferred_peer = peer;
  next_sync_ms_ = now();
}

std::uint64_t NodeImpl::sync_deadline_ms() const {
  if (!sync_->session) return next_sync_ms_;
  return std::min(sync_->retransmit_at_ms, sync_->started_ms + config_.sync_timeout_ms);
}

}  // namespace rumor
