#!/usr/bin/env python3
"""Failure behaviour (issue 2): a provider that dies or goes silent never hangs a reader, its
mounts go, other sessions do not notice; SIGTERM to the daemon leaves no mount behind; Ctrl-C of
webfuse-provider detaches cleanly while the daemon keeps running."""

import errno
import hashlib
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402
from fakeprovider import DEFAULT, FakeWebfuse2, File, NO_REPLY  # noqa: E402

suite = harness.Suite("test_failures")
suite.needs_provider = True

MIB = 1024 * 1024
DATA = {}


@suite.setup
def make_data(suite_dir):
    DATA["victim"] = os.path.join(suite_dir, "src-victim")
    os.makedirs(DATA["victim"])
    with open(os.path.join(DATA["victim"], "big"), "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MIB))
    DATA["bystander"] = os.path.join(suite_dir, "src-bystander")
    os.makedirs(os.path.join(DATA["bystander"], "d"))
    with open(os.path.join(DATA["bystander"], "file.bin"), "wb") as f:
        f.write(os.urandom(3 * MIB + 17))
    with open(os.path.join(DATA["bystander"], "d", "small"), "wb") as f:
        f.write(b"small\n")


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass  # closing a file of a dead mount may report ENOTCONN


def sha(path):
    return hashlib.sha256(read_file(path)).hexdigest()


def check_bystander(daemon, name="bystander"):
    mp = daemon.mount_path(name)
    check_equal(harness.bounded(lambda: sorted(os.listdir(mp)), 10, "listing " + name),
                ["d", "file.bin"], "listing of %s" % name)
    check_equal(harness.bounded(lambda: sha(os.path.join(mp, "file.bin")), 20, "reading"),
                sha(os.path.join(DATA["bystander"], "file.bin")), "content of %s/file.bin" % name)


class Reader(threading.Thread):
    """Reads a file in 1 MiB pieces; pauses after `pause_after` bytes until resumed; records
    where it stopped and the error that stopped it."""

    def __init__(self, path, pause_after=None):
        super().__init__(daemon=True)
        self.path = path
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.done = threading.Event()
        self.total = 0
        self.error = None
        self.finished_at = None

    def run(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                while True:
                    if self.pause_after is not None and self.total >= self.pause_after \
                            and not self.paused.is_set():
                        self.paused.set()
                        self.resume.wait(30)
                    b = os.read(fd, MIB)
                    if not b:
                        break
                    self.total += len(b)
            finally:
                # A close on a mount that is gone may fail too; the read's error is the one
                # that counts.
                try:
                    os.close(fd)
                except OSError:
                    pass
        except OSError as e:
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self.done.set()


# ---- provider dies ------------------------------------------------------------------------------


@suite.test
def provider_killed_mid_read_gives_eio_and_mount_goes(env):
    daemon = env.start_daemon(timeout=3)
    victim = env.start_provider(daemon, [("victim", DATA["victim"])])
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    check_bystander(daemon)
    mp = daemon.mount_path("victim")
    reader = Reader(os.path.join(mp, "big"), pause_after=4 * MIB)
    reader.start()
    check(reader.paused.wait(20), "the reader did not get through 4 MiB within 20 s (error %r)"
          % reader.error)
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    reader.resume.set()
    check(reader.done.wait(10), "the reader still hangs 10 s after the provider was killed")
    check(reader.error is not None,
          "the read ended without an error after %d bytes (of %d)" % (reader.total, 64 * MIB))
    check_equal(reader.error.errno, errno.EIO, "errno of the reader (%s)" % reader.error)
    after = reader.finished_at - killed_at
    check(after <= 3.0, "the reader got its error %.2f s after the kill (timeout is 3 s)" % after)
    harness.wait_until(lambda: not harness.is_mounted(mp), 2.0 - (time.monotonic() - killed_at),
                       what="the victim's mount to go (within 2 s of the kill)")
    check(daemon.alive(), "webfused died")
    check_bystander(daemon)
    check_equal([m[0] for m in harness.mounts_under(daemon.mount_root)],
                [daemon.mount_path("bystander")], "mounts left")


@suite.test
def pending_requests_fail_at_once_when_provider_dies(env):
    daemon = env.start_daemon(timeout=10)
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    fake = env.fake(daemon)
    files = {"f%d" % i: File(os.urandom(2 * MIB)) for i in range(3)}
    fake.attach("dying", files)
    pending = []

    def read(f, msg):  # the first 128 KiB of each file are served, then silence
        if msg["params"][3] >= 128 * 1024:
            pending.append(msg["id"])
            return NO_REPLY
        return DEFAULT

    fake.handlers["read"] = read
    mp = daemon.mount_path("dying")
    readers = [Reader(os.path.join(mp, name)) for name in files]
    for r in readers:
        r.start()
    harness.wait_until(lambda: len(pending) >= 3, 10, what="three unanswered reads")
    time.sleep(0.2)
    check(not any(r.done.is_set() for r in readers), "a reader ended before the provider died")
    fake.abort()
    died_at = time.monotonic()
    for r in readers:
        check(r.done.wait(5), "a reader still hangs 5 s after the provider died")
        check(r.error is not None, "%s: read ended without error (%d bytes)" % (r.path, r.total))
        check_equal(r.error.errno, errno.EIO, "errno of %s (%s)" % (r.path, r.error))
        check(r.finished_at - died_at < 1.5, "%s failed only %.2f s after the provider died "
              "(--timeout 10: pending requests must fail at once)"
              % (r.path, r.finished_at - died_at))
    harness.wait_until(lambda: not harness.is_mounted(mp), 2.0 - (time.monotonic() - died_at),
                       what="the dead provider's mount to go (within 2 s)")
    check(daemon.alive(), "webfused died")
    check_bystander(daemon)
    # The name is free again.
    again = env.fake(daemon)
    again.attach("dying", {"new": File(b"new\n")})
    check_equal(read_file(os.path.join(mp, "new")), b"new\n", "content after re-attaching")


# ---- provider goes silent -----------------------------------------------------------------------


@suite.test
def silent_provider_request_fails_with_eio_after_timeout(env):
    daemon = env.start_daemon(timeout=2)
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    fake = env.fake(daemon)
    fake.attach("quiet", {"silent": File(b"0123456789"), "ok": File(b"ok\n"),
                          "second": File(b"22"), "slowread": File(b"abc" * 1000)})
    fs = fake.filesystems["quiet"]
    unanswered = []
    deferred = []

    def lookup(f, msg):
        if msg["params"][2] == "silent":
            unanswered.append(msg)
            return NO_REPLY
        if msg["params"][2] == "second":
            deferred.append(msg)
            return NO_REPLY
        return DEFAULT

    unanswered_reads = []

    def read(f, msg):
        if msg["params"][1] == fs.root.children["slowread"].inode:
            unanswered.append(msg)
            unanswered_reads.append(time.monotonic())
            return NO_REPLY
        return DEFAULT

    fake.handlers["lookup"] = lookup
    fake.handlers["read"] = read
    mp = daemon.mount_path("quiet")

    result, elapsed = harness.timed(lambda: harness.bounded(
        lambda: os.stat(os.path.join(mp, "silent")), 10, "stat of an unanswered lookup"))
    check(isinstance(result, OSError) and result.errno == errno.EIO,
          "stat of an unanswered lookup: expected EIO, got %r" % (result,))
    check(1.5 <= elapsed <= 3.5, "the unanswered lookup failed after %.2f s (--timeout 2)"
          % elapsed)

    # A buffered read whose readahead fails is retried once by the kernel's page cache code,
    # so the reader may wait for two requests: each must fail after --timeout.
    result, elapsed = harness.timed(lambda: harness.bounded(
        lambda: read_file(os.path.join(mp, "slowread")), 10, "unanswered read"))
    failed_at = time.monotonic()
    check(isinstance(result, OSError) and result.errno == errno.EIO,
          "read that is never answered: expected EIO, got %r" % (result,))
    check(1 <= len(unanswered_reads) <= 2, "%d read requests for one read(2)"
          % len(unanswered_reads))
    since_last = failed_at - unanswered_reads[-1]
    check(1.5 <= since_last <= 3.0, "the last unanswered read failed %.2f s after it was sent "
          "(--timeout 2)" % since_last)
    check(elapsed <= 2 * 2 + 1.5, "the unanswered read failed only after %.2f s" % elapsed)

    # The session is still up and a late answer to a timed-out request is dropped: it must not
    # answer a newer request either.
    check(not fake.closed.is_set(), "the gateway closed the silent session (code %r, %r)"
          % (fake.close_code, fake.close_reason))
    box = {}
    t = threading.Thread(target=lambda: box.update(st=os.stat(os.path.join(mp, "second"))),
                         daemon=True)
    t.start()
    harness.wait_until(lambda: deferred, 5, what="the lookup of 'second'")
    late = unanswered[0]
    fake.send_json({"result": {"inode": fs.root.children["silent"].inode, "mode": 0o644,
                               "type": "file", "size": 999999}, "id": late["id"]})
    time.sleep(0.3)
    check(t.is_alive(), "the stat of 'second' ended before its answer was sent: %r" % box)
    fake.reply(deferred[0], fs.answer("lookup", deferred[0]["params"]))
    t.join(5)
    check("st" in box, "stat of 'second' failed or hangs")
    check_equal(box["st"].st_size, 2, "size of 'second' (the late answer must not be used)")
    fake.handlers.clear()
    check_equal(read_file(os.path.join(mp, "ok")), b"ok\n", "content of ok after the timeouts")
    check_equal(os.stat(os.path.join(mp, "silent")).st_size, 10, "size of silent, now answered")
    check(daemon.alive(), "webfused died")
    check_equal(fake.errors, [], "protocol errors")
    check_bystander(daemon)


@suite.test
def provider_that_stops_reading_is_dropped_and_its_writers_get_eio(env):
    """A provider that keeps its connection but stops reading it (hung, or its network gone)
    fills the socket: requests queued behind it could never be sent, so their timeout never
    started and their callers waited in the kernel for good, unkillable. Once the socket has taken
    nothing for --timeout, the gateway drops the connection: every caller gets an error and the
    mount goes."""
    daemon = env.start_daemon(timeout=2)
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    src = env.mkdir("src-stuck")
    fake = FakeWebfuse2(daemon.port, "stuck", src)
    stop_reading = threading.Event()
    release = threading.Event()

    def write(f, req):
        if stop_reading.is_set():
            release.wait(60)  # the fake reads its socket on this thread: nothing more is read
        return DEFAULT

    fake.handlers["write"] = write
    try:
        mp = daemon.mount_path("stuck")
        harness.wait_mounted(mp)
        fds = [os.open(os.path.join(mp, "w%d" % i), os.O_WRONLY | os.O_CREAT, 0o644)
               for i in range(16)]
        stop_reading.set()
        chunk = b"x" * MIB
        outcome = {}

        def writer(i):
            try:
                for k in range(16):
                    os.pwrite(fds[i], chunk, k * MIB)
                os.fsync(fds[i])
                outcome[i] = "written"
            except OSError as e:
                outcome[i] = errno.errorcode.get(e.errno, e.errno)

        started = time.monotonic()
        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(16)]
        for t in threads:
            t.start()
        harness.wait_until(lambda: len(outcome) == len(threads), 15,
                           what="every writer to end (got %r)" % outcome)
        elapsed = time.monotonic() - started
        check(all(v in ("EIO", "ENOTCONN") for v in outcome.values()),
              "writers to a provider that stopped reading: %r" % outcome)
        check(elapsed <= 10, "the writers ended only after %.1f s (--timeout 2)" % elapsed)
        harness.wait_unmounted(mp, timeout=5)
        check("stayed too full to take a request" in daemon.log_text(), "the log does not say "
              "why the connection was dropped")
        for fd in fds:
            close_quietly(fd)
        check(daemon.alive(), "webfused died")
        check_bystander(daemon)
    finally:
        release.set()
        fake.abort()


@suite.test
def a_handle_opened_after_the_timeout_is_released(env):
    """An OPEN or CREATE answered after --timeout: the program got EIO, and nobody held the
    handle the provider opened late; it stayed open at the provider until the connection
    ended, one per slow open. The gateway releases it now."""
    daemon = env.start_daemon(timeout=1)
    src = env.mkdir("src-late")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"late\n")
    fake = FakeWebfuse2(daemon.port, "late", src)
    env.add_cleanup(fake.abort)
    mp = daemon.mount_path("late")
    harness.wait_mounted(mp)
    held = []
    for kind, name, flags in (("open", "f", os.O_RDONLY),
                              ("create", "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL)):
        fake.handlers[kind] = lambda f, req: held.append(req) or NO_REPLY
        harness.check_errno(lambda: os.open(os.path.join(mp, name), flags, 0o644), errno.EIO,
                            "%s past the timeout" % kind)
        fake.handlers.pop(kind)
        fake.reply(held[-1], DEFAULT)  # the provider opens it now
        harness.wait_until(lambda: not fake.provider.handles, 5,
                           what="the late %s's handle to be released (open: %r)"
                           % (kind, fake.provider.handles))
    check_equal(len(fake.requests_of("release")), 2, "RELEASE requests")
    with open(os.path.join(mp, "f"), "rb") as f:
        check_equal(f.read(), b"late\n", "the file read afterwards")
    # Each request counted once (the late ones by their answers), and no file left open.
    samples = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    counted = {op: sum(v for (name, labels), v in samples.items()
                       if name == "webfuse_requests_total" and ("op", op) in labels)
               for op in ("open", "create")}
    check_equal(counted, {"open": 2, "create": 1}, "requests counted")
    harness.wait_until(lambda: [f["open_files"] for f in daemon.api_ok(
        "GET", "/api/v1/filesystems")["filesystems"]] == [0], 5,
        what="no open files counted on the mount (the last close's RELEASE is asynchronous)")
    check(daemon.alive(), "webfused died")


@suite.test
def a_name_attached_again_at_once_gets_a_mount_of_its_own(env):
    """A provider that comes back under the same name while the gateway is still unmounting the
    last one (a connection dropped right after it opened): the old unmount by path used to take
    the new mount away ("went away"), or the new mount failed on the dying one (EIO). Now the
    name is taken until the old mount is off its mount point; the new connection is either
    refused cleanly or gets a mount that stays, and nothing is left at the end."""
    daemon = env.start_daemon()
    src = env.mkdir("src-again")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"again\n")
    for i in range(40):
        fake = FakeWebfuse2(daemon.port, "again", src)
        time.sleep(0.002 * (i % 10))
        fake.abort()
    fake = FakeWebfuse2(daemon.port, "again", src)
    try:
        harness.wait_until(lambda: harness.is_mounted(daemon.mount_path("again")) or
                           fake.closed.is_set(), 10, what="the last connection's mount")
        wrong = [line for line in daemon.log_text().splitlines()
                 if "went away" in line or ("mount" in line and "failed" in line)]
        check_equal(wrong, [], "mounts taken away or failed")
    finally:
        fake.abort()
    harness.wait_until(lambda: not os.path.exists(daemon.mount_path("again")), 10,
                       what="the mount point of 'again' to go")
    check(daemon.alive(), "webfused died")


@suite.test
def a_name_attached_again_while_the_old_mount_is_held_leaves_no_directory(env):
    """A program holds a file of a mount whose provider died; the name is attached again and
    used. Once both mounts are over, the mount point is gone: the old mount's removal of the
    directory failed under the new mount, and the new one had not made it, so it stayed."""
    daemon = env.start_daemon()
    src = env.mkdir("src-held")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"held\n")
    mp = daemon.mount_path("held")
    first = FakeWebfuse2(daemon.port, "held", src)
    harness.wait_mounted(mp)
    held = os.open(os.path.join(mp, "f"), os.O_RDONLY)
    try:
        first.abort()
        harness.wait_until(lambda: not harness.is_mounted(mp), 5, what="the old mount to go")
        for _ in range(3):  # refused in the moment between the unmount and the gateway seeing it
            second = FakeWebfuse2(daemon.port, "held", src)
            if harness.bounded(lambda: harness.wait_until(
                    lambda: harness.is_mounted(mp) or second.closed.is_set(), 5,
                    what="the new mount or a refusal"), 6) and harness.is_mounted(mp):
                break
            time.sleep(0.1)
        harness.wait_mounted(mp)
        check_equal(read_file(os.path.join(mp, "f")), b"held\n", "content through the new mount")
    finally:
        close_quietly(held)
    second.abort()
    harness.wait_until(lambda: not harness.is_mounted(mp), 5, what="the new mount to go")
    harness.wait_until(lambda: not os.path.exists(mp), 5, what="the mount point %s to go" % mp)
    check(daemon.alive(), "webfused died")


# ---- SIGTERM to the daemon ----------------------------------------------------------------------


@suite.test
def sigterm_unmounts_everything_closes_providers_and_exits_0(env):
    daemon = env.start_daemon(timeout=5)
    provider = env.start_provider(daemon, [("bystander", DATA["bystander"])])
    fakes = []
    for i in range(2):
        fake = env.fake(daemon)
        fake.attach("fake%d" % i, {"f": File(b"fake\n")})
        fake.attach("fake%d_b" % i, {"g": File(b"b\n")})
        fakes.append(fake)
    fake_unattached = env.fake(daemon)
    check_bystander(daemon)
    check_equal(len(harness.mounts_under(daemon.mount_root)), 5, "mounts before SIGTERM")
    daemon.signal(signal.SIGTERM)
    status = daemon.wait(10)
    check_equal(status, 0, "exit status of webfused after SIGTERM")
    check_equal(harness.mounts_under(daemon.mount_root), [], "mounts left under the mount root")
    for i, fake in enumerate(fakes + [fake_unattached]):
        code, reason = fake.wait_close(2)
        check(fake.got_close_frame, "fake provider %d got no close frame (connection dropped)"
              % i)
        check(code in (1000, 1001), "fake provider %d: close code %r (%r), expected 1000 or "
              "1001" % (i, code, reason))
    provider.wait(5)  # without --reconnect it ends with the connection


@suite.test
def sigterm_with_a_file_held_open_still_exits_0(env):
    daemon = env.start_daemon(timeout=5)
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    mp = daemon.mount_path("bystander")
    fd = os.open(os.path.join(mp, "file.bin"), os.O_RDONLY)
    env.add_cleanup(lambda: close_quietly(fd))
    check_equal(len(os.read(fd, 4096)), 4096, "first read")
    cwd_holder = os.open(os.path.join(mp, "d"), os.O_RDONLY | os.O_DIRECTORY)
    env.add_cleanup(lambda: close_quietly(cwd_holder))
    daemon.signal(signal.SIGTERM)
    status = daemon.wait(10)
    check_equal(status, 0, "exit status of webfused after SIGTERM with files open")
    check_equal(harness.mounts_under(daemon.mount_root), [], "mounts left under the mount root")
    # The held file must fail, not hang.
    result, _ = harness.timed(lambda: harness.bounded(lambda: os.pread(fd, 4096, 2 * MIB), 5,
                                                      "read from a file of a stopped daemon"))
    check(isinstance(result, OSError) and result.errno in (errno.EIO, errno.ENOTCONN),
          "read after shutdown: expected EIO or ENOTCONN, got %r" % (result,))


@suite.test
def sigterm_as_providers_leave_cuts_off_their_held_mounts(env):
    """Providers that leave detach their mounts lazily: files held open keep them. A SIGTERM
    right then (a whole device shutting down) must still cut those mounts off at once, not wait
    out the shutdown grace period for the programs to let go."""
    daemon = env.start_daemon(timeout=5)
    fakes, held = [], []
    for i in range(8):
        fake = env.fake(daemon)
        fake.attach("held%d" % i, {"f": File(b"held open\n")})
        fd = os.open(os.path.join(daemon.mount_path("held%d" % i), "f"), os.O_RDONLY)
        env.add_cleanup(lambda fd=fd: close_quietly(fd))
        fakes.append(fake)
        held.append(fd)
    for fake in fakes:
        fake.close()
    daemon.signal(signal.SIGTERM)
    started = time.monotonic()
    status = daemon.wait(10)
    took = time.monotonic() - started
    check_equal(status, 0, "exit status of webfused")
    check(took < 3.0, "webfused took %.1f s to stop (the grace period is 5 s)" % took)
    check("stopping anyway" not in daemon.log_text(), "the shutdown was forced")
    check_equal(harness.mounts_under(daemon.mount_root), [], "mounts left under the mount root")
    for fd in held:
        result, _ = harness.timed(lambda: harness.bounded(lambda: os.pread(fd, 16, 0), 5,
                                                          "read of a cut-off file"))
        check(isinstance(result, OSError) and result.errno in (errno.EIO, errno.ENOTCONN),
              "read of a held file after shutdown: expected EIO or ENOTCONN, got %r" % (result,))


# ---- Ctrl-C of the provider ---------------------------------------------------------------------


@suite.test
def provider_sigint_detaches_and_daemon_keeps_running(env):
    daemon = env.start_daemon(timeout=5)
    leaving = env.start_provider(daemon, [("leaving", DATA["victim"]),
                                          ("leaving2", DATA["bystander"])])
    env.start_provider(daemon, [("bystander", DATA["bystander"])])
    check_bystander(daemon, "leaving2")
    leaving.signal(signal.SIGINT)
    stopped_at = time.monotonic()
    check_equal(leaving.wait(5), 0, "exit status of webfuse-provider after SIGINT")
    for name in ("leaving", "leaving2"):
        harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path(name)),
                           max(0.1, 2.0 - (time.monotonic() - stopped_at)),
                           what="%s to be unmounted within 2 s of SIGINT" % name)
    check(daemon.alive(), "webfused died")
    check_bystander(daemon)
    # The names are free again.
    env.start_provider(daemon, [("leaving", DATA["bystander"])])
    check_bystander(daemon, "leaving")


@suite.test
def create_whose_attributes_fail_releases_the_new_handle(env):
    """A create is CREATE (the provider opens a handle) then GETATTR. When the second step
    fails, the program gets the error and never holds the file, so no RELEASE would come from the
    kernel: the gateway sends one itself, and the provider does not keep the handle forever."""
    daemon = env.start_daemon(admin=False)
    src = env.mkdir("src-create")
    fake = FakeWebfuse2(daemon.port, "cr", src)
    try:
        mp = daemon.mount_path("cr")
        harness.wait_mounted(mp)
        # Only the create's own getattr fails: the lookup before it must find nothing.
        fake.handlers["getattr"] = (
            lambda f, req: req.answer(-errno.EIO)
            if req.path == "/new" and f.requests_of("create") else DEFAULT)
        harness.check_errno(lambda: open(os.path.join(mp, "new"), "w"), errno.EIO,
                            "create whose getattr fails")
        check_equal(len(fake.requests_of("create")), 1, "creates sent")
        harness.wait_until(lambda: any(r.path == "/new" for r in fake.requests_of("release")), 5,
                           what="a release of the handle the create opened")
        check(daemon.alive(), "webfused died")
    finally:
        fake.abort()


if __name__ == "__main__":
    suite.main()
