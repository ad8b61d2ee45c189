"""Loop detection against a real `unstuck serve`: ``Client.heartbeat(..., fingerprint=)``
(the run shown on the execution, bad input refused), a worker whose handler repeats one
fingerprint caught ``looping`` (each ``job.set_fingerprint`` call one arrival, even when
made faster than beats), and a healthy worker with varied fingerprints left alone."""

import re
import threading
import time
import unittest

import harness
from harness import unique, wait_for

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class FingerprintClientTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("fp")

    def tearDown(self):
        self.client.close()

    def test_the_run_is_counted_reset_and_shown(self):
        self.client.enqueue(self.queue, 1, id="c-1",
                            timings={"max_repeats": 10, "heartbeat_timeout": "60s"})
        token = wait_for(lambda: self.client.claim(self.queue, "w-test"), what="a claim")[0]["token"]
        for _ in range(3):
            self.client.heartbeat(token, fingerprint="ls /tmp")
        self.client.heartbeat(token, progress="step 2")  # no fingerprint: the run stays
        got = self.client.get(self.queue, "c-1")
        self.assertEqual(got["fingerprint"], {"last": "ls /tmp", "repeats": 3})
        self.assertEqual(got["timings"]["max_repeats"], 10)
        self.client.heartbeat(token, fingerprint="cat /tmp/a")
        got = self.client.get(self.queue, "c-1")
        self.assertEqual(got["fingerprint"], {"last": "cat /tmp/a", "repeats": 1})

        for bad in ["", "x" * 129]:
            with self.assertRaises(unstuck.InvalidArgument):
                self.client.heartbeat(token, fingerprint=bad)
        self.assertEqual(self.client.get(self.queue, "c-1")["fingerprint"]["repeats"], 1)
        with self.assertRaises(unstuck.InvalidArgument):
            self.client.enqueue(self.queue, 1, id="c-2", timings={"max_repeats": 1})


class FingerprintWorkerTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("fpw")

    def tearDown(self):
        self.client.close()

    def run_worker(self, handler, until):
        worker = unstuck.Worker(STACK.client(), self.queue, handler, concurrency=2)
        stats = {}
        thread = threading.Thread(target=lambda: stats.update(worker.run()), daemon=True)
        thread.start()
        try:
            wait_for(until, timeout=30, what="the worker's jobs")
        finally:
            worker.stop()
            thread.join(30)
            worker.client.close()
        self.assertFalse(thread.is_alive())
        return stats

    def test_a_looping_agent_is_caught_and_a_healthy_one_is_not(self):
        timings = {"max_repeats": 4, "max_attempts": 1, "heartbeat_timeout": "10s",
                   "stuck_threshold": "200ms"}

        def handler(job):
            if job.payload["kind"] == "looping":
                # The same tool call with the same result, four times faster than any
                # beat: each call still arrives on its own. The step counter moves.
                for step in range(4):
                    job.set_progress(f"step {step}")
                    job.set_fingerprint("search('flights') -> 0 results")
                job.cancelled.wait(20)
                job.raise_if_cancelled()
                return "should not get here"
            # Healthy: every fingerprint differs from the last, some come twice in a row.
            for step in range(12):
                job.set_progress(f"step {step}")
                job.set_fingerprint(f"read page {step // 2}")
                time.sleep(0.03)
            return "done"

        self.client.enqueue(self.queue, {"kind": "looping"}, id="looping", timings=timings)
        self.client.enqueue(self.queue, {"kind": "healthy"}, id="healthy", timings=timings)
        done = lambda: (self.client.get(self.queue, "looping")["state"] == "dead"
                        and self.client.get(self.queue, "healthy")["state"] == "succeeded")
        self.run_worker(handler, done)

        looping = self.client.get(self.queue, "looping")
        self.assertEqual(looping["stop"]["reason"], "looping")
        self.assertIn("same fingerprint 4 times in a row (max_repeats 4)", looping["last_error"])
        events = self.client.execution_events(self.queue, "looping")
        verdict = [e for e in events if e["to"] == "stuck"]
        self.assertEqual([(e["reason"], e["detail"]) for e in verdict],
                         [("looping", "same fingerprint 4 times in a row (max_repeats 4)")])

        healthy = self.client.get(self.queue, "healthy")
        self.assertEqual((healthy["result"], healthy["false_alarms"]), ("done", 0))
        self.assertEqual(healthy["fingerprint"], {"last": "read page 5", "repeats": 2})
        events = self.client.execution_events(self.queue, "healthy")
        self.assertFalse([e for e in events if e["reason"] == "looping"], events)

    def test_set_fingerprint_refuses_bad_text(self):
        job = unstuck.Job({"token": "t", "queue": "q", "id": "i", "attempt": 1,
                           "heartbeat_timeout": 1000})
        for bad in ["", "é" * 65]:
            with self.assertRaises(ValueError):
                job.set_fingerprint(bad)
        job.set_fingerprint("é" * 64)  # 128 bytes
        self.assertEqual(job._unsent_fingerprints(), 1)
        self.assertTrue(re.fullmatch("é{64}", job._pending()[0]["fingerprint"]))


if __name__ == "__main__":
    unittest.main()
