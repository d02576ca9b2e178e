// Journal: what a durable backend (engine/store/durable.h) hears of a store's changes. The store
// calls it on the owner thread of the shard that changed, right after the change is visible to
// readers, and never takes a lock for it: an implementation hands the record to its own thread
// through per-owner queues. A store without a journal (the default) pays one branch per change.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/store/store.h"

namespace rumor {

class Journal {
 public:
  virtual ~Journal() = default;
  // Whether the owner's records would not fit now: local writes are then refused with
  // Code::kBusy (back-pressure) rather than applied and their records dropped.
  virtual bool full(std::uint32_t owner) const = 0;
  // An entry was installed (a local write or a merge); `epoch` is the sync epoch it carries.
  virtual void applied(std::uint32_t owner, std::uint32_t shard, const EntryView& e,
                       std::uint32_t epoch) = 0;
  // An entry left the store: a purged tombstone, or one discarded by reset_if_stale().
  virtual void erased(std::uint32_t owner, std::uint32_t shard, std::string_view key) = 0;
  // A reconciliation completed for the shard.
  virtual void synced(std::uint32_t owner, std::uint32_t shard, const ShardSyncState& s) = 0;
  // The node's own incarnation changed (the home core: engine/members).
  virtual void incarnation(std::uint64_t inc) = 0;
};

}  // namespace rumor
