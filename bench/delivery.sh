#!/usr/bin/env bash
# Delivery benchmark (issue 4): clicks in, webhooks out to a local receiver (examples/sink.rs).
#
#  A. throughput: wrk drives clicks for $CLICKS_FOR; then everything is settled and delivered.
#     Prints the click rate, the delivered events/s (first POST to last), and the drain time.
#  B. idle latency: single clicks, one at a time; time from click to webhook received (p50, max).
#  C. backlog memory: the subscriber is down while $BACKLOG clicks pour in; peak RSS of clickhook.
#  D. sustained overload: wrk drives clicks for $SUSTAIN with the server at --max-settle-lag
#     $SUSTAIN_LAG; every 5 s prints clicks taken, clicks unjudged, events undelivered, events
#     received. The outbox must stop growing: it peaks near $SUSTAIN_LAG of clicks at full speed,
#     then clicks slow to what clicks, settling and delivery together sustain.
#  PARTS=AB (say) runs only those parts (default ABC; D takes $SUSTAIN and its drain).
#
# Server on cpu $SERVER_CPU; wrk and the sink on cpu $LOAD_CPU.
# STORE=postgres runs it on PostgreSQL ($PG_URL; a schema per part, dropped after).
set -euo pipefail
cd "$(dirname "$0")/.."
CLICKS_FOR=${CLICKS_FOR:-10s}
BACKLOG=${BACKLOG:-1000000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18180}
SINK=${SINK:-19100}
STORE=${STORE:-sqlite}
PARTS=${PARTS:-ABC}
SUSTAIN=${SUSTAIN:-90}
SUSTAIN_LAG=${SUSTAIN_LAG:-10s}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432/test}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin clickhook --example sink
BIN=target/release/clickhook
WORK=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if [ "$STORE" = postgres ]; then
    for part in a b c; do psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS bench_$$_$part CASCADE" >/dev/null 2>&1; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
db() { # part -> the --db of that part
  if [ "$STORE" = postgres ]; then echo "$PG_URL?schema=bench_$$_$1"; else echo "$WORK/$1.db"; fi
}
BASE="http://127.0.0.1:$PORT"
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
stat() { curl -s "http://127.0.0.1:$SINK/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
sql() { # db query
  if [ "$STORE" = postgres ]; then psql "${1%%\?*}" -Atq -c "SET search_path TO ${1##*schema=}" -c "$2"
  else python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$1" "$2"; fi
}
# On PostgreSQL a click answered a moment ago may still be in its group, not yet in `clicks`.
if [ "$STORE" = postgres ]; then GROUPED="(select coalesce(sum(clicks), 0) from click_groups)"; else GROUPED=0; fi
STORED_SQL="select (select count(*) from clicks) + $GROUPED"
UNSETTLED_SQL="select (select count(*) from clicks where not released) + $GROUPED"
serve() { # db extra-args...
  local db=$1; shift
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$BIN" --db "$db" serve --listen "127.0.0.1:$PORT" --public-url "$BASE" \
    --allow-private-targets "$@" >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  wait_up "$BASE/healthz"
}

taskset -c "$LOAD_CPU" target/release/examples/sink "127.0.0.1:$SINK" >/dev/null &
wait_up "http://127.0.0.1:$SINK/stats"

if [[ $PARTS == *A* ]]; then
echo "== A. throughput ($STORE)"
serve "$(db a)"
python3 bench/setup_links.py "$BIN" "$(db a)" "$BASE" 10000 "http://127.0.0.1:$SINK/hook" >"$WORK/paths.txt"
START=$(date +%s.%N)
OUT=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"$CLICKS_FOR" -s bench/clicks.lua "$BASE" -- "$WORK/paths.txt" | grep '^RESULT')
CLICK_END=$(date +%s.%N)
echo "   $OUT"
STORED=$(sql "$(db a)" "$STORED_SQL")
for _ in $(seq 1 1200); do
  HELD=$(sql "$(db a)" "$UNSETTLED_SQL")
  EVENTS=$(sql "$(db a)" "select count(*) from events")
  [ "$HELD" -eq 0 ] && [ "$(stat events)" -ge "$EVENTS" ] && break
  sleep 0.5
done
END=$(date +%s.%N)
python3 - "$START" "$CLICK_END" "$END" "$STORED" "$EVENTS" "$(stat events)" "$(stat requests)" "$(stat first_ms)" "$(stat last_ms)" <<'PY'
import sys
start, click_end, end = map(float, sys.argv[1:4])
stored, made, events, requests, first_ms, last_ms = map(int, sys.argv[4:10])
span = max(last_ms - first_ms, 1) / 1000
print(f"   clicks stored {stored} at {stored / (click_end - start):.0f}/s; {made} became events (human); "
      f"{events} delivered in {requests} POSTs "
      f"({events / max(requests, 1):.1f} per POST)")
print(f"   delivered {events / span:.0f} events/s (first POST to last: {span:.1f} s); "
      f"all delivered {end - click_end:.1f} s after the clicks stopped")
PY
kill -TERM $SERVER; wait $SERVER || true

fi

if [[ $PARTS == *B* ]]; then
echo "== B. idle latency, click to webhook (batch window 1 s, burst hold off)"
serve "$(db b)"
python3 bench/setup_links.py "$BIN" "$(db b)" "$BASE" 100 "http://127.0.0.1:$SINK/hook" >"$WORK/paths-b.txt"
LAT=()
for i in $(seq 1 15); do
  BEFORE=$(stat events)
  T0=$(python3 -c 'import time; print(int(time.time()*1000))')
  curl -s -o /dev/null -A "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15" "$BASE$(sed -n "${i}p" "$WORK/paths-b.txt")"
  for _ in $(seq 1 400); do [ "$(stat events)" -gt "$BEFORE" ] && break; sleep 0.005; done
  LAT+=($(( $(stat last_ms) - T0 )))
  sleep 0.3
done
python3 -c "import sys; v=sorted(map(int, sys.argv[1:])); print(f'   p50 {v[len(v)//2]} ms, max {v[-1]} ms over {len(v)} clicks')" "${LAT[@]}"
kill -TERM $SERVER; wait $SERVER || true

fi

if [[ $PARTS == *C* ]]; then
echo "== C. backlog: subscriber down while $BACKLOG clicks arrive"
serve "$(db c)"
python3 bench/setup_links.py "$BIN" "$(db c)" "$BASE" 10000 "http://127.0.0.1:9/down" >"$WORK/paths-c.txt"
N=0
while [ "$N" -lt "$BACKLOG" ]; do
  taskset -c "$LOAD_CPU" wrk -t1 -c64 -d5s -s bench/clicks.lua "$BASE" -- "$WORK/paths-c.txt" >/dev/null
  N=$(sql "$(db c)" "$STORED_SQL")
  echo "   $N clicks, RSS $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$SERVER/status)"
done
for _ in $(seq 1 600); do
  P=$(sql "$(db c)" "$UNSETTLED_SQL")
  [ "$P" -eq 0 ] && break
  sleep 1
done
sleep 3
EV=$(sql "$(db c)" "select count(*) from events")
DL=$(sql "$(db c)" "select count(*) from deliveries")
echo "   backlog: $EV events in $DL undelivered batches; peak RSS $(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$SERVER/status), now $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$SERVER/status)"
kill -TERM $SERVER; wait $SERVER || true
fi

if [[ $PARTS == *D* ]]; then
echo "== D. sustained overload: clicks for ${SUSTAIN}s, --max-settle-lag $SUSTAIN_LAG ($STORE)"
serve "$(db d)" --max-settle-lag "$SUSTAIN_LAG"
python3 bench/setup_links.py "$BIN" "$(db d)" "$BASE" 10000 "http://127.0.0.1:$SINK/hook" >"$WORK/paths-d.txt"
BEFORE=$(stat events)
sample() { # -> "clicks unjudged undelivered received"
  curl -s --max-time 5 "$BASE/metrics" | awk -v r="$(( $(stat events) - BEFORE ))" '
    /^clickhook_clicks_recorded_total/ {c=$2} /^clickhook_outbox_pending_clicks/ {p=$2}
    /^clickhook_delivery_backlog_events/ {b+=$2} END {printf "%d %d %d %d\n", c, p, b, r}'
}
taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${SUSTAIN}s" -s bench/clicks.lua "$BASE" -- "$WORK/paths-d.txt" >"$WORK/wrk-d.out" &
WRK=$!
T0=$(date +%s.%N)
: >"$WORK/samples"
while kill -0 $WRK 2>/dev/null; do
  sleep 5
  echo "$(python3 -c "import time; print(f'{time.time() - $T0:.0f}')") $(sample)" | tee -a "$WORK/samples" |
    awk '{printf "   t=%3ss  clicks %8d  unjudged %8d  undelivered %7d  received %8d\n", $1, $2, $3, $4, $5}'
done
LOAD_END=$(date +%s.%N)
for _ in $(seq 1 1200); do
  read -r C P B R <<<"$(sample)"
  [ "$P" -eq 0 ] && [ "$B" -eq 0 ] && [ "$R" -ge "$(sql "$(db d)" "select count(*) from events")" ] && break
  sleep 0.5
done
python3 - "$WORK/samples" "$(date +%s.%N)" "$LOAD_END" "$C" "$R" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
end, load_end, clicks, received = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
peak = max(r[2] + r[3] for r in rows)
half = len(rows) // 2
first, second = max(r[2] + r[3] for r in rows[:half]), max(r[2] + r[3] for r in rows[half:])
t1 = rows[-1][0]
print(f"   outbox (unjudged + undelivered) peak {peak:.0f}; first half {first:.0f}, second half {second:.0f}"
      f" -> {'bounded' if second <= first * 1.1 else 'STILL GROWING'}")
print(f"   {clicks} clicks ({clicks / t1:.0f}/s over the load), {received} events received"
      f" ({rows[-1][4] / t1:.0f}/s during the load); all delivered {end - load_end:.1f} s after the clicks stopped")
PY
kill -TERM $SERVER; wait $SERVER || true
fi
