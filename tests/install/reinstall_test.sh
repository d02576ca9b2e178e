#!/usr/bin/env bash
# What README "Installing" promises about installing again and staging: a second install over a
# prefix keeps the operator's edited configuration and leaves the stripped binaries right (also
# when CMake finds them up to date and copies nothing); a DESTDIR install for /usr writes /usr
# paths into the unit and puts the configuration in /etc; `--component debug` installs the
# debug information alone.
# usage: reinstall_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build=$1
tmp=$(mktemp -d /tmp/rumor-reinstall-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

p=$tmp/prefix
cmake --install "$build" --prefix "$p" >/dev/null
echo '# edited by the operator' >>"$p/etc/rumor/rumor.toml"
touch -r "$build/tools/rumor" "$p/bin/rumor"  # as if up to date: CMake will not copy it again
out=$(cmake --install "$build" --prefix "$p" 2>&1) || fail "a second install failed:\n$out"
grep -q '# edited by the operator' "$p/etc/rumor/rumor.toml" ||
  fail "a second install overwrote the configuration"
grep -q "Kept: $p/etc/rumor/rumor.toml" <<<"$out" || fail "the second install did not say it kept it"
for f in "$p/bin/rumor" "$(readlink -f "$p"/lib/*/librumor.so)"; do
  sections=$(readelf -S --wide "$f" 2>/dev/null)
  n=$(grep -c '\.gnu_debuglink' <<<"$sections" || true)
  [[ $n == 1 ]] || fail "$f has $n debuglinks after a second install"
  ! grep -q '\.debug_info' <<<"$sections" || fail "$f is not stripped"
done
"$p/bin/rumor" --version >/dev/null || fail "rumor does not run after a second install"

stage=$tmp/stage
DESTDIR=$stage cmake --install "$build" --prefix /usr >/dev/null
unit=$stage/usr/lib/systemd/system/rumor.service
grep -qx "ExecStart=/usr/bin/rumor agent --config /etc/rumor/rumor.toml" "$unit" ||
  fail "DESTDIR install for /usr: $(grep ExecStart "$unit")"
[[ -f $stage/etc/rumor/rumor.toml && -x $stage/usr/bin/rumor ]] ||
  fail "DESTDIR install for /usr: no /etc/rumor/rumor.toml or /usr/bin/rumor in the stage"
! grep -rq "$stage" "$unit" "$stage/usr/lib/"*/pkgconfig/rumor.pc || fail "DESTDIR leaked into a file"

d=$tmp/debug-only
cmake --install "$build" --prefix "$d" --component debug >/dev/null
files=$(cd "$d" && find . -type f | sort)
[[ $(grep -c '^\./lib/debug/\.build-id/../.*\.debug$' <<<"$files") == 2 &&
   $(wc -l <<<"$files") == 2 ]] || fail "--component debug installed:\n$files"
echo "reinstall test: ok"
