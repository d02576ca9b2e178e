#!/usr/bin/env bash
# Installs rumor to a temporary prefix, builds examples/embed against it twice (CMake package,
# then pkg-config) and runs the example's self-test: two embedded nodes on loopback agree.
# usage: install_test.sh BUILD_DIR SOURCE_DIR CXX_COMPILER
set -euo pipefail
build=$1 src=$2 cxx=$3
tmp=$(mktemp -d /tmp/rumor-install-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/rumor/node.h"
test -f "$prefix/include/rumor/reactor.h"
test -f "$prefix/lib/cmake/rumor/rumorConfig.cmake"
test -f "$prefix/lib/pkgconfig/rumor.pc"
ls "$prefix"/lib/librumor.so* >/dev/null
# The simulator is not part of the installed library (docs/architecture.md).
if nm -DC "$prefix"/lib/librumor.so | grep -iE 'SimCluster|SimNetwork|SimTransport'; then
  echo "install test: simulator symbols in librumor.so" >&2
  exit 1
fi

echo "== find_package(rumor)"
cmake -S "$src/examples/embed" -B "$tmp/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" >/dev/null
timeout 60 "$tmp/build/embed" --selftest

echo "== pkg-config rumor"
flags=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs rumor)
"$cxx" -O1 "$src/examples/embed/main.cc" $flags -o "$tmp/embed-pc"
LD_LIBRARY_PATH=$prefix/lib timeout 60 "$tmp/embed-pc" --selftest
echo "install test: ok"
