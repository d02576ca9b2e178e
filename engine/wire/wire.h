// The wire format (docs/wire-format.md is the spec and is kept true to this file).
//
// A datagram is a fixed 20-byte header followed by messages, each `type:u8 len:u16 body`.
// Integers are little-endian except the target shard, which is big-endian at byte 4 so the
// reuseport BPF program can steer on it (include/rumor/transport.h kShardIdOffset). Header
// flags bit 0 means sealed (engine/wire/crypto.h kFlagSealed): the messages are then inside a
// sealed frame; the other bits are 0, and a datagram with an unknown bit set is dropped.
//
// Every decoder here is bounds-checked: a Reader never reads past its span, every length and
// count is checked against what remains (and against the configured limits) before anything is
// allocated or copied, and a failure is sticky and reported as a value. Untrusted input never
// reaches an assertion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "digest/codec.h"
#include "rumor/transport.h"
#include "rumor/version.h"

namespace rumor::wire {

inline constexpr std::uint8_t kMagic0 = 'r';
inline constexpr std::uint8_t kMagic1 = 'u';
inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr std::size_t kHeaderBytes = 20;
inline constexpr std::size_t kMessageHeaderBytes = 3;  // type:u8 len:u16
inline constexpr std::size_t kMessageBodyBytesMax = 65535;
static_assert(kShardIdOffset == 4, "the header layout puts the shard id at byte 4");

// Message types: append-only numbers. A receiver skips types it does not know (counted), so a
// newer node can add types without breaking older ones.
enum class MsgType : std::uint8_t {
  kPing = 1,      // seq:u32 target:u64
  kAck = 2,       // seq:u32
  kPingReq = 3,   // seq:u32 target:u64 target_addr:addr
  kNack = 4,      // seq:u32
  kMember = 5,    // state:u8 incarnation:u64 node:u64 from:u64 addr name:str8 meta:str16
  kEntry = 6,     // flags:u8 hlc:u64 node:u64 key:str16 value:str16
  kJoin = 7,      // flags:u8 (bit 0: reply with your table; other bits 0), then kMember records
  kJoinReply = 8, // total_members:u32 (kMember records follow, here and in further datagrams)
  // Push-pull by digest (docs/protocol.md "Member tables"): the initiator's bucket sums (bits
  // <= 11, as many datagrams as they take, each a range of buckets answered alone), the
  // responder's bitmap of the range's buckets that differ; each side then sends its records in
  // those buckets as kJoin datagrams with flags 0.
  kMemberDigest = 9,  // bits:u8 salt:u32 members:u32 first:u16 count:u16 sums:u16[count]
  kMemberDiff = 10,   // bits:u8 salt:u32 first:u16 count:u16 bitmap[ceil(count/8)] (differing)
  // Rides on a Ping: fingerprints of the sender's member table and store (0: not offered). The
  // pinged node starts a member digest or a reconciliation only when one differs, so a settled
  // cluster compares state on every probe and sends nothing more (docs/protocol.md).
  kStateSums = 11,  // members:u32 store:u32
  // Large values (docs/protocol.md "Large values"): an entry too big for one datagram never
  // rides gossip or a reconciliation record whole. Its holder announces it (kEntryRef); a node
  // that lacks that version pulls it in chunks from the announcer (kChunkRequest, a window of
  // up to 64 chunks named by a bitmap; kChunk, one datagram each), verifies the hash and merges
  // the whole entry at once.
  kEntryRef = 12,      // flags:u8 hlc:u64 node:u64 size:u32 hash:u64 chunk_bytes:u16 key:str16
  kChunkRequest = 13,  // xfer:u32 hlc:u64 node:u64 size:u32 chunk_bytes:u16 first:u32 mask:u64
                       // key:str16
  kChunk = 14,         // xfer:u32 index:u32 data (the rest of the body)
  // Anti-entropy: the bodies are engine/sync/reconcile.h datagrams (docs/reconciliation.md).
  kSyncRequest = 32,   // initiator -> responder
  kSyncResponse = 33,  // responder -> initiator
  // Partial views (membership = partial; docs/protocol.md "Partial views"). HyParView's
  // overlay and Plumtree's tree: bodies and codecs in engine/wire/overlay.h.
  kHvJoin = 40,
  kHvForwardJoin = 41,
  kHvNeighbor = 42,
  kHvNeighborReply = 43,
  kHvDisconnect = 44,
  kHvShuffle = 45,
  kHvShuffleReply = 46,
  kTreeGossip = 47,
  kTreeIHave = 48,
  kTreeGraft = 49,
  kTreePrune = 50,
};

struct Header {
  std::uint16_t shard = 0;
  std::uint32_t label_hash = 0;
  NodeId sender = 0;
};

std::uint32_t label_hash(std::string_view label);

// ---- Writer and Reader: the datagram layer over digest/codec.h's ByteWriter/ByteReader (one
// byte codec for the project: little-endian, bounds-checked, failure sticky until a rollback).
// This layer adds what is wire-specific: std::byte buffers, message framing, str8/str16 and
// addresses.

// Appends into a fixed buffer; `ok()` turns false (and stays) on overflow.
class Writer {
 public:
  explicit Writer(std::span<std::byte> buf) : w_(digest::as_u8(buf)) {}
  bool ok() const { return w_.ok(); }
  std::size_t size() const { return w_.size(); }
  // Free bytes after the write position (unlike ByteWriter's, not 0 once failed).
  std::size_t remaining() const { return w_.capacity() - w_.size(); }
  std::span<std::byte> buffer() const { return digest::as_byte(w_.buffer()); }

  void u8(std::uint8_t v) { w_.u8(v); }
  void u16(std::uint16_t v) { w_.u16(v); }
  void u32(std::uint32_t v) { w_.u32(v); }
  void u64(std::uint64_t v) { w_.u64(v); }
  void bytes(const void* p, std::size_t n) { w_.bytes(p, n); }
  void str8(std::string_view s);
  void str16(std::string_view s);
  void address(const Address& a);

  // Message framing: begin() reserves the 3-byte message header, end() fills in the length.
  // Returns the message start, for rollback() when a message does not fit.
  std::size_t begin(MsgType t);
  void end(std::size_t start);
  void rollback(std::size_t pos) { w_.rollback(pos); }
  // Patches a u16 at pos (used for the big-endian shard id).
  void patch_be16(std::size_t pos, std::uint16_t v);
  // For encoders that write into the buffer themselves: the free space, then how much they
  // used of it.
  std::span<std::byte> tail() const { return digest::as_byte(w_.tail()); }
  void advance(std::size_t n) { w_.advance(n); }

 private:
  digest::ByteWriter w_;
};

// Consumes a span; any short read sets !ok() and yields zeros.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> buf)
      : r_(digest::as_u8(buf)) {}
  bool ok() const { return r_.ok(); }
  bool empty() const { return r_.empty(); }
  // Bytes after the read position (unlike ByteReader's, not 0 once failed).
  std::size_t remaining() const { return r_.size() - r_.position(); }
  void fail() { r_.fail(); }

  std::uint8_t u8() { return r_.u8(); }
  std::uint16_t u16() { return r_.u16(); }
  std::uint32_t u32() { return r_.u32(); }
  std::uint64_t u64() { return r_.u64(); }
  // A view into the buffer: valid as long as the datagram is. Length checked against both what
  // remains and `max` before anything is taken.
  std::string_view str8(std::size_t max = 255);
  std::string_view str16(std::size_t max = 65535);
  std::span<const std::byte> take(std::size_t n) { return digest::as_byte(r_.bytes(n)); }
  Address address();

 private:
  digest::ByteReader r_;
};

// Writes the header; the caller appends messages.
void write_header(Writer& w, const Header& h);

enum class HeaderError : std::uint8_t { kNone, kTruncated, kBadMagic, kBadVersion };
// Parses the header; on success the reader is positioned at the first message.
HeaderError read_header(Reader& r, Header* h);

// One message of a datagram: its type and a reader over exactly its body.
struct Message {
  MsgType type;
  std::span<const std::byte> body;
};
// Reads the next message frame. False at the end or when the frame overruns the datagram
// (then r.ok() is false).
bool next_message(Reader& r, Message* m);

// ---- Message bodies ----

struct Ping {
  std::uint32_t seq = 0;
  NodeId target = 0;
};
struct StateSums {
  std::uint32_t members = 0;  // 0: not offered
  std::uint32_t store = 0;    // 0: not offered (a multi-core node's shards are on several cores)
};
struct PingReq {
  std::uint32_t seq = 0;
  NodeId target = 0;
  Address target_addr;
};

enum class WireState : std::uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };

struct MemberMsg {
  WireState state = WireState::kAlive;
  std::uint64_t incarnation = 0;
  NodeId node = 0;
  NodeId from = 0;  // who makes the claim (the accuser, for suspect)
  Address address;
  std::string_view name;
  std::string_view metadata;
};

struct EntryMsg {
  bool tombstone = false;
  Version version;
  std::string_view key;
  std::string_view value;
};

// A large entry's announcement: what a node needs to decide whether it lacks this version and
// to pull it. `hash` is value_hash() of the value; `chunk_bytes` the most value bytes the
// announcer puts in one chunk datagram.
struct EntryRefMsg {
  Version version;
  std::uint32_t size = 0;
  std::uint64_t hash = 0;
  std::uint16_t chunk_bytes = 0;
  std::string_view key;
};
// Asks for chunks first + i, for each bit i of mask, of (key, version), cut every chunk_bytes
// bytes. `xfer` is the requester's transfer id, echoed in every chunk.
struct ChunkRequestMsg {
  std::uint32_t xfer = 0;
  Version version;
  std::uint32_t size = 0;
  std::uint16_t chunk_bytes = 0;
  std::uint32_t first = 0;
  std::uint64_t mask = 0;
  std::string_view key;
};
struct ChunkMsg {
  std::uint32_t xfer = 0;
  std::uint32_t index = 0;
  std::span<const std::byte> data;
};
// Chunk sizes below this are refused: a request could otherwise draw many tiny datagrams.
inline constexpr std::uint16_t kChunkBytesMin = 256;
// Chunks one request names at most: one GSO super-datagram (transport.h kGsoSegmentsMax).
inline constexpr std::uint32_t kChunkWindowMax = 64;
static_assert(kChunkWindowMax <= kGsoSegmentsMax && kChunkWindowMax <= 64,
              "a window is one u64 mask and one GSO batch");
// Fixed parts of the three bodies (before the key / the data).
inline constexpr std::size_t kEntryRefFixedBytes = 1 + 16 + 4 + 8 + 2 + 2;
inline constexpr std::size_t kChunkRequestFixedBytes = 4 + 16 + 4 + 2 + 4 + 8 + 2;
inline constexpr std::size_t kChunkFixedBytes = 4 + 4;
// Chunks a value of `size` bytes takes at `chunk_bytes` each.
inline std::uint32_t chunk_count(std::uint32_t size, std::uint32_t chunk_bytes) {
  return (size + chunk_bytes - 1) / chunk_bytes;
}
// The content hash a large entry is announced and verified with (XXH3-64).
std::uint64_t value_hash(std::string_view value);

void encode(Writer& w, const Ping& m);
void encode_ack(Writer& w, std::uint32_t seq);
void encode(Writer& w, const StateSums& m);
void encode_nack(Writer& w, std::uint32_t seq);
void encode(Writer& w, const PingReq& m);
void encode(Writer& w, const MemberMsg& m);
void encode(Writer& w, const EntryMsg& m);
void encode(Writer& w, const EntryRefMsg& m);
void encode(Writer& w, const ChunkRequestMsg& m);
// A chunk: the message header and fixed fields, then data.
void encode(Writer& w, const ChunkMsg& m);

struct Limits {
  std::size_t name_bytes_max = 128;
  std::size_t metadata_bytes_max = 512;
  std::size_t key_bytes_max = 256;
  std::size_t value_bytes_max = 1024;
};

// Each returns false on a truncated, oversized or inconsistent body (trailing bytes included).
bool decode(std::span<const std::byte> body, Ping* m);
bool decode_seq(std::span<const std::byte> body, std::uint32_t* seq);
bool decode(std::span<const std::byte> body, StateSums* m);
bool decode(std::span<const std::byte> body, PingReq* m);
bool decode(std::span<const std::byte> body, const Limits& lim, MemberMsg* m);
bool decode(std::span<const std::byte> body, const Limits& lim, EntryMsg* m);
// size in [1, value_bytes_max], chunk_bytes >= kChunkBytesMin, version non-zero, key non-empty.
bool decode(std::span<const std::byte> body, const Limits& lim, EntryRefMsg* m);
// As EntryRef, and: first < chunks, mask != 0, no bit past the last chunk or past 64.
bool decode(std::span<const std::byte> body, const Limits& lim, ChunkRequestMsg* m);
// data non-empty and at most 65535 - kChunkFixedBytes (the frame bounds it).
bool decode(std::span<const std::byte> body, ChunkMsg* m);

}  // namespace rumor::wire
