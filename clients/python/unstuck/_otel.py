"""The worker's ``process {queue}`` span, made only when the OpenTelemetry API package
(``opentelemetry-api``) can be imported; without it, nothing (no dependency is added).

The span is a CONSUMER span linked to the context stored at enqueue (the claim's
``traceparent``), with the messaging attributes of the server's spans (docs/tracing.md).
It is the current span while the handler runs, so the handler's own spans are its
children. Where spans go is the program's choice: the API's global tracer provider."""

import contextlib
import re

try:
    from opentelemetry import trace as _trace
except ImportError:  # the API is optional
    _trace = None

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def available():
    """True when spans are made (the OpenTelemetry API is importable)."""
    return _trace is not None


def span_context(traceparent):
    """The SpanContext of a W3C traceparent, None when absent or malformed."""
    if _trace is None or not traceparent:
        return None
    m = _TRACEPARENT.match(traceparent.strip())
    if not m or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)):
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return _trace.SpanContext(trace_id, span_id, is_remote=True,
                              trace_flags=_trace.TraceFlags(int(m.group(4), 16)))


@contextlib.contextmanager
def process(job, worker_id):
    """Runs the handler's block inside the ``process`` span (or no span); yields a
    function the worker calls with the outcome (``None`` or an error message)."""
    if _trace is None:
        yield lambda error=None: None
        return
    linked = span_context(job.traceparent)
    attributes = {
        "messaging.system": "unstuck",
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.id,
        "messaging.operation.type": "process",
        "unstuck.worker.id": worker_id,
        "unstuck.attempt": job.attempt,
    }
    tracer = _trace.get_tracer("unstuck")
    with tracer.start_as_current_span(
            f"process {job.queue}", kind=_trace.SpanKind.CONSUMER,
            links=[_trace.Link(linked)] if linked else [], attributes=attributes,
            record_exception=False, set_status_on_exception=False) as span:

        def ended(error=None):
            if error:
                span.set_status(_trace.Status(_trace.StatusCode.ERROR, error))

        yield ended
