// MemberDirectory: what the member tables of several nodes can share. Every node holds a view
// of N members, so N nodes hold N^2 records; the simulator and `rumor load` drive thousands of
// nodes from one thread and give them one directory, so that a record is 12 bytes per node and
// everything else is stored once per process (docs/load.md "Memory per node"). A node made by
// Node::create has a directory of its own.
//
// Two tables, both reference counted by the views that hold their entries:
// - slots: member id <-> a dense index. A view keeps its per-member words in arrays indexed by
//   slot, so a lookup is one probe here (a table every node shares, warm in cache) and one
//   load from the view, and there is no per-view hash index.
// - texts: (name, metadata, address) of an incarnation, interned. A member that restarts with
//   another address or metadata gets another text; views that have not heard yet keep the old.
//
// A slot or text nobody holds is reused. Not thread-safe: every view sharing a directory must
// be driven by the same thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/members/id_index.h"
#include "rumor/transport.h"

namespace rumor {

class MemberDirectory {
 public:
  using Slot = std::uint32_t;
  using Text = std::uint32_t;
  static constexpr std::uint32_t kNone = UINT32_MAX;

  // Members are grouped in 2^kBucketBits buckets by the top bits of their id: the unit in which
  // member tables are compared (Members' digests). A view sends a bucket's records by walking
  // the bucket's slots here, without scanning its table.
  static constexpr unsigned kBucketBits = 11;
  static std::size_t bucket_of(std::uint64_t id) { return static_cast<std::size_t>(id >> (64 - kBucketBits)); }
  std::span<const Slot> bucket(std::size_t b) const {
    if (!by_bucket_.empty()) return by_bucket_[b];
    return lone_ != kNone && bucket_of(slot_ids_[lone_]) == b ? std::span<const Slot>(&lone_, 1)
                                                              : std::span<const Slot>();
  }

  // ---- slots ----
  Slot find(std::uint64_t id) const {
    return index_.find(id, [this](std::uint32_t s) { return slot_ids_[s]; });
  }
  // The slot of id, added if new; one more hold on it.
  Slot hold(std::uint64_t id);
  void release_slot(Slot s);
  std::uint64_t id(Slot s) const { return slot_ids_[s]; }
  // Every slot is below this: the length a view's arrays need.
  std::size_t slot_limit() const { return slot_ids_.size(); }

  // ---- texts ----
  // A hold on (name, metadata, address), shared with any holder of the same triple. With the
  // member's slot, the text last interned for it is tried first: in a simulation thousands of
  // views intern the same member's text, and that skips the hash lookup.
  Text intern(std::string_view name, std::string_view metadata, const Address& address,
              Slot slot = kNone);
  void retain(Text t) { ++texts_[t].refs; }
  void release(Text t);
  std::string_view name(Text t) const { return texts_[t].name; }
  std::string_view metadata(Text t) const { return texts_[t].metadata; }
  const Address& address(Text t) const { return texts_[t].address; }
  // Distinct triples held now.
  std::size_t texts() const { return texts_.size() - free_texts_.size(); }
  std::size_t memory_bytes() const;

 private:
  struct Entry {
    std::string name;
    std::string metadata;
    Address address;
    std::uint64_t hash = 0;
    std::uint32_t refs = 0;
  };

  Text intern_slow(std::string_view name, std::string_view metadata, const Address& address);

  std::vector<std::uint64_t> slot_ids_;
  std::vector<std::uint32_t> slot_refs_;
  std::vector<Text> slot_text_;  // by slot: the text last interned for it (a hint)
  // Slots by bucket, made when a second slot is held: a directory of one member (a node's own,
  // in partial-view mode, where the table holds only itself) keeps it in lone_ instead of 2,048
  // empty vectors (48 KiB).
  std::vector<std::vector<Slot>> by_bucket_;
  Slot lone_ = kNone;
  std::vector<Slot> free_slots_;
  IdIndex index_;

  std::vector<Entry> texts_;
  std::vector<Text> free_texts_;
  std::unordered_multimap<std::uint64_t, Text> by_hash_;
};

}  // namespace rumor
