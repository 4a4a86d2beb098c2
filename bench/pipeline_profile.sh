#!/usr/bin/env bash
# Where the sustained pipeline's CPU goes (issue 21): the server on cpu 0 under a click load that
# makes webhooks (wrk with a browser user agent, a subscription to `clickhook receive` on cpu 1,
# --max-settle-lag $LAG, 10s by default); after $WARM seconds, $WINDOW seconds of CPU per thread (from /proc) and a
# perf profile of the server (perf record -g; software clock where the VM has no counters).
#
#   bench/pipeline_profile.sh                      # builds the release binary
#   BIN=/elsewhere/clickhook bench/pipeline_profile.sh
#   perf report -i $PERF --comm sqlite-writer --children --stdio   # then, to read the profile
set -euo pipefail
cd "$(dirname "$0")/.."
WARM=${WARM:-30}
WINDOW=${WINDOW:-20}
LAG=${LAG:-10s}
PERF=${PERF:-/tmp/pipeline.perf}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin clickhook; BIN=target/release/clickhook; fi
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
taskset -c 1 "$BIN" receive --listen 127.0.0.1:19100 --status 200 >/dev/null 2>&1 &
RUST_LOG=warn taskset -c 0 "$BIN" --db "$W/p.db" serve --listen 127.0.0.1:18380 --public-url http://127.0.0.1:18380 \
  --max-settle-lag "$LAG" --allow-private-targets >"$W/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18380/healthz && break; sleep 0.1; done
python3 bench/setup_links.py "$BIN" "$W/p.db" http://127.0.0.1:18380 10000 http://127.0.0.1:19100/hook >"$W/paths.txt"
taskset -c 1 wrk -t1 -c64 -d$((WARM + WINDOW + 20))s -s bench/clicks.lua http://127.0.0.1:18380 -- "$W/paths.txt" >"$W/wrk.out" &
WRK=$!
sleep "$WARM"
snap() { for t in /proc/$PID/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort; }
clicks() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('select max(id) from clicks').fetchone()[0], c.execute('select count(*) from clicks where verdict is null').fetchone()[0], c.execute('select coalesce(max(id),0) from events').fetchone()[0])" "$W/p.db"; }
A=$(snap); CA=$(clicks); TA=$(date +%s.%N)
perf record -F 499 ${PERF_CG:--g} -p "$PID" -o "$PERF" -- sleep "$WINDOW" 2>/dev/null
B=$(snap); CB=$(clicks); TB=$(date +%s.%N)
echo "== CPU ticks (1/100 s) per thread name over the ${WINDOW} s window (profile: $PERF)"
join <(echo "$A") <(echo "$B") | awk '{printf "%-20s %6d\n", $1, $3-$2}' | sort -k2 -nr
echo "== clicks (max id, unjudged, max event id) before / after: $CA / $CB over $(python3 -c "print(round($TB-$TA,1))") s"
wait $WRK; grep RESULT "$W/wrk.out"
