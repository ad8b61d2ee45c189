"""A worker process for test_end_to_end: `crash` dies mid-run after checkpointing,
`resume` completes one job and exits. Prints one JSON line per job on stdout.

usage: e2e_worker.py URL TOKEN QUEUE crash|resume
"""

import json
import os
import sys
import time

import unstuck

url, token, queue, mode = sys.argv[1:5]
client = unstuck.Client(url, token=token)


def say(**what):
    print(json.dumps(what), flush=True)


def crash(job):
    say(event="started", attempt=job.attempt, checkpoint=job.checkpoint, pid=os.getpid())
    job.set_progress("step 3/10")
    job.set_checkpoint({"step": 3})
    # Wait until the server holds the checkpoint, then a few more heartbeats (1/3 s apart).
    deadline = time.monotonic() + 10
    while client.get(queue, job.id)["checkpoint"] != {"step": 3}:
        if time.monotonic() > deadline:
            say(event="checkpoint never arrived")
            os._exit(3)
        time.sleep(0.05)
    time.sleep(1.0)
    say(event="crashing", attempt=job.attempt)
    os._exit(1)  # no complete, no fail, no deregistration: a dead process


def resume(job):
    say(event="started", attempt=job.attempt, checkpoint=job.checkpoint, pid=os.getpid())
    worker.stop()  # one job, then drain and exit
    start = (job.checkpoint or {}).get("step", 0)
    for step in range(start, 10):
        job.set_progress(f"step {step + 1}/10")
    return {"resumed_from": start}


worker = unstuck.Worker(client, queue, crash if mode == "crash" else resume)
say(event="stats", **worker.run())
