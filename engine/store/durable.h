// The durable backend of a store (docs/store.md "Durability"), in two parts:
//
// - DurableStore: the data directory, a RocksDB database (locked by RocksDB, so two processes
//   never share a directory). Entries keyed by (shard, key) and meta values (identity,
//   incarnation, HLC high-water mark, per-shard sync state, values put by the embedder). Every
//   record carries an XXH3 checksum besides RocksDB's own block checksums; loading checks it
//   and refuses the directory with Code::kMalformed on a mismatch. Written by one thread only,
//   one atomic write batch per commit(): after a crash the directory holds a prefix of the
//   commits (all the synced ones).
// - JournalQueues: the Journal a store and its members table talk to (engine/store/journal.h).
//   One bounded SPSC queue per owner core carries records to the persister thread; a core that
//   finds its queue full drops the record and marks itself, and the persister rewrites that
//   core's shards from memory (Store reads are lock-free) before it trusts the queue again.
//   Tickets (a per-core count of records) tell a writer when its change is on disk.
//
// Thread-safety: DurableStore: one thread at a time (the persister, or the controlling thread
// before the persister starts). JournalQueues: the Journal calls on each owner core's thread;
// visit(), take_overflow() and publish() on the persister thread; produced() on the owner's thread;
// durable() on any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/spsc_queue.h"
#include "engine/store/journal.h"
#include "engine/store/store.h"
#include "rumor/durable.h"
#include "rumor/status.h"

namespace rocksdb {
class DB;
class WriteBatch;
}

namespace rumor {

// One change on its way to disk.
struct JournalRecord {
  enum class Kind : std::uint8_t { kPut, kErase, kSyncState, kIncarnation };
  Kind kind = Kind::kPut;
  bool tombstone = false;
  std::uint32_t shard = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;  // the owner's ticket for this record
  Version version;        // kPut; kIncarnation: the incarnation in version.hlc
  ShardSyncState sync;    // kSyncState
  std::string key, value;
};

// What a directory said about its node when it was opened.
struct DurableIdentity {
  NodeId id = 0;
  std::string name;
  std::uint64_t incarnation = 0;
  std::uint64_t hlc = 0;  // the highest version timestamp ever written
  std::uint32_t virtual_shards = 0;
};

struct DurableLoadStats {
  std::uint64_t entries = 0, tombstones = 0, expired_tombstones = 0;
  std::uint64_t hlc_max = 0;
};

class DurableStore {
 public:
  // Opens (creating if needed) the directory.
  static Result<std::unique_ptr<DurableStore>> open(const std::string& dir);
  ~DurableStore();
  DurableStore(const DurableStore&) = delete;
  DurableStore& operator=(const DurableStore&) = delete;

  const std::string& dir() const { return dir_; }
  // nullopt for a new directory.
  const std::optional<DurableIdentity>& identity() const { return identity_; }

  // Restores every entry and shard sync state into `store` (before it is shared), dropping
  // tombstones written before now_ms - tombstone_grace_ms (and erasing them from disk at the
  // next commit). Checksums are checked; a bad record is Code::kMalformed naming it.
  Result<DurableLoadStats> load(Store& store, std::uint64_t now_ms);

  // The write side: records and meta values accumulate until commit(), which writes them in one
  // atomic batch, synced when asked (a synced commit also syncs the unsynced ones before it).
  void add(const JournalRecord& r);
  // For a rewrite: erase every entry on disk for which keep(shard, key) is false (one pass).
  Status erase_entries_except(
      const std::function<bool(std::uint32_t shard, std::string_view key)>& keep);
  void put_meta(std::string_view name, std::string_view value);
  std::optional<std::string> get_meta(std::string_view name) const;
  void set_identity(const DurableIdentity& id);
  std::size_t pending() const { return pending_puts_ + pending_erases_; }
  // Anything a commit would write: records, meta values, expired tombstones.
  bool has_pending() const {
    return pending() > 0 || !pending_meta_.empty() || !expired_.empty();
  }
  // Whether commits were made without a sync since the last synced one.
  bool unsynced() const { return unsynced_; }
  Status commit(bool sync);

  std::uint64_t file_bytes() const;  // live tables and logs
  std::uint64_t records_written() const { return records_written_; }
  std::uint64_t erases_written() const { return erases_written_; }

 private:
  DurableStore() = default;
  Status read_identity();

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::optional<DurableIdentity> identity_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;  // the pending records, encoded
  std::size_t pending_puts_ = 0, pending_erases_ = 0;
  std::uint64_t hlc_pending_ = 0;
  std::string key_, body_;  // scratch
  std::vector<std::pair<std::string, std::string>> pending_meta_;
  std::vector<std::string> expired_;  // disk keys of tombstones dropped at load
  std::uint64_t hlc_high_ = 0;  // the highest timestamp written
  bool unsynced_ = false;       // commits since the last synced one
  std::uint64_t records_written_ = 0, erases_written_ = 0;
};

class JournalQueues final : public Journal {
 public:
  JournalQueues(std::uint32_t owners, std::size_t depth);

  // ---- Journal: owner threads ----
  void applied(std::uint32_t owner, std::uint32_t shard, const EntryView& e,
               std::uint32_t epoch) override;
  void erased(std::uint32_t owner, std::uint32_t shard, std::string_view key) override;
  void synced(std::uint32_t owner, std::uint32_t shard, const ShardSyncState& s) override;
  void incarnation(std::uint64_t inc) override;
  bool full(std::uint32_t owner) const override;

  // Owner `owner`'s thread: the ticket of its last record.
  std::uint64_t produced(std::uint32_t owner) const;
  // Called (on an owner thread) after a push when the persister said it sleeps.
  void set_waker(std::function<void()> waker) { waker_ = std::move(waker); }
  // Persister: before it sleeps; true if there is nothing to do (then it may sleep).
  bool prepare_sleep();
  void woke() { sleeping_.store(false, std::memory_order_relaxed); }

  // ---- persister thread ----
  // Visits up to max records in place (all owners; fn(const JournalRecord&)), leaving their
  // buffers in the slots; returns how many.
  // fn(owner, record): the owner is the queue the record came from.
  template <typename Fn>
  std::size_t visit(Fn&& fn, std::size_t max) {
    std::size_t n = 0;
    for (std::uint32_t o = 0; o < owners_.size() && n < max; ++o) {
      n += owners_[o]->queue.visit_batch([&](const JournalRecord& r) { fn(o, r); }, max - n);
    }
    return n;
  }
  // Whether the owner's mark is set (acquire: drops before it are visible).
  bool overflowed(std::uint32_t owner) const {
    return owners_[owner]->overflow.load(std::memory_order_acquire);
  }
  // Sets the mark again (a rewrite that could not finish).
  void mark_overflow(std::uint32_t owner) {
    owners_[owner]->overflow.store(true, std::memory_order_release);
  }
  std::size_t queued() const;
  // Owners whose queue overflowed: the persister clears the mark (returned true) before it
  // rewrites them, so a record dropped after the clear marks the owner again.
  bool take_overflow(std::uint32_t owner);
  // After a commit: every record of `owner` up to `seq` is on disk.
  void publish(std::uint32_t owner, std::uint64_t seq);
  // Overflow handling: the highest ticket handed out when the mark was cleared.
  std::uint64_t produced_now(std::uint32_t owner) const;

  // ---- any thread ----
  std::uint64_t durable(std::uint32_t owner) const;
  std::atomic<std::uint64_t>& durable_word(std::uint32_t owner);
  std::uint64_t dropped() const;
  std::uint32_t owners() const { return static_cast<std::uint32_t>(owners_.size()); }

 private:
  struct alignas(kCacheLineBytes) Owner {
    explicit Owner(std::size_t depth) : queue(depth) {}
    SpscQueue<JournalRecord> queue;
    // Release by the owner after a record got its ticket; acquire by the persister when it
    // clears an overflow (every record up to it is then applied in memory, so a rewrite that
    // starts after sees it).
    std::atomic<std::uint64_t> produced{0};
    std::atomic<bool> overflow{false};  // acq_rel: see take_overflow
    std::atomic<std::uint64_t> dropped{0};  // relaxed: a statistic
    // Release by the persister after a commit; acquire by waiters.
    std::atomic<std::uint64_t> durable{0};
  };
  template <typename Fill>
  void push(std::uint32_t owner, Fill&& fill);

  std::vector<std::unique_ptr<Owner>> owners_;
  std::atomic<bool> sleeping_{false};  // seq_cst with the owners' pushes: see prepare_sleep
  std::function<void()> waker_;
};

}  // namespace rumor
