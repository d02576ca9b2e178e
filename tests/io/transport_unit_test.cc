// Address parsing and formatting, the GSO send planner, the backend factory, and io_uring's
// binding to the thread that polls it.
#include <unistd.h>

#include <set>
#include <thread>

#include "harness.h"
#include "io/udp_base.h"

namespace rumor {
namespace {

// ---- Ephemeral ports ----

// Asked for port 0, a reuseport socket must get a port of its own: the kernel's autobind would
// otherwise put it into another reuseport group on the same port now and then, and the two would
// split each other's traffic (seen as a flaky conformance test under parallel CTest). Hundreds
// of sockets held open at once make a shared port all but certain without the fix (birthday
// bound over ~28k ephemeral ports), and impossible with it.
TEST(UdpSocket, PortZeroWithReusePortIsNeverShared) {
  TransportConfig config;
  config.bind = Address::ipv4(0x7f000001, 0);
  config.reuse_port = true;
  config.socket_buffer_bytes = 0;
  std::vector<io::UdpSocket> open;
  std::set<std::uint16_t> ports;
  for (int i = 0; i < 600; ++i) {
    auto s = io::open_udp_socket(config);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    EXPECT_TRUE(ports.insert(s->local.port()).second) << "port " << s->local.port() << " shared";
    open.push_back(*s);
  }
  for (const auto& s : open) ::close(s.fd);
}

// ---- Address ----

TEST(Address, ParsesAndFormatsIpv4) {
  auto a = Address::parse("127.0.0.1:7000");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_TRUE(a->is_ipv4());
  EXPECT_EQ(a->port(), 7000);
  EXPECT_EQ(a->to_string(), "127.0.0.1:7000");
  EXPECT_EQ(*a, Address::ipv4(0x7f000001, 7000));
  EXPECT_EQ(Address::parse("0.0.0.0:0")->to_string(), "0.0.0.0:0");
  EXPECT_EQ(Address::parse("255.255.255.255:65535")->port(), 65535);
}

TEST(Address, ParsesAndFormatsIpv6) {
  auto a = Address::parse("[::1]:7000");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_TRUE(a->is_ipv6());
  EXPECT_EQ(a->port(), 7000);
  EXPECT_EQ(a->to_string(), "[::1]:7000");
  EXPECT_EQ(Address::parse("[2001:db8::42]:1")->to_string(), "[2001:db8::42]:1");
  auto scoped = Address::parse("[fe80::1%lo]:9");
  ASSERT_TRUE(scoped.is_ok()) << scoped.status().to_string();
  EXPECT_NE(scoped->to_string().find('%'), std::string::npos);
  EXPECT_EQ(Address::parse("[fe80::1%3]:9")->to_string(), "[fe80::1%3]:9");
}

TEST(Address, RefusesBadTextWithAMessageThatSaysWhy) {
  struct Case {
    const char* text;
    const char* says;
  };
  const Case cases[] = {
      {"", "empty"},
      {"127.0.0.1", "missing port"},
      {"127.0.0.1:", "port must be"},
      {"127.0.0.1:70000", "port must be"},
      {"127.0.0.1:-1", "port must be"},
      {"127.0.0.1:7a", "port must be"},
      {"127.0.0.256:7000", "not an IPv4"},
      {"localhost:7000", "not resolved"},
      {"::1:7000", "need brackets"},
      {"[::1]", "missing port"},
      {"[::1:7000", "missing ']'"},
      {"[::g]:7000", "not an IPv6"},
      {"[fe80::1%nosuchif0]:1", "unknown network interface"},
      {":7000", "missing host"},
  };
  for (const Case& c : cases) {
    auto a = Address::parse(c.text);
    ASSERT_FALSE(a.is_ok()) << c.text;
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument) << c.text;
    EXPECT_NE(a.status().message().find(c.says), std::string::npos)
        << c.text << " -> " << a.status().to_string();
    EXPECT_NE(a.status().message().find(c.text), std::string::npos) << "quotes the input";
  }
}

TEST(Address, MappedIpv4BecomesIpv4AndBack) {
  const Address v4 = Address::ipv4(0x0a000001, 99);
  const Address mapped = v4.to_ipv6_mapped();
  EXPECT_TRUE(mapped.is_ipv6());
  EXPECT_EQ(mapped.to_string(), "[::ffff:10.0.0.1]:99");
  EXPECT_EQ(Address::from_sockaddr(mapped.sockaddr_ptr(), mapped.sockaddr_len()), v4);
  EXPECT_TRUE(Address::from_sockaddr(nullptr, 0).empty());
  EXPECT_EQ(Address().to_string(), "<none>");
}

TEST(Address, EqualityAndHashIgnoreNothingThatMatters) {
  EXPECT_EQ(*Address::parse("[::1]:5"), *Address::parse("[0::1]:5"));
  EXPECT_NE(*Address::parse("[::1]:5"), *Address::parse("[::1]:6"));
  EXPECT_NE(*Address::parse("127.0.0.1:5"), *Address::parse("127.0.0.2:5"));
  EXPECT_EQ(Address::parse("[::1]:5")->hash(), Address::parse("[0::1]:5")->hash());
  const Address a = *Address::parse("127.0.0.1:5");
  const Address b = *Address::parse("127.0.0.2:5");
  EXPECT_NE(a < b, b < a);
}

TEST(ShardId, ReadsAndWritesBigEndianAtTheNamedOffset) {
  std::vector<std::byte> p(8);
  ASSERT_TRUE(write_shard_id(p, 0x1234));
  EXPECT_EQ(p[kShardIdOffset], std::byte{0x12});
  EXPECT_EQ(p[kShardIdOffset + 1], std::byte{0x34});
  std::uint16_t s = 0;
  ASSERT_TRUE(read_shard_id(p, &s));
  EXPECT_EQ(s, 0x1234);
  EXPECT_FALSE(read_shard_id(std::span<const std::byte>(p.data(), kShardIdOffset + 1), &s));
  EXPECT_FALSE(write_shard_id(std::span<std::byte>(p.data(), 3), 1));
}

// ---- GSO planner ----

struct Plan {
  std::vector<std::uint32_t> order;
  std::vector<io::SendGroup> groups;
};

Plan plan(const std::vector<std::pair<int, std::uint32_t>>& sends, bool gso) {
  // sends: (peer number, length) in queue order; frame i is sends[i].
  std::vector<io::TxMeta> meta;
  for (auto [peer, len] : sends) {
    meta.push_back(io::TxMeta{Address::ipv4(0x7f000001, static_cast<std::uint16_t>(1000 + peer)),
                              len});
  }
  Plan p;
  for (std::uint32_t i = 0; i < sends.size(); ++i) p.order.push_back(i);
  std::vector<std::uint64_t> scratch(sends.size());
  p.groups.resize(sends.size());
  p.groups.resize(io::plan_send_groups(p.order, meta.data(), gso, scratch, p.groups));
  return p;
}

TEST(GsoPlanner, EqualSizesToOnePeerMakeOneGroupAndAShorterOneClosesIt) {
  const Plan p = plan({{1, 1000}, {1, 1000}, {1, 1000}, {1, 300}, {1, 1000}}, true);
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[0].count, 4u);
  EXPECT_EQ(p.groups[0].segment_bytes, 1000u);
  EXPECT_EQ(p.groups[1].count, 1u);
}

TEST(GsoPlanner, ALargerDatagramStartsANewGroup) {
  const Plan p = plan({{1, 500}, {1, 500}, {1, 900}, {1, 900}}, true);
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[0].count, 2u);
  EXPECT_EQ(p.groups[1].segment_bytes, 900u);
}

TEST(GsoPlanner, InterleavedPeersAreGroupedKeepingEachPeersOrder) {
  const Plan p = plan({{1, 100}, {2, 100}, {1, 100}, {2, 100}, {1, 100}}, true);
  ASSERT_EQ(p.groups.size(), 2u);
  std::vector<std::uint32_t> peer1(p.order.begin() + p.groups[0].first,
                                   p.order.begin() + p.groups[0].first + p.groups[0].count);
  std::vector<std::uint32_t> peer2(p.order.begin() + p.groups[1].first,
                                   p.order.begin() + p.groups[1].first + p.groups[1].count);
  EXPECT_EQ(peer1, (std::vector<std::uint32_t>{0, 2, 4}));
  EXPECT_EQ(peer2, (std::vector<std::uint32_t>{1, 3}));
}

TEST(GsoPlanner, RespectsSegmentAndByteLimits) {
  std::vector<std::pair<int, std::uint32_t>> many(150, {1, 64});
  Plan p = plan(many, true);
  ASSERT_EQ(p.groups.size(), 3u);
  EXPECT_EQ(p.groups[0].count, kGsoSegmentsMax);
  EXPECT_EQ(p.groups[2].count, 150u - 2 * kGsoSegmentsMax);
  std::vector<std::pair<int, std::uint32_t>> big(60, {1, 1400});
  p = plan(big, true);
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[0].count, io::kGsoPayloadBytesMax / 1400);
  for (const auto& g : p.groups) EXPECT_LE(g.count * 1400u, io::kGsoPayloadBytesMax);
}

TEST(GsoPlanner, ZeroLengthTravelsAloneAndGsoOffMeansSingles) {
  Plan p = plan({{1, 0}, {1, 0}, {1, 10}}, true);
  EXPECT_EQ(p.groups.size(), 3u);
  p = plan({{1, 10}, {1, 10}, {2, 10}, {1, 10}}, false);
  ASSERT_EQ(p.groups.size(), 4u);
  EXPECT_EQ(p.order, (std::vector<std::uint32_t>{0, 1, 2, 3}));
}

// ---- Factory ----

TEST(OpenTransport, PrefersIoUringAndSaysWhy) {
  TransportConfig c;
  c.bind = *Address::parse("127.0.0.1:0");
  auto choice = open_transport(c);
  ASSERT_TRUE(choice.is_ok()) << choice.status().to_string();
  ASSERT_NE(choice->transport, nullptr);
  // Either backend is right on some machine; the reason must say which and why.
  if (choice->backend == "uring") {
    EXPECT_NE(choice->reason.find("io_uring available"), std::string::npos) << choice->reason;
    EXPECT_NE(choice->reason.find("multishot_recvmsg"), std::string::npos) << choice->reason;
  } else {
    EXPECT_EQ(choice->backend, "mmsg");
    EXPECT_NE(choice->reason.find("because"), std::string::npos) << choice->reason;
  }
  EXPECT_EQ(choice->transport->info().backend, choice->backend);
}

TEST(OpenTransport, HonoursAConfiguredBackend) {
  TransportConfig c;
  c.bind = *Address::parse("[::1]:0");
  c.backend = Backend::kMmsg;
  auto choice = open_transport(c);
  ASSERT_TRUE(choice.is_ok()) << choice.status().to_string();
  EXPECT_EQ(choice->backend, "mmsg");
  EXPECT_EQ(choice->reason, "sendmmsg/recvmmsg chosen by configuration");
}

TEST(OpenTransport, RefusesBadConfigurationNamingTheField) {
  TransportConfig c;
  auto r = open_transport(c);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("bind"), std::string::npos);
  c.bind = *Address::parse("127.0.0.1:0");
  c.recv_buffers = 1000;
  r = open_transport(c);
  EXPECT_NE(r.status().message().find("recv_buffers is 1000"), std::string::npos)
      << r.status().to_string();
  c.recv_buffers = 1024;
  c.datagram_bytes_max = 70000;
  r = open_transport(c);
  EXPECT_NE(r.status().message().find("datagram_bytes_max"), std::string::npos);
}

TEST(OpenTransport, ASocketErrorIsReportedNotFallenBackFrom) {
  TransportConfig c;
  c.bind = *Address::parse("127.0.0.1:0");
  c.reuse_port = false;
  auto first = open_transport(c);
  ASSERT_TRUE(first.is_ok());
  c.bind = first->transport->local_address();  // taken, and no SO_REUSEPORT
  auto second = open_transport(c);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), Code::kIo);
  EXPECT_NE(second.status().message().find("bind"), std::string::npos)
      << second.status().to_string();
}

TEST(UringTransport, OpenedOnOneThreadServesAnother) {
  TransportConfig c;
  c.bind = *Address::parse("127.0.0.1:0");
  auto rx = io::UringTransport::open(c);
  if (!rx) GTEST_SKIP() << rx.status().to_string();
  auto tx = io::MmsgTransport::open(c);
  ASSERT_TRUE(tx.is_ok());
  testing::SocketHarness h(testing::Kind::kMmsg);
  ASSERT_TRUE(
      testing::send_all(h, **tx, (*rx)->local_address(), {testing::payload(1, 32)}).is_ok());
  std::size_t got = 0;
  std::thread reactor([&] {
    // The ring binds to this thread, the first to poll it.
    got = testing::collect(h, **rx, 1).size();
  });
  reactor.join();
  EXPECT_EQ(got, 1u);
  EXPECT_NE((*rx)->info().features.find("single_issuer"), std::string::npos)
      << (*rx)->info().features;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUMOR_TEST_ASAN 1
#endif
#endif

TEST(UringTransportDeathTest, TouchingAReleasedBufferIsCaughtUnderAsan) {
#ifndef RUMOR_TEST_ASAN
  GTEST_SKIP() << "needs the asan preset: buffers the kernel owns are poisoned there";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TransportConfig c;
  c.bind = *Address::parse("127.0.0.1:0");
  auto rx = io::UringTransport::open(c);
  if (!rx) GTEST_SKIP() << rx.status().to_string();
  testing::SocketHarness h(testing::Kind::kUring);
  h.inject((*rx)->local_address(), testing::payload(1, 32));
  std::vector<Datagram> batch(1);
  for (int i = 0; i < 1000 && (*rx)->receive(batch) == 0; ++i) {
    ASSERT_TRUE((*rx)->poll(testing::kPollNs, 1).is_ok());
  }
  ASSERT_EQ(batch[0].len, 32u);
  (*rx)->release(batch);
  volatile std::byte* stale = batch[0].data;
  EXPECT_DEATH((void)stale[0], "use-after-poison");
#endif
}

}  // namespace
}  // namespace rumor
