// Anti-entropy reconciliation: two nodes find what they disagree on by walking their shards'
// Merkle trees down from the roots only where hashes differ, then exchange exactly the entries
// one side lacks or holds older. docs/reconciliation.md states the algorithm, its invariant and
// its cost model; digest/messages.h has the message bodies.
//
// Both roles are sans-I/O state machines over datagrams: no sockets, no clocks, no threads.
// - ReconcileSession (initiator) holds all the state of one exchange: which requests are in
//   flight, which children of a node were answered, what to push. The driver pulls datagrams
//   from next_datagram(), feeds responses to on_datagram(), and calls on_timeout() when its
//   retransmission timer fires; every unanswered request is then sent again (requests are keyed
//   by tree node and idempotent). It is done() when nothing is queued or in flight.
// - ReconcileResponder is stateless: it answers each request datagram from the store's current
//   state alone, so a lost, duplicated or reordered datagram costs at most a retransmission,
//   and a peer cannot make it hold memory.
// A single session makes both sides converge: the initiator merges what the responder sends and
// pushes what the responder lacks. Whatever a session misses (a lost datagram after the last
// attempt, a bloom false positive, a 32-bit truncation collision, a cap reached) leaves the trees
// different, so the next session, with a fresh seed, finds it: no entry is ever lost or
// installed wrongly, because every entry travels whole and lands through the store's LWW merge.
//
// Thread-safety: a session or responder serves the shards of one store owner and runs on that
// owner's thread (it reads the shards' trees and merges into them). Records for shards of other
// owners are skipped and counted; a dispatcher splits messages by shard when owners differ.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "digest/messages.h"
#include "engine/store/store.h"
#include "rumor/status.h"

namespace rumor {

struct ReconcileConfig {
  // Fan-out, depth, hash width and shard count, carried in every message and checked on receipt.
  digest::TreeParams tree;
  std::uint32_t datagram_bytes_max = 1400;  // every message fits in one datagram of this size
  // A node holding at most this many entries is answered with their summaries (14 bytes each)
  // instead of its children's hashes; below depth_max a larger node is descended into, at
  // depth_max it is answered with a bloom filter.
  std::uint32_t list_items_max = 16;
  std::uint32_t bloom_bits_per_item = 16;  // ~0.1% false positives
  // Bounds on one session's memory and burst: every loop and buffer has a limit.
  std::uint32_t requests_in_flight_max = 8192;  // request records sent and unanswered
  std::uint32_t requests_tracked_max = 65536;   // request records tracked (queued, in flight, done)
  std::uint32_t attempts_max = 6;               // sends of one request before it is abandoned
  std::uint32_t responses_per_request_max = 64;  // datagrams one request datagram may draw

  // How a session of a one-owner node starts (docs/reconciliation.md, "Choosing the method"):
  // kAuto sends the sums with a few count residues of its rateless IBLT symbols; the responder
  // answers one difference from the sums, streams symbols when it estimates that at most
  // riblt_auto_symbols_max of them decode the difference, and says "walk" otherwise. kRiblt
  // always streams symbols; kMerkle never does (the sums, then the walk).
  enum class Method : std::uint8_t { kAuto, kRiblt, kMerkle };
  Method method = Method::kAuto;
  // Measured (docs/reconciliation.md "Choosing the method"): symbols past the shards' kept
  // prefix are computed from every entry on both sides, ~250 ms a session at 1M entries against
  // ~8 ms for the walk at d = 1,000, so by default kAuto streams only what the prefix holds
  // (0: the store's riblt_prefix_symbols).
  std::uint32_t riblt_auto_symbols_max = 0;
  // In kAuto, one session in riblt_walk_every (by session id) walks the trees instead: a
  // safety net for a difference symbols cannot see (two writes of one key in one 256 ms tick
  // whose 14-bit writer hashes collide, 2^-14 per such pair). 0: never.
  std::uint32_t riblt_walk_every = 16;
  // Symbols one session decodes at most (16 bytes each of memory on each side) before it gives
  // up on the stream and walks the trees instead.
  std::uint32_t riblt_symbols_max = 1u << 16;
  // Datagrams one symbol request may draw: a stream is sized to decode in one round trip, so it
  // may be longer than responses_per_request_max. 9 bytes a symbol: 256 datagrams carry ~39,000.
  std::uint32_t riblt_datagrams_per_request_max = 256;

  // Parameters matching a store (shards_log2 from virtual_shards).
  static ReconcileConfig for_store(const StoreConfig& store);
  Status validate() const;
};

// Counters of one session or responder. "Applied" entries are those the receiving store
// installed (new or newer); everything else on the wire is metadata.
struct ReconcileStats {
  std::uint64_t datagrams_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t datagrams_received = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t records_sent = 0;
  std::uint64_t retransmits = 0;          // request records sent again after a timeout
  std::uint64_t entries_sent = 0;
  std::uint64_t entry_bytes_sent = 0;
  std::uint64_t entries_received = 0;
  std::uint64_t entries_applied = 0;
  std::uint64_t entry_bytes_applied = 0;  // encoded size of the entries applied here
  std::uint64_t entries_stale = 0;        // received but not newer: wasted payload
  std::uint64_t entries_refused = 0;      // refused by the store (size, skew, invalid)
  std::uint64_t entries_oversize = 0;     // too large for a record: announced, not sent
  std::uint64_t malformed = 0;            // datagrams dropped by the decoder
  std::uint64_t mismatched = 0;           // datagrams for another session or other parameters
  std::uint64_t foreign_records = 0;      // records for shards of another owner: skipped
  std::uint64_t requests_abandoned = 0;   // attempts_max reached
  std::uint64_t requests_dropped = 0;     // requests_tracked_max reached
  std::uint64_t responses_truncated = 0;  // responses_per_request_max reached
  // Which method settled the exchange (a session counts one of them; a responder counts its
  // verdicts): the linear sums alone, a rateless IBLT stream, the Merkle walk.
  std::uint64_t method_sums = 0;
  std::uint64_t method_riblt = 0;
  std::uint64_t method_walk = 0;
  std::uint64_t riblt_symbols = 0;    // symbols sent (responder) or received (session)
  std::uint64_t riblt_decoded = 0;    // differing elements the decoder named
  std::uint64_t riblt_failed = 0;     // streams that did not decode within bounds: walked instead
  std::uint64_t riblt_moved = 0;      // streams started over because a side's set changed meanwhile
};

namespace reconcile_detail {
class ShardReader;
struct Arena;
struct PushStream;
struct RibltState;
}  // namespace reconcile_detail

class ReconcileSession {
 public:
  // Reconciles every shard of `owner` with one peer. The driver draws session_id at random for
  // each session: the peer echoes it (so late datagrams of an older session are told apart) and
  // its hash salts truncated hashes and fingerprints (digest::session_seed), so a collision that
  // hides a difference in one session does not hide it in the next.
  ReconcileSession(Store& store, std::uint32_t owner, const ReconcileConfig& config,
                   std::uint32_t session_id);
  ~ReconcileSession();
  ReconcileSession(const ReconcileSession&) = delete;
  ReconcileSession& operator=(const ReconcileSession&) = delete;

  // Writes the next request datagram into out (at most datagram_bytes_max bytes) and returns its
  // size, or 0 when there is nothing to send now (all done, or the in-flight bound is reached).
  std::size_t next_datagram(std::span<std::uint8_t> out);
  // A response datagram from the peer. Malformed or foreign input is counted and dropped.
  Status on_datagram(std::span<const std::uint8_t> in);
  // The retransmission timer fired: every request still unanswered is queued to be sent again
  // (or abandoned after attempts_max sends).
  void on_timeout();

  bool done() const;
  // Done, and nothing was abandoned or dropped on the way. A complete session leaves both sides
  // equal unless they changed meanwhile or a false positive hid a difference (see the header).
  bool complete() const;
  std::size_t in_flight() const { return in_flight_; }
  const ReconcileStats& stats() const { return stats_; }
  // Entries too large for a record do not travel in the session; the sink (if set) gets each
  // one instead, on the owner thread, during the call that skipped it, so the caller can
  // announce it (a large value is pulled in chunks: engine/gossip/bulk.h).
  using OversizeSink = std::function<void(const EntryView&)>;
  void set_oversize_sink(OversizeSink sink) { oversize_ = std::move(sink); }

 private:
  enum class Kind : std::uint8_t {
    kRoots = 1,
    kHashes,
    kList,
    kBloom,
    kPull,
    kPush,
    kSummary,
    kRibltStart,
    kRibltMore,
    kRibltPull,
    kRibltPush,
  };
  enum class State : std::uint8_t { kQueued, kInFlight, kDone };
  struct Key {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const;
  };
  struct Request {
    Kind kind = Kind::kRoots;
    State state = State::kQueued;
    digest::TreeNode node;
    std::uint16_t first_shard = 0;  // kRoots
    std::uint16_t shard_count = 0;  // kRoots
    std::uint16_t part = 0;         // kPush, kPull
    std::uint64_t cursor = 0;       // kList, kBloom
    bool want_bloom = false;        // kBloom
    bool wants_handled = false;     // kList: the push of wanted items was queued
    std::uint32_t attempts = 0;
    std::uint64_t answered[4] = {0, 0, 0, 0};  // kRoots/kHashes: children answered
    std::vector<std::uint64_t> key_hashes;  // kList: listed, in order; kPush: to push
    std::vector<std::uint32_t> kfps;        // kPull: still wanted
    std::uint64_t first = 0, count = 0;     // kRibltMore: the symbols asked for
    std::vector<std::uint8_t> got;          // kRibltPull: elements answered (key_hashes: ids)
    // kRibltPull: for each id, my key hash decoding paired it with (0: none), and the key
    // hashes of the entries received: a pairing the answer does not confirm was two keys.
    std::vector<std::uint64_t> paired, seen;
  };

  Key key_of(Kind kind, const digest::TreeNode& node, std::uint32_t part) const;
  // The walk from the roots: one kRoots record per run of this owner's shards.
  void start_roots();
  void handle_summarized(const digest::Record& rec);
  // Pushes my entry with key hash kh (if I hold one); false when I hold none.
  bool push_key(std::uint64_t kh);
  // My one entry with key hash kh whose entry hash is eh, if I hold exactly that.
  bool holds_exactly(std::uint64_t kh, std::uint64_t eh, Version* version);
  // A new request, queued; nullptr if this session already has it or is at its bound.
  Request* enqueue(Kind kind, const digest::TreeNode& node, std::uint32_t part);
  void complete_request(Request& r);
  // Queue r to be sent again; `progress` (an answer arrived) resets its attempt count.
  void requeue(Request& r, bool progress);
  // Writes r's record from the current local state. `fit`: r starts an empty datagram, so
  // shrink variable parts to fit. Returns false when there is nothing left to send for r.
  bool encode_request(Request& r, digest::ByteWriter& w, bool fit);
  // Asks about a node that differs: its child hashes, its summaries or its bloom filter.
  void expand(const digest::TreeNode& node);
  void handle_sub(const digest::TreeNode& child, const digest::SubRecord& sub);
  void handle_record(const digest::Record& rec);
  bool mark_answered(Request& r, std::uint32_t i);
  void merge_entries(const digest::EntriesView& entries, Request* pull);
  // Push requests for (key hash, encoded size) pairs, cut into datagram-sized parts.
  void queue_push(const digest::TreeNode& node,
                  const std::vector<std::pair<std::uint64_t, std::size_t>>& key_hashes);
  bool refill_from_streams();
  bool owns(std::uint32_t shard) const;
  // ---- rateless IBLT (reconcile_riblt.cc) ----
  void riblt_begin(std::uint64_t symbols, std::uint32_t tag);
  // Asks for symbols [riblt expected, end) and computes my own for them.
  void riblt_extend(std::uint64_t end);
  void riblt_symbols(const digest::Record& rec);
  void riblt_feed();
  // The difference decoded: pull what I lack or hold older, push what the peer does.
  void riblt_finish();
  // The stream failed (bounds, an inconsistent stream): walk the trees instead.
  void riblt_abandon();
  // A side's set changed under the stream: start it over (both sides' symbols [0, end) from
  // their current sets), at most RibltState::kRestartsMax times, then walk.
  void riblt_restart(std::uint32_t peer_tag, std::uint64_t end);
  void riblt_pulled(const digest::Record& rec);
  // `paired` (if given), per key hash: the peer's element id the decoding paired it with.
  void queue_riblt_push(const std::vector<std::pair<std::uint64_t, std::size_t>>& key_hashes,
                        const std::vector<std::uint64_t>* paired = nullptr);
  // Entries I hold with key hashes in kid's range, across my shards.
  void riblt_mine(std::uint64_t kid, reconcile_detail::Arena& out);
  // Writes the entries of a push request (kPush or kRibltPush) after its fixed fields.
  // `index` (if given) gets, per key hash of r, the record index of its first entry (or -1).
  bool put_push_entries(Request& r, digest::ByteWriter& w, bool fit,
                        std::vector<int>* index = nullptr);
  void set_method(std::uint64_t ReconcileStats::*m);
  // Whether n more requests fit under requests_tracked_max.
  bool room(std::size_t n) const;
  // Remembers a differing node to ask about later, when the session is at its bound.
  void defer(const digest::TreeNode& node);

  Store& store_;
  const std::uint32_t owner_;
  const ReconcileConfig config_;
  const std::uint32_t session_;
  const std::uint64_t seed_;
  std::unique_ptr<reconcile_detail::ShardReader> reader_;
  std::unique_ptr<reconcile_detail::Arena> arena_;
  std::unique_ptr<reconcile_detail::RibltState> riblt_;
  std::unordered_map<Key, Request, KeyHash> requests_;
  std::deque<Key> queue_;
  std::deque<reconcile_detail::PushStream> streams_;
  std::vector<digest::TreeNode> deferred_;  // 8 bytes per differing node not yet asked about
  std::unordered_map<std::uint64_t, std::uint32_t> next_part_;  // per node, for push/pull parts
  std::uint32_t riblt_part_ = 0;  // kRibltPull and kRibltPush parts
  std::size_t in_flight_ = 0;
  std::size_t queued_ = 0;
  ReconcileStats stats_;
  std::vector<EntryView> merge_in_;
  std::vector<MergeOutcome> merge_out_;
  std::vector<std::size_t> merge_bytes_;
  OversizeSink oversize_;
};

class ReconcileResponder {
 public:
  ReconcileResponder(Store& store, std::uint32_t owner, const ReconcileConfig& config);
  ~ReconcileResponder();
  ReconcileResponder(const ReconcileResponder&) = delete;
  ReconcileResponder& operator=(const ReconcileResponder&) = delete;

  // Answers one request datagram: emit is called with each response datagram (each at most
  // datagram_bytes_max bytes; the span is valid during the call). Malformed or mismatched
  // requests are counted and dropped, and the error says why.
  Status respond(std::span<const std::uint8_t> request,
                 const std::function<void(std::span<const std::uint8_t>)>& emit);
  const ReconcileStats& stats() const { return stats_; }
  // Entries too large for a record do not travel in the session; the sink (if set) gets each
  // one instead, on the owner thread, during the call that skipped it, so the caller can
  // announce it (a large value is pulled in chunks: engine/gossip/bulk.h).
  using OversizeSink = std::function<void(const EntryView&)>;
  void set_oversize_sink(OversizeSink sink) { oversize_ = std::move(sink); }

 private:
  class Writer;
  void oversize(const digest::EntryRef& ref);  // counts it and hands it to the sink
  void answer(const digest::Record& rec, Writer& out);
  void answer_roots(const digest::Record& rec, Writer& out);
  void answer_hashes(const digest::Record& rec, Writer& out);
  void answer_list(const digest::Record& rec, Writer& out);
  void answer_bloom(const digest::Record& rec, Writer& out);
  void answer_pull(const digest::Record& rec, Writer& out);
  void answer_push(const digest::Record& rec, Writer& out);
  void answer_summary(const digest::Record& rec, Writer& out);
  // The sums' verdict when it names at most one difference; false (nothing written) otherwise.
  bool answer_one(const digest::SetSums& theirs, Writer& out);
  void answer_riblt_start(const digest::Record& rec, Writer& out);
  void answer_riblt_more(const digest::Record& rec, Writer& out);
  void answer_riblt_pull(const digest::Record& rec, Writer& out);
  void answer_riblt_push(const digest::Record& rec, Writer& out);
  // kRibltSymbols records for my symbols [first, first + count), split over datagrams.
  void stream_symbols(std::uint64_t first, std::uint64_t count, Writer& out);
  // The entries of `node` from `cursor` on that `wanted(arena, i)` selects, gathered window by
  // window into arena_ until the node is exhausted or a datagram's worth is found (`reserved`
  // bytes of the record are taken already). kListed and kBloomed answers share it.
  struct Gathered {
    std::vector<std::uint32_t> send;  // indexes into arena_, in key-hash order
    bool exhausted = false;
    std::uint64_t resume = 0;  // the cursor to continue from (the node's end when exhausted)
  };
  Gathered gather_windows(const digest::TreeNode& node, std::uint64_t cursor,
                          std::size_t reserved, Writer& out,
                          const std::function<bool(const reconcile_detail::Arena&, std::size_t)>&
                              wanted);
  // The verdict on the initiator's sums, written as a kSummarized record.
  void write_verdict(Writer& out, digest::Verdict v, std::uint64_t key_hash = 0,
                     std::uint64_t entry_hash = 0, const Version& version = {});
  // Writes the expansion of a differing child into scratch_: its child hashes, its entry
  // summaries or a bloom filter, by this side's entry count under it.
  void expansion(const digest::TreeNode& child);
  // kRootsDiff / kExpand records answering n children (covered: answered here; differ: the
  // children that differ, each followed by its expansion), split over datagrams as needed.
  void diff_parts(Writer& out, digest::Rec type, const digest::Record& rec, std::uint32_t n,
                  const std::vector<bool>& covered, const std::vector<std::uint32_t>& differ);
  // A record carrying entries of arena_ (indexes in `send`, key-hash order): fixed fields from
  // head(writer, more, next_cursor), then as many entries as fit. Returns how many were written.
  std::size_t write_entries_record(
      Writer& out, std::size_t head_bytes,
      const std::function<void(digest::ByteWriter&, bool, std::uint64_t)>& head,
      const std::vector<std::uint32_t>& send, bool exhausted, std::uint64_t resume);

  Store& store_;
  const std::uint32_t owner_;
  const ReconcileConfig config_;
  std::unique_ptr<reconcile_detail::ShardReader> reader_;
  std::unique_ptr<reconcile_detail::Arena> arena_;
  std::vector<std::uint8_t> scratch_;
  std::size_t scratch_size_ = 0;
  std::vector<digest::RibltSymbol> symbols_;  // stream_symbols' window
  // Key hashes whose entries kRibltPushed records of the current request datagram sent back: a
  // pull later in the datagram does not send them again.
  std::vector<std::uint64_t> sent_back_;
  std::uint64_t seed_ = 0;  // the request being answered
  ReconcileStats stats_;
  std::vector<EntryView> merge_in_;
  std::vector<MergeOutcome> merge_out_;
  OversizeSink oversize_;
};

// The owners (bit o for owner o) whose shards the records of a request datagram name, so a
// node with several owner cores can hand the request to each of them. 0 when the datagram is
// malformed or has other parameters (the responder that gets it counts why).
std::uint64_t request_owner_mask(const Store& store, const ReconcileConfig& config,
                                 std::span<const std::uint8_t> request);

}  // namespace rumor
