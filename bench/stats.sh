#!/usr/bin/env bash
# /rest/v2/stats on a big store: $CLICKS released clicks (default 10 million) over the past
# year, in $CAMPAIGNS campaigns of 3 steps and 3 links per email. The data goes straight into
# SQLite (bench/stats_data.py); the rollups are then built by clickhook's own upgrade step
# (the statistics' migration counts every released click), which the run times too.
# It then asks, $REQUESTS times each, one after another:
#   campaign/day   one campaign, a year by day (the target: p99 <= 50 ms)
#   campaign/hour  one campaign, a year by hour
#   account/day    every campaign together, a year by day
# and prints p50, p99 and the worst in ms, measured by the client (keep-alive).
#
#   CAMPAIGNS=100 PROSPECTS=5000 bench/stats.sh   # 100,000 clicks a campaign (RESULTS.md)
#   CLICKS=1000000 CAMPAIGNS=5 REQUESTS=100 bench/stats.sh
#   KEEP=1 bench/stats.sh                # keeps the store; DATA=that/stats.db reuses its clicks
#                                        # (the rollups are rebuilt by the build under test)
# Server on cpu $SERVER_CPU, the client on $LOAD_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CLICKS=${CLICKS:-10000000}
CAMPAIGNS=${CAMPAIGNS:-20}
REQUESTS=${REQUESTS:-300}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18290}

cargo build --release --quiet --bin clickhook
BIN=target/release/clickhook
WORK=$(mktemp -d)
DB=$WORK/stats.db
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
BASE=http://127.0.0.1:$PORT
serve() {
  taskset -c "$SERVER_CPU" "$BIN" --db "$DB" serve --listen "127.0.0.1:$PORT" --public-url "$BASE" \
    --retain-clicks 0 --retain-deliveries 0 2>"$WORK/serve.log" &
  for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$WORK/serve.log"; exit 1
}

if [ -n "${DATA:-}" ]; then
  cp "$DATA" "$DB"
  read -r ACCOUNT KEY < <("$BIN" --db "$DB" account key 1 --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(1, d["api_key"])')
  mapfile -t IDS < <(python3 -c 'import sqlite3,sys; [print(r[0]) for r in sqlite3.connect(sys.argv[1]).execute("SELECT id FROM campaigns ORDER BY id")]' "$DB")
  CLICKS=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM clicks").fetchone()[0])' "$DB")
else
read -r ACCOUNT KEY < <("$BIN" --db "$DB" account create --name Bench --timezone Europe/Berlin --json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["id"], d["api_key"])')
serve
IDS=()
for i in $(seq "$CAMPAIGNS"); do
  IDS+=("$(curl -sf -H "x-api-key: $KEY" "$BASE/rest/v2/campaigns" -d "{\"name\": \"c$i\", \"status\": \"RUNNING\",
    \"mailboxes\": [\"s@bench.example\"], \"steps\": [{\"track_links\": true}, {\"track_links\": true},
    {\"track_links\": true}]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
kill %1; wait %1 2>/dev/null || true

echo "== $CLICKS clicks in $CAMPAIGNS campaigns"
start=$(date +%s)
python3 bench/stats_data.py "$DB" "$ACCOUNT" "$CLICKS" "${IDS[@]}"
echo "data written in $(( $(date +%s) - start )) s"
fi
# The store as a version without statistics left it; the upgrade counts what is there.
python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for t in ("stats_links", "stats_series", "stats_reasons", "stats_clickers_day", "stats_clickers_quarter", "stats_emails"):
    c.execute(f"DROP TABLE {t}")
# What later migrations made goes too: they run again.
for t in ("app_sessions", "login_links", "id_floor", "stats_cursor"):
    c.execute(f"DROP TABLE IF EXISTS {t}")
c.execute("DROP TRIGGER IF EXISTS emails_id_floor")
# The version before statistics.
c.execute("PRAGMA user_version = 7")
c.commit()
PY
start=$(date +%s)
"$BIN" --db "$DB" migrate >/dev/null
echo "rollups built by the upgrade in $(( $(date +%s) - start )) s"
python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for t in ("clicks", "stats_links", "stats_series", "stats_reasons", "stats_clickers_day", "stats_clickers_quarter", "stats_emails"):
    print(f"  {t}: {c.execute(f'SELECT count(*) FROM {t}').fetchone()[0]:,} rows")
PY

serve
taskset -c "$LOAD_CPU" python3 - "$BASE" "$KEY" "$REQUESTS" "$CLICKS" "${IDS[0]}" <<'PY'
import http.client, json, sys, time, urllib.parse
base, key, n, clicks, campaign = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
host = urllib.parse.urlparse(base).netloc
conn = http.client.HTTPConnection(host)
until = int(time.time() * 1000)
since = until - 365 * 24 * 3600 * 1000
def get(path):
    conn.request("GET", path, headers={"x-api-key": key})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body[:300])
    return json.loads(body)
total = get("/rest/v2/stats")["totals"]["clicks"]
assert total == clicks, f"the account's stats count {total} clicks, not {clicks}"
# The whole account reads every campaign's rows: a tenth as many requests.
for name, q, runs in [("campaign/day", f"campaign_id={campaign}&granularity=day", n),
                      ("campaign/hour", f"campaign_id={campaign}&granularity=hour", n),
                      ("account/day", "granularity=day", max(10, n // 10))]:
    path = f"/rest/v2/stats?{q}&since={since}&until={until}"
    for _ in range(3):
        s = get(path)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        get(path)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{name:14} clicks {s['totals']['clicks']:>10,}  series {len(s['series']):>5}  "
          f"p50 {p(0.5):6.1f} ms  p99 {p(0.99):6.1f} ms  max {times[-1]:6.1f} ms")
PY
