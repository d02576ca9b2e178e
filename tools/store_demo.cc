// The seed example on the store alone (until the cluster exists): three replicas write
// service_version concurrently with skewed clocks, and every replica, whatever order the writes
// reach it in, ends on the same winner.
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/store/store.h"

using namespace rumor;

namespace {

struct Replica {
  std::string name;
  NodeId id;
  std::int64_t skew_ms;
  std::unique_ptr<ManualTimeSource> clock;
  std::unique_ptr<Store> store;
};

std::string show(const Version& v) {
  return fmt::format("{}.{:03}+{}@{}", hlc_physical_ms(v.hlc) / 1000, hlc_physical_ms(v.hlc) % 1000,
                     hlc_logical(v.hlc), v.node);
}

}  // namespace

int main() {
  constexpr std::uint64_t kT0 = 1'764'000'000'000;  // a fixed wall time, so the demo is repeatable
  const char* key = "service_version";
  std::vector<Replica> rs;
  const std::array<std::pair<const char*, std::int64_t>, 3> spec = {
      {{"server-1", 0}, {"server-2", +40}, {"server-3", -15}}};
  for (std::size_t i = 0; i < spec.size(); ++i) {
    Replica r{spec[i].first, i + 1, spec[i].second,
              std::make_unique<ManualTimeSource>(kT0 + spec[i].second), nullptr};
    r.store = std::move(Store::create(StoreConfig{}, r.id, *r.clock)).value();
    rs.push_back(std::move(r));
  }

  fmt::print("rumor store demo: three replicas, one key, conflicting writes\n\n");
  // server-1 writes v1.2.3 and the others receive it.
  const Version v0 = *rs[0].store->set(key, "v1.2.3");
  for (std::size_t i = 1; i < rs.size(); ++i) {
    (void)rs[i].store->merge(EntryView{key, "v1.2.3", v0});
  }
  fmt::print("all three hold {} = v1.2.3 (version {})\n\n", key, show(v0));

  // 100 ms later, each server writes its own value before hearing from the others.
  const std::array<const char*, 3> values = {"v1.2.4", "v1.2.4-hotfix", "v1.2.5-rc1"};
  std::vector<EntryView> writes;
  std::vector<Version> versions;
  fmt::print("concurrent writes (clocks skewed: server-2 runs 40 ms fast, server-3 15 ms slow):\n");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    rs[i].clock->advance(100);
    versions.push_back(*rs[i].store->set(key, values[i]));
  }
  for (std::size_t i = 0; i < rs.size(); ++i) {
    writes.push_back(EntryView{key, values[i], versions[i]});
    fmt::print("  {:<9} clock {:+4} ms  sets {:<14} version {}\n", rs[i].name, rs[i].skew_ms,
               values[i], show(versions[i]));
  }

  // Every order of the three writes, on a fresh replica each, plus the three real replicas.
  fmt::print("\nmerging the three writes in every order (a fresh replica per order):\n");
  std::array<int, 3> order = {0, 1, 2};
  std::vector<std::string> winners;
  do {
    ManualTimeSource t(kT0 + 200);
    auto s = std::move(Store::create(StoreConfig{}, 100, t)).value();
    (void)s->merge(EntryView{key, "v1.2.3", v0});
    std::string names;
    for (int i : order) {
      (void)s->merge(writes[i]);
      names += (names.empty() ? "" : " -> ") + rs[i].name;
    }
    auto e = s->get_entry(key);
    winners.push_back(e->value);
    fmt::print("  {:<36} => {:<14} {}\n", names, e->value, show(e->version));
  } while (std::next_permutation(order.begin(), order.end()));

  fmt::print("\neach server merges the other two writes:\n");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    for (std::size_t j = 0; j < rs.size(); ++j) {
      if (i != j) (void)rs[i].store->merge(writes[j]);
    }
    std::string v;
    Version ver;
    rs[i].store->get(key, &v, &ver);
    winners.push_back(v);
    fmt::print("  {:<9} holds {} = {:<14} {}\n", rs[i].name, key, v, show(ver));
  }

  const bool agree = std::all_of(winners.begin(), winners.end(),
                                 [&](const std::string& w) { return w == winners.front(); });
  if (!agree) {
    fmt::print("\nreplicas disagree: this is a bug\n");
    return 1;
  }
  // A node whose clock is a year ahead: its write would win every conflict for a year, so
  // the others refuse it (Cassandra's far-future generation problem).
  const Version rogue{hlc_pack(kT0 + 365ull * 24 * 3600 * 1000, 0), 4};
  auto refused = rs[0].store->merge(EntryView{key, "v9.9.9", rogue});
  fmt::print("\na server whose clock is a year ahead sends v9.9.9:\n  server-1 answers: {}\n",
             refused.is_ok() ? std::string("accepted (bug)") : refused.status().to_string());
  if (refused.is_ok()) return 1;

  fmt::print(
      "\nall {} merges agree: {} = {}\n"
      "(last writer wins on (HLC timestamp, node id); server-2's clock is ahead, so its write\n"
      " carries the highest timestamp. Within max_clock_skew_ms that is accepted, beyond it the\n"
      " version would be refused.)\n",
      winners.size(), key, winners.front());
  return 0;
}
