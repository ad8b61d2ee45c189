"""Test harness: a throwaway redis-server and a real `unstuck serve` (UNSTUCK_BIN) on free
ports, started per test module and killed at its end."""

import datetime
import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
sys.path.insert(0, PACKAGE_ROOT)  # test the source tree, installed or not

import unstuck  # noqa: E402

TOKENS = {"admin": "adm1n-secret-1", "worker": "w0rker-secret-1", "read": "r3ad-secret-1",
          "orchestrator": "0rch-secret-1"}

# Fast watchdog for the tests; executions set their own short timings when they need them.
FAST_WATCHDOG = {
    "UNSTUCK_WATCHDOG__LEASE_TTL": "1s",
    "UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL": "50ms",
    "UNSTUCK_WATCHDOG__WORKER_TIMEOUT": "1s",
}

# Timings of executions the watchdog should retry quickly after a lost heartbeat.
FAST_TIMINGS = {"heartbeat_timeout": "1s", "stuck_threshold": "200ms", "backoff_base": 0,
                "max_attempts": 2}


def parse_time(text):
    """An RFC 3339 time of the API (Z suffix); fromisoformat takes +00:00 before 3.11."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unstuck_bin():
    path = os.environ.get("UNSTUCK_BIN")
    if not path:
        raise RuntimeError(
            "UNSTUCK_BIN is not set: these tests run against a real `unstuck serve`. Build it "
            "and point UNSTUCK_BIN at it, e.g. UNSTUCK_BIN=target/debug/unstuck python3 -m "
            "unittest discover -s clients/python/tests -v")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"UNSTUCK_BIN={path} is not an executable file")
    return path


def redis_bin():
    name = os.environ.get("UNSTUCK_REDIS_SERVER", "redis-server")
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install it (`make redis`) or set "
                           "UNSTUCK_REDIS_SERVER")
    return path


def _wait(what, ready, proc, log_path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{tail(log_path)}")


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _healthy(client):
    try:
        return client.healthz().get("status") == "ok"
    except unstuck.UnstuckError:
        return False


def _redis_pong(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class Stack:
    """redis-server + `unstuck serve`. ``tokens=False`` runs serve with no tokens."""

    def __init__(self, env=None, tokens=True):
        self.env = dict(FAST_WATCHDOG, **(env or {}))
        self.tokens = tokens
        self.namespace = f"py-{uuid.uuid4().hex[:12]}"
        self.dir = None
        self.redis = self.serve = None
        self.url = None
        self._logs = []

    def start(self):
        binary, redis = unstuck_bin(), redis_bin()
        self.dir = tempfile.mkdtemp(prefix="unstuck-py-")
        try:
            self._start_redis(redis)
            self._start_serve(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self, redis):
        self.redis_port = free_port()
        log = os.path.join(self.dir, "redis.log")
        self.redis = subprocess.Popen(
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", self.dir],
            stdout=self._log(log), stderr=subprocess.STDOUT, cwd=self.dir)
        _wait("redis-server", lambda: _redis_pong(self.redis_port), self.redis, log)

    def _log(self, path):
        f = open(path, "w")
        self._logs.append(f)
        return f

    def _start_serve(self, binary, tries=3):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("UNSTUCK_LEDGER__", "UNSTUCK_WATCHDOG__", "UNSTUCK_SERVER__"))}
        env.update(self.env)
        env["UNSTUCK_LEDGER__REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/"
        env["UNSTUCK_LEDGER__NAMESPACE"] = self.namespace
        if self.tokens:
            env["UNSTUCK_SERVER__TOKENS"] = ",".join(f"{k}:{v}" for k, v in TOKENS.items())
        self.serve_log = os.path.join(self.dir, "serve.log")
        for attempt in range(tries):
            # The port is picked here and bound by serve a moment later: retry if taken.
            self.port = free_port()
            env["UNSTUCK_SERVER__LISTEN"] = f"127.0.0.1:{self.port}"
            self.url = f"http://127.0.0.1:{self.port}"
            self.serve = subprocess.Popen([binary, "serve"], env=env, cwd=self.dir,
                                          stdout=self._log(self.serve_log),
                                          stderr=subprocess.STDOUT)
            probe = unstuck.Client(self.url, timeout=2)
            try:
                _wait("unstuck serve", lambda: _healthy(probe), self.serve, self.serve_log)
                return
            except RuntimeError:
                if self.serve.poll() is None or attempt == tries - 1:
                    raise
            finally:
                probe.close()

    def client(self, scope="admin", **kw):
        return unstuck.Client(self.url, token=TOKENS[scope] if self.tokens else None, **kw)

    def stop(self):
        for proc in (self.serve, self.redis):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.serve = self.redis = None
        for f in self._logs:
            f.close()
        self._logs = []
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def wait_for(check, timeout=15.0, interval=0.05, what="condition"):
    """Polls ``check()`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class RefusingProxy:
    """A reverse proxy in front of ``unstuck serve`` that answers 503 ``redis-unavailable``
    to the paths in ``refuse`` (counting them in ``refused``) and forwards the rest: a
    real failure of chosen calls, seen by the client as the server's own."""

    def __init__(self, upstream_url):
        self.refuse = set()
        self.refused = 0
        self._lock = threading.Lock()
        host, port = upstream_url.split("//", 1)[1].split(":")
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                try:
                    self._relay()
                except OSError:
                    pass  # the client went away (a long poll aborted by stop())

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?", 1)[0] in proxy.refuse:
                    with proxy._lock:
                        proxy.refused += 1
                    payload = (b'{"type":"/problems/redis-unavailable","title":"Redis '
                               b'unavailable","status":503,"detail":"refused by the proxy"}')
                    self._reply(503, [("Content-Type", "application/problem+json"),
                                      ("Retry-After", "1")], payload)
                    return
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection")}
                    upstream.request(self.command, self.path, body=body or None,
                                     headers=headers)
                    resp = upstream.getresponse()
                    self._reply(resp.status, [(k, v) for k, v in resp.getheaders()
                                              if k.lower() in ("content-type", "retry-after")],
                                resp.read())
                finally:
                    upstream.close()

            def _reply(self, status, headers, payload):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
