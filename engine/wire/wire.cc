#include "engine/wire/wire.h"

#include <arpa/inet.h>

#include <array>

#include "digest/hash.h"

namespace rumor::wire {

std::uint32_t label_hash(std::string_view label) { return digest::label_hash(label); }

void Writer::str8(std::string_view s) {
  if (s.size() > 255) {
    ok_ = false;
    return;
  }
  u8(static_cast<std::uint8_t>(s.size()));
  put(s.data(), s.size());
}

void Writer::str16(std::string_view s) {
  if (s.size() > 65535) {
    ok_ = false;
    return;
  }
  u16(static_cast<std::uint16_t>(s.size()));
  put(s.data(), s.size());
}

void Writer::address(const Address& a) {
  if (a.is_ipv4()) {
    u8(4);
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
    put(&sin->sin_addr, 4);  // network order, as the kernel keeps it
  } else if (a.is_ipv6()) {
    u8(6);
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
    put(&sin6->sin6_addr, 16);
  } else {
    u8(0);
    return;
  }
  u16(a.port());
}

std::size_t Writer::begin(MsgType t) {
  const std::size_t start = pos_;
  u8(static_cast<std::uint8_t>(t));
  u16(0);
  return start;
}

void Writer::end(std::size_t start) {
  if (!ok_) return;
  const std::size_t len = pos_ - start - kMessageHeaderBytes;
  if (len > kMessageBodyBytesMax) {
    ok_ = false;
    return;
  }
  buf_[start + 1] = static_cast<std::byte>(len & 0xff);
  buf_[start + 2] = static_cast<std::byte>(len >> 8);
}

void Writer::patch_be16(std::size_t pos, std::uint16_t v) {
  if (pos + 2 > buf_.size()) {
    ok_ = false;
    return;
  }
  buf_[pos] = static_cast<std::byte>(v >> 8);
  buf_[pos + 1] = static_cast<std::byte>(v & 0xff);
}

std::uint64_t Reader::le(std::size_t n) {
  if (!ok_ || n > remaining()) {
    ok_ = false;
    return 0;
  }
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(buf_[pos_ + i])) << (8 * i);
  }
  pos_ += n;
  return v;
}

std::span<const std::byte> Reader::take(std::size_t n) {
  if (!ok_ || n > remaining()) {
    ok_ = false;
    return {};
  }
  auto s = buf_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::string_view Reader::str8(std::size_t max) {
  const std::size_t n = u8();
  if (n > max) ok_ = false;
  auto s = take(ok_ ? n : 0);
  if (!ok_) return {};
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

std::string_view Reader::str16(std::size_t max) {
  const std::size_t n = u16();
  if (n > max) ok_ = false;
  auto s = take(ok_ ? n : 0);
  if (!ok_) return {};
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

Address Reader::address() {
  const std::uint8_t family = u8();
  if (family == 4) {
    auto ip = take(4);
    const std::uint16_t port = u16();
    if (!ok_) return {};
    std::uint32_t net;
    std::memcpy(&net, ip.data(), 4);
    return Address::ipv4(ntohl(net), port);
  }
  if (family == 6) {
    auto ip = take(16);
    const std::uint16_t port = u16();
    if (!ok_) return {};
    std::array<std::uint8_t, 16> a;
    std::memcpy(a.data(), ip.data(), 16);
    return Address::ipv6(a, port);
  }
  if (family != 0) ok_ = false;  // 0: "no address"; anything else is malformed
  return {};
}

void write_header(Writer& w, const Header& h) {
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kProtocolVersion);
  w.u8(0);  // flags, reserved
  const std::size_t shard_at = w.size();
  w.u16(0);
  w.patch_be16(shard_at, h.shard);
  w.u16(0);  // reserved
  w.u32(h.label_hash);
  w.u64(h.sender);
}

HeaderError read_header(Reader& r, Header* h) {
  if (r.remaining() < kHeaderBytes) return HeaderError::kTruncated;
  const std::uint8_t m0 = r.u8(), m1 = r.u8();
  if (m0 != kMagic0 || m1 != kMagic1) return HeaderError::kBadMagic;
  if (r.u8() != kProtocolVersion) return HeaderError::kBadVersion;
  (void)r.u8();  // flags
  auto shard = r.take(2);
  h->shard = static_cast<std::uint16_t>((static_cast<unsigned>(shard[0]) << 8) |
                                        static_cast<unsigned>(shard[1]));
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

}  // namespace rumor::wire
