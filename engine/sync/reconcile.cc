#include "engine/sync/reconcile.h"

#include <bit>
#include <string>

#include "engine/sync/reconcile_detail.h"

namespace rumor {

// ---------------------------------------------------------------------------------------------
// Config

ReconcileConfig ReconcileConfig::for_store(const StoreConfig& store) {
  ReconcileConfig c;
  c.tree.shards_log2 = static_cast<std::uint8_t>(std::countr_zero(store.virtual_shards));
  return c;
}

Status ReconcileConfig::validate() const {
  if (Status s = tree.validate(); !s) return s;
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  // The largest fixed-size request (kHashes at fan-out 64 and 8-byte hashes) must fit.
  if (datagram_bytes_max < 600 || datagram_bytes_max > 65000) {
    return bad("datagram_bytes_max must be in [600, 65000], got " +
               std::to_string(datagram_bytes_max));
  }
  const std::size_t list_bytes = digest::kHeaderBytes + 1 + 7 + 8 + 2 + 8 * 2 +
                                 std::size_t{list_items_max} * digest::kItemBytes;
  if (list_items_max < 1 || list_bytes > datagram_bytes_max) {
    return bad("list_items_max must be >= 1 and its list must fit a datagram");
  }
  if (bloom_bits_per_item < 4 || bloom_bits_per_item > 64) {
    return bad("bloom_bits_per_item must be in [4, 64]");
  }
  if (requests_in_flight_max < 1 || requests_tracked_max < requests_in_flight_max) {
    return bad("need 1 <= requests_in_flight_max <= requests_tracked_max");
  }
  if (requests_tracked_max < 2 * tree.fanout() + 4) {
    // Admitting one answered node takes up to fanout + 2 requests.
    return bad("requests_tracked_max must be at least 2 * fanout + 4");
  }
  if (attempts_max < 1) return bad("attempts_max must be >= 1");
  if (responses_per_request_max < 1) return bad("responses_per_request_max must be >= 1");
  if (riblt_symbols_max < 64 || riblt_symbols_max > digest::kRibltSymbolIndexMax) {
    return bad("riblt_symbols_max must be in [64, 2^20]");
  }
  if (riblt_datagrams_per_request_max < 1) {
    return bad("riblt_datagrams_per_request_max must be >= 1");
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------

namespace reconcile_detail {

void owner_symbols(Store& store, std::uint32_t owner, std::uint64_t first,
                   std::span<digest::RibltSymbol> out) {
  std::fill(out.begin(), out.end(), digest::RibltSymbol{});
  const std::uint64_t k = store.config().riblt_prefix_symbols;
  const std::uint64_t end = first + out.size();
  // A shard with a prefix gives [first, k) from it and its entries only the symbols past k; a
  // shard without one (too few entries to keep it, Shard::riblt) gives all of [first, end) from
  // its entries. Both sums are the same symbols.
  const std::uint64_t tail_from = std::max(first, k);
  const auto tail = out.subspan(std::min(tail_from, end) - first);
  const std::uint64_t key = store.riblt_key();
  std::vector<digest::RibltElement> batch, small;
  for (std::uint32_t s = 0; s < store.shard_count(); ++s) {
    if (store.owner_of_shard(s) != owner) continue;
    digest::RibltPrefix* p = store.shard(s).riblt();
    if (p && first < k) {
      const auto sym = p->symbols();
      for (std::uint64_t i = first; i < std::min(end, k); ++i) out[i - first] += sym[i];
    }
    if (p && end <= k) continue;
    // Every entry's element, in batches (the mapping runs four at a time).
    auto& b = p ? batch : small;
    store.shard(s).for_each_in_hash_range(0, ~std::uint64_t{0}, [&](std::uint64_t kh,
                                                                     const EntryView& e) {
      b.push_back(digest::riblt_element(kh, e.version.hlc,
                                        digest::entry_hash(kh, e.version, e.tombstone), key));
      if (batch.size() == 1024) {
        digest::riblt_accumulate_batch(batch, 1, key, tail_from, tail);
        batch.clear();
      }
      if (small.size() == 1024) {
        digest::riblt_accumulate_batch(small, 1, key, first, out);
        small.clear();
      }
    });
  }
  if (!tail.empty()) digest::riblt_accumulate_batch(batch, 1, key, tail_from, tail);
  digest::riblt_accumulate_batch(small, 1, key, first, out);
}

}  // namespace reconcile_detail

// ---------------------------------------------------------------------------------------------

std::uint64_t request_owner_mask(const Store& store, const ReconcileConfig& config,
                                 std::span<const std::uint8_t> request) {
  MsgHeader h;
  digest::DecodeLimits limits;
  if (!digest::parse_message(request, limits, &h, nullptr).is_ok()) return 0;
  if (h.type != MsgType::kReconcileRequest || !(h.params == config.tree)) return 0;
  std::uint64_t mask = 0;
  const std::uint32_t shards = store.shard_count();
  const Status st = digest::parse_message(request, limits, &h, [&](const Record& rec) {
    if (rec.type == Rec::kRoots) {
      for (std::uint32_t i = 0; i < rec.shard_count && rec.first_shard + i < shards; ++i) {
        mask |= std::uint64_t{1} << store.owner_of_shard(rec.first_shard + i);
      }
    } else if (rec.node.shard < shards) {
      mask |= std::uint64_t{1} << store.owner_of_shard(rec.node.shard);
    }
  });
  return st.is_ok() ? mask : 0;
}

}  // namespace rumor
