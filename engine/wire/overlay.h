// Message bodies of the partial-view mode (docs/protocol.md "Partial views", layouts in
// docs/wire-format.md "Partial views"): HyParView's overlay (join walks, neighbour requests,
// disconnects, shuffles) and Plumtree's broadcast tree (payloads, IHAVE announcements, GRAFT,
// PRUNE). Types are the kHv* and kTree* numbers of engine/wire/wire.h.
//
// Every decoder is bounds-checked like the rest of the codec: counts are checked against their
// limits and against what remains before anything is read, a body with trailing bytes is
// malformed, and nothing allocates (lists decode into fixed arrays).
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "engine/wire/wire.h"

namespace rumor::wire {

// A peer as the overlay names it: its id and the address it is reached at.
struct PeerRef {
  NodeId id = 0;
  Address address;
};

// A Plumtree message id: which version of which key (XXH3-64 of the key).
struct TreeId {
  std::uint64_t key_hash = 0;
  Version version;
  friend bool operator==(const TreeId&, const TreeId&) = default;
};

// Peers one shuffle carries at most (HyParView's k_a + k_p + 1 is 8 by default).
inline constexpr std::size_t kShufflePeersMax = 16;
// Ids one IHAVE or GRAFT carries at most: 48 x 24 bytes fit a 1,400-byte datagram whole.
inline constexpr std::size_t kTreeIdsMax = 48;
inline constexpr std::size_t kTreeIdBytes = 24;
static_assert(kTreeIdsMax * kTreeIdBytes + 1 + kMessageHeaderBytes + kHeaderBytes + 40 <= 1400,
              "an IHAVE batch fits a default datagram with room for the seal");

// kHvJoin: flags:u8 (0). The joiner is the header's sender, at the datagram's source address.
// kHvDisconnect, kTreePrune: flags:u8 (0).
void encode_flags_only(Writer& w, MsgType t);
bool decode_flags_only(std::span<const std::byte> body);

// kHvForwardJoin: ttl:u8 joiner:u64 joiner_addr:addr. The joiner's address must be present.
struct ForwardJoinMsg {
  std::uint8_t ttl = 0;
  PeerRef joiner;
};
void encode(Writer& w, const ForwardJoinMsg& m);
bool decode(std::span<const std::byte> body, ForwardJoinMsg* m);

// kHvNeighbor: flags:u8 (bit 0: high priority, the sender has no active peer; others 0).
// kHvNeighborReply: accepted:u8 (0 or 1).
void encode_neighbor(Writer& w, bool high_priority);
bool decode_neighbor(std::span<const std::byte> body, bool* high_priority);
void encode_neighbor_reply(Writer& w, bool accepted);
bool decode_neighbor_reply(std::span<const std::byte> body, bool* accepted);

// kHvShuffle: ttl:u8 origin:u64 origin_addr:addr count:u8 (node:u64 addr)[count]
// kHvShuffleReply: count:u8 (node:u64 addr)[count]           count <= kShufflePeersMax
struct ShuffleMsg {
  std::uint8_t ttl = 0;
  PeerRef origin;  // unused in a reply
  std::array<PeerRef, kShufflePeersMax> peers;
  std::size_t count = 0;
  std::span<const PeerRef> list() const { return {peers.data(), count}; }
};
void encode_shuffle(Writer& w, const ShuffleMsg& m, bool reply);
bool decode_shuffle(std::span<const std::byte> body, bool reply, ShuffleMsg* m);

// kTreeGossip: hops:u8 flags:u8 (bit 0 tombstone) hlc:u64 node:u64 key:str16 value:str16.
// The entry rules of kEntry hold: key non-empty, version non-zero, a tombstone has no value.
struct TreeGossipMsg {
  std::uint8_t hops = 0;
  EntryMsg entry;
};
void encode(Writer& w, const TreeGossipMsg& m);
// Bytes encode() writes for an entry, message header included.
std::size_t tree_gossip_bytes(const EntryMsg& e);
bool decode(std::span<const std::byte> body, const Limits& lim, TreeGossipMsg* m);

// kTreeIHave, kTreeGraft: count:u8 (key_hash:u64 hlc:u64 node:u64)[count], 1 <= count <=
// kTreeIdsMax, every version non-zero.
struct TreeIdsMsg {
  std::array<TreeId, kTreeIdsMax> ids;
  std::size_t count = 0;
  std::span<const TreeId> list() const { return {ids.data(), count}; }
};
void encode_ids(Writer& w, MsgType t, std::span<const TreeId> ids);
bool decode_ids(std::span<const std::byte> body, TreeIdsMsg* m);

}  // namespace rumor::wire
