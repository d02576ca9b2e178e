#include "engine/store/store.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "base/memory.h"
#include "digest/hash.h"

namespace rumor {
namespace store_detail {

// Slot layout: 16 words, two cache lines. The first line holds what a probe and a version
// comparison touch (hash, version, lengths) plus the first 16 payload bytes, so a 16-byte key is
// compared without touching the second line.
inline constexpr std::size_t kPayloadWords = 10;
inline constexpr std::size_t kInlineBytes = kPayloadWords * 8;  // key + value up to 80 bytes

inline constexpr std::uint64_t kFlagTombstone = 1;
inline constexpr std::uint64_t kFlagBlob = 2;   // payload[0] points to a Blob
inline constexpr std::uint64_t kFlagGrave = 4;  // freed: skipped by lookups, continues chains

struct alignas(kCacheLineBytes) Slot {
  std::atomic<std::uint64_t> seq;   // even: stable; odd: the owner is writing
  std::atomic<std::uint64_t> hash;  // key hash, never 0 for a used slot; 0 = never used
  std::atomic<std::uint64_t> hlc;
  std::atomic<std::uint64_t> node;
  std::atomic<std::uint64_t> meta;  // key_len:16 | value_len:32 | flags:8
  std::atomic<std::uint64_t> aux;   // sync epoch at the last write
  std::atomic<std::uint64_t> payload[kPayloadWords];
};
static_assert(sizeof(Slot) == 2 * kCacheLineBytes);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

constexpr std::uint64_t pack_meta(std::size_t key_len, std::size_t value_len, std::uint64_t flags) {
  return static_cast<std::uint64_t>(key_len) | (static_cast<std::uint64_t>(value_len) << 16) |
         (flags << 48);
}
constexpr std::size_t meta_key_len(std::uint64_t m) { return m & 0xffff; }
constexpr std::size_t meta_value_len(std::uint64_t m) { return (m >> 16) & 0xffffffff; }
constexpr std::uint64_t meta_flags(std::uint64_t m) { return m >> 48; }
static_assert(sizeof(std::size_t) == 8);

// Immutable once published; freed through the owner's Retirer.
struct Blob {
  std::uint32_t key_len;
  std::uint32_t value_len;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  std::string_view key() { return {data(), key_len}; }
  std::string_view value() { return {data() + key_len, value_len}; }

  static Blob* make(std::string_view key, std::string_view value) {
    void* mem = ::operator new(sizeof(Blob) + key.size() + value.size());
    auto* b = new (mem) Blob{static_cast<std::uint32_t>(key.size()),
                             static_cast<std::uint32_t>(value.size())};
    std::memcpy(b->data(), key.data(), key.size());
    if (!value.empty()) std::memcpy(b->data() + key.size(), value.data(), value.size());
    return b;
  }
  static void destroy(void* p) { ::operator delete(p); }
};

struct Table {
  std::uint32_t log2_capacity;
  std::uint64_t mask;
  Slot* slots;

  static Table* make(std::uint32_t log2_capacity) {
    auto* t = new Table{log2_capacity, (std::uint64_t{1} << log2_capacity) - 1, nullptr};
    // Zero-filled memory: every slot is empty with sequence 0. Slot is an array of
    // std::atomic<uint64_t>, trivially destructible and valid when all bits are zero; the
    // placement new starts the objects' lifetimes (it writes the same zeros again, which also
    // faults the pages in here rather than on the first probes).
    void* mem = alloc_zeroed(sizeof(Slot) * t->capacity());
    t->slots = new (mem) Slot[t->capacity()]();
    return t;
  }
  static void destroy(void* p) {
    auto* t = static_cast<Table*>(p);
    free_zeroed(t->slots, sizeof(Slot) * t->capacity());
    delete t;
  }
  std::uint64_t capacity() const { return mask + 1; }
  std::uint64_t home(std::uint64_t hash) const { return hash >> (64 - log2_capacity); }
};

inline constexpr std::uint32_t kLog2CapacityMin = 3;

// ---- owner-side slot access (the owner is the only writer, so plain relaxed loads are exact).
inline std::uint64_t ld(const std::atomic<std::uint64_t>& a) {
  return a.load(std::memory_order_relaxed);
}
inline void st(std::atomic<std::uint64_t>& a, std::uint64_t v) {
  a.store(v, std::memory_order_relaxed);
}

// Copies n bytes of the inline payload out of a slot (relaxed word loads).
inline void copy_payload(const Slot& s, std::size_t n, char* dst) {
  std::uint64_t words[kPayloadWords];
  const std::size_t nw = (n + 7) / 8;
  for (std::size_t i = 0; i < nw; ++i) words[i] = ld(s.payload[i]);
  std::memcpy(dst, words, n);
}

inline bool owner_key_equals(const Slot& s, std::uint64_t meta, std::string_view key) {
  if (meta_key_len(meta) != key.size()) return false;
  if (meta_flags(meta) & kFlagBlob) {
    auto* b = reinterpret_cast<Blob*>(ld(s.payload[0]));
    return b->key() == key;
  }
  // Word by word, without a copy: the key starts at payload byte 0.
  const char* k = key.data();
  const std::size_t full = key.size() / 8;
  for (std::size_t i = 0; i < full; ++i) {
    std::uint64_t w;
    std::memcpy(&w, k + i * 8, 8);
    if (ld(s.payload[i]) != w) return false;
  }
  const std::size_t rest = key.size() % 8;
  if (rest == 0) return true;
  std::uint64_t w = 0;
  for (std::size_t b = 0; b < rest; ++b) {
    w |= static_cast<std::uint64_t>(static_cast<unsigned char>(k[full * 8 + b])) << (8 * b);
  }
  const std::uint64_t mask = (std::uint64_t{1} << (8 * rest)) - 1;
  return (ld(s.payload[full]) & mask) == w;
}

// An owner-side view of a slot's entry; `buf` backs inline bytes.
inline EntryView owner_view(const Slot& s, char (&buf)[kInlineBytes]) {
  const std::uint64_t m = ld(s.meta);
  EntryView v;
  v.version = Version{ld(s.hlc), ld(s.node)};
  v.tombstone = (meta_flags(m) & kFlagTombstone) != 0;
  if (meta_flags(m) & kFlagBlob) {
    auto* b = reinterpret_cast<Blob*>(ld(s.payload[0]));
    v.key = b->key();
    v.value = b->value();
  } else {
    const std::size_t kl = meta_key_len(m), vl = meta_value_len(m);
    copy_payload(s, kl + vl, buf);
    v.key = std::string_view(buf, kl);
    v.value = std::string_view(buf + kl, vl);
  }
  return v;
}

// The owner's side of the seqlock: every write to a slot readers can see is bracketed by these.
[[gnu::always_inline]] inline std::uint64_t begin_write(Slot& s) {
  const std::uint64_t seq = ld(s.seq);
  st(s.seq, seq + 1);
  // Release fence: the odd sequence is visible before any data store that follows, so a reader
  // that sees new data also sees the sequence move.
  std::atomic_thread_fence(std::memory_order_release);
  return seq;
}
[[gnu::always_inline]] inline void end_write(Slot& s, std::uint64_t seq) {
  // Release: every store since begin_write happens before a reader that acquires the even
  // sequence.
  s.seq.store(seq + 2, std::memory_order_release);
}

// A consistent copy of one slot made by a reader on any thread.
struct SlotCopy {
  std::uint64_t hash, hlc, node, meta, aux;
  std::uint64_t payload[kPayloadWords];
};

// Seqlock read (Boehm, "Can seqlocks get along with programming language memory models?").
inline void reader_copy(const Slot& s, SlotCopy* c) {
  for (;;) {
    // Acquire: if we see the owner's final (even) sequence, we see every word it wrote before
    // it, including a blob's contents published with the pointer.
    const std::uint64_t s1 = s.seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      __builtin_ia32_pause();
      continue;
    }
    c->hash = s.hash.load(std::memory_order_relaxed);
    c->hlc = s.hlc.load(std::memory_order_relaxed);
    c->node = s.node.load(std::memory_order_relaxed);
    c->meta = s.meta.load(std::memory_order_relaxed);
    c->aux = s.aux.load(std::memory_order_relaxed);
    std::size_t nw = 1;
    if (!(meta_flags(c->meta) & kFlagBlob)) {
      nw = (meta_key_len(c->meta) + meta_value_len(c->meta) + 7) / 8;
      if (nw > kPayloadWords) nw = kPayloadWords;  // torn meta; the check below retries
    }
    for (std::size_t i = 0; i < nw; ++i) c->payload[i] = s.payload[i].load(std::memory_order_relaxed);
    // Acquire fence: the loads above complete before the second sequence load.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.seq.load(std::memory_order_relaxed) == s1) return;
  }
}

// The key and value of a validated copy. For a blob, valid while the caller stays pinned.
inline void copy_key_value(const SlotCopy& c, std::string_view* key, std::string_view* value) {
  if (meta_flags(c.meta) & kFlagBlob) {
    auto* b = reinterpret_cast<Blob*>(c.payload[0]);
    *key = b->key();
    *value = b->value();
  } else {
    const char* bytes = reinterpret_cast<const char*>(c.payload);
    *key = std::string_view(bytes, meta_key_len(c.meta));
    *value = std::string_view(bytes + meta_key_len(c.meta), meta_value_len(c.meta));
  }
}

thread_local const char t_thread_token = 0;
inline std::uint64_t this_thread_token() {
  return reinterpret_cast<std::uintptr_t>(&t_thread_token);
}

}  // namespace store_detail

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
// Shard

Shard::Shard(Store& store, std::uint32_t index)
    : store_(store), index_(index), owner_(store.owner_of_shard(index)) {}

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

// Copies n <= kInlineBytes bytes with inlined 8-byte moves (a libc memcpy call per field
// costs more than the copy at these sizes).
[[gnu::always_inline]] inline void small_copy(char* dst, const char* src, std::size_t n) {
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, src, 8);
    std::memcpy(dst, &w, 8);
    src += 8;
    dst += 8;
    n -= 8;
  }
  if (n >= 4) {  // two overlapping 4-byte moves cover 4..7
    std::uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
}

[[gnu::always_inline]] inline void Shard::write_slot(void* slot_ptr, std::uint64_t hash, const EntryView& e,
                       bool slot_was_live) {
  Slot& s = *static_cast<Slot*>(slot_ptr);
  const std::uint64_t old_meta = ld(s.meta);
  const bool old_blob = slot_was_live && (meta_flags(old_meta) & kFlagBlob);
  const std::uint64_t old_blob_ptr = old_blob ? ld(s.payload[0]) : 0;

  const std::size_t n = e.key.size() + e.value.size();
  std::uint64_t flags = e.tombstone ? kFlagTombstone : 0;
  std::uint64_t words[kPayloadWords];
  // An update of an inline entry keeps its key bytes: only the words from the one holding the
  // key's end onward change (and the hash, which is the same, is not rewritten).
  const bool same_key_inline = slot_was_live && !old_blob && n <= kInlineBytes;
  std::size_t first = 0, nw;
  if (n <= kInlineBytes) {
    nw = (n + 7) / 8;
    char* bytes = reinterpret_cast<char*>(words);
    if (nw) words[nw - 1] = 0;  // defined bytes after the end
    if (same_key_inline) {
      first = e.key.size() / 8;
      if (e.key.size() % 8) words[first] = ld(s.payload[first]);  // the key's tail bytes
    } else {
      small_copy(bytes, e.key.data(), e.key.size());
    }
    small_copy(bytes + e.key.size(), e.value.data(), e.value.size());
    if (same_key_inline && first + 1 == nw && n % 8) {
      words[first] &= (std::uint64_t{1} << (8 * (n % 8))) - 1;  // old value bytes past the end
    }
  } else {
    flags |= kFlagBlob;
    words[0] = reinterpret_cast<std::uintptr_t>(Blob::make(e.key, e.value));
    nw = 1;
  }

  const std::uint64_t seq = begin_write(s);
  if (!same_key_inline) st(s.hash, hash);
  st(s.hlc, e.version.hlc);
  st(s.node, e.version.node);
  st(s.meta, pack_meta(e.key.size(), e.value.size(), flags));
  st(s.aux, sync_epoch_);
  for (std::size_t i = first; i < nw; ++i) st(s.payload[i], words[i]);
  end_write(s, seq);

  if (old_blob_ptr) {
    store_.owners_[owner_]->retirer.retire(
        reinterpret_cast<void*>(old_blob_ptr), &Blob::destroy);
  }
}

void Shard::make_grave(void* slot_ptr) {
  Slot& s = *static_cast<Slot*>(slot_ptr);
  const std::uint64_t m = ld(s.meta);
  const std::uint64_t seq = begin_write(s);
  st(s.meta, pack_meta(0, 0, kFlagGrave));
  end_write(s, seq);
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
  tree_->remove(h, digest::entry_hash(h, Version{ld(s.hlc), ld(s.node)},
                                      (meta_flags(m) & kFlagTombstone) != 0));
}

void Shard::tree_add(std::uint64_t hash, const Version& v, bool tombstone) {
  if (!tree_) tree_ = std::make_unique<digest::MerkleTree>(0);
  tree_->add(hash, digest::entry_hash(hash, v, tombstone));
}

[[gnu::always_inline]] inline void Shard::feed_push(std::uint64_t hash, const Version& v,
                                                    bool tombstone, bool local) {
  const std::uint32_t depth = store_.config_.change_feed_depth;
  if (feed_.empty()) feed_.resize(depth);  // lazily: most shards of a small node stay empty
  // Field by field: copying a whole ChangeRecord made g++ build it on the stack and reload it
  // with 16-byte loads straddling narrower stores, two failed store-to-load forwards per merge.
  ChangeRecord& r = feed_[feed_head_ & (depth - 1)];
  r.key_hash = hash;
  r.version = v;
  r.tombstone = tombstone;
  r.local = local;
  ++feed_head_;
}

// Word-at-a-time access to the inline payload: fn(i) for i = n-1 down to 0 (n is at most
// kPayloadWords), unrolled by a fall-through switch. The generic loops cost ~4 instructions per
// word plus loop control, and a 16-byte key + 64-byte value is 10 words per merge.
template <typename Fn>
[[gnu::always_inline]] inline void each_word(std::size_t n, Fn&& fn) {
  static_assert(kPayloadWords == 10);
  switch (n) {
    case 10: fn(9); [[fallthrough]];
    case 9: fn(8); [[fallthrough]];
    case 8: fn(7); [[fallthrough]];
    case 7: fn(6); [[fallthrough]];
    case 6: fn(5); [[fallthrough]];
    case 5: fn(4); [[fallthrough]];
    case 4: fn(3); [[fallthrough]];
    case 3: fn(2); [[fallthrough]];
    case 2: fn(1); [[fallthrough]];
    case 1: fn(0); [[fallthrough]];
    default: break;
  }
}
inline std::uint64_t load_word(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// The common case of the merge path, small enough to inline into merge_batch: a newer (or
// stale) version of a live inline entry near its home slot, with a key length that is
// a multiple of 8 (so value words need no shifting) and no tombstone on either side. Anything
// else returns false and takes merge_hashed. Same protocol as write_slot. Looks at the first
// few slots of the probe chain only.
[[gnu::always_inline]] inline bool Shard::fast_merge(std::uint64_t hash, const EntryView& e,
                                                     MergeOutcome* out) {
  Table* t = table_.load(std::memory_order_relaxed);
  if (!t || e.tombstone) return false;
  constexpr int kProbes = 4;
  std::uint64_t at = t->home(hash);
  if (ld(t->slots[at].hash) != hash) {  // about half of all keys sit at home
    int p = 1;
    for (;; ++p) {
      if (p == kProbes) return false;
      at = (at + 1) & t->mask;
      const std::uint64_t h = ld(t->slots[at].hash);
      if (h == hash) break;
      if (h == 0) return false;
    }
  }
  Slot& s = t->slots[at];
  const std::uint64_t m = ld(s.meta);
  const std::size_t kl = e.key.size();
  const std::size_t vl = e.value.size();
  if (meta_flags(m) != 0 || meta_key_len(m) != kl || (kl & 7) != 0 || kl + vl > kInlineBytes) {
    return false;
  }
  const char* k = e.key.data();
  std::uint64_t differ = 0;
  each_word(kl / 8, [&](std::size_t i) { differ |= ld(s.payload[i]) ^ load_word(k + 8 * i); });
  if (differ != 0) return false;
  const Version cur{ld(s.hlc), ld(s.node)};
  if (e.version <= cur) {
    bump(c_.merges_stale);
    *out = MergeOutcome::kStale;
    return true;
  }
  const std::uint64_t key_mix = digest::entry_key_mix(hash, false);
  tree_->replace(hash, digest::entry_hash_keyed(key_mix, cur),
                 digest::entry_hash_keyed(key_mix, e.version));
  const char* v = e.value.data();
  const std::uint64_t seq = begin_write(s);
  st(s.hlc, e.version.hlc);
  st(s.node, e.version.node);
  st(s.meta, pack_meta(kl, vl, 0));
  st(s.aux, sync_epoch_);
  std::atomic<std::uint64_t>* dst = &s.payload[kl / 8];
  each_word(vl / 8, [&](std::size_t i) { st(dst[i], load_word(v + 8 * i)); });
  if (vl & 7) {
    std::uint64_t w = 0;
    small_copy(reinterpret_cast<char*>(&w), v + (vl & ~std::size_t{7}), vl & 7);
    st(dst[vl / 8], w);
  }
  end_write(s, seq);
  bump(c_.merges_applied);
  feed_push(hash, e.version, false, false);
  *out = MergeOutcome::kApplied;
  return true;
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
      tree_->replace(hash, digest::entry_hash(hash, cur, was_tomb),
                     digest::entry_hash(hash, e.version, e.tombstone));
      if (was_tomb != e.tombstone) {
        bump(c_.tombstones, e.tombstone ? 1 : -1);
        bump(c_.live_entries, e.tombstone ? -1 : 1);
      }
      bump(c_.merges_applied);
      feed_push(hash, e.version, e.tombstone, local);
      return MergeOutcome::kApplied;
    }
    // Absent. Reuse the first grave on the chain, if any, without growing.
    if (grave != ~std::uint64_t{0}) {
      write_slot(&t->slots[grave], hash, e, /*slot_was_live=*/false);
      tree_add(hash, e.version, e.tombstone);
      --graves_;
      bump(e.tombstone ? c_.tombstones : c_.live_entries);
      bump(c_.merges_applied);
      feed_push(hash, e.version, e.tombstone, local);
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
  feed_push(hash, e.version, e.tombstone, local);
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

const digest::MerkleTree* Shard::merkle() {
  if (!tree_) return nullptr;
  if (tree_->wants_resize()) {
    // Rare: the entry count has grown past, or shrunk far below, what the leaves were sized
    // for. The scan is O(entries) once per several-fold change, so O(1) amortised per write.
    tree_->reset(digest::MerkleTree::leaf_bits_for(tree_->entries()));
    const Table* t = table_.load(std::memory_order_relaxed);
    for (std::uint64_t i = 0; t && i <= t->mask; ++i) {
      const Slot& s = t->slots[i];
      const std::uint64_t h = ld(s.hash);
      const std::uint64_t m = ld(s.meta);
      if (h == 0 || (meta_flags(m) & kFlagGrave)) continue;
      tree_->insert(h, digest::entry_hash(h, Version{ld(s.hlc), ld(s.node)},
                                          (meta_flags(m) & kFlagTombstone) != 0));
    }
    tree_->fold_all();
  } else {
    tree_->fold();
  }
  return tree_.get();
}

std::size_t Shard::read_feed(std::uint64_t* cursor, std::size_t max,
                             const std::function<void(const ChangeRecord&)>& fn) {
  const std::uint64_t depth = store_.config_.change_feed_depth;
  if (feed_head_ > depth && *cursor < feed_head_ - depth) {
    bump(c_.feed_overruns);
    *cursor = feed_head_ - depth;
  }
  std::size_t n = 0;
  while (*cursor < feed_head_ && n < max) {
    fn(feed_[*cursor & (depth - 1)]);
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
    if (value) value->assign(v);
    if (version) *version = Version{c.hlc, c.node};
    if (tombstone) *tombstone = (meta_flags(c.meta) & kFlagTombstone) != 0;
    return true;
  }
  return false;
}

void Shard::scan(const std::function<void(const Entry&)>& fn) const {
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
    fn(e);
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

// ---------------------------------------------------------------------------------------------
// Store

Store::Store(const StoreConfig& config, NodeId self, TimeSource& time)
    : config_(config), self_(self), time_(time) {
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
                                             TimeSource& time) {
  if (Status s = config.validate(); !s) return s;
  return std::unique_ptr<Store>(new Store(config, self, time));
}

// Flattened: XXH3's short-input path inlined here instead of a second call per key.
[[gnu::flatten]] std::uint64_t Store::hash_key(std::string_view key) {
  const std::uint64_t h = XXH3_64bits(key.data(), key.size());
  return h == 0 ? 1 : h;  // 0 marks an empty slot
}

void Store::bind_owner(std::uint32_t owner) {
  RUMOR_ASSERT(owner < config_.owners);
  // Relaxed: only the binding thread itself compares against this value.
  owners_[owner]->bound_thread.store(this_thread_token(), std::memory_order_relaxed);
}

void Store::assert_owner(std::uint32_t owner) const {
  const std::uint64_t bound = owners_[owner]->bound_thread.load(std::memory_order_relaxed);
  RUMOR_ASSERT(bound == 0 || bound == this_thread_token());
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
  // once (a hash map's roof is memory-level parallelism, machine-limits.md):
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
  // The pipeline runs across the whole batch, so callers should hand in everything they have (a
  // reactor: all the entries of a loop turn's datagrams), not one datagram at a time.
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
