"""Trace context in the worker: ``job.traceparent`` is the context stored at enqueue, and
the ``process {queue}`` span is made when the OpenTelemetry API is importable and nothing
is made, nothing fails, when it is not. The span is checked against a stand-in of the slice
of ``opentelemetry.trace`` the worker calls (always), and with the SDK's in-memory
exporter when ``opentelemetry-sdk`` is installed (skipped otherwise: the suite adds no
dependency)."""

import contextlib
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


class StandInTrace:
    """The part of ``opentelemetry.trace`` that ``unstuck._otel`` uses, recording each span
    started: its name, kind, links, attributes, status, and whether it is open."""

    class SpanKind:
        CONSUMER = "consumer"

    class StatusCode:
        ERROR = "error"

    class TraceFlags(int):
        pass

    class SpanContext:
        def __init__(self, trace_id, span_id, is_remote=False, trace_flags=None):
            self.trace_id, self.span_id, self.is_remote = trace_id, span_id, is_remote
            self.trace_flags = trace_flags

    class Link:
        def __init__(self, context):
            self.context = context

    class Status:
        def __init__(self, code, description=None):
            self.code, self.description = code, description

    class Span:
        def __init__(self, name, kind, links, attributes):
            self.name, self.kind, self.links = name, kind, links
            self.attributes, self.status, self.open = attributes, None, True

        def set_status(self, status):
            self.status = status

    spans = []

    @classmethod
    def get_tracer(cls, name):
        return cls

    @classmethod
    @contextlib.contextmanager
    def start_as_current_span(cls, name, kind=None, links=(), attributes=None, **_):
        span = cls.Span(name, kind, list(links), dict(attributes or {}))
        cls.spans.append(span)
        try:
            yield span
        finally:
            span.open = False


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

    def test_the_process_span_is_made_through_the_api(self):
        saved, _otel._trace = _otel._trace, StandInTrace
        StandInTrace.spans = []
        try:
            inside = []
            self.run_one(lambda job: inside.append(StandInTrace.spans[-1].open))
            failing = unstuck.Worker(STACK.client(), self.queue, self.fails)
            self.client.enqueue(self.queue, None, id="t2", traceparent=INCOMING)
            thread = threading.Thread(target=failing.run, daemon=True)
            thread.start()
            try:
                wait_for(lambda: self.client.get(self.queue, "t2")["state"] == "failed",
                         what="t2 failed")
            finally:
                failing.stop()
                thread.join(30)
                failing.client.close()
        finally:
            _otel._trace = saved
        spans = [s for s in StandInTrace.spans if s.name == f"process {self.queue}"]
        self.assertEqual(len(spans), 2, [s.name for s in StandInTrace.spans])
        ok, failed = spans
        self.assertEqual(inside, [True], "the handler runs inside the span")
        self.assertFalse(ok.open)
        self.assertEqual(ok.kind, StandInTrace.SpanKind.CONSUMER)
        self.assertEqual([(l.context.trace_id, l.context.span_id, l.context.is_remote)
                          for l in ok.links], [(int(TRACE, 16), int(PARENT, 16), True)])
        self.assertEqual(ok.attributes["messaging.system"], "unstuck")
        self.assertEqual(ok.attributes["messaging.destination.name"], self.queue)
        self.assertEqual(ok.attributes["messaging.message.id"], "t1")
        self.assertEqual(ok.attributes["messaging.operation.type"], "process")
        self.assertEqual(ok.attributes["unstuck.attempt"], 1)
        self.assertIn("unstuck.worker.id", ok.attributes)
        self.assertIsNone(ok.status, "a completed attempt sets no error")
        self.assertEqual(failed.attributes["messaging.message.id"], "t2")
        self.assertEqual(failed.status.code, StandInTrace.StatusCode.ERROR)
        self.assertIn("no such tool", failed.status.description)

    @staticmethod
    def fails(job):
        raise unstuck.Fatal("no such tool")

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
