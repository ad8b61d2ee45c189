"""Client pieces that need no server: the SSE parser, the resume deduplication and the
problem+json mapping. (Everything else runs against a real `unstuck serve`.)"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import unstuck  # noqa: E402
from unstuck import errors, sse  # noqa: E402


def chunks(*parts):
    it = iter(parts)
    return lambda: next(it, b"")


class ParserTest(unittest.TestCase):
    def messages(self, *parts):
        parser, out = sse.SSEParser(), []
        for line in sse.read_lines(chunks(*parts)):
            msg = parser.feed(line)
            if msg:
                out.append(msg)
        return out, parser

    def test_messages_comments_and_line_endings(self):
        out, parser = self.messages(
            b": keep-alive\n\n",
            b"id: 3-17-0\r\ndata: {\"a\":\r\ndata: 1}\r\n\r",
            b"\nretry: 2500\n",
            b"id: 3-17-1\rdata: 2\r\r",
            b"data: no id given\n\n")
        self.assertEqual(out, [("3-17-0", "message", '{"a":\n1}'),
                               ("3-17-1", "message", "2"),
                               ("3-17-1", "message", "no id given")])  # the id persists
        self.assertEqual(parser.retry_ms, 2500)

    def test_incomplete_message_at_eof_is_dropped(self):
        out, _ = self.messages(b"id: 1-1-0\ndata: 1\n")
        self.assertEqual(out, [])


class FakeResponse:
    def __init__(self, data):
        self._read = chunks(data)

    def read1(self, n):
        return self._read()


class DedupTest(unittest.TestCase):
    def test_repeats_of_the_resume_millisecond_are_dropped(self):
        stream = sse.EventStream(client=None, last_event_id="1-100-3")

        def frame(i):
            return f"id: {i}\ndata: {json.dumps({'id': i})}\n\n".encode()
        body = b"".join(frame(i) for i in
                        ["2-100-0", "1-100-3", "1-100-4", "2-100-0", "2-100-1", "2-99-9"])
        got = [e["id"] for e in stream._messages(FakeResponse(body))]
        self.assertEqual(got, ["2-100-0", "1-100-4", "2-100-1"])
        self.assertEqual(stream.last_event_id, "2-100-1")


class ProblemTest(unittest.TestCase):
    def error(self, status, body, headers=None):
        return errors.from_response(status, headers or {}, json.dumps(body).encode())

    def test_mapped_by_slug_with_extra_members(self):
        e = self.error(409, {"type": "/problems/stale-attempt", "title": "Stale attempt",
                             "status": 409, "detail": "attempt 2 is current",
                             "current_attempt": 2, "state": "running"})
        self.assertIsInstance(e, unstuck.StaleAttempt)
        self.assertEqual((e.status, e.slug, e.current_attempt, e.state), (409, "stale-attempt",
                                                                          2, "running"))
        self.assertIn("attempt 2 is current", str(e))
        e = self.error(409, {"type": "https://x.example/problems/already-terminal",
                             "stop_reason": "succeeded", "state": "succeeded"})
        self.assertIsInstance(e, unstuck.AlreadyTerminal)
        self.assertEqual(e.stop_reason, "succeeded")

    def test_fallback_on_status_and_retry_after(self):
        self.assertIsInstance(self.error(404, {"type": "/problems/brand-new"}), unstuck.NotFound)
        e = errors.from_response(503, {"Retry-After": "3"}, b"<html>busy</html>")
        self.assertIsInstance(e, unstuck.Unavailable)
        self.assertEqual(e.retry_after, 3.0)
        self.assertTrue(e.transient)
        self.assertIsInstance(self.error(504, {}), unstuck.UnknownOutcome)
        self.assertFalse(self.error(400, {"type": "/problems/invalid-argument"}).transient)

    def test_nothing_sent_and_unknown_outcome_are_told_apart(self):
        e = self.error(503, {"type": "/problems/redis-unavailable", "status": 503,
                             "detail": "Redis unavailable: enqueue was not sent"},
                       {"Retry-After": "1"})
        self.assertIsInstance(e, unstuck.RedisUnavailable)
        self.assertIsInstance(e, unstuck.Unavailable)
        self.assertNotIsInstance(e, unstuck.UnknownOutcome)
        self.assertEqual((e.transient, e.retry_after), (True, 1.0))
        e = self.error(504, {"type": "/problems/unknown-outcome", "status": 504},
                       {"Retry-After": "1"})
        self.assertIsInstance(e, unstuck.UnknownOutcome)
        self.assertNotIsInstance(e, unstuck.Unavailable)
        self.assertEqual((e.transient, e.retry_after), (True, 1.0))

    def test_a_stale_attempt_says_it_is_over_and_what_comes_next(self):
        e = self.error(409, {"type": "/problems/stale-attempt", "current_attempt": 1,
                             "state": "queued", "attempt_ended": True, "next_attempt": 2})
        self.assertEqual((e.attempt_ended, e.next_attempt), (True, 2))
        older = self.error(409, {"type": "/problems/stale-attempt", "current_attempt": 2,
                                 "state": "running"})
        self.assertEqual((older.attempt_ended, older.next_attempt), (True, None))


if __name__ == "__main__":
    unittest.main()
