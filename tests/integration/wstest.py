"""Minimal RFC 6455 websocket helpers for the integration tests (Python stdlib only).

Both ends are here so tests can play the gateway (Server) or a provider (connect):

    server = Server()                          # listens on 127.0.0.1, free port: server.port
    ws, request = server.accept(timeout=10, subprotocols=["webfuse-adapter-server"])
    ws.send_text('{"method": ...}')            # one frame; fragments=3 splits it into three
    kind, data = ws.recv_message(timeout=10)   # "text" or "binary", reassembled; pings answered
    ws.close(1000)                             # close frame, wait for the answer, close socket

    ws, response = connect("127.0.0.1", port, "/", subprotocol="webfuse-adapter-server")

Every wait takes a timeout in seconds and raises TimeoutError when it passes; a send that the peer
does not take within send_timeout (30 s) raises socket.timeout. A close frame from the peer raises
Closed (with .code and .reason) after it was answered with a close frame; a connection that ends
without one raises Closed(None, "connection dropped"). One thread may receive while others send:
sends are serialised by a lock, so a pong never lands inside another frame.
Messages are bounded by max_message (default 64 MiB). Clients mask their frames, servers do not,
as the RFC requires; received frames are unmasked whichever side sent them. Sockets use
TCP_NODELAY so that small frames sent back to back are not held back by Nagle's algorithm.
"""

import base64
import hashlib
import os
import select
import socket
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer sent a close frame (code None when it carried no status) or dropped the socket."""

    def __init__(self, code=None, reason=""):
        super().__init__("websocket closed: code %s %s" % (code, reason))
        self.code = code
        self.reason = reason


def accept_key(key):
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _deadline(timeout):
    return time.monotonic() + timeout


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("websocket wait timed out")
    return left


def _read_http_head(sock, deadline, limit=65536):
    """Reads up to the blank line; returns (first line, {lower-case header: value}, rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > limit:
            raise ValueError("HTTP head too large")
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(4096)
        if not chunk:
            raise Closed(None, "connection closed during the handshake")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


class WebSocket:
    """One websocket connection over a connected socket (after the handshake)."""

    def __init__(self, sock, is_client, pending=b"", max_message=64 << 20, send_timeout=30):
        self.sock = sock
        self.is_client = is_client
        self.buffer = pending
        self.max_message = max_message
        self.close_sent = False
        self.send_lock = threading.Lock()
        # The socket timeout bounds sends only; receives wait in select() for their own
        # deadline, so a receiving thread never shortens a concurrent send's timeout.
        sock.settimeout(send_timeout)

    # -- sending ------------------------------------------------------------------------------

    def send_frame(self, opcode, payload, fin=True):
        """Sends one frame; clients mask it."""
        data = self.encode_frame(opcode, payload, fin)
        with self.send_lock:
            self.sock.sendall(data)

    def encode_frame(self, opcode, payload, fin=True):
        """The bytes of one frame as send_frame would send them (masked by a client)."""
        header = bytes([(0x80 if fin else 0) | opcode])
        mask_bit = 0x80 if self.is_client else 0
        n = len(payload)
        if n < 126:
            header += bytes([mask_bit | n])
        elif n < 65536:
            header += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            header += bytes([mask_bit | 127]) + struct.pack("!Q", n)
        if self.is_client:
            mask = os.urandom(4)
            header += mask
            payload = _apply_mask(payload, mask)
        return header + payload

    def send_message(self, opcode, payload, fragments=1):
        """Sends a text or binary message, split into `fragments` frames (at least one byte each
        where the payload allows)."""
        fragments = max(1, min(fragments, max(1, len(payload))))
        step = -(-len(payload) // fragments) if payload else 0
        pieces = [payload[i:i + step] for i in range(0, len(payload), step)] if step else [b""]
        for i, piece in enumerate(pieces):
            self.send_frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)

    def send_text(self, text, fragments=1):
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.send_message(OP_TEXT, data, fragments)

    def send_binary(self, data, fragments=1):
        self.send_message(OP_BINARY, data, fragments)

    def send_close(self, code=1000, reason=""):
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
        self.send_frame(OP_CLOSE, payload)
        self.close_sent = True

    # -- receiving ----------------------------------------------------------------------------

    def _read_exact(self, n, deadline):
        while len(self.buffer) < n:
            left = _remaining(deadline)
            try:
                # TLS may hold decrypted bytes that select() cannot see.
                pending = getattr(self.sock, "pending", None)
                if pending is not None and pending() > 0:
                    readable = True
                else:
                    readable, _, _ = select.select([self.sock], [], [], left)
                chunk = self.sock.recv(max(65536, n - len(self.buffer))) if readable else None
            except (OSError, ValueError):  # reset, or closed by another thread (fd -1)
                chunk = b""
            if chunk is None:
                raise TimeoutError("websocket wait timed out")
            if not chunk:
                raise Closed(None, "connection dropped")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self, timeout=10):
        """Returns (fin, opcode, payload) of the next frame, unmasked."""
        deadline = _deadline(timeout)
        b0, b1 = self._read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        if n > self.max_message:
            raise ValueError("frame of %d bytes exceeds the limit" % n)
        mask = self._read_exact(4, deadline) if b1 & 0x80 else None
        payload = self._read_exact(n, deadline)
        if mask:
            payload = _apply_mask(payload, mask)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_message(self, timeout=10):
        """Returns ("text" | "binary", bytes) of the next whole message. Pings are answered with
        pongs; a close frame is answered and raises Closed."""
        deadline = _deadline(timeout)
        kind, parts, size = None, [], 0
        while True:
            fin, opcode, payload = self.recv_frame(_remaining(deadline))
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode("utf-8", "replace")
                if not self.close_sent:
                    try:
                        self.send_close(code if code is not None else 1000)
                    except OSError:
                        pass
                raise Closed(code, reason)
            if opcode in (OP_TEXT, OP_BINARY):
                if kind is not None:
                    raise ValueError("new message inside a fragmented one")
                kind = "text" if opcode == OP_TEXT else "binary"
            elif opcode != OP_CONT or kind is None:
                raise ValueError("unexpected opcode %d" % opcode)
            size += len(payload)
            if size > self.max_message:
                raise ValueError("message exceeds the limit")
            parts.append(payload)
            if fin:
                return kind, b"".join(parts)

    def wait_closed(self, timeout=10):
        """Reads until the peer's close frame (returns its code) or until the socket drops
        (returns None); messages received meanwhile are discarded."""
        return self.close_frame(timeout)[0]

    def close_frame(self, timeout=5):
        """Reads messages until the peer closes; returns (code, reason) of its close frame, or
        (None, "connection dropped")."""
        deadline = _deadline(timeout)
        try:
            while True:
                self.recv_message(_remaining(deadline))
        except Closed as closed:
            return closed.code, closed.reason

    def close(self, code=1000, timeout=5):
        """Sends a close frame, waits for the peer's (bounded), closes the socket."""
        try:
            if not self.close_sent:
                self.send_close(code)
            self.wait_closed(timeout)
        except (OSError, TimeoutError, ValueError):
            pass
        self.abort()

    def abort(self):
        """Drops the TCP connection without a close frame."""
        try:
            self.sock.close()
        except OSError:
            pass


def _apply_mask(payload, mask):
    if not payload:
        return payload
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class Server:
    """A listening socket on 127.0.0.1 (free port unless given) that accepts websocket
    handshakes."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def accept(self, timeout=10, subprotocols=None, path=None):
        """Accepts one connection and completes the handshake. The first of the client's
        requested subprotocols that is in `subprotocols` is selected (none when the list is
        None or nothing matches). Returns (WebSocket, request) where request is a dict with
        "path", "headers" and "subprotocols" (as the client asked, in order)."""
        deadline = _deadline(timeout)
        self.sock.settimeout(_remaining(deadline))
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            raise TimeoutError("no connection within %s s" % timeout) from None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            line, headers, rest = _read_http_head(conn, deadline)
            method, target, _ = line.split(" ", 2)
            if method != "GET" or "sec-websocket-key" not in headers:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                raise ValueError("not a websocket handshake: %r" % line)
            if path is not None and target != path:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                raise ValueError("unexpected path %r" % target)
            offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")
                       if p.strip()]
            chosen = next((p for p in offered if subprotocols and p in subprotocols), None)
            response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                        % accept_key(headers["sec-websocket-key"]))
            if chosen:
                response += "Sec-WebSocket-Protocol: %s\r\n" % chosen
            conn.sendall((response + "\r\n").encode("latin-1"))
        except BaseException:
            conn.close()
            raise
        request = {"path": target, "headers": headers, "subprotocols": offered}
        return WebSocket(conn, is_client=False, pending=rest), request

    def close(self):
        self.sock.close()


def connect(host, port, path="/", subprotocol=None, timeout=10, headers=None, source=None,
            ssl_context=None):
    """Opens a client websocket. Returns (WebSocket, {lower-case header: value}) of the
    server's 101 response; raises ValueError when the server refuses the upgrade. `headers` are
    extra request headers ({name: value}); `source` is the local address to connect from;
    `ssl_context` (an ssl.SSLContext) makes it wss://, with `host` as the server name."""
    deadline = _deadline(timeout)
    sock = socket.create_connection((host, port), timeout=_remaining(deadline),
                                    source_address=(source, 0) if source else None)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   % (path, host, port, key))
        if subprotocol:
            request += "Sec-WebSocket-Protocol: %s\r\n" % subprotocol
        for name, value in (headers or {}).items():
            request += "%s: %s\r\n" % (name, value)
        sock.sendall((request + "\r\n").encode("latin-1"))
        line, headers, rest = _read_http_head(sock, deadline)
        if line.split(" ")[1:2] != ["101"]:
            raise ValueError("upgrade refused: %r" % line)
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise ValueError("bad Sec-WebSocket-Accept")
    except BaseException:
        sock.close()
        raise
    return WebSocket(sock, is_client=True, pending=rest), headers
