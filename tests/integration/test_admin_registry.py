#!/usr/bin/env python3
"""The registry (issue 4): history in sqlite survives a restart; after kill -9 of the daemon in the
middle of traffic, the next start leaves no stale mount and marks the old rows lost; the schema is
versioned (PRAGMA user_version) and in WAL mode; a database from a newer webfused is refused and a
damaged one is moved aside."""

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_admin_registry")
suite.needs_provider = True
suite.needs_ctl = True

MIB = 1024 * 1024
SCHEMA_VERSION = 3
DATA = {}


@suite.setup
def make_data(suite_dir):
    DATA["src"] = os.path.join(suite_dir, "src")
    os.makedirs(DATA["src"])
    DATA["blob"] = os.urandom(4 * MIB)
    with open(os.path.join(DATA["src"], "blob"), "wb") as f:
        f.write(DATA["blob"])


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


class Reader(threading.Thread):
    """Reads a file over and over until it fails or is told to stop."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.rounds = 0
        self.error = None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set() and self.error is None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as e:
                self.error = e
                break
            try:
                while os.read(fd, 256 * 1024):
                    pass
                self.rounds += 1
            except OSError as e:
                self.error = e
            finally:
                try:  # a flush on a dead connection fails too; the read's error is the one kept
                    os.close(fd)
                except OSError:
                    pass


@suite.test
def history_survives_a_restart(env):
    db = env.path("history.db")
    root = env.mkdir("mnt")
    daemon = env.start_daemon(db=db, mount_root=root)
    provider = env.start_provider(daemon, [("kept", DATA["src"])])
    check(read_all(os.path.join(daemon.mount_path("kept"), "blob")) == DATA["blob"], "contents")
    live = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]
    provider.stop()
    harness.wait_unmounted(daemon.mount_path("kept"), 5)
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/sessions?state=closed")["total"]
                       == 1, 5, what="the session to be closed in the history")
    daemon.stop()
    check_equal(daemon.returncode(), 0, "exit status after SIGTERM")

    again = env.start_daemon(db=db, mount_root=root)
    closed = again.api_ok("GET", "/api/v1/sessions?state=all")
    check_equal(closed["total"], 1, "sessions after the restart")
    s = closed["sessions"][0]
    check_equal((s["id"], s["run"], s["state"], s["protocol"]),
                (live["id"], live["run"], "closed", "json"), "the old session")
    check(s["requests"] > 0 and s["bytes_in"] >= len(DATA["blob"]),
          "final counters of the old session: %r" % s)
    fs = s["filesystems"]
    check_equal([(f["name"], f["state"]) for f in fs], [("kept", "detached")],
                "its filesystem")
    check(fs[0]["bytes_read"] >= len(DATA["blob"]), "bytes_read of the old filesystem %r" % fs)
    events = again.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    runs = sorted({e["run"] for e in events})
    check_equal(len(runs), 2, "runs in the events")
    first = [e["kind"] for e in events if e["run"] == runs[0]]
    # A provider that goes: its connection ends, then its mounts (detach) go.
    check_equal(first, ["start", "connect", "attach", "disconnect", "detach", "stop"],
                "events of the first run")
    check_equal([e["kind"] for e in events if e["run"] == runs[1]], ["start"],
                "events of the second run")
    check("0 session(s)" in events[-1]["detail"], "nothing was lost: %r" % events[-1])


@suite.test(budget=90)
def kill_9_mid_traffic_then_restart_leaves_no_stale_mount_and_marks_rows_lost(env):
    db = env.path("crash.db")
    root = env.mkdir("mnt")
    daemon = env.start_daemon(db=db, mount_root=root)
    names = ["c%d" % i for i in range(4)]
    for name in names:
        env.start_provider(daemon, [(name, DATA["src"])])
    readers = [Reader(os.path.join(daemon.mount_path(n), "blob")) for n in names]
    for r in readers:
        r.start()
    harness.wait_until(lambda: all(r.rounds >= 1 for r in readers), 20,
                       what="every reader to finish a round")
    before = daemon.api_ok("GET", "/api/v1/sessions")
    check_equal(before["total"], 4, "sessions before the crash")
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    for r in readers:
        r.join(10)
        check(not r.is_alive(), "a reader still hangs 10 s after the daemon was killed")
        # Requests in flight when /dev/fuse closes fail with ECONNABORTED, later ones ENOTCONN.
        check(r.error is not None and r.error.errno in (errno.ENOTCONN, errno.ECONNABORTED,
                                                        errno.EIO),
              "reader of a dead daemon: %r" % r.error)
    check_equal(sorted(m[0] for m in harness.mounts_under(root)),
                sorted(daemon.mount_path(n) for n in names), "dead mounts left by kill -9")

    again = env.start_daemon(db=db, mount_root=root)
    check_equal(harness.mounts_under(root), [], "mounts under the root after the restart")
    history = again.api_ok("GET", "/api/v1/sessions?state=all")
    check_equal(history["total"], 4, "sessions in the history")
    old_run = before["sessions"][0]["run"]
    for s in history["sessions"]:
        check_equal((s["state"], s["run"], s["reason"]),
                    ("lost", old_run, "gateway stopped unexpectedly"), "an old session")
        check_equal([f["state"] for f in s["filesystems"]], ["lost"], "its filesystem")
    check_equal(sorted(s["id"] for s in history["sessions"]),
                sorted(s["id"] for s in before["sessions"]), "the lost sessions")
    events = again.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    lost = [e for e in events if e["kind"] == "lost"]
    check_equal(len(lost), 8, "lost events (4 sessions, 4 filesystems)")
    check("4 session(s) and 4 filesystem(s)" in events[-1]["detail"], "start event: %r"
          % events[-1])
    # The names are free again: providers attach under them at once.
    for name in names[:2]:
        env.start_provider(again, [(name, DATA["src"])])
        check(read_all(os.path.join(again.mount_path(name), "blob")) == DATA["blob"],
              "contents after the restart")
    # A clean stop closes, it does not lose.
    again.stop()
    third = env.start_daemon(db=db, mount_root=root)
    states = sorted(s["state"] for s in third.api_ok("GET", "/api/v1/sessions?state=all")
                    ["sessions"])
    check_equal(states, ["closed"] * 2 + ["lost"] * 4, "states after a clean stop")


def ctl_json(daemon, *args):
    """webfusectl --json ARGS against `daemon`; the parsed answer."""
    argv = [harness.binary("WEBFUSECTL", "webfusectl"), "--url", daemon.admin_url,
            "--token-file", daemon.token_file, "--json"] + list(args)
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check_equal(out.returncode, 0, "exit status of %s (%s)" % (" ".join(args), out.stderr))
    return json.loads(out.stdout)


def serving(daemon, name):
    """True when `name` is mounted, alive and serves the blob."""
    path = os.path.join(daemon.mount_path(name), "blob")
    try:
        return harness.is_mounted(daemon.mount_path(name)) and read_all(path) == DATA["blob"]
    except OSError:
        return False


@suite.test(budget=120)
def kill_9_then_restart_reconnecting_providers_come_back_by_themselves(env):
    """Providers started with --reconnect (one of each protocol) outlive a crash of the daemon:
    once it is back on its port they attach again and serve, while the history calls their old
    sessions lost."""
    db = env.path("crash.db")
    root = env.mkdir("mnt")
    port, admin_port = harness.free_port(), harness.free_port()
    daemon = env.start_daemon(db=db, mount_root=root, port=port, admin_port=admin_port)
    env.start_webfuse2_provider(daemon, "w2", DATA["src"], extra=["--reconnect"])
    env.start_provider(daemon, [("js", DATA["src"])], extra=["--reconnect"])
    readers = [Reader(os.path.join(daemon.mount_path(n), "blob")) for n in ("w2", "js")]
    for r in readers:
        r.start()
    harness.wait_until(lambda: all(r.rounds >= 1 for r in readers), 20,
                       what="every reader to finish a round")
    old = ctl_json(daemon, "sessions")["sessions"]
    check_equal(len(old), 2, "sessions before the crash")
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    for r in readers:
        r.join(10)
        check(not r.is_alive(), "a reader still hangs 10 s after the daemon was killed")
        check(r.error is not None and r.error.errno in (errno.ENOTCONN, errno.ECONNABORTED,
                                                        errno.EIO),
              "reader of a dead daemon: %r" % r.error)

    again = env.start_daemon(db=db, mount_root=root, port=port, admin_port=admin_port)
    for mp, _, _ in harness.mounts_under(root):  # only live mounts: the stale ones are gone
        try:
            os.stat(mp)
        except OSError as e:
            harness.fail("stale mount %s after the restart: %s" % (mp, e))
    for name in ("w2", "js"):
        harness.wait_until(lambda: serving(again, name), 40,
                           what="the %s provider to come back by itself and serve" % name)
    history = ctl_json(again, "sessions", "--all")["sessions"]
    old_ids = sorted(s["id"] for s in old)
    lost = [s for s in history if s["run"] == old[0]["run"]]
    check_equal(sorted(s["id"] for s in lost), old_ids, "the old run's sessions in the history")
    for s in lost:
        check_equal((s["state"], [f["state"] for f in s["filesystems"]]), ("lost", ["lost"]),
                    "an old session and its filesystem")
    live = [s for s in history if s["state"] == "active"]
    check_equal(sorted(f["name"] for s in live for f in s["filesystems"]), ["js", "w2"],
                "filesystems of the sessions that came back")
    events = ctl_json(again, "events", "--limit", "1000")["events"]
    check_equal(len([e for e in events if e["kind"] == "lost"]), 4,
                "lost events (2 sessions, 2 filesystems)")


@suite.test
def schema_is_versioned_and_in_wal_mode(env):
    db = env.path("schema.db")
    daemon = env.start_daemon(db=db)
    check_equal(daemon.api("GET", "/api/v1/events").status, 200, "events")
    check_equal(oct(os.stat(db).st_mode & 0o777), oct(0o600), "mode of the database")
    daemon.stop()
    with sqlite3.connect(db) as conn:
        check_equal(conn.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION,
                    "user_version")
        check_equal(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal", "journal_mode")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in ("runs", "sessions", "filesystems", "events"):
            check(table in tables, "table %s missing from %r" % (table, tables))
        run = conn.execute("SELECT started_at, stopped_at FROM runs").fetchall()
        check(len(run) == 1 and run[0][0].endswith("Z") and run[0][1].endswith("Z"),
              "the run's UTC times: %r" % run)


@suite.test
def a_start_that_fails_is_recorded_as_one(env):
    """A start that cannot listen (its port is taken) ends its run with a stop event that says
    the start failed; a run that served ends with "webfused stopped"."""
    db = env.path("runs.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = subprocess.run(
            [harness.binary("WEBFUSED", "webfused"), "--no-config", "--port",
             str(taken.getsockname()[1]), "--mount-root", env.mkdir("root"), "--db", db,
             "--admin-port", str(harness.free_port()), "--admin-token-file", env.path("token")],
            capture_output=True, text=True, timeout=10)
    check_equal(done.returncode, 1, "exit status with the port taken (%s)" % done.stderr)
    daemon = env.start_daemon(db=db)
    daemon.stop()
    check_equal(daemon.returncode(), 0, "exit status after SIGTERM")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run, kind, detail FROM events WHERE kind IN ('start', 'stop')"
                            " ORDER BY id").fetchall()
    check_equal([(run, kind) for run, kind, _ in rows],
                [(1, "start"), (1, "stop"), (2, "start"), (2, "stop")], "runs' start and stop")
    check_equal((rows[1][2], rows[3][2]), ("webfused could not start", "webfused stopped"),
                "how each run ended")


@suite.test
def newer_schema_is_refused(env):
    db = env.path("future.db")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    daemon = env.start_daemon(db=db, wait=False)
    check_equal(daemon.wait(10), 1, "exit status")
    check("newer" in daemon.log_text(), "the log does not say why:\n%s" % daemon.log_text())


@suite.test
def damaged_database_is_moved_aside(env):
    db = env.path("damaged.db")
    with open(db, "wb") as f:
        f.write(b"this is not an sqlite database, just some bytes" * 100)
    daemon = env.start_daemon(db=db)
    check_equal(daemon.api("GET", "/api/v1/events").status, 200, "events with a new database")
    kept = [n for n in os.listdir(env.dir) if n.startswith("damaged.db.corrupt-")]
    check_equal(len(kept), 1, "the damaged file kept aside (%r)" % os.listdir(env.dir))


if __name__ == "__main__":
    suite.main()
