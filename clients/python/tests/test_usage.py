"""Usage and budgets against a real `unstuck serve`: a Python worker reports usage until
its budget cancels it (usage summed, stop reason budget_exceeded), the queue window
budget pauses the queue, replayed calls do not count twice, bad usage is refused."""

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


TIMINGS = {"heartbeat_timeout": "300ms", "cancel_grace": "30s", "max_attempts": 1}


class UsageTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("uq")
        self.workers = []

    def tearDown(self):
        for worker, thread in self.workers:
            worker.stop()
            thread.join(30)
            worker.client.close()
        self.client.close()

    def start(self, handler):
        worker = unstuck.Worker(STACK.client(), self.queue, handler, wait_ms=200)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        return worker

    def ended(self, id):
        return wait_for(lambda: (lambda e: e if e["state"] in
                                 {"succeeded", "failed", "cancelled", "dead"} else None)(
            self.client.get(self.queue, id)), timeout=20, what=f"{id} ended")

    def test_a_worker_reports_usage_until_its_budget_cancels_it(self):
        self.client.set_queue(self.queue, window_budget={"tokens": 1500,
                                                         "window_ms": 3600000})
        self.client.enqueue(self.queue, {"n": 1}, id="runaway", timings=TIMINGS,
                            budget={"tokens": 1000, "warning_share": 0.5})
        steps = []

        def handler(job):
            while not job.cancelled.is_set():
                job.add_usage(input_tokens=80, output_tokens=20, cost=7, model="m1")
                steps.append(1)
                time.sleep(0.05)
            return "never recorded: cancellation is acknowledged instead"

        worker = self.start(handler)
        ex = self.ended("runaway")
        self.assertEqual(ex["state"], "cancelled")
        self.assertEqual(ex["stop"]["reason"], "budget_exceeded")
        self.assertEqual(ex["cancel_reason"], "budget_exceeded")
        # Every delta the handler added was delivered exactly once (the last ones after
        # the cancellation request too): the sum is what the handler spent.
        spent = len(steps)
        usage = ex["usage"]
        self.assertEqual((usage["input_tokens"], usage["output_tokens"], usage["cost"]),
                         (80 * spent, 20 * spent, 7 * spent))
        self.assertEqual(usage["by_model"]["m1"]["input_tokens"], 80 * spent)
        self.assertGreaterEqual(usage["input_tokens"] + usage["output_tokens"], 1000)
        # The worker counts the acknowledgement once its call returns, after the
        # execution is already cancelled.
        wait_for(lambda: worker.stats["cancelled"] == 1, timeout=10,
                 what="the worker counted its cancellation")
        reasons = [e["reason"] for e in self.client.execution_events(self.queue, "runaway")
                   if e["reason"].startswith("budget")]
        self.assertEqual(reasons, ["budget_warning", "budget_exceeded"])
        q = self.client.queue_usage(self.queue)
        self.assertEqual(q["totals"]["input_tokens"], 80 * spent)
        self.assertEqual(q["window"]["output_tokens"], 20 * spent)

        worker.stop()
        self.workers[0][1].join(30)
        # A second execution spends the rest of the window: the queue is paused by budget.
        self.client.enqueue(self.queue, {"n": 2}, id="second", timings=TIMINGS)

        def spender(job):
            job.add_usage(input_tokens=600, model="m2")
            return "done"

        self.start(spender)
        self.assertEqual(self.ended("second")["state"], "succeeded")
        queue = self.client.get_queue(self.queue)
        self.assertTrue(queue["paused"])
        self.assertEqual(queue["pause"]["by"], "budget")
        self.assertIn("window budget spent", queue["pause"]["reason"])
        self.client.enqueue(self.queue, {"n": 3}, id="third", timings=TIMINGS)
        time.sleep(0.5)
        self.assertEqual(self.client.get(self.queue, "third")["state"], "queued")
        self.client.resume_queue(self.queue, reason="raised the budget")
        self.assertEqual(self.ended("third")["state"], "succeeded")

    def test_replayed_calls_do_not_count_twice_and_bad_usage_is_refused(self):
        admin = self.client
        admin.enqueue(self.queue, {}, id="r", timings=TIMINGS)
        token = admin.claim(self.queue, "w-r")[0]["token"]
        one = {"input_tokens": 10, "output_tokens": 5, "cost": 3, "seq": 1}
        for _ in range(3):
            admin.heartbeat(token, usage=one)
        with self.assertRaises(unstuck.errors.BadRequest):
            admin.heartbeat(token, usage={"input_tokens": 10})  # no seq
        with self.assertRaises(unstuck.errors.UnstuckError):
            admin.heartbeat(token, usage={"input_tokens": 1, "cached_input_tokens": 2,
                                          "seq": 2})
        last = {"input_tokens": 1, "output_tokens": 1, "seq": 2, "model": "m"}
        admin.complete(token, "ok", usage=last)
        with self.assertRaises(unstuck.errors.AlreadyTerminal):
            admin.complete(token, "ok", usage=last)
        usage = admin.get(self.queue, "r")["usage"]
        self.assertEqual((usage["input_tokens"], usage["output_tokens"], usage["cost"]),
                         (11, 6, 3))
        self.assertEqual(admin.queue_usage(self.queue)["totals"]["input_tokens"], 11)


if __name__ == "__main__":
    unittest.main()
