// ReconcileSession: the initiator of an exchange (see reconcile.h).
#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>

#include "base/assert.h"
#include "digest/hash.h"
#include "engine/sync/reconcile.h"
#include "engine/sync/reconcile_detail.h"

namespace rumor {

using namespace reconcile_detail;

// ---------------------------------------------------------------------------------------------
// ReconcileSession

std::size_t ReconcileSession::KeyHash::operator()(const Key& k) const {
  return static_cast<std::size_t>((k.a * 0x9e3779b97f4a7c15ull) ^ (k.b * 0xc2b2ae3d27d4eb4full));
}

ReconcileSession::ReconcileSession(Store& store, std::uint32_t owner,
                                   const ReconcileConfig& config, std::uint32_t session_id)
    : store_(store),
      owner_(owner),
      config_(config),
      session_(session_id),
      seed_(digest::session_seed(session_id)),
      reader_(std::make_unique<ShardReader>(store, config_.tree)),
      arena_(std::make_unique<Arena>()) {
  RUMOR_ASSERT(config_.validate().is_ok());
  RUMOR_ASSERT(store.shard_count() == config_.tree.shards());
  RUMOR_ASSERT(owner < store.owner_count());
  if (store.owner_count() == 1) {
    // First the sums of every shard (36 bytes): when the stores differ by one entry the
    // responder names it and the session ends after one push or pull, with no walk. Otherwise
    // the answer streams rateless IBLT symbols (sized by the count residues sent with the sums)
    // or says to walk, one round trip later than starting with the roots.
    const bool walk_turn = config_.method == ReconcileConfig::Method::kAuto &&
                           config_.riblt_walk_every > 0 &&
                           session_id % config_.riblt_walk_every == 0;
    const bool riblt = config_.method != ReconcileConfig::Method::kMerkle && !walk_turn &&
                       store.config().riblt_prefix_symbols > 0;
    Request* r = enqueue(riblt ? Kind::kRibltStart : Kind::kSummary, TreeNode{}, 0);
    RUMOR_ASSERT(r != nullptr);
  } else {
    start_roots();
  }
}

ReconcileSession::~ReconcileSession() = default;

void ReconcileSession::set_method(std::uint64_t ReconcileStats::*m) {
  stats_.method_sums = stats_.method_riblt = stats_.method_walk = 0;
  stats_.*m = 1;
}

void ReconcileSession::start_roots() {
  set_method(&ReconcileStats::method_walk);
  // One kRoots record per run of this owner's shards (all shards when there is one owner).
  const std::uint32_t per = roots_per_record(config_);
  std::uint32_t s = 0;
  while (s < store_.shard_count()) {
    if (!owns(s)) {
      ++s;
      continue;
    }
    std::uint32_t n = 0;
    while (s + n < store_.shard_count() && n < per && owns(s + n)) ++n;
    Request* r = enqueue(Kind::kRoots, TreeNode{static_cast<std::uint16_t>(s), 0, 0}, 0);
    if (r == nullptr) return;  // already walking (a duplicated verdict)
    r->first_shard = static_cast<std::uint16_t>(s);
    r->shard_count = static_cast<std::uint16_t>(n);
    s += n;
  }
}

bool ReconcileSession::push_key(std::uint64_t kh) {
  std::size_t bytes = 0;
  store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
    bytes += digest::entry_bytes(EntryRef{e.key, e.value, e.version, e.tombstone});
  });
  if (bytes == 0) return false;
  queue_push(TreeNode{static_cast<std::uint16_t>(store_.shard_of_hash(kh)), 0, 0}, {{kh, bytes}});
  return true;
}

bool ReconcileSession::holds_exactly(std::uint64_t kh, std::uint64_t eh, Version* version) {
  std::uint32_t held = 0, match = 0;
  store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
    ++held;
    if (digest::entry_hash(kh, e.version, e.tombstone) == eh) {
      ++match;
      *version = e.version;
    }
  });
  return held == 1 && match == 1;
}

void ReconcileSession::handle_summarized(const Record& rec) {
  auto it = requests_.find(key_of(Kind::kSummary, TreeNode{}, 0));
  if (it == requests_.end()) it = requests_.find(key_of(Kind::kRibltStart, TreeNode{}, 0));
  if (it == requests_.end() || it->second.state == State::kDone) return;
  complete_request(it->second);
  const std::uint64_t kh = rec.key_hash;
  if (rec.verdict != digest::Verdict::kWalk && rec.verdict != digest::Verdict::kRiblt) {
    set_method(&ReconcileStats::method_sums);
  }
  switch (rec.verdict) {
    case digest::Verdict::kRiblt:
      return riblt_begin(rec.count, rec.tag);
    case digest::Verdict::kEqual:
      return;
    case digest::Verdict::kWalk:
      return start_roots();
    case digest::Verdict::kEntries:
      return merge_entries(rec.entries, nullptr);
    case digest::Verdict::kWant: {
      // Act only on a decoding my store confirms; otherwise the peer's guess was wrong (several
      // differences that happened to pass its check): walk instead.
      Version mine;
      if (!holds_exactly(kh, rec.entry_hash, &mine)) return start_roots();
      (void)push_key(kh);
      return;
    }
    case digest::Verdict::kVersion: {
      Version mine;
      if (!holds_exactly(kh, rec.entry_hash, &mine)) return start_roots();
      if (rec.version < mine) {
        (void)push_key(kh);
      } else if (mine < rec.version) {
        // Pull it by its fingerprint under its deepest protocol node.
        const TreeParams& p = config_.tree;
        const std::uint32_t bits = p.bits(p.depth_max);
        const TreeNode node{static_cast<std::uint16_t>(store_.shard_of_hash(kh)), p.depth_max,
                            static_cast<std::uint32_t>(digest::prefix_of(kh, bits))};
        std::uint32_t& part = next_part_[node_key(node)];
        Request* r = enqueue(Kind::kPull, node, part++);
        if (r) r->kfps = {digest::key_fingerprint(kh, bits)};
      }
      return;
    }
  }
}

bool ReconcileSession::owns(std::uint32_t shard) const {
  return store_.owner_of_shard(shard) == owner_;
}

ReconcileSession::Key ReconcileSession::key_of(Kind kind, const TreeNode& node,
                                               std::uint32_t part) const {
  return Key{(std::uint64_t{static_cast<std::uint8_t>(kind)} << 56) | node_key(node), part};
}

ReconcileSession::Request* ReconcileSession::enqueue(Kind kind, const TreeNode& node,
                                                     std::uint32_t part) {
  const Key k = key_of(kind, node, part);
  if (requests_.count(k)) return nullptr;  // already asked (or answered) in this session
  if (queued_ + in_flight_ >= std::size_t{config_.requests_tracked_max} + kTrackedSlack) {
    // Bounded memory: this part of the difference waits for the next session.
    ++stats_.requests_dropped;
    return nullptr;
  }
  if (requests_.size() >= 4 * std::size_t{config_.requests_tracked_max}) {
    // Answered requests are kept only to ignore duplicate answers; forget them in bulk.
    std::erase_if(requests_, [](const auto& kv) { return kv.second.state == State::kDone; });
  }
  Request& r = requests_[k];
  r.kind = kind;
  r.node = node;
  r.part = static_cast<std::uint16_t>(part);
  r.cursor = reader_->lo(node);
  // Depth first: what a fresh answer asks for goes out before older, shallower work, so a
  // bounded session reaches leaves (and pushes) instead of filling up with upper levels.
  queue_.push_front(k);
  ++queued_;
  return &r;
}

void ReconcileSession::complete_request(Request& r) {
  if (r.state == State::kInFlight) --in_flight_;
  if (r.state == State::kQueued) --queued_;
  r.state = State::kDone;
  r.key_hashes = {};
  r.kfps = {};
  r.got = {};
  r.paired = {};
  r.seen = {};
}

void ReconcileSession::requeue(Request& r, bool progress) {
  if (r.state == State::kQueued) return;
  if (r.state == State::kInFlight) --in_flight_;
  r.state = State::kQueued;
  ++queued_;
  if (progress) r.attempts = 0;
  queue_.push_back(key_of(r.kind, r.node, r.part));
}

bool ReconcileSession::done() const {
  return queued_ == 0 && in_flight_ == 0 && streams_.empty() && deferred_.empty();
}

bool ReconcileSession::room(std::size_t n) const {
  return queued_ + in_flight_ + n <= config_.requests_tracked_max;
}

void ReconcileSession::defer(const TreeNode& node) {
  if (deferred_.size() >= 4 * std::size_t{config_.requests_tracked_max}) {
    ++stats_.requests_dropped;
    return;
  }
  deferred_.push_back(node);
}

bool ReconcileSession::complete() const {
  // An entry only announced (too large for a record) may not have reached the peer yet: the
  // session cannot vouch that the peer holds everything this side held (docs/store.md, sync
  // epochs), so it is not complete.
  return done() && stats_.requests_abandoned == 0 && stats_.requests_dropped == 0 &&
         stats_.entries_oversize == 0;
}

void ReconcileSession::on_timeout() {
  for (auto& [k, r] : requests_) {
    if (r.state != State::kInFlight) continue;
    if (r.attempts >= config_.attempts_max) {
      ++stats_.requests_abandoned;
      complete_request(r);
    } else {
      requeue(r, false);
    }
  }
}

bool ReconcileSession::refill_from_streams() {
  // Windows that push nothing are skipped until one queues a push or the streams run out, so a
  // return of false really means "nothing to send" (next_datagram's callers rely on it).
  while (queued_ == 0 && !streams_.empty()) {
    if (!room(1)) return false;  // a window's pushes may use some of kTrackedSlack
    PushStream& s = streams_.front();
    const std::uint32_t bits = reader_->bits(s.node);
    const std::uint64_t hi = reader_->hi(s.node);
    const std::uint64_t count = reader_->node(s.node).count;
    const std::uint64_t end = reader_->window_end(s.node, s.cursor, count, kWindowEntries);
    reader_->collect(s.node, s.cursor, end, *arena_);
    std::optional<digest::BloomView> bloom;
    if (!s.bloom.empty()) {
      digest::ByteReader br(s.bloom);
      digest::BloomView v;
      const bool ok = digest::BloomView::decode(br, ~0u, &v);
      RUMOR_ASSERT(ok);  // copied from a validated message
      bloom = v;
    }
    std::vector<std::pair<std::uint64_t, std::size_t>> push;
    const auto& e = arena_->e;
    for (std::size_t i = 0; i < e.size(); ++i) {
      bool send;
      if (bloom) {
        send = !bloom->may_contain_entry(e[i].kh, e[i].v);
      } else {
        const std::uint32_t kfp = digest::key_fingerprint(e[i].kh, bits);
        const bool dup =
            (i > 0 && digest::key_fingerprint(e[i - 1].kh, bits) == kfp) ||
            (i + 1 < e.size() && digest::key_fingerprint(e[i + 1].kh, bits) == kfp);
        const Item it = digest::make_item(e[i].kh, e[i].v, e[i].tomb, bits, seed_);
        send = peer_needs(s.items, kfp, it.hlc, it.efp, dup);
      }
      if (send) push.emplace_back(e[i].kh, digest::entry_bytes(arena_->ref(e[i])));
    }
    if (!push.empty()) queue_push(s.node, push);
    if (end >= hi) {
      streams_.pop_front();
    } else {
      s.cursor = end + 1;
    }
  }
  return queued_ > 0;
}

void ReconcileSession::queue_push(const TreeNode& node,
                                  const std::vector<std::pair<std::uint64_t, std::size_t>>& khs) {
  const std::size_t room = config_.datagram_bytes_max - digest::kHeaderBytes - kRecordSlackBytes;
  std::size_t i = 0;
  while (i < khs.size()) {
    std::uint32_t& part = next_part_[node_key(node)];
    if (part > 0xffff) {
      ++stats_.requests_dropped;
      return;
    }
    Request* r = enqueue(Kind::kPush, node, part++);
    if (!r) return;  // tracked bound reached: the next session continues
    std::size_t used = 0;
    while (i < khs.size() && (r->key_hashes.empty() || used + khs[i].second <= room)) {
      used += khs[i].second;
      r->key_hashes.push_back(khs[i].first);
      ++i;
    }
  }
}

void ReconcileSession::expand(const TreeNode& node) {
  const std::uint64_t count = reader_->node(node).count;
  if (count <= config_.list_items_max) {
    enqueue(Kind::kList, node, 0);
  } else if (node.level < config_.tree.depth_max) {
    enqueue(Kind::kHashes, node, 0);
  } else {
    Request* r = enqueue(Kind::kBloom, node, 0);
    if (r) r->want_bloom = true;
  }
}

bool ReconcileSession::encode_request(Request& r, ByteWriter& w, bool fit) {
  const TreeParams& p = config_.tree;
  switch (r.kind) {
    case Kind::kRoots: {
      w.u8(static_cast<std::uint8_t>(Rec::kRoots));
      w.u16(r.first_shard);
      w.u16(r.shard_count);
      for (std::uint32_t i = 0; i < r.shard_count; ++i) {
        const TreeNode root{static_cast<std::uint16_t>(r.first_shard + i), 0, 0};
        digest::put_hash(w, wire_hash(reader_->node(root).hash, seed_, p.hash_bytes), p);
      }
      return true;
    }
    case Kind::kSummary: {
      const digest::SetSums sums = store_.sums();
      w.u8(static_cast<std::uint8_t>(Rec::kSummary));
      w.u64(sums.count);
      w.u64(sums.hash);
      w.u64(sums.keys);
      w.u64(sums.cross);
      return true;
    }
    case Kind::kHashes: {
      std::uint64_t hashes[64], counts[64];
      reader_->children(r.node, hashes, counts);
      w.u8(static_cast<std::uint8_t>(Rec::kHashes));
      digest::put_node(w, r.node, p);
      for (std::uint32_t j = 0; j < p.fanout(); ++j) {
        digest::put_hash(w, wire_hash(hashes[j], seed_, p.hash_bytes), p);
      }
      return true;
    }
    case Kind::kList: {
      reader_->collect(r.node, reader_->lo(r.node), reader_->hi(r.node), *arena_);
      w.u8(static_cast<std::uint8_t>(Rec::kList));
      digest::put_node(w, r.node, p);
      w.u64(r.cursor);
      std::size_t n = arena_->e.size();
      if (fit) n = std::min(n, (w.remaining() > 2 ? w.remaining() - 2 : 0) / digest::kItemBytes);
      n = std::min<std::size_t>(n, 0xffff);
      w.u16(static_cast<std::uint16_t>(n));
      r.key_hashes.clear();
      const std::uint32_t bits = reader_->bits(r.node);
      for (std::size_t i = 0; i < n; ++i) {
        const Held& h = arena_->e[i];
        digest::put_item(w, digest::make_item(h.kh, h.v, h.tomb, bits, seed_));
        r.key_hashes.push_back(h.kh);
      }
      return true;
    }
    case Kind::kBloom: {
      reader_->collect(r.node, reader_->lo(r.node), reader_->hi(r.node), *arena_);
      digest::BloomFilter f(digest::BloomFilter::blocks_for(arena_->e.size(),
                                                            config_.bloom_bits_per_item,
                                                            bloom_blocks_fit(config_)),
                            digest::kBloomKMax, seed_ ^ node_key(r.node));
      for (const Held& h : arena_->e) f.insert_entry(h.kh, h.v);
      w.u8(static_cast<std::uint8_t>(Rec::kBloom));
      digest::put_node(w, r.node, p);
      w.u64(r.cursor);
      w.u8(r.want_bloom ? digest::kFlagWantBloom : 0);
      f.encode(w);
      return true;
    }
    case Kind::kPull: {
      w.u8(static_cast<std::uint8_t>(Rec::kPull));
      digest::put_node(w, r.node, p);
      w.u16(r.part);
      std::size_t n = r.kfps.size();
      if (fit) n = std::min(n, (w.remaining() > 2 ? w.remaining() - 2 : 0) / 4);
      w.u16(static_cast<std::uint16_t>(n));
      for (std::size_t i = 0; i < n; ++i) w.u32(r.kfps[i]);
      return n > 0;
    }
    case Kind::kPush:
      w.u8(static_cast<std::uint8_t>(Rec::kPush));
      digest::put_node(w, r.node, p);
      w.u16(r.part);
      return put_push_entries(r, w, fit);
    case Kind::kRibltStart: {
      const digest::SetSums sums = store_.sums();
      w.u8(static_cast<std::uint8_t>(Rec::kRibltStart));
      w.u64(sums.count);
      w.u64(sums.hash);
      w.u64(sums.keys);
      w.u64(sums.cross);
      w.u8(config_.method == ReconcileConfig::Method::kRiblt ? digest::kRibltModeForced
                                                              : digest::kRibltModeAuto);
      // The counts of my symbols at a few indices of the prefix, mod 256: with the peer's they
      // estimate how many elements differ, so the stream that answers is sized to decode.
      const std::uint32_t k = store_.config().riblt_prefix_symbols;
      const auto idx = digest::riblt_estimate_indices();
      std::size_t n = 0;
      while (n < idx.size() && n < digest::kRibltResiduesMax && idx[n] < k) ++n;
      std::vector<digest::RibltSymbol> pre(n ? idx[n - 1] + 1u : 0);
      owner_symbols(store_, owner_, 0, pre);
      w.u8(static_cast<std::uint8_t>(n));
      for (std::size_t i = 0; i < n; ++i) w.u8(static_cast<std::uint8_t>(pre[idx[i]].count));
      return true;
    }
    case Kind::kRibltMore: {
      if (!riblt_ || riblt_->finished) return false;
      const std::uint64_t from = std::max(r.first, riblt_->dec.received());
      const std::uint64_t end = r.first + r.count;
      if (from >= end) return false;
      w.u8(static_cast<std::uint8_t>(Rec::kRibltMore));
      w.varint(from);
      w.varint(end - from);
      return true;
    }
    case Kind::kRibltPull: {
      std::size_t n = r.key_hashes.size();
      if (fit) n = std::min(n, (w.remaining() > 5 ? w.remaining() - 5 : 0) / digest::kRibltIdBytes);
      w.u8(static_cast<std::uint8_t>(Rec::kRibltPull));
      w.u16(r.part);
      w.u16(static_cast<std::uint16_t>(n));
      for (std::size_t i = 0; i < n; ++i) {
        w.uint_n(digest::riblt_wire_id(r.key_hashes[i]), digest::kRibltIdBytes);
      }
      return n > 0;
    }
    case Kind::kRibltPush: {
      w.u8(static_cast<std::uint8_t>(Rec::kRibltPush));
      w.u16(r.part);
      std::vector<int> index;
      const bool any = put_push_entries(r, w, fit, &index);
      std::uint16_t m = 0;
      for (std::size_t k = 0; k < r.paired.size() && k < index.size(); ++k) {
        m += r.paired[k] != 0 && index[k] >= 0;
      }
      w.u16(m);
      for (std::size_t k = 0; k < r.paired.size() && k < index.size(); ++k) {
        if (r.paired[k] == 0 || index[k] < 0) continue;
        w.u16(static_cast<std::uint16_t>(index[k]));
        w.uint_n(digest::riblt_wire_id(r.paired[k]), digest::kRibltIdBytes);
      }
      return any;
    }
  }
  RUMOR_UNREACHABLE();
}

bool ReconcileSession::put_push_entries(Request& r, ByteWriter& w, bool fit,
                                        std::vector<int>* index) {
  std::uint8_t* count_at = w.reserve(2);
  std::uint16_t n = 0;
  std::size_t sent = 0;
  std::vector<std::uint64_t> rest;
  if (index) index->assign(r.key_hashes.size(), -1);
  for (std::size_t k = 0; k < r.key_hashes.size(); ++k) {
    const std::uint64_t kh = r.key_hashes[k];
    if (!rest.empty()) {
      rest.push_back(kh);
      continue;
    }
    if (index) (*index)[k] = n;
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
      const EntryRef ref{e.key, e.value, e.version, e.tombstone};
      const std::size_t sz = digest::entry_bytes(ref);
      if (!rest.empty()) return;
      if (sz > config_.datagram_bytes_max - digest::kHeaderBytes - kRecordSlackBytes) {
        ++stats_.entries_oversize;
        if (oversize_) oversize_(e);
        return;
      }
      if (fit && w.remaining() < sz) {
        rest.push_back(kh);
        return;
      }
      digest::put_entry(w, ref);
      sent += sz;
      ++n;
    });
  }
  if (!w.ok()) return true;  // did not fit: the caller rolls back
  std::memcpy(count_at, &n, 2);
  if (!rest.empty()) {
    // Entries grew since the part was cut: what did not fit goes in a new part.
    std::vector<std::pair<std::uint64_t, std::size_t>> again;
    for (std::uint64_t kh : rest) again.emplace_back(kh, config_.datagram_bytes_max);
    if (r.kind == Kind::kRibltPush) {
      queue_riblt_push(again);
    } else {
      queue_push(r.node, again);
    }
    r.key_hashes.resize(r.key_hashes.size() - rest.size());
  }
  if (n == 0) return false;
  stats_.entries_sent += n;
  stats_.entry_bytes_sent += sent;
  return true;
}

std::size_t ReconcileSession::next_datagram(std::span<std::uint8_t> out) {
  const std::size_t cap = std::min<std::size_t>(out.size(), config_.datagram_bytes_max);
  RUMOR_ASSERT(cap == config_.datagram_bytes_max);
  ByteWriter w(out.first(cap));
  digest::put_header(w, MsgHeader{MsgType::kReconcileRequest, config_.tree, session_, seed_});
  std::size_t records = 0;
  while (in_flight_ < config_.requests_in_flight_max) {
    while (!deferred_.empty() && room(config_.tree.fanout() + 2)) {
      const TreeNode n = deferred_.back();  // depth first, as enqueue()
      deferred_.pop_back();
      expand(n);
    }
    if (queued_ == 0 && !refill_from_streams()) break;
    if (queue_.empty()) break;
    const Key k = queue_.front();
    auto it = requests_.find(k);
    if (it == requests_.end() || it->second.state != State::kQueued) {
      queue_.pop_front();  // answered (or re-queued behind) since it was queued
      continue;
    }
    Request& r = it->second;
    const std::size_t mark = w.mark();
    const bool alone = records == 0;
    bool sendable = encode_request(r, w, alone);
    if (!w.ok()) {
      w.rollback(mark);
      if (!alone) break;  // send what we have; this one starts the next datagram
      // A record that does not fit an empty datagram is a sizing bug.
      RUMOR_UNREACHABLE();
    }
    queue_.pop_front();
    if (!sendable) {
      w.rollback(mark);
      complete_request(r);
      continue;
    }
    --queued_;
    r.state = State::kInFlight;
    ++in_flight_;
    if (r.attempts++ > 0) ++stats_.retransmits;
    ++records;
  }
  if (records == 0) return 0;
  ++stats_.datagrams_sent;
  stats_.bytes_sent += w.size();
  stats_.records_sent += records;
  return w.size();
}

bool ReconcileSession::mark_answered(Request& r, std::uint32_t i) {
  const std::uint64_t bit = std::uint64_t{1} << (i % 64);
  if (r.answered[i / 64] & bit) return false;
  r.answered[i / 64] |= bit;
  return true;
}

void ReconcileSession::merge_entries(const digest::EntriesView& entries, Request* pull) {
  merge_in_.clear();
  merge_bytes_.clear();
  const std::uint32_t bits = pull ? reader_->bits(pull->node) : 0;
  entries.for_each([&](const EntryRef& e) {
    ++stats_.entries_received;
    const std::uint64_t kh = digest::key_hash(e.key);
    if (!owns(store_.shard_of_hash(kh))) {
      ++stats_.foreign_records;
      return;
    }
    merge_in_.push_back(EntryView{e.key, e.value, e.version, e.tombstone});
    merge_bytes_.push_back(digest::entry_bytes(e));
    if (pull && kh >= reader_->lo(pull->node) && kh <= reader_->hi(pull->node)) {
      const std::uint32_t kfp = digest::key_fingerprint(kh, bits);
      auto& v = pull->kfps;
      v.erase(std::remove(v.begin(), v.end(), kfp), v.end());
    }
  });
  if (merge_in_.empty()) return;
  merge_out_.resize(merge_in_.size());
  store_.merge_batch(owner_, merge_in_, merge_out_);
  for (std::size_t i = 0; i < merge_out_.size(); ++i) {
    switch (merge_out_[i]) {
      case MergeOutcome::kApplied:
        ++stats_.entries_applied;
        stats_.entry_bytes_applied += merge_bytes_[i];
        break;
      case MergeOutcome::kStale:
        ++stats_.entries_stale;
        break;
      case MergeOutcome::kRefused:
        ++stats_.entries_refused;
        break;
    }
  }
}

void ReconcileSession::handle_sub(const TreeNode& child, const digest::SubRecord& sub) {
  const TreeParams& p = config_.tree;
  if (!room(p.fanout() + 2)) {
    // At the bound: remember only the node and ask about it ourselves once requests drain (one
    // more round trip for this subtree, but the parent is answered and frees its slot now).
    defer(child);
    return;
  }
  switch (sub.kind) {
    case Rec::kHashes: {
      std::uint64_t hashes[64], counts[64];
      reader_->children(child, hashes, counts);
      for (std::uint32_t j = 0; j < p.fanout(); ++j) {
        if (wire_hash(hashes[j], seed_, p.hash_bytes) != sub.hashes.at(j)) {
          expand(child_of(child, j, p));
        }
      }
      return;
    }
    case Rec::kList: {
      PushStream s;
      s.node = child;
      s.cursor = reader_->lo(child);
      s.items.assign(sub.items);
      // What the peer holds that I lack or hold older: pull it, by fingerprint.
      const std::uint32_t bits = reader_->bits(child);
      std::vector<std::uint32_t> pulls;
      Arena mine;
      const auto& v = s.items.v;
      for (std::size_t i = 0; i < v.size();) {
        std::size_t j = i;
        while (j < v.size() && v[j].kfp == v[i].kfp) ++j;
        reader_->collect_kfp(child, v[i].kfp, mine);
        for (std::size_t k = i; k < j; ++k) {
          if (i_need(v[k], j - i > 1, mine, bits, seed_)) {
            pulls.push_back(v[i].kfp);
            break;
          }
        }
        i = j;
      }
      const std::size_t per = (config_.datagram_bytes_max - digest::kHeaderBytes - 16) / 4;
      for (std::size_t i = 0; i < pulls.size(); i += per) {
        std::uint32_t& part = next_part_[node_key(child)];
        Request* r = enqueue(Kind::kPull, child, part++);
        if (!r) break;
        r->kfps.assign(pulls.begin() + static_cast<std::ptrdiff_t>(i),
                       pulls.begin() + static_cast<std::ptrdiff_t>(std::min(pulls.size(), i + per)));
      }
      // What I hold that the peer lacks or holds older: push it, window by window.
      streams_.push_back(std::move(s));
      return;
    }
    case Rec::kBloom: {
      PushStream s;
      s.node = child;
      s.cursor = reader_->lo(child);
      s.bloom.resize(sub.bloom.encoded_size());
      ByteWriter bw(s.bloom);
      // Re-encode the view: header fields and the bits as received.
      sub.bloom.encode(bw);
      streams_.push_back(std::move(s));
      // And what the peer holds that I lack: my summaries, or my filter when I hold many.
      if (reader_->node(child).count <= config_.list_items_max) {
        Request* r = enqueue(Kind::kList, child, 0);
        if (r) r->wants_handled = true;  // the stream above already pushes what the peer lacks
      } else {
        enqueue(Kind::kBloom, child, 0);  // want_bloom stays false: we have the peer's
      }
      return;
    }
    default:
      RUMOR_UNREACHABLE();
  }
}

void ReconcileSession::handle_record(const Record& rec) {
  const TreeParams& p = config_.tree;
  switch (rec.type) {
    case Rec::kRootsDiff:
    case Rec::kExpand: {
      const bool roots = rec.type == Rec::kRootsDiff;
      const TreeNode key_node = roots ? TreeNode{rec.first_shard, 0, 0} : rec.node;
      auto it = requests_.find(key_of(roots ? Kind::kRoots : Kind::kHashes, key_node, 0));
      if (it == requests_.end() || it->second.state == State::kDone) return;
      Request& r = it->second;
      if (roots && r.shard_count != rec.shard_count) return;  // not an answer to this request
      const std::uint32_t n = roots ? rec.shard_count : p.fanout();
      std::vector<std::uint32_t> differ;
      std::vector<bool> fresh;
      for (std::uint32_t i = 0; i < n; ++i) {
        if (!rec.covered.test(i)) continue;
        const bool newly = mark_answered(r, i);
        if (rec.differ.test(i)) {
          differ.push_back(i);
          fresh.push_back(newly);
        }
      }
      std::size_t j = 0;
      rec.subs.for_each([&](const digest::SubRecord& sub) {
        const std::uint32_t i = differ[j];
        if (fresh[j++]) {
          handle_sub(roots ? TreeNode{static_cast<std::uint16_t>(rec.first_shard + i), 0, 0}
                           : child_of(rec.node, i, p),
                     sub);
        }
      });
      std::uint32_t answered = 0;
      for (const std::uint64_t word : r.answered) answered += std::popcount(word);
      if (answered == n) complete_request(r);
      return;
    }
    case Rec::kListed: {
      merge_entries(rec.entries, nullptr);
      auto it = requests_.find(key_of(Kind::kList, rec.node, 0));
      if (it == requests_.end() || it->second.state == State::kDone) return;
      Request& r = it->second;
      if (!r.wants_handled && rec.want.n == r.key_hashes.size()) {
        std::vector<std::pair<std::uint64_t, std::size_t>> push;
        for (std::uint32_t i = 0; i < rec.want.n; ++i) {
          if (!rec.want.test(i)) continue;
          const std::uint64_t kh = r.key_hashes[i];
          store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
            push.emplace_back(kh, digest::entry_bytes(EntryRef{e.key, e.value, e.version,
                                                               e.tombstone}));
          });
        }
        r.wants_handled = true;
        if (!push.empty()) queue_push(rec.node, push);
      }
      // A continuation must move forward, or a faulty peer could keep us asking forever.
      if ((rec.flags & digest::kFlagMore) && rec.cursor > r.cursor) {
        r.cursor = rec.cursor;
        requeue(r, true);
      } else {
        complete_request(r);
      }
      return;
    }
    case Rec::kBloomed: {
      merge_entries(rec.entries, nullptr);
      auto it = requests_.find(key_of(Kind::kBloom, rec.node, 0));
      if (it == requests_.end() || it->second.state == State::kDone) return;
      Request& r = it->second;
      if ((rec.flags & digest::kFlagHasBloom) && r.want_bloom) {
        PushStream s;
        s.node = rec.node;
        s.cursor = reader_->lo(rec.node);
        s.bloom.resize(rec.bloom.encoded_size());
        ByteWriter bw(s.bloom);
        rec.bloom.encode(bw);
        streams_.push_back(std::move(s));
        r.want_bloom = false;
      }
      if ((rec.flags & digest::kFlagMore) &&
          (rec.cursor > r.cursor || (rec.flags & digest::kFlagHasBloom))) {
        r.cursor = rec.cursor;
        requeue(r, true);
      } else {
        complete_request(r);
      }
      return;
    }
    case Rec::kPulled: {
      auto it = requests_.find(key_of(Kind::kPull, rec.node, rec.part));
      Request* r =
          (it == requests_.end() || it->second.state == State::kDone) ? nullptr : &it->second;
      const std::size_t wanted = r ? r->kfps.size() : 0;
      merge_entries(rec.entries, r);
      if (!r) return;
      if ((rec.flags & digest::kFlagMore) && !r->kfps.empty() && r->kfps.size() < wanted) {
        requeue(*r, true);
      } else {
        complete_request(*r);
      }
      return;
    }
    case Rec::kAck: {
      auto it = requests_.find(key_of(Kind::kPush, rec.node, rec.part));
      if (it != requests_.end()) complete_request(it->second);
      return;
    }
    case Rec::kSummarized:
      return handle_summarized(rec);
    case Rec::kRibltSymbols:
      return riblt_symbols(rec);
    case Rec::kRibltPulled:
      return riblt_pulled(rec);
    case Rec::kRibltPushed: {
      merge_entries(rec.entries, nullptr);
      auto it = requests_.find(key_of(Kind::kRibltPush, TreeNode{}, rec.part));
      if (it != requests_.end()) complete_request(it->second);
      return;
    }
    default:
      return;  // request records never reach here (the decoder checks the message type)
  }
}

Status ReconcileSession::on_datagram(std::span<const std::uint8_t> in) {
  ++stats_.datagrams_received;
  stats_.bytes_received += in.size();
  MsgHeader h;
  bool checked = false, mismatch = false;
  digest::DecodeLimits limits;
  const Status st = digest::parse_message(in, limits, &h, [&](const Record& rec) {
    if (!checked) {
      checked = true;
      mismatch = h.type != MsgType::kReconcileResponse || !(h.params == config_.tree) ||
                 h.session != session_ || h.seed != seed_;
    }
    if (mismatch) return;
    const TreeNode& n = rec.node;
    const bool keyed_by_node = rec.type != Rec::kRootsDiff && rec.type != Rec::kSummarized &&
                               rec.type != Rec::kRibltSymbols && rec.type != Rec::kRibltPulled &&
                               rec.type != Rec::kRibltPushed;
    if (keyed_by_node && !owns(n.shard)) {
      ++stats_.foreign_records;
      return;
    }
    handle_record(rec);
  });
  if (!st) {
    ++stats_.malformed;
    return st;
  }
  if (mismatch) {
    ++stats_.mismatched;
    return Status::error(Code::kInvalidArgument,
                         "reconcile response for another session or other tree parameters");
  }
  return Status::ok();
}

}  // namespace rumor
