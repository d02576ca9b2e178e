#!/usr/bin/env bash
# The dependency rules of docs/architecture.md, checked on the sources: which folder may include
# which, where liburing, libsodium and xxHash may appear, and that only base/ reaches the OS for
# time, randomness and thread identity. A rule broken prints the file and line and fails.
# usage: layering_test.sh SOURCE_DIR
set -uo pipefail
cd "${1:-$(dirname "$0")/..}"
failed=0

# allowed FOLDER PREFIX...: every project include ("x/y.h") in FOLDER starts with one of PREFIX.
allowed() {
  local folder=$1; shift
  local pattern
  pattern=$(printf '%s\\|' "$@")
  pattern=${pattern%\\|}
  local bad
  bad=$(grep -rn '#include "' "$folder" --include='*.h' --include='*.cc' |
        grep -v "#include \"\\($pattern\\)" || true)
  if [[ -n $bad ]]; then
    echo "layering: $folder may include only: $*"
    echo "$bad"
    failed=1
  fi
}

allowed base            base/ rumor/
allowed digest          digest/ base/ rumor/
allowed io              io/ base/ rumor/
allowed engine/store    engine/store/ digest/ base/ rumor/
allowed engine/wire     engine/wire/ digest/ base/ rumor/
allowed engine/gossip   engine/gossip/ engine/wire/ engine/store/ digest/ base/ rumor/
allowed engine/members  engine/members/ engine/gossip/ engine/wire/ engine/store/ digest/ base/ rumor/
allowed engine/sync     engine/sync/ engine/wire/ engine/store/ digest/ base/ rumor/
allowed engine/node     engine/node/ engine/members/ engine/gossip/ engine/sync/ engine/wire/ \
                        engine/store/ digest/ base/ rumor/
allowed engine/runtime  engine/runtime/ engine/node/ engine/wire/ engine/store/ io/ base/ rumor/
allowed engine/sim      engine/sim/ engine/node/ engine/members/ engine/store/ io/ base/ rumor/
allowed include/rumor   rumor/

# only_in PATTERN FILE_REGEX WHY: PATTERN (a grep -E regex) appears only in files matching
# FILE_REGEX.
only_in() {
  local pattern=$1 where=$2 why=$3 bad
  # Comment lines do not count: only code reaches the OS.
  bad=$(grep -rnE "$pattern" base digest io engine include --include='*.h' --include='*.cc' |
        grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' | grep -vE "^($where):" || true)
  if [[ -n $bad ]]; then
    echo "layering: $why"
    echo "$bad"
    failed=1
  fi
}

only_in '#include <liburing' 'io/[a-z_]+\.(h|cc)' 'only io/ includes liburing'
only_in '#include <(xdp|bpf)/' 'io/[a-z_]+\.(h|cc)' 'only io/ includes libxdp and libbpf'
only_in '#include <rocksdb/' 'engine/store/durable\.cc' 'only the durable store includes RocksDB'
only_in '#include <sodium' 'engine/wire/crypto\.cc|base/entropy\.cc' \
  'only the crypto module (and the entropy source) includes libsodium'
only_in '#include <xxhash' 'digest/hash\.h' 'xxHash is reached through digest/hash.h only'
only_in '(steady_clock|system_clock|high_resolution_clock)::now|clock_gettime' \
  'base/clock\.cc' 'only base/clock.cc reads a clock'
only_in 'random_device|randombytes_buf|getrandom\(' 'base/entropy\.cc' \
  'only base/entropy.cc reaches the OS for randomness'
only_in 'thread_local' 'base/[a-z_]+\.(h|cc)' \
  'thread identity comes from base/ (injected into the engine like time)'

if ((failed)); then exit 1; fi
echo "layering: ok"
