// ReconcileResponder: answers request datagrams from the store's current state (see
// reconcile.h).
#include <algorithm>
#include <cstring>
#include <optional>

#include "base/assert.h"
#include "digest/hash.h"
#include "engine/sync/reconcile.h"
#include "engine/sync/reconcile_detail.h"

namespace rumor {

using namespace reconcile_detail;

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
    if (emitted_ >= limit_) {
      stopped_ = true;
      ++owner_.stats_.responses_truncated;
      return false;
    }
    begin();
    RUMOR_ASSERT(w_->remaining() >= n);
    return true;
  }
  std::size_t empty_room() const { return buf_.size() - digest::kHeaderBytes; }
  // A symbol stream is sized to decode in one round trip: it may draw more datagrams.
  void allow(std::uint32_t datagrams) { limit_ = std::max(limit_, datagrams); }
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
  std::uint32_t limit_ = owner_.config_.responses_per_request_max;
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

void ReconcileResponder::oversize(const EntryRef& ref) {
  ++stats_.entries_oversize;
  if (oversize_) oversize_(EntryView{ref.key, ref.value, ref.version, ref.tombstone});
}

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
  sent_back_.clear();
  const Status st = digest::parse_message(request, limits, &h, [&](const Record& rec) {
    const bool by_node = rec.type != Rec::kRoots && rec.type != Rec::kSummary &&
                         rec.type != Rec::kRibltStart && rec.type != Rec::kRibltMore &&
                         rec.type != Rec::kRibltPull && rec.type != Rec::kRibltPush;
    if (by_node && store_.owner_of_shard(rec.node.shard) != owner_) {
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
    case Rec::kRibltStart:
      return answer_riblt_start(rec, out);
    case Rec::kRibltMore:
      return answer_riblt_more(rec, out);
    case Rec::kRibltPull:
      return answer_riblt_pull(rec, out);
    case Rec::kRibltPush:
      return answer_riblt_push(rec, out);
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
    // more items than ours can carry wants for): skip the entry so the cursor still moves; the
    // oversize sink announces it instead.
    oversize(arena_->ref(arena_->e[send[0]]));
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
        oversize(ref);
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
        oversize(ref);
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
  // The sums cover every shard: only a responder that owns them all can compare them.
  if (store_.owner_count() != 1 || !answer_one(rec.sums, out)) {
    ++stats_.method_walk;
    write_verdict(out, digest::Verdict::kWalk);
  }
}

bool ReconcileResponder::answer_one(const digest::SetSums& theirs, Writer& out) {
  using digest::OneDiff;
  using digest::Verdict;
  const digest::SetSums mine = store_.sums();
  const digest::SetSums delta = mine - theirs;
  const OneDiff d = digest::decode_one(delta);
  // Each decoded difference is checked against the store before it is acted on; anything that
  // does not check out (more than one difference after all) falls back to the walk.
  auto entries_at = [&](std::uint64_t kh, const std::function<void(const EntryView&)>& fn) {
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, fn);
  };
  switch (d.kind) {
    case OneDiff::Kind::kEqual:
      ++stats_.method_sums;
      write_verdict(out, Verdict::kEqual);
      return true;
    case OneDiff::Kind::kMine: {
      arena_->clear();
      entries_at(d.lo, [&](const EntryView& e) {
        if (digest::entry_hash(d.lo, e.version, e.tombstone) == d.entry_hash) arena_->add(d.lo, e);
      });
      if (arena_->e.size() != 1) break;
      const EntryRef ref = arena_->ref(arena_->e[0]);
      const std::size_t sz = digest::entry_bytes(ref);
      if (4 + sz > out.empty_room()) break;
      ++stats_.method_sums;
      if (!out.ensure(4 + sz)) return true;
      ByteWriter& w = out.w();
      w.u8(static_cast<std::uint8_t>(Rec::kSummarized));
      w.u8(static_cast<std::uint8_t>(Verdict::kEntries));
      w.u16(1);
      digest::put_entry(w, ref);
      out.record_done();
      ++stats_.entries_sent;
      stats_.entry_bytes_sent += sz;
      return true;
    }
    case OneDiff::Kind::kTheirs: {
      bool held = false;
      entries_at(d.lo, [&](const EntryView&) { held = true; });
      if (held) break;
      ++stats_.method_sums;
      write_verdict(out, Verdict::kWant, d.lo, d.entry_hash);
      return true;
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
      const std::uint64_t theirs_eh =
          digest::entry_hash(key, mine_e.version, mine_e.tombstone) - delta.hash;
      ++stats_.method_sums;
      write_verdict(out, Verdict::kVersion, key, theirs_eh, mine_e.version);
      return true;
    }
    case OneDiff::Kind::kMany:
      break;
  }
  return false;
}

void ReconcileResponder::answer_riblt_start(const Record& rec, Writer& out) {
  const std::uint32_t k = store_.config().riblt_prefix_symbols;
  if (store_.owner_count() != 1 || k == 0) {
    ++stats_.method_walk;
    return write_verdict(out, digest::Verdict::kWalk);
  }
  if (answer_one(rec.sums, out)) return;
  // Several differences: estimate how many elements differ from the initiator's count residues
  // against mine, and stream the symbols that decode that many.
  const auto idx = digest::riblt_estimate_indices();
  const std::size_t n = std::min(rec.residues.size(), idx.size());
  std::vector<std::int8_t> res(n);
  if (n > 0) {
    symbols_.resize(idx[n - 1] + 1u);
    owner_symbols(store_, owner_, 0, symbols_);
    for (std::size_t j = 0; j < n; ++j) {
      res[j] = static_cast<std::int8_t>(
          static_cast<std::uint8_t>(static_cast<std::uint8_t>(symbols_[idx[j]].count) - rec.residues[j]));
    }
  }
  std::uint64_t count = 0;
  for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
    if (const digest::MerkleTree* t = store_.shard(s).merkle()) count += t->sums().count;
  }
  const double elements = digest::riblt_estimate(
      res, static_cast<std::int64_t>(count - rec.sums.count), k);
  const std::uint64_t symbols = std::min<std::uint64_t>(
      {riblt_stream_symbols(elements), digest::kRibltSymbolsPerRequestMax,
       config_.riblt_symbols_max});
  const std::uint64_t auto_max =
      config_.riblt_auto_symbols_max != 0 ? config_.riblt_auto_symbols_max : k;
  if (rec.riblt_mode == digest::kRibltModeAuto && symbols > auto_max) {
    ++stats_.method_walk;
    return write_verdict(out, digest::Verdict::kWalk);
  }
  ++stats_.method_riblt;
  if (!out.ensure(9)) return;
  ByteWriter& w = out.w();
  w.u8(static_cast<std::uint8_t>(Rec::kSummarized));
  w.u8(static_cast<std::uint8_t>(digest::Verdict::kRiblt));
  w.varint(symbols);
  std::vector<digest::RibltSymbol> s0(1);
  owner_symbols(store_, owner_, 0, s0);
  w.u32(digest::riblt_stream_tag(s0[0]));
  out.record_done();
  stream_symbols(0, symbols, out);
}

void ReconcileResponder::answer_riblt_more(const Record& rec, Writer& out) {
  if (store_.owner_count() != 1 || store_.config().riblt_prefix_symbols == 0) {
    ++stats_.foreign_records;
    return;
  }
  stream_symbols(rec.first, std::min<std::uint64_t>(rec.count, config_.riblt_symbols_max), out);
}

void ReconcileResponder::stream_symbols(std::uint64_t first, std::uint64_t count, Writer& out) {
  out.allow(config_.riblt_datagrams_per_request_max);
  symbols_.resize(count);
  owner_symbols(store_, owner_, first, symbols_);
  std::vector<digest::RibltSymbol> s0(1);
  if (first == 0) {
    s0[0] = symbols_[0];
  } else {
    owner_symbols(store_, owner_, 0, s0);
  }
  const std::uint32_t tag = digest::riblt_stream_tag(s0[0]);
  constexpr std::size_t kHead = 1 + 3 + 4 + 2;  // type, varint first (< 2^21), tag, u16 n
  std::uint64_t i = 0;
  while (i < count) {
    if (!out.ensure(kHead + digest::kRibltSymbolBytes)) return;
    ByteWriter& w = out.w();
    const std::uint64_t n = std::min<std::uint64_t>(
        {(w.remaining() - kHead) / digest::kRibltSymbolBytes, count - i, 0xffff});
    w.u8(static_cast<std::uint8_t>(Rec::kRibltSymbols));
    w.varint(first + i);
    w.u32(tag);
    w.u16(static_cast<std::uint16_t>(n));
    for (std::uint64_t j = 0; j < n; ++j) digest::put_riblt_symbol(w, symbols_[i + j]);
    RUMOR_ASSERT(w.ok());
    out.record_done();
    i += n;
    stats_.riblt_symbols += n;
  }
}

void ReconcileResponder::answer_riblt_pull(const Record& rec, Writer& out) {
  const std::uint64_t key = store_.riblt_key();
  // The entries of element j: those whose element is exactly it. None when the entry changed
  // since (the next session sends the new one), or when the initiator asks just in case: after
  // a push of its own version of that key, which the records before this one applied.
  auto gather = [&](std::uint64_t j) {
    digest::ByteReader r(rec.ids.subspan(j * digest::kRibltIdBytes, digest::kRibltIdBytes));
    const std::uint64_t id = r.uint_n(digest::kRibltIdBytes);
    const std::uint64_t kid = digest::riblt_kid(id);
    arena_->clear();
    for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
      if (store_.owner_of_shard(s) != owner_) continue;
      store_.shard(s).for_each_in_hash_range(
          digest::riblt_kid_lo(kid), digest::riblt_kid_hi(kid),
          [&](std::uint64_t kh, const EntryView& e) { arena_->add(kh, e); });
    }
    std::vector<std::uint32_t> exact;
    for (std::uint32_t i = 0; i < arena_->e.size(); ++i) {
      const Held& h = arena_->e[i];
      if (std::find(sent_back_.begin(), sent_back_.end(), h.kh) != sent_back_.end()) continue;
      if (digest::riblt_wire_id(
              digest::riblt_element(h.kh, h.v.hlc, digest::entry_hash(h.kh, h.v, h.tomb), key)
                  .data) == id) {
        exact.push_back(i);
      }
    }
    return exact;
  };
  constexpr std::size_t kHead = 1 + 2 + 2 + 2 + 2;  // type, part, first, count, entries n
  std::uint64_t j = 0;
  while (j < rec.count) {
    std::vector<std::uint32_t> sel = gather(j);
    std::size_t need = kHead;
    for (std::uint32_t i : sel) need += digest::entry_bytes(arena_->ref(arena_->e[i]));
    if (!out.ensure(std::min(need, out.empty_room()))) return;
    ByteWriter& w = out.w();
    w.u8(static_cast<std::uint8_t>(Rec::kRibltPulled));
    w.u16(rec.part);
    w.u16(static_cast<std::uint16_t>(j));
    std::uint8_t* covered_at = w.reserve(2);
    std::uint8_t* n_at = w.reserve(2);
    std::uint16_t covered = 0, k = 0;
    for (;;) {
      std::size_t bytes = 0;
      for (std::uint32_t i : sel) bytes += digest::entry_bytes(arena_->ref(arena_->e[i]));
      if (covered > 0 && bytes > w.remaining()) break;  // the next record takes it
      for (std::uint32_t i : sel) {
        const EntryRef ref = arena_->ref(arena_->e[i]);
        const std::size_t sz = digest::entry_bytes(ref);
        if (sz > w.remaining()) {
          oversize(ref);
          continue;
        }
        digest::put_entry(w, ref);
        ++k;
        ++stats_.entries_sent;
        stats_.entry_bytes_sent += sz;
      }
      ++covered;
      ++j;
      if (j >= rec.count || covered == 0xffff) break;
      sel = gather(j);
    }
    std::memcpy(covered_at, &covered, 2);
    std::memcpy(n_at, &k, 2);
    out.record_done();
  }
}

void ReconcileResponder::answer_riblt_push(const Record& rec, Writer& out) {
  merge_in_.clear();
  std::vector<std::string_view> keys;  // every pushed key, in record order
  rec.entries.for_each([&](const EntryRef& e) {
    ++stats_.entries_received;
    keys.push_back(e.key);
    if (store_.owner_of_shard(store_.shard_of(e.key)) != owner_) {
      ++stats_.foreign_records;
      return;
    }
    merge_in_.push_back(EntryView{e.key, e.value, e.version, e.tombstone});
  });
  merge_out_.resize(merge_in_.size());
  if (!merge_in_.empty()) store_.merge_batch(owner_, merge_in_, merge_out_);
  // What beats a pushed entry here goes back: the initiator pushed because the tick order said
  // it was newer, or could not tell (the same 256 ms tick).
  arena_->clear();
  for (std::size_t i = 0; i < merge_out_.size(); ++i) {
    const EntryView& in = merge_in_[i];
    if (merge_out_[i] == MergeOutcome::kApplied) {
      ++stats_.entries_applied;
      stats_.entry_bytes_applied +=
          digest::entry_bytes(EntryRef{in.key, in.value, in.version, in.tombstone});
      continue;
    }
    if (merge_out_[i] != MergeOutcome::kStale) {
      ++stats_.entries_refused;
      continue;
    }
    ++stats_.entries_stale;
    const std::uint64_t kh = digest::key_hash(in.key);
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
      if (e.key == in.key && in.version < e.version) {
        arena_->add(kh, e);
        if (sent_back_.size() < 4096) sent_back_.push_back(kh);
      }
    });
  }
  // The elements the initiator paired with a pushed entry's key: if one is another key (two
  // keys sharing a key id), it goes back too.
  const std::uint64_t rkey = store_.riblt_key();
  for (std::size_t p = 0; p < rec.count; ++p) {
    digest::ByteReader r(rec.ids.subspan(p * (2 + digest::kRibltIdBytes), 2 + digest::kRibltIdBytes));
    const std::uint16_t idx = r.u16();
    const std::uint64_t id = r.uint_n(digest::kRibltIdBytes);
    const std::uint64_t kid = digest::riblt_kid(id);
    for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
      if (store_.owner_of_shard(s) != owner_) continue;
      store_.shard(s).for_each_in_hash_range(
          digest::riblt_kid_lo(kid), digest::riblt_kid_hi(kid),
          [&](std::uint64_t kh, const EntryView& e) {
            if (e.key == keys[idx]) return;  // the same key: settled by the merge above
            const auto el = digest::riblt_element(
                kh, e.version.hlc, digest::entry_hash(kh, e.version, e.tombstone), rkey);
            if (digest::riblt_wire_id(el.data) == id) arena_->add(kh, e);
          });
    }
  }
  std::size_t i = 0;
  do {
    if (!out.ensure(1 + 2 + 2)) return;
    ByteWriter& w = out.w();
    w.u8(static_cast<std::uint8_t>(Rec::kRibltPushed));
    w.u16(rec.part);
    std::uint8_t* n_at = w.reserve(2);
    std::uint16_t n = 0;
    while (i < arena_->e.size()) {
      const EntryRef ref = arena_->ref(arena_->e[i]);
      const std::size_t sz = digest::entry_bytes(ref);
      if (sz > w.remaining()) {
        if (n == 0) {
          oversize(ref);
          ++i;
          continue;
        }
        break;
      }
      digest::put_entry(w, ref);
      ++n;
      ++i;
      ++stats_.entries_sent;
      stats_.entry_bytes_sent += sz;
    }
    std::memcpy(n_at, &n, 2);
    out.record_done();
  } while (i < arena_->e.size());
}

}  // namespace rumor
