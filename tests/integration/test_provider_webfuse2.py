#!/usr/bin/env python3
"""webfuse-provider against a scripted service speaking webfuse2 (docs/webfuse2-protocol.md).

The test plays the service (the gateway side) with wstest.Server: it accepts the provider's
connection, sends every request type, built here with struct (independent of the C codec), and
checks each answer byte for byte against what Python's os module sees in the served directory:
results, errno values, attributes, data, and the resulting state. Also: unknown request types
(0x80), requests too short for their fields (-EINVAL), paths that try to leave the directory,
--read-only (EROFS for every change), getcreds with --token / WEBFUSE_TOKEN, handle limits,
reconnecting. No FUSE and no webfused needed.

Environment: WEBFUSE_PROVIDER = path of the webfuse-provider binary (exit 77 = skipped without;
a failure with WEBFUSE_REQUIRE_ALL=1).
Prints "N passed, M failed"; exit status 0 when every case passes, 1 otherwise.
Run one case: test_provider_webfuse2.py test_read_write
"""

import errno
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (skip() only: no root or FUSE needed here)
import wstest  # noqa: E402

SUBPROTOCOL = "webfuse2"
TIMEOUT = 10  # seconds, for every single wait
MIB = 1 << 20
NONE = 0xFFFFFFFFFFFFFFFF  # the handle meaning "no open file"
O_LARGEFILE = 0o100000
FMODE_EXEC = 0x20  # what the kernel adds to open flags when a program is executed
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2

# Request types
TYPE_NAMES = ("ACCESS GETATTR READLINK SYMLINK LINK RENAME CHMOD CHOWN TRUNCATE FSYNC OPEN "
              "MKNOD CREATE RELEASE UNLINK READ WRITE MKDIR READDIR RMDIR STATFS UTIMENS "
              "GETCREDS READDIRPLUS").split()
(ACCESS, GETATTR, READLINK, SYMLINK, LINK, RENAME, CHMOD, CHOWN, TRUNCATE, FSYNC, OPEN, MKNOD,
 CREATE, RELEASE, UNLINK, READ, WRITE, MKDIR, READDIR, RMDIR, STATFS, UTIMENS,
 GETCREDS, READDIRPLUS) = range(0x01, 0x19)  # READDIRPLUS: our extension (docs/protocols.md)
NAMES = {i + 1: name.lower() for i, name in enumerate(TYPE_NAMES)}

PROVIDER = os.environ.get("WEBFUSE_PROVIDER", "")


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


def check_bytes(actual, expected, what):
    if actual != expected:
        raise Failure("%s:\n  expected %s\n  got      %s" % (what, expected[:160].hex(),
                                                            actual[:160].hex()))


# ------------------------------------------------------------------------------------------------
# Wire format, from the spec's tables
# ------------------------------------------------------------------------------------------------

def b(text):
    return text if isinstance(text, bytes) else os.fsencode(text)


def wstr(text):
    """string / bytes: u32 length, then the bytes"""
    data = b(text)
    return struct.pack(">I", len(data)) + data


def ts(sec, nsec):
    return struct.pack(">QI", sec, nsec)


def ts_ns(ns):
    return ts(ns // 10**9, ns % 10**9)


# Request payloads (after id and type), one builder per type.
def p_path(path):
    return wstr(path)


def p_access(path, mode):
    return wstr(path) + struct.pack(">B", mode)


def p_two(a, c):
    return wstr(a) + wstr(c)


def p_rename(a, c, flags):
    return wstr(a) + wstr(c) + struct.pack(">B", flags)


def p_mode(path, mode):
    return wstr(path) + struct.pack(">I", mode)


def p_readdirplus(path, cookie, max_entries):
    return wstr(path) + struct.pack(">QI", cookie, max_entries)


def p_chown(path, uid, gid):
    return wstr(path) + struct.pack(">II", uid, gid)


def p_truncate(path, size, handle):
    return wstr(path) + struct.pack(">QQ", size, handle)


def p_fsync(path, datasync, handle):
    return wstr(path) + struct.pack(">BQ", datasync, handle)


def p_open(path, flags):
    return wstr(path) + struct.pack(">i", flags)


def p_mknod(path, mode, rdev):
    return wstr(path) + struct.pack(">IQ", mode, rdev)


def p_release(path, handle):
    return wstr(path) + struct.pack(">Q", handle)


def p_read(path, size, offset, handle):
    return wstr(path) + struct.pack(">IQQ", size, offset, handle)


def p_write(path, data, offset, handle):
    return wstr(path) + wstr(data) + struct.pack(">QQ", offset, handle)


def p_utimens(path, atime, mtime, handle):
    return wstr(path) + ts(*atime) + ts(*mtime) + struct.pack(">Q", handle)


def attr_bytes(st):
    """The 88-byte attributes of an os.stat_result."""
    return (struct.pack(">QQIIIQQQ", st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid,
                        st.st_rdev, st.st_size, st.st_blocks)
            + ts_ns(st.st_atime_ns) + ts_ns(st.st_mtime_ns) + ts_ns(st.st_ctime_ns))


def response(rid, rtype, result, rest=b""):
    return struct.pack(">IBi", rid, rtype | 0x80, result) + rest


def result_of(msg):
    return struct.unpack(">i", msg[5:9])[0]


def errname(result):
    return errno.errorcode.get(-result, str(result)) if result < 0 else result


# ------------------------------------------------------------------------------------------------
# The served tree
# ------------------------------------------------------------------------------------------------

SPARSE_SIZE = 5 * (1 << 30) + 7  # beyond 32 bits
BIG = os.urandom(3 * MIB + 4321)


def make_tree(base):
    """base/export is served; base/secret.txt and base/outside/ must stay out of reach."""
    root = os.path.join(base, "export")
    os.makedirs(os.path.join(root, "sub", "deeper"))
    os.makedirs(os.path.join(base, "outside"))
    secret = os.path.join(base, "secret.txt")
    with open(secret, "wb") as f:
        f.write(b"outside the export\n")
    os.chmod(secret, 0o600)
    files = {"hello.txt": b"hello, world\n", "empty": b"", "big.bin": BIG,
             "sub/inner.txt": b"inner file\n", "sub/deeper/deep.txt": b"deep\n"}
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.chmod(os.path.join(root, "hello.txt"), 0o640)
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.truncate(SPARSE_SIZE)
    os.symlink("hello.txt", os.path.join(root, "link_in"))
    os.symlink("sub", os.path.join(root, "dirlink_in"))
    os.symlink(secret, os.path.join(root, "link_out"))
    os.symlink("../secret.txt", os.path.join(root, "rel_out"))
    os.symlink("sub/../../secret.txt", os.path.join(root, "sneaky_out"))
    os.symlink(base, os.path.join(root, "dirlink_out"))
    os.symlink("/proc/self/root" + secret, os.path.join(root, "magic"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))  # as /dev/null
    fd = os.open(os.path.join(root.encode(), b"latin1-\xe9.txt"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    return root


def snapshot_outside(base):
    """What lies outside the export: must never change."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if dirpath.startswith(os.path.join(base, "export")):
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path.startswith(os.path.join(base, "export")):
                continue
            st = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            result[path] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                            st.st_nlink, content)
    return result


# ------------------------------------------------------------------------------------------------
# The provider and our scripted service
# ------------------------------------------------------------------------------------------------

class Provider:
    """Runs webfuse-provider; stderr goes to a file so tests can look at the log."""

    def __init__(self, workdir, args, env=None):
        self.log_path = os.path.join(workdir, "provider-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([PROVIDER] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)

    def wait(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure("provider did not exit within %s s" % timeout) from None

    def signal(self, signo):
        self.proc.send_signal(signo)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self.log.close()


class Service:
    """One accepted provider connection; sends requests, matches responses by id."""

    def __init__(self, server, timeout=TIMEOUT):
        self.ws, self.request = server.accept(timeout, subprotocols=[SUBPROTOCOL])
        self.next_id = 0
        self.early = {}  # id -> message that arrived while waiting for another one

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def send_raw(self, data, fragments=1):
        self.ws.send_binary(data, fragments)

    def send(self, rtype, payload=b"", rid=None, fragments=1):
        rid = self.new_id() if rid is None else rid
        self.send_raw(struct.pack(">IB", rid, rtype) + payload, fragments)
        return rid

    def recv(self, timeout=TIMEOUT):
        kind, data = self.ws.recv_message(timeout)
        check_eq(kind, "binary", "frame type of a provider message")
        check(len(data) >= 5, "a response has at least id and type: %r" % data)
        return data

    def wait_for(self, rid, timeout=TIMEOUT):
        if rid in self.early:
            return self.early.pop(rid)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("no answer to request %d" % rid)
            try:
                msg = self.recv(left)
            except TimeoutError:
                raise Failure("no answer to request %d" % rid) from None
            got = struct.unpack(">I", msg[:4])[0]
            check(got not in self.early, "two answers for id %d" % got)
            if got == rid:
                return msg
            self.early[got] = msg

    def call(self, rtype, payload=b"", **kwargs):
        """Sends a request, returns (id, whole response message); checks id and type."""
        rid = self.send(rtype, payload, **kwargs)
        msg = self.wait_for(rid)
        check_eq(msg[4], rtype | 0x80, "response type to %s" % NAMES.get(rtype, rtype))
        return rid, msg

    def result(self, rtype, payload=b""):
        """The result of a request whose response carries nothing else (checked)."""
        rid, msg = self.call(rtype, payload)
        check(len(msg) >= 9, "%s response has a result" % NAMES[rtype])
        res = result_of(msg)
        check_bytes(msg, response(rid, rtype, res), "%s response shape" % NAMES[rtype])
        return res

    def expect(self, rtype, payload, expected, what):
        """The request's result must be `expected` (0, or -errno), nothing after it."""
        res = self.result(rtype, payload)
        check_eq(errname(res), errname(expected), what)

    def ok(self, rtype, payload, what):
        self.expect(rtype, payload, 0, what)

    def succeeds(self, rtype, payload, what):
        """Result 0, whatever follows it (getattr, readdir, statfs)."""
        rid, msg = self.call(rtype, payload)
        check_eq(errname(result_of(msg)), 0, what)
        return msg

    def open(self, path, flags=os.O_RDONLY | O_LARGEFILE):
        rid, msg = self.call(OPEN, p_open(path, flags))
        check_eq(errname(result_of(msg)), 0, "open %s flags 0%o" % (path, flags))
        check_eq(len(msg), 17, "open response length")
        handle = struct.unpack(">Q", msg[9:17])[0]
        check(handle != NONE, "a handle is never -1")
        return handle

    def read(self, path, size, offset, handle):
        """Returns the data; checks the response's shape."""
        rid, msg = self.call(READ, p_read(path, size, offset, handle))
        res = result_of(msg)
        check(res >= 0, "read %s at %d: %s" % (path, offset, errname(res)))
        if res == 0:
            check_bytes(msg, response(rid, READ, 0), "end of file carries no data")
            return b""
        check_eq(struct.unpack(">I", msg[9:13])[0], res, "data length equals the result")
        check_eq(len(msg), 13 + res, "read response length")
        return msg[13:]

    def expect_silence(self, seconds=0.3):
        if self.early:
            raise Failure("unexpected message %r" % next(iter(self.early.values()))[:40])
        try:
            data = self.recv(seconds)
        except TimeoutError:
            return
        raise Failure("unexpected message %s" % data[:40].hex())


class Session:
    """Server + provider + accepted connection."""

    def __init__(self, ctx, extra=(), name="demo", env=None, read_only=False):
        self.server = wstest.Server()
        self.url = "ws://127.0.0.1:%d/%s" % (self.server.port, name)
        args = ["--url", self.url, "--path", ctx.tree, "--log-level", "debug"] + list(extra)
        if read_only:
            args.append("--read-only")
        self.provider = Provider(ctx.workdir, args, env)
        ctx.cleanups.append(self.close)
        self.svc = Service(self.server)
        # One round trip: the provider has seen the handshake complete (it sends nothing on its
        # own), so a signal sent next finds an open connection to close.
        self.svc.ok(ACCESS, p_access("/", os.F_OK), "first request")

    def stop(self, signo=signal.SIGINT):
        """Signals the provider; returns (close code it sent, exit status)."""
        self.provider.signal(signo)
        code = self.svc.ws.wait_closed(TIMEOUT)
        return code, self.provider.wait()

    def close(self):
        self.svc.ws.abort()
        self.server.close()
        self.provider.kill()


def in_tree(ctx, *parts):
    return os.path.join(ctx.tree, *parts)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def test_help_describes_every_option(ctx):
    out = subprocess.run([PROVIDER, "--help"], capture_output=True, timeout=TIMEOUT)
    check_eq(out.returncode, 0, "--help exit status")
    text = out.stdout.decode()
    for word in ("--url", "--path", "--read-only", "--token", "WEBFUSE_TOKEN", "--fs",
                 "--protocol", "webfuse2", "json", "--reconnect", "--log-level", "--help",
                 "EROFS", "last segment"):
        check(word in text, "--help mentions %s" % word)


def test_bad_arguments_exit_2(ctx):
    url = ["--url", "ws://127.0.0.1:1/demo"]
    hello = in_tree(ctx, "hello.txt")
    cases = [
        url,                                                    # no --path
        ["--path", ctx.tree],                                   # no --url
        url + ["--fs", "a=" + ctx.tree],                        # --fs is json's
        url + ["--path", ctx.tree, "--fs", "a=" + ctx.tree],
        url + ["--path", hello],                                # not a directory
        url + ["--path", ctx.tree + "/missing"],
        url + ["--path", ctx.tree, "--path", ctx.tree],
        url + ["--path", ctx.tree, "--protocol", "nope"],
        url + ["--protocol", "json", "--path", ctx.tree],       # --path is webfuse2's
        url + ["--protocol", "json", "--fs", "a=" + ctx.tree, "--path", ctx.tree],
        url + ["--protocol", "json", "--fs", "a=" + ctx.tree, "--token", "x"],
        ["--url", "wss://127.0.0.1:1/demo", "--path", ctx.tree, "--user", "u", "--token", "t"],
        ["--url", "wss://127.0.0.1:1/demo", "--path", ctx.tree, "--user", "bad name"],
        url + ["--path", ctx.tree, "--bogus"],
        url + ["--path"],
    ]
    for args in cases:
        out = subprocess.run([PROVIDER] + args, capture_output=True, timeout=TIMEOUT)
        check_eq(out.returncode, 2, "exit status for %r" % args)
        check(out.stderr.strip(), "an error message for %r" % args)


def test_connection_refused_exits_1(ctx):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    out = subprocess.run([PROVIDER, "--url", "ws://127.0.0.1:%d/demo" % port, "--path", ctx.tree],
                         capture_output=True, timeout=TIMEOUT)
    check_eq(out.returncode, 1, "exit status")


# ------------------------------------------------------------------------------------------------
# Connection
# ------------------------------------------------------------------------------------------------

def test_handshake_and_clean_stop(ctx):
    s = Session(ctx, name="firmware")
    check_eq(s.svc.request["subprotocols"], [SUBPROTOCOL], "subprotocols asked for")
    check_eq(s.svc.request["path"], "/firmware", "URL path sent")
    s.svc.expect_silence()  # the provider only answers
    check_eq(s.stop(), (1000, 0), "(close code, exit status) after SIGINT")


def test_sigterm_and_dropped_connection(ctx):
    s = Session(ctx)
    check_eq(s.stop(signal.SIGTERM), (1000, 0), "(close code, exit status) after SIGTERM")
    s = Session(ctx)
    s.svc.ws.abort()
    check_eq(s.provider.wait(), 1, "exit status when the service goes away")


def test_fragmented_and_pipelined_requests(ctx):
    s = Session(ctx)
    svc = s.svc
    rid = svc.send(GETATTR, p_path("/hello.txt"), fragments=4)
    msg = svc.wait_for(rid)
    check_bytes(msg, response(rid, GETATTR, 0, attr_bytes(os.lstat(in_tree(ctx, "hello.txt")))),
                "answer to a fragmented request")
    # Ids in any order, including 0 and the largest; answers come with the right id each.
    ids = [0xFFFFFFFF, 0, 77, 5, 0x80000000] + list(range(1000, 1200))
    for i in ids:
        svc.send(GETATTR if i % 2 else READDIR, p_path("/"), rid=i)
    for i in ids:
        msg = svc.wait_for(i)
        check_eq(msg[4], (GETATTR if i % 2 else READDIR) | 0x80, "type of answer %d" % i)
        check_eq(result_of(msg), 0, "result of answer %d" % i)


def test_oversized_message_closes_connection(ctx):
    s = Session(ctx)
    blob = struct.pack(">IB", 1, WRITE) + b"x" * (17 * MIB)
    try:
        s.svc.ws.send_message(wstest.OP_BINARY, blob, fragments=17)
    except OSError:
        pass  # the provider may hang up before all of it was sent
    code = s.svc.ws.wait_closed(TIMEOUT)
    check(code in (1009, None), "close code for a message over 16 MiB: %r" % code)
    check_eq(s.provider.wait(), 1, "exit status")


# ------------------------------------------------------------------------------------------------
# Malformed and unknown requests
# ------------------------------------------------------------------------------------------------

def test_unknown_types_get_0x80(ctx):
    s = Session(ctx)
    for rtype, payload in ((0x42, b"\x01\x02\x03"), (0x00, b""), (0x19, b"abc"), (0x7f, b""),
                           (0x82, b"\x00\x00\x00\x00"), (0xff, b"\xff" * 100)):
        rid = s.svc.send(rtype, payload)
        check_bytes(s.svc.wait_for(rid), struct.pack(">IB", rid, 0x80),
                    "answer to type 0x%02x" % rtype)
    # The spec's own vector: id 0x23, type 0x42, three trailing bytes.
    s.svc.send_raw(bytes.fromhex("00000023 42 010203".replace(" ", "")))
    check_bytes(s.svc.wait_for(0x23), bytes.fromhex("0000002380"), "spec vector")


def valid_requests():
    """One valid payload per request type with fields."""
    return {
        ACCESS: p_access("/hello.txt", os.R_OK), GETATTR: p_path("/"),
        READLINK: p_path("/link_in"), SYMLINK: p_two("t", "/newlink"),
        LINK: p_two("/hello.txt", "/hl"), RENAME: p_rename("/a", "/b", 0),
        CHMOD: p_mode("/hello.txt", 0o100644), CHOWN: p_chown("/hello.txt", 0, 0),
        TRUNCATE: p_truncate("/hello.txt", 1, NONE), FSYNC: p_fsync("/hello.txt", 0, NONE),
        OPEN: p_open("/hello.txt", 0), MKNOD: p_mknod("/n", 0o10644, 0),
        CREATE: p_mode("/c", 0o100644), RELEASE: p_release("/hello.txt", 1),
        UNLINK: p_path("/x"), READ: p_read("/hello.txt", 10, 0, 1),
        WRITE: p_write("/hello.txt", b"ab", 0, 1), MKDIR: p_mode("/d", 0o755),
        READDIR: p_path("/"), RMDIR: p_path("/d"), STATFS: p_path("/"),
        UTIMENS: p_utimens("/hello.txt", (1, 2), (3, 4), NONE),
        READDIRPLUS: p_readdirplus("/", 0, 16),
    }


def test_truncated_requests_get_einval(ctx):
    s = Session(ctx)
    before = open(in_tree(ctx, "hello.txt"), "rb").read()
    for rtype, payload in sorted(valid_requests().items()):
        cuts = {0, 1, 3, len(payload) - 1}
        for cut in sorted(c for c in cuts if 0 <= c < len(payload)):
            rid = s.svc.send(rtype, payload[:cut])
            check_bytes(s.svc.wait_for(rid), response(rid, rtype, -errno.EINVAL),
                        "%s cut to %d of %d bytes" % (NAMES[rtype], cut, len(payload)))
    # A string whose length runs past the end of the message.
    rid = s.svc.send(GETATTR, struct.pack(">I", 1000) + b"/hello.txt")
    check_bytes(s.svc.wait_for(rid), response(rid, GETATTR, -errno.EINVAL), "string past the end")
    rid = s.svc.send(WRITE, wstr("/hello.txt") + struct.pack(">I", 0xFFFFFFFF) + b"xx")
    check_bytes(s.svc.wait_for(rid), response(rid, WRITE, -errno.EINVAL), "data past the end")
    check_eq(open(in_tree(ctx, "hello.txt"), "rb").read(), before, "nothing was changed")
    # Shorter than a header: nothing to answer with; the connection goes on.
    s.svc.send_raw(b"\x00\x00\x01")
    s.svc.expect_silence()
    s.svc.ok(ACCESS, p_access("/", 0), "still serving")
    check_eq(s.stop(), (1000, 0), "clean stop (sanitizer builds: no leak)")


def test_trailing_bytes_are_ignored(ctx):
    s = Session(ctx)
    for rtype, payload in sorted(valid_requests().items()):
        if rtype in (GETATTR, READDIR, STATFS, ACCESS, READLINK):
            rid = s.svc.send(rtype, payload + b"\x00future\xff")
            msg = s.svc.wait_for(rid)
            check_eq(msg[4], rtype | 0x80, "type")
            check_eq(result_of(msg), 0, "%s with trailing bytes" % NAMES[rtype])
    rid = s.svc.send(GETCREDS, b"extra")
    check_bytes(s.svc.wait_for(rid), struct.pack(">IBI", rid, 0x97, 0), "getcreds, trailing bytes")


# ------------------------------------------------------------------------------------------------
# Every request type against the os module
# ------------------------------------------------------------------------------------------------

def test_getattr_matches_lstat(ctx):
    s = Session(ctx)
    for name in ("", "hello.txt", "empty", "sub", "sub/deeper/deep.txt", "link_in", "link_out",
                 "dirlink_out", "fifo", "sparse.img", "big.bin"):
        rid, msg = s.svc.call(GETATTR, p_path("/" + name))
        st = os.lstat(in_tree(ctx, name))
        check_bytes(msg, response(rid, GETATTR, 0, attr_bytes(st)), "getattr /%s" % name)
    path = os.path.join(ctx.tree.encode(), b"latin1-\xe9.txt")
    rid, msg = s.svc.call(GETATTR, p_path(b"/latin1-\xe9.txt"))
    check_bytes(msg, response(rid, GETATTR, 0, attr_bytes(os.lstat(path))), "non-UTF-8 name")
    s.svc.expect(GETATTR, p_path("/missing"), -errno.ENOENT, "missing file")
    s.svc.expect(GETATTR, p_path("/hello.txt/x"), -errno.ENOTDIR, "below a file")
    s.svc.expect(GETATTR, p_path("/sub/missing/x"), -errno.ENOENT, "below a missing dir")
    s.svc.expect(GETATTR, p_path("/" + "n" * 300), -errno.ENAMETOOLONG, "name too long")
    # A spec vector's shape: getattr "/" with id 1.
    s.svc.send_raw(bytes.fromhex("0000000102000000012f"))
    msg = s.svc.wait_for(1)
    check_bytes(msg, response(1, GETATTR, 0, attr_bytes(os.lstat(ctx.tree))), "spec vector")


def test_access(ctx):
    s = Session(ctx)
    for name in ("", "hello.txt", "sub", "link_in", "fifo"):
        for mode in (os.F_OK, os.R_OK, os.W_OK, os.X_OK, os.R_OK | os.W_OK | os.X_OK):
            want = 0 if os.access(in_tree(ctx, name), mode) else -errno.EACCES
            s.svc.expect(ACCESS, p_access("/" + name, mode), want, "access /%s %d" % (name, mode))
    s.svc.expect(ACCESS, p_access("/missing", os.F_OK), -errno.ENOENT, "missing")
    s.svc.expect(ACCESS, p_access("/hello.txt", 8), -errno.EINVAL, "unknown mode bits")


def test_readlink_and_symlink(ctx):
    s = Session(ctx)
    for name in ("link_in", "link_out", "rel_out", "dirlink_out", "magic"):
        rid, msg = s.svc.call(READLINK, p_path("/" + name))
        target = os.readlink(in_tree(ctx, name))
        check_bytes(msg, response(rid, READLINK, 0, wstr(target)), "readlink /%s as is" % name)
    s.svc.expect(READLINK, p_path("/hello.txt"), -errno.EINVAL, "readlink of a file")
    s.svc.expect(READLINK, p_path("/missing"), -errno.ENOENT, "readlink of nothing")
    s.svc.expect(READLINK, p_path("/"), -errno.EINVAL, "readlink of the root")
    for target in ("hello.txt", "../../anywhere", "/abs/olute", "x" * 1000):
        s.svc.ok(SYMLINK, p_two(target, "/sl"), "symlink to %.20s" % target)
        check_eq(os.readlink(in_tree(ctx, "sl")), target, "link text")
        rid, msg = s.svc.call(READLINK, p_path("/sl"))
        check_bytes(msg, response(rid, READLINK, 0, wstr(target)), "readlink of the new link")
        os.unlink(in_tree(ctx, "sl"))
    s.svc.ok(SYMLINK, p_two("../hello.txt", "/sub/up"), "symlink in a subdirectory")
    check_eq(open(in_tree(ctx, "sub", "up")).read(), "hello, world\n", "the link works locally")
    s.svc.expect(SYMLINK, p_two("x", "/hello.txt"), -errno.EEXIST, "symlink over a file")
    s.svc.expect(SYMLINK, p_two("x", "/missing/sl"), -errno.ENOENT, "symlink in a missing dir")
    s.svc.expect(SYMLINK, p_two("a\0b", "/sl"), -errno.EINVAL, "target with NUL")
    check(not os.path.lexists(in_tree(ctx, "sl")), "no link was made")


def test_link(ctx):
    s = Session(ctx)
    s.svc.ok(LINK, p_two("/hello.txt", "/sub/hard"), "link")
    a, c = os.lstat(in_tree(ctx, "hello.txt")), os.lstat(in_tree(ctx, "sub", "hard"))
    check_eq((c.st_ino, c.st_nlink), (a.st_ino, 2), "(inode, nlink) of the new link")
    rid, msg = s.svc.call(GETATTR, p_path("/sub/hard"))
    check_bytes(msg, response(rid, GETATTR, 0, attr_bytes(c)), "getattr shows the same inode")
    s.svc.ok(LINK, p_two("/link_out", "/link_copy"), "link of a symlink links the symlink")
    check_eq(os.readlink(in_tree(ctx, "link_copy")), os.readlink(in_tree(ctx, "link_out")),
             "hard link to the symlink itself")
    s.svc.expect(LINK, p_two("/hello.txt", "/empty"), -errno.EEXIST, "onto an existing name")
    s.svc.expect(LINK, p_two("/missing", "/x"), -errno.ENOENT, "missing source")
    s.svc.expect(LINK, p_two("/sub", "/subl"), -errno.EPERM, "directory")


def test_rename(ctx):
    s = Session(ctx)
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    s.svc.ok(RENAME, p_rename("/hello.txt", "/sub/moved", 0), "plain rename")
    check(not os.path.exists(t("hello.txt")) and os.path.exists(t("sub", "moved")), "moved")
    s.svc.ok(RENAME, p_rename("/sub/moved", "/empty", 0), "rename over a file")
    check_eq(open(t("empty"), "rb").read(), b"hello, world\n", "replaced")
    with open(t("other"), "w") as f:
        f.write("other")
    s.svc.expect(RENAME, p_rename("/empty", "/other", RENAME_NOREPLACE), -errno.EEXIST,
                 "NOREPLACE onto an existing file")
    s.svc.ok(RENAME, p_rename("/empty", "/fresh", RENAME_NOREPLACE), "NOREPLACE to a new name")
    s.svc.ok(RENAME, p_rename("/fresh", "/other", RENAME_EXCHANGE), "EXCHANGE")
    check_eq((open(t("fresh")).read(), open(t("other")).read()), ("other", "hello, world\n"),
             "contents swapped")
    s.svc.expect(RENAME, p_rename("/fresh", "/nothing", RENAME_EXCHANGE), -errno.ENOENT,
                 "EXCHANGE with a missing file")
    s.svc.expect(RENAME, p_rename("/fresh", "/x", 3), -errno.EINVAL, "both flags")
    s.svc.expect(RENAME, p_rename("/fresh", "/x", 4), -errno.EINVAL, "unknown flag")
    s.svc.ok(RENAME, p_rename("/sub", "/sub2", 0), "rename a whole directory")
    check_eq(open(t("sub2", "deeper", "deep.txt")).read(), "deep\n", "contents follow")
    s.svc.expect(RENAME, p_rename("/sub2", "/sub2/deeper/in", 0), -errno.EINVAL,
                 "a directory into itself")
    s.svc.expect(RENAME, p_rename("/missing", "/x", 0), -errno.ENOENT, "missing source")
    os.mkdir(t("full"))
    open(t("full", "f"), "w").close()
    s.svc.expect(RENAME, p_rename("/sub2", "/full", 0), -errno.ENOTEMPTY, "onto a full dir")


def test_chmod_and_chown(ctx):
    s = Session(ctx)
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    s.svc.ok(CHMOD, p_mode("/hello.txt", 0o100604), "chmod with type bits")
    check_eq(os.stat(t("hello.txt")).st_mode, 0o100604, "new mode")
    s.svc.ok(CHMOD, p_mode("/sub", 0o40700), "chmod of a directory")
    check_eq(stat.S_IMODE(os.stat(t("sub")).st_mode), 0o700, "directory mode")
    # Never set-user-ID or set-group-ID on a file: a program the gateway wrote would run with
    # the provider's rights on this machine. A directory keeps set-group-ID.
    s.svc.ok(CHMOD, p_mode("/hello.txt", 0o6755), "setuid and setgid bits, no type bits")
    check_eq(stat.S_IMODE(os.stat(t("hello.txt")).st_mode), 0o755, "set-id bits dropped")
    s.svc.ok(CHMOD, p_mode("/sub", 0o46775), "chmod of a directory with set-id bits")
    check_eq(stat.S_IMODE(os.stat(t("sub")).st_mode), 0o2775, "directory keeps setgid only")
    s.svc.expect(CHMOD, p_mode("/missing", 0o644), -errno.ENOENT, "chmod of nothing")
    st = os.lstat(t("hello.txt"))
    if os.geteuid() != 0:
        s.svc.expect(CHOWN, p_chown("/hello.txt", 0, 0), -errno.EPERM, "chown as a user")
        return
    s.svc.ok(CHOWN, p_chown("/hello.txt", 1234, 5678), "chown")
    check_eq((os.lstat(t("hello.txt")).st_uid, os.lstat(t("hello.txt")).st_gid), (1234, 5678),
             "owner")
    s.svc.ok(CHOWN, p_chown("/hello.txt", 0xFFFFFFFF, 42), "chown gid only")
    check_eq((os.lstat(t("hello.txt")).st_uid, os.lstat(t("hello.txt")).st_gid), (1234, 42),
             "uid left as it was")
    s.svc.ok(CHOWN, p_chown("/hello.txt", 7, 0xFFFFFFFF), "chown uid only")
    check_eq((os.lstat(t("hello.txt")).st_uid, os.lstat(t("hello.txt")).st_gid), (7, 42),
             "gid left as it was")
    s.svc.ok(CHOWN, p_chown("/hello.txt", 0xFFFFFFFF, 0xFFFFFFFF), "chown -1 -1")
    check_eq(os.lstat(t("hello.txt")).st_uid, 7, "nothing changed")
    s.svc.ok(CHOWN, p_chown("/link_in", 99, 98), "chown of a symlink changes the link")
    check_eq((os.lstat(t("link_in")).st_uid, os.lstat(t("hello.txt")).st_uid), (99, 7),
             "the link's owner, not the target's")
    s.svc.expect(CHOWN, p_chown("/missing", 1, 1), -errno.ENOENT, "chown of nothing")
    del st


def test_create_open_read_write_release(ctx):
    s = Session(ctx)
    svc = s.svc
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    rid, msg = svc.call(CREATE, p_mode("/new.txt", 0o100640))
    check_eq(errname(result_of(msg)), 0, "create")
    check_eq(len(msg), 17, "create response length")
    handle = struct.unpack(">Q", msg[9:])[0]
    check_eq(os.stat(t("new.txt")).st_mode, 0o100640, "created with exactly the mode sent")
    rid, msg = svc.call(CREATE, p_mode("/setid.txt", 0o106755))
    check_eq(errname(result_of(msg)), 0, "create with set-id bits")
    check_eq(os.stat(t("setid.txt")).st_mode, 0o100755, "created without them")
    svc.ok(RELEASE, p_release("/setid.txt", struct.unpack(">Q", msg[9:])[0]), "release")
    rid, msg = svc.call(WRITE, p_write("/new.txt", b"0123456789", 0, handle))
    check_bytes(msg, response(rid, WRITE, 10), "write result = bytes written")
    check_eq(svc.read("/new.txt", 100, 2, handle), b"23456789", "read back on the created handle")
    svc.ok(RELEASE, p_release("/new.txt", handle), "release")
    svc.expect(RELEASE, p_release("/new.txt", handle), -errno.EBADF, "release twice")
    svc.expect(READ, p_read("/new.txt", 10, 0, handle), -errno.EBADF, "read on a released handle")
    # create of an existing file opens it as it is
    rid, msg = svc.call(CREATE, p_mode("/new.txt", 0o100600))
    h2 = struct.unpack(">Q", msg[9:])[0]
    check_eq(svc.read("/new.txt", 100, 0, h2), b"0123456789", "existing content kept")
    svc.expect(CREATE, p_mode("/missing/x", 0o100644), -errno.ENOENT, "create in a missing dir")
    svc.expect(CREATE, p_mode("/sub", 0o100644), -errno.EISDIR, "create over a directory")
    svc.expect(CREATE, p_mode("/d", 0o40755), -errno.EINVAL, "create with directory type")
    # open with flags as given; O_LARGEFILE and the kernel's exec bit are ignored
    h = svc.open("/hello.txt", os.O_RDONLY | O_LARGEFILE | FMODE_EXEC | os.O_DIRECT)
    check_eq(svc.read("/hello.txt", 5, 7, h), b"world", "read at an offset")
    check_eq(svc.read("/hello.txt", 100, 13, h), b"", "read at end of file")
    check_eq(svc.read("/hello.txt", 100, 1 << 40, h), b"", "read far beyond the end")
    svc.expect(WRITE, p_write("/hello.txt", b"x", 0, h), -errno.EBADF, "write on a read handle")
    w = svc.open("/hello.txt", os.O_WRONLY | os.O_TRUNC | O_LARGEFILE)
    check_eq(os.path.getsize(t("hello.txt")), 0, "O_TRUNC truncated")
    rid, msg = svc.call(WRITE, p_write("/hello.txt", b"abc", 5, w))
    check_bytes(msg, response(rid, WRITE, 3), "write at an offset")
    check_eq(open(t("hello.txt"), "rb").read(), b"\0" * 5 + b"abc", "hole then data")
    a = svc.open("/empty", os.O_WRONLY | os.O_APPEND)
    svc.result(WRITE, p_write("/empty", b"one", 0, a))
    svc.result(WRITE, p_write("/empty", b"two", 0, a))
    check_eq(open(t("empty"), "rb").read(), b"onetwo", "O_APPEND appends")
    svc.expect(OPEN, p_open("/missing", 0), -errno.ENOENT, "open of nothing")
    svc.expect(OPEN, p_open("/hello.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY), -errno.EEXIST,
               "O_CREAT|O_EXCL on an existing file")
    svc.expect(OPEN, p_open("/sub", os.O_WRONLY), -errno.EISDIR, "open a directory to write")
    svc.expect(OPEN, p_open("/hello.txt", os.O_RDONLY | os.O_DIRECTORY), -errno.ENOTDIR,
               "O_DIRECTORY on a file")
    svc.expect(OPEN, p_open("/link_in", os.O_RDONLY | os.O_NOFOLLOW), -errno.ELOOP,
               "O_NOFOLLOW on a symlink")
    li = svc.open("/link_in")
    check_eq(svc.read("/link_in", 100, 5, li), b"abc", "open follows a symlink inside")
    # Devices and FIFOs are never opened (a program on the mount opens them locally, so only a
    # hostile gateway asks): opening one can block, have side effects or expose a raw disk.
    for name, flags in (("fifo", os.O_RDONLY), ("null", os.O_RDONLY), ("null", os.O_RDWR),
                        ("null", os.O_WRONLY | os.O_CREAT)):
        svc.expect(OPEN, p_open("/" + name, flags), -errno.EINVAL,
                   "open of %s (%o)" % (name, flags))
    svc.expect(CREATE, p_mode("/null", 0o100644), -errno.EINVAL, "create over a device")
    handles = {h, h2, w, a, li}
    check_eq(len(handles), 5, "every open gets its own handle")
    for x in handles:
        svc.ok(RELEASE, p_release("/", x), "release")
    check_eq(s.stop(), (1000, 0), "clean stop (sanitizer builds: no leak)")


def test_read_write_sizes_and_offsets(ctx):
    s = Session(ctx)
    svc = s.svc
    h = svc.open("/big.bin")
    got = b""
    while True:
        chunk = svc.read("/big.bin", 128 * 1024, len(got), h)
        if not chunk:
            break
        got += chunk
    check(got == BIG, "3 MiB read in 128 KiB pieces")
    capped = svc.read("/big.bin", 16 * MIB, 0, h)
    check(len(capped) >= MIB and capped == BIG[:len(capped)], "a huge read is capped, not failed")
    check_eq(svc.read("/big.bin", 10, len(BIG) - 3, NONE), BIG[-3:], "read by path (handle -1)")
    sp = svc.open("/sparse.img", os.O_RDWR | O_LARGEFILE)
    far = SPARSE_SIZE - 4
    check_bytes(svc.read("/sparse.img", 100, far, sp), b"\0" * 4, "read beyond 4 GiB")
    rid, msg = svc.call(WRITE, p_write("/sparse.img", b"END!", far, sp))
    check_bytes(msg, response(rid, WRITE, 4), "write beyond 4 GiB")
    with open(in_tree(ctx, "sparse.img"), "rb") as f:
        f.seek(far)
        check_eq(f.read(), b"END!", "64-bit offset kept")
    data = os.urandom(MIB + 17)
    w = svc.open("/big.bin", os.O_WRONLY)
    rid, msg = svc.call(WRITE, p_write("/big.bin", data, 100, w))
    check_bytes(msg, response(rid, WRITE, len(data)), "a write over 1 MiB")
    check(open(in_tree(ctx, "big.bin"), "rb").read()[100:100 + len(data)] == data, "written")
    rid, msg = svc.call(WRITE, p_write("/hello.txt", b"HE", 0, NONE))
    check_bytes(msg, response(rid, WRITE, 2), "write by path (handle -1)")
    check_eq(open(in_tree(ctx, "hello.txt"), "rb").read(), b"HEllo, world\n", "by path")
    svc.expect(READ, p_read("/hello.txt", 10, 0, 12345678), -errno.EBADF, "unknown handle")
    svc.expect(READ, p_read("/hello.txt", 10, 1 << 63, NONE), -errno.EINVAL, "offset over 2^63")
    rid, msg = svc.call(READ, p_read("/hello.txt", 0, 0, NONE))
    check_bytes(msg, response(rid, READ, 0), "read of 0 bytes")
    svc.expect(READ, p_read("/sub", 10, 0, NONE), -errno.EISDIR, "read of a directory by path")


def test_truncate_and_fsync(ctx):
    s = Session(ctx)
    svc = s.svc
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    svc.ok(TRUNCATE, p_truncate("/hello.txt", 5, NONE), "truncate by path")
    check_eq(open(t("hello.txt"), "rb").read(), b"hello", "shrunk")
    svc.ok(TRUNCATE, p_truncate("/hello.txt", 8, NONE), "grow by path")
    check_eq(open(t("hello.txt"), "rb").read(), b"hello\0\0\0", "grown with zeros")
    w = svc.open("/hello.txt", os.O_RDWR)
    svc.ok(TRUNCATE, p_truncate("/hello.txt", 3, w), "truncate by handle")
    check_eq(os.path.getsize(t("hello.txt")), 3, "by handle")
    svc.ok(TRUNCATE, p_truncate("/hello.txt", 6 << 30, NONE), "truncate to 6 GiB by path")
    check_eq(os.path.getsize(t("hello.txt")), 6 << 30, "64-bit size kept")
    svc.ok(TRUNCATE, p_truncate("/hello.txt", 0, NONE), "truncate to 0")
    svc.ok(TRUNCATE, p_truncate("/link_in", 2, NONE), "truncate follows a symlink inside")
    svc.expect(TRUNCATE, p_truncate("/sub", 0, NONE), -errno.EISDIR, "truncate a directory")
    svc.expect(TRUNCATE, p_truncate("/missing", 0, NONE), -errno.ENOENT, "truncate nothing")
    svc.expect(TRUNCATE, p_truncate("/hello.txt", 0, 999), -errno.EBADF, "unknown handle")
    svc.expect(TRUNCATE, p_truncate("/hello.txt", 1 << 63, NONE), -errno.EFBIG, "over 2^63")
    r = svc.open("/empty")
    svc.expect(TRUNCATE, p_truncate("/empty", 1, r), -errno.EINVAL, "by a read-only handle")
    for datasync in (0, 1):
        svc.ok(FSYNC, p_fsync("/hello.txt", datasync, w), "fsync by handle, datasync %d" % datasync)
        svc.ok(FSYNC, p_fsync("/hello.txt", datasync, NONE), "fsync by path")
    svc.ok(FSYNC, p_fsync("/sub", 0, NONE), "fsync of a directory by path")
    svc.expect(FSYNC, p_fsync("/hello.txt", 0, 4242), -errno.EBADF, "fsync unknown handle")
    svc.expect(FSYNC, p_fsync("/missing", 0, NONE), -errno.ENOENT, "fsync of nothing")


def test_mknod_mkdir_unlink_rmdir(ctx):
    s = Session(ctx)
    svc = s.svc
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    svc.ok(MKNOD, p_mknod("/pipe", stat.S_IFIFO | 0o620, 0), "mknod FIFO")
    check_eq(os.lstat(t("pipe")).st_mode, stat.S_IFIFO | 0o620, "FIFO with exactly that mode")
    svc.ok(MKNOD, p_mknod("/plain", stat.S_IFREG | 0o604, 0), "mknod regular file")
    check_eq(os.lstat(t("plain")).st_mode, stat.S_IFREG | 0o604, "regular file")
    svc.ok(MKNOD, p_mknod("/setid", stat.S_IFREG | 0o6755, 0), "mknod with set-id bits")
    check_eq(os.lstat(t("setid")).st_mode, stat.S_IFREG | 0o755, "set-id bits dropped")
    # rdev is a u64: a value in the high half must not shift the fields (it is ignored here)
    svc.ok(MKNOD, p_mknod("/plain2", stat.S_IFREG | 0o600, 0x1234567800000000), "u64 rdev")
    svc.expect(MKNOD, p_mknod("/dev", stat.S_IFCHR | 0o600, os.makedev(1, 3)), -errno.EPERM,
               "no device nodes")
    svc.expect(MKNOD, p_mknod("/pipe", stat.S_IFIFO | 0o600, 0), -errno.EEXIST, "mknod twice")
    svc.ok(MKDIR, p_mode("/newdir", 0o750), "mkdir")
    check_eq(os.lstat(t("newdir")).st_mode, stat.S_IFDIR | 0o750, "directory with that mode")
    svc.ok(MKDIR, p_mode("/newdir/inner", 0o1777), "mkdir with the sticky bit")
    check_eq(stat.S_IMODE(os.lstat(t("newdir", "inner")).st_mode), 0o1777, "sticky kept")
    svc.expect(MKDIR, p_mode("/newdir", 0o755), -errno.EEXIST, "mkdir twice")
    svc.expect(MKDIR, p_mode("/missing/x", 0o755), -errno.ENOENT, "mkdir in a missing dir")
    svc.expect(MKDIR, p_mode("/", 0o755), -errno.EEXIST, "mkdir of the root")
    svc.expect(RMDIR, p_path("/newdir"), -errno.ENOTEMPTY, "rmdir of a full directory")
    svc.ok(RMDIR, p_path("/newdir/inner"), "rmdir")
    svc.ok(RMDIR, p_path("/newdir"), "rmdir")
    check(not os.path.exists(t("newdir")), "gone")
    svc.expect(RMDIR, p_path("/hello.txt"), -errno.ENOTDIR, "rmdir of a file")
    svc.expect(RMDIR, p_path("/missing"), -errno.ENOENT, "rmdir of nothing")
    svc.expect(RMDIR, p_path("/dirlink_in"), -errno.ENOTDIR, "rmdir of a symlink to a dir")
    svc.expect(RMDIR, p_path("/"), -errno.EINVAL, "rmdir of the root")
    for name in ("pipe", "plain", "plain2"):
        svc.ok(UNLINK, p_path("/" + name), "unlink " + name)
        check(not os.path.lexists(t(name)), name + " gone")
    svc.ok(UNLINK, p_path("/link_in"), "unlink a symlink")
    check(os.path.exists(t("hello.txt")), "the target stays")
    svc.expect(UNLINK, p_path("/sub"), -errno.EISDIR, "unlink a directory")
    svc.expect(UNLINK, p_path("/missing"), -errno.ENOENT, "unlink nothing")


def test_readdir_never_sends_dots(ctx):
    s = Session(ctx)
    for name in ("", "sub", "sub/deeper", "dirlink_in"):
        rid, msg = s.svc.call(READDIR, p_path("/" + name))
        check_eq(errname(result_of(msg)), 0, "readdir /%s" % name)
        count = struct.unpack(">I", msg[9:13])[0]
        names, pos = [], 13
        for _ in range(count):
            n = struct.unpack(">I", msg[pos:pos + 4])[0]
            names.append(msg[pos + 4:pos + 4 + n])
            pos += 4 + n
        check_eq(pos, len(msg), "nothing after the names")
        check_eq(sorted(names), sorted(os.listdir(in_tree(ctx, name).encode())),
                 "names of /%s (bytes as they are, no . or ..)" % name)
    rid, msg = s.svc.call(READDIR, p_path("/sub/deeper"))
    check_bytes(msg, response(rid, READDIR, 0, struct.pack(">I", 1) + wstr("deep.txt")), "exact")
    os.mkdir(in_tree(ctx, "void"))
    rid, msg = s.svc.call(READDIR, p_path("/void"))
    check_bytes(msg, response(rid, READDIR, 0, struct.pack(">I", 0)), "empty directory")
    s.svc.expect(READDIR, p_path("/hello.txt"), -errno.ENOTDIR, "readdir of a file")
    s.svc.expect(READDIR, p_path("/missing"), -errno.ENOENT, "readdir of nothing")
    check_eq(s.stop(), (1000, 0), "clean stop (sanitizer builds: no leak)")


def parse_readdirplus(msg):
    """(next cookie, [(name, 88 attribute bytes)]) of a successful READDIRPLUS answer."""
    cookie, count = struct.unpack(">QI", msg[9:21])
    entries, pos = [], 21
    for _ in range(count):
        n = struct.unpack(">I", msg[pos:pos + 4])[0]
        entries.append((msg[pos + 4:pos + 4 + n], msg[pos + 4 + n:pos + 92 + n]))
        pos += 92 + n
    check_eq(pos, len(msg), "nothing after the entries")
    return cookie, entries


def list_plus(s, path, page):
    """Every entry of `path`, page by page; also the number of pages."""
    cookie, entries, pages = 0, [], 0
    while True:
        rid, msg = s.svc.call(READDIRPLUS, p_readdirplus(path, cookie, page))
        check_eq(errname(result_of(msg)), 0, "readdirplus %s from cookie %d" % (path, cookie))
        cookie, got = parse_readdirplus(msg)
        check(1 <= len(got) <= page or (cookie == 0 and not got), "page of %d entries" % len(got))
        entries += got
        pages += 1
        if cookie == 0:
            return entries, pages


def test_readdirplus_pages_entries_with_lstat_attributes(ctx):
    s = Session(ctx)
    os.mkdir(in_tree(ctx, "many"))
    for i in range(1000):
        open(in_tree(ctx, "many", "f%04d" % i), "w").write("x" * (i % 7))
    for name, page in (("", 4096), ("sub", 1), ("many", 1), ("many", 64), ("many", 4096)):
        entries, pages = list_plus(s, "/" + name, page)
        expected = sorted(os.listdir(in_tree(ctx, name).encode()))
        check_eq(sorted(n for n, _ in entries), expected,
                 "/%s in pages of %d: every entry once, no . or .." % (name, page))
        check_eq(pages, max(1, -(-len(expected) // page)), "pages of /%s" % name)
        for n, attr in entries:
            check_bytes(attr, attr_bytes(os.lstat(os.path.join(in_tree(ctx, name).encode(), n))),
                        "attributes of /%s/%r" % (name, n))
    os.mkdir(in_tree(ctx, "void"))
    rid, msg = s.svc.call(READDIRPLUS, p_readdirplus("/void", 0, 8))
    check_bytes(msg, response(rid, READDIRPLUS, 0, struct.pack(">QI", 0, 0)), "empty directory")
    s.svc.expect(READDIRPLUS, p_readdirplus("/", 0, 0), -errno.EINVAL, "a page of no entries")
    s.svc.expect(READDIRPLUS, p_readdirplus("/hello.txt", 0, 8), -errno.ENOTDIR, "of a file")
    s.svc.expect(READDIRPLUS, p_readdirplus("/missing", 0, 8), -errno.ENOENT, "of nothing")
    check_eq(s.stop(), (1000, 0), "clean stop (sanitizer builds: no leak)")


def test_readdirplus_pages_survive_changes_between_them(ctx):
    """Entries removed or added between pages never make a listing repeat or lose one that stayed."""
    s = Session(ctx)
    os.mkdir(in_tree(ctx, "moving"))
    for i in range(300):
        open(in_tree(ctx, "moving", "k%03d" % i), "w").close()
    rid, msg = s.svc.call(READDIRPLUS, p_readdirplus("/moving", 0, 100))
    cookie, first = parse_readdirplus(msg)
    check(cookie != 0, "more pages follow")
    gone = {n for n, _ in first[:10]}
    for n in gone:
        os.unlink(os.path.join(in_tree(ctx, "moving").encode(), n))
    seen = [n for n, _ in first]
    while cookie:
        rid, msg = s.svc.call(READDIRPLUS, p_readdirplus("/moving", cookie, 100))
        cookie, got = parse_readdirplus(msg)
        seen += [n for n, _ in got]
    check_eq(len(seen), len(set(seen)), "no entry twice")
    check_eq(set(seen) - gone, set(os.listdir(in_tree(ctx, "moving").encode())),
             "every entry that stayed")


def test_statfs(ctx):
    s = Session(ctx)
    rid, msg = s.svc.call(STATFS, p_path("/sub"))
    check_eq(len(msg), 9 + 64, "statfs response length")
    check_eq(result_of(msg), 0, "statfs result")
    got = struct.unpack(">8Q", msg[9:])
    vfs = os.statvfs(ctx.tree)
    want = (vfs.f_bsize, vfs.f_frsize, vfs.f_blocks, vfs.f_bfree, vfs.f_bavail, vfs.f_files,
            vfs.f_ffree, vfs.f_namemax)
    for i in (0, 1, 2, 5, 7):  # the ones that do not move while other tests write
        check_eq(got[i], want[i], "statfs field %d" % i)
    for i in (3, 4, 6):
        check(abs(got[i] - want[i]) <= max(want[i] // 100, 4096), "statfs field %d near" % i)


def test_utimens(ctx):
    s = Session(ctx)
    svc = s.svc
    t = lambda *p: in_tree(ctx, *p)  # noqa: E731
    svc.ok(UTIMENS, p_utimens("/hello.txt", (1, 2), (3, 4), NONE), "utimens by path")
    st = os.lstat(t("hello.txt"))
    check_eq((st.st_atime_ns, st.st_mtime_ns), (10**9 + 2, 3 * 10**9 + 4), "times to the ns")
    svc.ok(UTIMENS, p_utimens("/hello.txt", (0, UTIME_OMIT), (5000000000, 6), NONE), "OMIT atime")
    st = os.lstat(t("hello.txt"))
    check_eq((st.st_atime_ns, st.st_mtime_ns), (10**9 + 2, 5 * 10**18 + 6), "atime untouched")
    before = time.time_ns()
    svc.ok(UTIMENS, p_utimens("/hello.txt", (0, UTIME_NOW), (0, UTIME_OMIT), NONE), "NOW atime")
    st = os.lstat(t("hello.txt"))
    check(st.st_atime_ns >= before - 10**9, "atime is now")
    check_eq(st.st_mtime_ns, 5 * 10**18 + 6, "mtime untouched")
    h = svc.open("/hello.txt", os.O_WRONLY)
    svc.ok(UTIMENS, p_utimens("/hello.txt", (7, 0), (8, 0), h), "utimens by handle")
    st = os.lstat(t("hello.txt"))
    check_eq((st.st_atime_ns, st.st_mtime_ns), (7 * 10**9, 8 * 10**9), "by handle")
    target_before = os.stat(t("hello.txt")).st_mtime_ns
    svc.ok(UTIMENS, p_utimens("/link_in", (11, 0), (12, 0), NONE), "utimens of a symlink")
    check_eq(os.lstat(t("link_in")).st_mtime_ns, 12 * 10**9, "the link's own time")
    check_eq(os.stat(t("hello.txt")).st_mtime_ns, target_before, "the target untouched")
    svc.ok(UTIMENS, p_utimens("/", (13, 0), (14, 0), NONE), "utimens of the root")
    check_eq(os.lstat(ctx.tree).st_mtime_ns, 14 * 10**9, "root's time")
    svc.expect(UTIMENS, p_utimens("/missing", (1, 0), (1, 0), NONE), -errno.ENOENT, "nothing")
    svc.expect(UTIMENS, p_utimens("/hello.txt", (1, 10**9), (1, 0), NONE), -errno.EINVAL,
               "nanoseconds out of range")
    svc.expect(UTIMENS, p_utimens("/hello.txt", (1, 0), (1, 0), 31337), -errno.EBADF,
               "unknown handle")


def test_getcreds(ctx):
    s = Session(ctx, extra=["--token", "s3cr\u00e9t"])
    rid, msg = s.svc.call(GETCREDS)
    check_bytes(msg, struct.pack(">IB", rid, 0x97) + wstr("s3cr\u00e9t"),
                "--token, no result field")
    s.svc.send_raw(bytes.fromhex("0000000a17"))
    check_bytes(s.svc.wait_for(10), struct.pack(">IB", 10, 0x97) + wstr("s3cr\u00e9t"), "again")
    env = dict(os.environ, WEBFUSE_TOKEN="from-env")
    s = Session(ctx, env=env)
    rid, msg = s.svc.call(GETCREDS)
    check_bytes(msg, struct.pack(">IB", rid, 0x97) + wstr("from-env"), "WEBFUSE_TOKEN")
    s = Session(ctx, env=env, extra=["--token", "wins"])
    rid, msg = s.svc.call(GETCREDS)
    check_bytes(msg, struct.pack(">IB", rid, 0x97) + wstr("wins"), "--token over the environment")
    env = dict(os.environ)
    env.pop("WEBFUSE_TOKEN", None)
    s = Session(ctx, env=env)
    rid, msg = s.svc.call(GETCREDS)
    check_bytes(msg, struct.pack(">IBI", rid, 0x97, 0), "no token: an empty string")


# ------------------------------------------------------------------------------------------------
# Security: nothing outside the directory
# ------------------------------------------------------------------------------------------------

def test_paths_never_escape(ctx):
    s = Session(ctx)
    svc = s.svc
    base = os.path.dirname(ctx.tree)
    before = snapshot_outside(base)
    bad_paths = [b"hello.txt", b"", b"/..", b"/../secret.txt", b"/sub/../../secret.txt",
                 b"/sub/../hello.txt", b"/./hello.txt", b"/sub/..", b"/hello.txt\0/x",
                 b"/\0"]
    for path in bad_paths:
        for rtype, payload in ((GETATTR, p_path(path)), (OPEN, p_open(path, 0)),
                               (READDIR, p_path(path)), (UNLINK, p_path(path)),
                               (READDIRPLUS, p_readdirplus(path, 0, 8)),
                               (MKDIR, p_mode(path, 0o755)), (READLINK, p_path(path)),
                               (TRUNCATE, p_truncate(path, 0, NONE))):
            svc.expect(rtype, payload, -errno.EINVAL, "%s %r refused" % (NAMES[rtype], path))
    denied = -errno.EACCES
    for name in ("link_out", "rel_out", "sneaky_out", "magic", "dirlink_out/secret.txt"):
        path = "/" + name
        svc.expect(OPEN, p_open(path, os.O_RDONLY), denied, "open through %s" % name)
        svc.expect(OPEN, p_open(path, os.O_WRONLY | os.O_TRUNC), denied, "truncating open")
        svc.expect(TRUNCATE, p_truncate(path, 0, NONE), denied, "truncate through %s" % name)
        svc.expect(READ, p_read(path, 100, 0, NONE), denied, "read by path through %s" % name)
        svc.expect(WRITE, p_write(path, b"x", 0, NONE), denied, "write by path through " + name)
        svc.expect(ACCESS, p_access(path, os.F_OK), denied, "access through %s" % name)
        svc.expect(FSYNC, p_fsync(path, 0, NONE), denied, "fsync through %s" % name)
    svc.expect(CREATE, p_mode("/link_out", 0o100644), denied, "create through link_out")
    for rtype, payload in (
            (GETATTR, p_path("/dirlink_out/secret.txt")),
            (READDIR, p_path("/dirlink_out")),
            (READDIR, p_path("/dirlink_out/outside")),
            (READDIRPLUS, p_readdirplus("/dirlink_out", 0, 8)),
            (CREATE, p_mode("/dirlink_out/outside/new", 0o100644)),
            (MKDIR, p_mode("/dirlink_out/outside/d", 0o755)),
            (MKNOD, p_mknod("/dirlink_out/outside/n", stat.S_IFIFO | 0o644, 0)),
            (SYMLINK, p_two("x", "/dirlink_out/outside/l")),
            (LINK, p_two("/hello.txt", "/dirlink_out/outside/h")),
            (LINK, p_two("/dirlink_out/secret.txt", "/stolen")),
            (RENAME, p_rename("/hello.txt", "/dirlink_out/outside/r", 0)),
            (RENAME, p_rename("/dirlink_out/secret.txt", "/stolen", 0)),
            (RENAME, p_rename("/empty", "/dirlink_out/secret.txt", RENAME_EXCHANGE)),
            (UNLINK, p_path("/dirlink_out/secret.txt")),
            (RMDIR, p_path("/dirlink_out/outside")),
            (CHMOD, p_mode("/dirlink_out/secret.txt", 0o777)),
            (CHOWN, p_chown("/dirlink_out/secret.txt", 1, 1)),
            (UTIMENS, p_utimens("/dirlink_out/secret.txt", (1, 0), (1, 0), NONE)),
            (READLINK, p_path("/dirlink_out/export/link_in")),
            (ACCESS, p_access("/dirlink_out/secret.txt", 0))):
        svc.expect(rtype, payload, denied, "%s through dirlink_out" % NAMES[rtype])
    # The links themselves are entries of the export: served as symlinks, as they are.
    rid, msg = svc.call(GETATTR, p_path("/link_out"))
    check_bytes(msg, response(rid, GETATTR, 0, attr_bytes(os.lstat(in_tree(ctx, "link_out")))),
                "lstat of the link itself")
    svc.expect(CHMOD, p_mode("/link_out", 0o777), -errno.EOPNOTSUPP, "chmod of a symlink")
    if os.geteuid() == 0:
        svc.ok(CHOWN, p_chown("/link_out", 4321, 4321), "chown of the link itself")
    svc.ok(UTIMENS, p_utimens("/link_out", (1, 0), (1, 0), NONE), "utimens of the link itself")
    # A symlink made through the protocol that points out cannot be followed either.
    secret = os.path.join(base, "secret.txt")
    for target in (secret, "../secret.txt", "sub/../../outside"):
        svc.ok(SYMLINK, p_two(target, "/made"), "symlink to %s may be made" % target)
        svc.expect(OPEN, p_open("/made", os.O_RDONLY), denied, "open through it")
        svc.expect(READDIR, p_path("/made"), denied, "readdir through it")
        svc.expect(CREATE, p_mode("/made/x", 0o100644), denied, "create below it")
        svc.ok(UNLINK, p_path("/made"), "unlink the link")
    # Inside the export, symlinks work: to a file, to a directory, relative with "..".
    os.symlink("sub/../hello.txt", in_tree(ctx, "inside_dots"))
    for path in ("/link_in", "/dirlink_in/inner.txt", "/inside_dots"):
        svc.ok(RELEASE, p_release(path, svc.open(path)), "open %s inside" % path)
    svc.succeeds(GETATTR, p_path("/dirlink_in/deeper"), "getattr through a symlink inside")
    after = snapshot_outside(base)
    for path in sorted(set(before) | set(after)):
        if path.endswith("secret.txt") or path.endswith("outside"):
            check_eq(after.get(path), before.get(path), "%s unchanged" % path)
    check_eq(sorted(after), sorted(before), "nothing appeared or vanished outside the export")
    check_eq(s.stop(), (1000, 0), "clean stop (sanitizer builds: no leak)")


# ------------------------------------------------------------------------------------------------
# --read-only
# ------------------------------------------------------------------------------------------------

def test_read_only_refuses_every_change(ctx):
    s = Session(ctx, read_only=True)
    svc = s.svc
    state = {}
    for dirpath, dirnames, filenames in os.walk(ctx.tree):
        for name in dirnames + filenames + ["."]:
            st = os.lstat(os.path.join(dirpath, name))
            state[os.path.join(dirpath, name)] = (st.st_mode, st.st_uid, st.st_size,
                                                   st.st_mtime_ns, st.st_nlink)
    h = svc.open("/hello.txt")  # reading works
    check_eq(svc.read("/hello.txt", 100, 0, h), b"hello, world\n", "read")
    rofs = -errno.EROFS
    cases = [
        (WRITE, p_write("/hello.txt", b"x", 0, h)), (WRITE, p_write("/hello.txt", b"x", 0, NONE)),
        (CREATE, p_mode("/new", 0o100644)), (CREATE, p_mode("/hello.txt", 0o100644)),
        (MKNOD, p_mknod("/n", stat.S_IFIFO | 0o644, 0)), (MKDIR, p_mode("/d", 0o755)),
        (UNLINK, p_path("/hello.txt")), (RMDIR, p_path("/sub/deeper")),
        (RENAME, p_rename("/hello.txt", "/x", 0)),
        (RENAME, p_rename("/hello.txt", "/empty", RENAME_EXCHANGE)),
        (LINK, p_two("/hello.txt", "/x")), (SYMLINK, p_two("hello.txt", "/x")),
        (CHMOD, p_mode("/hello.txt", 0o777)), (CHOWN, p_chown("/hello.txt", 1, 1)),
        (TRUNCATE, p_truncate("/hello.txt", 0, NONE)), (TRUNCATE, p_truncate("/hello.txt", 0, h)),
        (UTIMENS, p_utimens("/hello.txt", (1, 0), (1, 0), NONE)),
        (UTIMENS, p_utimens("/hello.txt", (1, 0), (1, 0), h)),
        (OPEN, p_open("/hello.txt", os.O_WRONLY)), (OPEN, p_open("/hello.txt", os.O_RDWR)),
        (OPEN, p_open("/hello.txt", os.O_RDONLY | os.O_TRUNC)),
        (OPEN, p_open("/new", os.O_RDONLY | os.O_CREAT)),
        (OPEN, p_open("/hello.txt", os.O_WRONLY | os.O_APPEND | O_LARGEFILE)),
        (ACCESS, p_access("/hello.txt", os.W_OK)),
    ]
    for rtype, payload in cases:
        svc.expect(rtype, payload, rofs, "%s on a read-only export" % NAMES[rtype])
    svc.ok(ACCESS, p_access("/hello.txt", os.R_OK), "access R_OK")
    svc.expect(OPEN, p_open("/null", os.O_RDONLY), -errno.EINVAL, "open of a device, read-only")
    svc.succeeds(GETATTR, p_path("/sub"), "getattr")
    svc.ok(FSYNC, p_fsync("/hello.txt", 0, h), "fsync changes nothing")
    svc.ok(RELEASE, p_release("/hello.txt", h), "release")
    rid, msg = svc.call(READDIR, p_path("/"))
    check_eq(result_of(msg), 0, "readdir")
    rid, msg = svc.call(STATFS, p_path("/"))
    check_eq(result_of(msg), 0, "statfs")
    after = {}
    for dirpath, dirnames, filenames in os.walk(ctx.tree):
        for name in dirnames + filenames + ["."]:
            st = os.lstat(os.path.join(dirpath, name))
            after[os.path.join(dirpath, name)] = (st.st_mode, st.st_uid, st.st_size,
                                                   st.st_mtime_ns, st.st_nlink)
    check_eq(after, state, "the tree is unchanged")


# ------------------------------------------------------------------------------------------------
# Limits and reconnecting
# ------------------------------------------------------------------------------------------------

def open_file_limit(pid):
    """The soft RLIMIT_NOFILE of a process."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def vm_data_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1])
    raise Failure("no VmData for %d" % pid)


def test_queued_short_answers_hold_only_what_they_carry(ctx):
    """A READ asks up to 1 MiB; when it finds less, its queued answer must not keep 1 MiB while
    the gateway does not take it (queued answers are counted by length: a gateway could make the
    provider reserve 4 GiB with 4096 reads of a small file)."""
    with open(in_tree(ctx, "small.bin"), "wb") as f:
        f.write(os.urandom(60000))
    # Under AddressSanitizer, freed memory waits in a quarantine: give it back at once.
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
               ":quarantine_size_mb=0")
    s = Session(ctx, env=env)
    svc = s.svc
    h = svc.open("/small.bin")
    # One read first: it starts the read threads, whose stacks count in VmData too.
    check_eq(len(svc.read("/small.bin", 1 << 20, 0, h)), 60000, "bytes of one read")
    before = vm_data_kib(s.provider.proc.pid)
    for _ in range(400):  # 24 MB of answers: the sockets take some, then the provider's queue
        svc.send(READ, p_read("/small.bin", 1 << 20, 0, h))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "reading paused" not in s.provider.output():
        time.sleep(0.05)
    check("reading paused" in s.provider.output(), "the provider's queue filled")
    # Allowed: reads in flight (at most 32 of 1 MiB) and 8 MiB of queued answers. When each
    # queued answer kept its 1 MiB, this grew by 176 MB.
    grown = vm_data_kib(s.provider.proc.pid) - before
    check(grown < 64 * 1024, "memory grew by %d KiB for 8 MiB of queued answers" % grown)


def test_handle_limit(ctx):
    s = Session(ctx)
    handles = []
    for batch in range(9):  # 9 x 512 = 4608 opens, in batches so no queue runs full
        ids = [s.svc.send(OPEN, p_open("/hello.txt", 0)) for _ in range(512)]
        for rid in ids:
            msg = s.svc.wait_for(rid)
            res = result_of(msg)
            if res == 0:
                handles.append(struct.unpack(">Q", msg[9:17])[0])
            else:
                check_eq(errname(res), "EMFILE", "open beyond the limit")
    check_eq(len(set(handles)), len(handles), "distinct handles")
    if open_file_limit(s.provider.proc.pid) < 4096 + 64:
        check(len(handles) > 0, "some opens succeed under a low RLIMIT_NOFILE")
        return  # the process limit, not the provider's, is what ran out
    check_eq(len(handles), 4096, "opens that succeed")
    s.svc.ok(RELEASE, p_release("/hello.txt", handles[100]), "release one")
    h = s.svc.open("/hello.txt")
    check(h != handles[100], "a released handle's number is not handed out again at once")
    s.svc.expect(OPEN, p_open("/hello.txt", 0), -errno.EMFILE, "full again")
    s.svc.expect(CREATE, p_mode("/n", 0o100644), -errno.EMFILE, "create when full")
    check(not os.path.exists(in_tree(ctx, "n")), "nothing created when no handle is free")


def test_reconnect(ctx):
    s = Session(ctx, extra=["--reconnect"])
    h = s.svc.open("/hello.txt")
    s.svc.succeeds(GETATTR, p_path("/"), "serving")
    start = time.monotonic()
    s.svc.ws.abort()  # the service goes away without a close frame
    s.svc = Service(s.server)
    check(time.monotonic() - start < 5, "reconnected quickly")
    check_eq(s.svc.request["path"], "/demo", "same URL path")
    s.svc.expect(READ, p_read("/hello.txt", 5, 0, h), -errno.EBADF, "old handles are gone")
    check_eq(s.svc.read("/hello.txt", 5, 0, s.svc.open("/hello.txt")), b"hello", "serving again")
    # A close frame from the service: reconnect as well, again quickly (the connection served).
    s.svc.ws.send_close(1001, "restart")
    s.svc.ws.wait_closed(TIMEOUT)
    s.svc.ws.abort()
    start = time.monotonic()
    s.svc = Service(s.server)
    check(time.monotonic() - start < 5, "reconnected quickly again")
    s.svc.succeeds(GETATTR, p_path("/hello.txt"), "serving after the second reconnect")
    check_eq(s.stop(signal.SIGTERM), (1000, 0), "clean stop with --reconnect")


def test_reconnect_retries_until_the_service_listens(ctx):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    provider = Provider(ctx.workdir, ["--url", "ws://127.0.0.1:%d/x" % port, "--path", ctx.tree,
                                      "--reconnect"])
    ctx.cleanups.append(provider.kill)
    time.sleep(1.2)
    check(provider.proc.poll() is None, "still running while nothing listens")
    server = wstest.Server(port=port)
    ctx.cleanups.append(server.close)
    svc = Service(server)
    svc.ok(ACCESS, p_access("/", 0), "serving after retries")
    provider.signal(signal.SIGINT)
    check_eq(svc.ws.wait_closed(TIMEOUT), 1000, "close code")
    check_eq(provider.wait(), 0, "exit status")


# ------------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------------

class Context:
    def __init__(self, workdir, tree):
        self.workdir = workdir
        self.tree = tree
        self.cleanups = []

    def cleanup(self):
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception:  # cleanup must not hide the test's result
                pass


def main():
    if not PROVIDER or not os.access(PROVIDER, os.X_OK):
        harness.skip("set WEBFUSE_PROVIDER to the webfuse-provider binary")
    only = sys.argv[1:]
    tests = [(name, fn) for name, fn in sorted(globals().items())
             if name.startswith("test_") and callable(fn) and (not only or name in only)]
    workdir = tempfile.mkdtemp(prefix="wf-provider-wf2-test-")
    passed = failed = 0
    try:
        for name, fn in tests:
            base = os.path.join(workdir, name)
            ctx = Context(base, make_tree(base))  # a fresh tree for every case
            started = time.monotonic()
            try:
                fn(ctx)
                passed += 1
                print("PASS %s (%.2fs)" % (name, time.monotonic() - started), flush=True)
            except Exception as error:  # report every failure, keep going
                failed += 1
                print("FAIL %s: %s" % (name, error), flush=True)
                if not isinstance(error, Failure):
                    traceback.print_exc()
                for cleanup in ctx.cleanups:
                    owner = getattr(cleanup, "__self__", None)
                    provider = getattr(owner, "provider", owner)
                    if isinstance(provider, Provider):
                        print("---- provider log (end) ----\n" + provider.output()[-3000:])
            finally:
                ctx.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
