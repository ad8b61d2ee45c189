"""A worker process for test_resources: `hold` takes a unit of a resource inside
`with job.lease(...)` and waits there until killed; `finish` takes it and completes.
Prints one JSON line per step on stdout.

usage: e2e_lease_worker.py URL TOKEN QUEUE RESOURCE hold|finish
"""

import json
import os
import sys
import time

import unstuck

url, token, queue, resource, mode = sys.argv[1:6]
client = unstuck.Client(url, token=token)


def say(**what):
    print(json.dumps(what), flush=True)


def hold(job):
    with job.lease(resource, wait_ms=5000):
        say(event="holding", attempt=job.attempt, pid=os.getpid())
        while True:  # until SIGKILL: no release, no complete, no deregistration
            time.sleep(0.1)


def finish(job):
    with job.lease(resource, wait_ms=10000):
        say(event="holding", attempt=job.attempt)
    worker.stop()
    return {"attempt": job.attempt}


worker = unstuck.Worker(client, queue, hold if mode == "hold" else finish,
                        heartbeat_interval=0.2)
worker.run()
say(event="stopped")
