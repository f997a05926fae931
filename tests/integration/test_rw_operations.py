#!/usr/bin/env python3
"""Every filesystem operation through a read-write webfuse2 mount, checked against a reference.

Each test starts webfused and a webfuse2 provider serving a fresh temporary directory (`src`), and
keeps a second directory (`ref`) on the local disk. Every operation runs twice: on `ref` directly
and on the mount. The outcomes must be equal (the result, or the errno name), and so must the
resulting state: the whole tree seen through the mount, and the provider's directory itself, equal
the reference tree (type, permission bits, size, nlink, uid, gid, symlink target, sha256).

Also: the inode numbers the mount reports, files deleted while open, a read-only provider (EROFS),
a full filesystem (ENOSPC, on a small tmpfs), and errors the provider returns reaching the program.
"""

import errno
import os
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, check_errno, fail, outcome  # noqa: E402

suite = harness.Suite("test_rw_operations")
suite.needs_provider = True

MIB = 1 << 20
GIB = 1 << 30
NAME = "rw"


# ---- fixture ------------------------------------------------------------------------------------


class RW:
    """A mount of `src` through webfused and a webfuse2 provider, plus a reference directory."""

    def __init__(self, env, prepare=None, read_only=False, src=None):
        harness.require_webfuse2_provider()
        self.env = env
        self.daemon = env.start_daemon()
        self.src = src or env.mkdir("src")
        self.ref = env.mkdir("ref")
        if prepare:
            prepare(self.src)
            prepare(self.ref)
        self.provider = env.start_webfuse2_provider(self.daemon, NAME, self.src,
                                                    read_only=read_only)
        self.mnt = self.daemon.mount_path(NAME)

    def m(self, *parts):
        return os.path.join(self.mnt, *parts)

    def r(self, *parts):
        return os.path.join(self.ref, *parts)

    def s(self, *parts):
        return os.path.join(self.src, *parts)

    def same(self, what, fn):
        """Runs fn(P) with P = path builder of the reference, then of the mount; their outcomes
        (result or errno name) must be equal. Returns the mount's outcome."""
        expected = outcome(fn, self.r)
        actual = outcome(fn, self.m)
        if actual != expected:
            fail("%s: reference gave %r, mount gave %r" % (what, expected, actual))
        return actual

    def same_ok(self, what, fn):
        result = self.same(what, fn)
        if result[0] != "ok":
            fail("%s: failed on both sides with %s (the test expects success)" % (what, result[1]))
        return result[1]

    def same_err(self, what, fn, code):
        result = self.same(what, fn)
        check_equal(result, ("err", errno.errorcode[code]), what)

    def check_state(self, what, content=True, times=False):
        """The mount and the provider's directory both equal the reference tree."""
        harness.check_same_tree(self.ref, self.mnt, "%s: the mount" % what, content, times)
        harness.check_same_tree(self.ref, self.src, "%s: the provider's directory" % what,
                                content, times)


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    import hashlib
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, block)).digest()
        block += 1
    return bytes(out[:n])


def basic_tree(root):
    """A small tree used by many tests: files, a nested directory, a symlink."""
    write_file(os.path.join(root, "f"), pattern(1000, 1), 0o644)
    write_file(os.path.join(root, "g"), pattern(3000, 2), 0o600)
    write_file(os.path.join(root, "empty"), b"", 0o640)
    os.makedirs(os.path.join(root, "d/sub"))
    write_file(os.path.join(root, "d/x"), pattern(50, 3))
    write_file(os.path.join(root, "d/sub/y"), pattern(70000, 4))
    write_file(os.path.join(root, "d/sub/z"), b"zzz")
    os.mkdir(os.path.join(root, "emptydir"), 0o750)
    os.symlink("f", os.path.join(root, "link-to-f"))


def fds_of(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


# ---- getattr, access ----------------------------------------------------------------------------


@suite.test
def getattr_of_every_type_matches_the_source(env):
    def prepare(root):
        write_file(os.path.join(root, "f"), pattern(1000), 0o640)
        os.utime(os.path.join(root, "f"), ns=(1500000000123456789, 1600000000987654321))
        write_file(os.path.join(root, "future"), b"x", 0o604)
        os.utime(os.path.join(root, "future"), ns=(4102444800000000001, 4102444800999999999))
        with open(os.path.join(root, "sparse5g"), "wb") as f:
            f.truncate(5 * GIB + 3)  # sizes and offsets need all 64 bits
        os.mkdir(os.path.join(root, "d"), 0o751)
        os.mkdir(os.path.join(root, "d/inner"))
        os.symlink("f", os.path.join(root, "l"))
        os.mkfifo(os.path.join(root, "p"), 0o620)
        os.chown(os.path.join(root, "f"), 4321, 8765)

    w = RW(env, prepare)
    for rel in ["", "f", "future", "sparse5g", "d", "d/inner", "l", "p"]:
        a, e = os.lstat(w.m(rel)), os.lstat(w.s(rel))
        for field in ["st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                      "st_mtime_ns", "st_ctime_ns", "st_atime_ns", "st_rdev"]:
            check_equal(getattr(a, field), getattr(e, field), "%s of %r" % (field, rel))
    # Following a symlink gives the target's attributes.
    check_equal(os.stat(w.m("l")).st_size, 1000, "stat through the symlink l")
    os.unlink(w.m("sparse5g"))  # not hashed by the state comparison
    os.unlink(w.r("sparse5g"))
    w.check_state("after stats")


@suite.test
def stat_errors_match_the_reference(env):
    w = RW(env, basic_tree)
    w.same_err("stat of a missing file", lambda P: os.stat(P("missing")), errno.ENOENT)
    w.same_err("stat below a missing dir", lambda P: os.stat(P("nodir/x")), errno.ENOENT)
    w.same_err("stat below a file", lambda P: os.stat(P("f/x")), errno.ENOTDIR)
    w.same_err("stat of a 256-byte name", lambda P: os.stat(P("n" * 256)), errno.ENAMETOOLONG)
    w.same_err("stat of a dangling symlink", lambda P: os.stat(P("dangling")), errno.ENOENT)
    w.same_ok("stat of a 255-byte name (missing)",
              lambda P: os.path.exists(P("n" * 255)))


@suite.test
def access_matches_the_reference(env):
    def prepare(root):
        for mode in [0o000, 0o400, 0o200, 0o100, 0o644, 0o755, 0o4711, 0o070, 0o007]:
            write_file(os.path.join(root, "f%o" % mode), b"data", mode)
        os.mkdir(os.path.join(root, "d000"), 0o000)
        os.mkdir(os.path.join(root, "d755"), 0o755)
        os.symlink("f755", os.path.join(root, "l"))

    w = RW(env, prepare)
    names = sorted(os.listdir(w.ref)) + ["missing"]
    for name in names:
        for mode, label in [(os.F_OK, "F_OK"), (os.R_OK, "R_OK"), (os.W_OK, "W_OK"),
                            (os.X_OK, "X_OK"), (os.R_OK | os.W_OK | os.X_OK, "RWX")]:
            w.same("access(%s, %s)" % (name, label), lambda P: os.access(P(name), mode))
    w.check_state("after access")


# ---- symlink, readlink, link --------------------------------------------------------------------


@suite.test
def symlink_and_readlink(env):
    w = RW(env, basic_tree)
    targets = {"rel": "f", "abs": "/etc/hostname", "dangling": "no/such/file",
               "into-dir": "d/sub/y", "dotdot": "../" + NAME + "/f", "long": "x/" * 500 + "end",
               "longest": "y" * 4095, "spaces": "a b\tc"}
    for name, target in targets.items():
        w.same_ok("symlink %s -> %r" % (name, target[:40]),
                  lambda P: os.symlink(target, P("s-" + name)))
        w.same_ok("readlink %s" % name, lambda P: os.readlink(P("s-" + name)))
        w.same_ok("lstat %s" % name, lambda P: harness.entry_state(P("s-" + name)))
    w.same_ok("reading through a relative symlink", lambda P: read_file(P("s-rel")))
    w.same_ok("reading through a symlink into a dir", lambda P: read_file(P("s-into-dir")))
    w.same_err("opening a dangling symlink", lambda P: open(P("s-dangling")), errno.ENOENT)
    w.same_err("symlink over an existing name", lambda P: os.symlink("f", P("g")), errno.EEXIST)
    w.same_err("symlink in a missing dir", lambda P: os.symlink("f", P("nodir/l")),
               errno.ENOENT)
    w.same_err("readlink of a file", lambda P: os.readlink(P("f")), errno.EINVAL)
    w.same_err("readlink of a missing name", lambda P: os.readlink(P("missing")), errno.ENOENT)
    w.same_err("symlink with a 256-byte name", lambda P: os.symlink("f", P("l" * 256)),
               errno.ENAMETOOLONG)
    w.check_state("after symlinks")


@suite.test
def hard_link_content_and_errors(env):
    w = RW(env, basic_tree)
    w.same_ok("link f -> f2", lambda P: os.link(P("f"), P("f2")))
    w.same_ok("state of the new name f2", lambda P: harness.entry_state(P("f2")))
    w.same_ok("link f2 -> d/f3", lambda P: os.link(P("f2"), P("d/f3")))
    w.same_ok("state of the new name d/f3", lambda P: harness.entry_state(P("d/f3")))

    def write_through_other_name(P):
        with open(P("d/f3"), "r+b") as f:
            f.seek(10)
            f.write(b"CHANGED")
        return read_file(P("f"))[:20], read_file(P("f2"))[:20]

    w.same_ok("a write through one name is seen by the others", write_through_other_name)
    w.same_ok("unlink f", lambda P: os.unlink(P("f")))
    w.same_ok("content of f2 after unlinking f", lambda P: read_file(P("f2")))
    w.same_err("link over an existing name", lambda P: os.link(P("g"), P("f2")), errno.EEXIST)
    w.same_err("link of a missing file", lambda P: os.link(P("missing"), P("new")),
               errno.ENOENT)
    w.same_err("link of a directory", lambda P: os.link(P("d"), P("dlink")), errno.EPERM)
    w.same_err("link into a missing dir", lambda P: os.link(P("g"), P("nodir/g")),
               errno.ENOENT)
    w.same_ok("link of a symlink (not followed)",
              lambda P: os.link(P("link-to-f"), P("link2"), follow_symlinks=False))
    w.same_ok("state of the symlink's new name", lambda P: harness.entry_state(P("link2")))
    # Other names of a linked file show its new link count only after the attribute timeout
    # here; hard_link_other_names_see_changes_at_once tests that strictly.
    time.sleep(1.2)
    w.check_state("after linking and unlinking")


@suite.test
def hard_link_names_share_one_inode(env):
    w = RW(env, basic_tree)
    os.link(w.m("f"), w.m("f2"))
    os.link(w.m("f"), w.m("d/f3"))
    inodes = {rel: os.stat(w.m(rel)).st_ino for rel in ["f", "f2", "d/f3"]}
    check_equal(len(set(inodes.values())), 1, "inodes of three names of one file: %r" % inodes)
    os.rename(w.m("f2"), w.m("d/sub/f2"))
    check_equal(os.stat(w.m("d/sub/f2")).st_ino, inodes["f"], "inode of a renamed link")
    out = subprocess.run(["find", w.mnt, "-samefile", w.m("f")], stdout=subprocess.PIPE,
                         check=True, timeout=20).stdout.decode().split("\n")
    check_equal(sorted(os.path.relpath(p, w.mnt) for p in out if p),
                ["d/f3", "d/sub/f2", "f"], "find -samefile f")


@suite.test
def hard_link_other_names_see_changes_at_once(env):
    w = RW(env, basic_tree)
    fds = {P: os.open(P("f"), os.O_RDWR) for P in (w.r, w.m)}
    try:
        w.same_ok("size and first bytes of f, cached", lambda P: (
            os.fstat(fds[P]).st_size, os.pread(fds[P], 20, 0)))
        w.same_ok("link f -> f2", lambda P: os.link(P("f"), P("f2")))
        w.same_ok("nlink of f right after link", lambda P: os.stat(P("f")).st_nlink)
        w.same_ok("truncate f2 to 10", lambda P: os.truncate(P("f2"), 10))
        w.same_ok("size of f through its open descriptor",
                  lambda P: os.fstat(fds[P]).st_size)
        w.same_ok("read through f's open descriptor", lambda P: os.pread(fds[P], 1000, 0))

        def write_f2(P):
            with open(P("f2"), "r+b") as f:
                f.write(b"NEW DATA")

        w.same_ok("write through f2", write_f2)
        w.same_ok("read through f's open descriptor after the write",
                  lambda P: os.pread(fds[P], 1000, 0))
        w.same_ok("unlink f", lambda P: os.unlink(P("f")))
        w.same_ok("nlink of f2 right after unlinking f", lambda P: os.stat(P("f2")).st_nlink)
    finally:
        for fd in fds.values():
            os.close(fd)


# ---- rename ------------------------------------------------------------------------------------


@suite.test
def rename_plain_over_existing_and_errors(env):
    w = RW(env, basic_tree)
    w.same_ok("rename f -> f-renamed", lambda P: os.rename(P("f"), P("f-renamed")))
    w.same_err("stat of the old name", lambda P: os.stat(P("f")), errno.ENOENT)
    w.same_ok("content of the new name", lambda P: read_file(P("f-renamed")))
    w.same_ok("rename over an existing file",
              lambda P: os.rename(P("f-renamed"), P("g")))
    w.same_ok("content of the replaced file", lambda P: read_file(P("g")))
    w.same_ok("rename into a subdirectory", lambda P: os.rename(P("g"), P("d/sub/g")))
    w.same_ok("rename to the same name", lambda P: os.rename(P("d/x"), P("d/x")))
    w.same_err("rename a file over a directory",
               lambda P: os.rename(P("d/x"), P("emptydir")), errno.EISDIR)
    w.same_err("rename a directory over a file",
               lambda P: os.rename(P("emptydir"), P("d/x")), errno.ENOTDIR)
    w.same_err("rename a directory over a non-empty one",
               lambda P: os.rename(P("emptydir"), P("d")), errno.ENOTEMPTY)
    w.same_err("rename a missing name", lambda P: os.rename(P("missing"), P("x")),
               errno.ENOENT)
    w.same_err("rename into a missing dir", lambda P: os.rename(P("d/x"), P("nodir/x")),
               errno.ENOENT)
    w.same_err("rename a directory into itself",
               lambda P: os.rename(P("d"), P("d/sub/d")), errno.EINVAL)
    w.same_err("rename to a 256-byte name", lambda P: os.rename(P("d/x"), P("x" * 256)),
               errno.ENAMETOOLONG)
    w.same_ok("rename a directory over an empty one",
              lambda P: os.rename(P("d/sub"), P("emptydir")))
    w.same_ok("listing of the replaced directory", lambda P: sorted(os.listdir(P("emptydir"))))
    w.same_ok("rename a symlink", lambda P: os.rename(P("link-to-f"), P("d/link")))
    w.same_ok("readlink of the moved symlink", lambda P: os.readlink(P("d/link")))
    w.check_state("after renames")


@suite.test
def rename_onto_another_name_of_the_same_file_changes_nothing(env):
    # POSIX: when old and new are links to the same file, rename does nothing and succeeds.
    w = RW(env, basic_tree)
    w.same_ok("link f -> f2", lambda P: os.link(P("f"), P("f2")))
    w.same_ok("rename f -> f2 (same file)", lambda P: os.rename(P("f"), P("f2")))
    w.same_ok("f still exists", lambda P: os.path.exists(P("f")))
    w.same_ok("listing", lambda P: sorted(os.listdir(P(""))))
    w.same_ok("content of f", lambda P: read_file(P("f")))
    w.check_state("after rename onto a hard link")


@suite.test
def rename_directory_moves_everything_below(env):
    w = RW(env, basic_tree)
    ino_before = {rel: os.stat(w.m(rel)).st_ino for rel in ["d", "d/x", "d/sub", "d/sub/y"]}
    fds = {P: os.open(P("d/sub/y"), os.O_RDWR) for P in (w.r, w.m)}
    try:
        w.same_ok("rename d -> e", lambda P: os.rename(P("d"), P("e")))
        for rel in ["d", "d/x", "d/sub/y"]:
            w.same_err("stat of old path %s" % rel, lambda P: os.stat(P(rel)), errno.ENOENT)
        for rel in ["e/x", "e/sub/y", "e/sub/z"]:
            w.same_ok("content of %s" % rel, lambda P: read_file(P(rel)))
        for old, new in [("d", "e"), ("d/x", "e/x"), ("d/sub", "e/sub"), ("d/sub/y", "e/sub/y")]:
            check_equal(os.stat(w.m(new)).st_ino, ino_before[old],
                        "inode of %s (was %s) after renaming the directory" % (new, old))
        # A file opened before the rename keeps working, and its writes land at the new path.
        w.same_ok("write through a descriptor opened before the rename",
                  lambda P: os.pwrite(fds[P], b"written-after-rename", 5))
        w.same_ok("read back through the new path", lambda P: read_file(P("e/sub/y"))[:40])
        # New names below the moved directory are created at the new path.
        w.same_ok("create below the moved directory",
                  lambda P: write_file(P("e/sub/new"), b"new file"))
        w.same_ok("mkdir below the moved directory", lambda P: os.mkdir(P("e/sub/newdir")))
        w.same_ok("listing of e/sub", lambda P: sorted(os.listdir(P("e/sub"))))
        # Move a subdirectory up and into another directory.
        w.same_ok("rename e/sub -> top", lambda P: os.rename(P("e/sub"), P("top")))
        w.same_ok("rename top -> emptydir/deeper",
                  lambda P: os.rename(P("top"), P("emptydir/deeper")))
        w.same_ok("content at the final path",
                  lambda P: read_file(P("emptydir/deeper/y"))[:40])
        w.same_ok("fstat through the old descriptor",
                  lambda P: os.fstat(fds[P]).st_size)
        check_equal(os.stat(w.m("emptydir/deeper/y")).st_ino, ino_before["d/sub/y"],
                    "inode of emptydir/deeper/y (was d/sub/y)")
    finally:
        for fd in fds.values():
            os.close(fd)
    w.check_state("after moving directories")


@suite.test
def rename_noreplace_and_exchange(env):
    w = RW(env, basic_tree)
    rn = harness.renameat2
    NOREPLACE, EXCHANGE = harness.RENAME_NOREPLACE, harness.RENAME_EXCHANGE
    w.same_ok("NOREPLACE to a new name", lambda P: rn(P("f"), P("f-new"), NOREPLACE))
    w.same_err("NOREPLACE over an existing file", lambda P: rn(P("f-new"), P("g"), NOREPLACE),
               errno.EEXIST)
    w.same_err("NOREPLACE over an existing dir", lambda P: rn(P("f-new"), P("d"), NOREPLACE),
               errno.EEXIST)
    w.same_ok("content of g unchanged", lambda P: read_file(P("g")))
    w.check_state("after NOREPLACE")

    ino = {rel: os.stat(w.m(rel)).st_ino for rel in ["f-new", "g", "d", "d/x", "emptydir"]}
    w.same_ok("EXCHANGE two files", lambda P: rn(P("f-new"), P("g"), EXCHANGE))
    w.same_ok("contents after the exchange",
              lambda P: (read_file(P("f-new"))[:16], read_file(P("g"))[:16]))
    check_equal((os.stat(w.m("f-new")).st_ino, os.stat(w.m("g")).st_ino),
                (ino["g"], ino["f-new"]), "inodes of f-new and g after exchanging them")
    w.same_ok("EXCHANGE a file and a directory", lambda P: rn(P("g"), P("d"), EXCHANGE))
    w.same_ok("the directory's contents at its new name", lambda P: read_file(P("g/x")))
    w.same_ok("the file at the directory's old name", lambda P: read_file(P("d"))[:16])
    check_equal(os.stat(w.m("g/x")).st_ino, ino["d/x"], "inode of g/x (was d/x)")
    w.same_ok("EXCHANGE two directories", lambda P: rn(P("g"), P("emptydir"), EXCHANGE))
    w.same_ok("listing after exchanging directories",
              lambda P: (sorted(os.listdir(P("g"))), sorted(os.listdir(P("emptydir")))))
    w.same_err("EXCHANGE with a missing name", lambda P: rn(P("d"), P("missing"), EXCHANGE),
               errno.ENOENT)
    w.same_err("NOREPLACE|EXCHANGE", lambda P: rn(P("d"), P("g"), NOREPLACE | EXCHANGE),
               errno.EINVAL)
    w.check_state("after EXCHANGE")


@suite.test
def inode_numbers_are_stable_and_follow_renames(env):
    w = RW(env, basic_tree)
    rels = ["f", "g", "d", "d/x", "d/sub/y", "link-to-f"]
    first = {rel: os.lstat(w.m(rel)).st_ino for rel in rels}
    check_equal(len(set(first.values())), len(rels), "distinct inodes of distinct files %r"
                % first)
    for _ in range(5):
        check_equal({rel: os.lstat(w.m(rel)).st_ino for rel in rels}, first,
                    "inodes on repeated stats")
    time.sleep(1.5)  # past the attribute and entry timeouts
    check_equal({rel: os.lstat(w.m(rel)).st_ino for rel in rels}, first,
                "inodes after the cache timeouts")
    check_equal(os.stat(w.m("link-to-f")).st_ino, first["f"], "inode through the symlink")
    os.rename(w.m("f"), w.m("d/f-moved"))
    check_equal(os.stat(w.m("d/f-moved")).st_ino, first["f"], "inode after renaming f")
    os.rename(w.m("d"), w.m("d2"))
    check_equal(os.stat(w.m("d2/sub/y")).st_ino, first["d/sub/y"],
                "inode of d/sub/y after renaming d")
    time.sleep(1.5)
    check_equal(os.stat(w.m("d2/f-moved")).st_ino, first["f"],
                "inode of the moved file after the cache timeouts")


@suite.test
def inode_number_survives_the_kernel_forgetting_it(env):
    w = RW(env, basic_tree)
    before = {rel: os.stat(w.m(rel)).st_ino for rel in ["f", "d/sub/y"]}
    check(harness.drop_caches(), "could not drop caches")  # the kernel sends FORGET
    time.sleep(0.5)
    after = {rel: os.stat(w.m(rel)).st_ino for rel in ["f", "d/sub/y"]}
    check_equal(after, before, "inode numbers after the kernel dropped its inodes")


# ---- attributes: chmod, chown, truncate, utimens ------------------------------------------------


@suite.test
def chmod_sets_every_mode_bit(env):
    w = RW(env, basic_tree)
    for mode in [0o600, 0o000, 0o777, 0o1777, 0o444, 0o640]:
        w.same_ok("chmod f %o" % mode, lambda P: os.chmod(P("f"), mode))
        w.same_ok("mode of f after chmod %o" % mode, lambda P: oct(os.stat(P("f")).st_mode))
    # Set-user-ID and set-group-ID never reach a provider's file: a program the device wrote
    # would run with the provider's rights on the provider's machine.
    for mode in [0o4755, 0o2750, 0o6711]:
        os.chmod(w.m("f"), mode)
        check_equal(oct(os.stat(w.m("f")).st_mode), oct(stat.S_IFREG | (mode & 0o1777)),
                    "mode of f after chmod %o" % mode)
        os.chmod(w.r("f"), mode & 0o1777)
    for mode in [0o700, 0o1777, 0o2755, 0o555]:
        w.same_ok("chmod d %o" % mode, lambda P: os.chmod(P("d"), mode))
        w.same_ok("mode of d after chmod %o" % mode, lambda P: oct(os.stat(P("d")).st_mode))
    os.chmod(w.r("d"), 0o755)
    os.chmod(w.m("d"), 0o755)
    w.same_ok("chmod through a symlink changes the target",
              lambda P: os.chmod(P("link-to-f"), 0o604))

    def fchmod(P):
        fd = os.open(P("g"), os.O_RDONLY)
        try:
            os.fchmod(fd, 0o611)
            return oct(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    w.same_ok("fchmod on an open file", fchmod)
    w.same_err("chmod of a missing file", lambda P: os.chmod(P("missing"), 0o644), errno.ENOENT)
    w.check_state("after chmod")


@suite.test
def chown_to_other_users_and_groups(env):
    w = RW(env, basic_tree)
    w.same_ok("chown f 1234:5678", lambda P: os.chown(P("f"), 1234, 5678))
    w.same_ok("owner of f", lambda P: (os.stat(P("f")).st_uid, os.stat(P("f")).st_gid))
    w.same_ok("chown f -1:4321 (group only)", lambda P: os.chown(P("f"), -1, 4321))
    w.same_ok("chown f 999:-1 (user only)", lambda P: os.chown(P("f"), 999, -1))
    w.same_ok("owner of f", lambda P: (os.stat(P("f")).st_uid, os.stat(P("f")).st_gid))
    w.same_ok("chown a directory", lambda P: os.chown(P("d"), 2000, 2001))
    w.same_ok("lchown a symlink",
              lambda P: os.chown(P("link-to-f"), 3000, 3001, follow_symlinks=False))
    w.same_ok("owner of the symlink", lambda P: os.lstat(P("link-to-f")).st_uid)
    w.same_ok("owner of its target", lambda P: os.stat(P("f")).st_uid)
    # chown of a setuid file clears setuid and setgid.
    w.same_ok("chmod g 6755", lambda P: os.chmod(P("g"), 0o6755))
    w.same_ok("chown g 77:88", lambda P: os.chown(P("g"), 77, 88))
    w.same_ok("mode of g after chown", lambda P: oct(os.stat(P("g")).st_mode))

    def fchown(P):
        fd = os.open(P("empty"), os.O_RDONLY)
        try:
            os.fchown(fd, 4444, 5555)
            return os.fstat(fd).st_uid, os.fstat(fd).st_gid
        finally:
            os.close(fd)

    w.same_ok("fchown on an open file", fchown)
    w.same_err("chown of a missing file", lambda P: os.chown(P("missing"), 1, 1), errno.ENOENT)
    w.check_state("after chown")


@suite.test
def truncate_shrinks_and_grows(env):
    w = RW(env, basic_tree)
    for size in [500, 0, 20000, 4095, 4097, 1]:
        w.same_ok("truncate g to %d" % size, lambda P: os.truncate(P("g"), size))
        w.same_ok("size and content of g", lambda P: (os.stat(P("g")).st_size, read_file(P("g"))))

    def ftruncate(P):
        fd = os.open(P("f"), os.O_RDWR)
        try:
            os.ftruncate(fd, 123)
            os.pwrite(fd, b"after", 200)
            os.ftruncate(fd, 202)
            return os.fstat(fd).st_size, os.pread(fd, 1000, 0)
        finally:
            os.close(fd)

    w.same_ok("ftruncate on an open file", ftruncate)
    # Past 4 GiB (64-bit sizes), then back so that the tree comparison stays quick.
    w.same_ok("truncate to 4 GiB + 5", lambda P: os.truncate(P("empty"), 4 * GIB + 5))
    w.same_ok("size after truncating to 4 GiB + 5", lambda P: os.stat(P("empty")).st_size)

    def read_far(P):
        with open(P("empty"), "rb") as f:
            f.seek(4 * GIB)
            return f.read(100)

    w.same_ok("read at 4 GiB", read_far)
    w.same_ok("truncate back to 3", lambda P: os.truncate(P("empty"), 3))
    w.same_err("truncate a directory", lambda P: os.truncate(P("d"), 0), errno.EISDIR)
    w.same_err("truncate a missing file", lambda P: os.truncate(P("missing"), 0), errno.ENOENT)
    w.same_err("truncate to a negative size", lambda P: os.truncate(P("f"), -1), errno.EINVAL)
    w.check_state("after truncates")


@suite.test
def utimens_with_nanoseconds_now_and_omit(env):
    w = RW(env, basic_tree)
    times = [(1234567890123456789, 1500000000000000001), (0, 1), (4102444800999999999, 5),
             (1700000000000000000, 1700000000000000000)]
    for atime, mtime in times:
        w.same_ok("utime f ns=(%d, %d)" % (atime, mtime),
                  lambda P: os.utime(P("f"), ns=(atime, mtime)))
        for label, path in [("mount", w.m("f")), ("provider", w.s("f"))]:
            st = os.stat(path)
            check_equal((st.st_atime_ns, st.st_mtime_ns), (atime, mtime),
                        "atime and mtime of f seen on the %s" % label)
    # UTIME_OMIT keeps a time, UTIME_NOW sets it to the current time.
    os.utime(w.m("g"), ns=(1111111111000000000, 1222222222000000000))
    harness.utimensat(w.m("g"), (0, harness.UTIME_OMIT), (1333333333, 123))
    st = os.stat(w.m("g"))
    check_equal((st.st_atime_ns, st.st_mtime_ns), (1111111111000000000, 1333333333000000123),
                "atime (omitted) and mtime of g")
    before = time.time_ns()
    harness.utimensat(w.m("g"), (0, harness.UTIME_NOW), (0, harness.UTIME_OMIT))
    after = time.time_ns()
    for label, path in [("mount", w.m("g")), ("provider", w.s("g"))]:
        st = os.stat(path)
        check(before - 10 ** 9 <= st.st_atime_ns <= after + 10 ** 9,
              "atime of g after UTIME_NOW on the %s: %d not in [%d, %d]"
              % (label, st.st_atime_ns, before, after))
        check_equal(st.st_mtime_ns, 1333333333000000123, "mtime (omitted) of g on the " + label)
    # os.utime(path) and touch: both times now.
    os.utime(w.m("d/x"), ns=(1, 1))
    before = time.time_ns()
    os.utime(w.m("d/x"))
    subprocess.run(["touch", w.m("d/sub/z"), w.m("touched-new")], check=True, timeout=20)
    after = time.time_ns()
    for rel in ["d/x", "d/sub/z", "touched-new"]:
        st = os.stat(w.s(rel))
        check(before - 10 ** 9 <= st.st_mtime_ns <= after + 10 ** 9,
              "mtime of %s after touch: %d not in [%d, %d]" % (rel, st.st_mtime_ns, before, after))
    write_file(w.r("touched-new"), b"")
    # A directory, a symlink itself (not followed), an open descriptor.
    w.same_ok("utime on a directory", lambda P: os.utime(P("d/sub"), ns=(5, 6)))
    w.same_ok("lutimes on a symlink",
              lambda P: os.utime(P("link-to-f"), ns=(7, 8), follow_symlinks=False))

    def on_fd(P):
        fd = os.open(P("empty"), os.O_RDWR)
        try:
            os.utime(fd, ns=(9, 10))
        finally:
            os.close(fd)

    w.same_ok("futimens on an open file", on_fd)
    w.same_ok("times afterwards", lambda P: [
        (os.lstat(P(rel)).st_atime_ns, os.lstat(P(rel)).st_mtime_ns)
        for rel in ["f", "d/sub", "link-to-f", "empty"]])
    w.same_err("utime of a missing file", lambda P: os.utime(P("missing"), ns=(1, 1)),
               errno.ENOENT)
    w.check_state("after utimens")


# ---- open, create, mknod, fsync, release -------------------------------------------------------


@suite.test
def open_flags_trunc_append_excl(env):
    w = RW(env, basic_tree)

    def open_write_close(P, rel, flags, steps, mode=0o644):
        fd = os.open(P(rel), flags, mode)
        try:
            out = []
            for step in steps:
                if isinstance(step, int):
                    out.append(os.lseek(fd, step, os.SEEK_SET))
                else:
                    out.append(os.write(fd, step))
            return out
        finally:
            os.close(fd)

    w.same_ok("O_WRONLY|O_TRUNC", lambda P: open_write_close(P, "f", os.O_WRONLY | os.O_TRUNC,
                                                             []))
    w.same_ok("size after O_TRUNC", lambda P: os.stat(P("f")).st_size)
    w.same_ok("O_RDWR|O_TRUNC and a write",
              lambda P: open_write_close(P, "g", os.O_RDWR | os.O_TRUNC, [b"short"]))
    w.same_ok("O_APPEND writes go to the end, even after a seek",
              lambda P: open_write_close(P, "d/x", os.O_WRONLY | os.O_APPEND,
                                         [b"one", 0, b"two", 3, b"three"]))
    w.same_ok("content after appending", lambda P: read_file(P("d/x")))

    def append_and_read(P):
        fd = os.open(P("d/sub/z"), os.O_RDWR | os.O_APPEND)
        try:
            os.write(fd, b"-appended")
            return os.pread(fd, 100, 0), os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)

    w.same_ok("O_RDWR|O_APPEND then read", append_and_read)
    w.same_err("O_CREAT|O_EXCL on an existing file",
               lambda P: open_write_close(P, "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, []),
               errno.EEXIST)
    w.same_err("O_CREAT|O_EXCL on a symlink", lambda P: open_write_close(
        P, "link-to-f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, []), errno.EEXIST)
    w.same_ok("O_CREAT|O_EXCL on a new name", lambda P: open_write_close(
        P, "excl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, [b"exclusive"], 0o600))
    w.same_ok("O_CREAT on an existing file keeps its content", lambda P: open_write_close(
        P, "excl", os.O_RDONLY | os.O_CREAT, [], 0o777))
    w.same_ok("O_CREAT|O_TRUNC on an existing file", lambda P: open_write_close(
        P, "excl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [b"x"], 0o777))
    w.same_err("O_DIRECTORY on a file", lambda P: os.open(P("f"), os.O_RDONLY | os.O_DIRECTORY),
               errno.ENOTDIR)
    w.same_err("O_WRONLY on a directory", lambda P: os.open(P("d"), os.O_WRONLY),
               errno.EISDIR)
    w.same_err("O_NOFOLLOW on a symlink",
               lambda P: os.open(P("link-to-f"), os.O_RDONLY | os.O_NOFOLLOW), errno.ELOOP)
    w.same_err("O_RDONLY on a missing file", lambda P: os.open(P("missing"), os.O_RDONLY),
               errno.ENOENT)
    w.same_err("O_CREAT in a missing dir",
               lambda P: os.open(P("nodir/x"), os.O_WRONLY | os.O_CREAT, 0o644), errno.ENOENT)

    def write_to_readonly_fd(P):
        fd = os.open(P("f"), os.O_RDONLY)
        try:
            return os.write(fd, b"no")
        finally:
            os.close(fd)

    def read_from_writeonly_fd(P):
        fd = os.open(P("f"), os.O_WRONLY)
        try:
            return os.read(fd, 10)
        finally:
            os.close(fd)

    w.same_err("write to an O_RDONLY descriptor", write_to_readonly_fd, errno.EBADF)
    w.same_err("read from an O_WRONLY descriptor", read_from_writeonly_fd, errno.EBADF)
    w.check_state("after opens")


@suite.test
def create_then_read_back_through_the_same_fd(env):
    w = RW(env, basic_tree)

    def create_rw(P, rel, flags, mode):
        fd = os.open(P(rel), flags, mode)
        try:
            n = os.write(fd, b"hello world, created and read back")
            pos = os.lseek(fd, 0, os.SEEK_SET)
            data = os.read(fd, 100)
            mid = os.pread(fd, 5, 6)
            os.lseek(fd, 6, os.SEEK_SET)
            os.write(fd, b"WORLD")
            again = os.pread(fd, 100, 0)
            return n, pos, data, mid, again, os.fstat(fd).st_size, oct(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    w.same_ok("O_RDWR|O_CREAT|O_EXCL, write, seek, read",
              lambda P: create_rw(P, "new1", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640))
    w.same_ok("O_RDWR|O_CREAT in a subdirectory",
              lambda P: create_rw(P, "d/sub/new2", os.O_RDWR | os.O_CREAT, 0o600))

    def python_w_plus(P):
        with open(P("new3"), "w+b") as f:
            f.write(b"via python w+")
            f.seek(4)
            return f.read()

    w.same_ok("open(..., 'w+b')", python_w_plus)

    def create_wronly_then_read(P):
        fd = os.open(P("new4"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"data")
            return os.pread(fd, 4, 0)
        finally:
            os.close(fd)

    w.same_err("read from a descriptor created O_WRONLY", create_wronly_then_read, errno.EBADF)

    def create_rdonly(P):
        fd = os.open(P("new5"), os.O_RDONLY | os.O_CREAT, 0o444)
        try:
            return os.read(fd, 10), oct(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    w.same_ok("O_RDONLY|O_CREAT of a new file with mode 0444", create_rdonly)
    w.same_ok("255-byte name", lambda P: write_file(P("c" * 255), b"long name"))
    w.same_err("256-byte name",
               lambda P: os.open(P("c" * 256), os.O_WRONLY | os.O_CREAT, 0o644),
               errno.ENAMETOOLONG)
    w.check_state("after creates")


@suite.test
def mknod_fifo_and_regular(env):
    w = RW(env, basic_tree)
    w.same_ok("mkfifo p 0640", lambda P: os.mkfifo(P("p"), 0o640))
    w.same_ok("mknod r S_IFREG|0600", lambda P: os.mknod(P("r"), stat.S_IFREG | 0o600))
    w.same_ok("mknod r2 (default: regular 0600)", lambda P: os.mknod(P("r2")))
    w.same_ok("mknod d/sub/fifo S_IFIFO|0606",
              lambda P: os.mknod(P("d/sub/fifo"), stat.S_IFIFO | 0o606))
    w.same_ok("types and rdev", lambda P: [
        (oct(os.lstat(P(n)).st_mode), os.lstat(P(n)).st_rdev, os.lstat(P(n)).st_size)
        for n in ["p", "r", "r2", "d/sub/fifo"]])
    # Device nodes: a provider may refuse them (webfuse-provider does, with EPERM); one that
    # makes them must keep the device number.
    for name, kind, dev in [("chr", stat.S_IFCHR, os.makedev(1, 7)),
                            ("blk", stat.S_IFBLK, os.makedev(7, 200))]:
        os.mknod(w.r(name), kind | 0o600, dev)
        got = outcome(os.mknod, w.m(name), kind | 0o600, dev)
        if got == ("err", "EPERM"):
            os.unlink(w.r(name))
            continue
        check_equal(got, ("ok", None), "mknod of device %s" % name)
        check_equal(os.lstat(w.m(name)).st_rdev, dev, "rdev of %s through the mount" % name)
        check_equal(os.lstat(w.s(name)).st_rdev, dev, "rdev of %s on the provider" % name)
    w.same_err("mkfifo over an existing name", lambda P: os.mkfifo(P("f")), errno.EEXIST)
    w.same_err("mknod in a missing dir", lambda P: os.mknod(P("nodir/r")), errno.ENOENT)
    w.same_ok("writing to the regular file made by mknod",
              lambda P: write_file(P("r"), b"regular"))

    # The FIFO in the mount works as a pipe.
    def through_fifo(P):
        box = {}

        def writer():
            with open(P("p"), "wb") as f:
                f.write(b"through the fifo")

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        with open(P("p"), "rb") as f:
            box["data"] = f.read()
        t.join(10)
        return box["data"]

    w.same_ok("data through the FIFO", lambda P: harness.bounded(lambda: through_fifo(P), 10,
                                                                   "FIFO round trip"))
    w.check_state("after mknod")


@suite.test
def fsync_and_fdatasync_reach_the_provider(env):
    w = RW(env, basic_tree)

    def write_and_sync(P, sync):
        fd = os.open(P("synced"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, pattern(300000, 9))
            sync(fd)
            if P == w.m:  # on the provider's disk before the descriptor is closed
                check_equal(read_file(w.s("synced")), pattern(300000, 9),
                            "provider's file after %s" % sync.__name__)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    w.same_ok("write + fsync", lambda P: write_and_sync(P, os.fsync))
    w.same_ok("write + fdatasync", lambda P: write_and_sync(P, os.fdatasync))

    def sync_readonly(P):
        fd = os.open(P("f"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_dir(P):
        fd = os.open(P("d"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    w.same_ok("fsync of a read-only descriptor", sync_readonly)
    w.same_ok("fsync of a directory", sync_dir)
    w.same_ok("sync(1) on a file", lambda P: subprocess.run(
        ["sync", P("synced")], check=True, timeout=20).returncode)
    w.check_state("after fsync")


@suite.test
def release_closes_the_providers_handles(env):
    w = RW(env, basic_tree)
    pid = w.provider.pid
    # Warm up (the provider may open a few descriptors of its own on first use).
    for _ in range(5):
        read_file(w.m("f"))
    baseline = fds_of(pid)
    check(baseline > 0, "cannot count the provider's descriptors (pid %d)" % pid)
    for i in range(300):
        read_file(w.m("f"))
        with open(w.m("g"), "r+b") as f:
            f.write(b"%d" % i)
        write_file(w.m("new-%d" % (i % 50)), b"x" * i)
        os.listdir(w.m("d"))
    harness.wait_until(lambda: fds_of(pid) <= baseline + 2, 10.0,
                       what="the provider's descriptors to return to %d (now %d)"
                       % (baseline, fds_of(pid)))
    # Many files open at once, all released at close.
    fds = [os.open(w.m("f"), os.O_RDONLY) for _ in range(200)]
    for fd in fds:
        os.close(fd)
    harness.wait_until(lambda: fds_of(pid) <= baseline + 2, 10.0,
                       what="the provider's descriptors to return to %d after 200 opens (now %d)"
                       % (baseline, fds_of(pid)))


# ---- read, write ------------------------------------------------------------------------------


@suite.test
def read_at_offsets_and_past_the_end(env):
    big = pattern(3 * MIB + 17, 5)

    def prepare(root):
        basic_tree(root)
        write_file(os.path.join(root, "big"), big)

    w = RW(env, prepare)

    def preads(P, rel, cases):
        fd = os.open(P(rel), os.O_RDONLY)
        try:
            return [os.pread(fd, size, offset) for offset, size in cases]
        finally:
            os.close(fd)

    cases = [(0, 0), (0, 1), (4095, 2), (4096, 4096), (MIB - 3, 10), (131071, 131074),
             (len(big) - 5, 100), (len(big), 10), (len(big) + 1000, 10), (12345, 2 * MIB)]
    w.same_ok("preads of big", lambda P: preads(P, "big", cases))
    import random
    rnd = random.Random(7)
    cases = [(rnd.randrange(len(big) + 100), rnd.randrange(1, 300000)) for _ in range(200)]
    w.same_ok("200 random preads of big", lambda P: preads(P, "big", cases))
    w.same_ok("one read of the whole file", lambda P: read_file(P("big")) == big)
    w.same_ok("reading an empty file", lambda P: read_file(P("empty")))
    w.same_err("reading a directory", lambda P: read_file(P("d")), errno.EISDIR)
    # A change made on the provider's side is seen once the attribute cache expires.
    write_file(w.s("f"), b"changed behind the mount's back, and longer than before" * 30)
    write_file(w.r("f"), b"changed behind the mount's back, and longer than before" * 30)
    time.sleep(1.5)
    w.same_ok("reading a file changed on the provider's side", lambda P: read_file(P("f")))
    w.check_state("after reads")


@suite.test
def write_at_offsets_sparse_and_large(env):
    w = RW(env, basic_tree)
    big = pattern(3 * MIB + 5, 6)

    def writes(P):
        fd = os.open(P("w"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            out = [os.pwrite(fd, b"A" * 10, 0), os.pwrite(fd, b"B" * 5, 100),
                   os.pwrite(fd, b"C" * 3, MIB), os.pwrite(fd, big, 5 * MIB),
                   os.pwrite(fd, b"overwrite", 5 * MIB + 1000)]
            for i in range(500):  # one byte at a time, across a page boundary
                out.append(os.pwrite(fd, bytes([i % 251]), 4000 + i))
            out.append(os.fstat(fd).st_size)
            return out
        finally:
            os.close(fd)

    w.same_ok("writes at offsets", writes)
    w.same_ok("content after the writes", lambda P: read_file(P("w")) ==
              read_file(w.r("w")))
    st = os.stat(w.s("w"))
    check(st.st_blocks * 512 < st.st_size, "the provider's file is not sparse: %d blocks for %d "
          "bytes" % (st.st_blocks, st.st_size))

    def sparse_far(P):
        fd = os.open(P("far"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"far away", 4 * GIB + 10)  # needs 64-bit offsets
            return os.fstat(fd).st_size, os.pread(fd, 20, 4 * GIB), os.pread(fd, 10, 0)
        finally:
            os.close(fd)

    w.same_ok("write at 4 GiB + 10", sparse_far)
    with open(w.s("far"), "rb") as f:
        f.seek(4 * GIB + 10)
        check_equal(f.read(8), b"far away", "provider's bytes at 4 GiB + 10")
    w.same_ok("truncating far back", lambda P: os.truncate(P("far"), 100))

    def sequential(P):
        with open(P("seq"), "wb") as f:
            for i in range(64):
                f.write(pattern(65536 + i, i))
        return os.stat(P("seq")).st_size

    w.same_ok("sequential buffered writes", sequential)
    w.same_ok("truncate into the middle", lambda P: os.truncate(P("seq"), 200000) or
              read_file(P("seq"))[-10:])
    w.check_state("after writes")


# ---- directories ------------------------------------------------------------------------------


@suite.test
def mkdir_modes_nesting_and_errors(env):
    w = RW(env, basic_tree)
    for name, mode in [("m750", 0o750), ("m777", 0o777), ("m700", 0o700), ("m1777", 0o1777),
                       ("m2755", 0o2755), ("m000", 0o000)]:
        w.same_ok("mkdir %s %o" % (name, mode), lambda P: os.mkdir(P(name), mode))
    w.same_ok("modes", lambda P: {n: oct(os.stat(P(n)).st_mode)
                                  for n in os.listdir(P("")) if n.startswith("m")})
    w.same_ok("nlink of the root after 6 mkdirs", lambda P: os.stat(P("")).st_nlink)
    deep = "/".join("level%d" % i for i in range(40))
    w.same_ok("makedirs 40 levels deep", lambda P: os.makedirs(P(deep)))
    w.same_ok("a file at the bottom", lambda P: write_file(P(deep, "leaf"), b"deep"))
    w.same_ok("reading it back", lambda P: read_file(P(deep, "leaf")))
    w.same_err("mkdir of an existing dir", lambda P: os.mkdir(P("d")), errno.EEXIST)
    w.same_err("mkdir of an existing file", lambda P: os.mkdir(P("f")), errno.EEXIST)
    w.same_err("mkdir below a missing dir", lambda P: os.mkdir(P("nodir/x")), errno.ENOENT)
    w.same_err("mkdir below a file", lambda P: os.mkdir(P("f/x")), errno.ENOTDIR)
    w.same_ok("mkdir with a 255-byte name", lambda P: os.mkdir(P("D" * 255)))
    w.same_err("mkdir with a 256-byte name", lambda P: os.mkdir(P("D" * 256)),
               errno.ENAMETOOLONG)
    w.check_state("after mkdir")


@suite.test
def readdir_lists_every_name_once(env):
    names = (["file%04d" % i for i in range(1500)] +
             ["with space", "tab\there", "ünïcödé", "日本語", "-dash", ".hidden", "...", "..x",
              "L" * 255, "a=b,c;d", "quote'\"", "back\\slash", "star*?"])

    def prepare(root):
        os.mkdir(os.path.join(root, "big"))
        for n in names:
            write_file(os.path.join(root, "big", n), b"")
        for i in range(20):
            os.mkdir(os.path.join(root, "big", "dir%02d" % i))
            os.symlink("file%04d" % i, os.path.join(root, "big", "sym%02d" % i))
        os.mkdir(os.path.join(root, "empty"))
        write_file(os.path.join(root, "f"), b"x")

    w = RW(env, prepare)
    listing = os.listdir(w.m("big"))
    check_equal(len(listing), len(set(listing)), "names listed twice: %r"
                % sorted(n for n in set(listing) if listing.count(n) > 1))
    w.same_ok("listing of big", lambda P: sorted(os.listdir(P("big"))))
    w.same_ok("types from scandir", lambda P: sorted(
        (e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False))
        for e in os.scandir(P("big"))))
    w.same_ok("listing of an empty dir", lambda P: os.listdir(P("empty")))
    w.same_err("listing a file", lambda P: os.listdir(P("f")), errno.ENOTDIR)
    w.same_err("listing a missing dir", lambda P: os.listdir(P("missing")), errno.ENOENT)

    # "." and ".." exactly once each, in raw getdents order (ls -f does not sort or hide).
    for rel in ["big", "empty", ""]:
        out = subprocess.run(["ls", "-f", "-1", "--quoting-style=escape", w.m(rel)],
                             stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode()
        lines = out.splitlines()
        check_equal((lines.count("."), lines.count("..")), (1, 1),
                    "'.' and '..' in the raw listing of %r" % rel)
        check_equal(len(lines), len(set(lines)), "duplicates in the raw listing of %r" % rel)

    # Changes show up in the next listing at once.
    w.same_ok("create, then list", lambda P: write_file(P("big", "added"), b"") or
              "added" in os.listdir(P("big")))
    w.same_ok("unlink, then list", lambda P: os.unlink(P("big", "file0000")) or
              "file0000" in os.listdir(P("big")))
    w.same_ok("rename, then list", lambda P: os.rename(P("big", "file0001"), P("big", "moved"))
              or sorted(n for n in os.listdir(P("big")) if n in ("file0001", "moved")))

    # A listing read in small pieces while the directory changes neither skips nor repeats
    # names that stay.
    def no_duplicates(P):
        seen = [e.name for e in os.scandir(P("big"))]
        return len(seen), len(set(seen))

    w.same_ok("no duplicates in a listing after changes", no_duplicates)
    w.check_state("after listings", content=False)


@suite.test
def rmdir_empty_and_non_empty(env):
    w = RW(env, basic_tree)
    w.same_ok("rmdir of an empty dir", lambda P: os.rmdir(P("emptydir")))
    w.same_err("stat after rmdir", lambda P: os.stat(P("emptydir")), errno.ENOENT)
    w.same_err("rmdir of a non-empty dir", lambda P: os.rmdir(P("d")), errno.ENOTEMPTY)
    w.same_err("rmdir of a missing dir", lambda P: os.rmdir(P("missing")), errno.ENOENT)
    w.same_err("rmdir of a file", lambda P: os.rmdir(P("f")), errno.ENOTDIR)
    w.same_err("rmdir of a symlink", lambda P: os.rmdir(P("link-to-f")), errno.ENOTDIR)
    w.same_err("rmdir of d/.", lambda P: os.rmdir(P("d/.")), errno.EINVAL)
    w.same_ok("emptying d/sub", lambda P: [os.unlink(P("d/sub", n))
                                           for n in sorted(os.listdir(P("d/sub")))])
    w.same_ok("rmdir of the emptied d/sub", lambda P: os.rmdir(P("d/sub")))
    w.same_ok("nlink of d", lambda P: os.stat(P("d")).st_nlink)
    w.same_ok("mkdir again with the same name", lambda P: os.mkdir(P("d/sub")))
    w.check_state("after rmdir")


@suite.test
def unlink_files_symlinks_and_errors(env):
    w = RW(env, basic_tree)
    w.same_ok("unlink f", lambda P: os.unlink(P("f")))
    w.same_err("stat after unlink", lambda P: os.stat(P("f")), errno.ENOENT)
    w.same_ok("the symlink now dangles", lambda P: (os.path.lexists(P("link-to-f")),
                                                   os.path.exists(P("link-to-f"))))
    w.same_ok("unlink the symlink", lambda P: os.unlink(P("link-to-f")))
    w.same_ok("unlink in a subdirectory", lambda P: os.unlink(P("d/sub/z")))
    w.same_err("unlink a missing name", lambda P: os.unlink(P("missing")), errno.ENOENT)
    w.same_err("unlink a directory", lambda P: os.unlink(P("d")), errno.EISDIR)
    w.same_err("unlink in a missing dir", lambda P: os.unlink(P("nodir/f")), errno.ENOENT)
    w.same_ok("re-create the unlinked name", lambda P: write_file(P("f"), b"new f"))
    w.same_ok("read the re-created file", lambda P: read_file(P("f")))
    w.check_state("after unlinks")


@suite.test
def deleted_while_open_file_stays_readable(env):
    w = RW(env, basic_tree)
    fds = {}
    for P in (w.r, w.m):
        fds[P] = os.open(P("g"), os.O_RDWR)
    try:
        w.same_ok("unlink g while open", lambda P: os.unlink(P("g")))
        w.same_err("stat of the name", lambda P: os.stat(P("g")), errno.ENOENT)
        w.same_ok("read through the descriptor", lambda P: os.pread(fds[P], 5000, 0))
        w.same_ok("write through the descriptor", lambda P: os.pwrite(fds[P], b"still here", 10))
        w.same_ok("read the write back", lambda P: os.pread(fds[P], 30, 0))
        w.same_ok("a new file with the same name is independent",
                  lambda P: write_file(P("g"), b"second g") or read_file(P("g")))
        w.same_ok("the old descriptor still has the old file", lambda P: os.pread(fds[P], 30, 0))
        w.same_ok("fstat of the deleted file", lambda P: (os.fstat(fds[P]).st_size,
                                                          os.fstat(fds[P]).st_nlink))
    finally:
        for fd in fds.values():
            os.close(fd)
    w.check_state("after closing the deleted file")


@suite.test
def parallel_operations_from_several_threads(env):
    """Eight threads at once, each in its own directory: many requests in flight."""
    import random
    w = RW(env, basic_tree)
    errors = []

    def worker(i):
        rnd = random.Random(i)
        try:
            for P in (w.r, w.m):
                os.mkdir(P("t%d" % i))
            for step in range(150):
                name = "t%d/f%d" % (i, rnd.randrange(5))
                data = rnd.randbytes(rnd.randrange(1, 200000))
                off = rnd.randrange(0, 100000)
                op = rnd.randrange(4)
                for P in (w.r, w.m):
                    path = P(name)
                    if op == 0:
                        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                        os.pwrite(fd, data, off)
                        os.close(fd)
                    elif op == 1 and os.path.exists(P(name)):
                        os.truncate(path, off)
                    elif op == 2 and os.path.exists(P(name)):
                        os.rename(path, P("t%d/renamed" % i))
                        os.rename(P("t%d/renamed" % i), path)
                    elif op == 3 and os.path.exists(P(name)):
                        got = read_file(path)
                        if P == w.m and got != read_file(w.r(name)):
                            errors.append("thread %d step %d: %s differs" % (i, step, name))
        except Exception as e:
            errors.append("thread %d: %r" % (i, e))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not any(t.is_alive() for t in threads), "threads did not finish within 60 s")
    check_equal(errors, [], "errors of the threads")
    w.check_state("after parallel operations")


@suite.test
def deleted_while_open_file_is_not_confused_with_a_new_one(env):
    w = RW(env, basic_tree)
    fds = {P: os.open(P("g"), os.O_RDWR) for P in (w.r, w.m)}
    try:
        w.same_ok("unlink g while open", lambda P: os.unlink(P("g")))
        w.same_ok("a new g, smaller, mode 0600",
                  lambda P: write_file(P("g"), b"new g", 0o600))
        time.sleep(1.2)  # past the attribute timeout: fstat asks the provider again
        w.same_ok("fstat of the old descriptor", lambda P: (
            os.fstat(fds[P]).st_size, os.fstat(fds[P]).st_nlink))
        w.same_ok("fchmod of the old descriptor", lambda P: os.fchmod(fds[P], 0o640))
        w.same_ok("mode of the new g", lambda P: oct(os.stat(P("g")).st_mode))
        w.same_ok("read through the old descriptor", lambda P: os.pread(fds[P], 5000, 0))
    finally:
        for fd in fds.values():
            os.close(fd)
    w.check_state("after closing the deleted file")


# ---- statfs -----------------------------------------------------------------------------------


@suite.test
def statfs_is_plausible(env):
    w = RW(env, basic_tree)
    m, s = os.statvfs(w.mnt), os.statvfs(w.src)
    check(m.f_bsize > 0 and m.f_frsize > 0, "block sizes %d, %d" % (m.f_bsize, m.f_frsize))
    check_equal(m.f_frsize, s.f_frsize, "f_frsize")
    check_equal(m.f_blocks, s.f_blocks, "f_blocks")
    check_equal(m.f_files, s.f_files, "f_files")
    check_equal(m.f_namemax, 255, "f_namemax")
    check(m.f_bfree <= m.f_blocks and m.f_bavail <= m.f_bfree,
          "free blocks: blocks %d, bfree %d, bavail %d" % (m.f_blocks, m.f_bfree, m.f_bavail))
    check(abs(m.f_bfree - s.f_bfree) <= max(s.f_blocks // 100, 1000),
          "f_bfree %d differs much from the source's %d" % (m.f_bfree, s.f_bfree))
    check(abs(m.f_ffree - s.f_ffree) <= 1000, "f_ffree %d vs %d" % (m.f_ffree, s.f_ffree))
    sub = os.statvfs(w.m("d/sub"))
    check_equal(sub.f_blocks, m.f_blocks, "f_blocks of a subdirectory")
    out = subprocess.run(["df", "-P", w.mnt], stdout=subprocess.PIPE, check=True,
                         timeout=20).stdout.decode()
    check(w.mnt in out, "df does not show the mount: %r" % out)


# ---- errors -------------------------------------------------------------------------------------


@suite.test
def errors_reach_the_program(env):
    w = RW(env, basic_tree)
    table = [
        ("ENOENT open", lambda P: os.open(P("missing"), os.O_RDONLY), errno.ENOENT),
        ("ENOENT listdir", lambda P: os.listdir(P("missing")), errno.ENOENT),
        ("EEXIST mkdir", lambda P: os.mkdir(P("d")), errno.EEXIST),
        ("EEXIST link", lambda P: os.link(P("f"), P("g")), errno.EEXIST),
        ("ENOTEMPTY rmdir", lambda P: os.rmdir(P("d")), errno.ENOTEMPTY),
        ("ENOTEMPTY rename", lambda P: os.rename(P("emptydir"), P("d")), errno.ENOTEMPTY),
        ("ENOTDIR open", lambda P: os.open(P("f/x"), os.O_RDONLY), errno.ENOTDIR),
        ("ENOTDIR rmdir", lambda P: os.rmdir(P("f")), errno.ENOTDIR),
        ("ENOTDIR rename", lambda P: os.rename(P("d"), P("f")), errno.ENOTDIR),
        ("EISDIR open", lambda P: os.open(P("d"), os.O_RDWR), errno.EISDIR),
        ("EISDIR unlink", lambda P: os.unlink(P("d")), errno.EISDIR),
        ("EISDIR rename", lambda P: os.rename(P("f"), P("d")), errno.EISDIR),
        ("ENAMETOOLONG create", lambda P: os.open(P("n" * 256), os.O_CREAT | os.O_WRONLY),
         errno.ENAMETOOLONG),
        ("ENAMETOOLONG mkdir", lambda P: os.mkdir(P("d", "n" * 256)), errno.ENAMETOOLONG),
        ("ENAMETOOLONG symlink", lambda P: os.symlink("x", P("n" * 300)), errno.ENAMETOOLONG),
        ("EINVAL readlink", lambda P: os.readlink(P("f")), errno.EINVAL),
        ("EPERM link of a dir", lambda P: os.link(P("d"), P("dl")), errno.EPERM),
    ]
    for what, fn, code in table:
        w.same_err(what, fn, code)
    w.check_state("after the error table")


@suite.test
def read_only_provider_refuses_writes_with_erofs(env):
    w = RW(env, basic_tree, read_only=True)
    before = harness.tree_state(w.src, times=True)
    # Reading works.
    harness.check_same_tree(w.ref, w.mnt, "the read-only mount")
    check_equal(read_file(w.m("d/sub/y")), read_file(w.r("d/sub/y")), "content of d/sub/y")
    check_equal(os.readlink(w.m("link-to-f")), "f", "readlink")
    writes = [
        ("open O_WRONLY", lambda: os.open(w.m("f"), os.O_WRONLY)),
        ("open O_RDWR", lambda: os.open(w.m("f"), os.O_RDWR)),
        ("open O_TRUNC", lambda: os.open(w.m("f"), os.O_WRONLY | os.O_TRUNC)),
        ("create", lambda: os.open(w.m("new"), os.O_WRONLY | os.O_CREAT, 0o644)),
        ("mkdir", lambda: os.mkdir(w.m("newdir"))),
        ("rmdir", lambda: os.rmdir(w.m("emptydir"))),
        ("unlink", lambda: os.unlink(w.m("f"))),
        ("rename", lambda: os.rename(w.m("f"), w.m("f2"))),
        ("symlink", lambda: os.symlink("f", w.m("l2"))),
        ("link", lambda: os.link(w.m("f"), w.m("f2"))),
        ("chmod", lambda: os.chmod(w.m("f"), 0o600)),
        ("chown", lambda: os.chown(w.m("f"), 1, 1)),
        ("truncate", lambda: os.truncate(w.m("f"), 0)),
        ("utime", lambda: os.utime(w.m("f"), ns=(1, 1))),
        ("mkfifo", lambda: os.mkfifo(w.m("fifo"))),
        ("mknod", lambda: os.mknod(w.m("node"))),
    ]
    for what, fn in writes:
        check_errno(fn, errno.EROFS, "%s on a read-only provider" % what)
    diff = harness.tree_diff(before, harness.tree_state(w.src, times=True))
    check(not diff, "the read-only provider's directory changed:\n" + diff)


@suite.test
def full_filesystem_gives_enospc(env):
    small = env.mkdir("small")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs", small],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    if r.returncode != 0:
        print("  note: cannot mount a small tmpfs (%s): ENOSPC not tested"
              % r.stdout.decode().strip())
        return
    env.add_cleanup(lambda: subprocess.run(["umount", "-l", small], timeout=20))
    w = RW(env, src=small)

    def fill():
        with open(w.m("big"), "wb") as f:
            for _ in range(4):
                f.write(b"\0" * MIB)
            f.flush()
            os.fsync(f.fileno())

    check_errno(fill, errno.ENOSPC, "writing 4 MiB to a 1 MiB filesystem")

    def many_files():
        for i in range(100):
            write_file(w.m("n%d" % i), b"")

    os.unlink(w.m("big"))
    check_errno(many_files, errno.ENOSPC, "creating 100 files with 64 inodes")


if __name__ == "__main__":
    suite.main()
