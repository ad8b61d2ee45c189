"""Trace context in the worker: ``job.traceparent`` is the context stored at enqueue, and
the ``process {queue}`` span is made when the OpenTelemetry API is importable (checked
with the SDK's in-memory exporter when that is installed too; skipped otherwise) and
nothing is made, nothing fails, when it is not."""

import threading
import unittest

import harness
from harness import unique, wait_for

import unstuck
from unstuck import _otel

STACK = None
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE}-{PARENT}-01"

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:
    TracerProvider = None


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class TracingTest(unittest.TestCase):
    def setUp(self):
        self.client = STACK.client()
        self.queue = unique("tq")

    def tearDown(self):
        self.client.close()

    def run_one(self, handler):
        """Enqueues one execution with INCOMING, runs a worker until it succeeded."""
        self.client.enqueue(self.queue, {"n": 1}, id="t1", traceparent=INCOMING)
        worker = unstuck.Worker(STACK.client(), self.queue, handler)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: self.client.get(self.queue, "t1")["state"] == "succeeded",
                     what="t1 succeeded")
        finally:
            worker.stop()
            thread.join(30)
            worker.client.close()
        return self.client.get(self.queue, "t1")

    def test_the_handler_gets_the_stored_context(self):
        seen = []
        execution = self.run_one(lambda job: seen.append(job.traceparent))
        # serve exports no spans here: the caller's context is stored as it came.
        self.assertEqual(execution["traceparent"], INCOMING)
        self.assertEqual(seen, [INCOMING])

    def test_without_the_api_nothing_is_made_and_the_job_runs(self):
        saved, _otel._trace = _otel._trace, None
        try:
            self.assertFalse(_otel.available())
            seen = []
            self.run_one(lambda job: seen.append(job.traceparent))
            self.assertEqual(seen, [INCOMING])
        finally:
            _otel._trace = saved

    def test_a_bad_traceparent_header_is_ignored(self):
        self.client.enqueue(self.queue, None, id="bad", traceparent="00-nope")
        self.assertNotIn("traceparent", self.client.get(self.queue, "bad"))

    @unittest.skipIf(TracerProvider is None, "opentelemetry-sdk is not installed")
    def test_the_process_span_links_to_the_stored_context(self):
        from opentelemetry import trace
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        inner = []

        def handler(job):
            inner.append(trace.get_current_span().get_span_context().span_id)

        self.run_one(handler)
        spans = [s for s in exporter.get_finished_spans() if s.name == f"process {self.queue}"]
        self.assertEqual(len(spans), 1, spans)
        span = spans[0]
        self.assertEqual(span.kind, trace.SpanKind.CONSUMER)
        self.assertEqual(inner, [span.context.span_id], "the handler runs inside it")
        self.assertEqual([(l.context.trace_id, l.context.span_id) for l in span.links],
                         [(int(TRACE, 16), int(PARENT, 16))])
        attrs = dict(span.attributes)
        self.assertEqual(attrs["messaging.system"], "unstuck")
        self.assertEqual(attrs["messaging.destination.name"], self.queue)
        self.assertEqual(attrs["messaging.message.id"], "t1")
        self.assertEqual(attrs["messaging.operation.type"], "process")
        self.assertEqual(attrs["unstuck.attempt"], 1)


if __name__ == "__main__":
    unittest.main()
