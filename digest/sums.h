// Linear sums over a set of entries, and the decoder that names the one entry two such sets
// differ by. Pure functions, no allocation.
//
// Every Merkle tree keeps, next to its nodes, four sums over all of its entries (mod 2^64):
//   count   how many entries
//   hash    Σ entry_hash            (the root hash, without a fold)
//   keys    Σ key_hash
//   cross   Σ rev(key_hash) · entry_hash, where rev reverses the 64 bits
// All four are sums, so a write changes them in O(1) and the sums of a set of shards are the sums
// of their sums. Two sides that compare their sums learn, when the sets differ by exactly one
// entry, which entry it is, with no walk at all (the invertible-sum idea behind IBLTs' pure
// cells, Eppstein et al., "What's the difference?", SIGCOMM 2011):
//   - one side holds one more entry:    Δcount = ±1, the key hash is ±Δkeys;
//   - both hold the key, versions differ: Δcount = 0, Δkeys = 0, rev(key hash) = Δcross / Δhash.
// Δcross = rev(k) · Δhash is then checked in full 64 bits, so a set pair that differs by more
// than one entry passes only with probability about 2^-64 per candidate; a caller that finds a
// candidate also checks it against its own store. When Δhash is even, the division leaves the
// top t = ctz(Δhash) bits of rev(k) — the low t bits of k — unknown: the decoder returns the key
// hash range [lo, lo + 2^t - 1] and the caller tries its entries in it.
#pragma once

#include <bit>
#include <cstdint>

namespace rumor::digest {

constexpr std::uint64_t rev64(std::uint64_t x) {
  x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
  x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
  x = ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
  return __builtin_bswap64(x);
}

// The inverse of an odd number mod 2^64 (Newton's iteration: each step doubles the bits).
constexpr std::uint64_t inverse_odd(std::uint64_t a) {
  std::uint64_t x = a;  // right to 3 bits: a * a = 1 mod 8 for odd a
  for (int i = 0; i < 5; ++i) x *= 2 - a * x;
  return x;
}

struct SetSums {
  std::uint64_t count = 0;
  std::uint64_t hash = 0;
  std::uint64_t keys = 0;
  std::uint64_t cross = 0;

  void add(std::uint64_t key_hash, std::uint64_t entry_hash) {
    ++count;
    hash += entry_hash;
    keys += key_hash;
    cross += rev64(key_hash) * entry_hash;
  }
  void remove(std::uint64_t key_hash, std::uint64_t entry_hash) {
    --count;
    hash -= entry_hash;
    keys -= key_hash;
    cross -= rev64(key_hash) * entry_hash;
  }
  void replace(std::uint64_t key_hash, std::uint64_t old_entry_hash,
               std::uint64_t new_entry_hash) {
    const std::uint64_t d = new_entry_hash - old_entry_hash;
    hash += d;
    cross += rev64(key_hash) * d;
  }
  SetSums& operator+=(const SetSums& o) {
    count += o.count;
    hash += o.hash;
    keys += o.keys;
    cross += o.cross;
    return *this;
  }
  friend SetSums operator-(SetSums a, const SetSums& b) {
    a.count -= b.count;
    a.hash -= b.hash;
    a.keys -= b.keys;
    a.cross -= b.cross;
    return a;
  }
  bool zero() const { return (count | hash | keys | cross) == 0; }
  friend bool operator==(const SetSums&, const SetSums&) = default;
};

// What `mine - theirs` says about the two sets.
struct OneDiff {
  enum class Kind : std::uint8_t {
    kEqual,    // the sums agree: the sets are equal (up to a 64-bit sum collision)
    kMine,     // I hold one entry they lack: key hash `lo`, entry hash `entry_hash`
    kTheirs,   // they hold one entry I lack: key hash `lo`
    kVersion,  // both hold one key with different entries: its key hash is in [lo, hi]
    kMany,     // anything else: more than one difference (walk the trees)
  };
  Kind kind = Kind::kMany;
  std::uint64_t lo = 0, hi = 0;
  std::uint64_t entry_hash = 0;  // kMine
};

// Candidates of a kVersion answer are at most 2^unknown_bits_max key hashes.
inline OneDiff decode_one(const SetSums& d, std::uint32_t unknown_bits_max = 8) {
  OneDiff out;
  if (d.zero()) {
    out.kind = OneDiff::Kind::kEqual;
    return out;
  }
  if (d.count == 1 || d.count == ~std::uint64_t{0}) {
    const bool mine = d.count == 1;
    const std::uint64_t k = mine ? d.keys : 0 - d.keys;
    if (k == 0 || d.cross != rev64(k) * d.hash) return out;  // key hash 0 is never used
    out.kind = mine ? OneDiff::Kind::kMine : OneDiff::Kind::kTheirs;
    out.lo = out.hi = k;
    out.entry_hash = mine ? d.hash : 0 - d.hash;
    return out;
  }
  if (d.count != 0 || d.keys != 0 || d.hash == 0) return out;
  const auto t = static_cast<std::uint32_t>(std::countr_zero(d.hash));
  const auto tc = static_cast<std::uint32_t>(std::countr_zero(d.cross | (std::uint64_t{1} << 63)));
  if (t > unknown_bits_max || tc < t) return out;
  // rev(k) * (Δhash >> t) = Δcross >> t  (mod 2^(64 - t)): the low 64 - t bits of rev(k).
  std::uint64_t r = (d.cross >> t) * inverse_odd(d.hash >> t);
  if (t > 0) r &= (~std::uint64_t{0}) >> t;
  out.kind = OneDiff::Kind::kVersion;
  out.lo = rev64(r);  // its low t bits are zero: the unknown ones
  out.hi = out.lo | ((std::uint64_t{1} << t) - 1);
  return out;
}

}  // namespace rumor::digest
