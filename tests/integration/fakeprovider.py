"""A scriptable provider that speaks webfuse's JSON protocol over a raw websocket client.

It does what the real provider never will: answer late or never, with wrong ids or types, send
malformed JSON, oversized or fragmented frames, die in the middle of a read, ask for hostile
names. By default it serves in-memory trees correctly, so a test only scripts the one thing it
wants to go wrong.

    fake = env.fake(daemon)                         # connect (subprotocol webfuse-adapter-server)
    fake.attach("docs", {"a.txt": File(b"hi"), "sub": Dir({"b": File(b"x" * 10)})})
    fake.handlers["read"] = lambda fake, msg: NO_REPLY   # from now on reads are never answered
    fake.send_raw('{"method": ')                     # malformed
    code, reason = fake.wait_close(5)

Handlers run on the fake's reader thread as handler(fake, msg) and return one of: a dict with
"result" or "error" (sent with the request's id), NO_REPLY, Raw(text[, fragments]) (sent as is),
or DEFAULT (let the in-memory tree answer).

FakeWebfuse2 does the same for the webfuse2 protocol: it serves a real directory (through
pyprovider's Provider) unless a handler for the request's type says otherwise:

    fake = FakeWebfuse2(daemon.port, "name", directory)
    fake.handlers["read"] = lambda fake, req: NO_REPLY   # req: Request (id, type, path, ...)
    fake.handlers["getattr"] = lambda fake, req: Raw(struct.pack("!IBi", req.id, 0x82, 0)[:7])

Run as a program, this file is a provider process that stalls (never answers) at a chosen
request, prints "stalled <type> <path>" and waits to be killed: the tests SIGKILL it there.

    python3 fakeprovider.py --port N --protocol webfuse2 --name NAME --path DIR \
        [--stall TYPE[:PATH[:OFFSET]]]
    python3 fakeprovider.py --port N --protocol json --name NAME --path DIR \
        [--stall METHOD[:NAME]] [--no-attach]
"""

import argparse
import base64
import json
import os
import socket
import stat
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import pyprovider  # noqa: E402
import wstest  # noqa: E402

NO_REPLY = object()
DEFAULT = object()

SUBPROTOCOL = "webfuse-adapter-server"
# A fixed mtime keeps attributes comparable: 2021-03-04 05:06:07 UTC.
DEFAULT_MTIME = 1614834367


class Raw:
    """A reply sent exactly as given (text), optionally split into `fragments` frames."""

    def __init__(self, text, fragments=1):
        self.text = text.encode("utf-8") if isinstance(text, str) else text
        self.fragments = fragments


class File:
    def __init__(self, data=b"", mode=0o644, mtime=DEFAULT_MTIME, inode=None):
        self.data = data
        self.mode = mode
        self.mtime = mtime
        self.inode = inode


class Dir:
    def __init__(self, children=None, mode=0o755, mtime=DEFAULT_MTIME, inode=None):
        self.children = dict(children or {})
        self.mode = mode
        self.mtime = mtime
        self.inode = inode


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def split(data, parts):
    """Splits bytes into `parts` non-empty pieces (as even as possible)."""
    n = len(data)
    cuts = [n * i // parts for i in range(parts + 1)]
    return [data[cuts[i]:cuts[i + 1]] for i in range(parts)]


class FakeFS:
    """An in-memory tree answering lookup/getattr/readdir/open/read."""

    def __init__(self, tree):
        self.root = tree if isinstance(tree, Dir) else Dir(_to_nodes(tree))
        self.by_inode = {}
        self.parent = {}
        self._next_inode = 2
        self._number(self.root, 1, 1)
        self.handles = {}
        self._next_handle = 100

    def _number(self, node, inode, parent):
        self.by_inode[inode] = node
        self.parent[inode] = parent
        node.inode = inode
        if isinstance(node, Dir):
            for child in node.children.values():
                self._next_inode = max(self._next_inode, (child.inode or 0) + 1)
            for child in node.children.values():
                if child.inode is None:
                    child_inode = self._next_inode
                    self._next_inode += 1
                else:
                    child_inode = child.inode
                self._number(child, child_inode, inode)

    @staticmethod
    def attributes(node):
        a = {"inode": node.inode, "mode": node.mode, "mtime": node.mtime, "atime": node.mtime,
             "ctime": node.mtime}
        if isinstance(node, Dir):
            a["type"] = "dir"
        else:
            a["type"] = "file"
            a["size"] = len(node.data)
        return a

    def answer(self, method, params):
        """The correct answer (dict with result or error) to a gateway request."""
        try:
            if method == "lookup":
                parent = self.by_inode.get(params[1])
                if not isinstance(parent, Dir) or params[2] not in parent.children:
                    return {"error": {"code": 101}}
                return {"result": self.attributes(parent.children[params[2]])}
            if method == "getattr":
                node = self.by_inode.get(params[1])
                if node is None:
                    return {"error": {"code": 101}}
                return {"result": self.attributes(node)}
            if method == "readdir":
                node = self.by_inode.get(params[1])
                if not isinstance(node, Dir):
                    return {"error": {"code": 101}}
                entries = [{"name": ".", "inode": node.inode},
                           {"name": "..", "inode": self.parent[node.inode]}]
                entries += [{"name": k, "inode": v.inode} for k, v in node.children.items()]
                return {"result": entries}
            if method == "open":
                node = self.by_inode.get(params[1])
                if not isinstance(node, File):
                    return {"error": {"code": 101}}
                handle = self._next_handle
                self._next_handle += 1
                self.handles[handle] = node
                return {"result": {"handle": handle}}
            if method == "read":
                node = self.by_inode.get(params[1])
                if not isinstance(node, File):
                    return {"error": {"code": 101}}
                offset, length = params[3], params[4]
                data = node.data[offset:offset + length]
                return {"result": {"data": base64.b64encode(data).decode(), "format": "base64",
                                   "count": len(data)}}
        except (IndexError, TypeError) as e:
            return {"error": {"code": 5, "message": "fake provider: %r" % e}}
        return {"error": {"code": 2}}


def _to_nodes(spec):
    nodes = {}
    for name, value in spec.items():
        if isinstance(value, (File, Dir)):
            nodes[name] = value
        elif isinstance(value, dict):
            nodes[name] = Dir(_to_nodes(value))
        else:
            nodes[name] = File(value)
    return nodes


class FakeProvider:
    def __init__(self, port, subprotocol=SUBPROTOCOL, path="/", fragment_replies=1, **connect):
        """`connect` goes to wstest.connect (headers, source, ssl_context, host)."""
        host = connect.pop("host", "127.0.0.1")
        self.ws, headers = wstest.connect(host, port, path, subprotocol=subprotocol,
                                          timeout=5, **connect)
        self.subprotocol = headers.get("sec-websocket-protocol")
        self._send_lock = threading.Lock()
        self.filesystems = {}
        self.handlers = {}
        self.fragment_replies = fragment_replies
        self.requests = []       # every request/notification the gateway sent (parsed)
        self.errors = []         # protocol violations by the gateway
        self.close_code = None
        self.close_reason = None
        self.got_close_frame = False
        self.closed = threading.Event()
        self._responses = {}     # id -> answers to our own requests
        self._unmatched = []     # answers to our own requests nobody waits for
        self._cond = threading.Condition()
        self._next_id = 1
        self._stop = False
        self._thread = threading.Thread(target=self._read_loop, daemon=True, name="fakeprovider")
        self._thread.start()

    # ---- receiving ---------------------------------------------------------------------------

    def _read_loop(self):
        while not self._stop:
            try:
                # Long waits: abort() wakes the read by shutting the socket down.
                kind, payload = self.ws.recv_message(timeout=30)
            except TimeoutError:
                continue
            except wstest.Closed as e:
                self.got_close_frame = not (e.code is None and e.reason == "connection dropped")
                self.close_code, self.close_reason = e.code, e.reason
                break
            except ValueError as e:
                self.errors.append("websocket protocol error from the gateway: %s" % e)
                break
            except OSError:
                break
            if kind != "text":
                self.errors.append("gateway sent a %s message" % kind)
                continue
            try:
                msg = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                self.errors.append("gateway sent invalid JSON (%s): %r" % (e, payload[:200]))
                continue
            if not isinstance(msg, dict):
                self.errors.append("gateway sent a non-object: %r" % msg)
            elif "method" in msg:
                self._on_request(msg)
            else:
                with self._cond:
                    self._responses.setdefault(msg.get("id"), []).append(msg)
                    self._cond.notify_all()
        with self._cond:
            self.closed.set()
            self._cond.notify_all()

    def _on_request(self, msg):
        method, params = msg.get("method"), msg.get("params")
        self.requests.append(msg)
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            self.errors.append("request without filesystem name: %r" % msg)
            return
        if method == "close":
            if "id" in msg:
                self.errors.append("close sent with an id: %r" % msg)
        elif not isinstance(msg.get("id"), int):
            self.errors.append("request without integer id: %r" % msg)
            return
        reply = DEFAULT
        handler = self.handlers.get(method)
        if handler is not None:
            reply = handler(self, msg)
        if reply is DEFAULT:
            if method == "close":
                return
            fs = self.filesystems.get(params[0])
            reply = fs.answer(method, params) if fs else {"error": {"code": 101}}
        self.reply(msg, reply)

    def reply(self, msg, reply):
        """Sends `reply` (see module doc) to the gateway request `msg`. Any thread."""
        if reply is NO_REPLY or reply is None:
            return
        try:
            if isinstance(reply, Raw):
                self.send_fragments(split(reply.text, reply.fragments))
            else:
                answer = dict(reply)
                answer.setdefault("id", msg.get("id"))
                text = json.dumps(answer).encode()
                self.send_fragments(split(text, min(self.fragment_replies, len(text))))
        except OSError:
            pass  # the connection is gone; the test finds out otherwise

    # ---- sending ---------------------------------------------------------------------------------

    def send_json(self, obj):
        self.send_raw(json.dumps(obj))

    def send_raw(self, text):
        """One text frame with exactly these bytes (str is UTF-8 encoded)."""
        self.send_frame(wstest.OP_TEXT, text)

    def send_fragments(self, parts, opcode=wstest.OP_TEXT):
        """One message as len(parts) frames, sent without anything in between."""
        with self._send_lock:
            for i, part in enumerate(parts):
                self.ws.send_frame(opcode if i == 0 else wstest.OP_CONT, _bytes(part),
                                   fin=i == len(parts) - 1)

    def send_frame(self, opcode, payload, fin=True):
        with self._send_lock:
            self.ws.send_frame(opcode, _bytes(payload), fin=fin)

    def new_id(self):
        with self._cond:
            i = self._next_id
            self._next_id += 1
            return i

    def wait_response(self, request_id, timeout=10.0):
        """The answer with `request_id`; raises TestFailure on timeout, WsClosed on close."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                answers = self._responses.get(request_id)
                if answers:
                    return answers.pop(0)
                if self.closed.is_set():
                    raise wstest.Closed(self.close_code, "%s (while waiting for the answer to id "
                                        "%r)" % (self.close_reason, request_id))
                left = deadline - time.monotonic()
                if left <= 0:
                    harness.fail("no answer to request id %r within %.1f s" % (request_id,
                                                                                timeout))
                self._cond.wait(left)

    def call(self, method, params, request_id=None, timeout=10.0):
        """Sends a request and returns the answer (a dict)."""
        request_id = self.new_id() if request_id is None else request_id
        self.send_json({"method": method, "params": params, "id": request_id})
        return self.wait_response(request_id, timeout)

    def add_filesystem(self, name, tree=None, request_id=None, timeout=10.0):
        """Asks for `name`; serves `tree` for it (when given). Returns the answer."""
        if tree is not None:
            self.filesystems[name] = tree if isinstance(tree, FakeFS) else FakeFS(tree)
        return self.call("add_filesystem", [name], request_id, timeout)

    def attach(self, name, tree, timeout=10.0):
        """add_filesystem that must succeed; the mount exists when the answer came."""
        answer = self.add_filesystem(name, tree, timeout=timeout)
        harness.check_equal(answer.get("result"), {"id": name},
                            "add_filesystem(%r) answer %r" % (name, answer))
        return answer

    def responses_left(self):
        with self._cond:
            return {k: v for k, v in self._responses.items() if v}

    def wait_close(self, timeout=5.0):
        """Waits until the gateway closes the connection; returns (code, reason) of its close
        frame ((None, None) when it ended without one)."""
        if not self.closed.wait(timeout):
            harness.fail("the gateway did not close the connection within %.1f s" % timeout)
        return self.close_code, self.close_reason

    def requests_of(self, method):
        return [m for m in list(self.requests) if m.get("method") == method]

    # ---- ending ----------------------------------------------------------------------------------

    def abort(self, reset=False):
        """Dies like a killed process: the TCP connection ends without a close frame (with a
        TCP reset when `reset`)."""
        self._stop = True
        sock = self.ws.sock
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the reader; close() then resets
            else:
                sock.shutdown(socket.SHUT_RDWR)  # also wakes the reader thread
        except OSError:
            pass
        self.ws.abort()
        self._thread.join(5)

    def close(self, code=1000, timeout=5.0):
        """Closes politely and waits (bounded) for the gateway's close answer."""
        try:
            with self._send_lock:
                self.ws.send_close(code)
        except OSError:
            pass
        self.closed.wait(timeout)
        self.abort()


def tree_from_directory(path):
    """A Dir mirroring a real directory (contents read into memory)."""
    st = os.stat(path)
    children = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        s = os.lstat(full)
        if stat.S_ISDIR(s.st_mode):
            children[name] = tree_from_directory(full)
        elif stat.S_ISREG(s.st_mode):
            with open(full, "rb") as f:
                children[name] = File(f.read(), stat.S_IMODE(s.st_mode), int(s.st_mtime))
    return Dir(children, stat.S_IMODE(st.st_mode), int(st.st_mtime))


# ---- webfuse2 ---------------------------------------------------------------------------------

WF2_TYPES = {v: k for k, v in pyprovider.NAMES.items()}
WF2_RESPONSE = 0x80


class Request:
    """A webfuse2 request as the fake received it: id, type (name), path, and for read and
    write, size, offset (and data); `raw` is the whole message."""

    def __init__(self, raw):
        self.raw = raw
        self.id, code = struct.unpack("!IB", raw[:5])
        self.code = code
        self.type = pyprovider.NAMES.get(code, hex(code))
        self.path = self.size = self.offset = None
        r = pyprovider.Reader(raw)
        try:
            if self.type not in ("symlink", "getcreds"):
                self.path = r.str()
            if self.type == "read":
                self.size, self.offset = r.u32(), r.u64()
            elif self.type == "write":
                data = r.bytes()
                self.size, self.offset = len(data), r.u64()
        except ValueError:
            pass

    def answer(self, result, rest=b"", code=None):
        """A response with this request's id: type (default: this one's), result, fields."""
        return struct.pack("!IBi", self.id, WF2_RESPONSE | (self.code if code is None else code),
                           result) + rest


class FakeWebfuse2:
    """A webfuse2 provider in this process: connects to ws://127.0.0.1:PORT/NAME and serves
    `root` correctly, except where self.handlers[type name](fake, Request) returns NO_REPLY,
    Raw(bytes[, fragments]) or bytes (sent as one message); DEFAULT serves it."""

    def __init__(self, port, name, root, read_only=False):
        self.ws, _ = wstest.connect("127.0.0.1", port, "/" + name, subprotocol="webfuse2",
                                    timeout=5)
        self.provider = pyprovider.Provider(root, read_only)
        self.handlers = {}
        self.requests = []
        self.closed = threading.Event()
        self.close_code = self.close_reason = None
        self._stop = False
        self._thread = threading.Thread(target=self._read_loop, daemon=True, name="fakewf2")
        self._thread.start()

    def _read_loop(self):
        while not self._stop:
            try:
                kind, msg = self.ws.recv_message(timeout=30)
            except TimeoutError:
                continue
            except wstest.Closed as e:
                self.close_code, self.close_reason = e.code, e.reason
                break
            except (OSError, ValueError):
                break
            if kind != "binary" or len(msg) < 5:
                continue
            req = Request(msg)
            self.requests.append(req)
            handler = self.handlers.get(req.type)
            reply = handler(self, req) if handler else DEFAULT
            self.reply(req, reply)
        self.closed.set()

    def reply(self, req, reply):
        if reply is NO_REPLY or reply is None:
            return
        if reply is DEFAULT:
            reply = self.provider.answer(req.raw)
            if reply is None:
                return
        parts = [reply]
        if isinstance(reply, Raw):
            parts = split(reply.text, reply.fragments)
        try:
            for i, part in enumerate(parts):
                self.ws.send_frame(wstest.OP_BINARY if i == 0 else wstest.OP_CONT, part,
                                   fin=i == len(parts) - 1)
        except OSError:
            pass

    def requests_of(self, type_name):
        return [r for r in list(self.requests) if r.type == type_name]

    def abort(self):
        """Dies like a killed process: the connection ends without a close frame."""
        self._stop = True
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.abort()
        self._thread.join(5)


# ---- as a program: a provider that stalls, to be killed there ---------------------------------


def _stall_matcher(spec):
    """TYPE[:PATH[:OFFSET]] -> fn(type, path or name, offset) telling whether to stall."""
    if not spec:
        return lambda *args: False
    parts = spec.split(":")
    kind = parts[0]
    where = parts[1] if len(parts) > 1 and parts[1] else None
    offset = int(parts[2]) if len(parts) > 2 else 0

    def match(t, path, off):
        return t == kind and (where is None or path == where) and (off or 0) >= offset
    return match


def _announce(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _stall_forever():
    while True:
        time.sleep(3600)


def _main_webfuse2(args, stall):
    fake = FakeWebfuse2(args.port, args.name, args.path)

    def handler(f, req):
        if stall(req.type, req.path, req.offset):
            _announce("stalled %s %s" % (req.type, req.path))
            return NO_REPLY
        return DEFAULT

    for t in pyprovider.NAMES.values():
        fake.handlers[t] = handler
    _announce("connected")
    fake.closed.wait()


def _main_json(args, stall):
    fake = FakeProvider(args.port)
    fs = FakeFS(tree_from_directory(args.path))
    inode_names = {}
    for name, node in fs.root.children.items():
        inode_names[node.inode] = name

    def handler(f, msg):
        params = msg["params"]
        name = params[2] if msg["method"] == "lookup" else inode_names.get(params[1], "/")
        offset = params[3] if msg["method"] == "read" else 0
        if stall(msg["method"], name, offset):
            _announce("stalled %s %s" % (msg["method"], name))
            return NO_REPLY
        return DEFAULT

    for method in ("lookup", "getattr", "readdir", "open", "read"):
        fake.handlers[method] = handler
    _announce("connected")
    if not args.no_attach:
        fake.filesystems[args.name] = fs
        fake.send_json({"method": "add_filesystem", "params": [args.name], "id": fake.new_id()})
        _announce("attaching")
    fake.closed.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", choices=("json", "webfuse2"), default="webfuse2")
    ap.add_argument("--name", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--stall", default="")
    ap.add_argument("--no-attach", action="store_true")
    args = ap.parse_args()
    stall = _stall_matcher(args.stall)
    if args.protocol == "json":
        _main_json(args, stall)
    else:
        _main_webfuse2(args, stall)


if __name__ == "__main__":
    main()
