#include "engine/wire/wire.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor::wire {

std::uint32_t label_hash(std::string_view label) { return digest::label_hash(label); }

void Writer::str8(std::string_view s) {
  if (s.size() > 255) {
    w_.fail();
    return;
  }
  u8(static_cast<std::uint8_t>(s.size()));
  bytes(s.data(), s.size());
}

void Writer::str16(std::string_view s) {
  if (s.size() > 65535) {
    w_.fail();
    return;
  }
  u16(static_cast<std::uint16_t>(s.size()));
  bytes(s.data(), s.size());
}

void Writer::address(const Address& a) {
  if (a.is_ipv4()) {
    u8(4);
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
    bytes(&sin->sin_addr, 4);  // network order, as the kernel keeps it
  } else if (a.is_ipv6()) {
    u8(6);
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
    bytes(&sin6->sin6_addr, 16);
  } else {
    u8(0);
    return;
  }
  u16(a.port());
}

std::size_t Writer::begin(MsgType t) {
  const std::size_t start = size();
  u8(static_cast<std::uint8_t>(t));
  u16(0);
  return start;
}

void Writer::end(std::size_t start) {
  if (!ok()) return;
  const std::size_t len = size() - start - kMessageHeaderBytes;
  if (len > kMessageBodyBytesMax) {
    w_.fail();
    return;
  }
  const std::span<std::uint8_t> buf = w_.buffer();
  buf[start + 1] = static_cast<std::uint8_t>(len & 0xff);
  buf[start + 2] = static_cast<std::uint8_t>(len >> 8);
}

void Writer::patch_be16(std::size_t pos, std::uint16_t v) {
  const std::span<std::uint8_t> buf = w_.buffer();
  if (pos + 2 > buf.size()) {
    w_.fail();
    return;
  }
  buf[pos] = static_cast<std::uint8_t>(v >> 8);
  buf[pos + 1] = static_cast<std::uint8_t>(v & 0xff);
}

std::string_view Reader::str8(std::size_t max) {
  const std::size_t n = u8();
  if (n > max) fail();
  auto s = take(ok() ? n : 0);
  if (!ok()) return {};
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

std::string_view Reader::str16(std::size_t max) {
  const std::size_t n = u16();
  if (n > max) fail();
  auto s = take(ok() ? n : 0);
  if (!ok()) return {};
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

Address Reader::address() {
  const std::uint8_t family = u8();
  if (family == 4) {
    auto ip = take(4);
    const std::uint16_t port = u16();
    if (!ok()) return {};
    std::uint32_t net;
    std::memcpy(&net, ip.data(), 4);
    return Address::ipv4(ntohl(net), port);
  }
  if (family == 6) {
    auto ip = take(16);
    const std::uint16_t port = u16();
    if (!ok()) return {};
    std::array<std::uint8_t, 16> a;
    std::memcpy(a.data(), ip.data(), 16);
    return Address::ipv6(a, port);
  }
  if (family != 0) fail();  // 0: "no address"; anything else is malformed
  return {};
}

void write_header(Writer& w, const Header& h) {
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kProtocolVersion);
  w.u8(0);  // flags: bit 0 (sealed) is set later by crypto::FrameCrypto::seal(), if at all
  const std::size_t shard_at = w.size();
  w.u16(0);
  w.patch_be16(shard_at, h.shard);
  w.u16(0);  // reserved
  w.u32(h.label_hash);
  w.u64(h.sender);
}

HeaderError read_header(Reader& r, Header* h) {
  if (r.remaining() < kHeaderBytes) return HeaderError::kTruncated;
  // magic:2 version:u8 flags:u8 shard:be16; the shard is read by the one function that reads it
  // for every layer (rumor/transport.h).
  const std::span<const std::byte> lead = r.take(kShardIdOffset + kShardIdBytes);
  Reader f(lead);
  const std::uint8_t m0 = f.u8(), m1 = f.u8();
  if (m0 != kMagic0 || m1 != kMagic1) return HeaderError::kBadMagic;
  if (f.u8() != kProtocolVersion) return HeaderError::kBadVersion;
  (void)f.u8();  // flags: checked by the receiver against crypto::kFlagsKnown
  h->shard = peek_target_shard(lead).value_or(0);  // lead is long enough: checked above
  (void)r.u16();
  h->label_hash = r.u32();
  h->sender = r.u64();
  return r.ok() ? HeaderError::kNone : HeaderError::kTruncated;
}

bool next_message(Reader& r, Message* m) {
  if (r.empty() || !r.ok()) return false;
  m->type = static_cast<MsgType>(r.u8());
  const std::uint16_t len = r.u16();
  m->body = r.take(len);
  return r.ok();
}

void encode(Writer& w, const Ping& m) {
  const std::size_t at = w.begin(MsgType::kPing);
  w.u32(m.seq);
  w.u64(m.target);
  w.end(at);
}

void encode_ack(Writer& w, std::uint32_t seq) {
  const std::size_t at = w.begin(MsgType::kAck);
  w.u32(seq);
  w.end(at);
}

void encode(Writer& w, const StateSums& m) {
  const std::size_t at = w.begin(MsgType::kStateSums);
  w.u32(m.members);
  w.u32(m.store);
  w.end(at);
}

void encode_nack(Writer& w, std::uint32_t seq) {
  const std::size_t at = w.begin(MsgType::kNack);
  w.u32(seq);
  w.end(at);
}

void encode(Writer& w, const PingReq& m) {
  const std::size_t at = w.begin(MsgType::kPingReq);
  w.u32(m.seq);
  w.u64(m.target);
  w.address(m.target_addr);
  w.end(at);
}

void encode(Writer& w, const MemberMsg& m) {
  const std::size_t at = w.begin(MsgType::kMember);
  w.u8(static_cast<std::uint8_t>(m.state));
  w.u64(m.incarnation);
  w.u64(m.node);
  w.u64(m.from);
  w.address(m.address);
  w.str8(m.name);
  w.str16(m.metadata);
  w.end(at);
}

void encode(Writer& w, const EntryMsg& m) {
  const std::size_t at = w.begin(MsgType::kEntry);
  w.u8(m.tombstone ? 1 : 0);
  w.u64(m.version.hlc);
  w.u64(m.version.node);
  w.str16(m.key);
  w.str16(m.value);
  w.end(at);
}

bool decode(std::span<const std::byte> body, Ping* m) {
  Reader r(body);
  m->seq = r.u32();
  m->target = r.u64();
  return r.ok() && r.empty();
}

bool decode(std::span<const std::byte> body, StateSums* m) {
  Reader r(body);
  m->members = r.u32();
  m->store = r.u32();
  return r.ok() && r.empty();
}

bool decode_seq(std::span<const std::byte> body, std::uint32_t* seq) {
  Reader r(body);
  *seq = r.u32();
  return r.ok() && r.empty();
}

bool decode(std::span<const std::byte> body, PingReq* m) {
  Reader r(body);
  m->seq = r.u32();
  m->target = r.u64();
  m->target_addr = r.address();
  return r.ok() && r.empty() && !m->target_addr.empty();
}

bool decode(std::span<const std::byte> body, const Limits& lim, MemberMsg* m) {
  Reader r(body);
  const std::uint8_t state = r.u8();
  if (state > static_cast<std::uint8_t>(WireState::kLeft)) return false;
  m->state = static_cast<WireState>(state);
  m->incarnation = r.u64();
  m->node = r.u64();
  m->from = r.u64();
  m->address = r.address();
  m->name = r.str8(lim.name_bytes_max);
  m->metadata = r.str16(lim.metadata_bytes_max);
  return r.ok() && r.empty() && m->node != 0 && !m->address.empty();
}

bool decode(std::span<const std::byte> body, const Limits& lim, EntryMsg* m) {
  Reader r(body);
  const std::uint8_t flags = r.u8();
  if (flags > 1) return false;
  m->tombstone = flags == 1;
  m->version.hlc = r.u64();
  m->version.node = r.u64();
  m->key = r.str16(lim.key_bytes_max);
  m->value = r.str16(lim.value_bytes_max);
  if (!r.ok() || !r.empty() || m->key.empty() || m->version.is_zero()) return false;
  if (m->tombstone && !m->value.empty()) return false;
  return true;
}

std::uint64_t value_hash(std::string_view value) {
  return XXH3_64bits(value.data(), value.size());
}

void encode(Writer& w, const EntryRefMsg& m) {
  RUMOR_ASSERT(m.size > 0);
  RUMOR_ASSERT(m.chunk_bytes >= kChunkBytesMin);
  RUMOR_ASSERT(!m.key.empty());
  const std::size_t at = w.begin(MsgType::kEntryRef);
  w.u8(0);
  w.u64(m.version.hlc);
  w.u64(m.version.node);
  w.u32(m.size);
  w.u64(m.hash);
  w.u16(m.chunk_bytes);
  w.str16(m.key);
  w.end(at);
}

void encode(Writer& w, const ChunkRequestMsg& m) {
  RUMOR_ASSERT(m.mask != 0);
  RUMOR_ASSERT(m.chunk_bytes >= kChunkBytesMin);
  RUMOR_ASSERT(m.first < chunk_count(m.size, m.chunk_bytes));
  const std::size_t at = w.begin(MsgType::kChunkRequest);
  w.u32(m.xfer);
  w.u64(m.version.hlc);
  w.u64(m.version.node);
  w.u32(m.size);
  w.u16(m.chunk_bytes);
  w.u32(m.first);
  w.u64(m.mask);
  w.str16(m.key);
  w.end(at);
}

void encode(Writer& w, const ChunkMsg& m) {
  RUMOR_ASSERT(!m.data.empty());
  const std::size_t at = w.begin(MsgType::kChunk);
  w.u32(m.xfer);
  w.u32(m.index);
  w.bytes(m.data.data(), m.data.size());
  w.end(at);
}

namespace {
// The fields EntryRef and ChunkRequest share, checked the same way.
bool valid_ref(const Limits& lim, const Version& v, std::uint32_t size,
               std::uint16_t chunk_bytes, std::string_view key) {
  return !v.is_zero() && size > 0 && size <= lim.value_bytes_max &&
         chunk_bytes >= kChunkBytesMin && !key.empty();
}
}  // namespace

bool decode(std::span<const std::byte> body, const Limits& lim, EntryRefMsg* m) {
  Reader r(body);
  const std::uint8_t flags = r.u8();
  m->version.hlc = r.u64();
  m->version.node = r.u64();
  m->size = r.u32();
  m->hash = r.u64();
  m->chunk_bytes = r.u16();
  m->key = r.str16(lim.key_bytes_max);
  if (!r.ok() || !r.empty() || flags != 0) return false;
  return valid_ref(lim, m->version, m->size, m->chunk_bytes, m->key);
}

bool decode(std::span<const std::byte> body, const Limits& lim, ChunkRequestMsg* m) {
  Reader r(body);
  m->xfer = r.u32();
  m->version.hlc = r.u64();
  m->version.node = r.u64();
  m->size = r.u32();
  m->chunk_bytes = r.u16();
  m->first = r.u32();
  m->mask = r.u64();
  m->key = r.str16(lim.key_bytes_max);
  if (!r.ok() || !r.empty()) return false;
  if (!valid_ref(lim, m->version, m->size, m->chunk_bytes, m->key)) return false;
  const std::uint32_t chunks = chunk_count(m->size, m->chunk_bytes);
  if (m->first >= chunks || m->mask == 0) return false;
  // Bits past the last chunk are malformed.
  const std::uint32_t span = std::min<std::uint32_t>(chunks - m->first, kChunkWindowMax);
  if (span < 64 && (m->mask >> span) != 0) return false;
  return true;
}

bool decode(std::span<const std::byte> body, ChunkMsg* m) {
  Reader r(body);
  m->xfer = r.u32();
  m->index = r.u32();
  if (!r.ok()) return false;
  m->data = r.take(r.remaining());
  return r.ok() && !m->data.empty();
}

}  // namespace rumor::wire
