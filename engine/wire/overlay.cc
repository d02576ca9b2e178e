// Codecs of the partial-view messages (engine/wire/overlay.h; docs/wire-format.md).
#include "engine/wire/overlay.h"

#include "base/assert.h"

namespace rumor::wire {

namespace {
void peer(Writer& w, const PeerRef& p) {
  RUMOR_ASSERT(!p.address.empty());
  w.u64(p.id);
  w.address(p.address);
}
bool peer(Reader& r, PeerRef* p) {
  p->id = r.u64();
  p->address = r.address();
  return r.ok() && !p->address.empty() && p->id != 0;
}
}  // namespace

void encode_flags_only(Writer& w, MsgType t) {
  RUMOR_ASSERT(t == MsgType::kHvJoin || t == MsgType::kHvDisconnect || t == MsgType::kTreePrune);
  const std::size_t at = w.begin(t);
  w.u8(0);
  w.end(at);
}

bool decode_flags_only(std::span<const std::byte> body) {
  Reader r(body);
  const std::uint8_t flags = r.u8();
  return r.ok() && r.empty() && flags == 0;
}

void encode(Writer& w, const ForwardJoinMsg& m) {
  const std::size_t at = w.begin(MsgType::kHvForwardJoin);
  w.u8(m.ttl);
  peer(w, m.joiner);
  w.end(at);
}

bool decode(std::span<const std::byte> body, ForwardJoinMsg* m) {
  Reader r(body);
  m->ttl = r.u8();
  return peer(r, &m->joiner) && r.empty();
}

namespace {
// A message whose body is one flag byte, 0 or 1.
void encode_flag(Writer& w, MsgType type, bool flag) {
  const std::size_t at = w.begin(type);
  w.u8(flag ? 1 : 0);
  w.end(at);
}

bool decode_flag(std::span<const std::byte> body, bool* flag) {
  Reader r(body);
  const std::uint8_t v = r.u8();
  *flag = v == 1;
  return r.ok() && r.empty() && v <= 1;
}
}  // namespace

void encode_neighbor(Writer& w, bool high_priority) {
  encode_flag(w, MsgType::kHvNeighbor, high_priority);
}
bool decode_neighbor(std::span<const std::byte> body, bool* high_priority) {
  return decode_flag(body, high_priority);
}
void encode_neighbor_reply(Writer& w, bool accepted) {
  encode_flag(w, MsgType::kHvNeighborReply, accepted);
}
bool decode_neighbor_reply(std::span<const std::byte> body, bool* accepted) {
  return decode_flag(body, accepted);
}

void encode_shuffle(Writer& w, const ShuffleMsg& m, bool reply) {
  RUMOR_ASSERT(m.count <= kShufflePeersMax);
  const std::size_t at = w.begin(reply ? MsgType::kHvShuffleReply : MsgType::kHvShuffle);
  if (!reply) {
    w.u8(m.ttl);
    peer(w, m.origin);
  }
  w.u8(static_cast<std::uint8_t>(m.count));
  for (const PeerRef& p : m.list()) peer(w, p);
  w.end(at);
}

bool decode_shuffle(std::span<const std::byte> body, bool reply, ShuffleMsg* m) {
  Reader r(body);
  if (!reply) {
    m->ttl = r.u8();
    if (!peer(r, &m->origin)) return false;
  }
  const std::size_t count = r.u8();
  // The smallest peer is 8 + 1 + 4 + 2 bytes (IPv4): a count the rest cannot hold is refused
  // before anything is read.
  if (!r.ok() || count > kShufflePeersMax || count * 15 > r.remaining()) return false;
  m->count = count;
  for (std::size_t i = 0; i < count; ++i) {
    if (!peer(r, &m->peers[i])) return false;
  }
  return r.ok() && r.empty();
}

std::size_t tree_gossip_bytes(const EntryMsg& e) {
  return kMessageHeaderBytes + 1 + 1 + 16 + 2 + e.key.size() + 2 + e.value.size();
}

void encode(Writer& w, const TreeGossipMsg& m) {
  RUMOR_ASSERT(!m.entry.key.empty());
  RUMOR_ASSERT(!m.entry.version.is_zero());
  const std::size_t at = w.begin(MsgType::kTreeGossip);
  w.u8(m.hops);
  w.u8(m.entry.tombstone ? 1 : 0);
  w.u64(m.entry.version.hlc);
  w.u64(m.entry.version.node);
  w.str16(m.entry.key);
  w.str16(m.entry.value);
  w.end(at);
}

bool decode(std::span<const std::byte> body, const Limits& lim, TreeGossipMsg* m) {
  Reader r(body);
  m->hops = r.u8();
  const std::uint8_t flags = r.u8();
  if (!r.ok() || flags > 1) return false;
  EntryMsg& e = m->entry;
  e.tombstone = flags == 1;
  e.version.hlc = r.u64();
  e.version.node = r.u64();
  e.key = r.str16(lim.key_bytes_max);
  e.value = r.str16(lim.value_bytes_max);
  if (!r.ok() || !r.empty() || e.key.empty() || e.version.is_zero()) return false;
  return !(e.tombstone && !e.value.empty());
}

void encode_ids(Writer& w, MsgType t, std::span<const TreeId> ids) {
  RUMOR_ASSERT(t == MsgType::kTreeIHave || t == MsgType::kTreeGraft);
  RUMOR_ASSERT(!ids.empty());
  RUMOR_ASSERT(ids.size() <= kTreeIdsMax);
  const std::size_t at = w.begin(t);
  w.u8(static_cast<std::uint8_t>(ids.size()));
  for (const TreeId& id : ids) {
    RUMOR_ASSERT(!id.version.is_zero());
    w.u64(id.key_hash);
    w.u64(id.version.hlc);
    w.u64(id.version.node);
  }
  w.end(at);
}

bool decode_ids(std::span<const std::byte> body, TreeIdsMsg* m) {
  Reader r(body);
  const std::size_t count = r.u8();
  if (!r.ok() || count == 0 || count > kTreeIdsMax || count * kTreeIdBytes != r.remaining()) {
    return false;
  }
  m->count = count;
  for (std::size_t i = 0; i < count; ++i) {
    TreeId& id = m->ids[i];
    id.key_hash = r.u64();
    id.version.hlc = r.u64();
    id.version.node = r.u64();
    if (id.version.is_zero()) return false;
  }
  return r.ok() && r.empty();
}

}  // namespace rumor::wire
