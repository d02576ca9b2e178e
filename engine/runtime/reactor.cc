// rumor::Reactor (include/rumor/reactor.h): a ReactorLoop (engine/runtime/reactor.h) bound to a Node, a
// Transport chosen by open_transport, and one thread pinned to a CPU where allowed.
#include "rumor/reactor.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <type_traits>

#include "base/affinity.h"
#include "base/assert.h"
#include "engine/runtime/reactor.h"
#include "io/steering.h"
#include "io/udp_base.h"

namespace rumor {

namespace {

// One core of a Node as a Driven. The home core (0) also dispatches the node's callbacks.
class CoreDriven final : public Driven {
 public:
  CoreDriven(NodeDriver& node, std::uint32_t core) : node_(node), core_(core) {}
  void start(PacketSink& out) override { node_.start(core_, out); }
  void stop(PacketSink& out) override { node_.stop(core_, out); }
  void receive(std::span<const ReceivedDatagram> batch, PacketSink& out) override {
    node_.receive(core_, batch, out);
  }
  void tick(PacketSink& out) override { node_.tick(core_, out); }
  std::uint64_t next_deadline_ms() const override { return node_.next_deadline_ms(core_); }
  std::size_t dispatch_events() override { return core_ == 0 ? node_.dispatch_events() : 0; }

 private:
  NodeDriver& node_;
  std::uint32_t core_;
};

// Binds a UDP socket to `addr` without SO_REUSEPORT and closes it: fails exactly when another
// socket holds the port.
Status probe_exclusive_bind(const Address& addr) {
  const int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(Code::kIo, std::string("socket: ") + std::strerror(errno));
  const int rc = ::bind(fd, addr.sockaddr_ptr(), addr.sockaddr_len());
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io::errno_status("bind " + addr.to_string(), err);
  return Status::ok();
}

}  // namespace

struct Reactor::Impl {
  // One per core: its transport, loop, driven and thread.
  struct Core {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<ReactorLoop> loop;
    std::unique_ptr<Driven> driven;
    std::thread thread;
    std::atomic<int> started{0};  // 0 before the thread runs, 1 once it has (pin_note is set)
    std::string pin_note;         // written by the thread before `started` (release)
  };
  ReactorConfig config;
  TransportChoice choice;  // core 0's transport moves into cores[0]
  TransportInfo info;
  Address local;
  std::string steering = "one core";
  bool kernel_steering = true;
  std::vector<std::unique_ptr<Core>> cores;
  std::atomic<bool> running{false};
  bool loops_made = false;
};

Reactor::Reactor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Reactor::~Reactor() { stop(); }

Result<std::unique_ptr<Reactor>> Reactor::open(const ReactorConfig& config_in) {
  if (Status s = config_in.validate(); !s) return s;
  ReactorConfig config = config_in;
  if (config.cores == 0 || config.cores > 64) {
    return Status::error(Code::kInvalidArgument, "reactor: cores must be 1..64");
  }
  if (config.cores > 1 && !config.transport.reuse_port && config.transport.bind.port() != 0) {
    // The cores' sockets must share the port, yet a second agent on a taken port must still
    // fail loudly instead of silently sharing its traffic: bind once without SO_REUSEPORT
    // (an exclusive socket fails on a taken port, whoever holds it), then let go.
    // A plain socket: a transport's io_uring would release its socket only after the ring's
    // asynchronous teardown, and the cores' binds would then find the port still taken.
    if (Status st = probe_exclusive_bind(config.transport.bind); !st) return st;
  }
  if (config.cores > 1) config.transport.reuse_port = true;
  auto choice = open_transport(config.transport);
  if (!choice) return choice.status();
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->choice = std::move(choice.value());
  impl->info = impl->choice.transport->info();
  impl->local = impl->choice.transport->local_address();
  impl->cores.push_back(std::make_unique<Impl::Core>());
  impl->cores[0]->transport = std::move(impl->choice.transport);
  if (config.cores > 1) {
    // The other cores join the group on the port core 0 got (it may have been 0), in core
    // order: the steering program indexes sockets by the order they joined.
    TransportConfig same = config.transport;
    same.bind = impl->local;
    same.backend = impl->choice.backend == "uring" ? Backend::kUring : Backend::kMmsg;
    const bool xdp = impl->choice.backend == "xdp";
    if (xdp) same.backend = Backend::kXdp;
    for (std::uint32_t k = 1; k < config.cores; ++k) {
      // AF_XDP: one socket per interface queue, core k on queue xdp_queue + k (the XDP program
      // is shared). Every core must get it: a core that fell back would miss its queue's traffic.
      if (xdp) same.xdp_queue = config.transport.xdp_queue + k;
      auto t = open_transport(same);
      if (!t) return t.status();
      if (t->backend != impl->choice.backend) {
        return Status::error(Code::kUnavailable,
                             "reactor: core " + std::to_string(k) + " could not use " +
                                 impl->choice.backend + " as core 0 does: " + t->reason);
      }
      impl->cores.push_back(std::make_unique<Impl::Core>());
      impl->cores[k]->transport = std::move(t->transport);
    }
    auto* base = dynamic_cast<io::UdpTransportBase*>(impl->cores[0]->transport.get());
    Status attached = Status::error(Code::kUnavailable, "not a socket transport");
    if (!config.kernel_steering) {
      attached = Status::error(Code::kUnavailable, "kernel steering is disabled");
    } else if (base) {
      attached = io::attach_reuseport_steering(base->socket_fd(), config.cores);
    }
    if (attached) {
      impl->steering = "kernel (reuseport BPF on " + std::to_string(config.cores) + " sockets)";
    } else {
      impl->kernel_steering = false;
      impl->steering = "user space (the node hands misdirected datagrams over; cores poll every "
                       "2 ms) because " + attached.message();
    }
  }
  return std::unique_ptr<Reactor>(new Reactor(std::move(impl)));
}

Address Reactor::local_address() const { return impl_->local; }
const std::string& Reactor::backend() const { return impl_->choice.backend; }
const std::string& Reactor::backend_reason() const { return impl_->choice.reason; }
TransportInfo Reactor::transport_info() const { return impl_->info; }
std::uint32_t Reactor::cores() const { return impl_->config.cores; }
const std::string& Reactor::steering() const { return impl_->steering; }

Status Reactor::start(Node& node, TimeSource& time) {
  if (impl_->running.load(std::memory_order_relaxed)) {
    return Status::error(Code::kInvalidArgument, "reactor: already started");
  }
  if (impl_->loops_made) {
    return Status::error(Code::kInvalidArgument, "reactor: cannot be restarted; open another");
  }
  if (node.config().datagram_bytes_max > impl_->info.datagram_bytes_max) {
    return Status::error(Code::kInvalidArgument,
                         "reactor: the node's datagram_bytes_max (" +
                             std::to_string(node.config().datagram_bytes_max) +
                             ") exceeds the transport's (" +
                             std::to_string(impl_->info.datagram_bytes_max) + ")");
  }
  const std::uint32_t n = impl_->config.cores;
  if (NodeDriver::of(node).cores() != n) {
    return Status::error(Code::kInvalidArgument,
                         "reactor: the node has " + std::to_string(NodeDriver::of(node).cores()) +
                             " owner cores (store.owners) and the reactor " + std::to_string(n));
  }
  for (std::uint32_t k = 0; k < n; ++k) {
    Impl::Core& core = *impl_->cores[k];
    ReactorConfig rc = impl_->config;
    // Without the steering program a doorbell may land on another core's socket: the loops
    // then also wake on their own every 2 ms to pick up what other cores handed them.
    if (n > 1 && !impl_->kernel_steering) rc.idle_wait_ms_max = std::min(rc.idle_wait_ms_max, 2u);
    auto loop = ReactorLoop::create(rc, *core.transport, time, n > 1 ? static_cast<int>(k) : -1);
    if (!loop) return loop.status();
    core.loop = std::move(loop.value());
    core.driven = std::make_unique<CoreDriven>(NodeDriver::of(node), k);
    // Writes from application threads and work handed over by other cores ring the doorbell.
    // The loop objects live as long as the Reactor.
    NodeDriver::of(node).set_waker(k, [loop = core.loop.get()] { loop->wake(); });
  }
  impl_->loops_made = true;
  impl_->running.store(true, std::memory_order_relaxed);
  Impl* impl = impl_.get();
  for (std::uint32_t k = 0; k < n; ++k) {
    Impl::Core* core = impl_->cores[k].get();
    core->thread = std::thread([impl, core, k, n] {
      std::string name = impl->config.thread_name;
      if (n > 1) name = name.substr(0, 12) + "/" + std::to_string(k);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      if (!impl->config.pin) {
        core->pin_note = "not pinned (disabled)";
      } else {
        const int cpu = impl->config.cpu < 0 ? -1 : impl->config.cpu + static_cast<int>(k);
        core->pin_note = pin_current_thread(cpu, k).note;
      }
      // Release: pin_note is written before start() returns it.
      core->started.store(1, std::memory_order_release);
      core->started.notify_all();
      core->loop->run(*core->driven);
    });
    // Acquire: see the thread's release above. Core 0 runs (and starts the node) first.
    core->started.wait(0, std::memory_order_acquire);
  }
  return Status::ok();
}

void Reactor::stop() {
  if (!impl_ || !impl_->running.load(std::memory_order_relaxed)) return;
  // The other cores first: core 0 announces the leave last, when nothing else sends.
  for (std::size_t k = impl_->cores.size(); k-- > 0;) {
    Impl::Core& core = *impl_->cores[k];
    core.loop->request_stop();
    core.thread.join();
  }
  impl_->running.store(false, std::memory_order_relaxed);
}

bool Reactor::running() const { return impl_->running.load(std::memory_order_relaxed); }

void Reactor::wake() {
  for (auto& core : impl_->cores) {
    if (core->loop) core->loop->wake();
  }
}

Status Reactor::post(std::function<void()> fn) { return post_core(0, std::move(fn)); }

Status Reactor::post_core(std::uint32_t k, std::function<void()> fn) {
  if (k >= impl_->cores.size()) {
    return Status::error(Code::kInvalidArgument, "reactor: no core " + std::to_string(k));
  }
  if (!impl_->cores[k]->loop || !impl_->running.load(std::memory_order_relaxed)) {
    return Status::error(Code::kUnavailable, "reactor is not running");
  }
  return impl_->cores[k]->loop->post(std::move(fn));
}

std::string Reactor::pin_note() const {
  std::string note;
  for (std::size_t k = 0; k < impl_->cores.size(); ++k) {
    const Impl::Core& core = *impl_->cores[k];
    if (core.started.load(std::memory_order_acquire) == 0) return {};
    if (impl_->cores.size() > 1) note += (k ? "; core " : "core ") + std::to_string(k) + ": ";
    note += core.pin_note;
  }
  return note;
}

ReactorCounters Reactor::counters(std::uint32_t k) const {
  RUMOR_ASSERT(k < impl_->cores.size() && impl_->cores[k]->loop != nullptr);
  return impl_->cores[k]->loop->counters();
}


ReactorCounters Reactor::counters_all_cores() const {
  ReactorCounters sum = counters(0);
  for (std::size_t k = 1; k < impl_->cores.size(); ++k) {
    const ReactorCounters c = impl_->cores[k]->loop->published_counters();
    const std::uint64_t batch_max = std::max(sum.batch_max, c.batch_max);
    Published<ReactorCounters>::add_words(sum, c);
    sum.batch_max = batch_max;
  }
  return sum;
}

TransportCounters Reactor::transport_counters_all_cores() const {
  TransportCounters sum = transport_counters(0);
  for (std::size_t k = 1; k < impl_->cores.size(); ++k) {
    Published<TransportCounters>::add_words(sum, impl_->cores[k]->loop->published_transport_counters());
  }
  return sum;
}

const TransportCounters& Reactor::transport_counters(std::uint32_t k) const {
  RUMOR_ASSERT(k < impl_->cores.size());
  return impl_->cores[k]->transport->counters();
}

}  // namespace rumor
