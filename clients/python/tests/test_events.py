"""The SSE event streams against a real `unstuck serve`: an execution's transitions, the
worker events, and resuming with Last-Event-ID after the connection drops, losing and
repeating nothing."""

import threading
import unittest

import harness
from harness import unique

STACK = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class EventsTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("eq")
        self.addCleanup(self.client.close)

    def open_stream(self, queue="same"):
        """A stream that starts right after a marker event of this test's queue, so every
        event the test causes afterwards is in it however late the connection is made."""
        marker = unique("marker")
        self.client.enqueue(self.queue, None, id=marker)
        self.client.cancel(self.queue, marker)  # so that no claim takes it
        last = self.client.execution_events(self.queue, marker)[-1]["id"]
        stream = self.client.events(queue=self.queue if queue == "same" else queue,
                                    last_event_id=last)
        guard = threading.Timer(30, stream.close)  # never hang the suite
        guard.daemon = True
        guard.start()
        self.addCleanup(guard.cancel)
        self.addCleanup(stream.close)
        return stream

    def take(self, stream, n, execution_prefix=None):
        got = []
        for event in stream:
            if execution_prefix and not event["execution_id"].startswith(execution_prefix):
                continue
            got.append(event)
            if len(got) == n:
                return got
        self.fail(f"stream ended after {len(got)} of {n} events: {got}")

    def test_stream_shows_an_executions_transitions(self):
        stream = self.open_stream()
        self.client.enqueue(self.queue, {"x": 1}, id="a-1")
        token = self.client.claim(self.queue, "w-ev")[0]["token"]
        self.client.heartbeat(token, progress="working")
        self.client.complete(token, "done")

        events = self.take(stream, 4)
        self.assertEqual([e["execution_id"] for e in events], ["a-1"] * 4)
        self.assertEqual([(e["from"], e["to"]) for e in events],
                         [(None, "queued"), ("queued", "dispatched"),
                          ("dispatched", "running"), ("running", "succeeded")])
        self.assertEqual([e["attempt"] for e in events], [0, 1, 1, 1])
        first = events[0]
        self.assertEqual((first["queue"], first["reason"]), (self.queue, "enqueued"))
        self.assertTrue(first["id"].startswith(f"{first['partition']}-"))
        self.assertEqual(stream.last_event_id, events[-1]["id"])
        # The same transitions, read back.
        stored = self.client.execution_events(self.queue, "a-1")
        self.assertEqual([e["id"] for e in stored], [e["id"] for e in events])

    def test_resume_after_a_dropped_connection(self):
        stream = self.open_stream()
        self.client.enqueue(self.queue, 0, id="r-0")
        seen = self.take(stream, 1)

        # Dropped between two reads: these five happen while nobody is connected.
        stream.disconnect()
        for i in range(1, 6):
            self.client.enqueue(self.queue, i, id=f"r-{i}")
        seen += self.take(stream, 5)
        self.assertGreaterEqual(stream.reconnects, 1)

        # Dropped under a blocked read (the socket closed from another thread).
        def drop_then_enqueue():
            stream.disconnect()
            self.client.enqueue(self.queue, 6, id="r-6")
        threading.Timer(0.3, drop_then_enqueue).start()
        seen += self.take(stream, 1)
        self.assertGreaterEqual(stream.reconnects, 2)

        self.assertEqual([e["execution_id"] for e in seen], [f"r-{i}" for i in range(7)])
        self.assertEqual(len({e["id"] for e in seen}), 7)  # nothing twice

        # A new stream resumes where this one stopped.
        later = self.client.events(queue=self.queue, last_event_id=stream.last_event_id)
        self.addCleanup(later.close)
        guard = threading.Timer(30, later.close)
        guard.daemon = True
        guard.start()
        self.addCleanup(guard.cancel)
        self.client.enqueue(self.queue, 7, id="r-7")
        self.assertEqual([e["execution_id"] for e in self.take(later, 1)], ["r-7"])

    def test_worker_events_live_follows_and_resumes(self):
        # The stream starts after the newest worker event so far (0-0: none yet).
        newest = self.client.worker_events(newest=True, limit=1)
        start = newest[-1]["stream_id"] if newest else "0-0"
        worker_id = self.client.register_worker([self.queue])["worker_id"]
        self.client.request_worker(worker_id, "drain", reason="deploy")
        stream = self.client.worker_events_live(last_event_id=start)
        guard = threading.Timer(30, stream.close)  # never hang the suite
        guard.daemon = True
        guard.start()
        self.addCleanup(guard.cancel)
        self.addCleanup(stream.close)
        mine = (e for e in stream if e["worker_id"] == worker_id)
        first = next(mine)
        self.assertEqual(first["reason"], "asked_to_drain")
        self.assertEqual(stream.last_event_id, first["stream_id"])
        # A dropped connection resumes after the last event: the next one, not it again.
        stream.disconnect()
        self.client.reset_worker(worker_id, reason="by hand")
        second = next(mine)
        self.assertEqual(second["reason"], "circuit_reset")
        self.assertGreaterEqual(stream.reconnects, 1)
        self.assertEqual(self.client.worker_events(newest=True, limit=1)[-1]["stream_id"],
                         second["stream_id"])
        self.client.deregister_worker(worker_id)

    def test_stream_of_every_queue(self):
        stream = self.open_stream(queue=None)
        self.client.enqueue(self.queue, 1, id="all-1")
        event = self.take(stream, 1, execution_prefix="all-")[0]
        self.assertEqual((event["queue"], event["to"]), (self.queue, "queued"))


if __name__ == "__main__":
    unittest.main()
