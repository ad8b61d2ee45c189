"""End to end, the scenario every client runs (issue 21, section 4; the TypeScript
client's test/e2e.test.mjs and the Go client's TestEndToEndTwoWorkerProcessesOneKilled):
an orchestrator enqueues 20 executions; two Python worker processes take them; one is
killed (SIGKILL) mid-job; every execution succeeds; the killed ones are retried once and
each retry receives the checkpoint of the first attempt; a cancel reaches a running
handler as its stop flag (``job.cancelled``); SIGTERM drains the other."""

import json
import os
import signal
import subprocess
import sys
import threading
import unittest

import harness
from harness import FAST_TIMINGS, TOKENS, unique, wait_for

STACK = None
SCRIPT = os.path.join(harness.HERE, "scenario_worker.py")
ENDED = {"succeeded", "failed", "dead", "cancelled", "timed_out"}


def setUpModule():
    global STACK
    STACK = harness.Stack().start()


def tearDownModule():
    STACK.stop()


class WorkerProcess:
    """A scenario_worker.py process whose JSON lines are collected in ``lines``."""

    def __init__(self, queue, mode):
        env = dict(os.environ, PYTHONPATH=harness.PACKAGE_ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, STACK.url, TOKENS["admin"], queue, mode], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.stderr = [], []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, json_lines):
        for line in stream:
            if json_lines and line.startswith("{"):
                self.lines.append(json.loads(line))
            elif not json_lines:
                self.stderr.append(line)

    def events(self, event):
        return [line for line in list(self.lines) if line["event"] == event]

    def wait(self, timeout=30):
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class ScenarioTest(unittest.TestCase):
    def test_twenty_executions_two_worker_processes_one_killed_mid_job(self):
        client = STACK.client()
        self.addCleanup(client.close)
        queue = unique("scenario")
        ids = [f"job-{n:02d}" for n in range(20)]
        client.enqueue_batch(queue, [{"id": id, "payload": {"n": n}, "timings": FAST_TIMINGS}
                                     for n, id in enumerate(ids)])

        # The doomed worker takes 3 (its concurrency) and holds them; the other takes the rest.
        doomed = WorkerProcess(queue, "hang")
        self.addCleanup(doomed.kill)
        wait_for(lambda: len(doomed.events("started")) == 3, what="the doomed worker's 3 jobs")
        survivor = WorkerProcess(queue, "normal")
        self.addCleanup(survivor.kill)
        wait_for(lambda: len(doomed.events("checkpointed")) == 3,
                 what="3 checkpoints held by the server")
        killed = sorted(line["id"] for line in doomed.events("started"))
        doomed.proc.send_signal(signal.SIGKILL)
        self.assertEqual(doomed.wait(), -signal.SIGKILL)

        # Every execution succeeds: the watchdog retries the killed ones, the survivor runs them.
        def all_ended():
            executions = [client.get(queue, id) for id in ids]
            return executions if all(ex["state"] in ENDED for ex in executions) else None

        finals = wait_for(all_ended, timeout=30, what="all 20 to end")
        self.assertEqual([ex["state"] for ex in finals], ["succeeded"] * 20)
        doomed_pid = doomed.proc.pid
        for ex in finals:
            if ex["id"] in killed:
                # Retried once; the retry got the first attempt's checkpoint.
                self.assertEqual(ex["attempt"], 2, ex["id"])
                self.assertEqual(ex["result"], {"id": ex["id"], "attempt": 2,
                                                "resumedFrom": {"step": 1, "pid": doomed_pid}})
                events = client.execution_events(queue, ex["id"])
                requeued = [e for e in events if e["to"] == "queued" and e["from"]]
                self.assertEqual(len(requeued), 1, ex["id"])
                self.assertIn(requeued[0]["reason"], ("heartbeat_lost", "worker_lost"))
            else:
                first = {"id": ex["id"], "attempt": 1, "resumedFrom": None}
                self.assertEqual((ex["attempt"], ex["result"]), (1, first), ex["id"])
        retries = [line for line in survivor.events("started") if line["attempt"] == 2]
        self.assertEqual(sorted(line["id"] for line in retries), killed)
        for line in retries:
            self.assertEqual(line["checkpoint"], {"step": 1, "pid": doomed_pid})
        self.assertEqual(len(survivor.events("started")), 20, "17 first attempts and 3 retries")

        # A cancel reaches the survivor's running handler as its stop flag (job.cancelled).
        client.enqueue(queue, {"hold": True}, id="cancel-me",
                       timings={"heartbeat_timeout": "900ms"})  # beats every 300 ms
        wait_for(lambda: client.get(queue, "cancel-me")["state"] == "running",
                 what="cancel-me running")
        self.assertEqual(client.cancel(queue, "cancel-me", "no longer needed")["outcome"],
                         "requested")
        wait_for(lambda: survivor.events("aborted"), what="the handler's stop flag")
        self.assertEqual(survivor.events("aborted"), [
            {"pid": survivor.proc.pid, "event": "aborted", "id": "cancel-me", "why": "cancel"}])
        wait_for(lambda: client.get(queue, "cancel-me")["state"] == "cancelled", what="cancelled")

        # SIGTERM drains the survivor: it exits 0 and deregisters.
        survivor.proc.send_signal(signal.SIGTERM)
        self.assertEqual(survivor.wait(), 0, "".join(survivor.stderr))
        stats = survivor.events("stats")[0]
        self.assertEqual((stats["succeeded"], stats["cancelled"]), (20, 1))
        self.assertFalse([w for w in client.workers() if w["pid"] == survivor.proc.pid])


if __name__ == "__main__":
    unittest.main()
