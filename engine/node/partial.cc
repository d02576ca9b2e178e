// NodeImpl in partial-view mode (membership = partial; docs/protocol.md "Partial views"):
// HyParView keeps the overlay, Plumtree spreads key-value updates along it, and anti-entropy
// runs with a random active-view neighbour (start_sync). The member table (Members) then holds
// this node alone: its messages (records, joins, digests, state sums, indirect probes) are
// ignored, so memory stays O(active + passive) per node.
#include "engine/node/node_impl.h"

namespace rumor {

void NodeImpl::make_partial() {
  RUMOR_ASSERT(cores() == 1);  // validate() refuses partial views on several owner cores
  views_ = std::make_unique<HyParView>(config_, rng_, home().counters);
  tree_ = std::make_unique<Plumtree>(config_, home().counters,
                                     [this](const wire::TreeId& id) { return tree_held(id); });
  views_->set_link_listener([this](const wire::PeerRef& p, bool up) {
    if (up) {
      tree_->link_up(p);
    } else {
      tree_->link_down(p.id);
    }
  });
}

bool NodeImpl::tree_held(const wire::TreeId& id) const {
  bool held = false;
  store_->shard(store_->shard_of_hash(id.key_hash)).find_hash(id.key_hash, [&](const EntryView& e) {
    if (e.version >= id.version) held = true;
  });
  return held;
}

std::vector<Member> NodeImpl::member_list() const {
  if (!partial()) return members_.list();
  std::vector<Member> out;
  out.reserve(1 + views_->active().size() + views_->passive().size());
  Member self;
  self.id = config_.id;
  self.name = config_.name;
  self.address = config_.advertise;
  self.metadata = config_.metadata;
  out.push_back(std::move(self));
  // Active peers are probed, so alive; passive peers are candidates, last known alive. Names
  // and metadata are not carried by the overlay.
  for (const HyParView::Active& a : views_->active()) {
    Member m;
    m.id = a.peer.id;
    m.address = a.peer.address;
    out.push_back(std::move(m));
  }
  for (const wire::PeerRef& p : views_->passive()) {
    Member m;
    m.id = p.id;
    m.address = p.address;
    out.push_back(std::move(m));
  }
  return out;
}

std::size_t NodeImpl::live_members() const {
  return partial() ? views_->active().size() : members_.live();
}

NodeImpl::Handled NodeImpl::dispatch_partial(Core& c, const Address& from, const wire::Header& h,
                                             const wire::Message& msg, const wire::Outbox& o) {
  NodeCounters& k = c.counters;
  const std::uint64_t t = now();
  views_->heard_from(h.sender, t);
  using wire::MsgType;
  auto bad = [](bool ok) { return ok ? Handled::kYes : Handled::kMalformed; };
  switch (msg.type) {
    case MsgType::kPing: {
      wire::Ping m;
      if (!wire::decode(msg.body, &m)) return Handled::kMalformed;
      views_->on_ping(from, h.sender, m, o);
      return Handled::kYes;
    }
    case MsgType::kAck: {
      std::uint32_t seq;
      // heard_from() above already counted it: any datagram from a peer proves its link.
      return bad(wire::decode_seq(msg.body, &seq));
    }
    case MsgType::kHvJoin:
      if (!wire::decode_flags_only(msg.body)) return Handled::kMalformed;
      views_->on_join(from, h.sender, t, o);
      return Handled::kYes;
    case MsgType::kHvForwardJoin: {
      wire::ForwardJoinMsg m;
      if (!wire::decode(msg.body, &m)) return Handled::kMalformed;
      views_->on_forward_join(from, h.sender, m, t, o);
      return Handled::kYes;
    }
    case MsgType::kHvNeighbor: {
      bool high = false;
      if (!wire::decode_neighbor(msg.body, &high)) return Handled::kMalformed;
      views_->on_neighbor(from, h.sender, high, t, o);
      return Handled::kYes;
    }
    case MsgType::kHvNeighborReply: {
      bool accepted = false;
      if (!wire::decode_neighbor_reply(msg.body, &accepted)) return Handled::kMalformed;
      views_->on_neighbor_reply(from, h.sender, accepted, t, o);
      return Handled::kYes;
    }
    case MsgType::kHvDisconnect:
      if (!wire::decode_flags_only(msg.body)) return Handled::kMalformed;
      views_->on_disconnect(from, h.sender);
      return Handled::kYes;
    case MsgType::kHvShuffle:
    case MsgType::kHvShuffleReply: {
      const bool reply = msg.type == MsgType::kHvShuffleReply;
      wire::ShuffleMsg m;
      if (!wire::decode_shuffle(msg.body, reply, &m)) return Handled::kMalformed;
      if (reply) {
        views_->on_shuffle_reply(m);
      } else {
        views_->on_shuffle(from, h.sender, m, o);
      }
      return Handled::kYes;
    }
    case MsgType::kTreeGossip: {
      wire::TreeGossipMsg m;
      if (!wire::decode(msg.body, limits_, &m)) return Handled::kMalformed;
      // Only from an active peer at its own address: a stranger's payload is not pushed on.
      if (!views_->knows(h.sender, from) || !views_->is_active(h.sender)) {
        ++k.drop_unknown_type;
        return Handled::kYes;
      }
      if (tree_->on_gossip(h.sender, m, t, o)) {
        c.merge_in.push_back(
            EntryView{m.entry.key, m.entry.value, m.entry.version, m.entry.tombstone});
      }
      return Handled::kYes;
    }
    case MsgType::kTreeIHave:
    case MsgType::kTreeGraft: {
      wire::TreeIdsMsg m;
      if (!wire::decode_ids(msg.body, &m)) return Handled::kMalformed;
      if (!views_->knows(h.sender, from)) return Handled::kYes;
      if (msg.type == MsgType::kTreeIHave) {
        tree_->on_ihave(h.sender, m, t);
      } else {
        tree_->on_graft(h.sender, m, o);
      }
      return Handled::kYes;
    }
    case MsgType::kTreePrune:
      if (!wire::decode_flags_only(msg.body)) return Handled::kMalformed;
      if (views_->knows(h.sender, from)) tree_->on_prune(h.sender);
      return Handled::kYes;
    // The member table's messages: partial views hold no table.
    case MsgType::kNack:
    case MsgType::kPingReq:
    case MsgType::kMember:
    case MsgType::kJoin:
    case MsgType::kJoinReply:
    case MsgType::kStateSums:
    case MsgType::kMemberDigest:
    case MsgType::kMemberDiff:
      ++k.drop_unknown_type;
      return Handled::kYes;
    default:
      return Handled::kNo;
  }
}

void NodeImpl::partial_tick(PacketSink& out) {
  const std::uint64_t t = now();
  const wire::Outbox o = outbox(home(), out);
  views_->tick(t, o);
  tree_->tick(t, o);
}

}  // namespace rumor
