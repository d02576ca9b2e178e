// MemberNames: the names and metadata of members, interned. A member record holds a 4-byte
// handle instead of two std::strings (64 bytes). Every node holds a record per member, so N
// nodes hold N^2 of them; when the nodes share one table (the simulator and `rumor load` give
// all the nodes they drive one), a name is stored once per process instead of once per node.
//
// Entries are reference counted: a handle is taken with intern() and given back with release();
// an entry nobody holds is reused. Handles never move while held.
//
// Not thread-safe: every node sharing a table must be driven by the same thread. A node made by
// Node::create has a table of its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rumor {

class MemberNames {
 public:
  using Handle = std::uint32_t;

  // A handle to (name, metadata), shared with any holder of the same pair. Never fails.
  Handle intern(std::string_view name, std::string_view metadata);
  // Another hold on a handle already held.
  void retain(Handle h) { ++entries_[h].refs; }
  void release(Handle h);

  std::string_view name(Handle h) const { return entries_[h].name; }
  std::string_view metadata(Handle h) const { return entries_[h].metadata; }
  // Distinct pairs held now.
  std::size_t size() const { return entries_.size() - free_.size(); }

 private:
  struct Entry {
    std::string name;
    std::string metadata;
    std::uint64_t hash = 0;
    std::uint32_t refs = 0;
  };
  static std::uint64_t hash_of(std::string_view name, std::string_view metadata);

  std::vector<Entry> entries_;
  std::vector<Handle> free_;
  std::unordered_multimap<std::uint64_t, Handle> by_hash_;
};

}  // namespace rumor
