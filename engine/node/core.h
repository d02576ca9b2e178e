// Core: what one owner core of a node owns (Seastar's shard). Its shards of the store (shard s
// belongs to core s % cores), its counters, its rate limits, its anti-entropy, its merge
// buffers, its timers and its end of every link. A core is driven by one thread at a time (its
// own reactor thread, or the simulator's); nothing in a Core is touched by another core, except
// the published counters (relaxed atomics, read by the home core) and the thread token (written
// at start, read by writer threads).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/published.h"
#include "base/spsc_queue.h"
#include "engine/gossip/gossip.h"
#include "engine/node/rate_limit.h"
#include "engine/store/store.h"
#include "engine/sync/anti_entropy.h"
#include "engine/wire/crypto.h"
#include "engine/wire/packet.h"
#include "rumor/node.h"

namespace rumor {

// What crosses from one core to another, through the SPSC link of that ordered pair.
struct CoreMsg {
  enum class Kind : std::uint8_t {
    kDatagram,   // a datagram for the target core: bytes in `key`, source in `addr`
    kAnswer,     // a sync request datagram whose records the target core must answer
    kMerge,      // a remote entry for one of the target's shards (key, value, version, flag)
    kChange,     // to the home core: a change too large to travel whole (announced from core 0)
    kStartSync,  // from the home core: reconcile with `peer` at `addr`, session id in `session`
    kKeys,       // from the home core: the node's keyring and mode changed, adopt `keys`
    kEvent,      // to the home core: an applied change of the sender's shards, for subscribers
    kGossip,     // from the home core: a gossip round to `targets`, `session` live members
  };
  Kind kind = Kind::kDatagram;
  bool tombstone = false;
  bool local = false;
  std::uint32_t session = 0;
  NodeId peer = 0;
  Address addr;
  Version version;
  std::string key;
  std::string value;
  std::shared_ptr<const crypto::KeyState> keys;
  std::vector<Address> targets;
};

// One SPSC queue per ordered pair of cores (none for a single-core node), as deep as the
// store's write queue: everything that crosses is bounded by it.
class CoreLinks {
 public:
  CoreLinks(std::uint32_t cores, std::size_t depth);
  SpscQueue<CoreMsg>& link(std::uint32_t from, std::uint32_t to) {
    return *links_[static_cast<std::size_t>(from) * cores_ + to];
  }
  bool pending_for(std::uint32_t to) const;

 private:
  std::uint32_t cores_;
  std::vector<std::unique_ptr<SpscQueue<CoreMsg>>> links_;
};

struct alignas(kCacheLineBytes) Core {
  Core(std::uint32_t index, const NodeConfig& config, Store& store, TimeSource& time,
       EntropySource& entropy, std::uint32_t label_hash);

  const std::uint32_t index;
  bool running = false;
  NodeCounters counters;
  Published<NodeCounters> published;  // a copy of `counters` for the home core to sum
  // This core's sealing state: its own salt, sequence numbers (stream = index) and replay
  // windows; the keys and mode are the node's, copied from the home core (kKeys).
  crypto::FrameCrypto crypto;
  wire::Framing framing;
  // Bytes accepted per source address: each core 1/N of peer_bytes_per_s_max. It is checked on
  // every datagram, before anything else, so it stays this core's own (a table shared by the
  // cores would move a cache line between them per datagram); a peer's traffic is spread over
  // a node's cores by shard. Answer budgets are the node's, shared (NodeImpl::answer_allowed).
  PeerLimiter peer_bytes;
  // Large-value chunks served per source address and in all: only the home core serves them.
  PeerLimiter bulk_peer;
  TokenBucket bulk_all;
  AntiEntropy sync;
  // Rumor mongering of this core's shards' changes: the home core's is the node's Gossip (which
  // also carries membership news); every other core owns one. `broadcasts_pending` tells the
  // home core, which picks gossip targets, whether this core has anything to spread (a hint:
  // relaxed).
  std::unique_ptr<Gossip> own_gossip;
  Gossip* gossip = nullptr;
  std::atomic<bool> broadcasts_pending{false};
  // Store::feed_pushes(index) when pump_feeds last read every feed of this core's shards to
  // the end: while it has not moved, there is nothing to pump.
  std::uint64_t feeds_read = 0;
  std::vector<EntryView> merge_in;  // entries of the batch being received, views into it
  // The plaintext of the batch's sealed frames, each opened into its own part (allocated at the
  // first sealed frame), so their entries merge with the rest of the batch; `opened_used` bytes
  // hold frames whose entries may still be in merge_in.
  std::vector<std::byte> opened;
  std::size_t opened_used = 0;
  std::vector<MergeOutcome> merge_out;
  std::vector<CoreMsg> inbox;  // drained from the links, reused
  std::uint64_t next_maintenance_ms = 0;
  std::uint32_t purge_cursor = 0;
  std::function<void()> waker;  // set before start
  // Token of the thread driving this core (0 before it started). Acquire/release: a writer
  // thread that sees it sees the store binding made before it.
  std::atomic<std::uint64_t> thread{0};
};

}  // namespace rumor
