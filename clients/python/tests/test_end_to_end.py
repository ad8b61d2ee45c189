"""End to end: a Python worker process dies mid-run; the watchdog inside `unstuck serve`
finds the execution stale and retries it; a second process resumes from the checkpoint."""

import json
import os
import signal
import subprocess
import sys
import unittest

import harness
from harness import FAST_TIMINGS, TOKENS, unique, wait_for

import unstuck

STACK = None
SCRIPT = os.path.join(harness.HERE, "e2e_worker.py")


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


def worker_command(queue, mode):
    env = dict(os.environ, PYTHONPATH=harness.PACKAGE_ROOT)
    return [sys.executable, SCRIPT, STACK.url, TOKENS["admin"], queue, mode], env


def run_worker(queue, mode, timeout=60):
    args, env = worker_command(queue, mode)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


class EndToEndTest(unittest.TestCase):
    def test_crashed_worker_is_retried_and_resumed_from_its_checkpoint(self):
        client = STACK.client()
        self.addCleanup(client.close)
        queue = unique("e2e")
        client.enqueue(queue, {"doc": "incident-42"}, id="e2e-1", timings=FAST_TIMINGS)

        code, out, err = run_worker(queue, "crash")
        self.assertEqual(code, 1, f"the crashing worker should die with 1: {out}\n{err}")
        self.assertEqual([o["event"] for o in out], ["started", "crashing"], err)
        self.assertEqual((out[0]["attempt"], out[0]["checkpoint"]), (1, None))

        # The second worker long-polls until the watchdog has queued attempt 2.
        code, out, err = run_worker(queue, "resume")
        self.assertEqual(code, 0, f"{out}\n{err}")
        started = [o for o in out if o["event"] == "started"]
        self.assertEqual(len(started), 1, out)
        self.assertEqual((started[0]["attempt"], started[0]["checkpoint"]), (2, {"step": 3}))
        self.assertEqual(out[-1]["succeeded"], 1, out)

        ex = client.get(queue, "e2e-1")
        self.assertEqual((ex["state"], ex["attempt"], ex["result"]),
                         ("succeeded", 2, {"resumed_from": 3}))
        self.assertIn("stuck", [h["state"] for h in ex["history"]])

        events = client.execution_events(queue, "e2e-1")
        moves = [(e["attempt"], e["from"], e["to"]) for e in events]
        retried = [e for e in events if e["to"] == "queued" and e["from"] is not None]
        self.assertEqual(len(retried), 1, moves)
        self.assertIn(retried[0]["reason"], ("heartbeat_lost", "worker_lost"), moves)
        self.assertIn((1, "running", "stuck"), moves)
        self.assertIn((2, "queued", "dispatched"), moves)
        self.assertEqual(moves[-1], (2, "running", "succeeded"))

    def test_sigterm_stops_a_worker_process_cleanly(self):
        client = STACK.client()
        self.addCleanup(client.close)
        args, env = worker_command(unique("idle"), "resume")
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            mine = wait_for(lambda: [w for w in client.workers() if w["pid"] == proc.pid],
                            what="the worker process to register")
            proc.send_signal(signal.SIGTERM)  # it is in a long poll now
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn('"event": "stats"', out)
        self.assertNotIn(mine[0]["worker_id"], [w["worker_id"] for w in client.workers()])


class RedisStoppedTest(unittest.TestCase):
    """Redis killed under a running server: every call is RedisUnavailable (503, nothing
    was written, Retry-After), not UnknownOutcome."""

    def setUp(self):
        self.stack = harness.Stack().start()

    def tearDown(self):
        self.stack.stop()

    def test_a_stopped_redis_is_redis_unavailable_for_reads_and_writes(self):
        with self.stack.client() as client:
            queue = unique("down")
            client.enqueue(queue, 1, id="before")
            self.stack.redis.kill()
            self.stack.redis.wait()

            def read_says_unavailable():
                try:
                    client.get(queue, "before")
                except unstuck.RedisUnavailable:
                    return True
                except unstuck.UnstuckError:
                    return False  # the first call may meet the closed connection itself
                return False
            wait_for(read_says_unavailable, timeout=20, what="a read raises RedisUnavailable")
            for call in (lambda: client.enqueue(queue, 2, id="during"),
                         lambda: client.get(queue, "before")):
                with self.assertRaises(unstuck.RedisUnavailable) as cm:
                    call()
                e = cm.exception
                self.assertNotIsInstance(e, unstuck.UnknownOutcome)
                self.assertEqual((e.status, e.slug, e.transient, e.retry_after),
                                 (503, "redis-unavailable", True, 1.0))
            with self.assertRaises(unstuck.RedisUnavailable) as cm:
                client.enqueue(queue, 2, id="during")
            self.assertIn("nothing was written", cm.exception.detail)


if __name__ == "__main__":
    unittest.main()
