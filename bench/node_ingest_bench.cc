// End to end ingest over real UDP on loopback: entries merged per second by ONE node run by
// rumor::Reactor on 1 or 2 reactor threads (ReactorConfig::cores = store.owners), fed by a
// sender thread that streams pre-built datagrams at it. Everything node/cores leaves out is in:
// the kernel's receive path, the reuseport steering program, io_uring (or sendmmsg) receives,
// the reactor loop, and for the sealed variants opening every frame (XChaCha20-Poly1305).
//
// The traffic is node/cores's: datagrams of 11 entries (16-byte keys, 64-byte values; 1,164 B,
// 1,205 B sealed), each holding entries of one shard parity and naming such a shard at header
// byte 4, so on two cores the kernel steers each to the core owning all of its entries and no
// entry crosses cores. A fresh node per iteration. Before the clock starts it is preloaded, in
// plaintext through the same path, with every key the window will send; the window then
// carries a newer version of each, so every merge is real work (find, replace, the shard's
// digests and change feed, rumor mongering) but no table grows: a fresh node growing its tables
// from empty spends about a third of its time in the kernel zeroing the new tables' pages,
// which would hide what a second core buys. The sealed variants accept plaintext for the
// preload and require sealed frames from the window on.
//
// The sender is made as cheap as it can be, because it shares this machine's CPUs with the
// node: every datagram is built (and sealed) before the clock starts, and goes out in
// UDP_SEGMENT (GSO) sends of kBatch segments of one parity. Its own flow control keeps at most
// kInFlight datagrams per stream queued at the node (it reads the store, lock-free, to see how
// far the node has got), so the node is never idle and its socket never overflows; the sender
// sleeps while the node catches up (kNapNs), leaving the CPU to the node. Sealed frames are
// sealed in send order (the order one single-core node sees them), so every receiving core's
// replay window accepts them; each iteration's node is new, so the same frames are fresh to it.
//
// Read node/ingest/cores/2 over node/ingest/cores/1, sealed over sealed; over a window of
// kWindowS (bounded in time, manual time):
//   items_per_second         entries merged by the node (store merges_applied)
//   cpu_us_per_entry         the whole process's CPU time over the window / entries merged
//   node_cpu_us_per_entry    the reactor threads' CPU time alone / entries merged
//   sender_cpu_us_per_entry  the sender thread's. On loopback this includes the kernel's
//                            receive path up to the node's socket queue (segmentation, IP and
//                            UDP receive, steering): softirq runs in the sender's sendmsg.
//   sender_datagrams         datagrams sent in the window (per iteration)
//   lost_entries             entries sent but never merged once the node drained (per iteration)
//   socket_drops, node_drops kernel receive-queue overflows and receive-buffer shortages; the
//                            node's drops of every reason, refused updates and core hand-off
//                            drops (per iteration); stale: merges that found a newer version
//   sender_stalls            flow-control waits that gave up (a datagram presumed lost)
//   idle_turns, datagrams_per_batch  the reactors' turns that found nothing to receive, and
//                            datagrams per receive batch, from the window on (per iteration)
//   other_load               the share of the machine's CPUs other processes took meanwhile:
//                            a run where it is not near 0 measured them too
//
// On a machine with only two CPUs the sender is not free: on one core it has the CPU the node
// leaves idle, on two it takes its share of the node's (and loopback's softirq work may be
// charged to a reactor thread there). The best cores/2 can do over cores/1 is then about
// 2 x node_cpu_us_per_entry(1 core) / cpu_us_per_entry(2 cores); compare the two figures.
//
// node/ingest/gro/... and node/ingest/sealed/gro/... are the same with the node's transport
// receiving with UDP_GRO (TransportConfig::gro): each GSO burst reaches the node as one
// coalesced receive that the transport splits, instead of one receive per datagram.
//
//   build/release/bench/rumor-bench --benchmark_filter='node/ingest'
//       --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/assert.h"
#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/store/store.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"
#include "rumor/reactor.h"

namespace rumor {
namespace {

constexpr std::size_t kEntriesPerDatagram = 11;
constexpr std::size_t kValueBytes = 64;
// Segments per GSO send: 48 x 1,205 B stays under the 65,507-byte UDP payload a GSO send may
// carry over IPv4, sealed or not, and under kGsoSegmentsMax.
constexpr std::size_t kBatch = 48;
static_assert(kBatch <= kGsoSegmentsMax);
// Datagrams per stream the sender lets wait at the node: deep enough that the sender's sleep
// (kNapNs) never drains the node's queue, shallow enough that the socket queue
// (kSocketBufferBytes, ~2.5 KB of kernel memory per datagram) and io_uring's buffer ring
// (recv_buffers = 1024) never overflow.
constexpr std::size_t kInFlight = 480;
static_assert(kInFlight % kBatch == 0);
// The sender's nap when every stream's window is full. kInFlight datagrams are ~5 ms of a
// core's work, so 200 us never lets the node run dry (idle_turns stays ~0); a 20 us nap made
// the sender wake ~50,000 times a second, mostly to find no room, and on two cores each wake
// took a CPU from a reactor thread: the sender cost 0.21 us of CPU per entry, not 0.10, and
// the 2-core node lost ~15% of its throughput to a load generator polling.
constexpr long kNapNs = 200'000;
constexpr std::uint32_t kSocketBufferBytes = 32u << 20;
constexpr double kWindowS = 1.0;
// Datagrams built per shard parity: well above what one node merges in kWindowS on this
// machine, so the sender never runs out (it says so if it does).
constexpr std::size_t kDatagramsPerParity = 150'000;
constexpr NodeId kSender = 0x5e4d;
constexpr char kThreadName[] = "ingest-node";

// 32 bytes: the key the node and the sender share for the sealed variants.
const std::string& shared_key() {
  static const std::string key(kKeyBytes, '\x5a');
  return key;
}

// The datagrams of one variant (plaintext or sealed), each parity's contiguous so that a GSO
// send is one iovec over kBatch of them.
struct DatagramSet {
  std::size_t stride = 0;  // bytes per datagram (all the same size)
  std::vector<std::byte> bytes[2];
  std::vector<std::string> last_key[2];  // per datagram: the key the node merges last
  std::vector<std::uint64_t> last_hlc[2];  // and the version it merges there
  std::size_t count(int parity) const { return last_key[parity].size(); }
  const std::byte* at(int parity, std::size_t i) const {
    return bytes[parity].data() + i * stride;
  }
};

// The order every datagram is sent (and sealed) in on one core: batches alternate between the
// parities. On two cores each parity's batches keep their order, so each core's stream is still
// increasing in sequence number.
struct Batch {
  int parity;
  std::size_t first;  // datagram index within the parity
};
std::vector<Batch> interleaved(const DatagramSet& s) {
  std::vector<Batch> out;
  const std::size_t n = std::min(s.count(0), s.count(1)) / kBatch;
  for (std::size_t b = 0; b < n; ++b) {
    out.push_back({0, b * kBatch});
    out.push_back({1, b * kBatch});
  }
  return out;
}

// The same keys in the same datagrams twice: `newer` false is the preload (versions two hours
// old), true the window's traffic (an hour old: newer than the preload, older than now).
const DatagramSet& plain_set(std::uint32_t shards, const std::string& label, bool newer) {
  static DatagramSet sets[2];
  DatagramSet& set = sets[newer ? 1 : 0];
  if (set.stride != 0) return set;
  const std::uint64_t hlc =
      hlc_pack(SystemTimeSource().now_ms() - (newer ? 3'600'000 : 7'200'000), 0);
  const std::string value(kValueBytes, 'v');
  std::vector<std::byte> buf(2048);
  std::size_t next_key = 0;
  std::uint64_t n = 0;
  for (int parity = 0; parity < 2; ++parity) {
    set.bytes[parity].reserve(kDatagramsPerParity * 1200);
    set.last_key[parity].reserve(kDatagramsPerParity);
  }
  // Keys in order, each to the datagram being filled for its parity.
  std::vector<std::string> pending[2];
  auto flush = [&](int parity) {
    wire::Writer w(buf);
    wire::write_header(w, wire::Header{static_cast<std::uint16_t>(parity),
                                       wire::label_hash(label), kSender});
    for (const std::string& k : pending[parity]) {
      wire::encode(w, wire::EntryMsg{false, Version{hlc + n++, kSender}, k, value});
    }
    RUMOR_ASSERT(w.ok());
    if (set.stride == 0) set.stride = w.size();
    RUMOR_ASSERT(w.size() == set.stride);
    set.bytes[parity].insert(set.bytes[parity].end(), buf.begin(), buf.begin() + w.size());
    set.last_key[parity].push_back(pending[parity].back());
    set.last_hlc[parity].push_back(hlc + n - 1);
    pending[parity].clear();
  };
  while (set.count(0) < kDatagramsPerParity || set.count(1) < kDatagramsPerParity) {
    char key[17];
    std::snprintf(key, sizeof(key), "k%015zu", next_key++);
    const auto shard = static_cast<std::uint32_t>(Store::hash_key(key) & (shards - 1));
    const int parity = static_cast<int>(shard % 2);
    if (set.count(parity) == kDatagramsPerParity) continue;
    pending[parity].emplace_back(key);
    if (pending[parity].size() == kEntriesPerDatagram) flush(parity);
  }
  return set;
}

// The plaintext set sealed under shared_key(), in interleaved() order: sequence numbers rise in
// the order one core receives them (and so in each parity's order on two cores).
const DatagramSet& sealed_set(std::uint32_t shards, const std::string& label,
                              std::size_t datagram_bytes_max) {
  static DatagramSet set;
  if (set.stride != 0) return set;
  const DatagramSet& plain = plain_set(shards, label, /*newer=*/true);
  crypto::FrameCrypto fc(label, datagram_bytes_max, 16);
  RUMOR_ASSERT(fc.keyring().install(shared_key()).is_ok());
  RUMOR_ASSERT(fc.set_mode(EncryptionMode::kRequire).is_ok());
  fc.start(SystemTimeSource().now_ms());
  set.stride = plain.stride + crypto::kSealOverheadBytes;
  for (int parity = 0; parity < 2; ++parity) {
    set.bytes[parity].resize(plain.count(parity) * set.stride);
    set.last_key[parity] = plain.last_key[parity];
    set.last_hlc[parity] = plain.last_hlc[parity];
  }
  for (const Batch& b : interleaved(plain)) {
    for (std::size_t i = b.first; i < b.first + kBatch; ++i) {
      std::byte* out = set.bytes[b.parity].data() + i * set.stride;
      std::memcpy(out, plain.at(b.parity, i), plain.stride);
      const std::size_t len = fc.seal({out, set.stride}, plain.stride);
      RUMOR_ASSERT(len == set.stride);
    }
  }
  return set;
}

// CPU time of another thread of this process, by its kernel thread id: the clock id glibc's
// pthread_getcpuclockid builds (CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED).
double thread_cpu_s(pid_t tid) {
  const clockid_t id = static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 6u);
  timespec ts{};
  if (clock_gettime(id, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds the whole machine spent busy (user, nice, system, irq, softirq): /proc/stat, in
// USER_HZ ticks. Not steal: time the hypervisor gave elsewhere is not this machine's load (and
// its counter jumps on this VM).
double machine_busy_s() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  std::uint64_t v[8] = {};
  f >> cpu;
  for (auto& x : v) f >> x;
  const std::uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6];
  return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The reactor threads' ids: this process's tasks named after kThreadName.
std::vector<pid_t> reactor_tids() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (!d) return out;
  for (dirent* e = readdir(d); e; e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(kThreadName, 0) == 0) out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  closedir(d);
  return out;
}

double threads_cpu_s(const std::vector<pid_t>& tids) {
  double s = 0;
  for (pid_t t : tids) s += thread_cpu_s(t);
  return s;
}

// The sending side: a connected UDP socket, GSO sends of kBatch datagrams of one parity, and a
// window of kInFlight datagrams per stream (per receiving core) checked by reading the node's
// store for the last key of the oldest batch not yet seen merged.
class Sender {
 public:
  Sender(const DatagramSet& set, std::uint32_t cores, const Node& node, const Address& to)
      : set_(set), node_(node), cores_(cores) {
    for (const Batch& b : interleaved(set)) streams_[cores == 1 ? 0 : b.parity].push_back(b);
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int bytes = static_cast<int>(kSocketBufferBytes);
    if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) != 0) {
      (void)setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
    if (::connect(fd_, to.sockaddr_ptr(), to.sockaddr_len()) != 0) error_ = errno;
  }
  ~Sender() {
    if (fd_ >= 0) ::close(fd_);
  }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Sends until `stop`, or until a stream runs out of datagrams (ran_out()); with `all`, until
  // every stream has sent every datagram.
  void run(const std::atomic<bool>& stop, bool all = false) {
    tid_.store(gettid(), std::memory_order_release);
    // The naps (kNapNs) must not gain the default 50 us of timer slack on top.
    (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    std::uint64_t blocked_since = 0;
    while (!stop.load(std::memory_order_relaxed) && error_ == 0) {
      bool progress = false;
      std::uint32_t done = 0;
      for (std::uint32_t s = 0; s < cores_; ++s) {
        Stream& st = stream_state_[s];
        if (st.sent == streams_[s].size()) {
          ran_out_ = true;
          if (!all) return;
          ++done;
          continue;
        }
        if (!room(s)) continue;
        send_batch(streams_[s][st.sent]);
        ++st.sent;
        progress = true;
      }
      if (done == cores_) return;
      if (progress) {
        blocked_since = 0;
        continue;
      }
      const std::uint64_t now = monotonic_ns();
      if (blocked_since == 0) blocked_since = now;
      if (now - blocked_since > 20'000'000) {
        // No batch seen merged for 20 ms: presume the oldest lost and go on (counted; the node's
        // drop counters say why).
        for (std::uint32_t s = 0; s < cores_; ++s) {
          if (stream_state_[s].sent - stream_state_[s].acked >= kInFlight / kBatch) {
            ++stream_state_[s].acked;
          }
        }
        ++stalls_;
        blocked_since = 0;
        continue;
      }
      const timespec nap{0, kNapNs};
      nanosleep(&nap, nullptr);
    }
  }

  pid_t tid() const { return tid_.load(std::memory_order_acquire); }
  std::uint64_t datagrams() const { return datagrams_.load(std::memory_order_relaxed); }
  std::uint64_t entries() const { return datagrams() * kEntriesPerDatagram; }
  std::uint64_t stalls() const { return stalls_; }
  bool ran_out() const { return ran_out_; }
  int error() const { return error_; }

 private:
  struct Stream {
    std::size_t sent = 0;   // batches
    std::size_t acked = 0;  // batches seen merged (or presumed lost)
  };

  bool room(std::uint32_t s) {
    Stream& st = stream_state_[s];
    while (st.sent - st.acked >= kInFlight / kBatch) {
      // The stream's datagrams are merged in order: the last entry of the oldest unacknowledged
      // batch merged means the whole batch (and every one before it) is done.
      const Batch& b = streams_[s][st.acked];
      const std::size_t last = b.first + kBatch - 1;
      const std::optional<Node::Entry> e = node_.get_entry(set_.last_key[b.parity][last]);
      if (!e || e->version.hlc < set_.last_hlc[b.parity][last]) return false;
      ++st.acked;
    }
    return true;
  }

  void send_batch(const Batch& b) {
    iovec iov{const_cast<std::byte*>(set_.at(b.parity, b.first)), kBatch * set_.stride};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(std::uint16_t))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    const auto segment = static_cast<std::uint16_t>(set_.stride);
    std::memcpy(CMSG_DATA(c), &segment, sizeof(segment));
    // Bounded: a full send buffer (ENOBUFS, EAGAIN) is retried a few times, then given up.
    for (int attempt = 0; attempt < 1000; ++attempt) {
      if (::sendmsg(fd_, &msg, 0) >= 0) {
        datagrams_.fetch_add(kBatch, std::memory_order_relaxed);
        return;
      }
      if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) break;
      std::this_thread::yield();
    }
    error_ = errno;
  }

  const DatagramSet& set_;
  const Node& node_;
  std::uint32_t cores_;
  std::vector<Batch> streams_[2];
  Stream stream_state_[2];
  int fd_ = -1;
  int error_ = 0;
  bool ran_out_ = false;
  std::uint64_t stalls_ = 0;
  std::atomic<pid_t> tid_{0};
  // Relaxed: a statistic the benchmark thread reads at the window's end.
  std::atomic<std::uint64_t> datagrams_{0};
};

// What core 0 reports once the sender stopped and the node drained.
struct Tally {
  NodeCounters node;
  TransportCounters transport;
  ReactorCounters reactor;
};

// Waits (bounded) until the node merged `want` entries in all, or merged nothing more for
// 100 ms; returns what it merged.
std::uint64_t drain(const Store& store, std::uint64_t want) {
  std::uint64_t last = store.counters().merges_applied;
  for (int i = 0, still = 0; i < 3000 && still < 10 && last < want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const std::uint64_t now = store.counters().merges_applied;
    still = now == last ? still + 1 : 0;
    last = now;
  }
  return last;
}

// Runs fn on the node's core 0 (the calls that must be made there) and waits for it, bounded.
// The reactor's stop() runs a command still queued, so fn's references must outlive stop();
// the answer is shared with the command, which may run after we gave up waiting.
template <typename Fn>
bool on_core0(Reactor& r, Fn fn) {
  auto result = std::make_shared<std::atomic<int>>(-1);
  // Release/acquire: what fn wrote is visible once the answer is.
  if (!r.post([result, fn] { result->store(fn() ? 1 : 0, std::memory_order_release); }).is_ok()) {
    return false;
  }
  const std::uint64_t give_up = monotonic_ns() + 5'000'000'000ull;
  while (result->load(std::memory_order_acquire) < 0 && monotonic_ns() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return result->load(std::memory_order_acquire) == 1;
}

void BM_NodeIngest(benchmark::State& state, bool sealed, bool gro) {
  const auto cores = static_cast<std::uint32_t>(state.range(0));
  SystemTimeSource clock;
  NodeConfig base = NodeConfig::local();
  base.name = "ingest";
  base.store.owners = cores;
  base.peer_bytes_per_s_max = UINT32_MAX;  // one sender floods on purpose
  if (sealed) {
    // Accepting plaintext for the preload; kRequire before the window.
    base.keys = {shared_key()};
    base.encryption = EncryptionMode::kAccept;
  }
  const DatagramSet& preload = plain_set(base.store.virtual_shards, base.cluster_label, false);
  const DatagramSet& set =
      sealed ? sealed_set(base.store.virtual_shards, base.cluster_label, base.datagram_bytes_max)
             : plain_set(base.store.virtual_shards, base.cluster_label, true);
  double cpu_s = 0, node_cpu_s = 0, sender_cpu_s = 0, other_cpu_s = 0, window_s = 0;
  std::uint64_t merged = 0, sent = 0, lost = 0, socket_drops = 0, node_drops = 0, stalls = 0,
                stale = 0, idle_turns = 0, batches = 0, reactor_datagrams = 0, gro_bursts = 0;
  std::string label;
  for (auto _ : state) {
    ReactorConfig rc;
    rc.transport.bind = Address::ipv4(0x7f000001, 0);
    rc.transport.socket_buffer_bytes = kSocketBufferBytes;
    rc.transport.gro = gro;
    rc.cores = cores;
    rc.thread_name = kThreadName;
    auto reactor = Reactor::open(rc);
    if (!reactor) {
      state.SkipWithError(reactor.status().to_string().c_str());
      return;
    }
    Reactor& r = **reactor;
    NodeConfig nc = base;
    nc.advertise = r.local_address();
    auto created = Node::create(nc, clock);
    if (!created) {
      state.SkipWithError(created.status().to_string().c_str());
      return;
    }
    Node& n = **created;
    if (Status st = r.start(n, clock); !st) {
      state.SkipWithError(st.to_string().c_str());
      return;
    }
    // Every way out of this iteration stops the reactor threads before the node goes (stop()
    // is idempotent, and runs commands still queued while what they point at lives).
    struct StopOnExit {
      Reactor& r;
      ~StopOnExit() { r.stop(); }
    } stop_on_exit{r};
    const Store& store = NodeInternals::store(n);
    const std::vector<pid_t> node_tids = reactor_tids();

    // Preload (untimed): every key the window will update, through the same path in
    // plaintext, so that the window's merges replace entries instead of growing the tables.
    std::uint64_t preloaded = 0;
    {
      Sender pre(preload, cores, n, r.local_address());
      const std::atomic<bool> never{false};
      pre.run(never, /*all=*/true);
      if (pre.error() != 0) {
        state.SkipWithError(("preload: " + std::string(std::strerror(pre.error()))).c_str());
        return;
      }
      preloaded = drain(store, pre.entries());
      if (preloaded != pre.entries()) {
        state.SkipWithError("the preload lost entries (see socket_drops, node_drops)");
        return;
      }
    }
    if (sealed && !on_core0(r, [&] { return n.set_encryption(EncryptionMode::kRequire); })) {
      state.SkipWithError("set_encryption(require) failed or was not answered");
      return;
    }
    ReactorCounters before;
    if (!on_core0(r, [&] {
          before = r.counters_all_cores();
          return true;
        })) {
      r.stop();  // runs the command if it is still queued, while `before` lives
      state.SkipWithError("the node's core 0 did not answer for its counters");
      return;
    }
    Sender sender(set, cores, n, r.local_address());
    std::atomic<bool> stop{false};
    std::thread tx([&] { sender.run(stop); });
    while (sender.tid() == 0) std::this_thread::yield();

    const std::uint64_t merged0 = store.counters().merges_applied;
    const double cpu0 = process_cpu_s(), node0 = threads_cpu_s(node_tids),
                 sender0 = thread_cpu_s(sender.tid()), busy0 = machine_busy_s();
    const std::uint64_t t0 = monotonic_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(kWindowS));
    const std::uint64_t t1 = monotonic_ns();
    const std::uint64_t merged1 = store.counters().merges_applied;
    const double cpu = process_cpu_s() - cpu0;
    cpu_s += cpu;
    const double window = static_cast<double>(t1 - t0) * 1e-9;
    const double cpus = static_cast<double>(std::thread::hardware_concurrency());
    other_cpu_s += std::clamp(machine_busy_s() - busy0 - cpu, 0.0, window * cpus);
    window_s += window;
    node_cpu_s += threads_cpu_s(node_tids) - node0;
    sender_cpu_s += thread_cpu_s(sender.tid()) - sender0;
    const std::uint64_t sent_datagrams = sender.datagrams();
    stop.store(true, std::memory_order_relaxed);
    tx.join();
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);

    // What the node still merges after the window counts for loss only.
    const std::uint64_t merged_all = drain(store, preloaded + sender.entries()) - preloaded;
    Tally tally;
    const bool answered = on_core0(r, [&] {
      tally.node = n.counters();
      tally.transport = r.transport_counters_all_cores();
      tally.reactor = r.counters_all_cores();
      return true;
    });
    r.stop();
    if (!answered) {
      state.SkipWithError("the node's core 0 did not answer for its counters");
      return;
    }
    if (sender.error() != 0) {
      state.SkipWithError(("sender: " + std::string(std::strerror(sender.error()))).c_str());
      return;
    }
    if (sender.ran_out()) {
      state.SkipWithError("the sender ran out of datagrams: raise kDatagramsPerParity");
      return;
    }
    const NodeCounters& k = tally.node;
    const TransportCounters& t = tally.transport;
    if (sealed && k.packets_opened == 0) {
      state.SkipWithError("the node opened no sealed frame");
      return;
    }
    merged += merged1 - merged0;
    sent += sent_datagrams;
    lost += sender.entries() > merged_all ? sender.entries() - merged_all : 0;
    stale += store.counters().merges_stale;
    socket_drops += t.drop_count(DropReason::kSocketOverflow) + t.drop_count(DropReason::kTruncated) +
                    t.rx_no_buffer;
    node_drops += k.drop_bad_magic + k.drop_bad_version + k.drop_wrong_label + k.drop_truncated +
                  k.drop_malformed + k.drop_from_self + k.drop_unknown_type +
                  k.drop_rate_limited + k.drop_sealed_refused + k.drop_unknown_key +
                  k.drop_auth_failed + k.drop_replayed + k.drop_plaintext_refused +
                  k.updates_refused + k.core_handoff_drops;
    stalls += sender.stalls();
    gro_bursts += t.gro_receives;
    idle_turns += tally.reactor.idle_turns - before.idle_turns;
    batches += tally.reactor.batches - before.batches;
    reactor_datagrams += tally.reactor.datagrams - before.datagrams;
    label = r.backend() + ", " + r.steering();
  }
  const auto m = static_cast<double>(merged);
  state.SetItemsProcessed(static_cast<std::int64_t>(merged));
  state.SetLabel(label);
  state.counters["cores"] = cores;
  state.counters["cpu_us_per_entry"] = m > 0 ? cpu_s * 1e6 / m : 0;
  state.counters["node_cpu_us_per_entry"] = m > 0 ? node_cpu_s * 1e6 / m : 0;
  state.counters["sender_cpu_us_per_entry"] = m > 0 ? sender_cpu_s * 1e6 / m : 0;
  auto per_iteration = [](std::uint64_t v) {
    return benchmark::Counter(static_cast<double>(v), benchmark::Counter::kAvgIterations);
  };
  state.counters["sender_datagrams"] = per_iteration(sent);
  state.counters["lost_entries"] = per_iteration(lost);
  state.counters["socket_drops"] = per_iteration(socket_drops);
  state.counters["node_drops"] = per_iteration(node_drops);
  state.counters["sender_stalls"] = per_iteration(stalls);
  state.counters["stale"] = per_iteration(stale);
  state.counters["gro_bursts"] = per_iteration(gro_bursts);
  // The reactor from the window on: turns that found nothing to receive, and datagrams per
  // receive batch (a node that keeps up takes what is there; one that does not, full batches).
  state.counters["idle_turns"] = per_iteration(idle_turns);
  state.counters["datagrams_per_batch"] =
      batches ? static_cast<double>(reactor_datagrams) / static_cast<double>(batches) : 0;
  // The share of the machine's CPUs other processes took during the windows (0 on a quiet
  // machine, to within /proc/stat's 10 ms ticks): a run where it is not near 0 measured them too.
  state.counters["other_load"] =
      window_s > 0
          ? other_cpu_s / (window_s * static_cast<double>(std::thread::hardware_concurrency()))
          : 0;
}

void BM_NodeIngestPlain(benchmark::State& state) { BM_NodeIngest(state, false, false); }
void BM_NodeIngestSealed(benchmark::State& state) { BM_NodeIngest(state, true, false); }
void BM_NodeIngestPlainGro(benchmark::State& state) { BM_NodeIngest(state, false, true); }
void BM_NodeIngestSealedGro(benchmark::State& state) { BM_NodeIngest(state, true, true); }

// One iteration is a whole second of traffic (and a preload of a few seconds): repetitions give
// the spread.
BENCHMARK(BM_NodeIngestPlain)->Name("node/ingest/cores")->Arg(1)->Arg(2)->UseManualTime()
    ->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NodeIngestSealed)->Name("node/ingest/sealed/cores")->Arg(1)->Arg(2)->UseManualTime()
    ->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NodeIngestPlainGro)->Name("node/ingest/gro/cores")->Arg(1)->Arg(2)->UseManualTime()
    ->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NodeIngestSealedGro)->Name("node/ingest/sealed/gro/cores")->Arg(1)->Arg(2)
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rumor
