// Versions: every entry carries one, and every node orders them the same way, so every node
// resolves a conflict to the same winner (last writer wins).
//
// A Version is (HLC timestamp, writer node id). The HLC timestamp packs physical milliseconds
// in the top 48 bits and a logical counter in the low 16 bits (Kulkarni et al., "Logical
// Physical Clocks"), so comparing the packed integer compares (physical, logical). Ties between
// nodes that wrote in the same HLC tick break on the node id; two writes by one node never share
// a timestamp, so the order is total over all writes.
//
// Thread-safety: plain values and constexpr functions, safe from any thread.
#pragma once

// The public headers use C++20 (std::span, operator<=>): say so before anything else fails.
#if !defined(__cplusplus) || __cplusplus < 202002L
#error "rumor needs C++20 or later: compile with -std=c++20 (CMake: rumor::rumor sets cxx_std_20)"
#endif

#include <compare>
#include <cstdint>

namespace rumor {

using NodeId = std::uint64_t;

inline constexpr int kHlcLogicalBits = 16;
inline constexpr std::uint64_t kHlcLogicalMask = (std::uint64_t{1} << kHlcLogicalBits) - 1;

constexpr std::uint64_t hlc_pack(std::uint64_t physical_ms, std::uint64_t logical) {
  return (physical_ms << kHlcLogicalBits) | (logical & kHlcLogicalMask);
}
constexpr std::uint64_t hlc_physical_ms(std::uint64_t hlc) { return hlc >> kHlcLogicalBits; }
constexpr std::uint64_t hlc_logical(std::uint64_t hlc) { return hlc & kHlcLogicalMask; }

struct Version {
  std::uint64_t hlc = 0;  // hlc_pack(physical_ms, logical)
  NodeId node = 0;

  friend constexpr auto operator<=>(const Version&, const Version&) = default;
  friend constexpr bool operator==(const Version&, const Version&) = default;
  constexpr bool is_zero() const { return hlc == 0 && node == 0; }
  constexpr std::uint64_t physical_ms() const { return hlc_physical_ms(hlc); }
};

}  // namespace rumor
