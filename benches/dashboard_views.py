#!/usr/bin/env python3
"""What the dashboard's views cost with 100k executions in Redis.

Starts `unstuck serve --throwaway-redis` (release build), fills it with real executions
through the HTTP API (enqueued, claimed and completed, failed, running), then calls every
route a dashboard view makes, 20 times each, and reports the median and p95 latency and
the Redis CPU (INFO commandstats) per call: each stays bounded by the page, never a scan
of the executions.

    cargo build --release && python3 benches/dashboard_views.py [--executions 100000]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import unstuck  # noqa: E402

QUEUES = {"agents": 0.4, "payments": 0.4, "reports": 0.2}


def start(binary):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNSTUCK_", "RUST_"))}
    env["UNSTUCK_SERVER__LISTEN"] = "127.0.0.1:0"
    # No watchdog in the process: the Redis CPU measured is the views' alone.
    env["UNSTUCK_SERVER__WATCHDOG"] = "false"
    proc = subprocess.Popen([binary, "serve", "--throwaway-redis"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = redis = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("serve did not start")
        if m := re.search(r"redis-server at redis://127\.0\.0\.1:(\d+)/", line):
            redis = int(m.group(1))
        if m := re.search(r"listening on (http://[0-9.:]+)", line):
            url = m.group(1)
    return proc, url, redis


def redis_usec(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(m.group(1)) for m in re.finditer(r"usec=(\d+)", out))


def seed(client, total):
    print(f"seeding {total} executions ...", file=sys.stderr)
    started = time.time()
    worker = client.register_worker(list(QUEUES), worker_id="w-bench-1")["worker_id"]
    for queue, share in QUEUES.items():
        n = int(total * share)
        for base in range(0, n, 1000):
            items = [{"payload": {"n": i}, "timings": {"max_attempts": 1}}
                     for i in range(base, min(n, base + 1000))]
            client.enqueue_batch(queue, items)
        # 60 % succeed, 1 % fail, 100 keep running; the rest stays queued.
        done = int(n * 0.6)
        failed = max(1, n // 100)
        handled = 0
        while handled < done + failed:
            claims = client.claim(queue, worker, max=min(1000, done + failed - handled))
            for c in claims:
                if handled < done:
                    client.complete(c["token"], {"ok": True})
                else:
                    client.fail(c["token"], "card declined", retryable=False)
                handled += 1
        for c in client.claim(queue, worker, max=100 // len(QUEUES)):
            client.heartbeat(c["token"], progress="working")
        print(f"  {queue}: {n} ({time.time() - started:.0f}s)", file=sys.stderr)


def views(client):
    first = client.find(limit=50)
    old = first["items"][-1]
    deep = None
    page = {"next_cursor": None}
    for _ in range(20):  # the 20th page of the unfiltered table
        page = client.find(cursor=page["next_cursor"], limit=50)
        deep = page["next_cursor"]
    q = "/v1/executions"
    return [
        ("overview: queues", "/v1/queues"),
        ("overview: watchdog", "/v1/watchdog"),
        ("overview: workers (held slots)", "/v1/workers"),
        ("overview: activity, 30 min", "/v1/watchdog/activity?minutes=30"),
        ("feed: newest 1000 events", "/v1/events/recent?limit=1000"),
        ("executions: first page", f"{q}?limit=50"),
        ("executions: 21st page (cursor)", f"{q}?limit=50&cursor={deep}"),
        ("executions: state=failed", f"{q}?state=failed&limit=50"),
        ("executions: stop_reason=failed", f"{q}?stop_reason=failed&limit=50"),
        ("executions: worker=w-bench-1", f"{q}?worker=w-bench-1&limit=50"),
        ("execution page: get", f"/v1/queues/{old['queue']}/executions/{old['id']}"),
        ("execution page: events", f"/v1/queues/{old['queue']}/executions/{old['id']}/events"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--executions", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    binary = os.environ.get("UNSTUCK_BIN", os.path.join(ROOT, "target", "release", "unstuck"))
    proc, url, port = start(binary)
    try:
        client = unstuck.Client(url, timeout=60)
        seed(client, args.executions)
        keys = subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True,
                              text=True).stdout.strip()
        print(f"\n{args.executions} executions ({keys} keys in Redis); {args.calls} calls each\n")
        print(f"| view | p50 | p95 | Redis CPU per call |")
        print("|---|---:|---:|---:|")
        for name, path in views(client):
            times = []
            before = redis_usec(port)
            for _ in range(args.calls):
                t = time.perf_counter()
                client._json("GET", path)
                times.append((time.perf_counter() - t) * 1000)
            usec = (redis_usec(port) - before) / args.calls
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            print(f"| {name} | {statistics.median(times):.1f} ms | {p95:.1f} ms | {usec:.0f} µs |")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
