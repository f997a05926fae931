#!/usr/bin/env python3
"""Fault injection (issue 8): providers that die at each phase of their work, providers that never
answer or answer wrongly, frames cut off mid-way, answers whose fragments never end or that carry
a wrong id, and a slow provider beside a fast one. Whatever a provider does, the program reading
the mount gets an error in bounded time (never a hang), the daemon lives on with bounded memory,
and a bystander session served by the real webfuse-provider keeps working. The suite prints how
many faults it tried.

Deaths are real: a provider process (fakeprovider.py run as a program) stalls at the chosen
request, says so, and gets SIGKILL there. test_failures.py covers a JSON provider killed mid-read
and a silent JSON provider; test_bad_input.py covers malformed JSON; this file adds the other
phases, webfuse2, and the slow/fast pair."""

import errno
import hashlib
import json
import mmap
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import pyprovider  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, check_errno  # noqa: E402
from fakeprovider import DEFAULT, NO_REPLY, FakeWebfuse2, File, Raw, split  # noqa: E402

suite = harness.Suite("test_faults")
suite.needs_provider = True

MIB = 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = {}
# How soon after a provider's death a blocked call must fail, and its mount go. The daemon's
# --timeout is far longer, so only the death can be what ended the call.
DEATH_GRACE = 2.0
LONG_TIMEOUT = 30
FAULTS = []  # one entry per fault injected; the suite prints how many it tried


def fault(what):
    FAULTS.append(what)


@suite.teardown
def report_faults(suite_dir):
    print("faults tried: %d" % len(FAULTS))


@suite.setup
def make_data(suite_dir):
    src = os.path.join(suite_dir, "src")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "big"), "wb") as f:
        for _ in range(16):
            f.write(os.urandom(MIB))
    with open(os.path.join(src, "target"), "wb") as f:
        f.write(b"target\n")
    with open(os.path.join(src, "sub", "x"), "wb") as f:
        f.write(b"x\n")
    DATA["src"] = src
    bystander = os.path.join(suite_dir, "bystander")
    os.makedirs(bystander)
    with open(os.path.join(bystander, "file.bin"), "wb") as f:
        f.write(os.urandom(2 * MIB + 5))
    DATA["bystander"] = bystander


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def start(env, timeout=LONG_TIMEOUT):
    """A daemon with a bystander: the real webfuse2 provider serving DATA["bystander"]."""
    daemon = env.start_daemon(timeout=timeout)
    env.start_webfuse2_provider(daemon, "bystander", DATA["bystander"])
    check_bystander(daemon)
    return daemon


def check_bystander(daemon):
    check(daemon.alive(), "webfused died (status %s)" % daemon.returncode())
    path = os.path.join(daemon.mount_path("bystander"), "file.bin")
    check_equal(harness.bounded(lambda: sha(path), 20, "reading the bystander"),
                sha(os.path.join(DATA["bystander"], "file.bin")), "the bystander's content")


def live_session_count(daemon):
    return daemon.api_ok("GET", "/api/v1/sessions")["total"]


class Call(threading.Thread):
    """Runs fn() in the background; records the OSError that ended it and when."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.error = None
        self.result = None
        self.done = threading.Event()
        self.finished_at = None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except OSError as e:
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self.done.set()


def start_stalling(env, daemon, protocol, name, stall="", attach=True, wait_mount=True):
    """A provider process that serves DATA["src"] as `name` and stalls at `stall`."""
    argv = [sys.executable, os.path.join(HERE, "fakeprovider.py"), "--port", str(daemon.port),
            "--protocol", protocol, "--name", name, "--path", DATA["src"], "--stall", stall]
    if not attach:
        argv.append("--no-attach")
    p = harness.Process("stalling-" + protocol, argv, env._log_path("stalling"))
    env.processes.append(p)
    harness.wait_until(lambda: "connected" in p.log_text() or not p.alive(), 10,
                       what="the stalling provider to connect")
    check(p.alive(), "the stalling provider died:\n%s" % p.log_text())
    if attach and wait_mount:
        harness.wait_mounted(daemon.mount_path(name))
    return p


def kill_at_stall(env, daemon, protocol, stall, action, what):
    """Starts `action(mountpoint)` against a provider that stalls at `stall`, SIGKILLs the
    provider once the request is stuck there, and checks that the call fails with EIO within
    DEATH_GRACE seconds, the mount goes, and the bystander is unharmed."""
    name = "victim-%s" % protocol
    fault("%s: provider killed" % what)
    p = start_stalling(env, daemon, protocol, name, stall)
    mp = daemon.mount_path(name)
    call = Call(lambda: action(mp))
    harness.wait_until(lambda: "stalled" in p.log_text() or call.done.is_set(), 20,
                       what="%s: the request to reach the provider" % what)
    check(not call.done.is_set(), "%s: the call ended before the provider died: %r %r"
          % (what, call.result, call.error))
    time.sleep(0.2)  # the call is well stuck now
    check(not call.done.is_set(), "%s: the call ended while the provider stalled" % what)
    p.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    check(call.done.wait(DEATH_GRACE + 3), "%s: the call still hangs %.0f s after the provider "
          "was killed" % (what, DEATH_GRACE + 3))
    after = call.finished_at - killed_at
    check(call.error is not None, "%s: the call succeeded after the kill: %r" % (what,
                                                                                 call.result))
    check_equal(call.error.errno, errno.EIO, "%s: errno (%s)" % (what, call.error))
    check(after <= DEATH_GRACE, "%s: the error came %.2f s after the kill" % (what, after))
    harness.wait_until(lambda: not harness.is_mounted(mp), DEATH_GRACE,
                       what="%s: the mount to go" % what)
    check_bystander(daemon)
    harness.wait_until(lambda: live_session_count(daemon) == 1, 5,
                       what="%s: only the bystander's session to be left" % what)


def read_all(path):
    with open(path, "rb") as f:
        return len(f.read())


def write_file(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, os.urandom(MIB))
        os.fsync(fd)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


# ---- a provider killed at each phase ------------------------------------------------------------


@suite.test
def provider_killed_before_attaching_leaves_no_session(env):
    daemon = start(env)
    p = start_stalling(env, daemon, "json", "never", attach=False)
    harness.wait_until(lambda: live_session_count(daemon) == 2, 5, what="its session")
    fault("provider killed before attaching")
    p.signal(signal.SIGKILL)
    harness.wait_until(lambda: live_session_count(daemon) == 1, 5,
                       what="the dead session to be gone")
    check_equal([m[0] for m in harness.mounts_under(daemon.mount_root)],
                [daemon.mount_path("bystander")], "mounts")
    check_bystander(daemon)


@suite.test(budget=90)
def provider_killed_right_after_asking_to_attach_leaves_no_mount(env):
    """The kill races the mount (at a different moment each round): whichever comes first, no
    mount may outlive the session, and the name is free again."""
    daemon = start(env)
    for i in range(6):
        p = start_stalling(env, daemon, "json", "racer", wait_mount=False)
        harness.wait_until(lambda: "attaching" in p.log_text(), 5, what="add_filesystem")
        time.sleep(0.03 * i)
        fault("provider killed %d ms after add_filesystem" % (30 * i))
        p.signal(signal.SIGKILL)
        p.wait(5)
        harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path("racer")), 5,
                           what="round %d: the racer's mount to go" % i)
        harness.wait_until(lambda: live_session_count(daemon) == 1, 5,
                           what="round %d: only the bystander's session" % i)
    start_stalling(env, daemon, "json", "racer")
    check_equal(sorted(os.listdir(daemon.mount_path("racer"))), ["big", "sub", "target"],
                "the name attached again")
    check_bystander(daemon)


@suite.test
def provider_killed_while_a_lookup_is_pending(env):
    daemon = start(env)
    kill_at_stall(env, daemon, "webfuse2", "getattr:/target",
                  lambda mp: os.stat(os.path.join(mp, "target")), "webfuse2 lookup")
    kill_at_stall(env, daemon, "json", "lookup:target",
                  lambda mp: os.stat(os.path.join(mp, "target")), "json lookup")


@suite.test
def provider_killed_mid_read_of_a_large_file(env):
    daemon = start(env)
    # JSON: test_failures.provider_killed_mid_read_gives_eio_and_mount_goes.
    kill_at_stall(env, daemon, "webfuse2", "read:/big:%d" % (4 * MIB),
                  lambda mp: read_all(os.path.join(mp, "big")), "webfuse2 read at 4 MiB")


@suite.test
def provider_killed_during_readdir(env):
    daemon = start(env)
    kill_at_stall(env, daemon, "webfuse2", "readdir:/", lambda mp: os.listdir(mp),
                  "webfuse2 readdir")
    kill_at_stall(env, daemon, "json", "readdir:/", lambda mp: os.listdir(mp), "json readdir")


@suite.test
def provider_killed_during_a_write(env):
    daemon = start(env)
    kill_at_stall(env, daemon, "webfuse2", "write",
                  lambda mp: write_file(os.path.join(mp, "new")), "webfuse2 write")


# ---- providers that answer wrongly or not at all -------------------------------------------------


def wf2_fault_fixture(env, timeout=2):
    daemon = start(env, timeout=timeout)
    root = env.mkdir("wf2-src")
    for name in ("good", "silent", "wrong_id", "wrong_type", "truncated", "short_header",
                 "too_much", "bad_attr", "fragmented_lie"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"0123456789" * 100)
    fake = FakeWebfuse2(daemon.port, "faulty", root)
    env.add_cleanup(fake.abort)
    harness.wait_mounted(daemon.mount_path("faulty"))
    return daemon, fake


def wf2_bad_read(req):
    """The read answer that breaks the protocol as the file's name says."""
    name = os.path.basename(req.path)
    data = b"0" * min(req.size, 10)
    if name == "silent":
        return NO_REPLY
    if name == "wrong_id":
        return struct.pack("!IBi", req.id ^ 0x40000000, 0x90, len(data)) + \
            struct.pack("!I", len(data)) + data
    if name == "wrong_type":
        return req.answer(0, b"\0" * 88, code=0x02)  # a getattr answer
    if name == "truncated":
        return req.answer(len(data), struct.pack("!I", len(data)) + data[:3])
    if name == "short_header":
        return Raw(struct.pack("!I", req.id)[:3])
    if name == "too_much":
        more = b"z" * (req.size + 10)
        return req.answer(len(more), struct.pack("!I", len(more)) + more)
    if name == "fragmented_lie":  # says 10 bytes, carries 4, in three frames
        return Raw(req.answer(10, struct.pack("!I", 10) + b"abcd"), fragments=3)
    return DEFAULT


@suite.test(budget=90)
def webfuse2_wrong_answers_give_eio_and_the_session_stays(env):
    daemon, fake = wf2_fault_fixture(env)
    fake.handlers["read"] = lambda f, req: wf2_bad_read(req)
    mp = daemon.mount_path("faulty")
    # Answers that arrive but are wrong fail at once; ones that never match a request fail
    # after --timeout (2 s).
    for name, limit in (("wrong_type", 1.0), ("truncated", 1.0), ("too_much", 1.0),
                        ("fragmented_lie", 1.0), ("silent", 5.5), ("wrong_id", 5.5),
                        ("short_header", 5.5)):
        fault("webfuse2 read answer: " + name)
        path = os.path.join(mp, name)
        result, elapsed = harness.timed(lambda: harness.bounded(lambda: read_all(path), 15,
                                                                "reading " + name))
        check(isinstance(result, OSError) and result.errno == errno.EIO,
              "read answered %s: expected EIO, got %r" % (name, result))
        check(elapsed <= limit, "read answered %s failed only after %.2f s" % (name, elapsed))
    check_equal(harness.bounded(lambda: read_all(os.path.join(mp, "good")), 10, "good read"),
                1000, "bytes of the good file beside the bad ones")
    check(not fake.closed.is_set(), "the gateway closed the faulty session (%r %r)"
          % (fake.close_code, fake.close_reason))
    check_bystander(daemon)


@suite.test
def webfuse2_wrong_attribute_answers_give_eio(env):
    daemon, fake = wf2_fault_fixture(env)
    mp = daemon.mount_path("faulty")

    def getattr(f, req):
        name = os.path.basename(req.path or "")
        if name == "bad_attr":  # 40 of the 88 bytes of attributes
            return req.answer(0, b"\0" * 40)
        if name == "wrong_type":  # an open answer
            return req.answer(0, struct.pack("!Q", 7), code=0x0b)
        if name == "too_much":  # a byte count where only 0 or an error may be
            return req.answer(88, b"\0" * 88)
        if name.startswith("errno"):  # the kernel takes errno values up to 511 only
            return req.answer(-int(name[len("errno"):]))
        return DEFAULT

    fake.handlers["getattr"] = getattr
    for name in ("bad_attr", "wrong_type", "too_much"):
        fault("webfuse2 getattr answer: " + name)
        check_errno(lambda: harness.bounded(lambda: os.stat(os.path.join(mp, name)), 10,
                                            "stat " + name), errno.EIO, "stat of " + name)
    # An errno beyond the kernel's range once left the program waiting forever (512-999) or
    # gave it ERANGE (1000 and up).
    for value, expected in ((13, errno.EACCES), (511, 511), (512, errno.EIO), (999, errno.EIO),
                            (1000, errno.EIO), (4095, errno.EIO), (2 ** 31, errno.EIO)):
        name = "errno%d" % value
        fault("webfuse2 getattr answer: error %d" % -value)
        check_errno(lambda: harness.bounded(lambda: os.stat(os.path.join(mp, name)), 10,
                                            "stat " + name), expected, "stat of " + name)
    check_equal(os.stat(os.path.join(mp, "good")).st_size, 1000, "size of the good file")
    check_bystander(daemon)


@suite.test
def json_answers_of_the_wrong_kind_give_eio(env):
    """test_bad_input covers malformed read, attribute and readdir answers; here the answer is
    not an answer at all, or belongs to another request type."""
    daemon = start(env, timeout=2)
    fake = env.fake(daemon)
    tree = {"as_request": File(b"r" * 100), "as_notification": File(b"n" * 100),
            "as_listing": File(b"l" * 100), "as_attr": File(b"a" * 100), "good": File(b"g" * 10)}
    fake.attach("wrongkind", tree)
    fs = fake.filesystems["wrongkind"]
    kind_of = {fs.root.children[k].inode: k for k in tree}

    def read(f, msg):
        kind = kind_of.get(msg["params"][1])
        if kind == "as_request":
            return {"method": "read", "params": msg["params"]}
        if kind == "as_notification":
            f.send_json({"method": "read", "params": msg["params"]})
            return NO_REPLY
        if kind == "as_listing":
            return {"result": [{"name": "x", "inode": 5}]}
        if kind == "as_attr":
            return {"result": {"mode": 420, "type": "file", "size": 100}}
        return DEFAULT

    fake.handlers["read"] = read
    mp = daemon.mount_path("wrongkind")
    for kind in ("as_request", "as_notification", "as_listing", "as_attr"):
        fault("JSON read answered " + kind)
        result = harness.timed(lambda: harness.bounded(
            lambda: read_all(os.path.join(mp, kind)), 15, "reading " + kind))[0]
        check(isinstance(result, OSError) and result.errno == errno.EIO,
              "read answered %s: expected EIO, got %r" % (kind, result))
    check_equal(read_all(os.path.join(mp, "good")), 10, "the good file")
    check_bystander(daemon)


# ---- frames cut short, messages that never end, answers to no request ---------------------------


def direct_read(path, size, offset=0):
    """One read of `size` bytes as one request to the provider (O_DIRECT: no page cache, no
    read-ahead beside it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        return os.pread(fd, size, offset)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the flush of a mount that is gone


def json_answer(fake, name, msg):
    """The correct answer to the JSON request `msg` for filesystem `name`, as bytes."""
    answer = fake.filesystems[name].answer(msg["method"], msg["params"])
    answer["id"] = msg["id"]
    return json.dumps(answer).encode()


def cut_short(ws, frame, where):
    """Sends `frame` up to the middle of its header or of its payload, then drops the TCP
    connection: a provider that died in the middle of a write."""
    keep = 6 if where == "header" else len(frame) // 2  # 6: inside the 8-byte length
    with ws.send_lock:
        ws.sock.sendall(frame[:keep])
    ws.sock.shutdown(socket.SHUT_RDWR)


def mangling_provider(env, daemon, protocol, name, send):
    """A provider session attaching `name` whose read answers go out as send(ws, opcode,
    answer) does it instead of as one frame: webfuse2 (FakeWebfuse2 over DATA["src"]) or JSON
    (a fake with a 256 KiB file "big"). Returns the fake."""
    if protocol == "webfuse2":
        fake = FakeWebfuse2(daemon.port, name, DATA["src"])
        env.add_cleanup(fake.abort)
        opcode = wstest.OP_BINARY
        harness.wait_mounted(daemon.mount_path(name))

        def answer_of(f, req):
            return f.provider.answer(req.raw)
    else:
        fake = env.fake(daemon)
        fake.attach(name, {"big": File(os.urandom(256 * 1024))})
        opcode = wstest.OP_TEXT

        def answer_of(f, msg):
            return json_answer(f, name, msg)

    def read(f, req):
        send(f.ws, opcode, answer_of(f, req))
        return NO_REPLY

    fake.handlers["read"] = read
    return fake


def read_fails_with_eio(daemon, name, limit, what):
    """One 128 KiB read of `name`/big must fail with EIO within `limit` seconds. (More than
    64 KiB: its answer's frame has the 8-byte length.)"""
    path = os.path.join(daemon.mount_path(name), "big")
    result, elapsed = harness.timed(lambda: harness.bounded(
        lambda: direct_read(path, 128 * 1024), 15, what))
    check(isinstance(result, OSError) and result.errno == errno.EIO, "%s: expected EIO, got %s"
          % (what, "%d bytes" % len(result) if isinstance(result, bytes) else repr(result)))
    check(elapsed <= limit, "%s: the error came after %.2f s" % (what, elapsed))


@suite.test
def frame_cut_off_mid_way_then_closed_gives_eio_at_once(env):
    daemon = start(env)
    for protocol, where in (("webfuse2", "header"), ("webfuse2", "payload"), ("json", "payload")):
        what = "%s read answer cut in its %s" % (protocol, where)
        fault(what)
        name = "cut-%s-%s" % (protocol, where)
        mangling_provider(env, daemon, protocol, name, lambda ws, opcode, answer, where=where:
                          cut_short(ws, ws.encode_frame(opcode, answer), where))
        read_fails_with_eio(daemon, name, DEATH_GRACE, what)
        harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path(name)), DEATH_GRACE,
                           what="%s: the mount to go" % what)
        harness.wait_until(lambda: live_session_count(daemon) == 1, 5,
                           what="%s: only the bystander's session to be left" % what)
    check_bystander(daemon)


@suite.test
def message_inside_a_fragmented_answer_closes_the_connection(env):
    """RFC 6455 5.4: a data message may not start between the fragments of another. A provider
    that does so (here: a read answer's first half, unfinished, then its second half as a new
    message) is broken and its connection is failed (1002): the read gets EIO at once. Joined,
    the two would make a well-formed answer, so a gateway that joined them would let the read
    succeed."""
    daemon = start(env)

    def spliced(ws, opcode, answer):
        half = len(answer) // 2
        ws.send_frame(opcode, answer[:half], fin=False)
        ws.send_frame(opcode, answer[half:], fin=True)  # not a continuation frame

    for protocol in ("webfuse2", "json"):
        what = "%s read answer with another message inside" % protocol
        fault(what)
        name = "spliced-" + protocol
        fake = mangling_provider(env, daemon, protocol, name, spliced)
        read_fails_with_eio(daemon, name, 1.0, what)
        harness.wait_until(lambda: fake.closed.is_set(), 5, what="%s: the close" % what)
        check_equal(fake.close_code, 1002, "%s: close status" % what)
        harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path(name)), DEATH_GRACE,
                           what="%s: the mount to go" % what)
    check_bystander(daemon)


# A webfuse2 answer that never ends: a first fragment, then 16 KiB more every 20 ms (800 KiB/s)
# and never the last. The request times out after ENDLESS_TIMEOUT seconds, long before
# ENDLESS_MAX_MESSAGE bytes came; then the gateway closes the connection at that size.
ENDLESS_TIMEOUT = 2
ENDLESS_MAX_MESSAGE = 4 * MIB
ENDLESS_STEP = 16 * 1024
ENDLESS_PAUSE = 0.02


@suite.test(budget=90)
def answer_that_never_ends_fails_with_eio_after_timeout_and_is_cut_at_max_message(env):
    fault("webfuse2 read answer whose fragments never end")
    daemon = env.start_daemon(timeout=ENDLESS_TIMEOUT, max_message=ENDLESS_MAX_MESSAGE)
    env.start_webfuse2_provider(daemon, "bystander", DATA["bystander"])
    check_bystander(daemon)
    baseline_rss = rss_kib(daemon.pid)
    fake = FakeWebfuse2(daemon.port, "endless", DATA["src"])
    env.add_cleanup(fake.abort)
    sent = [0]

    def keep_sending(first):
        try:
            fake.ws.send_frame(wstest.OP_BINARY, first, fin=False)
            while not fake.closed.is_set():
                time.sleep(ENDLESS_PAUSE)
                fake.ws.send_frame(wstest.OP_CONT, b"\0" * ENDLESS_STEP, fin=False)
                sent[0] += ENDLESS_STEP
        except OSError:
            pass

    def endless(f, req):
        if req.type != "read" or sending.is_set():
            # Nothing else may go out while the message is open: another message between its
            # fragments is a different protocol error (see the test above).
            return NO_REPLY if sending.is_set() else DEFAULT
        sending.set()
        first = f.provider.answer(req.raw)[:4096]
        threading.Thread(target=keep_sending, args=(first,), daemon=True).start()
        return NO_REPLY

    sending = threading.Event()
    for type_name in pyprovider.NAMES.values():
        fake.handlers[type_name] = endless
    mp = daemon.mount_path("endless")
    harness.wait_mounted(mp)
    peak_rss = [baseline_rss]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], rss_kib(daemon.pid))
            time.sleep(0.02)

    threading.Thread(target=sampler, daemon=True).start()
    try:
        result, elapsed = harness.timed(lambda: harness.bounded(
            lambda: direct_read(os.path.join(mp, "big"), 64 * 1024), ENDLESS_TIMEOUT + 10,
            "the read answered without end"))
        still_open = not fake.closed.is_set()
        received_by_then = sent[0]
        check(fake.closed.wait(20), "the gateway still takes fragments 20 s later (%d MiB)"
              % (sent[0] // MIB))
    finally:
        stop.set()
    growth = (peak_rss[0] - baseline_rss) / 1024.0
    print("  endless answer: read failed after %.2f s (--timeout %d) with %d KiB of fragments "
          "sent; connection closed with %s after %d KiB (--max-message %d KiB); daemon RSS "
          "peak +%.1f MiB" % (elapsed, ENDLESS_TIMEOUT, received_by_then // 1024,
                              fake.close_code, sent[0] // 1024, ENDLESS_MAX_MESSAGE // 1024,
                              growth))
    check(isinstance(result, OSError) and result.errno == errno.EIO,
          "the read answered without end: expected EIO, got %r" % (result,))
    check(ENDLESS_TIMEOUT - 0.3 <= elapsed <= ENDLESS_TIMEOUT + 1.5,
          "the read failed after %.2f s, not at --timeout (%d s)" % (elapsed, ENDLESS_TIMEOUT))
    check(still_open, "the connection was closed before the request timed out")
    check_equal(fake.close_code, 1009, "close status once the message passed --max-message")
    check(sent[0] >= ENDLESS_MAX_MESSAGE - 4096, "closed after only %d bytes" % sent[0])
    if harness.sanitized(daemon.pid):
        print("  (AddressSanitizer keeps freed memory in its quarantine: RSS not compared)")
    else:
        limit = ENDLESS_MAX_MESSAGE / MIB + SESSION_OVERHEAD_MIB
        check(growth <= limit, "the daemon's RSS grew by %.1f MiB (bound %.0f MiB)"
              % (growth, limit))
    harness.wait_until(lambda: not harness.is_mounted(mp), 5, what="the endless mount to go")
    check_bystander(daemon)


@suite.test
def json_answer_left_unfinished_fails_with_eio_and_its_late_end_is_dropped(env):
    """A JSON answer's first half, then nothing: the read fails at --timeout and the session
    stays. When the rest comes after all, it completes an answer to a request that is gone:
    dropped, and the session goes on serving."""
    fault("JSON read answer left unfinished, finished late")
    daemon = start(env, timeout=2)
    fake = env.fake(daemon)
    fake.attach("unfinished", {"half": File(b"h" * 5000), "good": File(b"g" * 10)})
    half_inode = fake.filesystems["unfinished"].root.children["half"].inode
    rest = []

    def read(f, msg):
        if rest:  # the message is open: nothing else may go out (see the endless answer)
            return NO_REPLY
        if msg["method"] != "read" or msg["params"][1] != half_inode:
            return DEFAULT
        text = json_answer(f, "unfinished", msg)
        f.send_frame(wstest.OP_TEXT, text[:len(text) // 2], fin=False)
        rest.append(text[len(text) // 2:])
        return NO_REPLY

    for method in ("lookup", "getattr", "readdir", "open", "read"):
        fake.handlers[method] = read
    mp = daemon.mount_path("unfinished")
    result, elapsed = harness.timed(lambda: harness.bounded(
        lambda: direct_read(os.path.join(mp, "half"), 4096), 15, "reading half"))
    check(isinstance(result, OSError) and result.errno == errno.EIO,
          "read of an unfinished answer: expected EIO, got %r" % (result,))
    check(1.7 <= elapsed <= 3.5, "the read failed after %.2f s, not at --timeout (2 s)" % elapsed)
    check(not fake.closed.is_set(), "the gateway closed the session (%r %r)"
          % (fake.close_code, fake.close_reason))
    fake.send_frame(wstest.OP_CONT, rest.pop(), fin=True)
    check_equal(harness.bounded(lambda: direct_read(os.path.join(mp, "good"), 4096), 10,
                                "reading good"), b"g" * 10, "the good file after the late end")
    check_equal(fake.errors, [], "protocol errors seen by the fake")
    check_bystander(daemon)


# Answers with an id that is not the pending request's: (what, id from the request's id,
# whether the gateway must close the connection: an id that is not an integer is malformed).
WRONG_IDS = (("the next id", lambda i: i + 1, False),
             ("the id plus 2^32", lambda i: i + 2 ** 32, False),
             ("the negative id", lambda i: -i, False),
             ("the id as a string", str, True),
             ("the id as a float", float, True))


@suite.test(budget=90)
def json_answer_with_a_wrong_id_never_answers_the_pending_request(env):
    """A read is pending when an answer with another id comes, carrying data. The data must
    never reach the program: an id no request has is dropped (the read fails at --timeout, the
    session goes on), a malformed one closes the connection (the read fails at once)."""
    daemon = start(env, timeout=2)
    for n, (what, wrong_id, closes) in enumerate(WRONG_IDS):
        fault("JSON read answered with " + what)
        name = "wrongid%d" % n
        fake = env.fake(daemon)
        fake.attach(name, {"f": File(b"right"), "good": File(b"good")})
        f_inode = fake.filesystems[name].root.children["f"].inode

        def read(f, msg, wrong_id=wrong_id):
            if msg["params"][1] != f_inode:
                return DEFAULT
            return Raw(json.dumps({"result": {"data": "V1JPTkc=", "format": "base64",
                                              "count": 5}, "id": wrong_id(msg["id"])}))

        fake.handlers["read"] = read
        mp = daemon.mount_path(name)
        result, elapsed = harness.timed(lambda: harness.bounded(
            lambda: direct_read(os.path.join(mp, "f"), 4096), 15, "read answered with " + what))
        check(isinstance(result, OSError) and result.errno == errno.EIO,
              "read answered with %s: expected EIO, got %r" % (what, result))
        if closes:
            check(elapsed <= 1.0, "read answered with %s failed only after %.2f s"
                  % (what, elapsed))
            check_equal(fake.wait_close(5)[0], 1007, "close status after %s" % what)
            harness.wait_until(lambda: not harness.is_mounted(mp), 5,
                               what="the mount to go after " + what)
        else:
            check(1.7 <= elapsed <= 3.5, "read answered with %s failed after %.2f s, not at "
                  "--timeout (2 s)" % (what, elapsed))
            check(not fake.closed.is_set(), "the gateway closed the session after %s" % what)
            check_equal(harness.bounded(lambda: direct_read(os.path.join(mp, "good"), 4096),
                                        10, "reading good"), b"good",
                        "the session's next read after %s" % what)
    check_bystander(daemon)


# ---- a slow provider beside a fast one -----------------------------------------------------------


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_read(path):
    start = time.monotonic()
    n = read_all(path)
    return n / (time.monotonic() - start)


# The slow provider's link: each read answer (1 MiB) in 16 frames with a pause before each, about
# 6 MiB/s. Its session may have SLOW_MAX_PENDING requests in flight; SLOW_READERS programs each
# keep one uncached 1 MiB read waiting, so most of them wait in the mount, not at the provider.
SLOW_MAX_PENDING = 4
SLOW_READERS = 16
SLOW_READ = MIB
TRICKLE_FRAGMENTS = 16
TRICKLE_PAUSE = 0.01
# What one more session with a mount may cost the daemon however it is used (its connection's
# receive buffer, its reassembly buffer, the mount's FUSE request buffer, a thread's stack):
# measured at 1.1 MiB. Besides that, at most one read answer per request in flight may be held.
# A daemon that held an answer per waiting read (SLOW_READERS MiB) or kept the buffers of
# answers it had passed on exceeds the bound.
SESSION_OVERHEAD_MIB = 3
RSS_GROWTH_LIMIT_MIB = SESSION_OVERHEAD_MIB + SLOW_MAX_PENDING * SLOW_READ // MIB


class TricklingProvider:
    """A webfuse2 provider behind a slow link: it takes each request off the connection as soon
    as it comes (so `peak_unanswered` is what the gateway had in flight to it) and answers them
    in order from a thread of its own, read answers in TRICKLE_FRAGMENTS frames with a pause
    before each."""

    def __init__(self, port, name, root):
        self.fake = FakeWebfuse2(port, name, root)
        self.queue = queue.Queue()
        self.lock = threading.Lock()
        self.unanswered = 0
        self.peak_unanswered = 0
        self.reads_answered = 0
        for type_name in pyprovider.NAMES.values():
            self.fake.handlers[type_name] = self._take
        self.thread = threading.Thread(target=self._answer_all, daemon=True, name="trickle")
        self.thread.start()

    def _take(self, fake, req):  # the fake's reader thread
        with self.lock:
            self.unanswered += 1
            self.peak_unanswered = max(self.peak_unanswered, self.unanswered)
        self.queue.put(req)
        return NO_REPLY

    def _answer_all(self):
        while True:
            req = self.queue.get()
            if req is None:
                return
            answer = self.fake.provider.answer(req.raw)
            parts = split(answer, TRICKLE_FRAGMENTS) if req.type == "read" else [answer]
            try:
                for i, part in enumerate(parts):
                    last = i == len(parts) - 1
                    if req.type == "read":
                        time.sleep(TRICKLE_PAUSE)
                    if last:
                        # Counted as answered before the gateway can have it, so the gateway's
                        # next request never meets a stale count.
                        with self.lock:
                            self.unanswered -= 1
                            self.reads_answered += req.type == "read"
                    self.fake.ws.send_frame(wstest.OP_BINARY if i == 0 else wstest.OP_CONT,
                                            part, fin=last)
            except OSError:
                return

    def abort(self):
        self.queue.put(None)
        self.fake.abort()
        self.thread.join(5)


@suite.test(budget=150)
def slow_provider_does_not_hold_back_a_fast_one_and_memory_stays_bounded(env):
    daemon = env.start_daemon(timeout=LONG_TIMEOUT,
                              extra=["--max-pending", str(SLOW_MAX_PENDING)])
    fast_src = env.mkdir("fast-src")
    for name in ("alone", "beside"):
        with open(os.path.join(fast_src, name), "wb") as f:
            for _ in range(48):
                f.write(os.urandom(MIB))
    env.start_webfuse2_provider(daemon, "fast", fast_src)
    fast = daemon.mount_path("fast")
    harness.bounded(lambda: read_all(os.path.join(fast, "alone")), 60, "warm-up read")
    harness.drop_caches()
    alone = harness.bounded(lambda: timed_read(os.path.join(fast, "alone")), 60, "fast alone")
    harness.drop_caches()
    baseline_rss = rss_kib(daemon.pid)

    fault("a provider trickling its answers")
    slow = TricklingProvider(daemon.port, "slow", DATA["src"])
    env.add_cleanup(slow.abort)
    harness.wait_mounted(daemon.mount_path("slow"))
    with open(os.path.join(DATA["src"], "big"), "rb") as f:
        expected = f.read()
    stop = threading.Event()
    lock = threading.Lock()
    state = {"in_flight": 0, "peak_in_flight": 0, "reads": 0, "wrong": 0, "errors": []}
    peak_rss = [baseline_rss]

    def slow_reader(i):
        # O_DIRECT: each read is one request to the provider, never served from the page cache.
        try:
            fd = os.open(os.path.join(daemon.mount_path("slow"), "big"), os.O_RDONLY | os.O_DIRECT)
        except OSError as e:
            state["errors"].append(e)
            return
        buf = mmap.mmap(-1, SLOW_READ)  # page-aligned, as O_DIRECT wants
        try:
            offset = i * SLOW_READ
            while not stop.is_set():
                offset %= len(expected)
                with lock:
                    state["in_flight"] += 1
                    state["peak_in_flight"] = max(state["peak_in_flight"], state["in_flight"])
                try:
                    n = os.preadv(fd, [buf], offset)
                finally:
                    with lock:
                        state["in_flight"] -= 1
                with lock:
                    state["reads"] += 1
                    state["wrong"] += buf[:n] != expected[offset:offset + SLOW_READ]
                offset += SLOW_READERS * SLOW_READ
        except OSError as e:
            if not stop.is_set():
                state["errors"].append(e)
        finally:
            os.close(fd)
            buf.close()

    def sampler():
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], rss_kib(daemon.pid))
            time.sleep(0.02)

    threads = [threading.Thread(target=slow_reader, args=(i,), daemon=True)
               for i in range(SLOW_READERS)]
    threads.append(threading.Thread(target=sampler, daemon=True))
    for t in threads:
        t.start()
    try:
        harness.wait_until(lambda: slow.reads_answered >= 2 * SLOW_READERS, 60,
                           what="the slow provider to answer %d reads" % (2 * SLOW_READERS))
        beside = harness.bounded(lambda: timed_read(os.path.join(fast, "beside")), 60,
                                 "fast beside the slow one")
        # The slow link goes on a while longer with all its reads waiting.
        answered = slow.reads_answered
        harness.wait_until(lambda: slow.reads_answered >= answered + SLOW_READERS, 60,
                           what="%d more slow reads" % SLOW_READERS)
    finally:
        stop.set()
    for t in threads:
        t.join(20)
    check(not any(t.is_alive() for t in threads), "slow readers still hang 20 s after the end")
    growth = (peak_rss[0] - baseline_rss) / 1024.0
    print("  fast provider: %.1f MiB/s alone, %.1f MiB/s beside the slow one" %
          (alone / MIB, beside / MIB))
    print("  slow provider: %d reads of %d KiB answered in %d frames each; reads waiting on the "
          "device at most %d, requests unanswered at the provider at most %d (--max-pending %d)"
          % (slow.reads_answered, SLOW_READ // 1024, TRICKLE_FRAGMENTS,
             state["peak_in_flight"], slow.peak_unanswered, SLOW_MAX_PENDING))
    print("  daemon RSS %.1f MiB before the slow provider, peak +%.1f MiB (bound %d MiB)"
          % (baseline_rss / 1024.0, growth, RSS_GROWTH_LIMIT_MIB))
    check_equal(state["errors"], [], "errors of the slow readers")
    check_equal(state["wrong"], 0, "slow reads whose bytes differ from the file")
    check(state["peak_in_flight"] >= 3 * SLOW_MAX_PENDING,
          "only %d reads waited at once: not enough to fill --max-pending %d three times over"
          % (state["peak_in_flight"], SLOW_MAX_PENDING))
    check_equal(slow.peak_unanswered, SLOW_MAX_PENDING,
                "most requests the slow provider had unanswered at once")
    check(beside >= alone / 3, "the fast provider was held back: %.1f MiB/s beside the slow "
          "one, %.1f MiB/s alone" % (beside / MIB, alone / MIB))
    if harness.sanitized(daemon.pid):
        print("  (AddressSanitizer keeps freed memory in its quarantine: RSS not compared)")
    else:
        check(growth <= RSS_GROWTH_LIMIT_MIB, "the daemon's RSS grew by %.1f MiB while the slow "
              "provider trickled (bound %d MiB)" % (growth, RSS_GROWTH_LIMIT_MIB))
    check(daemon.alive(), "webfused died")


if __name__ == "__main__":
    suite.main()
