"""A worker process for test_awaiting: `await` writes a plan, asks for approval (raises
AwaitResume) and exits; `continue` picks the execution up again, reads the approval from
`job.resume_input` and the plan from its checkpoint, and finishes. Prints one JSON line per
event on stdout.

usage: e2e_await_worker.py URL TOKEN QUEUE await|continue
"""

import json
import os
import sys

import unstuck

url, token, queue, mode = sys.argv[1:5]
client = unstuck.Client(url, token=token)


def say(**what):
    print(json.dumps(what), flush=True)


def handler(job):
    say(event="started", attempt=job.attempt, checkpoint=job.checkpoint,
        resume_input=job.resume_input, pid=os.getpid())
    worker.stop()  # one job, then drain and exit
    if mode == "await":
        raise unstuck.AwaitResume("approval of the plan", wait_deadline_ms="1h",
                                  checkpoint={"step": "planned", "plan": ["a", "b"]})
    if not (job.resume_input or {}).get("approved"):
        raise unstuck.Fatal("the plan was not approved")
    return {"done": (job.checkpoint or {}).get("plan"), "approved": True}


def on_await(job, reply):
    say(event="awaiting", resume_token=reply["resume_token"],
        wait_deadline_at=reply["wait_deadline_at"])


worker = unstuck.Worker(client, queue, handler, on_await=on_await)
say(event="stats", **worker.run())
