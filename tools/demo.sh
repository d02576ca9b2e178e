#!/usr/bin/env bash
# The seed example (README) on real UDP, with three `rumor agent` processes on 127.0.0.1:
#   three servers hold service_version=v1.2.3; server 1 sets v1.2.4 and every server has it
#   within a few gossip rounds; server 2 dies; server 1 sets v1.2.5 and server 3 still gets it.
# Every wait is bounded; the script stops its agents (by pid) whatever happens.
#
# usage: tools/demo.sh PATH/TO/rumor
set -euo pipefail

rumor=${1:?usage: demo.sh PATH/TO/rumor}
dir=$(mktemp -d /tmp/rumor-demo-XXXXXX)
declare -a pids admins names
names=(node1 node2 node3)

cleanup() {
  local pid
  for pid in "${pids[@]:-}"; do
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [[ -n $pid ]] || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

start_agent() {  # start_agent INDEX [SEED]
  local i=$1 seed=${2:-} name=${names[$1]}
  local args=(agent --name "$name" --bind 127.0.0.1:0 --admin 127.0.0.1:0 --preset local
              --no-pin --ready-file "$dir/$name.ready")
  [[ -n $seed ]] && args+=(--join "$seed")
  "$rumor" "${args[@]}" 2>"$dir/$name.log" &
  pids[$i]=$!
  local deadline=$(($(now_ms) + 15000))
  until [[ -s $dir/$name.ready ]]; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null || (($(now_ms) > deadline)); then
      echo "demo: $name did not start; its log:" >&2
      cat "$dir/$name.log" >&2
      exit 1
    fi
    sleep 0.05
  done
  admins[$i]=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$dir/$name.ready")
  local gossip backend
  gossip=$(sed -n 's/.*"gossip":"\([^"]*\)".*/\1/p' "$dir/$name.ready")
  backend=$(sed -n 's/.*"backend":"\([^"]*\)".*/\1/p' "$dir/$name.ready")
  printf '  %s  gossip %-16s admin %-16s io %s\n' "$name" "$gossip" "${admins[$i]}" "$backend"
  [[ $i -eq 0 ]] && seed_addr=$gossip
  return 0
}

view() {  # view INDEX -> the value node INDEX holds, or "-" (down or unset)
  "$rumor" get service_version --admin "${admins[$1]}" --timeout 1 2>/dev/null || echo "-"
}

# Prints every node's view whenever it changes, until all listed nodes hold $1 (bounded).
wait_until_all() {  # wait_until_all VALUE START_MS INDEX...
  local want=$1 start=$2; shift 2
  local deadline=$(($(now_ms) + 20000)) last="" line v i all
  while :; do
    line="" all=1
    for i in "$@"; do
      v=$(view "$i")
      line+=$(printf '%s=%-8s ' "${names[$i]}" "$v")
      [[ $v == "$want" ]] || all=0
    done
    if [[ $line != "$last" ]]; then
      printf '  +%5d ms  %s\n' $(($(now_ms) - start)) "$line"
      last=$line
    fi
    if ((all)); then
      printf '  all agree on %s after %d ms\n' "$want" $(($(now_ms) - start))
      return 0
    fi
    if (($(now_ms) > deadline)); then
      echo "demo: nodes did not agree on $want within 20 s" >&2
      return 1
    fi
    sleep 0.02
  done
}

say "Starting three agents on 127.0.0.1 (the local preset: fast timers for one machine)"
start_agent 0
start_agent 1 "$seed_addr"
start_agent 2 "$seed_addr"

say "node1: set service_version=v1.2.3"
"$rumor" set service_version v1.2.3 --admin "${admins[0]}"
wait_until_all v1.2.3 "$(now_ms)" 0 1 2

say "node1: set service_version=v1.2.4 — watching each node's view"
t0=$(now_ms)
"$rumor" set service_version v1.2.4 --admin "${admins[0]}" >/dev/null
wait_until_all v1.2.4 "$t0" 0 1 2

say "Membership as node3 sees it"
"$rumor" members --admin "${admins[2]}"

say "node2 dies (kill -9), then node1 sets service_version=v1.2.5"
{ kill -KILL "${pids[1]}"; wait "${pids[1]}"; } 2>/dev/null || true
pids[1]=""
t0=$(now_ms)
"$rumor" set service_version v1.2.5 --admin "${admins[0]}" >/dev/null
wait_until_all v1.2.5 "$t0" 0 2

say "Failure detection: node1 suspects node2, then declares it dead"
deadline=$(($(now_ms) + 30000))
last=""
while :; do
  state=$("$rumor" members --json --admin "${admins[0]}" |
          sed -n 's/.*"name":"node2"[^}]*"state":"\([a-z]*\)".*/\1/p')
  if [[ $state != "$last" ]]; then
    printf '  +%5d ms  node1 sees node2 as %s\n' $(($(now_ms) - t0)) "$state"
    last=$state
  fi
  [[ $state == dead ]] && break
  if (($(now_ms) > deadline)); then echo "demo: node2 not declared dead in 30 s" >&2; exit 1; fi
  sleep 0.05
done
"$rumor" members --admin "${admins[0]}"

say "Shutting down: node1 and node3 announce their leave and exit"
for i in 0 2; do
  kill -TERM "${pids[$i]}"
  for _ in $(seq 100); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.05; done
  if wait "${pids[$i]}"; then
    echo "  ${names[$i]} stopped cleanly"
  else
    echo "  ${names[$i]} exited with an error; its log:"
    cat "$dir/${names[$i]}.log"
  fi
  pids[$i]=""
done
say "node1's log"
cat "$dir/node1.log"
