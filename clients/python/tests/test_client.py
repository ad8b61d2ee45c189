"""Client round trips against a real `unstuck serve`: queues, enqueue, get, list, cancel,
claims (long poll), attempt calls and their typed refusals, the worker registry."""

import datetime
import inspect
import json
import re
import threading
import time
import unittest

import harness
from harness import parse_time, unique

import unstuck

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()



class ClientTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("q")

    def tearDown(self):
        self.client.close()

    def claim_one(self, worker="w-test"):
        claims = self.client.claim(self.queue, worker)
        self.assertEqual(len(claims), 1, claims)
        return claims[0]

    def test_health(self):
        self.assertEqual(self.client.healthz(), {"status": "ok"})
        self.assertEqual(self.client.readyz()["status"], "ready")
        self.assertIn("paths", self.client.openapi())

    def test_queue_settings(self):
        q = self.client.set_queue(self.queue, capacity=3, timings={"heartbeat_timeout": "20s"})
        self.assertEqual(q["name"], self.queue)
        self.assertEqual(q["capacity"], 3)
        self.assertEqual(q["timings"]["heartbeat_timeout"], 20000)  # ms in replies
        self.client.enqueue(self.queue, {"n": 1})
        q = self.client.get_queue(self.queue)
        self.assertEqual((q["depth"], q["available"], q["active"]), (1, 1, 0))
        self.assertIn(self.queue, [q["name"] for q in self.client.queues()])
        ex = self.client.enqueue(self.queue, {"n": 2})
        self.assertEqual(self.client.get(self.queue, ex["id"])["timings"]["heartbeat_timeout"],
                         20000)

    def test_enqueue_get_list_cancel(self):
        timings = {"heartbeat_timeout": "1s", "stuck_threshold": 500,
                   "cancel_grace": datetime.timedelta(seconds=2)}
        ex = self.client.enqueue(self.queue, {"goal": "summarise"}, id="run-1", timings=timings)
        self.assertEqual((ex["id"], ex["queue"], ex["state"], ex["attempt"]),
                         ("run-1", self.queue, "queued", 0))
        self.assertTrue(ex["created"])
        parse_time(ex["created_at"])

        got = self.client.get(self.queue, "run-1")
        self.assertEqual(got["payload"], {"goal": "summarise"})
        self.assertEqual(got["state"], "queued")
        t = got["timings"]
        self.assertEqual((t["heartbeat_timeout"], t["stuck_threshold"], t["cancel_grace"]),
                         (1000, 500, 2000))
        self.assertIsNone(got["checkpoint"])
        self.assertEqual(got["history"][0]["state"], "queued")

        for i in range(2, 6):
            self.client.enqueue(self.queue, i, id=f"run-{i}")
        page = self.client.list(self.queue, "queued", limit=2)
        self.assertEqual(len(page["items"]), 2)
        self.assertTrue(page["next_cursor"])
        ids = [e["id"] for e in self.client.list_all(self.queue, "queued", limit=2)]
        self.assertEqual(ids, [f"run-{i}" for i in range(1, 6)])  # claim order

        self.assertEqual(self.client.cancel(self.queue, "run-1", reason="not needed"),
                         {"outcome": "cancelled"})
        self.assertEqual(self.client.get(self.queue, "run-1")["state"], "cancelled")
        self.assertEqual([e["id"] for e in self.client.list_all(self.queue, "cancelled")],
                         ["run-1"])
        with self.assertRaises(unstuck.AlreadyTerminal) as cm:
            self.client.cancel(self.queue, "run-1")
        self.assertEqual((cm.exception.status, cm.exception.state), (409, "cancelled"))
        with self.assertRaises(unstuck.NotFound) as cm:
            self.client.get(self.queue, "no-such-run")
        self.assertEqual((cm.exception.status, cm.exception.slug), (404, "not-found"))

    def test_idempotent_replay_and_conflict(self):
        first = self.client.enqueue(self.queue, {"a": 1}, id="job-1")
        again = self.client.enqueue(self.queue, {"a": 1}, id="job-1")
        self.assertTrue(first["created"])
        self.assertFalse(again["created"])
        self.assertEqual(again["id"], "job-1")
        with self.assertRaises(unstuck.IdempotencyConflict) as cm:
            self.client.enqueue(self.queue, {"a": 2}, id="job-1")
        self.assertEqual((cm.exception.status, cm.exception.slug), (422, "idempotency-conflict"))
        self.assertEqual(self.client.get(self.queue, "job-1")["payload"], {"a": 1})

        # The Idempotency-Key header names the id.
        keyed = self.client.enqueue(self.queue, "x", idempotency_key="key-7")
        self.assertEqual((keyed["id"], keyed["created"]), ("key-7", True))
        replay = self.client.enqueue(self.queue, "x", idempotency_key="key-7")
        self.assertEqual((replay["id"], replay["created"]), ("key-7", False))

    def test_enqueue_batch(self):
        items = [{"id": f"b-{i}", "payload": {"i": i}} for i in range(3)]
        out = self.client.enqueue_batch(self.queue, items)
        self.assertEqual([(e["id"], e["created"], e["conflict"]) for e in out],
                         [(f"b-{i}", True, False) for i in range(3)])
        again = self.client.enqueue_batch(self.queue, items)
        self.assertEqual([e["created"] for e in again], [False] * 3)
        self.assertEqual(self.client.get(self.queue, "b-2")["payload"], {"i": 2})

    def test_bad_input_is_typed(self):
        with self.assertRaises(unstuck.BadRequest) as cm:
            self.client.enqueue(self.queue, 1, id="not a valid id!")
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(unstuck.BadRequest):
            self.client.enqueue(self.queue, 1, timings={"heartbeat_timeout": "soon"})
        with self.assertRaises(unstuck.BadRequest):
            self.client.list(self.queue, "queued", limit=0)
        self.assertEqual(self.client.list(self.queue, "queued")["items"], [])  # nothing written

    def test_claim_heartbeat_complete(self):
        self.client.register_worker(self.queue, worker_id="w-test", host="test", pid=1,
                                    version="t", heartbeat_interval="5s")
        self.client.enqueue(self.queue, {"n": 1}, id="c-1", timings={"heartbeat_timeout": 1000})
        claim = self.claim_one()
        self.assertEqual((claim["queue"], claim["id"], claim["attempt"]), (self.queue, "c-1", 1))
        self.assertEqual(claim["payload"], {"n": 1})
        self.assertIsNone(claim["checkpoint"])
        self.assertEqual(claim["heartbeat_timeout"], 1000)
        self.assertEqual(self.client.get(self.queue, "c-1")["state"], "dispatched")

        reply = self.client.heartbeat(claim["token"], progress="step 1", checkpoint={"step": 1})
        self.assertEqual(reply, {"cancel_requested": False})
        got = self.client.get(self.queue, "c-1")
        self.assertEqual((got["state"], got["progress"], got["checkpoint"], got["worker"]),
                         ("running", "step 1", {"step": 1}, "w-test"))
        self.client.worker_heartbeat("w-test", [(self.queue, "c-1")])
        mine = [w for w in self.client.workers() if w["worker_id"] == "w-test"]
        self.assertEqual(mine[0]["running"], [{"queue": self.queue, "id": "c-1"}])
        self.assertEqual(mine[0]["heartbeat_interval"], 5000)

        self.assertIn("slot_released", self.client.complete(claim["token"], {"answer": 42}))
        got = self.client.get(self.queue, "c-1")
        self.assertEqual((got["state"], got["result"]), ("succeeded", {"answer": 42}))
        self.assertIsNotNone(got["finished_at"])
        # A repeated call, or a heartbeat, learns the first outcome.
        for call in (lambda: self.client.complete(claim["token"], {"answer": 42}),
                     lambda: self.client.heartbeat(claim["token"])):
            with self.assertRaises(unstuck.AlreadyTerminal) as cm:
                call()
            self.assertEqual((cm.exception.status, cm.exception.state), (409, "succeeded"))

        self.client.deregister_worker("w-test")
        self.assertNotIn("w-test", [w["worker_id"] for w in self.client.workers()])
        with self.assertRaises(unstuck.UnknownWorker):
            self.client.deregister_worker("w-test")
        with self.assertRaises(unstuck.UnknownWorker):
            self.client.worker_heartbeat("w-test")

    def test_worker_registry_refuses_a_reused_id(self):
        reg = self.client.register_worker([self.queue])
        self.assertTrue(reg["worker_id"])  # generated by the server
        parse_time(reg["registered_at"])
        with self.assertRaises(unstuck.WorkerExists):
            self.client.register_worker([self.queue], worker_id=reg["worker_id"])
        self.client.deregister_worker(reg["worker_id"])

    def test_stale_attempt(self):
        self.client.enqueue(self.queue, 1, id="s-1",
                            timings={"backoff_base": 0, "max_attempts": 3})
        first = self.claim_one()
        self.client.heartbeat(first["token"], checkpoint={"at": 1})
        self.assertEqual(self.client.fail(first["token"], "flaky")["outcome"], "retry_scheduled")
        # The retry waits carrying attempt 1; a late call of attempt 1 is told it is over.
        with self.assertRaises(unstuck.StaleAttempt) as cm:
            self.client.heartbeat(first["token"])
        e = cm.exception
        self.assertEqual((e.current_attempt, e.state, e.attempt_ended, e.next_attempt),
                         (1, "queued", True, 2))
        second = self.claim_one()
        self.assertEqual((second["attempt"], second["checkpoint"]), (2, {"at": 1}))

        with self.assertRaises(unstuck.StaleAttempt) as cm:
            self.client.heartbeat(first["token"])
        e = cm.exception
        self.assertEqual((e.status, e.slug, e.current_attempt, e.state),
                         (409, "stale-attempt", 2, "dispatched"))
        self.assertEqual((e.attempt_ended, e.next_attempt), (True, None))
        with self.assertRaises(unstuck.StaleAttempt):
            self.client.complete(first["token"], "late")
        with self.assertRaises(unstuck.InvalidToken) as cm:
            self.client.heartbeat("garbage")
        self.assertEqual(cm.exception.status, 400)

        self.client.fail(second["token"], "bad input", retryable=False)
        got = self.client.get(self.queue, "s-1")
        self.assertEqual((got["state"], got["attempt"]), ("failed", 2))
        self.assertIn("bad input", got["last_error"])
        with self.assertRaises(unstuck.AlreadyTerminal) as cm:
            self.client.heartbeat(first["token"])  # terminal wins over stale
        self.assertEqual(cm.exception.state, "failed")

    def test_cancel_a_running_execution(self):
        self.client.enqueue(self.queue, 1, id="k-1")
        claim = self.claim_one()
        self.client.heartbeat(claim["token"])
        with self.assertRaises(unstuck.InvalidTransition):
            self.client.cancel_ack(claim["token"])  # nothing to acknowledge yet
        reply = self.client.cancel(self.queue, "k-1", reason="user asked")
        self.assertEqual((reply["outcome"], reply["already"]), ("requested", False))
        parse_time(reply["requested_at"])
        self.assertTrue(self.client.cancel(self.queue, "k-1")["already"])
        self.assertEqual(self.client.heartbeat(claim["token"]), {"cancel_requested": True})
        self.client.cancel_ack(claim["token"])
        self.assertEqual(self.client.get(self.queue, "k-1")["state"], "cancelled")

    def test_long_poll_claim(self):
        start = time.monotonic()
        self.assertEqual(self.client.claim(self.queue, "w-poll", wait_ms=500), [])
        self.assertGreaterEqual(time.monotonic() - start, 0.45)

        result = {}

        def poll():
            t0 = time.monotonic()
            result["claims"] = self.client.claim(self.queue, "w-poll", max=5, wait_ms=20000)
            result["took"] = time.monotonic() - t0

        waiter = threading.Thread(target=poll)
        waiter.start()
        time.sleep(0.5)
        self.client.enqueue(self.queue, {"late": True}, id="lp-1")
        waiter.join(25)
        self.assertFalse(waiter.is_alive())
        self.assertEqual([c["id"] for c in result["claims"]], ["lp-1"])
        self.assertLess(result["took"], 10)  # woken by the enqueue, not by the timeout

    def test_delayed_execution_is_not_claimable_yet(self):
        self.client.enqueue(self.queue, 1, id="d-1", delay="1h")
        self.assertEqual(self.client.claim(self.queue, "w-d"), [])
        q = self.client.get_queue(self.queue)
        self.assertEqual((q["depth"], q["available"]), (1, 0))

    def test_watchdog_state_and_metrics(self):
        state = self.client.watchdog_state()
        self.assertIn("partitions", state)
        self.assertIn("totals", state)
        self.assertIsInstance(self.client.metrics(), str)

    def test_find_retry_and_recent_events(self):
        c = self.client
        c.enqueue(self.queue, {"n": 1}, id="f1", timings={"max_attempts": 1})
        claim = self.claim_one()
        c.heartbeat(claim["token"], checkpoint={"step": 4})
        c.fail(claim["token"], "boom", retryable=False)
        c.enqueue(self.queue, {"n": 2}, id="q1")
        failed = c.find(queue=self.queue, state="failed")
        self.assertEqual([e["id"] for e in failed["items"]], ["f1"])
        self.assertIsNone(failed["next_cursor"])
        by_reason = c.find(queue=self.queue, stop_reason="failed")
        self.assertEqual([e["id"] for e in by_reason["items"]], ["f1"])
        again = c.retry(self.queue, "f1", reason="fixed")
        self.assertEqual((again["id"], again["created"]), ("f1.retry1", True))
        new = c.get(self.queue, "f1.retry1")
        self.assertEqual((new["retry_of"], new["checkpoint"]), (f"{self.queue}/f1", {"step": 4}))
        self.assertEqual(c.get(self.queue, "f1")["state"], "failed")
        with self.assertRaises(unstuck.InvalidTransition):
            c.retry(self.queue, "q1")
        recent = c.recent_events(queue=self.queue, limit=2)
        self.assertEqual([e["execution_id"] for e in recent], ["q1", "f1.retry1"])

    def test_activity_and_session(self):
        activity = self.client.watchdog_activity(minutes=3)
        self.assertEqual(len(activity["minutes"]), 3)
        self.assertIn("buckets", activity["lag"])
        session = self.client.session()
        self.assertEqual((session["scope"], session["can_steer"]), ("admin", True))
        with STACK.client("read") as reader:
            self.assertEqual(reader.session()["can_steer"], False)

    def test_connection_refused_is_transient(self):
        with unstuck.Client(f"http://127.0.0.1:{harness.free_port()}", timeout=2) as dead:
            with self.assertRaises(unstuck.ConnectionFailed) as cm:
                dead.queues()
            self.assertTrue(cm.exception.transient)


# The status each family base stands for: a problem type's class must be a subclass of it.
FAMILIES = {400: unstuck.BadRequest, 401: unstuck.Unauthorized, 403: unstuck.Forbidden,
            404: unstuck.NotFound, 405: unstuck.MethodNotAllowed, 409: unstuck.Conflict,
            413: unstuck.TooLarge, 422: unstuck.IdempotencyConflict, 500: unstuck.ServerError,
            503: unstuck.Unavailable, 504: unstuck.UnknownOutcome}


class RoutesAndProblemsTest(unittest.TestCase):
    """The client against the server's own description of itself (/openapi.json): a route
    or a problem type added to the server without the client fails these."""

    @classmethod
    def setUpClass(cls):
        cls.client = STACK.client()
        cls.doc = cls.client.openapi()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_route_table_is_exactly_the_servers_routes(self):
        server = {f"{method.upper()} {path}" for path, item in self.doc["paths"].items()
                  for method in item if method in ("get", "put", "post", "delete", "patch")}
        table = [f"{method} {path}" for method, path in unstuck.ROUTES.values()]
        self.assertEqual(len(set(table)), len(table), "each route once")
        self.assertEqual(sorted(server - set(table)), [],
                         "routes of the server the client has no method for")
        self.assertEqual(sorted(set(table) - server), [],
                         "routes of the client the server does not have")
        # Each entry is the Client method of that name, and that method names its route.
        for name in unstuck.ROUTES:
            method = getattr(unstuck.Client, name, None)
            self.assertTrue(callable(method), f"Client.{name}")
            self.assertIn(f'"{name}"', inspect.getsource(method), f"Client.{name} calls it")

    def test_every_problem_type_has_its_class_under_its_family(self):
        types = self.doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        slugs = [t.rsplit("/problems/", 1)[1] for t in types]
        self.assertEqual(sorted(set(slugs) - set(unstuck.PROBLEM_CLASSES)), [],
                         "problem types without a class")
        self.assertEqual(sorted(set(unstuck.PROBLEM_CLASSES) - set(slugs)), [],
                         "slugs the server never sends")
        classes = [unstuck.PROBLEM_CLASSES[slug] for slug in slugs]
        self.assertEqual(len(set(classes)), len(classes), "one class per problem type")
        for slug, cls in zip(slugs, classes):
            self.assertIs(getattr(unstuck, cls.__name__, None), cls, f"{slug} is exported")
            # The problem page gives the type's status; its class is under that family.
            page = self.client.problem(slug)
            status = int(re.search(r"HTTP (\d{3})", page).group(1))
            self.assertTrue(issubclass(cls, FAMILIES[status]), f"{slug} ({status}): {cls}")
            body = json.dumps({"type": f"/problems/{slug}", "title": "T", "status": status,
                               "detail": "what happened", "limit": 7, "field": "payload"})
            err = unstuck.errors.from_response(status, {"Retry-After": "2"}, body.encode())
            self.assertIs(type(err), cls)
            self.assertEqual((err.status, err.type, err.slug, err.detail, err.limit, err.field),
                             (status, f"/problems/{slug}", slug, "what happened", 7,
                              "payload"))
            self.assertEqual(err.transient, status >= 500)
            if status == 503:
                self.assertTrue(err.nothing_written)
                self.assertEqual(err.retry_after, 2.0)

    def test_no_route_and_method_not_allowed_from_the_server(self):
        transport = self.client.transport
        err = unstuck.errors.from_response(*transport.send("GET", "/v1/no-such-route"))
        self.assertIsInstance(err, unstuck.NoRoute)
        self.assertIsInstance(err, unstuck.NotFound)
        self.assertEqual((err.status, err.slug), (404, "no-route"))
        err = unstuck.errors.from_response(*transport.send("DELETE", "/v1/queues"))
        self.assertIsInstance(err, unstuck.MethodNotAllowed)
        self.assertEqual((err.status, err.slug), (405, "method-not-allowed"))
        with self.assertRaises(unstuck.NotFound):
            self.client.problem("no-such-problem")

    def test_pin_and_unpin(self):
        queue = unique("pq")
        self.client.enqueue(queue, 1, id="p-1")
        self.assertEqual(self.client.pin(queue, "p-1"), {"pinned": True, "state": "queued"})
        self.assertEqual(self.client.pin(queue, "p-1"), {"pinned": True, "state": "queued"})
        self.assertTrue(self.client.get(queue, "p-1")["pinned"])
        self.assertEqual(self.client.unpin(queue, "p-1"), {"pinned": False, "state": "queued"})
        self.assertFalse(self.client.get(queue, "p-1")["pinned"])
        with self.assertRaises(unstuck.NotFound) as cm:
            self.client.pin(queue, "no-such-id")
        self.assertEqual((cm.exception.queue, cm.exception.id), (queue, "no-such-id"))


if __name__ == "__main__":
    unittest.main()
