#!/usr/bin/env python3
"""Real programs in a read-write webfuse2 mount: tar, cp -a, gcc, git, dd.

- `tar -x` of a source tarball (a generated tree of a few hundred files, symlinks, nested and
  empty directories, odd names, set modes and nanosecond mtimes) into the mount, then `diff -r`
  against the original and a comparison of every entry's metadata with the same tarball
  extracted locally; `tar -c` from the mount back out.
- `cp -a` into the mount and back out, with a sha256sum manifest checked on both copies.
- `gcc` compiling a small program whose sources, objects and binary are in the mount; the binary
  runs from the mount.
- `git init`, `add`, `commit` (twice), `gc`, `fsck --full` inside the mount, and a clone out.
- A JSON provider and a webfuse2 provider attached to one daemon at the same time: both
  readable, the webfuse2 one writable, the JSON one EROFS.
- Throughput of a 256 MiB sequential write (dd bs=1M conv=fsync) and read (caches dropped)
  through the mount and on the source directory directly: printed, not asserted.
"""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, check_errno, fail  # noqa: E402

suite = harness.Suite("test_rw_programs")
suite.needs_provider = True

MIB = 1 << 20
DATA = {}  # filled by the suite setup: "tree" (the original), "tarball"


def run(argv, cwd=None, timeout=120, env=None, what=None):
    """Runs a program; fails with its output when it exits non-zero. Returns its stdout."""
    try:
        r = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %d s" % (what or " ".join(argv), timeout))
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0:
        lines = out.splitlines()
        if len(lines) > 60:
            lines = lines[:60] + ["... (%d more lines)" % (len(lines) - 60)]
        fail("%s exited with %d:\n  %s" % (what or " ".join(argv), r.returncode,
                                           "\n  ".join(lines)))
    return out


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def make_source_tree(root, seed=b"tree"):
    """A few hundred files in nested directories, symlinks, an empty directory, odd names, set
    modes and nanosecond mtimes (deterministic)."""
    import random
    rnd = random.Random(seed)
    dirs = [""]
    for i in range(40):
        parent = rnd.choice([d for d in dirs if d.count("/") < 4])
        d = os.path.join(parent, rnd.choice(["src", "lib", "doc", "test", "include", "util",
                                             "with space", "ünï"]) + str(i))
        os.makedirs(os.path.join(root, d))
        dirs.append(d)
    files = []
    for i in range(320):
        d = rnd.choice(dirs)
        name = "file%03d%s" % (i, rnd.choice([".c", ".h", ".txt", "", ".bin", " x.md"]))
        size = rnd.choice([0, 1, 100, 4095, 4096, 4097, 20000, 70000, 200000])
        if i == 7:
            size = 3 * MIB + 11
        path = os.path.join(root, d, name)
        write_file(path, rnd.randbytes(size), rnd.choice([0o644, 0o644, 0o755, 0o600, 0o444]))
        files.append(os.path.join(d, name))
    for i in range(30):
        d = rnd.choice(dirs)
        target = os.path.relpath(os.path.join(root, rnd.choice(files)), os.path.join(root, d))
        os.symlink(target, os.path.join(root, d, "link%02d" % i))
    os.symlink("does/not/exist", os.path.join(root, "dangling"))
    os.symlink(dirs[3], os.path.join(root, "dirlink"))
    os.mkdir(os.path.join(root, "empty dir"), 0o700)
    # mtimes last, deepest first: creating entries changes their directory's mtime.
    everything = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            everything.append(os.path.join(dirpath, n))
    for path in sorted(everything, key=lambda p: p.count("/"), reverse=True):
        t = 1600000000 * 10 ** 9 + rnd.randrange(10 ** 17)
        os.utime(path, ns=(t, t), follow_symlinks=False)
    os.utime(root, ns=(1650000000123456789, 1650000000123456789))
    return len(files)


@suite.setup
def make_data(suite_dir):
    DATA["tree"] = os.path.join(suite_dir, "tree")
    os.mkdir(DATA["tree"])
    DATA["files"] = make_source_tree(DATA["tree"])
    DATA["tarball"] = os.path.join(suite_dir, "tree.tar.gz")
    # pax format keeps nanosecond mtimes.
    subprocess.run(["tar", "--format=posix", "-czf", DATA["tarball"], "-C", suite_dir, "tree"],
                   check=True, timeout=120)


def mount_rw(env, name="rw"):
    harness.require_webfuse2_provider()
    daemon = env.start_daemon()
    src = env.mkdir("src")
    provider = env.start_webfuse2_provider(daemon, name, src)
    return daemon, src, daemon.mount_path(name), provider


def same_tree(expected, actual, what, times=True):
    harness.check_same_tree(expected, actual, what, content=True, times=times)


# ---- tar ---------------------------------------------------------------------------------------


@suite.test(budget=120)
def tar_extract_into_the_mount_then_diff(env):
    _, src, mnt, _ = mount_rw(env)
    local = env.mkdir("local")
    run(["tar", "-xzf", DATA["tarball"], "-C", local])
    run(["tar", "-xzf", DATA["tarball"], "-C", mnt], what="tar -x into the mount")
    run(["diff", "-r", "--no-dereference", DATA["tree"], os.path.join(mnt, "tree")],
        what="diff -r of the original and the mount")
    same_tree(os.path.join(local, "tree"), os.path.join(mnt, "tree"),
              "tar -x into the mount (vs tar -x locally)")
    same_tree(os.path.join(local, "tree"), os.path.join(src, "tree"),
              "the provider's directory after tar -x")
    # And back out: tar -c from the mount, extracted locally, equals the original.
    out = env.mkdir("out")
    run(["bash", "-c", "set -o pipefail; tar --format=posix -cf - -C %s tree | tar -xf - -C %s"
         % (quote(mnt), quote(out))], what="tar -c from the mount")
    same_tree(os.path.join(local, "tree"), os.path.join(out, "tree"),
              "tar -c from the mount, extracted locally")
    # Remove it all again through the mount.
    run(["rm", "-rf", os.path.join(mnt, "tree")], what="rm -rf in the mount")
    check_equal(os.listdir(mnt), [], "the mount after rm -rf")
    check_equal(os.listdir(src), [], "the provider's directory after rm -rf")


def quote(path):
    import shlex
    return shlex.quote(path)


# ---- cp -a -------------------------------------------------------------------------------------


@suite.test(budget=120)
def cp_a_round_trip_with_checksums(env):
    _, src, mnt, _ = mount_rw(env)
    manifest = env.path("manifest.sha256")
    run(["bash", "-c", "cd %s && find . -type f -print0 | sort -z | xargs -0 sha256sum > %s"
         % (quote(DATA["tree"]), quote(manifest))])
    copy = os.path.join(mnt, "copy")
    run(["cp", "-a", DATA["tree"], copy], what="cp -a into the mount")
    run(["sha256sum", "--quiet", "-c", manifest], cwd=copy, what="sha256sum -c in the mount")
    same_tree(DATA["tree"], copy, "cp -a into the mount")
    back = env.path("back")
    run(["cp", "-a", copy, back], what="cp -a out of the mount")
    run(["sha256sum", "--quiet", "-c", manifest], cwd=back, what="sha256sum -c of the copy back")
    same_tree(DATA["tree"], back, "cp -a round trip")
    # A copy inside the mount (read and write through it at once).
    run(["cp", "-a", copy, os.path.join(mnt, "copy2")], what="cp -a within the mount")
    run(["sha256sum", "--quiet", "-c", manifest], cwd=os.path.join(mnt, "copy2"),
        what="sha256sum -c of the copy within the mount")
    same_tree(DATA["tree"], os.path.join(src, "copy2"), "cp -a within the mount")


# ---- gcc ---------------------------------------------------------------------------------------

MAIN_C = r"""
#include <stdio.h>
#include "util.h"

int main(int argc, char **argv)
{
    unsigned long sum = 0;
    for (int i = 1; i <= 100; i++)
        sum += square(i);
    printf("%s: sum of squares = %lu\n", argc > 0 ? "prog" : "?", sum);
    return sum == 338350 ? 0 : 1;
}
"""
UTIL_H = "unsigned long square(int x);\n"
UTIL_C = '#include "util.h"\nunsigned long square(int x) { return (unsigned long)x * x; }\n'


@suite.test(budget=120)
def gcc_compiles_and_runs_a_program_in_the_mount(env):
    if not shutil.which("gcc"):
        print("  note: gcc is not installed: not tested")
        return
    _, src, mnt, _ = mount_rw(env)
    proj = os.path.join(mnt, "proj")
    os.mkdir(proj)
    write_file(os.path.join(proj, "main.c"), MAIN_C.encode())
    write_file(os.path.join(proj, "util.h"), UTIL_H.encode())
    write_file(os.path.join(proj, "util.c"), UTIL_C.encode())
    # Separate compilation, with the intermediate files (.i, .s) kept in the mount.
    run(["gcc", "-O2", "-Wall", "-Werror", "-save-temps=obj", "-c", "main.c", "-o", "main.o"],
        cwd=proj, what="gcc -c main.c")
    run(["gcc", "-O2", "-Wall", "-Werror", "-c", "util.c", "-o", "util.o"], cwd=proj,
        what="gcc -c util.c")
    run(["gcc", "-o", "prog", "main.o", "util.o"], cwd=proj, what="gcc (link)")
    out = run([os.path.join(proj, "prog")], what="running prog from the mount")
    check_equal(out, "prog: sum of squares = 338350\n", "output of prog")
    check(os.access(os.path.join(src, "proj", "prog"), os.X_OK),
          "prog is not executable in the provider's directory")
    for name in ["main.o", "util.o", "main.i", "main.s", "prog"]:
        with open(os.path.join(proj, name), "rb") as a, \
                open(os.path.join(src, "proj", name), "rb") as b:
            check(a.read() == b.read(), "%s differs between the mount and the provider" % name)
    # Rebuild in one step, overwriting the running binary's file.
    run(["gcc", "-O0", "-o", "prog", "main.c", "util.c"], cwd=proj, what="gcc (rebuild)")
    out = run([os.path.join(proj, "prog")], what="running the rebuilt prog")
    check_equal(out, "prog: sum of squares = 338350\n", "output of the rebuilt prog")


# ---- git ---------------------------------------------------------------------------------------


def git(repo, *args, what=None):
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=os.path.dirname(repo),
               GIT_AUTHOR_DATE="1700000000 +0000", GIT_COMMITTER_DATE="1700000000 +0000")
    return run(["git", "-c", "user.name=Webfuse Test", "-c", "user.email=test@example.invalid",
                "-c", "init.defaultBranch=main", "-c", "safe.directory=*"] + list(args),
               cwd=repo, env=env, what=what or "git " + " ".join(args))


@suite.test(budget=120)
def git_init_add_commit_fsck_in_the_mount(env):
    if not shutil.which("git"):
        print("  note: git is not installed: not tested")
        return
    _, src, mnt, _ = mount_rw(env)
    repo = os.path.join(mnt, "repo")
    os.mkdir(repo)
    git(repo, "init", "-q")
    shutil.copytree(DATA["tree"], os.path.join(repo, "tree"), symlinks=True)
    os.rmdir(os.path.join(repo, "tree", "empty dir"))  # git keeps no empty directories
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "fsck", "--full", "--strict")
    # Change, delete, rename, commit again.
    write_file(os.path.join(repo, "new.txt"), b"a new file\n")
    os.unlink(os.path.join(repo, "tree", "dangling"))
    git(repo, "add", "-A")
    git(repo, "mv", "new.txt", "renamed.txt")
    git(repo, "mv", "tree", "moved-tree")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    check_equal(git(repo, "status", "--porcelain"), "", "git status after the commits")
    log = git(repo, "log", "--format=%s")
    check_equal(log.split(), ["second", "first"], "git log")
    git(repo, "gc", "-q")
    git(repo, "fsck", "--full", "--strict")
    # The same repository seen from the provider's side, and cloned out of the mount.
    git(os.path.join(src, "repo"), "fsck", "--full", what="git fsck in the provider's directory")
    clone = env.path("clone")
    git(env.dir, "clone", "-q", repo, clone)
    git(clone, "fsck", "--full")
    run(["diff", "-r", "--no-dereference", "--exclude=.git", repo, clone],
        what="diff -r of the repository and its clone")


# ---- JSON and webfuse2 side by side -----------------------------------------------------------


def same_listing(source, mount):
    """Names, types, permission bits, sizes and contents (what the JSON protocol carries; it
    has no nlink, uid or gid)."""
    keep = ("type", "mode", "size", "sha256")

    def state(root):
        return {k: {f: v for f, v in e.items() if f in keep}
                for k, e in harness.tree_state(root).items()}

    diff = harness.tree_diff(state(source), state(mount))
    check(not diff, "mount %s differs from %s:\n%s" % (mount, source, diff))


@suite.test
def json_and_webfuse2_providers_attached_at_the_same_time(env):
    harness.require_webfuse2_provider()
    daemon = env.start_daemon()
    json_dir, wf2_dir = env.mkdir("json-src"), env.mkdir("wf2-src")
    for d in (json_dir, wf2_dir):
        write_file(os.path.join(d, "hello.txt"), b"hello from " + os.path.basename(d).encode())
        os.mkdir(os.path.join(d, "sub"))
        write_file(os.path.join(d, "sub", "data.bin"), os.urandom(300000))
    env.start_provider(daemon, [("jsonfs", json_dir)])
    env.start_webfuse2_provider(daemon, "wf2fs", wf2_dir)
    jm, wm = daemon.mount_path("jsonfs"), daemon.mount_path("wf2fs")
    for mount, source in [(jm, json_dir), (wm, wf2_dir)]:
        same_listing(source, mount)
    # The webfuse2 filesystem is writable...
    write_file(os.path.join(wm, "written.txt"), b"written through webfuse2")
    os.mkdir(os.path.join(wm, "newdir"))
    os.rename(os.path.join(wm, "hello.txt"), os.path.join(wm, "newdir", "hello.txt"))
    with open(os.path.join(wf2_dir, "written.txt"), "rb") as f:
        check_equal(f.read(), b"written through webfuse2", "the webfuse2 provider's file")
    check(os.path.exists(os.path.join(wf2_dir, "newdir", "hello.txt")), "rename did not arrive")
    # ... the JSON one is read-only.
    check_errno(lambda: write_file(os.path.join(jm, "written.txt"), b"no"), errno.EROFS,
                "creating a file on the JSON mount")
    check_errno(lambda: os.open(os.path.join(jm, "hello.txt"), os.O_WRONLY), errno.EROFS,
                "opening a file on the JSON mount for writing")
    check_errno(lambda: os.mkdir(os.path.join(jm, "newdir")), errno.EROFS,
                "mkdir on the JSON mount")
    check_errno(lambda: os.unlink(os.path.join(jm, "hello.txt")), errno.EROFS,
                "unlink on the JSON mount")
    # Both still serve after the other's activity, reading in turn.
    for _ in range(3):
        for mount, source in [(jm, json_dir), (wm, wf2_dir)]:
            same_listing(source, mount)


# ---- throughput --------------------------------------------------------------------------------


def dd(argv, what):
    start = time.monotonic()
    run(["dd"] + argv + ["status=none"], timeout=240, what=what)
    return time.monotonic() - start


@suite.test(budget=250)
def throughput_of_256_mib_sequential_write_and_read(env):
    _, src, mnt, _ = mount_rw(env)
    size_mib = 256
    direct_dir = env.mkdir("direct")
    results = {}
    for label, directory in [("source directory", direct_dir), ("mount", mnt)]:
        path = os.path.join(directory, "big")
        t_write = dd(["if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % size_mib,
                      "conv=fsync"], "dd write to the %s" % label)
        check_equal(os.stat(path).st_size, size_mib * MIB, "size written to the %s" % label)
        dropped = harness.drop_caches()
        t_read = dd(["if=" + path, "of=/dev/null", "bs=1M"], "dd read from the %s" % label)
        results[label] = (size_mib * MIB / 1e6 / t_write, t_write, size_mib * MIB / 1e6 / t_read,
                          t_read, dropped)
    for label, (w, tw, r, tr, dropped) in results.items():
        print("  %-16s 256 MiB: write %7.1f MB/s (%.2f s, dd bs=1M conv=fsync), read %7.1f MB/s "
              "(%.2f s, dd bs=1M, %s)" % (label, w, tw, r, tr,
                                         "caches dropped" if dropped else "caches NOT dropped"))
    d, m = results["source directory"], results["mount"]
    print("  mount/source: write %.0f%%, read %.0f%%" % (100 * m[0] / d[0], 100 * m[2] / d[2]))
    sys.stdout.flush()
    with open(os.path.join(src, "big"), "rb") as f:
        h = hashlib.sha256()
        while True:
            b = f.read(8 * MIB)
            if not b:
                break
            h.update(b)
    check_equal(h.hexdigest(), hashlib.sha256(b"\0" * (size_mib * MIB)).hexdigest(),
                "sha256 of the file the mount wrote")


if __name__ == "__main__":
    suite.main()
