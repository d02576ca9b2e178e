#!/usr/bin/env bash
# examples/embed built against the installed prefix twice, as README "Installing" shows — with
# find_package(rumor), then with pkg-config and an rpath (no LD_LIBRARY_PATH) — and each run in
# its self-test: two embedded nodes on loopback agree on a value.
# usage: embed_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR CXX_COMPILER
set -euo pipefail
src=$2 prefix=$3 libdir=$4 cxx=$5
tmp=$(mktemp -d /tmp/rumor-embed-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "== find_package(rumor)"
cmake -S "$src/examples/embed" -B "$tmp/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" >/dev/null
env -u LD_LIBRARY_PATH timeout 60 "$tmp/build/embed" --selftest

echo "== pkg-config rumor"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
"$cxx" -std=c++20 -O1 "$src/examples/embed/main.cc" -o "$tmp/embed-pc" \
  $(pkg-config --cflags --libs rumor) -Wl,-rpath,"$(pkg-config --variable=libdir rumor)"
env -u LD_LIBRARY_PATH timeout 60 "$tmp/embed-pc" --selftest
echo "embed test: ok"
