#include "engine/members/member_names.h"

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor {

std::uint64_t MemberNames::hash_of(std::string_view name, std::string_view metadata) {
  return digest::name_metadata_hash(name, metadata);
}

MemberNames::Handle MemberNames::intern(std::string_view name, std::string_view metadata) {
  const std::uint64_t h = hash_of(name, metadata);
  auto [lo, hi] = by_hash_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    Entry& e = entries_[it->second];
    if (e.name == name && e.metadata == metadata) {
      ++e.refs;
      return it->second;
    }
  }
  Handle handle;
  if (!free_.empty()) {
    handle = free_.back();
    free_.pop_back();
  } else {
    RUMOR_ASSERT(entries_.size() < UINT32_MAX);
    handle = static_cast<Handle>(entries_.size());
    entries_.emplace_back();
  }
  Entry& e = entries_[handle];
  e.name.assign(name);
  e.metadata.assign(metadata);
  e.hash = h;
  e.refs = 1;
  by_hash_.emplace(h, handle);
  return handle;
}

void MemberNames::release(Handle handle) {
  Entry& e = entries_[handle];
  RUMOR_ASSERT(e.refs > 0);
  if (--e.refs > 0) return;
  auto [lo, hi] = by_hash_.equal_range(e.hash);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == handle) {
      by_hash_.erase(it);
      break;
    }
  }
  e.name.clear();
  e.name.shrink_to_fit();
  e.metadata.clear();
  e.metadata.shrink_to_fit();
  free_.push_back(handle);
}

}  // namespace rumor
