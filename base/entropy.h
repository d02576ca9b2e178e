// The one place that asks the OS for randomness and thread identity (include/rumor/
// time_source.h has the interfaces). The protocol never calls these: nodes are handed them.
//
// Thread-safety: both objects may be used from any thread.
#pragma once

#include "rumor/time_source.h"

namespace rumor {

// getrandom(2): blocks only before the kernel's pool is first initialised, at boot.
EntropySource& system_entropy();
// The address of a thread_local: distinct between live threads, never 0.
ThreadIdentity& system_threads();

}  // namespace rumor
