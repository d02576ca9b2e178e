// The transport seam: how a node's datagrams reach the network (docs/transport.md). One
// interface, batch-shaped, that owns its buffers:
//
//   receive  lends a batch of received datagrams (bytes, length, source, receive time) from the
//            transport's registered pool; the caller hands them back with release().
//   acquire  lends empty send buffers; the caller fills them and hands them to send(), which
//            queues them; poll()/flush() submit everything queued with one system call.
//
// Buffers never cross the seam by copy: that is the ownership model AF_XDP (UMEM frames) and
// DPDK (mbufs) impose, so a kernel-bypass backend is one more class behind this interface.
// Backends today: io_uring (io/uring_transport.h), sendmmsg/recvmmsg (io/mmsg_transport.h),
// AF_XDP (io/xdp_transport.h) and a deterministic in-memory network for tests and simulation
// (io/sim_network.h).
//
// A reactor turn with any backend:
//   t.poll(timeout_ns, 1);                 // one system call: submit queued sends, wait
//   n = t.receive(batch);                  // reap, no system call on io_uring
//   ... process batch, acquire() + send() replies ...
//   t.release(batch.first(n));             // buffers go back to the kernel's ring
// The next turn's poll() submits this turn's sends. docs/transport.md has the whole story.
//
// Thread safety: a Transport belongs to one thread (its reactor). The io_uring backend binds to
// the first thread that calls poll()/flush() (IORING_SETUP_SINGLE_ISSUER); it may be created on
// another. Counters are plain integers read by the owning thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rumor/status.h"

namespace rumor {

// ---- Limits, each named once, unit last. ----

// The largest UDP payload a transport sends or accepts by default: fits a 1,500-byte MTU under
// IPv6 (1500 - 40 IPv6 - 8 UDP), the stricter of the two families, so nothing fragments.
inline constexpr std::uint32_t kDatagramBytesDefault = 1452;
// The largest UDP payload the protocol stack can carry at all (65535 - 8 UDP - 20 IPv4).
inline constexpr std::uint32_t kDatagramBytesLimit = 65507;
// The most datagrams one UDP_SEGMENT super-datagram carries (the kernel's UDP_MAX_SEGMENTS was
// 64 until Linux 6.11; we stay within what every GSO-capable kernel accepts).
inline constexpr std::uint32_t kGsoSegmentsMax = 64;

// Steering: packets carry their target shard. Every rumor packet carries the id of
// the virtual shard it is addressed to as a 16-bit big-endian integer at this byte offset of the
// UDP payload. Big-endian because classic BPF's absolute loads read network order: the
// reuseport program (io/steering.h) picks socket = shard_id % sockets from these two bytes.
// The wire format (docs/wire-format.md) must keep the field here.
inline constexpr std::size_t kShardIdOffset = 4;
inline constexpr std::size_t kShardIdBytes = 2;

// ---- Addresses ----

// An IPv4 or IPv6 UDP endpoint. Holds a sockaddr_in or sockaddr_in6 (28 bytes rather than a
// 128-byte sockaddr_storage: every datagram carries one, and the simulator holds many). Bytes not
// used by the family are zero, so equality and hashing are bytewise.
class Address {
 public:
  Address();

  // "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000". Port 0 means "any" when binding.
  // Names are not resolved: "localhost:7000" is refused with a message saying so.
  static Result<Address> parse(std::string_view text);
  // From a kernel address; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes IPv4, so a
  // peer compares equal whichever socket family saw it. Unsupported families give an empty
  // Address (family() == AF_UNSPEC).
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);
  // host_order_ip: 127.0.0.1 is 0x7f000001.
  static Address ipv4(std::uint32_t host_order_ip, std::uint16_t port);
  static Address ipv6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port,
                      std::uint32_t scope_id = 0);

  sa_family_t family() const { return u_.sa.sa_family; }
  bool is_ipv4() const { return family() == AF_INET; }
  bool is_ipv6() const { return family() == AF_INET6; }
  bool empty() const { return family() == AF_UNSPEC; }
  std::uint16_t port() const;
  void set_port(std::uint16_t port);

  const sockaddr* sockaddr_ptr() const { return &u_.sa; }
  socklen_t sockaddr_len() const;
  // This address as seen from an IPv6 socket (IPv4 becomes ::ffff:a.b.c.d); IPv6 unchanged.
  Address to_ipv6_mapped() const;

  // "127.0.0.1:7000", "[::1]:7000"; "<none>" when empty.
  std::string to_string() const;
  std::size_t hash() const;

  friend bool operator==(const Address& a, const Address& b);
  friend bool operator<(const Address& a, const Address& b);  // bytewise; any total order

 private:
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } u_;
};

// ---- Datagrams and buffers ----

// One datagram in a transport-owned buffer. On receive, `peer` is the source and `rx_time_ns`
// when it was reaped; on send, the caller sets `len` (<= capacity) and `peer` (destination).
// `handle` belongs to the transport: do not change it.
struct Datagram {
  std::byte* data = nullptr;
  std::uint32_t len = 0;
  std::uint32_t capacity = 0;  // writable bytes in `data` (send buffers); == len on receive
  std::uint32_t handle = 0;
  Address peer;
  // Receive: monotonic nanoseconds (base/clock.h monotonic_ns(), read once per receive() call)
  // on real sockets; virtual time in the simulator. Send: ignored.
  std::uint64_t rx_time_ns = 0;

  std::span<std::byte> bytes() const { return {data, len}; }
};

// Why a datagram was dropped. Append-only: the names appear in metrics.
enum class DropReason : std::uint8_t {
  kOversized = 0,   // send refused: longer than datagram_bytes_max
  kTruncated,       // arrived longer than the receive buffer; dropped, never half-read
  kSocketOverflow,  // the kernel's socket receive queue was full (SO_RXQ_OVFL)
  kSendFailed,      // the kernel refused a send (errno in the log line it was counted with)
  kBadAddress,      // destination unreachable from this socket's family, or empty
  kLoss,            // simulator: random loss
  kPartition,       // simulator: the link is cut
  kInboxFull,       // simulator: the receiver's queue (its "socket buffer") was full
  kNoRoute,         // simulator: nobody has that address
  kUplinkFull,      // simulator: the sender's bandwidth-capped uplink queue was full
  kBadFrame,        // AF_XDP: a frame whose Ethernet/IP/UDP headers or checksums do not hold
  kCount,
};
inline constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);
std::string_view drop_reason_name(DropReason reason);

// Per-transport counters; plain integers written only by the owning thread.
struct TransportCounters {
  std::uint64_t datagrams_sent = 0;      // accepted by the kernel (or the simulated network)
  std::uint64_t bytes_sent = 0;
  std::uint64_t datagrams_received = 0;  // handed to the caller
  std::uint64_t bytes_received = 0;
  std::uint64_t submits = 0;             // system calls that pushed sends
  std::uint64_t gso_sends = 0;           // UDP_SEGMENT super-datagrams sent
  std::uint64_t gso_segments = 0;        // datagrams they carried
  std::uint64_t gro_receives = 0;        // coalesced receives split back into datagrams
  std::uint64_t rx_no_buffer = 0;        // back-pressure: no free receive buffer (ENOBUFS)
  std::uint64_t tx_no_buffer = 0;        // back-pressure: send pool empty, or kernel ENOBUFS
  std::uint64_t rx_rearms = 0;           // io_uring: multishot receive re-armed
  std::array<std::uint64_t, kDropReasonCount> drops{};

  std::uint64_t drop_count(DropReason r) const { return drops[static_cast<std::size_t>(r)]; }
  std::uint64_t drops_total() const;
};

// ---- Configuration ----

// kXdp: AF_XDP on xdp_interface (io/xdp_transport.h), falling back to kAuto's choice when
// AF_XDP cannot be had (no privileges, old kernel, no such support in this build).
enum class Backend : std::uint8_t { kAuto, kUring, kMmsg, kXdp };

struct TransportConfig {
  Address bind;  // required; port 0 picks a free port (see Transport::local_address)
  std::uint32_t datagram_bytes_max = kDatagramBytesDefault;
  // Pools, allocated up front. Receive buffers are a power of two (the io_uring buffer ring).
  std::uint32_t recv_buffers = 1024;
  std::uint32_t send_buffers = 1024;
  // With gro, each receive buffer holds a whole coalesced burst (64 KiB), so there are fewer.
  std::uint32_t gro_recv_buffers = 128;
  // SO_RCVBUF and SO_SNDBUF; the *FORCE variants are tried first (root can exceed rmem_max).
  std::uint32_t socket_buffer_bytes = 8u << 20;
  bool reuse_port = true;  // SO_REUSEPORT: one socket per core on the node's port
  bool gso = true;         // coalesce same-destination runs into UDP_SEGMENT sends
  bool gro = false;        // accept UDP_GRO coalesced receives (and split them)
  Backend backend = Backend::kAuto;
  // AF_XDP only: the interface whose traffic to our port bypasses the kernel's UDP stack, and
  // its receive queue. With a wildcard bind the interface's own address of bind's family is
  // used as the source of every frame.
  std::string xdp_interface;
  std::uint32_t xdp_queue = 0;
};

// What a backend actually runs with, once open (for the log line and tests).
struct TransportInfo {
  std::string_view backend;  // "uring", "mmsg", "xdp", "sim"
  bool gso = false;
  bool gro = false;
  std::uint32_t datagram_bytes_max = 0;
  std::uint32_t socket_rcvbuf_bytes = 0;  // as the kernel reports it (doubled by Linux)
  std::uint32_t socket_sndbuf_bytes = 0;
  std::string features;  // e.g. "single_issuer defer_taskrun fixed_file send_addr"
};

// ---- The interface ----

class Transport {
 public:
  virtual ~Transport() = default;
  Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  virtual Address local_address() const = 0;
  virtual TransportInfo info() const = 0;
  virtual const TransportCounters& counters() const = 0;

  // Fills out[0..n) with received datagrams, lent until release(); returns n. Never blocks. On
  // io_uring it only reaps completions already posted (no system call); on sendmmsg it calls
  // recvmmsg once. Returns fewer than out.size() when nothing more is ready, or when the caller
  // holds every receive buffer (counted as rx_no_buffer).
  virtual std::size_t receive(std::span<Datagram> out) = 0;

  // Lends up to out.size() empty send buffers (data, capacity set; len 0); returns how many.
  // Fewer than asked means the send pool is exhausted (counted as tx_no_buffer): poll() to get
  // completed sends back.
  virtual std::size_t acquire(std::span<Datagram> out) = 0;

  // Queues filled send buffers. The transport takes every one of them back, sent or not. A
  // datagram longer than datagram_bytes_max, or to an address this socket cannot reach, is
  // refused: counted, its buffer reclaimed, and the first such error returned. Nothing reaches
  // the network before the next flush() or poll().
  virtual Status send(std::span<const Datagram> batch) = 0;

  // Hands back received datagrams, and send buffers that will not be sent. Any order.
  virtual void release(std::span<const Datagram> batch) = 0;

  // Submits queued sends with one system call, without waiting. A datagram the kernel
  // refuses is counted (DropReason::kSendFailed), not returned: an error here means the
  // transport could not submit at all. flush() alone does not start receiving: io_uring arms
  // its receive at the first poll() or receive(), so a send-only user never listens (until
  // then datagrams wait in the socket's queue, as they do for sendmmsg between recvmmsg calls).
  virtual Status flush() = 0;

  // Submits queued sends and waits up to timeout_ns until at least wait_count completions
  // (datagrams to receive, or sends done) are ready, in one system call where the backend can.
  // timeout_ns 0 never blocks. wait_count > 1 is a throughput knob that batches wake-ups: on
  // io_uring the kernel counts pending receive work, not datagrams, so a busy socket usually
  // wakes the caller only at the timeout; sendmmsg wakes at the first datagram whatever the
  // count. Latency-sensitive reactors pass 1. The simulator never waits: its network advances
  // time.
  virtual Status poll(std::uint64_t timeout_ns, std::uint32_t wait_count) = 0;
};

// Opens a UDP transport on config.bind. With Backend::kAuto, tries io_uring and falls back to
// sendmmsg when the kernel lacks it or seccomp forbids it; Backend::kXdp tries AF_XDP first and
// falls back the same way. `reason` says why, once, for the log.
struct TransportChoice {
  std::unique_ptr<Transport> transport;
  std::string backend;  // "xdp", "uring" or "mmsg"
  std::string reason;   // "io_uring available (single_issuer defer_taskrun ...)" or why not
};
Result<TransportChoice> open_transport(const TransportConfig& config);

// The target shard a datagram names: the big-endian u16 at kShardIdOffset, read here for every
// C++ reader (the wire header parser, the node's dispatch) as the steering program reads it in
// BPF. nullopt when the datagram is too short to carry one.
inline std::optional<std::uint16_t> peek_target_shard(std::span<const std::byte> datagram) {
  if (datagram.size() < kShardIdOffset + kShardIdBytes) return std::nullopt;
  return static_cast<std::uint16_t>((static_cast<unsigned>(datagram[kShardIdOffset]) << 8) |
                                    static_cast<unsigned>(datagram[kShardIdOffset + 1]));
}
// The same, as an out-parameter: false when the datagram is too short to carry one.
inline bool read_shard_id(std::span<const std::byte> payload, std::uint16_t* shard) {
  const std::optional<std::uint16_t> s = peek_target_shard(payload);
  if (!s) return false;
  *shard = *s;
  return true;
}
// Writes it; false when the payload is too short to hold it.
inline bool write_shard_id(std::span<std::byte> payload, std::uint16_t shard) {
  if (payload.size() < kShardIdOffset + kShardIdBytes) return false;
  payload[kShardIdOffset] = static_cast<std::byte>(shard >> 8);
  payload[kShardIdOffset + 1] = static_cast<std::byte>(shard & 0xff);
  return true;
}

}  // namespace rumor

template <>
struct std::hash<rumor::Address> {
  std::size_t operator()(const rumor::Address& a) const noexcept { return a.hash(); }
};
