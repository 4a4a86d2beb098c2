#!/usr/bin/env bash
# What a click costs in all, not only on its way to the 302: CPU time of the clickhook process
# per click while wrk drives clicks (server on cpu 0, wrk on cpu 1, as in bench/click.sh), and
# again once every one of them is judged, released, counted and its webhook delivered. The
# account subscribes examples/sink.rs (on cpu 1) and its click filter holds nothing back, and wrk
# sends a browser user agent, so every click makes an event and is POSTed (issue 21's "click,
# judge, event, delivery"). DELIVER=0 keeps the default filter and no subscription: most clicks
# are then judged a burst's, and few events are written and none sent. CPU time varies far less
# from run to run on this VM than throughput does.
#
#   bench/cpu_per_click.sh            # 15 s of clicks on 10,000 links
#   DURATION=30 bench/cpu_per_click.sh
#   BIN=/elsewhere/clickhook bench/cpu_per_click.sh   # another build (compare two in one sitting)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
PORT=${PORT:-18280}
SINK=${SINK:-19280}
DELIVER=${DELIVER:-1}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --example sink
[ -n "${BIN:-}" ] || { cargo build --release --quiet --bin clickhook; BIN=target/release/clickhook; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
DB=$WORK/bench.db
RUST_LOG=warn taskset -c 0 "$BIN" --db "$DB" serve --listen "127.0.0.1:$PORT" --public-url "http://127.0.0.1:$PORT" \
  --durability process --allow-private-targets >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
SUBSCRIBE=()
if [ "$DELIVER" = 1 ]; then
  taskset -c 1 target/release/examples/sink "127.0.0.1:$SINK" >/dev/null 2>&1 &
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$SINK/stats" && break; sleep 0.1; done
  SUBSCRIBE=("http://127.0.0.1:$SINK/hook")
fi
python3 bench/setup_links.py "$BIN" "$DB" "http://127.0.0.1:$PORT" 10000 "${SUBSCRIBE[@]}" >"$WORK/paths.txt"
ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" 'index($1, m) == 1 {print $2}'; }
pending() { metric clickhook_outbox_pending_clicks; }
events() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])" "$DB"; }
received() { curl -s "http://127.0.0.1:$SINK/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['events'])"; }
T0=$(ticks); S0=$(date +%s.%N)
taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -s bench/clicks.lua "http://127.0.0.1:$PORT" -- "$WORK/paths.txt" >"$WORK/wrk.out"
T1=$(ticks); S1=$(date +%s.%N); LEFT=$(pending)
while [ "$(pending)" != "0" ]; do sleep 0.5; done
if [ "$DELIVER" = 1 ]; then
  while [ "$(received)" -lt "$(events)" ]; do sleep 0.5; done
  E=$(events)
  echo "events        $E written and delivered"
fi
S2=$(date +%s.%N)
# Released is not yet counted where the statistics count behind the release (SQLite, a pass
# a second): the next pass is part of the cost.
sleep 2
T2=$(ticks)
N=$(sed -n 's/.*n302=\([0-9]*\).*/\1/p' "$WORK/wrk.out")
HZ=$(getconf CLK_TCK)
python3 - "$N" "$T0" "$T1" "$T2" "$S0" "$S1" "$S2" "$LEFT" "$HZ" <<'PY'
import sys
n, t0, t1, t2 = (int(x) for x in sys.argv[1:5])
s0, s1, s2 = (float(x) for x in sys.argv[5:8])
left, hz = int(float(sys.argv[8])), int(sys.argv[9])
us = lambda ticks: ticks * 1e6 / hz / n
print(f"clicks        {n} answered in {s1 - s0:.1f} s ({n / (s1 - s0):.0f}/s); {left} not yet settled when wrk stopped")
print(f"while loaded  {us(t1 - t0):6.1f} us of CPU per click")
print(f"all settled   {us(t2 - t0):6.1f} us of CPU per click; settled {s2 - s1:.1f} s after the clicks stopped")
PY
