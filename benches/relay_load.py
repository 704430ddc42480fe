#!/usr/bin/env python3
"""Sends the peer benchmark's canonical request N times over C keep-alive
connections and checks every answer (used by benches/instructions.sh).

    relay_load.py URL N [C]
"""
import http.client
import sys
import threading
from urllib.parse import urlparse

BODY = (b'{"event":"INVENTORY_UPDATE","updates":[{"item":"widgets","action":"add",'
        b'"quantity":20},{"item":"gadgets","action":"remove","quantity":5}]}')


def worker(url, count, failures):
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    for _ in range(count):
        conn.request("POST", u.path, BODY, {"content-type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            failures.append(resp.status)


def main():
    url, total = sys.argv[1], int(sys.argv[2])
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    failures = []
    share = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(url, n, failures)) for n in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"{len(failures)} of {total} requests failed: {sorted(set(failures))}")


if __name__ == "__main__":
    main()
