#!/usr/bin/env python3
"""Bad input from providers (issue 2, "Failure behaviour"): every one of them ends in a clear error
response or a close with a reason; the daemon and the other sessions never notice.

Each test runs a daemon (--timeout 2, --max-message 2 MiB) with a "witness" fake provider whose
mount must still list and read correctly after the bad input."""

import base64
import errno
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, check_errno, fail  # noqa: E402
from fakeprovider import DEFAULT, Dir, File  # noqa: E402

suite = harness.Suite("test_bad_input")

MAX_MESSAGE = 2 * 1024 * 1024
WITNESS_DATA = bytes(range(256)) * 1200  # 300 KiB: several FUSE reads
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


def witness_tree():
    return {"w.bin": File(WITNESS_DATA, mode=0o640), "wdir": Dir({"inner": File(b"inner\n")})}


def start(env, timeout=2):
    daemon = env.start_daemon(timeout=timeout, max_message=MAX_MESSAGE)
    witness = env.fake(daemon)
    witness.attach("witness", witness_tree())
    return daemon, witness


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def check_healthy(daemon, witness):
    """The daemon runs and the witness session still lists and reads correctly."""
    check(daemon.alive(), "webfused died (status %s)" % daemon.returncode())
    mp = daemon.mount_path("witness")
    listing = harness.bounded(lambda: sorted(os.listdir(mp)), 10, "listing the witness mount")
    check_equal(listing, ["w.bin", "wdir"], "witness listing")
    data = harness.bounded(lambda: read_file(os.path.join(mp, "w.bin")), 10, "reading witness")
    check(data == WITNESS_DATA, "witness file differs (%d bytes read)" % len(data))
    check(not witness.closed.is_set(), "the witness connection was closed (code %r, reason %r)"
          % (witness.close_code, witness.close_reason))
    check_equal(witness.errors, [], "protocol errors seen by the witness")


def check_quiet(fake, seconds=0.5):
    """Nothing arrives on `fake` for a while: no answer, no close."""
    time.sleep(seconds)
    check_equal(fake.responses_left(), {}, "unexpected answers")
    check(not fake.closed.is_set(), "connection closed (code %r, reason %r)"
          % (fake.close_code, fake.close_reason))


def check_error(answer, request_id, code, what):
    check(isinstance(answer, dict) and isinstance(answer.get("error"), dict),
          "%s: expected an error answer, got %r" % (what, answer))
    check_equal(answer.get("id"), request_id, "%s: id of the answer" % what)
    check_equal(answer["error"].get("code"), code, "%s: error code (answer %r)" % (what, answer))
    check("result" not in answer, "%s: error answer also has a result: %r" % (what, answer))


def check_session_up(daemon, fake, name):
    """A valid add_filesystem on the same connection succeeds and its mount reads."""
    fake.attach(name, {"ok.txt": File(b"still up\n")})
    data = harness.bounded(lambda: read_file(os.path.join(daemon.mount_path(name), "ok.txt")),
                           10, "reading %s/ok.txt" % name)
    check_equal(data, b"still up\n", "content of %s/ok.txt" % name)


def check_closed_with_reason(fake, codes, what, timeout=5.0):
    code, reason = fake.wait_close(timeout)
    check(fake.got_close_frame, "%s: connection ended without a close frame" % what)
    check(code in codes, "%s: close code %r, expected one of %r (reason %r)"
          % (what, code, codes, reason))
    check(bool(reason), "%s: close frame without a reason (code %r)" % (what, code))
    return code, reason


def ls_a(path):
    """`ls -a1` of a directory, unsorted by us: duplicates stay visible."""
    out = harness.bounded(lambda: subprocess.run(["ls", "-a1", path], capture_output=True,
                                                 timeout=10), 15, "ls -a " + path)
    if out.returncode != 0:
        fail("ls -a %s failed: %s" % (path, out.stderr.decode(errors="replace")))
    return out.stdout.decode("utf-8", "surrogateescape").splitlines()


# ---- malformed messages -------------------------------------------------------------------------

MALFORMED = [
    ("truncated object", b'{"method": "add_filesystem", "params": ["x"], "id": 1'),
    ("not JSON", b"this is not json"),
    ("array", b'[1, 2, 3]'),
    ("string", b'"add_filesystem"'),
    ("number", b"42"),
    ("empty object", b"{}"),
    ("empty message", b""),
    ("trailing garbage", b'{"method": "authenticate", "params": [], "id": 1} {"x"'),
    ("float id", b'{"method": "add_filesystem", "params": ["fl"], "id": 1.5}'),
    ("deep nesting", b"[" * 100000 + b"]" * 100000),
    ("bad escape", b'{"method": "add_filesystem", "params": ["\\q"], "id": 1}'),
    ("unpaired surrogate escape", b'{"method": "add_filesystem", "params": ["\\ud800"], "id": 1}'),
]


def answer_or_close(fake, what):
    """A malformed message must get an error answer or a close frame with a reason."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = fake.responses_left()
        if left:
            answers = [a for v in left.values() for a in v]
            check(all(isinstance(a.get("error"), dict) and isinstance(a["error"].get("code"), int)
                      and a["error"]["code"] != 0 for a in answers),
                  "%s: answered with something other than an error: %r" % (what, answers))
            return "answered %r" % answers
        if fake.closed.is_set():
            check_closed_with_reason(fake, (CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_PAYLOAD,
                                            CLOSE_POLICY), what)
            return "closed %r %r" % (fake.close_code, fake.close_reason)
        time.sleep(0.02)
    fail("%s: neither an error answer nor a close within 5 s" % what)


@suite.test(budget=90)
def malformed_json_gets_error_or_close_with_reason(env):
    daemon, witness = start(env)
    for what, payload in MALFORMED:
        fake = env.fake(daemon)
        fake.send_raw(payload)
        answer_or_close(fake, what)
        fake.abort()
    check_healthy(daemon, witness)


@suite.test
def invalid_utf8_text_frame_is_closed(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.send_raw(b'{"method": "add_filesystem", "params": ["\xff\xfe"], "id": 1}')
    check_closed_with_reason(fake, (CLOSE_INVALID_PAYLOAD,), "invalid UTF-8")
    check_healthy(daemon, witness)


@suite.test
def malformed_json_from_attached_session_only_ends_that_session(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("victim", {"f": File(b"data")})
    mp = daemon.mount_path("victim")
    check(harness.is_mounted(mp), "victim not mounted")
    fake.send_raw(b'{"result": {"inode": 2, ')
    answer_or_close(fake, "malformed answer from an attached session")
    if fake.closed.is_set():
        harness.wait_unmounted(mp, 2.0)
    check_healthy(daemon, witness)


@suite.test
def wrong_types_in_add_filesystem_params_answer_code_5(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    cases = [[42], [None], [True], [["a"]], [{"name": "a"}], [], [1.5]]
    for i, params in enumerate(cases):
        request_id = 100 + i
        answer = fake.call("add_filesystem", params, request_id)
        check_error(answer, request_id, 5, "add_filesystem params %r" % (params,))
    check_equal(harness.mounts_under(daemon.mount_root), [("%s/witness" % daemon.mount_root,
                                                           "fuse.webfuse", "webfuse:witness")],
                "mounts after refused add_filesystem")
    check_session_up(daemon, fake, "after_wrong_types")
    check_healthy(daemon, witness)


@suite.test
def add_filesystem_without_params_array_is_refused(env):
    daemon, witness = start(env)
    for what, msg in [("params a string", '{"method": "add_filesystem", "params": "x", "id": 9}'),
                      ("params missing", '{"method": "add_filesystem", "id": 9}'),
                      ("params an object", '{"method": "add_filesystem", "params": {}, "id": 9}'),
                      ("method a number", '{"method": 7, "params": ["x"], "id": 9}'),
                      ("id a string", '{"method": "add_filesystem", "params": ["x"], "id": "9"}')]:
        fake = env.fake(daemon)
        fake.send_raw(msg)
        answer_or_close(fake, what)
        check_equal(harness.mounts_under(daemon.mount_root),
                    [("%s/witness" % daemon.mount_root, "fuse.webfuse", "webfuse:witness")],
                    "mounts after %s" % what)
        fake.abort()
    check_healthy(daemon, witness)


@suite.test
def unknown_method_answers_code_2(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    for i, method in enumerate(["frobnicate", "lookup", "read", "ADD_FILESYSTEM", ""]):
        answer = fake.call(method, ["witness", 1], 500 + i)
        check_error(answer, 500 + i, 2, "unknown method %r" % method)
    # A notification (no id) cannot be answered: silence, and the session stays.
    fake.send_json({"method": "frobnicate", "params": []})
    check_quiet(fake)
    check_session_up(daemon, fake, "after_unknown")
    check_healthy(daemon, witness)


@suite.test
def response_with_unknown_id_is_dropped(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("mine", {"f.txt": File(b"mine\n")})
    for answer in [{"result": {"inode": 2, "mode": 420, "type": "file", "size": 1}, "id": 999999},
                   {"error": {"code": 1}, "id": 424242},
                   {"result": {"data": "", "format": "identity", "count": 0}, "id": 2 ** 40},
                   {"result": {}, "id": 0},
                   {"result": {}, "id": -1},
                   {"result": [], "id": 2 ** 63 - 1}]:
        fake.send_json(answer)
    check_quiet(fake)
    data = harness.bounded(lambda: read_file(os.path.join(daemon.mount_path("mine"), "f.txt")),
                           10, "reading mine/f.txt")
    check_equal(data, b"mine\n", "mine/f.txt after unknown answers")
    check_healthy(daemon, witness)


# ---- sizes and frames ---------------------------------------------------------------------------


def padded_request(size, request_id):
    """An unknown-method request of exactly `size` bytes."""
    head = '{"method": "padding", "params": ["'
    tail = '"], "id": %d}' % request_id
    text = head + "p" * (size - len(head) - len(tail)) + tail
    assert len(text) == size
    return text


@suite.test
def oversized_frame_is_closed_with_1009(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("big", {"f": File(b"x")})
    mp = daemon.mount_path("big")
    try:
        fake.send_raw(padded_request(3 * 1024 * 1024, 1))
    except OSError:
        pass  # the gateway may stop reading once it has closed
    check_closed_with_reason(fake, (CLOSE_TOO_BIG,), "3 MiB frame")
    harness.wait_unmounted(mp, 2.0)
    check_healthy(daemon, witness)


@suite.test
def message_of_exactly_max_message_is_accepted_one_more_byte_is_not(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.send_raw(padded_request(MAX_MESSAGE, 7))
    answer = fake.wait_response(7, 10)
    check_error(answer, 7, 2, "request of exactly --max-message bytes")
    try:
        fake.send_raw(padded_request(MAX_MESSAGE + 1, 8))
    except OSError:
        pass
    check_closed_with_reason(fake, (CLOSE_TOO_BIG,), "request of --max-message + 1 bytes")
    check_healthy(daemon, witness)


@suite.test
def oversized_fragmented_message_is_closed_with_1009(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    text = padded_request(3 * 1024 * 1024, 1).encode()
    try:
        fake.send_fragments([text[:1024 * 1024], text[1024 * 1024:2 * 1024 * 1024],
                             text[2 * 1024 * 1024:]])
    except OSError:
        pass
    check_closed_with_reason(fake, (CLOSE_TOO_BIG,), "3 MiB in three fragments")
    check_healthy(daemon, witness)


@suite.test
def fragmented_messages_are_reassembled(env):
    daemon, witness = start(env)
    fake = env.fake(daemon, fragment_replies=3)  # every answer to the gateway in 3 frames, too
    fake.filesystems.clear()
    from fakeprovider import FakeFS, split
    data = os.urandom(700 * 1024)
    fake.filesystems["frag"] = FakeFS({"data.bin": File(data), "d": {"e": File(b"e")}})
    text = json.dumps({"method": "add_filesystem", "params": ["frag"], "id": 5}).encode()
    fake.send_fragments(split(text, 3))
    answer = fake.wait_response(5, 10)
    check_equal(answer, {"result": {"id": "frag"}, "id": 5}, "answer to fragmented request")
    mp = daemon.mount_path("frag")
    check_equal(sorted(os.listdir(mp)), ["d", "data.bin"], "listing of frag")
    got = harness.bounded(lambda: read_file(os.path.join(mp, "data.bin")), 20, "reading frag")
    check(got == data, "frag/data.bin differs: %d bytes, expected %d" % (len(got), len(data)))
    # A ping between the fragments of one message is allowed (RFC 6455 5.4).
    text = json.dumps({"method": "frobnicate", "params": [], "id": 6}).encode()
    parts = split(text, 3)
    fake.send_frame(wstest.OP_TEXT, parts[0], fin=False)
    fake.send_frame(wstest.OP_PING, b"between")
    fake.send_frame(wstest.OP_CONT, parts[1], fin=False)
    fake.send_frame(wstest.OP_CONT, parts[2], fin=True)
    check_error(fake.wait_response(6, 10), 6, 2, "fragmented request with a ping inside")
    check_equal(fake.errors, [], "protocol errors seen by the fragmenting fake")
    check_healthy(daemon, witness)


# ---- names --------------------------------------------------------------------------------------

HOSTILE_NAMES = ["..", ".", "a/b", "", "x" * 65, "../escape", "/abs", "a\\b", "a b", "caf\u00e9",
                 "new\nline", "*", "~"]


@suite.test
def hostile_names_are_refused_with_code_5(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    parent = os.path.dirname(daemon.mount_root)
    before_parent = sorted(os.listdir(parent))
    before_root = sorted(os.listdir(daemon.mount_root))
    for i, name in enumerate(HOSTILE_NAMES):
        answer = fake.add_filesystem(name, {"f": File(b"x")}, request_id=200 + i)
        check_error(answer, 200 + i, 5, "add_filesystem(%r)" % name)
    check_equal(sorted(os.listdir(parent)), before_parent, "entries beside the mount root")
    check_equal(sorted(os.listdir(daemon.mount_root)), before_root, "entries in the mount root")
    check_equal(len(harness.mounts_under(env.dir)), 1, "mounts (only the witness)")
    # The session stays up, and the longest valid name works.
    longest = "L" * 64
    fake.attach(longest, {"f": File(b"long name\n")})
    check_equal(read_file(os.path.join(daemon.mount_path(longest), "f")), b"long name\n",
                "content under a 64-character name")
    check_session_up(daemon, fake, "a.b-c_D9")
    check_healthy(daemon, witness)


@suite.test
def taken_name_is_refused_with_code_1(env):
    """Code 1, and a message that says why: the code alone also means a mount that failed."""
    daemon, witness = start(env)
    owner = env.fake(daemon)
    owner.attach("shared", {"who": File(b"owner\n")})
    other = env.fake(daemon)
    answer = other.add_filesystem("shared", {"who": File(b"intruder\n")}, request_id=31)
    check_error(answer, 31, 1, "name mounted by another session")
    check_equal(answer["error"].get("message"), 'filesystem name "shared" is taken',
                "the error's message")
    answer = owner.add_filesystem("shared", request_id=32)
    check_error(answer, 32, 1, "name mounted by the same session")
    answer = other.add_filesystem("witness", request_id=33)
    check_error(answer, 33, 1, "the witness's name")
    check_equal(read_file(os.path.join(daemon.mount_path("shared"), "who")), b"owner\n",
                "content of the taken name")
    check_session_up(daemon, other, "other_name")
    check_session_up(daemon, owner, "owner_second")
    check_healthy(daemon, witness)


@suite.test
def refused_names_reach_the_log_and_history_escaped(env):
    """A refused name may hold a newline, a terminal escape or bytes that are not UTF-8: the log
    gets it escaped (no forged line), so does the webfuse2 close reason (valid UTF-8), and the
    history's events keep the name, escaped and at most 4 KiB of it, for every client of the
    admin API."""
    daemon, witness = start(env)
    fake = env.fake(daemon)
    forged = "x\n2026-12-05T00:00:00.000Z webfused info: forged"
    answer = fake.add_filesystem(forged, {"f": File(b"x")}, request_id=41)
    check_error(answer, 41, 5, "add_filesystem of a name with a newline")
    answer = fake.add_filesystem("y" * 100000, {"f": File(b"x")}, request_id=42)
    check_error(answer, 42, 5, "add_filesystem of a name of 100000 bytes")
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/a%1B[31mred%e9", subprotocol="webfuse2")
    try:
        check_equal(ws.close_frame(5), (1008, 'invalid filesystem name "a\\x1b[31mred\\xe9"'),
                    "close frame for a name with an escape and a Latin-1 byte")
    finally:
        ws.abort()

    def refusals():
        events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
        found = [e for e in events if e["kind"] == "attach_failed"]
        return found if len(found) == 3 else None

    events = harness.wait_until(refusals, 5.0, what="the three refusals in the history")
    check_equal(sorted(e.get("filesystem") for e in events),
                ["a\\x1b[31mred\\xe9", forged.replace("\n", "\\x0a"), "y" * 4096 + "..."],
                "names of the refused filesystems in the history")
    with open(daemon.log_path, "rb") as f:
        log = f.read()
    check(b"\x1b" not in log and b"\xe9" not in log, "raw escape or Latin-1 byte in the log")
    log.decode("utf-8")  # raises on bytes that are not UTF-8
    forged_lines = [l for l in log.splitlines() if l.startswith(b"2026-12-05T00:00:00.000Z")]
    check_equal(forged_lines, [], "log lines forged by a name")
    check(b'refused filesystem "x\\x0a2026-12-05T00:00:00.000Z' in log,
          "the refusal's log line shows the name escaped")
    check_healthy(daemon, witness)



@suite.test
def webfuse2_url_too_long_to_read_is_refused(env):
    """A URL the gateway cannot hold whole is refused with a reason; it once attached under a
    name of the gateway's choosing (fs-N) instead."""
    daemon, witness = start(env)
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/" + "d" * 600 + "/ok",
                           subprotocol="webfuse2")
    try:
        check_equal(ws.close_frame(5), (1008, "the URL is longer than 511 bytes"),
                    "close frame for a URL of 604 bytes")
    finally:
        ws.abort()
    names = [f["name"] for f in daemon.api_ok("GET", "/api/v1/filesystems")["filesystems"]]
    check(not any(n.startswith("fs-") for n in names), "attached under a chosen name: %r" % names)
    harness.wait_until(lambda: [e for e in daemon.api_ok("GET", "/api/v1/events")["events"]
                                if e["kind"] == "attach_failed"
                                and "longer than 511" in (e.get("detail") or "")],
                       5.0, what="the refusal in the history")
    check_healthy(daemon, witness)


# ---- bad answers to the gateway's requests ------------------------------------------------------


def bad_read_answer(kind, msg):
    """A read answer that breaks the protocol in the way `kind` names."""
    data = b"0123456789"[:msg["params"][4]]
    if kind == "count_plus":
        return {"result": {"data": base64.b64encode(data).decode(), "format": "base64",
                           "count": len(data) + 1}}
    if kind == "count_minus":
        return {"result": {"data": base64.b64encode(data).decode(), "format": "base64",
                           "count": len(data) - 1}}
    if kind == "identity_count":
        return {"result": {"data": data.decode(), "format": "identity",
                           "count": len(data) + 3}}
    if kind == "bad_base64":
        return {"result": {"data": "!!not base64!!", "format": "base64", "count": 10}}
    if kind == "bad_format":
        return {"result": {"data": data.decode(), "format": "rot13", "count": len(data)}}
    if kind == "no_data":
        return {"result": {"format": "identity", "count": len(data)}}
    if kind == "string_count":
        return {"result": {"data": data.decode(), "format": "identity",
                           "count": str(len(data))}}
    if kind == "too_much":
        more = b"z" * (msg["params"][4] + 10)
        return {"result": {"data": base64.b64encode(more).decode(), "format": "base64",
                           "count": len(more)}}
    raise AssertionError(kind)


READ_KINDS = ["count_plus", "count_minus", "identity_count", "bad_base64", "bad_format",
              "no_data", "string_count", "too_much"]


@suite.test
def bad_read_answers_give_eio(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    tree = {k: File(b"0123456789") for k in READ_KINDS}
    tree["good"] = File(b"0123456789")
    fake.attach("bad", tree)
    kind_of = {fake.filesystems["bad"].root.children[k].inode: k for k in READ_KINDS}

    def read(f, msg):
        kind = kind_of.get(msg["params"][1])
        return bad_read_answer(kind, msg) if kind else DEFAULT

    fake.handlers["read"] = read
    mp = daemon.mount_path("bad")
    for kind in READ_KINDS:
        check_errno(lambda: harness.bounded(lambda: read_file(os.path.join(mp, kind)), 10,
                                            "reading " + kind),
                    errno.EIO, "read answer %s" % kind)
    check_equal(read_file(os.path.join(mp, "good")), b"0123456789", "good file beside bad ones")
    check_equal(fake.errors, [], "protocol errors")
    check_healthy(daemon, witness)


@suite.test
def readdir_answer_with_dots_and_slashes_lists_sane_entries(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("dirs", {"good": File(b"g"), "also_good": Dir({"x": File(b"x")})})
    fs = fake.filesystems["dirs"]

    def readdir(f, msg):
        if msg["params"][1] != 1:
            return DEFAULT
        return {"result": [{"name": ".", "inode": 1}, {"name": "..", "inode": 999},
                           {"name": "good", "inode": fs.root.children["good"].inode},
                           {"name": "a/b", "inode": 77}, {"name": "/", "inode": 78},
                           {"name": "../../etc", "inode": 79}, {"name": ".", "inode": 5},
                           {"name": "..", "inode": 1},
                           {"name": "also_good", "inode": fs.root.children["also_good"].inode}]}

    fake.handlers["readdir"] = readdir
    mp = daemon.mount_path("dirs")
    check_equal(sorted(ls_a(mp)), [".", "..", "also_good", "good"], "ls -a of the root")
    check_equal(sorted(os.listdir(mp)), ["also_good", "good"], "os.listdir of the root")
    # The sub-directory keeps its own (default) listing, with . and .. once each.
    check_equal(sorted(ls_a(os.path.join(mp, "also_good"))), [".", "..", "x"],
                "ls -a of also_good")
    check_healthy(daemon, witness)


def attr_answer(kind, inode):
    base = {"inode": inode, "mode": 0o644, "type": "file", "size": 3, "mtime": 1}
    if kind == "type_symlink":
        base["type"] = "symlink"
    elif kind == "type_empty":
        base["type"] = ""
    elif kind == "type_number":
        base["type"] = 1
    elif kind == "type_missing":
        del base["type"]
    elif kind == "inode_string":
        base["inode"] = str(inode)
    elif kind == "inode_missing":
        del base["inode"]
    elif kind == "size_float":
        base["size"] = 1.5
    elif kind == "mode_string":
        base["mode"] = "0644"
    elif kind == "result_array":
        return {"result": [base]}
    elif kind == "result_string":
        return {"result": "file"}
    elif kind == "inode_root":
        base["inode"] = 1
    else:
        raise AssertionError(kind)
    return {"result": base}


ATTR_KINDS = ["type_symlink", "type_empty", "type_number", "type_missing", "inode_string",
              "inode_missing", "size_float", "mode_string", "result_array", "result_string",
              "inode_root"]


@suite.test
def bad_attribute_answers_give_eio(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    tree = {k: File(b"abc") for k in ATTR_KINDS}
    tree["fine"] = File(b"abc")
    fake.attach("attrs", tree)
    fs = fake.filesystems["attrs"]

    def lookup(f, msg):
        name = msg["params"][2]
        if name in ATTR_KINDS:
            return attr_answer(name, fs.root.children[name].inode)
        return DEFAULT

    fake.handlers["lookup"] = lookup
    mp = daemon.mount_path("attrs")
    for kind in ATTR_KINDS:
        check_errno(lambda: harness.bounded(lambda: os.stat(os.path.join(mp, kind)), 10,
                                            "stat " + kind),
                    errno.EIO, "lookup answer %s" % kind)
    st = os.stat(os.path.join(mp, "fine"))
    check_equal((st.st_size, st.st_mode), (3, 0o100644), "size and mode of the fine file")
    check_healthy(daemon, witness)


@suite.test
def getattr_answer_with_unknown_type_gives_eio(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("gattr", {"f": File(b"abc")})
    mp = daemon.mount_path("gattr")
    st = os.stat(mp)
    check(st.st_mode & 0o170000 == 0o040000, "root is a directory: %o" % st.st_mode)
    fake.handlers["getattr"] = lambda f, m: {"result": {"mode": 0o755, "type": "socket"}}
    time.sleep(1.2)  # attributes are cached for one second
    check_errno(lambda: harness.bounded(lambda: os.stat(mp), 10, "stat of the root"),
                errno.EIO, "getattr answer with type socket")
    check_healthy(daemon, witness)


ERROR_CODES = [(1, errno.EIO), (2, errno.ENOSYS), (3, errno.ETIMEDOUT), (4, errno.EBUSY),
               (5, errno.EIO), (101, errno.ENOENT), (102, errno.EACCES), (9999, errno.EIO)]


@suite.test
def error_answers_map_to_errno(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    fake.attach("codes", {})

    def lookup(f, msg):
        name = msg["params"][2]
        if name.startswith("code"):
            return {"error": {"code": int(name[4:])}}
        return DEFAULT

    fake.handlers["lookup"] = lookup
    mp = daemon.mount_path("codes")
    for code, expected in ERROR_CODES:
        check_errno(lambda: harness.bounded(lambda: os.stat(os.path.join(mp, "code%d" % code)),
                                            10, "stat"), expected, "error code %d" % code)
    check_healthy(daemon, witness)


@suite.test
def names_are_escaped_and_unescaped(env):
    daemon, witness = start(env)
    fake = env.fake(daemon)
    names = ["caf\u00e9", "quote\"back\\slash", "tab\there", "\u65e5\u672c", "emoji\U0001F600",
             "ctl\x01"]
    fake.attach("utf", {n: File(n.encode("utf-8")) for n in names})
    mp = daemon.mount_path("utf")
    check_equal(sorted(os.listdir(mp)), sorted(names), "listing with non-ASCII names")
    for n in names:
        check_equal(read_file(os.path.join(mp, n)), n.encode("utf-8"), "content of %r" % n)
    # A name that is not UTF-8 cannot be sent: ENOENT without asking the provider.
    lookups = len(fake.requests_of("lookup"))
    check_errno(lambda: os.stat(os.path.join(mp.encode(), b"bad\xff\xfename")), errno.ENOENT,
                "stat of a non-UTF-8 name")
    check_equal(len(fake.requests_of("lookup")), lookups, "lookups sent for a non-UTF-8 name")
    check_equal(fake.errors, [], "protocol errors (invalid JSON from the gateway?)")
    check_healthy(daemon, witness)


@suite.test
def connection_without_subprotocol_speaks_json(env):
    daemon, witness = start(env)
    fake = env.fake(daemon, subprotocol=None)
    fake.attach("plain", {"f": File(b"plain\n")})
    check_equal(read_file(os.path.join(daemon.mount_path("plain"), "f")), b"plain\n",
                "content over a connection without subprotocol")
    check_healthy(daemon, witness)


if __name__ == "__main__":
    suite.main()
