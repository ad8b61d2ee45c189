"""The Worker runner against a real `unstuck serve`: results, retries from a checkpoint,
fatal failures, cancellation, lost attempts, heartbeats under CPU load, the registry."""

import threading
import time
import unittest

import harness
from harness import FAST_TIMINGS, unique, wait_for

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class WorkerTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("wq")
        self.workers = []

    def tearDown(self):
        for worker, thread in self.workers:
            worker.stop()
            thread.join(30)
            worker.client.close()
            self.assertFalse(thread.is_alive(), "worker did not stop")
        self.client.close()

    def start(self, handler, **kw):
        worker = unstuck.Worker(STACK.client(), self.queue, handler, **kw)
        worker.result = {}
        thread = threading.Thread(target=lambda: worker.result.update(worker.run()),
                                  daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        return worker

    def stop(self, worker):
        worker.stop()
        for w, thread in self.workers:
            if w is worker:
                thread.join(30)
                self.assertFalse(thread.is_alive())
        return worker.result

    def ended(self, id, timeout=20):
        terminal = {"succeeded", "failed", "cancelled", "timed_out", "dead"}

        def check():
            ex = self.client.get(self.queue, id)
            return ex if ex["state"] in terminal else None
        return wait_for(check, timeout, what=f"{id} to end")

    def test_completes_jobs_with_results(self):
        for i in range(6):
            self.client.enqueue(self.queue, {"n": i}, id=f"job-{i}")
        worker = self.start(lambda job: {"double": job.payload["n"] * 2}, concurrency=3)
        for i in range(6):
            ex = self.ended(f"job-{i}")
            self.assertEqual((ex["state"], ex["attempt"], ex["result"]),
                             ("succeeded", 1, {"double": i * 2}))
        registered = wait_for(lambda: [w for w in self.client.workers()
                                       if w["worker_id"] == worker.worker_id], what="registry")
        self.assertEqual(registered[0]["queues"], [self.queue])
        self.assertEqual(registered[0]["heartbeat_interval"], 5000)
        stats = self.stop(worker)
        self.assertEqual(stats["succeeded"], 6)
        self.assertNotIn(worker.worker_id, [w["worker_id"] for w in self.client.workers()])

    def test_retryable_then_success_resumes_from_checkpoint(self):
        seen = []

        def handler(job):
            seen.append((job.attempt, job.checkpoint))
            if job.attempt == 1:
                job.set_progress("half way")
                job.set_checkpoint({"step": 5})
                raise unstuck.Retryable("upstream timed out")
            return {"resumed_at": job.checkpoint["step"]}

        self.client.enqueue(self.queue, "p", id="r-1", timings=FAST_TIMINGS)
        self.start(handler)
        ex = self.ended("r-1")
        self.assertEqual((ex["state"], ex["attempt"], ex["result"]),
                         ("succeeded", 2, {"resumed_at": 5}))
        self.assertEqual(seen, [(1, None), (2, {"step": 5})])
        reasons = [e["reason"] for e in self.client.execution_events(self.queue, "r-1")]
        self.assertIn("retry_scheduled", reasons)

    def test_other_exceptions_fail_retryable_with_their_type(self):
        def handler(job):
            raise ValueError("no such file")

        self.client.enqueue(self.queue, 1, id="e-1", timings={"max_attempts": 1})
        self.start(handler)
        ex = self.ended("e-1")
        self.assertEqual(ex["state"], "failed")  # retryable, but no attempt left
        self.assertIn("ValueError: no such file", ex["last_error"])

    def test_fatal_fails_for_good(self):
        calls = []

        def handler(job):
            calls.append(job.attempt)
            raise unstuck.Fatal("payload is not a document")

        self.client.enqueue(self.queue, 1, id="f-1",
                            timings={"max_attempts": 3, "backoff_base": 0})
        worker = self.start(handler)
        ex = self.ended("f-1")
        self.assertEqual((ex["state"], ex["attempt"]), ("failed", 1))
        self.assertIn("payload is not a document", ex["last_error"])
        self.assertEqual(calls, [1])
        self.assertEqual(self.stop(worker)["failed"], 1)

    def test_cancellation_stops_the_handler(self):
        started, stopped = threading.Event(), threading.Event()

        def handler(job):
            started.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if job.cancelled.wait(0.05):
                    stopped.set()
                    job.raise_if_cancelled()
            return "never cancelled"

        self.client.enqueue(self.queue, 1, id="x-1", timings={"heartbeat_timeout": "1s"})
        worker = self.start(handler)
        self.assertTrue(started.wait(10))
        wait_for(lambda: self.client.get(self.queue, "x-1")["state"] == "running",
                 what="running")
        self.assertEqual(self.client.cancel(self.queue, "x-1")["outcome"], "requested")
        ex = self.ended("x-1")
        self.assertEqual(ex["state"], "cancelled")
        self.assertTrue(stopped.is_set())
        self.assertEqual(self.stop(worker)["cancelled"], 1)

    def test_a_lost_attempt_is_dropped_quietly(self):
        jobs, release = [], threading.Event()

        def handler(job):
            jobs.append(job)
            if job.attempt == 1:
                job.cancelled.wait(20)  # set when a heartbeat learns the attempt is gone
                release.set()
                return "too late"        # must not be recorded
            return "second attempt"

        self.client.enqueue(self.queue, 1, id="l-1",
                            timings={"heartbeat_timeout": "600ms", "backoff_base": 0})
        worker = self.start(handler)
        wait_for(lambda: jobs, what="first attempt")
        # Someone else ends attempt 1 (as the watchdog would): it is retried.
        self.client.fail(jobs[0].token, "taken away")
        self.assertTrue(release.wait(10))
        self.assertTrue(jobs[0].lost)
        ex = self.ended("l-1")
        self.assertEqual((ex["state"], ex["attempt"], ex["result"]),
                         ("succeeded", 2, "second attempt"))
        self.assertEqual(self.stop(worker)["dropped"], 1)

    def test_failing_heartbeats_give_the_attempt_up_after_its_heartbeat_timeout(self):
        # Every heartbeat is answered 503 (a proxy in front of the server): the worker
        # retries them, and once the heartbeat timeout has passed with no renewal it gives
        # the attempt up as lost (job.cancelled set, nothing recorded). The watchdog retries
        # the execution, and the retry succeeds once beats get through again.
        proxy = harness.RefusingProxy(STACK.url)
        self.addCleanup(proxy.close)
        proxy.refuse.add("/v1/attempts/heartbeat")
        gave_up = []

        def handler(job):
            if job.attempt == 1:
                job.cancelled.wait(15)
                gave_up.append((job.lost, job.cancel_requested))
                proxy.refuse.clear()
                job.raise_if_cancelled()
            return "second attempt"

        timings = dict(FAST_TIMINGS, start_grace="1s")  # no beat gets through: dispatched
        self.client.enqueue(self.queue, 1, id="g-1", timings=timings)
        worker = unstuck.Worker(unstuck.Client(proxy.url, token=harness.TOKENS["admin"]),
                                self.queue, handler, wait_ms=1000, handle_signals=False)
        worker.result = {}
        thread = threading.Thread(target=lambda: worker.result.update(worker.run()),
                                  daemon=True)
        with self.assertLogs("unstuck", "WARNING") as logs:
            thread.start()
            self.workers.append((worker, thread))
            wait_for(lambda: gave_up, timeout=20, what="the worker to give attempt 1 up")
        self.assertTrue(any("giving it up" in line for line in logs.output), logs.output)
        self.assertEqual(gave_up, [(True, False)], "lost, not a cancellation")
        self.assertGreaterEqual(proxy.refused, 2, "failed beats are retried before giving up")
        ex = self.ended("g-1")
        self.assertEqual((ex["state"], ex["attempt"], ex["result"]),
                         ("succeeded", 2, "second attempt"))
        result = self.stop(worker)
        self.assertEqual((result["dropped"], result["succeeded"]), (1, 1), result)

    def test_a_stop_right_after_a_claim_returns_without_waiting_a_registry_interval(self):
        # A claim kicks a registry beat a moment later; a stop() in that moment must still
        # end the registry loop at once, not after a heartbeat_interval (60 s here).
        ready, stopped, workers = threading.Event(), threading.Event(), []

        def handler(job):
            ready.wait(10)
            workers[0].stop()
            stopped.set()
            return "done"

        self.client.enqueue(self.queue, 1, id="s-1")
        workers.append(self.start(handler, heartbeat_interval=60))
        ready.set()
        self.assertTrue(stopped.wait(15), "the handler ran")
        self.assertEqual(self.stop(workers[0])["succeeded"], 1)

    def test_heartbeats_survive_a_cpu_bound_handler(self):
        def handler(job):
            end, n = time.monotonic() + 3.0, 0
            while time.monotonic() < end:  # pure Python, holding the GIL between switches
                n += 1
            return n

        self.client.enqueue(self.queue, 1, id="cpu-1", timings=FAST_TIMINGS)
        self.start(handler)
        ex = self.ended("cpu-1")
        self.assertEqual((ex["state"], ex["attempt"]), ("succeeded", 1))
        self.assertNotIn("stuck", [h["state"] for h in ex["history"]])

    def test_registry_lists_running_jobs(self):
        release = threading.Event()
        self.client.enqueue(self.queue, 1, id="reg-1")
        worker = self.start(lambda job: release.wait(20) and "done",
                            heartbeat_interval=0.5)

        def listed():
            for w in self.client.workers():
                if w["worker_id"] == worker.worker_id:
                    return {"queue": self.queue, "id": "reg-1"} in w["running"]
        wait_for(listed, what="registry listing reg-1")
        release.set()
        self.assertEqual(self.ended("reg-1")["state"], "succeeded")

    def test_stop_drains_running_jobs(self):
        started = threading.Event()

        def handler(job):
            started.set()
            time.sleep(1.0)
            return "finished"

        self.client.enqueue(self.queue, 1, id="dr-1")
        worker = self.start(handler)
        self.assertTrue(started.wait(10))
        stats = self.stop(worker)  # returns only after the running job finished
        self.assertEqual(stats["succeeded"], 1)
        self.assertEqual(self.client.get(self.queue, "dr-1")["state"], "succeeded")

    def test_stop_interrupts_an_idle_long_poll(self):
        worker = self.start(lambda job: None)
        wait_for(lambda: worker.worker_id, what="registration")
        time.sleep(0.5)  # the worker is now in a 30 s long poll
        t0 = time.monotonic()
        self.stop(worker)
        self.assertLess(time.monotonic() - t0, 5)


if __name__ == "__main__":
    unittest.main()
