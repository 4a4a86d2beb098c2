#!/usr/bin/env python3
"""What each row write of the pipeline costs on SQLite (issue 21), statement by statement.

usage: [PASS_EVERY=N] statement_costs.py DB [CLICKS] [ROUND]

DB is a store made by `clickhook serve` and bench/setup_links.py (an account, a campaign, sent
emails with links), copied so that nothing else writes it. The script replays, for CLICKS
clicks on those links, the writes the server makes per click, with the server's statements and
pragmas: the click insert (group commit), judging (verdict, burst history, frontier), releasing
(released flag, event, the statistics' rollups) and the delivery of events in batches of 100. It
runs them a ROUND of clicks per transaction, each phase in its own transaction as the server
does, and prints the time spent in each statement per click and its share. The statistics'
rollups are written in each release's transaction, or, with PASS_EVERY=N, in a pass of their own
every N rounds (as the server counts them behind the release on SQLite: a pass a second).

It uses Python's sqlite3, not the server's build of SQLite: the per-statement call overhead of
Python (about 1 µs) is in every line, so read the shares and differences, not absolute costs.
"""
import json
import os
import random
import sqlite3
import sys
import time
from collections import defaultdict

db = sys.argv[1]
clicks = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
round_ = int(sys.argv[3]) if len(sys.argv) > 3 else 256
pass_every = int(os.environ.get("PASS_EVERY", "0"))

conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.executescript("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768;")
links = conn.execute(
    "SELECT l.email_id, l.link_no, l.url, e.account_id, e.campaign_id, e.step, e.prospect_id "
    "FROM links l JOIN emails e ON e.id = l.email_id WHERE l.honeypot = 0").fetchall()
if not links:
    sys.exit("no links in the store: make it with bench/setup_links.py")
payload = json.dumps({"example": "x" * 900})  # a link_clicked element is about 1 KB
spent = defaultdict(float)


def run(name, sql, args):
    t = time.perf_counter_ns()
    conn.execute(sql, args)
    spent[name] += time.perf_counter_ns() - t


def tx(name):
    class T:
        def __enter__(self):
            run(f"{name}: begin", "BEGIN", ())

        def __exit__(self, *a):
            run(f"{name}: commit", "COMMIT", ())
    return T()


QUARTER, DAY = 900_000, 86_400_000
links_roll, series, clickers, campaigns = defaultdict(int), defaultdict(int), set(), set()
rounds = 0
pass_from = 0


def add_rollups(phase):
    """Writes what was released since the last call, one row change per key."""
    run(f"{phase}: campaigns exist", "SELECT id FROM campaigns WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(campaigns)),))
    for k, h in series.items():
        run(f"{phase}: stats_series", "INSERT INTO stats_series (campaign_id, span, bucket, human, bot) "
            "VALUES (?, ?, ?, ?, 0) ON CONFLICT (campaign_id, span, bucket) DO UPDATE SET "
            "human = stats_series.human + excluded.human, bot = stats_series.bot + excluded.bot", (*k, h))
    for k, h in links_roll.items():
        run(f"{phase}: stats_links", "INSERT INTO stats_links (campaign_id, span, bucket, step, url, human, bot) "
            "VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (campaign_id, span, bucket, step, url) DO UPDATE SET "
            "human = stats_links.human + excluded.human, bot = stats_links.bot + excluded.bot", (*k, h))
    for span, campaign_id, bucket, step, prospect_id in clickers:
        table = "stats_clickers_quarter" if span == 0 else "stats_clickers_day"
        run(f"{phase}: {table}", f"INSERT INTO {table} (campaign_id, bucket, step, prospect_id) "
            "SELECT ?, ?, ?, id FROM prospects WHERE id = ? ON CONFLICT DO NOTHING",
            (campaign_id, bucket, step, prospect_id))
    for d in (links_roll, series, clickers, campaigns):
        d.clear()

now = int(time.time() * 1000)
ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15"
done = 0
event_cursor = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
while done < clicks:
    n = min(round_, clicks - done)
    picked = [random.choice(links) for _ in range(n)]
    at0 = now + done  # a click per ms
    with tx("click"):
        ids = []
        for i, (email_id, link_no, *_rest) in enumerate(picked):
            run("click: insert click", "INSERT INTO clicks (account_id, email_id, link_no, at, head, ip, user_agent) "
                "VALUES (?, ?, ?, ?, 0, '203.0.113.9', ?)", (_rest[1], email_id, link_no, at0 + i, ua))
            ids.append(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
    with tx("judge"):
        for i, click_id in enumerate(ids):
            email_id, link_no = picked[i][0], picked[i][1]
            run("judge: set verdict", "UPDATE clicks SET verdict = 'human', reasons = '[\"no_bot_signal\"]' "
                "WHERE id = ? AND verdict IS NULL", (click_id,))
            run("judge: burst history", "INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) "
                "VALUES (?, ?, ?, ?, 0)", (click_id, email_id, at0 + i, link_no))
        run("judge: frontier", "UPDATE settle_frontier SET next_unjudged = coalesce("
            "(SELECT min(id) FROM clicks WHERE id >= next_unjudged AND verdict IS NULL), "
            "(SELECT coalesce(max(id), 0) + 1 FROM clicks))", ())
    with tx("release"):
        for i, click_id in enumerate(ids):
            email_id, link_no, url, account_id, campaign_id, step, prospect_id = picked[i]
            at = at0 + i
            run("release: set released", "UPDATE clicks SET released = 1 WHERE id = ? AND released = 0", (click_id,))
            run("release: insert event", "INSERT INTO events (account_id, click_id, created_at, payload, occurred_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (click_id) DO NOTHING", (account_id, click_id, now, payload, at))
            for span, size in ((0, QUARTER), (1, DAY)):
                links_roll[(campaign_id, span, at - at % size, step, url)] += 1
                clickers.add((span, campaign_id, at - at % size, step, prospect_id))
            for span, size in ((0, QUARTER), (1, DAY), (2, 3_600_000)):
                series[(campaign_id, span, at - at % size)] += 1
        campaigns.update(p[4] for p in picked)
        if not pass_every:
            add_rollups("release")
    rounds += 1
    if pass_every and rounds % pass_every == 0:
        # The pass reads back what it counts (on a reader in the server, so outside the transaction).
        t = time.perf_counter_ns()
        conn.execute("SELECT c.id, e.account_id, e.campaign_id, e.step, e.prospect_id, coalesce(l.url, ''), c.at, "
                     "c.verdict, c.reasons FROM clicks c JOIN emails e ON e.id = c.email_id LEFT JOIN links l "
                     "ON l.email_id = c.email_id AND l.link_no = c.link_no WHERE c.id >= ? AND c.id <= ? "
                     "AND c.released = 1 ORDER BY c.id", (pass_from, ids[-1])).fetchall()
        spent["stats pass: read released"] += time.perf_counter_ns() - t
        pass_from = ids[-1] + 1
        with tx("stats pass"):
            add_rollups("stats pass")
    # Delivery: a batch of 100 events read, its row written, then marked delivered.
    while True:
        last = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        if last - event_cursor < 100:
            break
        t = time.perf_counter_ns()
        body = conn.execute("SELECT payload FROM events WHERE id > ? ORDER BY id LIMIT 100", (event_cursor,)).fetchall()
        spent["deliver: read events"] += time.perf_counter_ns() - t
        with tx("deliver"):
            run("deliver: batch row", "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, "
                "first_event_id, last_event_id, event_count, state, next_attempt_at, created_at, oldest_event_at) "
                "VALUES (?, 1, 1, 'http://127.0.0.1/', ?, ?, 100, 'pending', ?, ?, ?)",
                (f"msg_{event_cursor}", event_cursor + 1, event_cursor + 100, now, now, now))
            did = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        with tx("deliver"):
            run("deliver: lease", "UPDATE deliveries SET lease_until = ? WHERE id = ?", (now + 40_000, did))
        with tx("deliver"):
            run("deliver: attempt row", "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, "
                "latency_ms, response) VALUES (?, ?, 200, NULL, 1, '')", (did, now))
            run("deliver: delivered", "UPDATE deliveries SET state = 'delivered', tries = tries, "
                "lease_until = NULL, delivered_at = ? WHERE id = ?", (now, did))
        event_cursor += 100
    done += n

total = sum(spent.values())
print(f"{clicks} clicks, {round_} per transaction: {total / clicks / 1000:.1f} µs per click in all")
for name, ns in sorted(spent.items(), key=lambda kv: -kv[1]):
    print(f"  {name:<42} {ns / clicks / 1000:6.2f} µs/click  {ns / total:6.1%}")
