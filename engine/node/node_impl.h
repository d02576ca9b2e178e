// NodeImpl: the gossip state machine behind rumor::Node (include/rumor/node.h has the contract).
// SWIM membership with Lifeguard, rumor mongering of updates, push-pull anti-entropy, the
// store. docs/protocol.md describes the algorithms and their invariants.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/spsc_queue.h"
#include "engine/gossip/broadcast.h"
#include "engine/wire/crypto.h"
#include "engine/members/id_index.h"
#include "engine/members/member_names.h"
#include "engine/node/rate_limit.h"
#include "engine/store/store.h"
#include "base/assert.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"

namespace rumor {

// xoshiro256**: small, fast, and seeded, so the simulator replays exactly.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  // Uniform in [0, n), n > 0.
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t s_[4];
};

// An id of the calling thread (the address of a thread_local), never 0.
std::uint64_t thread_token();

class NodeImpl {
 public:
  NodeImpl(const NodeConfig& config, TimeSource& time, std::unique_ptr<Store> store);
  ~NodeImpl();

  const NodeConfig& config() const { return config_; }
  NodeId id() const { return config_.id; }
  Store& store() { return *store_; }
  const Store& store() const { return *store_; }

  void start(PacketSink& out);
  void stop(PacketSink& out);
  bool running() const { return running_; }
  void receive(const Address& from, std::span<const std::byte> datagram, PacketSink& out);
  void tick(PacketSink& out);
  std::uint64_t next_deadline_ms() const;
  std::size_t dispatch_events();

  // ---- owner cores (store.owners > 1; docs/agent.md "Threading model") ----
  // Core 0 is driven by the calls above; core c >= 1 by these, each on the thread of its core.
  std::uint32_t cores() const { return store_->owner_count(); }
  std::uint32_t core_of(std::span<const std::byte> datagram) const;
  void start_core(std::uint32_t c, PacketSink& out);
  void stop_core(std::uint32_t c, PacketSink& out);
  void receive_core(std::uint32_t c, const Address& from, std::span<const std::byte> datagram,
                    PacketSink& out);
  void tick_core(std::uint32_t c, PacketSink& out);
  std::uint64_t next_deadline_core_ms(std::uint32_t c) const;
  void set_core_waker(std::uint32_t c, std::function<void()> waker);

  Status set(std::string_view key, std::string_view value);
  Status del(std::string_view key);
  std::vector<Member> members() const;
  // Load tests only (`rumor load --bootstrap static`): before start(), adds a member as alive at
  // `incarnation` as if a join had told us, without a packet and without gossiping it. Not a
  // join: the member must really start with that incarnation (the simulator starts every node
  // at the same virtual time) or the first alive it gossips is news to everyone.
  // `text` is a handle held in the table shared with share_names(): taken once per member for
  // all the nodes it is preloaded into (a 10,000-node table is 10^8 preloads).
  void preload_member(NodeId id, MemberNames::Handle text, const Address& address,
                      std::uint64_t incarnation);
  void reserve_members(std::size_t n);
  // Before start(): keep member names and metadata in `names`, shared with other nodes driven
  // by the same thread (engine/members/member_names.h), instead of a table of this node's own.
  void share_names(std::shared_ptr<MemberNames> names);
  // Alive and suspect members other than this node.
  std::size_t live_members() const { return live_count_; }
  void subscribe(std::string_view prefix, Node::ChangeCallback cb);
  void on_membership(Node::MembershipCallback cb);
  void set_waker(std::function<void()> waker) { waker_ = std::move(waker); }
  const NodeCounters& counters() const;
  crypto::FrameCrypto& crypto() { return crypto_; }
  const crypto::FrameCrypto& crypto() const { return crypto_; }

  std::size_t pending_broadcasts() const { return broadcasts_.size(); }
  // Lifeguard's local health score (0 = healthy).
  std::uint32_t local_health() const { return lhm_; }

 private:
  // One per member: every node holds N of them, a simulation N^2, so the record stays small
  // (docs/load.md "Memory per node"): name and metadata live in the shared MemberNames table.
  struct MemberRec {
    NodeId id = 0;
    Address address;
    MemberState state = MemberState::kAlive;
    MemberNames::Handle text = 0;  // name and metadata, in names_
    std::uint64_t incarnation = 0;
    std::uint64_t state_since_ms = 0;
    // Suspicion (Lifeguard): when it started and who confirmed it.
    std::uint64_t suspect_start_ms = 0;
    std::vector<NodeId> confirmations;
  };
  struct Probe {
    bool active = false;
    NodeId target = 0;
    std::uint32_t seq = 0;
    std::uint64_t indirect_at_ms = 0;
    std::uint64_t end_ms = 0;
    bool acked = false;
    bool indirect_sent = false;
    std::uint32_t expected_nacks = 0;
    std::uint32_t nacks = 0;
    std::vector<NodeId> relays;  // asked to ping the target; their acks and nacks count
    std::uint64_t nacked = 0;    // bit per relay that answered with a nack
  };
  struct Relay {
    std::uint32_t local_seq = 0;
    Address requester;
    std::uint32_t requester_seq = 0;
    std::uint64_t nack_at_ms = 0;
    std::uint64_t expire_ms = 0;
  };
  struct Pending {
    bool is_change = false;
    Change change;
    MembershipEvent membership;
  };
  class Packet;
  struct SyncState;
  struct SyncDeleter {
    void operator()(SyncState* s) const;  // defined where SyncState is (node_sync.cc)
  };

  // What crosses from one owner core to another, through the SPSC link of that pair.
  struct CoreMsg {
    enum class Kind : std::uint8_t {
      kDatagram,   // a datagram for the target core: bytes in `key`, source in `addr`
      kAnswer,     // a sync request datagram whose records the target core must answer
      kMerge,      // a remote entry for one of the target's shards (key, value, version, flag)
      kChange,     // to core 0: an applied change of the sender's shards (rumor mongering)
      kStartSync,  // from core 0: reconcile with `peer` at `addr`, session id in `session`
    };
    Kind kind = Kind::kDatagram;
    bool tombstone = false;
    bool local = false;
    std::uint32_t session = 0;
    NodeId peer = 0;
    Address addr;
    Version version;
    std::string key;
    std::string value;
  };
  // One owner core's protocol state: its anti-entropy, its counters, its wake-up. Core 0's
  // counters are NodeImpl::counters_ (written on core 0 only); core c >= 1 writes its own and
  // publishes a copy (relaxed atomics) that counters() on core 0 sums.
  struct alignas(kCacheLineBytes) CoreState {
    std::uint32_t index = 0;
    bool running = false;
    NodeCounters counters;
    std::unique_ptr<std::atomic<std::uint64_t>[]> published;
    std::unique_ptr<SyncState, SyncDeleter> sync;
    // Core c >= 1's own rate limits (core 0 uses NodeImpl's): like those, per core.
    std::unique_ptr<PeerLimiter> peer_bytes, peer_answers;
    std::unique_ptr<TokenBucket> answers;
    std::vector<EntryView> merge_in;
    std::vector<MergeOutcome> merge_out;
    std::vector<CoreMsg> inbox;  // drained from the links, reused
    std::uint64_t next_maintenance_ms = 0;
    std::uint32_t purge_cursor = 0;
    std::function<void()> waker;  // set before start
    // Token of the thread driving this core (0 before it started). Acquire/release: a writer
    // thread that sees it sees the store binding made before it.
    std::atomic<std::uint64_t> thread{0};
  };

  std::uint64_t now() { return time_.now_ms(); }
  // receive() once the datagram is counted (also for datagrams other cores hand to core 0).
  void receive_counted(const Address& from, std::span<const std::byte> datagram, PacketSink& out);
  Status write(std::string_view key, std::string_view value, bool tombstone);
  std::uint32_t retransmit_limit() const;
  std::uint64_t scaled(std::uint64_t ms) const { return ms * (lhm_ + 1); }
  MemberRec* find(NodeId id);
  std::uint32_t index_of(NodeId id) const {
    return index_.find(id, [this](std::uint32_t p) { return members_[p].id; });
  }
  void index_put(NodeId id, std::uint32_t pos) {
    index_.put(id, pos, [this](std::uint32_t p) { return members_[p].id; });
  }
  std::string_view name_of(const MemberRec& m) const { return names_->name(m.text); }
  std::string_view metadata_of(const MemberRec& m) const { return names_->metadata(m.text); }
  Member to_member(const MemberRec& m) const {
    return Member{m.id, std::string(name_of(m)), m.address, m.state, m.incarnation,
                  std::string(metadata_of(m))};
  }
  MemberRec& self() { return members_[0]; }

  // Membership.
  void apply_member(const wire::MemberMsg& m, bool state_sync);
  MemberRec& add_member(const wire::MemberMsg& m);
  void set_state(MemberRec& rec, MemberState state, std::uint64_t incarnation, NodeId from);
  void refute(std::uint64_t claimed_incarnation);
  void broadcast_member(const MemberRec& rec, NodeId from);
  std::uint64_t suspicion_timeout_ms(const MemberRec& rec) const;
  void note_state(NodeId id, MemberState previous, MemberState next, bool is_new);
  void emit_membership(const MemberRec& rec, MemberState previous, bool joined);
  void adjust_health(int delta);

  // Probing.
  void probe_tick(std::uint64_t now, PacketSink& out);
  void finish_probe();
  NodeId next_probe_target();
  void handle_ack(NodeId sender, std::uint32_t seq, PacketSink& out);
  void handle_nack(NodeId sender, std::uint32_t seq);
  void handle_ping_req(const Address& from, const wire::PingReq& m, PacketSink& out);
  void relay_tick(std::uint64_t now, PacketSink& out);
  std::vector<NodeId> random_members(std::size_t k, NodeId exclude1, NodeId exclude2);

  // Dissemination.
  void gossip_tick(PacketSink& out);
  void pump_feeds();
  void queue_entry(const EntryView& e);
  void offer_change(const EntryView& e, bool local);

  // Owner cores.
  NodeCounters& counters_of(std::uint32_t c) { return c == 0 ? counters_ : cores_[c]->counters; }
  bool core_running(std::uint32_t c) const { return c == 0 ? running_ : cores_[c]->running; }
  SpscQueue<CoreMsg>& link(std::uint32_t from, std::uint32_t to) {
    return *links_[static_cast<std::size_t>(from) * cores() + to];
  }
  // Hands msg to core `to` and wakes it. False (counted) when the link is full.
  bool hand(std::uint32_t from, std::uint32_t to, CoreMsg&& msg, bool wake = true);
  // Hands a copy of a datagram that arrived at core `from` to core `to`, which owns its shard.
  void hand_datagram(std::uint32_t from, std::uint32_t to, const Address& addr,
                     std::span<const std::byte> datagram);
  // What every core checks before any work on a datagram: the source address's byte budget
  // (bounded table, engine/node/rate_limit.h; before authentication, so it also holds for junk),
  // the header, the cluster label, and that it is not our own. False, counted in k, to drop.
  bool admit(PeerLimiter& limiter, NodeCounters& k, const Address& from,
             std::span<const std::byte> datagram, wire::Reader& r, wire::Header* h);
  void wake_core(std::uint32_t c);
  // Processes a datagram whose header was read, on the core that owns its target shard.
  void process_core(std::uint32_t c, const Address& from, const wire::Header& h,
                    wire::Reader& r, PacketSink& out);
  // Core c >= 1 reads plaintext only (encryption needs a single-core node): false, counted,
  // for a sealed frame or unknown flags.
  bool plaintext_frame(std::uint32_t c, std::span<const std::byte> datagram);
  // Decodes an entry message into `in` (views into the datagram); false when it is malformed.
  bool take_entry(std::span<const std::byte> body, std::vector<EntryView>& in) const;
  // Merges merge_in of core c (entries of c's shards) and counts the outcomes.
  void merge_core(std::uint32_t c);
  // Remote entries in `in` that core c does not own go to their owners; the rest stay.
  void split_foreign(std::uint32_t c, std::vector<EntryView>& in);
  void drain_links(std::uint32_t c, PacketSink& out);
  void pump_core_feeds(std::uint32_t c);
  void publish_counters(std::uint32_t c);
  bool links_pending(std::uint32_t c) const;
  void core_maintenance(std::uint32_t c, std::uint64_t now);
  void send_join(PacketSink& out);
  void send_member_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                         PacketSink& out);
  void reconnect_tick(std::uint64_t now, PacketSink& out);

  // Anti-entropy. Core 0 schedules rounds and picks the peer; every core c reconciles its own
  // shards with that peer (a session of owner c) and answers requests for its shards.
  void sync_tick(std::uint64_t now, PacketSink& out);
  void start_sync(std::uint64_t now, PacketSink& out);
  void session_tick(std::uint32_t c, std::uint64_t now, PacketSink& out);
  void begin_session(std::uint32_t c, NodeId peer, const Address& addr, std::uint32_t session,
                     std::uint64_t now, PacketSink& out);
  void pump_sync(std::uint32_t c, PacketSink& out);
  void finish_sync(std::uint32_t c, bool complete);
  void handle_sync_request(std::uint32_t c, const Address& from, std::uint16_t shard,
                           std::span<const std::byte> body, PacketSink& out, bool answer_only);
  void handle_sync_response(std::uint32_t c, NodeId sender, std::span<const std::byte> body,
                            PacketSink& out);
  // What a small request can make core c send (sync answers, join answers), `cost` in
  // datagrams: a token bucket per source address and one for all of them
  // (engine/node/rate_limit.h), per core.
  bool answer_allowed(std::uint32_t c, const Address& from, std::uint64_t now, double cost = 1.0);
  void init_sync();
  void prefer_sync_peer(NodeId peer);
  std::uint64_t sync_deadline_ms(std::uint32_t c) const;

  void maintenance_tick(std::uint64_t now);

  NodeConfig config_;
  TimeSource& time_;
  std::unique_ptr<Store> store_;
  Rng rng_;
  wire::Limits limits_;
  std::uint32_t label_hash_ = 0;
  crypto::FrameCrypto crypto_;  // seals what Packet sends, opens what receive() gets
  PeerLimiter peer_bytes_;      // bytes accepted per source address
  PeerLimiter peer_answers_;    // answer datagrams per source address
  TokenBucket answers_;         // answer datagrams, all addresses together
  bool running_ = false;
  bool leaving_ = false;
  bool joined_ = false;

  std::shared_ptr<MemberNames> names_;
  std::vector<MemberRec> members_;  // [0] is this node
  IdIndex index_;
  std::size_t live_count_ = 0;
  std::vector<NodeId> suspects_;
  std::uint32_t lhm_ = 0;

  std::vector<NodeId> probe_order_;
  std::size_t probe_pos_ = 0;
  Probe probe_;
  std::vector<Relay> relays_;
  std::uint32_t next_seq_ = 1;

  BroadcastQueue broadcasts_;
  // Per shard; element s is touched only by the owner core of shard s.
  std::vector<std::uint64_t> feed_cursor_;

  // cores_[c] for every owner core (one for a single-core node); links_[from * cores + to].
  std::vector<std::unique_ptr<CoreState>> cores_;
  std::vector<std::unique_ptr<SpscQueue<CoreMsg>>> links_;

  std::uint64_t next_probe_ms_ = 0;
  std::uint64_t next_gossip_ms_ = 0;
  std::uint64_t next_sync_ms_ = 0;
  std::uint64_t next_join_ms_ = 0;
  std::uint64_t next_reconnect_ms_ = 0;
  std::uint64_t next_maintenance_ms_ = 0;

  struct Subscription {
    std::string prefix;
    Node::ChangeCallback cb;
  };
  std::vector<Subscription> subscriptions_;
  std::vector<Node::MembershipCallback> membership_cbs_;
  std::function<void()> waker_;  // set before start, read by writer threads after
  std::deque<Pending> events_;

  mutable NodeCounters counters_;
  mutable NodeCounters summed_;  // counters(): core 0's plus the other cores' published copies
};

// A datagram being built in a sink buffer: header first, then messages, then (optionally) as
// many queued broadcasts as still fit.

class NodeImpl::Packet {
 public:
  Packet(NodeImpl& n, PacketSink& sink) : Packet(n, sink, n.counters_) {}
  // On owner core c >= 1: counts into that core's counters, never piggybacks.
  Packet(NodeImpl& n, PacketSink& sink, NodeCounters& counters)
      : n_(n), sink_(sink), c_(counters), w_(std::span<std::byte>()) {}

  bool open(std::uint16_t shard = 0) {
    std::span<std::byte> buf = sink_.buffer();
    if (buf.empty()) {
      ++c_.sink_full;
      return false;
    }
    if (buf.size() > n_.config_.datagram_bytes_max) buf = buf.first(n_.config_.datagram_bytes_max);
    // Room for the seal, sealed or not (so the mode can change at any time): every datagram's
    // plaintext is at most datagram_bytes_max - kSealOverheadBytes.
    RUMOR_ASSERT(buf.size() > crypto::kSealOverheadBytes + wire::kHeaderBytes);
    frame_ = buf;
    w_ = wire::Writer(buf.first(buf.size() - crypto::kSealOverheadBytes));
    wire::write_header(w_, wire::Header{shard, n_.label_hash_, n_.config_.id});
    RUMOR_ASSERT(w_.ok());
    open_ = true;
    return true;
  }
  bool is_open() const { return open_; }
  wire::Writer& w() { return w_; }
  // True when only the header is written.
  bool empty() const { return w_.size() == wire::kHeaderBytes; }

  void send(const Address& to, bool piggyback) {
    RUMOR_ASSERT(open_);
    if (piggyback) {
      RUMOR_ASSERT(&c_ == &n_.counters_);  // the broadcast queue is core 0's
      c_.broadcasts_sent += n_.broadcasts_.fill(w_, n_.retransmit_limit());
    }
    RUMOR_ASSERT(w_.ok());  // every append checks space; a failed one was rolled back
    std::size_t len = w_.size();
    // Only core 0 seals: a multi-core node runs plaintext for now (NodeConfig::validate), and
    // the FrameCrypto is core 0's alone.
    if (&c_ == &n_.counters_ && n_.crypto_.sealing()) {
      len = n_.crypto_.seal(frame_, len);
      ++c_.packets_sealed;
    }
    sink_.commit(to, len);
    ++c_.packets_sent;
    c_.bytes_sent += len;
    open_ = false;
  }

 private:
  NodeImpl& n_;
  PacketSink& sink_;
  std::span<std::byte> frame_;  // the whole datagram buffer: the writer's part plus the seal's
  NodeCounters& c_;
  wire::Writer w_;
  bool open_ = false;
};

}  // namespace rumor
