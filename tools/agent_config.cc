// Configuration keys: one table maps each key to the field it sets, its type and its meaning.
#include "tools/agent_config.h"

#include "rumor/durable.h"

#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <functional>
#include <limits>

#if __has_include(<toml++/toml.h>)
#include <toml++/toml.h>
#define RUMOR_HAVE_TOML 1
#endif

namespace rumor::tools {

AgentConfig::AgentConfig() {
  bind = Address::ipv4(0x7f000001, 7946);
  admin = Address::ipv4(0x7f000001, 7373);
  reactor.transport.bind = bind;
  reactor.transport.reuse_port = false;  // one socket per node: a taken port must be an error
}

namespace {

enum class Kind { kU32, kU64, kBool, kString, kAddress, kAddressOpt, kStringList, kInt,
                  kBackend, kLogLevel, kLogFormat, kEncryptionMode, kKeys, kKeyFile, kMembership };

struct Key {
  std::string_view section;  // "" for top-level
  std::string_view name;
  Kind kind;
  std::function<void*(AgentConfig&)> field;
  std::string_view doc;
};

#define F(expr) [](AgentConfig& c) -> void* { return &(c.expr); }

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      // ---- agent (top level) ----
      {"", "preset", Kind::kString, F(preset),
       "lan | wan | local: the [node] timer defaults to start from (local = loopback, fast)"},
      {"", "name", Kind::kString, F(node.name), "this node's stable name (default: host:port)"},
      {"", "bind", Kind::kAddress, F(bind), "gossip address (UDP), HOST:PORT"},
      {"", "advertise", Kind::kAddress, F(advertise),
       "address peers send to (default: bind; required when bind is a wildcard)"},
      {"", "join", Kind::kStringList, F(join),
       "seeds to join at start, HOST:PORT (a name or an address); any one is enough"},
      {"", "retry_join", Kind::kStringList, F(retry_join),
       "seeds joined in the background, retried with backoff until one answers"},
      {"", "retry_interval_ms", Kind::kU64, F(retry_interval_ms),
       "first wait between join attempts (names are resolved again at each); doubles"},
      {"", "retry_interval_max_ms", Kind::kU64, F(retry_interval_max_ms),
       "longest wait between join attempts"},
      {"", "retry_max", Kind::kU32, F(retry_max),
       "failed background join attempts before the agent exits (0: retry forever)"},
      {"", "admin", Kind::kAddress, F(admin), "admin address (TCP, loopback only)"},
      {"", "metrics", Kind::kAddressOpt, F(metrics),
       "Prometheus endpoint HOST:PORT (HTTP GET /metrics); off when empty"},
      {"", "label", Kind::kString, F(node.cluster_label),
       "cluster label: nodes with different labels never exchange state"},
      {"", "metadata", Kind::kString, F(node.metadata), "free-form node metadata, gossiped"},
      {"", "tags", Kind::kStringList, F(tags),
       "KEY=VALUE tags, gossiped as the metadata (not with metadata); rumor tags set|del"},
      {"", "membership", Kind::kMembership, F(node.membership),
       "full | partial: every node knows every node (SWIM), or HyParView views + Plumtree "
       "(one core; docs/protocol.md \"Partial views\")"},
      {"", "cores", Kind::kU32, F(cores), "reactor threads, one per owner core (sets store.owners; see docs/agent.md)"},
      {"", "log_level", Kind::kLogLevel, F(log_level), "debug | info | warn | error"},
      {"", "log_format", Kind::kLogFormat, F(log_format),
       "text (logfmt) | json: one event per line on stderr"},
      {"", "join_timeout_ms", Kind::kU64, F(join_timeout_ms),
       "exit with an error when no seed answers within this time (0: wait forever)"},
      {"", "ready_file", Kind::kString, F(ready_file),
       "write a JSON line with the bound addresses here once serving"},
      {"", "data_dir", Kind::kString, F(data_dir),
       "keep the node's state here (RocksDB) and load it at start; in memory only when empty"},
      {"", "sync", Kind::kString, F(sync),
       "with data_dir: always (ack a write once synced, group commit) | batch | off"},
      {"", "sync_interval_ms", Kind::kU32, F(sync_interval_ms),
       "with data_dir: batch commits (and syncs) this often: the loss window; off commits"},
      {"", "watch_queue_depth", Kind::kU32, F(watch_queue_depth),
       "changes buffered for watch streams (power of two); more are dropped and counted"},
      {"", "admin_connections_max", Kind::kU32, F(admin_connections_max),
       "concurrent admin and metrics connections"},
      // ---- [node]: NodeConfig ----
      {"node", "id", Kind::kU64, F(node.id), "node id (default: XXH3 of the name)"},
      {"node", "seed", Kind::kU64, F(node.seed), "randomness seed (0: derived from the id)"},
      {"node", "datagram_bytes_max", Kind::kU32, F(node.datagram_bytes_max),
       "largest packet the node sends"},
      {"node", "members_max", Kind::kU32, F(node.members_max), "members tracked at most"},
      {"node", "metadata_bytes_max", Kind::kU32, F(node.metadata_bytes_max),
       "per-node metadata limit"},
      {"node", "name_bytes_max", Kind::kU32, F(node.name_bytes_max), "node name limit"},
      {"node", "probe_interval_ms", Kind::kU32, F(node.probe_interval_ms),
       "SWIM: one probe per interval"},
      {"node", "probe_timeout_ms", Kind::kU32, F(node.probe_timeout_ms),
       "SWIM: direct probe answer deadline"},
      {"node", "indirect_checks", Kind::kU32, F(node.indirect_checks),
       "SWIM: peers asked to probe indirectly"},
      {"node", "suspicion_mult", Kind::kU32, F(node.suspicion_mult),
       "suspicion timeout = mult * log10(max(N,10)) * probe interval"},
      {"node", "suspicion_max_timeout_mult", Kind::kU32, F(node.suspicion_max_timeout_mult),
       "upper bound of the suspicion timeout, as a multiple of the minimum"},
      {"node", "awareness_max", Kind::kU32, F(node.awareness_max),
       "Lifeguard: local health multiplier ceiling"},
      {"node", "dead_reclaim_ms", Kind::kU64, F(node.dead_reclaim_ms),
       "forget dead members after this long"},
      {"node", "reconnect_interval_ms", Kind::kU32, F(node.reconnect_interval_ms),
       "offer our table to a random dead member this often (heals partitions)"},
      {"node", "gossip_interval_ms", Kind::kU32, F(node.gossip_interval_ms),
       "dissemination: one gossip round per interval"},
      {"node", "gossip_fanout", Kind::kU32, F(node.gossip_fanout), "peers per gossip round"},
      {"node", "expected_nodes", Kind::kU32, F(node.expected_nodes),
       "partial: cluster size the automatic active view is sized for"},
      {"node", "active_view_max", Kind::kU32, F(node.active_view_max),
       "partial: active view size (0: ceil(log2 expected_nodes) + 1 within [4, 8])"},
      {"node", "passive_view_max", Kind::kU32, F(node.passive_view_max),
       "partial: passive view size"},
      {"node", "shuffle_interval_ms", Kind::kU32, F(node.shuffle_interval_ms),
       "partial: passive view shuffle period"},
      {"node", "retransmit_mult", Kind::kU32, F(node.retransmit_mult),
       "membership news rides retransmit_mult * ceil(log2(N+1)) packets, updates * ceil(log10(N+1))"},
      {"node", "broadcast_queue_max", Kind::kU32, F(node.broadcast_queue_max),
       "queued updates to disseminate"},
      {"node", "sync_interval_ms", Kind::kU32, F(node.sync_interval_ms),
       "anti-entropy: one push-pull reconciliation per interval"},
      {"node", "sync_timeout_ms", Kind::kU32, F(node.sync_timeout_ms),
       "anti-entropy: a reconciliation is abandoned after this long"},
      {"node", "sync_datagrams_per_tick_max", Kind::kU32, F(node.sync_datagrams_per_tick_max),
       "anti-entropy: per-peer rate limit of a reconciliation's bulk"},
      {"node", "join_sync", Kind::kU32, F(node.join_sync),
       "1: reconcile with a seed right after joining"},
      {"node", "events_max", Kind::kU32, F(node.events_max),
       "queued callbacks; more are dropped and counted"},
      {"node", "peer_bytes_per_s_max", Kind::kU32, F(node.peer_bytes_per_s_max),
       "bytes accepted from one source address per second; more are dropped unread"},
      {"node", "answer_datagrams_per_s_max", Kind::kU32, F(node.answer_datagrams_per_s_max),
       "datagrams per second all join and anti-entropy answers may take together"},
      {"node", "rate_limit_peers_max", Kind::kU32, F(node.rate_limit_peers_max),
       "slots of the fixed per-address rate-limit tables"},
      // Large values (docs/protocol.md "Large values"); store.value_bytes_max is the limit.
      {"node", "bulk_transfers_max", Kind::kU32, F(node.bulk_transfers_max),
       "large values pulled at once"},
      {"node", "bulk_bytes_max", Kind::kU64, F(node.bulk_bytes_max),
       "bytes of large values being pulled at once (0: 8 x value_bytes_max)"},
      {"node", "bulk_peer_bytes_max", Kind::kU64, F(node.bulk_peer_bytes_max),
       "the same, from one peer (0: 2 x value_bytes_max)"},
      {"node", "bulk_window_chunks", Kind::kU32, F(node.bulk_window_chunks),
       "chunks asked for at once (<= 64, one GSO batch)"},
      {"node", "bulk_timeout_ms", Kind::kU32, F(node.bulk_timeout_ms),
       "wait for a window of chunks before asking again"},
      {"node", "bulk_attempts_max", Kind::kU32, F(node.bulk_attempts_max),
       "requests without a new chunk before a pull is given up"},
      {"node", "bulk_datagrams_per_s_max", Kind::kU32, F(node.bulk_datagrams_per_s_max),
       "chunks served per second, all peers (a quarter to one)"},
      // ---- [encryption] (docs/security.md) ----
      {"encryption", "mode", Kind::kEncryptionMode, F(node.encryption),
       "off | accept | send | require: what this node sends and accepts (migration order)"},
      {"encryption", "keys", Kind::kKeys, F(node.keys),
       "base64 32-byte keys (`rumor keys generate`); the first is the primary"},
      {"encryption", "key_file", Kind::kKeyFile, F(node.keys),
       "a file of base64 keys, one per line, the first primary (keep it mode 0600)"},
      // ---- [store]: StoreConfig ----
      {"store", "virtual_shards", Kind::kU32, F(node.store.virtual_shards),
       "cluster-wide constant, a power of two"},
      {"store", "owners", Kind::kU32, F(node.store.owners), "owner cores of this node's shards (the agent sets it to cores)"},
      {"store", "key_bytes_max", Kind::kU32, F(node.store.key_bytes_max), "longest key"},
      {"store", "value_bytes_max", Kind::kU32, F(node.store.value_bytes_max), "longest value"},
      {"store", "keys_per_shard_max", Kind::kU64, F(node.store.keys_per_shard_max),
       "keys per virtual shard"},
      {"store", "max_clock_skew_ms", Kind::kU64, F(node.store.max_clock_skew_ms),
       "refuse versions further ahead of local time than this"},
      {"store", "tombstone_grace_ms", Kind::kU64, F(node.store.tombstone_grace_ms),
       "tombstones are purged after this long (see docs/store.md)"},
      {"store", "write_queue_depth", Kind::kU32, F(node.store.write_queue_depth),
       "writes queued from other threads, per owner"},
      {"store", "change_feed_depth", Kind::kU32, F(node.store.change_feed_depth),
       "change records kept per shard for feed readers"},
      // ---- [transport]: TransportConfig ----
      {"transport", "backend", Kind::kBackend, F(reactor.transport.backend),
       "auto | uring | mmsg | xdp (auto: io_uring, else sendmmsg; xdp: AF_XDP on "
       "xdp_interface, else auto)"},
      {"transport", "xdp_interface", Kind::kString, F(reactor.transport.xdp_interface),
       "interface for the xdp backend (its address is used with a wildcard bind)"},
      {"transport", "xdp_queue", Kind::kU32, F(reactor.transport.xdp_queue),
       "receive queue of xdp_interface the AF_XDP socket binds to"},
      {"transport", "datagram_bytes_max", Kind::kU32, F(reactor.transport.datagram_bytes_max),
       "largest datagram sent or accepted"},
      {"transport", "recv_buffers", Kind::kU32, F(reactor.transport.recv_buffers),
       "receive pool (power of two)"},
      {"transport", "send_buffers", Kind::kU32, F(reactor.transport.send_buffers), "send pool"},
      {"transport", "gro_recv_buffers", Kind::kU32, F(reactor.transport.gro_recv_buffers),
       "receive pool with gro (64 KiB each)"},
      {"transport", "socket_buffer_bytes", Kind::kU32, F(reactor.transport.socket_buffer_bytes),
       "SO_RCVBUF and SO_SNDBUF"},
      {"transport", "gso", Kind::kBool, F(reactor.transport.gso), "UDP_SEGMENT batching"},
      {"transport", "gro", Kind::kBool, F(reactor.transport.gro), "UDP_GRO receives"},
      // ---- [reactor]: ReactorConfig ----
      {"reactor", "pin", Kind::kBool, F(reactor.pin), "pin the reactor thread to a CPU"},
      {"reactor", "cpu", Kind::kInt, F(reactor.cpu),
       "CPU to pin to (-1: the first one allowed; see taskset)"},
      {"reactor", "receive_batch", Kind::kU32, F(reactor.receive_batch),
       "datagrams reaped per receive call"},
      {"reactor", "receive_batches_per_turn_max", Kind::kU32,
       F(reactor.receive_batches_per_turn_max), "receive calls per loop turn"},
      {"reactor", "send_stash", Kind::kU32, F(reactor.send_stash),
       "send buffers acquired at a time"},
      {"reactor", "commands_per_turn_max", Kind::kU32, F(reactor.commands_per_turn_max),
       "admin commands run per loop turn"},
      {"reactor", "command_queue_depth", Kind::kU32, F(reactor.command_queue_depth),
       "admin commands queued (power of two)"},
      {"reactor", "idle_wait_ms_max", Kind::kU32, F(reactor.idle_wait_ms_max),
       "longest sleep of the loop"},
      {"reactor", "stop_flush_ms_max", Kind::kU32, F(reactor.stop_flush_ms_max),
       "time allowed to send the leave announcement"},
  };
  return k;
}

#undef F

const Key* find_key(std::string_view section, std::string_view name) {
  for (const Key& k : keys()) {
    if (k.section == section && k.name == name) return &k;
  }
  return nullptr;
}

std::string key_path(const Key& k) {
  return k.section.empty() ? std::string(k.name) : fmt::format("{}.{}", k.section, k.name);
}

Status bad(const Key& k, std::string_view why) {
  return Status::error(Code::kInvalidArgument, fmt::format("config {}: {}", key_path(k), why));
}

template <typename T>
Status parse_unsigned(const Key& k, std::string_view text, T* out) {
  std::uint64_t v = 0;
  // Accept 1_000 style separators people use in TOML.
  std::string digits;
  for (char ch : text) {
    if (ch != '_') digits.push_back(ch);
  }
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size() || digits.empty()) {
    return bad(k, fmt::format("'{}' is not a non-negative integer", text));
  }
  if (v > std::numeric_limits<T>::max()) {
    return bad(k, fmt::format("{} is larger than {}", v, std::numeric_limits<T>::max()));
  }
  *out = static_cast<T>(v);
  return Status::ok();
}

// Applies a value given as text (flags, -o) or converted from TOML to text.
Status set_from_text(AgentConfig& c, const Key& k, std::string_view text) {
  void* f = k.field(c);
  switch (k.kind) {
    case Kind::kU32: return parse_unsigned(k, text, static_cast<std::uint32_t*>(f));
    case Kind::kU64: return parse_unsigned(k, text, static_cast<std::uint64_t*>(f));
    case Kind::kInt: {
      int v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size()) {
        return bad(k, fmt::format("'{}' is not an integer", text));
      }
      *static_cast<int*>(f) = v;
      return Status::ok();
    }
    case Kind::kBool:
      if (text == "true" || text == "1" || text == "yes") {
        *static_cast<bool*>(f) = true;
      } else if (text == "false" || text == "0" || text == "no") {
        *static_cast<bool*>(f) = false;
      } else {
        return bad(k, fmt::format("'{}' is not true or false", text));
      }
      return Status::ok();
    case Kind::kString:
      if (k.name == "preset") return apply_preset(c, text);
      *static_cast<std::string*>(f) = std::string(text);
      return Status::ok();
    case Kind::kAddress:
    case Kind::kAddressOpt: {
      if (text.empty()) {  // unset (validate() insists on the required ones)
        if (k.kind == Kind::kAddressOpt) {
          static_cast<std::optional<Address>*>(f)->reset();
        } else {
          *static_cast<Address*>(f) = Address();
        }
        return Status::ok();
      }
      auto a = Address::parse(text);
      if (!a) return bad(k, a.status().message());
      if (k.kind == Kind::kAddress) {
        *static_cast<Address*>(f) = *a;
      } else {
        *static_cast<std::optional<Address>*>(f) = *a;
      }
      return Status::ok();
    }
    case Kind::kStringList: {
      auto* list = static_cast<std::vector<std::string>*>(f);
      list->clear();
      std::string_view rest = text;
      while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        if (!item.empty()) list->emplace_back(item);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      return Status::ok();
    }
    case Kind::kBackend: {
      auto* b = static_cast<Backend*>(f);
      if (text == "auto") {
        *b = Backend::kAuto;
      } else if (text == "uring" || text == "io_uring") {
        *b = Backend::kUring;
      } else if (text == "mmsg" || text == "sendmmsg") {
        *b = Backend::kMmsg;
      } else if (text == "xdp" || text == "af_xdp") {
        *b = Backend::kXdp;
      } else {
        return bad(k, fmt::format("'{}' is not auto, uring, mmsg or xdp", text));
      }
      return Status::ok();
    }
    case Kind::kMembership: {
      auto m = parse_membership(text);
      if (!m) return bad(k, m.status().message());
      *static_cast<Membership*>(f) = *m;
      return Status::ok();
    }
    case Kind::kEncryptionMode: {
      auto m = parse_encryption_mode(text);
      if (!m) return bad(k, m.status().message());
      *static_cast<EncryptionMode*>(f) = *m;
      return Status::ok();
    }
    case Kind::kKeys:
    case Kind::kKeyFile: {
      auto* keys = static_cast<std::vector<std::string>*>(f);
      std::string content(text);
      if (k.kind == Kind::kKeyFile) {
        if (text.empty()) return Status::ok();
        std::ifstream in{std::string(text)};
        if (!in) return bad(k, fmt::format("cannot read {}", text));
        content.clear();
        for (std::string line; std::getline(in, line);) {
          if (!line.empty() && line[0] != '#') content += line + ",";
        }
      }
      keys->clear();
      std::string_view rest = content;
      while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\r')) item.remove_suffix(1);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        if (!item.empty()) {
          auto raw = decode_key(item);
          if (!raw) return bad(k, raw.status().message());
          keys->push_back(std::move(*raw));
        }
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      return Status::ok();
    }
    case Kind::kLogLevel: {
      auto l = parse_log_level(text);
      if (!l) return bad(k, fmt::format("'{}' is not debug, info, warn or error", text));
      *static_cast<LogLevel*>(f) = *l;
      return Status::ok();
    }
    case Kind::kLogFormat: {
      auto l = parse_log_format(text);
      if (!l) return bad(k, fmt::format("'{}' is not text or json", text));
      *static_cast<LogFormat*>(f) = *l;
      return Status::ok();
    }
  }
  return bad(k, "unknown kind");
}

std::string current_text(AgentConfig& c, const Key& k) {
  void* f = k.field(c);
  switch (k.kind) {
    case Kind::kU32: return std::to_string(*static_cast<std::uint32_t*>(f));
    case Kind::kU64: return std::to_string(*static_cast<std::uint64_t*>(f));
    case Kind::kInt: return std::to_string(*static_cast<int*>(f));
    case Kind::kBool: return *static_cast<bool*>(f) ? "true" : "false";
    case Kind::kString: return fmt::format("\"{}\"", *static_cast<std::string*>(f));
    case Kind::kAddress: {
      auto* a = static_cast<Address*>(f);
      return a->empty() ? "\"\"" : fmt::format("\"{}\"", a->to_string());
    }
    case Kind::kAddressOpt: {
      auto* a = static_cast<std::optional<Address>*>(f);
      return *a ? fmt::format("\"{}\"", (*a)->to_string()) : "\"\"";
    }
    case Kind::kStringList: {
      auto* l = static_cast<std::vector<std::string>*>(f);
      std::string s = "[";
      for (std::size_t i = 0; i < l->size(); ++i) {
        s += fmt::format("{}\"{}\"", i ? ", " : "", (*l)[i]);
      }
      return s + "]";
    }
    case Kind::kBackend: {
      switch (*static_cast<Backend*>(f)) {
        case Backend::kAuto: return "\"auto\"";
        case Backend::kUring: return "\"uring\"";
        case Backend::kMmsg: return "\"mmsg\"";
        case Backend::kXdp: return "\"xdp\"";
      }
      return "?";
    }
    case Kind::kEncryptionMode:
      return fmt::format("\"{}\"", encryption_mode_name(*static_cast<EncryptionMode*>(f)));
    case Kind::kMembership:
      return fmt::format("\"{}\"", membership_name(*static_cast<Membership*>(f)));
    case Kind::kKeys: {
      // Never print a key: only how many there are.
      const auto n = static_cast<std::vector<std::string>*>(f)->size();
      return n == 0 ? "[]" : fmt::format("[...{} key(s)...]", n);
    }
    case Kind::kKeyFile: return "\"\"";
    case Kind::kLogLevel: {
      switch (*static_cast<LogLevel*>(f)) {
        case LogLevel::kDebug: return "\"debug\"";
        case LogLevel::kInfo: return "\"info\"";
        case LogLevel::kWarn: return "\"warn\"";
        case LogLevel::kError: return "\"error\"";
      }
      return "?";
    }
    case Kind::kLogFormat:
      return *static_cast<LogFormat*>(f) == LogFormat::kJson ? "\"json\"" : "\"text\"";
  }
  return "?";
}

#ifdef RUMOR_HAVE_TOML
Result<std::string> toml_to_text(const Key& k, const toml::node& n) {
  if (k.kind == Kind::kStringList || k.kind == Kind::kKeys) {
    if (const auto* arr = n.as_array()) {
      std::string joined;
      for (const toml::node& item : *arr) {
        auto s = item.value<std::string>();
        if (!s) return bad(k, "expected an array of strings");
        if (!joined.empty()) joined.push_back(',');
        joined += *s;
      }
      return joined;
    }
  }
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto b = n.value_exact<bool>()) return std::string(*b ? "true" : "false");
  if (auto i = n.value_exact<std::int64_t>()) {
    if (*i < 0 && k.kind != Kind::kInt) return bad(k, "must not be negative");
    return std::to_string(*i);
  }
  return bad(k, "unsupported TOML type");
}
#endif

}  // namespace

Status apply_preset(AgentConfig& c, std::string_view preset) {
  // The store and identity settings survive a preset change; only the protocol timers move.
  NodeConfig base;
  if (preset == "lan") {
    base = NodeConfig::lan();
  } else if (preset == "wan") {
    base = NodeConfig::wan();
  } else if (preset == "local") {
    base = NodeConfig::local();
  } else {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("preset '{}' is not lan, wan or local", preset));
  }
  base.name = c.node.name;
  base.id = c.node.id;
  base.cluster_label = c.node.cluster_label;
  base.metadata = c.node.metadata;
  base.seed = c.node.seed;
  base.store = c.node.store;
  base.keys = c.node.keys;
  base.encryption = c.node.encryption;
  c.node = base;
  c.preset = std::string(preset);
  return Status::ok();
}

Result<std::optional<std::string>> toml_preset(const std::string& path) {
#ifdef RUMOR_HAVE_TOML
  try {
    toml::table t = toml::parse_file(path);
    if (auto p = t["preset"].value<std::string>()) return std::optional<std::string>(*p);
    return std::optional<std::string>();
  } catch (const toml::parse_error& e) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("{}:{}:{}: {}", path, e.source().begin.line,
                                     e.source().begin.column, e.description()));
  }
#else
  (void)path;
  return Status::error(Code::kUnavailable, "this build has no TOML support (toml++ missing)");
#endif
}

Status apply_toml_file(AgentConfig& c, const std::string& path) {
#ifdef RUMOR_HAVE_TOML
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(Code::kInvalidArgument, fmt::format("cannot read {}", path));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return apply_toml_text(c, text, path);
#else
  (void)c;
  (void)path;
  return Status::error(Code::kUnavailable, "this build has no TOML support (toml++ missing)");
#endif
}

Status apply_toml_text(AgentConfig& c, std::string_view text, const std::string& path) {
#ifdef RUMOR_HAVE_TOML
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("{}:{}:{}: {}", path, e.source().begin.line,
                                     e.source().begin.column, e.description()));
  }
  // The preset is not applied here: the caller applies it first (toml_preset()), so that a
  // --preset flag can override it before the file's other keys change the timers it set.
  for (auto&& [name, node] : t) {
    const std::string_view n = name.str();
    if (n == "preset") continue;
    if (const toml::table* section = node.as_table()) {
      for (auto&& [sub, value] : *section) {
        const Key* k = find_key(n, sub.str());
        if (k == nullptr) {
          return Status::error(Code::kInvalidArgument,
                               fmt::format("{}: unknown key {}.{} (rumor agent --config-keys "
                                           "lists them)",
                                           path, n, sub.str()));
        }
        auto text = toml_to_text(*k, value);
        if (!text) return text.status();
        if (Status s = set_from_text(c, *k, *text); !s) return s;
      }
      continue;
    }
    const Key* k = find_key("", n);
    if (k == nullptr) {
      return Status::error(
          Code::kInvalidArgument,
          fmt::format("{}: unknown key {} (rumor agent --config-keys lists them)", path, n));
    }
    auto text = toml_to_text(*k, node);
    if (!text) return text.status();
    if (Status s = set_from_text(c, *k, *text); !s) return s;
  }
  return Status::ok();
#else
  (void)c;
  (void)text;
  (void)path;
  return Status::error(Code::kUnavailable, "this build has no TOML support (toml++ missing)");
#endif
}

Status apply_override(AgentConfig& c, std::string_view assignment) {
  const std::size_t eq = assignment.find('=');
  if (eq == std::string_view::npos) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("-o {}: expected section.key=value", assignment));
  }
  std::string_view path = assignment.substr(0, eq);
  std::string_view value = assignment.substr(eq + 1);
  std::string_view section, name = path;
  if (const std::size_t dot = path.find('.'); dot != std::string_view::npos) {
    section = path.substr(0, dot);
    name = path.substr(dot + 1);
  }
  const Key* k = find_key(section, name);
  if (k == nullptr) {
    return Status::error(Code::kInvalidArgument,
                         fmt::format("-o {}: unknown key (rumor agent --config-keys lists them)",
                                     path));
  }
  return set_from_text(c, *k, value);
}

Status validate(const AgentConfig& c) {
  if (c.cores == 0) return Status::error(Code::kInvalidArgument, "cores must be at least 1");
  if (c.bind.empty()) return Status::error(Code::kInvalidArgument, "bind is required");
  if (c.admin.empty()) return Status::error(Code::kInvalidArgument, "admin is required");
  if (auto m = parse_sync_mode(c.sync); !m) {
    return Status::error(Code::kInvalidArgument, "sync: " + m.status().message());
  }
  if (c.sync_interval_ms == 0 || c.sync_interval_ms > 60'000) {
    return Status::error(Code::kInvalidArgument, "sync_interval_ms must be 1..60000");
  }
  if (c.watch_queue_depth < 2 || (c.watch_queue_depth & (c.watch_queue_depth - 1)) != 0) {
    return Status::error(Code::kInvalidArgument, "watch_queue_depth must be a power of two");
  }
  if (c.admin_connections_max == 0) {
    return Status::error(Code::kInvalidArgument, "admin_connections_max must be at least 1");
  }
  if (Status s = c.reactor.validate(); !s) return s;
  if (c.reactor.transport.backend == Backend::kXdp) {
    if (c.reactor.transport.xdp_interface.empty()) {
      return Status::error(Code::kInvalidArgument,
                           "the xdp backend needs an interface (--xdp-interface or "
                           "transport.xdp_interface)");
    }
  }
  for (const auto* list : {&c.join, &c.retry_join}) {
    for (const std::string& seed : *list) {
      auto hp = split_host_port(seed);
      if (!hp) {
        return Status::error(Code::kInvalidArgument,
                             fmt::format("{} {}: {}", list == &c.join ? "join" : "retry_join",
                                         seed, hp.status().message()));
      }
    }
  }
  if (!c.tags.empty()) {
    if (!c.node.metadata.empty()) {
      return Status::error(Code::kInvalidArgument,
                           "tags and metadata exclude each other (tags travel as the metadata)");
    }
    auto tags = parse_tags(c.tags);
    if (!tags) return tags.status();
    const std::string encoded = encode_tags(*tags);
    if (encoded.size() > c.node.metadata_bytes_max) {
      return Status::error(Code::kInvalidArgument,
                           fmt::format("tags take {} bytes, node.metadata_bytes_max is {}",
                                       encoded.size(), c.node.metadata_bytes_max));
    }
  }
  if (c.retry_interval_ms == 0 || c.retry_interval_max_ms < c.retry_interval_ms) {
    return Status::error(Code::kInvalidArgument,
                         "retry_interval_ms must be positive and at most retry_interval_max_ms");
  }
  return Status::ok();
}

Result<std::pair<std::string, std::string>> parse_tag(std::string_view text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return Status::error(Code::kInvalidArgument, "expected KEY=VALUE");
  }
  const std::string_view key = text.substr(0, eq), value = text.substr(eq + 1);
  if (key.empty() || key.size() > 128) {
    return Status::error(Code::kInvalidArgument, "a tag key has 1 to 128 characters");
  }
  for (char ch : key) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-' || ch == '/';
    if (!ok) {
      return Status::error(Code::kInvalidArgument,
                           fmt::format("tag key '{}': letters, digits and _ . - / only", key));
    }
  }
  if (value.find('\n') != std::string_view::npos) {
    return Status::error(Code::kInvalidArgument, "a tag value has no newline");
  }
  return std::pair<std::string, std::string>(std::string(key), std::string(value));
}

Result<Tags> parse_tags(const std::vector<std::string>& items) {
  Tags out;
  for (const std::string& t : items) {
    auto kv = parse_tag(t);
    if (!kv) {
      return Status::error(Code::kInvalidArgument,
                           fmt::format("tag {}: {}", t, kv.status().message()));
    }
    out[kv->first] = kv->second;
  }
  return out;
}

std::string comma_list(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& x : items) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::string encode_tags(const Tags& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    if (!out.empty()) out.push_back(' ');
    out += k;
    out.push_back('=');
    out += v.empty() ? std::string("\"\"") : logfmt_value(v);
  }
  return out;
}

std::optional<Tags> decode_tags(std::string_view metadata) {
  auto pairs = parse_logfmt(metadata);
  if (!pairs) return std::nullopt;
  Tags out;
  for (auto& [k, v] : *pairs) {
    if (!parse_tag(k + "=x")) return std::nullopt;
    out[k] = std::move(v);
  }
  return out;
}

Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {  // [v6]:port
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::error(Code::kInvalidArgument, "expected [IPV6]:PORT");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::error(Code::kInvalidArgument, "expected HOST:PORT (the port is required)");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Status::error(Code::kInvalidArgument, "an IPv6 address goes in brackets: [ADDR]:PORT");
    }
  }
  if (host.empty()) return Status::error(Code::kInvalidArgument, "the host is empty");
  unsigned long p = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9' || p > 65535) {
      return Status::error(Code::kInvalidArgument, fmt::format("bad port '{}'", port));
    }
    p = p * 10 + static_cast<unsigned long>(ch - '0');
  }
  if (port.empty() || p == 0 || p > 65535) {
    return Status::error(Code::kInvalidArgument, fmt::format("bad port '{}'", port));
  }
  return std::pair<std::string, std::uint16_t>(std::string(host), static_cast<std::uint16_t>(p));
}

std::string describe_keys(const AgentConfig& defaults) {
  AgentConfig c = defaults;
  std::string out;
  std::string_view section = "-";
  for (const Key& k : keys()) {
    if (k.section != section) {
      section = k.section;
      out += section.empty() ? "# agent (top level)\n" : fmt::format("\n[{}]\n", section);
    }
    out += fmt::format("{} = {}  # {}\n", k.name, current_text(c, k), k.doc);
  }
  return out;
}

}  // namespace rumor::tools
