// Bulk: values too large for one datagram (docs/protocol.md "Large values").
//
// An entry whose update fits a datagram travels whole, as it always did (kEntry, piggybacked
// or in a reconciliation record). A larger one never does: its holder announces it (kEntryRef:
// key, version, size, content hash), and a node that lacks that version pulls it from the
// announcer in chunks:
//   - a kChunkRequest names a window of up to bulk_window_chunks (<= 64) missing chunks by a
//     bitmap; the server answers each with one kChunk datagram, all of equal size and to one
//     address, so the transport sends the window as one GSO super-datagram. Two windows are in
//     flight: when one is complete, the next one is asked for;
//   - chunks of a window arrive in order, so when the last one asked for arrives and some are
//     missing they were lost: those are asked for again at once; when no new chunk arrives
//     within bulk_timeout_ms, what the windows lack is asked for again;
//     bulk_attempts_max such rounds in a row without a new chunk give the transfer up (or move
//     it to a second peer that announced the same version);
//   - the assembled value must match the announced hash; then the whole entry is handed to the
//     node's merge path in one step, so a reader sees the old value or the new one, never part.
// Memory is bounded on the pulling side: bulk_transfers_max transfers at once, each allocated
// once at its announced size (<= value_bytes_max), their bytes bounded in total and per source
// peer; an announcement over a bound is refused and counted, and the next announcement (gossip
// retransmissions, or anti-entropy, which finds the versions still differ) tries again.
// The serving side keeps the last few values served so that a transfer's windows read the
// store once; the node rate-limits what it serves per peer and in total before calling serve().
//
// Sans-I/O: time and randomness (transfer ids) come from the caller. Not thread-safe: owned by
// the node's home core and run on its driver thread; it reads the store through its any-thread
// reads.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/rng.h"
#include "engine/store/store.h"
#include "engine/wire/packet.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"

namespace rumor {

// The encoded size of an entry's kEntry message (frame included).
inline std::size_t entry_message_bytes(std::size_t key_bytes, std::size_t value_bytes) {
  return wire::kMessageHeaderBytes + 1 + 16 + 2 + key_bytes + 2 + value_bytes;
}
// The message bytes one datagram of this configuration carries after its header, with room
// for the seal (every datagram keeps it: engine/wire/packet.h).
std::size_t datagram_message_room(const NodeConfig& config);
// Whether an entry travels whole (a kEntry message that fits one datagram, as before large
// values existed) or by announcement. Tombstones always travel whole.
bool travels_whole(const NodeConfig& config, const EntryView& e);
// The most value bytes one kChunk datagram of this configuration carries.
std::uint16_t chunk_bytes_max(const NodeConfig& config);
// The announcement of a large entry (hashes the value).
wire::EntryRefMsg announcement(const NodeConfig& config, const EntryView& e);
// e's announcement as an encoded kEntryRef message (frame included); empty for an entry that
// cannot be announced (a tombstone or an empty value: those always travel whole).
std::string encode_announcement(const NodeConfig& config, const EntryView& e);
// The pulling side's bounds after defaults (0 in the config: derived from value_bytes_max).
std::uint64_t bulk_bytes_limit(const NodeConfig& config);
std::uint64_t bulk_peer_bytes_limit(const NodeConfig& config);

class Bulk {
 public:
  Bulk(const NodeConfig& config, const wire::Limits& limits, Store& store,
       NodeCounters& counters, Rng& rng);

  // ---- pulling ----
  // An announcement from `from`: starts a transfer if this node lacks that version (and the
  // bounds allow), named by a random transfer id.
  void on_announce(const Address& from, const wire::EntryRefMsg& m, std::uint64_t now,
                   const wire::Outbox& out);
  // A chunk. When it completes a transfer whose value matches the announced hash, `apply` gets
  // the whole entry (the view is valid during the call).
  void on_chunk(const Address& from, const wire::ChunkMsg& m, std::uint64_t now,
                const wire::Outbox& out, const std::function<void(const EntryView&)>& apply);
  // Asks again for what a window still lacks, or gives transfers up.
  void tick(std::uint64_t now, const wire::Outbox& out);
  std::uint64_t deadline_ms() const;  // UINT64_MAX without a transfer

  // ---- serving ----
  // Sends the requested chunks of (key, version) to `from`, if this node holds exactly that
  // version at that size; refused and counted otherwise. The caller has rate-limited it.
  void serve(const Address& from, const wire::ChunkRequestMsg& m, std::uint64_t now,
             const wire::Outbox& out);

  std::size_t transfers() const { return transfers_.size(); }
  std::uint64_t bytes_in_flight() const { return bytes_; }

 private:
  struct Transfer {
    std::uint32_t xfer = 0;
    std::string key;
    Version version;
    std::uint32_t size = 0;
    std::uint64_t hash = 0;
    std::uint16_t chunk_bytes = 0;
    std::uint32_t chunks = 0;
    Address source;
    Address alternate;  // another announcer of the same version (empty: none)
    std::string data;   // `size` bytes, allocated when the transfer starts
    std::vector<std::uint64_t> got;  // bit per chunk
    std::uint32_t received = 0;
    // Windows in flight: chunks asked for and not yet here. Two, so that the next window is on
    // its way while one arrives (a transfer moves two windows per round trip).
    struct Window {
      std::uint32_t first = 0;
      std::uint64_t missing = 0;  // bit i: chunk first + i asked for, not yet here; 0: idle
      std::uint32_t last = 0;     // the highest chunk the window's last request asked for
    };
    std::array<Window, 2> windows;
    std::uint32_t next_unasked = 0;  // chunks below it are in a window or received
    std::uint32_t attempts = 0;      // request rounds since the last new chunk
    std::uint64_t deadline_ms = 0;   // no new chunk by then: ask again
  };
  // Whether the store holds t's version of its key or a newer one (a version-only read).
  bool holds_newer(const Transfer& t) const;
  // Opens window w on the next chunks never asked for (idle when there are none).
  void open_window(Transfer& t, Transfer::Window& w);
  // Asks for what window w lacks (nothing when it is idle).
  void request(Transfer& t, Transfer::Window& w, const wire::Outbox& out);
  // Drops transfer i (its buffer is freed).
  void drop(std::size_t i);
  std::uint64_t peer_bytes(const Address& a) const;
  // The value of (key, version) at `size` bytes, from the cache or the store; null if this
  // node holds no such value.
  const std::string* held(std::string_view key, const Version& v, std::uint32_t size,
                          std::uint64_t now);

  const NodeConfig& config_;
  const wire::Limits& limits_;
  Store& store_;
  NodeCounters& counters_;
  Rng& rng_;
  const std::uint16_t chunk_bytes_;
  const std::uint64_t bytes_max_, peer_bytes_max_;
  std::vector<Transfer> transfers_;  // at most bulk_transfers_max
  std::uint64_t bytes_ = 0;          // the sizes of all transfers
  // The last values served, so the windows of a transfer (and other peers pulling the same
  // version) read the store once, also while a few transfers of different values interleave.
  // At most kCacheValues values (so kCacheValues x value_bytes_max bytes); the least recently
  // used is replaced, and one not asked for within a few seconds is dropped.
  struct Cached {
    std::string key;
    Version version;
    std::string value;
    std::uint64_t used = 0;  // a use count: the least recently used has the smallest
    std::uint64_t used_ms = 0;
  };
  static constexpr std::size_t kCacheValues = 4;
  std::vector<Cached> cache_;
  std::uint64_t cache_uses_ = 0;
};

}  // namespace rumor
