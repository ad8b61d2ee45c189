"""Bearer tokens and scopes against a real `unstuck serve` started with tokens."""

import unittest

import harness
from harness import TOKENS, unique

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.queue = unique("aq")
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def as_(self, scope=None, token=None):
        c = unstuck.Client(STACK.url, token=TOKENS[scope] if scope else token)
        self.clients.append(c)
        return c

    def test_no_token_is_unauthorized(self):
        with self.assertRaises(unstuck.Unauthorized) as cm:
            self.as_().queues()
        self.assertEqual(cm.exception.status, 401)
        self.assertFalse(cm.exception.transient)
        with self.assertRaises(unstuck.Unauthorized):
            self.as_(token="not-a-token").queues()
        with self.assertRaises(unstuck.Unauthorized):
            next(iter(self.as_().events()))  # not retried: a reconnect cannot fix it
        self.assertEqual(self.as_().healthz(), {"status": "ok"})  # open routes stay open

    def test_scopes(self):
        read, orch, worker = self.as_("read"), self.as_("orchestrator"), self.as_("worker")
        with self.assertRaises(unstuck.Forbidden) as cm:
            read.enqueue(self.queue, 1)
        self.assertEqual((cm.exception.status, cm.exception.slug), (403, "forbidden"))
        with self.assertRaises(unstuck.Forbidden):
            worker.enqueue(self.queue, 1)
        with self.assertRaises(unstuck.Forbidden):
            orch.claim(self.queue, "w-auth")
        with self.assertRaises(unstuck.Forbidden):
            read.register_worker([self.queue])

        orch.enqueue(self.queue, {"n": 1}, id="au-1")
        self.assertEqual(read.get(self.queue, "au-1")["state"], "queued")
        self.assertEqual(orch.get(self.queue, "au-1")["state"], "queued")
        claim = worker.claim(self.queue, "w-auth")[0]
        worker.heartbeat(claim["token"])
        worker.complete(claim["token"], "ok")
        self.assertEqual(self.as_("admin").get(self.queue, "au-1")["state"], "succeeded")
        with self.assertRaises(unstuck.Forbidden):
            read.cancel(self.queue, "au-1")


if __name__ == "__main__":
    unittest.main()
