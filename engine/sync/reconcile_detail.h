// The pieces the reconciliation initiator (reconcile_session.cc) and responder
// (reconcile_responder.cc) share: entries copied out of a shard, the reader of tree nodes at any
// protocol level, a peer's entry summaries, and the sizing constants of records. Private to
// engine/sync.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "digest/hash.h"
#include "digest/messages.h"
#include "digest/riblt.h"
#include "engine/store/store.h"
#include "engine/sync/reconcile.h"

namespace rumor {

// The digest types the reconciliation files speak in (private header: these names stay inside
// engine/sync).
using digest::ByteWriter;
using digest::EntryRef;
using digest::Item;
using digest::MsgHeader;
using digest::MsgType;
using digest::Rec;
using digest::Record;
using digest::TreeNode;
using digest::TreeParams;

namespace reconcile_detail {

// A truncated, salted node hash as it crosses the wire.
inline std::uint64_t wire_hash(std::uint64_t h, std::uint64_t seed, std::uint32_t bytes) {
  const std::uint64_t s = digest::salted(h, seed);
  return bytes >= 8 ? s : s & ((std::uint64_t{1} << (8 * bytes)) - 1);
}

// Entries copied out of the store (views into a shard are valid only during a visit).
struct Held {
  std::uint64_t kh;
  Version v;
  bool tomb;
  std::uint32_t off, klen, vlen;
};

struct Arena {
  std::vector<Held> e;
  std::string bytes;

  void clear() {
    e.clear();
    bytes.clear();
  }
  void add(std::uint64_t kh, const EntryView& v) {
    const std::size_t vlen = v.tombstone ? 0 : v.value.size();
    e.push_back(Held{kh, v.version, v.tombstone, static_cast<std::uint32_t>(bytes.size()),
                     static_cast<std::uint32_t>(v.key.size()), static_cast<std::uint32_t>(vlen)});
    bytes.append(v.key);
    if (vlen) bytes.append(v.value.data(), vlen);
  }
  std::string_view key(const Held& h) const { return {bytes.data() + h.off, h.klen}; }
  EntryRef ref(const Held& h) const {
    return EntryRef{key(h), std::string_view(bytes.data() + h.off + h.klen, h.vlen), h.v, h.tomb};
  }
  void sort() {
    std::sort(e.begin(), e.end(), [&](const Held& a, const Held& b) {
      if (a.kh != b.kh) return a.kh < b.kh;
      return key(a) < key(b);
    });
  }
};

struct NodeSum {
  std::uint64_t hash = 0;
  std::uint64_t count = 0;
};

// Reads tree nodes of any protocol level from a shard: from its Merkle tree down to the tree's
// leaf depth, and below that by summing the entries of the node's hash range.
class ShardReader {
 public:
  ShardReader(Store& store, const TreeParams& p) : store_(store), p_(p) {}

  std::uint32_t bits(const TreeNode& n) const { return p_.bits(n.level); }
  std::uint64_t lo(const TreeNode& n) const { return digest::prefix_lo(bits(n), n.index); }
  std::uint64_t hi(const TreeNode& n) const { return digest::prefix_hi(bits(n), n.index); }

  NodeSum node(const TreeNode& n) {
    Shard& sh = store_.shard(n.shard);
    const digest::MerkleTree* t = sh.merkle();
    if (!t) return {};
    const std::uint32_t b = bits(n);
    if (b <= t->leaf_bits()) return {t->hash(b, n.index), t->count(b, n.index)};
    NodeSum s;
    sh.for_each_in_hash_range(lo(n), hi(n), [&](std::uint64_t kh, const EntryView& e) {
      s.hash += digest::entry_hash(kh, e.version, e.tombstone);
      ++s.count;
    });
    return s;
  }

  // The hashes and counts of n's fanout() children.
  void children(const TreeNode& n, std::uint64_t* hashes, std::uint64_t* counts) {
    const std::uint32_t f = p_.fanout_log2;
    const std::uint32_t fan = p_.fanout();
    std::fill(hashes, hashes + fan, 0);
    std::fill(counts, counts + fan, 0);
    Shard& sh = store_.shard(n.shard);
    const digest::MerkleTree* t = sh.merkle();
    if (!t) return;
    const std::uint32_t cb = bits(n) + f;
    const std::uint64_t first = std::uint64_t{n.index} << f;
    if (cb <= t->leaf_bits()) {
      for (std::uint32_t j = 0; j < fan; ++j) {
        hashes[j] = t->hash(cb, first + j);
        counts[j] = t->count(cb, first + j);
      }
      return;
    }
    sh.for_each_in_hash_range(lo(n), hi(n), [&](std::uint64_t kh, const EntryView& e) {
      const std::uint64_t j = digest::prefix_of(kh, cb) & (fan - 1);
      hashes[j] += digest::entry_hash(kh, e.version, e.tombstone);
      ++counts[j];
    });
  }

  // Entries of n's shard with a key hash in [from, to], sorted by (key hash, key).
  void collect(const TreeNode& n, std::uint64_t from, std::uint64_t to, Arena& out) {
    out.clear();
    store_.shard(n.shard).for_each_in_hash_range(
        from, to, [&](std::uint64_t kh, const EntryView& e) { out.add(kh, e); });
    out.sort();
  }
  void collect_kfp(const TreeNode& n, std::uint32_t kfp, Arena& out) {
    collect(n, digest::kfp_lo(bits(n), n.index, kfp), digest::kfp_hi(bits(n), n.index, kfp), out);
  }

  // The end of a window from `from` that holds about `target` of node n's `count` entries at the
  // node's average density, aligned up to a key-fingerprint boundary (so entries sharing a
  // fingerprint never straddle two windows).
  std::uint64_t window_end(const TreeNode& n, std::uint64_t from, std::uint64_t count,
                           std::uint64_t target) const {
    const std::uint64_t h = hi(n);
    if (count <= target) return h;
    const unsigned __int128 range = static_cast<unsigned __int128>(1) << (64 - bits(n));
    unsigned __int128 width = range * target / count;
    if (width < 1) width = 1;
    const unsigned __int128 end = static_cast<unsigned __int128>(from) + width - 1;
    if (end >= h) return h;
    const auto e = static_cast<std::uint64_t>(end);
    return std::min(h, digest::kfp_hi(bits(n), n.index, digest::key_fingerprint(e, bits(n))));
  }

 private:
  Store& store_;
  const TreeParams& p_;
};

// A peer's entry summaries, indexed by key fingerprint.
struct PeerItems {
  struct One {
    std::uint32_t kfp;
    std::uint16_t efp;
    std::uint64_t hlc;
    std::uint32_t index;  // position in the peer's list
  };
  std::vector<One> v;

  void assign(const digest::ItemsView& items) {
    v.clear();
    for (std::uint32_t i = 0; i < items.n; ++i) {
      const Item it = items.at(i);
      v.push_back(One{it.kfp, it.efp, it.hlc, i});
    }
    std::sort(v.begin(), v.end(), [](const One& a, const One& b) {
      return a.kfp != b.kfp ? a.kfp < b.kfp : a.index < b.index;
    });
  }
  std::pair<const One*, const One*> find(std::uint32_t kfp) const {
    auto b = std::lower_bound(v.begin(), v.end(), kfp,
                              [](const One& o, std::uint32_t k) { return o.kfp < k; });
    auto e = b;
    while (e != v.end() && e->kfp == kfp) ++e;
    return {v.data() + (b - v.begin()), v.data() + (e - v.begin())};
  }
};

// Does the peer lack my entry, or hold its key older? `mine_ambiguous`: I hold another entry with
// the same fingerprint, so the peer's summary cannot be matched to one of them: send both.
inline bool peer_needs(const PeerItems& peer, std::uint32_t kfp, std::uint64_t hlc,
                       std::uint16_t efp, bool mine_ambiguous) {
  const auto [b, e] = peer.find(kfp);
  if (mine_ambiguous || e - b != 1) return true;
  if (hlc != b->hlc) return hlc > b->hlc;
  return efp != b->efp;  // same timestamp, different writer or kind: let LWW decide at the peer
}

// Do I lack the peer's entry (kfp, hlc, efp), or hold its key older? `mine` holds my entries with
// that fingerprint.
inline bool i_need(const PeerItems::One& it, bool peer_ambiguous, const Arena& mine,
                   std::uint32_t node_bits, std::uint64_t seed) {
  if (peer_ambiguous || mine.e.size() != 1) return true;
  const Held& h = mine.e[0];
  if (it.hlc != h.v.hlc) return it.hlc > h.v.hlc;
  return it.efp != digest::make_item(h.kh, h.v, h.tomb, node_bits, seed).efp;
}

// Pushes the initiator still owes for one node: its entries the peer lacks, decided window by
// window against the peer's summaries or bloom filter, so a large node never needs its whole
// push list in memory.
struct PushStream {
  TreeNode node;
  std::uint64_t cursor = 0;
  PeerItems items;
  std::vector<std::uint8_t> bloom;  // a copy of the peer's filter (wire form); empty: use items
};

// ---- rateless IBLT ----

// The symbols [first, first + out.size()) of the set of every entry in `owner`'s shards: the
// shards' kept prefixes summed, and past the prefix computed from the entries (one pass over
// them: the cost of a stream longer than the prefix). `out` is overwritten.
void owner_symbols(Store& store, std::uint32_t owner, std::uint64_t first,
                   std::span<digest::RibltSymbol> out);

// A session's side of a symbol stream.
struct RibltState {
  RibltState(std::uint64_t key, const digest::RibltDecoder::Limits& limits) : dec(key, limits) {}
  digest::RibltDecoder dec;
  std::uint64_t expected = 0;             // symbols asked for: the stream is [0, expected)
  std::vector<digest::RibltSymbol> mine;  // my symbols [0, expected)
  // Symbol records that arrived ahead of the decoder (a reordered or retransmitted stream), by
  // first index, as wire bytes; bounded by kEarlyBytesMax (what does not fit is asked again).
  std::map<std::uint64_t, std::vector<std::uint8_t>> early;
  std::size_t early_bytes = 0;
  std::vector<std::uint64_t> more;  // kRibltMore requests (their first symbol) not yet covered
  // The tags of the two snapshots the stream is of: the peer's (from its verdict) and mine
  // (when my symbols [0, expected) were computed). Symbols of another snapshot on either side
  // would not add up.
  std::uint32_t peer_tag = 0, my_tag = 0;
  digest::RibltDecoder::Limits limits;
  std::uint16_t gen = 0;  // streams started over in this session (a request key's shard field)
  std::uint32_t restarts = 0;
  std::vector<std::uint32_t> old_tags;  // snapshots left behind: their late symbols are ignored
  bool restarting = false;  // started over; no symbol of the new snapshot has arrived yet
  bool finished = false;
  static constexpr std::uint32_t kRestartsMax = 2;
  static constexpr std::size_t kEarlyBytesMax = std::size_t{4} << 20;
};

// The symbols a responder streams for an estimated difference of `elements`: what decodes it
// in one go about 19 times in 20 (measured: the symbols needed, 1.35-2.2 per element at the
// 90th percentile, over the estimate's spread, 0.7-1.3 between its 10th and 90th percentiles;
// docs/reconciliation.md "Sizing the stream").
// The estimate comes from a peer's residues and counts: it may be huge, or not a number. Those
// saturate (the caller bounds the stream anyway) instead of overflowing the conversion.
inline std::uint64_t riblt_stream_symbols(double elements) {
  const double symbols = std::ceil(2.2 * elements + 8.0);
  constexpr double kSaturate = 0x1p62;
  if (!(symbols < kSaturate)) return std::uint64_t{1} << 62;  // also NaN
  return symbols > 0 ? static_cast<std::uint64_t>(symbols) : 8;
}

// Record headers around a sub-record or entries.
inline constexpr std::size_t kRecordSlackBytes = 32;
inline constexpr std::uint64_t kWindowEntries = 64;  // entries examined per window
inline constexpr std::uint32_t kWindowsPerRecordMax = 64;
// Requests that may exceed requests_tracked_max: pushes cut from one answer (at most a list's
// worth) are never refused, so the walk's own admission check leaves them this headroom.
inline constexpr std::size_t kTrackedSlack = 64;

inline std::uint64_t node_key(const TreeNode& n) {
  return (std::uint64_t{n.shard} << 40) | (std::uint64_t{n.level} << 32) | n.index;
}

inline TreeNode child_of(const TreeNode& n, std::uint32_t j, const TreeParams& p) {
  return TreeNode{n.shard, static_cast<std::uint8_t>(n.level + 1),
                  static_cast<std::uint32_t>((std::uint64_t{n.index} << p.fanout_log2) + j)};
}

// Bloom blocks that fit one datagram next to a record's fixed fields.
inline std::uint32_t bloom_blocks_fit(const ReconcileConfig& c) {
  const std::size_t room = c.datagram_bytes_max - digest::kHeaderBytes - 64 -
                           digest::kBloomHeaderBytes;
  return static_cast<std::uint32_t>(room / digest::kBloomBlockBytes);
}

inline std::uint32_t roots_per_record(const ReconcileConfig& c) {
  const std::size_t room = c.datagram_bytes_max - digest::kHeaderBytes - 5;
  return static_cast<std::uint32_t>(
      std::min<std::size_t>(digest::kRootsPerRecordMax, room / c.tree.hash_bytes));
}

}  // namespace reconcile_detail

}  // namespace rumor
