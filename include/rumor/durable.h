// rumor::Durability: a node's state kept in a data directory (docs/store.md "Durability"). By
// default a node holds everything in memory; with a Durability attached, every change the
// node's store applies (local writes and merges from peers), purged tombstones, the sync-epoch
// state, the HLC's high-water mark, the node's identity and incarnation are written to a RocksDB
// database in the directory by a persister thread of its own, off the packet path. A restarted
// node loads them, rejoins with a higher incarnation and catches up by anti-entropy.
//
//   auto d = rumor::Durability::open({.dir = "/var/lib/rumor", .sync = rumor::SyncMode::kAlways});
//   auto node = rumor::Node::create(cfg, clock);
//   (*d)->restore(**node, clock);        // before start: the saved state, checked against cfg
//   (*d)->start(**node);                 // journals every change from now on
//   reactor->start(**node, clock);
//   ...  (*node)->set("k", "v") on the key's core, then ticket/wait_durable: on disk
//   reactor->stop(); (*d)->stop();       // the last changes committed and synced
//
// Sync modes: kAlways acknowledges (wait_durable) a write once a commit with fsync holds it;
// the persister commits whatever is queued as soon as the previous commit ends (group commit),
// so many concurrent writers share one fsync. kBatch commits with fsync every
// sync_interval_ms: a crash of the machine loses at most the writes of that window. kOff
// commits every sync_interval_ms without fsync: a crash of the process loses nothing
// committed, a crash of the machine may lose the directory (it is then refused at start).
//
// Thread-safety contract
// - open, restore, start, stop, the destructor: one controlling thread, restore before the node
//   starts and stop after it stopped.
// - ticket(core): core `core`'s driver thread, right after a write it made there.
// - durable, wait_durable, counters, put_meta, get_meta, set_on_commit (before start): any
//   thread. wait_durable blocks: never call it on a reactor thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rumor/node.h"
#include "rumor/status.h"
#include "rumor/time_source.h"

namespace rumor {

enum class SyncMode : std::uint8_t { kOff = 0, kBatch = 1, kAlways = 2 };
std::string_view sync_mode_name(SyncMode m);
Result<SyncMode> parse_sync_mode(std::string_view text);

struct DurableConfig {
  std::string dir;  // created if missing; one node per directory (locked while open)
  SyncMode sync = SyncMode::kBatch;
  std::uint32_t sync_interval_ms = 100;  // kBatch: the loss window; kOff: how often to commit
  // Records queued per owner core for the persister. A core that finds its queue full drops the
  // record and marks the core: the persister then rewrites that core's shards from memory.
  std::uint32_t queue_depth = 65536;
  // Records one commit takes at most (a bound on the persister's memory and on commit latency).
  std::uint32_t commit_records_max = 262144;

  Status validate() const;
};

struct DurableCounters {
  std::uint64_t commits = 0, synced_commits = 0;
  std::uint64_t records_written = 0, erases_written = 0;
  std::uint64_t queue_full = 0;      // records dropped by a full queue (recovered by rewrites)
  std::uint64_t rewrites = 0;        // owner cores rewritten from memory after a drop
  std::uint64_t commit_errors = 0;   // commits that failed (retried; see last_error)
  std::uint64_t loaded_entries = 0, loaded_tombstones = 0, expired_tombstones = 0;
  std::uint64_t file_bytes = 0;
  std::uint64_t last_commit_us = 0;  // duration of the last commit (fsync included)
};

class DurableImpl;

class Durability {
 public:
  // Creates or opens the directory and locks it (RocksDB's LOCK). A damaged or
  // foreign directory is a clear error (Code::kMalformed), never a crash.
  static Result<std::unique_ptr<Durability>> open(const DurableConfig& config);
  ~Durability();  // stop()s
  Durability(const Durability&) = delete;
  Durability& operator=(const Durability&) = delete;

  const DurableConfig& config() const;
  // Whether the directory held a node's state when opened.
  bool existed() const;

  // Before the node starts: checks the saved identity against the node (another node's
  // directory is refused), loads entries and tombstones (tombstones past the grace period are
  // dropped), the sync-epoch state, the HLC high-water mark and the incarnation, and records
  // the node's identity.
  Status restore(Node& node, TimeSource& time);
  // Starts the persister thread and journals every change of `node` from now on.
  Status start(Node& node);
  // Commits and syncs what is queued, then joins the persister. Idempotent.
  void stop();

  // A ticket for the last change made on `core` (its driver thread, after the write returned).
  std::uint64_t ticket(std::uint32_t core) const;
  // Whether every change of `core` up to `ticket` is on disk as the sync mode promises
  // (kAlways: synced; kBatch, kOff: committed).
  bool durable(std::uint32_t core, std::uint64_t ticket) const;
  // Blocks until durable(core, ticket) or timeout_ms passed; kUnavailable on timeout or stop.
  Status wait_durable(std::uint32_t core, std::uint64_t ticket, std::uint64_t timeout_ms);
  // Called on the persister thread after every commit (e.g. to wake an event loop). Before start.
  void set_on_commit(std::function<void()> fn);

  // Small named values kept with the state (an agent's keyring, say): written with the next
  // commit, read back after a restart.
  void put_meta(std::string_view name, std::string_view value);
  std::optional<std::string> get_meta(std::string_view name) const;

  DurableCounters counters() const;
  // The last commit error, empty when the last commit succeeded.
  std::string last_error() const;

 private:
  explicit Durability(std::unique_ptr<DurableImpl> impl);
  std::unique_ptr<DurableImpl> impl_;
};

}  // namespace rumor
