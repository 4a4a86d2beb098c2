#!/usr/bin/env python3
"""Follows every tracked link once on each node, so that every node's link cache holds them all.

usage: warm_links.py PATHS_FILE BASE_URL...
Each node gets its own few keep-alive connections, all nodes at once; 302s are counted, and any
other answer is an error. Prints how many links each node followed.
"""
import http.client
import sys
import threading
import urllib.parse

CONNS_PER_NODE = 4
paths = [line.strip() for line in open(sys.argv[1]) if line.strip()]
bases = sys.argv[2:]
followed = {base: 0 for base in bases}
errors = []
lock = threading.Lock()


def walk(base, part):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    n = 0
    for path in part:
        conn.request("GET", path, headers={"User-Agent": "clickhook-bench-warmup"})
        res = conn.getresponse()
        res.read()
        if res.status != 302:
            with lock:
                errors.append(f"{base}{path}: {res.status}")
            return
        n += 1
    with lock:
        followed[base] += n


threads = [threading.Thread(target=walk, args=(base, paths[i::CONNS_PER_NODE]))
           for base in bases for i in range(CONNS_PER_NODE)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit(f"warm-up failed: {errors[0]}")
print(" ".join(f"{base}={n}" for base, n in followed.items()))
