#!/usr/bin/env bash
# The systemd unit as installed: it names the installed binary and configuration, the agent
# starts with that configuration, and `systemd-analyze verify` accepts the unit without a
# warning. Then the unit is started for real under systemd, as an operator would:
#   - where systemd is the service manager (PID 1) and this runs as root: a copy of the unit,
#     installed to a prefix under /run, on ports the kernel picks;
#   - elsewhere, as root with systemd-nspawn (Debian package systemd-container): systemd boots
#     as PID 1 of a throwaway container (--volatile=yes: the host's /usr, an empty /etc, a
#     private network) holding a DESTDIR install of the prefix, and the unit runs there exactly
#     as installed, with its default configuration;
#   - otherwise that step is skipped, and says why.
# Either way: `systemctl start` returns only once the agent sent READY=1 (Type=notify), so a
# client command works at once; the agent runs as a dynamic user, not root; its status line is
# the agent's; `systemctl stop` makes it leave, with a successful result.
# tests/agent/sd_notify_test.cc checks the sd_notify contract itself without systemd.
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

[[ $(id -u) -eq 0 ]] || skip "unit verified; not started: starting a system unit needs root"

# check_unit UNIT RUMOR [CMD...]: start, use and stop UNIT, every command run through CMD (empty
# on the host, nsenter into the container).
check_unit() {
  local unit=$1 rumor=$2 log admin pid user status
  shift 2
  local -a run=("$@")
  [[ $("${run[@]}" systemctl show -p ActiveState --value "$unit") == inactive ]] ||
    fail "$unit is running before the test starts it"
  "${run[@]}" timeout 60 systemctl start "$unit" || {
    "${run[@]}" journalctl -u "$unit" --no-pager | tail -30
    fail "systemctl start $unit failed"
  }
  # No wait: `start` returned after READY=1, which the agent sends once it listens.
  log=$("${run[@]}" journalctl -u "$unit" --no-pager)
  admin=$(sed -nE 's/.* msg=listening .*admin=([0-9.]+:[0-9]+).*/\1/p' <<<"$log" | tail -1)
  [[ -n $admin ]] || fail "no 'listening' line in the journal:\n$log"
  "${run[@]}" "$rumor" info --admin "$admin" >/dev/null ||
    fail "systemctl start returned, yet no agent answers at $admin"
  [[ $("${run[@]}" systemctl show -p ActiveState --value "$unit") == active ]] ||
    fail "$unit is not active"
  status=$("${run[@]}" systemctl show -p StatusText --value "$unit")
  [[ $status == serving* ]] || fail "status line '$status', not the agent's 'serving ...'"
  pid=$("${run[@]}" systemctl show -p MainPID --value "$unit")
  user=$("${run[@]}" ps -o uid= -p "$pid" | tr -d ' ')
  ((user >= 61184)) || fail "the agent runs as uid $user, not a dynamic user"
  "${run[@]}" systemctl stop "$unit"
  [[ $("${run[@]}" systemctl show -p Result --value "$unit") == success ]] ||
    fail "$unit did not stop cleanly: $("${run[@]}" systemctl show -p Result --value "$unit")"
  log=$("${run[@]}" journalctl -u "$unit" --no-pager)
  grep -q " msg=leaving " <<<"$log" || fail "no leave in the journal:\n$log"
  echo "systemd test: ok: $unit started (READY=1), answered at $admin as uid $user, stopped"
}

if [[ -d /run/systemd/system ]]; then
  # On this host's systemd: from a prefix a DynamicUser= service can read (ProtectHome= and
  # PrivateTmp= hide /root, /home and /tmp from it), on ports the kernel picks.
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
  check_unit "$name.service" "$run_prefix/bin/rumor"
  exit 0
fi

command -v systemd-nspawn >/dev/null || skip "unit verified; not started: systemd is not the \
service manager here (PID 1 is $(ps -o comm= -p 1)) and systemd-nspawn is not installed \
(Debian package systemd-container; tools/dev installs it)"

# In a container: the prefix staged with DESTDIR under a temporary directory, bound read-only
# at its real path, and the unit bound into the container's /etc/systemd/system.
stage=$(mktemp -d /tmp/rumor-systemd-nspawn-XXXXXX)
chmod 755 "$stage"
nspawn_pid=
cleanup() {
  if [[ -n $nspawn_pid ]]; then
    kill "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$stage"
}
trap cleanup EXIT
inner=/srv/rumor-install-test
DESTDIR=$stage/root cmake --install "$build" --prefix "$inner" >/dev/null
chmod -R a+rX "$stage/root"
# A first boot with an empty /etc enables every unit its presets allow: a preset keeps rumor
# disabled, so that it starts when the test says, not at boot. systemd-networkd-wait-online is
# masked: the private network has nothing to wait for, and the unit is ordered after
# network-online.target.
echo "disable rumor.service" >"$stage/test.preset"
systemd-nspawn --quiet -D / --volatile=yes --private-network --register=no --keep-unit \
  -M "rumor-test-$$" --console=passive \
  --bind-ro="$stage/root$inner:$inner" \
  --bind-ro="$stage/root$inner/lib/systemd/system/rumor.service:/etc/systemd/system/rumor.service" \
  --bind-ro=/dev/null:/etc/systemd/system/systemd-networkd-wait-online.service \
  --bind-ro="$stage/test.preset:/etc/systemd/system-preset/00-rumor-test.preset" \
  -b systemd.firstboot=off >"$stage/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 is the child of systemd-nspawn; wait until its systemd answers.
leader=
state=
for _ in $(seq 600); do
  kill -0 "$nspawn_pid" 2>/dev/null || break
  # (Looked up each time: systemd-nspawn's first child may be a short-lived helper.)
  leader=$(pgrep -P "$nspawn_pid" -x systemd | head -1 || true)
  if [[ -n $leader ]]; then
    state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
  fi
  sleep 0.1
done
if [[ $state != running && $state != degraded ]]; then
  if ! kill -0 "$nspawn_pid" 2>/dev/null && [[ -z $leader ]]; then
    skip "unit verified; not started: systemd-nspawn cannot run a container here: \
$(tail -3 "$stage/console.log")"
  fi
  fail "the container's systemd did not come up (state '$state'):\n$(tail -20 "$stage/console.log")"
fi
check_unit rumor.service "$inner/bin/rumor" nsenter -t "$leader" -a
