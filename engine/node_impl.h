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

#include "engine/broadcast.h"
#include "engine/crypto.h"
#include "engine/id_index.h"
#include "engine/member_names.h"
#include "engine/rate_limit.h"
#include "engine/store.h"
#include "base/assert.h"
#include "engine/wire.h"
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
  // by the same thread (engine/member_names.h), instead of a table of this node's own.
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

  std::uint64_t now() { return time_.now_ms(); }
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
  void send_join(PacketSink& out);
  void send_member_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                         PacketSink& out);
  void reconnect_tick(std::uint64_t now, PacketSink& out);

  // Anti-entropy.
  void sync_tick(std::uint64_t now, PacketSink& out);
  void start_sync(std::uint64_t now, PacketSink& out);
  void pump_sync(PacketSink& out);
  void finish_sync(bool complete);
  void handle_sync_request(const Address& from, NodeId sender,
                           std::span<const std::byte> body, PacketSink& out);
  void handle_sync_response(NodeId sender, std::span<const std::byte> body, PacketSink& out);
  // What a small request can make us send (sync answers, join answers), `cost` in datagrams:
  // a token bucket per source address and one for all of them (engine/rate_limit.h).
  bool answer_allowed(const Address& from, std::uint64_t now, double cost = 1.0);
  void init_sync();
  void prefer_sync_peer(NodeId peer);
  std::uint64_t sync_deadline_ms() const;

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
  std::atomic<std::uint64_t> driver_thread_{0};  // token of the thread that called start()

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
  std::vector<std::uint64_t> feed_cursor_;
  std::vector<EntryView> merge_in_;
  std::vector<MergeOutcome> merge_out_;

  struct SyncDeleter {
    void operator()(SyncState* s) const;  // defined where SyncState is (node_sync.cc)
  };
  std::unique_ptr<SyncState, SyncDeleter> sync_;

  std::uint64_t next_probe_ms_ = 0;
  std::uint64_t next_gossip_ms_ = 0;
  std::uint64_t next_sync_ms_ = 0;
  std::uint64_t next_join_ms_ = 0;
  std::uint64_t next_reconnect_ms_ = 0;
  std::uint64_t next_maintenance_ms_ = 0;
  std::uint32_t purge_cursor_ = 0;

  struct Subscription {
    std::string prefix;
    Node::ChangeCallback cb;
  };
  std::vector<Subscription> subscriptions_;
  std::vector<Node::MembershipCallback> membership_cbs_;
  std::function<void()> waker_;  // set before start, read by writer threads after
  std::deque<Pending> events_;

  mutable NodeCounters counters_;
};

// A datagram being built in a sink buffer: header first, then messages, then (optionally) as
// many queued broadcasts as still fit.

class NodeImpl::Packet {
 public:
  Packet(NodeImpl& n, PacketSink& sink) : n_(n), sink_(sink), w_(std::span<std::byte>()) {}

  bool open(std::uint16_t shard = 0) {
    std::span<std::byte> buf = sink_.buffer();
    if (buf.empty()) {
      ++n_.counters_.sink_full;
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
    if (piggyback) n_.counters_.broadcasts_sent += n_.broadcasts_.fill(w_, n_.retransmit_limit());
    RUMOR_ASSERT(w_.ok());  // every append checks space; a failed one was rolled back
    std::size_t len = w_.size();
    if (n_.crypto_.sealing()) {
      len = n_.crypto_.seal(frame_, len);
      ++n_.counters_.packets_sealed;
    }
    sink_.commit(to, len);
    ++n_.counters_.packets_sent;
    n_.counters_.bytes_sent += len;
    open_ = false;
  }

 private:
  NodeImpl& n_;
  PacketSink& sink_;
  std::span<std::byte> frame_;  // the whole datagram buffer: the writer's part plus the seal's
  wire::Writer w_;
  bool open_ = false;
};

}  // namespace rumor
