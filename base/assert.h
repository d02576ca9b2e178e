// RUMOR_ASSERT: assertions that stay on in release builds (TigerStyle, SEASTAR_ASSERT).
// A failed assertion is a programmer error: print where and abort. Operating errors (bad input,
// full queues, peers gone) are values (rumor::Status), never assertions.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace rumor::detail {
[[noreturn, gnu::cold, gnu::noinline]] inline void assert_fail(const char* expr, const char* file,
                                                               int line) {
  std::fprintf(stderr, "rumor: assertion failed: %s (%s:%d)\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace rumor::detail

#define RUMOR_ASSERT(cond)                                                  \
  do {                                                                      \
    if (__builtin_expect(!(cond), 0)) {                                     \
      ::rumor::detail::assert_fail(#cond, __FILE__, __LINE__);              \
    }                                                                       \
  } while (0)

#define RUMOR_UNREACHABLE() ::rumor::detail::assert_fail("unreachable", __FILE__, __LINE__)
