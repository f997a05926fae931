#!/usr/bin/env python3
"""webfuse-provider against a scripted gateway speaking the JSON protocol.

The test plays the gateway with wstest.Server: it answers add_filesystem, sends lookup / getattr /
readdir / open / read / close and malformed requests, and checks every answer against the
exported directory. No FUSE and no webfused needed.

Environment: WEBFUSE_PROVIDER = path of the webfuse-provider binary (exit 77 = skipped without;
a failure with WEBFUSE_REQUIRE_ALL=1).
Exit status 0 when every case passes, 1 otherwise.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (skip() only: no root or FUSE needed here)
import wstest  # noqa: E402

SUBPROTOCOL = "webfuse-adapter-server"
TIMEOUT = 10  # seconds, for every single wait
MIB = 1 << 20
ROOT = 1
GOOD, BAD, NOTIMPLEMENTED, FORMAT, NOENTRY = 0, 1, 2, 5, 101

PROVIDER = os.environ.get("WEBFUSE_PROVIDER", "")


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


# ------------------------------------------------------------------------------------------------
# Exported trees
# ------------------------------------------------------------------------------------------------

BIG = os.urandom(5 * MIB + 12345)  # not a multiple of the chunk size
SPARSE_SIZE = 5 * (1 << 30) + 7  # beyond 32 bits


def make_tree(base):
    """The exported directory: what is served, and what must stay invisible."""
    root = os.path.join(base, "export")
    os.makedirs(os.path.join(root, "sub", "deeper"))
    with open(os.path.join(root, "hello.txt"), "wb") as f:
        f.write(b"hello, world\n")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(BIG)
    open(os.path.join(root, "empty"), "wb").close()
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.truncate(SPARSE_SIZE)
    with open(os.path.join(root, "\u00fcml\u00e4ut \u2713.txt"), "wb") as f:
        f.write(b"unicode\n")
    with open(os.path.join(root, "sub", "inner.txt"), "wb") as f:
        f.write(b"inner file\n")
    with open(os.path.join(root, "sub", "deeper", "deep.txt"), "wb") as f:
        f.write(b"deep\n")
    secret = os.path.join(base, "secret.txt")
    with open(secret, "wb") as f:
        f.write(b"outside the export\n")
    os.symlink(secret, os.path.join(root, "link_out"))
    os.symlink("hello.txt", os.path.join(root, "link_in"))
    os.symlink(base, os.path.join(root, "dirlink_out"))
    os.mkfifo(os.path.join(root, "fifo"))
    # A name that is not UTF-8 cannot travel in JSON: it must be left out of listings.
    fd = os.open(os.path.join(root.encode(), b"latin1-\xe9.txt"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    os.chmod(os.path.join(root, "hello.txt"), 0o640)
    return root


SERVED_ROOT_NAMES = {"hello.txt", "big.bin", "empty", "sparse.img", "sub",
                     "\u00fcml\u00e4ut \u2713.txt"}


# ------------------------------------------------------------------------------------------------
# A provider connected to our scripted gateway
# ------------------------------------------------------------------------------------------------

class Provider:
    """Runs webfuse-provider; stderr goes to a file so tests can look at the log."""

    def __init__(self, workdir, args):
        self.log_path = os.path.join(workdir, "provider-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([PROVIDER] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)

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


class Gateway:
    """One accepted provider connection plus a JSON request/response helper."""

    def __init__(self, server, timeout=TIMEOUT):
        self.ws, self.request = server.accept(timeout, subprotocols=[SUBPROTOCOL])
        self.next_id = 1000
        self.early = []  # messages that arrived while waiting for a specific id

    def send(self, obj, fragments=1):
        self.ws.send_text(json.dumps(obj), fragments)

    def recv(self, timeout=TIMEOUT):
        if self.early:
            return self.early.pop(0)
        kind, data = self.ws.recv_message(timeout)
        check_eq(kind, "text", "frame type of a provider message")
        return json.loads(data.decode("utf-8"))

    def attach(self, answers, timeout=TIMEOUT):
        """Answers the provider's add_filesystem requests: answers maps name -> None (accept) or
        an error code. Returns {name: id used}."""
        ids = {}
        while len(ids) < len(answers):
            msg = self.recv(timeout)
            check_eq(msg.get("method"), "add_filesystem", "first messages of a connection")
            check(isinstance(msg.get("id"), int), "add_filesystem carries an integer id")
            (name,) = msg["params"]
            check(name in answers, "unexpected filesystem %r" % name)
            check(name not in ids, "filesystem %r added twice" % name)
            check(msg["id"] not in ids.values(), "add_filesystem ids are distinct")
            ids[name] = msg["id"]
            if answers[name] is None:
                self.send({"result": {"id": name}, "id": msg["id"]})
            else:
                code, message = answers[name] if isinstance(answers[name], tuple) else (
                    answers[name], "bad")  # webfused's message when it has nothing to add
                self.send({"error": {"code": code, "message": message}, "id": msg["id"]})
        return ids

    def call(self, method, params, timeout=TIMEOUT):
        """Sends a request and returns the response with its id (others are kept for later)."""
        self.next_id += 1
        rid = self.next_id
        self.send({"method": method, "params": params, "id": rid})
        return self.wait_for(rid, timeout)

    def wait_for(self, rid, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.early):
            if msg.get("id") == rid:
                return self.early.pop(i)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("no answer to request %d" % rid)
            kind, data = self.ws.recv_message(left)
            msg = json.loads(data.decode("utf-8"))
            if msg.get("id") == rid:
                return msg
            self.early.append(msg)

    def result(self, method, params):
        msg = self.call(method, params)
        check("result" in msg, "%s %r failed: %r" % (method, params, msg))
        return msg["result"]

    def error_code(self, method, params):
        msg = self.call(method, params)
        check("error" in msg, "%s %r should fail, got %r" % (method, params, msg))
        check(isinstance(msg["error"].get("code"), int), "error code is an integer")
        return msg["error"]["code"]

    def expect_silence(self, seconds=0.3):
        """Nothing may arrive for `seconds` (notifications are never answered)."""
        if self.early:
            raise Failure("unexpected message %r" % self.early[0])
        try:
            kind, data = self.ws.recv_message(seconds)
        except TimeoutError:
            return
        raise Failure("unexpected message %r" % data[:200])


class Session:
    """Server + provider + accepted connection with the filesystems attached."""

    def __init__(self, ctx, names=("a",), refuse=None, extra=()):
        self.server = wstest.Server()
        self.url = "ws://127.0.0.1:%d/" % self.server.port
        args = ["--protocol", "json", "--url", self.url, "--log-level", "debug"] + list(extra)
        for name in names:
            args += ["--fs", "%s=%s" % (name, ctx.tree)]
        self.provider = Provider(ctx.workdir, args)
        ctx.cleanups.append(self.close)
        self.gw = Gateway(self.server)
        answers = {name: (refuse or {}).get(name) for name in names}
        self.ids = self.gw.attach(answers)

    def stop(self, signo=signal.SIGINT):
        """Signals the provider; returns (close code it sent, exit status)."""
        self.provider.signal(signo)
        code = self.gw.ws.wait_closed(TIMEOUT)
        return code, self.provider.wait()

    def close(self):
        self.gw.ws.abort()
        self.server.close()
        self.provider.kill()


def lookup(gw, parent, name, fs="a"):
    return gw.result("lookup", [fs, parent, name])


def open_file(gw, ino, fs="a", flags=os.O_RDONLY | 0o100000):
    return gw.result("open", [fs, ino, flags])["handle"]


def read(gw, ino, handle, offset, length, fs="a"):
    res = gw.result("read", [fs, ino, handle, offset, length])
    check(set(res) >= {"data", "format", "count"}, "read result members: %r" % sorted(res))
    if res["format"] == "base64":
        data = base64.b64decode(res["data"], validate=True)
    else:
        check_eq(res["format"], "identity", "read format")
        data = res["data"].encode("latin-1")
    check_eq(res["count"], len(data), "read count equals the decoded length")
    return data


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------

def test_help_describes_every_option(ctx):
    out = subprocess.run([PROVIDER, "--help"], capture_output=True, timeout=TIMEOUT)
    check_eq(out.returncode, 0, "--help exit status")
    text = out.stdout.decode()
    for option in ("--url", "--fs", "--protocol", "--reconnect", "--log-level", "--help",
                   "ws://", "wss://", "json"):
        check(option in text, "--help mentions %s" % option)


def test_bad_arguments_exit_2(ctx):
    notdir = os.path.join(ctx.tree, "hello.txt")
    cases = [
        [],
        ["--url", "ws://127.0.0.1:1/"],
        ["--fs", "a=" + ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "=" + ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a b=" + ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + notdir],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree + "/missing"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--fs", "a=" + ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--ca", notdir],  # ca: wss only
        ["--url", "wss://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--ca", ctx.tree + "/missing"],
        ["--url", "wss://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--ca", notdir],  # not PEM
        ["--url", "http://127.0.0.1:1/", "--fs", "a=" + ctx.tree],
        ["--url", "ws://127.0.0.1:99999/", "--fs", "a=" + ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--protocol", "nope"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--path", ctx.tree],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--token", "t"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--log-level", "loud"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "--bogus"],
        ["--url", "ws://127.0.0.1:1/", "--fs", "a=" + ctx.tree, "stray"],
        ["--url"],
    ]
    for args in cases:
        args = ["--protocol", "json"] + args  # webfuse2 is the default now
        out = subprocess.run([PROVIDER] + args, capture_output=True, timeout=TIMEOUT)
        check_eq(out.returncode, 2, "exit status for %r" % args)
        check(out.stderr.strip(), "an error message for %r" % args)
    out = subprocess.run([PROVIDER, "--url", "wss://127.0.0.1:1/x", "--path", ctx.tree, "--ca",
                          notdir], capture_output=True, timeout=TIMEOUT)
    check(b"holds no PEM certificate" in out.stderr, "--ca of a text file: %r" % out.stderr)
    out = subprocess.run([PROVIDER, "--url", "wss://127.0.0.1:1/x", "--path", ctx.tree, "--ca",
                          ctx.tree + "/missing"], capture_output=True, timeout=TIMEOUT)
    check(b"No such file or directory" in out.stderr, "--ca of no file: %r" % out.stderr)
    fifo = os.path.join(ctx.tree, "..", "ca-fifo")
    os.mkfifo(fifo)
    try:  # opening a FIFO without a writer would block for good
        out = subprocess.run([PROVIDER, "--url", "wss://127.0.0.1:1/x", "--path", ctx.tree,
                              "--ca", fifo], capture_output=True, timeout=TIMEOUT)
    finally:
        os.unlink(fifo)
    check_eq(out.returncode, 2, "exit status for --ca of a FIFO")
    check(b"not a regular file" in out.stderr, "--ca of a FIFO: %r" % out.stderr)


def test_connection_refused_exits_1(ctx):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = "ws://127.0.0.1:%d/" % port
    out = subprocess.run([PROVIDER, "--protocol", "json", "--url", url, "--fs", "a=" + ctx.tree],
                         capture_output=True, timeout=TIMEOUT)
    check_eq(out.returncode, 1, "exit status")
    check("cannot connect to %s: nothing answers on 127.0.0.1 port %d (is webfused running "
          "there, with this --port?)" % (url, port) in out.stderr.decode(),
          "message names the url and says what to check: %r" % out.stderr.decode())
    # A URL without a port goes to 80, where webfused does not listen: the message says so.
    with socket.socket() as probe:
        port_80_free = probe.connect_ex(("127.0.0.1", 80)) != 0
    if port_80_free:
        out = subprocess.run([PROVIDER, "--url", "ws://127.0.0.1/x", "--path", ctx.tree],
                             capture_output=True, timeout=TIMEOUT)
        check("to port 80 (the URL names no port; webfused listens on 8081" in
              out.stderr.decode(), "without a port: %r" % out.stderr.decode())


def test_handshake_and_add_filesystem(ctx):
    s = Session(ctx, names=("a", "b.2", "c_3"))
    check_eq(s.gw.request["subprotocols"], [SUBPROTOCOL], "subprotocols asked for")
    check_eq(s.gw.request["path"], "/", "path")
    check_eq(sorted(s.ids), ["a", "b.2", "c_3"], "filesystems added")
    check_eq(s.stop(), (1000, 0), "(close code, exit status) after SIGINT")
    check("a: attached" in s.provider.output(), "attach logged")


def test_getattr_root(ctx):
    s = Session(ctx)
    attr = s.gw.result("getattr", ["a", ROOT])
    check_eq(attr["type"], "dir", "root type")
    check_eq(attr["mode"], os.stat(ctx.tree).st_mode & 0o7777, "root mode")
    check(isinstance(attr.get("mtime"), int), "mtime is an integer")


def test_lookup_and_getattr_agree(ctx):
    s = Session(ctx)
    st = os.stat(os.path.join(ctx.tree, "hello.txt"))
    attr = lookup(s.gw, ROOT, "hello.txt")
    check_eq(attr["type"], "file", "type")
    check_eq(attr["size"], st.st_size, "size")
    check_eq(attr["mode"], 0o640, "mode: permission bits only")
    check_eq(attr["mtime"], int(st.st_mtime), "mtime")
    check(attr["inode"] > ROOT, "inode of a looked up file is not the root")
    again = lookup(s.gw, ROOT, "hello.txt")
    check_eq(again["inode"], attr["inode"], "same file, same inode")
    by_ino = s.gw.result("getattr", ["a", attr["inode"]])
    check_eq(by_ino["size"], st.st_size, "getattr size")
    check_eq(by_ino["type"], "file", "getattr type")
    sub = lookup(s.gw, ROOT, "sub")
    check_eq(sub["type"], "dir", "subdirectory type")
    inner = lookup(s.gw, sub["inode"], "inner.txt")
    check_eq(inner["size"], len(b"inner file\n"), "size in a subdirectory")
    uni = lookup(s.gw, ROOT, "\u00fcml\u00e4ut \u2713.txt")
    check_eq(uni["size"], len(b"unicode\n"), "non-ASCII name")


def test_large_sizes_are_64_bit(ctx):
    s = Session(ctx)
    attr = lookup(s.gw, ROOT, "sparse.img")
    check_eq(attr["size"], SPARSE_SIZE, "size beyond 32 bits")
    handle = open_file(s.gw, attr["inode"])
    data = read(s.gw, attr["inode"], handle, SPARSE_SIZE - 5, 100)
    check_eq(data, b"\0" * 5, "read near the end of a 5 GiB file")


def test_lookup_refuses_escapes_and_specials(ctx):
    s = Session(ctx)
    for name in ("missing", "link_out", "link_in", "dirlink_out", "fifo", ".", ".."):
        check_eq(s.gw.error_code("lookup", ["a", ROOT, name]), NOENTRY, "lookup %r" % name)
    for name in ("sub/inner.txt", "../secret.txt", "/etc/passwd", ""):
        code = s.gw.error_code("lookup", ["a", ROOT, name])
        check(code != GOOD, "lookup %r refused" % name)
    hello = lookup(s.gw, ROOT, "hello.txt")
    code = s.gw.error_code("lookup", ["a", hello["inode"], "x"])
    check(code != GOOD, "lookup below a file refused")
    check_eq(s.gw.error_code("getattr", ["a", 999999]), NOENTRY, "getattr of an unknown inode")
    check_eq(s.gw.error_code("lookup", ["a", 424242, "x"]), NOENTRY, "lookup in unknown inode")


def test_readdir_lists_served_entries_only(ctx):
    s = Session(ctx)
    entries = s.gw.result("readdir", ["a", ROOT])
    check(isinstance(entries, list), "readdir result is an array")
    names = [e["name"] for e in entries]
    check_eq(len(names), len(set(names)), "no duplicates")
    check_eq(set(names), SERVED_ROOT_NAMES, "listed names (no . .. symlinks fifo non-UTF-8)")
    by_name = {e["name"]: e["inode"] for e in entries}
    for name in ("hello.txt", "sub"):
        check_eq(lookup(s.gw, ROOT, name)["inode"], by_name[name], "readdir inode of " + name)
    sub_entries = s.gw.result("readdir", ["a", by_name["sub"]])
    check_eq(sorted(e["name"] for e in sub_entries), ["deeper", "inner.txt"], "sub listing")
    hello = by_name["hello.txt"]
    check(s.gw.error_code("readdir", ["a", hello]) != GOOD, "readdir of a file fails")


def test_read_5mib_in_1mib_chunks(ctx):
    s = Session(ctx)
    attr = lookup(s.gw, ROOT, "big.bin")
    check_eq(attr["size"], len(BIG), "size")
    handle = open_file(s.gw, attr["inode"])
    got = b""
    while True:
        chunk = read(s.gw, attr["inode"], handle, len(got), MIB)
        if not chunk:
            break
        check(len(chunk) == MIB or len(got) + len(chunk) == len(BIG), "only the last read is short")
        got += chunk
    check_eq(len(got), len(BIG), "bytes read")
    check(got == BIG, "content equals the file")
    res = s.gw.result("read", ["a", attr["inode"], handle, len(BIG), 4096])
    check_eq(res, {"data": "", "format": "identity", "count": 0}, "read at end of file")
    long_read = read(s.gw, attr["inode"], handle, 0, 3 * MIB)
    check_eq(len(long_read), MIB, "a read longer than 1 MiB is capped")
    check(long_read == BIG[:MIB], "capped read content")
    s.gw.send({"method": "close", "params": ["a", attr["inode"], handle, 0]})
    s.gw.expect_silence()


def test_read_empty_and_small_files(ctx):
    s = Session(ctx)
    empty = lookup(s.gw, ROOT, "empty")
    handle = open_file(s.gw, empty["inode"])
    check_eq(read(s.gw, empty["inode"], handle, 0, 100), b"", "empty file")
    hello = lookup(s.gw, ROOT, "hello.txt")
    handle = open_file(s.gw, hello["inode"])
    check_eq(read(s.gw, hello["inode"], handle, 7, 100), b"world\n", "read at an offset")
    sub = lookup(s.gw, ROOT, "sub")
    deeper = lookup(s.gw, sub["inode"], "deeper")
    deep = lookup(s.gw, deeper["inode"], "deep.txt")
    handle = open_file(s.gw, deep["inode"])
    check_eq(read(s.gw, deep["inode"], handle, 0, 100), b"deep\n", "two levels down")


def test_open_refuses_writes_and_directories(ctx):
    s = Session(ctx)
    hello = lookup(s.gw, ROOT, "hello.txt")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        check(s.gw.error_code("open", ["a", hello["inode"], flags]) != GOOD,
              "open with flags 0%o refused" % flags)
    sub = lookup(s.gw, ROOT, "sub")
    check(s.gw.error_code("open", ["a", sub["inode"], os.O_RDONLY]) != GOOD, "open of a dir")
    check_eq(s.gw.error_code("open", ["a", 777777, os.O_RDONLY]), NOENTRY, "unknown inode")
    with open(os.path.join(ctx.tree, "hello.txt"), "rb") as f:
        check_eq(f.read(), b"hello, world\n", "file untouched")


def test_close_ends_a_handle_without_answer(ctx):
    s = Session(ctx)
    hello = lookup(s.gw, ROOT, "hello.txt")
    handle = open_file(s.gw, hello["inode"])
    other = open_file(s.gw, hello["inode"])
    check(handle != other, "each open gets its own handle")
    s.gw.send({"method": "close", "params": ["a", hello["inode"], handle, 0]})
    s.gw.expect_silence()
    check(s.gw.error_code("read", ["a", hello["inode"], handle, 0, 10]) != GOOD,
          "read on a closed handle fails")
    check_eq(read(s.gw, hello["inode"], other, 0, 5), b"hello", "the other handle still works")
    big = lookup(s.gw, ROOT, "big.bin")
    check(s.gw.error_code("read", ["a", big["inode"], other, 0, 10]) != GOOD,
          "a handle is bound to its inode")
    reused = open_file(s.gw, hello["inode"])
    check(reused != handle, "a closed handle number is not handed out again at once")


def test_bad_requests_get_error_codes(ctx):
    s = Session(ctx)
    check_eq(s.gw.error_code("write", ["a", 2, 0, "x"]), NOTIMPLEMENTED, "unknown method")
    check_eq(s.gw.error_code("lookup", ["a", "1", "x"]), FORMAT, "string inode")
    check_eq(s.gw.error_code("lookup", ["a", ROOT]), FORMAT, "missing param")
    check_eq(s.gw.error_code("read", ["a", ROOT, 1, 0, 1.5]), FORMAT, "float length")
    check_eq(s.gw.error_code("getattr", ["a", -1]), FORMAT, "negative inode")
    check(s.gw.error_code("getattr", ["nope", ROOT]) not in (GOOD,), "unknown filesystem")
    # Nothing to answer: notifications and messages that are no requests.
    s.gw.send({"method": "frobnicate", "params": []})
    s.gw.send({"method": "lookup", "params": ["a", ROOT, "hello.txt"]})
    s.gw.ws.send_text("this is not json")
    s.gw.ws.send_text("[1, 2, 3]")
    s.gw.send({"result": {}, "id": 123456})
    s.gw.ws.send_text(b"{\"method\": \"lookup\", \"params\": [\"a\", 1, \"\xff\"], \"id\": 5}")
    s.gw.expect_silence()
    check_eq(s.gw.result("getattr", ["a", ROOT])["type"], "dir", "still serving afterwards")
    check_eq(s.stop(), (1000, 0), "clean stop after bad input")


def test_fragmented_request_is_reassembled(ctx):
    s = Session(ctx)
    s.gw.next_id += 1
    rid = s.gw.next_id
    s.gw.send({"method": "lookup", "params": ["a", ROOT, "hello.txt"], "id": rid}, fragments=5)
    msg = s.gw.wait_for(rid)
    check_eq(msg["result"]["size"], 13, "answer to a fragmented request")
    # A large fragmented message (over 1 MiB of padding) is fine below the 16 MiB cap.
    pad = "x" * (3 * MIB)
    s.gw.next_id += 1
    rid = s.gw.next_id
    s.gw.send({"method": "getattr", "params": ["a", ROOT], "id": rid, "pad": pad}, fragments=7)
    check_eq(s.gw.wait_for(rid)["result"]["type"], "dir", "answer to a 3 MiB request")


def test_pipelined_requests_all_answered(ctx):
    s = Session(ctx)
    hello = lookup(s.gw, ROOT, "hello.txt")
    big = lookup(s.gw, ROOT, "big.bin")
    handle = open_file(s.gw, big["inode"])
    ids = {}
    for i in range(300):
        s.gw.next_id += 1
        rid = s.gw.next_id
        if i % 3 == 0:
            req = {"method": "getattr", "params": ["a", hello["inode"]]}
        elif i % 3 == 1:
            req = {"method": "readdir", "params": ["a", ROOT]}
        else:
            req = {"method": "read", "params": ["a", big["inode"], handle, (i % 5) * MIB, MIB]}
        req["id"] = rid
        ids[rid] = req
        s.gw.send(req)
    for rid, req in ids.items():
        msg = s.gw.wait_for(rid)
        check("result" in msg, "answer to %s: %r" % (req["method"], str(msg)[:200]))
        if req["method"] == "read":
            off = req["params"][3]
            check(base64.b64decode(msg["result"]["data"]) == BIG[off:off + MIB], "read data")


def test_handle_limit(ctx):
    s = Session(ctx)
    hello = lookup(s.gw, ROOT, "hello.txt")
    ids = []
    for _ in range(1025):
        s.gw.next_id += 1
        ids.append(s.gw.next_id)
        s.gw.send({"method": "open", "params": ["a", hello["inode"], 0], "id": s.gw.next_id})
    answers = [s.gw.wait_for(rid) for rid in ids]
    ok = [a for a in answers if "result" in a]
    check_eq(len(ok), 1024, "opens that succeed")
    check("error" in answers[-1], "the 1025th open fails")
    first = ok[0]["result"]["handle"]
    s.gw.send({"method": "close", "params": ["a", hello["inode"], first, 0]})
    check(isinstance(open_file(s.gw, hello["inode"]), int), "open works again after a close")


def test_refused_filesystem_logged_others_served(ctx):
    s = Session(ctx, names=("a", "b", "c"),
                refuse={"b": BAD, "c": (BAD, 'filesystem name "c" is taken')})
    check_eq(lookup(s.gw, ROOT, "hello.txt", fs="a")["size"], 13, "a is served")
    check(s.gw.error_code("getattr", ["b", ROOT]) != GOOD, "b is not served")
    code, status = s.stop()
    check_eq(code, 1000, "close code")
    check_eq(status, 1, "exit status when a filesystem was refused")
    log = s.provider.output()
    # The gateway's message when it says more than the code, else what the code means.
    check("b: the gateway refused the filesystem: code 1 (name already in use or mount failed)"
          in log, "refusal logged: %s" % log)
    check('c: the gateway refused the filesystem: code 1 (filesystem name "c" is taken)' in log,
          "refusal with the gateway's reason logged: %s" % log)


def test_all_refused_exits_1(ctx):
    s = Session(ctx, names=("a",), refuse={"a": FORMAT})
    code = s.gw.ws.wait_closed(TIMEOUT)
    check_eq(code, 1000, "provider closes the connection")
    check_eq(s.provider.wait(), 1, "exit status")
    check("code 5" in s.provider.output(), "error code logged")


def test_sigterm_closes_cleanly(ctx):
    s = Session(ctx)
    lookup(s.gw, ROOT, "hello.txt")
    check_eq(s.stop(signal.SIGTERM), (1000, 0), "(close code, exit status) after SIGTERM")


def test_dropped_connection_exits_1(ctx):
    s = Session(ctx)
    s.gw.ws.abort()
    check_eq(s.provider.wait(), 1, "exit status without --reconnect")
    check("connection to %s closed" % s.url in s.provider.output(), "message")


def test_gateway_close_frame_exits_1(ctx):
    s = Session(ctx)
    s.gw.ws.send_close(1001, "going away")
    check_eq(s.gw.ws.wait_closed(TIMEOUT), 1001, "provider echoes the close")
    check_eq(s.provider.wait(), 1, "exit status without --reconnect")


def test_oversized_message_closes_connection(ctx):
    s = Session(ctx)
    blob = b"{\"pad\": \"" + b"x" * (17 * MIB) + b"\"}"
    try:
        s.gw.ws.send_message(wstest.OP_TEXT, blob, fragments=17)
    except OSError:
        pass  # the provider may hang up before all of it was sent
    code = s.gw.ws.wait_closed(TIMEOUT)
    check(code in (1009, None), "close code for a message over 16 MiB: %r" % code)
    check_eq(s.provider.wait(), 1, "exit status")


def test_reconnect_attaches_again_with_stable_inodes(ctx):
    s = Session(ctx, names=("a", "b"), extra=["--reconnect"])
    first = lookup(s.gw, ROOT, "hello.txt")["inode"]
    handle = open_file(s.gw, first)
    start = time.monotonic()
    s.gw.ws.abort()  # the gateway goes away without a close frame
    gw = Gateway(s.server)
    check(time.monotonic() - start < 5, "reconnected quickly")
    gw.attach({"a": None, "b": None})
    s.gw = gw
    check_eq(lookup(gw, ROOT, "hello.txt")["inode"], first, "same inode after reconnect")
    check(gw.error_code("read", ["a", first, handle, 0, 5]) != GOOD, "old handles are gone")
    # A second drop is retried as quickly: a connection that attached resets the backoff.
    gw.ws.send_close(1001, "restart")
    gw.ws.wait_closed(TIMEOUT)
    gw.ws.abort()
    start = time.monotonic()
    gw = Gateway(s.server)
    check(time.monotonic() - start < 5, "reconnected quickly again")
    gw.attach({"a": None, "b": None})
    s.gw = gw
    check_eq(s.stop(signal.SIGTERM), (1000, 0), "clean stop with --reconnect")


def test_reconnect_retries_until_the_gateway_listens(ctx):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    provider = Provider(ctx.workdir, ["--protocol", "json", "--url", "ws://127.0.0.1:%d/" % port,
                                      "--fs", "a=" + ctx.tree, "--reconnect"])
    ctx.cleanups.append(provider.kill)
    time.sleep(1.2)  # a few refused attempts (0.5 s, then 1 s)
    check(provider.proc.poll() is None, "still running while nothing listens")
    server = wstest.Server(port=port)
    ctx.cleanups.append(server.close)
    gw = Gateway(server, timeout=TIMEOUT)
    gw.attach({"a": None})
    check_eq(gw.result("getattr", ["a", ROOT])["type"], "dir", "serving after retries")
    provider.signal(signal.SIGINT)
    check_eq(gw.ws.wait_closed(TIMEOUT), 1000, "close code")
    check_eq(provider.wait(), 0, "exit status")
    check("cannot connect" in provider.output(), "failed attempts are logged")


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
    workdir = tempfile.mkdtemp(prefix="wf-provider-test-")
    passed = failed = 0
    try:
        tree = make_tree(workdir)
        for name, fn in tests:
            ctx = Context(workdir, tree)
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
                        print("---- provider log ----\n" + provider.output()[-4000:])
            finally:
                ctx.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
