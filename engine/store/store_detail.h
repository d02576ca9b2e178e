// The store's private layout, shared by shard.cc and store.cc: the slot of a shard's
// open-addressing table, the table, out-of-line blobs, the owner- and reader-side accessors of a
// slot (a seqlock: begin_write/end_write on the owner, reader_copy on readers), and the write
// path that must inline into both Shard::merge_hashed (shard.cc) and Store::merge_batch
// (store.cc): write_slot, feed_push and fast_merge.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>

#include "base/memory.h"
#include "digest/hash.h"
#include "engine/store/journal.h"
#include "engine/store/store.h"

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

}  // namespace store_detail

// The write path, inline here because Shard::merge_hashed (shard.cc) and Store::merge_batch
// (store.cc) both inline it. Each body opens store_detail itself: a header should not open a
// namespace for everyone who includes it.

[[gnu::always_inline]] inline void Shard::write_slot(void* slot_ptr, std::uint64_t hash,
                                                     const EntryView& e, bool slot_was_live) {
  using namespace store_detail;
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

[[gnu::always_inline]] inline void Shard::feed_push(std::uint64_t hash, const EntryView& e,
                                                    bool local) {
  using namespace store_detail;
  if (feed_head_ == feed_grow_at_) [[unlikely]] grow_feed();
  // Field by field: copying a whole ChangeRecord made g++ build it on the stack and reload it
  // with 16-byte loads straddling narrower stores, two failed store-to-load forwards per merge.
  ChangeRecord& r = feed_[feed_head_ & feed_mask_];
  r.key_hash = hash;
  r.version = e.version;
  r.tombstone = e.tombstone;
  r.local = local;
  ++feed_head_;
  ++*owner_feed_pushes_;
  if (Journal* j = store_.journal_) [[unlikely]] {
    j->applied(owner_, index_, e, sync_epoch_);
  }
}

// The common case of the merge path, small enough to inline into merge_batch: a newer (or
// stale) version of a live inline entry near its home slot, with a key length that is
// a multiple of 8 (so value words need no shifting) and no tombstone on either side. Anything
// else returns false and takes merge_hashed. Same protocol as write_slot. Looks at the first
// few slots of the probe chain only.
[[gnu::always_inline]] inline bool Shard::fast_merge(std::uint64_t hash, const EntryView& e,
                                                     MergeOutcome* out) {
  using namespace store_detail;
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
  const std::uint64_t old_eh = digest::entry_hash_keyed(key_mix, cur);
  const std::uint64_t new_eh = digest::entry_hash_keyed(key_mix, e.version);
  tree_->replace(hash, old_eh, new_eh);
  if (riblt_) {
    riblt_->replace(riblt_element(hash, cur.hlc, old_eh), riblt_element(hash, e.version.hlc, new_eh));
  }
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
  feed_push(hash, e, false);
  *out = MergeOutcome::kApplied;
  return true;
}

}  // namespace rumor
