#include "base/memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "base/assert.h"

namespace rumor {
namespace {
constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
}

void* alloc_zeroed(std::size_t bytes) {
  if (bytes >= kHugePageBytes) {
    const std::size_t len = (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    RUMOR_ASSERT(p != MAP_FAILED);
    // Advice only: where transparent huge pages are off, this quietly does nothing.
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;  // anonymous mappings are zero-filled
  }
  void* p = ::operator new(bytes, std::align_val_t(64));
  std::memset(p, 0, bytes);
  return p;
}

void free_zeroed(void* p, std::size_t bytes) {
  if (!p) return;
  if (bytes >= kHugePageBytes) {
    const std::size_t len = (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    munmap(p, len);
    return;
  }
  ::operator delete(p, std::align_val_t(64));
}

}  // namespace rumor
