#!/usr/bin/env python3
"""Provider authentication and authorization (issue 6): with --auth-file, a provider attaches only
after proving who it is, and only the names listed for that user. Both protocols, both webfuse2
paths (a token in a request header, or the getcreds request), the refusals and their events, and
the growing delay after repeated failures from one address."""

import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402
from fakeprovider import File  # noqa: E402

suite = harness.Suite("test_auth")
suite.needs_provider = True
suite.needs_ctl = True

USERS = {"alice": ("pw-alice", "firmware,logs"), "bob": ("pw-bob", "*")}
ACCESS_DENIED = 102
CLOSE_POLICY = 1008
WF2 = "webfuse2"
GETCREDS = 0x17


def users_file(env):
    """A users file made with `webfusectl passwd` (which must write lines the daemon takes)."""
    path = env.path("users")
    lines = ["# made by test_auth", ""]
    for name, (password, names) in sorted(USERS.items()):
        out = subprocess.run(
            [harness.binary("WEBFUSECTL", "webfusectl"), "passwd", name, "--fs", names],
            env=dict(os.environ, WEBFUSE_PASSWORD=password), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=30)
        check_equal(out.returncode, 0, "webfusectl passwd status (%s)" % out.stderr)
        line = out.stdout.decode().strip()
        check(line.startswith(name + ":$y$") and line.endswith(":" + names),
              "webfusectl passwd line %r" % line)
        lines.append(line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start(env, extra=()):
    return env.start_daemon(extra=["--auth-file", users_file(env)] + list(extra))


def authenticate(fake, user, password, timeout=10.0):
    return fake.call("authenticate", ["username", {"username": user, "password": password}],
                     timeout=timeout)


def check_denied(answer, what):
    check(isinstance(answer.get("error"), dict), "%s: expected an error, got %r" % (what, answer))
    check_equal(answer["error"].get("code"), ACCESS_DENIED, "%s: error code" % what)


def events_all(daemon):
    """The history, oldest first."""
    return daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]


def events(daemon, kind):
    return [e for e in events_all(daemon) if e["kind"] == kind]


def wait_event(daemon, kind, contains):
    def seen():
        return [e for e in events(daemon, kind) if contains in (e.get("detail") or "")]
    return harness.wait_until(seen, 5.0, what="a %s event with %r" % (kind, contains))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def session_users(daemon):
    return {s["user"] for s in daemon.api_ok("GET", "/api/v1/sessions")["sessions"]}


# ---- JSON protocol ------------------------------------------------------------------------------


@suite.test
def json_right_credentials_attach(env):
    daemon = start(env)
    fake = env.fake(daemon)
    check_equal(authenticate(fake, "alice", "pw-alice"), {"result": {}, "id": 1},
                "authenticate answer")
    fake.attach("firmware", {"image.bin": File(b"firmware bytes")})
    check_equal(read(os.path.join(daemon.mount_path("firmware"), "image.bin")),
                b"firmware bytes", "file read through the mount")
    check_equal(session_users(daemon), {"alice"}, "user shown by the admin API")


@suite.test
def json_wrong_password_and_unknown_user_are_refused(env):
    daemon = start(env)
    fake = env.fake(daemon)
    check_denied(authenticate(fake, "alice", "wrong"), "wrong password")
    check_denied(fake.add_filesystem("firmware", {}), "add_filesystem after a failed login")
    check(not harness.is_mounted(daemon.mount_path("firmware")), "mounted anyway")
    check_denied(authenticate(fake, "mallory", "pw-alice"), "unknown user")
    wait_event(daemon, "auth_failed", 'wrong password for user "alice"')
    wait_event(daemon, "auth_failed", 'unknown user "mallory"')
    wait_event(daemon, "attach_denied", "not authenticated")
    # The session may still log in properly.
    check_equal(authenticate(fake, "bob", "pw-bob").get("result"), {}, "login after failures")
    fake.attach("anything", {"f": File(b"x")})


@suite.test
def json_missing_credentials_are_refused_not_fatal(env):
    """A username or password left out of authenticate is a failed login (it crashed the
    daemon once); the daemon and its other sessions go on."""
    daemon = start(env)
    keeper = env.fake(daemon)
    check_equal(authenticate(keeper, "alice", "pw-alice").get("result"), {}, "keeper's login")
    keeper.attach("firmware", {"image.bin": File(b"still here")})
    cases = (({}, "neither"), ({"password": "pw-alice"}, "no username"),
             ({"username": "alice"}, "no password"))
    for i, (credentials, what) in enumerate(cases):
        # From its own address each: failures from one address delay the next attempt.
        fake = env.fake(daemon, source="127.0.0.%d" % (i + 2))
        check_denied(fake.call("authenticate", ["username", credentials], timeout=10), what)
        check(daemon.alive(), "webfused died on a login with %s" % what)
    wait_event(daemon, "auth_failed", "user name or password missing")
    check_equal(read(os.path.join(daemon.mount_path("firmware"), "image.bin")), b"still here",
                "the other session's mount")


@suite.test
def json_attach_before_authenticate_is_refused(env):
    daemon = start(env)
    fake = env.fake(daemon)
    check_denied(fake.add_filesystem("firmware", {}), "add_filesystem without authenticate")
    wait_event(daemon, "attach_denied", "not authenticated")


@suite.test
def json_user_outside_their_names_is_refused(env):
    daemon = start(env)
    fake = env.fake(daemon)
    authenticate(fake, "alice", "pw-alice")
    check_denied(fake.add_filesystem("other", {}), "a name alice may not attach")
    event = wait_event(daemon, "attach_denied", 'user "alice" may not attach it')[0]
    check_equal(event["filesystem"], "other", "filesystem of the event")
    fake.attach("logs", {"l.txt": File(b"log")})
    check(not harness.is_mounted(daemon.mount_path("other")), "other was mounted")


@suite.test
def json_provider_user_option_attaches(env):
    daemon = start(env)
    src = env.mkdir("src")
    with open(os.path.join(src, "a.txt"), "w") as f:
        f.write("from the provider\n")
    os.environ["WEBFUSE_PASSWORD"] = "pw-alice"
    try:
        env.start_provider(daemon, [("firmware", src)], extra=["--user", "alice"])
    finally:
        del os.environ["WEBFUSE_PASSWORD"]
    check_equal(read(os.path.join(daemon.mount_path("firmware"), "a.txt")),
                b"from the provider\n", "file read through the mount")


@suite.test
def json_provider_explains_a_name_the_user_may_not_attach(env):
    """Code 102 for a filesystem after a good login is about the name, not the password: the
    provider shows the gateway's reason; without a login, that one is wanted."""
    daemon = start(env)
    os.environ["WEBFUSE_PASSWORD"] = "pw-alice"
    try:
        p = env.start_provider(daemon, [("other", env.mkdir("src"))], extra=["--user", "alice"],
                               wait=False)
    finally:
        del os.environ["WEBFUSE_PASSWORD"]
    check_equal(p.wait(15), 1, "provider exit status")
    check('other: the gateway refused the filesystem: code 102 (user "alice" may not attach it)'
          in p.log_text(), "provider log: %s" % p.log_text())
    # Without --user, 102 means the gateway wants a login.
    p = env.start_provider(daemon, [("firmware", env.mkdir("src2"))], wait=False)
    check_equal(p.wait(15), 1, "exit status of a provider without --user")
    check("firmware: the gateway refused the filesystem: code 102 (access denied: the gateway "
          "wants a login (--user))" in p.log_text(), "provider log: %s" % p.log_text())


def without_password_variables():
    return {k: v for k, v in os.environ.items() if k not in ("WEBFUSE_PASSWORD", "WEBFUSE_TOKEN")}


@suite.test
def provider_asks_for_the_password_on_its_terminal(env):
    """--user without $WEBFUSE_PASSWORD: the provider asks on its terminal, without echo, and
    logs in with what was typed."""
    daemon = start(env)
    src = env.mkdir("src")
    with open(os.path.join(src, "typed.txt"), "w") as f:
        f.write("logged in with a typed password\n")
    term = harness.Terminal(env, [harness.binary("WEBFUSE_PROVIDER", "webfuse-provider"),
                                  "--url", "ws://127.0.0.1:%d/firmware" % daemon.port,
                                  "--path", src, "--user", "alice"], without_password_variables())
    term.expect("Password for alice: ")
    check(not term.echo(), "the terminal echoes what is typed while the password is asked")
    term.send("pw-alice\n")
    harness.wait_mounted(daemon.mount_path("firmware"))
    check_equal(read(os.path.join(daemon.mount_path("firmware"), "typed.txt")),
                b"logged in with a typed password\n", "file read through the mount")
    check(term.echo(), "echo is not back on after the password")
    check(b"pw-alice" not in term.output, "the password showed on the terminal: %r" % term.output)
    check_equal(session_users(daemon), {"alice"}, "user shown by the admin API")


@suite.test
def json_provider_wrong_password_exits(env):
    daemon = start(env)
    src = env.mkdir("src")
    os.environ["WEBFUSE_PASSWORD"] = "nope"
    try:
        p = env.start_provider(daemon, [("firmware", src)], extra=["--user", "alice"], wait=False)
    finally:
        del os.environ["WEBFUSE_PASSWORD"]
    check_equal(p.wait(15), 1, "provider exit status")
    check("refused the credentials" in p.log_text(), "provider log: %s" % p.log_text())
    check(not harness.is_mounted(daemon.mount_path("firmware")), "mounted anyway")


# ---- webfuse2 -----------------------------------------------------------------------------------


def wf2_connect(daemon, name, headers=None, source=None):
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/" + name, subprotocol=WF2,
                           headers=headers, source=source)
    return ws


@suite.test
def webfuse2_token_in_header_attaches(env):
    daemon = start(env)
    ws = wf2_connect(daemon, "firmware", {"X-Auth-Token": "alice:pw-alice"})
    harness.wait_mounted(daemon.mount_path("firmware"))
    check_equal(session_users(daemon), {"alice"}, "user shown by the admin API")
    ws.close()


@suite.test
def webfuse2_bearer_token_and_custom_header_attach(env):
    daemon = start(env, extra=["--auth-header", "X-Webfuse-Credentials"])
    ws = wf2_connect(daemon, "one", {"Authorization": "Bearer bob:pw-bob"})
    harness.wait_mounted(daemon.mount_path("one"))
    ws2 = wf2_connect(daemon, "two", {"X-Webfuse-Credentials": "bob:pw-bob"})
    harness.wait_mounted(daemon.mount_path("two"))
    ws.close()
    ws2.close()


@suite.test
def webfuse2_wrong_header_token_is_refused(env):
    daemon = start(env)
    for token, detail in (("alice:bad", 'wrong password for user "alice"'),
                          ("no-colon", "the token is not USER:PASSWORD")):
        ws = wf2_connect(daemon, "firmware", {"X-Auth-Token": token})
        code = ws.wait_closed(10)
        check_equal(code, CLOSE_POLICY, "close code for %r" % token)
        wait_event(daemon, "auth_failed", detail)
    check(not harness.is_mounted(daemon.mount_path("firmware")), "mounted anyway")


@suite.test
def webfuse2_getcreds_when_no_header(env):
    """No header: the gateway's first request is getcreds; the answer decides."""
    daemon = start(env)
    for password, ok in (("pw-alice", True), ("bad", False)):
        ws = wf2_connect(daemon, "firmware")
        kind, msg = ws.recv_message(10)
        check_equal((kind, msg[4]), ("binary", GETCREDS), "first request")
        token = ("alice:" + password).encode()
        ws.send_binary(msg[:4] + bytes([GETCREDS | 0x80]) + struct.pack("!I", len(token)) + token)
        if ok:
            harness.wait_mounted(daemon.mount_path("firmware"))
            ws.close()
            harness.wait_unmounted(daemon.mount_path("firmware"), 10)
        else:
            check_equal(ws.wait_closed(10), CLOSE_POLICY, "close code after a wrong password")
    wait_event(daemon, "auth_failed", 'wrong password for user "alice"')


@suite.test
def webfuse2_provider_user_option_answers_getcreds(env):
    daemon = start(env)
    src = env.mkdir("src")
    with open(os.path.join(src, "new.txt"), "w") as f:
        f.write("v2\n")
    os.environ["WEBFUSE_PASSWORD"] = "pw-alice"
    try:
        env.start_webfuse2_provider(daemon, "firmware", src, extra=["--user", "alice"])
        bad = env.start_webfuse2_provider(daemon, "logs", src, extra=["--token", "alice:x"],
                                          wait=False)
    finally:
        del os.environ["WEBFUSE_PASSWORD"]
    check_equal(read(os.path.join(daemon.mount_path("firmware"), "new.txt")), b"v2\n",
                "file read through the mount")
    check_equal(bad.wait(15), 1, "status of the provider with a wrong token")
    check("authentication failed" in bad.log_text(), "its log: %s" % bad.log_text())
    check("logs: the gateway asks for a login: logging in as alice" in bad.log_text() and
          "did not accept the login: check the user and its password" in bad.log_text(),
          "its log says what happened: %s" % bad.log_text())
    check("attached" not in bad.log_text(), "a refused provider said it was attached: %s"
          % bad.log_text())
    # A token that is not USER:PASSWORD: the provider says what form webfused takes.
    bare = env.start_webfuse2_provider(daemon, "logs", src, extra=["--token", "secret"],
                                       wait=False)
    check_equal(bare.wait(15), 1, "status of the provider with a bare token")
    check("sending the token" in bare.log_text() and
          "webfused takes USER:PASSWORD as the token" in bare.log_text(),
          "its log: %s" % bare.log_text())
    # Without a login at all: the provider says what is missing.
    none = env.start_webfuse2_provider(daemon, "logs", src, wait=False)
    check_equal(none.wait(15), 1, "status of the provider without a login")
    check("asks for a login and none was given (--user NAME)" in none.log_text() and
          "did not accept the login: it wants one (--user NAME)" in none.log_text(),
          "its log: %s" % none.log_text())


@suite.test
def webfuse2_user_outside_their_names_is_refused(env):
    daemon = start(env)
    ws = wf2_connect(daemon, "other", {"X-Auth-Token": "alice:pw-alice"})
    try:
        ws.recv_message(10)
        fail("expected a close")
    except wstest.Closed as closed:
        check_equal(closed.code, CLOSE_POLICY, "close code")
        check_equal(closed.reason, 'user "alice" may not attach "other"', "close reason")
    event = wait_event(daemon, "attach_denied", "may not attach")[0]
    check_equal(event["filesystem"], "other", "filesystem of the event")
    check(not harness.is_mounted(daemon.mount_path("other")), "mounted anyway")


# ---- repeated failures --------------------------------------------------------------------------


def mounted_or_closed(ws, path, timeout):
    """Waits until `path` is mounted ("mounted") or the gateway closes `ws` ("closed")."""
    def outcome():
        if harness.is_mounted(path):
            return "mounted"
        if select.select([ws.sock], [], [], 0)[0]:
            first = ws.sock.recv(1, socket.MSG_PEEK)
            if first in (b"", b"\x88"):  # the end, or a close frame
                return "closed"
        return None
    return harness.wait_until(outcome, timeout, what="%s mounted or the connection closed" % path)


def timed_login(daemon, password, source=None):
    """(close code or None when it attached, seconds until the answer)."""
    ws = wf2_connect(daemon, "firmware", {"X-Auth-Token": "alice:" + password}, source=source)
    start = time.monotonic()
    try:
        if password != "pw-alice":
            return ws.wait_closed(90), time.monotonic() - start
        if mounted_or_closed(ws, daemon.mount_path("firmware"), 90) == "closed":
            return ws.wait_closed(10), time.monotonic() - start
        seconds = time.monotonic() - start
        ws.close()
        harness.wait_unmounted(daemon.mount_path("firmware"), 10)
        return None, seconds
    finally:
        ws.abort()


@suite.test(budget=120)
def repeated_failures_delay_that_address_only(env):
    daemon = start(env)
    quick = []
    for _ in range(5):
        code, seconds = timed_login(daemon, "wrong")
        check_equal(code, CLOSE_POLICY, "close code of a failed login")
        quick.append(seconds)
    check(max(quick) < 0.9, "the first five failures were slow already: %r" % quick)
    code, sixth = timed_login(daemon, "wrong")
    check_equal(code, CLOSE_POLICY, "close code of the sixth failure")
    check(sixth >= 0.9, "the sixth failure was answered after %.2f s, not after ~1 s" % sixth)
    code, seventh = timed_login(daemon, "wrong")
    check_equal(code, CLOSE_POLICY, "close code of the seventh failure")
    check(seventh >= 1.9, "the seventh failure was answered after %.2f s, not ~2 s" % seventh)
    # Another address is not slowed down; the right password from the slowed one still waits.
    code, other = timed_login(daemon, "wrong", source="127.0.0.2")
    check_equal(code, CLOSE_POLICY, "close code of a failure from another address")
    check(other < 0.9, "another address waited %.2f s" % other)
    code, right = timed_login(daemon, "pw-alice")
    check_equal(code, None, "the right password after 7 failures attaches (no close)")
    check(right >= 3.5, "a right password after 7 failures was answered after %.2f s" % right)
    code, after = timed_login(daemon, "wrong")
    check_equal(code, CLOSE_POLICY, "close code of a failure after the success")
    check(after < 0.9, "a success did not clear the failures (%.2f s)" % after)
    check("answering in" in daemon.log_text(), "the delay is not logged")


def wrong_logins(daemon, count):
    for _ in range(count):
        code, _ = timed_login(daemon, "wrong")
        check_equal(code, CLOSE_POLICY, "close code of a failed login")


@suite.test(budget=90)
def login_waiting_in_the_throttle_outlives_the_idle_timeout(env):
    """The idle timer counts the provider's silence, not the gateway's delay: a login answered
    after a delay longer than --idle-timeout still gets its answer (and attaches). Otherwise,
    from the failure whose delay passes the idle time on, the address could never log in."""
    daemon = start(env, extra=["--idle-timeout", "2"])
    # Without a login out, the idle time still ends a connection: here after a failed one.
    fake = env.fake(daemon)
    started = time.monotonic()
    check_denied(authenticate(fake, "alice", "wrong"), "wrong password")
    code, reason = fake.wait_close(10)
    took = time.monotonic() - started
    check_equal((code, reason), (CLOSE_POLICY, "no filesystem attached within 2 s"),
                "close of a connection that logged in wrongly and stayed silent")
    check(1.8 <= took < 4, "closed %.2f s after it opened, not ~2 s" % took)
    wrong_logins(daemon, 6)  # 5 free ones (with the JSON one), then 1 s, 2 s
    code, right = timed_login(daemon, "pw-alice")  # after 4 s, twice the idle time
    check_equal(code, None, "the right password after 7 failures attaches")
    check(right >= 3.5, "it was answered after %.2f s, not after the 4 s delay" % right)
    check("no filesystem attached within 2 s" not in daemon.log_text().split("answering in 4000")[1],
          "a connection was closed as idle while its login waited:\n%s" % daemon.log_text())


@suite.test(budget=90)
def parallel_attempts_from_one_address_queue_up(env):
    """Attempts at once from one address do not wait out one delay side by side: each waits its
    delay after the turn of the one before it (1 s, then 2 s, 4 s, 8 s, 16 s after that), and
    one whose turn would come after more than the longest delay (60 s) is refused at once."""
    daemon = start(env)
    wrong_logins(daemon, 5)
    started = time.monotonic()
    sockets = [wf2_connect(daemon, "firmware", {"X-Auth-Token": "alice:wrong"}) for _ in range(6)]
    try:
        # The sixth: 1+2+4+8+16 s are taken, its turn would be 32 s after that.
        try:
            sockets[5].recv_message(10)
            fail("the sixth attempt at once got a message instead of a close")
        except wstest.Closed as closed:
            check_equal((closed.code, closed.reason),
                        (CLOSE_POLICY, "too many login attempts from this address: try again later"),
                        "close of the sixth attempt at once")
        check(time.monotonic() - started < 0.9, "the sixth attempt was not refused at once")
        answered = []
        for ws in sockets[:3]:
            check_equal(ws.wait_closed(30), CLOSE_POLICY, "close code of a queued attempt")
            answered.append(time.monotonic() - started)
        for got, least in zip(answered, (0.9, 2.9, 6.9)):
            check(got >= least, "queued attempts answered after %r s, not 1, 3 and 7 s"
                  % [round(a, 2) for a in answered])
        check(answered[0] < 2.5 and answered[1] < 4.5,
              "queued attempts answered late: %r" % answered)
    finally:
        for ws in sockets:
            ws.abort()  # the last two would wait 15 and 31 s: they are abandoned
    wait_event(daemon, "auth_failed", "too many login attempts from this address at once")


# ---- the log -------------------------------------------------------------------------------------

LOG_LINES = [
    ("attach", re.compile(r"session (\d+): attached (\S+) at \S+ \(remote ([^)]+)\)$")),
    ("detach", re.compile(r"session (\d+): detached (\S+) \(remote ([^)]+)\)$")),
    ("attach_failed", re.compile(r"session (\d+): attaching (\S+) at \S+ failed \(remote ([^)]+)\): ")),
    ("auth_failed", re.compile(r"session (\d+): authentication failed (?:for (\S+) )?from (\S+): ")),
]


def log_events(text):
    """[(kind, session id, filesystem or None, remote)] of the daemon's attach, detach, failed
    attach and failed login lines."""
    found = []
    for line in text.splitlines():
        for kind, pattern in LOG_LINES:
            m = pattern.search(line)
            if m:
                found.append((kind, int(m.group(1)), m.group(2), m.group(3)))
    return found


@suite.test
def log_has_one_line_per_attach_detach_and_failed_login(env):
    """Each attach, detach and failed login is one line of the daemon's log with the session
    id, the filesystem name where it is known (webfuse2 names it in the URL before logging in)
    and the provider's address; the lines match the history event for event."""
    blocked = env.path("blocked")
    daemon = start(env, extra=["--filesystem", "firmware", "--filesystem", "logs",
                               "--filesystem", "broken=%s/below" % blocked])
    # Made at start; a file in the place of its parent makes the attach fail.
    shutil.rmtree(blocked)
    open(blocked, "w").close()
    ws = wf2_connect(daemon, "firmware", {"X-Auth-Token": "alice:pw-alice"})
    harness.wait_mounted(daemon.mount_path("firmware"))
    ws.close()
    harness.wait_unmounted(daemon.mount_path("firmware"), 10)
    ws = wf2_connect(daemon, "logs", {"X-Auth-Token": "alice:wrong"})
    check_equal(ws.wait_closed(10), CLOSE_POLICY, "close code of a wrong password")
    fake = env.fake(daemon)
    check_denied(authenticate(fake, "alice", "wrong"), "JSON: wrong password")
    check_denied(fake.call("authenticate", ["certificate", {}]), "JSON: unknown credentials")
    check_equal(authenticate(fake, "bob", "pw-bob").get("result"), {}, "JSON: bob logs in")
    check(isinstance(fake.add_filesystem("broken", {}).get("error"), dict),
          "a mount point below a file cannot be mounted")
    fake.close()

    def history():
        kinds = [k for k, _ in LOG_LINES]
        return [(e["kind"], e["session"], e.get("filesystem"))
                for e in events_all(daemon) if e["kind"] in kinds]

    expected = [("attach", 1, "firmware"), ("detach", 1, "firmware"),
                ("auth_failed", 2, "logs"), ("auth_failed", 3, None), ("auth_failed", 3, None),
                ("attach_failed", 3, "broken")]
    harness.wait_until(lambda: history() == expected, 10,
                       what="the history %r to be %r" % (history(), expected))
    logged = log_events(daemon.log_text())
    check_equal([(k, s, f) for k, s, f, _ in logged], expected,
                "attach, detach and failure lines of the log:\n%s" % daemon.log_text())
    for kind, session, _, remote in logged:
        check("127.0.0.1" in remote, "%s line of session %d: remote %r" % (kind, session, remote))


# ---- start-up -----------------------------------------------------------------------------------


@suite.test
def malformed_users_file_stops_the_start(env):
    path = env.path("bad-users")
    with open(path, "w") as f:
        f.write("# fine\nalice:$6$salt$abc:firmware\nbob:$1$md5$xyz:*\n")
    daemon = env.start_daemon(extra=["--auth-file", path], wait=False)
    check_equal(daemon.wait(10), 2, "status of a start with a malformed users file")
    check("%s:3:" % path in daemon.log_text(), "error names file and line: %s"
          % daemon.log_text())


@suite.test
def without_auth_file_anyone_attaches_and_network_bind_warns(env):
    daemon = env.start_daemon(extra=["--bind", "0.0.0.0"])
    fake = env.fake(daemon)
    check_equal(authenticate(fake, "anyone", "anything").get("result"), {},
                "authenticate without users")
    fake.attach("free", {"f": File(b"x")})
    harness.wait_until(lambda: "without --auth-file" in daemon.log_text(), 5,
                       what="the warning about a network bind without --auth-file")


if __name__ == "__main__":
    suite.main()
