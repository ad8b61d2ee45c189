"""Snooze and retry_after against a real `unstuck serve`: ``Client.snooze`` (the reply, the
stale token, the execution view, bad input), ``fail(..., retry_after_ms=)``, and the
worker's ``Snooze`` outcome and ``Retryable(retry_after_ms=)``."""

import datetime
import threading
import time
import unittest

import harness
from harness import parse_time, unique, wait_for

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()



class SnoozeClientTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("sz")

    def tearDown(self):
        self.client.close()

    def claim_one(self):
        claims = wait_for(lambda: self.client.claim(self.queue, "w-test"), what="a claim")
        return claims[0]

    def test_snooze_requeues_without_counting_and_the_token_goes_stale(self):
        self.client.enqueue(self.queue, 1, id="s-1",
                            timings={"max_attempts": 1, "max_snoozes": 5})
        first = self.claim_one()
        reply = self.client.snooze(first["token"], after_ms=200, reason="429: slow down")
        self.assertEqual((reply["outcome"], reply["snoozes"], reply["slot_released"]),
                         ("snoozed", 1, True))
        got = self.client.get(self.queue, "s-1")
        self.assertEqual((got["state"], got["attempt"], got["snoozes"], got["continuations"]),
                         ("queued", 1, 1, 1))
        self.assertEqual(parse_time(got["available_at"]), parse_time(reply["available_at"]))
        with self.assertRaises(unstuck.StaleAttempt):
            self.client.heartbeat(first["token"])
        with self.assertRaises(unstuck.StaleAttempt):
            self.client.complete(first["token"], "late")
        events = self.client.execution_events(self.queue, "s-1")
        snoozed = [e for e in events if e["reason"] == "snoozed"]
        self.assertEqual(len(snoozed), 1, events)
        self.assertIn("429: slow down", snoozed[0]["detail"])

        # Until an instant; then the continuation succeeds with max_attempts 1.
        second = self.claim_one()
        self.assertEqual(second["attempt"], 2)
        until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.3)
        reply = self.client.snooze(second["token"], until=until, reason="provider down")
        self.assertEqual(reply["snoozes"], 2)
        third = self.claim_one()
        self.client.complete(third["token"], "done")
        got = self.client.get(self.queue, "s-1")
        self.assertEqual((got["state"], got["attempt"], got["snoozes"]), ("succeeded", 3, 2))

    def test_bad_snoozes_are_refused(self):
        self.client.enqueue(self.queue, 1, id="b-1")
        token = self.claim_one()["token"]
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
        for kwargs in [dict(reason="x"),  # neither after_ms nor until
                       dict(after_ms=1000, until=past, reason="x"),
                       dict(until=past, reason="x"),
                       dict(after_ms=0, reason="x"),
                       dict(after_ms="8d", reason="x"),
                       dict(after_ms=1000, reason="")]:
            with self.assertRaises(unstuck.InvalidArgument, msg=str(kwargs)):
                self.client.snooze(token, **kwargs)
        with self.assertRaises(unstuck.InvalidArgument):
            self.client.fail(token, "x", retryable=False, retry_after_ms=1000)
        got = self.client.get(self.queue, "b-1")
        self.assertEqual((got["state"], got["snoozes"]), ("dispatched", 0))

    def test_past_max_snoozes_a_snooze_is_a_retryable_failure(self):
        self.client.enqueue(self.queue, 1, id="l-1",
                            timings={"max_snoozes": 0, "max_attempts": 2, "backoff_base": 0})
        token = self.claim_one()["token"]
        reply = self.client.snooze(token, after_ms=1000, reason="429")
        self.assertEqual(reply["outcome"], "retry_scheduled")
        got = self.client.get(self.queue, "l-1")
        self.assertIn("snooze limit reached", got["last_error"])

    def test_retry_after_wins_over_the_backoff(self):
        self.client.enqueue(self.queue, 1, id="r-1", timings={"backoff_base": 0})
        token = self.claim_one()["token"]
        before = datetime.datetime.now(datetime.timezone.utc)
        reply = self.client.fail(token, "429", retry_after_ms="1h")
        wait = (parse_time(reply["available_at"]) - before).total_seconds()
        self.assertTrue(3500 <= wait <= 3601, wait)


class SnoozeWorkerTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("szw")

    def tearDown(self):
        self.client.close()

    def run_worker(self, handler, until):
        worker = unstuck.Worker(STACK.client(), self.queue, handler)
        stats = {}
        thread = threading.Thread(target=lambda: stats.update(worker.run()), daemon=True)
        thread.start()
        try:
            wait_for(until, timeout=20, what="the worker's jobs")
        finally:
            worker.stop()
            thread.join(30)
            worker.client.close()
        self.assertFalse(thread.is_alive())
        return stats

    def test_a_handler_snoozes_three_times_then_succeeds_without_a_retry(self):
        seen = []

        def handler(job):
            seen.append((job.attempt, job.checkpoint))
            if len(seen) <= 3:
                job.set_checkpoint({"calls": len(seen)})
                raise unstuck.Snooze(after_ms=50, reason="rate limited")
            return {"after": job.checkpoint}

        self.client.enqueue(self.queue, 1, id="w-1", timings={"max_attempts": 1})
        stats = self.run_worker(
            handler, lambda: self.client.get(self.queue, "w-1")["state"] == "succeeded")
        got = self.client.get(self.queue, "w-1")
        self.assertEqual((got["attempt"], got["snoozes"], got["continuations"]), (4, 3, 3))
        self.assertEqual(got["result"], {"after": {"calls": 3}})
        self.assertEqual(seen[0], (1, None))
        self.assertEqual(seen[3], (4, {"calls": 3}))
        self.assertEqual((stats["snoozed"], stats["succeeded"], stats["retried"]), (3, 1, 0))

    def test_retryable_with_retry_after_delays_the_retry(self):
        def handler(job):
            raise unstuck.Retryable("429", retry_after_ms=60_000)

        self.client.enqueue(self.queue, 1, id="w-2",
                            timings={"backoff_base": 0, "max_attempts": 2})
        started = time.time()
        self.run_worker(handler,
                        lambda: self.client.get(self.queue, "w-2")["attempt"] == 1
                        and self.client.get(self.queue, "w-2")["state"] == "queued")
        got = self.client.get(self.queue, "w-2")
        self.assertEqual((got["state"], got["attempt"]), ("queued", 1))
        wait = parse_time(got["available_at"]).timestamp() - started
        self.assertTrue(55 <= wait <= 61, wait)


if __name__ == "__main__":
    unittest.main()
