// The owner cores of a node (include/rumor/driver.h "Cores"; docs/agent.md "Threading model").
// Work crosses cores only through the SPSC links (one per ordered pair) and the store's MPSC
// write queues; nothing here takes a lock, and each core touches only its own Core, its own
// shards and its own end of each link.
#include <iterator>

#include "base/assert.h"
#include "engine/node/node_impl.h"

namespace rumor {

CoreLinks::CoreLinks(std::uint32_t cores, std::size_t depth) : cores_(cores) {
  if (cores < 2) return;
  links_.resize(static_cast<std::size_t>(cores) * cores);
  for (std::uint32_t from = 0; from < cores; ++from) {
    for (std::uint32_t to = 0; to < cores; ++to) {
      if (from != to) {
        links_[static_cast<std::size_t>(from) * cores + to] =
            std::make_unique<SpscQueue<CoreMsg>>(depth);
      }
    }
  }
}

bool CoreLinks::pending_for(std::uint32_t to) const {
  for (std::uint32_t from = 0; from < cores_; ++from) {
    if (from != to && links_[static_cast<std::size_t>(from) * cores_ + to]->size_approx() > 0) {
      return true;
    }
  }
  return false;
}

void NodeImpl::set_waker(std::uint32_t c, std::function<void()> waker) {
  RUMOR_ASSERT(c < cores());
  cores_[c]->waker = std::move(waker);
}

void NodeImpl::wake(std::uint32_t c) {
  const std::function<void()>& w = cores_[c]->waker;
  if (w) w();
}

bool NodeImpl::hand(Core& from, std::uint32_t to, CoreMsg&& msg, bool wake_target) {
  if (!links_.link(from.index, to).push(std::move(msg))) {
    // The target core is not keeping up. What is dropped here is what UDP could have lost:
    // a datagram or a gossiped entry, which anti-entropy repairs.
    ++from.counters.core_handoff_drops;
    return false;
  }
  ++from.counters.core_handoffs;
  if (wake_target) wake(to);
  return true;
}

void NodeImpl::hand_datagram(Core& from, std::uint32_t to, const Address& addr,
                             std::span<const std::byte> datagram) {
  CoreMsg m;
  m.kind = CoreMsg::Kind::kDatagram;
  m.addr = addr;
  m.key.assign(reinterpret_cast<const char*>(datagram.data()), datagram.size());
  hand(from, to, std::move(m));
}

void NodeImpl::drain_links(Core& c, PacketSink& out) {
  // Bounded per call, so one busy link cannot starve the core's timers; what is left keeps
  // next_deadline at "now".
  constexpr std::size_t kPerLinkMax = 256;
  for (std::uint32_t from = 0; from < cores(); ++from) {
    if (from == c.index) continue;
    c.inbox.clear();
    if (links_.link(from, c.index).pop_batch(std::back_inserter(c.inbox), kPerLinkMax) == 0) {
      continue;
    }
    // Entries and handed-over datagrams merge as one batch (the views point into the inbox,
    // alive until the next drain).
    c.merge_in.clear();
    for (const CoreMsg& m : c.inbox) {
      if (m.kind == CoreMsg::Kind::kMerge) {
        c.merge_in.push_back(EntryView{m.key, m.value, m.version, m.tombstone});
      }
    }
    for (const CoreMsg& m : c.inbox) {
      const auto bytes = std::as_bytes(std::span(m.key.data(), m.key.size()));
      switch (m.kind) {
        case CoreMsg::Kind::kMerge:
          break;
        case CoreMsg::Kind::kDatagram:
          receive_handed(c, m.addr, bytes, out);
          break;
        case CoreMsg::Kind::kAnswer:
          on_sync_request(c, m.addr, static_cast<std::uint16_t>(m.session), bytes, out,
                          /*answer_only=*/true);
          break;
        case CoreMsg::Kind::kChange:
          RUMOR_ASSERT(is_home(c));
          gossip_.offer_change(EntryView{m.key, m.value, m.version, m.tombstone}, m.local);
          break;
        case CoreMsg::Kind::kEvent:
          RUMOR_ASSERT(is_home(c));
          gossip_.offer_event(EntryView{m.key, m.value, m.version, m.tombstone}, m.local);
          break;
        case CoreMsg::Kind::kGossip:
          if (!c.running) break;
          c.gossip->set_live_members(m.session);
          gossip_round(c, m.targets, out);
          break;
        case CoreMsg::Kind::kStartSync:
          if (c.running) c.sync.begin(m.peer, m.addr, m.session, outbox(c, out));
          break;
        case CoreMsg::Kind::kKeys:
          c.crypto.adopt(*m.keys);
          break;
      }
    }
    merge(c);
    c.opened_used = 0;
  }
}

Status NodeImpl::keys_changed(Status st) {
  if (st) spread_keys();
  return st;
}

Status NodeImpl::install_key(std::string_view raw) {
  return keys_changed(crypto().keyring().install(raw));
}
Status NodeImpl::use_key(std::string_view ref) { return keys_changed(crypto().keyring().use(ref)); }
Status NodeImpl::remove_key(std::string_view ref) { return keys_changed(crypto().remove_key(ref)); }
Status NodeImpl::set_encryption(EncryptionMode mode) {
  return keys_changed(crypto().set_mode(mode));
}

void NodeImpl::spread_keys() {
  if (cores() == 1) return;
  const std::shared_ptr<const crypto::KeyState> state = crypto().key_state();
  // Before the home core's thread started, no core runs: the copies are made here. After, each
  // core's copy is its own thread's to change.
  if (home().thread.load(std::memory_order_acquire) == 0) {
    for (std::uint32_t c = 1; c < cores(); ++c) cores_[c]->crypto.adopt(*state);
    return;
  }
  // A newer state replaces one not yet handed over.
  keys_due_.assign(cores(), state);
  keys_due_[kHomeCore].reset();
  hand_keys();
}

void NodeImpl::hand_keys() {
  for (std::uint32_t c = 0; c < keys_due_.size(); ++c) {
    if (!keys_due_[c]) continue;
    CoreMsg m;
    m.kind = CoreMsg::Kind::kKeys;
    m.keys = keys_due_[c];
    if (links_.link(kHomeCore, c).push(std::move(m))) {
      keys_due_[c].reset();
      wake(c);
    }
  }
}

void NodeImpl::pump_feeds(Core& c) {
  // Every change applied to the store (local writes, merges from packets, anti-entropy) is
  // re-broadcast (rumor mongering: an infected node spreads) from the queue of the core that
  // owns its shard, and offered to subscribers on the home core: the other cores hand it over
  // when there are subscriptions, in the order they applied it (per key, the order of its
  // versions). A value too large for a datagram is announced by the home core, which serves its
  // chunks (engine/gossip/bulk.h): those changes go to it whole.
  const std::uint64_t pushes = store_->feed_pushes(c.index);
  if (pushes == c.feeds_read) return;
  const bool home_core = is_home(c);
  const bool events = !home_core && gossip_.wants_changes();
  SpscQueue<CoreMsg>* q = home_core ? nullptr : &links_.link(c.index, kHomeCore);
  bool pushed = false;
  bool all_read = true;
  for (std::uint32_t s = c.index; s < store_->shard_count(); s += cores()) {
    Shard& shard = store_->shard(s);
    if (feed_cursor_[s] == shard.feed_head()) continue;
    // While changes are handed over, never more records than the link has room for: the rest
    // wait in the feed (which keeps change_feed_depth records) instead of being dropped here.
    // size_approx() is at least the true size on the producer side, so the room is never
    // overestimated.
    const std::size_t room = events ? q->capacity() - q->size_approx() : SIZE_MAX;
    if (room == 0) {
      all_read = false;
      break;
    }
    shard.read_feed(&feed_cursor_[s], room, [&](const ChangeRecord& rec) {
      shard.find_hash(rec.key_hash, [&](const EntryView& e) {
        if (e.version != rec.version) return;  // superseded: a later record carries it
        if (home_core) {
          if (partial()) {
            // Partial views: a local write starts a Plumtree broadcast (pushed at the next tick);
            // what arrived by the tree was pushed on as it arrived.
            gossip_.offer_event(e, rec.local);
            if (rec.local) tree_->broadcast(e, now());
            return;
          }
          gossip_.offer_change(e, rec.local);
          return;
        }
        const bool whole = travels_whole(config_, e);
        if (whole) c.gossip->spread(e);
        if (whole && !events) return;
        CoreMsg m;
        m.kind = whole ? CoreMsg::Kind::kEvent : CoreMsg::Kind::kChange;
        m.tombstone = e.tombstone;
        m.local = rec.local;
        m.version = e.version;
        m.key.assign(e.key);
        m.value.assign(e.value);
        pushed |= hand(c, kHomeCore, std::move(m), /*wake=*/false);
      });
    });
    if (feed_cursor_[s] != shard.feed_head()) all_read = false;
  }
  if (all_read) c.feeds_read = pushes;
  if (pushed) wake(kHomeCore);
}

void NodeImpl::publish_core(Core& c) {
  if (!is_home(c)) {
    c.counters.broadcasts_dropped = c.gossip->dropped();
    c.broadcasts_pending.store(c.gossip->wants_round(), std::memory_order_relaxed);
  }
  c.published.publish(c.counters);
}

}  // namespace rumor
