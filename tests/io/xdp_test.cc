// AF_XDP beyond the conformance suite: the frame builder and parser against hand-checked bytes
// and corruptions; that datagrams really take the XDP path once the neighbour is known (not the
// kernel socket the transport falls back to); and that a node without the privilege falls back
// to io_uring saying why.
#include <linux/capability.h>
#include <sys/syscall.h>

#include <thread>

#include "harness.h"
#include "io/xdp_frame.h"

namespace rumor::testing {
namespace {

using io::FrameError;
using io::ParsedFrame;

constexpr io::MacAddress kMacA{0x02, 0, 0, 0, 0, 0x0a};
constexpr io::MacAddress kMacB{0x02, 0, 0, 0, 0, 0x0b};

// A frame in a buffer with headroom, as a transport's send buffer holds it.
struct Built {
  std::vector<std::byte> buffer;
  std::span<std::byte> frame;
};
Built build(const Address& src, const Address& dst, const std::vector<std::byte>& payload) {
  Built b;
  b.buffer.resize(io::kFrameHeadroomBytes + payload.size());
  std::byte* p = b.buffer.data() + io::kFrameHeadroomBytes;
  if (!payload.empty()) std::memcpy(p, payload.data(), payload.size());
  std::byte* start =
      io::build_udp_frame(p, static_cast<std::uint32_t>(payload.size()), kMacA, kMacB, src, dst);
  b.frame = {start, static_cast<std::size_t>(p + payload.size() - start)};
  return b;
}

TEST(XdpFrame, Ipv4HeaderMatchesAHandCheckedFrame) {
  // 10.66.0.1:7000 -> 10.66.0.2:7001, payload "hi": header checksum and UDP checksum as
  // computed by hand (and by Wireshark on a captured frame of the same bytes).
  const auto b = build(Address::ipv4(0x0a420001, 7000), Address::ipv4(0x0a420002, 7001),
                       {std::byte{'h'}, std::byte{'i'}});
  ASSERT_EQ(b.frame.size(), 14u + 20u + 8u + 2u);
  const auto u8 = [&](std::size_t i) { return static_cast<unsigned>(b.frame[i]); };
  EXPECT_EQ(u8(12), 0x08u);  // IPv4
  EXPECT_EQ(u8(13), 0x00u);
  EXPECT_EQ(u8(14), 0x45u);
  EXPECT_EQ((u8(16) << 8) | u8(17), 30u);  // total length
  EXPECT_EQ(u8(20), 0x40u);                // DF
  EXPECT_EQ(u8(22), 64u);                  // TTL
  EXPECT_EQ(u8(23), 17u);                  // UDP
  // Header checksum: 0x4500 + 0x001e + 0x4000 + 0x4011 + 0x0a42 + 0x0001 + 0x0a42 + 0x0002
  // = 0xd9b6, inverted 0x2649.
  EXPECT_EQ((u8(24) << 8) | u8(25), 0x2649u);
  EXPECT_EQ((u8(34) << 8) | u8(35), 7000u);
  EXPECT_EQ((u8(36) << 8) | u8(37), 7001u);
  EXPECT_EQ((u8(38) << 8) | u8(39), 10u);
  // UDP checksum: pseudo header 0x0a42+0x0001+0x0a42+0x0002+0x0011+0x000a = 0x14a2, UDP header
  // 0x1b58+0x1b59+0x000a, data 0x6869: sum 0xb3c6, inverted 0x4c39.
  EXPECT_EQ((u8(40) << 8) | u8(41), 0x4c39u);
}

TEST(XdpFrame, RoundTripsBothFamiliesAndEverySize) {
  std::array<std::uint8_t, 16> a6{0xfd, 0x66};
  a6[15] = 1;
  std::array<std::uint8_t, 16> b6 = a6;
  b6[15] = 2;
  const std::pair<Address, Address> ends[] = {
      {Address::ipv4(0x0a420001, 40000), Address::ipv4(0x0a420002, 7946)},
      {Address::ipv6(a6, 40000), Address::ipv6(b6, 7946)}};
  for (const auto& [src, dst] : ends) {
    for (std::uint32_t len : {0u, 1u, 2u, 3u, 63u, 64u, 1199u, 1200u, kDatagramBytesDefault}) {
      const auto p = payload(len, len);
      const auto b = build(src, dst, p);
      ParsedFrame got;
      ASSERT_EQ(io::parse_udp_frame(b.frame, &got), FrameError::kNone) << len;
      EXPECT_EQ(got.src, src);
      EXPECT_EQ(got.dst, dst);
      EXPECT_EQ(got.src_mac, kMacA);
      ASSERT_EQ(got.payload_len, len);
      EXPECT_EQ(std::vector<std::byte>(b.frame.begin() + got.payload_offset,
                                       b.frame.begin() + got.payload_offset + len),
                p);
      // Ethernet padding after the IP packet is ignored.
      std::vector<std::byte> padded(b.frame.begin(), b.frame.end());
      padded.resize(padded.size() + 20, std::byte{0});
      EXPECT_EQ(io::parse_udp_frame(padded, &got), FrameError::kNone);
      EXPECT_EQ(got.payload_len, len);
    }
  }
}

TEST(XdpFrame, EveryCorruptionIsRefused) {
  const auto good =
      build(Address::ipv4(0x0a420001, 1), Address::ipv4(0x0a420002, 2), payload(1, 100));
  const std::vector<std::byte> frame(good.frame.begin(), good.frame.end());
  ParsedFrame out;
  // Any single flipped bit in the IP or UDP header or the payload is caught by a checksum or a
  // length check (the Ethernet addresses are not covered by either).
  for (std::size_t i = 14; i < frame.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto f = frame;
      f[i] ^= static_cast<std::byte>(1 << bit);
      EXPECT_NE(io::parse_udp_frame(f, &out), FrameError::kNone) << "byte " << i << " bit " << bit;
    }
  }
  for (std::size_t n = 0; n < frame.size(); ++n) {
    EXPECT_NE(io::parse_udp_frame({frame.data(), n}, &out), FrameError::kNone) << n;
  }
  auto arp = frame;
  arp[12] = std::byte{0x08};
  arp[13] = std::byte{0x06};
  EXPECT_EQ(io::parse_udp_frame(arp, &out), FrameError::kNotIp);
  auto frag = frame;  // MF set (and the header checksum fixed up by the same amount)
  frag[20] = std::byte{0x60};
  frag[24] = static_cast<std::byte>(static_cast<unsigned>(frag[24]) - 0x20);
  EXPECT_EQ(io::parse_udp_frame(frag, &out), FrameError::kFragment);
}

TEST(XdpFrame, AcceptsAVethPeersPartialChecksum) {
  // A kernel sending over veth with checksum offload leaves only the pseudo-header sum.
  auto b = build(Address::ipv4(0x0a420001, 7000), Address::ipv4(0x0a420002, 7001),
                 {std::byte{'h'}, std::byte{'i'}});
  // Pseudo header: 0x0a42+0x0001+0x0a42+0x0002+0x0011+0x000a = 0x14a2 (not inverted).
  b.frame[40] = std::byte{0x14};
  b.frame[41] = std::byte{0xa2};
  ParsedFrame out;
  EXPECT_EQ(io::parse_udp_frame(b.frame, &out), FrameError::kNone);
  b.frame[41] = std::byte{0xa3};
  EXPECT_EQ(io::parse_udp_frame(b.frame, &out), FrameError::kBadChecksum);
}

// Once the neighbour is resolved, datagrams are posted on the TX ring: a kick per 32 frames at
// most, where the kernel socket path costs one system call each.
TEST(XdpPath, DatagramsTakeTheRingOnceTheNeighbourIsKnown) {
  for (const Family family : {Family::kV4, Family::kV6}) {
    XdpHarness h;
    auto a = h.open(family, {});
    if (!a && a.status().code() == Code::kUnavailable) GTEST_SKIP() << a.status().to_string();
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    auto b = h.open(family, {});
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    Transport& ta = **a;
    Transport& tb = **b;
    EXPECT_EQ(ta.info().backend, "xdp");
    // Prime: the first datagram goes through the kernel, which resolves the neighbour. Retry
    // (bounded) until the next-hop cache's 5 ms miss entry has expired and the table answers.
    ASSERT_TRUE(send_all(h, ta, tb.local_address(), {payload(0, 10)}).is_ok());
    ASSERT_EQ(collect(h, tb, 1).size(), 1u);
    const std::uint64_t start = monotonic_ns();
    while (monotonic_ns() - start < 20'000'000) {
      ASSERT_TRUE(tb.poll(1'000'000, 1).is_ok());
    }
    std::vector<std::vector<std::byte>> sent;
    for (std::uint32_t i = 0; i < 256; ++i) sent.push_back(payload(i, 64 + i));
    const std::uint64_t submits = ta.counters().submits;
    ASSERT_TRUE(send_all(h, ta, tb.local_address(), sent).is_ok());
    const auto got = collect(h, tb, sent.size());
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) {
      EXPECT_EQ(got[i].bytes, sent[i]) << i;
      EXPECT_EQ(got[i].peer, ta.local_address());
    }
    EXPECT_LT(ta.counters().submits - submits, 64u) << "datagrams went through the kernel socket";
    EXPECT_EQ(tb.counters().drops_total(), 0u);
  }
}

// Capabilities are per thread on Linux: a thread that drops CAP_BPF, CAP_NET_ADMIN and
// CAP_SYS_ADMIN cannot load the program, and open_transport falls back to io_uring, saying why.
TEST(XdpFallback, WithoutPrivilegeTheNodeFallsBackToIoUringAndSaysWhy) {
  if (!io::xdp_built()) GTEST_SKIP() << "this build has no AF_XDP support";
  std::string backend, reason, error;
  std::thread t([&] {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capset, &hdr, data) != 0) {
      error = "capset failed";
      return;
    }
    TransportConfig c;
    c.bind = loopback(Family::kV4);
    c.backend = Backend::kXdp;
    c.xdp_interface = "lo";
    auto choice = open_transport(c);
    if (!choice) {
      error = choice.status().to_string();
      return;
    }
    backend = choice->backend;
    reason = choice->reason;
  });
  t.join();
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_NE(backend, "xdp");
  EXPECT_NE(reason.find("not AF_XDP because"), std::string::npos) << reason;
  EXPECT_NE(reason.find("AF_XDP: "), std::string::npos) << reason;
}

TEST(XdpFallback, AMissingInterfaceIsAConfigurationError) {
  if (!io::xdp_built()) GTEST_SKIP() << "this build has no AF_XDP support";
  TransportConfig c;
  c.bind = loopback(Family::kV4);
  c.backend = Backend::kXdp;
  c.xdp_interface = "no-such-if0";
  auto choice = open_transport(c);
  ASSERT_FALSE(choice.is_ok());
  EXPECT_EQ(choice.status().code(), Code::kInvalidArgument);
  EXPECT_NE(choice.status().message().find("no-such-if0"), std::string::npos);
}

}  // namespace
}  // namespace rumor::testing
