#include "base/affinity.h"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstring>

namespace rumor {

PinResult pin_current_thread(int cpu, std::uint32_t nth) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    return {false, std::string("not pinned: sched_getaffinity: ") + std::strerror(errno)};
  }
  int chosen = -1;
  if (cpu < 0) {
    // The nth allowed CPU, wrapping when there are fewer CPUs than cores.
    const int count = CPU_COUNT(&allowed);
    if (count == 0) return {false, "not pinned: empty affinity mask"};
    int want = static_cast<int>(nth % static_cast<std::uint32_t>(count));
    for (int i = 0; i < CPU_SETSIZE; ++i) {
      if (CPU_ISSET(i, &allowed) && want-- == 0) {
        chosen = i;
        break;
      }
    }
  } else if (cpu < CPU_SETSIZE && CPU_ISSET(cpu, &allowed)) {
    chosen = cpu;
  } else {
    return {false,
            "not pinned: CPU " + std::to_string(cpu) + " is not in this process's affinity mask"};
  }
  if (chosen < 0) return {false, "not pinned: empty affinity mask"};
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(chosen, &one);
  if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0) {
    // EPERM (a restricted container) or EINVAL (a cpuset changed under us): run unpinned.
    return {false, std::string("not pinned: sched_setaffinity: ") + std::strerror(errno)};
  }
  return {true, "pinned to CPU " + std::to_string(chosen)};
}

}  // namespace rumor
