#!/usr/bin/python3
"""Tests of follow_primary.py; the end-to-end one runs it against the real
bin/understudy dev through a switchover and a failover.

Run with "make test-python" (installs the Debian packages and builds
bin/understudy first), or: /usr/bin/python3 deploy/clients/python/test_follow_primary.py

Without python3-grpcio or bin/understudy the tests are skipped, except
under CI (CI set and not "false"/"0"), where that is a failure.
"""

import atexit
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
SCRIPT = os.path.join(HERE, "follow_primary.py")
UNDERSTUDY = os.path.join(ROOT, "bin", "understudy")
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")

# Fixed addresses of understudy dev (cmd/understudy/dev.go).
DEV_REGISTRY = "127.0.0.1:7420"
DEV_PORTS = (2379, 2380, 7420, 7421, 7431, 7432, 7433)
DEV_HOSTS = ("dev-a", "dev-b", "dev-c")

PRIMARY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} db primary (?P<host>\S+) (?P<addr>\S+) epoch (?P<epoch>\d+)(?: \(was (?P<was>\S+)\))?$"
)

sys.path.insert(0, HERE)
try:
    import follow_primary as fp
except ImportError as e:  # grpc or google.protobuf missing: not Debian's python3, or packages not installed
    fp, IMPORT_ERROR = None, e


def require_follower():
    require(fp is not None, f"cannot import the follower: {globals().get('IMPORT_ERROR')}; "
                            "run make python-deps and use /usr/bin/python3")


def require(ok, why):
    if ok:
        return
    if IN_CI:
        raise AssertionError(f"{why} (CI: failing instead of skipping)")
    raise unittest.SkipTest(why)


def child_env():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("UNDERSTUDY_REGISTRY", None)
    return env


def run_script(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=30, env=child_env()
    )


class UsageTest(unittest.TestCase):
    def setUp(self):
        require_follower()

    def assertUsage(self, args, *want):
        r = run_script(*args)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, "")
        for w in want:
            self.assertIn(w, r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_bad_arguments(self):
        self.assertUsage([], "SERVICE")
        self.assertUsage(["--registry", "nonsense", "db"], "--registry 'nonsense'", "HOST:PORT")
        self.assertUsage(["--registry", "127.0.0.1:99999", "db"], "--registry '127.0.0.1:99999'")
        self.assertUsage(["--registry", "127.0.0.1:7420,", "db"], "--registry ''")
        self.assertUsage(["db/primary"], "SERVICE 'db/primary'")
        self.assertUsage(["-x", "db"], "unrecognized arguments: -x")
        self.assertUsage(["db", "x" * 64], "SERVICE '" + "x" * 64 + "'")
        r = subprocess.run([sys.executable, SCRIPT, "db"], capture_output=True, text=True, timeout=30,
                           env=dict(child_env(), UNDERSTUDY_REGISTRY="127.0.0.1"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("$UNDERSTUDY_REGISTRY '127.0.0.1'", r.stderr)


class FollowerTest(unittest.TestCase):
    """The printing logic, on hand-made Watch messages."""

    def setUp(self):
        require_follower()
        self.out = []
        self.f = fp.Follower(["db"], out=self)

    def write(self, s):
        if s.strip():
            self.out.append(s.strip().split(" ", 2)[2])  # without the timestamp

    def flush(self):
        pass

    def view(self, host=None, epoch=0, status=None, **kw):
        pb = fp.pb
        v = pb.View(service="db", mode=pb.MODE_PRIMARY, instances=[pb.Instance(host=h) for h in DEV_HOSTS], **kw)
        if host:
            v.primary.CopyFrom(pb.Primary(host=host, address="127.0.0.1:1", epoch=epoch))
            v.status = pb.STATUS_READ_WRITE
        else:
            v.status = status or pb.STATUS_READ_ONLY
        return v

    def test_changes_only(self):
        pb = fp.pb
        self.f.apply(pb.WatchResponse(revision=5, snapshot=True, views=[self.view("dev-a", 4)]))
        self.f.apply(pb.WatchResponse(revision=6, views=[self.view("dev-a", 4)]))  # e.g. health change
        self.f.apply(pb.WatchResponse(revision=7, views=[self.view()]))
        self.f.apply(pb.WatchResponse(revision=9, views=[self.view("dev-b", 8)]))
        self.f.apply(pb.WatchResponse(revision=9, snapshot=True, views=[self.view("dev-b", 8)]))  # a resume
        self.f.apply(pb.WatchResponse(revision=12, views=[self.view("dev-b", 11, stale=True)]))
        self.f.apply(pb.WatchResponse(revision=13, views=[self.view(status=pb.STATUS_DOWN)]))
        self.f.apply(pb.WatchResponse(revision=14, views=[pb.View(service="db", mode=pb.MODE_POOL)]))  # all gone
        self.f.apply(pb.WatchResponse(revision=15, snapshot=True))  # still gone
        self.assertEqual(self.out, [
            "db primary dev-a 127.0.0.1:1 epoch 4",
            "db no primary: READ_ONLY (was dev-a)",
            "db primary dev-b 127.0.0.1:1 epoch 8 (was dev-a)",
            "db primary dev-b 127.0.0.1:1 epoch 11 (was dev-b) [stale: the registry lost its etcd quorum]",
            "db no primary: DOWN (was dev-b)",
            "db no primary: DOWN, no instances (was dev-b)",
        ])
        self.assertEqual(self.f.revision, 15)

    def test_pool_service(self):
        pb = fp.pb
        f = fp.Follower(["cache"], out=self)
        up = pb.View(service="cache", mode=pb.MODE_POOL, status=pb.STATUS_READ_WRITE, instances=[pb.Instance(host="a")])
        f.apply(pb.WatchResponse(revision=2, snapshot=True, views=[up]))
        f.apply(pb.WatchResponse(revision=3, views=[up]))
        self.assertEqual(self.out, ["cache no primary: a pool service (READ_WRITE)"])

    def test_absent_service(self):
        self.f.apply(fp.pb.WatchResponse(revision=3, snapshot=True))
        self.assertEqual(self.out, ["db no primary: DOWN, no instances"])


def primary_on(line, host):
    m = PRIMARY_LINE.match(line)
    return m if m and m["host"] == host else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# Every process the tests start, so that they are stopped even when the run is
# interrupted (Ctrl-C, SIGTERM) and the cleanups of the current test never run.
STARTED = []


def start(args, **kw):
    """Starts a process in the test's process group: a Ctrl-C in the terminal reaches it too."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)
    STARTED.append(proc)
    return proc


def stop(proc, timeout=10):
    """Stops a process this test started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@atexit.register
def stop_all():
    for proc in STARTED:
        stop(proc)


class ProcessTest(unittest.TestCase):
    """Runs follow_primary.py as a process and reads its lines."""

    def setUp(self):
        require_follower()
        tmp = tempfile.TemporaryDirectory(prefix="understudy-pytest-")
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.follower_err = open(os.path.join(self.tmp, "follower.err"), "w+")
        self.addCleanup(self.follower_err.close)
        self.lines = queue.Queue()
        self.seen = []
        self.dev_log = None

    def start_follower(self, *registries):
        args = [a for r in registries for a in ("--registry", r)]
        self.follower = start(
            [sys.executable, SCRIPT, *args, "db"], stdout=subprocess.PIPE, stderr=self.follower_err, text=True,
            env=child_env(),
        )

        def read():
            for line in self.follower.stdout:
                self.lines.put(line.rstrip("\n"))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        # Cleanups run last first: stop the follower, then the reader ends at EOF.
        self.addCleanup(self.follower.stdout.close)
        self.addCleanup(t.join, 10)
        self.addCleanup(stop, self.follower)

    def stderr(self):
        with open(self.follower_err.name) as f:
            return f.read()

    def diagnostics(self):
        d = "\nfollower stdout so far:\n  " + "\n  ".join(self.seen) + "\nfollower stderr:\n" + self.stderr()[-3000:]
        if self.dev_log is not None:
            with open(self.dev_log.name) as f:
                d += "\nunderstudy dev log (tail):\n" + f.read()[-3000:]
        return d

    def wait_line(self, pred, what, timeout=20):
        """Returns the first new line of the follower for which pred returns a match."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.follower.poll() is not None:
                self.fail(f"follower printed no {what} within {timeout}s (exit status {self.follower.poll()})"
                          + self.diagnostics())
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.seen.append(line)
            m = pred(line)
            if m:
                return m


class SignalTest(ProcessTest):
    def test_sigint_while_no_registry_answers(self):
        self.start_follower(f"127.0.0.1:{free_port()}")
        deadline = time.monotonic() + 10
        while "UNAVAILABLE" not in self.stderr():
            self.assertLess(time.monotonic(), deadline, "the follower logged no failed registry" + self.diagnostics())
            time.sleep(0.05)
        os.kill(self.follower.pid, signal.SIGINT)
        self.assertEqual(self.follower.wait(10), 0, self.diagnostics())
        self.assertNotIn("Traceback", self.stderr())


class DevFailoverTest(ProcessTest):
    """follow_primary.py against bin/understudy dev: a switchover, then a failed check."""

    def setUp(self):
        super().setUp()
        require(os.access(UNDERSTUDY, os.X_OK), f"{UNDERSTUDY} is missing: run make build")
        busy = [p for p in DEV_PORTS if port_in_use(p)]
        self.assertEqual(busy, [], "ports of understudy dev are in use: is make demo or understudy dev running?")
        self.dev_log = open(os.path.join(self.tmp, "dev.log"), "w")
        self.addCleanup(self.dev_log.close)
        self.dev = start(
            [UNDERSTUDY, "dev", "--data-dir", os.path.join(self.tmp, "etcd"), "--log-level", "warn"],
            stdout=self.dev_log, stderr=subprocess.STDOUT,
        )
        self.addCleanup(stop, self.dev)

    def understudy(self, *args, retry_until=0):
        """Runs a bin/understudy command; retries a refusal (exit 1) until retry_until seconds passed."""
        deadline = time.monotonic() + retry_until
        while True:
            r = subprocess.run([UNDERSTUDY, *args], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return r.stdout
            if time.monotonic() >= deadline:
                self.fail(f"understudy {' '.join(args)}: exit {r.returncode}: {r.stderr}" + self.diagnostics())
            time.sleep(0.2)  # the poll interval of a retry, not a wait for an effect

    def test_follows_switchover_and_failover(self):
        dead = f"127.0.0.1:{free_port()}"  # nothing listens: the follower must move on to the next
        self.start_follower(dead, DEV_REGISTRY)

        first = self.wait_line(PRIMARY_LINE.match, "first primary line", timeout=60)
        self.assertIsNone(first["was"], first.string)
        old, epoch = first["host"], int(first["epoch"])
        target = next(h for h in DEV_HOSTS if h != old)

        # A standby may still be rising to passing right after the start: retry refusals.
        self.understudy("switchover", "db", "--to", target, "--registry", DEV_REGISTRY, retry_until=15)
        m = self.wait_line(lambda line: primary_on(line, target), f"line with the new primary {target}")
        self.assertEqual(m["was"], old, m.string)
        self.assertGreater(int(m["epoch"]), epoch, m.string)
        epoch = int(m["epoch"])

        # The primary's check fails: it resigns and a standby is promoted.
        self.understudy("dev", "fail", target, "db")
        m = self.wait_line(PRIMARY_LINE.match, f"primary line after failing {target}")
        self.assertNotEqual(m["host"], target, m.string)
        self.assertEqual(m["was"], target, m.string)
        self.assertGreater(int(m["epoch"]), epoch, m.string)

        os.kill(self.follower.pid, signal.SIGTERM)
        self.assertEqual(self.follower.wait(10), 0, self.diagnostics())
        err = self.stderr()
        self.assertIn(f"registry {dead}: UNAVAILABLE", err)
        self.assertIn(f"watching db on {DEV_REGISTRY}", err)
        self.assertNotIn("Traceback", err)
        primaries = [l for l in self.seen if " db primary " in l]
        self.assertEqual(len(primaries), 3, "one line per primary, none twice:\n" + "\n".join(self.seen))



def interrupted(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)  # unwinds to exit, and atexit stops the processes


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupted)
    unittest.main(verbosity=2)
