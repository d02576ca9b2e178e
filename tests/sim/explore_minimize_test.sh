#!/usr/bin/env bash
# The fault explorer's minimiser, end to end: with anti-entropy turned off (-o overrides), a seed
# fails on agreement; the explorer prints a minimised replay (--skip-faults), and that replay
# fails on the same invariant with fewer faults applied.
# usage: explore_minimize_test.sh RUMOR_BIN
set -uo pipefail
rumor=$1
# A seed that fails with anti-entropy off; it moves whenever the protocol draws its random
# numbers differently (seed 3 did, until gossip rounds stopped drawing targets for stale news).
seed=8
off=(-o node.sync_interval_ms=1073741824 -o node.join_sync=0)
out=$("$rumor" sim explore --seeds "$seed" "${off[@]}" 2>&1)
status=$?
fail() { echo "FAIL: $*"; echo "$out" | head -40; exit 1; }
((status == 1)) || fail "expected exit 1 (a failed seed), got $status"
grep -q "seed $seed FAILED: .*agreement" <<<"$out" || fail "seed $seed did not fail on agreement"
line=$(grep "minimised (" <<<"$out") || fail "no minimised replay printed"
replay=$(sed -e 's/.*replay: rumor //' <<<"$line")
needed=$(sed -E 's/.* ([0-9]+) of ([0-9]+) faults needed.*/\1/' <<<"$line")
drawn=$(sed -E 's/.* ([0-9]+) of ([0-9]+) faults needed.*/\2/' <<<"$line")
((needed < drawn)) || fail "minimising left out nothing ($needed of $drawn)"
# shellcheck disable=SC2086  # the replay is a list of words
again=$("$rumor" $replay --no-minimize 2>&1)
status=$?
((status == 1)) || { out=$again; fail "the minimised replay exited $status, not 1"; }
grep -q "seed $seed FAILED: .*agreement" <<<"$again" || { out=$again; fail "the replay failed otherwise"; }
applied=$(grep -c "fault #[0-9]*: " <<<"$again")
left=$(grep -c "fault #[0-9]* left out" <<<"$again")
echo "seed $seed: $drawn faults drawn, $needed needed; the replay applied $applied and left out $left, and failed on agreement"
