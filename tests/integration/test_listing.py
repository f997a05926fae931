#!/usr/bin/env python3
"""Directory listings through real mounts, with and without attributes in the listing.

webfused asks a webfuse2 provider for READDIRPLUS (entries with attributes, in pages) and falls
back to READDIR when the provider answers 0x80, or the empty echo of the JavaScript and Python
examples; a JSON provider's readdir entries may carry attributes. Either way a listing must show
what the provider's directory holds: names, types, sizes, permission modes and mtimes, for
directories of 0, 1 and 100,000 entries. With attributes, `ls -l` (lstat of every entry) costs
one provider request per page of the listing, not one per entry; that is counted in /metrics."""

import errno
import os
import stat
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402
import fakeprovider  # noqa: E402

suite = harness.Suite("test_listing")
suite.needs_provider = True

BIG = 100000
PAGE = 4096  # the gateway's most entries per READDIRPLUS page
TREES = {}  # suite setup: "webfuse2" / "json" -> source directory


def fill(directory, count, with_links):
    """`count` entries: files of several sizes, modes and mtimes, some directories and, where
    the protocol serves them, symbolic links."""
    os.makedirs(directory)
    for i in range(count):
        path = os.path.join(directory, "e%06d" % i)
        kind = i % 10
        if kind == 7:
            os.mkdir(path, 0o700 if i % 20 else 0o755)
        elif kind == 9 and with_links:
            os.symlink("e%06d" % (i - 1), path)
            continue
        else:
            with open(path, "wb") as f:
                f.write(b"x" * (i % 1000))
            os.chmod(path, (0o644, 0o600, 0o755, 0o444, 0o640)[i % 5])
        os.utime(path, (1500000000 + i, 1600000000 + i), follow_symlinks=False)


@suite.setup
def make_trees(suite_dir):
    for protocol, links in (("webfuse2", True), ("json", False)):
        root = os.path.join(suite_dir, protocol)
        for count in (0, 1, BIG):
            fill(os.path.join(root, "n%d" % count), count, links)
        TREES[protocol] = root


def listing(directory, seconds_only):
    """{name: (type, permissions, size of non-directories, mtime)} from scandir and lstat."""
    result = {}
    with os.scandir(directory) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            kind = stat.S_IFMT(st.st_mode)
            check_equal(kind == stat.S_IFDIR, entry.is_dir(follow_symlinks=False),
                        "d_type of %s agrees with lstat" % entry.name)
            mtime = st.st_mtime_ns // 10**9 if seconds_only else st.st_mtime_ns
            result[entry.name] = (kind, stat.S_IMODE(st.st_mode),
                                  None if kind == stat.S_IFDIR else st.st_size, mtime)
    return result


def check_listings(mount, source, what, seconds_only=False):
    for count in (0, 1, BIG):
        name = "n%d" % count
        expected = listing(os.path.join(source, name), seconds_only)
        actual = listing(os.path.join(mount, name), seconds_only)
        check_equal(len(actual), count, "%s: entries of %s" % (what, name))
        if actual != expected:
            wrong = sorted(n for n in set(actual) | set(expected)
                           if actual.get(n) != expected.get(n))
            fail("%s: %s differs in %d entries, e.g. %r: %r != %r" % (
                what, name, len(wrong), wrong[0], actual.get(wrong[0]), expected.get(wrong[0])))


def requests(daemon, protocol, op):
    samples = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    return samples.get(("webfuse_requests_total", (("op", op), ("protocol", protocol))), 0)


def ls_l(directory):
    out = subprocess.run(["ls", "-l", "--time-style=+%s", directory], capture_output=True,
                         timeout=120)
    check_equal(out.returncode, 0, "ls -l %s exit status (%s)" % (directory, out.stderr))
    return out.stdout.decode(errors="replace")


def serve_with_readdirplus(env):
    """A daemon with our provider serving the webfuse2 tree as "plus", caches dropped."""
    daemon = env.start_daemon()
    env.start_webfuse2_provider(daemon, "plus", TREES["webfuse2"], read_only=True)
    harness.drop_caches()
    return daemon, daemon.mount_path("plus")


@suite.test(budget=200)
def webfuse2_listings_with_attributes_equal_the_source(env):
    daemon, mount = serve_with_readdirplus(env)
    check_listings(mount, TREES["webfuse2"], "webfuse2 with readdirplus")
    pages = requests(daemon, "webfuse2", "readdir")
    # n0 and n1 take a page each, n100000 takes 25; none fell back.
    check_equal(pages, 2 + -(-BIG // PAGE), "listing requests (pages)")
    check("lists names only" not in daemon.log_text(), "no fallback to readdir")


@suite.test(budget=200)
def ls_l_costs_a_request_per_page_not_per_entry(env):
    daemon, mount = serve_with_readdirplus(env)
    before = requests(daemon, "webfuse2", "getattr")
    text = ls_l(os.path.join(mount, "n100000"))
    check_equal(text.count("\n"), BIG + 1, "lines of ls -l (total + entries)")
    # ls -l stats every entry and reads every link; the attributes came with the listing, so
    # only the directory on the way is looked up again, each time its name's cache second is
    # over: a few requests per second of listing, not one per entry.
    lookups = requests(daemon, "webfuse2", "getattr") - before
    print("  ls -l of %d entries: %d getattr requests" % (BIG, lookups))
    check(lookups < BIG // 100, "getattr requests during ls -l of %d entries: %d" % (BIG, lookups))
    check_equal(requests(daemon, "webfuse2", "readdir"), -(-BIG // PAGE), "listing pages")


@suite.test(budget=250)
def old_webfuse2_provider_answering_0x80_lists_the_same(env):
    """pyprovider is written from the protocol document: it answers 0x80 to READDIRPLUS."""
    daemon = env.start_daemon()
    pyprovider = [sys.executable, os.path.join(os.path.dirname(__file__), "pyprovider.py")]
    env.start_webfuse2_provider(daemon, "old", TREES["webfuse2"], read_only=True,
                                command=pyprovider)
    harness.drop_caches()
    check_listings(daemon.mount_path("old"), TREES["webfuse2"], "webfuse2 without readdirplus")
    check_equal(daemon.log_text().count("the provider lists names only"), 1,
                "the fallback is logged once per filesystem")
    # Names only: every entry was looked up by itself.
    check(requests(daemon, "webfuse2", "getattr") >= BIG, "one lookup per entry")


@suite.test
def provider_echoing_an_empty_answer_lists_the_same(env):
    """The JavaScript and Python example providers answer an unknown type with its own response
    type and nothing after it (0x98 here)."""
    daemon = env.start_daemon()
    source = os.path.join(TREES["webfuse2"], "n1")
    fake = fakeprovider.FakeWebfuse2(daemon.port, "echo", os.path.dirname(source))
    env.add_cleanup(fake.abort)
    fake.handlers["0x18"] = lambda f, req: struct.pack("!IB", req.id, 0x98)
    harness.wait_mounted(daemon.mount_path("echo"), 10)
    expected = listing(source, False)
    check_equal(listing(os.path.join(daemon.mount_path("echo"), "n1"), False), expected,
                "listing after the echo")
    check_equal(len(fake.requests_of("0x18")), 1, "READDIRPLUS asked once, then never again")
    check_equal(listing(os.path.join(daemon.mount_path("echo"), "n1"), False), expected,
                "listing again")
    check_equal(len(fake.requests_of("0x18")), 1, "READDIRPLUS not asked again")


@suite.test
def provider_answering_enosys_lists_the_same(env):
    daemon = env.start_daemon()
    source = os.path.join(TREES["webfuse2"], "n1")
    fake = fakeprovider.FakeWebfuse2(daemon.port, "nosys", os.path.dirname(source))
    env.add_cleanup(fake.abort)
    fake.handlers["0x18"] = lambda f, req: req.answer(-errno.ENOSYS)
    harness.wait_mounted(daemon.mount_path("nosys"), 10)
    check_equal(listing(os.path.join(daemon.mount_path("nosys"), "n1"), False),
                listing(source, False), "listing after ENOSYS")
    check_equal(len(fake.requests_of("0x18")), 1, "READDIRPLUS asked once")


@suite.test
def malformed_readdirplus_pages_fail_the_listing_with_eio(env):
    """A page with more entries than asked for, an empty page that says more follow, or entries
    cut short: the listing fails with EIO, the mount goes on serving."""
    daemon = env.start_daemon()
    source = os.path.join(TREES["webfuse2"], "n1")
    fake = fakeprovider.FakeWebfuse2(daemon.port, "bad", source)
    env.add_cleanup(fake.abort)
    harness.wait_mounted(daemon.mount_path("bad"), 10)
    attrs = fakeprovider.pyprovider._attributes(os.lstat(source))
    entry = struct.pack("!I", 1) + b"x" + attrs
    dot = struct.pack("!I", 1) + b"." + attrs
    for what, body in (("too many entries", struct.pack("!QI", 0, PAGE + 1) + entry * (PAGE + 1)),
                       ("empty page with more", struct.pack("!QI", 7, 0)),
                       ("entry cut short", struct.pack("!QI", 0, 1) + entry[:-1]),
                       ("a page that leads back to itself", struct.pack("!QI", 1, 1) + dot)):
        fake.handlers["0x18"] = lambda f, req, body=body: req.answer(0, body)
        harness.check_errno(lambda: os.listdir(daemon.mount_path("bad")), errno.EIO, what)
    # Pages of nothing but "." that go round in a circle end at the bound on entries received.
    fake.handlers["0x18"] = lambda f, req: req.answer(
        0, struct.pack("!QI", 2 if req.raw[-12:-4] == struct.pack("!Q", 1) else 1, PAGE) +
        dot * PAGE)
    harness.check_errno(lambda: os.listdir(daemon.mount_path("bad")), errno.EFBIG,
                        "pages going round in a circle")
    check(len(fake.requests_of("0x18")) < 100, "pages asked: %d" % len(fake.requests_of("0x18")))
    del fake.handlers["0x18"]
    check_equal(os.listdir(daemon.mount_path("bad")), ["e000000"], "served again")


@suite.test(budget=200)
def json_listings_with_attributes_equal_the_source(env):
    daemon = env.start_daemon()
    env.start_provider(daemon, [("js", TREES["json"])])
    harness.drop_caches()
    check_listings(daemon.mount_path("js"), TREES["json"], "JSON with attributes",
                   seconds_only=True)
    lookups = requests(daemon, "json", "lookup")
    check(lookups <= 8, "lookups with attributes in the listing: %d" % lookups)


@suite.test
def first_generation_json_listing_is_looked_up_entry_by_entry(env):
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    tree = {"f%02d" % i: fakeprovider.File(b"y" * i, mode=0o640, mtime=1600000000 + i)
            for i in range(20)}
    tree["d"] = fakeprovider.Dir({}, mode=0o711)
    fake.attach("gen1", tree)
    mount = daemon.mount_path("gen1")
    harness.wait_mounted(mount, 10)
    got = listing(mount, True)
    check_equal(sorted(got), sorted(tree), "names")
    check_equal(got["f07"], (stat.S_IFREG, 0o640, 7, 1600000007), "a file")
    check_equal(got["d"][:2], (stat.S_IFDIR, 0o711), "the directory")
    check_equal(len(fake.requests_of("lookup")), 21, "one lookup per entry")


@suite.test
def a_listing_held_open_does_not_set_back_what_changed_meanwhile(env):
    """The listing of an open directory is asked for once; a file changed through the mount
    while the directory is being read must not get the listing's older attributes."""
    daemon = env.start_daemon()
    source = env.mkdir("held")
    names = ["f%04d" % i for i in range(3000)]
    for name in names:
        with open(os.path.join(source, name), "wb") as f:
            f.write(b"old content")
    env.start_webfuse2_provider(daemon, "held", source)
    mount = daemon.mount_path("held")
    order = os.listdir(mount)  # the order every listing comes in

    def change_while_listing(name, change):
        with os.scandir(mount) as it:
            first = next(it).name  # the listing is loaded, the rest comes in later batches
            change(os.path.join(mount, name))
            rest = [entry.name for entry in it]
        check_equal(sorted(rest + [first]), names, "the listing")
        return os.lstat(os.path.join(mount, name)).st_size

    def append(path):
        with open(path, "ab") as f:
            f.write(b", grown")

    def truncate_on_open(path):
        with open(path, "wb"):
            pass  # open(O_TRUNC) alone, no write

    # The last names come in the last batch, long after the listing was asked for.
    check_equal(change_while_listing(order[-1], append), 18, "size after a write")
    check_equal(change_while_listing(order[-2], truncate_on_open), 0, "size after O_TRUNC")


@suite.test
def a_new_listing_sees_what_changed_since_the_last(env):
    daemon = env.start_daemon()
    source = env.mkdir("changing")
    env.start_webfuse2_provider(daemon, "chg", source)
    mount = daemon.mount_path("chg")
    check_equal(os.listdir(mount), [], "empty at first")
    with open(os.path.join(mount, "new.txt"), "w") as f:
        f.write("made through the mount")
    open(os.path.join(source, "beside.txt"), "w").close()
    check_equal(sorted(os.listdir(mount)), ["beside.txt", "new.txt"], "both new entries")
    os.unlink(os.path.join(source, "beside.txt"))
    time.sleep(1.1)  # attributes and names are cached for a second
    check_equal(os.listdir(mount), ["new.txt"], "a file removed on the provider")
    check_equal(os.stat(os.path.join(mount, "new.txt")).st_size, 22, "size from the listing")


@suite.test(budget=200)
def directories_held_open_cannot_take_all_memory(env):
    """Each opendir keeps a listing of its own until it is closed: a program holding a large
    directory open many times made the gateway grow by a full listing each time (about 7 MiB
    here), until the device ran out of memory. Past the listings' budget (64 MiB for all
    mounts) a listing fails with ENOMEM; once directories are closed, listing works again."""
    source = env.mkdir("wide")
    names = ["%0200d" % i for i in range(20000)]
    for name in names:
        open(os.path.join(source, name), "w").close()
    daemon = env.start_daemon()
    env.start_webfuse2_provider(daemon, "wide", source, read_only=True)
    mount = daemon.mount_path("wide")
    held, failed = [], None
    try:
        for _ in range(12):
            fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
            held.append(fd)
            try:
                check_equal(len(os.listdir(fd)), len(names), "entries of listing %d" % len(held))
            except OSError as e:
                failed = e.errno
                break
        check_equal(failed and harness.errno_name(failed), harness.errno_name(errno.ENOMEM),
                    "a listing past the budget")
        check(len(held) > 5, "listings held before the budget ran out: %d" % (len(held) - 1))
    finally:
        for fd in held:
            os.close(fd)
    check_equal(len(os.listdir(mount)), len(names), "a listing once the directories are closed")
    check(daemon.alive(), "webfused died")


if __name__ == "__main__":
    suite.main()
