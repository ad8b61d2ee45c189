"""Worker remediation as a Python worker sees it, against a real `unstuck serve` whose
watchdog expects another version: the registry heartbeat reply asks the worker to restart
(tier 1), the Worker hands its job back and returns; an operator's reset over HTTP."""

import threading
import unittest

import harness
from harness import unique, wait_for

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack(env={
        "UNSTUCK_WATCHDOG__EXPECTED_WORKER_VERSION": "v-new",
        "UNSTUCK_WATCHDOG__TIERS__ENABLED": "true",
        "UNSTUCK_WATCHDOG__TIERS__INTERVAL": "100ms",
        "UNSTUCK_WATCHDOG__TIERS__COOLDOWN_COOPERATIVE": "1h",
    }).start()


def tearDownModule():
    STACK.stop()


class TiersTest(unittest.TestCase):
    def test_an_outdated_worker_is_asked_to_restart_and_hands_its_job_back(self):
        client = STACK.client()
        queue = unique("tq")
        client.enqueue(queue, {"n": 1}, id="job", timings={"backoff_base": 0})
        started = threading.Event()

        def handler(job):
            started.set()
            job.cancelled.wait(30)
            job.raise_if_cancelled()
            return {"finished": True}

        worker = unstuck.Worker(STACK.client(), queue, handler, version="v-old",
                                heartbeat_interval=0.1, handle_signals=False)
        result = {}
        thread = threading.Thread(target=lambda: result.update(worker.run()))
        thread.start()
        self.assertTrue(started.wait(15), "the job started")
        thread.join(15)
        self.assertFalse(thread.is_alive(), "the worker returned when asked to restart")
        self.assertEqual(worker.stopped_by, "restart")
        self.assertEqual(result["retried"], 1, result)
        execution = client.get(queue, "job")
        self.assertEqual((execution["state"], execution["attempt"]), ("queued", 1))

        # It deregistered; its tier-1 event stays in the log, and the reset of an unknown
        # worker is refused.
        events = client.worker_events()
        mine = [e for e in events if e["worker_id"] == worker.worker_id]
        self.assertEqual([e["reason"] for e in mine], ["tier_1"], events)
        with self.assertRaises(unstuck.errors.UnknownWorker):
            client.reset_worker(worker.worker_id)
        worker.client.close()
        client.close()

    def test_an_operator_resets_a_worker_over_http(self):
        client = STACK.client()
        reg = client.register_worker([unique("rq")], version="v-old")
        worker_id = reg["worker_id"]
        wait_for(lambda: client.worker_heartbeat(worker_id).get("request") == "restart",
                 what="the restart request")
        reset = client.reset_worker(worker_id, reason="deployed by hand")
        self.assertEqual(reset, {"previous_tier": 1, "circuit_was_open": False})
        reasons = [e["reason"] for e in client.worker_events()
                   if e["worker_id"] == worker_id]
        self.assertEqual(reasons[:2], ["tier_1", "circuit_reset"])
        client.deregister_worker(worker_id)
        client.close()

    def test_a_worker_asked_to_drain_finishes_its_job_and_returns(self):
        client = STACK.client()
        queue = unique("dq")
        client.enqueue(queue, {"n": 1}, id="job")
        go = threading.Event()
        started = threading.Event()

        def handler(job):
            started.set()
            go.wait(30)
            return {"finished": True}

        worker = unstuck.Worker(STACK.client(), queue, handler, version="v-new",
                                heartbeat_interval=0.1, handle_signals=False)
        result = {}
        thread = threading.Thread(target=lambda: result.update(worker.run()))
        thread.start()
        self.assertTrue(started.wait(15), "the job started")
        client.request_worker(worker.worker_id, "drain", reason="deploy")
        wait_for(lambda: worker.stopped_by == "drain", what="the drain request")
        go.set()
        thread.join(15)
        self.assertFalse(thread.is_alive(), "the worker returned after draining")
        self.assertEqual(result["succeeded"], 1, result)
        self.assertEqual(client.get(queue, "job")["state"], "succeeded")
        worker.client.close()
        client.close()


if __name__ == "__main__":
    unittest.main()
