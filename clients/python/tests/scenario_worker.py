"""A worker process for test_scenario (the end-to-end scenario every client runs). Prints
one JSON line per thing that happens.

  hang:   first attempts set a checkpoint, say so once the server holds it, then never
          end (the test kills this process with SIGKILL);
  normal: every job completes after a short while with the checkpoint it was given; a
          payload {"hold": true} waits for its stop flag (job.cancelled; the test cancels it).

usage: scenario_worker.py URL TOKEN QUEUE hang|normal
"""

import json
import os
import sys
import time

import unstuck

url, token, queue, mode = sys.argv[1:5]
client = unstuck.Client(url, token=token)


def say(**what):
    # One write per line: handler threads print at once, and print() writes the text and
    # its newline separately.
    os.write(1, (json.dumps({"pid": os.getpid(), **what}) + "\n").encode())


def handler(job):
    say(event="started", id=job.id, attempt=job.attempt, checkpoint=job.checkpoint)
    if isinstance(job.payload, dict) and job.payload.get("hold"):
        if job.cancelled.wait(60):
            say(event="aborted", id=job.id, why="cancel" if job.cancel_requested else "lost")
            job.raise_if_cancelled()
        return "never cancelled"
    if mode == "hang":
        checkpoint = {"step": 1, "pid": os.getpid()}
        job.set_checkpoint(checkpoint)
        while client.get(queue, job.id)["checkpoint"] != checkpoint:  # the next beat carries it
            time.sleep(0.05)
        say(event="checkpointed", id=job.id, attempt=job.attempt)
        time.sleep(3600)  # mid-job when the test kills the process
    if job.cancelled.wait(0.15):
        job.raise_if_cancelled()
    return {"id": job.id, "attempt": job.attempt, "resumedFrom": job.checkpoint}


worker = unstuck.Worker(client, queue, handler, concurrency=3, heartbeat_interval=0.5)
stats = worker.run()
say(event="stats", **stats)
