// AntiEntropy: one core's side of push-pull reconciliation (docs/reconciliation.md). A session
// reconciles every shard this core owns with one peer through engine/sync/reconcile.h; its
// datagrams ride in kSyncRequest / kSyncResponse messages, lost datagrams are retransmitted, and
// a session that does not finish within sync_timeout_ms is abandoned (the next round repairs).
// The responder answers requests for this core's shards.
//
// Which peer and when is the node's decision (engine/node); this class runs what it is told.
// Requests name one of this core's shards in the header and responders echo it, so the answers
// are steered back to the core that asked.
//
// Not thread-safe: one per core, on that core's driver thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <span>
#include <vector>

#include "engine/store/store.h"
#include "engine/sync/reconcile.h"
#include "engine/wire/packet.h"
#include "rumor/node.h"
#include "rumor/time_source.h"

namespace rumor {

class AntiEntropy {
 public:
  AntiEntropy(Store& store, std::uint32_t core, const NodeConfig& config, TimeSource& time,
              NodeCounters& counters);
  ~AntiEntropy();

  bool active() const { return session_ != nullptr; }
  // Starts a session with `peer` for this core's shards (nothing while one runs). `session` is
  // drawn at random by the caller: the peer echoes it and it salts the truncated hashes.
  void begin(NodeId peer, const Address& addr, std::uint32_t session, const wire::Outbox& out);
  // Retransmits, times out, or ends the session.
  void tick(std::uint64_t now, const wire::Outbox& out);
  // Ends the session; a complete one marks this core's shards as synced.
  void finish(bool complete);
  std::uint64_t deadline_ms() const;  // UINT64_MAX without a session

  // The cores (bit per core) whose shards a request covers; 0 when it is malformed.
  std::uint64_t owners_of_request(std::span<const std::byte> body) const;
  // Answers a request for this core's shards to `from`, naming `shard` (the request's).
  void answer(const Address& from, std::uint16_t shard, std::span<const std::byte> body,
              const wire::Outbox& out);
  void on_response(NodeId sender, std::span<const std::byte> body, const wire::Outbox& out);
  // Entries too large for a reconciliation record are announced to the peer instead, each in a
  // datagram of its own sent after the call that met it; `encode` writes the announcement
  // message (the node's, engine/gossip/bulk.h). Set before start.
  using EncodeAnnouncement = std::function<std::string(const EntryView& e)>;
  void set_announce(EncodeAnnouncement encode) { announce_ = std::move(encode); }

 private:
  void pump(const wire::Outbox& out);
  void pump_datagrams(const wire::Outbox& out);

  Store& store_;
  const std::uint32_t core_;
  const NodeConfig& config_;
  TimeSource& time_;
  NodeCounters& counters_;
  ReconcileConfig rc_;
  std::unique_ptr<ReconcileResponder> responder_;
  std::unique_ptr<ReconcileSession> session_;
  NodeId peer_ = 0;
  Address peer_addr_;
  std::uint64_t started_ms_ = 0;
  std::uint64_t retransmit_at_ms_ = 0;
  std::vector<std::uint32_t> tokens_;  // per shard, from begin_sync()
  EncodeAnnouncement announce_;
  // Announcements of the oversize entries met inside one pump() or answer(), sent when it
  // ends (a datagram may be open meanwhile). At most kAnnouncementsMax a call: the rest are
  // met again by the next session, which still finds the versions differ.
  static constexpr std::size_t kAnnouncementsMax = 64;
  std::vector<std::string> announcements_;
  void on_oversize(const EntryView& e);
  void send_announcements(const Address& to, const wire::Outbox& out);
};

}  // namespace rumor
