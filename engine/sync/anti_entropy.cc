#include "engine/sync/anti_entropy.h"

#include <algorithm>

#include "base/assert.h"
#include "digest/codec.h"
#include "engine/wire/crypto.h"

namespace rumor {

using digest::as_u8;

AntiEntropy::AntiEntropy(Store& store, std::uint32_t core, const NodeConfig& config,
                         TimeSource& time, NodeCounters& counters)
    : store_(store), core_(core), config_(config), time_(time), counters_(counters) {
  rc_ = ReconcileConfig::for_store(config.store);
  // A reconciliation message is the body of one wire message in one (sealable) datagram.
  rc_.datagram_bytes_max =
      static_cast<std::uint32_t>(config.datagram_bytes_max - crypto::kSealOverheadBytes -
                                 wire::kHeaderBytes - wire::kMessageHeaderBytes);
  RUMOR_ASSERT(rc_.validate().is_ok());
  responder_ = std::make_unique<ReconcileResponder>(store_, core_, rc_);
  responder_->set_oversize_sink([this](const EntryView& e) { on_oversize(e); });
}

void AntiEntropy::on_oversize(const EntryView& e) {
  if (!announce_ || announcements_.size() >= kAnnouncementsMax) return;
  std::string m = announce_(e);
  if (!m.empty()) announcements_.push_back(std::move(m));
}

void AntiEntropy::send_announcements(const Address& to, const wire::Outbox& out) {
  for (const std::string& m : announcements_) {
    wire::Packet p(out);
    if (!p.open()) break;
    p.w().bytes(m.data(), m.size());
    if (!p.w().ok()) continue;  // cannot happen: NodeConfig::validate sizes announcements
    p.send(to, /*piggyback=*/false);
    ++counters_.bulk_announced;
  }
  announcements_.clear();
}

AntiEntropy::~AntiEntropy() = default;

void AntiEntropy::begin(NodeId peer, const Address& addr, std::uint32_t session,
                        const wire::Outbox& out) {
  if (session_) return;  // the previous round is still running on this core
  const std::uint64_t t = time_.now_ms();
  // A shard that has not completed a sync within the grace period may hold keys the cluster
  // deleted and purged meanwhile: drop what a peer is known to hold before talking again.
  const std::uint32_t step = store_.owner_count();
  for (std::uint32_t s = core_; s < store_.shard_count(); s += step) {
    store_.shard(s).reset_if_stale(t);
  }
  peer_ = peer;
  peer_addr_ = addr;
  tokens_.resize(store_.shard_count());
  for (std::uint32_t s = core_; s < store_.shard_count(); s += step) {
    tokens_[s] = store_.shard(s).begin_sync();
  }
  session_ = std::make_unique<ReconcileSession>(store_, core_, rc_, session);
  session_->set_oversize_sink([this](const EntryView& e) { on_oversize(e); });
  started_ms_ = t;
  retransmit_at_ms_ = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
  ++counters_.syncs_started;
  pump(out);
}

void AntiEntropy::tick(std::uint64_t t, const wire::Outbox& out) {
  if (!session_) return;
  if (session_->done()) {
    finish(session_->complete());
  } else if (t >= started_ms_ + config_.sync_timeout_ms) {
    finish(false);
  } else if (t >= retransmit_at_ms_) {
    session_->on_timeout();
    retransmit_at_ms_ = t + std::max<std::uint64_t>(config_.sync_timeout_ms / 8, 10);
    pump(out);
  }
}

void AntiEntropy::pump(const wire::Outbox& out) {
  pump_datagrams(out);
  send_announcements(peer_addr_, out);
}

void AntiEntropy::pump_datagrams(const wire::Outbox& out) {
  for (std::uint32_t n = 0; session_ && n < config_.sync_datagrams_per_tick_max; ++n) {
    wire::Packet p(out);
    // Shard core_ is this core's: the peer echoes it, so its answers come back to this core.
    if (!p.open(static_cast<std::uint16_t>(core_))) return;
    const std::size_t at = p.w().begin(wire::MsgType::kSyncRequest);
    auto space = p.w().tail();
    if (space.size() > rc_.datagram_bytes_max) space = space.first(rc_.datagram_bytes_max);
    const std::size_t len = session_->next_datagram(as_u8(space));
    if (len == 0) return;  // nothing to send now; the opened buffer is simply not committed
    p.w().advance(len);
    p.w().end(at);
    counters_.sync_bytes += p.w().size();
    p.send(peer_addr_, /*piggyback=*/false);
  }
}

void AntiEntropy::finish(bool complete) {
  if (!session_) return;
  const ReconcileStats& s = session_->stats();
  counters_.sync_entries_sent += s.entries_sent;
  counters_.sync_entries_received += s.entries_received;
  counters_.syncs_by_sums += s.method_sums;
  counters_.syncs_by_riblt += s.method_riblt;
  counters_.syncs_by_walk += s.method_walk;
  counters_.sync_riblt_failed += s.riblt_failed;
  if (complete) {
    const std::uint64_t t = time_.now_ms();
    for (std::uint32_t i = core_; i < store_.shard_count(); i += store_.owner_count()) {
      store_.shard(i).complete_sync(tokens_[i], t);
    }
    ++counters_.syncs_completed;
  }
  session_.reset();
}

std::uint64_t AntiEntropy::deadline_ms() const {
  if (!session_) return UINT64_MAX;
  return std::min(retransmit_at_ms_, started_ms_ + config_.sync_timeout_ms);
}

std::uint64_t AntiEntropy::owners_of_request(std::span<const std::byte> body) const {
  return request_owner_mask(store_, rc_, as_u8(body));
}

void AntiEntropy::answer(const Address& from, std::uint16_t shard, std::span<const std::byte> body,
                         const wire::Outbox& out) {
  (void)responder_->respond(as_u8(body), [&](std::span<const std::uint8_t> resp) {
    wire::Packet p(out);
    if (!p.open(shard)) return;  // echo the request's shard: the asking core gets the answer
    const std::size_t at = p.w().begin(wire::MsgType::kSyncResponse);
    p.w().bytes(resp.data(), resp.size());
    p.w().end(at);
    if (!p.w().ok()) return;  // cannot happen: responses fit datagram_bytes_max - overhead
    counters_.sync_bytes += p.w().size();
    p.send(from, /*piggyback=*/false);
  });
  send_announcements(from, out);
}

void AntiEntropy::on_response(NodeId sender, std::span<const std::byte> body,
                              const wire::Outbox& out) {
  if (!session_ || sender != peer_) return;  // late, or not ours
  (void)session_->on_datagram(as_u8(body));
  pump(out);
  if (session_->done()) finish(session_->complete());
}

}  // namespace rumor
