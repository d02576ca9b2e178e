#!/usr/bin/env bash
# The systemd unit as installed: it names the installed binary and configuration, and
# `systemd-analyze verify` accepts it without a warning. Where systemd is the running service
# manager (PID 1) and this runs as root, the unit is also started for real: `systemctl start`
# returns only once the agent has sent READY=1 (Type=notify), the agent answers at the admin
# address its status line names, and `systemctl stop` ends it cleanly. Elsewhere (containers,
# this project's CI VM) that part is skipped with a message; the sd_notify contract itself is
# tested without systemd by tests/agent/sd_notify_test.cc.
# usage: systemd_test.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build=$1 prefix=$3
unit=$prefix/lib/systemd/system/rumor.service
[[ -f $unit ]] || fail "no unit at $unit"
grep -qx "ExecStart=$prefix/bin/rumor agent --config $prefix/etc/rumor/rumor.toml" "$unit" ||
  fail "ExecStart does not name the installed binary and configuration: $(grep ExecStart "$unit")"
grep -qx "Type=notify" "$unit" || fail "the unit is not Type=notify"
[[ -f $prefix/etc/rumor/rumor.toml ]] || fail "no configuration at $prefix/etc/rumor/rumor.toml"
# The installed configuration is one the agent starts with (on ports the kernel picks).
tmp=$(mktemp -d /tmp/rumor-systemd-test-XXXXXX)
"$prefix/bin/rumor" agent --config "$prefix/etc/rumor/rumor.toml" --bind 127.0.0.1:0 \
  --admin 127.0.0.1:0 --no-pin --ready-file "$tmp/ready" 2>"$tmp/log" &
pid=$!
for _ in $(seq 200); do [[ -s $tmp/ready ]] && break; sleep 0.05; done
kill "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
[[ -s $tmp/ready && $rc -eq 0 ]] ||
  fail "the agent did not start with the installed configuration (exit $rc): $(cat "$tmp/log")"
rm -rf "$tmp"

command -v systemd-analyze >/dev/null ||
  skip "systemd-analyze is not installed (Debian package systemd; tools/dev installs it)"
# With the prefix on PATH, as for a user, so that the unit's Documentation=man: pages are found.
out=$(PATH=$prefix/bin:$PATH systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify failed:\n$out"
[[ -z $out ]] || fail "systemd-analyze verify warns:\n$out"
echo "systemd-analyze verify: clean"

if [[ ! -d /run/systemd/system ]]; then
  skip "unit verified; not started: systemd is not the service manager here (PID 1 is $(ps -o comm= -p 1))"
fi
[[ $(id -u) -eq 0 ]] || skip "unit verified; not started: starting a system unit needs root"

# A real start, from a prefix a DynamicUser= service can read (ProtectHome= and PrivateTmp= hide
# /root, /home and /tmp from it), on ports the kernel picks.
name=rumor-install-test-$$
run_prefix=/run/$name
cleanup() {
  systemctl stop "$name.service" 2>/dev/null || true
  rm -f "/run/systemd/system/$name.service"
  systemctl daemon-reload || true
  rm -rf "$run_prefix"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$run_prefix" >/dev/null
chmod -R a+rX "$run_prefix"
sed -i -e 's/^bind = .*/bind = "127.0.0.1:0"/' -e 's/^admin = .*/admin = "127.0.0.1:0"/' \
  "$run_prefix/etc/rumor/rumor.toml"
cp "$run_prefix/lib/systemd/system/rumor.service" "/run/systemd/system/$name.service"
systemctl daemon-reload
timeout 60 systemctl start "$name.service" || {
  journalctl -u "$name.service" --no-pager | tail -30
  fail "systemctl start $name failed"
}
[[ $(systemctl is-active "$name.service") == active ]] || fail "not active after start"
status=$(systemctl show -p StatusText --value "$name.service")
admin=$(sed -nE 's/.*admin ([0-9.]+:[0-9]+).*/\1/p' <<<"$status")
[[ -n $admin ]] || fail "no admin address in the status line '$status'"
"$run_prefix/bin/rumor" info --admin "$admin" >/dev/null || fail "no agent answers at $admin"
systemctl stop "$name.service"
result=$(systemctl show -p Result --value "$name.service")
[[ $result == success ]] || fail "stopped with result $result"
journal=$(journalctl -u "$name.service" --no-pager)
grep -q "leaving" <<<"$journal" || fail "no leave in the journal:\n$journal"
echo "systemd test: ok (started, answered at $admin, stopped)"
