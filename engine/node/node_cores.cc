// The owner cores of a NodeImpl (include/rumor/node.h "owner cores"; docs/agent.md "Threading
// model"). Core 0 runs membership, rumor mongering and callbacks (engine/node/node.cc); every core
// merges remote entries into its own shards, reconciles them with peers (engine/node/node_sync.cc)
// and feeds its changes to core 0. Work crosses cores only through the SPSC links of
// NodeImpl::links_ (one per ordered pair) and the store's MPSC write queues; nothing here takes
// a lock, and each core touches only its own CoreState, its own shards and its own end of each
// link.
#include <iterator>

#include "base/assert.h"
#include "engine/node/node_impl.h"

namespace rumor {

std::uint32_t NodeImpl::core_of(std::span<const std::byte> datagram) const {
  if (cores() == 1 || datagram.size() < kShardIdOffset + 2) return 0;
  const auto shard = static_cast<std::uint16_t>(
      (static_cast<std::uint16_t>(datagram[kShardIdOffset]) << 8) |
      static_cast<std::uint16_t>(datagram[kShardIdOffset + 1]));
  return shard % cores();
}

void NodeImpl::set_core_waker(std::uint32_t c, std::function<void()> waker) {
  RUMOR_ASSERT(c < cores());
  if (c == 0) {
    waker_ = std::move(waker);
  } else {
    cores_[c]->waker = std::move(waker);
  }
}

void NodeImpl::wake_core(std::uint32_t c) {
  const std::function<void()>& w = c == 0 ? waker_ : cores_[c]->waker;
  if (w) w();
}

bool NodeImpl::hand(std::uint32_t from, std::uint32_t to, CoreMsg&& msg, bool wake) {
  NodeCounters& k = counters_of(from);
  if (!link(from, to).push(std::move(msg))) {
    // The target core is not keeping up. What is dropped here is what UDP could have lost:
    // a datagram or a gossiped entry, which anti-entropy repairs.
    ++k.core_handoff_drops;
    return false;
  }
  ++k.core_handoffs;
  if (wake) wake_core(to);
  return true;
}

void NodeImpl::hand_datagram(std::uint32_t from, std::uint32_t to, const Address& addr,
                             std::span<const std::byte> datagram) {
  CoreMsg m;
  m.kind = CoreMsg::Kind::kDatagram;
  m.addr = addr;
  m.key.assign(reinterpret_cast<const char*>(datagram.data()), datagram.size());
  hand(from, to, std::move(m));
}

bool NodeImpl::links_pending(std::uint32_t c) const {
  for (std::uint32_t from = 0; from < cores(); ++from) {
    if (from != c &&
        links_[static_cast<std::size_t>(from) * cores() + c]->size_approx() > 0) {
      return true;
    }
  }
  return false;
}

void NodeImpl::start_core(std::uint32_t c, PacketSink& out) {
  (void)out;
  RUMOR_ASSERT(c >= 1 && c < cores());
  CoreState& core = *cores_[c];
  RUMOR_ASSERT(!core.running);
  store_->bind_owner(c);
  // Release: the binding is visible to writer threads that see the token (see write()).
  core.thread.store(thread_token(), std::memory_order_release);
  core.running = true;
  core.next_maintenance_ms = now() + 1000;
  publish_counters(c);
}

void NodeImpl::stop_core(std::uint32_t c, PacketSink& out) {
  (void)out;
  RUMOR_ASSERT(c >= 1 && c < cores());
  CoreState& core = *cores_[c];
  if (!core.running) return;
  finish_sync(c, false);
  core.running = false;
  publish_counters(c);
}

void NodeImpl::receive_core(std::uint32_t c, const Address& from,
                            std::span<const std::byte> datagram, PacketSink& out) {
  RUMOR_ASSERT(c >= 1 && c < cores());
  NodeCounters& k = cores_[c]->counters;
  ++k.packets_received;
  k.bytes_received += datagram.size();
  if (!cores_[c]->running) return;
  // As on core 0, with this core's own byte budget per address.
  wire::Reader r(datagram);
  wire::Header h;
  if (!admit(*cores_[c]->peer_bytes, k, from, datagram, r, &h)) return;
  const std::uint32_t t = h.shard % cores();
  if (t == c && !plaintext_frame(c, datagram)) return;
  if (t != c) {
    // Not steered here by the kernel (no steering program, or a peer's odd shard): hand over.
    hand_datagram(c, t, from, datagram);
  } else {
    process_core(c, from, h, r, out);
  }
  pump_core_feeds(c);
  publish_counters(c);
}

void NodeImpl::process_core(std::uint32_t c, const Address& from, const wire::Header& h,
                            wire::Reader& r, PacketSink& out) {
  NodeCounters& k = cores_[c]->counters;
  store_->drain_writes(c, 1024);
  std::vector<EntryView>& in = cores_[c]->merge_in;
  in.clear();
  bool malformed = false;
  wire::Message msg;
  while (!malformed && wire::next_message(r, &msg)) {
    switch (msg.type) {
      case wire::MsgType::kEntry:
        if (!take_entry(msg.body, in)) malformed = true;
        break;
      case wire::MsgType::kSyncRequest:
        handle_sync_request(c, from, h.shard, msg.body, out, /*answer_only=*/false);
        break;
      case wire::MsgType::kSyncResponse:
        handle_sync_response(c, h.sender, msg.body, out);
        break;
      default:
        // Membership and gossip name shard 0 (core 0's); anything else here is not ours.
        ++k.drop_unknown_type;
        break;
    }
  }
  if (malformed || !r.ok()) ++k.drop_malformed;
  split_foreign(c, in);
  merge_core(c);
}

bool NodeImpl::plaintext_frame(std::uint32_t c, std::span<const std::byte> datagram) {
  NodeCounters& k = counters_of(c);
  const auto flags = static_cast<std::uint8_t>(datagram[3]);  // read_header checked the size
  if (flags & ~crypto::kFlagsKnown) {
    ++k.drop_malformed;
    return false;
  }
  if (flags & crypto::kFlagSealed) {
    ++k.drop_sealed_refused;
    return false;
  }
  return true;
}

void NodeImpl::split_foreign(std::uint32_t c, std::vector<EntryView>& in) {
  std::size_t keep = 0;
  for (const EntryView& e : in) {
    const std::uint32_t o = store_->owner_of_shard(store_->shard_of(e.key));
    if (o == c) {
      in[keep++] = e;
      continue;
    }
    CoreMsg m;
    m.kind = CoreMsg::Kind::kMerge;
    m.tombstone = e.tombstone;
    m.version = e.version;
    m.key.assign(e.key);
    m.value.assign(e.value);
    hand(c, o, std::move(m));
  }
  in.resize(keep);
}

bool NodeImpl::take_entry(std::span<const std::byte> body, std::vector<EntryView>& in) const {
  wire::EntryMsg m;
  if (!wire::decode(body, limits_, &m)) return false;
  in.push_back(EntryView{m.key, m.value, m.version, m.tombstone});
  return true;
}

void NodeImpl::merge_core(std::uint32_t c) {
  CoreState& core = *cores_[c];
  if (core.merge_in.empty()) return;
  NodeCounters& k = counters_of(c);
  core.merge_out.resize(core.merge_in.size());
  store_->merge_batch(c, core.merge_in, core.merge_out);
  for (MergeOutcome o : core.merge_out) {
    if (o == MergeOutcome::kApplied) ++k.updates_merged;
    if (o == MergeOutcome::kStale) ++k.updates_stale;
    if (o == MergeOutcome::kRefused) ++k.updates_refused;
  }
  core.merge_in.clear();
}

void NodeImpl::drain_links(std::uint32_t c, PacketSink& out) {
  CoreState& core = *cores_[c];
  // Bounded per call, so one busy link cannot starve the core's timers; what is left keeps
  // next_deadline at "now".
  constexpr std::size_t kPerLinkMax = 256;
  for (std::uint32_t from = 0; from < cores(); ++from) {
    if (from == c) continue;
    core.inbox.clear();
    if (link(from, c).pop_batch(std::back_inserter(core.inbox), kPerLinkMax) == 0) continue;
    // Entries first, as one batch (the views point into the inbox, alive until the next drain).
    core.merge_in.clear();
    for (const CoreMsg& m : core.inbox) {
      if (m.kind == CoreMsg::Kind::kMerge) {
        core.merge_in.push_back(EntryView{m.key, m.value, m.version, m.tombstone});
      }
    }
    merge_core(c);
    for (const CoreMsg& m : core.inbox) {
      const std::span<const std::byte> bytes = std::as_bytes(std::span(m.key.data(), m.key.size()));
      switch (m.kind) {
        case CoreMsg::Kind::kMerge: break;
        case CoreMsg::Kind::kDatagram:
          if (c == 0) {
            receive_counted(m.addr, bytes, out);
          } else {
            wire::Reader r(bytes);
            wire::Header h;
            // It passed the header checks on the core that handed it over.
            if (wire::read_header(r, &h) == wire::HeaderError::kNone &&
                plaintext_frame(c, bytes)) {
              process_core(c, m.addr, h, r, out);
            }
          }
          break;
        case CoreMsg::Kind::kAnswer:
          handle_sync_request(c, m.addr, static_cast<std::uint16_t>(m.session), bytes, out,
                              /*answer_only=*/true);
          break;
        case CoreMsg::Kind::kChange:
          RUMOR_ASSERT(c == 0);
          offer_change(EntryView{m.key, m.value, m.version, m.tombstone}, m.local);
          break;
        case CoreMsg::Kind::kStartSync:
          if (core_running(c)) begin_session(c, m.peer, m.addr, m.session, now(), out);
          break;
      }
    }
  }
}

void NodeImpl::pump_core_feeds(std::uint32_t c) {
  SpscQueue<CoreMsg>& q = link(c, 0);
  bool pushed = false;
  for (std::uint32_t s = c; s < store_->shard_count(); s += cores()) {
    Shard& shard = store_->shard(s);
    if (feed_cursor_[s] == shard.feed_head()) continue;
    // Never more records than the link has room for: the rest wait in the feed (which keeps
    // change_feed_depth records) instead of being dropped here. size_approx() is at least the
    // true size on the producer side, so the room is never overestimated.
    const std::size_t room = q.capacity() - q.size_approx();
    if (room == 0) break;
    shard.read_feed(&feed_cursor_[s], room, [&](const ChangeRecord& rec) {
      shard.find_hash(rec.key_hash, [&](const EntryView& e) {
        if (e.version != rec.version) return;  // superseded: a later record carries it
        CoreMsg m;
        m.kind = CoreMsg::Kind::kChange;
        m.tombstone = e.tombstone;
        m.local = rec.local;
        m.version = e.version;
        m.key.assign(e.key);
        m.value.assign(e.value);
        pushed |= hand(c, 0, std::move(m), /*wake=*/false);
      });
    });
  }
  if (pushed) wake_core(0);
}

void NodeImpl::publish_counters(std::uint32_t c) {
  constexpr std::size_t kWords = sizeof(NodeCounters) / sizeof(std::uint64_t);
  static_assert(sizeof(NodeCounters) % sizeof(std::uint64_t) == 0);
  std::uint64_t words[kWords];
  std::memcpy(words, &cores_[c]->counters, sizeof(words));
  // Relaxed: statistics; core 0 sums them word by word.
  for (std::size_t i = 0; i < kWords; ++i) {
    cores_[c]->published[i].store(words[i], std::memory_order_relaxed);
  }
}

void NodeImpl::tick_core(std::uint32_t c, PacketSink& out) {
  RUMOR_ASSERT(c >= 1 && c < cores());
  CoreState& core = *cores_[c];
  store_->drain_writes(c, 4096);
  if (!core.running) return;
  drain_links(c, out);
  const std::uint64_t t = now();
  session_tick(c, t, out);
  pump_core_feeds(c);
  if (t >= core.next_maintenance_ms) {
    core_maintenance(c, t);
    core.next_maintenance_ms = t + 1000;
  }
  publish_counters(c);
}

std::uint64_t NodeImpl::next_deadline_core_ms(std::uint32_t c) const {
  RUMOR_ASSERT(c >= 1 && c < cores());
  const CoreState& core = *cores_[c];
  if (!core.running) return UINT64_MAX;
  if (links_pending(c)) return 0;
  return std::min(sync_deadline_ms(c), core.next_maintenance_ms);
}

// ---- Node ----

std::uint32_t Node::cores() const { return impl_->cores(); }
std::uint32_t Node::core_of(std::span<const std::byte> datagram) const {
  return impl_->core_of(datagram);
}
void Node::start_core(std::uint32_t core, PacketSink& out) { impl_->start_core(core, out); }
void Node::stop_core(std::uint32_t core, PacketSink& out) { impl_->stop_core(core, out); }
void Node::receive_core(std::uint32_t core, const Address& from,
                        std::span<const std::byte> datagram, PacketSink& out) {
  impl_->receive_core(core, from, datagram, out);
}
void Node::tick_core(std::uint32_t core, PacketSink& out) { impl_->tick_core(core, out); }
std::uint64_t Node::next_deadline_core_ms(std::uint32_t core) const {
  return impl_->next_deadline_core_ms(core);
}
void Node::set_core_waker(std::uint32_t core, std::function<void()> waker) {
  impl_->set_core_waker(core, std::move(waker));
}

}  // namespace rumor
