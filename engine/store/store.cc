#include "engine/store/store.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "base/assert.h"
#include "base/memory.h"
#include "digest/hash.h"
#include "engine/store/store_detail.h"

namespace rumor {
using namespace store_detail;

// ---------------------------------------------------------------------------------------------
// StoreConfig

Status StoreConfig::validate() const {
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  if (virtual_shards == 0 || (virtual_shards & (virtual_shards - 1)) != 0 ||
      virtual_shards > 65536) {
    return bad("virtual_shards must be a power of two in [1, 65536], got " +
               std::to_string(virtual_shards));
  }
  if (owners == 0 || owners > virtual_shards) {
    return bad("owners must be in [1, virtual_shards], got " + std::to_string(owners));
  }
  if (key_bytes_max == 0 || key_bytes_max > 65535) {
    return bad("key_bytes_max must be in [1, 65535], got " + std::to_string(key_bytes_max));
  }
  if (value_bytes_max > (1u << 30)) {
    return bad("value_bytes_max must be at most 1 GiB, got " + std::to_string(value_bytes_max));
  }
  if (riblt_prefix_symbols > (1u << 16)) {
    return bad("riblt_prefix_symbols must be at most 65536");
  }
  if (keys_per_shard_max < 8 || keys_per_shard_max > (std::uint64_t{1} << 40)) {
    return bad("keys_per_shard_max must be in [8, 2^40]");
  }
  if (write_queue_depth < 2 || (write_queue_depth & (write_queue_depth - 1)) != 0) {
    return bad("write_queue_depth must be a power of two >= 2, got " +
               std::to_string(write_queue_depth));
  }
  if (change_feed_depth == 0 || (change_feed_depth & (change_feed_depth - 1)) != 0) {
    return bad("change_feed_depth must be a power of two, got " +
               std::to_string(change_feed_depth));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Store

Store::Store(const StoreConfig& config, NodeId self, TimeSource& time, ThreadIdentity& threads)
    : config_(config), self_(self), time_(time), threads_(threads) {
  for (std::uint32_t o = 0; o < config_.owners; ++o) {
    hlcs_.push_back(std::make_unique<Hlc>(time_, config_.max_clock_skew_ms));
    owners_.push_back(std::make_unique<OwnerState>(config_.write_queue_depth));
  }
  for (std::uint32_t s = 0; s < config_.virtual_shards; ++s) {
    shards_.push_back(std::make_unique<Shard>(*this, s));
  }
}

Store::~Store() {
  shards_.clear();  // frees tables and blobs; retired memory goes with the Retirers
}

Result<std::unique_ptr<Store>> Store::create(const StoreConfig& config, NodeId self,
                                             TimeSource& time, ThreadIdentity& threads) {
  if (Status s = config.validate(); !s) return s;
  return std::unique_ptr<Store>(new Store(config, self, time, threads));
}

// Flattened: XXH3's short-input path inlined here instead of a second call per key.
[[gnu::flatten]] std::uint64_t Store::hash_key(std::string_view key) {
  return digest::key_hash(key);
}

void Store::bind_owner(std::uint32_t owner) {
  RUMOR_ASSERT(owner < config_.owners);
  // Relaxed: only the binding thread itself compares against this value.
  owners_[owner]->bound_thread.store(threads_.current(), std::memory_order_relaxed);
}

void Store::restore_done() {
  for (auto& s : shards_) s->feed_head_ = 0;
}

void Store::assert_owner(std::uint32_t owner) const {
  const std::uint64_t bound = owners_[owner]->bound_thread.load(std::memory_order_relaxed);
  RUMOR_ASSERT(bound == 0 || bound == threads_.current());
}

Status Store::check_sizes(std::string_view key, std::string_view value) const {
  if (key.empty()) return Status::error(Code::kInvalidArgument, "key is empty");
  if (key.size() > config_.key_bytes_max) {
    return Status::error(Code::kTooLarge, "key is " + std::to_string(key.size()) +
                                              " bytes, key_bytes_max is " +
                                              std::to_string(config_.key_bytes_max));
  }
  if (value.size() > config_.value_bytes_max) {
    return Status::error(Code::kTooLarge, "value is " + std::to_string(value.size()) +
                                              " bytes, value_bytes_max is " +
                                              std::to_string(config_.value_bytes_max));
  }
  return Status::ok();
}

Result<Version> Store::write_local(std::string_view key, std::string_view value, bool tombstone) {
  const std::uint64_t h = hash_key(key);
  const std::uint32_t s = shard_of_hash(h);
  const std::uint32_t owner = owner_of_shard(s);
  assert_owner(owner);
  if (Status st = check_sizes(key, value); !st) {
    count_refusal(owner, st.code());
    return st;
  }
  if (journal_ != nullptr && journal_->full(owner)) {
    count_refusal(owner, Code::kBusy);
    return Status::error(Code::kBusy,
                         "the data directory is behind: its queue is full (retry the write)");
  }
  const Version v{hlcs_[owner]->now(), self_};
  const MergeOutcome o = shards_[s]->merge_hashed(h, EntryView{key, value, v, tombstone}, true);
  if (o == MergeOutcome::kRefused) {
    return Status::error(Code::kTooLarge, "shard " + std::to_string(s) + " holds " +
                                              "keys_per_shard_max keys");
  }
  // A fresh local version is above everything this owner has seen, so it always applies,
  // unless an entry for the key carries a version ahead of our clock by less than the skew
  // bound and a higher node id at the same tick: then the newer remote write wins, as it must.
  return v;
}

Result<Version> Store::set(std::string_view key, std::string_view value) {
  return write_local(key, value, false);
}

Result<Version> Store::del(std::string_view key) { return write_local(key, {}, true); }

void Store::count_refusal(std::uint32_t owner, Code code) {
  OwnerState& os = *owners_[owner];
  auto& c = code == Code::kTooLarge    ? os.refused_too_large
            : code == Code::kClockSkew ? os.refused_clock_skew
            : code == Code::kBusy      ? os.write_queue_full
                                       : os.refused_invalid;
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

Result<MergeOutcome> Store::merge(const EntryView& e) {
  // Validate here too, so the caller gets a Status that says what was wrong.
  const std::uint64_t h = e.key.empty() ? 1 : hash_key(e.key);
  const std::uint32_t owner = owner_of_shard(shard_of_hash(h));
  Status st = check_sizes(e.key, e.tombstone ? std::string_view() : e.value);
  if (st && e.version.is_zero()) st = Status::error(Code::kInvalidArgument, "version is zero");
  if (st) st = hlcs_[owner]->check(e.version.hlc);
  if (!st) {
    count_refusal(owner, st.code());
    return st;
  }
  MergeOutcome out;
  merge_batch(owner, std::span<const EntryView>(&e, 1), std::span<MergeOutcome>(&out, 1));
  if (out == MergeOutcome::kRefused) {
    return Status::error(Code::kTooLarge, "shard " + std::to_string(shard_of_hash(h)) +
                                              " holds keys_per_shard_max keys");
  }
  return out;
}

void Store::merge_batch(std::uint32_t owner, std::span<const EntryView> in,
                        std::span<MergeOutcome> out) {
  RUMOR_ASSERT(out.size() == in.size());
  RUMOR_ASSERT(owner < config_.owners);
  assert_owner(owner);
  OwnerState& os = *owners_[owner];
  Hlc& hlc = *hlcs_[owner];
  // One clock read per batch: the skew bound is checked against it, and the largest accepted
  // remote timestamp is folded into the HLC once at the end.
  const std::uint64_t now_ms = time_.now_ms();
  const std::uint64_t horizon_ms = now_ms + config_.max_clock_skew_ms;
  std::uint64_t max_hlc = 0;
  std::uint64_t too_large = 0, invalid = 0, skewed = 0;

  // Software pipeline in two stages, so that up to a dozen entries' misses are in flight at
  // once (a hash map's roof is memory-level parallelism, not instructions):
  //   stage A, kFar entries ahead: hash the key, prefetch the first line of its home slot;
  //   stage B, kNear entries ahead: that line has arrived, so read the home slot's hash and
  //     prefetch the lines the merge will touch: the second line of the home slot, or both lines
  //     of the next slot when the key is not at home (about half of all keys at the table's
  //     load factor, 3/8 to 3/4); plus the Merkle leaf and the change feed's next record.
  // One stage prefetching everything (home, next slot, leaf, feed) fetched a line that half the
  // keys never use, stalled on the next slot's value line for the other half, and at eight
  // entries ahead asked for ~40 lines at the start of a batch against ~22 miss buffers (perf
  // put two fifths of merge_batch's samples on the prefetch instructions and on the next
  // slot's hash). In flight now: (kFar - kNear) first lines + kNear x ~4 lines, about the
  // miss buffers.
  // The pipeline runs across the whole batch, so callers hand in everything they have (a node:
  // the entries of a whole receive batch, up to 64 datagrams), not one datagram at a time.
  constexpr std::size_t kFar = 12;
  constexpr std::size_t kNear = 4;
  std::uint64_t hashes[kFar];
  auto stage_a = [&](std::size_t j) {
    const EntryView& e = in[j];
    const std::uint64_t h = e.key.empty() ? 1 : hash_key(e.key);
    hashes[j % kFar] = h;
    const Shard& shard = *shards_[shard_of_hash(h)];
    const Table* t = shard.table_.load(std::memory_order_relaxed);
    if (t) __builtin_prefetch(&t->slots[t->home(h)], 1, 3);
  };
  auto stage_b = [&](std::size_t j) {
    const std::uint64_t h = hashes[j % kFar];
    const Shard& shard = *shards_[shard_of_hash(h)];
    const Table* t = shard.table_.load(std::memory_order_relaxed);
    if (t) {
      std::uint64_t at = t->home(h);
      const std::uint64_t home_hash = ld(t->slots[at].hash);
      if (home_hash != h && home_hash != 0) {  // an empty home is where an insert goes
        at = (at + 1) & t->mask;
        __builtin_prefetch(&t->slots[at], 1, 3);
      }
      __builtin_prefetch(reinterpret_cast<const char*>(&t->slots[at]) + kCacheLineBytes, 1, 3);
    }
    if (shard.tree_) __builtin_prefetch(shard.tree_->leaf_address(h), 1, 3);  // Merkle leaf
    // The change feed's next record: a shard's feed is written every ~64 merges at 64 shards,
    // so its line has long left the cache and would cost an ownership miss on the write.
    if (!shard.feed_.empty()) {
      __builtin_prefetch(&shard.feed_[(shard.feed_head_ + 1) & (shard.feed_.size() - 1)], 1, 3);
    }
  };
  const std::size_t n = in.size();
  for (std::size_t j = 0; j < n && j < kFar; ++j) stage_a(j);
  for (std::size_t j = 0; j < n && j < kNear; ++j) stage_b(j);
  for (std::size_t j = 0; j < n; ++j) {
    const EntryView& e = in[j];
    MergeOutcome& o = out[j];
    const std::uint64_t h = hashes[j % kFar];
    if (j + kFar < n) stage_a(j + kFar);
    if (j + kNear < n) stage_b(j + kNear);
    if (e.key.empty() || e.version.is_zero()) {
      ++invalid;
      o = MergeOutcome::kRefused;
      continue;
    }
    if (e.key.size() > config_.key_bytes_max ||
        (!e.tombstone && e.value.size() > config_.value_bytes_max)) {
      ++too_large;
      o = MergeOutcome::kRefused;
      continue;
    }
    if (e.version.physical_ms() > horizon_ms) {
      ++skewed;
      o = MergeOutcome::kRefused;
      continue;
    }
    Shard& shard = *shards_[shard_of_hash(h)];
    RUMOR_ASSERT(shard.owner_ == owner);  // a field, not a division per entry
    if (!shard.fast_merge(h, e, &o)) {
      const EntryView view = e.tombstone ? EntryView{e.key, {}, e.version, true} : e;
      o = shard.merge_hashed(h, view, false);
    }
    if (o == MergeOutcome::kRefused) ++invalid;
    if (e.version.hlc > max_hlc) max_hlc = e.version.hlc;
  }
  if (max_hlc != 0) {
    const Status st = hlc.observe(max_hlc);
    RUMOR_ASSERT(st.is_ok());  // every timestamp folded in passed the same horizon
  }
  auto add = [](std::atomic<std::uint64_t>& c, std::uint64_t v) {
    if (v) c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  };
  add(os.refused_too_large, too_large);
  add(os.refused_invalid, invalid);
  add(os.refused_clock_skew, skewed);
}

std::size_t Store::drain_writes(std::uint32_t owner, std::size_t max) {
  assert_owner(owner);
  OwnerState& os = *owners_[owner];
  std::size_t n = 0;
  while (n < max) {
    // A durable backend behind on its disk: the rest wait here (the writers' queue fills and
    // answers kBusy) instead of being refused one by one.
    if (journal_ != nullptr && journal_->full(owner)) break;
    std::optional<WriteOp> op = os.queue.pop();
    if (!op) break;
    // Sizes were checked at submit; write_local checks again and counts a refusal.
    (void)write_local(op->key, op->value, op->tombstone);
    ++n;
  }
  return n;
}

std::size_t Store::collect_garbage(std::uint32_t owner) {
  assert_owner(owner);
  return owners_[owner]->retirer.collect();
}

Status Store::submit(std::string_view key, std::string_view value, bool tombstone) {
  if (Status st = check_sizes(key, value); !st) return st;
  const std::uint32_t owner = owner_of_shard(shard_of(key));
  OwnerState& os = *owners_[owner];
  if (!os.queue.push(WriteOp{std::string(key), std::string(value), tombstone})) {
    // Relaxed RMW: many threads count here; it is a statistic.
    os.write_queue_full.fetch_add(1, std::memory_order_relaxed);
    return Status::error(Code::kBusy, "write queue of owner " + std::to_string(owner) +
                                          " is full (write_queue_depth " +
                                          std::to_string(config_.write_queue_depth) + ")");
  }
  return Status::ok();
}

Status Store::submit_set(std::string_view key, std::string_view value) {
  return submit(key, value, false);
}

Status Store::submit_del(std::string_view key) { return submit(key, {}, true); }

StoreCounters Store::counters() const {
  StoreCounters sum;
  for (const auto& s : shards_) {
    const StoreCounters c = s->counters();
    sum.merges_applied += c.merges_applied;
    sum.merges_stale += c.merges_stale;
    sum.tombstones_purged += c.tombstones_purged;
    sum.reset_discarded += c.reset_discarded;
    sum.feed_overruns += c.feed_overruns;
    sum.table_grows += c.table_grows;
    sum.live_entries += c.live_entries;
    sum.tombstones += c.tombstones;
  }
  auto r = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  for (const auto& o : owners_) {
    sum.refused_too_large += r(o->refused_too_large);
    sum.refused_invalid += r(o->refused_invalid);
    sum.refused_clock_skew += r(o->refused_clock_skew);
    sum.write_queue_full += r(o->write_queue_full);
  }
  return sum;
}

}  // namespace rumor

