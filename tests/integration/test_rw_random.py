#!/usr/bin/env python3
"""A seeded random sequence of filesystem operations on a webfuse2 mount and on a reference
directory, compared step by step.

Each step picks an operation and its arguments from a seeded generator and from the reference
tree's current state (so a seed always replays the same sequence), runs it on the local reference
directory and then on the mount, and compares the outcomes (result or errno), then the state of
every path the step named (type, mode, size, nlink, owner, symlink target, content hash) and the
listing of its directory. Every
COMPARE_EVERY steps and at the end, the whole tree seen through the mount and the provider's
directory are compared with the reference (type, permission bits, size, nlink, uid/gid, symlink
target, content hash).

Operations: writes at random offsets and sizes (through a fresh descriptor or one of a few kept
open across steps, whose files may be renamed meanwhile), reads, truncates, renames of files and
directories (plain, RENAME_NOREPLACE, RENAME_EXCHANGE), hard links, symlinks, unlinks, mkdir,
rmdir, chmod, utime, stat, readdir, fsync.

Environment: WEBFUSE_SEED (default below), WEBFUSE_STEPS (default 10000 per test). A failure
prints the seed, the step and the last operations; rerun with WEBFUSE_SEED=<seed> to replay it.
"""

import os
import random
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import fail, outcome  # noqa: E402

suite = harness.Suite("test_rw_random")
suite.needs_provider = True

DEFAULT_SEED = 20261125
SEED = int(os.environ.get("WEBFUSE_SEED", DEFAULT_SEED))
STEPS = int(os.environ.get("WEBFUSE_STEPS", 10000))
COMPARE_EVERY = 200
NAMES = ["a", "b", "c", "d", "e", "f", "g", "long-name-%s" % ("x" * 40), "sp ace", "ü"]
MAX_DEPTH = 3
MAX_ENTRIES = 120
MAX_POOL = 6
# No set-user-ID or set-group-ID on files: providers drop them (test_rw_operations checks it).
MODES_FILE = [0o644, 0o600, 0o755, 0o400, 0o000, 0o750, 0o640, 0o1644, 0o666]
MODES_DIR = [0o755, 0o700, 0o750, 0o1777, 0o2755, 0o555]


class Failure(Exception):
    pass


class Random:
    """One run: the generator, the two roots, the descriptors kept open, the history."""

    def __init__(self, seed, ref, mnt, src, links):
        self.rnd = random.Random(seed)
        self.seed = seed
        self.ref = ref
        self.mnt = mnt
        self.src = src
        self.links = links
        self.pool = []  # [(ref fd, mount fd, description)]
        self.history = []
        self.counts = {}

    # -- the reference tree ---------------------------------------------------------------------

    def entries(self):
        """(files, dirs, symlinks) of the reference tree as relative paths; dirs include ""."""
        files, dirs, links = [], [""], []
        for dirpath, dirnames, filenames in os.walk(self.ref):
            dirnames.sort()  # the same sequence for a seed on any machine
            filenames.sort()
            rel = os.path.relpath(dirpath, self.ref)
            rel = "" if rel == "." else rel
            for n in dirnames:
                dirs.append(os.path.join(rel, n))
            for n in filenames:
                p = os.path.join(rel, n)
                (links if os.path.islink(os.path.join(self.ref, p)) else files).append(p)
        return files, dirs, links

    def new_path(self, dirs):
        """A path in an existing directory (not deeper than MAX_DEPTH), existing or not."""
        candidates = [d for d in dirs if d.count("/") < MAX_DEPTH - 1 or d == ""]
        return os.path.join(self.rnd.choice(candidates), self.rnd.choice(NAMES))

    def any_path(self, files, dirs, links):
        pool = files + dirs[1:] + links
        if not pool or self.rnd.random() < 0.15:
            return self.new_path(dirs)
        return self.rnd.choice(pool)

    # -- descriptors kept open ---------------------------------------------------------------

    def close_pool_entry(self, i):
        rfd, mfd, _ = self.pool.pop(i)
        os.close(rfd)
        os.close(mfd)

    def release_if_last_name(self, rel):
        """Closes kept descriptors of the file at `rel` when removing or replacing that name
        deletes the file: reading a deleted file after it grew is a known gateway bug, reported
        and tested separately (test_rw_operations), so the random run does not step on it."""
        try:
            st = os.lstat(os.path.join(self.ref, rel))
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            # Replacing an empty directory deletes nothing that can be open here.
            return
        if st.st_nlink > 1:
            return
        for i in reversed(range(len(self.pool))):
            if os.fstat(self.pool[i][0]).st_ino == st.st_ino:
                self.close_pool_entry(i)

    def release_if_replaced(self, src, dst):
        """Before renaming src over dst: dst's file goes away unless both are the same file."""
        try:
            a = os.lstat(os.path.join(self.ref, src))
            b = os.lstat(os.path.join(self.ref, dst))
        except OSError:
            return
        if a.st_ino != b.st_ino:
            self.release_if_last_name(dst)

    # -- one step ------------------------------------------------------------------------------

    def data(self):
        r = self.rnd.random()
        n = self.rnd.randrange(0, 64) if r < 0.3 else self.rnd.randrange(0, 9000) if r < 0.85 \
            else self.rnd.randrange(0, 200000) if r < 0.99 else self.rnd.randrange(0, 1 << 20)
        return self.rnd.randbytes(n)

    def offset(self, size):
        r = self.rnd.random()
        if r < 0.6:
            return self.rnd.randrange(0, size + 1)
        if r < 0.95:
            return self.rnd.randrange(0, size + 70000)
        return self.rnd.randrange(0, 3 << 20)

    def ref_size(self, rel):
        try:
            return os.lstat(os.path.join(self.ref, rel)).st_size
        except OSError:
            return 0

    def choose(self):
        """Returns (name, description, fn(root, side)) for the next step; side is 0 for the
        reference and 1 for the mount (it selects the kept descriptor). Sets self.touched to
        the paths the step names (their state is compared after it)."""
        self.touched = []
        files, dirs, links = self.entries()
        rnd = self.rnd
        crowded = len(files) + len(dirs) + len(links) > MAX_ENTRIES
        ops = [("write", 14), ("write_fd", 8), ("read", 10), ("read_fd", 5), ("truncate", 5),
               ("ftruncate", 2), ("rename", 7), ("rename_dir", 3), ("rename2", 2),
               ("unlink", 6 + 20 * crowded), ("mkdir", 4), ("rmdir", 3 + 6 * crowded),
               ("chmod", 3), ("utime", 3), ("stat", 6), ("listdir", 4), ("symlink", 2),
               ("open_fd", 3), ("close_fd", 2), ("fsync", 1), ("create_excl", 2)]
        if self.links:
            ops.append(("link", 4))
        total = sum(w for _, w in ops)
        pick = rnd.randrange(total)
        for name, weight in ops:
            if pick < weight:
                break
            pick -= weight

        def P(root, rel):
            return os.path.join(root, rel)

        if name in ("write_fd", "read_fd", "ftruncate", "fsync", "close_fd") and not self.pool:
            name = "open_fd"
        if name == "open_fd" and (not files or len(self.pool) >= MAX_POOL):
            name = "write"

        if name == "write":
            rel = rnd.choice(files) if files and rnd.random() < 0.8 else self.new_path(dirs)
            data, off = self.data(), self.offset(self.ref_size(rel))
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if rnd.random() < 0.05 else 0) | \
                (os.O_TRUNC if rnd.random() < 0.03 else 0)

            def fn(root, side):
                fd = os.open(P(root, rel), flags, 0o644)
                try:
                    if flags & os.O_APPEND:
                        return os.write(fd, data)
                    return os.pwrite(fd, data, off)
                finally:
                    os.close(fd)
            self.touched = [rel]
            return name, "write %r %d bytes at %d flags %o" % (rel, len(data), off, flags), fn

        if name == "create_excl":
            rel = self.any_path(files, dirs, links)
            mode = rnd.choice(MODES_FILE)

            def fn(root, side):
                os.close(os.open(P(root, rel), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode))
                return oct(os.lstat(P(root, rel)).st_mode)
            self.touched = [rel]
            return name, "create O_EXCL %r mode %o" % (rel, mode), fn

        if name == "read":
            rel = rnd.choice(files) if files and rnd.random() < 0.9 else self.any_path(
                files, dirs, links)
            size, off = rnd.randrange(0, 300000), self.offset(self.ref_size(rel))

            def fn(root, side):
                fd = os.open(P(root, rel), os.O_RDONLY)
                try:
                    return os.pread(fd, size, off)
                finally:
                    os.close(fd)
            self.touched = [rel]
            return name, "read %r %d bytes at %d" % (rel, size, off), fn

        if name in ("write_fd", "read_fd", "ftruncate", "fsync", "close_fd"):
            i = rnd.randrange(len(self.pool))
            desc = self.pool[i][2]
            size = os.fstat(self.pool[i][0]).st_size
            if name == "close_fd":
                def fn(root, side):
                    if side == 1:
                        self.close_pool_entry(i)
                return name, "close kept descriptor %d (%s)" % (i, desc), fn
            if name == "write_fd":
                data, off = self.data(), self.offset(size)
                return name, "pwrite kept %d (%s) %d bytes at %d" % (i, desc, len(data), off), \
                    lambda root, side: os.pwrite(self.pool[i][side], data, off)
            if name == "read_fd":
                n, off = rnd.randrange(0, 300000), self.offset(size)
                return name, "pread kept %d (%s) %d bytes at %d" % (i, desc, n, off), \
                    lambda root, side: os.pread(self.pool[i][side], n, off)
            if name == "ftruncate":
                length = rnd.randrange(0, size + 100000)
                return name, "ftruncate kept %d (%s) to %d" % (i, desc, length), \
                    lambda root, side: (os.ftruncate(self.pool[i][side], length),
                                        os.fstat(self.pool[i][side]).st_size)
            datasync = rnd.random() < 0.5
            return name, "f%ssync kept %d (%s)" % ("data" if datasync else "", i, desc), \
                lambda root, side: (os.fdatasync if datasync else os.fsync)(self.pool[i][side])

        if name == "open_fd":
            rel = rnd.choice(files)
            flags = os.O_RDWR | (os.O_APPEND if rnd.random() < 0.1 else 0)
            box = {}

            def fn(root, side):
                fd = os.open(P(root, rel), flags)
                if side == 0:
                    box["ref"] = fd
                else:
                    self.pool.append((box.pop("ref"), fd, "%s flags %o" % (rel, flags)))
                return None
            self.touched = [rel]
            return name, "open and keep %r flags %o" % (rel, flags), fn

        if name in ("truncate",):
            rel = rnd.choice(files) if files and rnd.random() < 0.9 else self.any_path(
                files, dirs, links)
            length = rnd.randrange(0, self.ref_size(rel) + 100000)
            self.touched = [rel]
            return name, "truncate %r to %d" % (rel, length), \
                lambda root, side: os.truncate(P(root, rel), length)

        if name == "rename":
            src = rnd.choice(files + links) if files + links and rnd.random() < 0.9 else \
                self.any_path(files, dirs, links)
            dst = rnd.choice(files) if files and rnd.random() < 0.3 else self.any_path(
                files, dirs, links)
            self.release_if_replaced(src, dst)
            self.touched = [src, dst]
            return name, "rename %r -> %r" % (src, dst), \
                lambda root, side: os.rename(P(root, src), P(root, dst))

        if name == "rename_dir":
            src = rnd.choice(dirs[1:]) if len(dirs) > 1 else self.new_path(dirs)
            dst = rnd.choice(dirs[1:]) if len(dirs) > 1 and rnd.random() < 0.3 else \
                self.new_path(dirs)
            self.touched = [src, dst]
            return name, "rename dir %r -> %r" % (src, dst), \
                lambda root, side: os.rename(P(root, src), P(root, dst))

        if name == "rename2":
            a = self.any_path(files, dirs, links)
            b = self.any_path(files, dirs, links)
            flags = rnd.choice([harness.RENAME_NOREPLACE, harness.RENAME_EXCHANGE])
            self.touched = [a, b]
            return name, "renameat2 %r -> %r flags %d" % (a, b, flags), \
                lambda root, side: harness.renameat2(P(root, a), P(root, b), flags)

        if name == "link":
            src = rnd.choice(files) if files else self.any_path(files, dirs, links)
            dst = self.any_path(files, dirs, links)
            self.touched = [src, dst]
            return name, "link %r -> %r" % (src, dst), \
                lambda root, side: os.link(P(root, src), P(root, dst))

        if name == "symlink":
            dst = self.any_path(files, dirs, links)
            target = rnd.choice(["a", "../b", "/nowhere", "d/e"])
            self.touched = [dst]
            return name, "symlink %r -> %r" % (dst, target), \
                lambda root, side: (os.symlink(target, P(root, dst)), os.readlink(P(root, dst)))

        if name == "unlink":
            rel = rnd.choice(files + links) if files + links and rnd.random() < 0.9 else \
                self.any_path(files, dirs, links)
            self.release_if_last_name(rel)
            self.touched = [rel]
            return name, "unlink %r" % rel, lambda root, side: os.unlink(P(root, rel))

        if name == "mkdir":
            rel = self.new_path(dirs) if rnd.random() < 0.9 else self.any_path(files, dirs, links)
            mode = rnd.choice(MODES_DIR)

            def fn(root, side):
                os.mkdir(P(root, rel), mode)
                return oct(os.stat(P(root, rel)).st_mode)
            self.touched = [rel]
            return name, "mkdir %r %o" % (rel, mode), fn

        if name == "rmdir":
            rel = rnd.choice(dirs[1:]) if len(dirs) > 1 and rnd.random() < 0.9 else \
                self.any_path(files, dirs, links)
            self.touched = [rel]
            return name, "rmdir %r" % rel, lambda root, side: os.rmdir(P(root, rel))

        if name == "chmod":
            rel = self.any_path(files, dirs, links)
            is_dir = os.path.isdir(os.path.join(self.ref, rel))
            mode = rnd.choice(MODES_DIR if is_dir else MODES_FILE)

            def fn(root, side):
                os.chmod(P(root, rel), mode)
                return oct(os.stat(P(root, rel)).st_mode)
            self.touched = [rel]
            return name, "chmod %r %o" % (rel, mode), fn

        if name == "utime":
            rel = self.any_path(files, dirs, links)
            times = (rnd.randrange(0, 1 << 62), rnd.randrange(0, 1 << 62))

            def fn(root, side):
                os.utime(P(root, rel), ns=times)
                st = os.stat(P(root, rel))
                return st.st_atime_ns, st.st_mtime_ns
            self.touched = [rel]
            return name, "utime %r ns=%r" % (rel, times), fn

        if name == "stat":
            rel = self.any_path(files, dirs, links)
            return name, "lstat %r" % rel, \
                lambda root, side: harness.entry_state(P(root, rel), content=False)

        if name == "listdir":
            rel = rnd.choice(dirs) if rnd.random() < 0.9 else self.any_path(files, dirs, links)
            return name, "listdir %r" % rel, lambda root, side: sorted(os.listdir(P(root, rel)))

        raise AssertionError("no operation %s" % name)

    def step(self, n):
        name, desc, fn = self.choose()
        self.counts[name] = self.counts.get(name, 0) + 1
        self.history.append("%d: %s" % (n, desc))
        del self.history[:-25]
        expected = outcome(fn, self.ref, 0)
        actual = outcome(fn, self.mnt, 1)
        if actual != expected:
            raise Failure("step %d: %s: reference gave %s, mount gave %s"
                          % (n, desc, short(expected), short(actual, expected)))
        # The state of every path the step named, and the listing of its directory.
        for rel in self.touched:
            for what, fn in [("state", harness.entry_state),
                             ("listing of the directory",
                              lambda p: sorted(os.listdir(os.path.dirname(p))))]:
                expected = outcome(fn, os.path.join(self.ref, rel))
                actual = outcome(fn, os.path.join(self.mnt, rel))
                if actual != expected:
                    raise Failure("after step %d: %s: %s of %r: reference %s, mount %s"
                                  % (n, desc, what, rel, short(expected), short(actual)))

    def compare_trees(self, n):
        for root, what in [(self.mnt, "the mount"), (self.src, "the provider's directory")]:
            diff = harness.tree_diff(harness.tree_state(self.ref), harness.tree_state(root))
            if diff:
                raise Failure("after step %d, %s differs from the reference:\n%s" % (n, what, diff))

    def close(self):
        while self.pool:
            self.close_pool_entry(0)

    def report(self, n, error):
        fail("seed %d (rerun with WEBFUSE_SEED=%d), %s\nlast operations:\n  %s"
             % (self.seed, self.seed, error, "\n  ".join(self.history)))


def short(value, other=None):
    """A readable rendering of an outcome; data read is shown as its length and, against
    `other`, the first offset where they differ."""
    kind, result = value
    if kind == "ok" and isinstance(result, bytes):
        text = "%d bytes" % len(result)
        if other and other[0] == "ok" and isinstance(other[1], bytes):
            a, b = result, other[1]
            first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
            text += " (first difference at byte %s)" % (first if first is not None else
                                                       min(len(a), len(b)))
        return "('ok', %s)" % text
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "... (%d characters)" % len(text)


def run(env, links, seed):
    harness.require_webfuse2_provider()
    daemon = env.start_daemon()
    src, ref = env.mkdir("src"), env.mkdir("ref")
    env.start_webfuse2_provider(daemon, "rw", src)
    mnt = daemon.mount_path("rw")
    r = Random(seed, ref, mnt, src, links)
    print("  seed %d (WEBFUSE_SEED), %d steps (WEBFUSE_STEPS), hard links %s"
          % (seed, STEPS, "on" if links else "off"))
    sys.stdout.flush()
    start = time.monotonic()
    n = 0
    try:
        for n in range(1, STEPS + 1):
            r.step(n)
            if n % COMPARE_EVERY == 0:
                r.compare_trees(n)
        r.close()
        r.compare_trees(n)
    except Failure as e:
        r.close()
        r.report(n, e)
    except Exception as e:
        r.close()
        r.report(n, "step %d raised %r" % (n, e))
    elapsed = time.monotonic() - start
    print("  %d operations in %.1f s: %.0f ops/s (each on the reference and on the mount, "
          "trees compared every %d)" % (STEPS, elapsed, STEPS / elapsed, COMPARE_EVERY))
    print("  operations: %s" % ", ".join("%s %d" % kv for kv in sorted(r.counts.items())))
    sys.stdout.flush()


@suite.test(budget=200)
def random_operations_without_hard_links(env):
    run(env, links=False, seed=SEED)


@suite.test(budget=200)
def random_operations_with_hard_links(env):
    run(env, links=True, seed=SEED)


if __name__ == "__main__":
    suite.main()
