"""Resource leases from Python: acquire / busy with holders / release / listing /
force-release through the Client, and a worker process killed with SIGKILL inside
``with job.lease(...)``: its unit is freed by the watchdog's sweep in the round that
retries its attempt, and the retry's worker acquires it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import FAST_TIMINGS, TOKENS, unique, wait_for

import unstuck

STACK = None
SCRIPT = os.path.join(harness.HERE, "e2e_lease_worker.py")


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


def claim_one(client, queue, id):
    client.enqueue(queue, {}, id=id)
    claims = client.claim(queue, "py-test", wait_ms=2000)
    return claims[0]["token"]


class ClientResourcesTest(unittest.TestCase):
    def test_acquire_busy_release_list_and_force_release(self):
        client = STACK.client()
        self.addCleanup(client.close)
        queue = unique("res")
        a = claim_one(client, queue, "a")
        b = claim_one(client, queue, "b")
        got = client.acquire(a, "browser", capacity=1, ttl_ms="1h")
        self.assertEqual((got["capacity"], got["held"]), (1, 1))
        self.assertIn("expires_at", got)

        with self.assertRaises(unstuck.ResourceBusy) as busy:
            client.acquire(b, "browser")
        self.assertEqual(busy.exception.status, 409)
        self.assertEqual([(h["id"], h["attempt"]) for h in busy.exception.holders],
                         [("a", 1)])
        with self.assertRaises(unstuck.ResourceCapacity):
            client.acquire(b, "browser", capacity=2)

        listed = {r["resource"]: r for r in client.resources()}
        self.assertEqual(listed["browser"]["holders"][0]["queue"], queue)
        self.assertEqual(client.resource("browser")["held"], 1)

        # A waiting acquire gets the unit once it is released.
        result = {}
        waiter = threading.Thread(
            target=lambda: result.update(client.acquire(b, "browser", wait_ms=10000)))
        waiter.start()
        time.sleep(0.1)
        self.assertEqual(client.release(a, "browser"), {"released": True})
        waiter.join(15)
        self.assertEqual(result.get("held"), 1)
        self.assertEqual(client.release(a, "browser"), {"released": False})

        with self.assertRaises(unstuck.InvalidArgument):
            client.force_release("browser", queue, "b", "")
        forced = client.force_release("browser", queue, "b", "stuck tab")
        self.assertEqual(forced, {"released": True, "attempt": 1})
        self.assertEqual(client.resource("browser")["held"], 0)
        reasons = [e["reason"] for e in client.execution_events(queue, "b")]
        self.assertIn("resource_force_released", reasons)

    def test_bad_input_is_refused(self):
        client = STACK.client()
        self.addCleanup(client.close)
        token = claim_one(client, unique("resbad"), "a")
        with self.assertRaises(unstuck.InvalidName):
            client.acquire(token, "a/b")
        with self.assertRaises(unstuck.InvalidArgument):
            client.acquire(token, "r", capacity=0)
        self.assertEqual(client.resources(), [])


def start_worker(queue, resource, mode):
    env = dict(os.environ, PYTHONPATH=harness.PACKAGE_ROOT)
    args = [sys.executable, SCRIPT, STACK.url, TOKENS["admin"], queue, resource, mode]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


class KilledHolderTest(unittest.TestCase):
    def test_a_killed_holders_unit_passes_to_its_retry(self):
        client = STACK.client()
        self.addCleanup(client.close)
        queue, resource = unique("lease"), unique("tool")
        client.enqueue(queue, {"task": "browse"}, id="agent-1", timings=FAST_TIMINGS)

        proc = start_worker(queue, resource, "hold")
        try:
            line = json.loads(proc.stdout.readline())
            self.assertEqual((line["event"], line["attempt"]), ("holding", 1))
            held = client.resource(resource)
            self.assertEqual([(h["id"], h["attempt"]) for h in held["holders"]],
                             [("agent-1", 1)])
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

        # The watchdog retries the lost attempt; the same round's sweep frees the unit.
        wait_for(lambda: client.resource(resource)["held"] == 0, timeout=20,
                 what="the killed holder's unit to be freed")
        events = client.execution_events(queue, "agent-1")
        retry = next(i for i, e in enumerate(events)
                     if e["to"] == "queued" and e["from"] is not None)
        freed = [e for e in events if e["reason"] == "resource_freed"]
        self.assertEqual(len(freed), 1, events)
        self.assertEqual(freed[0]["attempt"], 1)
        self.assertIn("sweep", freed[0]["detail"])
        self.assertGreater(events.index(freed[0]), retry)

        proc = start_worker(queue, resource, "finish")
        out, err = proc.communicate(timeout=60)
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        self.assertIn({"event": "holding", "attempt": 2}, lines, err)
        ex = client.get(queue, "agent-1")
        self.assertEqual((ex["state"], ex["attempt"]), ("succeeded", 2))
        acquired = [e["attempt"] for e in client.execution_events(queue, "agent-1")
                    if e["reason"] == "resource_acquired"]
        self.assertEqual(acquired, [1, 2])
        self.assertEqual(client.resource(resource)["held"], 0)


if __name__ == "__main__":
    unittest.main()
