// `rumor load --mode udp`: N nodes on real UDP, spread over --procs worker processes: forked
// here on loopback, or (--workers-listen) `rumor load-worker` processes that connect over TCP
// from other hosts, namespaces or pods and run their nodes on their own addresses.
// Each worker drives all of its nodes on one thread, every node with its own socket (its own
// Transport) and its own ReactorLoop — the loop the agent's reactor runs — turned without
// waiting, node after node; when a whole pass finds nothing to do, the worker sleeps a
// millisecond (or until the coordinator speaks).
//
// The coordinator (this process) forks the workers and talks to them over socketpairs (remote
// workers: their TCP connection, which first carries `config k=v...` with their share), one
// text line per command and one per answer:
//   start | members R | holding K V [K V...] | write I K V | crash I | restart I | down I |
//   up I T | partition AT | heal | addrs A... | stats | quit
// Loss (--loss) and partitions are applied where a node receives, so the sockets stay real.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/runtime/reactor.h"
#include "rumor/driver.h"
#include "tools/agent.h"
#include "tools/agent_config.h"
#include "tools/load.h"
#include "tools/load_common.h"

namespace rumor::tools {
namespace {

// ---- line protocol ---------------------------------------------------------------------------

class LineChannel {
 public:
  explicit LineChannel(int fd) : fd_(fd) {}
  ~LineChannel() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  bool send(const std::string& line) {
    std::string s = line + "\n";
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // A complete line if one is buffered or arrives within timeout_ms (-1: wait; bounded by the
  // caller's own deadline). nullopt on timeout or a closed peer (closed() tells).
  std::optional<std::string> receive(int timeout_ms) {
    for (;;) {
      const auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (closed_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      char tmp[65536];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        closed_ = true;
        continue;
      }
      buf_.append(tmp, static_cast<std::size_t>(n));
      timeout_ms = 0;  // what was there is read; do not wait again for the rest of a line
    }
  }
  bool closed() const { return closed_; }

 private:
  int fd_;
  std::string buf_;
  bool closed_ = false;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// ---- worker ----------------------------------------------------------------------------------

// Where a node meets the network: drops what the options say (injected loss, a partition),
// hands the rest to the node.
struct Filter {
  double loss = 0;
  std::size_t partition_at = 0;  // 0: none
  std::unordered_map<Address, std::size_t> index_by_address;
  Rng rng{1};
  std::uint64_t dropped = 0;

  bool pass(std::size_t receiver, const Address& from) {
    if (loss > 0 && rng.uniform() < loss) {
      ++dropped;
      return false;
    }
    if (partition_at == 0) return true;
    auto it = index_by_address.find(from);
    if (it == index_by_address.end()) return true;
    if ((it->second < partition_at) != (receiver < partition_at)) {
      ++dropped;
      return false;
    }
    return true;
  }
};

class LoadDriven final : public Driven {
 public:
  LoadDriven(Node& node, Filter& filter, std::size_t index)
      : node_(NodeDriver::of(node)), filter_(filter), index_(index) {}
  void start(PacketSink& out) override { node_.start(out); }
  void stop(PacketSink& out) override { node_.stop(out); }
  void receive(std::span<const ReceivedDatagram> batch, PacketSink& out) override {
    passed_.clear();
    for (const ReceivedDatagram& d : batch) {
      if (filter_.pass(index_, d.from)) passed_.push_back(d);
    }
    if (!passed_.empty()) node_.receive(0, passed_, out);
  }
  void tick(PacketSink& out) override { node_.tick(out); }
  std::uint64_t next_deadline_ms() const override { return node_.next_deadline_ms(); }
  std::size_t dispatch_events() override { return node_.dispatch_events(); }

 private:
  NodeDriver& node_;
  std::vector<ReceivedDatagram> passed_;
  Filter& filter_;
  std::size_t index_;
};

struct WorkerNode {
  std::size_t index = 0;
  Address address;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Node> node;
  std::unique_ptr<LoadDriven> driven;
  std::unique_ptr<ReactorLoop> loop;
  NodeCounters retired;  // counters of crashed incarnations
  bool started = false;
};

class Worker {
 public:
  Worker(const LoadOptions& o, std::size_t lo, std::size_t hi, LineChannel& ch)
      : o_(o), lo_(lo), hi_(hi), ch_(ch), fp_(o.nodes), directory_(std::make_shared<MemberDirectory>()) {
    filter_.loss = o.loss;
    filter_.rng = Rng(o.seed * 7 + lo);
  }

  Status open_all() {
    nodes_.resize(hi_ - lo_);
    for (std::size_t i = lo_; i < hi_; ++i) {
      WorkerNode& w = nodes_[i - lo_];
      w.index = i;
      if (Status s = open_socket(w, *Address::parse(o_.host + ":0")); !s) return s;
    }
    // The first worker holds the seeds: its first nodes are everyone's, its own included.
    if (seeds_.empty()) {
      for (std::size_t i = 0; i < o_.seeds && i < nodes_.size(); ++i) {
        seeds_.push_back(nodes_[i].address);
      }
    }
    for (WorkerNode& w : nodes_) {
      if (Status s = make_node(w); !s) return s;
    }
    return Status::ok();
  }

  std::string addresses() const {
    std::string s;
    for (const WorkerNode& w : nodes_) s += " " + w.address.to_string();
    return s;
  }

  void set_seeds(std::vector<Address> seeds) { seeds_ = std::move(seeds); }

  int run() {
    for (;;) {
      bool busy = false;
      for (WorkerNode& w : nodes_) {
        if (!w.started) continue;
        const std::uint64_t before = w.loop->counters().datagrams;
        w.loop->run_turn(*w.driven, 0);
        if (w.loop->counters().datagrams != before) busy = true;
      }
      // Commands: all that are waiting; when idle, wait for one up to a millisecond.
      for (;;) {
        auto line = ch_.receive(busy ? 0 : 1);
        if (!line) break;
        busy = true;
        if (!handle(*line)) return 0;
      }
      if (ch_.closed()) return 0;
    }
  }

 private:
  TransportConfig transport_config(const Address& bind) const {
    TransportConfig tc;
    tc.bind = bind;
    tc.recv_buffers = 64;  // a pool per node: 1,000 nodes with the agent's 1,024 would take GiBs
    tc.send_buffers = 128;
    tc.socket_buffer_bytes = 1u << 20;
    tc.reuse_port = true;  // a restarted node binds its port again
    tc.backend = o_.backend == "uring" ? Backend::kUring
                 : o_.backend == "mmsg" ? Backend::kMmsg
                                        : Backend::kAuto;
    return tc;
  }

  Status open_socket(WorkerNode& w, const Address& bind) {
    auto t = open_transport(transport_config(bind));
    if (!t) return t.status();
    backend_ = t->backend;
    w.transport = std::move(t->transport);
    w.address = w.transport->local_address();
    return Status::ok();
  }

  Status make_node(WorkerNode& w) {
    NodeConfig nc = preset_config(o_.preset);
    nc.name = fmt::format("node-{}", w.index);
    nc.advertise = w.address;
    nc.seed = o_.seed * 1'000'003 + w.index + 1;
    nc.store.write_queue_depth = 16;  // the coordinator's writes arrive on the driver thread
    nc.store.change_feed_depth = 256;
    if (o_.membership == "partial") {
      nc.membership = Membership::kPartial;
      nc.expected_nodes = static_cast<std::uint32_t>(std::min<std::size_t>(o_.nodes, UINT32_MAX));
    }
    for (const Address& s : seeds_) {
      if (s != w.address) nc.seeds.push_back(s);
    }
    auto n = Node::create(nc, clock_);
    if (!n) return n.status();
    w.node = std::move(n).value();
    // As in the simulator: a partial-view node's table holds itself only, and a shared
    // directory would give it arrays as long as the cluster.
    if (nc.membership == Membership::kFull) {
      NodeInternals::members(*w.node).share_directory(directory_);
    }
    fp_.name(w.index, w.node->id());
    fp_.watch(w.index, *w.node);
    w.driven = std::make_unique<LoadDriven>(*w.node, filter_, w.index);
    ReactorConfig rc;
    rc.transport = transport_config(w.address);
    rc.pin = false;
    rc.send_stash = 8;
    rc.command_queue_depth = 2;
    auto loop = ReactorLoop::create(rc, *w.transport, clock_);
    if (!loop) return loop.status();
    w.loop = std::move(loop).value();
    return Status::ok();
  }

  void crash(WorkerNode& w) {
    if (!w.loop) return;
    const NodeCounters k = w.node->counters();
    w.retired.packets_sent += k.packets_sent;
    w.retired.bytes_sent += k.bytes_sent;
    w.retired.broadcasts_sent += k.broadcasts_sent;
    w.retired.tree_payloads_sent += k.tree_payloads_sent;
    w.retired.sync_entries_sent += k.sync_entries_sent;
    w.retired.tree_duplicates += k.tree_duplicates;
    w.retired.tree_grafts += k.tree_grafts;
    w.retired.tree_prunes += k.tree_prunes;
    w.retired.view_failures += k.view_failures;
    // Gone without a word: no stop(), the socket closes with the "process".
    w.started = false;
    w.loop.reset();
    w.driven.reset();
    w.node.reset();
    w.transport.reset();
  }

  std::string tag_;  // the sequence tag of the command being handled

  WorkerNode* local(std::size_t i) {
    return i >= lo_ && i < hi_ ? &nodes_[i - lo_] : nullptr;
  }

  // A command may open with "@N", its sequence number: the reply repeats it, so a reply that
  // arrives after its command timed out is recognised as stale instead of answering the next.
  void reply(const std::string& msg) { ch_.send(tag_.empty() ? msg : tag_ + " " + msg); }

  bool handle(const std::string& tagged) {
    std::string line = tagged;
    tag_.clear();
    if (!line.empty() && line[0] == '@') {
      const std::size_t sp = line.find(' ');
      tag_ = line.substr(0, sp);
      line = sp == std::string::npos ? std::string() : line.substr(sp + 1);
    }
    const auto a = split(line);
    if (a.empty()) return true;
    const std::string& cmd = a[0];
    if (cmd == "quit") return false;
    if (cmd == "seeds") {
      std::vector<Address> seeds;
      for (std::size_t i = 1; i < a.size(); ++i) seeds.push_back(*Address::parse(a[i]));
      set_seeds(std::move(seeds));
      Status s = open_all();
      reply(s ? "ready" + addresses() : "error " + s.to_string());
      if (!s) return false;
    } else if (cmd == "start") {
      for (WorkerNode& w : nodes_) {
        w.loop->start(*w.driven);
        w.started = true;
      }
      reply("ok");
    } else if (cmd == "addrs") {
      for (std::size_t i = 1; i < a.size(); ++i) {
        filter_.index_by_address[*Address::parse(a[i])] = i - 1;
      }
      reply("ok");
    } else if (cmd == "members" && a.size() == 2) {
      const std::size_t up = std::stoull(a[1]);
      // Full: the node's table holds every running node. Partial: its active view holds at
      // least two peers (one in a cluster of two), as in the simulator; no node knows them all.
      const std::size_t others = up > 0 ? up - 1 : 0;
      const std::size_t need =
          o_.membership == "partial" ? std::min<std::size_t>(2, others) : others;
      std::size_t n = 0;
      for (WorkerNode& w : nodes_) {
        if (w.node && w.started && NodeDriver::of(*w.node).live_members() >= need) ++n;
      }
      reply(std::to_string(n));
    } else if (cmd == "holding") {
      LoadCluster::KeyValues kv;
      for (std::size_t i = 1; i + 1 < a.size(); i += 2) kv.emplace_back(a[i], a[i + 1]);
      std::size_t n = 0;
      for (WorkerNode& w : nodes_) {
        if (w.node && holds_all(*w.node, kv)) ++n;
      }
      reply(std::to_string(n));
    } else if (cmd == "write" && a.size() == 4) {
      WorkerNode* w = local(std::stoull(a[1]));
      Status s = w && w->node ? w->node->set(a[2], a[3])
                              : Status::error(Code::kUnavailable, "node not running here");
      reply(s ? "ok" : "error " + s.to_string());
    } else if (cmd == "crash" && a.size() == 2) {
      if (WorkerNode* w = local(std::stoull(a[1]))) crash(*w);
      fp_.set_up(std::stoull(a[1]), false);
      reply("ok");
    } else if (cmd == "restart" && a.size() == 3) {
      const std::size_t i = std::stoull(a[1]);
      fp_.set_up(i, true, std::stoull(a[2]));
      Status s = Status::ok();
      if (WorkerNode* w = local(i)) {
        s = open_socket(*w, w->address);
        if (s) s = make_node(*w);
        if (s) {
          w->loop->start(*w->driven);
          w->started = true;
        }
      }
      reply(s ? "ok" : "error " + s.to_string());
    } else if (cmd == "partition" && a.size() == 2) {
      filter_.partition_at = std::stoull(a[1]);
      fp_.set_partition(filter_.partition_at);
      reply("ok");
    } else if (cmd == "heal") {
      filter_.partition_at = 0;
      fp_.set_partition(0);
      reply("ok");
    } else if (cmd == "stats") {
      std::uint64_t packets = 0, bytes = 0, events = 0;
      // Payload copies, Plumtree's repairs and the views, as the simulator reports them; a
      // crashed node's counters stay in `retired`, its view is gone.
      LoadCluster::Stats p;
      bool first_view = true;
      auto add_copies = [&p](const NodeCounters& k) {
        p.broadcasts_sent += k.broadcasts_sent;
        p.tree_payloads += k.tree_payloads_sent;
        p.sync_entries_sent += k.sync_entries_sent;
        p.tree_duplicates += k.tree_duplicates;
        p.tree_grafts += k.tree_grafts;
        p.tree_prunes += k.tree_prunes;
        p.view_failures += k.view_failures;
      };
      for (WorkerNode& w : nodes_) {
        packets += w.retired.packets_sent;
        bytes += w.retired.bytes_sent;
        add_copies(w.retired);
        if (!w.started) continue;
        const NodeCounters k = w.node->counters();
        packets += k.packets_sent;
        bytes += k.bytes_sent;
        add_copies(k);
        p.view_active_min = first_view ? k.view_active : std::min(p.view_active_min, k.view_active);
        first_view = false;
        p.view_active_max = std::max(p.view_active_max, k.view_active);
        p.view_active_sum += k.view_active;
        p.view_passive_sum += k.view_passive;
        p.membership_bytes += NodeInternals::membership_bytes(*w.node);
        const ReactorCounters rc = w.loop->counters();
        events += rc.datagrams + rc.ticks;
      }
      std::string s = fmt::format("{} {} {} {} {}", packets, bytes, events, peak_rss_bytes(),
                                  backend_);
      s += fmt::format(" p:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}", p.broadcasts_sent,
                       p.tree_payloads, p.sync_entries_sent, p.tree_duplicates, p.tree_grafts,
                       p.tree_prunes, p.view_failures, first_view ? 0 : p.view_active_min,
                       p.view_active_max, p.view_active_sum, p.view_passive_sum,
                       p.membership_bytes, first_view ? 0 : 1);
      for (const auto& [id, inc] : fp_.false_suspicions()) s += fmt::format(" s:{}:{}", id, inc);
      for (const auto& [id, inc] : fp_.false_deaths()) s += fmt::format(" d:{}:{}", id, inc);
      reply(s);
    } else {
      reply("error unknown command: " + line);
    }
    return true;
  }

  const LoadOptions& o_;
  std::size_t lo_, hi_;
  LineChannel& ch_;
  SystemTimeSource clock_;
  Filter filter_;
  FalsePositives fp_;
  std::shared_ptr<MemberDirectory> directory_;
  std::vector<Address> seeds_;
  std::vector<WorkerNode> nodes_;
  std::string backend_;
};

// ---- coordinator -----------------------------------------------------------------------------

class UdpLoad final : public LoadCluster {
 public:
  explicit UdpLoad(const LoadOptions& o) : o_(o), up_(o.nodes, true) {}

  ~UdpLoad() override {
    for (auto& w : workers_) w.ch->send("quit");
    for (auto& w : workers_) {
      if (w.pid <= 0) continue;  // a remote worker leaves on "quit" or when the socket closes
      // Bounded: a worker that does not leave within two seconds is killed.
      for (int i = 0; i < 200; ++i) {
        if (::waitpid(w.pid, nullptr, WNOHANG) == w.pid) {
          w.pid = 0;
          break;
        }
        ::usleep(10'000);
      }
      if (w.pid > 0) {
        ::kill(w.pid, SIGKILL);
        ::waitpid(w.pid, nullptr, 0);
      }
    }
  }

  Status spawn() {
    if (!o_.workers_listen.empty()) return accept_workers();
    const std::size_t p = o_.procs;
    std::vector<std::string> seeds;
    for (std::size_t k = 0; k < p; ++k) {
      const std::size_t lo = o_.nodes * k / p, hi = o_.nodes * (k + 1) / p;
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return Status::error(Code::kIo, std::string("socketpair: ") + std::strerror(errno));
      }
      std::fflush(stdout);
      std::fflush(stderr);
      const pid_t pid = ::fork();
      if (pid < 0) return Status::error(Code::kIo, std::string("fork: ") + std::strerror(errno));
      if (pid == 0) {
        ::close(sv[0]);
        for (auto& w : workers_) ::close(w.ch->fd());
        LineChannel ch(sv[1]);
        Worker worker(o_, lo, hi, ch);
        const int rc = worker.run();
        std::fflush(stdout);
        ::_exit(rc);
      }
      ::close(sv[1]);
      workers_.push_back(Proc{pid, lo, hi, std::make_unique<LineChannel>(sv[0])});
      if (Status s = open_worker(k, seeds); !s) return s;
    }
    return finish_spawn();
  }

  // Worker k opens its nodes' sockets; worker 0 holds the seeds, so their addresses are known
  // before the others open theirs.
  Status open_worker(std::size_t k, std::vector<std::string>& seeds) {
    std::string cmd = "seeds";
    for (const std::string& s : seeds) cmd += " " + s;
    auto r = ask(workers_.back(), cmd, 60'000);
    if (!r) return r.status();
    auto words = split(*r);
    if (words.empty() || words[0] != "ready") {
      return Status::error(Code::kIo, "worker " + std::to_string(k) + ": " + *r);
    }
    for (std::size_t i = 1; i < words.size(); ++i) addrs_.push_back(words[i]);
    if (k == 0) {
      for (std::size_t i = 0; i < o_.seeds && i + 1 < words.size(); ++i) {
        seeds.push_back(words[i + 1]);
      }
    }
    return Status::ok();
  }

  Status finish_spawn() {
    std::string cmd = "addrs";
    for (const std::string& a : addrs_) cmd += " " + a;
    if (Status s = all(cmd); !s) return s;
    start_ns_ = monotonic_ns();
    return Status::ok();
  }

  // --workers-listen: K workers connect over TCP from anywhere (their own hosts, namespaces,
  // pods); each is told its share and the options its nodes need, then driven as a forked one.
  Status accept_workers() {
    auto addr = Address::parse(o_.workers_listen);
    if (!addr) return Status::error(Code::kInvalidArgument, "--workers-listen: " + addr.status().message());
    const int fd = ::socket(addr->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, addr->sockaddr_ptr(), addr->sockaddr_len()) != 0 ||
        ::listen(fd, 64) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      return Status::error(Code::kIo, fmt::format("--workers-listen {}: {}", o_.workers_listen,
                                                  std::strerror(err)));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    const Address bound = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    std::fprintf(stderr, "rumor load: waiting for %zu worker(s): rumor load-worker --coordinator %s\n",
                 o_.procs, bound.to_string().c_str());
    std::fflush(stderr);
    const std::size_t p = o_.procs;
    std::vector<std::string> seeds;
    const std::uint64_t deadline =
        monotonic_ns() + static_cast<std::uint64_t>(o_.worker_wait_s * 1e9);
    Status st = Status::ok();
    for (std::size_t k = 0; k < p && st; ++k) {
      pollfd pf{fd, POLLIN, 0};
      const std::uint64_t now = monotonic_ns();
      if (now >= deadline || ::poll(&pf, 1, static_cast<int>((deadline - now) / 1'000'000) + 1) <= 0) {
        st = Status::error(Code::kUnavailable,
                           fmt::format("only {} of {} workers connected within {} s", k, p,
                                       o_.worker_wait_s));
        break;
      }
      const int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        --k;
        continue;
      }
      const std::size_t lo = o_.nodes * k / p, hi = o_.nodes * (k + 1) / p;
      workers_.push_back(Proc{0, lo, hi, std::make_unique<LineChannel>(c)});
      // The options a worker's nodes need; everything else stays here.
      const std::string config = fmt::format(
          "config nodes={} seeds={} preset={} seed={} loss={} backend={} membership={} lo={} "
          "hi={}",
          o_.nodes, o_.seeds, o_.preset, o_.seed, o_.loss, o_.backend, o_.membership, lo, hi);
      if (!workers_.back().ch->send(config)) {
        st = Status::error(Code::kIo, "worker " + std::to_string(k) + " went away");
        break;
      }
      st = open_worker(k, seeds);
      if (st) {
        std::fprintf(stderr, "rumor load: worker %zu of %zu connected: nodes %zu..%zu\n", k + 1,
                     p, lo, hi - 1);
      }
    }
    ::close(fd);
    if (!st) return st;
    return finish_spawn();
  }

  std::size_t size() const override { return o_.nodes; }
  std::uint64_t elapsed_ms() override { return (monotonic_ns() - start_ns_) / 1'000'000; }
  void run_for(std::uint64_t ms) override {
    const std::uint64_t end = monotonic_ns() + ms * 1'000'000;
    while (monotonic_ns() < end) {
      ::usleep(static_cast<useconds_t>(std::min<std::uint64_t>(
          (end - monotonic_ns()) / 1000 + 1, 10'000)));
    }
  }
  void start_all() override { (void)all("start"); }
  std::size_t running() override {
    std::size_t n = 0;
    for (bool u : up_) n += u ? 1 : 0;
    return n;
  }
  std::size_t members_complete() override { return sum("members " + std::to_string(running())); }
  std::size_t holding(const KeyValues& kv) override {
    std::string cmd = "holding";
    for (const auto& [k, v] : kv) cmd += " " + k + " " + v;
    return sum(cmd);
  }
  Status write(std::size_t i, const std::string& key, const std::string& value) override {
    auto r = ask(owner(i), fmt::format("write {} {} {}", i, key, value), 5'000);
    if (!r) return r.status();
    return *r == "ok" ? Status::ok() : Status::error(Code::kIo, *r);
  }
  void crash(std::size_t i) override {
    up_[i] = false;
    (void)all(fmt::format("crash {}", i));
  }
  void restart(std::size_t i) override {
    up_[i] = true;
    SystemTimeSource clock;
    (void)all(fmt::format("restart {} {}", i, clock.now_ms()));
  }
  void partition(std::size_t at) override { (void)all(fmt::format("partition {}", at)); }
  void heal() override { (void)all("heal"); }

  Stats stats() override {
    Stats s;
    std::set<std::string> sus, dead;
    bool views_seen = false;
    last_stats_.resize(workers_.size());
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      // A worker too busy to answer in time (its loops saturate the CPU) counts with its last
      // answer: the counters only grow, so the sums never go backwards, and the summary says
      // how many answers were late.
      auto r = ask(workers_[i], "stats", 5'000);
      std::vector<std::string> a = r ? split(*r) : std::vector<std::string>{};
      if (a.size() < 5) {
        ++s.late_answers;
        a = last_stats_[i];
        if (a.size() < 5) continue;
      } else {
        last_stats_[i] = a;
      }
      s.packets_sent += std::stoull(a[0]);
      s.bytes_sent += std::stoull(a[1]);
      s.events += std::stoull(a[2]);
      const std::uint64_t rss = std::stoull(a[3]);
      s.peak_rss_bytes = std::max(s.peak_rss_bytes, rss);
      s.total_rss_bytes += rss;
      backend_ = a[4];
      for (std::size_t k = 5; k < a.size(); ++k) {
        if (a[k].rfind("p:", 0) == 0) {
          add_worker_copies(s, a[k], views_seen);
          continue;
        }
        (a[k][0] == 's' ? sus : dead).insert(a[k]);
      }
    }
    s.false_suspicions = sus.size();
    s.false_deaths = dead.size();
    return s;
  }
  // A worker's "p:" token: its payload copies, Plumtree's repairs and its nodes' views.
  void add_worker_copies(Stats& s, const std::string& token, bool& views_seen) {
    std::vector<std::uint64_t> v;
    for (std::size_t at = 2; at <= token.size();) {
      const std::size_t end = std::min(token.find(':', at), token.size());
      v.push_back(std::strtoull(token.substr(at, end - at).c_str(), nullptr, 10));
      at = end + 1;
    }
    if (v.size() < 13) return;
    s.broadcasts_sent += v[0];
    s.tree_payloads += v[1];
    s.sync_entries_sent += v[2];
    s.tree_duplicates += v[3];
    s.tree_grafts += v[4];
    s.tree_prunes += v[5];
    s.view_failures += v[6];
    if (v[12] != 0) {  // the worker has a running node
      s.view_active_min = views_seen ? std::min(s.view_active_min, v[7]) : v[7];
      views_seen = true;
    }
    s.view_active_max = std::max(s.view_active_max, v[8]);
    s.view_active_sum += v[9];
    s.view_passive_sum += v[10];
    s.membership_bytes += v[11];
  }
  std::string describe() override {
    return fmt::format("udp {}, {} worker process(es), {} backend, one socket and one "
                       "reactor loop per node",
                       o_.workers_listen.empty() ? "on loopback"
                                                 : "with workers connected to " + o_.workers_listen,
                       workers_.size(), backend_.empty() ? "?" : backend_);
  }

 private:
  struct Proc {
    pid_t pid;
    std::size_t lo, hi;
    std::unique_ptr<LineChannel> ch;
  };

  Proc& owner(std::size_t i) {
    for (auto& w : workers_) {
      if (i >= w.lo && i < w.hi) return w;
    }
    return workers_.back();
  }
  // Every command carries a sequence tag and only the reply with that tag answers it: a late
  // reply to a command that timed out is dropped here instead of being read as the next one's.
  bool send_tagged(Proc& w, const std::string& cmd, std::uint64_t seq) {
    return w.ch->send("@" + std::to_string(seq) + " " + cmd);
  }
  std::optional<std::string> receive_tagged(Proc& w, std::uint64_t seq, int timeout_ms) {
    const std::string tag = "@" + std::to_string(seq) + " ";
    const std::uint64_t end = monotonic_ns() + static_cast<std::uint64_t>(timeout_ms) * 1'000'000;
    for (;;) {
      const std::uint64_t now = monotonic_ns();
      if (now >= end) return std::nullopt;
      auto r = w.ch->receive(static_cast<int>((end - now) / 1'000'000) + 1);
      if (!r) return std::nullopt;
      if (r->rfind(tag, 0) == 0) return r->substr(tag.size());
    }
  }
  Result<std::string> ask(Proc& w, const std::string& cmd, int timeout_ms) {
    const std::uint64_t seq = ++seq_;
    if (!send_tagged(w, cmd, seq)) return Status::error(Code::kIo, "worker gone");
    auto r = receive_tagged(w, seq, timeout_ms);
    if (!r) return Status::error(Code::kIo, "worker did not answer: " + cmd.substr(0, 40));
    return *r;
  }
  Status all(const std::string& cmd) {
    const std::uint64_t seq = ++seq_;
    for (auto& w : workers_) {
      if (!send_tagged(w, cmd, seq)) return Status::error(Code::kIo, "worker gone");
    }
    Status st = Status::ok();
    for (auto& w : workers_) {  // every worker's reply is read, even after an error
      auto r = receive_tagged(w, seq, 30'000);
      if (!r && st) st = Status::error(Code::kIo, "worker did not answer: " + cmd.substr(0, 40));
      if (r && r->rfind("error", 0) == 0 && st) st = Status::error(Code::kIo, *r);
    }
    return st;
  }
  std::size_t sum(const std::string& cmd) {
    const std::uint64_t seq = ++seq_;
    for (auto& w : workers_) (void)send_tagged(w, cmd, seq);
    std::size_t n = 0;
    for (auto& w : workers_) {
      auto r = receive_tagged(w, seq, 30'000);
      if (r) n += std::strtoull(r->c_str(), nullptr, 10);
    }
    return n;
  }
  std::uint64_t seq_ = 0;

  const LoadOptions& o_;
  std::vector<Proc> workers_;
  std::vector<std::vector<std::string>> last_stats_;  // each worker's last stats answer
  std::vector<std::string> addrs_;
  std::vector<bool> up_;
  std::uint64_t start_ns_ = 0;
  std::string backend_;
};

}  // namespace

int run_load_worker(const LoadWorkerOptions& wo) {
  if (auto hp = split_host_port(wo.coordinator); !hp) {
    std::fprintf(stderr, "rumor load-worker: --coordinator %s: %s\n", wo.coordinator.c_str(),
                 hp.status().message().c_str());
    return 2;
  }
  // The coordinator may not be listening yet, nor its name resolvable (a Kubernetes Service
  // whose pod is starting): resolve and connect again until the bound.
  const std::uint64_t deadline =
      monotonic_ns() + static_cast<std::uint64_t>(wo.connect_timeout_s * 1e9);
  int fd = -1;
  for (;;) {
    std::vector<std::string> errors;
    const std::vector<Address> addrs = resolve_seeds({wo.coordinator}, &errors);
    std::string why = errors.empty() ? "no address" : errors[0];
    for (const Address& a : addrs) {
      fd = ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0 && ::connect(fd, a.sockaddr_ptr(), a.sockaddr_len()) == 0) break;
      why = a.to_string() + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    if (fd >= 0) break;
    if (monotonic_ns() >= deadline) {
      std::fprintf(stderr, "rumor load-worker: no coordinator at %s within %g s (%s)\n",
                   wo.coordinator.c_str(), wo.connect_timeout_s, why.c_str());
      return 1;
    }
    ::usleep(200'000);
  }
  std::string host = wo.host;
  if (host.empty()) {  // the address the coordinator reaches us by is the one peers can too
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    host = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string();
    host = host.substr(0, host.rfind(':'));
  }
  LineChannel ch(fd);
  auto line = ch.receive(static_cast<int>(wo.connect_timeout_s * 1000));
  const auto words = line ? split(*line) : std::vector<std::string>{};
  if (words.empty() || words[0] != "config") {
    std::fprintf(stderr, "rumor load-worker: the coordinator at %s sent no configuration\n",
                 wo.coordinator.c_str());
    return 1;
  }
  LoadOptions o;
  o.mode = "udp";
  o.host = host;
  std::size_t lo = 0, hi = 0;
  for (std::size_t i = 1; i < words.size(); ++i) {
    const std::size_t eq = words[i].find('=');
    if (eq == std::string::npos) continue;
    const std::string k = words[i].substr(0, eq), v = words[i].substr(eq + 1);
    if (k == "nodes") o.nodes = std::stoull(v);
    if (k == "seeds") o.seeds = std::stoull(v);
    if (k == "preset") o.preset = v;
    if (k == "seed") o.seed = std::stoull(v);
    if (k == "loss") o.loss = std::stod(v);
    if (k == "backend") o.backend = v;
    if (k == "membership") o.membership = v;
    if (k == "lo") lo = std::stoull(v);
    if (k == "hi") hi = std::stoull(v);
  }
  if (o.nodes == 0 || hi <= lo || hi > o.nodes) {
    std::fprintf(stderr, "rumor load-worker: bad configuration: %s\n", line->c_str());
    return 1;
  }
  std::fprintf(stderr, "rumor load-worker: nodes %zu..%zu of %zu on %s\n", lo, hi - 1, o.nodes,
               host.c_str());
  Worker worker(o, lo, hi, ch);
  return worker.run();
}

Result<std::unique_ptr<LoadCluster>> make_udp_cluster(const LoadOptions& o) {
  auto c = std::make_unique<UdpLoad>(o);
  if (Status s = c->spawn(); !s) return s;
  return std::unique_ptr<LoadCluster>(std::move(c));
}

}  // namespace rumor::tools
