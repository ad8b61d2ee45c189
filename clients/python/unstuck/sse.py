"""The event streams (``GET /v1/events``, ``GET /v1/workers/events/live``): Server-Sent
Events followed across dropped connections, resumed with ``Last-Event-ID`` so that no event
is lost."""

import collections
import http.client
import json
import logging
import re
import threading

from . import errors
from .routes import route_path
from .transport import abort

__all__ = ["EventStream", "SSEParser"]

log = logging.getLogger("unstuck")
_EOL = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """The SSE wire format, one line at a time (the WHATWG rules: ``data`` lines join with
    newlines, ``id`` persists across messages, comments start with ``:``)."""

    def __init__(self, last_event_id=None):
        self.last_event_id = last_event_id
        self.retry_ms = None
        self._data = []
        self._event = ""

    def feed(self, line):
        """Takes one line (str, without its end); returns ``(id, event, data)`` when the
        line completes a message, else None."""
        if not line:
            data, event = self._data, self._event or "message"
            self._data, self._event = [], ""
            if not data:
                return None
            return self.last_event_id, event, "\n".join(data)
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


def read_lines(read1):
    """Lines (str) from a byte source: ``read1()`` returns what has arrived, b"" at EOF.
    Accepts CRLF, LF and lone CR endings."""
    buf = b""
    while True:
        chunk = read1()
        if not chunk:
            return
        buf += chunk
        start = 0
        for m in _EOL.finditer(buf):
            if m.group() == b"\r" and m.end() == len(buf):
                break  # a CR at the end may be the first half of a CRLF
            yield buf[start:m.start()].decode("utf-8", "replace")
            start = m.end()
        buf = buf[start:]


def _position(event_id):
    """``<partition>-<ms>-<seq>`` (the events) as (partition, (ms, seq)), ``<ms>-<seq>``
    (the worker events: one stream) as ("", (ms, seq)); None when it is neither."""
    parts = (event_id or "").split("-")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        return None
    return ("" if len(parts) == 2 else parts[0]), (int(parts[-2]), int(parts[-1]))


class EventStream:
    """An iterator of Event objects (dicts) from ``GET /v1/events`` (``Client.events``), or
    of WorkerEvent objects from ``GET /v1/workers/events/live``
    (``Client.worker_events_live``).

    A dropped connection (EOF, reset, nothing heard for ``idle_timeout`` seconds, a 5xx)
    is reopened with ``Last-Event-ID``; the server then resumes after that event in its
    partition and from the same millisecond in the others, so events may come twice: they
    are dropped here by keeping, per partition, the newest stream id seen (a partition's
    stream ids only grow). Errors that retrying cannot fix (401, 403, 400) are raised.

    ``last_event_id`` is the id of the last event handed out: pass it to a new stream to
    resume later. ``close()`` ends the iteration (from any thread); ``disconnect()`` drops
    the current connection only (the iterator reconnects).
    """

    def __init__(self, client, queue=None, last_event_id=None, reconnect_delay=None,
                 max_reconnect_delay=10.0, idle_timeout=45.0, route="events"):
        self.queue = queue
        self.route = route  # a name of unstuck.routes.ROUTES
        self.last_event_id = last_event_id
        self.reconnects = 0
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.idle_timeout = idle_timeout  # keep-alive comments come every 15 s
        self._client = client
        self._newest = {}  # partition -> (ms, seq) of the newest event handed out
        self._recent = collections.OrderedDict()  # ids that are not <partition>-<stream id>
        self._server_retry = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conn = None
        self._gen = None
        if last_event_id:
            self._is_new(last_event_id)

    def __iter__(self):
        return self

    def __next__(self):
        if self._gen is None:
            self._gen = self._follow()
        return next(self._gen)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return self._closed.is_set()

    def close(self):
        """Ends the iteration: a blocked ``next()`` raises StopIteration."""
        self._closed.set()
        self.disconnect()

    def disconnect(self):
        """Drops the current connection; the iteration goes on after a reconnect."""
        with self._lock:
            conn = self._conn
        if conn is not None:
            abort(conn)

    # ----- internals -----

    def _stopped(self):
        return self._closed.is_set() or self._client.transport.closed

    def _delay(self, failures):
        base = self.reconnect_delay
        if base is None:
            base = self._server_retry / 1000.0 if self._server_retry is not None else 0.25
        return min(self.max_reconnect_delay, base * (2 ** max(0, failures - 1)))

    def _is_new(self, event_id):
        pos = _position(event_id)
        if pos is None:
            if event_id in self._recent:
                return False
            self._recent[event_id] = None
            if len(self._recent) > 10000:
                self._recent.popitem(last=False)
            return True
        partition, at = pos
        newest = self._newest.get(partition)
        if newest is not None and at <= newest:
            return False
        self._newest[partition] = at
        return True

    def _open(self):
        transport = self._client.transport
        conn = transport.new_connection(self.idle_timeout)
        with self._lock:
            self._conn = conn
        if self._closed.is_set():
            raise errors.ConnectionFailed(detail="the stream is closed")
        transport.connect(conn, self.idle_timeout)
        extra = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            extra["Last-Event-ID"] = self.last_event_id
        try:
            method, path = route_path(self.route)
            query = {"queue": self.queue} if self.queue is not None else None
            conn.request(method, transport.url(path, query), headers=transport.headers(extra))
            resp = conn.getresponse()
            if resp.status != 200:
                raise errors.from_response(resp.status, dict(resp.getheaders()), resp.read())
        except (OSError, http.client.HTTPException) as e:
            raise errors.ConnectionFailed(detail=f"event stream: {e!r}") from e
        return resp

    def _drop(self):
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._client.transport.discard(conn)

    def _follow(self):
        failures = 0
        try:
            while not self._stopped():
                try:
                    resp = self._open()
                except errors.UnstuckError as e:
                    self._drop()
                    if self._stopped():
                        return
                    if not e.transient:
                        raise
                    failures += 1
                    wait = getattr(e, "retry_after", None) or self._delay(failures)
                    log.warning("event stream: %s; reconnecting in %.1fs", e, wait)
                    if self._closed.wait(wait):
                        return
                    continue
                failures = 0
                yield from self._messages(resp)
                self._drop()
                if self._stopped():
                    return
                self.reconnects += 1
                if self._closed.wait(self._delay(1)):
                    return
        finally:
            self._drop()

    def _messages(self, resp):
        parser = SSEParser(self.last_event_id)
        try:
            for line in read_lines(lambda: resp.read1(65536)):
                message = parser.feed(line)
                if parser.retry_ms is not None:
                    self._server_retry = parser.retry_ms
                if message is None:
                    continue
                event_id, _, data = message
                try:
                    event = json.loads(data)
                except ValueError:
                    log.warning("event stream: message %s is not JSON: %.200s", event_id, data)
                    continue
                if isinstance(event, dict) and event_id and "id" not in event:
                    event["id"] = event_id
                if event_id and not self._is_new(event_id):
                    continue
                if event_id:
                    self.last_event_id = event_id
                yield event
        except (OSError, http.client.HTTPException, ValueError) as e:
            if not self._stopped():
                log.info("event stream dropped (%r); resuming after %s", e, self.last_event_id)
