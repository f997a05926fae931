#!/usr/bin/env python3
"""webfusectl against a live webfused (issue 4): every command in both output forms (tables and
--json), and exit codes a script can test: 0 ok, 1 the daemon said no, 2 bad usage, 3 the daemon
cannot be reached, 4 the token is wrong or cannot be read."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_webfusectl")
suite.needs_provider = True
suite.needs_ctl = True

DATA = {}


@suite.setup
def make_data(suite_dir):
    DATA["src"] = os.path.join(suite_dir, "src")
    os.makedirs(DATA["src"])
    with open(os.path.join(DATA["src"], "file"), "wb") as f:
        f.write(os.urandom(300000))


def ctl(daemon, *args, token_file=None, url=None, env=None, timeout=20):
    """Runs webfusectl; returns (exit status, stdout, stderr)."""
    argv = [harness.binary("WEBFUSECTL", "webfusectl")]
    if url is not False:
        argv += ["--url", url or daemon.admin_url]
    if token_file is not False:
        argv += ["--token-file", token_file or daemon.token_file]
    argv += list(args)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(daemon, *args, **kwargs):
    rc, out, err = ctl(daemon, *args, **kwargs)
    check_equal(rc, 0, "webfusectl %s: exit status (stderr %r)" % (" ".join(args), err))
    return out


def table(text):
    """A table's lines split into columns (on runs of 2+ spaces)."""
    import re
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def setup_live(env):
    daemon = env.start_daemon()
    env.start_provider(daemon, [("docs", DATA["src"]), ("media", DATA["src"])])
    with open(os.path.join(daemon.mount_path("docs"), "file"), "rb") as f:
        f.read()
    return daemon


@suite.test
def health_needs_no_token(env):
    daemon = env.start_daemon()
    check_equal(ok(daemon, "health", token_file=env.path("no-such-file")), "ok\n", "health")
    out = ok(daemon, "--json", "health", token_file=False)
    check_equal(json.loads(out), {"status": "ok"}, "health --json")


@suite.test
def sessions_and_filesystems_as_tables_and_json(env):
    daemon = setup_live(env)
    rows = table(ok(daemon, "sessions"))
    check_equal(rows[0], ["ID", "RUN", "STATE", "PROTOCOL", "REMOTE", "USER", "CONNECTED",
                          "REQUESTS", "IN", "OUT", "FILESYSTEMS"], "sessions header")
    check_equal(len(rows), 2, "one session row: %r" % rows)
    api = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]
    check_equal(rows[1][0:2], [str(api["id"]), str(api["run"])], "id and run columns")
    check_equal(rows[1][2:4], ["active", "json"], "state and protocol columns")
    check_equal(sorted(rows[1][-1].split(",")), ["docs", "media"], "filesystems column")
    as_json = json.loads(ok(daemon, "--json", "sessions"))
    check_equal(as_json["total"], 1, "sessions --json total")
    check_equal(as_json["sessions"][0]["id"], api["id"], "sessions --json id")

    rows = table(ok(daemon, "filesystems"))
    check_equal(rows[0], ["NAME", "STATE", "SESSION", "PROTOCOL", "MOUNTPOINT", "OPEN",
                          "REQUESTS", "READ", "WRITTEN"], "filesystems header")
    by_name = {r[0]: r for r in rows[1:]}
    check_equal(sorted(by_name), ["docs", "media"], "filesystem rows")
    check_equal(by_name["docs"][1:5], ["mounted", str(api["id"]), "json",
                                       daemon.mount_path("docs")], "docs row")
    check(by_name["docs"][7].endswith("KiB"), "READ column of docs: %r" % by_name["docs"])
    as_json = json.loads(ok(daemon, "--json", "filesystems"))
    check_equal(sorted(f["name"] for f in as_json["filesystems"]), ["docs", "media"],
                "filesystems --json")

    out = ok(daemon, "session", str(api["id"]))
    check(out.startswith("session %d\n" % api["id"]) and "docs" in out and "media" in out,
          "session ID output:\n%s" % out)
    check_equal(json.loads(ok(daemon, "--json", "session", str(api["id"])))["id"], api["id"],
                "session --json")

    metrics = ok(daemon, "metrics")
    check("webfuse_sessions_active 1" in metrics, "metrics output:\n%s" % metrics[:500])


@suite.test
def events_as_table_and_json(env):
    daemon = setup_live(env)
    rows = table(ok(daemon, "events"))
    check_equal(rows[0], ["ID", "TIME", "KIND", "SESSION", "RUN", "FILESYSTEM", "DETAIL"],
                "events header")
    kinds = [r[2] for r in rows[1:]]
    for kind in ("start", "connect", "attach"):
        check(kind in kinds, "%s missing from the events: %r" % (kind, kinds))
    api = [e for e in daemon.api_ok("GET", "/api/v1/events")["events"] if e["kind"] == "connect"]
    connect = [r for r in rows[1:] if r[2] == "connect"]
    check_equal(connect[0][3:5], [str(api[0]["session"]), str(api[0]["run"])],
                "session and run columns of the connect event")
    as_json = json.loads(ok(daemon, "--json", "events", "--limit", "2"))
    check_equal(len(as_json["events"]), 2, "events --limit 2")
    since = as_json["events"][0]["id"]
    later = json.loads(ok(daemon, "--json", "events", "--since", str(since)))
    check(all(e["id"] > since for e in later["events"]) and later["events"],
          "events --since %d: %r" % (since, later))


@suite.test
def detach_and_disconnect(env):
    daemon = setup_live(env)
    out = ok(daemon, "detach", "media", "--reason", "swap the disk")
    check(out.startswith("detaching media"), "detach output %r" % out)
    harness.wait_unmounted(daemon.mount_path("media"), 5)
    events = daemon.api_ok("GET", "/api/v1/events")["events"]
    check(any(e["kind"] == "admin" and "swap the disk" in (e["detail"] or "") for e in events),
          "the reason did not reach the daemon: %r" % events)
    rc, out, err = ctl(daemon, "detach", "media")
    check_equal(rc, 1, "detach of a detached filesystem: exit status")
    # 404 once it is gone, 409 while its unmount is still finishing.
    check("media" in err and ("HTTP 404" in err or "HTTP 409" in err), "its message: %r" % err)

    sid = daemon.api_ok("GET", "/api/v1/sessions")["sessions"][0]["id"]
    reply = json.loads(ok(daemon, "--json", "disconnect", str(sid)))
    check_equal((reply["id"], reply["state"]), (sid, "disconnecting"), "disconnect --json")
    harness.wait_unmounted(daemon.mount_path("docs"), 5)
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/sessions")["total"] == 0, 5,
                       what="the session to be gone")
    rc, out, err = ctl(daemon, "disconnect", str(sid))
    check_equal(rc, 1, "disconnect of a gone session: exit status")
    rc, out, err = ctl(daemon, "--json", "disconnect", "4242")
    check_equal(rc, 1, "disconnect --json of an unknown session: exit status")
    check("error" in json.loads(out), "--json prints the daemon's error body: %r" % out)

    rows = table(ok(daemon, "sessions", "--all"))
    run = daemon.api_ok("GET", "/api/v1/sessions?state=all")["sessions"][0]["run"]
    check_equal([r[0:3] for r in rows[1:]], [[str(sid), str(run), "closed"]], "sessions --all")


@suite.test
def exit_codes(env):
    daemon = env.start_daemon()
    # 2: usage
    for args in ([], ["bogus"], ["detach"], ["detach", "a", "b"], ["detach", "bad/name"],
                 ["disconnect", "x"], ["disconnect", "0"], ["sessions", "--since", "3"],
                 ["events", "--limit", "many"], ["events", "--limit", "0"],
                 ["sessions", "--limit", "5000"], ["detach", "a", "--reason", ""],
                 ["detach", "a", "--reason", "x" * 121], ["sessions", "--reason", ""],
                 ["--timeout", "0", "health"]):
        rc, out, err = ctl(daemon, *args)
        check_equal(rc, 2, "webfusectl %s: exit status (stderr %r)" % (" ".join(args), err))
        check(err.strip(), "no message for webfusectl %s" % " ".join(args))
    rc, out, err = ctl(daemon, "health", url="ftp://x")
    check_equal(rc, 2, "a URL that is not http://")
    rc, out, err = ctl(daemon, "--help")
    check(rc == 0 and "Exit status" in out, "--help")
    # 4: token
    wrong = env.path("wrong-token")
    with open(wrong, "w") as f:
        f.write("not-the-token\n")
    rc, out, err = ctl(daemon, "sessions", token_file=wrong)
    check_equal(rc, 4, "wrong token: exit status")
    check("token" in err, "wrong token: message %r" % err)
    rc, out, err = ctl(daemon, "sessions", token_file=env.path("missing"))
    check_equal(rc, 4, "missing token file: exit status")
    check("cannot read" in err and env.path("missing") in err, "missing token file: %r" % err)
    # 3: unreachable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    rc, out, err = ctl(daemon, "sessions", url="http://127.0.0.1:%d" % closed_port)
    check_equal(rc, 3, "nothing listening: exit status")
    check("cannot connect" in err, "nothing listening: message %r" % err)
    rc, out, err = ctl(daemon, "sessions", url="http://127.0.0.1:%d" % daemon.port)
    check_equal(rc, 1, "the provider port is not the admin API: exit status (%r)" % err)
    check("not an answer of webfused's admin API: is --url its admin port" in err,
          "the provider port: message %r" % err)
    # Something that accepts and never answers: the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        start = time.monotonic()
        rc, out, err = ctl(daemon, "--timeout", "1", "sessions",
                           url="http://127.0.0.1:%d" % silent.getsockname()[1])
        check_equal(rc, 3, "silent server: exit status")
        check(time.monotonic() - start < 5, "the timeout did not hold")
    # One that answers a header line every half second: --timeout is for the whole request.
    host, port = harness.dripping_server()
    start = time.monotonic()
    rc, out, err = ctl(daemon, "--timeout", "2", "sessions", url="http://%s:%d" % (host, port))
    check_equal(rc, 3, "dripping server: exit status (%r)" % err)
    check(time.monotonic() - start < 4, "--timeout 2 held %.1f s against a dripping server"
          % (time.monotonic() - start))
    # 1: the daemon said no
    rc, out, err = ctl(daemon, "session", "77")
    check_equal(rc, 1, "unknown session: exit status")


def serve_once(body, status="200 OK", content_type="application/json"):
    """A one-request HTTP server answering `body`; returns its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        with conn, server:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % (status.encode(), content_type.encode(),
                                                           len(body)) + body)
    threading.Thread(target=answer, daemon=True).start()
    return "http://127.0.0.1:%d" % server.getsockname()[1]


@suite.test
def text_from_the_daemon_reaches_the_terminal_escaped(env):
    """A hostile (or impersonated) daemon's strings must not drive the terminal: escape
    sequences in names, errors and metrics come out as \\x1b, also with --json."""
    daemon = env.start_daemon()
    evil = "fs\u001b[2J\u001b]0;pwned\u0007"
    listing = json.dumps({"filesystems": [{"name": evil, "session": 1, "mountpoint": "/m" + evil,
                                           "state": "mounted", "protocol": "webfuse2"}]})
    cases = [(["filesystems"], listing.encode(), "200 OK"),
             (["--json", "filesystems"], listing.encode(), "200 OK"),
             (["session", "3"], json.dumps({"error": "no " + evil}).encode(), "404 Not Found"),
             (["metrics"], b"webfuse_x 1\n# \x1b[2J evil\n", "200 OK")]
    for args, body, status in cases:
        rc, out, err = ctl(daemon, *args, url=serve_once(body, status))
        check("\x1b" not in out + err and "\x07" not in out + err,
              "webfusectl %s passed an escape sequence on: %r %r" % (" ".join(args), out, err))
        shown = (out + err).lower()
        check("\\x1b" in shown or "\\u001b" in shown,
              "webfusectl %s shows the escape as text: %r %r" % (" ".join(args), out, err))


@suite.test
def url_and_token_file_from_the_environment(env):
    daemon = env.start_daemon()
    out = ok(daemon, "--json", "sessions", url=False, token_file=False,
             env={"WEBFUSE_ADMIN_URL": daemon.admin_url,
                  "WEBFUSE_ADMIN_TOKEN_FILE": daemon.token_file})
    check_equal(json.loads(out)["total"], 0, "sessions via the environment")


def passwd_on_terminal(env, first, second):
    """webfusectl passwd carol on a terminal of its own, typing `first` and then `second`;
    returns (exit status, what the terminal showed)."""
    environ = {k: v for k, v in os.environ.items() if k != "WEBFUSE_PASSWORD"}
    term = harness.Terminal(env, [harness.binary("WEBFUSECTL", "webfusectl"), "passwd", "carol",
                                  "--fs", "fw"], environ)
    for prompt, typed in (("Password for carol: ", first), ("Again: ", second)):
        term.expect(prompt)
        check(not term.echo(), "the terminal echoes while %r is asked" % prompt)
        term.send(typed + "\n")
    status = term.wait(30)
    check(first.encode() not in term.output and second.encode() not in term.output,
          "a password showed on the terminal: %r" % term.output)
    return status, term.output.decode(errors="replace")


@suite.test
def passwd_asks_twice_on_the_terminal(env):
    status, shown = passwd_on_terminal(env, "first-secret", "other-secret")
    # 2, not 1 (which says the daemon answered with an error: passwd asks no daemon).
    check_equal(status, 2, "exit status when the passwords differ (%r)" % shown)
    check("the passwords differ" in shown, "the refusal says why: %r" % shown)
    check("carol:$" not in shown, "a users line was printed anyway: %r" % shown)

    status, shown = passwd_on_terminal(env, "same-secret", "same-secret")
    check_equal(status, 0, "exit status with the same password twice (%r)" % shown)
    lines = [line.strip() for line in shown.splitlines() if line.startswith("carol:$")]
    check(len(lines) == 1 and lines[0].startswith("carol:$y$") and lines[0].endswith(":fw"),
          "the users line: %r" % shown)
    # The line lets carol log in with what was typed.
    users = env.path("users")
    with open(users, "w") as f:
        f.write(lines[0] + "\n")
    daemon = env.start_daemon(extra=["--auth-file", users])
    answer = env.fake(daemon).call("authenticate", ["username", {"username": "carol",
                                                                 "password": "same-secret"}])
    check_equal(answer.get("result"), {}, "carol logs in with the typed password")


@suite.test
def passwd_says_what_is_wrong_with_a_filesystem_list(env):
    """A bad --fs is bad usage (2), told without a file name and line number: there is no file."""
    done = subprocess.run([harness.binary("WEBFUSECTL", "webfusectl"), "passwd", "dave", "--fs",
                           "a/b"], capture_output=True, text=True, timeout=20,
                          env=dict(os.environ, WEBFUSE_PASSWORD="pw"))
    check_equal(done.returncode, 2, "exit status (%r)" % done.stderr)
    first = done.stderr.splitlines()[0] if done.stderr else ""
    check(first.startswith("webfusectl: ") and ":1:" not in first and "a/b" in first,
          "the message: %r" % done.stderr)


if __name__ == "__main__":
    suite.main()
