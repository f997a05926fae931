#!/usr/bin/env python3
"""Reading through real mounts: webfused + webfuse-provider exporting real directories.

The listing of a mount equals its source directory (names, types, sizes, permission modes,
mtimes), contents are byte-identical, missing files give ENOENT, one connection carries two
filesystems, three providers serve in parallel, and the throughput of a 64 MiB read through the
mount is measured against reading the source directly (printed, not asserted)."""

import errno
import hashlib
import os
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, check_errno, fail  # noqa: E402

suite = harness.Suite("test_mount_read")
suite.needs_provider = True

MIB = 1024 * 1024
# name -> (size, mode, mtime); mtimes are whole seconds: the protocol carries seconds.
FILES = {
    "empty": (0, 0o644, 1500000000),
    "one": (1, 0o600, 1500000001),
    "f4095": (4095, 0o640, 1500000002),
    "f4096": (4096, 0o444, 1500000003),
    "f1mib_plus_1": (MIB + 1, 0o755, 1600000000),
    "big64": (64 * MIB, 0o644, 1700000000),
    "future": (10, 0o604, 4102444800),  # 2100-01-01: beyond 32 bits
    "sub/nested.txt": (100, 0o640, 1400000000),
    "sub/deeper/leaf.bin": (5000, 0o400, 1300000000),
    "sub/deeper/deepest/x": (3, 0o644, 1200000000),
}
# directory -> (mode, mtime)
DIRS = {
    "": (0o755, 1650000000),
    "sub": (0o750, 1650000001),
    "sub/deeper": (0o700, 1650000002),
    "sub/deeper/deepest": (0o755, 1650000003),
    "sub/empty_dir": (0o711, 1650000004),
}

DATA = {}  # suite setup fills in: "main" -> path of the tree above, ...


def make_tree(root, files, dirs, seed):
    for d in sorted(dirs):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for name, (size, mode, mtime) in files.items():
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            left = size
            block = hashlib.sha256(seed + name.encode()).digest()
            while left > 0:
                chunk = os.urandom(min(left, 8 * MIB)) if size > 1 else block[:left]
                f.write(chunk)
                left -= len(chunk)
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))
    for d in sorted(dirs, key=len, reverse=True):  # deepest first: children change parents
        mode, mtime = dirs[d]
        os.chmod(os.path.join(root, d), mode)
        os.utime(os.path.join(root, d), (mtime, mtime))


@suite.setup
def make_data(suite_dir):
    DATA["main"] = os.path.join(suite_dir, "src-main")
    make_tree(DATA["main"], FILES, DIRS, b"main")
    DATA["second"] = os.path.join(suite_dir, "src-second")
    make_tree(DATA["second"], {"only-in-second.txt": (12345, 0o644, 1234567890),
                               "d/e/f": (777, 0o600, 1234567891)},
              {"": (0o755, 1111111111), "d": (0o755, 1111111112), "d/e": (0o750, 1111111113)},
              b"second")
    for i in range(3):
        key = "parallel%d" % i
        DATA[key] = os.path.join(suite_dir, "src-" + key)
        make_tree(DATA[key], {"data%d.bin" % i: (8 * MIB + i, 0o644, 1500000000 + i),
                              "small%d" % i: (100 + i, 0o640, 1500000100 + i),
                              "dir%d/inner" % i: (4096 * (i + 1), 0o600, 1500000200 + i)},
                  {"": (0o755, 1500000300), "dir%d" % i: (0o755, 1500000301)},
                  b"parallel%d" % i)


# ---- helpers ------------------------------------------------------------------------------------


def sha256_of(path, chunk=MIB):
    h = hashlib.sha256()
    total = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
            total += len(b)
    return h.hexdigest(), total


def describe(st):
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else \
        "other(%o)" % stat.S_IFMT(st.st_mode)
    d = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "mtime": int(st.st_mtime)}
    if kind == "file":
        d["size"] = st.st_size
    return d


def snapshot(root):
    """{relative path: attributes} of a whole tree, the root included as "."."""
    result = {".": describe(os.stat(root))}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            result[os.path.relpath(full, root)] = describe(os.lstat(full))
    return result


def check_same_tree(source, mount):
    expected = harness.bounded(lambda: snapshot(source), 30, "walking " + source)
    actual = harness.bounded(lambda: snapshot(mount), 60, "walking " + mount)
    if expected != actual:
        lines = []
        for k in sorted(set(expected) | set(actual)):
            if expected.get(k) != actual.get(k):
                lines.append("  %s: source %s, mount %s" % (k, expected.get(k), actual.get(k)))
        fail("mount %s differs from %s:\n%s" % (mount, source, "\n".join(lines)))
    # Directory listings themselves (os.walk would hide a duplicate name).
    for dirpath, dirnames, _ in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        check_equal(sorted(os.listdir(os.path.join(mount, rel))), sorted(os.listdir(dirpath)),
                    "listing of %s" % rel)


def check_same_contents(source, mount, names):
    for name in names:
        expected = sha256_of(os.path.join(source, name))
        actual = harness.bounded(lambda: sha256_of(os.path.join(mount, name)), 60,
                                 "reading " + name)
        check_equal(actual, expected, "sha256 and size of %s" % name)


def all_files(root):
    out = []
    for dirpath, _, filenames in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return sorted(out)


def serve(env, filesystems, timeout=10):
    daemon = env.start_daemon(timeout=timeout)
    provider = env.start_provider(daemon, filesystems)
    return daemon, provider


def established_connections_to(port):
    """Client-side ESTABLISHED TCP connections to 127.0.0.1:port (from /proc/net/tcp*)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remote, state = fields[2], fields[3]
                    if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            pass
    return count


# ---- tests --------------------------------------------------------------------------------------


@suite.test
def listing_equals_source(env):
    daemon, _ = serve(env, [("main", DATA["main"])])
    check_same_tree(DATA["main"], daemon.mount_path("main"))


@suite.test
def contents_are_byte_identical(env):
    daemon, _ = serve(env, [("main", DATA["main"])])
    mp = daemon.mount_path("main")
    check_same_contents(DATA["main"], mp, ["empty", "one", "f4095", "f4096", "f1mib_plus_1",
                                           "big64", "future"])
    # Reads at odd offsets and sizes, across page and request boundaries.
    with open(os.path.join(DATA["main"], "f1mib_plus_1"), "rb") as f:
        source = f.read()
    fd = os.open(os.path.join(mp, "f1mib_plus_1"), os.O_RDONLY)
    try:
        for offset, size in [(0, 1), (4095, 2), (4096, 4096), (131071, 131074), (MIB - 1, 10),
                             (MIB, 1), (MIB + 1, 100), (MIB + 5000, 10), (12345, 700000)]:
            got = os.pread(fd, size, offset)
            check(got == source[offset:offset + size],
                  "pread(%d, %d): %d bytes, differs from source" % (size, offset, len(got)))
    finally:
        os.close(fd)


@suite.test
def nested_directories(env):
    daemon, _ = serve(env, [("main", DATA["main"])])
    mp = daemon.mount_path("main")
    # Straight to a deep path, without listing anything first (a chain of lookups).
    st = os.stat(os.path.join(mp, "sub/deeper/deepest/x"))
    check_equal(describe(st), describe(os.stat(os.path.join(DATA["main"], "sub/deeper/deepest/x"))),
                "attributes of sub/deeper/deepest/x")
    check_same_contents(DATA["main"], mp, ["sub/nested.txt", "sub/deeper/leaf.bin",
                                           "sub/deeper/deepest/x"])
    check_equal(os.listdir(os.path.join(mp, "sub/empty_dir")), [], "listing of an empty dir")
    check_equal(sorted(os.listdir(os.path.join(mp, "sub"))), ["deeper", "empty_dir",
                                                             "nested.txt"], "listing of sub")
    check_equal(sorted(os.listdir(os.path.join(mp, "sub/deeper"))), ["deepest", "leaf.bin"],
                "listing of sub/deeper")
    # The same file by two paths gives the same inode (a stable inode table).
    a = os.stat(os.path.join(mp, "sub/deeper/leaf.bin"))
    b = os.stat(os.path.join(mp, "sub/../sub/deeper/./leaf.bin"))
    check_equal(a.st_ino, b.st_ino, "inode of leaf.bin by two paths")


@suite.test
def missing_file_is_enoent(env):
    daemon, provider = serve(env, [("main", DATA["main"])])
    mp = daemon.mount_path("main")
    for rel in ["nope", "sub/nope", "sub/deeper/nope", "nope/nested", "sub/nope/deeper"]:
        path = os.path.join(mp, rel)
        check_errno(lambda: os.stat(path), errno.ENOENT, "stat %s" % rel)
        check_errno(lambda: os.open(path, os.O_RDONLY), errno.ENOENT, "open %s" % rel)
    check_errno(lambda: os.listdir(os.path.join(mp, "missing_dir")), errno.ENOENT,
                "listdir of a missing directory")
    check(provider.alive(), "provider died")
    check(os.path.exists(os.path.join(mp, "one")), "an existing file vanished")


@suite.test
def files_renamed_or_linked_on_the_provider_side_are_served_by_their_names(env):
    """Firmware is often written as fw.tmp and renamed to fw.bin: after the rename the mount
    lists and reads the new name; both names of a hard-linked file read alike (each once
    failed with EIO: the provider took every move for a directory loop)."""
    src = env.mkdir("src")
    with open(os.path.join(src, "fw.tmp"), "wb") as f:
        f.write(b"image\n")
    os.mkdir(os.path.join(src, "d"))
    with open(os.path.join(src, "d", "a"), "wb") as f:
        f.write(b"linked\n")
    os.link(os.path.join(src, "d", "a"), os.path.join(src, "d", "b"))
    daemon, provider = serve(env, [("main", src)])
    mp = daemon.mount_path("main")
    with open(os.path.join(mp, "fw.tmp"), "rb") as f:
        check_equal(f.read(), b"image\n", "fw.tmp before the rename")
    os.rename(os.path.join(src, "fw.tmp"), os.path.join(src, "fw.bin"))
    harness.wait_until(lambda: sorted(os.listdir(mp)) == ["d", "fw.bin"], 10,
                       what="the mount to list the new name")
    with open(os.path.join(mp, "fw.bin"), "rb") as f:
        check_equal(f.read(), b"image\n", "fw.bin after the rename")
    check_equal(sorted(os.listdir(os.path.join(mp, "d"))), ["a", "b"], "both names of a link")
    for name in ("a", "b"):
        with open(os.path.join(mp, "d", name), "rb") as f:
            check_equal(f.read(), b"linked\n", "d/%s" % name)
    check(provider.alive(), "provider died")


@suite.test
def mount_is_read_only(env):
    daemon, _ = serve(env, [("main", DATA["main"])])
    mp = daemon.mount_path("main")
    check_errno(lambda: os.open(os.path.join(mp, "new"), os.O_WRONLY | os.O_CREAT, 0o644),
                errno.EROFS, "creating a file")
    check_errno(lambda: os.open(os.path.join(mp, "one"), os.O_WRONLY), errno.EROFS,
                "opening a file for writing")
    check_errno(lambda: os.mkdir(os.path.join(mp, "newdir")), errno.EROFS, "mkdir")
    check_errno(lambda: os.unlink(os.path.join(mp, "one")), errno.EROFS, "unlink")
    check_equal(sha256_of(os.path.join(mp, "one")), sha256_of(os.path.join(DATA["main"], "one")),
                "content after refused writes")


@suite.test
def two_filesystems_on_one_connection(env):
    daemon, _ = serve(env, [("first", DATA["main"] + "/sub"), ("second", DATA["second"])])
    check_equal(established_connections_to(daemon.port), 1,
                "provider connections to the gateway")
    check_same_tree(DATA["main"] + "/sub", daemon.mount_path("first"))
    check_same_tree(DATA["second"], daemon.mount_path("second"))
    check_same_contents(DATA["main"] + "/sub", daemon.mount_path("first"),
                        all_files(DATA["main"] + "/sub"))
    check_same_contents(DATA["second"], daemon.mount_path("second"), all_files(DATA["second"]))
    check_equal(sorted(m[0] for m in harness.mounts_under(daemon.mount_root)),
                [daemon.mount_path("first"), daemon.mount_path("second")], "mounts")


@suite.test
def three_providers_read_in_parallel(env):
    daemon = env.start_daemon(timeout=10)
    names = ["parallel0", "parallel1", "parallel2"]
    for name in names:
        env.start_provider(daemon, [(name, DATA[name])])
    check_equal(established_connections_to(daemon.port), 3, "provider connections")
    errors = []
    expected = {}
    for name in names:
        for rel in all_files(DATA[name]):
            expected[(name, rel)] = sha256_of(os.path.join(DATA[name], rel))

    start = threading.Barrier(len(names) * 2)

    def reader(name, order):
        try:
            start.wait(10)
            files = all_files(DATA[name])
            for rel in (files if order else reversed(files)):
                got = sha256_of(os.path.join(daemon.mount_path(name), rel), chunk=256 * 1024)
                if got != expected[(name, rel)]:
                    errors.append("%s/%s: got %s, expected %s" % (name, rel, got,
                                                                  expected[(name, rel)]))
        except Exception as e:
            errors.append("%s: %r" % (name, e))

    threads = [threading.Thread(target=reader, args=(n, o), daemon=True)
               for n in names for o in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not any(t.is_alive() for t in threads), "parallel readers did not finish in 60 s")
    check_equal(errors, [], "errors of parallel readers")
    for name in names:
        check_same_tree(DATA[name], daemon.mount_path(name))


def throughput(path, size):
    start = time.monotonic()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(MIB)
            if not b:
                break
            total += len(b)
    elapsed = time.monotonic() - start
    check_equal(total, size, "bytes read from %s" % path)
    return size / MIB / elapsed, elapsed


@suite.test
def throughput_of_64_mib_read(env):
    daemon, _ = serve(env, [("main", DATA["main"])])
    size = FILES["big64"][0]
    source = os.path.join(DATA["main"], "big64")
    mounted = os.path.join(daemon.mount_path("main"), "big64")
    dropped = drop = harness.drop_caches()
    direct, t_direct = throughput(source, size)
    drop = harness.drop_caches()
    dropped = dropped and drop
    through, t_mount = harness.bounded(lambda: throughput(mounted, size), 120, "64 MiB read")
    print("  throughput (64 MiB, 1 MiB reads, %s): source %.0f MB/s (%.3f s), mount %.0f MB/s "
          "(%.3f s), mount/source %.0f%%"
          % ("caches dropped before each" if dropped else "could NOT drop caches",
             direct, t_direct, through, t_mount, 100.0 * through / direct))
    sys.stdout.flush()



def read_requests(daemon):
    samples = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    return sum(v for (name, labels), v in samples.items()
               if name == "webfuse_requests_total" and ("op", "read") in labels)


@suite.test
def reopened_file_is_read_from_the_page_cache_until_it_changes(env):
    """keep_cache: a second open of an unchanged file reads nothing from the provider; once the
    provider's file has another mtime, the next look at its attributes drops the stale pages."""
    daemon = env.start_daemon()
    source = env.mkdir("cached")
    path = os.path.join(source, "f")
    first, second = os.urandom(256 * 1024), os.urandom(256 * 1024)
    with open(path, "wb") as f:
        f.write(first)
    os.utime(path, (1600000000, 1600000000))
    env.start_webfuse2_provider(daemon, "cache", source, read_only=True)
    through = os.path.join(daemon.mount_path("cache"), "f")
    harness.drop_caches()
    check(open(through, "rb").read() == first, "first read")
    asked = read_requests(daemon)
    check(asked >= 1, "the first read went to the provider")
    check(open(through, "rb").read() == first, "second read")
    check_equal(read_requests(daemon), asked, "read requests after reading the file again")
    with open(path, "wb") as f:
        f.write(second)
    os.utime(path, (1600000100, 1600000100))
    time.sleep(1.1)  # attributes are cached for one second
    check(open(through, "rb").read() == second, "the changed file is read afresh")
    check(read_requests(daemon) > asked, "the changed file was asked for again")


@suite.test
def a_file_replaced_with_the_same_size_and_mtime_is_read_afresh(env):
    """A firmware image rebuilt reproducibly (the same padded size, mtime from
    SOURCE_DATE_EPOCH) and put in place of the old one, or written over it and its mtime set
    back: size and mtime say nothing changed, but the file's inode or ctime do. The next open
    must not serve the old file's cached pages."""
    daemon = env.start_daemon()
    source = env.mkdir("replaced")
    path = os.path.join(source, "fw.img")
    contents = [os.urandom(256 * 1024) for _ in range(3)]

    def put(data, in_place):
        target = path if in_place else path + ".new"
        with open(target, "r+b" if in_place else "wb") as f:
            f.write(data)
        os.utime(target, (1600000000, 1600000000))
        if not in_place:
            os.rename(target, path)

    put(contents[0], in_place=False)
    env.start_webfuse2_provider(daemon, "fw", source, read_only=True)
    through = os.path.join(daemon.mount_path("fw"), "fw.img")
    check(open(through, "rb").read() == contents[0], "the first image")
    for i, in_place in ((1, False), (2, True)):
        time.sleep(0.05)  # a ctime of its own
        put(contents[i], in_place)
        time.sleep(1.1)  # attributes are cached for one second
        check(open(through, "rb").read() == contents[i],
              "image %d (%s) read through the mount" % (i, "written over" if in_place else "renamed in"))


if __name__ == "__main__":
    suite.main()
