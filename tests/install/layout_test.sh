#!/usr/bin/env bash
# What `cmake --install` put where (README "Installing"): the library in Debian's multiarch
# directory, headers, CMake package, a .pc that forces no flags, the stripped `rumor` and
# librumor.so with their debug information apart (gdb finds it by build id), the man pages, the
# bash completion, the systemd unit and the default configuration.
# usage: layout_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR MULTIARCH_LIBDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build=$1 prefix=$3 libdir=$4 multiarch=${5:-}

if [[ -n $multiarch && $libdir != "$multiarch" ]]; then
  fail "libraries go to $libdir, not Debian's multiarch $multiarch"
fi
for f in include/rumor/node.h include/rumor/reactor.h "$libdir/cmake/rumor/rumorConfig.cmake" \
         "$libdir/pkgconfig/rumor.pc" bin/rumor share/man/man1/rumor.1 \
         share/man/man1/rumor-agent.1 share/bash-completion/completions/rumor \
         lib/systemd/system/rumor.service etc/rumor/rumor.toml; do
  [[ -f $prefix/$f ]] || fail "missing: $prefix/$f"
done
lib=$(readlink -f "$prefix/$libdir/librumor.so")
[[ -f $lib ]] || fail "no librumor.so in $prefix/$libdir"
# Nothing in the engine's internal folders is installed.
[[ ! -e $prefix/include/engine && ! -e $prefix/include/base ]] || fail "internal headers installed"
# The simulator is not part of the installed library (docs/architecture.md).
if nm -DC "$lib" | grep -iE 'SimCluster|SimNetwork|SimTransport'; then
  fail "simulator symbols in librumor.so"
fi

# The .pc: the include and library flags, nothing a consumer would have to undo.
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
cflags=$(pkg-config --cflags rumor) libs=$(pkg-config --libs rumor)
[[ $cflags != *-std=* ]] || fail "rumor.pc forces a language standard: $cflags"
[[ $libs == *-lrumor* ]] || fail "rumor.pc does not link rumor: $libs"
[[ $(pkg-config --variable=libdir rumor) -ef $prefix/$libdir ]] || fail "rumor.pc's libdir is wrong"

# Stripped, with a debuglink; the debug information under lib/debug/.build-id.
build_id() { readelf -n "$1" 2>/dev/null | sed -nE 's/.*Build ID: ([0-9a-f]+).*/\1/p'; }
for f in "$prefix/bin/rumor" "$lib"; do
  sections=$(readelf -S --wide "$f" 2>/dev/null)
  ! grep -q '\.debug_info' <<<"$sections" || fail "$f is not stripped (.debug_info)"
  ! grep -q ' \.symtab ' <<<"$sections" || fail "$f is not stripped (.symtab)"
  grep -q '\.gnu_debuglink' <<<"$sections" || fail "$f has no .gnu_debuglink"
  id=$(build_id "$f")
  [[ -n $id ]] || fail "$f has no build id"
  dbg=$prefix/lib/debug/.build-id/${id:0:2}/${id:2}.debug
  [[ -f $dbg ]] || fail "no debug file for $f at $dbg"
  dbg_sections=$(readelf -S --wide "$dbg" 2>/dev/null)
  grep -q '\.debug_info' <<<"$dbg_sections" || fail "$dbg has no .debug_info"
  [[ $(build_id "$dbg") == "$id" ]] || fail "$dbg has another build id"
  echo "$(basename "$f"): $(du -k "$f" | cut -f1) KiB installed, debug info $(du -k "$dbg" | cut -f1) KiB"
done
echo "build tree's rumor: $(du -k "$build/tools/rumor" | cut -f1) KiB"
version=$("$prefix/bin/rumor" --version)
[[ $version == "rumor "* ]] || fail "the stripped rumor does not run: $version"

# gdb finds the debug information through the build id once pointed at the prefix's lib/debug
# (it looks in /usr/lib/debug by default, so the /usr prefix needs nothing): main and the
# symbols in its scope come from DWARF only (the stripped binary does not even know main).
if ! command -v gdb >/dev/null; then
  skip "layout ok; gdb is not installed (Debian package gdb; tools/dev installs it)"
fi
gdb_scope() {
  gdb -nx -batch "$@" -ex 'info scope main' "$prefix/bin/rumor" 2>&1 || true
}
without=$(gdb_scope)
if grep -q '^Symbol ' <<<"$without"; then
  fail "the installed binary still carries its debug information:\n$without"
fi
with=$(gdb_scope -iex "set debug-file-directory $prefix/lib/debug")
grep -q '^Symbol ' <<<"$with" || fail "gdb does not find the debug information:\n$with"
echo "layout test: ok"
