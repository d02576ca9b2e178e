// Hashes the digest layer is built from. Pure functions, inlined (XXH3 through XXH_INLINE_ALL is
// 2-3x faster than the shared library's out-of-line call on short inputs).
//
// - key_hash(key): XXH3-64 of the key bytes, 0 mapped to 1. The store uses the same function
//   (Store::hash_key) and keeps it in every slot; a test holds the two equal.
// - entry_hash(key hash, version, tombstone): the three words mixed by a chain of 64-bit
//   finalisers (cheaper than XXH3 on the merge path; see below). The key enters through its
//   key hash, which every slot already stores, so the store's write path never touches key bytes
//   to update its Merkle leaf. Merkle nodes sum entry hashes (mod 2^64), so one write changes a
//   leaf by `new - old` in O(1) and the sum over a key-hash prefix does not depend on tree shape.
// - salted(x, seed): a seeded re-hash for what crosses the wire truncated (node hashes, bloom
//   items). A fresh seed per reconciliation turns a truncation collision into a one-session
//   miss instead of a permanent one.
// - node_id_of_name(name), label_hash(label), name_metadata_hash(name, metadata): the engine's
//   other hashes, here so that every hash that reaches the wire or a peer's tables has one
//   definition. Their values are part of the wire format: never change them.
#pragma once

#include <cstdint>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "rumor/version.h"

namespace rumor::digest {

inline std::uint64_t key_hash(std::string_view key) {
  const std::uint64_t h = XXH3_64bits(key.data(), key.size());
  return h == 0 ? 1 : h;  // 0 marks an empty slot in the store
}

// A node's id when its configuration names it but sets no id: XXH3-64 of the name, 0 mapped to
// 1 (0 means "no id").
inline std::uint64_t node_id_of_name(std::string_view name) {
  const std::uint64_t h = XXH3_64bits(name.data(), name.size());
  return h == 0 ? 1 : h;
}

// The 32-bit hash of a cluster label, carried in every packet header: the low half of its
// XXH3-64.
inline std::uint32_t label_hash(std::string_view label) {
  return static_cast<std::uint32_t>(XXH3_64bits(label.data(), label.size()));
}

// The hash of a member's (name, metadata) pair, by which interned names are looked up. The
// name's length seeds the first hash, so ("ab", "c") and ("a", "bc") differ.
inline std::uint64_t name_metadata_hash(std::string_view name, std::string_view metadata) {
  const std::uint64_t h = XXH3_64bits_withSeed(name.data(), name.size(), name.size());
  return XXH3_64bits_withSeed(metadata.data(), metadata.size(), h);
}

// The checksum of a record kept on disk (engine/store/durable.cc): its key then its body, so a
// body moved under another key does not check. Part of the file format: never change it.
inline std::uint64_t record_checksum(std::string_view key, std::string_view body) {
  return XXH3_64bits_withSeed(body.data(), body.size(), XXH3_64bits(key.data(), key.size()));
}

// The key of a cluster's rateless IBLT hashes (digest/riblt.h), from its label: every node of a
// cluster derives the same one, and a peer with another label cannot aim at its symbols.
inline std::uint64_t riblt_cluster_key(std::string_view label) {
  const std::uint64_t h = XXH3_64bits_withSeed(label.data(), label.size(), 0x52'69'62'6c'74ull);
  return h == 0 ? 1 : h;
}

// Seeds that separate the two entry kinds, so a tombstone and a live entry with the same key
// hash and version (which a correct writer never produces) still hash apart.
inline constexpr std::uint64_t kEntrySeedLive = 0x5275'6d6f'7245'6e74ull;  // "RumorEnt"
inline constexpr std::uint64_t kEntrySeedTomb = 0x5275'6d6f'7254'6f6dull;  // "RumorTom"

// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
constexpr std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

// Three words through a chain of finalisers rather than XXH3: the store's merge path computes
// this twice per update (the old and the new entry), and an out-of-line XXH3 call for 24 bytes
// was ~6% of merge/update. Each step is a bijection of the running value, so two entries that
// differ in exactly one word never collide, and every input bit avalanches into the result
// that Merkle nodes sum.
//
// The chain is split at the key so that a caller hashing two versions of one key (the store's
// update: old and new entry) mixes the key once: entry_hash(k, v, t) ==
// entry_hash_keyed(entry_key_mix(k, t), v).
constexpr std::uint64_t entry_key_mix(std::uint64_t key_hash, bool tombstone) {
  return fmix64(key_hash ^ (tombstone ? kEntrySeedTomb : kEntrySeedLive));
}
constexpr std::uint64_t entry_hash_keyed(std::uint64_t key_mix, const Version& v) {
  return fmix64(fmix64(key_mix ^ v.hlc) ^ v.node);
}
inline std::uint64_t entry_hash(std::uint64_t key_hash, const Version& v, bool tombstone) {
  return entry_hash_keyed(entry_key_mix(key_hash, tombstone), v);
}

inline std::uint64_t salted(std::uint64_t x, std::uint64_t seed) {
  return XXH3_64bits_withSeed(&x, sizeof x, seed);
}

// The node of a key hash at prefix depth `bits` (0..64): its top `bits` bits.
constexpr std::uint64_t prefix_of(std::uint64_t key_hash, std::uint32_t bits) {
  return bits == 0 ? 0 : key_hash >> (64 - bits);
}
// The key-hash range [lo, hi] (inclusive) of node `index` at depth `bits` (0..63).
constexpr std::uint64_t prefix_lo(std::uint32_t bits, std::uint64_t index) {
  return bits == 0 ? 0 : index << (64 - bits);
}
constexpr std::uint64_t prefix_hi(std::uint32_t bits, std::uint64_t index) {
  return prefix_lo(bits, index) | (bits == 0 ? ~std::uint64_t{0} : (~std::uint64_t{0} >> bits));
}

}  // namespace rumor::digest
