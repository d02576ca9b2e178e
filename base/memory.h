// Large zeroed allocations for hash tables. Tables of 2 MiB and more come from mmap with
// MADV_HUGEPAGE: a store of a million entries spans hundreds of MiB, and with 4 KiB pages nearly
// every probe is a TLB miss as well as a cache miss. Smaller ones come from the allocator.
#pragma once

#include <cstddef>

namespace rumor {

// Returns zero-filled memory aligned to at least 64 bytes, or aborts (allocation failure of a
// table is not an operating error rumor can continue from).
void* alloc_zeroed(std::size_t bytes);
void free_zeroed(void* p, std::size_t bytes);

}  // namespace rumor
