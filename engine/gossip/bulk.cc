#include "engine/gossip/bulk.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/assert.h"
#include "engine/wire/crypto.h"

namespace rumor {

namespace {
// A served value not asked for within this long is dropped from the cache.
constexpr std::uint64_t kCacheIdleMs = 5000;
}  // namespace

std::size_t datagram_message_room(const NodeConfig& config) {
  return config.datagram_bytes_max - crypto::kSealOverheadBytes - wire::kHeaderBytes;
}

bool travels_whole(const NodeConfig& config, const EntryView& e) {
  return e.tombstone ||
         entry_message_bytes(e.key.size(), e.value.size()) <= datagram_message_room(config);
}

std::uint16_t chunk_bytes_max(const NodeConfig& config) {
  const std::size_t room =
      datagram_message_room(config) - wire::kMessageHeaderBytes - wire::kChunkFixedBytes;
  return static_cast<std::uint16_t>(
      std::min<std::size_t>(room, wire::kMessageBodyBytesMax - wire::kChunkFixedBytes));
}

wire::EntryRefMsg announcement(const NodeConfig& config, const EntryView& e) {
  RUMOR_ASSERT(!e.tombstone);
  RUMOR_ASSERT(!e.value.empty());
  wire::EntryRefMsg m;
  m.version = e.version;
  m.size = static_cast<std::uint32_t>(e.value.size());
  m.hash = wire::value_hash(e.value);
  m.chunk_bytes = chunk_bytes_max(config);
  m.key = e.key;
  return m;
}

std::uint64_t bulk_bytes_limit(const NodeConfig& config) {
  return config.bulk_bytes_max ? config.bulk_bytes_max
                               : std::uint64_t{8} * config.store.value_bytes_max;
}

std::uint64_t bulk_peer_bytes_limit(const NodeConfig& config) {
  return config.bulk_peer_bytes_max ? config.bulk_peer_bytes_max
                                    : std::uint64_t{2} * config.store.value_bytes_max;
}

Bulk::Bulk(const NodeConfig& config, const wire::Limits& limits, Store& store,
           NodeCounters& counters, Rng& rng)
    : config_(config),
      limits_(limits),
      store_(store),
      counters_(counters),
      rng_(rng),
      chunk_bytes_(chunk_bytes_max(config)),
      bytes_max_(bulk_bytes_limit(config)),
      peer_bytes_max_(bulk_peer_bytes_limit(config)) {
  RUMOR_ASSERT(chunk_bytes_ >= wire::kChunkBytesMin);  // NodeConfig::validate
  // transfers_ grows as pulls start (bulk_transfers_max bounds it): reserved, it was 4 KiB per
  // node that most nodes never use. The cache stays reserved: held() returns pointers into it.
  cache_.reserve(kCacheValues);
}

// ---- announcing -----------------------------------------------------------------------------

std::string encode_announcement(const NodeConfig& config, const EntryView& e) {
  if (e.tombstone || e.value.empty()) return {};
  std::string msg(wire::kMessageHeaderBytes + wire::kEntryRefFixedBytes + e.key.size(), '\0');
  wire::Writer w(std::as_writable_bytes(std::span<char>(msg.data(), msg.size())));
  wire::encode(w, announcement(config, e));
  RUMOR_ASSERT(w.ok());
  RUMOR_ASSERT(w.size() == msg.size());
  return msg;
}

// ---- pulling --------------------------------------------------------------------------------

std::uint64_t Bulk::peer_bytes(const Address& a) const {
  std::uint64_t n = 0;
  for (const Transfer& t : transfers_) {
    if (t.source == a) n += t.size;
  }
  return n;
}

void Bulk::on_announce(const Address& from, const wire::EntryRefMsg& m, std::uint64_t now,
                       const wire::Outbox& out) {
  RUMOR_ASSERT(m.size > 0 && m.size <= limits_.value_bytes_max);  // decode checked
  // The store would refuse a version this far ahead once the value is here (docs/store.md):
  // not worth a pull, and every later announcement would pull it again.
  if (m.version.physical_ms() > now + config_.store.max_clock_skew_ms) {
    ++counters_.bulk_refused;
    return;
  }
  // Do we lack this version? A version-only read: the value is not copied.
  const std::uint64_t h = Store::hash_key(m.key);
  Version held;
  bool tomb = false;
  if (store_.shard(store_.shard_of_hash(h)).read(h, m.key, nullptr, &held, &tomb) &&
      held >= m.version) {
    return;
  }
  for (std::size_t i = 0; i < transfers_.size(); ++i) {
    Transfer& t = transfers_[i];
    if (t.key != m.key) continue;
    if (m.version < t.version) return;
    if (m.version == t.version) {
      // Another holder of the same version: where to go if the first stops answering.
      if (!(from == t.source) && t.alternate.empty()) t.alternate = from;
      return;
    }
    ++counters_.bulk_superseded;  // a newer version makes this one moot
    drop(i);
    break;
  }
  if (transfers_.size() >= config_.bulk_transfers_max || bytes_ + m.size > bytes_max_ ||
      peer_bytes(from) + m.size > peer_bytes_max_) {
    ++counters_.bulk_refused;
    return;
  }
  Transfer t;
  // Random, so a chunk of an older transfer (or a stray one) rarely names a new one; a chunk
  // must also come from the transfer's source and have the right size.
  t.xfer = static_cast<std::uint32_t>(rng_.next());
  t.key.assign(m.key);
  t.version = m.version;
  t.size = m.size;
  t.hash = m.hash;
  t.chunk_bytes = std::min(chunk_bytes_, m.chunk_bytes);
  t.chunks = wire::chunk_count(t.size, t.chunk_bytes);
  t.source = from;
  t.data.assign(t.size, '\0');
  t.got.assign((t.chunks + 63) / 64, 0);
  bytes_ += t.size;
  transfers_.push_back(std::move(t));
  ++counters_.bulk_pulls;
  Transfer& n = transfers_.back();
  n.attempts = 1;
  n.deadline_ms = now + config_.bulk_timeout_ms;
  for (Transfer::Window& w : n.windows) {
    open_window(n, w);
    request(n, w, out);
  }
}

bool Bulk::holds_newer(const Transfer& t) const {
  const std::uint64_t h = Store::hash_key(t.key);
  Version held;
  bool tomb = false;
  return store_.shard(store_.shard_of_hash(h)).read(h, t.key, nullptr, &held, &tomb) &&
         held >= t.version;
}

void Bulk::open_window(Transfer& t, Transfer::Window& w) {
  w.missing = 0;
  if (t.next_unasked >= t.chunks) return;
  const std::uint32_t first = t.next_unasked;
  const std::uint32_t span =
      std::min({t.chunks - first, config_.bulk_window_chunks, wire::kChunkWindowMax});
  // Chunks past next_unasked were never asked for, so none is here yet.
  w.first = first;
  w.missing = span == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << span) - 1;
  t.next_unasked = first + span;
}

void Bulk::request(Transfer& t, Transfer::Window& w, const wire::Outbox& out) {
  if (w.missing == 0) return;
  w.last = w.first + 63 - static_cast<std::uint32_t>(std::countl_zero(w.missing));
  wire::Packet p(out);
  if (!p.open()) return;  // the sink is full: the deadline asks again
  wire::encode(p.w(), wire::ChunkRequestMsg{t.xfer, t.version, t.size, t.chunk_bytes, w.first,
                                            w.missing, t.key});
  RUMOR_ASSERT(p.w().ok());  // NodeConfig::validate: the largest key's request fits
  p.send(t.source, /*piggyback=*/false);
  ++counters_.bulk_requests;
}

void Bulk::on_chunk(const Address& from, const wire::ChunkMsg& m, std::uint64_t now,
                    const wire::Outbox& out,
                    const std::function<void(const EntryView&)>& apply) {
  std::size_t i = 0;
  while (i < transfers_.size() && transfers_[i].xfer != m.xfer) ++i;
  if (i == transfers_.size() || !(transfers_[i].source == from)) {
    ++counters_.bulk_chunks_unexpected;  // late (a finished or dropped transfer), or not ours
    return;
  }
  Transfer& t = transfers_[i];
  const std::uint32_t c = m.index;
  const std::uint64_t offset = std::uint64_t{c} * t.chunk_bytes;
  if (c >= t.chunks ||
      m.data.size() != std::min<std::uint64_t>(t.chunk_bytes, t.size - offset)) {
    ++counters_.bulk_chunks_bad;
    return;
  }
  if (t.got[c / 64] >> (c % 64) & 1) return;  // a duplicate
  std::memcpy(t.data.data() + offset, m.data.data(), m.data.size());
  t.got[c / 64] |= std::uint64_t{1} << (c % 64);
  ++t.received;
  ++counters_.bulk_chunks_received;
  t.attempts = 1;  // the requests in flight count as this round's
  t.deadline_ms = now + config_.bulk_timeout_ms;
  if (t.received < t.chunks) {
    for (Transfer::Window& w : t.windows) {
      if (w.missing == 0 || c < w.first || c - w.first >= 64 ||
          !(w.missing >> (c - w.first) & 1)) {
        continue;
      }
      w.missing &= ~(std::uint64_t{1} << (c - w.first));
      if (w.missing == 0) {
        // Complete. A newer version may have landed meanwhile (a local write, another pull
        // that finished, anti-entropy): then the rest is not worth pulling.
        if (holds_newer(t)) {
          ++counters_.bulk_superseded;
          drop(i);
          return;
        }
        // The next chunks never asked for.
        open_window(t, w);
        request(t, w, out);
      } else if (c == w.last) {
        // The server sends a window in order (one GSO batch): the chunks still missing when
        // its last arrives were lost, so ask for them now rather than at the deadline.
        // Reordering costs a duplicate at worst, and every such request follows a new chunk.
        request(t, w, out);
      }
    }
    return;
  }
  // Whole: verify, then one merge of the whole entry.
  if (wire::value_hash(t.data) != t.hash) {
    ++counters_.bulk_bad_hash;
  } else {
    ++counters_.bulk_pulled;
    apply(EntryView{t.key, t.data, t.version, false});
  }
  drop(i);
}

void Bulk::tick(std::uint64_t now, const wire::Outbox& out) {
  std::erase_if(cache_, [&](const Cached& e) { return now >= e.used_ms + kCacheIdleMs; });
  for (std::size_t i = 0; i < transfers_.size();) {
    Transfer& t = transfers_[i];
    if (now < t.deadline_ms) {
      ++i;
      continue;
    }
    if (t.attempts >= config_.bulk_attempts_max) {
      if (t.alternate.empty()) {
        ++counters_.bulk_abandoned;
        drop(i);
        continue;
      }
      // The first holder stopped answering: the other one that announced it serves the rest.
      t.source = t.alternate;
      t.alternate = Address{};
      t.attempts = 0;
    }
    // No new chunk for a while: ask again for what every window lacks.
    ++t.attempts;
    t.deadline_ms = now + config_.bulk_timeout_ms;
    for (Transfer::Window& w : t.windows) request(t, w, out);
    ++i;
  }
}

std::uint64_t Bulk::deadline_ms() const {
  std::uint64_t d = UINT64_MAX;
  for (const Transfer& t : transfers_) d = std::min(d, t.deadline_ms);
  for (const Cached& e : cache_) d = std::min(d, e.used_ms + kCacheIdleMs);
  return d;
}

void Bulk::drop(std::size_t i) {
  RUMOR_ASSERT(i < transfers_.size());
  RUMOR_ASSERT(bytes_ >= transfers_[i].size);
  bytes_ -= transfers_[i].size;
  transfers_.erase(transfers_.begin() + static_cast<std::ptrdiff_t>(i));
}

// ---- serving --------------------------------------------------------------------------------

const std::string* Bulk::held(std::string_view key, const Version& v, std::uint32_t size,
                              std::uint64_t now) {
  Cached* hit = nullptr;
  for (Cached& e : cache_) {
    if (e.version == v && e.key == key) hit = &e;
  }
  if (!hit) {
    const std::uint64_t h = Store::hash_key(key);
    std::string value;
    Version version;
    bool tomb = false;
    if (!store_.shard(store_.shard_of_hash(h)).read(h, key, &value, &version, &tomb) ||
        tomb || version != v) {
      return nullptr;
    }
    if (cache_.size() < kCacheValues) {
      hit = &cache_.emplace_back();
    } else {
      hit = &*std::min_element(cache_.begin(), cache_.end(),
                               [](const Cached& x, const Cached& y) { return x.used < y.used; });
    }
    hit->key.assign(key);
    hit->version = version;
    hit->value = std::move(value);
  }
  hit->used = ++cache_uses_;
  hit->used_ms = now;
  return hit->value.size() == size ? &hit->value : nullptr;
}

void Bulk::serve(const Address& from, const wire::ChunkRequestMsg& m, std::uint64_t now,
                 const wire::Outbox& out) {
  const std::string* value = m.chunk_bytes <= chunk_bytes_ ? held(m.key, m.version, m.size, now)
                                                           : nullptr;
  if (!value) {
    // Not held (a newer version replaced it, or it was never ours), or chunks larger than our
    // datagrams carry: the requester gives up after its attempts, or pulls from another peer.
    ++counters_.bulk_serve_refused;
    return;
  }
  for (std::uint64_t mask = m.mask; mask != 0; mask &= mask - 1) {
    const std::uint32_t c = m.first + static_cast<std::uint32_t>(std::countr_zero(mask));
    const std::uint64_t offset = std::uint64_t{c} * m.chunk_bytes;
    RUMOR_ASSERT(offset < value->size());  // decode bounds the mask by the chunk count
    const std::size_t len = std::min<std::uint64_t>(m.chunk_bytes, value->size() - offset);
    wire::Packet p(out);
    if (!p.open()) return;  // the sink is full: the requester asks again
    const auto* data = reinterpret_cast<const std::byte*>(value->data()) + offset;
    wire::encode(p.w(), wire::ChunkMsg{m.xfer, c, std::span<const std::byte>(data, len)});
    RUMOR_ASSERT(p.w().ok());  // chunk_bytes <= chunk_bytes_, which fits a datagram
    p.send(from, /*piggyback=*/false);
    ++counters_.bulk_chunks_sent;
  }
}

}  // namespace rumor
