#!/usr/bin/env bash
# bench/peers/compare.sh [N...]: the same workload on HashiCorp memberlist and on rumor, one
# table. For each N (default 64 256): N members on loopback with LAN timers, membership complete,
# a settle window (idle traffic measured over it), then one update from the last member, until
# every member holds it. memberlist is Debian's golang-github-hashicorp-memberlist-dev 0.2.2,
# built in GOPATH mode with no network (GO111MODULE=off, GOPROXY=off); rumor is
# `rumor load --mode udp --preset lan`. Not part of tools/dev test: it takes minutes.
# memberlist's members join 16 at a time, and members that still lack others after 3 s of
# waiting push-pull with the member that sees the most (bench/peers/memberlist/main.go says why).
#
#   SETTLE_S=5 bench/peers/compare.sh 64 256
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
settle=${SETTLE_S:-5}
sizes=("$@")
((${#sizes[@]})) || sizes=(64 256)

need=()
for p in golang-go golang-github-hashicorp-memberlist-dev python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "compare.sh: installing ${need[*]}"
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

out=$(mktemp -d /tmp/rumor-peers-XXXXXX)
trap 'rm -rf "$out"' EXIT
(cd bench/peers/memberlist &&
  GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= go build -o "$out/memberlist-load" .)
tools/dev build >/dev/null
rumor=build/release/tools/rumor

for n in "${sizes[@]}"; do
  echo "== N = $n: memberlist" >&2
  # A run that does not form (memberlist's members flap when the CPUs are saturated) is a row
  # of its own; the end of its stderr (formation progress, joins and repairs) is shown.
  timeout 600 "$out/memberlist-load" -nodes "$n" -settle-s "$settle" -max-time-s 300 \
    >"$out/ml-$n.txt" 2>"$out/ml-$n.err" ||
    echo "failed=$(tail -n 1 "$out/ml-$n.err" | tr ' =' '__')" >"$out/ml-$n.txt"
  tail -n 3 "$out/ml-$n.err" >&2
  echo "== N = $n: rumor" >&2
  timeout 600 "$rumor" load --mode udp --preset lan --nodes "$n" --settle-s "$settle" \
    --progress none >"$out/rumor-$n.txt" 2>&1 || tail -n 5 "$out/rumor-$n.txt" >&2
done

python3 - "$out" "$settle" "${sizes[@]}" <<'PY'
import re, sys
out, settle, sizes = sys.argv[1], sys.argv[2], sys.argv[3:]
units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
def size(v, u): return float(v) * units[u]
def rumor(path):
    t = open(path).read()
    g = lambda rx: re.search(rx, t)
    m = g(r"membership\s+complete after ([\d.]+) s")
    r = g(r"\n\s+100%\s+([\d.]+)")
    idle = g(r"idle \(settled\)\s+([\d.]+) packets and ([\d.]+) (\w+) per node per second")
    cost = g(r"update cost\s+(\d+) packets and ([\d.]+) (\w+) cluster-wide")
    rss = g(r"peak memory\s+[\d.]+ \w+ \(([\d.]+) (\w+) per node[,)]")
    if not (cost and idle and rss):
        return None
    return {"formation_s": float(m.group(1)) if m else float("nan"),
            "rounds": float(r.group(1)) if r else float("nan"),
            "update_packets": int(cost.group(1)), "update_bytes": size(cost.group(2), cost.group(3)),
            "idle_pk": float(idle.group(1)), "idle_by": size(idle.group(2), idle.group(3)),
            "rss": size(rss.group(1), rss.group(2))}
def memberlist(path):
    kv = dict(x.split("=", 1) for x in open(path).read().split())
    if "failed" in kv:
        return None
    return {"formation_s": float(kv["formation_s"]), "rounds": float(kv["rounds"]),
            "update_packets": int(kv["update_packets"]), "update_bytes": float(kv["update_bytes"]),
            "idle_pk": float(kv["idle_packets_per_node_s"]), "idle_by": float(kv["idle_bytes_per_node_s"]),
            "rss": float(kv["rss_per_node_bytes"])}
print(f"settle window {settle} s; update cost counts everything sent cluster-wide from the write "
      "until every member held it (idle traffic included)")
print(f"{'N':>5} {'engine':10} {'formation s':>11} {'rounds':>6} {'update packets':>14} "
      f"{'update KiB':>10} {'idle pkt/node/s':>15} {'idle B/node/s':>13} {'RSS KiB/node':>12}")
for n in sizes:
    for name, row in (("memberlist", memberlist(f"{out}/ml-{n}.txt")), ("rumor", rumor(f"{out}/rumor-{n}.txt"))):
        if row is None:
            print(f"{n:>5} {name:10} did not form or converge in time (its log is above)")
            continue
        print(f"{n:>5} {name:10} {row['formation_s']:11.2f} {row['rounds']:6.1f} "
              f"{row['update_packets']:14d} {row['update_bytes']/1024:10.1f} {row['idle_pk']:15.2f} "
              f"{row['idle_by']:13.0f} {row['rss']/1024:12.0f}")
PY
