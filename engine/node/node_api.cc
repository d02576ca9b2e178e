// The two facades over NodeImpl: rumor::Node for the application (include/rumor/node.h) and
// rumor::NodeDriver for what drives it (include/rumor/driver.h).
#include <algorithm>

#include "base/entropy.h"
#include "digest/hash.h"
#include "engine/node/internal.h"
#include "engine/node/node_impl.h"

namespace rumor {

// ---- Node -----------------------------------------------------------------------------------

Node::Node(std::unique_ptr<NodeImpl> impl)
    : impl_(std::move(impl)), driver_(new NodeDriver(*impl_)) {}
Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::create(const NodeConfig& config, TimeSource& time) {
  return create(config, NodeEnvironment{time});
}

Result<std::unique_ptr<Node>> Node::create(const NodeConfig& config_in,
                                           const NodeEnvironment& env_in) {
  NodeConfig config = config_in;
  if (config.id == 0 && !config.name.empty()) config.id = digest::node_id_of_name(config.name);
  if (Status s = config.validate(); !s) return s;
  if (config.store.riblt_key == 0) {
    config.store.riblt_key = digest::riblt_cluster_key(config.cluster_label);
  }
  NodeEnvironment env = env_in;
  if (env.entropy == nullptr) env.entropy = &system_entropy();
  if (env.threads == nullptr) env.threads = &system_threads();
  auto store = Store::create(config.store, config.id, env.time, *env.threads);
  if (!store) return store.status();
  return std::unique_ptr<Node>(
      new Node(std::make_unique<NodeImpl>(config, env, std::move(store).value())));
}

const NodeConfig& Node::config() const { return impl_->config(); }
NodeId Node::id() const { return impl_->id(); }
Status Node::set(std::string_view key, std::string_view value) { return impl_->set(key, value); }
Status Node::del(std::string_view key) { return impl_->del(key); }

std::optional<std::string> Node::get(std::string_view key) const {
  std::string v;
  if (!impl_->store().get(key, &v)) return std::nullopt;
  return v;
}

std::uint32_t Node::core_of_key(std::string_view key) const {
  const Store& s = impl_->store();
  return s.owner_count() > 1 ? s.owner_of_shard(s.shard_of(key)) : 0;
}

std::optional<Node::Entry> Node::get_entry(std::string_view key) const {
  auto e = impl_->store().get_entry(key);
  if (!e) return std::nullopt;
  return Entry{std::move(e->key), std::move(e->value), e->version, e->tombstone};
}

std::vector<Node::Entry> Node::scan_prefix(std::string_view prefix, std::size_t limit) const {
  std::vector<Entry> out;
  const Store& s = impl_->store();
  for (std::uint32_t i = 0; i < s.shard_count(); ++i) {
    s.shard(i).scan([&](const rumor::Entry& e) {
      if (e.tombstone || e.key.compare(0, prefix.size(), prefix) != 0) return;
      out.push_back(Entry{e.key, e.value, e.version, false});
    });
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<Member> Node::members() const { return impl_->member_list(); }
NodeCounters Node::counters() const { return impl_->counters(); }
void Node::join(std::span<const Address> seeds) { impl_->join(seeds); }
Status Node::set_metadata(std::string_view metadata) {
  if (metadata.size() > impl_->config().metadata_bytes_max) {
    return Status::error(Code::kTooLarge,
                         "metadata is " + std::to_string(metadata.size()) +
                             " bytes, metadata_bytes_max is " +
                             std::to_string(impl_->config().metadata_bytes_max));
  }
  impl_->members().set_metadata(metadata);
  return Status::ok();
}

Status Node::install_key(std::string_view raw_key) { return impl_->install_key(raw_key); }
Status Node::use_key(std::string_view ref) { return impl_->use_key(ref); }
Status Node::remove_key(std::string_view ref) { return impl_->remove_key(ref); }
std::vector<KeyInfo> Node::keys() const { return impl_->crypto().keyring().list(); }
Status Node::set_encryption(EncryptionMode mode) { return impl_->set_encryption(mode); }
EncryptionMode Node::encryption() const { return impl_->crypto().mode(); }
void Node::subscribe(std::string_view prefix, ChangeCallback cb) {
  impl_->gossip().subscribe(prefix, std::move(cb));
}
void Node::on_membership(MembershipCallback cb) { impl_->gossip().on_membership(std::move(cb)); }

// ---- NodeDriver -----------------------------------------------------------------------------

NodeDriver& NodeDriver::of(Node& node) { return *node.driver_; }
std::uint32_t NodeDriver::cores() const { return impl_.cores(); }
std::uint32_t NodeDriver::core_of(std::span<const std::byte> datagram) const {
  return impl_.core_of(datagram);
}
void NodeDriver::start(std::uint32_t core, PacketSink& out) { impl_.start(core, out); }
void NodeDriver::stop(std::uint32_t core, PacketSink& out) { impl_.stop(core, out); }
void NodeDriver::receive(std::uint32_t core, std::span<const ReceivedDatagram> batch,
                         PacketSink& out) {
  impl_.receive(core, batch, out);
}
void NodeDriver::receive(std::uint32_t core, const Address& from,
                         std::span<const std::byte> datagram, PacketSink& out) {
  const ReceivedDatagram one{from, datagram};
  impl_.receive(core, std::span(&one, 1), out);
}
void NodeDriver::tick(std::uint32_t core, PacketSink& out) { impl_.tick(core, out); }
std::uint64_t NodeDriver::next_deadline_ms(std::uint32_t core) const {
  return impl_.next_deadline_ms(core);
}
void NodeDriver::set_waker(std::uint32_t core, std::function<void()> waker) {
  impl_.set_waker(core, std::move(waker));
}
std::size_t NodeDriver::dispatch_events() { return impl_.dispatch_events(); }
bool NodeDriver::running() const { return impl_.running(); }
std::size_t NodeDriver::live_members() const { return impl_.live_members(); }

// ---- NodeInternals --------------------------------------------------------------------------

Members& NodeInternals::members(Node& node) { return node.impl_->members(); }
Store& NodeInternals::store(Node& node) { return node.impl_->store(); }
std::size_t NodeInternals::membership_bytes(Node& node) {
  NodeImpl& n = *node.impl_;
  std::size_t b = n.members().memory_bytes();
  // A partial-view node's table holds itself only, but its own directory and bucket sums are
  // counted: they are what it still pays for the table.
  if (n.partial()) {
    b += n.views()->memory_bytes() + n.tree()->memory_bytes() +
         n.members().directory().memory_bytes();
  }
  return b;
}
const Store& NodeInternals::store(const Node& node) { return node.impl_->store(); }
NodeCounters NodeInternals::core_counters(const Node& node, std::uint32_t core) {
  return node.impl_->core_counters(core);
}

}  // namespace rumor
