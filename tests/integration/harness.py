"""Shared helpers for webfuse's integration tests (Python 3 standard library only).

What a test file gets from here:
  - `Suite`: a tiny runner. Named test functions, each run with a fresh `Env`; each prints
    PASS/FAIL; the run ends with "N passed, M failed" alone on a line and a non-zero exit when any
    test failed. Exits with 77 (skipped) unless running as root with /dev/fuse; with
    WEBFUSE_REQUIRE_ALL=1 a skip is a failure (`skip()`).
  - `Env`: one test's world: a temporary directory under /tmp with a mount root, a free port,
    `webfused` and `webfuse-provider` processes (stderr captured to log files that are printed on
    failure), fake providers, and a teardown that stops every process it started with SIGTERM
    (one that needs SIGKILL, or whose log has a sanitizer report, fails the test) and lazily
    unmounts whatever is left under its directory.
  - mount helpers that poll /proc/self/mountinfo, and `bounded()` to run a file system call that
    might hang in a thread with a time limit.
  - `Terminal`: a program on a pseudo-terminal of its own, for what it asks a person (passwords).
  - for read-write tests: `Env.start_webfuse2_provider` (one directory, --path, optionally
    --read-only; $WEBFUSE2_PROVIDER_CMD can name another webfuse2 provider, e.g. pyprovider.py),
    `outcome()` (result or errno name, to compare a mount with a reference directory),
    `entry_state`/`tree_state`/`tree_diff`/`check_same_tree`, and `renameat2`/`utimensat`.

  - the admin API: every daemon gets a free admin port, its own token file and registry database
    under the test's directory (unless told otherwise), and `Daemon.api()` speaks HTTP to it.

Every wait here is bounded. Binaries come from the environment variables WEBFUSED,
WEBFUSE_PROVIDER and WEBFUSECTL (ctest sets them), else from <repo>/build/. Children get SIGTERM when the runner
dies; dead mounts left by a runner that was killed outright are unmounted by the next run.
Fake providers (scriptable, in-process) are in fakeprovider.py, over wstest.py's client.
"""

import errno
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# How long a test may run before its watchdog kills everything it started (which also unblocks any
# thread stuck in a FUSE call: a dead daemon aborts its FUSE connections).
DEFAULT_TEST_BUDGET = 60.0

SKIP_EXIT = 77
# With WEBFUSE_REQUIRE_ALL=1 (scripts/test.sh as root, .ci/run) nothing may be skipped: what
# would be a skip (exit 77, which ctest counts as passing) fails instead.
REQUIRE_ALL_VARIABLE = "WEBFUSE_REQUIRE_ALL"


class TestFailure(AssertionError):
    pass


def fail(message):
    raise TestFailure(message)


def check_equal(actual, expected, what="value"):
    if actual != expected:
        fail("%s: expected %r, got %r" % (what, expected, actual))


def check(condition, message):
    if not condition:
        fail(message)


def errno_name(code):
    if code is None:
        return "no error"
    return "%s (%d)" % (errno.errorcode.get(code, "?"), code)


def check_errno(fn, expected_errno, what):
    """Calls fn(); it must raise OSError with exactly `expected_errno`. Returns the exception."""
    try:
        result = fn()
    except OSError as e:
        if e.errno == expected_errno:
            return e
        got = e
    else:
        got = None
    if got is not None:
        fail("%s: expected %s, got %s (%s)" % (what, errno_name(expected_errno),
                                                errno_name(got.errno), got))
    fail("%s: expected %s, but it succeeded (%r)" % (what, errno_name(expected_errno),
                                                     _short(result)))


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate() until it is true; returns its value or raises TestFailure after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def bounded(fn, timeout, what="call"):
    """Runs fn() in a daemon thread; returns its result, re-raises its exception, or raises
    TestFailure when it does not finish within `timeout` seconds (the thread is left behind; the
    test's teardown kills the daemon, which releases it)."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="bounded:" + what)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fail("%s did not finish within %.1f s (hung?)" % (what, timeout))
    if "error" in box:
        raise box["error"]
    return box.get("result")


def timed(fn):
    """Returns (result or exception, seconds)."""
    start = time.monotonic()
    try:
        result = fn()
    except Exception as e:
        result = e
    return result, time.monotonic() - start


# ---- mounts -------------------------------------------------------------------------------------

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field):
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts():
    """[(mountpoint, fstype, source)] from /proc/self/mountinfo."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            tail = right.split()
            if len(fields) < 5 or len(tail) < 2:
                continue
            result.append((_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return result


def is_mounted(path):
    path = os.path.abspath(path)
    return any(m[0] == path for m in mounts())


def mounts_under(root):
    root = os.path.abspath(root).rstrip("/") + "/"
    return [m for m in mounts() if m[0].startswith(root)]


def wait_mounted(path, timeout=10.0):
    """Waits until `path` is a FUSE mount point."""
    path = os.path.abspath(path)

    def found():
        return any(m[0] == path and m[1].startswith("fuse") for m in mounts())

    wait_until(found, timeout, what="mount at %s" % path)


def wait_unmounted(path, timeout=2.0):
    path = os.path.abspath(path)
    wait_until(lambda: not is_mounted(path), timeout, what="%s to be unmounted" % path)


def unmount_all_under(root):
    """Lazily unmounts every mount below `root`, deepest first. Returns what it found."""
    found = sorted({m[0] for m in mounts_under(root)}, key=len, reverse=True)
    for path in found:
        for cmd in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
            try:
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if not is_mounted(path):
                break
    return found


def sanitized(pid):
    """Whether the process runs under AddressSanitizer, whose quarantine keeps freed memory (so
    its RSS says nothing about leaks)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def drop_caches():
    """Drops the page cache (root only). Returns True when it worked."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# ---- the admin API ------------------------------------------------------------------------------

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_METRIC_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text):
    """Prometheus text format -> {(name, ((label, value), ...) sorted): float}. Fails on a line
    that is neither a comment nor a sample."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            fail("not a Prometheus sample line: %r" % line)
        labels = ()
        if m.group(2):
            pairs = _METRIC_LABEL.findall(m.group(2))
            if ",".join('%s="%s"' % p for p in pairs) != m.group(2):
                fail("bad labels in %r" % line)
            labels = tuple(sorted(pairs))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


# ---- file system calls and tree comparison ------------------------------------------------------

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100


def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def renameat2(old, new, flags=0):
    """rename(2) with flags (RENAME_NOREPLACE, RENAME_EXCHANGE) through libc; raises OSError."""
    import ctypes
    rc = _libc().renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new),
                           ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


def utimensat(path, atime, mtime, follow_symlinks=True):
    """utimensat(2) with (seconds, nanoseconds) pairs; nanoseconds may be UTIME_NOW or
    UTIME_OMIT (which os.utime cannot express). Raises OSError."""
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    times = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    flags = 0 if follow_symlinks else _AT_SYMLINK_NOFOLLOW
    if _libc().utimensat(_AT_FDCWD, os.fsencode(path), times, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def outcome(fn, *args, **kwargs):
    """("ok", result) or ("err", errno name) of fn(*args): one value to compare between a mount
    and a reference directory."""
    try:
        return ("ok", fn(*args, **kwargs))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


def entry_state(path, content=True, times=False):
    """The comparable state of one directory entry (not followed): type, permission bits, size,
    nlink, uid, gid, symlink target or sha256 of the contents."""
    import hashlib
    import stat as st_
    st = os.lstat(path)
    kind = st_.S_IFMT(st.st_mode)
    d = {"type": {st_.S_IFREG: "file", st_.S_IFDIR: "dir", st_.S_IFLNK: "symlink",
                  st_.S_IFIFO: "fifo", st_.S_IFCHR: "chr", st_.S_IFBLK: "blk",
                  st_.S_IFSOCK: "sock"}.get(kind, oct(kind)),
         "mode": oct(st_.S_IMODE(st.st_mode)), "nlink": st.st_nlink, "uid": st.st_uid,
         "gid": st.st_gid}
    if kind != st_.S_IFDIR:
        d["size"] = st.st_size
    if kind == st_.S_IFLNK:
        d["target"] = os.readlink(path)
    elif kind == st_.S_IFREG and content:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        d["sha256"] = h.hexdigest()[:16]
    elif kind in (st_.S_IFCHR, st_.S_IFBLK):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if times:
        d["mtime_ns"] = st.st_mtime_ns
    return d


def tree_state(root, content=True, times=False):
    """{relative path: entry_state} of a whole tree (root included as "."), symlinks not
    followed."""
    result = {".": entry_state(root, content, times)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            result[os.path.relpath(full, root)] = entry_state(full, content, times)
    return result


def tree_diff(expected, actual, limit=20):
    """Human-readable differences between two tree_state() results ("" when equal)."""
    lines = []
    for path in sorted(set(expected) | set(actual)):
        e, a = expected.get(path), actual.get(path)
        if e == a:
            continue
        if e is None:
            lines.append("  %s: unexpected %r" % (path, a))
        elif a is None:
            lines.append("  %s: missing (expected %r)" % (path, e))
        else:
            keys = sorted(k for k in set(e) | set(a) if e.get(k) != a.get(k))
            lines.append("  %s: %s" % (path, ", ".join(
                "%s expected %r got %r" % (k, e.get(k), a.get(k)) for k in keys)))
        if len(lines) >= limit:
            lines.append("  ...")
            break
    return "\n".join(lines)


def check_same_tree(reference, actual, what, content=True, times=False):
    diff = tree_diff(tree_state(reference, content, times), tree_state(actual, content, times))
    if diff:
        fail("%s differs from the reference %s:\n%s" % (what, reference, diff))


# ---- processes ----------------------------------------------------------------------------------


def dripping_server(ssl_context=None):
    """An HTTP server for one request that answers a status line, then a header line every half
    second for 20 s (over TLS with `ssl_context`): for client timeouts. Returns (host, port)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def drip():
        with listener:
            conn, _ = listener.accept()
            try:
                with ssl_context.wrap_socket(conn, server_side=True) if ssl_context else conn as c:
                    c.recv(65536)
                    c.sendall(b"HTTP/1.1 200 OK\r\n")
                    for i in range(40):
                        time.sleep(0.5)
                        c.sendall(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                pass
    threading.Thread(target=drip, daemon=True, name="dripping-server").start()
    return listener.getsockname()


# socket()'s system call number and the audit architecture, where the filter below knows them.
_SECCOMP_ARCH = {"x86_64": (41, 0xc000003e), "aarch64": (198, 0xc00000b7)}


def restrict_address_families(allowed):
    """A function for a child before exec: socket() of a family not in `allowed` fails with
    EAFNOSUPPORT, as systemd's RestrictAddressFamilies= does (a seccomp filter, by hand)."""
    import ctypes
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCH:
        fail("no seccomp numbers for %s in harness._SECCOMP_ARCH" % machine)
    socket_nr, audit_arch = _SECCOMP_ARCH[machine]
    ret_errno, ret_allow = 0x00050000 | errno.EAFNOSUPPORT, 0x7fff0000
    ld_abs, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET
    n = len(allowed)
    program = [(ld_abs, 0, 0, 4),                   # the architecture
               (jeq, 0, n + 4, audit_arch),         # another one: allowed
               (ld_abs, 0, 0, 0),                   # the system call's number
               (jeq, 0, n + 2, socket_nr),          # not socket(): allowed
               (ld_abs, 0, 0, 16)]                  # socket()'s family (the low half)
    program += [(jeq, n - i, 0, family) for i, family in enumerate(allowed)]
    program += [(ret, 0, 0, ret_errno), (ret, 0, 0, ret_allow)]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(program))(*[Filter(*f) for f in program])
    fprog = Program(len(program), filters)
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def apply():
        if prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            os._exit(126)
    return apply


FUSE_CONF = "/etc/fuse.conf"


def keep_fuse_conf(env):
    """The machine's /etc/fuse.conf (fusermount3's settings) comes back when the test ends."""
    original = open(FUSE_CONF).read() if os.path.exists(FUSE_CONF) else None

    def restore():
        if original is None:
            os.unlink(FUSE_CONF)
        else:
            write_fuse_conf(original)
    env.add_cleanup(restore)


def write_fuse_conf(content):
    """Replaces /etc/fuse.conf whole (readers never see half a file). ctest runs the suites
    that do this one at a time (RESOURCE_LOCK fuse_conf)."""
    temporary = FUSE_CONF + ".webfuse-test"
    with open(temporary, "w") as f:
        f.write(content)
    os.chmod(temporary, 0o644)
    os.rename(temporary, FUSE_CONF)


_given_ports = set()
_given_ports_lock = threading.Lock()


def free_port():
    """A port nothing listens on now and that this process has not handed out before: the
    kernel may give the same free port twice in a row (a daemon got it as --port and
    --admin-port once)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _given_ports_lock:
            if port not in _given_ports:
                _given_ports.add(port)
                return port


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def binary(env_name, file_name):
    path = os.environ.get(env_name)
    if path:
        return path
    for build in ("build", "build-it"):
        candidate = os.path.join(REPO, build, file_name)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(REPO, "build", file_name)


_PR_SET_PDEATHSIG = 1
try:  # looked up now: the child of fork() must not import or allocate much
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """In the child between fork and exec: SIGTERM when the test runner dies (the daemon then
    unmounts what it mounted)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


_provider_help = {}


def provider_has_option(option):
    """True when `webfuse-provider --help` mentions `option` (asked once per binary)."""
    path = binary("WEBFUSE_PROVIDER", "webfuse-provider")
    if path not in _provider_help:
        try:
            out = subprocess.run([path, "--help"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=10).stdout
            _provider_help[path] = out.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired):
            _provider_help[path] = ""
    return option in _provider_help[path]


def webfuse2_provider_command():
    """argv prefix of the webfuse2 provider: $WEBFUSE2_PROVIDER_CMD or webfuse-provider."""
    import shlex
    override = os.environ.get("WEBFUSE2_PROVIDER_CMD")
    if override:
        return shlex.split(override)
    return [binary("WEBFUSE_PROVIDER", "webfuse-provider")]


def require_webfuse2_provider():
    """Fails (TestFailure) unless the webfuse2 provider command can serve --path DIR."""
    if os.environ.get("WEBFUSE2_PROVIDER_CMD"):
        return
    if not provider_has_option("--path"):
        fail("%s does not speak webfuse2 (no --path in its --help)"
             % binary("WEBFUSE_PROVIDER", "webfuse-provider"))


# How long a process may take to exit after SIGTERM before it is killed: the daemon stops its
# loop after 5 s whatever happens, a provider waits up to 3 s for the gateway to answer its close
# frame, and sanitizer builds check for leaks at exit.
STOP_GRACE = 10.0


class Process:
    """A child process whose stderr (and stdout) goes to a log file."""

    # Set when stop() or finish() had to SIGKILL it: fails the test.
    stop_failure = None

    def __init__(self, name, argv, log_path, preexec=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # Own session: a Ctrl-C meant for the test runner does not reach the children. They get
        # SIGTERM when the runner dies (PR_SET_PDEATHSIG), so a runner killed by ctest's timeout
        # leaves no daemon behind. `preexec` runs there too, after that (e.g. to restrict the
        # child as a service manager would).
        def child():
            _die_with_parent()
            if preexec is not None:
                preexec()

        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=child)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def signal(self, signum):
        if self.alive():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Waits for the exit; returns the status or raises TestFailure."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            fail("%s (pid %d) did not exit within %.1f s" % (self.name, self.pid, timeout))

    def stop(self, grace=STOP_GRACE):
        """SIGTERM, then SIGKILL after `grace` seconds. Never raises. Returns False when the
        SIGKILL was needed, and remembers it (`stop_failure`): that fails the test."""
        self.signal(signal.SIGTERM)
        return self.finish(grace)

    def finish(self, grace=STOP_GRACE):
        """Waits up to `grace` seconds for the exit of a process that was asked to stop, then
        SIGKILLs it. Returns False (and remembers why) when the SIGKILL was needed."""
        exited = True
        if self.alive():
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                exited = False
                self.stop_failure = ("%s (pid %d) was still running %.0f s after SIGTERM and "
                                     "was killed" % (self.name, self.pid, grace))
        self.kill()
        return exited

    def kill(self):
        if self.alive():
            self.signal(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Terminal:
    """A program run on a pseudo-terminal of its own (its controlling terminal, so /dev/tty is
    this pty): what it writes is read from the master side, what a person would type is sent
    there. Every wait is bounded; the process gets SIGKILL when the test ends."""

    def __init__(self, env, argv, environ):
        import pty
        pid, fd = pty.fork()
        if pid == 0:  # the child: only exec (or give up) from here
            try:
                _die_with_parent()
                os.execve(argv[0], argv, environ)
            finally:
                os._exit(127)
        self.pid, self.fd, self.output, self.status = pid, fd, b"", None
        env.add_cleanup(self.kill)

    def _read(self, timeout):
        """Takes what the program wrote within `timeout` s; False once the terminal is closed."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: every program on the terminal is gone
            chunk = b""
        self.output += chunk
        return bool(chunk)

    def expect(self, text, timeout=10.0):
        """Waits until the output holds `text` (bytes or str); fails after `timeout` s."""
        text = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.2)) and text not in self.output):
                fail("%r did not appear on the terminal; it shows %r" % (text, self.output))

    def echo(self):
        """Whether the terminal echoes what is typed now (the program's own setting)."""
        import termios
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def send(self, text):
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def wait(self, timeout=10.0):
        """Waits for the exit, reads the rest of the output; returns the exit status (negative:
        the signal that ended it)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                fail("the program on the terminal did not exit within %.1f s: %r"
                     % (timeout, self.output))
        while select.select([self.fd], [], [], 0)[0] and self._read(0):
            pass
        return self.status

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass


class ApiResponse:
    """An admin API answer: status, headers (lower-case names), body bytes, and `json` (the
    parsed body, or None when it is not JSON)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def __repr__(self):
        return "<HTTP %d %s>" % (self.status, _short(self.body))


class Daemon(Process):
    def __init__(self, env, argv, log_path, port, mount_root, admin_port=None, token_file=None,
                 db=None, preexec=None):
        super().__init__("webfused", argv, log_path, preexec)
        self.port = port
        self.mount_root = mount_root
        self.url = "ws://127.0.0.1:%d/" % port
        self.admin_port = admin_port
        self.admin_url = "http://127.0.0.1:%d" % admin_port if admin_port else None
        self.token_file = token_file
        self.db = db

    def mount_path(self, name):
        return os.path.join(self.mount_root, name)

    def token(self):
        with open(self.token_file) as f:
            return f.read().strip()

    def api(self, method, path, token=True, body=None, headers=None, timeout=10.0):
        """One admin API request on a new connection. token: True = the daemon's token, None =
        no Authorization header, a string = that token. body: bytes/str as is, anything else as
        JSON. Returns an ApiResponse."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if token is True:
                token = self.token()
            if token is not None:
                hdrs["Authorization"] = "Bearer " + token
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return ApiResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def api_ok(self, method, path, body=None, expect=200):
        """api() that must answer `expect`; returns the parsed JSON."""
        r = self.api(method, path, body=body)
        check_equal(r.status, expect, "%s %s status (body %s)" % (method, path, _short(r.body)))
        return r.json


# ---- one test's world ---------------------------------------------------------------------------


class Env:
    def __init__(self, suite_dir, test_name):
        self.dir = tempfile.mkdtemp(prefix=test_name[:40] + "-", dir=suite_dir)
        self.processes = []
        self.fakes = []
        self.cleanups = []
        self.sanitizer_reports = []
        self.stop_failures = []
        self._lock = threading.Lock()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def mkdir(self, *parts):
        p = self.path(*parts)
        os.makedirs(p, exist_ok=True)
        return p

    def _log_path(self, stem):
        n = 0
        while True:
            p = self.path("%s.%d.log" % (stem, n))
            if not os.path.exists(p):
                return p
            n += 1

    def start_daemon(self, timeout=None, max_message=None, log_level="debug", extra=(),
                     wait=True, mount_root=None, admin=True, db=None, token_file=None,
                     port=None, admin_port=None, preexec=None):
        """Starts webfused on a free port with a fresh mount root and no configuration file
        (--no-config); waits until it listens.

        The admin API listens on a free port (unless admin is False: --no-admin), with the token
        file and the registry database in the test's directory: `db` and `token_file` default to
        one per daemon; pass the same `db` (and mount_root) to restart a daemon on its history.
        `preexec` runs in the child before webfused is executed."""
        port = port or free_port()
        n = len(self.processes)
        mount_root = mount_root or self.mkdir("mnt%d" % n)
        # --no-config: a webfuse installed on this machine (/etc/webfuse/webfused.conf) must not
        # change what a test's daemon does; a --config in `extra` still counts (the last wins).
        argv = [binary("WEBFUSED", "webfused"), "--no-config", "--port", str(port), "--bind",
                "127.0.0.1", "--mount-root", mount_root, "--log-level", log_level]
        if timeout is not None:
            argv += ["--timeout", str(timeout)]
        if max_message is not None:
            argv += ["--max-message", str(max_message)]
        if admin:
            admin_port = admin_port or free_port()
            db = db or self.path("registry%d.db" % n)
            token_file = token_file or self.path("admin-token")
            argv += ["--admin-port", str(admin_port), "--admin-bind", "127.0.0.1",
                     "--admin-token-file", token_file, "--db", db]
        else:
            admin_port = db = token_file = None
            argv += ["--no-admin"]
        argv += list(extra)
        d = Daemon(self, argv, self._log_path("webfused"), port, mount_root, admin_port,
                   token_file, db, preexec)
        with self._lock:
            self.processes.append(d)
        if wait:
            def listening():
                if not d.alive():
                    fail("webfused exited with status %s before listening" % d.returncode())
                return port_open(port) and (not admin_port or port_open(admin_port))

            wait_until(listening, 10.0, what="webfused to listen on port %d" % port)
        return d

    def start_provider(self, daemon, filesystems, extra=(), wait=True, url=None, timeout=10.0):
        """Starts webfuse-provider in its JSON mode with --fs NAME=DIR for each (name, dir) pair;
        waits until every mount appears (each within `timeout` seconds). `--protocol json` is
        added when the provider knows that option (webfuse2 became its default)."""
        argv = [binary("WEBFUSE_PROVIDER", "webfuse-provider"), "--url", url or daemon.url]
        if provider_has_option("--protocol"):
            argv += ["--protocol", "json"]
        for name, directory in filesystems:
            argv += ["--fs", "%s=%s" % (name, directory)]
        argv += list(extra)
        p = Process("webfuse-provider", argv, self._log_path("provider"))
        with self._lock:
            self.processes.append(p)
        if wait:
            for name, _ in filesystems:
                mp = daemon.mount_path(name)

                def mounted(mp=mp):
                    if is_mounted(mp):
                        return True
                    if not p.alive():
                        fail("webfuse-provider exited with status %s before %s was mounted"
                             % (p.returncode(), mp))
                    return False

                wait_until(mounted, timeout, what="provider mount at %s" % mp)
        return p

    def start_webfuse2_provider(self, daemon, name, directory, read_only=False, extra=(),
                               wait=True, url=None, command=None):
        """Starts a webfuse2 provider serving `directory` read-write (or --read-only) as the
        filesystem `name` (the last segment of the URL path); waits until
        daemon.mount_path(name) is mounted. The command is webfuse-provider, or
        $WEBFUSE2_PROVIDER_CMD (split like a shell would) when set, e.g. the reference provider
        "python3 tests/integration/pyprovider.py", to tell a gateway bug from a provider bug;
        `command` (an argv list) overrides both."""
        argv = (command or webfuse2_provider_command()) + [
            "--url", url or "ws://127.0.0.1:%d/%s" % (daemon.port, name), "--path", directory]
        if read_only:
            argv.append("--read-only")
        argv += list(extra)
        p = Process("webfuse2-provider", argv, self._log_path("provider"))
        with self._lock:
            self.processes.append(p)
        if wait:
            mp = daemon.mount_path(name)

            def mounted():
                if is_mounted(mp):
                    return True
                if not p.alive():
                    fail("webfuse2 provider exited with status %s before %s was mounted"
                         % (p.returncode(), mp))
                return False

            wait_until(mounted, 10.0, what="webfuse2 provider mount at %s" % mp)
        return p

    def fake(self, daemon, **kwargs):
        """Connects a fake provider (see fakeprovider.py) to the daemon."""
        import fakeprovider
        f = fakeprovider.FakeProvider(daemon.port, **kwargs)
        with self._lock:
            self.fakes.append(f)
        return f

    def add_cleanup(self, fn):
        self.cleanups.append(fn)

    def kill_all(self):
        """Watchdog: SIGKILL everything at once (unblocks threads stuck in FUSE calls)."""
        with self._lock:
            procs = list(self.processes)
        for p in procs:
            p.signal(signal.SIGKILL)

    def logs(self):
        out = []
        for p in self.processes:
            text = p.log_text()
            lines = text.splitlines()
            if len(lines) > 200:
                lines = ["... (%d lines cut)" % (len(lines) - 200)] + lines[-200:]
            out.append("---- %s (pid %d, %s, status %s) %s ----" % (
                p.name, p.pid, " ".join(p.argv), p.returncode(), p.log_path))
            out.extend(lines)
        return "\n".join(out)

    def teardown(self):
        problems = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:
                problems.append("cleanup: %r" % e)
        for f in self.fakes:
            try:
                f.abort()
            except Exception:
                pass
        # Providers first (their mounts go with them), then daemons; each with SIGTERM, as Ctrl-C
        # or systemd would, so that it exits through its own shutdown and a sanitizer build
        # checks it for leaks. Whatever needs SIGKILL fails the test.
        others = [p for p in self.processes if not isinstance(p, Daemon)]
        for p in others:
            p.signal(signal.SIGTERM)
        for p in others:
            p.finish()
        for p in [p for p in self.processes if isinstance(p, Daemon)]:
            p.stop()
        self.sanitizer_reports = [
            "%s (pid %d): %s" % (p.name, p.pid, line) for p in self.processes
            for line in sanitizer_report_lines(p.log_text())]
        self.stop_failures = [p.stop_failure for p in self.processes if p.stop_failure]
        left = unmount_all_under(self.dir)
        if left:
            problems.append("unmounted leftovers: %s" % ", ".join(left))
        if mounts_under(self.dir):
            problems.append("mounts still present: %s" % mounts_under(self.dir))
        return problems

    def remove(self):
        """Deletes the test's directory (logs included) unless something is still mounted."""
        if not mounts_under(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)


_SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |"
                               r"LeakSanitizer has encountered a fatal error")


def sanitizer_report_lines(text):
    """The lines where AddressSanitizer, LeakSanitizer or UBSan reported something (builds with
    -DWEBFUSE_SANITIZE=ON), or where LeakSanitizer could not check for leaks: any of them fails
    the test whose process wrote it."""
    return [line for line in text.splitlines() if _SANITIZER_REPORT.search(line)]


# ---- the runner ---------------------------------------------------------------------------------


def remove_stale_leftovers(max_age=3600):
    """Cleans up after earlier runs that were killed before their teardown: lazily unmounts dead
    FUSE mounts (ENOTCONN) under /tmp/webfuse-it-*, and deletes such directories older than
    `max_age` seconds that have nothing mounted below them. Live mounts of a concurrent run are
    left alone."""
    for mp, fstype, _ in mounts():
        if not mp.startswith("/tmp/webfuse-it-") or not fstype.startswith("fuse"):
            continue
        try:
            os.stat(mp)
        except OSError as e:
            if e.errno == errno.ENOTCONN:
                unmount_all_under(os.path.dirname(mp))
    now = time.time()
    for name in os.listdir("/tmp"):
        path = os.path.join("/tmp", name)
        if not name.startswith("webfuse-it-") or not os.path.isdir(path):
            continue
        try:
            old = now - os.stat(path).st_mtime > max_age
        except OSError:
            continue
        if old and not mounts_under(path):
            shutil.rmtree(path, ignore_errors=True)


def require_all():
    """True when $WEBFUSE_REQUIRE_ALL asks that no test be skipped."""
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0")


def skip(reason):
    """Ends the program as skipped (exit 77) because `reason`; with WEBFUSE_REQUIRE_ALL=1 as
    failed (exit 1) instead, saying why."""
    if require_all():
        print("FAIL: %s, and %s=%s forbids skipping" % (
            reason, REQUIRE_ALL_VARIABLE, os.environ[REQUIRE_ALL_VARIABLE]))
        print("0 passed, 1 failed")
        sys.stdout.flush()
        sys.exit(1)
    print("SKIP: %s" % reason)
    sys.stdout.flush()
    sys.exit(SKIP_EXIT)


def require_root_and_fuse():
    if os.geteuid() != 0:
        skip("integration tests mount for real and must run as root")
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse is missing")


class Suite:
    def __init__(self, name):
        self.name = name
        self.tests = []
        self.setups = []
        self.teardowns = []
        self.dir = None
        self.needs_provider = False
        self.needs_ctl = False

    def test(self, fn=None, budget=DEFAULT_TEST_BUDGET, known_bug=None):
        """Decorator: @suite.test or @suite.test(budget=SECONDS, known_bug="why").

        known_bug names a bug in the daemon or provider that makes the test fail today; the test
        still runs and still counts as failed when it fails (the behaviour is wrong), and its
        FAIL/PASS line says so."""
        def register(f):
            self.tests.append((f.__name__, f, budget, known_bug))
            return f
        return register(fn) if fn is not None else register

    def setup(self, fn):
        """Decorator: fn(suite_dir) runs once before the tests; its failure fails every test."""
        self.setups.append(fn)
        return fn

    def teardown(self, fn):
        self.teardowns.append(fn)
        return fn

    def _check_binaries(self):
        needed = [("WEBFUSED", "webfused")]
        if self.needs_provider:
            needed.append(("WEBFUSE_PROVIDER", "webfuse-provider"))
        if self.needs_ctl:
            needed.append(("WEBFUSECTL", "webfusectl"))
        missing = [binary(e, f) for e, f in needed if not os.access(binary(e, f), os.X_OK)]
        return missing

    def main(self):
        require_root_and_fuse()
        selected = sys.argv[1:]
        tests = [t for t in self.tests if not selected or t[0] in selected]
        missing = self._check_binaries()
        passed = failed = 0
        if missing:
            print("FAIL %s: binaries not found: %s (set WEBFUSED/WEBFUSE_PROVIDER/WEBFUSECTL)"
                  % (self.name, ", ".join(missing)))
            print("0 passed, %d failed" % len(tests))
            sys.exit(1)
        # ctest's timeout sends SIGTERM (then SIGKILL): turn it into an exception so that the
        # current test's teardown runs.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        remove_stale_leftovers()
        self.dir = tempfile.mkdtemp(prefix="webfuse-it-%s-" % self.name, dir="/tmp")
        setup_error = None
        try:
            for fn in self.setups:
                fn(self.dir)
        except Exception:
            setup_error = traceback.format_exc()
        try:
            for name, fn, budget, known_bug in tests:
                if setup_error:
                    print("FAIL %s: suite setup failed:\n%s" % (name, setup_error))
                    failed += 1
                    continue
                if self._run_one(name, fn, budget, known_bug):
                    passed += 1
                else:
                    failed += 1
                sys.stdout.flush()
        finally:
            for fn in self.teardowns:
                try:
                    fn(self.dir)
                except Exception:
                    traceback.print_exc()
            unmount_all_under(self.dir)
            if not mounts_under(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)
        print("%d passed, %d failed" % (passed, failed))
        sys.stdout.flush()
        sys.exit(1 if failed else 0)

    def _run_one(self, name, fn, budget, known_bug=None):
        env = Env(self.dir, name)
        timed_out = threading.Event()

        def watchdog():
            timed_out.set()
            env.kill_all()

        timer = threading.Timer(budget, watchdog)
        timer.daemon = True
        start = time.monotonic()
        error = None
        timer.start()
        try:
            fn(env)
        except Exception:
            error = traceback.format_exc()
        except BaseException:  # interrupted: still leave no process or mount behind
            timer.cancel()
            env.kill_all()
            env.teardown()
            env.remove()
            raise
        finally:
            timer.cancel()
        problems = env.teardown()
        elapsed = time.monotonic() - start
        if env.sanitizer_reports and error is None:
            error = "a sanitizer reported a bug (full report in the log below):\n  %s" % (
                "\n  ".join(env.sanitizer_reports))
        if env.stop_failures and error is None:
            error = "a process did not stop on SIGTERM:\n  %s" % "\n  ".join(env.stop_failures)
        if timed_out.is_set():
            error = ("test ran longer than its budget of %.0f s; everything was killed\n%s"
                     % (budget, error or ""))
        if error is None:
            print("PASS %s (%.1f s)" % (name, elapsed))
            if known_bug:
                print("  note: marked as a known bug, but passed: is it fixed? (%s)" % known_bug)
            for p in problems:
                print("  note: %s" % p)
            env.remove()
            return True
        print("FAIL %s (%.1f s)" % (name, elapsed))
        if known_bug:
            print("  known bug: %s" % known_bug)
        print(_indent(error.rstrip()))
        for p in problems:
            print("  note: %s" % p)
        print(_indent(env.logs()))
        env.remove()
        return False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def _indent(text):
    return "\n".join("    " + line for line in text.splitlines())
