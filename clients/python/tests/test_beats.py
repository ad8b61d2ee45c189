"""Batched heartbeats against a real `unstuck serve`: ``Client.heartbeats`` answers each
beat in its place (a refused one as an error object, not raised), and a Worker holding
several executions beats them all in one request per round, a stale one stopping only
its own job."""

import re
import threading
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


def requests(client, route):
    """How many requests of ``route`` the server has answered (its /metrics counter)."""
    pattern = re.compile(r'^unstuck_http_requests_total\{(.*)\} (\d+)$')
    total = 0
    for line in client.metrics().splitlines():
        m = pattern.match(line)
        if m and f'route="{route}"' in m.group(1):
            total += int(m.group(2))
    return total


class HeartbeatsTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("bq")

    def tearDown(self):
        self.client.close()

    def claim(self, id, **kw):
        self.client.enqueue(self.queue, {}, id=id, **kw)
        return self.client.claim(self.queue, "w-" + id)[0]["token"]

    def test_each_beat_is_answered_in_its_place(self):
        live = self.claim("live")
        done = self.claim("done")
        big = self.claim("big")
        self.client.complete(done)
        results = self.client.heartbeats([
            {"token": live, "progress": "half", "checkpoint": {"at": 1}},
            done,
            {"token": big, "checkpoint": {"blob": "x" * (2 * 1024 * 1024)}},
        ])
        self.assertEqual(results[0], {"cancel_requested": False})
        self.assertIsInstance(results[1], unstuck.AlreadyTerminal)
        self.assertEqual(results[1].state, "succeeded")
        self.assertIsInstance(results[2], unstuck.TooLarge)
        self.assertEqual(results[2].field, "checkpoint")
        ex = self.client.get(self.queue, "live")
        self.assertEqual((ex["state"], ex["progress"], ex["checkpoint"]),
                         ("running", "half", {"at": 1}))
        self.assertEqual(self.client.get(self.queue, "big")["state"], "dispatched")
        with self.assertRaises(unstuck.InvalidArgument) as refused:
            self.client.heartbeats([live] * 1001)
        self.assertEqual(refused.exception.field, "heartbeats")


class BatchingWorkerTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("bw")

    def tearDown(self):
        self.client.close()

    def test_a_worker_beats_what_it_holds_in_one_request_and_a_stale_one_stops_alone(self):
        release, jobs, sent = threading.Event(), {}, []
        timings = {"heartbeat_timeout": "900ms", "stuck_threshold": "10s"}
        for i in range(3):
            self.client.enqueue(self.queue, {}, id=f"job-{i}", timings=timings)

        def handler(job):
            jobs[job.id] = job
            while not release.is_set():
                job.raise_if_cancelled()
                release.wait(0.05)
            return "done"

        worker_client = STACK.client()
        batched = worker_client.heartbeats

        def heartbeats(beats, timeout=None):
            results = batched(beats, timeout=timeout)
            sent.append(([b["token"] for b in beats], results))
            return results
        worker_client.heartbeats = heartbeats  # a test hook: what each round sent
        worker = unstuck.Worker(worker_client, self.queue, handler, concurrency=3,
                                wait_ms=500, handle_signals=False)
        result = {}
        thread = threading.Thread(target=lambda: result.update(worker.run()), daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(jobs) == 3 and all(
                self.client.get(self.queue, f"job-{i}")["state"] == "running"
                for i in range(3)), what="three running jobs")
            wait_for(lambda: any(len(tokens) == 3 for tokens, _ in sent),
                     what="a round of three")
            single = requests(self.client, "/v1/attempts/heartbeat")
            batches = requests(self.client, "/v1/attempts/heartbeats")
            rounds = len(sent)
            wait_for(lambda: len(sent) >= rounds + 3, what="three more beat rounds")
            # Every round beat all three in one request; none went to the single route.
            self.assertTrue(all(len(tokens) == 3 for tokens, _ in sent[rounds:]), sent)
            self.assertEqual(requests(self.client, "/v1/attempts/heartbeat"), single)
            self.assertGreaterEqual(requests(self.client, "/v1/attempts/heartbeats"),
                                    batches + 3)

            # Attempt 1 of job-1 is ended from outside (its retry waits a minute): the
            # next round answers its beat stale-attempt, and only job-1 stops.
            stale = jobs["job-1"]
            self.client.fail(stale.token, "ended elsewhere", retry_after_ms=60000)
            wait_for(lambda: stale.cancelled.is_set(), what="job-1 to stop")
            self.assertTrue(stale.lost)
            answers = [r[tokens.index(stale.token)] for tokens, r in sent
                       if stale.token in tokens and len(tokens) == 3]
            self.assertTrue(any(isinstance(a, unstuck.StaleAttempt) for a in answers),
                            answers)
            self.assertFalse(jobs["job-0"].cancelled.is_set())
            self.assertFalse(jobs["job-2"].cancelled.is_set())
            rounds = len(sent)
            wait_for(lambda: len(sent) >= rounds + 2, what="two more beat rounds")
            self.assertTrue(all(len(tokens) == 2 and stale.token not in tokens
                                for tokens, _ in sent[rounds:]), sent[rounds:])
            release.set()
            for i in (0, 2):
                wait_for(lambda i=i: self.client.get(self.queue, f"job-{i}")["state"]
                         == "succeeded", what=f"job-{i} to succeed")
            self.assertEqual(self.client.get(self.queue, "job-1")["state"], "queued")
        finally:
            release.set()
            worker.stop()
            thread.join(30)
            worker_client.close()
        self.assertFalse(thread.is_alive())
        self.assertEqual((result["succeeded"], result["dropped"]), (2, 1), result)


if __name__ == "__main__":
    unittest.main()
