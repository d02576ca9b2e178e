// The reactor loop (engine/runtime/reactor.h): one turn = poll, reap, tick, commands, dispatch. Nothing
// here knows about rumor::Node; engine/runtime/reactor.cc binds the loop to a Node and a thread.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "base/assert.h"
#include "base/clock.h"
#include "engine/runtime/reactor.h"

namespace rumor {

Status ReactorConfig::validate() const {
  if (transport.bind.empty()) {
    return Status::error(Code::kInvalidArgument, "reactor: transport.bind is required");
  }
  if (receive_batch == 0 || receive_batch > 4096) {
    return Status::error(Code::kInvalidArgument, "reactor: receive_batch must be 1..4096");
  }
  if (receive_batches_per_turn_max == 0) {
    return Status::error(Code::kInvalidArgument, "reactor: receive_batches_per_turn_max >= 1");
  }
  if (send_stash == 0 || send_stash > 1024) {
    return Status::error(Code::kInvalidArgument, "reactor: send_stash must be 1..1024");
  }
  if (command_queue_depth < 2 || (command_queue_depth & (command_queue_depth - 1)) != 0) {
    return Status::error(Code::kInvalidArgument,
                         "reactor: command_queue_depth must be a power of two >= 2");
  }
  if (commands_per_turn_max == 0) {
    return Status::error(Code::kInvalidArgument, "reactor: commands_per_turn_max >= 1");
  }
  if (idle_wait_ms_max == 0) {
    return Status::error(Code::kInvalidArgument, "reactor: idle_wait_ms_max >= 1");
  }
  return Status::ok();
}

// ---- TransportSink ----

TransportSink::TransportSink(Transport& transport, std::uint32_t stash_max)
    : transport_(transport), stash_(stash_max) {}

TransportSink::~TransportSink() { release_stash(); }

std::span<std::byte> TransportSink::buffer() {
  if (has_current_) return {current_.data, current_.capacity};  // asked again, not committed
  if (stash_len_ == 0) {
    stash_len_ = transport_.acquire(stash_);
    if (stash_len_ == 0) {
      // The pool is empty: completed sends come back when the kernel is entered. One
      // non-blocking poll submits what is queued and reaps completions (receives it reaps are
      // staged for the next receive()).
      (void)transport_.poll(0, 1);
      stash_len_ = transport_.acquire(stash_);
      if (stash_len_ == 0) {
        ++empty_buffers_;
        return {};
      }
    }
  }
  current_ = stash_[--stash_len_];
  has_current_ = true;
  return {current_.data, current_.capacity};
}

void TransportSink::commit(const Address& to, std::size_t len) {
  RUMOR_ASSERT(has_current_);
  RUMOR_ASSERT(len <= current_.capacity);
  has_current_ = false;
  current_.len = static_cast<std::uint32_t>(len);
  current_.peer = to;
  ++committed_;
  // send() only queues (the loop's next poll submits); a refusal is counted by the transport
  // and the buffer reclaimed by it.
  if (!transport_.send({&current_, 1}).is_ok()) ++refused_;
}

void TransportSink::release_stash() {
  if (has_current_) {
    stash_[stash_len_++] = current_;
    has_current_ = false;
  }
  if (stash_len_ > 0) transport_.release({stash_.data(), stash_len_});
  stash_len_ = 0;
}

// ---- ReactorLoop ----

namespace {

// A UDP socket connected to the loop's own address. Wildcard binds are reached via loopback.
Result<int> open_doorbell(const Address& local) {
  Address target = local;
  if (target.is_ipv4()) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(target.sockaddr_ptr());
    if (sin->sin_addr.s_addr == htonl(INADDR_ANY)) {
      target = Address::ipv4(INADDR_LOOPBACK, local.port());
    }
  } else if (target.is_ipv6()) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(target.sockaddr_ptr());
    if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
      std::array<std::uint8_t, 16> lo{};
      lo[15] = 1;
      target = Address::ipv6(lo, local.port());
    }
  } else {
    return Status::error(Code::kInvalidArgument, "reactor: transport has no local address");
  }
  const int fd = ::socket(target.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::error(Code::kIo, std::string("reactor: doorbell socket: ") +
                                        std::strerror(errno));
  }
  if (::connect(fd, target.sockaddr_ptr(), target.sockaddr_len()) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::error(Code::kIo, "reactor: doorbell connect to " + target.to_string() +
                                        ": " + std::strerror(err));
  }
  return fd;
}

}  // namespace

Result<std::unique_ptr<ReactorLoop>> ReactorLoop::create(const ReactorConfig& config,
                                                         Transport& transport, TimeSource& time,
                                                         int doorbell_shard) {
  if (Status s = config.validate(); !s) return s;
  auto fd = open_doorbell(transport.local_address());
  if (!fd) return fd.status();
  return std::unique_ptr<ReactorLoop>(
      new ReactorLoop(config, transport, time, *fd, doorbell_shard));
}

namespace {
constexpr std::array<std::byte, 4> kDoorbellMagic = {std::byte{0xd0}, std::byte{0x0b},
                                                     std::byte{0xe1}, std::byte{0x1a}};
}  // namespace

bool ReactorLoop::is_doorbell(std::span<const std::byte> d) {
  return d.empty() || (d.size() == kDoorbellBytes &&
                       std::equal(kDoorbellMagic.begin(), kDoorbellMagic.end(), d.begin()));
}

ReactorLoop::ReactorLoop(const ReactorConfig& config, Transport& transport, TimeSource& time,
                         int doorbell, int doorbell_shard)
    : config_(config),
      transport_(transport),
      time_(time),
      sink_(transport, config.send_stash),
      batch_(config.receive_batch),
      commands_(config.command_queue_depth),
      doorbell_fd_(doorbell) {
  received_.reserve(config.receive_batch);
  if (doorbell_shard >= 0) {
    std::copy(kDoorbellMagic.begin(), kDoorbellMagic.end(), doorbell_.begin());
    const bool named = write_shard_id(doorbell_, static_cast<std::uint16_t>(doorbell_shard));
    RUMOR_ASSERT(named);  // kDoorbellBytes holds the shard field
    doorbell_len_ = kDoorbellBytes;
  }
}

ReactorLoop::~ReactorLoop() {
  closed_.store(true, std::memory_order_release);
  // Commands never run are destroyed here, on the thread that owns the loop.
  while (commands_.pop()) {
  }
  sink_.release_stash();
  if (doorbell_fd_ >= 0) ::close(doorbell_fd_);
}

void ReactorLoop::wake() {
  // seq_cst (both): see the protocol in the header. The count is what the loop checks before
  // sleeping; parked_ is what we check before ringing.
  wakes_.fetch_add(1, std::memory_order_seq_cst);
  if (!parked_.load(std::memory_order_seq_cst)) return;
  // acq_rel: one ringer per park; the loop clears rung_ after it wakes.
  if (rung_.exchange(true, std::memory_order_acq_rel)) return;
  doorbells_rung_.fetch_add(1, std::memory_order_relaxed);
  // A zero-length datagram (or one naming this loop's shard); MSG_DONTWAIT: a full socket
  // buffer means the loop has plenty to wake it already.
  (void)::send(doorbell_fd_, doorbell_.data(), doorbell_len_, MSG_DONTWAIT);
}

Status ReactorLoop::post(std::function<void()> fn) {
  // Acquire: pairs with the release in the destructor / stop path.
  if (closed_.load(std::memory_order_acquire)) {
    return Status::error(Code::kUnavailable, "reactor is not running");
  }
  if (!commands_.push(std::move(fn))) {
    return Status::error(Code::kBusy, "reactor command queue is full");
  }
  wake();
  return Status::ok();
}

void ReactorLoop::request_stop() {
  // Release: whatever the requester did before is visible to the loop when it sees the flag.
  stop_.store(true, std::memory_order_release);
  wake();
}

std::size_t ReactorLoop::run_commands(std::size_t max) {
  std::size_t n = 0;
  while (n < max) {
    auto fn = commands_.pop();
    if (!fn) break;
    (*fn)();
    ++n;
  }
  c_.commands_run += n;
  return n;
}

void ReactorLoop::reap(Driven& driven) {
  for (std::uint32_t round = 0; round < config_.receive_batches_per_turn_max; ++round) {
    const std::size_t n = transport_.receive(batch_);
    if (n == 0) break;
    ++c_.batches;
    c_.batch_max = std::max<std::uint64_t>(c_.batch_max, n);
    received_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const Datagram& d = batch_[i];
      if (is_doorbell({d.data, d.len})) {
        ++c_.doorbells_received;  // no rumor packet is this short: a wake-up, nothing to do
        continue;
      }
      received_.push_back(ReceivedDatagram{d.peer, {d.data, d.len}});
    }
    c_.datagrams += received_.size();
    // One call per batch: the node merges the entries of all of them as one store batch.
    if (!received_.empty()) driven.receive(received_, sink_);
    transport_.release({batch_.data(), n});
    if (n < batch_.size()) break;
  }
}

void ReactorLoop::start(Driven& driven) {
  RUMOR_ASSERT(!started_);
  started_ = true;
  driven.start(sink_);
  c_.events_dispatched += driven.dispatch_events();
}

void ReactorLoop::run_turn(Driven& driven, std::uint64_t wait_ms_max) {
  RUMOR_ASSERT(started_);
  // How long to sleep: until the next deadline, capped; not at all if someone woke us since the
  // last turn began (wakes_ moved) — checked after announcing parked_, see the header.
  std::uint64_t wait_ms = 0;
  {
    const std::uint64_t now = time_.now_ms();
    const std::uint64_t deadline = driven.next_deadline_ms();
    wait_ms = deadline > now ? deadline - now : 0;
    wait_ms = std::min<std::uint64_t>({wait_ms, config_.idle_wait_ms_max, wait_ms_max});
  }
  if (backlog_) wait_ms = 0;  // commands left over from the last turn
  if (wait_ms > 0) {
    parked_.store(true, std::memory_order_seq_cst);
    if (wakes_.load(std::memory_order_seq_cst) != wakes_seen_ ||
        stop_.load(std::memory_order_acquire)) {
      wait_ms = 0;
    }
  }
  const std::uint64_t received_before = c_.datagrams + c_.doorbells_received;
  if (!transport_.poll(wait_ms * 1'000'000u, 1).is_ok()) ++c_.poll_errors;
  parked_.store(false, std::memory_order_relaxed);
  // Release: the next ringer must not see a stale true once we are running again; a ring that
  // lands after this simply costs one more (harmless) doorbell.
  rung_.store(false, std::memory_order_release);
  // Acquire: commands and writes posted before this count are visible to this turn.
  wakes_seen_ = wakes_.load(std::memory_order_acquire);

  ++c_.turns;
  reap(driven);
  driven.tick(sink_);
  ++c_.ticks;
  backlog_ = run_commands(config_.commands_per_turn_max) == config_.commands_per_turn_max;
  c_.events_dispatched += driven.dispatch_events();
  if (c_.datagrams + c_.doorbells_received == received_before) ++c_.idle_turns;
  publish();
}

void ReactorLoop::stop(Driven& driven) {
  RUMOR_ASSERT(started_);
  // Commands posted before the stop still run (their posters may be waiting for an answer).
  run_commands(config_.command_queue_depth);
  closed_.store(true, std::memory_order_release);
  driven.stop(sink_);
  c_.events_dispatched += driven.dispatch_events();
  flush_after_stop();
  sink_.release_stash();
  started_ = false;
}

void ReactorLoop::flush_after_stop() {
  // The leave announcement must reach the network before the socket closes: submit, then wait
  // (bounded) until the transport has accounted for every datagram handed to it.
  const TransportCounters& tc = transport_.counters();
  auto accounted = [&] {
    return tc.datagrams_sent + tc.drop_count(DropReason::kSendFailed) +
           tc.drop_count(DropReason::kOversized) + tc.drop_count(DropReason::kBadAddress);
  };
  const std::uint64_t target_queued = sink_.committed();
  const std::uint64_t deadline = monotonic_ns() + config_.stop_flush_ms_max * 1'000'000ull;
  (void)transport_.flush();
  // The transport's counters include every datagram ever sent; we wait for ours: all commits
  // since the transport opened must be accounted for.
  while (accounted() < target_queued && monotonic_ns() < deadline) {
    (void)transport_.poll(1'000'000u, 1);
    // Received datagrams are no longer wanted; hand them straight back.
    for (;;) {
      const std::size_t n = transport_.receive(batch_);
      if (n == 0) break;
      transport_.release({batch_.data(), n});
    }
  }
}

namespace {
}  // namespace

void ReactorLoop::publish() {
  pub_reactor_.publish(counters());
  pub_transport_.publish(transport_.counters());
}

ReactorCounters ReactorLoop::published_counters() const {
  return pub_reactor_.load();
}

TransportCounters ReactorLoop::published_transport_counters() const {
  return pub_transport_.load();
}

ReactorCounters ReactorLoop::counters() const {
  ReactorCounters c = c_;
  c.doorbells_rung = doorbells_rung_.load(std::memory_order_relaxed);
  c.sink_empty = sink_.empty_buffers();
  c.send_refused = sink_.refused();
  return c;
}

void ReactorLoop::run(Driven& driven) {
  start(driven);
  while (!stop_requested()) run_turn(driven, config_.idle_wait_ms_max);
  stop(driven);
}

}  // namespace rumor
