#!/usr/bin/env python3
"""Creates an account, a campaign and sent emails holding N tracked links; prints their paths.

usage: setup_links.py CLICKHOOK_BIN DB BASE_URL N [SUBSCRIBE_URL]
With SUBSCRIBE_URL, the account's click filter holds no click back (burst 0, no minimum delay)
and the URL is subscribed to link_clicked.
"""
import json
import subprocess
import sys
import urllib.request

binary, db, base, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
subscribe = sys.argv[5] if len(sys.argv) > 5 else None
acct = json.loads(subprocess.check_output([binary, "--db", db, "account", "create", "--name", "Bench",
                                           "--timezone", "UTC", "--json"]))
key = acct["api_key"]


def call(method, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"x-api-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


if subscribe:
    call("PATCH", "/rest/v2/account", {"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}})
    call("POST", "/rest/v1/webhooks/subscribe", {"target_url": subscribe, "event": "link_clicked"})
campaign = call("POST", "/rest/v2/campaigns", {"name": "Bench", "status": "RUNNING", "mailboxes": ["s@example.com"],
                                               "steps": [{"type": "EMAIL", "track_links": True}]})["id"]
per_email = 100
prospects = [{"email": f"p{i}@example.com"} for i in range((n + per_email - 1) // per_email)]
call("POST", "/rest/v1/add_prospects_campaign", {"campaign": {"campaign_id": campaign}, "prospects": prospects})
paths = []
for i, p in enumerate(prospects):
    k = min(per_email, n - len(paths))
    html = "".join(f'<a href="https://example.com/landing/{i}/{j}">link {j}</a>' for j in range(k))
    sent = call("POST", f"/rest/v2/campaigns/{campaign}/emails",
                {"prospect_email": p["email"], "step": 1, "html": html, "sent_at": "2020-01-01T00:00:00Z"})
    paths.extend(link["tracked_url"][len(base):] for link in sent["links"])
print("\n".join(paths))
