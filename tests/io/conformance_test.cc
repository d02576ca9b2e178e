// The transport conformance suite: every case runs against io_uring, sendmmsg and the simulated
// network, over IPv4 and IPv6 loopback, and against AF_XDP over veth pairs into namespaces the
// test creates (tests/io/xdp_netns.h), so every backend keeps the same contract. A backend that cannot open here (io_uring denied) is skipped, saying why.
#include <algorithm>
#include <string>
#include <tuple>

#include "harness.h"

namespace rumor::testing {
namespace {

using Param = std::tuple<Kind, Family>;

class Conformance : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    seed_ = test_seed();
    h_ = make_harness(kind(), seed_);
  }
  Kind kind() const { return std::get<0>(GetParam()); }
  Family family() const { return std::get<1>(GetParam()); }

  // Opens an endpoint or skips the test when the backend is unavailable on this machine.
  Transport* open(TransportConfig config = {}) {
    auto t = h_->open(family(), config);
    if (!t) {
      if (t.status().code() == Code::kUnavailable) {
        skip_reason_ = t.status().to_string();
        return nullptr;
      }
      ADD_FAILURE() << t.status().to_string();
      return nullptr;
    }
    return *t;
  }

  std::uint64_t seed_ = 0;
  std::unique_ptr<Harness> h_;
  std::string skip_reason_;
};

#define OPEN_OR_SKIP(var, ...)                                          \
  Transport* var = open(__VA_ARGS__);                                   \
  if (var == nullptr) {                                                 \
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;            \
    return;                                                             \
  }

// Every failure names the seed a simulated run can be replayed from (RUMOR_SEED=...).
#define TRACE_SEED() SCOPED_TRACE("replay with RUMOR_SEED=" + std::to_string(seed_))

std::vector<std::vector<std::byte>> make_payloads(std::uint32_t count, std::uint32_t len) {
  std::vector<std::vector<std::byte>> v;
  for (std::uint32_t i = 0; i < count; ++i) v.push_back(payload(i, len));
  return v;
}

TEST_P(Conformance, OpensOnLoopback) {
  TRACE_SEED();
  OPEN_OR_SKIP(t);
  const Address a = t->local_address();
  EXPECT_EQ(a.is_ipv4(), family() == Family::kV4) << a.to_string();
  EXPECT_NE(a.port(), 0);
  EXPECT_EQ(t->info().backend, kind_name(kind()));
  EXPECT_EQ(t->info().datagram_bytes_max, kDatagramBytesDefault);
}

TEST_P(Conformance, SendAndReceiveOne) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  const std::vector<std::byte> hello = payload(7, 5);
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), {hello}).is_ok());
  const auto got = collect(*h_, *b, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, hello);
  EXPECT_EQ(got[0].peer, a->local_address()) << got[0].peer.to_string();
  EXPECT_GT(got[0].rx_time_ns, 0u);
  EXPECT_EQ(count_stragglers(*h_, *b), 0u);
}

// A transport that has only sent and flushed (never polled or received) still gets every
// datagram sent to it meanwhile once it starts receiving: io_uring arms its receive at the first
// poll()/receive(), and until then datagrams wait in the socket queue.
TEST_P(Conformance, FlushOnlyTransportReceivesOnceItListens) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  std::vector<Datagram> out(8);
  ASSERT_EQ(b->acquire(out), out.size());
  for (std::uint32_t i = 0; i < out.size(); ++i) {
    out[i].len = 16;
    std::memset(out[i].data, static_cast<int>(i), 16);
    out[i].peer = a->local_address();
  }
  ASSERT_TRUE(b->send(out).is_ok());
  ASSERT_TRUE(b->flush().is_ok());  // b sends, and has not listened yet
  h_->pump();
  std::vector<std::vector<std::byte>> sent;
  for (std::uint32_t i = 0; i < 20; ++i) sent.push_back(payload(i, 100 + i));
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), sent).is_ok());
  for (int i = 0; i < 3; ++i) {
    h_->pump();
    ASSERT_TRUE(b->flush().is_ok());
  }
  if (kind() == Kind::kUring) {
    EXPECT_EQ(b->counters().rx_rearms, 0u) << "flush() armed a receive";
  }
  const auto got = collect(*h_, *b, sent.size());
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].bytes, sent[i]) << i;
  EXPECT_EQ(collect(*h_, *a, out.size()).size(), out.size());  // and b's own sends went out
}

TEST_P(Conformance, BatchOfVaryingSizesArrivesInOrder) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  std::vector<std::vector<std::byte>> sent;
  for (std::uint32_t i = 0; i < 64; ++i) sent.push_back(payload(i, 4 + (i * 37) % 1400));
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), sent).is_ok());
  const auto got = collect(*h_, *b, sent.size());
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].bytes, sent[i]) << i;
}

TEST_P(Conformance, LargeBatchesInterleavedWithReceives) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  constexpr std::uint32_t kTotal = 2000;
  constexpr std::uint32_t kBatch = 200;
  std::vector<Got> got;
  for (std::uint32_t first = 0; first < kTotal; first += kBatch) {
    std::vector<std::vector<std::byte>> batch;
    for (std::uint32_t i = first; i < first + kBatch; ++i) batch.push_back(payload(i, 512));
    ASSERT_TRUE(send_all(*h_, *a, b->local_address(), batch).is_ok());
    auto part = collect(*h_, *b, kBatch, 256);
    ASSERT_EQ(part.size(), kBatch) << "batch starting at " << first;
    for (auto& g : part) got.push_back(std::move(g));
  }
  for (std::uint32_t i = 0; i < kTotal; ++i) ASSERT_EQ(got[i].bytes, payload(i, 512)) << i;
  EXPECT_EQ(b->counters().datagrams_received, kTotal);
  EXPECT_EQ(b->counters().drops_total(), 0u);
}

TEST_P(Conformance, OneBatchToSeveralDestinations) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  OPEN_OR_SKIP(c);
  // Interleaved destinations in one batch: each receiver gets its own, in order.
  std::vector<Datagram> batch(100);
  ASSERT_EQ(a->acquire(batch), batch.size());
  for (std::uint32_t i = 0; i < batch.size(); ++i) {
    const auto p = payload(i, 600);
    std::memcpy(batch[i].data, p.data(), p.size());
    batch[i].len = 600;
    batch[i].peer = (i % 2 == 0) ? b->local_address() : c->local_address();
  }
  ASSERT_TRUE(a->send(batch).is_ok());
  ASSERT_TRUE(a->flush().is_ok());
  const auto got_b = collect(*h_, *b, 50);
  const auto got_c = collect(*h_, *c, 50);
  ASSERT_EQ(got_b.size(), 50u);
  ASSERT_EQ(got_c.size(), 50u);
  for (std::uint32_t k = 0; k < 50; ++k) {
    EXPECT_EQ(got_b[k].bytes, payload(2 * k, 600)) << k;
    EXPECT_EQ(got_c[k].bytes, payload(2 * k + 1, 600)) << k;
  }
  EXPECT_EQ(count_stragglers(*h_, *b), 0u);
}

// A same-destination run goes out as one UDP_SEGMENT super-datagram on real sockets, and must
// still arrive as the separate datagrams that were sent, of the sizes that were sent.
void check_gso_burst(Harness& h, Transport& a, Transport& b) {
  std::vector<std::vector<std::byte>> sent;
  for (std::uint32_t i = 0; i < 9; ++i) sent.push_back(payload(i, 1000));
  sent.push_back(payload(9, 300));  // a shorter last segment
  for (std::uint32_t i = 10; i < 74; ++i) sent.push_back(payload(i, 100));  // 64 small ones
  const TransportCounters before = a.counters();
  ASSERT_TRUE(send_all(h, a, b.local_address(), sent).is_ok());
  const auto got = collect(h, b, sent.size());
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].bytes.size(), sent[i].size()) << i;
    EXPECT_EQ(got[i].bytes, sent[i]) << i;
    EXPECT_EQ(got[i].peer, a.local_address());
  }
  EXPECT_EQ(count_stragglers(h, b), 0u);
  if (a.info().gso) {
    EXPECT_GE(a.counters().gso_sends - before.gso_sends, 2u);
    EXPECT_EQ(a.counters().gso_segments - before.gso_segments, sent.size());
  }
  EXPECT_EQ(a.counters().datagrams_sent - before.datagrams_sent, sent.size());
}

TEST_P(Conformance, GsoBurstArrivesAsSeparateDatagrams) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  if (h_->real() && kind() != Kind::kXdp) {  // AF_XDP builds every frame itself: no GSO
    EXPECT_TRUE(a->info().gso) << "loopback supports UDP_SEGMENT";
  }
  check_gso_burst(*h_, *a, *b);
}

TEST_P(Conformance, GroReceiverSplitsCoalescedBursts) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  TransportConfig gro;
  gro.gro = true;
  gro.gro_recv_buffers = 16;
  OPEN_OR_SKIP(b, gro);
  check_gso_burst(*h_, *a, *b);
  if (h_->real() && kind() != Kind::kXdp) {
    EXPECT_TRUE(b->info().gro) << "loopback supports UDP_GRO";
    EXPECT_GE(b->counters().gro_receives, 1u);
  }
}

TEST_P(Conformance, OversizedSendIsRefusedWithAClearError) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  std::vector<Datagram> batch(2);
  ASSERT_EQ(a->acquire(batch), 2u);
  batch[0].len = batch[0].capacity + 1;
  batch[0].peer = b->local_address();
  const auto ok = payload(1, 10);
  std::memcpy(batch[1].data, ok.data(), ok.size());
  batch[1].len = 10;
  batch[1].peer = b->local_address();
  const Status s = a->send(batch);
  EXPECT_EQ(s.code(), Code::kTooLarge);
  EXPECT_NE(s.message().find("datagram_bytes_max"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find(std::to_string(kDatagramBytesDefault + 1)), std::string::npos);
  EXPECT_EQ(a->counters().drop_count(DropReason::kOversized), 1u);
  ASSERT_TRUE(a->flush().is_ok());
  const auto got = collect(*h_, *b, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, ok);
}

TEST_P(Conformance, OversizedArrivalIsDroppedAndCounted) {
  TRACE_SEED();
  OPEN_OR_SKIP(b);
  std::vector<std::byte> big(kDatagramBytesDefault + 500, std::byte{0x42});
  h_->inject(b->local_address(), big);
  const auto small = payload(3, 20);
  h_->inject(b->local_address(), small);
  const auto got = collect(*h_, *b, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, small);
  EXPECT_EQ(b->counters().drop_count(DropReason::kTruncated), 1u);
  EXPECT_EQ(count_stragglers(*h_, *b), 0u);
}

// Receives without releasing until `want` more datagrams are held (or the bounds run out).
void hold_more(Harness& h, Transport& t, std::size_t want, std::vector<Datagram>* held,
               int iterations_max = kPumpIterationsMax) {
  std::vector<Datagram> batch(64);
  const std::size_t target = held->size() + want;
  const std::uint64_t start = monotonic_ns();
  for (int it = 0; held->size() < target && it < iterations_max; ++it) {
    if (monotonic_ns() - start > kWaitNsMax) break;
    h.pump();
    ASSERT_TRUE(t.poll(h.real() ? kPollNs : 0, 1).is_ok());
    const std::size_t n = t.receive(batch);
    held->insert(held->end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

TEST_P(Conformance, LentBuffersApplyBackPressureUntilReleased) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  TransportConfig small;
  small.recv_buffers = 8;
  OPEN_OR_SKIP(b, small);
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), make_payloads(32, 200)).is_ok());

  // Take every buffer and hold on to it.
  std::vector<Datagram> held;
  hold_more(*h_, *b, 8, &held, /*iterations_max=*/1000);
  ASSERT_EQ(held.size(), 8u);
  std::vector<Datagram> batch(64);
  // While all are lent nothing more can be received, and that is counted, not an error.
  for (int i = 0; i < 3; ++i) {
    h_->pump();
    ASSERT_TRUE(b->poll(h_->real() ? kPollNs : 0, 1).is_ok());
    EXPECT_EQ(b->receive(batch), 0u);
  }
  EXPECT_GE(b->counters().rx_no_buffer, 1u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(std::vector<std::byte>(held[i].data, held[i].data + held[i].len), payload(i, 200));
  }
  // Hand them back in reverse order: the rest arrive, none lost.
  std::reverse(held.begin(), held.end());
  b->release(held);
  const auto rest = collect(*h_, *b, 24);
  ASSERT_EQ(rest.size(), 24u);
  for (std::uint32_t i = 0; i < 24; ++i) EXPECT_EQ(rest[i].bytes, payload(8 + i, 200)) << i;
  EXPECT_EQ(b->counters().drops_total(), 0u);
}

TEST_P(Conformance, PoolShrinkingBetweenReceivesKeepsOrderAndLosesNothing) {
  // The caller takes buffers a few at a time and keeps them, so each receive finds fewer free
  // buffers than the last (the sendmmsg backend then re-arms its slots from the ones still
  // armed), until it holds them all; then it gives them back and the rest arrive.
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  TransportConfig small;
  small.recv_buffers = 8;
  OPEN_OR_SKIP(b, small);
  std::vector<Datagram> held;
  std::uint32_t next = 0;
  for (const std::uint32_t burst : {3u, 3u}) {
    std::vector<std::vector<std::byte>> out;
    for (std::uint32_t i = 0; i < burst; ++i) out.push_back(payload(next++, 300));
    ASSERT_TRUE(send_all(*h_, *a, b->local_address(), out).is_ok());
    hold_more(*h_, *b, burst, &held);
    ASSERT_EQ(held.size(), next);
  }
  // Six held, two free: five more are sent and only two fit.
  std::vector<std::vector<std::byte>> out;
  for (std::uint32_t i = 0; i < 5; ++i) out.push_back(payload(next++, 300));
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), out).is_ok());
  hold_more(*h_, *b, 2, &held);
  ASSERT_EQ(held.size(), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(std::vector<std::byte>(held[i].data, held[i].data + held[i].len), payload(i, 300))
        << i;
  }
  b->release(held);
  const auto rest = collect(*h_, *b, 3);
  ASSERT_EQ(rest.size(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(rest[i].bytes, payload(8 + i, 300)) << i;
  EXPECT_EQ(count_stragglers(*h_, *b), 0u);
  EXPECT_EQ(b->counters().drops_total(), 0u);
}

TEST_P(Conformance, SendPoolIsBoundedAndRecycled) {
  TRACE_SEED();
  TransportConfig small;
  small.send_buffers = 16;
  OPEN_OR_SKIP(a, small);
  OPEN_OR_SKIP(b);
  std::vector<Datagram> batch(32);
  EXPECT_EQ(a->acquire(batch), 16u);
  EXPECT_GE(a->counters().tx_no_buffer, 1u);
  std::vector<Datagram> one(1);
  EXPECT_EQ(a->acquire(one), 0u);
  // Unsent buffers go back with release().
  a->release(std::span<const Datagram>(batch.data(), 16));
  ASSERT_EQ(a->acquire(std::span<Datagram>(batch.data(), 16)), 16u);
  for (std::uint32_t i = 0; i < 16; ++i) {
    batch[i].len = 8;
    std::memset(batch[i].data, static_cast<int>(i), 8);
    batch[i].peer = b->local_address();
  }
  ASSERT_TRUE(a->send(std::span<const Datagram>(batch.data(), 16)).is_ok());
  // Sent buffers come back once the sends complete.
  std::size_t back = 0;
  for (int it = 0; back < 16 && it < 1000; ++it) {
    ASSERT_TRUE(a->poll(0, 1).is_ok());
    h_->pump();
    back += a->acquire(std::span<Datagram>(batch.data() + back, 16 - back));
  }
  EXPECT_EQ(back, 16u);
  a->release(std::span<const Datagram>(batch.data(), back));
  EXPECT_EQ(collect(*h_, *b, 16).size(), 16u);
}

TEST_P(Conformance, ZeroLengthDatagram) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), {{}, payload(1, 3)}).is_ok());
  const auto got = collect(*h_, *b, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].bytes.empty());
  EXPECT_EQ(got[1].bytes, payload(1, 3));
}

TEST_P(Conformance, SendingToNobodyIsNotAnError) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  // Port 1 on loopback: nobody listens. UDP does not tell an unconnected sender.
  EXPECT_TRUE(send_all(*h_, *a, loopback(family(), 1), {payload(0, 10)}).is_ok());
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), {payload(1, 10)}).is_ok());
  const auto got = collect(*h_, *b, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, payload(1, 10));
}

TEST_P(Conformance, RefusesAnAddressTheSocketCannotReach) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  std::vector<Datagram> batch(2);
  ASSERT_EQ(a->acquire(batch), 2u);
  batch[0].len = 4;  // no peer at all
  batch[1].len = 4;
  // An IPv4 socket cannot reach an IPv6 peer; an IPv6 socket reaches IPv4 peers (mapped), so
  // there the second datagram goes nowhere in particular: port 1 of the other loopback.
  batch[1].peer = family() == Family::kV4 ? loopback(Family::kV6, 7000) : loopback(Family::kV4, 1);
  const Status s = a->send(batch);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("no destination"), std::string::npos) << s.to_string();
  EXPECT_EQ(a->counters().drop_count(DropReason::kBadAddress), family() == Family::kV4 ? 2u : 1u);
  ASSERT_TRUE(a->flush().is_ok());
  // Whatever the kernel made of the mapped send, every buffer is back in the pool.
  std::vector<Datagram> all(TransportConfig{}.send_buffers);
  std::size_t got = 0;
  for (int it = 0; got < all.size() && it < 100; ++it) {
    ASSERT_TRUE(a->poll(h_->real() ? kPollNs : 0, 1).is_ok());
    got += a->acquire(std::span<Datagram>(all.data() + got, all.size() - got));
  }
  EXPECT_EQ(got, all.size());
  a->release(std::span<const Datagram>(all.data(), got));
}

TEST_P(Conformance, RefusesIpv6PeersOnIpv4SocketsSayingSo) {
  TRACE_SEED();
  if (family() == Family::kV6) GTEST_SKIP() << "only IPv4 sockets refuse a family";
  OPEN_OR_SKIP(a);
  Datagram d;
  ASSERT_EQ(a->acquire({&d, 1}), 1u);
  d.len = 4;
  d.peer = loopback(Family::kV6, 7000);
  const Status s = a->send({&d, 1});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("IPv6"), std::string::npos) << s.to_string();
}

TEST_P(Conformance, CountersAddUp) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  ASSERT_TRUE(send_all(*h_, *a, b->local_address(), make_payloads(10, 100)).is_ok());
  ASSERT_EQ(collect(*h_, *b, 10).size(), 10u);
  // Send completions may still be in flight on io_uring: poll once more, bounded.
  for (int it = 0; a->counters().datagrams_sent < 10 && it < 100; ++it) {
    ASSERT_TRUE(a->poll(h_->real() ? kPollNs : 0, 1).is_ok());
  }
  EXPECT_EQ(a->counters().datagrams_sent, 10u);
  EXPECT_EQ(a->counters().bytes_sent, 1000u);
  EXPECT_EQ(b->counters().datagrams_received, 10u);
  EXPECT_EQ(b->counters().bytes_received, 1000u);
  EXPECT_GE(a->counters().submits, 1u);
  EXPECT_EQ(a->counters().drops_total(), 0u);
}

TEST_P(Conformance, ReceiveTimesNeverGoBackwards) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  OPEN_OR_SKIP(b);
  std::uint64_t last = 0;
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(send_all(*h_, *a, b->local_address(), make_payloads(4, 16)).is_ok());
    for (const Got& g : collect(*h_, *b, 4)) {
      EXPECT_GE(g.rx_time_ns, last);
      last = g.rx_time_ns;
    }
  }
  EXPECT_GT(last, 0u);
}

TEST_P(Conformance, EmptyBatchesAreNoOps) {
  TRACE_SEED();
  OPEN_OR_SKIP(a);
  EXPECT_EQ(a->receive({}), 0u);
  EXPECT_EQ(a->acquire({}), 0u);
  EXPECT_TRUE(a->send({}).is_ok());
  a->release({});
  EXPECT_TRUE(a->flush().is_ok());
  EXPECT_TRUE(a->poll(0, 1).is_ok());
  EXPECT_EQ(a->counters().datagrams_sent, 0u);
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(kind_name(std::get<0>(info.param))) +
         (std::get<1>(info.param) == Family::kV4 ? "_v4" : "_v6");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Conformance,
                         ::testing::Combine(::testing::Values(Kind::kUring, Kind::kMmsg,
                                                             Kind::kSim, Kind::kXdp),
                                            ::testing::Values(Family::kV4, Family::kV6)),
                         param_name);

}  // namespace
}  // namespace rumor::testing
