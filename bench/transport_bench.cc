// Datagrams per second over loopback: io_uring, sendmmsg/recvmmsg, plain sendto/recvfrom (the
// baseline) and io_uring with UDP GSO to a UDP_GRO receiver, at 64 and 1,200 bytes.
//
// One sending thread (the benchmark's own) and one receiving thread, each trial kTrialNs of
// sending flat out. items_per_second counts datagrams the RECEIVER got, divided by the time from
// the first send to the last receipt; `loss` is the fraction of sent datagrams that never
// arrived (receive-queue overflow when the receiver falls behind). Both are set as counters
// directly, so the benchmark names stay exactly transport/pps/<path>/<bytes>.
//
// transport/kernel/{uring,mmsg}/<bytes> leave rumor's transports out: the bare system calls, a
// busy-polling recvmmsg receiver for both (so the sender never pays for a wake-up), to show what
// the kernel's own send paths cost next to each other (docs/transport.md).
//
// transport/veth/{xdp,uring}/<bytes> cross one veth pair between two network namespaces this
// process creates (tests/io/xdp_netns.h; root only, skipped otherwise): the sender's transport in
// one, the receiver's in the other, AF_XDP (an XDP program and socket on each end) against
// io_uring. The same counters as transport/pps.
//
//   build/release/bench/rumor-bench --benchmark_filter=transport
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "base/affinity.h"
#include "base/assert.h"
#include "base/clock.h"
#include "io/mmsg_transport.h"
#include "io/uring_transport.h"
#include "io/xdp_transport.h"
#include "rumor/transport.h"
#include "tests/io/xdp_netns.h"

namespace rumor {
namespace {

constexpr std::uint64_t kTrialNs = 600'000'000;      // sending time per trial
constexpr std::uint64_t kQuietNs = 50'000'000;       // receiver stops after this much silence
constexpr std::uint32_t kSocketBufferBytes = 8u << 20;
constexpr std::uint32_t kBatch = 64;                 // per-datagram paths: datagrams per submit
constexpr std::uint32_t kGsoBatch = 256;             // GSO: enough for 4-5 super-datagrams
constexpr std::uint32_t kRecvBatch = 1024;  // a GRO burst alone is up to 64 datagrams
// Receivers wake for at least 32 completions or after 1 ms. io_uring honours it (fewer wake-ups
// for the sender's softirq to pay for); sendmmsg's ppoll wakes at the first datagram.
constexpr std::uint32_t kRxWaitCount = 32;

struct Trial {
  std::uint64_t sent = 0;
  std::uint64_t delivered = 0;
  std::uint64_t ns = 0;  // first send to last receipt
  std::uint64_t rx_overflow = 0;   // kernel receive-queue drops seen by the receiver
  std::uint64_t rx_no_buffer = 0;  // receiver ran out of buffers (back-pressure)
  std::uint64_t tx_no_buffer = 0;  // sender found its pool empty and had to wait
  std::uint64_t tx_pool_waits = 0;  // sender polled for completed sends (its pool was empty)
  std::uint64_t tx_cpu_ns = 0;  // CPU time of the sending thread while it sent
  std::uint64_t rx_cpu_ns = 0;  // CPU time of the receiving thread, start to stop
};

// What the receiving thread reports.
struct RxShared {
  std::atomic<bool> sender_done{false};
  std::atomic<std::uint64_t> sent_total{0};
  std::uint64_t delivered = 0;  // written by the receiver, read after join
  std::uint64_t last_ns = 0;
  std::uint64_t cpu_ns = 0;
};

bool receiver_should_stop(const RxShared& rx, std::uint64_t delivered, std::uint64_t last_ns) {
  if (!rx.sender_done.load(std::memory_order_acquire)) return false;
  if (delivered >= rx.sent_total.load(std::memory_order_relaxed)) return true;
  return monotonic_ns() - last_ns > kQuietNs;
}

Address loopback_any_port() { return Address::ipv4(0x7f000001, 0); }

// Pins the calling thread to the `which`-th CPU (0 or 1) the process may run on, for as long as
// it lives, as rumor's reactors pin one thread per core. Every path runs its sender on the first
// CPU and its receiver on the second, so every path is measured in the same, known placement
// (sharing one CPU instead changes the io_uring/sendmmsg comparison: see docs/transport.md).
// Pin the sender only after starting the receiver: a thread inherits its creator's affinity.
// With fewer than two CPUs, or with RUMOR_BENCH_PIN=0 in the environment (to see the unpinned
// figures), no pinning.
class PinToCpu {
 public:
  explicit PinToCpu(int which) {
    if (const char* env = std::getenv("RUMOR_BENCH_PIN"); env && std::strcmp(env, "0") == 0) return;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) != 0) return;
    if (CPU_COUNT(&allowed) < 2) return;
    saved_ = allowed;
    pinned_ = pin_current_thread(-1, static_cast<std::uint32_t>(which)).pinned;
  }
  ~PinToCpu() {
    if (pinned_) (void)pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
  }
  PinToCpu(const PinToCpu&) = delete;
  PinToCpu& operator=(const PinToCpu&) = delete;

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
};

// The receiving side of every path: counts what arrives until receiver_should_stop, then sets
// shared.delivered and shared.last_ns.
void receive_all(Transport& receiver, RxShared& shared) {
  std::vector<Datagram> batch(kRecvBatch);
  std::uint64_t delivered = 0;
  std::uint64_t last_ns = monotonic_ns();
  for (;;) {
    (void)receiver.poll(1'000'000, kRxWaitCount);
    const std::size_t n = receiver.receive(batch);
    if (n != 0) {
      delivered += n;
      last_ns = monotonic_ns();
      receiver.release({batch.data(), n});
    }
    if (receiver_should_stop(shared, delivered, last_ns)) break;
  }
  shared.delivered = delivered;
  shared.last_ns = last_ns;
}

// The sending side of every path: batches of `bytes`-byte datagrams (a sequence number, then
// filler) to dest, flat out for kTrialNs; waits for completions when the pool is empty.
// Returns what the kernel took (sends still in flight at the end count once it has them).
std::uint64_t send_all(Transport& sender, const Address& dest, std::uint32_t bytes,
                       std::size_t batch_size, Trial* trial) {
  std::vector<Datagram> batch(batch_size);
  std::uint64_t queued = 0;
  const std::uint64_t start = monotonic_ns();
  while (monotonic_ns() - start < kTrialNs) {
    const std::size_t n = sender.acquire(batch);
    for (std::size_t i = 0; i < n; ++i) {
      Datagram& d = batch[i];
      const std::uint64_t seq = queued + i;
      std::memcpy(d.data, &seq, sizeof(seq));
      std::memset(d.data + sizeof(seq), 0x5a, bytes - sizeof(seq));
      d.len = bytes;
      d.peer = dest;
    }
    if (n != 0) (void)sender.send({batch.data(), n});
    queued += n;
    (void)sender.flush();
    if (n == 0) {  // send pool empty: wait for completions
      (void)sender.poll(100'000, 1);
      ++trial->tx_pool_waits;
    }
  }
  for (int i = 0; i < 100 && sender.counters().datagrams_sent < queued; ++i) {
    (void)sender.poll(1'000'000, 1);
  }
  return sender.counters().datagrams_sent;
}

// Counts what arrives until receiver_should_stop; sets shared.delivered and shared.last_ns.
using Receiver = std::function<void(RxShared& shared)>;
// Sends flat out for kTrialNs and sets *sent to what the kernel accepted; false (with error)
// on failure.
using Sender = std::function<bool(std::uint64_t* sent, std::string* error)>;

// One trial of any path: `receive` on a thread pinned to the second CPU, `send` on the calling
// thread pinned to the first, each thread's CPU time, and the hand-over at the end. Fills
// sent, delivered, ns and both CPU times.
bool run_pair(const Receiver& receive, const Sender& send, Trial* trial, std::string* error) {
  RxShared shared;
  std::thread rx_thread([&] {
    const PinToCpu receiver_cpu(1);
    const std::uint64_t cpu_start = thread_cpu_ns();
    receive(shared);
    shared.cpu_ns = thread_cpu_ns() - cpu_start;
  });
  // Pinned only now: a thread inherits its creator's affinity, and the receiver must not start
  // with the sender's one CPU as all it may use.
  const PinToCpu sender_cpu(0);
  std::uint64_t sent = 0;
  const std::uint64_t cpu_start = thread_cpu_ns();
  const std::uint64_t start = monotonic_ns();
  const bool ok = send(&sent, error);
  trial->tx_cpu_ns = thread_cpu_ns() - cpu_start;
  shared.sent_total.store(sent, std::memory_order_relaxed);
  shared.sender_done.store(true, std::memory_order_release);
  rx_thread.join();
  trial->sent = sent;
  trial->delivered = shared.delivered;
  trial->ns = shared.last_ns > start ? shared.last_ns - start : 1;
  trial->rx_cpu_ns = shared.cpu_ns;
  return ok;
}

// ---- Transport-based paths (uring, mmsg, gso) ----

using Opener = std::function<Result<std::unique_ptr<Transport>>(const TransportConfig&)>;

Result<std::unique_ptr<Transport>> open_uring(const TransportConfig& c) {
  auto t = io::UringTransport::open(c);
  if (!t) return t.status();
  return std::unique_ptr<Transport>(std::move(t.value()));
}

Result<std::unique_ptr<Transport>> open_mmsg(const TransportConfig& c) {
  auto t = io::MmsgTransport::open(c);
  if (!t) return t.status();
  return std::unique_ptr<Transport>(std::move(t.value()));
}

bool run_transport_trial(const Opener& open, bool gso, std::uint32_t bytes, Trial* trial,
                         std::string* error) {
  TransportConfig tc;
  tc.bind = loopback_any_port();
  tc.socket_buffer_bytes = kSocketBufferBytes;
  tc.gso = gso;
  tc.reuse_port = false;
  TransportConfig rc = tc;
  rc.gro = gso;
  // A GRO receiver gets whole bursts: 512 x 64 KiB of buffers and a 32 MiB socket queue
  // absorb ~40 ms of 1,200-byte traffic while the receiver is preempted.
  rc.gro_recv_buffers = 512;
  if (gso) rc.socket_buffer_bytes = 32u << 20;
  rc.recv_buffers = 4096;
  auto tx = open(tc);
  auto rx = open(rc);
  if (!tx || !rx) {
    *error = (!tx ? tx.status() : rx.status()).to_string();
    return false;
  }
  Transport& sender = **tx;
  Transport& receiver = **rx;
  const Address dest = receiver.local_address();

  // The receiver binds to its own thread (io_uring's single issuer is the first poller).
  const auto receive = [&](RxShared& shared) { receive_all(receiver, shared); };
  const auto send = [&](std::uint64_t* sent, std::string*) {
    *sent = send_all(sender, dest, bytes, gso ? kGsoBatch : kBatch, trial);
    return true;
  };
  (void)run_pair(receive, send, trial, error);
  trial->rx_overflow = receiver.counters().drop_count(DropReason::kSocketOverflow);
  trial->rx_no_buffer = receiver.counters().rx_no_buffer;
  trial->tx_no_buffer = sender.counters().tx_no_buffer;
  return true;
}

// ---- Over a veth pair: AF_XDP against io_uring ----

// The pair of namespaces (sender's, receiver's), made once per process and deleted at exit.
const std::pair<std::string, std::string>* veth_pair(std::string* error) {
  static std::unique_ptr<testing::NetnsTopology> topo;
  static std::pair<std::string, std::string> ends;
  if (!topo) {
    topo = std::make_unique<testing::NetnsTopology>("b");
    if (topo->available()) ends = topo->add_veth_pair();
  }
  if (!topo->available()) {
    *error = "veth pair: " + topo->error();
    return nullptr;
  }
  return &ends;
}

// Opens a transport inside namespace `ns` (its socket stays there).
Result<std::unique_ptr<Transport>> open_in(const std::string& ns, const Opener& open,
                                           const TransportConfig& c) {
  Result<std::unique_ptr<Transport>> t = Status::error(Code::kIo, "not opened");
  if (!testing::NetnsTopology::in_namespace(ns, [&] { t = open(c); })) {
    return Status::error(Code::kIo, "cannot enter namespace " + ns);
  }
  return t;
}

Result<std::unique_ptr<Transport>> open_xdp(const TransportConfig& c) {
  auto t = io::XdpTransport::open(c);
  if (!t) return t.status();
  return std::unique_ptr<Transport>(std::move(t.value()));
}

bool run_veth_trial(bool xdp, std::uint32_t bytes, Trial* trial, std::string* error) {
  const auto* ends = veth_pair(error);
  if (ends == nullptr) return false;
  TransportConfig tc;
  tc.bind = testing::NetnsTopology::pair_address(1, false);
  tc.socket_buffer_bytes = kSocketBufferBytes;
  tc.gso = false;
  tc.reuse_port = false;
  tc.xdp_interface = "v0";
  TransportConfig rc = tc;
  rc.bind = testing::NetnsTopology::pair_address(2, false);
  rc.recv_buffers = 4096;
  const Opener open = xdp ? Opener(open_xdp) : Opener(open_uring);
  auto tx = open_in(ends->first, open, tc);
  auto rx = open_in(ends->second, open, rc);
  if (!tx || !rx) {
    *error = (!tx ? tx.status() : rx.status()).to_string();
    return false;
  }
  Transport& sender = **tx;
  Transport& receiver = **rx;
  const Address dest = receiver.local_address();
  const auto receive = [&](RxShared& shared) { receive_all(receiver, shared); };
  const auto send = [&](std::uint64_t* sent, std::string*) {
    *sent = send_all(sender, dest, bytes, kBatch, trial);
    return true;
  };
  (void)run_pair(receive, send, trial, error);
  // Let the receiver's drop counters catch up (AF_XDP reads its statistics every 64 polls).
  for (int i = 0; i < 64; ++i) (void)receiver.poll(0, 1);
  trial->rx_overflow = receiver.counters().drop_count(DropReason::kSocketOverflow);
  trial->rx_no_buffer = receiver.counters().rx_no_buffer;
  trial->tx_no_buffer = sender.counters().tx_no_buffer;
  if (xdp && (sender.info().backend != "xdp" || receiver.info().backend != "xdp")) {
    *error = "not AF_XDP";
    return false;
  }
  return true;
}

// ---- Plain sendto/recvfrom baseline ----

int plain_socket(Address* bound) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int size = static_cast<int>(kSocketBufferBytes);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  const Address any = loopback_any_port();
  if (bind(fd, any.sockaddr_ptr(), any.sockaddr_len()) != 0) {
    close(fd);
    return -1;
  }
  sockaddr_in6 local{};
  socklen_t len = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  *bound = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&local), len);
  return fd;
}

// Counts what one receiving socket gets (see Receiver).
using SocketReceiver = std::function<void(int fd, RxShared& shared)>;
// Sends flat out from a socket to `dest` (see Sender).
using SocketSender =
    std::function<bool(int fd, const Address& dest, std::uint64_t* sent, std::string* error)>;

// The plain and kernel paths: run_pair over two bare loopback sockets.
bool run_socket_trial(const SocketReceiver& receive, const SocketSender& send, Trial* trial,
                      std::string* error) {
  Address tx_addr, rx_addr;
  const int tx = plain_socket(&tx_addr);
  const int rx = plain_socket(&rx_addr);
  if (tx < 0 || rx < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    if (tx >= 0) close(tx);
    if (rx >= 0) close(rx);
    return false;
  }
  const bool ok = run_pair([&](RxShared& shared) { receive(rx, shared); },
                           [&](std::uint64_t* sent, std::string* err) {
                             return send(tx, rx_addr, sent, err);
                           },
                           trial, error);
  close(tx);
  close(rx);
  return ok;
}

void plain_receiver(int fd, RxShared& shared) {
  timeval tv{0, 10'000};  // recvfrom wakes up every 10 ms to check for the end
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::vector<std::byte> buf(65536);
  std::uint64_t delivered = 0;
  std::uint64_t last_ns = monotonic_ns();
  for (;;) {
    sockaddr_in6 from{};
    socklen_t from_len = sizeof(from);
    const ssize_t r =
        recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (r >= 0) {
      ++delivered;
      last_ns = monotonic_ns();
    }
    if (receiver_should_stop(shared, delivered, last_ns)) break;
  }
  shared.delivered = delivered;
  shared.last_ns = last_ns;
}

bool plain_sender(int fd, const Address& dest, std::uint32_t bytes, std::uint64_t* sent) {
  std::vector<std::byte> payload(bytes, std::byte{0x5a});
  const std::uint64_t start = monotonic_ns();
  while (monotonic_ns() - start < kTrialNs) {
    // Check the clock every 64 datagrams, as the batched paths do per batch.
    for (std::uint32_t i = 0; i < kBatch; ++i) {
      std::memcpy(payload.data(), sent, sizeof(*sent));
      if (sendto(fd, payload.data(), bytes, 0, dest.sockaddr_ptr(), dest.sockaddr_len()) ==
          static_cast<ssize_t>(bytes)) {
        ++*sent;
      }
    }
  }
  return true;
}

bool run_plain_trial(std::uint32_t bytes, Trial* trial, std::string* error) {
  return run_socket_trial(
      plain_receiver,
      [bytes](int fd, const Address& dest, std::uint64_t* sent, std::string*) {
        return plain_sender(fd, dest, bytes, sent);
      },
      trial, error);
}

// ---- The kernel's send paths alone ----
// No rumor code on either side: io_uring IORING_OP_SEND (single issuer, deferred task running,
// a registered file, the address in the SQE) or sendmmsg, kBatch datagrams per system call, to a
// receiver that busy-polls recvmmsg, which never sleeps, so no wake-up is charged to the sender.

bool kernel_uring_sender(int fd, const Address& dest, std::uint32_t bytes, std::uint64_t* sent,
                         std::string* error) {
  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  if (const int e = io_uring_queue_init_params(2 * kBatch, &ring, &p); e != 0) {
    *error = std::string("io_uring_queue_init: ") + std::strerror(-e);
    return false;
  }
  const bool fixed = io_uring_register_files(&ring, &fd, 1) == 0;
  std::vector<std::byte> pool(static_cast<std::size_t>(kBatch) * bytes, std::byte{0x5a});
  const std::uint64_t start = monotonic_ns();
  bool ok = true;
  int first_error = 0;
  while (ok && monotonic_ns() - start < kTrialNs) {
    for (std::uint32_t i = 0; i < kBatch; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);  // the SQ holds two batches; one is in use
      RUMOR_ASSERT(sqe != nullptr);
      std::byte* payload = pool.data() + static_cast<std::size_t>(i) * bytes;
      std::memcpy(payload, sent, sizeof(*sent));
      io_uring_prep_send(sqe, fixed ? 0 : fd, payload, bytes, 0);
      io_uring_prep_send_set_addr(sqe, dest.sockaddr_ptr(),
                                  static_cast<std::uint16_t>(dest.sockaddr_len()));
      if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
    }
    // Every send completes inside this call (UDP on loopback never waits for buffer space here:
    // the socket buffer is 8 MiB and loopback frees it at once); wait for all of them anyway,
    // for a second at most.
    __kernel_timespec limit{1, 0};
    io_uring_cqe* first = nullptr;
    if (const int r = io_uring_submit_and_wait_timeout(&ring, &first, kBatch, &limit, nullptr);
        r < 0) {
      *error = std::string("io_uring_submit_and_wait_timeout: ") + std::strerror(-r);
      ok = false;
    }
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res >= 0) {
        ++*sent;
      } else if (first_error == 0) {
        first_error = -cqe->res;
      }
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
  }
  io_uring_queue_exit(&ring);
  if (ok && *sent == 0 && first_error != 0) {
    *error = std::string("every io_uring send failed: ") + std::strerror(first_error);
    ok = false;
  }
  return ok;
}

bool kernel_mmsg_sender(int fd, const Address& dest, std::uint32_t bytes, std::uint64_t* sent,
                        std::string* error) {
  std::vector<std::byte> pool(static_cast<std::size_t>(kBatch) * bytes, std::byte{0x5a});
  std::vector<mmsghdr> hdrs(kBatch);
  std::vector<iovec> iovs(kBatch);
  int first_error = 0;
  const std::uint64_t start = monotonic_ns();
  while (monotonic_ns() - start < kTrialNs) {
    for (std::uint32_t i = 0; i < kBatch; ++i) {
      std::byte* payload = pool.data() + static_cast<std::size_t>(i) * bytes;
      std::memcpy(payload, sent, sizeof(*sent));
      iovs[i] = iovec{payload, bytes};
      hdrs[i] = mmsghdr{};
      hdrs[i].msg_hdr.msg_name = const_cast<sockaddr*>(dest.sockaddr_ptr());
      hdrs[i].msg_hdr.msg_namelen = dest.sockaddr_len();
      hdrs[i].msg_hdr.msg_iov = &iovs[i];
      hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = sendmmsg(fd, hdrs.data(), kBatch, MSG_DONTWAIT);
    if (r > 0) {
      *sent += static_cast<std::uint64_t>(r);
    } else if (errno != EAGAIN && errno != EINTR && first_error == 0) {
      first_error = errno;
    }
  }
  if (*sent == 0 && first_error != 0) {
    *error = std::string("every sendmmsg failed: ") + std::strerror(first_error);
    return false;
  }
  return true;
}

// Busy-polls recvmmsg: never sleeps, so the sender is never charged for waking it.
void busy_mmsg_receiver(int fd, RxShared& shared) {
  constexpr std::uint32_t kSlots = 256;
  constexpr std::uint32_t kSlotBytes = 2048;
  std::vector<std::byte> buf(static_cast<std::size_t>(kSlots) * kSlotBytes);
  std::vector<mmsghdr> hdrs(kSlots);
  std::vector<iovec> iovs(kSlots);
  std::uint64_t delivered = 0;
  std::uint64_t last_ns = monotonic_ns();
  for (;;) {
    for (std::uint32_t i = 0; i < kSlots; ++i) {
      iovs[i] = iovec{buf.data() + static_cast<std::size_t>(i) * kSlotBytes, kSlotBytes};
      hdrs[i] = mmsghdr{};
      hdrs[i].msg_hdr.msg_iov = &iovs[i];
      hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = recvmmsg(fd, hdrs.data(), kSlots, MSG_DONTWAIT, nullptr);
    if (r > 0) {
      delivered += static_cast<std::uint64_t>(r);
      last_ns = monotonic_ns();
    }
    if (receiver_should_stop(shared, delivered, last_ns)) break;
  }
  shared.delivered = delivered;
  shared.last_ns = last_ns;
}

bool run_kernel_trial(bool uring, std::uint32_t bytes, Trial* trial, std::string* error) {
  return run_socket_trial(
      busy_mmsg_receiver,
      [uring, bytes](int fd, const Address& dest, std::uint64_t* sent, std::string* err) {
        return uring ? kernel_uring_sender(fd, dest, bytes, sent, err)
                     : kernel_mmsg_sender(fd, dest, bytes, sent, err);
      },
      trial, error);
}

// ---- Registration ----

enum class Path { kUring, kMmsg, kPlain, kGso, kKernelUring, kKernelMmsg, kVethXdp, kVethUring };

void BM_pps(benchmark::State& state, Path path) {
  const auto bytes = static_cast<std::uint32_t>(state.range(0));
  Trial total;
  std::string error;
  for (auto _ : state) {
    Trial t;
    bool ok = false;
    switch (path) {
      case Path::kUring: ok = run_transport_trial(open_uring, false, bytes, &t, &error); break;
      case Path::kMmsg: ok = run_transport_trial(open_mmsg, false, bytes, &t, &error); break;
      case Path::kGso: ok = run_transport_trial(open_uring, true, bytes, &t, &error); break;
      case Path::kPlain: ok = run_plain_trial(bytes, &t, &error); break;
      case Path::kKernelUring: ok = run_kernel_trial(true, bytes, &t, &error); break;
      case Path::kKernelMmsg: ok = run_kernel_trial(false, bytes, &t, &error); break;
      case Path::kVethXdp: ok = run_veth_trial(true, bytes, &t, &error); break;
      case Path::kVethUring: ok = run_veth_trial(false, bytes, &t, &error); break;
    }
    if (!ok) {
      state.SkipWithError(error.c_str());
      return;
    }
    total.sent += t.sent;
    total.delivered += t.delivered;
    total.ns += t.ns;
    total.rx_overflow += t.rx_overflow;
    total.rx_no_buffer += t.rx_no_buffer;
    total.tx_no_buffer += t.tx_no_buffer;
    total.tx_pool_waits += t.tx_pool_waits;
    total.tx_cpu_ns += t.tx_cpu_ns;
    total.rx_cpu_ns += t.rx_cpu_ns;
  }
  const double seconds = static_cast<double>(total.ns) / 1e9;
  // Delivered datagrams per second of wall time: the honest rate, whatever the sender managed.
  state.counters["items_per_second"] = static_cast<double>(total.delivered) / seconds;
  state.counters["loss"] =
      total.sent == 0 ? 0.0
                      : 1.0 - static_cast<double>(total.delivered) / static_cast<double>(total.sent);
  state.counters["sent_per_second"] = static_cast<double>(total.sent) / seconds;
  state.counters["rx_overflow"] = static_cast<double>(total.rx_overflow);
  state.counters["rx_no_buffer"] = static_cast<double>(total.rx_no_buffer);
  state.counters["tx_no_buffer"] = static_cast<double>(total.tx_no_buffer);
  state.counters["tx_pool_waits"] = static_cast<double>(total.tx_pool_waits);
  // CPU nanoseconds each thread spent per delivered datagram. On loopback the sender's system
  // calls also run the receive path's softirq. The receiver's figure is its receive loop's cost:
  // how often it wakes and what each wake-up costs (io_uring sleeps until 32 completions or
  // 1 ms; ppoll wakes at the first datagram). The kernel-only paths' receiver busy-polls, so its
  // CPU time is its running time and is not reported.
  const double delivered = total.delivered == 0 ? 1.0 : static_cast<double>(total.delivered);
  state.counters["tx_cpu_ns"] = static_cast<double>(total.tx_cpu_ns) / delivered;
  if (path != Path::kKernelUring && path != Path::kKernelMmsg) {
    state.counters["rx_cpu_ns"] = static_cast<double>(total.rx_cpu_ns) / delivered;
  }
}

BENCHMARK_CAPTURE(BM_pps, uring, Path::kUring)->Name("transport/pps/uring")->Arg(64)->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, mmsg, Path::kMmsg)->Name("transport/pps/mmsg")->Arg(64)->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, plain, Path::kPlain)->Name("transport/pps/plain")->Arg(64)->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, gso, Path::kGso)->Name("transport/pps/gso")->Arg(64)->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, kernel_uring, Path::kKernelUring)
    ->Name("transport/kernel/uring")
    ->Arg(64)
    ->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, kernel_mmsg, Path::kKernelMmsg)
    ->Name("transport/kernel/mmsg")
    ->Arg(64)
    ->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, veth_xdp, Path::kVethXdp)
    ->Name("transport/veth/xdp")
    ->Arg(64)
    ->Arg(1200);
BENCHMARK_CAPTURE(BM_pps, veth_uring, Path::kVethUring)
    ->Name("transport/veth/uring")
    ->Arg(64)
    ->Arg(1200);

}  // namespace
}  // namespace rumor
