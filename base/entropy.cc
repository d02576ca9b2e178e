#include "base/entropy.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

#include "base/assert.h"

namespace rumor {

namespace {

class SystemEntropy final : public EntropySource {
 public:
  void fill(std::span<std::byte> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
      if (n < 0 && errno == EINTR) continue;
      RUMOR_ASSERT(n > 0);  // getrandom cannot fail for small requests on Linux >= 3.17
      done += static_cast<std::size_t>(n);
    }
  }
};

thread_local const char t_token = 0;

class SystemThreads final : public ThreadIdentity {
 public:
  std::uint64_t current() override { return reinterpret_cast<std::uintptr_t>(&t_token); }
};

}  // namespace

EntropySource& system_entropy() {
  static SystemEntropy e;
  return e;
}

ThreadIdentity& system_threads() {
  static SystemThreads t;
  return t;
}

}  // namespace rumor
