// Members: SWIM membership with Lifeguard (docs/protocol.md "Membership"). The member table,
// the randomised round-robin probe with indirect probes through relays, suspicion with a timeout
// that shrinks as independent confirmations arrive, refutation by incarnation, and Lifeguard's
// local health score that stretches this node's own timers when it is the slow one.
//
// It sends through a wire::Outbox it is handed per call, tells the cluster through Gossip (its
// news rides the broadcast queue) and tells the application through Gossip's event queue. It
// reads time only from the TimeSource the node was given.
//
// Not thread-safe: owned by the node's home core, on its driver thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/rng.h"
#include "engine/gossip/gossip.h"
#include "engine/members/member_directory.h"
#include "engine/store/journal.h"
#include "engine/wire/packet.h"
#include "engine/wire/wire.h"
#include "rumor/node.h"
#include "rumor/time_source.h"

namespace rumor {

class Members {
 public:
  Members(const NodeConfig& config, TimeSource& time, Rng& rng, NodeCounters& counters,
          Gossip& gossip);
  ~Members();
  Members(const Members&) = delete;
  Members& operator=(const Members&) = delete;

  // ---- lifecycle ----
  // A fresh incarnation above any this node used before (its start time), alive, announced.
  void start(std::uint64_t now);
  // Left, announced; refutations stop. Returns members to tell directly.
  std::vector<Address> leave(std::size_t tell);
  // New metadata for this node: a higher incarnation carries it (memberlist's UpdateNode);
  // receivers replace what they hold, digests see the incarnation move.
  void set_metadata(std::string_view metadata);
  // Durability (engine/store/journal.h): every change of this node's own incarnation is told to
  // the journal; a restored incarnation is the floor that start() goes above.
  void set_journal(Journal* journal) { journal_ = journal; }
  void restore_incarnation(std::uint64_t inc);

  // ---- what packets say ----
  // A member record: news (gossip) or, with state_sync, one record of a pushed table.
  void apply(const wire::MemberMsg& m, bool state_sync);
  struct Record {
    wire::MemberMsg msg;
    bool state_sync = false;
  };
  // apply() for each, in order, with their table lookups issued first.
  void apply_batch(std::span<const Record> records);
  // Acks; `holds` is what the pinger's fingerprints showed it holds of our state.
  void on_ping(const Address& from, const wire::Ping& m, const wire::Outbox& out,
               wire::Holds holds = wire::kHoldsNothing);
  void on_ack(NodeId sender, std::uint32_t seq, const wire::Outbox& out);
  void on_nack(NodeId sender, std::uint32_t seq);
  void on_ping_req(const Address& from, const wire::PingReq& m, const wire::Outbox& out);

  // ---- timers ----
  // Probes, relayed probes and suspicion timeouts due at `now`.
  void tick(std::uint64_t now, const wire::Outbox& out);
  // Forgets members dead or gone for longer than dead_reclaim_ms.
  void reclaim(std::uint64_t now);
  std::uint64_t next_deadline_ms() const;

  // ---- the table ----
  // This node's whole table (dead and suspect members included: that is how a healed partition
  // finds out), as many datagrams as it takes. Each opens with `kind` (kJoin or kJoinReply) so
  // the receiver treats its records as state, not as news; only the first kJoin asks for the
  // receiver's table back when reply_wanted.
  void send_table(const Address& to, wire::MsgType kind, bool reply_wanted,
                  const wire::Outbox& out);
  // Push-pull by digest: only the records that differ cross (docs/protocol.md "Member tables").
  // The initiator sends its bucket sums; the responder answers with the buckets that differ
  // and its records in them, then the initiator sends its own records in those buckets. A
  // responder whose sums all match sends nothing. `salt` keys the 16-bit sums, so a collision
  // that hides a difference in one exchange does not hide it in the next.
  void send_digest(const Address& to, std::uint32_t salt, const wire::Outbox& out);
  // 2^bits buckets in a digest of a table of `members` (docs/protocol.md "Member tables").
  static unsigned digest_bits(std::size_t members);
  // False when the body is malformed. `answer(datagrams)` says whether the rate limit allows
  // an answer of that many datagrams (at most one call per digest datagram).
  bool on_digest(const Address& from, std::span<const std::byte> body, const wire::Outbox& out,
                 const std::function<bool(double)>& answer);
  bool on_diff(const Address& from, std::span<const std::byte> body, const wire::Outbox& out);
  static constexpr unsigned kDigestBitsMax = MemberDirectory::kBucketBits;
  // A 32-bit fingerprint of the whole table (every member's id, incarnation and state; self
  // included), never 0. Two views with equal tables have equal fingerprints.
  std::uint32_t fingerprint() const;
  // Every ping this node sends carries a kStateSums message: this table's fingerprint and
  // `store()`'s (0 where the store offers none).
  void set_store_fingerprint(std::function<std::uint32_t()> store) {
    store_fingerprint_ = std::move(store);
  }
  // While this node catches up after a join it pulls whole buckets by digest, so it does not
  // also relay other members' alive news: in a mass join every record would otherwise be
  // sent R more times (docs/protocol.md "Formation"). Its own news, suspicions and deaths are
  // relayed throughout.
  void set_relay_alive(bool relay) { relay_alive_ = relay; }
  // Whether a peer answered a digest with differences since the last call (and resets it).
  bool take_diff_seen() { return std::exchange(learned_from_diff_, false); }

  // Up to k distinct alive members other than the two excluded, uniformly at random.
  std::vector<NodeId> random_alive(std::size_t k, NodeId exclude1, NodeId exclude2);
  // Gossip targets: fanout alive members, now and then a suspect (it must hear to refute).
  std::vector<NodeId> gossip_targets(std::size_t fanout);
  // A random dead (not left) member's address, for serf's reconnect; false when there is none.
  bool random_dead(Address* address);
  // The address of a known member (alive or not); null when unknown.
  const Address* address_of(NodeId id) const;
  bool is_alive(NodeId id) const;
  std::vector<Member> list() const;
  // Alive and suspect members other than this node.
  std::size_t live() const { return live_count_; }
  std::size_t size() const { return count_ + 1; }
  std::uint32_t local_health() const { return lhm_; }
  // Member records received: in tables (joins, digest exchanges) and as news (gossip). What
  // forming a cluster costs is measured against N^2 with these (docs/protocol.md).
  std::uint64_t table_records() const { return table_records_; }
  std::uint64_t news_records() const { return news_records_; }

  // ---- large simulations (`rumor load`) ----
  // Before start: keep ids, names and addresses in `dir`, shared with other nodes on this
  // thread.
  void share_directory(std::shared_ptr<MemberDirectory> dir);
  MemberDirectory& directory() { return *dir_; }
  // Before start: a member alive at `incarnation` as if a join had told us, without a packet
  // and without gossiping it. The member must really start with that incarnation; `text` is a
  // hold the caller keeps (this takes its own).
  void preload(NodeId id, MemberDirectory::Text text, std::uint64_t incarnation);
  void reserve(std::size_t n);
  // Bytes this view holds (the shared directory not included).
  std::size_t memory_bytes() const;

 private:
  using Slot = MemberDirectory::Slot;
  static constexpr Slot kNone = MemberDirectory::kNone;
  // A member's record is two words in arrays indexed by its directory slot: every node holds N
  // of them, a simulation N^2 (docs/load.md "Memory per node"). What only some members need —
  // suspicion, the time a member went down — lives in small side tables.
  static std::uint64_t pack(std::uint64_t incarnation, MemberState s) {
    return incarnation << 2 | static_cast<std::uint64_t>(s);
  }
  MemberState state(Slot s) const { return static_cast<MemberState>(word_[s] & 3); }
  std::uint64_t incarnation(Slot s) const { return word_[s] >> 2; }
  NodeId id(Slot s) const { return dir_->id(s); }
  const Address& address(Slot s) const { return dir_->address(text_[s]); }
  struct Suspicion {
    Slot slot = kNone;
    std::uint64_t start_ms = 0;
    std::vector<NodeId> confirmations;  // who suspected it, independently (Lifeguard)
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

  std::uint64_t now() { return time_.now_ms(); }
  std::uint64_t scaled(std::uint64_t ms) const { return ms * (lhm_ + 1); }
  // The slot of a member this view knows (self included); kNone otherwise.
  Slot find(NodeId id) const {
    const Slot s = dir_->find(id);
    return s < text_.size() && text_[s] != kNone ? s : kNone;
  }
  void cover(Slot s);
  // fn(slot) for every member this view knows but itself.
  template <class Fn>
  void for_known(const Fn& fn) const {
    for (std::size_t i = 0; i < text_.size(); ++i) {
      if (text_[i] != kNone && i != self_) fn(static_cast<Slot>(i));
    }
  }
  Suspicion* suspicion(Slot s);
  Member to_member(Slot s) const;
  wire::MemberMsg to_msg(Slot s, NodeId from) const;

  Slot add(const wire::MemberMsg& m);
  void set_word(Slot s, std::uint64_t incarnation, MemberState next, NodeId from, bool is_new);
  // Changes a known member's word, keeping the digest sums.
  void rewrite(Slot s, std::uint64_t word);
  // A known member's share of its bucket's sum: a hash of (id, incarnation, state).
  std::uint32_t contribution(Slot s) const;
  std::size_t fine_bucket(Slot s) const { return MemberDirectory::bucket_of(id(s)); }
  void set_state(Slot s, MemberState state, std::uint64_t incarnation, NodeId from);
  void refute(std::uint64_t claimed_incarnation);
  void announce(Slot s, NodeId from) { gossip_.broadcast_member(to_msg(s, from)); }
  void emit(Slot s, MemberState previous, bool joined);
  void note_state(MemberState previous, MemberState next, bool is_new);
  void adjust_health(int delta);
  std::uint64_t suspicion_timeout_ms(const Suspicion& sus) const;

  // Records go out in kJoin datagrams (state, not news); `next()` gives the slots to send
  // and kNone at the end. `total` is what a kJoinReply announces.
  template <class Next>
  void send_records(const Address& to, wire::MsgType kind, bool reply_wanted, std::size_t total,
                    const Next& next, const wire::Outbox& out);
  // A coarse bucket's sum of contributions, salted and folded to 16 bits.
  std::uint16_t coarse_sum(unsigned bits, std::size_t bucket, std::uint32_t salt) const;
  // fn(slot) for every member this view knows (self included) in a coarse bucket.
  template <class Fn>
  void for_bucket(unsigned bits, std::size_t bucket, const Fn& fn) const {
    const unsigned shift = kDigestBitsMax - bits;
    for (std::size_t f = bucket << shift; f < (bucket + 1) << shift; ++f) {
      for (Slot s : dir_->bucket(f)) {
        if (s < text_.size() && text_[s] != kNone) fn(s);
      }
    }
  }
  std::size_t bucket_records(unsigned bits, std::size_t bucket) const;
  void send_buckets(const Address& to, unsigned bits, std::span<const std::uint16_t> buckets,
                    const wire::Outbox& out);

  void probe_tick(std::uint64_t now, const wire::Outbox& out);
  void finish_probe();
  NodeId next_probe_target();
  void relay_tick(std::uint64_t now, const wire::Outbox& out);
  void suspicion_tick(std::uint64_t now);

  const NodeConfig& config_;
  TimeSource& time_;
  Rng& rng_;
  NodeCounters& counters_;
  Gossip& gossip_;
  bool started_ = false;  // preload and share_directory are for before start
  bool leaving_ = false;

  std::shared_ptr<MemberDirectory> dir_;
  Slot self_ = kNone;
  Journal* journal_ = nullptr;
  std::vector<std::uint64_t> word_;  // by slot: incarnation << 2 | state
  std::vector<MemberDirectory::Text> text_;  // by slot: kNone where this view has no member
  std::size_t count_ = 0;  // members known, self excluded
  // Sums of contributions (mod 2^32) per fine bucket (the top kDigestBitsMax bits of the id),
  // kept as members change so that a digest costs 2,048 additions, not a pass over the table.
  // This node's own contribution is not in them (it is added where they are read), so a table
  // that never held another member (every one in partial mode) has no sums at all: 8 KiB less.
  std::vector<std::uint32_t> sums_;
  void sum_in(Slot s) {
    if (s == self_) return;
    if (sums_.empty()) sums_.resize(std::size_t{1} << kDigestBitsMax);
    sums_[fine_bucket(s)] += contribution(s);
  }
  void sum_out(Slot s) {
    if (s != self_) sums_[fine_bucket(s)] -= contribution(s);
  }
  // This probe round's walk over the slot space (next_probe_target).
  std::size_t probe_mod_ = 0, probe_a_ = 1, probe_c_ = 1, probe_x_ = 0, probe_steps_ = 0;
  std::size_t live_count_ = 0;
  std::vector<Suspicion> suspects_;
  std::unordered_map<Slot, std::uint64_t> down_since_;  // dead and left members: since when
  std::uint32_t lhm_ = 0;

  // The digest exchange this node started last: its diff is answered once.
  std::uint32_t pending_salt_ = 0;
  Address pending_peer_;
  unsigned pending_bits_ = 0;
  std::vector<bool> pending_sent_;  // buckets already sent in that exchange
  bool learned_from_diff_ = false;
  bool relay_alive_ = true;
  std::uint64_t table_records_ = 0, news_records_ = 0;
  std::function<std::uint32_t()> store_fingerprint_;

  Probe probe_;
  std::vector<Relay> relays_;
  std::uint32_t next_seq_ = 1;
  std::uint64_t next_probe_ms_ = 0;
};

}  // namespace rumor
