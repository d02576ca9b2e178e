// The store's limits, each named once with its unit last (TigerStyle). Oversized input is
// refused with a Status naming the limit, never truncated.
//
// Thread-safety: a plain value, read when a node is created.
#pragma once

#include <cstdint>

#include "rumor/status.h"

namespace rumor {

struct StoreConfig {
  // Virtual shards: a cluster-wide constant (checked when nodes meet), a power of two. Keys map
  // to a virtual shard by the low bits of their XXH3 hash.
  std::uint32_t virtual_shards = 64;
  // Owner cores of this node. Virtual shard s belongs to owner s % owners. A node's own choice.
  std::uint32_t owners = 1;

  std::uint32_t key_bytes_max = 256;     // keys are 1..key_bytes_max bytes
  // Values of up to value_bytes_max bytes: one whose update does not fit a datagram is pulled
  // in chunks (docs/protocol.md "Large values"); NodeConfig allows at most 64 MiB.
  std::uint32_t value_bytes_max = 1u << 20;
  std::uint64_t keys_per_shard_max = std::uint64_t{1} << 24;

  // A remote version whose physical time is further ahead of local time than this is refused.
  std::uint64_t max_clock_skew_ms = 60'000;
  // Tombstones older than this are purged. Must exceed the longest time a node or a partition
  // may be away and still rejoin with its data (see docs/store.md).
  std::uint64_t tombstone_grace_ms = 24ull * 3600 * 1000;

  // Rateless IBLT symbols (digest/riblt.h) each shard keeps up to date for reconciliation: the
  // first riblt_prefix_symbols symbols (16 bytes each per shard; 0 turns them off and with them
  // the method). A prefix of K symbols decodes about K / 1.5 differing entries from memory;
  // longer streams are computed from the entries when a session needs them.
  std::uint32_t riblt_prefix_symbols = 1024;
  // The key of the symbols' hashes: per cluster, so a peer outside it cannot aim entries at
  // one symbol or forge a checksum. 0: derived from the cluster label by the node.
  std::uint64_t riblt_key = 0;

  std::uint32_t write_queue_depth = 4096;   // per owner: writes from other threads
  std::uint32_t change_feed_depth = 4096;   // per shard: records kept for feed readers

  Status validate() const;
};

}  // namespace rumor
