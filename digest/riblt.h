// Rateless invertible Bloom lookup tables (Yang, Gilad, Alizadeh, "Practical Rateless Set
// Reconciliation", SIGCOMM 2024) over entry summaries. Pure: no I/O, clock or threads.
//
// Element. Every entry (key hash, version, tombstone) is one element of the set a side holds:
//   data  48 bits: kid (the key hash's top 20 bits) | t (14 bits of the HLC, 256 ms units,
//         ordering two versions of one key within +-35 minutes) << 20 | w (14 bits of a keyed
//         hash of the whole entry, so two versions in one 256 ms tick differ but for a 2^-14
//         chance) << 34
//   chk   22 bits of a keyed hash of data: tells a pure symbol from a mixture
// The key is per cluster, so a peer outside it cannot aim elements at one symbol or forge a
// checksum. data is what the peer learns of an element: enough to find the entry (by kid, then
// the exact element among the entries with that kid) and to order two versions by t.
//
// Symbols. Symbol i is the XOR of data and of chk, and the count, of the elements mapped to it.
// On the wire a symbol carries its count mod 4: a pure symbol of the difference has count +1
// (3 mod 4: -1), which says its side, and that is all decoding needs of the count. With a
// 22-bit checksum that makes a symbol 72 bits, 9 bytes.
// Element e maps to index 0 and then to a random increasing sequence (seeded by its chk hash)
// in which index i appears with probability about 1/(1 + i/2), so any prefix of the symbol
// stream decodes a difference of about prefix/1.35..1.7 elements. Symbols are linear: the
// symbols of a union are the sums of the symbols, and remote - local is the symbol of the
// difference.
//
// RibltPrefix keeps the first K symbols of one shard incrementally: a write logs its removed
// and added element (a few stores), and the log is folded into the symbols in batches (the
// shard's K symbols stay hot in cache while a batch is applied). Beyond K, riblt_accumulate()
// computes symbols from a set's elements on demand. It can also keep, from the same log, a BCH
// sketch of the elements' data (digest/sketch.h), which decodes a small difference without a
// peeling tail.
//
// RibltDecoder peels a stream of difference symbols (remote - local). It is bounded by
// Limits: symbols accepted, elements decoded, and work per symbol; any input beyond them, or
// inconsistent (an element decoded twice), ends the decoding with an error rather than a crash.
//
// Thread-safety: none; values owned by one thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <unordered_set>
#include <vector>

#include "digest/codec.h"
#include "digest/hash.h"
#include "digest/sketch.h"
#include "rumor/status.h"
#include "rumor/version.h"

namespace rumor::digest {

inline constexpr std::uint32_t kRibltKidBits = 20;
inline constexpr std::uint32_t kRibltTimeBits = 14;
inline constexpr std::uint32_t kRibltWriterBits = 14;
inline constexpr std::uint32_t kRibltTimeShift = 24;  // t = hlc >> 24: 2^8 ms units
static_assert(kRibltKidBits + kRibltTimeBits + kRibltWriterBits == 48);
inline constexpr std::uint64_t kRibltDataMask = (std::uint64_t{1} << 48) - 1;
inline constexpr std::uint32_t kRibltChkBits = 22;
inline constexpr std::uint32_t kRibltChkMask = (1u << kRibltChkBits) - 1;
// On the wire: 6 bytes data, then 3 bytes holding chk (low 22 bits) and the count mod 4 (the top
// 2 bits).
inline constexpr std::size_t kRibltSymbolBytes = 9;
static_assert(48 + kRibltChkBits + 2 == 8 * kRibltSymbolBytes);
// An index no mapping reaches (a gap past it ends the sequence).
inline constexpr std::uint64_t kRibltIndexNever = std::uint64_t{1} << 40;

struct RibltElement {
  std::uint64_t data = 0;  // 48 bits
  std::uint32_t chk = 0;   // 24 bits
  friend bool operator==(const RibltElement&, const RibltElement&) = default;
};


// The keyed hash of data: its low 24 bits are the checksum, all 64 seed the mapping.
constexpr std::uint64_t riblt_data_hash(std::uint64_t data, std::uint64_t key) {
  return fmix64(data ^ key);
}

// The element of an entry. `entry_hash` is digest::entry_hash(key_hash, version, tombstone),
// which the store computes for its Merkle leaf anyway; it carries the node and tombstone into w.
constexpr RibltElement riblt_element(std::uint64_t key_hash, std::uint64_t hlc,
                                     std::uint64_t entry_hash, std::uint64_t key) {
  const std::uint64_t kid = key_hash >> (64 - kRibltKidBits);
  const std::uint64_t t = (hlc >> kRibltTimeShift) & ((1u << kRibltTimeBits) - 1);
  const std::uint64_t w = fmix64(entry_hash ^ (key * 0x9e3779b97f4a7c15ull)) >> (64 - kRibltWriterBits);
  const std::uint64_t data = kid | (t << kRibltKidBits) | (w << (kRibltKidBits + kRibltTimeBits));
  return RibltElement{data, static_cast<std::uint32_t>(riblt_data_hash(data, key)) & kRibltChkMask};
}
constexpr std::uint64_t riblt_kid(std::uint64_t data) { return data & ((1u << kRibltKidBits) - 1); }
constexpr std::uint32_t riblt_time(std::uint64_t data) {
  return static_cast<std::uint32_t>((data >> kRibltKidBits) & ((1u << kRibltTimeBits) - 1));
}
// The key-hash range [lo, hi] of a kid.
constexpr std::uint64_t riblt_kid_lo(std::uint64_t kid) { return kid << (64 - kRibltKidBits); }
constexpr std::uint64_t riblt_kid_hi(std::uint64_t kid) {
  return riblt_kid_lo(kid) | ((std::uint64_t{1} << (64 - kRibltKidBits)) - 1);
}
// Is version time ta newer (> 0), older (< 0) or in the same tick (0) as tb? Modulo 2^14 ticks,
// so it is right while the two differ by less than 2^13 ticks (35 minutes); the protocol repairs
// a wrong answer (docs/reconciliation.md), it only costs an entry and a round trip.
constexpr int riblt_time_cmp(std::uint32_t ta, std::uint32_t tb) {
  constexpr std::uint32_t kMod = 1u << kRibltTimeBits;
  const std::uint32_t d = (ta - tb) & (kMod - 1);
  return d == 0 ? 0 : (d < kMod / 2 ? 1 : -1);
}

// The index sequence of one element: 0, then gaps drawn so that index i is hit with
// probability about 1/(1 + i/2). Deterministic on every IEEE-754 platform (only +, *, /, sqrt).
class RibltMapping {
 public:
  explicit RibltMapping(std::uint64_t seed) : prng_(seed | 1) {}
  std::uint64_t index() const { return index_; }
  std::uint64_t next();

 private:
  std::uint64_t prng_;
  std::uint64_t index_ = 0;
  double at_ = 0;  // index_, as a double (see next())
};

inline std::uint64_t RibltMapping::next() {
  // A multiplicative generator: enough to draw gaps, and cheap on the write path.
  prng_ *= 0xda942042e4dd58b5ull;
  // u uniform in (0, 1]; the gap from index a is max(1, ceil((a + 1.5) (1/sqrt(u) - 1))), so
  // P(next > b) ~ ((a + 1.5) / (b + 1.5))^2 ~ (a+1)(a+2) / ((b+1)(b+2)): index i is hit with
  // probability about 2 / (i + 2). The index is kept as a double (exact below 2^53) so the
  // chain from one index to the next has no integer conversion on it; the sqrt and division
  // depend only on the generator and overlap with it.
  // sqrt(u) of one uniform is distributed as the larger of two (P(max <= v) = v^2), which
  // saves the square root: two 32-bit uniforms from one draw.
  const double u1 = static_cast<double>((prng_ >> 32) + 1);
  const double u2 = static_cast<double>((prng_ & 0xffffffffull) + 1);
  const double g = 0x1p32 / std::max(u1, u2) - 1.0;
  const double gap = std::max(1.0, std::ceil((at_ + 1.5) * g));
  at_ += gap;
  index_ = at_ < static_cast<double>(kRibltIndexNever) ? static_cast<std::uint64_t>(at_)
                                                         : kRibltIndexNever;
  if (index_ == kRibltIndexNever) at_ = static_cast<double>(kRibltIndexNever);
  return index_;
}

struct RibltSymbol {
  std::uint64_t data = 0;
  std::uint32_t chk = 0;
  std::int32_t count = 0;

  void apply(const RibltElement& e, std::int32_t sign) {
    data ^= e.data;
    chk ^= e.chk;
    count += sign;
  }
  RibltSymbol& operator+=(const RibltSymbol& o) {
    data ^= o.data;
    chk ^= o.chk;
    count += o.count;
    return *this;
  }
  bool zero() const { return data == 0 && chk == 0 && count == 0; }
  friend bool operator==(const RibltSymbol&, const RibltSymbol&) = default;
};

// Adds sign * e to the symbols [first, first + out.size()).
void riblt_accumulate(const RibltElement& e, std::int32_t sign, std::uint64_t key,
                      std::uint64_t first, std::span<RibltSymbol> out);

// The same for every element of a batch (four mapping chains at a time: faster per element).
void riblt_accumulate_batch(std::span<const RibltElement> elements, std::int32_t sign,
                            std::uint64_t key, std::uint64_t first, std::span<RibltSymbol> out);

// Wire form of a symbol (kRibltSymbolBytes): the count is sent mod 4, which is enough because
// only the difference of two counts is ever used and a pure symbol's is +-1 (1 or 3 mod 4).
void put_riblt_symbol(ByteWriter& w, const RibltSymbol& s);
// remote (as read from the wire) - local: the symbol of the difference, count mod 4 (0..3).
RibltSymbol riblt_read_diff(ByteReader& r, const RibltSymbol& local);

// The first K symbols of one shard, maintained incrementally (see the header comment).
class RibltPrefix {
 public:
  // Writes logged before a fold: at most 2,048 x 16 bytes.
  static constexpr std::size_t kPendingMax = 2048;

  // sketch_capacity > 0 also keeps a sketch of that capacity over the elements' data.
  RibltPrefix(std::uint32_t symbols, std::uint64_t key, std::uint32_t sketch_capacity = 0);
  std::uint32_t size() const { return static_cast<std::uint32_t>(symbols_.size()); }
  std::uint64_t key() const { return key_; }

  // ---- write path: O(1) amortised; a log entry, folded when the log is full ----
  void add(const RibltElement& e) { log(e, 1); }
  void remove(const RibltElement& e) { log(e, -1); }
  void replace(const RibltElement& old_e, const RibltElement& new_e) {
    if (old_e == new_e) return;
    log(old_e, -1);
    log(new_e, 1);
  }

  // ---- read path ----
  void fold();
  // The symbols, folded first.
  std::span<const RibltSymbol> symbols() {
    fold();
    return symbols_;
  }
  // The sketch's syndromes (empty when none is kept), folded first.
  std::span<const std::uint64_t> sketch() {
    fold();
    return sketch_.syndromes();
  }
  std::size_t memory_bytes() const;
  void clear();

 private:
  struct Pending {
    std::uint64_t data;
    std::uint32_t chk;
    std::int32_t sign;
  };
  void log(const RibltElement& e, std::int32_t sign) {
    pending_.push_back(Pending{e.data, e.chk, sign});
    if (pending_.size() >= kPendingMax) fold();
  }

  std::uint64_t key_;
  std::vector<RibltSymbol> symbols_;
  std::vector<Pending> pending_;
  Sketch sketch_;
  std::vector<std::uint64_t> sketch_log_;  // fold(): the pending data, contiguous
};

// The tag of a set's symbol stream: a hash of its symbol 0 (which every element enters), so two
// snapshots of a set that differ in any element have different tags (but for 2^-32).
inline std::uint32_t riblt_stream_tag(const RibltSymbol& s0) {
  return static_cast<std::uint32_t>(
      fmix64(s0.data ^ (std::uint64_t{s0.chk} << 40) ^
                (static_cast<std::uint64_t>(static_cast<std::uint32_t>(s0.count)) * 0x9e3779b97f4a7c15ull)));
}

// Decodes a stream of difference symbols (remote - local), in index order.
class RibltDecoder {
 public:
  struct Limits {
    std::uint32_t symbols_max = 1u << 17;   // symbols accepted
    std::uint32_t elements_max = 1u << 16;  // elements decoded
  };
  struct Decoded {
    RibltElement e;
    bool remote = false;  // count +1: only the remote side holds it; -1: only this side
  };

  RibltDecoder(std::uint64_t key, const Limits& limits);

  // Adds symbol index received(); peels what becomes pure. An error (a limit reached, or an
  // inconsistent stream) is final: the decoder accepts nothing more.
  Status add(const RibltSymbol& diff);
  // Every received symbol is zero again: the difference is the decoded elements (up to a 2^-24
  // checksum collision per peel, which leaves symbols nonzero and so is caught).
  bool decoded() const { return failed_.is_ok() && received_ > 0 && nonzero_ == 0; }
  bool failed() const { return !failed_.is_ok(); }
  std::uint64_t received() const { return received_; }
  const std::vector<Decoded>& elements() const { return out_; }

 private:
  struct Live {
    RibltElement e;
    std::int32_t sign;
    RibltMapping map;
  };
  bool pure(const RibltSymbol& s) const;
  void set(std::size_t i, const RibltSymbol& s);
  Status peel();
  Status fail(const char* why);

  std::uint64_t key_;
  Limits limits_;
  std::vector<RibltSymbol> sym_;
  std::vector<Live> live_;  // decoded elements, with where their mapping is
  // Min-heap of (next index, live index): the decoded elements that map to symbols not yet
  // received.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> heap_;
  std::vector<std::uint32_t> queue_;  // symbols that may be pure
  std::vector<std::uint64_t> walk_;   // peel(): the received symbols one element maps to
  std::vector<Decoded> out_;
  // The data of every decoded element: one decoded twice means the stream does not add up (its
  // symbols come from two versions of a set), which would otherwise peel back and forth.
  std::unordered_set<std::uint64_t> seen_;
  std::uint64_t received_ = 0;
  std::uint64_t nonzero_ = 0;
  Status failed_ = Status::ok();
};

// ---- estimating the size of a difference from a few counts ----
// The prefix indices whose counts (mod 256) an initiator sends so that the responder can
// estimate the difference before streaming symbols: dense at the start, then geometric.
std::span<const std::uint16_t> riblt_estimate_indices();
// The difference size (elements) estimated from the count differences (remote - local, as
// int8 residues) at riblt_estimate_indices(), and delta0 = the count difference of symbol 0
// (the difference of the two set sizes). Indices at or past `prefix` are ignored.
double riblt_estimate(std::span<const std::int8_t> residues, std::int64_t delta0,
                      std::uint32_t prefix);

}  // namespace rumor::digest
