// ReconcileSession's rateless IBLT stream (docs/reconciliation.md, "Rateless IBLT"): the
// responder streams the symbols of its set, the session subtracts its own and peels the
// difference, then pulls what it lacks or holds older and pushes what the peer does.
#include <algorithm>
#include <map>
#include <unordered_set>

#include "base/assert.h"
#include "digest/hash.h"
#include "engine/sync/reconcile.h"
#include "engine/sync/reconcile_detail.h"

namespace rumor {

using namespace reconcile_detail;

namespace {
// Element ids per kRibltPull record: 6 bytes each, well inside one datagram.
constexpr std::size_t kPullIdsMax = 192;
}  // namespace

void ReconcileSession::riblt_begin(std::uint64_t symbols, std::uint32_t tag) {
  if (riblt_) return;  // a duplicated verdict
  set_method(&ReconcileStats::method_riblt);
  digest::RibltDecoder::Limits limits;
  limits.symbols_max = config_.riblt_symbols_max;
  limits.elements_max = config_.riblt_symbols_max;  // S symbols never decode more than S elements
  riblt_ = std::make_unique<RibltState>(store_.riblt_key(), limits);
  riblt_->limits = limits;
  riblt_->peer_tag = tag;
  riblt_extend(std::min<std::uint64_t>(symbols, config_.riblt_symbols_max));
  if (riblt_->finished) return;
  riblt_->my_tag = digest::riblt_stream_tag(riblt_->mine[0]);
  // The responder sends [0, symbols) with its verdict, unasked: the request stands for them as
  // if sent, so that what is lost is asked for again when the timer fires.
  auto it = requests_.find(key_of(Kind::kRibltMore, TreeNode{riblt_->gen, 0, 0}, 0));
  if (it == requests_.end() || it->second.state != State::kQueued) return;
  Request& r = it->second;
  r.state = State::kInFlight;
  r.attempts = 1;
  --queued_;
  ++in_flight_;
}

void ReconcileSession::riblt_extend(std::uint64_t end) {
  RibltState& st = *riblt_;
  const std::uint64_t from = st.expected;
  if (end <= from) return;
  if (from > 0) {
    // More symbols of the same two snapshots: if my set changed since my first symbols, the
    // new ones would not add up with them. Start the stream again.
    std::vector<digest::RibltSymbol> s0(1);
    owner_symbols(store_, owner_, 0, s0);
    if (digest::riblt_stream_tag(s0[0]) != st.my_tag) return riblt_restart(st.peer_tag, end);
  }
  Request* r = enqueue(Kind::kRibltMore, TreeNode{st.gen, 0, static_cast<std::uint32_t>(from)}, 0);
  if (r == nullptr) return riblt_abandon();  // at the tracked bound: walk instead
  r->first = from;
  r->count = end - from;
  st.more.push_back(from);
  st.mine.resize(end);
  owner_symbols(store_, owner_, from, std::span(st.mine).subspan(from));
  st.expected = end;
}

void ReconcileSession::riblt_symbols(const Record& rec) {
  if (!riblt_ || riblt_->finished) return;
  RibltState& st = *riblt_;
  if (rec.tag != st.peer_tag) {
    // The peer's set changed since its first symbols (a retransmission or a longer stream
    // answered from a newer snapshot): they do not add up with those. Start the stream again
    // from this snapshot, unless we just did (then this is a late symbol of the old one).
    if (st.restarting ||
        std::find(st.old_tags.begin(), st.old_tags.end(), rec.tag) != st.old_tags.end()) {
      return;
    }
    riblt_restart(rec.tag, st.expected);
    if (riblt_ && !riblt_->finished) riblt_symbols(rec);
    return;
  }
  stats_.riblt_symbols += rec.count;
  std::uint64_t n = rec.count;
  if (rec.first >= st.expected) return;  // not asked for
  n = std::min(n, st.expected - rec.first);
  const auto bytes = rec.symbols.first(n * digest::kRibltSymbolBytes);
  const std::uint64_t at = st.dec.received();
  if (rec.first + n <= at) return;  // a duplicate
  if (rec.first > at) {
    // Ahead of a gap (reordered, or an earlier datagram lost): keep it, within bounds.
    if (st.early_bytes + bytes.size() <= RibltState::kEarlyBytesMax &&
        !st.early.count(rec.first)) {
      st.early.emplace(rec.first, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
      st.early_bytes += bytes.size();
    }
    return;
  }
  auto feed = [&](std::uint64_t first, std::span<const std::uint8_t> b) {
    const std::uint64_t from = st.dec.received();
    const std::uint64_t end = first + b.size() / digest::kRibltSymbolBytes;
    digest::ByteReader r(b.subspan((from - first) * digest::kRibltSymbolBytes));
    for (std::uint64_t i = from; i < end && !st.dec.failed() && !st.dec.decoded(); ++i) {
      (void)st.dec.add(digest::riblt_read_diff(r, st.mine[i]));
    }
  };
  st.restarting = false;
  feed(rec.first, bytes);
  while (!st.early.empty() && st.early.begin()->first <= st.dec.received() &&
         !st.dec.failed() && !st.dec.decoded()) {
    auto node = st.early.extract(st.early.begin());
    st.early_bytes -= node.mapped().size();
    const std::uint64_t end = node.key() + node.mapped().size() / digest::kRibltSymbolBytes;
    if (end > st.dec.received()) feed(node.key(), node.mapped());
  }
  riblt_feed();
}

void ReconcileSession::riblt_feed() {
  RibltState& st = *riblt_;
  if (st.dec.decoded()) return riblt_finish();
  if (st.dec.failed()) return riblt_abandon();
  // Requests whose symbols all arrived are answered.
  std::erase_if(st.more, [&](std::uint64_t first) {
    auto it = requests_.find(
        key_of(Kind::kRibltMore, TreeNode{st.gen, 0, static_cast<std::uint32_t>(first)}, 0));
    if (it == requests_.end()) return true;
    if (it->second.first + it->second.count > st.dec.received()) return false;
    complete_request(it->second);
    return true;
  });
  if (st.dec.received() < st.expected) return;
  // Every symbol asked for is in and the difference did not peel: the estimate was short.
  // Ask for half as many again, up to the session's bound, then give up and walk.
  const std::uint64_t end = std::min<std::uint64_t>(
      config_.riblt_symbols_max, st.expected + std::max<std::uint64_t>(st.expected / 2, 64));
  if (end <= st.expected) return riblt_abandon();
  riblt_extend(end);
}

void ReconcileSession::riblt_restart(std::uint32_t peer_tag, std::uint64_t end) {
  RibltState& st = *riblt_;
  ++stats_.riblt_moved;
  if (++st.restarts > RibltState::kRestartsMax) return riblt_abandon();  // a set that keeps moving
  for (std::uint64_t first : st.more) {
    auto it = requests_.find(
        key_of(Kind::kRibltMore, TreeNode{st.gen, 0, static_cast<std::uint32_t>(first)}, 0));
    if (it != requests_.end()) complete_request(it->second);
  }
  st.more.clear();
  st.early.clear();
  st.early_bytes = 0;
  st.dec = digest::RibltDecoder(store_.riblt_key(), st.limits);
  st.mine.clear();
  st.expected = 0;
  ++st.gen;
  st.old_tags.push_back(st.peer_tag);
  st.peer_tag = peer_tag;
  st.restarting = true;
  riblt_extend(end);  // my symbols [0, end) now, and a request for the peer's
  if (st.finished) return;
  st.my_tag = digest::riblt_stream_tag(st.mine[0]);
}

void ReconcileSession::riblt_abandon() {
  ++stats_.riblt_failed;
  RibltState& st = *riblt_;
  st.finished = true;
  for (std::uint64_t first : st.more) {
    auto it = requests_.find(
        key_of(Kind::kRibltMore, TreeNode{st.gen, 0, static_cast<std::uint32_t>(first)}, 0));
    if (it != requests_.end()) complete_request(it->second);
  }
  st.more.clear();
  st.early.clear();
  st.mine = {};
  start_roots();
}

void ReconcileSession::riblt_mine(std::uint64_t kid, Arena& out) {
  out.clear();
  const std::uint64_t lo = digest::riblt_kid_lo(kid), hi = digest::riblt_kid_hi(kid);
  for (std::uint32_t s = 0; s < store_.shard_count(); ++s) {
    if (!owns(s)) continue;
    store_.shard(s).for_each_in_hash_range(lo, hi, [&](std::uint64_t kh, const EntryView& e) {
      out.add(kh, e);
    });
  }
}

void ReconcileSession::riblt_finish() {
  RibltState& st = *riblt_;
  st.finished = true;
  for (std::uint64_t first : st.more) {
    auto it = requests_.find(
        key_of(Kind::kRibltMore, TreeNode{st.gen, 0, static_cast<std::uint32_t>(first)}, 0));
    if (it != requests_.end()) complete_request(it->second);
  }
  st.more.clear();
  st.early.clear();
  st.mine = {};
  const auto& decoded = st.dec.elements();
  stats_.riblt_decoded += decoded.size();
  // Per key id: the peer's elements and mine. A version difference shows as one of each.
  std::map<std::uint64_t, std::pair<std::vector<std::uint64_t>, std::vector<std::uint64_t>>> by_kid;
  for (const auto& d : decoded) {
    auto& slot = by_kid[digest::riblt_kid(d.e.data)];
    (d.remote ? slot.first : slot.second).push_back(d.e.data);
  }
  const std::uint64_t key = store_.riblt_key();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> pulls;  // (element id, paired key hash)
  std::vector<std::pair<std::uint64_t, std::size_t>> pushes;
  std::vector<std::uint64_t> paired;  // per push: the peer's element taken for its key, or 0
  std::unordered_set<std::uint64_t> pushed;
  Arena mine;
  auto push = [&](const Held& h, std::uint64_t pair = 0) {
    if (pushed.insert(h.kh).second) {
      pushes.emplace_back(h.kh, digest::entry_bytes(mine.ref(h)));
      paired.push_back(pair);
    }
  };
  for (const auto& [kid, lists] : by_kid) {
    const auto& [theirs, ours] = lists;
    riblt_mine(kid, mine);
    // My entries the decoding names (the others are equal on both sides).
    std::vector<std::size_t> named;
    for (std::size_t i = 0; i < mine.e.size(); ++i) {
      const Held& h = mine.e[i];
      const std::uint64_t data =
          digest::riblt_element(h.kh, h.v.hlc, digest::entry_hash(h.kh, h.v, h.tomb), key).data;
      if (std::find(ours.begin(), ours.end(), data) != ours.end()) named.push_back(i);
    }
    if (theirs.size() == 1 && named.size() == 1 && ours.size() == 1) {
      // One element each side under one key id: most likely both versions of one key (else two
      // differing keys share the 20-bit id). The newer side sends. In the same 256 ms tick, or
      // if the tick order wrapped, I push and the peer answers with its own entry when that
      // one is newer.
      const Held& m = mine.e[named[0]];
      const std::uint32_t tm = digest::riblt_time(
          digest::riblt_element(m.kh, m.v.hlc, 0, key).data);
      const int cmp = digest::riblt_time_cmp(digest::riblt_time(theirs[0]), tm);
      if (cmp > 0) {
        // Pulled; if the answer is not my key after all, mine is pushed then.
        pulls.emplace_back(theirs[0], m.kh);
      } else {
        // Pushed with the peer's element named (6 bytes): the peer answers with that entry if
        // it belongs to another key after all, or if it is the newer version of mine.
        push(m, theirs[0]);
      }
      continue;
    }
    // Keys I lack (or cannot match: two keys share the id): pull; mine the peer lacks: push.
    for (std::uint64_t r : theirs) pulls.emplace_back(r, 0);
    for (std::size_t i : named) push(mine.e[i]);
  }
  // Pulls first, then pushes: requests go out newest first, so pushes precede the pulls that
  // depend on them.
  const std::size_t per = std::min<std::size_t>(
      kPullIdsMax, (config_.datagram_bytes_max - digest::kHeaderBytes - kRecordSlackBytes) /
                       digest::kRibltIdBytes);
  for (std::size_t i = 0; i < pulls.size(); i += per) {
    Request* r = enqueue(Kind::kRibltPull, TreeNode{}, riblt_part_++);
    if (r == nullptr) break;  // at the bound: the next session continues
    const std::size_t end = std::min(pulls.size(), i + per);
    for (std::size_t j = i; j < end; ++j) {
      r->key_hashes.push_back(pulls[j].first);
      r->paired.push_back(pulls[j].second);
    }
    r->got.assign(r->key_hashes.size(), 0);
  }
  if (!pushes.empty()) queue_riblt_push(pushes, &paired);
}

void ReconcileSession::queue_riblt_push(
    const std::vector<std::pair<std::uint64_t, std::size_t>>& khs,
    const std::vector<std::uint64_t>* paired) {
  const std::size_t room = config_.datagram_bytes_max - digest::kHeaderBytes - kRecordSlackBytes;
  std::size_t i = 0;
  while (i < khs.size()) {
    if (riblt_part_ > 0xffff) {
      ++stats_.requests_dropped;
      return;
    }
    Request* r = enqueue(Kind::kRibltPush, TreeNode{}, riblt_part_++);
    if (!r) return;  // tracked bound reached: the next session continues
    std::size_t used = 0;
    // A pair costs 8 bytes of the room.
    auto cost = [&](std::size_t k) {
      return khs[k].second + (paired && (*paired)[k] ? 2 + digest::kRibltIdBytes : 0);
    };
    while (i < khs.size() && (r->key_hashes.empty() || used + cost(i) <= room)) {
      used += cost(i);
      r->key_hashes.push_back(khs[i].first);
      r->paired.push_back(paired ? (*paired)[i] : 0);
      ++i;
    }
  }
}

void ReconcileSession::riblt_pulled(const Record& rec) {
  auto it = requests_.find(key_of(Kind::kRibltPull, TreeNode{}, rec.part));
  merge_entries(rec.entries, nullptr);
  // A pulled entry older than mine: the tick order misled me (versions more than 2.3 hours
  // apart). Push mine so that the peer ends with the newer one.
  std::vector<std::pair<std::uint64_t, std::size_t>> back;
  for (std::size_t i = 0; i < merge_out_.size() && i < merge_in_.size(); ++i) {
    if (merge_out_[i] != MergeOutcome::kStale) continue;
    const std::uint64_t kh = digest::key_hash(merge_in_[i].key);
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
      if (e.key == merge_in_[i].key && merge_in_[i].version < e.version) {
        back.emplace_back(kh, digest::entry_bytes(EntryRef{e.key, e.value, e.version, e.tombstone}));
      }
    });
  }
  if (!back.empty()) queue_riblt_push(back);
  if (it == requests_.end() || it->second.state == State::kDone) return;
  Request& r = it->second;
  const std::uint64_t end = std::min<std::uint64_t>(rec.first + rec.count, r.got.size());
  for (std::uint64_t i = rec.first; i < end; ++i) r.got[i] = 1;
  if (r.seen.size() < r.key_hashes.size() * 4) {
    rec.entries.for_each([&](const EntryRef& e) { r.seen.push_back(digest::key_hash(e.key)); });
  }
  // The rest of the answer may still be on its way: a timeout asks again for what stays
  // unanswered.
  if (!std::all_of(r.got.begin(), r.got.end(), [](std::uint8_t g) { return g != 0; })) return;
  // A pairing the answer did not confirm: the peer's element was another key sharing my key's
  // id, so the peer lacks mine too.
  std::vector<std::pair<std::uint64_t, std::size_t>> unconfirmed;
  for (std::uint64_t kh : r.paired) {
    if (kh == 0 || std::find(r.seen.begin(), r.seen.end(), kh) != r.seen.end()) continue;
    store_.shard(store_.shard_of_hash(kh)).find_hash(kh, [&](const EntryView& e) {
      unconfirmed.emplace_back(kh, digest::entry_bytes(EntryRef{e.key, e.value, e.version,
                                                                e.tombstone}));
    });
  }
  complete_request(r);
  if (!unconfirmed.empty()) queue_riblt_push(unconfirmed);
}

}  // namespace rumor
