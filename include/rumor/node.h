// rumor::Node: one member of a gossip cluster, as the application sees it (docs/architecture.md): the replicated key-value store, subscriptions, membership and the keyring. A node is a
// sans-I/O state machine: it never reads a clock except through the TimeSource it is given,
// never sleeps, never opens a socket and never starts a thread. What drives it (the reactor on
// real UDP, include/rumor/reactor.h; the simulator in tests and `rumor load`) uses the driver
// half in include/rumor/driver.h.
//
// Thread-safety contract
// - set, del, get, get_entry and scan_prefix may be called from any thread: reads go to the
//   lock-free store; a write from a thread other than the driver of the key's owner core is
//   queued to that core (Code::kBusy when the queue is full) and applied at its next turn.
//   Before start, writes come from one thread at a time.
// - subscribe and on_membership: any thread, before start.
// - members, counters and the keyring calls: the home core's driver thread (with the reactor,
//   from a posted command: Reactor::post).
// - On a multi-core node the keyring calls change the home core's keyring and mode; the other
//   cores adopt a copy within their next loop turn.
// - Callbacks (subscriptions, membership events) run on the home core's driver thread inside
//   NodeDriver::dispatch_events(), after a batch of packets and timers, never while a packet is
//   being processed, one at a time: a callback needs no lock against another. On a multi-core
//   node a change applied on another core is handed to the home core (only while a
//   subscription exists) and fires there too. Order: each key's changes fire in the order the
//   node applied them, which is the order of their versions (a change superseded before its
//   turn may be skipped: the callback sees the newer one); changes of different keys have no
//   order between them. A slow callback delays the home core's next loop turn, and a full
//   event queue (events_max) drops events, counted in events_dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rumor/security.h"
#include "rumor/status.h"
#include "rumor/store_config.h"
#include "rumor/time_source.h"
#include "rumor/transport.h"
#include "rumor/version.h"

namespace rumor {

enum class MemberState : std::uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };
std::string_view member_state_name(MemberState s);

struct Member {
  NodeId id = 0;
  std::string name;
  Address address;
  MemberState state = MemberState::kAlive;
  std::uint64_t incarnation = 0;
  std::string metadata;  // at most NodeConfig::metadata_bytes_max
};

struct MembershipEvent {
  Member member;
  MemberState previous = MemberState::kAlive;
  bool joined = false;  // first time this node hears of the member (or it came back)
};

// A change to a key, from this node or any other.
struct Change {
  std::string key;
  std::string value;  // empty for a delete
  Version version;
  bool deleted = false;
  bool local = false;  // written through this node's API
};

struct NodeCounters {
  // Packets and bytes on the wire.
  std::uint64_t packets_sent = 0, packets_received = 0, bytes_sent = 0, bytes_received = 0;
  std::uint64_t sink_full = 0;  // datagrams not sent: the sink had no buffer
  // Drops of received packets, by reason (malformed detail in `malformed_*`).
  std::uint64_t drop_bad_magic = 0, drop_bad_version = 0, drop_wrong_label = 0,
                drop_truncated = 0, drop_malformed = 0, drop_from_self = 0,
                drop_unknown_type = 0, drop_rate_limited = 0;
  // Encryption (docs/security.md): drops by reason, and frames sealed and opened.
  std::uint64_t drop_sealed_refused = 0, drop_unknown_key = 0, drop_auth_failed = 0,
                drop_replayed = 0, drop_plaintext_refused = 0;
  std::uint64_t packets_sealed = 0, packets_opened = 0;
  // Membership.
  std::uint64_t probes_sent = 0, probes_failed = 0, indirect_probes = 0, suspicions = 0,
                refutations = 0, deaths_declared = 0, joins = 0, leaves = 0;
  std::uint64_t local_health = 0;  // Lifeguard awareness score now (0 = healthy)
  // Dissemination and anti-entropy.
  std::uint64_t updates_merged = 0, updates_stale = 0, updates_refused = 0;
  std::uint64_t broadcasts_queued = 0, broadcasts_sent = 0, broadcasts_dropped = 0;
  std::uint64_t syncs_started = 0, syncs_completed = 0, sync_entries_sent = 0,
                sync_entries_received = 0, sync_bytes = 0, sync_rate_limited = 0;
  // Which method settled each reconciliation this node started (docs/reconciliation.md): the
  // linear sums alone, a rateless IBLT stream, the Merkle walk; and streams that did not decode
  // (walked instead).
  std::uint64_t syncs_by_sums = 0, syncs_by_riblt = 0, syncs_by_walk = 0, sync_riblt_failed = 0;
  // Pings carry fingerprints of the sender's store and member table (docs/protocol.md "State
  // on every probe"): pings whose fingerprints differed from this node's, and scheduled
  // exchanges skipped because a probe had found the state equal.
  std::uint64_t state_sums_differ = 0, syncs_skipped = 0;
  std::uint64_t events_dropped = 0;
  // Owner cores (store.owners > 1): datagrams, entries and changes handed from one core to
  // another, and those dropped because the target core's queue was full.
  std::uint64_t core_handoffs = 0, core_handoff_drops = 0;
  // Large values (docs/protocol.md "Large values"): announcements sent outside gossip (by
  // reconciliation); transfers started, completed, given up, refused (a memory bound, a version
  // too far ahead, or the announcer is not a live member at its own address), replaced
  // by a newer version, and whose value did not match its hash; chunk requests sent, chunks
  // received, and chunks that named no transfer of ours or had the wrong size; chunks served,
  // requests not served (value not held, not a member, or over the serving rate).
  std::uint64_t bulk_announced = 0, bulk_pulls = 0, bulk_pulled = 0, bulk_abandoned = 0,
                bulk_refused = 0, bulk_superseded = 0, bulk_bad_hash = 0;
  std::uint64_t bulk_requests = 0, bulk_chunks_received = 0, bulk_chunks_unexpected = 0,
                bulk_chunks_bad = 0;
  std::uint64_t bulk_chunks_sent = 0, bulk_serve_refused = 0;
  // Partial views (membership = kPartial; docs/protocol.md "Partial views"): the sizes of the
  // HyParView active and passive views now; active peers lost to failed probes, and passive
  // peers promoted; shuffles sent. Plumtree: payloads pushed (eager pushes and graft answers:
  // the payload copies an update costs), payloads received that this node already had, IHAVE
  // ids announced, GRAFTs sent (tree repairs) and PRUNEs sent.
  std::uint64_t view_active = 0, view_passive = 0;
  std::uint64_t view_failures = 0, view_promotions = 0, view_shuffles = 0;
  std::uint64_t tree_payloads_sent = 0, tree_duplicates = 0, tree_ihaves_sent = 0,
                tree_grafts = 0, tree_prunes = 0;
};

// The largest store.value_bytes_max a node accepts: a large value is pulled whole into memory
// on every node (docs/protocol.md "Large values").
inline constexpr std::uint32_t kValueBytesLimit = 64u << 20;

// Membership modes (docs/protocol.md): every node knows every node (SWIM), or each keeps small
// partial views (HyParView) and key-value updates travel along a tree (Plumtree).
enum class Membership : std::uint8_t { kFull = 0, kPartial = 1 };
std::string_view membership_name(Membership m);
Result<Membership> parse_membership(std::string_view name);

struct NodeConfig {
  // Identity: a stable name; the id is XXH3 of it unless set. A node keeps its identity when its
  // address changes (a restarted node on a new IP is the same member).
  std::string name;
  NodeId id = 0;
  Address advertise;         // the address peers send to
  std::vector<Address> seeds;  // any one reachable seed is enough to join
  std::string cluster_label;   // nodes with different labels never exchange state (<= 255 B)
  std::string metadata;        // bounded per-node metadata, gossiped with membership
  std::uint64_t seed = 0;      // randomness; 0 = derived from the id

  StoreConfig store;

  std::uint32_t datagram_bytes_max = 1400;
  std::uint32_t members_max = 65536;
  std::uint32_t metadata_bytes_max = 512;
  std::uint32_t name_bytes_max = 128;

  // SWIM with Lifeguard.
  std::uint32_t probe_interval_ms = 1000;
  std::uint32_t probe_timeout_ms = 500;
  std::uint32_t indirect_checks = 3;
  std::uint32_t suspicion_mult = 4;          // min timeout = mult * log10(max(N,10)) * interval
  std::uint32_t suspicion_max_timeout_mult = 6;
  std::uint32_t awareness_max = 8;           // local health multiplier ceiling
  std::uint64_t dead_reclaim_ms = 3'600'000;  // forget dead members after this long
  std::uint32_t reconnect_interval_ms = 5000;  // offer our table to a random dead member

  // Dissemination: membership news rides retransmit_mult * ceil(log2(N+1)) packets, each
  // key-value update retransmit_mult * ceil(log10(N+1)) (anti-entropy repairs what it misses).
  std::uint32_t gossip_interval_ms = 200;
  std::uint32_t gossip_fanout = 3;
  std::uint32_t retransmit_mult = 4;
  std::uint32_t broadcast_queue_max = 65536;

  // Anti-entropy: a push-pull reconciliation with one random live peer per interval.
  std::uint32_t sync_interval_ms = 10'000;
  std::uint32_t sync_timeout_ms = 5'000;
  std::uint32_t sync_datagrams_per_tick_max = 64;  // per peer, rate limit of a sync's bulk
  std::uint32_t join_sync = 1;                     // sync with a seed right after joining

  std::uint32_t events_max = 65536;  // queued callbacks; more are dropped and counted

  // Membership mode. kPartial (single owner core only) keeps a HyParView active view of
  // active_view_max peers (0: ceil(log2(expected_nodes)) + 1 within [4, 8]), probed every
  // probe_interval_ms when idle and dropped after view_failure_probes intervals of silence, and a
  // passive view of passive_view_max, refreshed by a shuffle every shuffle_interval_ms; joins
  // walk active_walk_length (ARWL) hops and land in passive views at passive_walk_length (PRWL).
  // Updates spread by Plumtree: a missing payload announced by IHAVE is grafted after
  // graft_timeout_ms; payloads are kept for grafts for tree_cache_ms.
  Membership membership = Membership::kFull;
  std::uint32_t expected_nodes = 1000;
  std::uint32_t active_view_max = 0;
  std::uint32_t passive_view_max = 30;
  std::uint32_t active_walk_length = 6;
  std::uint32_t passive_walk_length = 3;
  std::uint32_t shuffle_interval_ms = 2000;
  std::uint32_t view_failure_probes = 5;
  std::uint32_t graft_timeout_ms = 0;  // 0: 2 gossip intervals
  std::uint32_t tree_cache_ms = 30'000;

  // Large values (docs/protocol.md "Large values"): an entry whose update does not fit one
  // datagram is announced, and pulled in chunks by the nodes that lack it. The pulling side's
  // bounds: transfers at once; bytes being assembled in all of them and in those from one peer
  // (0: 8 and 2 times store.value_bytes_max; each at least value_bytes_max); chunks one request
  // asks for (<= 64: one GSO batch; two such windows are in flight); how long without a new
  // chunk before what the windows lack is asked for again; request rounds in a row without a new chunk before a transfer is given up. The
  // serving side: chunk datagrams served per second to all peers (a burst of one second's
  // worth), a quarter of them to any one address.
  std::uint32_t bulk_transfers_max = 16;
  std::uint64_t bulk_bytes_max = 0;
  std::uint64_t bulk_peer_bytes_max = 0;
  std::uint32_t bulk_window_chunks = 64;
  std::uint32_t bulk_timeout_ms = 200;
  std::uint32_t bulk_attempts_max = 5;
  std::uint32_t bulk_datagrams_per_s_max = 16384;

  // Hostile input (docs/security.md): bytes accepted from one source address per second (a
  // burst of one second's worth; more is dropped unread), datagrams per second that all answers
  // to small requests (join tables, anti-entropy responses) may take together, and the slots of
  // the per-address tables behind both (they start small and double up to this many slots).
  std::uint32_t peer_bytes_per_s_max = 16u << 20;
  std::uint32_t answer_datagrams_per_s_max = 4096;
  std::uint32_t rate_limit_peers_max = 4096;

  // Encryption (include/rumor/security.h, docs/security.md): raw 32-byte keys, the first is
  // the primary; the mode says what this node sends and accepts. kSend and kRequire need a key.
  std::vector<std::string> keys;
  EncryptionMode encryption = EncryptionMode::kOff;

  static NodeConfig lan();
  static NodeConfig wan();
  static NodeConfig local();  // loopback and tests: fast timers
  Status validate() const;
};

class NodeImpl;
class NodeDriver;

class Node {
 public:
  // The system's entropy and thread identity; `time` drives the protocol.
  static Result<std::unique_ptr<Node>> create(const NodeConfig& config, TimeSource& time);
  static Result<std::unique_ptr<Node>> create(const NodeConfig& config,
                                              const NodeEnvironment& env);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const NodeConfig& config() const;
  NodeId id() const;

  // ---- any thread ----
  // A value may be up to store.value_bytes_max bytes (1 MiB by default): one too large for a
  // datagram spreads as an announcement that other nodes pull in chunks and apply whole
  // (docs/protocol.md "Large values").
  Status set(std::string_view key, std::string_view value);
  Status del(std::string_view key);
  std::optional<std::string> get(std::string_view key) const;
  struct Entry {
    std::string key, value;
    Version version;
    bool deleted = false;
  };
  std::optional<Entry> get_entry(std::string_view key) const;
  // The owner core of a key (0 on a single-core node): a write made on that core's driver
  // thread is applied before set() returns (include/rumor/durable.h's tickets rely on it).
  std::uint32_t core_of_key(std::string_view key) const;
  // Live entries whose key starts with prefix, sorted by key.
  std::vector<Entry> scan_prefix(std::string_view prefix, std::size_t limit = SIZE_MAX) const;

  // ---- home core's driver thread ----
  // Every member this node knows, itself first (dead and left ones until reclaimed). With
  // membership = kPartial: this node, its active view, then its passive view (ids and
  // addresses only, all reported alive): a view of at most 1 + active + passive members, never
  // the cluster (docs/protocol.md "Partial views").
  std::vector<Member> members() const;
  NodeCounters counters() const;
  // Joins through these addresses (memberlist's Join): each is sent a join at the next turn and
  // answers with its member table. They replace the seeds that a node with no live member goes
  // back to. A node already in a cluster learns the other's members too, so two clusters merge.
  void join(std::span<const Address> seeds);
  // Replaces this node's metadata (at most NodeConfig::metadata_bytes_max bytes) and spreads it
  // under a new incarnation, as memberlist's UpdateNode does; config().metadata keeps the value
  // the node started with.
  Status set_metadata(std::string_view metadata);

  // Rotation without downtime: install the new key on every node, then use it on every node,
  // then remove the old one from every node. Keys are raw 32 bytes (decode_key() reads base64);
  // use and remove also take the fingerprint that keys() lists.
  Status install_key(std::string_view raw_key);
  Status use_key(std::string_view key_or_fingerprint);
  Status remove_key(std::string_view key_or_fingerprint);
  std::vector<KeyInfo> keys() const;
  Status set_encryption(EncryptionMode mode);
  EncryptionMode encryption() const;

  // ---- any thread, before start ----
  using ChangeCallback = std::function<void(const Change&)>;
  using MembershipCallback = std::function<void(const MembershipEvent&)>;
  // Changes to keys under prefix, from anywhere in the cluster.
  void subscribe(std::string_view prefix, ChangeCallback cb);
  void on_membership(MembershipCallback cb);

 private:
  friend class NodeDriver;
  friend struct NodeInternals;  // engine/node/internal.h: in-tree simulators only
  explicit Node(std::unique_ptr<NodeImpl> impl);
  std::unique_ptr<NodeImpl> impl_;
  std::unique_ptr<NodeDriver> driver_;
};

}  // namespace rumor
