// NodeImpl: the node behind rumor::Node (include/rumor/node.h) and rumor::NodeDriver
// (include/rumor/driver.h). It composes the components and owns one Core per owner core:
//   Members      SWIM + Lifeguard (engine/members)           on the home core
//   Gossip       broadcast queue, subscriptions, events       on the home core; every other
//                core has a Gossip of its own for its shards' changes
//   AntiEntropy  reconciliation of a core's shards (engine/sync)   one per core
//   Core         a core's shards, counters, rate limits, links, timers    one per core
// The home core (core 0) also runs the node-wide duties: membership (and picking every core's
// gossip targets), the sync schedule and callbacks; every core merges, reconciles, answers and
// spreads the changes of its own shards. Work
// crosses cores only through the SPSC links (engine/node/core.h) and the store's write queues.
// docs/architecture.md has the picture; docs/protocol.md the algorithms.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/rng.h"
#include "base/spsc_queue.h"
#include "engine/gossip/bulk.h"
#include "engine/gossip/gossip.h"
#include "engine/gossip/plumtree.h"
#include "engine/members/hyparview.h"
#include "engine/members/members.h"
#include "engine/node/core.h"
#include "engine/store/store.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"
#include "rumor/node.h"

namespace rumor {

class NodeImpl {
 public:
  NodeImpl(const NodeConfig& config, const NodeEnvironment& env, std::unique_ptr<Store> store);
  ~NodeImpl();

  static constexpr std::uint32_t kHomeCore = 0;

  const NodeConfig& config() const { return config_; }
  NodeId id() const { return config_.id; }
  Store& store() { return *store_; }
  const Store& store() const { return *store_; }
  Members& members() { return members_; }
  const Members& members() const { return members_; }
  Gossip& gossip() { return gossip_; }
  // Partial views (membership = partial; engine/node/partial.cc): HyParView and Plumtree, on the
  // home core. Null in full mode.
  bool partial() const { return views_ != nullptr; }
  const HyParView* views() const { return views_.get(); }
  const Plumtree* tree() const { return tree_.get(); }
  // Node::members(): the member table in full mode; in partial mode this node, its active
  // view and its passive view (docs/protocol.md "Partial views").
  std::vector<Member> member_list() const;
  // Alive members other than this node: the table's, or the active view's.
  std::size_t live_members() const;
  // The node's keyring and mode live in the home core's FrameCrypto; the other cores hold
  // copies (spread_keys).
  crypto::FrameCrypto& crypto() { return home().crypto; }
  const crypto::FrameCrypto& crypto() const { return cores_[kHomeCore]->crypto; }

  // ---- driver (include/rumor/driver.h has the contract) ----
  std::uint32_t cores() const { return static_cast<std::uint32_t>(cores_.size()); }
  std::uint32_t core_of(std::span<const std::byte> datagram) const;
  void start(std::uint32_t c, PacketSink& out);
  void stop(std::uint32_t c, PacketSink& out);
  bool running() const { return cores_[kHomeCore]->running; }
  // Entries of every datagram in a batch merge as one store batch, after the batch.
  void receive(std::uint32_t c, std::span<const ReceivedDatagram> batch, PacketSink& out);
  void tick(std::uint32_t c, PacketSink& out);
  std::uint64_t next_deadline_ms(std::uint32_t c) const;
  void set_waker(std::uint32_t c, std::function<void()> waker);
  std::size_t dispatch_events() { return gossip_.dispatch_events(); }

  // ---- application ----
  Status set(std::string_view key, std::string_view value) { return write(key, value, false); }
  Status del(std::string_view key) { return write(key, {}, true); }
  const NodeCounters& counters() const;
  NodeCounters core_counters(std::uint32_t c) const {
    return c == kHomeCore ? cores_[c]->counters : cores_[c]->published.load();
  }

  // Node::join (home core's driver thread).
  void join(std::span<const Address> seeds);

  // The keyring calls of rumor::Node (home core's driver thread, or before start): applied to
  // the home core's FrameCrypto, then copied to every other core.
  Status install_key(std::string_view raw);
  Status use_key(std::string_view ref);
  Status remove_key(std::string_view ref);
  Status set_encryption(EncryptionMode mode);

 private:
  Core& home() { return *cores_[kHomeCore]; }
  bool is_home(const Core& c) const { return c.index == kHomeCore; }
  std::uint64_t now() { return time_.now_ms(); }
  wire::Outbox outbox(Core& c, PacketSink& sink) {
    // Partial views piggyback nothing: the queue would carry member news no peer keeps.
    return wire::Outbox{c.framing, sink, c.counters, partial() ? nullptr : c.gossip};
  }
  Status write(std::string_view key, std::string_view value, bool tombstone);

  // Receiving, on the core that got the datagram.
  void receive_one(Core& c, const Address& from, std::span<const std::byte> datagram,
                   PacketSink& out);
  void receive_handed(Core& c, const Address& from, std::span<const std::byte> datagram,
                      PacketSink& out);
  void open_and_dispatch(Core& c, const Address& from, const wire::Header& h,
                         std::span<const std::byte> datagram, PacketSink& out);
  // The source address's byte budget (before authentication, so it also holds for junk), the
  // header, the cluster label, and that it is not our own. False, counted, to drop.
  bool admit(Core& c, const Address& from, std::span<const std::byte> datagram, wire::Reader& r,
             wire::Header* h);
  // The messages of a datagram for one of c's shards, after the header and the seal.
  void dispatch(Core& c, const Address& from, const wire::Header& h,
                std::span<const std::byte> messages, PacketSink& out);
  bool take_entry(std::span<const std::byte> body, std::vector<EntryView>& in) const;
  // Remote entries in c.merge_in that c does not own go to their owners; the rest merge.
  void merge(Core& c);
  void on_sync_request(Core& c, const Address& from, std::uint16_t shard,
                       std::span<const std::byte> body, PacketSink& out, bool answer_only);
  // What a small request may make the node send (sync and join answers), `cost` in datagrams.
  bool answer_allowed(const Address& from, double cost = 1.0);
  // Whether the home core may serve `chunks` chunks of a large value to `from` (a live member
  // asking from its own address, within the per-address and total chunk budgets).
  bool bulk_serve_allowed(Core& c, const Address& from, NodeId sender, int chunks);
  // Whether `id` is a live member whose address is `from`.
  bool is_member_at(NodeId id, const Address& from) const;

  // Cross-core work (engine/node/cores.cc).
  bool hand(Core& from, std::uint32_t to, CoreMsg&& msg, bool wake = true);
  void hand_datagram(Core& from, std::uint32_t to, const Address& addr,
                     std::span<const std::byte> datagram);
  void drain_links(Core& c, PacketSink& out);
  bool links_pending(const Core& c) const;
  // Changes applied to c's shards: offered to gossip on the home core, handed to it elsewhere.
  void pump_feeds(Core& c);
  // After a turn of a multi-core node: c's counters for the home core to sum, and whether c has
  // broadcasts pending.
  void publish_core(Core& c);
  void wake(std::uint32_t c);
  // Copies the home core's keys and mode to the other cores: directly before the node starts,
  // else as a KeyState handed over each core's link (retried from home_tick while a link is
  // full), adopted on that core's thread.
  void spread_keys();
  void hand_keys();
  // `st` of a keyring or mode change, spreading the new keys when it succeeded.
  Status keys_changed(Status st);
  void maintenance(Core& c, std::uint64_t now);

  // The home core's node-wide duties.
  void home_tick(PacketSink& out);
  void send_join(PacketSink& out);
  void reconnect_tick(std::uint64_t now, PacketSink& out);
  void gossip_tick(PacketSink& out);
  // A gossip round of core c to `targets` (picked by the home core): packets of c's own while
  // its queue wants a round.
  void gossip_round(Core& c, std::span<const Address> targets, PacketSink& out);
  // Gossip targets for one round (members_.gossip_targets), as addresses.
  std::vector<Address> gossip_addresses();
  void sync_tick(std::uint64_t now, PacketSink& out);
  void catchup_tick(std::uint64_t now, PacketSink& out);
  // A member digest exchange with a random live member (catch-up, and the scheduled exchange
  // when only the tables are due).
  void digest_with_random_member(PacketSink& out);
  void set_joined();
  // A reconciliation with `peer` (0: the preferred sync peer, else a random member), each core
  // its own shards; `members` adds a member digest exchange with the same peer.
  void start_sync(PacketSink& out, NodeId peer, bool members);
  // The state fingerprints a ping carried: where one differs from ours, the exchange that
  // repairs it starts now; where both match, the scheduled one can wait (sync_tick).
  void on_state_sums(Core& c, const Address& from, NodeId sender, const wire::StateSums& m,
                     PacketSink& out);
  // What the peer whose ping carried `m` holds of our state: the classes whose fingerprint
  // equals ours.
  wire::Holds holds_of(const wire::StateSums& m);
  // The store's fingerprint (from its linear sums), never 0; 0 on a multi-core node, whose
  // shards other cores own.
  std::uint32_t store_fingerprint();
  // The scheduled exchange's mean interval: sync_interval_ms, scaled up past 32 members.
  std::uint64_t sync_interval() const;

  // ---- partial views (engine/node/partial.cc) ----
  void make_partial();
  enum class Handled : std::uint8_t { kNo, kYes, kMalformed };
  // The messages partial mode handles itself (the overlay, the tree, probes) and those it
  // ignores (the member table's); kNo for the rest (entries, anti-entropy, large values).
  Handled dispatch_partial(Core& c, const Address& from, const wire::Header& h,
                           const wire::Message& msg, const wire::Outbox& o);
  void partial_tick(PacketSink& out);
  bool tree_held(const wire::TreeId& id) const;

  static std::vector<std::unique_ptr<Core>> make_cores(const NodeConfig& config, Store& store,
                                                       TimeSource& time,
                                                       EntropySource& entropy);

  NodeConfig config_;
  TimeSource& time_;
  ThreadIdentity& threads_;
  std::unique_ptr<Store> store_;
  Rng rng_;
  wire::Limits limits_;
  std::vector<std::unique_ptr<Core>> cores_;
  // Answer datagrams (sync and join answers) per source address and in all, for every core
  // together: a node answers no more with N cores than with one.
  SharedPeerLimiter peer_answers_;
  SharedTokenBucket answers_;
  CoreLinks links_;
  Gossip gossip_;
  Members members_;
  Bulk bulk_;  // large values: announcements pulled in chunks (home core)
  bool joined_ = false;
  // The seeds (config_.seeds until join() replaces them: config() is read on any thread) and
  // a join() waiting for the next turn.
  std::vector<Address> seeds_;
  bool join_requested_ = false;
  std::vector<Members::Record> member_in_;  // home core only: the records of the datagram being dispatched

  // Per core: the key state the home core still has to hand over (null when none is due).
  std::vector<std::shared_ptr<const crypto::KeyState>> keys_due_;
  // Per shard; element s is touched only by the owner core of shard s.
  std::vector<std::uint64_t> feed_cursor_;
  std::uint64_t next_gossip_ms_ = 0;
  std::uint64_t next_sync_ms_ = 0;
  std::uint64_t next_join_ms_ = 0;
  std::uint64_t next_reconnect_ms_ = 0;
  NodeId preferred_sync_peer_ = 0;  // the seed that answered our join: sync with it first
  // When a probe last found this node's store (table) equal to a peer's, 0 after a differing
  // one; and when a probe's member fingerprint last started a digest exchange (at most one per
  // probe interval).
  std::uint64_t store_matched_ms_ = 0, members_matched_ms_ = 0;
  // Since when pings have found the store (table) differing with no equal one between, and
  // when a probe last started a reconciliation (member digest).
  std::uint64_t store_differ_since_ = 0, members_differ_since_ = 0;
  std::uint64_t probe_sync_ms_ = 0, members_probe_digest_ms_ = 0;
  // Catching up after a join: member digests with random peers every other gossip round while
  // they keep bringing news (a mass join), stopping after a few quiet ones.
  std::uint64_t next_catchup_ms_ = UINT64_MAX;
  std::uint32_t catchup_quiet_ = 0;
  std::size_t catchup_size_ = 0;

  mutable NodeCounters summed_;  // counters(): every core's, summed

  std::unique_ptr<HyParView> views_;
  std::unique_ptr<Plumtree> tree_;
};

}  // namespace rumor
