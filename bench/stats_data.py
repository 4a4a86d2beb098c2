"""Fills a clickhook SQLite store for bench/stats.sh: prospects, emails with links and
released clicks, straight into the tables (the API would take an hour for 10 million clicks).

    python3 bench/stats_data.py DB ACCOUNT_ID CLICKS CAMPAIGN_ID...

Each campaign gets PROSPECTS prospects, one email per step (3 steps) with 3 links each; the
clicks spread evenly over the year before now, 70% people, 30% scanners with one of a few
reasons. The statistics' rollups are then rebuilt by clickhook's own upgrade step (stats.sh).
"""
import os
import random
import sqlite3
import sys
import time

db, account, clicks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
campaigns = [int(c) for c in sys.argv[4:]]
prospects_per_campaign = int(os.environ.get("PROSPECTS", "2500"))
STEPS, LINKS = 3, 3
now = int(time.time() * 1000)
year = 365 * 24 * 3600 * 1000
rng = random.Random(1)

c = sqlite3.connect(db)
c.execute("PRAGMA synchronous = OFF")
c.execute("PRAGMA journal_mode = WAL")
emails = []  # (email_id, links)
for campaign in campaigns:
    for p in range(prospects_per_campaign):
        address = f"p{campaign}_{p}@bench.example"
        pid = c.execute(
            "INSERT INTO prospects (account_id, email, email_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (account, address, address, now, now),
        ).lastrowid
        c.execute(
            "INSERT INTO enrollments (campaign_id, prospect_id, step, step_type, emails_sent, created_at) "
            "VALUES (?, ?, ?, 'EMAIL', ?, ?)",
            (campaign, pid, STEPS, STEPS, now),
        )
        for step in range(1, STEPS + 1):
            sent_at = now - year + rng.randrange(year // 2)
            eid = c.execute(
                "INSERT INTO emails (account_id, campaign_id, prospect_id, step, mailbox, email_no, sent_at) "
                "VALUES (?, ?, ?, ?, 's@bench.example', ?, ?)",
                (account, campaign, pid, step, step, sent_at),
            ).lastrowid
            c.executemany(
                "INSERT INTO links (email_id, link_no, url) VALUES (?, ?, ?)",
                [(eid, n, f"https://bench.example/s{step}/l{n}") for n in range(1, LINKS + 1)],
            )
            emails.append(eid)
c.commit()

reasons = ['["scanner_user_agent:Mimecast"]', '["burst"]', '["head"]', '["scanner_network:Proofpoint"]']
batch = []
for i in range(clicks):
    at = now - year + (i * year) // clicks
    human = rng.random() < 0.7
    batch.append((account, rng.choice(emails), rng.randrange(1, LINKS + 1), at,
                  "human" if human else "bot", "[]" if human else rng.choice(reasons)))
    if len(batch) == 200_000:
        c.executemany(
            "INSERT INTO clicks (account_id, email_id, link_no, at, user_agent, verdict, reasons, released) "
            "VALUES (?, ?, ?, ?, 'Mozilla/5.0', ?, ?, 1)", batch)
        batch.clear()
if batch:
    c.executemany(
        "INSERT INTO clicks (account_id, email_id, link_no, at, user_agent, verdict, reasons, released) "
        "VALUES (?, ?, ?, ?, 'Mozilla/5.0', ?, ?, 1)", batch)
c.execute("UPDATE settle_frontier SET next_unjudged = (SELECT max(id) + 1 FROM clicks)")
c.commit()
