#include "engine/sync/reconcile.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor {

using digest::ByteWriter;
using digest::EntryRef;
using digest::Item;
using digest::MsgHeader;
using digest::MsgType;
using digest::Rec;
using digest::Record;
using digest::TreeNode;
using digest::TreeParams;

// ---------------------------------------------------------------------------------------------
// Config

ReconcileConfig ReconcileConfig::for_store(const StoreConfig& store) {
  ReconcileConfig c;
  c.tree.shards_log2 = static_cast<std::uint8_t>(std::countr_zero(store.virtual_shards));
  return c;
}

Status ReconcileConfig::validate() const {
  if (Status s = tree.validate(); !s) return s;
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  // The largest fixed-size request (kHashes at fan-out 64 and 8-byte hashes) must fit.
  if (datagram_bytes_max < 600 || datagram_bytes_max > 65000) {
    return bad("datagram_bytes_max must be in [600, 65000], got " +
               std::to_string(datagram_bytes_max));
  }
  const std::size_t list_bytes = digest::kHeaderBytes + 1 + 7 + 8 + 2 + 8 * 2 +
                                 std::size_t{list_items_max} * digest::kItemBytes;
  if (list_items_max < 1 || list_bytes > datagram_bytes_max) {
    return bad("list_items_max must be >= 1 and its list must fit a datagram");
  }
  if (bloom_bits_per_item < 4 || bloom_bits_per_item > 64) {
    return bad("bloom_bits_per_item must be in [4, 64]");
  }
  if (requests_in_flight_max < 1 || requests_tracked_max < requests_in_flight_max) {
    return bad("need 1 <= requests_in_flight_max <= requests_tracked_max");
  }
  if (requests_tracked_max < 2 * tree.fanout() + 4) {
    // Admitting one answered node takes up to fanout + 2 requests.
    return bad("requests_tracked_max must be at least 2 * fanout + 4");
  }
  if (attempts_max < 1) return bad("attempts_max must be >= 1");
  if (responses_per_request_max < 1) return bad("responses_per_request_max must be >= 1");
  return Status::ok();
}

namespace reconcile_detail {

// A truncated, salted node hash as it crosses the wire.
std::uint64_t wire_hash(std::uint64_t h, std::uint64_t seed, std::uint32_t bytes) {
  const std::uint64_t s = digest::salted(h, seed);
  return bytes >= 8 ? s : s & ((std::uint64_t{1} << (8 * bytes)) - 1);
}

// Entries copied out of the store (views into a shard are valid only during a visit).
struct Held {
  std::uint64_t kh;
  Version v;
  bool tomb;
  std::uint32_t off, klen, vlen;
};

struct Arena {
  std::vector<Held> e;
  std::string bytes;

  void clear() {
    e.clear();
    bytes.clear();
  }
  void add(std::uint64_t kh, const EntryView& v) {
    const std::size_t vlen = v.tombstone ? 0 : v.value.size();
    e.push_back(Held{kh, v.version, v.tombstone, static_cast<std::uint32_t>(bytes.size()),
                     static_cast<std::uint32_t>(v.key.size()), static_cast<std::uint32_t>(vlen)});
    bytes.append(v.key);
    if (vlen) bytes.append(v.value.data(), vlen);
  }
  std::string_view key(const Held& h) const { return {bytes.data() + h.off, h.klen}; }
  EntryRef ref(const Held& h) const {
    return EntryRef{key(h), std::string_view(bytes.data() + h.off + h.klen, h.vlen), h.v, h.tomb};
  }
  void sort() {
    std::sort(e.begin(), e.end(), [&](const Held& a, const Held& b) {
      if (a.kh != b.kh) return a.kh < b.kh;
      return key(a) < key(b);
    });
  }
};

struct NodeSum {
  std::uint64_t hash = 0;
  std::uint64_t count = 0;
};

// Reads tree nodes of any protocol level from a shard: from its Merkle tree down to the tree's
// leaf depth, and below that by summing the entries of the node's hash range.
class ShardReader {
 public:
  ShardReader(Store& store, const TreeParams& p) : store_(store), p_(p) {}

  std::uint32_t bits(const TreeNode& n) const { return p_.bits(n.level); }
  std::uint64_t lo(const TreeNode& n) const { return digest::prefix_lo(bits(n), n.index); }
  std::uint64_t hi(const TreeNode& n) const { return digest::prefix_hi(bits(n), n.index); }

  NodeSum node(const TreeNode& n) {
    Shard& sh = store_.shard(n.shard);
    const digest::MerkleTree* t = sh.merkle();
    if (!t) return {};
    const std::uint32_t b = bits(n);
    if (b <= t->leaf_bits()) return {t->hash(b, n.index), t->count(b, n.index)};
    NodeSum s;
    sh.for_each_in_hash_range(lo(n), hi(n), [&](std::uint64_t kh, const EntryView& e) {
      s.hash += digest::entry_hash(kh, e.version, e.tombstone);
      ++s.count;
    });
    return s;
  }

  // The hashes and counts of n's fanout() children.
  void children(const TreeNode& n, std::uint64_t* hashes, std::uint64_t* counts) {
    const std::uint32_t f = p_.fanout_log2;
    const std::uint32_t fan = p_.fanout();
    std::fill(hashes, hashes + fan, 0);
    std::fill(counts, counts + fan, 0);
    Shard& sh = store_.shard(n.shard);
    const digest::MerkleTree* t = sh.merkle();
    if (!t) return;
    const std::uint32_t cb = bits(n) + f;
    const std::uint64_t first = std::uint64_t{n.index} << f;
    if (cb <= t->leaf_bits()) {
      for (std::uint32_t j = 0; j < fan; ++j) {
        hashes[j] = t->hash(cb, first + j);
        counts[j] = t->count(cb, first + j);
      }
      return;
    }
    sh.for_each_in_hash_range(lo(n), hi(n), [&](std::uint64_t kh, const EntryView& e) {
      const std::uint64_t j = digest::prefix_of(kh, cb) & (fan - 1);
      hashes[j] += digest::entry_hash(kh, e.version, e.tombstone);
      ++counts[j];
    });
  }

  // Entries of n's shard with a key hash in [from, to], sorted by (key hash, key).
  void collect(const TreeNode& n, std::uint64_t from, std::uint64_t to, Arena& out) {
    out.clear();
    store_.shard(n.shard).for_each_in_hash_range(
        from, to, [&](std::uint64_t kh, const EntryView& e) { out.add(kh, e); });
    out.sort();
  }
  void collect_kfp(const TreeNode& n, std::uint32_t kfp, Arena& out) {
    collect(n, digest::kfp_lo(bits(n), n.index, kfp), digest::kfp_hi(bits(n), n.index, kfp), out);
  }

  // The end of a window from `from` that holds about `target` of node n's `count` entries at the
  // node's average density, aligned up to a key-fingerprint boundary (so entries sharing a
  // fingerprint never straddle two windows).
  std::uint64_t window_end(const TreeNode& n, std::uint64_t from, std::uint64_t count,
                           std::uint64_t target) const {
    const std::uint64_t h = hi(n);
    if (count <= target) return h;
    const unsigned __int128 range = static_cast<unsigned __int128>(1) << (64 - bits(n));
    unsigned __int128 width = range * target / count;
    if (width < 1) width = 1;
    const unsigned __int128 end = static_cast<unsigned __int128>(from) + width - 1;
    if (end >= h) return h;
    const auto e = static_cast<std::uint64_t>(end);
    return std::min(h, digest::kfp_hi(bits(n), n.index, digest::key_fingerprint(e, bits(n))));
  }

 private:
  Store& store_;
  const TreeParams& p_;
};

// A peer's entry summaries, indexed by key fingerprint.
struct PeerItems {
  struct One {
    std::uint32_t kfp;
    std::uint16_t efp;
    std::uint64_t hlc;
    std::uint32_t index;  // position in the peer's list
  };
  std::vector<One> v;

  void assign(const digest::ItemsView& items) {
    v.clear();
    for (std::uint32_t i = 0; i < items.n; ++i) {
      const Item it = items.at(i);
      v.push_back(One{it.kfp, it.efp, it.hlc, i});
    }
    std::sort(v.begin(), v.end(), [](const One& a, const One& b) {
      return a.kfp != b.kfp ? a.kfp < b.kfp : a.index < b.index;
    });
  }
  std::pair<const One*, const One*> find(std::uint32_t kfp) const {
    auto b = std::lower_bound(v.begin(), v.end(), kfp,
                              [](const One& o, std::uint32_t k) { return o.kfp < k; });
    auto e = b;
    while (e != v.end() && e->kfp == kfp) ++e;
    return {v.data() + (b - v.begin()), v.data() + (e - v.begin())};
  }
};

// Does the peer lack my entry, or hold its key older? `mine_ambiguous`: I hold another entry with
// the same fingerprint, so the peer's summary cannot be matched to one of them: send both.
bool peer_needs(const PeerItems& peer, std::uint32_t kfp, std::uint64_t hlc, std::uint16_t efp,
                bool mine_ambiguous) {
  const auto [b, e] = peer.find(kfp);
  if (mine_ambiguous || e - b != 1) return true;
  if (hlc != b->hlc) return hlc > b->hlc;
  return efp != b->efp;  // same timestamp, different writer or kind: let LWW decide at the peer
}

// Do I lack the peer's entry (kfp, hlc, efp), or hold its key older? `mine` holds my entries with
// that fingerprint.
bool i_need(const PeerItems::One& it, bool peer_ambiguous, const Arena& mine,
            std::uint32_t node_bits, std::uint64_t seed) {
  if (peer_ambiguous || mine.e.size() != 1) return true;
  const Held& h = mine.e[0];
  if (it.hlc != h.v.hlc) return it.hlc > h.v.hlc;
  return it.efp != digest::make_item(h.kh, h.v, h.tomb, node_bits, seed).efp;
}

// Pushes the initiator still owes for one node: its entries the peer lacks, decided window by
// window against the peer's summaries or bloom filter, so a large node never needs its whole
// push list in memory.
struct PushStream {
  TreeNode node;
  std::uint64_t cursor = 0;
  PeerItems items;
  std::vector<std::uint8_t> bloom;  // a copy of the peer's filter (wire form); empty: use items
};

}  // namespace reconcile_detail

using namespace reconcile_detail;

namespace {

constexpr std::size_t kRecordSlackBytes = 32;  // record headers around a sub-record or entries
constexpr std::uint64_t kWindowEntries = 64;   // entries examined per window
constexpr std::uint32_t kWindowsPerRecordMax = 64;
// Requests that may exceed requests_tracked_max: pushes cut from one answer (at most a list's
// worth) are never refused, so the walk's own admission check leaves them this headroom.
constexpr std::size_t kTrackedSlack = 64;

std::uint64_t node_key(const TreeNode& n) {
  return (std::uint64_t{n.shard} << 40) | (std::uint64_t{n.level} << 32) | n.index;
}

TreeNode child_of(const TreeNode& n, std::uint32_t j, const TreeParams& p) {
  return TreeNode{n.shard, static_cast<std::uint8_t>(n.level + 1),
                  static_cast<std::uint32_t>((std::uint64_t{n.index} << p.fanout_log2) + j)};
}

// Bloom blocks that fit one datagram next to a record's fixed fields.
std::uint32_t bloom_blocks_fit(const ReconcileConfig& c) {
  const std::size_t room = c.datagram_bytes_max - digest::kHeaderBytes - 64 -
                           digest::kBloomHeaderBytes;
  return static_cast<std::uint32_t>(room / digest::kBloomBlockBytes);
}

std::uint32_t roots_per_record(const ReconcileConfig& c) {
  const std::size_t room = c.datagram_bytes_max - digest::kHeaderBytes - 5;
  return static_cast<std::uint32_t>(
      std::min<std::size_t>(digest::kRootsPerRecordMax, room / c.tree.hash_bytes));
}

}  // namespace

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
    // the answer says to walk, one round trip later than starting with the roots.
    Request* r = enqueue(Kind::kSummary, TreeNode{}, 0);
    RUMOR_ASSERT(r != nullptr);
  } else {
    start_roots();
  }
}

ReconcileSession::~ReconcileSession() = default;

void ReconcileSession::start_roots() {
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
  if (it == requests_.end() || it->second.state == State::kDone) return;
  complete_request(it->second);
  const std::uint64_t kh = rec.key_hash;
  switch (rec.verdict) {
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
  return done() && stats_.requests_abandoned == 0 && stats_.requests_dropped == 0;
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
      digest::SetSums sums;
      for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
        if (const digest::MerkleTree* t = store_.shard(s).merkle()) sums += t->sums();
      }
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
    case Kind::kPush: {
      w.u8(static_cast<std::uint8_t>(Rec::kPush));
      digest::put_node(w, r.node, p);
      w.u16(r.part);
      std::uint8_t* count_at = w.reserve(2);
      std::uint16_t n = 0;
      std::size_t sent = 0;
      std::vector<std::uint64_t> rest;
      for (std::uint64_t kh : r.key_hashes) {
        if (!rest.empty()) {
          rest.push_back(kh);
          continue;
        }
        store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
          const EntryRef ref{e.key, e.value, e.version, e.tombstone};
          const std::size_t sz = digest::entry_bytes(ref);
          if (!rest.empty()) return;
          if (sz > config_.datagram_bytes_max - digest::kHeaderBytes - kRecordSlackBytes) {
            ++stats_.entries_oversize;
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
        queue_push(r.node, again);
        r.key_hashes.resize(r.key_hashes.size() - rest.size());
      }
      if (n == 0) return false;
      stats_.entries_sent += n;
      stats_.entry_bytes_sent += sent;
      return true;
    }
  }
  RUMOR_UNREACHABLE();
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
    const bool keyed_by_node = rec.type != Rec::kRootsDiff && rec.type != Rec::kSummarized;
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

// ---------------------------------------------------------------------------------------------
// ReconcileResponder

// Packs response records into datagrams of at most datagram_bytes_max and emits each full one.
class ReconcileResponder::Writer {
 public:
  Writer(ReconcileResponder& owner, const MsgHeader& request,
         const std::function<void(std::span<const std::uint8_t>)>& emit)
      : owner_(owner),
        header_{MsgType::kReconcileResponse, request.params, request.session, request.seed},
        emit_(emit),
        buf_(owner.config_.datagram_bytes_max) {
    begin();
  }

  ByteWriter& w() { return *w_; }
  // Makes room for n bytes, in a new datagram if this one is short. False once the response
  // bound is reached (the rest of the request goes unanswered and is retransmitted).
  bool ensure(std::size_t n) {
    if (stopped_) return false;
    if (w_->remaining() >= n) return true;
    if (records_ == 0) {
      RUMOR_ASSERT(n <= w_->capacity());  // any one record fits an empty datagram
      return true;
    }
    flush();
    if (emitted_ >= owner_.config_.responses_per_request_max) {
      stopped_ = true;
      ++owner_.stats_.responses_truncated;
      return false;
    }
    begin();
    RUMOR_ASSERT(w_->remaining() >= n);
    return true;
  }
  std::size_t empty_room() const { return buf_.size() - digest::kHeaderBytes; }
  void record_done() { ++records_; }
  void flush() {
    if (records_ == 0) return;
    emit_(w_->written());
    ++emitted_;
    ++owner_.stats_.datagrams_sent;
    owner_.stats_.bytes_sent += w_->size();
    owner_.stats_.records_sent += records_;
    records_ = 0;
  }

 private:
  void begin() {
    w_.emplace(std::span<std::uint8_t>(buf_));
    digest::put_header(*w_, header_);
  }

  ReconcileResponder& owner_;
  MsgHeader header_;
  const std::function<void(std::span<const std::uint8_t>)>& emit_;
  std::vector<std::uint8_t> buf_;
  std::optional<ByteWriter> w_;
  std::size_t records_ = 0;
  std::uint32_t emitted_ = 0;
  bool stopped_ = false;
};

ReconcileResponder::ReconcileResponder(Store& store, std::uint32_t owner,
                                       const ReconcileConfig& config)
    : store_(store),
      owner_(owner),
      config_(config),
      reader_(std::make_unique<ShardReader>(store, config_.tree)),
      arena_(std::make_unique<Arena>()),
      scratch_(config.datagram_bytes_max) {
  RUMOR_ASSERT(config_.validate().is_ok());
  RUMOR_ASSERT(store.shard_count() == config_.tree.shards());
  RUMOR_ASSERT(owner < store.owner_count());
}

ReconcileResponder::~ReconcileResponder() = default;

Status ReconcileResponder::respond(std::span<const std::uint8_t> request,
                                   const std::function<void(std::span<const std::uint8_t>)>& emit) {
  ++stats_.datagrams_received;
  stats_.bytes_received += request.size();
  MsgHeader h;
  digest::DecodeLimits limits;
  // Validate first: a malformed request draws no response and changes nothing.
  if (Status st = digest::parse_message(request, limits, &h, nullptr); !st) {
    ++stats_.malformed;
    return st;
  }
  if (h.type != MsgType::kReconcileRequest || !(h.params == config_.tree)) {
    ++stats_.mismatched;
    return Status::error(Code::kInvalidArgument,
                         "reconcile request with other tree parameters or of another type");
  }
  Writer out(*this, h, emit);
  seed_ = h.seed;
  const Status st = digest::parse_message(request, limits, &h, [&](const Record& rec) {
    if (rec.type != Rec::kRoots && rec.type != Rec::kSummary &&
        store_.owner_of_shard(rec.node.shard) != owner_) {
      ++stats_.foreign_records;
      return;
    }
    answer(rec, out);
  });
  RUMOR_ASSERT(st.is_ok());
  out.flush();
  return Status::ok();
}

void ReconcileResponder::answer(const Record& rec, Writer& out) {
  switch (rec.type) {
    case Rec::kRoots:
      return answer_roots(rec, out);
    case Rec::kHashes:
      return answer_hashes(rec, out);
    case Rec::kList:
      return answer_list(rec, out);
    case Rec::kBloom:
      return answer_bloom(rec, out);
    case Rec::kPull:
      return answer_pull(rec, out);
    case Rec::kPush:
      return answer_push(rec, out);
    case Rec::kSummary:
      return answer_summary(rec, out);
    default:
      RUMOR_UNREACHABLE();  // the decoder admits only request records in a request
  }
}

void ReconcileResponder::expansion(const TreeNode& child) {
  const TreeParams& p = config_.tree;
  ByteWriter w(scratch_);
  const std::uint64_t count = reader_->node(child).count;
  if (count <= config_.list_items_max) {
    reader_->collect(child, reader_->lo(child), reader_->hi(child), *arena_);
    const std::uint32_t bits = reader_->bits(child);
    w.u8(static_cast<std::uint8_t>(Rec::kList));
    w.u16(static_cast<std::uint16_t>(arena_->e.size()));
    for (const Held& h : arena_->e) digest::put_item(w, digest::make_item(h.kh, h.v, h.tomb, bits, seed_));
  } else if (child.level < p.depth_max) {
    std::uint64_t hashes[64], counts[64];
    reader_->children(child, hashes, counts);
    w.u8(static_cast<std::uint8_t>(Rec::kHashes));
    for (std::uint32_t j = 0; j < p.fanout(); ++j) {
      digest::put_hash(w, wire_hash(hashes[j], seed_, p.hash_bytes), p);
    }
  } else {
    reader_->collect(child, reader_->lo(child), reader_->hi(child), *arena_);
    digest::BloomFilter f(digest::BloomFilter::blocks_for(arena_->e.size(),
                                                          config_.bloom_bits_per_item,
                                                          bloom_blocks_fit(config_)),
                          digest::kBloomKMax, seed_ ^ node_key(child));
    for (const Held& h : arena_->e) f.insert_entry(h.kh, h.v);
    w.u8(static_cast<std::uint8_t>(Rec::kBloom));
    f.encode(w);
  }
  RUMOR_ASSERT(w.ok());
  scratch_size_ = w.size();
}

void ReconcileResponder::diff_parts(Writer& out, Rec type, const Record& rec, std::uint32_t n,
                                    const std::vector<bool>& covered,
                                    const std::vector<std::uint32_t>& differ) {
  const TreeParams& p = config_.tree;
  const std::size_t nb = (n + 7) / 8;
  const bool roots = type == Rec::kRootsDiff;
  const std::size_t head = 1 + (roots ? 4 : digest::node_bytes(rec.node, p)) + 2 * nb;
  auto child = [&](std::uint32_t i) {
    return roots ? TreeNode{static_cast<std::uint16_t>(rec.first_shard + i), 0, 0}
                 : child_of(rec.node, i, p);
  };
  std::size_t next = 0;
  bool first = true;
  std::optional<std::uint32_t> ready;  // differ index whose expansion is in scratch_
  while (first || next < differ.size()) {
    if (next < differ.size() && ready != next) {
      expansion(child(differ[next]));
      ready = static_cast<std::uint32_t>(next);
    }
    if (!out.ensure(head + (next < differ.size() ? scratch_size_ : 0))) return;
    ByteWriter& w = out.w();
    w.u8(static_cast<std::uint8_t>(type));
    if (roots) {
      w.u16(rec.first_shard);
      w.u16(rec.shard_count);
    } else {
      digest::put_node(w, rec.node, p);
    }
    std::uint8_t* cov = w.reserve(nb);
    std::uint8_t* dif = w.reserve(nb);
    std::memset(cov, 0, nb);
    std::memset(dif, 0, nb);
    if (first) {
      // The first part answers every child that matched.
      for (std::uint32_t i = 0; i < n; ++i) {
        if (covered[i]) cov[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
      }
      for (std::uint32_t i : differ) cov[i / 8] &= static_cast<std::uint8_t>(~(1u << (i % 8)));
    }
    while (next < differ.size()) {
      if (ready != next) {
        expansion(child(differ[next]));
        ready = static_cast<std::uint32_t>(next);
      }
      if (w.remaining() < scratch_size_) break;
      w.bytes(scratch_.data(), scratch_size_);
      const std::uint32_t i = differ[next];
      cov[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
      dif[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
      ++next;
    }
    RUMOR_ASSERT(w.ok());
    out.record_done();
    first = false;
  }
}

void ReconcileResponder::answer_roots(const Record& rec, Writer& out) {
  const TreeParams& p = config_.tree;
  std::vector<bool> covered(rec.shard_count, false);
  std::vector<std::uint32_t> differ;
  for (std::uint32_t i = 0; i < rec.shard_count; ++i) {
    const std::uint32_t s = rec.first_shard + i;
    if (store_.owner_of_shard(s) != owner_) continue;  // another owner answers for it
    covered[i] = true;
    const std::uint64_t mine = wire_hash(reader_->node(TreeNode{static_cast<std::uint16_t>(s), 0, 0}).hash,
                                         seed_, p.hash_bytes);
    if (mine != rec.hashes.at(i)) differ.push_back(i);
  }
  diff_parts(out, Rec::kRootsDiff, rec, rec.shard_count, covered, differ);
}

void ReconcileResponder::answer_hashes(const Record& rec, Writer& out) {
  const TreeParams& p = config_.tree;
  std::uint64_t hashes[64], counts[64];
  reader_->children(rec.node, hashes, counts);
  std::vector<bool> covered(p.fanout(), true);
  std::vector<std::uint32_t> differ;
  for (std::uint32_t j = 0; j < p.fanout(); ++j) {
    if (wire_hash(hashes[j], seed_, p.hash_bytes) != rec.hashes.at(j)) differ.push_back(j);
  }
  diff_parts(out, Rec::kExpand, rec, p.fanout(), covered, differ);
}

// Writes a record of type `type` that carries entries: fixed fields from `head` (called with
// whether a continuation cursor follows), then as many of `send` as fit. Returns the number
// written (the rest is resumed from the first unsent entry's key hash).
std::size_t ReconcileResponder::write_entries_record(
    Writer& out, std::size_t head_bytes, const std::function<void(ByteWriter&, bool, std::uint64_t)>& head,
    const std::vector<std::uint32_t>& send, bool exhausted, std::uint64_t resume) {
  std::size_t total = head_bytes + 2;
  for (std::uint32_t i : send) total += digest::entry_bytes(arena_->ref(arena_->e[i]));
  const bool all_fit_empty = exhausted && total <= out.empty_room();
  std::size_t need = all_fit_empty ? total : head_bytes + 8 + 2;
  if (!all_fit_empty && !send.empty()) {
    need += digest::entry_bytes(arena_->ref(arena_->e[send[0]]));
  }
  // Prefer a fresh datagram to splitting entries across many small continuations.
  if (!out.ensure(std::min(need, out.empty_room()))) return 0;
  ByteWriter& w = out.w();
  const bool more = !(exhausted && total <= w.remaining());
  // Count what fits.
  std::size_t room = w.remaining() - head_bytes - 2 - (more ? 8 : 0);
  std::size_t n = 0;
  std::size_t bytes = 0;
  for (std::uint32_t i : send) {
    const std::size_t sz = digest::entry_bytes(arena_->ref(arena_->e[i]));
    if (sz > room) break;
    room -= sz;
    bytes += sz;
    ++n;
  }
  if (n == 0 && more && !send.empty()) {
    // Nothing fits next to this record's fixed fields (a peer with a larger datagram listed
    // more items than ours can carry wants for): skip the entry so the cursor still moves.
    ++stats_.entries_oversize;
    n = 0;
    const std::uint64_t next = send.size() > 1 ? arena_->e[send[1]].kh : resume;
    head(w, more, next);
    w.u16(0);
    RUMOR_ASSERT(w.ok());
    out.record_done();
    return 0;
  }
  const std::uint64_t next = n < send.size() ? arena_->e[send[n]].kh : resume;
  head(w, more, next);
  w.u16(static_cast<std::uint16_t>(n));
  for (std::size_t k = 0; k < n; ++k) digest::put_entry(w, arena_->ref(arena_->e[send[k]]));
  RUMOR_ASSERT(w.ok());
  out.record_done();
  stats_.entries_sent += n;
  stats_.entry_bytes_sent += bytes;
  return n;
}

ReconcileResponder::Gathered ReconcileResponder::gather_windows(
    const TreeNode& node, std::uint64_t cursor, std::size_t reserved, Writer& out,
    const std::function<bool(const Arena&, std::size_t)>& wanted) {
  const std::uint64_t count = reader_->node(node).count;
  const std::uint64_t hi = reader_->hi(node);
  Arena all;  // the entries gathered across windows
  std::size_t bytes = reserved;
  Gathered g;
  for (std::uint32_t windows = 0; windows < kWindowsPerRecordMax; ++windows) {
    const std::uint64_t end = reader_->window_end(node, cursor, count, kWindowEntries);
    reader_->collect(node, cursor, end, *arena_);
    for (std::size_t i = 0; i < arena_->e.size(); ++i) {
      if (!wanted(*arena_, i)) continue;
      const EntryRef ref = arena_->ref(arena_->e[i]);
      const std::size_t sz = digest::entry_bytes(ref);
      if (sz > out.empty_room() - kRecordSlackBytes - reserved) {
        ++stats_.entries_oversize;
        continue;
      }
      all.add(arena_->e[i].kh, EntryView{ref.key, ref.value, ref.version, ref.tombstone});
      bytes += sz;
    }
    if (end >= hi) {
      g.exhausted = true;
      break;
    }
    cursor = end + 1;
    if (bytes >= out.empty_room()) break;
  }
  g.resume = g.exhausted ? hi : cursor;
  std::swap(all, *arena_);
  for (std::uint32_t i = 0; i < arena_->e.size(); ++i) g.send.push_back(i);
  return g;
}

void ReconcileResponder::answer_list(const Record& rec, Writer& out) {
  const TreeParams& p = config_.tree;
  const TreeNode& node = rec.node;
  const std::uint32_t bits = reader_->bits(node);
  PeerItems peer;
  peer.assign(rec.items);
  // Which of the initiator's items I lack or hold older: it pushes those.
  std::vector<std::uint8_t> want((rec.items.n + 7) / 8, 0);
  {
    Arena mine;
    const auto& v = peer.v;
    for (std::size_t i = 0; i < v.size();) {
      std::size_t j = i;
      while (j < v.size() && v[j].kfp == v[i].kfp) ++j;
      reader_->collect_kfp(node, v[i].kfp, mine);
      for (std::size_t k = i; k < j; ++k) {
        if (i_need(v[k], j - i > 1, mine, bits, seed_)) {
          want[v[k].index / 8] |= static_cast<std::uint8_t>(1u << (v[k].index % 8));
        }
      }
      i = j;
    }
  }
  // Which of my entries the initiator lacks or holds older, from the cursor on, window by window.
  const Gathered g = gather_windows(node, rec.cursor, 0, out, [&](const Arena& a, std::size_t i) {
    const auto& e = a.e;
    const std::uint32_t kfp = digest::key_fingerprint(e[i].kh, bits);
    const bool dup = (i > 0 && digest::key_fingerprint(e[i - 1].kh, bits) == kfp) ||
                     (i + 1 < e.size() && digest::key_fingerprint(e[i + 1].kh, bits) == kfp);
    const Item it = digest::make_item(e[i].kh, e[i].v, e[i].tomb, bits, seed_);
    return peer_needs(peer, kfp, it.hlc, it.efp, dup);
  });
  const std::size_t head_bytes = 1 + digest::node_bytes(node, p) + 1 + 2 + want.size();
  write_entries_record(
      out, head_bytes,
      [&](ByteWriter& w, bool more, std::uint64_t next) {
        w.u8(static_cast<std::uint8_t>(Rec::kListed));
        digest::put_node(w, node, p);
        w.u8(more ? digest::kFlagMore : 0);
        if (more) w.u64(next);
        w.u16(static_cast<std::uint16_t>(rec.items.n));
        w.bytes(want.data(), want.size());
      },
      g.send, g.exhausted, g.resume);
}

void ReconcileResponder::answer_bloom(const Record& rec, Writer& out) {
  const TreeParams& p = config_.tree;
  const TreeNode& node = rec.node;
  const std::uint64_t lo = reader_->lo(node), hi = reader_->hi(node);
  // My filter, when asked for and this is the first part of the answer.
  std::vector<std::uint8_t> mine;
  if ((rec.flags & digest::kFlagWantBloom) && rec.cursor == lo) {
    reader_->collect(node, lo, hi, *arena_);
    digest::BloomFilter f(digest::BloomFilter::blocks_for(arena_->e.size(),
                                                          config_.bloom_bits_per_item,
                                                          bloom_blocks_fit(config_)),
                          digest::kBloomKMax, seed_ ^ node_key(node) ^ 1);
    for (const Held& h : arena_->e) f.insert_entry(h.kh, h.v);
    mine.resize(f.encoded_size());
    ByteWriter bw(mine);
    f.encode(bw);
  }
  // My entries not in the initiator's filter, from the cursor on, window by window.
  const Gathered g = gather_windows(node, rec.cursor, mine.size(), out,
                                    [&](const Arena& a, std::size_t i) {
                                      return !rec.bloom.may_contain_entry(a.e[i].kh, a.e[i].v);
                                    });
  const std::size_t head_bytes = 1 + digest::node_bytes(node, p) + 1 + mine.size();
  write_entries_record(
      out, head_bytes,
      [&](ByteWriter& w, bool more, std::uint64_t next) {
        w.u8(static_cast<std::uint8_t>(Rec::kBloomed));
        digest::put_node(w, node, p);
        w.u8(static_cast<std::uint8_t>((more ? digest::kFlagMore : 0) |
                                       (mine.empty() ? 0 : digest::kFlagHasBloom)));
        if (more) w.u64(next);
        if (!mine.empty()) w.bytes(mine.data(), mine.size());
      },
      g.send, g.exhausted, g.resume);
}

void ReconcileResponder::answer_pull(const Record& rec, Writer& out) {
  const TreeParams& p = config_.tree;
  const TreeNode& node = rec.node;
  Arena all, one;
  for (std::uint32_t i = 0; i < rec.kfps.n; ++i) {
    reader_->collect_kfp(node, rec.kfps.at(i), one);
    for (const Held& h : one.e) {
      const EntryRef ref = one.ref(h);
      if (digest::entry_bytes(ref) > out.empty_room() - kRecordSlackBytes) {
        ++stats_.entries_oversize;
        continue;
      }
      all.add(h.kh, EntryView{ref.key, ref.value, ref.version, ref.tombstone});
    }
  }
  std::swap(all, *arena_);
  std::vector<std::uint32_t> send;
  for (std::uint32_t i = 0; i < arena_->e.size(); ++i) send.push_back(i);
  const std::size_t head_bytes = 1 + digest::node_bytes(node, p) + 2 + 1;
  write_entries_record(
      out, head_bytes,
      [&](ByteWriter& w, bool more, std::uint64_t) {
        w.u8(static_cast<std::uint8_t>(Rec::kPulled));
        digest::put_node(w, node, p);
        w.u16(rec.part);
        w.u8(more ? digest::kFlagMore : 0);
      },
      send, true, 0);
}

void ReconcileResponder::answer_push(const Record& rec, Writer& out) {
  merge_in_.clear();
  rec.entries.for_each([&](const EntryRef& e) {
    ++stats_.entries_received;
    if (store_.owner_of_shard(store_.shard_of(e.key)) != owner_) {
      ++stats_.foreign_records;
      return;
    }
    merge_in_.push_back(EntryView{e.key, e.value, e.version, e.tombstone});
  });
  if (!merge_in_.empty()) {
    merge_out_.resize(merge_in_.size());
    store_.merge_batch(owner_, merge_in_, merge_out_);
    for (std::size_t i = 0; i < merge_out_.size(); ++i) {
      if (merge_out_[i] == MergeOutcome::kApplied) {
        ++stats_.entries_applied;
        stats_.entry_bytes_applied += digest::entry_bytes(
            EntryRef{merge_in_[i].key, merge_in_[i].value, merge_in_[i].version,
                     merge_in_[i].tombstone});
      } else if (merge_out_[i] == MergeOutcome::kStale) {
        ++stats_.entries_stale;
      } else {
        ++stats_.entries_refused;
      }
    }
  }
  const TreeParams& p = config_.tree;
  if (!out.ensure(1 + digest::node_bytes(rec.node, p) + 2)) return;
  ByteWriter& w = out.w();
  w.u8(static_cast<std::uint8_t>(Rec::kAck));
  digest::put_node(w, rec.node, p);
  w.u16(rec.part);
  out.record_done();
}

void ReconcileResponder::write_verdict(Writer& out, digest::Verdict v, std::uint64_t key_hash,
                                       std::uint64_t entry_hash, const Version& version) {
  if (!out.ensure(2 + 16 + 16)) return;
  ByteWriter& w = out.w();
  w.u8(static_cast<std::uint8_t>(Rec::kSummarized));
  w.u8(static_cast<std::uint8_t>(v));
  if (v == digest::Verdict::kWant || v == digest::Verdict::kVersion) {
    w.u64(key_hash);
    w.u64(entry_hash);
  }
  if (v == digest::Verdict::kVersion) {
    w.u64(version.hlc);
    w.u64(version.node);
  }
  out.record_done();
}

void ReconcileResponder::answer_summary(const Record& rec, Writer& out) {
  using digest::OneDiff;
  using digest::Verdict;
  // The sums cover every shard: only a responder that owns them all can compare them.
  if (store_.owner_count() != 1) return write_verdict(out, Verdict::kWalk);
  digest::SetSums mine;
  for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
    if (const digest::MerkleTree* t = store_.shard(s).merkle()) mine += t->sums();
  }
  const digest::SetSums delta = mine - rec.sums;
  const OneDiff d = digest::decode_one(delta);
  // Each decoded difference is checked against the store before it is acted on; anything that
  // does not check out (more than one difference after all) falls back to the walk.
  auto entries_at = [&](std::uint64_t kh, const std::function<void(const EntryView&)>& fn) {
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, fn);
  };
  switch (d.kind) {
    case OneDiff::Kind::kEqual:
      return write_verdict(out, Verdict::kEqual);
    case OneDiff::Kind::kMine: {
      arena_->clear();
      entries_at(d.lo, [&](const EntryView& e) {
        if (digest::entry_hash(d.lo, e.version, e.tombstone) == d.entry_hash) arena_->add(d.lo, e);
      });
      if (arena_->e.size() != 1) break;
      const EntryRef ref = arena_->ref(arena_->e[0]);
      const std::size_t sz = digest::entry_bytes(ref);
      if (4 + sz > out.empty_room()) break;
      if (!out.ensure(4 + sz)) return;
      ByteWriter& w = out.w();
      w.u8(static_cast<std::uint8_t>(Rec::kSummarized));
      w.u8(static_cast<std::uint8_t>(Verdict::kEntries));
      w.u16(1);
      digest::put_entry(w, ref);
      out.record_done();
      ++stats_.entries_sent;
      stats_.entry_bytes_sent += sz;
      return;
    }
    case OneDiff::Kind::kTheirs: {
      bool held = false;
      entries_at(d.lo, [&](const EntryView&) { held = true; });
      if (held) break;
      return write_verdict(out, Verdict::kWant, d.lo, d.entry_hash);
    }
    case OneDiff::Kind::kVersion: {
      std::uint32_t found = 0;
      std::uint64_t key = 0;
      EntryView mine_e;
      for (std::uint64_t kh = d.lo;; ++kh) {
        if (kh != 0) {
          entries_at(kh, [&](const EntryView& e) {
            if (digest::rev64(kh) * delta.hash != delta.cross) return;
            ++found;
            key = kh;
            mine_e = e;
          });
        }
        if (kh == d.hi) break;
      }
      if (found != 1) break;
      // The initiator's entry hash, as the sums imply it: mine minus the difference.
      const std::uint64_t theirs =
          digest::entry_hash(key, mine_e.version, mine_e.tombstone) - delta.hash;
      return write_verdict(out, Verdict::kVersion, key, theirs, mine_e.version);
    }
    case OneDiff::Kind::kMany:
      break;
  }
  write_verdict(out, Verdict::kWalk);
}

// ---------------------------------------------------------------------------------------------

std::uint64_t request_owner_mask(const Store& store, const ReconcileConfig& config,
                                 std::span<const std::uint8_t> request) {
  MsgHeader h;
  digest::DecodeLimits limits;
  if (!digest::parse_message(request, limits, &h, nullptr).is_ok()) return 0;
  if (h.type != MsgType::kReconcileRequest || !(h.params == config.tree)) return 0;
  std::uint64_t mask = 0;
  const std::uint32_t shards = store.shard_count();
  const Status st = digest::parse_message(request, limits, &h, [&](const Record& rec) {
    if (rec.type == Rec::kRoots) {
      for (std::uint32_t i = 0; i < rec.shard_count && rec.first_shard + i < shards; ++i) {
        mask |= std::uint64_t{1} << store.owner_of_shard(rec.first_shard + i);
      }
    } else if (rec.node.shard < shards) {
      mask |= std::uint64_t{1} << store.owner_of_shard(rec.node.shard);
    }
  });
  return st.is_ok() ? mask : 0;
}

std::uint64_t full_state_bytes(Store& store, std::uint32_t owner, const ReconcileConfig& config) {
  const std::size_t fixed = digest::kHeaderBytes + 1 + 3 + 2 + 2;  // header + one push record
  std::uint64_t total = 0;
  std::size_t cur = fixed;
  for (std::uint32_t s = 0; s < store.shard_count(); ++s) {
    if (store.owner_of_shard(s) != owner) continue;
    store.shard(s).for_each_in_hash_range(0, ~std::uint64_t{0}, [&](std::uint64_t,
                                                                     const EntryView& e) {
      const std::size_t sz =
          digest::entry_bytes(EntryRef{e.key, e.value, e.version, e.tombstone});
      if (cur + sz > config.datagram_bytes_max) {
        total += cur;
        cur = fixed;
      }
      cur += sz;
    });
  }
  if (cur > fixed) total += cur;
  return total;
}

}  // namespace rumor
