// Shard: one virtual shard's table, Merkle tree and change feed (see store.h).
#include <algorithm>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "base/memory.h"
#include "digest/hash.h"
#include "engine/store/journal.h"
#include "engine/store/store.h"
#include "engine/store/store_detail.h"

namespace rumor {

using namespace store_detail;

namespace {

// Calls fn(key hash, version, entry hash) for every entry and tombstone of table t (owner
// thread): the scans that size a Merkle tree or start a shard's RIBLT prefix from its table.
template <typename Fn>
void for_each_entry_hash(const Table* t, Fn&& fn) {
  for (std::uint64_t i = 0; t && i <= t->mask; ++i) {
    const Slot& s = t->slots[i];
    const std::uint64_t h = ld(s.hash);
    const std::uint64_t m = ld(s.meta);
    if (h == 0 || (meta_flags(m) & kFlagGrave)) continue;
    const Version v{ld(s.hlc), ld(s.node)};
    fn(h, v, digest::entry_hash(h, v, (meta_flags(m) & kFlagTombstone) != 0));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shard

Shard::Shard(Store& store, std::uint32_t index)
    : store_(store),
      index_(index),
      owner_(store.owner_of_shard(index)),
      riblt_key_(store.riblt_key()),
      owner_feed_pushes_(&store.owners_[owner_]->feed_pushes) {}

Shard::~Shard() {
  // Destruction happens when no reader remains (the Store's owner guarantees it).
  Table* t = table_.load(std::memory_order_relaxed);
  if (!t) return;
  for (std::uint64_t i = 0; i <= t->mask; ++i) {
    Slot& s = t->slots[i];
    const std::uint64_t m = ld(s.meta);
    if (ld(s.hash) != 0 && !(meta_flags(m) & kFlagGrave) && (meta_flags(m) & kFlagBlob)) {
      Blob::destroy(reinterpret_cast<void*>(ld(s.payload[0])));
    }
  }
  Table::destroy(t);
}

std::size_t Shard::capacity() const {
  auto guard = EpochDomain::global().pin();
  Table* t = table_.load(std::memory_order_acquire);
  return t ? t->capacity() : 0;
}

void Shard::rebuild(std::uint32_t log2_capacity) {
  Table* old = table_.load(std::memory_order_relaxed);
  Table* t = Table::make(log2_capacity);
  std::uint64_t live = 0;
  if (old) {
    for (std::uint64_t i = 0; i <= old->mask; ++i) {
      const Slot& from = old->slots[i];
      const std::uint64_t h = ld(from.hash);
      if (h == 0 || (meta_flags(ld(from.meta)) & kFlagGrave)) continue;
      std::uint64_t j = t->home(h);
      while (ld(t->slots[j].hash) != 0) j = (j + 1) & t->mask;
      Slot& to = t->slots[j];
      // The new table is not published yet: no reader can see these stores.
      st(to.hash, h);
      st(to.hlc, ld(from.hlc));
      st(to.node, ld(from.node));
      st(to.meta, ld(from.meta));
      st(to.aux, ld(from.aux));
      for (std::size_t w = 0; w < kPayloadWords; ++w) st(to.payload[w], ld(from.payload[w]));
      ++live;
    }
  }
  used_ = live;
  graves_ = 0;
  // Release: the new table's slots are fully written before a reader can load the pointer.
  table_.store(t, std::memory_order_release);
  if (old) {
    // Blobs moved to the new table; only the old slot array goes.
    store_.owners_[owner_]->retirer.retire(old, &Table::destroy);
  }
  bump(c_.table_grows);
}

void Shard::grow_if_needed() {
  Table* t = table_.load(std::memory_order_relaxed);
  if (!t) {
    rebuild(kLog2CapacityMin);
    return;
  }
  // Keep probe chains short: at most 3/4 of the slots used (graves included).
  if ((used_ + 1) * 4 <= t->capacity() * 3) return;
  const std::uint64_t live = used_ - graves_;
  std::uint32_t log2 = kLog2CapacityMin;
  while ((std::uint64_t{1} << log2) < (live + 1) * 2) ++log2;
  rebuild(log2);
}

void Shard::make_grave(void* slot_ptr) {
  Slot& s = *static_cast<Slot*>(slot_ptr);
  // The key before the slot becomes a grave (a blob is only retired below, so the view stays
  // valid); the journal hears of the erase after readers can see it, as of every change: a
  // rewrite that scans after this record's ticket must not find the key live.
  char key_buf[kInlineBytes];
  const std::string_view key = store_.journal_ ? owner_view(s, key_buf).key : std::string_view();
  const std::uint64_t m = ld(s.meta);
  const std::uint64_t seq = begin_write(s);
  st(s.meta, pack_meta(0, 0, kFlagGrave));
  end_write(s, seq);
  if (Journal* j = store_.journal_) j->erased(owner_, index_, key);
  if (meta_flags(m) & kFlagBlob) {
    store_.owners_[owner_]->retirer.retire(
        reinterpret_cast<void*>(ld(s.payload[0])), &Blob::destroy);
  }
  if (meta_flags(m) & kFlagTombstone) {
    bump(c_.tombstones, -1);
  } else {
    bump(c_.live_entries, -1);
  }
  ++graves_;
  const std::uint64_t h = ld(s.hash);
  const std::uint64_t hlc = ld(s.hlc);
  const std::uint64_t eh =
      digest::entry_hash(h, Version{hlc, ld(s.node)}, (meta_flags(m) & kFlagTombstone) != 0);
  tree_->remove(h, eh);
  if (riblt_) riblt_->remove(riblt_element(h, hlc, eh));
}

void Shard::tree_add(std::uint64_t hash, const Version& v, bool tombstone) {
  if (!tree_) tree_ = std::make_unique<digest::MerkleTree>(0);
  const std::uint64_t eh = digest::entry_hash(hash, v, tombstone);
  tree_->add(hash, eh);
  if (riblt_) {
    riblt_->add(riblt_element(hash, v.hlc, eh));
  } else if (tree_->entries() > kRibltPrefixEntriesMin) [[unlikely]] {
    make_riblt();
  }
}

void Shard::grow_feed() {
  // Called when the ring is full (feed_head_ == its size) and smaller than change_feed_depth:
  // records 0..head-1 sit at their own number, which is also their index in the doubled ring,
  // so growing moves nothing and loses nothing.
  const std::size_t depth = store_.config_.change_feed_depth;
  const std::size_t size = std::min(depth, std::max(kFeedFirstRecords, 2 * feed_.size()));
  RUMOR_ASSERT(feed_head_ == feed_.size());
  feed_.resize(size);
  feed_mask_ = size - 1;
  feed_grow_at_ = size < depth ? size : UINT64_MAX;
}

void Shard::make_riblt() {
  const std::uint32_t k = store_.config_.riblt_prefix_symbols;
  if (k == 0) return;
  // Once per shard, when it outgrows kRibltPrefixEntriesMin: the table already holds the entry
  // being added, so the scan counts every entry once.
  riblt_ = std::make_unique<digest::RibltPrefix>(k, riblt_key_);
  for_each_entry_hash(table_.load(std::memory_order_relaxed),
                      [&](std::uint64_t h, const Version& v, std::uint64_t eh) {
                        riblt_->add(riblt_element(h, v.hlc, eh));
                      });
}

MergeOutcome Shard::merge_hashed(std::uint64_t hash, const EntryView& e, bool local) {
  RUMOR_ASSERT(hash != 0);
  Table* t = table_.load(std::memory_order_relaxed);
  if (t) {
    std::uint64_t i = t->home(hash);
    std::uint64_t grave = ~std::uint64_t{0};
    for (std::uint64_t probes = 0; probes <= t->mask; ++probes, i = (i + 1) & t->mask) {
      Slot& s = t->slots[i];
      const std::uint64_t h = ld(s.hash);
      if (h == 0) break;
      const std::uint64_t m = ld(s.meta);
      if (meta_flags(m) & kFlagGrave) {
        if (grave == ~std::uint64_t{0}) grave = i;
        continue;
      }
      if (h != hash || !owner_key_equals(s, m, e.key)) continue;
      const Version cur{ld(s.hlc), ld(s.node)};
      if (e.version <= cur) {
        bump(c_.merges_stale);
        return MergeOutcome::kStale;
      }
      const bool was_tomb = (meta_flags(m) & kFlagTombstone) != 0;
      write_slot(&s, hash, e, /*slot_was_live=*/true);
      const std::uint64_t old_eh = digest::entry_hash(hash, cur, was_tomb);
      const std::uint64_t new_eh = digest::entry_hash(hash, e.version, e.tombstone);
      tree_->replace(hash, old_eh, new_eh);
      if (riblt_) {
        riblt_->replace(riblt_element(hash, cur.hlc, old_eh),
                        riblt_element(hash, e.version.hlc, new_eh));
      }
      if (was_tomb != e.tombstone) {
        bump(c_.tombstones, e.tombstone ? 1 : -1);
        bump(c_.live_entries, e.tombstone ? -1 : 1);
      }
      bump(c_.merges_applied);
      feed_push(hash, e, local);
      return MergeOutcome::kApplied;
    }
    // Absent. Reuse the first grave on the chain, if any, without growing.
    if (grave != ~std::uint64_t{0}) {
      write_slot(&t->slots[grave], hash, e, /*slot_was_live=*/false);
      tree_add(hash, e.version, e.tombstone);
      --graves_;
      bump(e.tombstone ? c_.tombstones : c_.live_entries);
      bump(c_.merges_applied);
      feed_push(hash, e, local);
      return MergeOutcome::kApplied;
    }
  }
  // Insert into an empty slot.
  if (used_ - graves_ >= store_.config_.keys_per_shard_max) {
    return MergeOutcome::kRefused;
  }
  grow_if_needed();
  t = table_.load(std::memory_order_relaxed);
  std::uint64_t i = t->home(hash);
  while (ld(t->slots[i].hash) != 0) i = (i + 1) & t->mask;
  write_slot(&t->slots[i], hash, e, /*slot_was_live=*/false);
  tree_add(hash, e.version, e.tombstone);
  ++used_;
  bump(e.tombstone ? c_.tombstones : c_.live_entries);
  bump(c_.merges_applied);
  feed_push(hash, e, local);
  return MergeOutcome::kApplied;
}

void Shard::for_each_sorted(
    const std::function<void(std::uint64_t, const EntryView&)>& fn) const {
  const Table* t = table_.load(std::memory_order_relaxed);
  if (!t) return;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> order;  // (hash, slot index)
  order.reserve(used_ - graves_);
  for (std::uint64_t i = 0; i <= t->mask; ++i) {
    const Slot& s = t->slots[i];
    const std::uint64_t h = ld(s.hash);
    if (h != 0 && !(meta_flags(ld(s.meta)) & kFlagGrave)) order.emplace_back(h, i);
  }
  char buf_a[kInlineBytes], buf_b[kInlineBytes];
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return owner_view(t->slots[a.second], buf_a).key < owner_view(t->slots[b.second], buf_b).key;
  });
  char buf[kInlineBytes];
  for (const auto& [h, i] : order) fn(h, owner_view(t->slots[i], buf));
}

void Shard::find_hash(std::uint64_t hash, const std::function<void(const EntryView&)>& fn) const {
  const Table* t = table_.load(std::memory_order_relaxed);
  if (!t) return;
  std::uint64_t i = t->home(hash);
  char buf[kInlineBytes];
  for (std::uint64_t probes = 0; probes <= t->mask; ++probes, i = (i + 1) & t->mask) {
    const Slot& s = t->slots[i];
    const std::uint64_t h = ld(s.hash);
    if (h == 0) return;
    if (h == hash && !(meta_flags(ld(s.meta)) & kFlagGrave)) fn(owner_view(s, buf));
  }
}

void Shard::for_each_in_hash_range(
    std::uint64_t lo, std::uint64_t hi,
    const std::function<void(std::uint64_t, const EntryView&)>& fn) const {
  const Table* t = table_.load(std::memory_order_relaxed);
  if (!t || lo > hi) return;
  // An entry sits at or after its home slot with no empty slot in between (graves keep their
  // hash, so chains never break). Entries in [lo, hi] have homes in [home(lo), home(hi)], so
  // they all lie between home(lo) and the first empty slot past home(hi).
  const std::uint64_t first = t->home(lo);
  const std::uint64_t span = t->home(hi) - first;
  char buf[kInlineBytes];
  std::uint64_t i = first;
  for (std::uint64_t off = 0; off <= t->mask; ++off, i = (i + 1) & t->mask) {
    const Slot& s = t->slots[i];
    const std::uint64_t h = ld(s.hash);
    if (h == 0) {
      if (off > span) return;
      continue;
    }
    if (h < lo || h > hi || (meta_flags(ld(s.meta)) & kFlagGrave)) continue;
    fn(h, owner_view(s, buf));
  }
}

digest::RibltPrefix* Shard::riblt() {
  if (riblt_) riblt_->fold();
  return riblt_.get();
}

const digest::MerkleTree* Shard::merkle() {
  if (!tree_) return nullptr;
  if (tree_->wants_resize()) {
    // Rare: the entry count has grown past, or shrunk far below, what the leaves were sized
    // for. The scan is O(entries) once per several-fold change, so O(1) amortised per write.
    tree_->reset(digest::MerkleTree::leaf_bits_for(tree_->entries()));
    for_each_entry_hash(table_.load(std::memory_order_relaxed),
                        [&](std::uint64_t h, const Version&, std::uint64_t eh) {
                          tree_->insert(h, eh);
                        });
    tree_->fold_all();
  } else {
    tree_->fold();
  }
  return tree_.get();
}

std::size_t Shard::read_feed(std::uint64_t* cursor, std::size_t max,
                             const std::function<void(const ChangeRecord&)>& fn) {
  // The ring holds every record since the first until it reaches change_feed_depth
  // (grow_feed), so a cursor can only fall behind once it has.
  const std::uint64_t depth = feed_.size();
  if (feed_head_ > depth && *cursor < feed_head_ - depth) {
    bump(c_.feed_overruns);
    *cursor = feed_head_ - depth;
  }
  std::size_t n = 0;
  while (*cursor < feed_head_ && n < max) {
    fn(feed_[*cursor & feed_mask_]);
    ++*cursor;
    ++n;
  }
  return n;
}

std::size_t Shard::purge_tombstones(std::uint64_t now_ms) {
  Table* t = table_.load(std::memory_order_relaxed);
  if (!t) return 0;
  const std::uint64_t grace = store_.config_.tombstone_grace_ms;
  std::size_t purged = 0;
  for (std::uint64_t i = 0; i <= t->mask; ++i) {
    Slot& s = t->slots[i];
    if (ld(s.hash) == 0) continue;
    const std::uint64_t f = meta_flags(ld(s.meta));
    if (!(f & kFlagTombstone) || (f & kFlagGrave)) continue;
    const std::uint64_t written_ms = hlc_physical_ms(ld(s.hlc));
    if (written_ms + grace < now_ms) {
      make_grave(&s);
      ++purged;
    }
  }
  bump(c_.tombstones_purged, static_cast<std::int64_t>(purged));
  return purged;
}

std::uint32_t Shard::begin_sync() { return sync_epoch_++; }

void Shard::complete_sync(std::uint32_t token, std::uint64_t now_ms) {
  if (token > safe_sync_epoch_) safe_sync_epoch_ = token;
  if (now_ms > last_sync_ms_) last_sync_ms_ = now_ms;
  if (Journal* j = store_.journal_) j->synced(owner_, index_, sync_state());
}

ShardSyncState Shard::sync_state() const {
  return ShardSyncState{sync_epoch_, safe_sync_epoch_, last_sync_ms_};
}

void Shard::restore(std::uint64_t hash, const EntryView& e, std::uint32_t epoch) {
  const std::uint32_t current = sync_epoch_;
  sync_epoch_ = epoch;  // stamped into the slot by write_slot
  merge_hashed(hash, e, /*local=*/false);
  sync_epoch_ = std::max(current, epoch);
}

void Shard::restore_sync_state(const ShardSyncState& s) {
  sync_epoch_ = std::max(sync_epoch_, s.sync_epoch);
  safe_sync_epoch_ = s.safe_sync_epoch;
  last_sync_ms_ = s.last_sync_ms;
}

std::size_t Shard::reset_if_stale(std::uint64_t now_ms) {
  if (safe_sync_epoch_ == 0) return 0;  // no peer is known to hold anything of ours
  if (now_ms <= last_sync_ms_ + store_.config_.tombstone_grace_ms) return 0;
  Table* t = table_.load(std::memory_order_relaxed);
  if (!t) return 0;
  std::size_t discarded = 0;
  for (std::uint64_t i = 0; i <= t->mask; ++i) {
    Slot& s = t->slots[i];
    if (ld(s.hash) == 0 || (meta_flags(ld(s.meta)) & kFlagGrave)) continue;
    if (ld(s.aux) <= safe_sync_epoch_) {
      make_grave(&s);
      ++discarded;
    }
  }
  bump(c_.reset_discarded, static_cast<std::int64_t>(discarded));
  return discarded;
}

namespace {
// Out of line on purpose: inlining std::string's assign doubled Shard::read's code and cost the
// concurrent get benchmark ~15% (get/rumor, 3.5 -> 3.1 M/s).
[[gnu::noinline]] void assign_value(std::string* out, std::string_view v) { out->assign(v); }
}  // namespace

bool Shard::read(std::uint64_t hash, std::string_view key, std::string* value, Version* version,
                 bool* tombstone) const {
  auto guard = EpochDomain::global().pin();
  // Acquire: pairs with the release in rebuild(); the table's slots are initialised.
  const Table* t = table_.load(std::memory_order_acquire);
  if (!t) return false;
  std::uint64_t i = t->home(hash);
  SlotCopy c;
  for (std::uint64_t probes = 0; probes <= t->mask; ++probes, i = (i + 1) & t->mask) {
    const Slot& s = t->slots[i];
    // The hash word alone decides whether to look closer: it changes only when a slot is first
    // used or a grave is reused, and a read racing an insert may miss it either way.
    const std::uint64_t h = s.hash.load(std::memory_order_relaxed);
    if (h == 0) return false;
    if (h != hash) continue;
    reader_copy(s, &c);
    if (c.hash != hash || (meta_flags(c.meta) & kFlagGrave)) continue;
    if (meta_key_len(c.meta) != key.size()) continue;
    std::string_view k, v;
    copy_key_value(c, &k, &v);
    if (k != key) continue;
    if (value) assign_value(value, v);
    if (version) *version = Version{c.hlc, c.node};
    if (tombstone) *tombstone = (meta_flags(c.meta) & kFlagTombstone) != 0;
    return true;
  }
  return false;
}

// The readers' entry points live beside Shard::read so that a lookup inlines into one function.
bool Store::get(std::string_view key, std::string* value, Version* version) const {
  if (key.empty()) return false;
  const std::uint64_t h = hash_key(key);
  bool tomb = false;
  return shards_[shard_of_hash(h)]->read(h, key, value, version, &tomb) && !tomb;
}

std::optional<Entry> Store::get_entry(std::string_view key) const {
  if (key.empty()) return std::nullopt;
  const std::uint64_t h = hash_key(key);
  Entry e;
  if (!shards_[shard_of_hash(h)]->read(h, key, &e.value, &e.version, &e.tombstone)) {
    return std::nullopt;
  }
  e.key.assign(key);
  return e;
}

void Shard::scan(const std::function<void(const Entry&)>& fn) const {
  scan_with_epoch([&](const Entry& e, std::uint32_t) { fn(e); });
}

void Shard::scan_with_epoch(const std::function<void(const Entry&, std::uint32_t)>& fn) const {
  auto guard = EpochDomain::global().pin();
  const Table* t = table_.load(std::memory_order_acquire);  // see read()
  if (!t) return;
  SlotCopy c;
  Entry e;
  for (std::uint64_t i = 0; i <= t->mask; ++i) {
    const Slot& s = t->slots[i];
    if (s.hash.load(std::memory_order_relaxed) == 0) continue;
    reader_copy(s, &c);
    if (c.hash == 0 || (meta_flags(c.meta) & kFlagGrave)) continue;
    std::string_view k, v;
    copy_key_value(c, &k, &v);
    e.key.assign(k);
    e.value.assign(v);
    e.version = Version{c.hlc, c.node};
    e.tombstone = (meta_flags(c.meta) & kFlagTombstone) != 0;
    fn(e, static_cast<std::uint32_t>(c.aux));
  }
}

StoreCounters Shard::counters() const {
  auto r = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  StoreCounters out;
  out.merges_applied = r(c_.merges_applied);
  out.merges_stale = r(c_.merges_stale);
  out.tombstones_purged = r(c_.tombstones_purged);
  out.reset_discarded = r(c_.reset_discarded);
  out.feed_overruns = r(c_.feed_overruns);
  out.table_grows = r(c_.table_grows);
  out.live_entries = r(c_.live_entries);
  out.tombstones = r(c_.tombstones);
  return out;
}

}  // namespace rumor
