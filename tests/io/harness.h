// Test harness: the same conformance cases drive every Transport backend. A Harness opens
// endpoints on loopback (or on a simulated network), moves time along (the simulator's clock;
// nothing for real sockets, whose poll() waits for the kernel), and can put a raw datagram on the
// wire. Every wait is bounded in iterations and in wall time; nothing sleeps.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "io/mmsg_transport.h"
#include "io/sim_network.h"
#include "io/uring_transport.h"
#include "io/xdp_transport.h"
#include "tests/io/xdp_netns.h"
#include "rumor/transport.h"

namespace rumor::testing {

enum class Kind { kUring, kMmsg, kSim, kXdp };
enum class Family { kV4, kV6 };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kUring: return "uring";
    case Kind::kMmsg: return "mmsg";
    case Kind::kSim: return "sim";
    case Kind::kXdp: return "xdp";
  }
  return "?";
}

inline Address loopback(Family f, std::uint16_t port = 0) {
  if (f == Family::kV4) return Address::ipv4(0x7f000001, port);
  std::array<std::uint8_t, 16> ip{};
  ip[15] = 1;
  return Address::ipv6(ip, port);
}

// The seed for simulated runs: RUMOR_SEED replays a failure; otherwise a fixed default.
inline std::uint64_t test_seed(std::uint64_t fallback = 0x5eed) {
  if (const char* s = std::getenv("RUMOR_SEED")) return std::strtoull(s, nullptr, 0);
  return fallback;
}

class Harness {
 public:
  virtual ~Harness() = default;
  virtual Kind kind() const = 0;
  // Opens an endpoint on loopback of `family`; `config.bind` is filled in here. Sim honours
  // recv_buffers and send_buffers per node; datagram_bytes_max is the network's.
  virtual Result<Transport*> open(Family family, TransportConfig config) = 0;
  // Lets time pass (simulator) so sent datagrams land.
  virtual void pump() = 0;
  // A raw datagram to `to`, from outside any Transport.
  virtual void inject(const Address& to, std::span<const std::byte> bytes) = 0;
  bool real() const { return kind() != Kind::kSim; }
};

class SocketHarness final : public Harness {
 public:
  explicit SocketHarness(Kind k) : kind_(k) {}
  Kind kind() const override { return kind_; }
  Result<Transport*> open(Family family, TransportConfig config) override {
    config.bind = loopback(family);
    if (kind_ == Kind::kUring) {
      auto t = io::UringTransport::open(config);
      if (!t) return t.status();
      owned_.push_back(std::move(t.value()));
    } else {
      auto t = io::MmsgTransport::open(config);
      if (!t) return t.status();
      owned_.push_back(std::move(t.value()));
    }
    return owned_.back().get();
  }
  void pump() override {}
  void inject(const Address& to, std::span<const std::byte> bytes) override {
    const int fd = socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    const ssize_t r = sendto(fd, bytes.data(), bytes.size(), 0, to.sockaddr_ptr(),
                             to.sockaddr_len());
    EXPECT_EQ(r, static_cast<ssize_t>(bytes.size())) << std::strerror(errno);
    close(fd);
  }

 private:
  Kind kind_;
  std::vector<std::unique_ptr<Transport>> owned_;
};

class SimHarness final : public Harness {
 public:
  explicit SimHarness(std::uint64_t seed) : net_(make_config(seed)) {}
  Kind kind() const override { return Kind::kSim; }
  Result<Transport*> open(Family family, TransportConfig config) override {
    auto node = net_.add_node(loopback(family));
    if (!node) return node.status();
    (*node)->set_buffer_limits(config.recv_buffers, config.send_buffers);
    return static_cast<Transport*>(*node);
  }
  void pump() override { net_.advance_by(kLatencyNs); }
  void inject(const Address& to, std::span<const std::byte> bytes) override {
    ASSERT_TRUE(net_.inject(Address::ipv4(0x7f000009, 9), to, bytes).is_ok());
  }
  io::SimNetwork& network() { return net_; }

 private:
  static constexpr std::uint64_t kLatencyNs = 200'000;
  static io::SimConfig make_config(std::uint64_t seed) {
    io::SimConfig c;
    c.seed = seed;
    c.link.latency_ns = kLatencyNs;
    return c;
  }
  io::SimNetwork net_;
};

// AF_XDP endpoints, each in its own namespace behind a veth pair into one bridge
// (tests/io/xdp_netns.h). The topology is made at the first open(), so a suite that skips costs
// nothing; open() answers kUnavailable, with the reason, where namespaces or XDP cannot be had.
class XdpHarness final : public Harness {
 public:
  Kind kind() const override { return Kind::kXdp; }
  ~XdpHarness() override {
    owned_.clear();  // sockets and programs go before their namespaces
    topo_.reset();
  }
  Result<Transport*> open(Family family, TransportConfig config) override {
    if (!io::xdp_built()) {
      return Status::error(Code::kUnavailable, "this build has no AF_XDP support");
    }
    if (!topo_) topo_ = std::make_unique<NetnsTopology>("c");
    if (!topo_->available()) {
      return Status::error(Code::kUnavailable, "AF_XDP test network: " + topo_->error());
    }
    const int k = ++endpoints_;
    const std::string ns = topo_->add_endpoint(k);
    if (ns.empty()) return Status::error(Code::kUnavailable, topo_->error());
    config.bind = NetnsTopology::endpoint_address(k, family == Family::kV6);
    config.backend = Backend::kXdp;
    config.xdp_interface = "x0";
    Result<std::unique_ptr<io::XdpTransport>> t = Status::error(Code::kIo, "not opened");
    if (!NetnsTopology::in_namespace(ns, [&] { t = io::XdpTransport::open(config); })) {
      return Status::error(Code::kUnavailable, "cannot enter namespace " + ns);
    }
    if (!t) return t.status();
    owned_.push_back(std::move(t.value()));
    return owned_.back().get();
  }
  void pump() override {}
  // From the hub (the bridge's own address), through the kernel's stack.
  void inject(const Address& to, std::span<const std::byte> bytes) override {
    ASSERT_TRUE(topo_ && topo_->available());
    ASSERT_TRUE(NetnsTopology::in_namespace(topo_->hub(), [&] {
      const int fd = socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ASSERT_GE(fd, 0);
      const ssize_t r = sendto(fd, bytes.data(), bytes.size(), 0, to.sockaddr_ptr(),
                               to.sockaddr_len());
      EXPECT_EQ(r, static_cast<ssize_t>(bytes.size())) << std::strerror(errno);
      close(fd);
    }));
  }

 private:
  std::unique_ptr<NetnsTopology> topo_;
  std::vector<std::unique_ptr<Transport>> owned_;
  int endpoints_ = 0;
};

inline std::unique_ptr<Harness> make_harness(Kind k, std::uint64_t seed) {
  if (k == Kind::kSim) return std::make_unique<SimHarness>(seed);
  if (k == Kind::kXdp) return std::make_unique<XdpHarness>();
  return std::make_unique<SocketHarness>(k);
}

// A received datagram, copied out so its buffer could go back at once.
struct Got {
  std::vector<std::byte> bytes;
  Address peer;
  std::uint64_t rx_time_ns = 0;
};

inline std::vector<std::byte> payload(std::uint32_t index, std::uint32_t len) {
  std::vector<std::byte> p(len);
  for (std::uint32_t i = 0; i < len; ++i) {
    p[i] = static_cast<std::byte>((index * 131u + i * 7u + (i >> 8)) & 0xff);
  }
  if (len >= 4) std::memcpy(p.data(), &index, 4);
  return p;
}

// Bounds for every wait: iterations and wall-clock time, whichever runs out first.
inline constexpr int kPumpIterationsMax = 20'000;
inline constexpr std::uint64_t kWaitNsMax = 5'000'000'000ull;
inline constexpr std::uint64_t kPollNs = 1'000'000;

// Sends each payload to `to` from `t` (acquire, fill, send) and flushes.
inline Status send_all(Harness& h, Transport& t, const Address& to,
                       const std::vector<std::vector<std::byte>>& payloads) {
  std::size_t done = 0;
  const std::uint64_t start = monotonic_ns();
  Status first;
  for (int it = 0; done < payloads.size() && it < kPumpIterationsMax; ++it) {
    if (monotonic_ns() - start > kWaitNsMax) break;
    std::vector<Datagram> batch(std::min<std::size_t>(payloads.size() - done, 256));
    const std::size_t n = t.acquire(batch);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& p = payloads[done + i];
      EXPECT_LE(p.size(), batch[i].capacity);
      if (!p.empty()) std::memcpy(batch[i].data, p.data(), p.size());
      batch[i].len = static_cast<std::uint32_t>(p.size());
      batch[i].peer = to;
    }
    if (Status s = t.send(std::span<const Datagram>(batch.data(), n)); !s && first.is_ok()) {
      first = s;
    }
    done += n;
    if (Status s = t.poll(0, 1); !s && first.is_ok()) first = s;
    h.pump();
  }
  EXPECT_EQ(done, payloads.size()) << "send pool never came back";
  return first;
}

// Receives until `want` datagrams arrived (or the bounds ran out), releasing as it goes.
inline std::vector<Got> collect(Harness& h, Transport& t, std::size_t want,
                                std::size_t batch_size = 64) {
  std::vector<Got> got;
  std::vector<Datagram> batch(batch_size);
  const std::uint64_t start = monotonic_ns();
  for (int it = 0; got.size() < want && it < kPumpIterationsMax; ++it) {
    if (monotonic_ns() - start > kWaitNsMax) break;
    h.pump();
    EXPECT_TRUE(t.poll(h.real() ? kPollNs : 0, 1).is_ok());
    const std::size_t n = t.receive(batch);
    for (std::size_t i = 0; i < n; ++i) {
      const Datagram& d = batch[i];
      got.push_back(Got{std::vector<std::byte>(d.data, d.data + d.len), d.peer, d.rx_time_ns});
    }
    t.release(std::span<const Datagram>(batch.data(), n));
  }
  return got;
}

// After the expected datagrams: a few more bounded rounds to show nothing else arrives.
inline std::size_t count_stragglers(Harness& h, Transport& t, int rounds = 5) {
  std::vector<Datagram> batch(64);
  std::size_t extra = 0;
  for (int i = 0; i < rounds; ++i) {
    h.pump();
    EXPECT_TRUE(t.poll(h.real() ? kPollNs : 0, 1).is_ok());
    const std::size_t n = t.receive(batch);
    extra += n;
    t.release(std::span<const Datagram>(batch.data(), n));
  }
  return extra;
}

}  // namespace rumor::testing
