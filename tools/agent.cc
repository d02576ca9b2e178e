#include "tools/agent.h"

#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "tools/admin_server.h"
#include "tools/client.h"
#include "tools/log.h"
#include "tools/service_notify.h"

namespace rumor::tools {

void LagHistogram::observe(double seconds) {
  if (seconds < 0) seconds = 0;
  std::size_t i = 0;
  while (i < kBoundsSeconds.size() && seconds > kBoundsSeconds[i]) ++i;
  ++buckets[i];
  ++count;
  sum_seconds += seconds;
  last_seconds = seconds;
}

Agent::Agent(AgentConfig config)
    : config_(std::move(config)),
      loaded_(config_),
      completions_(1024),
      changes_(config_.watch_queue_depth) {}

Agent::~Agent() {
  shutdown();
  if (admin_eventfd_ >= 0) ::close(admin_eventfd_);
}

std::string Agent::backend_line() const {
  return fmt::format("backend={} reason={}", reactor_->backend(),
                     logfmt_value(reactor_->backend_reason()));
}

void Agent::signal_admin() {
  // acq_rel: see admin_signaled_ in the header.
  if (admin_signaled_.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  (void)!::write(admin_eventfd_, &one, sizeof(one));
}

void Agent::admin_acknowledge() {
  std::uint64_t v = 0;
  (void)!::read(admin_eventfd_, &v, sizeof(v));
  admin_signaled_.exchange(false, std::memory_order_acq_rel);
}

void Agent::complete(std::unique_ptr<Completion> c) {
  // The admin thread has at most one request per connection and one refresh outstanding, so
  // the queue (1024) fills only after a long reactor stall, when the answers are late anyway:
  // their requests were answered with a timeout error. Drop them.
  if (!completions_.push(std::move(c))) return;
  signal_admin();
}

std::shared_ptr<const Snapshot> Agent::take_snapshot() {
  auto s = std::make_shared<Snapshot>();
  s->members = node_->members();
  s->node = node_->counters();
  // Every core's (core 0 live, the others as of their last turn).
  s->transport = reactor_->transport_counters_all_cores();
  s->reactor = reactor_->counters_all_cores();
  s->lag = lag_;
  if (durability_) s->durable = durability_->counters();
  s->changes_seen = changes_seen_;
  s->watch_dropped = watch_dropped_.load(std::memory_order_relaxed);
  s->taken_ms = clock_.now_ms();
  return s;
}

Status Agent::keyring_command(const std::string& action, const std::string& argument,
                              std::vector<std::string>* rows) {
  Node& n = *node_;
  // use and remove take a fingerprint or the key itself (base64).
  auto ref = [&]() -> std::string {
    if (argument.size() == 16) return argument;
    auto raw = decode_key(argument);
    return raw ? *raw : argument;
  };
  Status st;
  if (action == "install") {
    auto raw = decode_key(argument);
    if (!raw) return raw.status();
    st = n.install_key(*raw);
    if (st) raw_keys_[key_fingerprint(*raw)] = *raw;
  } else if (action == "use") {
    st = n.use_key(ref());
  } else if (action == "remove") {
    st = n.remove_key(ref());
  } else if (action == "mode") {
    auto m = parse_encryption_mode(argument);
    if (!m) return m.status();
    st = n.set_encryption(*m);
  } else if (action != "list") {
    return Status::error(Code::kInvalidArgument,
                         "keyring action '" + action +
                             "' is not list, install, use, remove or mode");
  }
  if (!st) return st;
  if (action != "list") {
    log(LogLevel::kInfo, "keyring changed", "action={} mode={} keys={}", action,
        encryption_mode_name(n.encryption()), n.keys().size());
    save_keyring();
  }
  *rows = {"mode", std::string(encryption_mode_name(n.encryption())), ""};
  for (const KeyInfo& k : n.keys()) {
    rows->insert(rows->end(), {"key", k.fingerprint, k.primary ? "primary" : "accepted"});
  }
  return Status::ok();
}

namespace {
// The admin server hands a command's arguments over newline-separated (no tag or address holds
// a newline), and the saved keyring is kept so; empty: none.
std::vector<std::string> split_lines(const std::string& args) {
  std::vector<std::string> out;
  for (std::size_t at = 0; !args.empty();) {
    const std::size_t nl = args.find('\n', at);
    out.push_back(args.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return out;
}
}  // namespace

void Agent::save_keyring() {
  if (!durability_) return;
  // "mode\nKEY\nKEY...": base64 keys, the primary first. The directory is mode 0700 and its
  // files 0600, like a key_file.
  std::string text(encryption_mode_name(node_->encryption()));
  auto keys = node_->keys();
  std::stable_partition(keys.begin(), keys.end(), [](const KeyInfo& k) { return k.primary; });
  for (const KeyInfo& k : keys) {
    if (auto it = raw_keys_.find(k.fingerprint); it != raw_keys_.end()) {
      text += "\n" + encode_key(it->second);
    }
  }
  durability_->put_meta("keyring", text);
}

int Agent::open_durability(NodeConfig& nc) {
  if (config_.data_dir.empty()) return 0;
  DurableConfig dc;
  dc.dir = config_.data_dir;
  dc.sync = parse_sync_mode(config_.sync).value();  // validate() checked it
  dc.sync_interval_ms = config_.sync_interval_ms;
  sync_always_ = dc.sync == SyncMode::kAlways;
  auto d = Durability::open(dc);
  if (!d) {
    std::fprintf(stderr, "rumor agent: --data-dir %s: %s\n", dc.dir.c_str(),
                 d.status().message().c_str());
    return d.status().code() == Code::kInvalidArgument ? 2 : 1;
  }
  durability_ = std::move(d.value());
  if (auto saved = durability_->get_meta("keyring")) {
    const std::vector<std::string> lines = split_lines(*saved);
    auto mode = lines.empty() ? Result<EncryptionMode>(Status::error(Code::kMalformed, "empty"))
                              : parse_encryption_mode(lines[0]);
    std::vector<std::string> keys;
    for (std::size_t i = 1; mode && i < lines.size(); ++i) {
      auto raw = decode_key(lines[i]);
      if (raw) keys.push_back(*raw);
    }
    if (!mode || keys.size() + 1 != lines.size()) {
      std::fprintf(stderr, "rumor agent: --data-dir %s: the saved keyring is damaged\n",
                   dc.dir.c_str());
      return 1;
    }
    if (!keys.empty() || *mode == EncryptionMode::kOff) {
      if (nc.keys != keys || nc.encryption != *mode) {
        log(LogLevel::kInfo, "keyring restored", "dir={} mode={} keys={} (the data directory's "
            "keyring, changed by `rumor keys`, wins over the configuration's)",
            logfmt_value(dc.dir), encryption_mode_name(*mode), keys.size());
      }
      nc.keys = std::move(keys);
      nc.encryption = *mode;
    }
  }
  return 0;
}

void Agent::write_command(std::unique_ptr<Completion> done, std::string value) {
  const std::uint32_t core = node_->core_of_key(done->key);
  auto apply = [this, core](Completion& d, const std::string& v) {
    d.status = d.op == Op::kSet ? node_->set(d.key, v) : node_->del(d.key);
    if (!d.status.is_ok()) return;
    if (auto e = node_->get_entry(d.key)) d.version = e->version;
    if (sync_always_) {
      d.wait_durable = true;
      d.durable_core = core;
      d.durable_ticket = durability_->ticket(core);
    }
  };
  if (core == 0 || !sync_always_) {
    apply(*done, value);
    complete(std::move(done));
    return;
  }
  // On the owner core the write applies at once and its ticket is that core's; the answer
  // comes back through core 0, the completion queue's one producer.
  Completion* raw = done.release();
  Status s = reactor_->post_core(core, [this, raw, apply, v = std::move(value)] {
    apply(*raw, v);
    if (!reactor_->post([this, raw] { complete(std::unique_ptr<Completion>(raw)); })) {
      delete raw;  // core 0's queue is full: the admin answers with a timeout
    }
  });
  if (!s) {
    done.reset(raw);
    done->status = s;
    complete(std::move(done));
  }
}

void Agent::on_change(const Change& c) {
  ++changes_seen_;
  if (!c.local) {
    const std::uint64_t now = clock_.now_ms();
    const std::uint64_t written = c.version.physical_ms();
    lag_.observe(now > written ? static_cast<double>(now - written) / 1000.0 : 0.0);
  }
  if (!watching_.load(std::memory_order_relaxed)) return;
  WatchedChange w{c.key, c.value, c.version, c.deleted, c.local};
  if (!changes_.push(std::move(w))) {
    watch_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  signal_admin();
}

void Agent::on_member(const MembershipEvent& e) {
  const Member& m = e.member;
  if (e.joined) {
    log(LogLevel::kInfo, "member joined", "name={} address={} state={} incarnation={}",
        logfmt_value(m.name), m.address.to_string(), member_state_name(m.state),
        m.incarnation);
    return;
  }
  const LogLevel level =
      m.state == MemberState::kAlive || m.state == MemberState::kLeft ? LogLevel::kInfo
                                                                      : LogLevel::kWarn;
  log(level, "member changed", "name={} address={} state={} previous={} incarnation={}",
      logfmt_value(m.name), m.address.to_string(), member_state_name(m.state),
      member_state_name(e.previous), m.incarnation);
}

int Agent::start() {
  set_log_level(config_.log_level);
  set_log_format(config_.log_format);
  // Gossip socket first: a taken port is the most common start-up failure.
  ReactorConfig rc = config_.reactor;
  rc.transport.bind = config_.bind;
  // A taken port must fail loudly: one socket without SO_REUSEPORT, or with several cores, a
  // probe bind without it before the cores' sockets share the port (Reactor::open).
  rc.transport.reuse_port = false;
  rc.cores = config_.cores;
  rc.transport.datagram_bytes_max =
      std::max(rc.transport.datagram_bytes_max, config_.node.datagram_bytes_max);
  auto reactor = Reactor::open(rc);
  // An io_uring socket is released by the kernel's ring teardown, after its process has exited:
  // an agent restarted at once (a failed start, a supervisor's restart) can find the port still
  // held for a few milliseconds. Wait a bounded while before calling it another agent's.
  for (int i = 0; i < 20 && !reactor && reactor.status().message().find("in use") !=
                                            std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    reactor = Reactor::open(rc);
  }
  if (!reactor) {
    std::string msg = reactor.status().message();
    if (msg.find("in use") != std::string::npos) {
      msg += " (another agent on this port? choose another --bind port)";
    }
    std::fprintf(stderr, "rumor agent: cannot bind gossip address %s: %s\n",
                 config_.bind.to_string().c_str(), msg.c_str());
    return 1;
  }
  reactor_ = std::move(reactor.value());

  // Node configuration: advertise, seeds, name.
  NodeConfig nc = config_.node;
  nc.store.owners = config_.cores;  // one owner core per reactor thread
  nc.advertise = config_.advertise.empty() ? reactor_->local_address() : config_.advertise;
  if (config_.advertise.empty()) {
    const Address& a = nc.advertise;
    const bool wildcard =
        (a.is_ipv4() &&
         reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr())->sin_addr.s_addr == 0) ||
        (a.is_ipv6() &&
         IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr())
                                      ->sin6_addr));
    if (wildcard) {
      std::fprintf(stderr,
                   "rumor agent: --bind %s is a wildcard address: peers cannot send to it; "
                   "give --advertise HOST:PORT\n",
                   a.to_string().c_str());
      return 2;
    }
  }
  if (nc.name.empty()) nc.name = nc.advertise.to_string();
  config_.node.name = nc.name;
  // Seeds (names among them) are resolved and handed to the node after it starts, by
  // join_attempt(), again at every retry: a DNS name may point elsewhere by then.
  nc.seeds.clear();
  advertise_ = nc.advertise;
  tags_ = parse_tags(config_.tags).value();  // validate() checked them
  if (!tags_.empty()) nc.metadata = encode_tags(tags_);
  if (const int rc = open_durability(nc); rc != 0) return rc;
  for (const std::string& k : nc.keys) raw_keys_[key_fingerprint(k)] = k;
  auto node = Node::create(nc, clock_);
  if (!node) {
    std::fprintf(stderr, "rumor agent: invalid node configuration: %s\n",
                 node.status().to_string().c_str());
    return 2;
  }
  node_ = std::move(node.value());
  node_->subscribe("", [this](const Change& c) { on_change(c); });
  node_->on_membership([this](const MembershipEvent& e) { on_member(e); });
  if (durability_) {
    if (Status s = durability_->restore(*node_, clock_); !s) {
      std::fprintf(stderr, "rumor agent: --data-dir %s: %s\n", config_.data_dir.c_str(),
                   s.message().c_str());
      return s.code() == Code::kInvalidArgument ? 2 : 1;
    }
    save_keyring();
    durability_->set_on_commit([this] { signal_admin(); });
    if (Status s = durability_->start(*node_); !s) {
      std::fprintf(stderr, "rumor agent: --data-dir %s: %s\n", config_.data_dir.c_str(),
                   s.message().c_str());
      return 1;
    }
    const DurableCounters dc = durability_->counters();
    log(LogLevel::kInfo, "data directory", "dir={} sync={} existed={} entries={} tombstones={} "
        "expired_tombstones={} file_bytes={}",
        logfmt_value(config_.data_dir), config_.sync, durability_->existed(), dc.loaded_entries,
        dc.loaded_tombstones, dc.expired_tombstones, dc.file_bytes);
  }

  admin_eventfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (admin_eventfd_ < 0) {
    std::fprintf(stderr, "rumor agent: eventfd: %s\n", std::strerror(errno));
    return 1;
  }
  auto admin = AdminServer::open(*this);
  if (!admin) {
    std::fprintf(stderr, "rumor agent: %s\n", admin.status().message().c_str());
    // A non-loopback address is a usage error; a taken port an operating one.
    return admin.status().code() == Code::kInvalidArgument ? 2 : 1;
  }
  admin_ = std::move(admin.value());

  if (Status s = reactor_->start(*node_, clock_); !s) {
    std::fprintf(stderr, "rumor agent: %s\n", s.to_string().c_str());
    return 1;
  }
  const TransportInfo ti = reactor_->transport_info();
  log(LogLevel::kInfo, "agent started", "name={} id={:016x} version={} preset={} label={}",
      logfmt_value(nc.name), node_->id(), RUMOR_VERSION_STRING, config_.preset,
      logfmt_value(nc.cluster_label));
  log(LogLevel::kInfo, "listening", "gossip={} advertise={} admin={} metrics={}",
      reactor_->local_address().to_string(), nc.advertise.to_string(),
      admin_->admin_address().to_string(),
      admin_->metrics_address() ? admin_->metrics_address()->to_string() : "off");
  log(LogLevel::kInfo, "io backend", "{} gso={} gro={} rcvbuf={} sndbuf={} datagram_max={}",
      backend_line(), ti.gso, ti.gro, ti.socket_rcvbuf_bytes, ti.socket_sndbuf_bytes,
      ti.datagram_bytes_max);
  log(LogLevel::kInfo, "reactor", "threads={} steering={} pin={}", reactor_->cores(),
      logfmt_value(reactor_->steering()), logfmt_value(reactor_->pin_note()));
  admin_->start();
  // Listening: the gossip socket is bound and the admin server accepts connections.
  notify_ready(fmt::format("listening: gossip {} admin {}", reactor_->local_address().to_string(),
                           admin_->admin_address().to_string()));

  seeds_ = config_.join;
  seeds_.insert(seeds_.end(), config_.retry_join.begin(), config_.retry_join.end());
  retry_wait_ms_ = config_.retry_interval_ms;
  if (!config_.join.empty()) {
    // --join: the agent serves only once it is in the cluster (or gives up after the timeout).
    const JoinResult joined = wait_for_join();
    if (joined == JoinResult::kInterrupted) return 0;  // run() sees the pending signal
    if (joined == JoinResult::kTimeout) {
      std::fprintf(stderr,
                   "rumor agent: could not join the cluster: no seed answered within %llu ms "
                   "(%s%s). Is an agent running there, with the same --label, and with one of "
                   "its encryption keys if it encrypts (keys mode send or require)? "
                   "--retry-join keeps trying in the background instead.\n",
                   static_cast<unsigned long long>(config_.join_timeout_ms),
                   comma_list(seeds_).c_str(),
                   last_resolve_errors_.empty() ? "" : ("; " + last_resolve_errors_).c_str());
      return 1;
    }
  } else if (!seeds_.empty()) {
    join_attempt();  // --retry-join: in the background, from run()
    next_retry_ns_ = monotonic_ns() + retry_wait_ms_ * 1'000'000ull;
  }
  notify_status(!config_.join.empty() ? "serving: joined the cluster"
                : seeds_.empty()       ? "serving (no seeds)"
                                       : "serving: joining in the background");
  write_ready_file();
  return 0;
}

std::vector<Address> resolve_seeds(const std::vector<std::string>& seeds,
                                   std::vector<std::string>* errors) {
  std::vector<Address> out;
  auto add = [&](const Address& a) {
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  };
  for (const std::string& seed : seeds) {
    if (auto a = Address::parse(seed)) {  // numeric: no resolver involved
      add(*a);
      continue;
    }
    auto hp = split_host_port(seed);
    if (!hp) {
      errors->push_back(fmt::format("{}: {}", seed, hp.status().message()));
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;  // IPv4 and IPv6: every address the name has
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(hp->second);
    const int rc = ::getaddrinfo(hp->first.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
      errors->push_back(fmt::format("{}: {}", seed, ::gai_strerror(rc)));
      continue;
    }
    for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      add(Address::from_sockaddr(ai->ai_addr, ai->ai_addrlen));
    }
    ::freeaddrinfo(res);
  }
  return out;
}

void Agent::join_attempt() {
  ++join_attempts_;
  std::vector<std::string> errors;
  std::vector<Address> addrs = resolve_seeds(seeds_, &errors);
  std::erase(addrs, advertise_);  // joining ourselves is a no-op
  last_resolve_errors_.clear();
  for (const std::string& e : errors) {
    last_resolve_errors_ += (last_resolve_errors_.empty() ? "" : "; ") + e;
  }
  std::vector<std::string> texts;
  for (const Address& a : addrs) texts.push_back(a.to_string());
  log(errors.empty() ? LogLevel::kInfo : LogLevel::kWarn, "join attempt",
      "attempt={} seeds={} addresses={}{}", join_attempts_, logfmt_value(comma_list(seeds_)),
      logfmt_value(comma_list(texts)),
      errors.empty() ? "" : " resolve_errors=" + logfmt_value(last_resolve_errors_));
  if (!addrs.empty()) {
    Node* node = node_.get();
    (void)reactor_->post([node, addrs = std::move(addrs)] { node->join(addrs); });
  }
}

std::uint64_t Agent::join_again() {
  retry_wait_ms_ = std::min(retry_wait_ms_ * 2, config_.retry_interval_max_ms);
  join_attempt();
  return monotonic_ns() + retry_wait_ms_ * 1'000'000ull;
}

int Agent::others_alive() {
  // Counted on the reactor thread (members() is a driver-thread call); -1 when the reactor did
  // not answer within 5 s.
  auto others = std::make_shared<std::atomic<int>>(-1);  // may outlive a wait that gave up
  Node* node = node_.get();
  const NodeId self = node_->id();
  Status s = reactor_->post([node, self, others] {
    int n = 0;
    for (const Member& m : node->members()) n += m.id != self && m.state == MemberState::kAlive;
    others->store(n, std::memory_order_release);  // the count is complete when seen
  });
  const std::uint64_t answer_by = monotonic_ns() + 5'000'000'000ull;
  while (s.is_ok() && others->load(std::memory_order_acquire) < 0 &&
         monotonic_ns() < answer_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return others->load(std::memory_order_acquire);
}

Agent::JoinResult Agent::wait_for_join() {
  // Polls the count of other live members until one appears or the timeout passes, resolving
  // the seeds again and asking them again with backoff. A signal ends the wait early.
  const std::uint64_t start = monotonic_ns();
  const std::uint64_t deadline = start + config_.join_timeout_ms * 1'000'000ull;
  join_attempt();
  std::uint64_t next_attempt = start + retry_wait_ms_ * 1'000'000ull;
  for (;;) {
    if (others_alive() > 0) {
      log(LogLevel::kInfo, "joined", "attempts={}", join_attempts_);
      return JoinResult::kJoined;
    }
    const std::uint64_t now = monotonic_ns();
    if (config_.join_timeout_ms != 0 && now >= deadline) return JoinResult::kTimeout;
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM)) {
      return JoinResult::kInterrupted;
    }
    if (now >= next_attempt) next_attempt = join_again();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool Agent::retry_tick() {
  if (next_retry_ns_ == 0) return true;
  if (others_alive() > 0) {
    log(LogLevel::kInfo, "joined", "attempts={}", join_attempts_);
    notify_status("serving: joined the cluster");
    next_retry_ns_ = 0;
    return true;
  }
  if (monotonic_ns() < next_retry_ns_) return true;
  if (config_.retry_max != 0 && join_attempts_ >= config_.retry_max) {
    log(LogLevel::kError, "could not join the cluster", "attempts={} seeds={}{}",
        join_attempts_, logfmt_value(comma_list(seeds_)),
        last_resolve_errors_.empty() ? ""
                                     : " resolve_errors=" + logfmt_value(last_resolve_errors_));
    return false;
  }
  log(LogLevel::kWarn, "no seed answered", "attempt={} waited_ms={}", join_attempts_,
      retry_wait_ms_);
  next_retry_ns_ = join_again();
  return true;
}


Status Agent::tags_command(const std::string& action, const std::string& args,
                           std::vector<std::string>* rows) {
  const std::vector<std::string> items = split_lines(args);
  Tags next = tags_;
  if (action == "set" || action == "del") {
    if (items.empty()) {
      return Status::error(Code::kInvalidArgument,
                           action == "set" ? "tags set takes KEY=VALUE..." : "tags del takes KEY...");
    }
    if (tags_.empty() && !node_->config().metadata.empty()) {
      return Status::error(Code::kInvalidArgument,
                           "this agent gossips free-form --metadata; tags would replace it");
    }
    for (const std::string& item : items) {
      if (action == "set") {
        auto kv = parse_tag(item);
        if (!kv) return Status::error(Code::kInvalidArgument, "tag " + item + ": " + kv.status().message());
        next[kv->first] = kv->second;
      } else {
        next.erase(item);
      }
    }
    if (Status s = node_->set_metadata(encode_tags(next)); !s) return s;
    tags_ = std::move(next);
    log(LogLevel::kInfo, "tags changed", "tags={}", logfmt_value(encode_tags(tags_)));
  } else if (action != "list") {
    return Status::error(Code::kInvalidArgument,
                         "tags action '" + action + "' is not list, set or del");
  }
  for (const auto& [k, v] : tags_) rows->insert(rows->end(), {k, v});
  return Status::ok();
}

Status Agent::join_command(const std::string& args, std::vector<std::string>* rows) {
  std::vector<Address> addrs;
  for (const std::string& text : split_lines(args)) {
    auto a = Address::parse(text);
    if (!a) return Status::error(Code::kInvalidArgument, text + ": " + a.status().message());
    addrs.push_back(*a);
    rows->push_back(a->to_string());
  }
  if (addrs.empty()) return Status::error(Code::kInvalidArgument, "join takes HOST:PORT...");
  node_->join(addrs);
  log(LogLevel::kInfo, "join requested", "by=admin addresses={}",
      logfmt_value(comma_list(*rows)));
  return Status::ok();
}

void Agent::request_stop() { ::kill(::getpid(), SIGTERM); }

Status Agent::reload(std::vector<std::string>* rows) {
  if (!config_source_) return Status::error(Code::kUnavailable, "no configuration to reload");
  if (reloading_.exchange(true, std::memory_order_acq_rel)) {
    return Status::error(Code::kBusy, "a reload is already running");
  }
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag.store(false, std::memory_order_release); }
  } done{reloading_};
  auto next = config_source_();
  if (!next) {
    log(LogLevel::kWarn, "reload refused", "error={}", logfmt_value(next.status().message()));
    return Status::error(Code::kInvalidArgument, "reload: " + next.status().message());
  }
  // Which keys differ: compare the two configurations' key listings line by line.
  auto listing = [](const AgentConfig& c) {
    std::map<std::string, std::string> out;
    std::string section;
    const std::string text = describe_keys(c);
    for (std::size_t at = 0; at < text.size();) {
      std::size_t nl = text.find('\n', at);
      if (nl == std::string::npos) nl = text.size();
      const std::string line = text.substr(at, nl - at);
      at = nl + 1;
      if (line.empty() || line[0] == '#') continue;
      if (line[0] == '[') {
        section = line.substr(1, line.size() - 2) + ".";
        continue;
      }
      const std::size_t eq = line.find(" = ");
      if (eq != std::string::npos) out[section + line.substr(0, eq)] = line.substr(eq);
    }
    return out;
  };
  const auto before = listing(loaded_), after = listing(*next);
  bool tags_changed = false;
  for (const auto& [key, value] : after) {
    auto it = before.find(key);
    if (it != before.end() && it->second == value) continue;
    const bool live = key == "log_level" || key == "log_format" || key == "tags" ||
                      key == "metadata";
    rows->insert(rows->end(), {live ? "applied" : "restart_needed", key});
    // Said before it applies: a new level may hide the line.
    log(live ? LogLevel::kInfo : LogLevel::kWarn, live ? "reload applied" : "reload: restart needed",
        "key={}", key);
    if (key == "log_level") {
      config_.log_level = loaded_.log_level = next->log_level;
      set_log_level(next->log_level);
    } else if (key == "log_format") {
      config_.log_format = loaded_.log_format = next->log_format;
      set_log_format(next->log_format);
    } else if (key == "tags" || key == "metadata") {
      tags_changed = true;
      loaded_.tags = next->tags;
      loaded_.node.metadata = next->node.metadata;
    }
  }
  if (tags_changed) {
    Tags tags = parse_tags(next->tags).value();  // validate() checked them
    const std::string metadata = tags.empty() ? next->node.metadata : encode_tags(tags);
    Node* node = node_.get();
    (void)reactor_->post([this, node, tags = std::move(tags), metadata] {
      if (Status s = node->set_metadata(metadata); !s) {
        log(LogLevel::kWarn, "reload: metadata refused", "error={}", logfmt_value(s.message()));
        return;
      }
      tags_ = tags;
    });
  }
  if (rows->empty()) rows->insert(rows->end(), {"unchanged", ""});
  return Status::ok();
}

void Agent::debug_activity() {
  // Reactor thread: what the node did since the last line, where it did anything.
  const NodeCounters n = node_->counters();
  const NodeCounters& p = debug_last_;
  auto d = [](std::uint64_t now, std::uint64_t before) { return now - before; };
  if (n.syncs_started != p.syncs_started || n.syncs_skipped != p.syncs_skipped) {
    log(LogLevel::kDebug, "sync sessions",
        "started={} completed={} by_sums={} by_riblt={} by_walk={} riblt_failed={} skipped={} "
        "entries_sent={} entries_received={} bytes={} rate_limited={} state_differs={}",
        d(n.syncs_started, p.syncs_started), d(n.syncs_completed, p.syncs_completed),
        d(n.syncs_by_sums, p.syncs_by_sums), d(n.syncs_by_riblt, p.syncs_by_riblt),
        d(n.syncs_by_walk, p.syncs_by_walk), d(n.sync_riblt_failed, p.sync_riblt_failed),
        d(n.syncs_skipped, p.syncs_skipped), d(n.sync_entries_sent, p.sync_entries_sent),
        d(n.sync_entries_received, p.sync_entries_received), d(n.sync_bytes, p.sync_bytes),
        d(n.sync_rate_limited, p.sync_rate_limited),
        d(n.state_sums_differ, p.state_sums_differ));
  }
  if (n.probes_failed != p.probes_failed || n.suspicions != p.suspicions ||
      n.refutations != p.refutations || n.deaths_declared != p.deaths_declared) {
    log(LogLevel::kDebug, "failure detector",
        "probes={} failed={} indirect={} suspicions={} refutations={} deaths={} health={}",
        d(n.probes_sent, p.probes_sent), d(n.probes_failed, p.probes_failed),
        d(n.indirect_probes, p.indirect_probes), d(n.suspicions, p.suspicions),
        d(n.refutations, p.refutations), d(n.deaths_declared, p.deaths_declared),
        n.local_health);
  }
  std::string drops;
  const std::pair<const char*, std::uint64_t> reasons[] = {
      {"bad_magic", d(n.drop_bad_magic, p.drop_bad_magic)},
      {"bad_version", d(n.drop_bad_version, p.drop_bad_version)},
      {"wrong_label", d(n.drop_wrong_label, p.drop_wrong_label)},
      {"truncated", d(n.drop_truncated, p.drop_truncated)},
      {"malformed", d(n.drop_malformed, p.drop_malformed)},
      {"unknown_type", d(n.drop_unknown_type, p.drop_unknown_type)},
      {"rate_limited", d(n.drop_rate_limited, p.drop_rate_limited)},
      {"sealed_refused", d(n.drop_sealed_refused, p.drop_sealed_refused)},
      {"unknown_key", d(n.drop_unknown_key, p.drop_unknown_key)},
      {"auth_failed", d(n.drop_auth_failed, p.drop_auth_failed)},
      {"replayed", d(n.drop_replayed, p.drop_replayed)},
      {"plaintext_refused", d(n.drop_plaintext_refused, p.drop_plaintext_refused)},
      {"updates_refused", d(n.updates_refused, p.updates_refused)},
      {"broadcasts_dropped", d(n.broadcasts_dropped, p.broadcasts_dropped)},
      {"unsent_no_buffer", d(n.sink_full, p.sink_full)},
  };
  for (const auto& [name, count] : reasons) {
    if (count != 0) drops += fmt::format("{}{}={}", drops.empty() ? "" : " ", name, count);
  }
  if (!drops.empty()) log(LogLevel::kDebug, "dropped", "{}", drops);
  debug_last_ = n;
}

void Agent::write_ready_file() {
  if (config_.ready_file.empty()) return;
  const std::string tmp = config_.ready_file + ".tmp";
  // Through the JSON library like every other JSON the tools print: a name may hold quotes.
  nlohmann::ordered_json j;
  j["name"] = text_or_base64(config_.node.name);
  j["id"] = fmt::format("{:016x}", node_->id());
  j["gossip"] = reactor_->local_address().to_string();
  j["admin"] = admin_->admin_address().to_string();
  j["metrics"] = admin_->metrics_address() ? admin_->metrics_address()->to_string() : "";
  j["backend"] = reactor_->backend();
  j["pid"] = static_cast<long>(::getpid());
  const std::string line = j.dump() + "\n";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    log(LogLevel::kWarn, "cannot write the ready file", "path={} error={}",
        logfmt_value(tmp), logfmt_value(std::strerror(errno)));
    return;
  }
  std::fputs(line.c_str(), f);
  std::fclose(f);
  std::rename(tmp.c_str(), config_.ready_file.c_str());  // atomic: readers see all or nothing
}

void Agent::shutdown() {
  if (admin_) {
    admin_->stop();
    admin_.reset();
  }
  if (reactor_ && reactor_->running()) {
    log(LogLevel::kInfo, "leaving", "name={}", logfmt_value(config_.node.name));
    reactor_->stop();  // node.stop() announces the leave and the reactor flushes it
    log(LogLevel::kInfo, "stopped", "name={}", logfmt_value(config_.node.name));
  }
  // The last changes (the leave's incarnation among them) reach the disk before the node goes.
  if (durability_) {
    durability_->stop();
    if (const std::string e = durability_->last_error(); !e.empty()) {
      log(LogLevel::kError, "data directory", "dir={} error={}", logfmt_value(config_.data_dir),
          logfmt_value(e));
    }
  }
  // The reactor references the node: destroy it first.
  reactor_.reset();
  durability_.reset();
  node_.reset();
}

int Agent::run() {
  // Signals go to this thread only: block them before any thread starts (threads inherit the
  // mask), then wait for them synchronously.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (const int rc = start(); rc != 0) {
    shutdown();
    return rc;
  }
  int sig = 0;
  for (;;) {
    // At debug level, every 5 s a summary of what the node did (on the reactor thread).
    if (log_enabled(LogLevel::kDebug) && monotonic_ns() >= next_debug_ns_) {
      next_debug_ns_ = monotonic_ns() + 5'000'000'000ull;
      (void)reactor_->post([this] { debug_activity(); });
    }
    // A background join (--retry-join) checks in every 100 ms, debug lines every second;
    // otherwise sleep until a signal.
    if (next_retry_ns_ != 0 || log_enabled(LogLevel::kDebug)) {
      if (!retry_tick()) {
        shutdown();
        return 1;
      }
      const timespec wait{next_retry_ns_ != 0 ? 0 : 1, next_retry_ns_ != 0 ? 100'000'000 : 0};
      sig = sigtimedwait(&set, nullptr, &wait);
      if (sig < 0) continue;
    } else if (sigwait(&set, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      log(LogLevel::kInfo, "SIGHUP: reloading the configuration", "");
      std::vector<std::string> rows;
      (void)reload(&rows);  // logs what it applied and what needs a restart
      continue;
    }
    break;
  }
  log(LogLevel::kInfo, "signal received", "signal={}", sig == SIGINT ? "SIGINT" : "SIGTERM");
  notify_stopping("leaving the cluster");
  shutdown();
  return 0;
}

}  // namespace rumor::tools
