#!/usr/bin/env python3
"""The admin REST API over real HTTP (issue 4): the token check, every endpoint, every error
status, remote detach and disconnect as providers see them, /metrics in Prometheus text.

Each test runs its own webfused with the admin API on a free port, its token file and registry
database in the test's directory."""

import errno
import json
import mmap
import os
import re
import socket
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402
from fakeprovider import NO_REPLY, DEFAULT, FakeWebfuse2, File  # noqa: E402

suite = harness.Suite("test_admin_api")
suite.needs_provider = True

MIB = 1024 * 1024
DATA = {}
SESSION_FIELDS = {"id", "run", "state", "remote", "protocol", "user", "connected_since",
                  "requests", "bytes_in", "bytes_out", "filesystems"}
FS_FIELDS = {"name", "mountpoint", "session", "protocol", "state", "mounted_since", "open_files",
             "requests", "bytes_read", "bytes_written"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@suite.setup
def make_data(suite_dir):
    DATA["src"] = os.path.join(suite_dir, "src")
    os.makedirs(os.path.join(DATA["src"], "d"))
    DATA["blob"] = os.urandom(3 * MIB + 5)
    with open(os.path.join(DATA["src"], "blob"), "wb") as f:
        f.write(DATA["blob"])
    with open(os.path.join(DATA["src"], "d", "small"), "wb") as f:
        f.write(b"small\n")


def error_of(r, status, what):
    """Checks an error answer: the status and a JSON body {"error": "..."}."""
    check_equal(r.status, status, "%s: status (body %r)" % (what, r.body))
    check(isinstance(r.json, dict) and isinstance(r.json.get("error"), str) and r.json["error"],
          "%s: the body is not {\"error\": \"...\"}: %r" % (what, r.body))
    check(r.headers.get("content-type", "").startswith("application/json"),
          "%s: content type %r" % (what, r.headers.get("content-type")))
    return r.json["error"]


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def raw_request(port, data, timeout=5.0):
    """Sends raw bytes, returns everything the daemon answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


# ---- the token ----------------------------------------------------------------------------------


@suite.test
def healthz_needs_no_token_everything_else_does(env):
    daemon = env.start_daemon()
    r = daemon.api("GET", "/healthz", token=None)
    check_equal((r.status, r.json), (200, {"status": "ok"}), "GET /healthz without a token")
    r = daemon.api("HEAD", "/healthz", token=None)
    check_equal((r.status, r.body), (200, b""), "HEAD /healthz (monitors use it)")
    guarded = [("GET", "/metrics"), ("GET", "/api/v1/sessions"), ("GET", "/api/v1/sessions/1"),
               ("DELETE", "/api/v1/sessions/1"), ("GET", "/api/v1/filesystems"),
               ("GET", "/api/v1/filesystems/x"), ("DELETE", "/api/v1/filesystems/x"),
               ("GET", "/api/v1/events"), ("GET", "/api/v1/nothing-here")]
    right = daemon.token()
    wrong_tokens = [right[:-1], right + "x", right.upper() if right != right.upper() else "x",
                    "", "x" * 300]
    failures = 0
    for method, path in guarded:
        r = daemon.api(method, path, token=None)
        error_of(r, 401, "%s %s without a token" % (method, path))
        check(r.headers.get("www-authenticate", "").startswith("Bearer"),
              "401 without WWW-Authenticate: Bearer (%r)" % r.headers)
        failures += 1
        for wrong in wrong_tokens:
            error_of(daemon.api(method, path, token=wrong), 401,
                     "%s %s with a wrong token" % (method, path))
            failures += 1
        r = daemon.api(method, path, headers={"Authorization": "Basic " + right}, token=None)
        error_of(r, 401, "%s %s with Basic instead of Bearer" % (method, path))
        failures += 1
        r = daemon.api(method, path)
        check(r.status != 401, "%s %s with the right token: 401" % (method, path))
    r = daemon.api("GET", "/api/v1/sessions", headers={"Authorization": "bearer " + right},
                   token=None)
    check_equal(r.status, 200, "the scheme name is case-insensitive")
    metrics = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    check_equal(metrics.get(("webfuse_admin_auth_failures_total", ())), failures,
                "webfuse_admin_auth_failures_total")
    events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    refused = [e for e in events if e["kind"] == "admin_auth_failed"]
    check_equal(len(refused), failures, "admin_auth_failed events")


@suite.test
def a_flood_of_bad_tokens_keeps_the_history_and_the_log(env):
    """Anyone who reaches the admin port can send bad tokens as fast as they like: every one
    is counted, but they must not push the sessions' events out of the history (which keeps
    the newest 1,000 refusals apart) nor fill the log (one line a second at most)."""
    import sqlite3
    daemon = env.start_daemon()
    count, batch = 2500, 100
    request = (b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer wrong\r\n\r\n")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.admin_port), timeout=30) as sock:
        answers = b""
        for sent in range(batch, count + 1, batch):
            sock.sendall(request * batch)
            while answers.count(b"HTTP/1.1 401 ") < sent:
                chunk = sock.recv(1 << 16)
                check(chunk, "the admin port closed the connection during the flood")
                answers += chunk
    elapsed = time.monotonic() - started

    def written():
        metrics = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
        queue = metrics.get(("webfuse_registry_queue_length", ()))
        return metrics if queue == 0 else None

    metrics = harness.wait_until(written, 30, what="the registry to write everything")
    check_equal(metrics.get(("webfuse_admin_auth_failures_total", ())), count,
                "every refusal counted")
    with sqlite3.connect(daemon.db) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind"))
    check(kinds.get("admin_auth_failed", 0) <= 2000, "refusals kept: %r" % kinds)
    with open(daemon.log_path) as f:
        lines = [line for line in f if "wrong admin token" in line]
    check(1 <= len(lines) <= elapsed + 2, "%d log lines about bad tokens in %.1f s"
          % (len(lines), elapsed))
    check("more refused, not logged" in "".join(lines) or len(lines) == 1,
          "the log says how many it left out: %r" % lines[-3:])


@suite.test
def token_file_is_created_with_mode_0600_and_kept(env):
    token_file = env.path("state", "deeper", "token")
    daemon = env.start_daemon(token_file=token_file)
    st = os.stat(token_file)
    check_equal(stat.S_IMODE(st.st_mode), 0o600, "mode of the created token file")
    token = daemon.token()
    check(re.fullmatch(r"[0-9a-f]{64}", token) is not None, "token %r is not 64 hex digits"
          % token)
    daemon.stop()
    check_equal(daemon.returncode(), 0, "exit status after SIGTERM")
    again = env.start_daemon(token_file=token_file)
    check_equal(again.token(), token, "the token after a restart")
    check_equal(again.api("GET", "/api/v1/sessions").status, 200, "request with the kept token")
    # A token file an operator wrote is used as it is.
    own = env.path("own-token")
    with open(own, "w") as f:
        f.write("  my-own-secret-token\n")
    os.chmod(own, 0o600)
    third = env.start_daemon(token_file=own)
    check_equal(third.api("GET", "/api/v1/sessions", token="my-own-secret-token").status, 200,
                "request with the operator's token")
    error_of(third.api("GET", "/api/v1/sessions", token=token), 401, "the other daemon's token")


# ---- live state ---------------------------------------------------------------------------------


@suite.test
def sessions_and_filesystems_of_a_live_provider(env):
    daemon = env.start_daemon()
    env.start_provider(daemon, [("alpha", DATA["src"]), ("beta", DATA["src"])])
    blob = os.path.join(daemon.mount_path("alpha"), "blob")
    check(read_all(blob) == DATA["blob"], "contents through alpha differ")

    body = daemon.api_ok("GET", "/api/v1/sessions")
    check_equal(body["total"], 1, "total")
    check_equal(len(body["sessions"]), 1, "sessions listed")
    s = body["sessions"][0]
    check_equal(set(s), SESSION_FIELDS, "fields of a session")
    check_equal((s["state"], s["protocol"]), ("active", "json"), "state and protocol")
    check(s["remote"].endswith("127.0.0.1"), "remote %r" % s["remote"])
    check(ISO_UTC.match(s["connected_since"]) is not None, "connected_since %r"
          % s["connected_since"])
    check(s["requests"] > 0 and s["bytes_in"] > len(DATA["blob"]) and s["bytes_out"] > 0,
          "counters of a session that served 3 MiB: %r" % s)
    check_equal(sorted(f["name"] for f in s["filesystems"]), ["alpha", "beta"], "its filesystems")

    one = daemon.api_ok("GET", "/api/v1/sessions/%d" % s["id"])
    check_equal((one["id"], set(one)), (s["id"], SESSION_FIELDS), "GET /sessions/{id}")

    listing = daemon.api_ok("GET", "/api/v1/filesystems")
    check_equal(listing["total"], 2, "filesystems total")
    by_name = {f["name"]: f for f in listing["filesystems"]}
    check_equal(sorted(by_name), ["alpha", "beta"], "filesystems listed")
    alpha = by_name["alpha"]
    check_equal(set(alpha), FS_FIELDS, "fields of a filesystem")
    check_equal((alpha["mountpoint"], alpha["session"], alpha["protocol"], alpha["state"]),
                (daemon.mount_path("alpha"), s["id"], "json", "mounted"), "alpha")
    check(alpha["bytes_read"] >= len(DATA["blob"]), "alpha bytes_read %d" % alpha["bytes_read"])
    check_equal(by_name["beta"]["bytes_read"], 0, "beta bytes_read")
    check(ISO_UTC.match(alpha["mounted_since"]) is not None, "mounted_since %r"
          % alpha["mounted_since"])

    with open(os.path.join(daemon.mount_path("beta"), "d", "small"), "rb") as held:
        held.read()
        beta = daemon.api_ok("GET", "/api/v1/filesystems/beta")
        check_equal(beta["open_files"], 1, "open_files of beta while a file is open")
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/filesystems/beta")["open_files"] == 0,
                       5, what="open_files of beta to drop to 0 after close")

    kinds = [(e["kind"], e["filesystem"]) for e in
             daemon.api_ok("GET", "/api/v1/events")["events"]]
    for wanted in [("connect", None), ("attach", "alpha"), ("attach", "beta")]:
        check(wanted in kinds, "event %r missing from %r" % (wanted, kinds))


@suite.test
def metrics_in_prometheus_text(env):
    daemon = env.start_daemon()
    env.start_provider(daemon, [("m1", DATA["src"]), ("m2", DATA["src"])])
    check(read_all(os.path.join(daemon.mount_path("m1"), "blob")) == DATA["blob"], "contents")
    r = daemon.api("GET", "/metrics")
    check_equal(r.status, 200, "status")
    check(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "content type %r" % r.headers.get("content-type"))
    text = r.body.decode()
    m = harness.parse_metrics(text)
    check_equal(m[("webfuse_sessions_active", ())], 1, "webfuse_sessions_active")
    check_equal(m[("webfuse_filesystems_mounted", ())], 2, "webfuse_filesystems_mounted")
    check(m[("webfuse_bytes_read_total", ())] >= len(DATA["blob"]), "webfuse_bytes_read_total")
    check_equal(m[("webfuse_bytes_written_total", ())], 0, "webfuse_bytes_written_total")
    reads = m[("webfuse_requests_total", (("op", "read"), ("protocol", "json")))]
    check(reads >= 3, "read requests counted: %r" % reads)
    check((("webfuse_request_errors_total", (("op", "read"), ("protocol", "json")))) in m,
          "webfuse_request_errors_total{protocol=json,op=read} missing")
    buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in m.items()
                      if name == "webfuse_request_duration_seconds_bucket"))
    check(len(buckets) >= 2 and buckets[-1][0] == float("inf"), "histogram buckets %r" % buckets)
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), "buckets are not cumulative: %r" % counts)
    check_equal(counts[-1], m[("webfuse_request_duration_seconds_count", ())],
                "+Inf bucket vs _count")
    check(m[("webfuse_request_duration_seconds_count", ())] >= reads, "latency count")
    for family in ("webfuse_sessions_active", "webfuse_requests_total",
                   "webfuse_request_duration_seconds"):
        check("# TYPE %s " % family in text, "no TYPE line for %s" % family)


# ---- errors -------------------------------------------------------------------------------------


@suite.test
def every_error_status(env):
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("here", {"a": File(b"a")})
    cases = [
        (404, "GET", "/", None), (404, "GET", "/api/v1/nothing", None),
        (404, "GET", "/api/v2/sessions", None), (404, "GET", "/api/v1/sessions/1/more", None),
        (404, "GET", "/api/v1/sessions/", None),
        (404, "GET", "/api/v1/sessions/999", None), (404, "DELETE", "/api/v1/sessions/999", None),
        (404, "GET", "/api/v1/filesystems/absent", None),
        (404, "DELETE", "/api/v1/filesystems/absent", None),
        (400, "GET", "/api/v1/sessions/abc", None), (400, "GET", "/api/v1/sessions/0", None),
        (400, "GET", "/api/v1/sessions/-3", None),
        (400, "DELETE", "/api/v1/sessions/99999999999999999999999", None),
        (400, "GET", "/api/v1/filesystems/bad@name", None),
        (400, "GET", "/api/v1/filesystems/" + "n" * 65, None),
        (400, "GET", "/api/v1/sessions?state=bogus", None),
        (400, "GET", "/api/v1/sessions?limit=0", None),
        (400, "GET", "/api/v1/sessions?limit=1001", None),
        (400, "GET", "/api/v1/sessions?limit=ten", None),
        (400, "GET", "/api/v1/sessions?offset=-1", None),
        (400, "GET", "/api/v1/sessions?unknown=1", None),
        (400, "GET", "/api/v1/sessions?state=all&state=all", None),
        (400, "GET", "/api/v1/events?since=x", None), (400, "GET", "/api/v1/events?limit=0", None),
        (400, "GET", "/metrics?x=1", None), (400, "GET", "/api/v1/filesystems?x=1", None),
        (400, "DELETE", "/api/v1/filesystems/here", b"not json"),
        (400, "DELETE", "/api/v1/filesystems/here", b"[1, 2]"),
        (400, "DELETE", "/api/v1/filesystems/here", {"reason": 5}),
        (400, "DELETE", "/api/v1/filesystems/here", {"reason": ""}),
        (400, "DELETE", "/api/v1/filesystems/here", {"reason": "x" * 121}),
        (400, "DELETE", "/api/v1/filesystems/here", {"why": "x"}),
        (413, "DELETE", "/api/v1/filesystems/here", b"{" + b" " * 9000 + b"}"),
    ]
    for status, method, path, body in cases:
        error_of(daemon.api(method, path, body=body), status,
                 "%s %s%s" % (method, path, " with a body" if body is not None else ""))
    allowed = [("POST", "/api/v1/sessions", "GET"), ("PUT", "/api/v1/sessions/1", "GET, DELETE"),
               ("PATCH", "/api/v1/filesystems/here", "GET, DELETE"),
               ("POST", "/api/v1/filesystems", "GET"), ("DELETE", "/api/v1/events", "GET"),
               ("DELETE", "/metrics", "GET"), ("POST", "/healthz", "GET, HEAD")]
    for method, path, allow in allowed:
        r = daemon.api(method, path, token=None if path == "/healthz" else True,
                       body=b"{}" if method != "DELETE" else None)
        error_of(r, 405, "%s %s" % (method, path))
        check_equal(r.headers.get("allow"), allow, "Allow header of %s %s" % (method, path))
    # A huge body is refused from its Content-Length alone, before it is sent.
    out = raw_request(daemon.admin_port, (
        "DELETE /api/v1/sessions/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        "Content-Length: %d\r\n\r\n" % (daemon.token(), 3 * MIB)).encode())
    check(out.startswith(b"HTTP/1.1 413 "), "a 3 MiB Content-Length: %r" % out[:200])
    out = raw_request(daemon.admin_port, (
        "DELETE /api/v1/sessions/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        % daemon.token()).encode())
    check(out.startswith(b"HTTP/1.1 411 "), "a chunked body: %r" % out[:200])
    # A Content-Length longer than any length needs (31 digits, leading zeros): libwebsockets
    # reads no body for it, so the request hung until the client's timeout.
    for value in ("0" * 29 + "02", "1" * 40):
        out = raw_request(daemon.admin_port, (
            "DELETE /api/v1/filesystems/here HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Length: %s\r\n\r\n{}" % (daemon.token(), value)).encode(), timeout=5)
        check(out.startswith(b"HTTP/1.1 400 "), "Content-Length of %d digits: %r"
              % (len(value), out[:200]))
    # Nothing of that touched the filesystem, and the daemon still answers.
    check_equal([f["name"] for f in daemon.api_ok("GET", "/api/v1/filesystems")["filesystems"]],
                ["here"], "filesystems after the bad requests")
    out = raw_request(daemon.admin_port, b"GARBAGE\r\n\r\n")
    check(not out.startswith(b"HTTP/1.1 2"), "garbage request answered with success: %r" % out)
    check_equal(daemon.api("GET", "/healthz", token=None).status, 200, "healthz after garbage")
    check(daemon.alive(), "webfused died")


def delete_twice_at_once(daemon, path):
    """Two DELETEs of `path` on two connections, their last bytes sent back to back: the second
    finds the first's detach or disconnect still under way. Returns the sorted statuses."""
    request = ("DELETE %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Connection: close\r\n\r\n" % (path, daemon.token())).encode()
    socks = [socket.create_connection(("127.0.0.1", daemon.admin_port), timeout=5)
             for _ in range(2)]
    try:
        for s in socks:
            s.sendall(request[:-1])
        time.sleep(0.05)
        for s in socks:
            s.send(request[-1:])
        statuses = []
        for s in socks:
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            statuses.append(int(out.split(b" ")[1]))
        return sorted(statuses)
    finally:
        for s in socks:
            s.close()


@suite.test
def detaching_or_disconnecting_twice_is_409(env):
    daemon = env.start_daemon()
    seen = {"fs": set(), "session": set()}
    for i in range(20):
        fake = env.fake(daemon)
        fake.attach("twice%d" % i, {"a": File(b"a")})
        sid = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][-1]["id"]
        for what, path in (("fs", "/api/v1/filesystems/twice%d" % i),
                           ("session", "/api/v1/sessions/%d" % sid)):
            statuses = delete_twice_at_once(daemon, path)
            check(statuses in ([202, 404], [202, 409]),
                  "two DELETE %s at once answered %r (one 202, then 409 or 404)"
                  % (path, statuses))
            seen[what].add(statuses[1])
        fake.abort()
        if 409 in seen["fs"] and 409 in seen["session"]:
            break
    check(409 in seen["fs"], "a second detach while the first was under way never got 409")
    check(409 in seen["session"],
          "a second disconnect while the first was under way never got 409")


# ---- steering -----------------------------------------------------------------------------------


@suite.test
def detach_fails_pending_reads_with_eio_and_json_session_stays(env):
    daemon = env.start_daemon(timeout=30)
    fake = env.fake(daemon)
    fake.attach("cut", {"f": File(os.urandom(4096))})
    fake.attach("kept", {"g": File(b"still here\n")})
    stuck = []

    def read(f, msg):
        if msg["params"][0] == "cut":
            stuck.append(msg["id"])
            return NO_REPLY
        return DEFAULT

    fake.handlers["read"] = read
    box = {}

    def reader():
        # O_DIRECT: one read request, straight to the provider. Through the page cache, a failed
        # readahead makes the kernel try the page again with a new request, which can meet the
        # connection already aborted by the unmount (ENOTCONN) instead of the EIO under test.
        # The read's own error is what counts: closing afterwards sends a flush that fails with
        # ENOTCONN once the connection is aborted, and must not hide it.
        try:
            fd = os.open(os.path.join(daemon.mount_path("cut"), "f"), os.O_RDONLY | os.O_DIRECT)
        except OSError as e:
            box["error"] = e
            return
        try:
            box["data"] = os.preadv(fd, [mmap.mmap(-1, 4096)], 0)
        except OSError as e:
            box["error"] = e
        try:
            os.close(fd)
        except OSError:
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    harness.wait_until(lambda: stuck, 10, what="a read of cut waiting at the provider")
    r = daemon.api("DELETE", "/api/v1/filesystems/cut", body={"reason": "maintenance"})
    check_equal(r.status, 202, "DELETE status (%r)" % r.body)
    check_equal(r.json, {"name": "cut", "session": r.json.get("session"), "state": "detaching",
                         "reason": "maintenance"}, "DELETE answer")
    t.join(5)
    check(not t.is_alive(), "the reader still hangs 5 s after the detach")
    check("error" in box, "the read succeeded after the detach: %r" % box.keys())
    check_equal(box["error"].errno, errno.EIO, "errno of the pending read (%s)" % box["error"])
    harness.wait_unmounted(daemon.mount_path("cut"), 5)
    harness.wait_until(lambda: fake.requests_of("filesystem_detached"), 5,
                       what="the provider to be told (filesystem_detached)")
    check_equal(fake.requests_of("filesystem_detached")[0].get("params"), ["cut"],
                "filesystem_detached params")
    check(not fake.closed.is_set(), "the JSON session was closed by a detach")
    check_equal(read_all(os.path.join(daemon.mount_path("kept"), "g")), b"still here\n",
                "the other filesystem of the session")
    # The name leaves the mount table first; the filesystem is gone once its worker ended.
    harness.wait_until(lambda: [f["name"] for f in daemon.api_ok("GET", "/api/v1/filesystems")
                                ["filesystems"]] == ["kept"], 5,
                       what="only kept to be listed after the detach")
    error_of(daemon.api("GET", "/api/v1/filesystems/cut"), 404, "GET the detached filesystem")
    check_equal(daemon.api_ok("GET", "/api/v1/sessions")["total"], 1, "sessions after the detach")
    events = daemon.api_ok("GET", "/api/v1/events")["events"]
    admin = [e for e in events if e["kind"] == "admin" and e["filesystem"] == "cut"]
    check(admin and "maintenance" in admin[0]["detail"], "no admin event for the detach: %r"
          % events)
    check(any(e["kind"] == "detach" and e["filesystem"] == "cut" for e in events),
          "no detach event")


@suite.test
def detach_while_mounting_answers_the_add_filesystem(env):
    """A filesystem detached before its mount is done: the JSON provider's add_filesystem gets
    an error answer (it once got none, ever). The mount is held up by its mount point, which
    lies in another mount whose provider does not answer. (That one's mount point is configured
    too: the start makes late's inside it, and only a configured one may hold files.)"""
    slow_src = env.mkdir("slow-src")
    root = env.path("root")
    daemon = env.start_daemon(timeout=3, mount_root=root, extra=[
        "--filesystem", "slow=" + os.path.join(root, "slow"),
        "--filesystem", "late=" + os.path.join(root, "slow", "late")])
    slow = FakeWebfuse2(daemon.port, "slow", slow_src)
    env.add_cleanup(slow.abort)
    harness.wait_mounted(daemon.mount_path("slow"))
    slow.handlers["getattr"] = lambda f, req: NO_REPLY if req.path == "/late" else DEFAULT
    fake = env.fake(daemon)
    request_id = fake.new_id()
    fake.send_json({"method": "add_filesystem", "params": ["late"], "id": request_id})
    harness.wait_until(lambda: slow.requests_of("getattr"), 5, what="the mount point's lookup")
    r = daemon.api("DELETE", "/api/v1/filesystems/late", body={"reason": "changed my mind"})
    check_equal(r.status, 202, "DELETE of a filesystem still mounting (%r)" % r.body)
    answer = fake.wait_response(request_id, 10)
    check("error" in answer, "add_filesystem answered %r" % answer)
    # The mount point's lookup fails after --timeout; then late is gone, never mounted.
    harness.wait_until(lambda: [f["name"] for f in daemon.api_ok(
        "GET", "/api/v1/filesystems")["filesystems"]] == ["slow"], 10, what="late to go")
    check(not harness.is_mounted(os.path.join(root, "slow", "late")), "mounted anyway")
    # The history says what happened: not a mount that failed.
    events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    check_equal([(e["kind"], e["detail"]) for e in events
                 if e.get("filesystem") == "late" and e["kind"] != "admin"],
                [("attach_failed", "detached before the mount was done")], "history of late")


@suite.test
def disconnect_closes_with_the_reason_and_unmounts(env):
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("d1", {"a": File(b"a")})
    fake.attach("d2", {"b": File(b"b")})
    sid = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]["id"]
    r = daemon.api("DELETE", "/api/v1/sessions/%d" % sid, body={"reason": "maintenance window"})
    check_equal((r.status, r.json),
                (202, {"id": sid, "state": "disconnecting", "reason": "maintenance window"}),
                "DELETE /sessions/{id}")
    check_equal(fake.wait_close(5), (1000, "maintenance window"), "close frame")
    for name in ("d1", "d2"):
        harness.wait_unmounted(daemon.mount_path(name), 5)
    harness.wait_until(lambda: daemon.api("GET", "/api/v1/sessions/%d" % sid).status == 404, 5,
                       what="the session to be gone")
    # Without a body, the default reason.
    fake2 = env.fake(daemon)
    fake2.attach("d3", {"c": File(b"c")})
    sid2 = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]["id"]
    check_equal(daemon.api("DELETE", "/api/v1/sessions/%d" % sid2).status, 202, "DELETE")
    check_equal(fake2.wait_close(5), (1000, "disconnected by the administrator"), "close frame")
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/sessions?state=closed")["total"]
                       == 2, 5, what="both sessions closed in the history")
    closed = daemon.api_ok("GET", "/api/v1/sessions?state=closed")
    check_equal(sorted(s["id"] for s in closed["sessions"]), sorted([sid, sid2]),
                "closed sessions in the history")
    for s in closed["sessions"]:
        check_equal(s["state"], "closed", "state of a closed session")
        check(ISO_UTC.match(s["disconnected_at"] or "") is not None, "disconnected_at %r"
              % s["disconnected_at"])


@suite.test
def a_closed_session_keeps_the_times_its_live_listing_showed(env):
    """connected_since and mounted_since are the same text, to the millisecond, while the session
    is live and in the history once it closed (the history kept milliseconds, the live listing
    did not)."""
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("t1", {"c": File(b"c")})
    live = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]
    check(ISO_UTC_MS.match(live["connected_since"]) is not None,
          "live connected_since with milliseconds: %r" % live["connected_since"])
    mounted = daemon.api_ok("GET", "/api/v1/filesystems/t1")["mounted_since"]
    check(ISO_UTC_MS.match(mounted) is not None, "live mounted_since %r" % mounted)
    fake.close()
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/sessions?state=closed")["total"]
                       == 1, 5, what="the session closed in the history")
    closed = daemon.api_ok("GET", "/api/v1/sessions?state=closed")["sessions"][0]
    check_equal(closed["connected_since"], live["connected_since"], "connected_since once closed")
    check_equal([f["mounted_since"] for f in closed["filesystems"]], [mounted],
                "mounted_since once closed")


@suite.test
def webfuse2_detach_closes_the_connection_with_the_reason(env):
    daemon = env.start_daemon()
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/wf2fs", subprotocol="webfuse2")
    try:
        harness.wait_mounted(daemon.mount_path("wf2fs"))
        fs = daemon.api_ok("GET", "/api/v1/filesystems/wf2fs")
        check_equal((fs["protocol"], fs["state"]), ("webfuse2", "mounted"), "the webfuse2 mount")
        r = daemon.api("DELETE", "/api/v1/filesystems/wf2fs", body={"reason": "go now"})
        check_equal(r.status, 202, "DELETE status (%r)" % r.body)
        check_equal(ws.close_frame(5), (1000, "go now"), "close frame of the webfuse2 connection")
        harness.wait_unmounted(daemon.mount_path("wf2fs"), 5)
    finally:
        ws.abort()


@suite.test
def a_detach_reaches_a_provider_whose_data_is_still_arriving(env):
    """The gateway closes after an operator's detach with a close frame and then waits for the
    provider's own. It used to drop the socket at once: the kernel answered the provider's data
    still arriving with a reset, and a provider busy sending never read the close frame (a
    --reconnect provider came back, a JSON one exited 1). What the provider sends meanwhile is
    dropped unread: a message over --max-message there made libwebsockets send a second close
    frame."""
    daemon = env.start_daemon(max_message=2 * MIB)
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/busy", subprotocol="webfuse2")
    stop = threading.Event()
    send_failed = []

    def keep_sending():  # pongs nobody asked for: the gateway reads and ignores them
        while not stop.is_set():
            try:
                ws.sock.sendall(b"".join(ws.encode_frame(wstest.OP_PONG, b"p" * 125)
                                         for _ in range(64)))
            except OSError as e:
                send_failed.append(repr(e))
                return

    sender = threading.Thread(target=keep_sending, daemon=True)
    try:
        harness.wait_mounted(daemon.mount_path("busy"))
        sender.start()
        time.sleep(0.2)
        r = daemon.api("DELETE", "/api/v1/filesystems/busy", body={"reason": "go now"})
        check_equal(r.status, 202, "DELETE status (%r)" % r.body)
        got = None
        deadline = time.monotonic() + 5
        try:
            while got is None:
                _, opcode, payload = ws.recv_frame(max(0.1, deadline - time.monotonic()))
                if opcode == wstest.OP_CLOSE:
                    got = (int.from_bytes(payload[:2], "big"), payload[2:].decode())
        except (OSError, wstest.Closed) as e:
            got = "no close frame: %r" % e
        stop.set()
        sender.join(5)
        check_equal(got, (1000, "go now"), "what the provider still sending got")
        check_equal(send_failed, [], "the provider's writes until it read the close frame")
        try:
            ws.send_binary(b"x" * (2 * MIB + 1))
            ws.send_close(1000)
        except OSError as e:
            fail("the provider's last message and close frame could not be sent: %r" % e)
        code, took = harness.timed(lambda: ws.wait_closed(5))
        check_equal(code, None, "what came after the provider's close (no second close frame)")
        check(took < 1.0, "the gateway ended the connection %.1f s after the provider's close "
              "(it waits 3 s for one that does not come)" % took)
        harness.wait_unmounted(daemon.mount_path("busy"), 5)
    finally:
        stop.set()
        ws.abort()


@suite.test
def an_operators_detach_or_disconnect_is_not_undone_by_reconnecting_providers(env):
    """A detach (webfuse2) or disconnect (json) closes with 1000: a provider started with
    --reconnect takes it as meant, logs it and exits 0 instead of attaching again at once."""
    daemon = env.start_daemon()
    src = env.mkdir("src")
    wf2 = env.start_webfuse2_provider(daemon, "kept", src, extra=["--reconnect"])
    json_provider = env.start_provider(daemon, [("old", src)], extra=["--reconnect"])
    check_equal(daemon.api("DELETE", "/api/v1/filesystems/kept", body={"reason": "done"}).status,
                202, "DELETE of the webfuse2 filesystem")
    json_id = daemon.api_ok("GET", "/api/v1/filesystems/old")["session"]
    check_equal(daemon.api("DELETE", "/api/v1/sessions/%d" % json_id).status, 202,
                "DELETE of the json session")
    for p in (wf2, json_provider):
        check_equal(p.wait(10), 0, "exit status of a provider the operator sent away")
        check("the gateway ended the connection on purpose: not reconnecting" in p.log_text(),
              "its log: %s" % p.log_text())
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/filesystems")["total"] == 0, 10,
                       what="the detached filesystems to be gone")


# ---- history through the API --------------------------------------------------------------------


@suite.test
def events_since_and_limit(env):
    daemon = env.start_daemon()
    newest = daemon.api_ok("GET", "/api/v1/events")
    first_next = newest["next"]
    check(newest["events"] and newest["events"][-1]["kind"] == "start",
          "the newest event of a fresh daemon is its start: %r" % newest)
    for i in range(3):
        fake = env.fake(daemon)
        fake.attach("ev%d" % i, {"a": File(b"a")})
        fake.close()
        harness.wait_unmounted(daemon.mount_path("ev%d" % i), 5)
    harness.wait_until(lambda: len(daemon.api_ok(
        "GET", "/api/v1/events?since=%d" % first_next)["events"]) >= 12, 5,
        what="12 events (connect, attach, detach, disconnect x 3)")
    later = daemon.api_ok("GET", "/api/v1/events?since=%d" % first_next)
    ids = [e["id"] for e in later["events"]]
    check(ids == sorted(ids) and ids[0] > first_next, "ids after since: %r" % ids)
    check_equal(later["next"], ids[-1], "next")
    kinds = [e["kind"] for e in later["events"]]
    for kind in ("connect", "attach", "detach", "disconnect"):
        check_equal(kinds.count(kind), 3, "%s events in %r" % (kind, kinds))
    for e in later["events"]:
        check(ISO_UTC.match(e["time"]) is not None, "event time %r" % e["time"])
        check_equal(e["run"], later["events"][0]["run"], "run of the events")
    page = daemon.api_ok("GET", "/api/v1/events?since=%d&limit=2" % first_next)
    check_equal([e["id"] for e in page["events"]], ids[:2], "a page of 2")
    check_equal(page["next"], ids[1], "next of the page")
    tail = daemon.api_ok("GET", "/api/v1/events?limit=2")
    check_equal([e["id"] for e in tail["events"]], [e["id"] for e in
                                                    daemon.api_ok("GET", "/api/v1/events?limit="
                                                                  "1000")["events"][-2:]],
                "without since: the newest, oldest first")
    none = daemon.api_ok("GET", "/api/v1/events?since=%d" % (ids[-1] + 1000))
    check_equal((none["events"], none["next"]), ([], ids[-1] + 1000), "nothing after the end")


@suite.test
def state_all_pages_through_live_then_closed(env):
    daemon = env.start_daemon()
    for i in range(3):
        fake = env.fake(daemon)
        fake.attach("old%d" % i, {"a": File(b"a")})
        fake.close()
        harness.wait_unmounted(daemon.mount_path("old%d" % i), 5)
    live = []
    for i in range(2):
        fake = env.fake(daemon)
        fake.attach("live%d" % i, {"a": File(b"a")})
        live.append(fake)
    def all_closed():
        closed = daemon.api_ok("GET", "/api/v1/sessions?state=closed")["sessions"]
        return len(closed) == 3 and all(f["state"] == "detached" for s in closed
                                        for f in s["filesystems"])

    harness.wait_until(all_closed, 5, what="3 closed sessions with detached filesystems")
    whole = daemon.api_ok("GET", "/api/v1/sessions?state=all")
    check_equal(whole["total"], 5, "total of state=all")
    states = [s["state"] for s in whole["sessions"]]
    check_equal(states, ["active", "active", "closed", "closed", "closed"], "order of state=all")
    closed_ids = [s["id"] for s in whole["sessions"][2:]]
    check_equal(closed_ids, sorted(closed_ids, reverse=True), "closed ones newest first")
    check_equal([[f["name"] for f in s["filesystems"]] for s in whole["sessions"][2:]],
                [["old2"], ["old1"], ["old0"]], "filesystems of the closed sessions")
    check_equal(whole["sessions"][2]["filesystems"][0]["state"], "detached", "their state")
    page = daemon.api_ok("GET", "/api/v1/sessions?state=all&limit=2&offset=1")
    check_equal([s["id"] for s in page["sessions"]], [s["id"] for s in whole["sessions"][1:3]],
                "limit=2&offset=1 straddles live and closed")
    check_equal((page["total"], page["offset"], page["limit"]), (5, 1, 2), "paging fields")
    page = daemon.api_ok("GET", "/api/v1/sessions?state=all&limit=10&offset=4")
    check_equal([s["id"] for s in page["sessions"]], [whole["sessions"][4]["id"]], "the last one")
    check_equal(daemon.api_ok("GET", "/api/v1/sessions?state=all&offset=9")["sessions"], [],
                "past the end")
    active = daemon.api_ok("GET", "/api/v1/sessions")
    check_equal((active["total"], len(active["sessions"])), (2, 2), "active only by default")
    # A session whose provider left while a program holds one of its files is still live (its
    # mount drains), and closed in the history: state=all lists it once.
    held_fake = env.fake(daemon)
    held_fake.attach("held", {"a": File(b"a")})
    held = os.open(os.path.join(daemon.mount_path("held"), "a"), os.O_RDONLY)
    try:
        held_fake.abort()
        harness.wait_until(lambda: any(
            s["state"] == "closed" for s in daemon.api_ok("GET", "/api/v1/sessions")["sessions"]),
            5, what="the held session to be closed and still live")
        whole = daemon.api_ok("GET", "/api/v1/sessions?state=all")
        ids = [s["id"] for s in whole["sessions"]]
        check_equal(sorted(set(ids)), sorted(ids), "sessions of state=all")
        check_equal(whole["total"], 6, "total of state=all with the held session")
    finally:
        os.close(held)


@suite.test
def clients_that_go_away_before_the_answer_do_no_harm(env):
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("busy", {"a": File(b"a")})
    token = daemon.token()
    paths = ["/api/v1/events?limit=1000", "/api/v1/sessions?state=all", "/api/v1/sessions",
             "/metrics"]
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", daemon.admin_port), timeout=5)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (paths[i % len(paths)], token)).encode())
        if i % 2:  # with a reset instead of a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    # A body announced but never sent, then gone.
    s = socket.create_connection(("127.0.0.1", daemon.admin_port), timeout=5)
    s.sendall(("DELETE /api/v1/filesystems/busy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
               "\r\nContent-Length: 100\r\n\r\n{" % token).encode())
    s.close()
    check_equal(daemon.api_ok("GET", "/api/v1/sessions?state=all")["total"], 1, "sessions")
    check_equal(daemon.api("GET", "/healthz", token=None).status, 200, "healthz")
    check_equal([f["name"] for f in daemon.api_ok("GET", "/api/v1/filesystems")["filesystems"]],
                ["busy"], "the half-sent DELETE did nothing")
    check(daemon.alive(), "webfused died")


@suite.test
def many_requests_on_one_connection(env):
    import http.client
    daemon = env.start_daemon()
    conn = http.client.HTTPConnection("127.0.0.1", daemon.admin_port, timeout=5)
    auth = {"Authorization": "Bearer " + daemon.token()}
    try:
        for i in range(50):
            path = ["/api/v1/sessions", "/api/v1/events", "/metrics", "/api/v1/nothing",
                    "/api/v1/sessions?state=all"][i % 5]
            conn.request("GET", path, headers=auth)
            r = conn.getresponse()
            body = r.read()
            check_equal(r.status, 404 if "nothing" in path else 200, "GET %s (#%d)" % (path, i))
            check(body, "empty body")
        conn.request("DELETE", "/api/v1/filesystems/none", body=b'{"reason": "x"}', headers=auth)
        r = conn.getresponse()
        check_equal(r.status, 404, "a DELETE with a body on the same connection")
        r.read()
        conn.request("GET", "/api/v1/sessions", headers=auth)
        r = conn.getresponse()
        check_equal(r.status, 200, "a GET after the body")
        r.read()
    finally:
        conn.close()


# ---- configuration ------------------------------------------------------------------------------


@suite.test
def no_admin_turns_the_port_off(env):
    admin_port = harness.free_port()
    daemon = env.start_daemon(admin=False, extra=["--admin-port", str(admin_port)])
    env.start_provider(daemon, [("plain", DATA["src"])])
    check(not harness.port_open(admin_port), "the admin port listens despite --no-admin")
    check(read_all(os.path.join(daemon.mount_path("plain"), "blob")) == DATA["blob"],
          "providers are still served")


@suite.test
def admin_port_in_use_fails_the_start_with_a_message(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        daemon = env.start_daemon(admin_port=port, wait=False)
        status = daemon.wait(10)
        check_equal(status, 1, "exit status")
        check("admin" in daemon.log_text() and str(port) in daemon.log_text(),
              "the log does not say what is wrong:\n%s" % daemon.log_text())


H2C_UPGRADE = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
WS_UPGRADE = (b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def upgrade_answer(port, request):
    """The first bytes the gateway answers `request` with (b"" when it closes at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        try:
            return sock.recv(200)
        except ConnectionResetError:
            return b""


@suite.test
def upgrades_to_other_protocols_are_refused(env):
    """No websockets on the admin port and HTTP/2 (h2c) on neither port, without a token: an
    upgrade the admin port let through held its connection with no timeout, and an h2c one
    followed by a body of no length stopped webfused on an assertion of libwebsockets. The
    provider port still upgrades to websockets."""
    daemon = env.start_daemon()
    for port, request, what in ((daemon.admin_port, WS_UPGRADE, "websocket on the admin port"),
                                (daemon.admin_port, H2C_UPGRADE, "h2c on the admin port"),
                                (daemon.port, H2C_UPGRADE, "h2c on the provider port")):
        answer = upgrade_answer(port, request)
        check(b" 101 " not in answer.split(b"\r\n")[0], "%s answered %r" % (what, answer))
    answer = upgrade_answer(daemon.port, WS_UPGRADE)
    check(answer.startswith(b"HTTP/1.1 101 "), "websocket on the provider port: %r" % answer)
    check_equal(daemon.api_ok("GET", "/healthz").get("status"), "ok", "the admin API after")
    check(daemon.alive(), "webfused died")


if __name__ == "__main__":
    suite.main()
