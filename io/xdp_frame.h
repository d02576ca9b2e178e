// Ethernet/IPv4/IPv6/UDP frames as the AF_XDP transport (io/xdp_transport.h) builds and parses
// them: on that path no kernel stack writes or checks a header, so rumor does, checksums
// included. Pure functions over bytes; fuzzed (tests/fuzz/io/xdp_frame_fuzz.cc).
//
// Supported: untagged Ethernet II; IPv4 without fragmentation (options are skipped); IPv6 with
// UDP as the first next header (no extension headers). Everything else is refused by the
// parser, and the XDP program (io/bpf/rumor_xdp.bpf.c) passes it to the kernel before it gets
// here: fragments, VLAN tags and extension headers take the kernel's path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "rumor/transport.h"

namespace rumor::io {

inline constexpr std::uint32_t kEthHeaderBytes = 14;
inline constexpr std::uint32_t kIpv4HeaderBytes = 20;  // as built: no options
inline constexpr std::uint32_t kIpv6HeaderBytes = 40;
inline constexpr std::uint32_t kUdpHeaderBytes = 8;
// Where a send frame's payload starts: room for the longest header rumor writes
// (14 + 40 + 8 = 62), rounded to 64 so the payload is cache-line aligned in its frame.
inline constexpr std::uint32_t kFrameHeadroomBytes = 64;
static_assert(kFrameHeadroomBytes >= kEthHeaderBytes + kIpv6HeaderBytes + kUdpHeaderBytes);
static_assert(kEthHeaderBytes + kIpv4HeaderBytes + kUdpHeaderBytes <= kFrameHeadroomBytes);
// Hop limit / TTL of every frame rumor builds (the kernel's default for UDP).
inline constexpr std::uint8_t kFrameHopLimit = 64;

using MacAddress = std::array<std::uint8_t, 6>;

// The header bytes a datagram to `dst` needs in front of its payload (42 for IPv4, 62 for IPv6).
std::uint32_t frame_header_bytes(const Address& dst);

// Writes the Ethernet, IP and UDP headers into the frame_header_bytes(dst) bytes just before
// `payload` (which the caller has filled) and returns the frame's first byte. Both addresses
// must be of one family and not empty; the UDP checksum is always computed (IPv6 requires it).
std::byte* build_udp_frame(std::byte* payload, std::uint32_t payload_len, const MacAddress& src_mac,
                           const MacAddress& dst_mac, const Address& src, const Address& dst);

// Why the parser refused a frame. The transport counts them under one drop reason.
enum class FrameError : std::uint8_t {
  kNone = 0,
  kShort,         // shorter than its headers
  kNotIp,         // not IPv4 or IPv6 (ARP, VLAN tag, ...)
  kNotUdp,        // another protocol, or IPv6 extension headers
  kFragment,      // an IPv4 fragment
  kBadIpHeader,   // version, header length or total length inconsistent with the frame
  kBadUdpLength,  // UDP length inconsistent with the IP payload
  kBadChecksum,   // IPv4 header or UDP checksum wrong (or zero over IPv6)
};
std::string_view frame_error_name(FrameError e);

struct ParsedFrame {
  std::uint32_t payload_offset = 0;  // from the frame's first byte
  std::uint32_t payload_len = 0;
  Address src;  // IP and UDP port
  Address dst;
  MacAddress src_mac{};
};

// Checks every length and both checksums; trailing bytes after the IP packet (Ethernet padding
// of short frames) are ignored. Never reads outside `frame`.
FrameError parse_udp_frame(std::span<const std::byte> frame, ParsedFrame* out);

// The Internet checksum (RFC 1071) of `bytes` added to `sum` (not yet folded or inverted).
std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::byte> bytes);
std::uint16_t checksum_fold(std::uint32_t sum);

}  // namespace rumor::io
