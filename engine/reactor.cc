// rumor::Reactor (include/rumor/reactor.h): a ReactorLoop (engine/reactor.h) bound to a Node, a
// Transport chosen by open_transport, and one thread pinned to a CPU where allowed.
#include "rumor/reactor.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "base/assert.h"
#include "engine/reactor.h"

namespace rumor {

namespace {

// The Node's driver-thread API as a Driven.
class NodeDriven final : public Driven {
 public:
  explicit NodeDriven(Node& node) : node_(node) {}
  void start(PacketSink& out) override { node_.start(out); }
  void stop(PacketSink& out) override { node_.stop(out); }
  void receive(const Address& from, std::span<const std::byte> datagram,
               PacketSink& out) override {
    node_.receive(from, datagram, out);
  }
  void tick(PacketSink& out) override { node_.tick(out); }
  std::uint64_t next_deadline_ms() const override { return node_.next_deadline_ms(); }
  std::size_t dispatch_events() override { return node_.dispatch_events(); }

 private:
  Node& node_;
};

// Pins the calling thread. Returns a note for the log either way.
std::string pin_current_thread(int cpu) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    return std::string("not pinned: sched_getaffinity: ") + std::strerror(errno);
  }
  int chosen = -1;
  if (cpu < 0) {
    for (int i = 0; i < CPU_SETSIZE; ++i) {
      if (CPU_ISSET(i, &allowed)) {
        chosen = i;
        break;
      }
    }
  } else if (cpu < CPU_SETSIZE && CPU_ISSET(cpu, &allowed)) {
    chosen = cpu;
  } else {
    return "not pinned: CPU " + std::to_string(cpu) + " is not in this process's affinity mask";
  }
  if (chosen < 0) return "not pinned: empty affinity mask";
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(chosen, &one);
  if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0) {
    // EPERM (a restricted container) or EINVAL (a cpuset changed under us): run unpinned.
    return std::string("not pinned: sched_setaffinity: ") + std::strerror(errno);
  }
  return "pinned to CPU " + std::to_string(chosen);
}

}  // namespace

struct Reactor::Impl {
  ReactorConfig config;
  TransportChoice choice;
  TransportInfo info;
  Address local;
  std::unique_ptr<ReactorLoop> loop;
  std::unique_ptr<NodeDriven> driven;
  std::thread thread;
  std::atomic<bool> running{false};
  std::atomic<int> started{0};  // 0 before the thread runs, 1 once it has (pin_note is set)
  std::string pin_note;         // written by the reactor thread before `started` (release)
};

Reactor::Reactor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Reactor::~Reactor() { stop(); }

Result<std::unique_ptr<Reactor>> Reactor::open(const ReactorConfig& config) {
  if (Status s = config.validate(); !s) return s;
  auto choice = open_transport(config.transport);
  if (!choice) return choice.status();
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->choice = std::move(choice.value());
  impl->info = impl->choice.transport->info();
  impl->local = impl->choice.transport->local_address();
  return std::unique_ptr<Reactor>(new Reactor(std::move(impl)));
}

Address Reactor::local_address() const { return impl_->local; }
const std::string& Reactor::backend() const { return impl_->choice.backend; }
const std::string& Reactor::backend_reason() const { return impl_->choice.reason; }
TransportInfo Reactor::transport_info() const { return impl_->info; }

Status Reactor::start(Node& node, TimeSource& time) {
  if (impl_->running.load(std::memory_order_relaxed)) {
    return Status::error(Code::kInvalidArgument, "reactor: already started");
  }
  if (impl_->loop) {
    return Status::error(Code::kInvalidArgument, "reactor: cannot be restarted; open another");
  }
  if (node.config().datagram_bytes_max > impl_->info.datagram_bytes_max) {
    return Status::error(Code::kInvalidArgument,
                         "reactor: the node's datagram_bytes_max (" +
                             std::to_string(node.config().datagram_bytes_max) +
                             ") exceeds the transport's (" +
                             std::to_string(impl_->info.datagram_bytes_max) + ")");
  }
  auto loop = ReactorLoop::create(impl_->config, *impl_->choice.transport, time);
  if (!loop) return loop.status();
  impl_->loop = std::move(loop.value());
  impl_->driven = std::make_unique<NodeDriven>(node);
  // Writes from application threads ring the doorbell, so they apply at once. The loop object
  // lives as long as the Reactor.
  node.set_waker([loop = impl_->loop.get()] { loop->wake(); });
  impl_->running.store(true, std::memory_order_relaxed);
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] {
    pthread_setname_np(pthread_self(), impl->config.thread_name.substr(0, 15).c_str());
    impl->pin_note =
        impl->config.pin ? pin_current_thread(impl->config.cpu) : "not pinned (disabled)";
    // Release: pin_note is written before start() returns it.
    impl->started.store(1, std::memory_order_release);
    impl->started.notify_all();
    impl->loop->run(*impl->driven);
  });
  // Acquire: see the thread's release above.
  impl_->started.wait(0, std::memory_order_acquire);
  return Status::ok();
}

void Reactor::stop() {
  if (!impl_ || !impl_->running.load(std::memory_order_relaxed)) return;
  impl_->loop->request_stop();
  impl_->thread.join();
  impl_->running.store(false, std::memory_order_relaxed);
}

bool Reactor::running() const { return impl_->running.load(std::memory_order_relaxed); }

void Reactor::wake() {
  if (impl_->loop) impl_->loop->wake();
}

Status Reactor::post(std::function<void()> fn) {
  if (!impl_->loop || !impl_->running.load(std::memory_order_relaxed)) {
    return Status::error(Code::kUnavailable, "reactor is not running");
  }
  return impl_->loop->post(std::move(fn));
}

std::string Reactor::pin_note() const {
  if (impl_->started.load(std::memory_order_acquire) == 0) return {};
  return impl_->pin_note;
}

ReactorCounters Reactor::counters() const {
  RUMOR_ASSERT(impl_->loop != nullptr);
  return impl_->loop->counters();
}

const TransportCounters& Reactor::transport_counters() const {
  return impl_->choice.transport->counters();
}

}  // namespace rumor
