// NodeConfig: presets and validation (include/rumor/node.h documents every field).
#include <cmath>
#include <string>

#include "engine/gossip/bulk.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"

namespace rumor {

namespace {
// Where the first member record of a table datagram starts: header + kJoin/kJoinReply message
// (its body is at most 4 bytes).
constexpr std::size_t kTableFirstRecordAt = wire::kHeaderBytes + wire::kMessageHeaderBytes + 4;
}  // namespace

std::string_view member_state_name(MemberState s) {
  switch (s) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "unknown";
}

std::string_view membership_name(Membership m) {
  return m == Membership::kPartial ? "partial" : "full";
}

Result<Membership> parse_membership(std::string_view name) {
  if (name == "full") return Membership::kFull;
  if (name == "partial") return Membership::kPartial;
  return Status::error(Code::kInvalidArgument,
                       "membership is full or partial, got '" + std::string(name) + "'");
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
  c.bulk_timeout_ms = 1000;
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
  c.bulk_timeout_ms = 50;
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
  if (datagram_bytes_max < 576 || datagram_bytes_max > kDatagramBytesLimit) {
    return bad("datagram_bytes_max must be in [576, 65507], got " +
               std::to_string(datagram_bytes_max));
  }
  // An update that fits one datagram travels whole; a larger one is announced and pulled in
  // chunks (docs/protocol.md "Large values"). So what must fit a datagram is the largest key's
  // announcement and chunk request (the request is the larger), and a chunk of at least
  // wire::kChunkBytesMin bytes. Every datagram leaves room for the seal.
  const std::size_t room = datagram_bytes_max - crypto::kSealOverheadBytes - wire::kHeaderBytes;
  static_assert(wire::kChunkRequestFixedBytes >= wire::kEntryRefFixedBytes);
  if (wire::kMessageHeaderBytes + wire::kChunkRequestFixedBytes + store.key_bytes_max > room) {
    return bad("key_bytes_max (" + std::to_string(store.key_bytes_max) +
               ") leaves no room for a large value's chunk request in datagram_bytes_max " +
               std::to_string(datagram_bytes_max));
  }
  static_assert(576 - crypto::kSealOverheadBytes - wire::kHeaderBytes - wire::kMessageHeaderBytes -
                    wire::kChunkFixedBytes >=
                wire::kChunkBytesMin);
  if (store.value_bytes_max > kValueBytesLimit || store.key_bytes_max > 65535) {
    return bad("value_bytes_max must be at most " + std::to_string(kValueBytesLimit) +
               " and key_bytes_max at most 65535, got " + std::to_string(store.value_bytes_max) +
               " and " + std::to_string(store.key_bytes_max));
  }
  if (bulk_transfers_max == 0 || bulk_timeout_ms == 0 || bulk_attempts_max == 0 ||
      bulk_window_chunks == 0 || bulk_window_chunks > wire::kChunkWindowMax) {
    return bad("bulk_transfers_max, bulk_timeout_ms and bulk_attempts_max must be positive, "
               "bulk_window_chunks in [1, 64]");
  }
  if (bulk_peer_bytes_limit(*this) < store.value_bytes_max ||
      bulk_bytes_limit(*this) < bulk_peer_bytes_limit(*this)) {
    return bad("bulk_peer_bytes_max must be at least value_bytes_max (" +
               std::to_string(store.value_bytes_max) +
               ") and bulk_bytes_max at least bulk_peer_bytes_max, or 0 for the defaults");
  }
  if (bulk_datagrams_per_s_max < 4 * wire::kChunkWindowMax) {
    return bad("bulk_datagrams_per_s_max must be at least 256 (a quarter of it, one peer's "
               "share, takes a whole window)");
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
  if (membership == Membership::kPartial) {
    if (store.owners > 1) return bad("membership partial runs on one owner core (store.owners = 1)");
    if (active_view_max > 64 || passive_view_max == 0 || passive_view_max > 1024) {
      return bad("active_view_max is at most 64 (0: automatic); passive_view_max in [1, 1024]");
    }
    if (active_walk_length == 0 || active_walk_length > 16 ||
        passive_walk_length > active_walk_length) {
      return bad("active_walk_length in [1, 16], passive_walk_length at most active_walk_length");
    }
    if (shuffle_interval_ms == 0 || view_failure_probes == 0 || tree_cache_ms == 0) {
      return bad("shuffle_interval_ms, view_failure_probes and tree_cache_ms must be positive");
    }
  }
  return Status::ok();
}

}  // namespace rumor
