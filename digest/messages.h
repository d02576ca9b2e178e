// Reconciliation messages: encoders and a validating decoder. Pure functions over bytes.
//
// A message is a self-contained body (docs/reconciliation.md has the byte layout): a 10-byte
// header carrying its type, every digest parameter (fan-out, depth, hash width, shard count) and
// the session id (whose hash salts truncated hashes), then one or more records. The wire-format layer embeds bodies in packets
// behind its own common header; nothing here depends on that header.
//
// Requests go from the session's initiator to the responder; responses come back. Each request
// record is keyed by a tree node (shard, level, index) so it is idempotent: the responder answers
// it from its current state alone, and the initiator retransmits whatever stays unanswered.
//
// Decoding is two-phase by design: parse_message() validates the whole message before the
// caller acts on any record, so a malformed message (truncated, oversized, inconsistent) is
// dropped as a whole and has no effect. Decoded records are views into the message bytes.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "digest/bloom.h"
#include "digest/codec.h"
#include "digest/riblt.h"
#include "digest/sums.h"
#include "rumor/status.h"
#include "rumor/version.h"

namespace rumor::digest {

// ---- numbers on the wire: append-only ----
enum class MsgType : std::uint8_t {
  kReconcileRequest = 1,
  kReconcileResponse = 2,
};
// 2: rateless IBLT symbols of 9 bytes (count mod 4) and element ids of 4 bytes.
inline constexpr std::uint8_t kFormatVersion = 2;

enum class Rec : std::uint8_t {
  // requests (initiator -> responder)
  kRoots = 0x01,   // shard root hashes of a range of shards
  kHashes = 0x02,  // a node's child hashes (also a sub-record kind)
  kList = 0x03,    // a node's entry summaries (also a sub-record kind)
  kBloom = 0x04,   // a bloom filter of a node's entry summaries (also a sub-record kind)
  kPull = 0x05,    // "send me your entries with these key fingerprints under this node"
  kPush = 0x06,    // entries the responder lacks or holds older
  kSummary = 0x07,  // the linear sums of all shards (digest/sums.h): finds a single difference
  kRibltStart = 0x08,  // the sums, and count residues to size a rateless IBLT stream by
  kRibltMore = 0x09,   // "send me your symbols [first, first + count)"
  kRibltPull = 0x0a,   // "send me your entries of these elements"
  kRibltPush = 0x0b,   // entries the responder lacks or holds older (decoded from symbols)
  // responses (responder -> initiator)
  kRootsDiff = 0x11,  // which shard roots differ, with the responder's expansion of each
  kExpand = 0x12,     // which children of a node differ, with the expansion of each
  kListed = 0x13,     // answer to kList: entries the initiator lacks + which of its items to push
  kBloomed = 0x14,    // answer to kBloom: entries not in the filter (+ the responder's filter)
  kPulled = 0x15,     // answer to kPull
  kAck = 0x16,        // answer to kPush
  kSummarized = 0x17,  // answer to kSummary: equal, walk the roots, or the one difference
  kRibltSymbols = 0x18,  // coded symbols [first, first + n) of the responder's set
  kRibltPulled = 0x19,   // answer to kRibltPull: the entries of elements [first, first + count)
  kRibltPushed = 0x1a,   // answer to kRibltPush: the responder's entries that beat pushed ones
};
inline constexpr std::uint8_t kRecRequestMax = 0x0b;
inline constexpr std::uint8_t kRecResponseMax = 0x1a;

// What a kSummarized record says.
enum class Verdict : std::uint8_t {
  kEqual = 0,    // the sums agree: nothing to do
  kWalk = 1,     // more than one difference (or not decodable here): walk the trees from the roots
  kEntries = 2,  // the one difference is an entry the initiator lacks: here it is
  kWant = 3,     // the initiator holds an entry the responder lacks: key_hash names it, push it
  kVersion = 4,  // both hold key_hash with different versions; `version` is the responder's
  kRiblt = 5,    // (answer to kRibltStart) several differences: `count` symbols follow
};
// kWant and kVersion carry the entry hash the sums imply for the initiator's entry: the initiator
// acts only when its entry has exactly that hash (a 64-bit check of the decoding), else it walks.
inline constexpr std::uint8_t kVerdictMax = 5;

inline constexpr std::size_t kHeaderBytes = 10;
inline constexpr std::size_t kItemBytes = 14;
inline constexpr std::uint32_t kRootsPerRecordMax = 256;
inline constexpr std::uint32_t kFanoutLog2Max = 6;  // 64 children: masks fit a u64
inline constexpr std::uint32_t kKeyBytesWireMax = 65535;
inline constexpr std::uint32_t kValueBytesWireMax = 1u << 30;

// The digest parameters every message carries. Two peers reconcile only with equal parameters.
struct TreeParams {
  std::uint8_t fanout_log2 = 3;  // children per node = 2^fanout_log2, 1..6
  std::uint8_t depth_max = 6;    // levels below a shard root; fanout_log2 * depth_max <= 32
  // Bytes of each salted node hash on the wire, 3..8. A differing node hides behind an equal
  // truncation with probability 2^-(8 * hash_bytes) per session (then the next session, with
  // another salt, finds it): 3 bytes is one miss per ~4,000 sessions at d = 1,000.
  std::uint8_t hash_bytes = 3;
  std::uint8_t shards_log2 = 6;  // virtual shards = 2^shards_log2, 0..16

  std::uint32_t fanout() const { return 1u << fanout_log2; }
  std::uint32_t shards() const { return 1u << shards_log2; }
  std::uint32_t bits(std::uint32_t level) const { return level * fanout_log2; }
  std::size_t mask_bytes() const { return (fanout() + 7) / 8; }
  // Bits of the level field in a node id: enough for 0..depth_max.
  std::uint32_t level_bits() const { return static_cast<std::uint32_t>(std::bit_width(depth_max)); }
  Status validate() const;
  friend bool operator==(const TreeParams&, const TreeParams&) = default;
};

struct MsgHeader {
  MsgType type = MsgType::kReconcileRequest;
  TreeParams params;
  std::uint32_t session = 0;
  std::uint64_t seed = 0;  // not on the wire: session_seed(session)
};

// The salt of a session's truncated hashes and fingerprints, derived from its id (which the
// initiator draws at random), so it costs no bytes.
std::uint64_t session_seed(std::uint32_t session);

// A tree node: protocol level l of shard s covers key hashes whose top l * fanout_log2 bits are
// `index`. Level 0 is the shard root. On the wire a node is bit-packed little-endian into
// ceil((level_bits + shards_log2 + l * fanout_log2) / 8) bytes: level in the low bits of the first
// byte (so the decoder knows the length after one byte), then shard, then index, zero padding.
struct TreeNode {
  std::uint16_t shard = 0;
  std::uint8_t level = 0;
  std::uint32_t index = 0;
  friend bool operator==(const TreeNode&, const TreeNode&) = default;
};

// An entry summary inside a node: enough to tell who lacks what and who is newer.
//   kfp  the 32 key-hash bits right below the node's prefix (unsalted, so the responder finds
//        the entry with a range lookup; two keys sharing them are resolved conservatively)
//   hlc  the version's timestamp: orders two versions of one key
//   efp  16 bits of the salted entry hash: tells equal from different when timestamps tie
struct Item {
  std::uint32_t kfp = 0;
  std::uint64_t hlc = 0;
  std::uint16_t efp = 0;
};

std::uint32_t key_fingerprint(std::uint64_t key_hash, std::uint32_t node_bits);
// The key-hash range [lo, hi] whose fingerprint under a node is kfp.
std::uint64_t kfp_lo(std::uint32_t node_bits, std::uint64_t node_index, std::uint32_t kfp);
std::uint64_t kfp_hi(std::uint32_t node_bits, std::uint64_t node_index, std::uint32_t kfp);
Item make_item(std::uint64_t key_hash, const Version& v, bool tombstone, std::uint32_t node_bits,
               std::uint64_t seed);

// An entry as it crosses the wire: the same fields as the store's EntryView (digest does not
// include engine/), borrowed from whoever owns the bytes.
struct EntryRef {
  std::string_view key;
  std::string_view value;
  Version version;
  bool tombstone = false;
};

// ---- encoders ----
void put_header(ByteWriter& w, const MsgHeader& h);
std::size_t node_bytes(const TreeNode& n, const TreeParams& p);
void put_node(ByteWriter& w, const TreeNode& n, const TreeParams& p);
void put_item(ByteWriter& w, const Item& it);
void put_hash(ByteWriter& w, std::uint64_t salted_hash, const TreeParams& p);
// Entry: u8 flags (bit 0 tombstone) | varint key_len | varint value_len | u64 hlc | u64 node |
// key | value. A tombstone carries no value.
std::size_t entry_bytes(const EntryRef& e);
void put_entry(ByteWriter& w, const EntryRef& e);

// ---- decoded views (into the message bytes; valid while they are) ----
struct HashesView {
  const std::uint8_t* p = nullptr;
  std::uint32_t n = 0;
  std::uint8_t width = 0;
  std::uint64_t at(std::uint32_t i) const;
};
struct ItemsView {
  const std::uint8_t* p = nullptr;
  std::uint32_t n = 0;
  Item at(std::uint32_t i) const;
};
struct KfpsView {
  const std::uint8_t* p = nullptr;
  std::uint32_t n = 0;
  std::uint32_t at(std::uint32_t i) const;
};
struct BitsView {
  const std::uint8_t* p = nullptr;
  std::uint32_t n = 0;
  bool test(std::uint32_t i) const { return (p[i / 8] >> (i % 8)) & 1; }
  std::uint32_t popcount() const;
};
struct EntriesView {
  std::span<const std::uint8_t> bytes;
  std::uint32_t n = 0;
  // Visits the (already validated) entries in order.
  void for_each(const std::function<void(const EntryRef&)>& fn) const;
};
struct SubRecord {
  Rec kind = Rec::kHashes;  // kHashes, kList or kBloom
  HashesView hashes;
  ItemsView items;
  BloomView bloom;
};
struct SubsView {
  std::span<const std::uint8_t> bytes;
  std::uint32_t n = 0;
  TreeParams params;
  std::uint32_t child_level = 0;
  std::uint32_t blocks_max = 0;
  // Visits the (already validated) sub-records in order (the differ bits, ascending).
  void for_each(const std::function<void(const SubRecord&)>& fn) const;
};

inline constexpr std::uint8_t kFlagMore = 1;       // kListed/kBloomed/kPulled: call again
inline constexpr std::uint8_t kFlagHasBloom = 2;   // kBloomed: carries the responder's filter
inline constexpr std::uint8_t kFlagWantBloom = 1;  // kBloom: answer with your filter too

// kRibltStart modes.
inline constexpr std::uint8_t kRibltModeAuto = 0;    // the responder may answer "walk"
inline constexpr std::uint8_t kRibltModeForced = 1;  // always stream symbols
inline constexpr std::uint32_t kRibltResiduesMax = 64;
// An element named on the wire (kRibltPull, the pairs of kRibltPush): its key id and 12 bits of
// its keyed writer hash w (riblt_wire_id). That finds its entry among the few under the key id
// (not the tick: keys written in one tick share it); two entries under one key id that share
// those 12 bits both travel (bytes, not correctness).
inline constexpr std::size_t kRibltIdBytes = 4;
constexpr std::uint64_t riblt_wire_id(std::uint64_t data) {
  return riblt_kid(data) | (((data >> (kRibltKidBits + kRibltTimeBits)) & 0xfff) << kRibltKidBits);
}
static_assert(kRibltKidBits + 12 == 8 * kRibltIdBytes);
// Symbols one kRibltMore (or a stream opened by kRibltStart) may ask for, and the end of the
// stream: bounds on what a request can draw.
inline constexpr std::uint64_t kRibltSymbolsPerRequestMax = 1u << 15;
inline constexpr std::uint64_t kRibltSymbolIndexMax = 1u << 20;

struct Record {
  Rec type = Rec::kRoots;
  TreeNode node;                 // every record but kRoots/kRootsDiff
  std::uint16_t first_shard = 0;  // kRoots, kRootsDiff
  std::uint16_t shard_count = 0;  // kRoots, kRootsDiff
  HashesView hashes;           // kRoots (shard roots), kHashes (children)
  ItemsView items;             // kList
  std::uint64_t cursor = 0;    // kList, kBloom: first key hash to answer; kListed/kBloomed: next
  std::uint8_t flags = 0;
  BloomView bloom;             // kBloom; kBloomed with kFlagHasBloom
  KfpsView kfps;               // kPull
  std::uint16_t part = 0;      // kPull, kPush, kPulled, kAck
  EntriesView entries;         // kPush, kListed, kBloomed, kPulled
  BitsView covered;            // kRootsDiff (shard_count bits), kExpand (fanout bits)
  BitsView differ;             // same; a subset of covered
  BitsView want;               // kListed: bit i = push your item i
  SubsView subs;               // kRootsDiff, kExpand: one per differ bit
  SetSums sums;                // kSummary
  Verdict verdict = Verdict::kWalk;  // kSummarized
  std::uint64_t key_hash = 0;    // kSummarized kWant / kVersion
  std::uint64_t entry_hash = 0;  // kSummarized kWant / kVersion: the initiator's, as implied
  Version version;               // kSummarized kVersion: the responder's
  // Rateless IBLT records.
  std::uint8_t riblt_mode = 0;               // kRibltStart
  std::span<const std::uint8_t> residues;    // kRibltStart: int8 counts, riblt_estimate_indices()
  std::uint64_t first = 0;                   // kRibltMore, kRibltSymbols: first symbol; kRibltPulled: first element
  // kRibltMore: symbols; kSummarized kRiblt: symbols following; kRibltPulled: elements
  // answered; kRibltSymbols, kRibltPull: items; kRibltPush: pairs
  std::uint64_t count = 0;
  std::span<const std::uint8_t> symbols;     // kRibltSymbols: count x kRibltSymbolBytes
  // kSummarized kRiblt, kRibltSymbols: the stream's tag (riblt_stream_tag of the responder's
  // set when it computed them): symbols of two snapshots do not mix.
  std::uint32_t tag = 0;
  // kRibltPull: count x kRibltIdBytes; kRibltPush: count x (u16 entry index, kRibltIdBytes)
  std::span<const std::uint8_t> ids;
};

struct DecodeLimits {
  // Largest bloom filter accepted, in 32-byte blocks (a datagram holds far fewer).
  std::uint32_t bloom_blocks_max = 4096;
};

// Validates the whole message, then (only if it is valid) calls fn for each record in order.
// Returns kMalformed, with what was wrong, for any truncated, oversized or inconsistent input.
Status parse_message(std::span<const std::uint8_t> bytes, const DecodeLimits& limits,
                     MsgHeader* header, const std::function<void(const Record&)>& fn);

}  // namespace rumor::digest
