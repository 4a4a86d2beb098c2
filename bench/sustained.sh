#!/usr/bin/env bash
# The whole pipeline's steady state (issue 21): sustained clicks in, webhooks out, against bare302.
#
# clickhook serves with --max-settle-lag $LAG and a subscription to examples/sink.rs (the account's
# click filter holds nothing back; wrk sends a browser user agent, so every click makes a webhook).
# LAG is 1 s by default: a pipeline whose webhooks arrive within 5 s (p99) must not let settling
# fall further behind than that, and with 10 s it never settled into a steady state (the
# outbox swung between the bound and catching up; bench/RESULTS.md, issue 21).
# Each of $ROUNDS rounds runs bare302 for $BARE_FOR, then drives clickhook for $WARM + $STEADY
# seconds: over the last $STEADY seconds (the steady state, after the outbox has filled to the
# lag) it counts clicks answered and events delivered per second, and the sink measures how long
# after its click each webhook arrived (p99, whole-second timestamps: up to a second long). After
# each round everything is drained and checked: every answered click stored, every one delivered.
# Prints each round, the medians and their ratios to bare302's median. Server on cpu $SERVER_CPU
# (bare302 too), wrk and the sink on cpu $LOAD_CPU.
#
#   bench/sustained.sh                      # 2 rounds: 15 s of bare302, 20 + 45 s of clickhook
#   ROUNDS=3 STEADY=60 bench/sustained.sh
#   LAG=10s bench/sustained.sh              # webhooks may fall 10 s behind before clicks slow down
#   BIN=/elsewhere/target/release/clickhook bench/sustained.sh
#   STORE=postgres bench/sustained.sh       # on PostgreSQL ($PG_URL, a schema of its own)
#   SERVE_LOG=/tmp/s.log RUST_LOG=warn,clickhook::click::settle=debug bench/sustained.sh
#                                           # keeps the server's log: each settling round's timings
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
BARE_FOR=${BARE_FOR:-15}
WARM=${WARM:-20}
STEADY=${STEADY:-45}
LAG=${LAG:-1s}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18480}
SINK=${SINK:-19180}
STORE=${STORE:-sqlite}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432/test}
BARE_PORT=$((PORT + 100))

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --example sink --example bare302
[ -n "${BIN:-}" ] || { cargo build --release --quiet --bin clickhook; BIN=target/release/clickhook; }
WORK=$(mktemp -d)
SCHEMA=bench_sustained_$$
if [ "$STORE" = postgres ]; then DB="$PG_URL?schema=$SCHEMA"; else DB="$WORK/bench.db"; fi
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ "$STORE" = postgres ] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
BASE="http://127.0.0.1:$PORT"
count() {
  if [ "$STORE" = postgres ]; then psql "$PG_URL" -Atq -c "SET search_path TO $SCHEMA" -c "$1"
  else python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$DB" "$1"; fi
}
if [ "$STORE" = postgres ]; then GROUPED="(select coalesce(sum(clicks), 0) from click_groups)"; else GROUPED=0; fi
sink() { curl -s "http://127.0.0.1:$SINK/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
recorded() { curl -s --max-time 5 "$BASE/metrics" | awk '/^clickhook_clicks_recorded_total/ {print $2}'; }
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

taskset -c "$LOAD_CPU" target/release/examples/sink "127.0.0.1:$SINK" >/dev/null 2>&1 &
taskset -c "$SERVER_CPU" target/release/examples/bare302 "127.0.0.1:$BARE_PORT" >/dev/null 2>&1 &
RUST_LOG=${RUST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --db "$DB" serve --listen "127.0.0.1:$PORT" \
  --public-url "$BASE" --max-settle-lag "$LAG" --allow-private-targets >"${SERVE_LOG:-$WORK/serve.log}" 2>&1 &
SERVER=$!
wait_up "$BASE/healthz"; wait_up "http://127.0.0.1:$SINK/stats"; wait_up "http://127.0.0.1:$BARE_PORT/"
python3 bench/setup_links.py "$BIN" "$DB" "$BASE" 10000 "http://127.0.0.1:$SINK/hook" >"$WORK/paths.txt"
drive() { # url seconds -> wrk's RESULT line
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${2}s" -s bench/clicks.lua "$1" -- "$WORK/paths.txt" | grep '^RESULT'
}
drained() { # waits until every click is released and every event delivered (up to 5 minutes)
  for _ in $(seq 1 600); do
    local out; out=$(count "select (select count(*) from clicks where not released) + $GROUPED")
    [ "$out" = 0 ] && [ "$(sink events)" -ge "$(count "select count(*) from events")" ] && return
    sleep 0.5
  done
  echo "   (not drained after 5 minutes)"
}
echo "== sustained pipeline ($STORE, --max-settle-lag $LAG): $ROUNDS rounds of bare302 ${BARE_FOR}s, clickhook ${WARM}+${STEADY}s"
ANSWERED=$(sed -n 's/.*n302=\([0-9]*\).*/\1/p' <<<"$(drive "$BASE" 2)") # warm-up: the link cache
drained
: >"$WORK/rounds"
for round in $(seq 1 "$ROUNDS"); do
  BARE=$(drive "http://127.0.0.1:$BARE_PORT" "$BARE_FOR")
  C0=$(recorded); E0=$(sink events)
  drive "$BASE" $((WARM + STEADY)) >"$WORK/wrk.out" &
  WRK=$!
  sleep "$WARM"
  C1=$(recorded); E1=$(sink events); T1=$(date +%s.%N)
  curl -s -X POST "http://127.0.0.1:$SINK/mark" >/dev/null
  sleep "$STEADY"
  C2=$(recorded); E2=$(sink events); T2=$(date +%s.%N); P99=$(sink latency_p99_ms); P50=$(sink latency_p50_ms)
  wait $WRK
  N302=$(sed -n 's/.*n302=\([0-9]*\).*/\1/p' "$WORK/wrk.out")
  ANSWERED=$((ANSWERED + N302))
  drained
  python3 - "$BARE" "$C1" "$C2" "$E1" "$E2" "$T1" "$T2" "$P50" "$P99" "$round" <<'PY' | tee -a "$WORK/rounds"
import sys
bare = float(sys.argv[1].split("rps=")[1].split()[0])
c1, c2, e1, e2 = (float(x) for x in sys.argv[2:6])
t = float(sys.argv[7]) - float(sys.argv[6])
clicks, events = (c2 - c1) / t, (e2 - e1) / t
print(f"   round {sys.argv[10]}: bare302 {bare:.0f} req/s; steady {t:.0f} s: clicks {clicks:.0f}/s ({clicks / bare:.1%}),"
      f" events delivered {events:.0f}/s ({events / bare:.1%}), webhook latency p50 {sys.argv[8]} ms p99 {sys.argv[9]} ms"
      f" ROUND bare={bare} clicks={clicks} events={events} p99={sys.argv[9]}")
PY
done
kill -TERM "$SERVER"; wait "$SERVER" || true
STORED=$(count "select (select count(*) from clicks) + $GROUPED")
EVENTS=$(count "select count(*) from events")
HUMAN=$(count "select count(*) from clicks where verdict = 'human'")
RECEIVED=$(sink events)
python3 - "$WORK/rounds" "$STORED" "$ANSWERED" "$EVENTS" "$HUMAN" "$RECEIVED" "$CONNS" "$ROUNDS" <<'PY'
import statistics, sys
rounds = [dict(kv.split("=") for kv in l.split("ROUND ")[1].split()) for l in open(sys.argv[1]) if "ROUND " in l]
stored, answered, events, human, received, conns, n = (int(x) for x in sys.argv[2:9])
med = lambda k: statistics.median(float(r[k]) for r in rounds)
bare, clicks, ev = med("bare"), med("clicks"), med("events")
print()
print(f"medians: bare302 {bare:.0f} req/s; steady clicks {clicks:.0f}/s = {clicks / bare:.1%} of bare302,"
      f" events delivered {ev:.0f}/s = {ev / bare:.1%}; webhook latency p99 {max(float(r['p99']) for r in rounds):.0f} ms (worst round)")
# wrk drops up to one request per connection when it stops; its click may be stored all the same.
ok_stored = answered <= stored <= answered + (n + 2) * conns
print(f"clicks: {stored} stored for {answered} answered in the measured runs and warm-ups -> {'OK' if ok_stored else 'MISMATCH'}")
# A batch may arrive twice (delivery is at least once): received may exceed events, never fall short.
ok_hooks = human == events <= received
print(f"webhooks: {human} human clicks, {events} events, {received} received -> {'OK' if ok_hooks else 'MISMATCH'}")
sys.exit(0 if ok_stored and ok_hooks else 1)
PY
