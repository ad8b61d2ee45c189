"""The HTTP plumbing shared by the client and the event stream: a small pool of keep-alive
connections, the headers every request carries, and one request with the rule that tells a
call that never reached the server (``ConnectionFailed``: nothing happened) from one whose
reply was lost (``UnknownOutcome``: it may have taken effect)."""

import http.client
import json
import socket
import threading
import urllib.parse

from .errors import ConnectionFailed, UnknownOutcome

__all__ = ["Transport", "UNSET", "abort"]

UNSET = object()
_MAX_IDLE = 16  # idle keep-alive connections kept per client
USER_AGENT = "unstuck-python"


class Transport:
    """Connections to one ``unstuck serve``. Thread-safe: each call borrows a keep-alive
    connection from a small pool."""

    def __init__(self, base_url, token=None, timeout=30.0):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], not {base_url!r}")
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._lock = threading.Lock()
        self._idle = []          # LIFO of idle connections
        self._open = set()       # every connection not yet closed, for close()
        self._closed = False

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Closes every connection, aborting calls in flight."""
        with self._lock:
            self._closed = True
            conns, self._open, self._idle = list(self._open), set(), []
        for conn in conns:
            abort(conn)

    def url(self, path, query=None):
        url = self._prefix + path
        if query:
            pairs = [(k, v) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def headers(self, extra=None, body=False):
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def new_connection(self, timeout):
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout)
        with self._lock:
            if self._closed:
                raise ConnectionFailed(detail="the client is closed")
            self._open.add(conn)
        return conn

    def connect(self, conn, timeout):
        try:
            conn.connect()
        except OSError as e:
            self.discard(conn)
            raise ConnectionFailed(detail=f"cannot connect to {self.base_url}: {e}") from e
        conn.sock.settimeout(timeout)

    def _borrow(self):
        with self._lock:
            if self._closed:
                raise ConnectionFailed(detail="the client is closed")
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn):
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE and conn in self._open:
                self._idle.append(conn)
                return
        self.discard(conn)

    def discard(self, conn):
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def send(self, method, path, body=UNSET, query=None, headers=None, timeout=None):
        """One request; returns (status, headers, body bytes). A pooled connection the
        server closed while idle is retried once on a fresh one."""
        timeout = self.timeout if timeout is None else timeout
        data = None if body is UNSET else json.dumps(body, separators=(",", ":")).encode()
        hdrs = self.headers(headers, body=data is not None)
        url = self.url(path, query)
        while True:
            conn = self._borrow()
            reused = conn is not None
            if conn is None:
                conn = self.new_connection(timeout)
                self.connect(conn, timeout)
            elif conn.sock is None:
                self.connect(conn, timeout)
            else:
                conn.sock.settimeout(timeout)
            replied = False
            try:
                conn.request(method, url, body=data, headers=hdrs)
                resp = conn.getresponse()
                replied = True
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.discard(conn)
                if self._closed:
                    raise ConnectionFailed(detail="the client was closed during the call") from e
                if reused and not replied and not isinstance(e, socket.timeout):
                    continue  # stale keep-alive connection: the request never got through
                what = "no reply" if isinstance(e, socket.timeout) else f"connection lost ({e!r})"
                raise UnknownOutcome(detail=f"{method} {path}: {what}; "
                                            "retrying the same call is safe") from e
            if resp.will_close:
                self.discard(conn)
            else:
                self._give_back(conn)
            return resp.status, dict(resp.getheaders()), payload


def abort(conn):
    # shutdown() wakes a thread blocked in recv on this socket; close() alone would not.
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
