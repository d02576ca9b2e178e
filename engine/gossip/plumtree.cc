// Plumtree over HyParView's links (engine/gossip/plumtree.h; docs/protocol.md "Partial views").
#include "engine/gossip/plumtree.h"

#include <algorithm>

#include "base/assert.h"

namespace rumor {

Plumtree::Plumtree(const NodeConfig& config, NodeCounters& counters,
                   std::function<bool(const wire::TreeId&)> held)
    : config_(config),
      counters_(counters),
      held_(std::move(held)),
      graft_timeout_ms_(config.graft_timeout_ms ? config.graft_timeout_ms
                                                : 2ull * config.gossip_interval_ms) {}

wire::TreeId Plumtree::id_of(const EntryView& e) {
  return wire::TreeId{Store::hash_key(e.key), e.version};
}

Plumtree::Link* Plumtree::link(NodeId id) {
  for (Link& l : links_) {
    if (l.peer.id == id) return &l;
  }
  return nullptr;
}

std::size_t Plumtree::eager_links() const {
  return static_cast<std::size_t>(
      std::count_if(links_.begin(), links_.end(), [](const Link& l) { return l.eager; }));
}

std::size_t Plumtree::memory_bytes() const {
  std::size_t b = sizeof(*this) + links_.capacity() * sizeof(Link);
  for (const Link& l : links_) b += l.ihave.capacity() * sizeof(wire::TreeId);
  for (const auto& [id, p] : cache_) b += sizeof(id) + sizeof(p) + 16 + p.key.capacity() + p.value.capacity();
  b += expiry_.size() * sizeof(expiry_.front());
  b += missing_.size() * (sizeof(wire::TreeId) + sizeof(Missing) + 16);
  return b;
}

void Plumtree::link_up(const wire::PeerRef& p) {
  if (Link* l = link(p.id)) {
    l->peer.address = p.address;
    return;
  }
  // A new link learns what this node holds: a node that was cut off (its links crashed) grafts
  // what it missed from its new neighbours instead of waiting for anti-entropy.
  Link l{p, true, {}};
  for (const auto& [expires, id] : expiry_) {
    if (l.ihave.size() >= kLazyQueueMax) break;
    if (cache_.contains(id)) l.ihave.push_back(id);
  }
  links_.push_back(std::move(l));
}

void Plumtree::link_down(NodeId id) {
  std::erase_if(links_, [&](const Link& l) { return l.peer.id == id; });
}

void Plumtree::remember(const wire::TreeId& id, const wire::EntryMsg& e, std::uint8_t hops,
                        std::uint64_t now) {
  while (cache_.size() >= kCacheMax && !expiry_.empty()) {
    cache_.erase(expiry_.front().second);
    expiry_.pop_front();
  }
  Payload p;
  p.tombstone = e.tombstone;
  p.hops = hops;
  p.key.assign(e.key);
  p.value.assign(e.value);
  if (cache_.emplace(id, std::move(p)).second) expiry_.emplace_back(now + config_.tree_cache_ms, id);
  missing_.erase(id);
}

void Plumtree::push(const Address& to, const wire::EntryMsg& e, std::uint8_t hops,
                    const wire::Outbox& out) {
  wire::Packet p(out);
  if (!p.open()) return;
  wire::encode(p.w(), wire::TreeGossipMsg{hops, e});
  if (!p.w().ok()) return;  // cannot happen: broadcast() checked the size
  p.send(to, /*piggyback=*/false);
  ++counters_.tree_payloads_sent;
}

void Plumtree::spread(const wire::TreeId& id, const wire::EntryMsg& e, std::uint8_t hops,
                      NodeId except, const wire::Outbox& out) {
  for (Link& l : links_) {
    if (l.peer.id == except) continue;
    if (l.eager) {
      push(l.peer.address, e, hops, out);
    } else if (l.ihave.size() < kLazyQueueMax) {
      l.ihave.push_back(id);
    }
  }
}

void Plumtree::broadcast(const EntryView& v, std::uint64_t now) {
  const wire::EntryMsg e{v.tombstone, v.version, v.key, v.value};
  // Header, the message, and the seal's room must fit one datagram.
  if (wire::kHeaderBytes + wire::tree_gossip_bytes(e) + crypto::kSealOverheadBytes >
      config_.datagram_bytes_max) {
    return;
  }
  const wire::TreeId id = id_of(v);
  if (cache_.contains(id)) return;
  if (originate_.size() >= kCacheMax) return;  // anti-entropy spreads what does not fit here
  remember(id, e, 0, now);
  originate_.push_back(id);
  next_tick_ms_ = now;
}

bool Plumtree::on_gossip(NodeId sender, const wire::TreeGossipMsg& m, std::uint64_t now,
                         const wire::Outbox& out) {
  const wire::TreeId id{Store::hash_key(m.entry.key), m.entry.version};
  Link* from = link(sender);
  if (cache_.contains(id)) {
    // A second copy: the link it came on is not needed in the tree.
    ++counters_.tree_duplicates;
    if (from && from->eager) {
      from->eager = false;
      wire::Packet p(out);
      if (p.open()) {
        wire::encode_flags_only(p.w(), wire::MsgType::kTreePrune);
        p.send(from->peer.address, /*piggyback=*/false);
        ++counters_.tree_prunes;
      }
    }
    return false;
  }
  // New: the link it came on is a tree link; push it on.
  if (from) from->eager = true;
  const auto hops = static_cast<std::uint8_t>(std::min<int>(m.hops + 1, 255));
  remember(id, m.entry, hops, now);
  spread(id, m.entry, hops, sender, out);
  return true;
}

void Plumtree::on_ihave(NodeId sender, const wire::TreeIdsMsg& m, std::uint64_t now) {
  if (!link(sender)) return;  // announcements only from a neighbour
  for (const wire::TreeId& id : m.list()) {
    if (cache_.contains(id) || held_(id)) continue;
    auto it = missing_.find(id);
    if (it == missing_.end()) {
      if (missing_.size() >= kMissingMax) continue;  // anti-entropy repairs what is not tracked
      it = missing_.emplace(id, Missing{}).first;
      it->second.graft_at_ms = now + graft_timeout_ms_;
      next_graft_scan_ms_ = std::min(next_graft_scan_ms_, it->second.graft_at_ms);
    }
    Missing& mi = it->second;
    if (mi.announcers < kAnnouncersMax &&
        std::find(mi.from, mi.from + mi.announcers, sender) == mi.from + mi.announcers) {
      mi.from[mi.announcers++] = sender;
    }
  }
}

void Plumtree::on_graft(NodeId sender, const wire::TreeIdsMsg& m, const wire::Outbox& out) {
  Link* l = link(sender);
  if (!l) return;  // only neighbours graft: a stranger cannot draw payloads
  l->eager = true;
  for (const wire::TreeId& id : m.list()) {
    auto it = cache_.find(id);
    if (it == cache_.end()) continue;
    const Payload& p = it->second;
    push(l->peer.address, wire::EntryMsg{p.tombstone, id.version, p.key, p.value}, p.hops, out);
  }
}

void Plumtree::on_prune(NodeId sender) {
  if (Link* l = link(sender)) l->eager = false;
}

void Plumtree::send_ids(const Address& to, wire::MsgType t, std::span<const wire::TreeId> ids,
                        const wire::Outbox& out) {
  while (!ids.empty()) {
    const std::size_t n = std::min(ids.size(), wire::kTreeIdsMax);
    wire::Packet p(out);
    if (!p.open()) return;
    wire::encode_ids(p.w(), t, ids.first(n));
    if (!p.w().ok()) return;
    p.send(to, /*piggyback=*/false);
    if (t == wire::MsgType::kTreeIHave) counters_.tree_ihaves_sent += n;
    ids = ids.subspan(n);
  }
}

void Plumtree::tick(std::uint64_t now, const wire::Outbox& out) {
  for (const wire::TreeId& id : originate_) {
    auto it = cache_.find(id);
    if (it == cache_.end()) continue;
    const Payload& p = it->second;
    spread(id, wire::EntryMsg{p.tombstone, id.version, p.key, p.value}, 0, /*except=*/0, out);
  }
  originate_.clear();
  if (now >= next_tick_ms_) {
    next_tick_ms_ = now + config_.gossip_interval_ms;
    // IHAVE batches, once a gossip round per lazy link.
    for (Link& l : links_) {
      if (l.ihave.empty()) continue;
      send_ids(l.peer.address, wire::MsgType::kTreeIHave, l.ihave, out);
      l.ihave.clear();
    }
    while (!expiry_.empty() && expiry_.front().first <= now) {
      cache_.erase(expiry_.front().second);
      expiry_.pop_front();
    }
  }
  if (now < next_graft_scan_ms_) return;
  next_graft_scan_ms_ = UINT64_MAX;
  for (auto it = missing_.begin(); it != missing_.end();) {
    Missing& mi = it->second;
    if (now < mi.graft_at_ms) {
      next_graft_scan_ms_ = std::min(next_graft_scan_ms_, mi.graft_at_ms);
      ++it;
      continue;
    }
    if (held_(it->first) || mi.announcers == 0) {
      it = missing_.erase(it);
      continue;
    }
    // Ask the first announcer still linked, and turn that link eager: the tree grows a branch
    // where it lost one. The next announcer is asked if this one does not deliver in time.
    const NodeId a = mi.from[0];
    std::copy(mi.from + 1, mi.from + mi.announcers, mi.from);
    --mi.announcers;
    if (Link* l = link(a)) {
      l->eager = true;
      send_ids(l->peer.address, wire::MsgType::kTreeGraft, std::span(&it->first, 1), out);
      ++counters_.tree_grafts;
    }
    mi.graft_at_ms = now + graft_timeout_ms_;
    next_graft_scan_ms_ = std::min(next_graft_scan_ms_, mi.graft_at_ms);
    ++it;
  }
}

}  // namespace rumor
