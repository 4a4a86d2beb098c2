#!/usr/bin/env bash
# Storage over a long run: clicks at a steady rate (browser user agents, each delivered as a
# webhook to examples/sink) with short retention windows, so that the window fills within the
# run. Every $SAMPLE seconds it prints the rows kept and the bytes the store takes. Once the
# window is full, the store must stop growing: pruning keeps up with what comes in.
#
#   bench/storage.sh                        # SQLite: 10 minutes at ~2,000 clicks/s, windows of 2m
#   STORE=postgres bench/storage.sh         # PostgreSQL ($PG_URL, a schema of its own)
#   DURATION=600 WINDOW=2m CONNS=20 PACE_MS=10 SAMPLE=30 bench/storage.sh
#   PACE_MS=0 CONNS=64 bench/storage.sh      # as fast as the server goes: pruning then takes only
#                                           # the CPU the clicks leave (the rate column shows it)
#
# Bytes per click: the store's bytes in use (SQLite: pages not on the free list; PostgreSQL: its
# tables with their indexes and TOAST) over the clicks stored, measured before pruning starts,
# so it counts each click with its event, its share of batches and attempts, and the indexes.
# Server on cpu $SERVER_CPU; wrk and the sink on cpu $LOAD_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-sqlite}
DURATION=${DURATION:-600}
WINDOW=${WINDOW:-2m}
CONNS=${CONNS:-20}
PACE_MS=${PACE_MS:-10}
SAMPLE=${SAMPLE:-30}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18280}
SINK=${SINK:-19280}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432/test}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin clickhook --example sink
BIN=target/release/clickhook
WORK=$(mktemp -d)
SCHEMA=bench_storage_$$
if [ "$STORE" = postgres ]; then DB="$PG_URL?schema=$SCHEMA"; else DB="$WORK/storage.db"; fi
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ "$STORE" = postgres ] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
sql() {
  if [ "$STORE" = postgres ]; then psql "$PG_URL" -Atq -c "SET search_path TO $SCHEMA" -c "$1"
  else python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$DB" "$1"; fi
}
# Bytes the store takes for its data: in use, and in all (free pages, or dead tuples, included).
bytes() {
  if [ "$STORE" = postgres ]; then
    local v
    v=$(sql "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = '$SCHEMA' AND c.relkind = 'r'" | tr -d ' ')
    echo "$v $v"
  else
    python3 -c "
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
size, free, pages = (c.execute(f'PRAGMA {p}').fetchone()[0] for p in ('page_size', 'freelist_count', 'page_count'))
print((pages - free) * size, os.path.getsize(sys.argv[1]))" "$DB"
  fi
}
if [ "$STORE" = postgres ]; then GROUPED="(select coalesce(sum(clicks), 0) from click_groups)"; else GROUPED=0; fi

taskset -c "$LOAD_CPU" target/release/examples/sink "127.0.0.1:$SINK" >/dev/null &
RUST_LOG=${RUST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --db "$DB" serve --listen "127.0.0.1:$PORT" \
  --public-url "http://127.0.0.1:$PORT" --allow-private-targets \
  --retain-clicks "$WINDOW" --retain-deliveries "$WINDOW" >"${SERVE_LOG:-$WORK/serve.log}" 2>&1 &
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
python3 bench/setup_links.py "$BIN" "$DB" "http://127.0.0.1:$PORT" 10000 "http://127.0.0.1:$SINK/hook" >"$WORK/paths.txt"
read -r BASE_USED _ < <(bytes)
echo "== storage, $STORE: ${DURATION}s of clicks at $CONNS connections pacing ${PACE_MS} ms, windows of $WINDOW"
PACE_MS=$PACE_MS taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/clicks.lua \
  "http://127.0.0.1:$PORT" -- "$WORK/paths.txt" >"$WORK/wrk.out" &
WRK=$!
printf "%6s %9s %10s %10s %10s %12s %12s %10s\n" t clicks/s kept events batches used_bytes file_bytes B/click
recorded() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^clickhook_clicks_recorded_total/ {print $2}'; }
started=$(date +%s)
last=$(recorded)
: >"$WORK/samples"
while kill -0 $WRK 2>/dev/null; do
  sleep "$SAMPLE"
  kill -0 $WRK 2>/dev/null || break # the load is over: what follows is not a steady state
  t=$(( $(date +%s) - started ))
  clicks=$(sql "select (select count(*) from clicks) + $GROUPED" | tr -d ' ')
  events=$(sql "select count(*) from events" | tr -d ' ')
  batches=$(sql "select count(*) from deliveries" | tr -d ' ')
  read -r used file < <(bytes)
  per=$(( clicks > 0 ? (used - BASE_USED) / clicks : 0 ))
  now=$(recorded); rate=$(( (now - last) / SAMPLE )); last=$now
  printf "%6s %9s %10s %10s %10s %12s %12s %10s\n" "$t" "$rate" "$clicks" "$events" "$batches" "$used" "$file" "$per"
  echo "$t $clicks $events $batches $used $file" >>"$WORK/samples"
done
grep RESULT "$WORK/wrk.out"
python3 - "$WORK/samples" "$WINDOW" "$BASE_USED" <<'PY'
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1])]
w = sys.argv[2]
window = int(w[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[w[-1]] if w[-1].isalpha() else int(w) * 86400
base = int(sys.argv[3])
before = [r for r in rows if r[0] < window]
if before:
    t, clicks, events, _, used, _ = before[-1]
    print(f"before pruning began (t={t}s): {clicks} clicks, {events} events, {(used - base) / clicks:.0f} bytes per click")
# Full: the window plus a pruning pass and a sample's slack behind it.
full = [r for r in rows if r[0] >= 2 * window]
if len(full) >= 2:
    first, last = full[0], full[-1]
    peak = max(r[5] for r in full)
    per = sorted((r[4] - base) / r[1] for r in full)
    print(f"once full (t>={2 * window}s): file {first[5]} -> {last[5]} bytes ({last[5] / first[5] - 1:+.1%}), "
          f"peak {peak}; clicks kept {first[1]} -> {last[1]}; bytes in use per click kept: median {per[len(per) // 2]:.0f}")
    sys.exit(0 if last[5] <= first[5] * 1.10 else 1)
print("run longer than twice the window to see the store once full")
PY
