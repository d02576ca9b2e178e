// Property tests: the store against a std::map oracle with the LWW rule. Random updates,
// applied in random orders, duplicated and interleaved across replicas, always give the
// oracle's state (merge is commutative, associative and idempotent).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine/store/store.h"

namespace rumor {
namespace {

struct Update {
  int key;
  std::uint64_t physical_ms;
  std::uint64_t logical;
  NodeId node;
};

// Everything about a write follows from (key, version): two updates with one version are the
// same write, as they are in a real cluster where (HLC, node) is unique per write.
struct Materialised {
  std::string key, value;
  Version version;
  bool tombstone;
};

Materialised materialise(const Update& u) {
  Materialised m;
  m.key = "key-" + std::to_string(u.key);
  // Some keys padded to whole words (8..40 bytes): the merge fast path takes only those.
  constexpr std::size_t kPad[] = {0, 8, 16, 24, 40};
  if (const std::size_t pad = kPad[u.key % 5]; pad > m.key.size()) m.key.resize(pad, '.');
  m.version = Version{hlc_pack(u.physical_ms, u.logical), u.node};
  const std::uint64_t h = XXH3_64bits_withSeed(&m.version, sizeof(m.version), u.key);
  m.tombstone = h % 5 == 0;
  // Lengths from 0 to ~300 bytes: both inline slots and out-of-line blobs.
  if (!m.tombstone) m.value = std::string(h % 300, static_cast<char>('a' + h % 26)) + "#";
  return m;
}

using Oracle = std::map<std::string, Materialised>;

void oracle_apply(Oracle& o, const Materialised& m) {
  auto it = o.find(m.key);
  if (it == o.end() || it->second.version < m.version) o[m.key] = m;
}

rc::Gen<Update> gen_update() {
  return rc::gen::build<Update>(rc::gen::set(&Update::key, rc::gen::inRange(0, 40)),
                                rc::gen::set(&Update::physical_ms, rc::gen::inRange<std::uint64_t>(990'000, 990'020)),
                                rc::gen::set(&Update::logical, rc::gen::inRange<std::uint64_t>(0, 3)),
                                rc::gen::set(&Update::node, rc::gen::inRange<NodeId>(1, 4)));
}

std::unique_ptr<Store> make_store(TimeSource& t, NodeId self, std::uint32_t shards) {
  StoreConfig cfg;
  cfg.virtual_shards = shards;
  return std::move(Store::create(cfg, self, t)).value();
}

void check_equals_oracle(const Store& s, const Oracle& o) {
  for (const auto& [key, m] : o) {
    auto e = s.get_entry(key);
    RC_ASSERT(e.has_value());
    RC_ASSERT(e->version == m.version);
    RC_ASSERT(e->tombstone == m.tombstone);
    RC_ASSERT(e->value == m.value);
    std::string v;
    RC_ASSERT(s.get(key, &v) == !m.tombstone);
  }
  std::size_t count = 0;
  for (std::uint32_t i = 0; i < s.shard_count(); ++i) {
    s.shard(i).scan([&](const Entry& e) {
      ++count;
      RC_ASSERT(o.count(e.key) == 1u);
    });
  }
  RC_ASSERT(count == o.size());
}

RC_GTEST_PROP(StoreProperty, AnyOrderWithDuplicatesEqualsTheOracle, ()) {
  const auto updates = *rc::gen::container<std::vector<Update>>(gen_update());
  ManualTimeSource t(1'000'000);
  Oracle oracle;
  std::vector<Materialised> ms;
  for (const auto& u : updates) ms.push_back(materialise(u));
  for (const auto& m : ms) oracle_apply(oracle, m);

  // Shuffle and duplicate some updates.
  std::vector<Materialised> stream = ms;
  const auto dups = *rc::gen::container<std::vector<std::size_t>>(
      rc::gen::inRange<std::size_t>(0, std::max<std::size_t>(ms.size(), 1)));
  for (std::size_t d : dups) {
    if (d < ms.size()) stream.push_back(ms[d]);
  }
  const auto order = *rc::gen::unique<std::vector<std::size_t>>(
      stream.size(), rc::gen::inRange<std::size_t>(0, std::max<std::size_t>(stream.size(), 1)));
  const auto shards = *rc::gen::element<std::uint32_t>(1, 2, 8, 64);
  auto s = make_store(t, 99, shards);
  for (std::size_t i : order) {
    const auto& m = stream[i];
    auto r = s->merge(EntryView{m.key, m.value, m.version, m.tombstone});
    RC_ASSERT(r.is_ok());
  }
  check_equals_oracle(*s, oracle);
}

RC_GTEST_PROP(StoreProperty, ReplicasConvergeWhateverTheyReceiveFirst, ()) {
  // Three replicas each get the updates in their own order, in batches, and also a few of
  // them twice; all three end equal to the oracle.
  const auto updates = *rc::gen::container<std::vector<Update>>(gen_update());
  ManualTimeSource t(1'000'000);
  Oracle oracle;
  std::vector<Materialised> ms;
  for (const auto& u : updates) ms.push_back(materialise(u));
  for (const auto& m : ms) oracle_apply(oracle, m);
  for (NodeId replica = 1; replica <= 3; ++replica) {
    auto s = make_store(t, replica, 4);
    auto order = *rc::gen::unique<std::vector<std::size_t>>(
        ms.size(), rc::gen::inRange<std::size_t>(0, std::max<std::size_t>(ms.size(), 1)));
    order.insert(order.end(), order.begin(), order.begin() + order.size() / 3);
    // Group the stream into per-owner batches like a datagram's worth of entries.
    std::vector<EntryView> batch;
    for (std::size_t i : order) {
      const auto& m = ms[i];
      batch.push_back(EntryView{m.key, m.value, m.version, m.tombstone});
      if (batch.size() == 13) {
        std::vector<MergeOutcome> out(batch.size());
        s->merge_batch(0, batch, out);
        for (auto o : out) RC_ASSERT(o != MergeOutcome::kRefused);
        batch.clear();
      }
    }
    std::vector<MergeOutcome> out(batch.size());
    s->merge_batch(0, batch, out);
    check_equals_oracle(*s, oracle);
  }
}

RC_GTEST_PROP(StoreProperty, LocalWritesInterleavedWithRemoteOnesFollowLww, ()) {
  // Local set/del get versions from the HLC, which has observed every remote version merged
  // before them, so a local write always wins over everything this node has seen.
  const auto updates = *rc::gen::container<std::vector<Update>>(gen_update());
  const auto local_at = *rc::gen::container<std::vector<bool>>(updates.size(), rc::gen::arbitrary<bool>());
  ManualTimeSource t(990'010);
  auto s = make_store(t, 7, 8);
  Oracle oracle;
  for (std::size_t i = 0; i < updates.size(); ++i) {
    Materialised m = materialise(updates[i]);
    if (local_at[i]) {
      auto v = m.tombstone ? s->del(m.key) : s->set(m.key, m.value);
      RC_ASSERT(v.is_ok());
      auto prev = oracle.find(m.key);
      if (prev != oracle.end()) RC_ASSERT(prev->second.version < *v);
      m.version = *v;
      oracle_apply(oracle, m);
    } else {
      auto r = s->merge(EntryView{m.key, m.value, m.version, m.tombstone});
      RC_ASSERT(r.is_ok());
      oracle_apply(oracle, m);
    }
  }
  check_equals_oracle(*s, oracle);
}

}  // namespace
}  // namespace rumor
