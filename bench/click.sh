#!/usr/bin/env bash
# Click benchmark (issue 3): tracked, durable redirects vs a bare 302 server on the same HTTP stack.
#
# Builds release binaries, starts clickhook on a fresh SQLite database and examples/bare302.rs
# beside it, records emails holding $LINKS tracked links, and drives random links with wrk
# ($CONNS keep-alive connections) with every server thread on one core and wrk on the other:
# $ROUNDS rounds, each a run against clickhook, a wait until it has judged every click (so that
# its settler does not steal from the next run), and a run against bare302. This machine varies
# by ±20% from run to run, so it compares medians: prints each round, the median throughputs and
# their ratio, p50/p99 latency, stored clicks vs 302s counted, and clickhook's peak RSS.
#
#   bench/click.sh                     # defaults: 10000 links, 64 connections, 3 rounds of 30 s runs
#   ROUNDS=5 DURATION=15s bench/click.sh
#   BIN=/elsewhere/target/release/clickhook bench/click.sh   # another build of clickhook (not built here)
#   DURATION=10s bench/click.sh
#   STORE=postgres bench/click.sh      # on PostgreSQL ($PG_URL, a schema of its own, dropped after)
#   STORE=postgres NODES=2 bench/click.sh   # two nodes on one database, one wrk per node
#   PRUNE_ROWS=3000000 bench/click.sh  # with that many 200-day-old clicks for retention to prune
#                                      # meanwhile (it prints how many were left after the run)
#   PRUNE_ROWS=3000000 SERVE_ARGS="--retain-clicks 0" bench/click.sh   # the same rows, kept: the control
#   RUST_LOG=debug SERVE_LOG=/tmp/serve bench/click.sh   # keep the server's log, /tmp/serve0.log
#
# PostgreSQL itself is not pinned: it runs wherever the scheduler puts it, on either core.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
LINKS=${LINKS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
PORT=${PORT:-18080}
DURABILITY=${DURABILITY:-process}
STORE=${STORE:-sqlite}
NODES=${NODES:-1}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432/test}
PRUNE_ROWS=${PRUNE_ROWS:-0}
ROUNDS=${ROUNDS:-3}
BARE_PORT=$((PORT + 100))
OLD_AT=$(( $(date +%s) * 1000 - 200 * 86400000 ))

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin clickhook --example bare302
BIN=${BIN:-target/release/clickhook}
BARE=target/release/examples/bare302
WORK=$(mktemp -d)
SCHEMA=bench_$$
if [ "$STORE" = postgres ]; then DB="$PG_URL?schema=$SCHEMA"; else DB="$WORK/bench.db"; fi
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ "$STORE" = postgres ] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
count() { # sql
  if [ "$STORE" = postgres ]; then psql "$PG_URL" -Atq -c "SET search_path TO $SCHEMA" -c "$1"
  else python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$DB" "$1"; fi
}

sql() { # statement
  if [ "$STORE" = postgres ]; then psql "$PG_URL" -q -c "SET search_path TO $SCHEMA" -c "$1" >/dev/null
  else python3 -c "import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()" "$DB" "$1"; fi
}

wait_up() { # [port]
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:${1:-$PORT}/c/x" && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

if [ "$PRUNE_ROWS" -gt 0 ]; then
  # Old clicks, judged and released: `serve` prunes them (--retain-clicks 180) from its start on.
  "$BIN" --db "$DB" migrate >/dev/null
  if [ "$STORE" = postgres ]; then ROWS="generate_series(1, $PRUNE_ROWS)"
  else ROWS="(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $PRUNE_ROWS) SELECT i FROM n)"; fi
  sql "INSERT INTO clicks (account_id, email_id, link_no, at, ip, user_agent, verdict, reasons, released)
       SELECT 1, 1, 1, $OLD_AT, '203.0.113.0', 'Mozilla/5.0', 'human', '[\"no_bot_signal\"]', TRUE FROM $ROWS AS r"
  echo "   $PRUNE_ROWS clicks 200 days old seeded for pruning"
fi
echo "== clickhook ($STORE, $NODES node(s), durability=$DURABILITY, group commit) and bare302, alternately in $ROUNDS rounds of $DURATION; servers on cpu $SERVER_CPU, wrk on cpu $WRK_CPU"
SERVERS=()
for n in $(seq 0 $((NODES - 1))); do
  RUST_LOG=${RUST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --db "$DB" serve --listen "127.0.0.1:$((PORT + n))" \
    --public-url "http://127.0.0.1:$PORT" --durability "$DURABILITY" ${SERVE_ARGS:-} >"${SERVE_LOG:-$WORK/serve}$n.log" 2>&1 &
  SERVERS+=($!)
  [ "$n" -eq 0 ] && wait_up
done
sleep 0.5
python3 bench/setup_links.py "$BIN" "$DB" "http://127.0.0.1:$PORT" "$LINKS" >"$WORK/paths.txt"
echo "   $(wc -l <"$WORK/paths.txt") tracked links"
# One wrk per node, connections split between them; their results are summed.
drive() { # duration extra-wrk-args...
  local d=$1; shift
  local pids=()
  for n in $(seq 0 $((NODES - 1))); do
    taskset -c "$WRK_CPU" wrk -t1 -c"$((CONNS / NODES))" -d"$d" "$@" -s bench/clicks.lua "http://127.0.0.1:$((PORT + n))" \
      -- "$WORK/paths.txt" >"$WORK/wrk$n.out" &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 - "$WORK" "$NODES" <<'PY'
import re, sys
work, nodes = sys.argv[1], int(sys.argv[2])
res = [dict(kv.split("=") for kv in next(l for l in open(f"{work}/wrk{n}.out") if l.startswith("RESULT")).split()[1:])
       for n in range(nodes)]
out = {"rps": sum(float(r["rps"]) for r in res), "n302": sum(int(r["n302"]) for r in res),
       "p50_ms": max(float(r["p50_ms"]) for r in res), "p99_ms": max(float(r["p99_ms"]) for r in res)}
print("RESULT " + " ".join(f"{k}={v}" for k, v in out.items()))
PY
}
taskset -c "$SERVER_CPU" "$BARE" "127.0.0.1:$BARE_PORT" >/dev/null 2>&1 &
BARE_PID=$!
wait_up "$BARE_PORT"
bare() { # duration extra-wrk-args...
  local d=$1; shift
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$d" "$@" -s bench/clicks.lua "http://127.0.0.1:$BARE_PORT" -- "$WORK/paths.txt" \
    | grep '^RESULT'
}
# On PostgreSQL clicks answered a moment ago may still be in their groups, not yet in `clicks`.
if [ "$STORE" = postgres ]; then GROUPED="(select coalesce(sum(clicks), 0) from click_groups)"; else GROUPED=0; fi
settled() { # waits (up to 3 minutes) until every click is judged
  for _ in $(seq 1 360); do
    [ "$(count "select (select count(*) from clicks where verdict is null) + $GROUPED")" = 0 ] && return
    sleep 0.5
  done
  echo "   (clicks still unjudged after 3 minutes)"
}
# Warm-up: fill the link cache. Its 302s are counted too, to compare with the stored clicks.
WARM=$(drive 2s)
bare 2s >/dev/null
[ "$PRUNE_ROWS" -gt 0 ] && echo "   pruning: $(count "select count(*) from clicks where at = $OLD_AT") of $PRUNE_ROWS old clicks left when the run began"
N302=$(field n302 "$WARM")
CH_RUNS=(); BR_RUNS=()
for round in $(seq 1 "$ROUNDS"); do
  CH=$(drive "$DURATION" --latency)
  N302=$((N302 + $(field n302 "$CH")))
  T0=$(date +%s.%N); settled; SETTLE=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$T0" "$(date +%s.%N)")
  BR=$(bare "$DURATION" --latency)
  echo "   round $round: clickhook $CH"
  echo "            bare302   $BR   (judging caught up in ${SETTLE} s before it)"
  CH_RUNS+=("$CH"); BR_RUNS+=("$BR")
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/${SERVERS[0]}/status)
for s in "${SERVERS[@]}"; do kill -TERM "$s"; wait "$s" || true; done
kill $BARE_PID; wait $BARE_PID 2>/dev/null || true
STORED=$(count "select (select count(*) from clicks where at <> $OLD_AT) + $GROUPED")
[ "$PRUNE_ROWS" -gt 0 ] && echo "   pruning: $(count "select count(*) from clicks where at = $OLD_AT") of $PRUNE_ROWS old clicks left after the run"
# The run whose throughput is the median, for each server.
median() { printf '%s\n' "$@" | python3 -c "
import sys
runs = [l.strip() for l in sys.stdin if l.strip()]
rps = lambda r: float(r.split('rps=')[1].split()[0])
print(sorted(runs, key=rps)[len(runs) // 2])"; }
CH=$(median "${CH_RUNS[@]}"); BR=$(median "${BR_RUNS[@]}")

CH_RPS=$(field rps "$CH"); BR_RPS=$(field rps "$BR")
python3 - "$CH_RPS" "$BR_RPS" "$(field p50_ms "$CH")" "$(field p99_ms "$CH")" "$(field p50_ms "$BR")" "$(field p99_ms "$BR")" \
  "$N302" "$STORED" "$RSS" "$CONNS" "$STORE" "$ROUNDS" <<'PY'
import sys
ch, br, cp50, cp99, bp50, bp99, n302, stored, rss, conns, store = sys.argv[1:12]
ch, br, n302, stored, rss, conns = float(ch), float(br), int(n302), int(stored), int(rss), int(conns)
print()
print("medians of the rounds:")
print(f"clickhook  {ch:>9.0f} req/s   p50 {cp50} ms   p99 {cp99} ms")
print(f"bare302    {br:>9.0f} req/s   p50 {bp50} ms   p99 {bp99} ms")
print(f"ratio      {ch / br:>9.1%}   (median over median)")
print(f"peak RSS   {rss / 1024:>9.1f} MB  (target <= 150 MB)")
print(f"clicks       {stored} stored, {n302} answered with 302 (warm-up + every round)")
# When wrk stops it drops up to one request per connection whose click was already being committed:
# those are stored but never counted as answered. Anything else is a lost or phantom click.
extra = stored - n302
runs = int(sys.argv[12])
ok = 0 <= extra <= (runs + 1) * conns
print(f"             {extra} stored but unanswered (wrk stopped mid-request; at most {(runs + 1) * conns} allowed) -> {'OK' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
