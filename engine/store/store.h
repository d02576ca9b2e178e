// The versioned, sharded key-value store every node keeps.
//
// Keys hash (XXH3-64) to one of `virtual_shards` virtual shards by the hash's low bits; each
// virtual shard belongs to one owner (core). A shard is a flat open-addressing table of 128-byte
// slots, indexed by the hash's high bits with linear probing. Small entries (key + value <= 80
// bytes) live inline in their slot; larger ones in an immutable out-of-line blob.
//
// Thread-safety contract
// - Writes (merge, set, del, purge, reset, feed reads, sorted iteration) happen only on the
//   shard's owner thread. `bind_owner()` records that thread and writes assert it. Nothing on
//   the write path takes a lock.
// - Reads (get, get_entry, scan, stats) may come from any thread, without a lock. Each slot is a
//   seqlock: the owner makes the sequence odd, writes, makes it even; a reader copies the slot
//   and retries if the sequence moved. Every word of a slot is a std::atomic accessed relaxed
//   inside the seqlock, so there is no data race in the C++ sense.
// - Memory a reader may still see — a table replaced on growth, a blob replaced by a newer value —
//   is retired to epoch-based reclamation (base/epoch.h) and freed only after every reader that
//   could hold it has left its pinned section. Slots are never moved inside a live table, so a
//   key written before a read began is always found by that read.
// - Writes from other threads go through `submit_*`, a bounded lock-free queue per owner that
//   the owner drains in batches (`drain_writes`). A full queue answers Code::kBusy.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/entropy.h"
#include "base/epoch.h"
#include "base/mpsc_queue.h"
#include "digest/merkle.h"
#include "digest/riblt.h"
#include "engine/store/hlc.h"
#include "rumor/status.h"
#include "rumor/store_config.h"
#include "rumor/version.h"

namespace rumor {

// A borrowed view of an entry: what merge takes and what visitors get.
struct EntryView {
  std::string_view key;
  std::string_view value;
  Version version;
  bool tombstone = false;
};

// An owned copy, returned to readers on other threads.
struct Entry {
  std::string key;
  std::string value;
  Version version;
  bool tombstone = false;
  friend bool operator==(const Entry&, const Entry&) = default;
};

enum class MergeOutcome : std::uint8_t {
  kApplied,   // the entry is new or newer: installed
  kStale,     // we hold this version or a newer one: nothing changed
  kRefused,   // invalid (too large, far-future version): counted, nothing changed
};

// One record per applied change, in apply order, per shard. Feed readers (rumor mongering,
// subscriptions) look the current entry up by key hash; a newer record for the same key always
// follows an older one.
struct ChangeRecord {
  std::uint64_t key_hash = 0;
  Version version;
  bool tombstone = false;
  bool local = false;  // written on this node (set/del), not merged from a peer
};

// Counters, per shard, written by the owner only and read by anyone (relaxed: they are
// statistics and order nothing).
struct StoreCounters {
  std::uint64_t merges_applied = 0;
  std::uint64_t merges_stale = 0;
  std::uint64_t refused_too_large = 0;
  std::uint64_t refused_invalid = 0;
  std::uint64_t refused_clock_skew = 0;
  std::uint64_t tombstones_purged = 0;
  std::uint64_t reset_discarded = 0;
  std::uint64_t feed_overruns = 0;
  std::uint64_t table_grows = 0;
  std::uint64_t write_queue_full = 0;
  std::uint64_t live_entries = 0;
  std::uint64_t tombstones = 0;
};

namespace store_detail {
struct Table;
struct Blob;
}  // namespace store_detail

class Store;
class Journal;  // engine/store/journal.h

// A shard's sync-epoch state (docs/store.md "Coming back after the grace period"): what must
// survive a restart so that a node away longer than the tombstone grace period still discards
// what its peers may have deleted.
struct ShardSyncState {
  std::uint32_t sync_epoch = 1;
  std::uint32_t safe_sync_epoch = 0;
  std::uint64_t last_sync_ms = 0;
};

// One virtual shard. Owned by Store; reached through it.
class Shard {
 public:
  Shard(Store& store, std::uint32_t index);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  std::uint32_t index() const { return index_; }

  // ---- owner thread ----
  // Merges an entry whose key hash is `hash` (already validated). Returns applied or stale.
  MergeOutcome merge_hashed(std::uint64_t hash, const EntryView& e, bool local);
  // Visits every entry (tombstones included) in a stable order: ascending key hash, ties by
  // key bytes. Digests rely on this order.
  void for_each_sorted(const std::function<void(std::uint64_t hash, const EntryView&)>& fn) const;
  // Visits the entries whose key hash is `hash` (normally one).
  void find_hash(std::uint64_t hash, const std::function<void(const EntryView&)>& fn) const;
  // Visits the entries whose key hash is in [lo, hi], in slot order (not sorted); the view is
  // valid during the call. Slots are indexed by the hash's high bits, so this reads the slots of
  // that hash range plus the probe run after it, not the whole table.
  void for_each_in_hash_range(
      std::uint64_t lo, std::uint64_t hi,
      const std::function<void(std::uint64_t hash, const EntryView&)>& fn) const;
  // The shard's Merkle tree (digest/merkle.h): every change in merge_hashed() and make_grave()
  // updates one leaf in O(1); this folds the dirty paths and, when the entry count has moved
  // several-fold, resizes the tree from a scan. nullptr while the shard never held an entry.
  const digest::MerkleTree* merkle();
  // The shard's rateless IBLT prefix (digest/riblt.h), kept next to the Merkle tree by the same
  // writes (logged, folded here). nullptr while the shard has never held more than
  // kRibltPrefixEntriesMin entries, or when riblt_prefix_symbols is 0: the symbols of so few
  // entries are computed from the entries when a session needs them
  // (reconcile_detail::owner_symbols), which spares a small shard the prefix's 16 KiB.
  digest::RibltPrefix* riblt();
  static constexpr std::uint64_t kRibltPrefixEntriesMin = 64;
  // Reads feed records from *cursor on (at most max), advancing it. A cursor that fell more
  // than change_feed_depth behind skips to the oldest kept record and the overrun is counted.
  std::size_t read_feed(std::uint64_t* cursor, std::size_t max,
                        const std::function<void(const ChangeRecord&)>& fn);
  std::uint64_t feed_head() const { return feed_head_; }
  // Turns tombstones older than tombstone_grace_ms into free slots. Returns how many.
  std::size_t purge_tombstones(std::uint64_t now_ms);

  // Sync epochs (docs/store.md, "coming back after the grace period"). begin_sync() tags a
  // reconciliation; complete_sync() records that a peer now holds everything this shard held
  // when that reconciliation began.
  std::uint32_t begin_sync();
  void complete_sync(std::uint32_t token, std::uint64_t now_ms);
  std::uint64_t last_sync_ms() const { return last_sync_ms_; }
  // If no reconciliation completed within tombstone_grace_ms, this shard may hold keys the
  // cluster deleted and has since purged. Discard every entry a peer is known to hold (those
  // written at or before the last completed sync's begin) and keep the rest (writes accepted
  // since, which no peer may have yet). Anti-entropy then refills what is still live.
  // Returns how many entries were discarded.
  std::size_t reset_if_stale(std::uint64_t now_ms);
  ShardSyncState sync_state() const;

  // Restoring from a durable backend (engine/store/durable.h), before the store is shared: an
  // entry with the sync epoch it was written under, and the shard's sync state. Restored
  // entries are not changes: Store::restore_done() forgets their feed records.
  void restore(std::uint64_t hash, const EntryView& e, std::uint32_t epoch);
  void restore_sync_state(const ShardSyncState& s);

  // ---- any thread ----
  // Copies the entry for key into the non-null outputs; false when absent.
  bool read(std::uint64_t hash, std::string_view key, std::string* value, Version* version,
            bool* tombstone) const;
  // Visits a copy of every entry, each read consistently (not one snapshot of the shard).
  void scan(const std::function<void(const Entry&)>& fn) const;
  // The same, with the sync epoch each entry was written under (for a durable backend).
  void scan_with_epoch(const std::function<void(const Entry&, std::uint32_t epoch)>& fn) const;
  StoreCounters counters() const;
  std::size_t capacity() const;

 private:
  friend class Store;
  void write_slot(void* slot, std::uint64_t hash, const EntryView& e, bool keep_blob_of_old);
  bool fast_merge(std::uint64_t hash, const EntryView& e, MergeOutcome* out);
  void make_grave(void* slot);
  void grow_if_needed();
  void rebuild(std::uint32_t log2_capacity);
  void feed_push(std::uint64_t hash, const EntryView& e, bool local);
  void tree_add(std::uint64_t hash, const Version& v, bool tombstone);
  // Builds riblt_ from a scan of the table (once the shard outgrows kRibltPrefixEntriesMin).
  void make_riblt();
  // The element of an entry whose entry hash is known (digest::riblt_element).
  digest::RibltElement riblt_element(std::uint64_t hash, std::uint64_t hlc,
                                     std::uint64_t entry_hash) const {
    return digest::riblt_element(hash, hlc, entry_hash, riblt_key_);
  }
  void bump(std::atomic<std::uint64_t>& c, std::int64_t by = 1) {
    c.store(c.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by),
            std::memory_order_relaxed);
  }

  Store& store_;
  const std::uint32_t index_;
  const std::uint32_t owner_;
  // Published table. Acquire by readers: the table's slots are initialised before it is seen.
  std::atomic<store_detail::Table*> table_{nullptr};
  std::uint64_t used_ = 0;    // slots with an entry (owner only)
  std::uint64_t graves_ = 0;  // freed slots that still continue probe chains (owner only)
  // A ring of change_feed_depth records, grown to it as records come (from kFeedFirstRecords,
  // doubling whenever it is full): most shards see few changes, and a full ring is 128 KiB at
  // the default depth (8 KiB at the simulator's 256).
  static constexpr std::size_t kFeedFirstRecords = 16;
  void grow_feed();
  std::vector<ChangeRecord> feed_;
  std::uint64_t feed_head_ = 0;
  std::uint64_t feed_mask_ = 0;
  std::uint64_t feed_grow_at_ = 0;  // feed_head_ at which grow_feed() runs; UINT64_MAX when grown
  std::uint32_t sync_epoch_ = 1;       // stamped into every slot written
  std::uint32_t safe_sync_epoch_ = 0;  // entries stamped <= this are held by a peer
  std::uint64_t last_sync_ms_ = 0;
  std::unique_ptr<digest::MerkleTree> tree_;  // allocated at the first entry (owner only)
  std::unique_ptr<digest::RibltPrefix> riblt_;  // past kRibltPrefixEntriesMin entries (owner only)
  const std::uint64_t riblt_key_;
  std::uint64_t* const owner_feed_pushes_;  // Store::feed_pushes of this shard's owner

  struct alignas(kCacheLineBytes) Counters {
    std::atomic<std::uint64_t> merges_applied{0}, merges_stale{0}, tombstones_purged{0},
        reset_discarded{0}, feed_overruns{0}, table_grows{0}, live_entries{0}, tombstones{0};
  } c_;
};

class Store {
 public:
  // Validates the config; errors are values. `threads` tells bind_owner's thread from others
  // (a node hands in its own; tests take the system's).
  static Result<std::unique_ptr<Store>> create(const StoreConfig& config, NodeId self,
                                               TimeSource& time,
                                               ThreadIdentity& threads = system_threads());
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const StoreConfig& config() const { return config_; }
  // The key of the rateless IBLT hashes: the configured one, or a fixed default (a node derives
  // one from its cluster label; tests and benchmarks take the default).
  std::uint64_t riblt_key() const {
    return config_.riblt_key != 0 ? config_.riblt_key : 0x52'69'62'6c'74'4b'65'79ull;  // "RibltKey"
  }
  NodeId self() const { return self_; }
  std::uint32_t shard_count() const { return config_.virtual_shards; }
  std::uint32_t owner_count() const { return config_.owners; }

  static std::uint64_t hash_key(std::string_view key);
  std::uint32_t shard_of_hash(std::uint64_t hash) const {
    return static_cast<std::uint32_t>(hash & (config_.virtual_shards - 1));
  }
  std::uint32_t shard_of(std::string_view key) const { return shard_of_hash(hash_key(key)); }
  std::uint32_t owner_of_shard(std::uint32_t shard) const { return shard % config_.owners; }
  Shard& shard(std::uint32_t i) { return *shards_[i]; }
  const Shard& shard(std::uint32_t i) const { return *shards_[i]; }
  // The linear sums (digest/sums.h) over every shard's entries: the sum of the shards' Merkle
  // trees' sums, folding each tree's dirty paths. Reads every shard: call it where all of them
  // are this thread's.
  digest::SetSums sums() {
    digest::SetSums total;
    for (auto& s : shards_) {
      if (const digest::MerkleTree* t = s->merkle()) total += t->sums();
    }
    return total;
  }

  // Records the calling thread as `owner`'s writer; writes from any other thread then abort.
  // Unbound owners (the default) are for single-threaded use: tests and the simulator.
  void bind_owner(std::uint32_t owner);
  // Every change from now on is also told to `journal` (engine/store/journal.h), on the owner
  // thread. Set before the store is shared; nullptr turns it off.
  void set_journal(Journal* journal) { journal_ = journal; }
  // After Shard::restore: forgets the feed records the restore made (restored entries are not
  // news to gossip or subscribers). Before the store is shared.
  void restore_done();

  // ---- owner thread of the key's shard ----
  // Local writes: a fresh version from the owner's HLC.
  Result<Version> set(std::string_view key, std::string_view value);
  Result<Version> del(std::string_view key);
  // A remote entry: validated, its version checked against max_clock_skew_ms and folded into the
  // owner's HLC, then merged last-writer-wins.
  Result<MergeOutcome> merge(const EntryView& e);
  // Many remote entries (one datagram's worth or more), all owned by `owner`. Reads the clock
  // once, prefetches ahead, and writes one outcome per entry into out (same size as in).
  void merge_batch(std::uint32_t owner, std::span<const EntryView> in,
                   std::span<MergeOutcome> out);
  // Applies up to max queued writes from other threads. Returns how many.
  std::size_t drain_writes(std::uint32_t owner, std::size_t max);
  Hlc& hlc(std::uint32_t owner) { return *hlcs_[owner]; }
  // Frees retired memory that no reader can still see. Call now and then (e.g. once per loop).
  std::size_t collect_garbage(std::uint32_t owner);

  // ---- any thread ----
  // The live value of key, if present and not deleted.
  bool get(std::string_view key, std::string* value, Version* version = nullptr) const;
  // The entry including tombstones.
  std::optional<Entry> get_entry(std::string_view key) const;
  // Queue a write for the key's owner. kBusy when that owner's queue is full.
  Status submit_set(std::string_view key, std::string_view value);
  Status submit_del(std::string_view key);
  // Validation shared by every entry point.
  Status check_sizes(std::string_view key, std::string_view value) const;
  StoreCounters counters() const;  // summed over shards and owners
  // Owner thread only: records pushed so far to the change feeds of the owner's shards. A
  // reader of the feeds that saw this number unchanged has nothing to read in any of them,
  // without looking at each shard (one cache miss each; the simulator and the load tester turn
  // thousands of mostly idle nodes).
  std::uint64_t feed_pushes(std::uint32_t owner) const { return owners_[owner]->feed_pushes; }

 private:
  friend class Shard;
  Store(const StoreConfig& config, NodeId self, TimeSource& time, ThreadIdentity& threads);
  void assert_owner(std::uint32_t owner) const;
  void count_refusal(std::uint32_t owner, Code code);
  Result<Version> write_local(std::string_view key, std::string_view value, bool tombstone);
  Status submit(std::string_view key, std::string_view value, bool tombstone);

  struct WriteOp {
    std::string key;
    std::string value;
    bool tombstone = false;
  };
  struct alignas(kCacheLineBytes) OwnerState {
    explicit OwnerState(std::size_t depth) : queue(depth) {}
    MpscQueue<WriteOp> queue;
    Retirer retirer;
    std::atomic<std::uint64_t> bound_thread{0};
    std::atomic<std::uint64_t> refused_too_large{0}, refused_invalid{0}, refused_clock_skew{0},
        write_queue_full{0};
    // Records pushed to the change feeds of this owner's shards (owner thread only).
    std::uint64_t feed_pushes = 0;
  };

  StoreConfig config_;
  Journal* journal_ = nullptr;
  NodeId self_;
  TimeSource& time_;
  ThreadIdentity& threads_;
  std::vector<std::unique_ptr<Hlc>> hlcs_;
  std::vector<std::unique_ptr<OwnerState>> owners_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace rumor
