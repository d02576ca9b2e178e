#include "io/xdp_frame.h"

#include <netinet/in.h>

#include <cstring>

#include "base/assert.h"

namespace rumor::io {
namespace {

constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
constexpr std::uint16_t kEtherTypeIpv6 = 0x86dd;

std::uint16_t load16(const std::byte* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) |
                                    static_cast<unsigned>(p[1]));
}
void store16(std::byte* p, std::uint16_t v) {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xff);
}

const std::uint8_t* ip4_bytes(const Address& a) {
  return reinterpret_cast<const std::uint8_t*>(
      &reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr())->sin_addr);
}
const std::uint8_t* ip6_bytes(const Address& a) {
  return reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr())->sin6_addr.s6_addr;
}

std::span<const std::byte> as_bytes(const std::uint8_t* p, std::size_t n) {
  return {reinterpret_cast<const std::byte*>(p), n};
}

// The pseudo-header sum for the UDP checksum: addresses, protocol and UDP length.
std::uint32_t pseudo_sum(std::span<const std::byte> src, std::span<const std::byte> dst,
                         std::uint32_t udp_len) {
  std::uint32_t sum = checksum_add(0, src);
  sum = checksum_add(sum, dst);
  sum += IPPROTO_UDP;
  sum += udp_len & 0xffff;
  sum += udp_len >> 16;
  return sum;
}

}  // namespace

std::uint32_t checksum_add(std::uint32_t sum_in, std::span<const std::byte> bytes) {
  // 64-bit accumulator over 32-bit words, folded at the end: a 1,452-byte payload cannot carry
  // out of 64 bits.
  // sum_in is a network-order value (as returned); the loop below sums native-order words, so
  // bring it to native order first.
  while (sum_in >> 16) sum_in = (sum_in & 0xffff) + (sum_in >> 16);
  std::uint64_t sum = htons(static_cast<std::uint16_t>(sum_in));
  const std::byte* p = bytes.data();
  std::size_t n = bytes.size();
  while (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;  // native order: the one's-complement sum is byte-order independent (RFC 1071)
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    std::uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    std::uint16_t w = 0;
    std::memcpy(&w, p, 1);
    sum += w;
  }
  while (sum >> 32) sum = (sum & 0xffffffffu) + (sum >> 32);
  // Back to a 32-bit running sum in network order terms: fold to 16 bits in native order, then
  // convert, so callers may keep adding host-order constants (protocol, length).
  std::uint32_t s = static_cast<std::uint32_t>(sum);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ntohs(static_cast<std::uint16_t>(s));
}

std::uint16_t checksum_fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::uint32_t frame_header_bytes(const Address& dst) {
  return kEthHeaderBytes + (dst.is_ipv4() ? kIpv4HeaderBytes : kIpv6HeaderBytes) + kUdpHeaderBytes;
}

std::byte* build_udp_frame(std::byte* payload, std::uint32_t payload_len, const MacAddress& src_mac,
                           const MacAddress& dst_mac, const Address& src, const Address& dst) {
  RUMOR_ASSERT(!src.empty());
  RUMOR_ASSERT(src.family() == dst.family());
  const bool v4 = dst.is_ipv4();
  const std::uint32_t ip_bytes = v4 ? kIpv4HeaderBytes : kIpv6HeaderBytes;
  const std::uint32_t udp_len = kUdpHeaderBytes + payload_len;
  RUMOR_ASSERT(udp_len <= 0xffff);
  std::byte* frame = payload - frame_header_bytes(dst);
  std::byte* ip = frame + kEthHeaderBytes;
  std::byte* udp = ip + ip_bytes;

  std::memcpy(frame, dst_mac.data(), 6);
  std::memcpy(frame + 6, src_mac.data(), 6);
  store16(frame + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);

  std::span<const std::byte> src_ip;
  std::span<const std::byte> dst_ip;
  if (v4) {
    src_ip = as_bytes(ip4_bytes(src), 4);
    dst_ip = as_bytes(ip4_bytes(dst), 4);
    ip[0] = std::byte{0x45};  // version 4, 5 words
    ip[1] = std::byte{0};     // DSCP/ECN
    store16(ip + 2, static_cast<std::uint16_t>(kIpv4HeaderBytes + udp_len));
    store16(ip + 4, 0);       // identification: unused, DF is set (RFC 6864)
    store16(ip + 6, 0x4000);  // DF
    ip[8] = static_cast<std::byte>(kFrameHopLimit);
    ip[9] = static_cast<std::byte>(IPPROTO_UDP);
    store16(ip + 10, 0);
    std::memcpy(ip + 12, src_ip.data(), 4);
    std::memcpy(ip + 16, dst_ip.data(), 4);
    store16(ip + 10, checksum_fold(checksum_add(0, {ip, kIpv4HeaderBytes})));
  } else {
    src_ip = as_bytes(ip6_bytes(src), 16);
    dst_ip = as_bytes(ip6_bytes(dst), 16);
    ip[0] = std::byte{0x60};  // version 6, traffic class and flow label 0
    ip[1] = ip[2] = ip[3] = std::byte{0};
    store16(ip + 4, static_cast<std::uint16_t>(udp_len));
    ip[6] = static_cast<std::byte>(IPPROTO_UDP);
    ip[7] = static_cast<std::byte>(kFrameHopLimit);
    std::memcpy(ip + 8, src_ip.data(), 16);
    std::memcpy(ip + 24, dst_ip.data(), 16);
  }
  store16(udp, src.port());
  store16(udp + 2, dst.port());
  store16(udp + 4, static_cast<std::uint16_t>(udp_len));
  store16(udp + 6, 0);
  std::uint16_t sum =
      checksum_fold(checksum_add(pseudo_sum(src_ip, dst_ip, udp_len), {udp, udp_len}));
  if (sum == 0) sum = 0xffff;  // zero means "no checksum" (RFC 768)
  store16(udp + 6, sum);
  return frame;
}

std::string_view frame_error_name(FrameError e) {
  switch (e) {
    case FrameError::kNone:
      return "none";
    case FrameError::kShort:
      return "short";
    case FrameError::kNotIp:
      return "not_ip";
    case FrameError::kNotUdp:
      return "not_udp";
    case FrameError::kFragment:
      return "fragment";
    case FrameError::kBadIpHeader:
      return "bad_ip_header";
    case FrameError::kBadUdpLength:
      return "bad_udp_length";
    case FrameError::kBadChecksum:
      return "bad_checksum";
  }
  return "unknown";
}

FrameError parse_udp_frame(std::span<const std::byte> frame, ParsedFrame* out) {
  const std::size_t n = frame.size();
  const std::byte* f = frame.data();
  if (n < kEthHeaderBytes) return FrameError::kShort;
  const std::uint16_t type = load16(f + 12);
  const std::byte* ip = f + kEthHeaderBytes;
  const std::size_t ip_room = n - kEthHeaderBytes;
  std::size_t ip_header = 0;
  std::size_t ip_total = 0;
  std::span<const std::byte> src_ip;
  std::span<const std::byte> dst_ip;
  if (type == kEtherTypeIpv4) {
    if (ip_room < kIpv4HeaderBytes) return FrameError::kShort;
    if ((static_cast<unsigned>(ip[0]) >> 4) != 4) return FrameError::kBadIpHeader;
    ip_header = (static_cast<unsigned>(ip[0]) & 0x0f) * 4u;
    ip_total = load16(ip + 2);
    if (ip_header < kIpv4HeaderBytes || ip_total < ip_header || ip_total > ip_room) {
      return FrameError::kBadIpHeader;
    }
    if (checksum_fold(checksum_add(0, {ip, ip_header})) != 0) return FrameError::kBadChecksum;
    if ((load16(ip + 6) & 0x3fff) != 0) return FrameError::kFragment;  // MF or an offset
    if (static_cast<unsigned>(ip[9]) != IPPROTO_UDP) return FrameError::kNotUdp;
    src_ip = {ip + 12, 4};
    dst_ip = {ip + 16, 4};
  } else if (type == kEtherTypeIpv6) {
    if (ip_room < kIpv6HeaderBytes) return FrameError::kShort;
    if ((static_cast<unsigned>(ip[0]) >> 4) != 6) return FrameError::kBadIpHeader;
    ip_header = kIpv6HeaderBytes;
    ip_total = kIpv6HeaderBytes + load16(ip + 4);
    if (ip_total > ip_room) return FrameError::kBadIpHeader;
    if (static_cast<unsigned>(ip[6]) != IPPROTO_UDP) return FrameError::kNotUdp;
    src_ip = {ip + 8, 16};
    dst_ip = {ip + 24, 16};
  } else {
    return FrameError::kNotIp;
  }
  const std::size_t udp_room = ip_total - ip_header;
  if (udp_room < kUdpHeaderBytes) return FrameError::kShort;
  const std::byte* udp = ip + ip_header;
  const std::uint32_t udp_len = load16(udp + 4);
  if (udp_len < kUdpHeaderBytes || udp_len > udp_room) return FrameError::kBadUdpLength;
  const std::uint16_t wire_sum = load16(udp + 6);
  if (wire_sum == 0) {
    if (type == kEtherTypeIpv6) return FrameError::kBadChecksum;  // mandatory over IPv6
  } else if (checksum_fold(checksum_add(pseudo_sum(src_ip, dst_ip, udp_len), {udp, udp_len})) !=
             0) {
    // A frame from the kernel of a local virtual device (veth, tap) with checksum offload
    // carries only the pseudo-header sum, not inverted (CHECKSUM_PARTIAL: "the hardware will
    // finish it", and there is no hardware). Its bytes never crossed a wire; accept it.
    const auto partial =
        static_cast<std::uint16_t>(~checksum_fold(pseudo_sum(src_ip, dst_ip, udp_len)));
    if (wire_sum != partial) return FrameError::kBadChecksum;
  }
  const std::uint16_t sport = load16(udp);
  const std::uint16_t dport = load16(udp + 2);
  if (type == kEtherTypeIpv4) {
    const auto ip4 = [](std::span<const std::byte> b) {
      return (static_cast<std::uint32_t>(b[0]) << 24) | (static_cast<std::uint32_t>(b[1]) << 16) |
             (static_cast<std::uint32_t>(b[2]) << 8) | static_cast<std::uint32_t>(b[3]);
    };
    out->src = Address::ipv4(ip4(src_ip), sport);
    out->dst = Address::ipv4(ip4(dst_ip), dport);
  } else {
    std::array<std::uint8_t, 16> a{};
    std::memcpy(a.data(), src_ip.data(), 16);
    out->src = Address::ipv6(a, sport);
    std::memcpy(a.data(), dst_ip.data(), 16);
    out->dst = Address::ipv6(a, dport);
  }
  std::memcpy(out->src_mac.data(), f + 6, 6);
  out->payload_offset = static_cast<std::uint32_t>(kEthHeaderBytes + ip_header + kUdpHeaderBytes);
  out->payload_len = udp_len - kUdpHeaderBytes;
  return FrameError::kNone;
}

}  // namespace rumor::io
