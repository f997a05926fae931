#!/usr/bin/env python3
"""The browser provider page in headless chromium, against a real webfused serving it.

The page (web/) is opened from webfused's provider port (--docroot), files are chosen and
attached as a person would (driver.mjs steers chromium through playwright-core), and this script
checks what the device sees through the FUSE mount. Screenshots go to $WEBFUSE_BROWSER_OUT
(ctest: <build>/browser/).

Skipped (77) without root and /dev/fuse, or without /usr/bin/chromium (failed instead with
WEBFUSE_REQUIRE_ALL=1); fails when playwright-core is not installed in tests/browser/node_modules
(scripts/install-deps.sh installs it).
"""

import errno
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402

WEB = os.path.join(harness.REPO, "web")
DRIVER = os.path.join(HERE, "driver.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
OUT = os.environ.get("WEBFUSE_BROWSER_OUT", os.path.join(harness.REPO, "build", "browser"))
BIG = 64 * 1024 * 1024
MiB = 1024 * 1024
# A file name without a place to break it, as firmware images have.
LONG_NAME = "firmware-2.0.1-x1000-release-candidate-build-20261125-signed-" + "0" * 24 + ".img"

suite = harness.Suite("browser")
files = {}  # name -> (path, size, sha256), made once by the suite's setup


def sha256_of(path, chunk=MiB):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


@suite.setup
def make_files(suite_dir):
    src = os.path.join(suite_dir, "laptop")
    os.makedirs(src)
    sizes = {"firmware.img": BIG, "notes.txt": None, "odd size.bin": 3 * MiB + 12345,
             "second.bin": 5 * MiB + 1, LONG_NAME: 4096}
    for name, size in sizes.items():
        path = os.path.join(src, name)
        with open(path, "wb") as f:
            if size is None:
                f.write(b"Release notes: read straight from the browser.\n" * 20)
            else:
                left = size
                while left:
                    n = min(left, 4 * MiB)
                    f.write(os.urandom(n))
                    left -= n
        files[name] = (path, os.path.getsize(path), sha256_of(path))


class Browser(harness.Process):
    """driver.mjs with a JSON line protocol on its stdin/stdout; its stderr (the pages' console
    included) goes to a log file that is printed when a test fails."""

    def __init__(self, env):
        self.name = "browser"
        self.argv = ["node", DRIVER]
        self.log_path = env._log_path("browser")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, start_new_session=True,
                                      preexec_fn=harness._die_with_parent,
                                      cwd=HERE)
        self.pid = self.popen.pid
        self.lines = queue.Queue()
        self.next_id = 1
        threading.Thread(target=self._read, daemon=True).start()
        with env._lock:
            env.processes.append(self)
        env.add_cleanup(self.quit)
        first = self._answer(0, 60.0)
        if not first.get("ok"):
            fail("chromium did not start: %s" % first.get("error"))

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _answer(self, want, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("the browser driver did not answer within %.0f s" % timeout)
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                fail("the browser driver exited (status %s)" % self.popen.poll())
            msg = json.loads(line)
            if msg.get("id") == want:
                return msg

    def call(self, cmd, timeout=30.0, **args):
        n = self.next_id
        self.next_id += 1
        self.popen.stdin.write((json.dumps(dict(args, id=n, cmd=cmd)) + "\n").encode())
        self.popen.stdin.flush()
        msg = self._answer(n, timeout)
        if not msg.get("ok"):
            fail("browser %s %r failed: %s" % (cmd, args, msg.get("error")))
        return msg.get("value")

    def quit(self):
        if self.alive():
            try:
                self.popen.stdin.write(b'{"cmd": "quit"}\n')
                self.popen.stdin.flush()
                self.popen.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self):
        # The driver runs in its own process group, with chromium in it or below it.
        if self.alive():
            try:
                os.killpg(self.pid, 9)
            except ProcessLookupError:
                pass
        super().kill()


class Page:
    """One tab of the page, as a person uses it."""

    def __init__(self, browser, name, daemon, width=1000, height=900):
        self.b = browser
        self.name = name
        info = self.b.call("open", page=name, url="http://127.0.0.1:%d/" % daemon.port,
                           width=width, height=height)
        check_equal(info["status"], 200, "status of the page")

    def choose(self, *names):
        self.b.call("setFiles", page=self.name, selector="#file-input",
                    paths=[files[n][0] for n in names])

    def attach(self, fs_name=None):
        if fs_name is not None:
            self.b.call("fill", page=self.name, selector="#fs-name", value=fs_name)
        self.b.call("click", page=self.name, selector="#attach")

    def status(self):
        return self.b.call("text", page=self.name, selector="#status")

    def state(self):
        return self.b.call("eval", page=self.name,
                           expression="document.getElementById('state-badge').dataset.state")

    def wait_status(self, words, timeout=10.0):
        def has():
            text = self.status()
            return all(w in text for w in words) and text

        try:
            return harness.wait_until(has, timeout, interval=0.1, what="status %r" % (words,))
        except harness.TestFailure:
            fail("page %s status is %r, expected it to contain %r"
                 % (self.name, self.status(), words))

    def rows(self):
        """[{name, size, served, covered, progress}] as the page shows them."""
        return self.b.call("eval", page=self.name, expression="""
            [...document.querySelectorAll('#file-list li')].map((li) => ({
              name: li.dataset.name, size: Number(li.dataset.size),
              served: Number(li.dataset.served), covered: Number(li.dataset.covered),
              progress: li.querySelector('progress').value,
              text: li.querySelector('.file-meta').textContent }))""")

    def screenshot(self, file_name):
        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, file_name)
        self.b.call("screenshot", page=self.name, path=path)
        return path

    def errors(self):
        return self.b.call("errors", page=self.name)

    def close(self):
        self.b.call("close", page=self.name)


def start(env):
    daemon = env.start_daemon(extra=["--docroot", WEB])
    return daemon, Browser(env)


def stop_cleanly(daemon):
    """Stops webfused (pages may still hold HTTP connections): exit status 0, no sanitizer
    report in its log."""
    daemon.stop(grace=6.0)
    check_equal(daemon.returncode(), 0, "webfused's exit status")
    log = daemon.log_text()
    check("Sanitizer" not in log and "runtime error" not in log, "webfused's log has a report")


def listing(mp):
    return {n: os.stat(os.path.join(mp, n)).st_size for n in os.listdir(mp)}


@suite.test(budget=240)
def page_lends_files_and_device_reads_them(env):
    daemon, browser = start(env)
    a = Page(browser, "a", daemon)
    chosen = ["firmware.img", "notes.txt", "odd size.bin"]
    a.choose(*chosen)
    check_equal([r["name"] for r in a.rows()], chosen, "files listed on the page")
    a.attach()
    mp = daemon.mount_path("upload")
    harness.wait_mounted(mp)
    a.wait_status(["Attached", "upload"])
    check_equal(a.state(), "open", "state badge")

    check_equal(listing(mp), {n: files[n][1] for n in chosen}, "listing of the mount")

    # Read the big file through the mount, with a screenshot half way.
    h = hashlib.sha256()
    reading = 0.0
    with open(os.path.join(mp, "firmware.img"), "rb") as f:
        for i in range(BIG // MiB):
            began = time.monotonic()
            block = harness.bounded(lambda: f.read(MiB), 20, "read of firmware.img")
            reading += time.monotonic() - began
            h.update(block)
            if i == BIG // MiB // 2:
                time.sleep(0.3)  # the page redraws every 100 ms
                shot = a.screenshot("serving.png")
        check_equal(f.read(1), b"", "end of firmware.img")
    print("  read 64 MiB from the page in %.1f s (%.0f MiB/s)" % (reading, 64 / reading))
    check_equal(h.hexdigest(), files["firmware.img"][2], "sha256 of firmware.img read on the device")
    check(os.path.getsize(shot) > 10000, "screenshot %s looks empty" % shot)
    for n in ("notes.txt", "odd size.bin"):
        check_equal(sha256_of(os.path.join(mp, n)), files[n][2], "sha256 of %s" % n)

    def all_read():
        rows = a.rows()
        return all(r["covered"] == r["size"] for r in rows) and rows

    rows = harness.wait_until(all_read, 5, what="the page to show every file read")
    for r in rows:
        check(r["served"] >= r["size"], "%s: served %d < size %d" % (r["name"], r["served"], r["size"]))
        check_equal(r["progress"], r["size"], "progress bar of %s" % r["name"])
        check("100% read" in r["text"], "%s shows %r" % (r["name"], r["text"]))
    a.screenshot("served.png")

    # A second page attaches a second filesystem beside the first.
    b = Page(browser, "b", daemon, width=390, height=844)
    b.choose("second.bin")
    b.attach("second")
    mp2 = daemon.mount_path("second")
    harness.wait_mounted(mp2)
    b.wait_status(["Attached", "second"])
    check_equal(listing(mp2), {"second.bin": files["second.bin"][1]}, "listing of the second mount")
    check_equal(sha256_of(os.path.join(mp2, "second.bin")), files["second.bin"][2],
                "sha256 of second.bin")
    harness.drop_caches()
    check_equal(sha256_of(os.path.join(mp, "odd size.bin")), files["odd size.bin"][2],
                "the first page still serves")
    b.screenshot("phone.png")

    # The operator detaches the second one: its page says so, with the reason.
    r = daemon.api("DELETE", "/api/v1/filesystems/second", body={"reason": "update installed"})
    check_equal(r.status, 202, "admin detach")
    b.wait_status(["detached", "second", "update installed"])
    harness.wait_unmounted(mp2, timeout=10)
    check(b.state() != "open", "page b still says attached")
    b.screenshot("detached.png")

    # Closing a page while a program reads: the program gets EIO, the mount goes. The gateway
    # fails what waits at the provider with EIO and unmounts lazily: the program keeps its file,
    # and every read of it is answered EIO until it lets go. ENOTCONN would mean the FUSE
    # connection itself was cut, which only a gateway that stops (fusectl abort) or dies does.
    harness.drop_caches()
    started = threading.Event()
    outcome = {}

    def reader():
        total = 0
        f = open(os.path.join(mp, "firmware.img"), "rb")
        try:
            while True:
                block = f.read(MiB)
                if not block:
                    outcome["eof"] = total
                    return
                total += len(block)
                started.set()
                time.sleep(0.05)
        except OSError as e:
            outcome["errno"] = e.errno
            outcome["at"] = total
            outcome["after"] = time.monotonic() - closed_at[0]
            # Still held: a read further on (not cached) fails the same way.
            try:
                os.pread(f.fileno(), 4096, BIG - 4096)
                outcome["again"] = "no error"
            except OSError as again:
                outcome["again"] = again.errno
        finally:
            started.set()
            try:
                f.close()
            except OSError:
                pass  # the read's errno is what the program sees; closing a dead file may fail

    closed_at = [0.0]
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    check(started.wait(20), "the reader did not start")
    closed_at[0] = time.monotonic()
    a.close()
    t.join(30)
    check(not t.is_alive(), "the reader hangs after the page closed")
    check("errno" in outcome, "the reader read to the end (%r) although the page closed" % outcome)
    print("  page closed: the reader got %s after %d MiB, %.2f s after the close; a read further "
          "on got %s" % (harness.errno_name(outcome["errno"]), outcome["at"] // MiB,
                         outcome["after"], harness.errno_name(outcome["again"])
                         if isinstance(outcome["again"], int) else outcome["again"]))
    check_equal(harness.errno_name(outcome["errno"]), harness.errno_name(errno.EIO),
                "the reader's error after the page closed")
    check_equal(harness.errno_name(outcome["again"]) if isinstance(outcome["again"], int)
                else outcome["again"], harness.errno_name(errno.EIO),
                "a further read of the file still held")
    check(outcome["after"] <= 5, "the reader's error came %.1f s after the close"
          % outcome["after"])
    harness.wait_unmounted(mp, timeout=10)
    check_equal(b.errors(), [], "script errors on page b")
    stop_cleanly(daemon)


@suite.test(budget=120)
def names_detach_and_refusals_are_shown(env):
    daemon, browser = start(env)
    a = Page(browser, "a", daemon)
    a.attach()
    a.wait_status(["Choose at least one file"])
    a.choose("notes.txt")
    for bad in ("a/b", "..", "a b", ""):
        a.attach(bad)
        a.wait_status(["name needs fixing"])
        error = a.b.call("text", page="a", selector="#fs-name-error")
        check(error.strip() != "", "no error shown next to the name %r" % bad)
    check_equal(os.listdir(daemon.mount_root), [], "mounts after refused names")

    a.attach("firmware")
    mp = daemon.mount_path("firmware")
    harness.wait_mounted(mp)
    a.wait_status(["Attached"])

    # The same name from another page: the gateway refuses it, the page tells why.
    b = Page(browser, "b", daemon)
    b.choose("odd size.bin")
    b.attach("firmware")
    b.wait_status(["refused", "firmware", "taken"])
    check_equal(b.state(), "refused", "badge after a refusal")
    check_equal(listing(mp), {"notes.txt": files["notes.txt"][1]}, "the first mount is untouched")

    # Detach from the page.
    a.b.call("click", page="a", selector="#detach")
    a.wait_status(["Detached"])
    harness.wait_unmounted(mp, timeout=10)
    check_equal(a.state(), "closed", "badge after detaching")

    # ... and the name is free again: the second page takes it.
    b.attach("firmware")
    harness.wait_mounted(mp)
    b.wait_status(["Attached"])
    check_equal(listing(mp), {"odd size.bin": files["odd size.bin"][1]}, "the second page's mount")

    # The gateway goes away: the page says the connection ended.
    stop_cleanly(daemon)
    b.wait_status(["detached", "gateway shutting down"])
    check_equal(a.errors() + b.errors(), [], "script errors")


@suite.test(budget=120)
def dropped_files_are_served(env):
    daemon, browser = start(env)
    a = Page(browser, "a", daemon, width=390, height=844)
    # What a drop from the desktop delivers: a DataTransfer with files, dropped on the zone.
    a.b.call("eval", page="a", expression="""(() => {
        const dt = new DataTransfer();
        const bytes = new Uint8Array(300000).map((_, i) => (i * 7) % 251);
        dt.items.add(new File([bytes], 'dropped.bin', { lastModified: 1700000000000 }));
        dt.items.add(new File(['hello from a drop'], 'hello.txt'));
        const zone = document.getElementById('dropzone');
        for (const type of ['dragenter', 'dragover', 'drop'])
          zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    })()""")
    check_equal([r["name"] for r in a.rows()], ["dropped.bin", "hello.txt"], "dropped files listed")
    a.attach("dropped")
    mp = daemon.mount_path("dropped")
    harness.wait_mounted(mp)
    with open(os.path.join(mp, "hello.txt"), "rb") as f:
        check_equal(f.read(), b"hello from a drop", "hello.txt")
    with open(os.path.join(mp, "dropped.bin"), "rb") as f:
        check_equal(f.read(), bytes((i * 7) % 251 for i in range(300000)), "dropped.bin")
    check_equal(int(os.stat(os.path.join(mp, "dropped.bin")).st_mtime), 1700000000, "mtime")
    # Read-only: nothing the device does changes the laptop's files.
    for action in (lambda: open(os.path.join(mp, "hello.txt"), "wb"),
                   lambda: open(os.path.join(mp, "new.txt"), "wb"),
                   lambda: os.unlink(os.path.join(mp, "hello.txt"))):
        try:
            action()
            fail("a change on a read-only mount succeeded")
        except OSError as e:
            check(e.errno in (errno.EROFS, errno.EACCES, errno.EPERM),
                  "change refused with %s" % harness.errno_name(e.errno))
    check_equal(a.errors(), [], "script errors")


@suite.test(budget=120)
def killed_gateway_shows_connection_lost(env):
    """The gateway dies (SIGKILL, no close frame): the page says the connection was lost, and
    attaches again once the gateway is back."""
    daemon, browser = start(env)
    a = Page(browser, "a", daemon)
    a.choose("notes.txt")
    a.attach("lost")
    harness.wait_mounted(daemon.mount_path("lost"))
    a.wait_status(["Attached"])
    daemon.signal(signal.SIGKILL)
    check_equal(daemon.wait(10), -signal.SIGKILL, "webfused's exit status")
    text = a.wait_status(["connection to the device was lost"])
    print("  page after SIGKILL of webfused: %r" % text)
    check_equal(a.state(), "lost", "badge after the gateway died")
    check_equal(a.b.call("text", page="a", selector="#state-badge"), "Connection lost",
                "badge text")
    check_equal(a.b.call("eval", page="a", expression="""[
        document.getElementById('attach').disabled,
        document.getElementById('detach').disabled]"""), [False, True],
        "(attach, detach) disabled after the loss")
    a.screenshot("lost.png")
    # The gateway comes back (it detaches the dead mount it left): attaching again works.
    again = env.start_daemon(extra=["--docroot", WEB], port=daemon.port,
                             mount_root=daemon.mount_root, db=daemon.db,
                             token_file=daemon.token_file)
    a.attach("lost")
    harness.wait_mounted(again.mount_path("lost"))
    a.wait_status(["Attached", "lost"])
    check_equal(listing(again.mount_path("lost")), {"notes.txt": files["notes.txt"][1]},
                "the mount after attaching again")
    check_equal(a.errors(), [], "script errors")


@suite.test(budget=120)
def a_file_changed_after_it_was_chosen_reads_as_eio_and_the_page_says_so(env):
    """The browser refuses to read a chosen file that changed on disk since it was picked: the
    device gets EIO for it, and the page names the file instead of still saying all is well."""
    path = env.path("changing.txt")
    with open(path, "wb") as f:
        f.write(b"before\n" * 100)
    daemon, browser = start(env)
    a = Page(browser, "a", daemon)
    a.b.call("setFiles", page="a", selector="#file-input", paths=[path])
    a.attach("changing")
    mp = daemon.mount_path("changing")
    harness.wait_mounted(mp)
    a.wait_status(["Attached"])
    with open(path, "ab") as f:
        f.write(b"after\n")
    later = time.time() + 10
    os.utime(path, (later, later))
    try:
        with open(os.path.join(mp, "changing.txt"), "rb") as f:
            data = f.read()
        fail("read %d bytes of a file the browser can no longer read" % len(data))
    except OSError as e:
        check_equal(e.errno, errno.EIO, "errno of the read")
    text = a.wait_status(["can no longer read", "changing.txt"])
    print("  page after the file changed: %r" % text)
    row = a.b.call("text", page="a", selector="#file-list .error")
    check("cannot read it any more" in row, "the file's row: %r" % row)
    check_equal(a.errors(), [], "script errors")


@suite.test(budget=120)
def login_fields_answer_a_gateway_that_asks(env):
    """With --auth-file the gateway asks the page for a login: without one the page says so,
    with a wrong password it says that, and with the right one the files are attached."""
    line = subprocess.run([harness.binary("WEBFUSECTL", "webfusectl"), "passwd", "alice"],
                          env=dict(os.environ, WEBFUSE_PASSWORD="pw-alice"),
                          stdout=subprocess.PIPE, timeout=30, check=True).stdout.decode()
    users = env.path("users")
    with open(users, "w") as f:
        f.write(line)
    daemon = env.start_daemon(extra=["--docroot", WEB, "--auth-file", users])
    page = Page(Browser(env), "a", daemon)
    page.choose("notes.txt")
    page.attach("notes")
    page.wait_status(["asks for a login", "Log in"])
    page.b.call("click", page="a", selector="#login summary")
    page.b.call("fill", page="a", selector="#login-user", value="alice")
    page.b.call("fill", page="a", selector="#login-password", value="wrong")
    page.attach()
    page.wait_status(["did not accept the user and password"])
    page.b.call("fill", page="a", selector="#login-password", value="pw-alice")
    page.attach()
    # The page says "Attached" when the socket opens; the mount comes after the login is checked.
    harness.wait_mounted(daemon.mount_path("notes"))
    page.wait_status(["Attached"])
    check_equal(listing(daemon.mount_path("notes")), {"notes.txt": files["notes.txt"][1]},
                "the mount made with the page's login")
    users_seen = [s["user"] for s in daemon.api_ok("GET", "/api/v1/sessions")["sessions"]]
    check_equal(users_seen, ["alice"], "the session's user")
    check_equal(page.errors(), [], "script errors")


def fill_gateway(page, value):
    """Types `value` into "Another device" (opened first when closed)."""
    if not page.b.call("eval", page=page.name,
                       expression="document.getElementById('other-device').open"):
        page.b.call("click", page=page.name, selector="#other-device summary")
    page.b.call("fill", page=page.name, selector="#gateway-url", value=value)


@suite.test(budget=120)
def typed_gateway_address_is_used_and_other_schemes_are_refused(env):
    daemon, browser = start(env)
    port = daemon.port
    a = Page(browser, "a", daemon)
    a.choose("notes.txt")

    # An http:// address, as copied from an address bar: it is spoken to as ws://, with the
    # filesystem name added as the last path segment.
    fill_gateway(a, "http://127.0.0.1:%d" % port)
    a.attach("typed")
    mp = daemon.mount_path("typed")
    harness.wait_mounted(mp)
    a.wait_status(["Attached", "typed"])
    check_equal(listing(mp), {"notes.txt": files["notes.txt"][1]}, "the typed address's mount")
    a.b.call("click", page="a", selector="#detach")
    a.wait_status(["Detached"])
    harness.wait_unmounted(mp, timeout=10)

    # https:// becomes wss://: this gateway has no TLS, so the page could not reach it there.
    fill_gateway(a, "https://127.0.0.1:%d/" % port)
    a.attach("secure")
    text = a.wait_status(["Could not reach", "wss://127.0.0.1:%d/secure" % port])
    print("  https:// typed: %r" % text)
    check_equal(a.state(), "failed", "badge when the device could not be reached")

    # Other schemes and things that are no address are refused before anything is sent.
    for typed, words in (("ftp://127.0.0.1:%d" % port, ["must start with ws:// or wss://"]),
                         ("file:///etc/passwd", ["must start with ws:// or wss://"]),
                         ("javascript:alert(1)", ["must start with ws:// or wss://"]),
                         ("127.0.0.1 port %d" % port, ["is not an address"])):
        fill_gateway(a, typed)
        a.attach("refused")
        text = a.wait_status(words)
        print("  %r typed: %r" % (typed, text))
        check(a.state() not in ("open", "connecting"), "%r: the page is %s" % (typed, a.state()))
    check_equal(os.listdir(daemon.mount_root), [], "mounts after the refused addresses")
    sessions = daemon.api_ok("GET", "/api/v1/sessions?state=all")["sessions"]
    check_equal(len(sessions), 1, "sessions the gateway saw (only the typed ws:// one): %r"
                % sessions)
    check_equal(a.errors(), [], "script errors")


def check_phone_layout(page, when):
    """At a phone's width nothing scrolls sideways, and every input and button has an
    accessible name (chromium's accessibility tree). Returns how many controls there were."""
    scroll, inner = page.b.call("eval", page=page.name, expression="""[
        document.documentElement.scrollWidth, window.innerWidth]""")
    check(scroll <= inner, "%s: the page is %d px wide in a %d px window (it scrolls sideways)"
          % (when, scroll, inner))
    controls = page.b.call("accessibleNames", page=page.name,
                           selector="input, button, select, textarea")
    unnamed = [c for c in controls if not c["name"].strip() or c["ignored"]]
    check(not unnamed, "%s: controls without an accessible name (or left out of the "
          "accessibility tree): %r" % (when, unnamed))
    return len(controls)


@suite.test(budget=120)
def phone_width_has_no_sideways_scrolling_and_every_control_is_named(env):
    daemon, browser = start(env)
    a = Page(browser, "a", daemon, width=390, height=844)
    for details in ("#other-device", "#login"):  # every control shown
        a.b.call("click", page="a", selector=details + " summary")
    counts = [check_phone_layout(a, "empty page")]
    a.choose("notes.txt", LONG_NAME, "odd size.bin")
    counts.append(check_phone_layout(a, "three files chosen, one with a long name"))
    name = "phone-" + "x" * 58  # the longest name there is
    a.attach(name)
    mp = daemon.mount_path(name)
    harness.wait_mounted(mp)
    a.wait_status(["Attached"])
    with open(os.path.join(mp, LONG_NAME), "rb") as f:
        check_equal(len(f.read()), 4096, "the long-named file through the mount")
    time.sleep(0.3)  # the progress redraw
    counts.append(check_phone_layout(a, "attached with a 64-character name"))
    a.screenshot("phone-attached.png")
    a.b.call("click", page="a", selector="#detach")
    a.wait_status(["Detached"])
    counts.append(check_phone_layout(a, "detached"))
    print("  at 390 px: no sideways scrolling; named controls in the four states: %s" % counts)
    check_equal(a.errors(), [], "script errors")


@suite.test(budget=30)
def developers_md_lists_the_chromium_flags_the_driver_passes(env):
    with open(DRIVER) as f:
        args = re.search(r"const ARGS = \[(.*?)\];", f.read(), re.S)
    check(args, "no ARGS list in %s" % DRIVER)
    driver = re.findall(r"'(--[a-z-]+)'", args.group(1))
    with open(os.path.join(harness.REPO, "DEVELOPERS.md")) as f:
        text = " ".join(f.read().split())
    started = re.search(r"started with (.*?)\. ", text)
    check(started, "DEVELOPERS.md does not say which flags chromium is started with")
    documented = re.findall(r"`?(--[a-z-]+)", started.group(1))
    check_equal(documented, driver, "chromium flags in DEVELOPERS.md (expected those of %s)"
                % os.path.basename(DRIVER))


def main():
    harness.require_root_and_fuse()
    if not os.access(CHROMIUM, os.X_OK):
        harness.skip("%s is missing (scripts/install-deps.sh installs Debian's chromium)"
                     % CHROMIUM)
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")) or \
            not shutil.which("node"):
        print("FAIL: node or playwright-core is missing in %s (run scripts/install-deps.sh)" % HERE)
        print("0 passed, 1 failed")
        sys.exit(1)
    suite.main()


if __name__ == "__main__":
    main()
