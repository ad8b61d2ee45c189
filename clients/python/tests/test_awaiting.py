"""Awaiting end to end: a worker process asks for approval and exits; nothing judges the
execution while it waits; an orchestrator resumes it with {"approved": true}; a new worker
process continues from the checkpoint with that input and succeeds, no retry counted."""

import json
import os
import subprocess
import sys
import time
import unittest

import harness
from harness import TOKENS, unique, wait_for

import unstuck

STACK = None
SCRIPT = os.path.join(harness.HERE, "e2e_await_worker.py")

# Short timings: the execution would be judged stuck and retried within half a second
# were it running, and max_attempts 1 leaves no retry to spend.
SHORT = {"heartbeat_timeout": "200ms", "start_grace": "200ms", "stuck_threshold": 0,
         "backoff_base": 0, "max_attempts": 1}


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


def run_worker(queue, mode, timeout=60):
    env = dict(os.environ, PYTHONPATH=harness.PACKAGE_ROOT)
    args = [sys.executable, SCRIPT, STACK.url, TOKENS["worker"], queue, mode]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


class AwaitingTest(unittest.TestCase):
    def test_an_agent_waits_for_approval_and_continues_after_the_resume(self):
        client = STACK.client("orchestrator")
        self.addCleanup(client.close)
        queue = unique("approval")
        client.enqueue(queue, {"task": "refactor"}, id="agent-1", timings=SHORT)

        code, out, err = run_worker(queue, "await")
        self.assertEqual(code, 0, f"{out}\n{err}")
        self.assertEqual([o["event"] for o in out], ["started", "awaiting", "stats"], err)
        self.assertEqual((out[0]["attempt"], out[0]["resume_input"]), (1, None))
        self.assertEqual(out[-1]["awaiting"], 1, out)
        ex = client.get(queue, "agent-1")
        self.assertEqual(ex["state"], "awaiting")
        self.assertEqual(ex["wait"]["reason"], "approval of the plan")

        # "An hour" at these timings: ten heartbeat timeouts with no heartbeat at all.
        time.sleep(2.0)
        ex = client.get(queue, "agent-1")
        self.assertEqual(ex["state"], "awaiting", ex)
        reasons = [e["reason"] for e in client.execution_events(queue, "agent-1")]
        self.assertNotIn("heartbeat_lost", reasons)
        self.assertNotIn("start_timeout", reasons)

        resumed = client.resume(queue, "agent-1", input={"approved": True})
        self.assertEqual((resumed["state"], resumed["already"]), ("queued", False))

        code, out, err = run_worker(queue, "continue")
        self.assertEqual(code, 0, f"{out}\n{err}")
        started = [o for o in out if o["event"] == "started"]
        self.assertEqual(len(started), 1, out)
        self.assertEqual(started[0]["attempt"], 2)
        self.assertEqual(started[0]["resume_input"], {"approved": True})
        self.assertEqual(started[0]["checkpoint"], {"step": "planned", "plan": ["a", "b"]})
        self.assertEqual(out[-1]["succeeded"], 1, out)

        ex = client.get(queue, "agent-1")
        self.assertEqual((ex["state"], ex["attempt"], ex["continuations"]),
                         ("succeeded", 2, 1))
        self.assertEqual(ex["result"], {"done": ["a", "b"], "approved": True})
        moves = [(e["attempt"], e["from"], e["to"], e["reason"])
                 for e in client.execution_events(queue, "agent-1")]
        # It awaits from running, or from dispatched when the handler awaits before the
        # worker's first beat round reached it.
        self.assertTrue({(1, "running", "awaiting", "awaiting"),
                         (1, "dispatched", "awaiting", "awaiting")} & set(moves), moves)
        self.assertIn((1, "awaiting", "queued", "resumed"), moves)
        self.assertNotIn("stuck", [m[2] for m in moves])

    def test_resume_tokens_and_refusals(self):
        client = STACK.client("admin")
        self.addCleanup(client.close)
        worker = STACK.client("worker")
        self.addCleanup(worker.close)
        queue = unique("tokens")
        client.enqueue(queue, {}, id="t-1")
        claim = worker.claim(queue, "w-1")[0]
        with self.assertRaises(unstuck.InvalidArgument):
            worker.await_resume(claim["token"], "approval", wait_deadline_ms=0)
        with self.assertRaises(unstuck.NotAwaiting) as refused:
            client.resume(queue, "t-1")
        self.assertEqual(refused.exception.state, "dispatched")

        reply = worker.await_resume(claim["token"], "approval", wait_deadline_ms="10m")
        self.assertEqual(reply["outcome"], "awaiting")
        with self.assertRaises(unstuck.StaleAttempt):
            worker.heartbeat(claim["token"])

        anonymous = unstuck.Client(STACK.url)
        self.addCleanup(anonymous.close)
        with self.assertRaises(unstuck.InvalidResumeToken):
            anonymous.resume_by_token(f"{queue}~t-1~" + "0" * 64)
        done = anonymous.resume_by_token(reply["resume_token"], input={"ok": 1})
        self.assertEqual((done["id"], done["already"]), ("t-1", False))
        with self.assertRaises(unstuck.ResumeTokenUsed):
            anonymous.resume_by_token(reply["resume_token"])
        self.assertTrue(client.resume(queue, "t-1")["already"])
        wait_for(lambda: worker.claim(queue, "w-1"), what="the continuation is claimable")

    def test_a_wait_the_queue_refuses_fails_the_execution_in_process(self):
        client = STACK.client("admin")
        self.addCleanup(client.close)
        queue = unique("capped")
        queue_reply = client.set_queue(queue, max_wait="1m", on_wait_expiry="requeue")
        self.assertEqual((queue_reply["max_wait_ms"], queue_reply["on_wait_expiry"]),
                         (60000, "requeue"))
        client.enqueue(queue, {}, id="too-long", timings={"max_attempts": 3})

        def handler(job):
            worker.stop()
            raise unstuck.AwaitResume("approval", wait_deadline_ms="2m")

        worker = unstuck.Worker(STACK.client(), queue, handler, wait_ms=1000,
                                handle_signals=False)
        stats = worker.run()
        ex = client.get(queue, "too-long")
        self.assertEqual((ex["state"], ex["attempt"]), ("failed", 1), ex)
        self.assertIn("await refused", ex["last_error"])
        self.assertEqual((stats["failed"], stats["awaiting"]), (1, 0), stats)


if __name__ == "__main__":
    unittest.main()
