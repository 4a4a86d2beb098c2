#!/usr/bin/env bash
# Scale-out benchmark (issue 21): does adding nodes on one PostgreSQL add click throughput?
#
# Every node gets the same CPU cap through a cgroup of its own (v2 `cpu.max`, or v1
# `cpu.cfs_quota_us`, whichever this machine has); all nodes share one PostgreSQL schema and
# one core ($SERVER_CPU), wrk runs on the other ($WRK_CPU). For each N in $SCALES ("N:CAP",
# CAP in cores per node) it alternates $ROUNDS rounds of: one node capped at CAP driven alone,
# and N nodes capped at CAP each, one wrk per node with the connections split between them
# (which of the two goes first alternates from round to round).
# Before every run it waits until the previous run's clicks are judged, so that settling does
# not steal from the next run; nodes are started fresh for each run, and each follows every
# link once before it (bench/warm_links.py), so that its link cache holds them all. Prints
# every run, the medians, and N nodes' median over one node's median. Each run also says where
# the machine's CPU went while wrk ran, in cores: busy (of all cores), the nodes, PostgreSQL (a
# run whose machine was all busy met the host's ceiling, not the nodes'), and how many clicks
# the nodes' group commits carried on average.
#
#   bench/scaleout.sh                           # SCALES="2:0.25 4:0.125", 3 rounds of 15 s
#   SCALES="2:0.25" ROUNDS=5 DURATION=20s bench/scaleout.sh
#   BIN=/elsewhere/target/release/clickhook bench/scaleout.sh
#
# Needs root (cgroups) and PostgreSQL at $PG_URL (a schema of its own, dropped after).
# PostgreSQL itself is neither capped nor pinned: it is the shared part being scaled against.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNS=${CONNS:-64}
LINKS=${LINKS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
PORT=${PORT:-18280}
ROUNDS=${ROUNDS:-3}
SCALES=${SCALES:-2:0.25 4:0.125}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432/test}
PERIOD_US=100000

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin clickhook; BIN=target/release/clickhook; fi
WORK=$(mktemp -d)
SCHEMA=bench_scale_$$
DB="$PG_URL?schema=$SCHEMA"

quota() { python3 -c "print(round($1 * $PERIOD_US))"; } # cores -> µs per period
# The cgroup hierarchy: v2 when /sys/fs/cgroup is cgroup2 itself, else v1's cpu controller.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  CG_ROOT=/sys/fs/cgroup
  grep -qw cpu "$CG_ROOT/cgroup.subtree_control" || echo +cpu >"$CG_ROOT/cgroup.subtree_control"
  cap_group() { echo "$(quota "$2") $PERIOD_US" >"$1/cpu.max"; }
else
  CG_ROOT=/sys/fs/cgroup/cpu
  cap_group() { echo $PERIOD_US >"$1/cpu.cfs_period_us"; echo "$(quota "$2")" >"$1/cpu.cfs_quota_us"; }
fi
[ -w "$CG_ROOT" ] || { echo "cannot create cgroups under $CG_ROOT (run as root)" >&2; exit 1; }
GROUPS_MADE=()

SERVERS=()
stop_nodes() {
  for s in "${SERVERS[@]}"; do kill -TERM "$s" 2>/dev/null || true; done
  for s in "${SERVERS[@]}"; do wait "$s" 2>/dev/null || true; done
  SERVERS=()
}
cleanup() {
  stop_nodes
  kill $(jobs -p) 2>/dev/null || true
  for g in "${GROUPS_MADE[@]}"; do
    # A group can be removed once empty; its processes are gone by now.
    for _ in $(seq 1 50); do rmdir "$g" 2>/dev/null && break; sleep 0.1; done
  done
  psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
count() { psql "$PG_URL" -Atq -c "SET search_path TO $SCHEMA" -c "$1"; }
wait_up() { # port
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$1/c/x" && return; sleep 0.1; done
  echo "node on port $1 did not start" >&2; exit 1
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

group() { echo "$CG_ROOT/clickhook_bench_$$_$1"; } # node -> its cgroup
start_nodes() { # n cap
  for i in $(seq 0 $(($1 - 1))); do
    local g; g=$(group "$i")
    cap_group "$g" "$2"
    # The shell joins the group, then becomes the server: every thread it starts is inside.
    RUST_LOG=warn sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$g" \
      taskset -c "$SERVER_CPU" "$BIN" --db "$DB" serve --listen "127.0.0.1:$((PORT + i))" \
      --public-url "http://127.0.0.1:$PORT" >"$WORK/serve$i.log" 2>&1 &
    SERVERS+=($!)
  done
  for i in $(seq 0 $(($1 - 1))); do wait_up $((PORT + i)); done
}
cpu_snapshot() { # node pids... -> "busy idle postgres nodes" in clock ticks, the whole machine's
  python3 - "$@" <<'PY'
import glob, sys
def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except OSError:
        return 0
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
idle = cpu[3] + cpu[4]
pg = sum(ticks(p.split("/")[2]) for p in glob.glob("/proc/[0-9]*/comm") if open(p).read().strip() == "postgres")
print(sum(cpu) - idle, idle, pg, sum(ticks(p) for p in sys.argv[1:]))
PY
}
commits() { # nodes -> "clicks commits": the nodes' click group commits so far, summed
  for i in $(seq 0 $(($1 - 1))); do curl -s "http://127.0.0.1:$((PORT + i))/metrics"; done \
    | awk '/^clickhook_commit_batch_size_sum/ {s += $2} /^clickhook_commit_batch_size_count/ {c += $2} END {print s + 0, c + 0}'
}
drive() { # nodes duration
  local pids=()
  local before; before=$(cpu_snapshot "${SERVERS[@]}")
  local groups; groups=$(commits "$1")
  for i in $(seq 0 $(($1 - 1))); do
    taskset -c "$WRK_CPU" wrk -t1 -c"$((CONNS / $1))" -d"$2" -s bench/clicks.lua "http://127.0.0.1:$((PORT + i))" \
      -- "$WORK/paths.txt" >"$WORK/wrk$i.out" &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 - "$WORK" "$1" "$before" "$(cpu_snapshot "${SERVERS[@]}")" "$(getconf CLK_TCK)" "$groups" "$(commits "$1")" <<'PY'
import sys
work, nodes = sys.argv[1], int(sys.argv[2])
(s0, c0), (s1, c1) = ([float(x) for x in a.split()] for a in sys.argv[6:8])
res = [dict(kv.split("=") for kv in next(l for l in open(f"{work}/wrk{n}.out") if l.startswith("RESULT")).split()[1:])
       for n in range(nodes)]
# Where the machine's CPU went while wrk ran, in cores: all of it busy means the run measured the
# host's ceiling (PostgreSQL, wrk and the nodes share its cores), not how the nodes scale.
(b0, i0, p0, n0), (b1, i1, p1, n1) = ([int(x) for x in a.split()] for a in sys.argv[3:5])
secs = (b1 - b0 + i1 - i0) / int(sys.argv[5]) / len(open("/proc/cpuinfo").read().split("processor")[1:])
cores = lambda t: t / int(sys.argv[5]) / secs
print(f"rps={sum(float(r['rps']) for r in res):.0f} n302={sum(int(r['n302']) for r in res)}"
      f" busy={cores(b1 - b0):.2f} nodes={cores(n1 - n0):.2f} postgres={cores(p1 - p0):.2f}"
      f" clicks_per_commit={(s1 - s0) / max(c1 - c0, 1):.1f}")
PY
}
UNJUDGED="select (select count(*) from clicks where verdict is null) + (select coalesce(sum(clicks), 0) from click_groups)"
settled() { # waits (up to 3 minutes) until every click is judged
  for _ in $(seq 1 360); do [ "$(count "$UNJUDGED")" = 0 ] && return; sleep 0.5; done
  echo "   (clicks still unjudged after 3 minutes)"
}
run() { # nodes cap -> "rps=… n302=…"
  start_nodes "$1" "$2"
  # Warm-up: every node follows every link once, so that its link cache holds them all, and
  # those clicks are judged before the run.
  local bases=()
  for i in $(seq 0 $(($1 - 1))); do bases+=("http://127.0.0.1:$((PORT + i))"); done
  python3 bench/warm_links.py "$WORK/paths.txt" "${bases[@]}" >/dev/null
  settled
  local r; r=$(drive "$1" "$DURATION")
  settled
  stop_nodes
  echo "$r"
}
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

# A cgroup per node, made here: runs happen in subshells.
MOST=1
for scale in $SCALES; do [ "${scale%%:*}" -gt "$MOST" ] && MOST=${scale%%:*}; done
for i in $(seq 0 $((MOST - 1))); do mkdir "$(group "$i")"; GROUPS_MADE+=("$(group "$i")"); done
# The links: one node, uncapped, makes the account, the campaign and the emails.
"$BIN" --db "$DB" migrate >/dev/null
start_nodes 1 1
python3 bench/setup_links.py "$BIN" "$DB" "http://127.0.0.1:$PORT" "$LINKS" >"$WORK/paths.txt"
stop_nodes
echo "== scale-out on PostgreSQL: $(wc -l <"$WORK/paths.txt") links, $CONNS connections, runs of $DURATION, nodes on cpu $SERVER_CPU, wrk on cpu $WRK_CPU"
SUMMARY=()
for scale in $SCALES; do
  n=${scale%%:*}; cap=${scale##*:}
  ONE=(); MANY=()
  for round in $(seq 1 "$ROUNDS"); do
    # The store grows run by run: which goes first alternates.
    if [ $((round % 2)) = 1 ]; then a=$(run 1 "$cap"); b=$(run "$n" "$cap"); else b=$(run "$n" "$cap"); a=$(run 1 "$cap"); fi
    ONE+=("$(field rps "$a")"); MANY+=("$(field rps "$b")")
    echo "   $n nodes at $cap core each, round $round: 1 node $a   $n nodes $b   ratio $(python3 -c "print(f'{$(field rps "$b") / $(field rps "$a"):.2f}')")"
  done
  m1=$(median "${ONE[@]}"); mn=$(median "${MANY[@]}")
  SUMMARY+=("$(python3 -c "print(f'$n nodes at $cap core each: 1 node {$m1:.0f} req/s, $n nodes {$mn:.0f} req/s (medians), ratio {$mn / $m1:.2f}')")")
done
echo
printf '%s\n' "${SUMMARY[@]}"
STORED=$(count "select (select count(*) from clicks) + (select coalesce(sum(clicks), 0) from click_groups)")
echo "clicks stored: $STORED"
