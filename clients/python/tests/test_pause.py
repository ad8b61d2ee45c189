"""Queue pause and resume against a real `unstuck serve`: admin only, a long-poll claim
waits through the pause and gets the work right after the resume, repeats change
nothing, an unknown queue is UnknownQueue."""

import threading
import time
import unittest

import harness
from harness import unique

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class PauseTest(unittest.TestCase):
    def setUp(self):
        self.admin = STACK.client("admin")
        self.worker = STACK.client("worker")
        self.queue = unique("pq")

    def tearDown(self):
        self.admin.close()
        self.worker.close()

    def test_a_paused_queue_is_not_claimed_and_a_waiting_claim_gets_it_after_resume(self):
        self.admin.enqueue(self.queue, {"n": 1}, id="p-1")
        paused = self.admin.pause_queue(self.queue, reason="provider outage")
        self.assertEqual((paused["paused"], paused["changed"]), (True, True))
        self.assertEqual(paused["pause"]["by"], "http:admin")
        self.assertEqual(paused["pause"]["reason"], "provider outage")
        again = self.admin.pause_queue(self.queue, reason="other")
        self.assertFalse(again["changed"])
        self.assertEqual(again["pause"]["reason"], "provider outage")
        q = self.admin.get_queue(self.queue)
        self.assertTrue(q["paused"])
        self.assertEqual(q["pause"]["since"], paused["pause"]["since"])
        listed = {q["name"]: q for q in self.admin.queues()}
        self.assertTrue(listed[self.queue]["paused"])

        self.assertEqual(self.worker.claim(self.queue, "w-p"), [])
        result = {}

        def poll():
            with self.worker.copy() as c:
                result["claims"] = c.claim(self.queue, "w-p", wait_ms=20000)

        waiter = threading.Thread(target=poll)
        waiter.start()
        time.sleep(0.5)
        self.assertTrue(waiter.is_alive(), "the long poll waits while paused")
        resumed = self.admin.resume_queue(self.queue, reason="back")
        self.assertEqual((resumed["paused"], resumed["changed"]), (False, True))
        waiter.join(10)
        self.assertFalse(waiter.is_alive(), "woken by the resume, not its timeout")
        self.assertEqual([c["id"] for c in result["claims"]], ["p-1"])
        self.assertFalse(self.admin.resume_queue(self.queue)["changed"])
        self.assertFalse(self.admin.get_queue(self.queue)["paused"])

    def test_only_admin_may_pause_and_an_unknown_queue_is_refused(self):
        self.admin.enqueue(self.queue, {"n": 1})
        for scope in ("worker", "orchestrator", "read"):
            with STACK.client(scope) as c:
                with self.assertRaises(unstuck.Forbidden):
                    c.pause_queue(self.queue, reason="x")
                with self.assertRaises(unstuck.Forbidden):
                    c.resume_queue(self.queue)
        self.assertFalse(self.admin.get_queue(self.queue)["paused"])
        with self.assertRaises(unstuck.UnknownQueue) as cm:
            self.admin.pause_queue(unique("nope"), reason="x")
        self.assertEqual(cm.exception.status, 404)
        with self.assertRaises(unstuck.InvalidArgument):
            self.admin.pause_queue(self.queue, reason="")
        self.assertTrue(self.admin.session()["can_admin"])


if __name__ == "__main__":
    unittest.main()
