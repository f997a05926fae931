#!/usr/bin/env python3
"""Churn (issue 8): provider sessions connect, attach, serve reads and go away in waves, for a
bounded time; afterwards the daemon's open file descriptors, threads and memory are back where
they started (within a small margin). The figures are printed.

    WEBFUSE_CHURN_SECONDS   how long the waves take in all (default 120)
    WEBFUSE_CHURN_SESSIONS  how many sessions come and go (default 200)

Sessions alternate between the two protocols (in-process fake providers: a webfuse2 one serving a
real directory, a JSON one serving an in-memory tree), and end in three ways in turn: a clean
close, a dropped connection (like a killed process) and a disconnect through the admin API."""

import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402
from fakeprovider import FakeWebfuse2, File  # noqa: E402

suite = harness.Suite("test_churn")

SECONDS = float(os.environ.get("WEBFUSE_CHURN_SECONDS", "120"))
SESSIONS = int(os.environ.get("WEBFUSE_CHURN_SESSIONS", "200"))
WAVE = 20
KIB = 1024
# How much the daemon's RSS may grow over the churn: the larger of these. A session's end trims
# the heap (session_free), so 200 sessions leave about 0.7 MiB (7.5 -> 8.2 MiB, release build);
# without the trim they left 10 MiB.
RSS_MARGIN_KIB = 3 * 1024
RSS_MARGIN_PERCENT = 15
DATA = {}


@suite.setup
def make_data(suite_dir):
    src = os.path.join(suite_dir, "src")
    os.makedirs(os.path.join(src, "d"))
    DATA["blob"] = os.urandom(512 * KIB + 3)
    DATA["small"] = b"small\n"
    with open(os.path.join(src, "blob"), "wb") as f:
        f.write(DATA["blob"])
    with open(os.path.join(src, "d", "small"), "wb") as f:
        f.write(DATA["small"])
    DATA["src"] = src


def usage(pid):
    """(open fds, threads, RSS in KiB) of a process."""
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return len(os.listdir("/proc/%d/fd" % pid)), len(os.listdir("/proc/%d/task" % pid)), rss


def digest(data):
    return hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Session:
    """One provider session of the churn: attaches `name`, serves, ends as told."""

    def __init__(self, env, daemon, n):
        self.name = "churn-%d" % n
        self.json = n % 2 == 1
        self.ending = ("close", "drop", "admin")[n % 3]
        if self.json:
            self.fake = env.fake(daemon)
            self.fake.attach(self.name, {"blob": File(DATA["blob"]),
                                         "d": {"small": File(DATA["small"])}})
        else:
            self.fake = FakeWebfuse2(daemon.port, self.name, DATA["src"])
            env.add_cleanup(self.fake.abort)
            harness.wait_mounted(daemon.mount_path(self.name))

    def serve(self, daemon):
        mp = daemon.mount_path(self.name)
        check_equal(sorted(os.listdir(mp)), ["blob", "d"], "listing of " + self.name)
        check_equal(digest(read(os.path.join(mp, "blob"))), digest(DATA["blob"]),
                    "content of %s/blob" % self.name)
        check_equal(read(os.path.join(mp, "d", "small")), DATA["small"],
                    "content of %s/d/small" % self.name)

    def end(self, daemon, session_id):
        if self.ending == "close":
            self.fake.close() if self.json else self._close_wf2()
        elif self.ending == "drop":
            self.fake.abort()
        else:
            daemon.api_ok("DELETE", "/api/v1/sessions/%d" % session_id, expect=202)

    def _close_wf2(self):
        try:
            self.fake.ws.send_close(1000)
        except OSError:
            pass
        self.fake.closed.wait(5)
        self.fake.abort()


def session_ids(daemon):
    """filesystem name -> session id, from the admin API."""
    return {f["name"]: f["session"]
            for f in daemon.api_ok("GET", "/api/v1/filesystems")["filesystems"]}


def quiet(daemon):
    """No session and no mount left."""
    return (daemon.api_ok("GET", "/api/v1/sessions")["total"] == 0 and
            not harness.mounts_under(daemon.mount_root))


def wave(env, daemon, first, count, pool):
    sessions = [Session(env, daemon, n) for n in range(first, first + count)]
    # Every session serves at once: reads of different mounts interleave in the daemon.
    for f in [pool.submit(s.serve, daemon) for s in sessions]:
        f.result(timeout=60)
    ids = session_ids(daemon)
    for s in sessions:
        s.end(daemon, ids[s.name])
    for s in sessions:
        harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path(s.name)), 10,
                           what="%s (%s) to be unmounted" % (s.name, s.ending))


@suite.test(budget=SECONDS + 240)
def waves_of_sessions_leave_no_fds_threads_or_memory_behind(env):
    daemon = env.start_daemon(timeout=10, log_level="info")
    pool = ThreadPoolExecutor(max_workers=WAVE)
    env.add_cleanup(lambda: pool.shutdown(wait=False))
    # A first wave starts what is started once (libuv's thread pool, sqlite's cache, ...).
    wave(env, daemon, 0, 6, pool)
    harness.wait_until(lambda: quiet(daemon), 20, what="the warm-up wave to end")
    time.sleep(1.0)
    start = usage(daemon.pid)

    waves = max(1, (SESSIONS + WAVE - 1) // WAVE)
    began = time.monotonic()
    done = 0
    for w in range(waves):
        count = min(WAVE, SESSIONS - done)
        wave(env, daemon, 1000 + done, count, pool)
        done += count
        # Spread the waves over the time asked for.
        pause = began + SECONDS * (w + 1) / waves - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - began
    harness.wait_until(lambda: quiet(daemon), 30, what="every session and mount to be gone")
    time.sleep(1.0)
    end = usage(daemon.pid)
    metrics = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    total = metrics[("webfuse_sessions_total", ())]
    print("  churn: %d sessions in %d waves over %.0f s; daemon fds %d -> %d, threads %d -> %d, "
          "RSS %.1f -> %.1f MiB" % (done, waves, elapsed, start[0], end[0], start[1], end[1],
                                    start[2] / 1024.0, end[2] / 1024.0))
    check_equal(total, 6 + done, "webfuse_sessions_total")
    check(daemon.alive(), "webfused died")
    check(end[0] <= start[0] + 2, "open fds grew from %d to %d" % (start[0], end[0]))
    check(end[1] <= start[1] + 1, "threads grew from %d to %d" % (start[1], end[1]))
    if harness.sanitized(daemon.pid):
        print("  (AddressSanitizer keeps freed memory in its quarantine: RSS not compared)")
    else:
        margin = max(RSS_MARGIN_KIB, start[2] * RSS_MARGIN_PERCENT // 100)
        print("  RSS bound: %.1f MiB (+%.1f MiB)" % ((start[2] + margin) / 1024.0,
                                                     margin / 1024.0))
        check(end[2] <= start[2] + margin, "RSS grew from %.1f to %.1f MiB (bound +%.1f MiB)" % (
            start[2] / 1024.0, end[2] / 1024.0, margin / 1024.0))
    # Still serving after all that.
    Session(env, daemon, 9999).serve(daemon)


if __name__ == "__main__":
    suite.main()
