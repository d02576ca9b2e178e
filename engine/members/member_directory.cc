#include "engine/members/member_directory.h"

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor {

MemberDirectory::Slot MemberDirectory::hold(std::uint64_t id) {
  Slot s = find(id);
  if (s != kNone) {
    ++slot_refs_[s];
    return s;
  }
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
    slot_ids_[s] = id;
    slot_refs_[s] = 1;
  } else {
    RUMOR_ASSERT(slot_ids_.size() < kNone);
    s = static_cast<Slot>(slot_ids_.size());
    slot_ids_.push_back(id);
    slot_refs_.push_back(1);
  }
  index_.put(id, s, [this](std::uint32_t p) { return slot_ids_[p]; });
  if (by_bucket_.empty() && lone_ == kNone) {
    lone_ = s;
    return s;
  }
  if (by_bucket_.empty()) {
    by_bucket_.resize(std::size_t{1} << kBucketBits);
    by_bucket_[bucket_of(slot_ids_[lone_])].push_back(lone_);
    lone_ = kNone;
  }
  by_bucket_[bucket_of(id)].push_back(s);
  return s;
}

void MemberDirectory::release_slot(Slot s) {
  RUMOR_ASSERT(slot_refs_[s] > 0);
  if (--slot_refs_[s] > 0) return;
  index_.erase(slot_ids_[s], [this](std::uint32_t p) { return slot_ids_[p]; });
  if (by_bucket_.empty()) {
    RUMOR_ASSERT(lone_ == s);
    lone_ = kNone;
    free_slots_.push_back(s);
    return;
  }
  std::vector<Slot>& b = by_bucket_[bucket_of(slot_ids_[s])];
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i] != s) continue;
    b[i] = b.back();
    b.pop_back();
    break;
  }
  free_slots_.push_back(s);
}

MemberDirectory::Text MemberDirectory::intern(std::string_view name, std::string_view metadata,
                                              const Address& address, Slot slot) {
  if (slot != kNone && slot < slot_text_.size() && slot_text_[slot] != kNone) {
    Entry& e = texts_[slot_text_[slot]];
    if (e.refs > 0 && e.address == address && e.name == name && e.metadata == metadata) {
      ++e.refs;
      return slot_text_[slot];
    }
  }
  const Text t = intern_slow(name, metadata, address);
  if (slot != kNone) {
    if (slot_text_.size() <= slot) slot_text_.resize(slot_ids_.size(), kNone);
    slot_text_[slot] = t;
  }
  return t;
}

MemberDirectory::Text MemberDirectory::intern_slow(std::string_view name,
                                                   std::string_view metadata,
                                                   const Address& address) {
  const std::uint64_t h = digest::name_metadata_hash(name, metadata) ^ address.hash();
  auto [lo, hi] = by_hash_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    Entry& e = texts_[it->second];
    if (e.name == name && e.metadata == metadata && e.address == address) {
      ++e.refs;
      return it->second;
    }
  }
  Text t;
  if (!free_texts_.empty()) {
    t = free_texts_.back();
    free_texts_.pop_back();
  } else {
    RUMOR_ASSERT(texts_.size() < kNone);
    t = static_cast<Text>(texts_.size());
    texts_.emplace_back();
  }
  Entry& e = texts_[t];
  e.name.assign(name);
  e.metadata.assign(metadata);
  e.address = address;
  e.hash = h;
  e.refs = 1;
  by_hash_.emplace(h, t);
  return t;
}

void MemberDirectory::release(Text t) {
  Entry& e = texts_[t];
  RUMOR_ASSERT(e.refs > 0);
  if (--e.refs > 0) return;
  auto [lo, hi] = by_hash_.equal_range(e.hash);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == t) {
      by_hash_.erase(it);
      break;
    }
  }
  e.name.clear();
  e.name.shrink_to_fit();
  e.metadata.clear();
  e.metadata.shrink_to_fit();
  free_texts_.push_back(t);
}

std::size_t MemberDirectory::memory_bytes() const {
  std::size_t bytes = slot_ids_.capacity() * sizeof(std::uint64_t) +
                  slot_refs_.capacity() * sizeof(std::uint32_t) + index_.memory_bytes() +
                  texts_.capacity() * sizeof(Entry);
  for (const auto& v : by_bucket_) bytes += v.capacity() * sizeof(Slot) + sizeof(v);
  for (const Entry& e : texts_) bytes += e.name.capacity() + e.metadata.capacity();
  return bytes;
}

}  // namespace rumor
