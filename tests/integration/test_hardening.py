#!/usr/bin/env python3
"""Mount hardening (issue 6): mounts are nosuid,nodev; other users of the device reach them only
with --allow-other; with --user the daemon gives up root once its ports are open and mounts
through fusermount3, and everything a provider and an operator do still works."""

import os
import pwd
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402
from fakeprovider import FakeWebfuse2, File  # noqa: E402

suite = harness.Suite("test_hardening")

UNPRIVILEGED = "nobody"


def mount_options(path):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if harness._unescape(fields[4]) == path:
                return set(fields[5].split(","))
    fail("%s is not mounted" % path)


def open_to_others(env):
    """Lets other users walk down to the mounts (mkdtemp makes the test directories 0700)."""
    for d in (os.path.dirname(env.dir), env.dir):
        os.chmod(d, 0o711)


def read_as(user, path):
    """(exit status, output) of `cat path` run as `user`."""
    # With its own group too: FUSE lets a mount's owner in only with both ids matching.
    pw = pwd.getpwnam(user)
    out = subprocess.run(["cat", path], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return out.returncode, out.stdout


def require_user():
    try:
        return pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        fail("there is no user %r on this machine" % UNPRIVILEGED)


@suite.test
def mounts_are_nosuid_and_nodev(env):
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("plain", {"setuid": File(b"#!/bin/sh\n", mode=0o4755)})
    options = mount_options(daemon.mount_path("plain"))
    check({"nosuid", "nodev"} <= options, "mount options %r" % sorted(options))
    check("allow_other" not in "".join(open("/proc/self/mountinfo").read().split(
        daemon.mount_path("plain"))[1].splitlines()[0]), "allow_other without --allow-other")


@suite.test
def other_users_need_allow_other(env):
    require_user()
    open_to_others(env)
    for allow, expect_ok in ((False, False), (True, True)):
        daemon = env.start_daemon(extra=["--allow-other"] if allow else [])
        fake = env.fake(daemon)
        fake.attach("shared", {"open.txt": File(b"for everyone\n", mode=0o644),
                               "secret.txt": File(b"root only\n", mode=0o600)})
        status, out = read_as(UNPRIVILEGED, os.path.join(daemon.mount_path("shared"), "open.txt"))
        check_equal(status == 0, expect_ok, "reading as %s with allow_other=%s (%r)"
                    % (UNPRIVILEGED, allow, out))
        if expect_ok:
            check_equal(out, b"for everyone\n", "content read by %s" % UNPRIVILEGED)
            status, out = read_as(UNPRIVILEGED,
                                  os.path.join(daemon.mount_path("shared"), "secret.txt"))
            check(status != 0, "a 0600 file of root was readable: %r" % out)
        fake.close()
        daemon.stop()


@suite.test
def runs_as_unprivileged_user_after_opening_ports(env):
    user = require_user()
    open_to_others(env)
    daemon = env.start_daemon(extra=["--user", UNPRIVILEGED])

    def uid():
        with open("/proc/%d/status" % daemon.pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return [int(v) for v in line.split()[1:]]
        return None

    harness.wait_until(lambda: uid() == [user.pw_uid] * 4, 5, what="webfused to drop to %s"
                       % UNPRIVILEGED)
    fake = env.fake(daemon)
    fake.attach("dropped", {"f.txt": File(b"mounted by fusermount3\n")})
    mp = daemon.mount_path("dropped")
    check("user_id=%d" % user.pw_uid in open("/proc/self/mountinfo").read(),
          "the mount does not belong to %s" % UNPRIVILEGED)
    check_equal(read_as(UNPRIVILEGED, os.path.join(mp, "f.txt")),
                (0, b"mounted by fusermount3\n"), "reading as the mount's owner")
    # The operator's view still works: listing, history, and a detach (fusermount3 -u).
    check_equal([f["name"] for f in daemon.api_ok("GET", "/api/v1/filesystems")["filesystems"]],
                ["dropped"], "filesystems listed")
    daemon.api_ok("DELETE", "/api/v1/filesystems/dropped", expect=202)
    harness.wait_unmounted(mp, 10)
    second = env.fake(daemon)
    second.attach("again", {"g": File(b"g")})
    harness.wait_until(
        lambda: [e["kind"] for e in daemon.api_ok("GET", "/api/v1/events")["events"]
                 if e["kind"] in ("attach", "detach")] == ["attach", "detach", "attach"],
        5, what="attach and detach events in the history")
    # A clean stop unmounts what is left, also a mount a process of that user holds open
    # (aborted through fusectl, whose files belong to the mount's owner).
    holder = subprocess.Popen(["sh", "-c", "exec 3<%s/g; echo held; exec sleep 60"
                               % daemon.mount_path("again")], user=user.pw_uid,
                              group=user.pw_gid, extra_groups=[], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    env.add_cleanup(holder.kill)
    check_equal(holder.stdout.readline(), b"held\n", "the holder opened the file")
    daemon.signal(15)
    check_equal(daemon.wait(10), 0, "exit status")
    check("shutdown took longer" not in daemon.log_text(),
          "the held mount kept webfused from stopping:\n%s" % daemon.log_text())
    harness.wait_until(lambda: not harness.is_mounted(daemon.mount_path("again")), 5,
                       what="the held mount to go")
    check("cannot" not in daemon.log_text().split("running as")[1],
          "errors after dropping privileges:\n%s" % daemon.log_text())


def status_ids(pid):
    """{"Uid": [...], "Gid": [...], "Groups": [...]} from /proc/PID/status."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(v) for v in value.split()]
    return ids


def make_account(env, tool, name, *args):
    """Creates a user (useradd) or a group (groupadd) for this test; removed when it ends."""
    subprocess.run([tool] + list(args) + [name], check=True, capture_output=True, timeout=30)
    remove = "userdel" if tool == "useradd" else "groupdel"
    env.add_cleanup(lambda: subprocess.run([remove, name], capture_output=True, timeout=30))


@suite.test
def the_log_file_is_handed_to_the_user(env):
    """--log FILE is opened as root, before --user: the user gets the file, so SIGHUP can reopen
    it, in place and after logrotate moved it away (into a directory the user may write)."""
    user = require_user()
    open_to_others(env)
    logdir = env.mkdir("log")
    os.chown(logdir, user.pw_uid, user.pw_gid)
    log = os.path.join(logdir, "webfused.log")
    daemon = env.start_daemon(extra=["--user", UNPRIVILEGED, "--log", log])
    harness.wait_until(lambda: "running as " + UNPRIVILEGED in open(log).read(), 5,
                       what="webfused to drop to %s" % UNPRIVILEGED)
    check_equal(os.stat(log).st_uid, user.pw_uid, "owner of the log file")
    daemon.signal(signal.SIGHUP)
    harness.wait_until(lambda: "log reopened" in open(log).read(), 5, what="a reopen in place")
    os.rename(log, log + ".1")
    daemon.signal(signal.SIGHUP)
    harness.wait_until(lambda: os.path.exists(log) and "log reopened" in open(log).read(), 5,
                       what="a new log file after the move")
    check("cannot reopen" not in open(log + ".1").read(), "a reopen failed")


@suite.test
def user_and_group_are_both_taken(env):
    """--user X --group Y: once its ports are open webfused runs with Y as its group (real,
    effective, saved and file system gid), not X's own group, and no supplementary groups; its
    mounts (made by fusermount3) carry Y too."""
    import grp
    user, group = "wfit-u%d" % os.getpid(), "wfit-g%d" % os.getpid()
    make_account(env, "groupadd", group, "--system")
    # With a group of its own (useradd --user-group): the one --group must replace.
    make_account(env, "useradd", user, "--system", "--user-group", "--no-create-home",
                 "--shell", "/usr/sbin/nologin")
    pw, gid = pwd.getpwnam(user), grp.getgrnam(group).gr_gid
    check(pw.pw_gid != gid, "the user's own group is the one given with --group")
    open_to_others(env)
    daemon = env.start_daemon(extra=["--user", user, "--group", group])
    env.add_cleanup(daemon.stop)  # before the accounts go: userdel refuses a user still running
    expected = {"Uid": [pw.pw_uid] * 4, "Gid": [gid] * 4, "Groups": []}
    harness.wait_until(lambda: status_ids(daemon.pid) == expected, 5,
                       what="webfused to run as %s:%s (%r), not %r"
                       % (user, group, expected, status_ids(daemon.pid)))
    fake = env.fake(daemon)
    fake.attach("grouped", {"f": File(b"x")})
    line = [line for line in open("/proc/self/mountinfo")
            if harness._unescape(line.split()[4]) == daemon.mount_path("grouped")][0]
    check("user_id=%d," % pw.pw_uid in line and "group_id=%d" % gid in line,
          "the mount's owner: %r" % line)


@suite.test
def user_mounts_at_a_configured_directory(env):
    """--filesystem NAME=DIR with --user: DIR (and its parents) are made while webfused is still
    root and handed to the user, so that fusermount3 may mount there."""
    user = require_user()
    open_to_others(env)
    fixed = env.path("conf", "fw")
    daemon = env.start_daemon(extra=["--user", UNPRIVILEGED, "--filesystem", "fw=" + fixed])
    check_equal(os.stat(fixed).st_uid, user.pw_uid, "owner of the configured directory")
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("at a fixed place")
    env.start_webfuse2_provider(daemon, "fw", src, wait=False)
    harness.wait_mounted(fixed)
    check_equal(read_as(UNPRIVILEGED, os.path.join(fixed, "f")), (0, b"at a fixed place"),
                "reading as the mount's owner")
    # A directory that existed is never given away (it could be /srv, or a typo for /etc):
    # the start is refused until its owner lets the user write there.
    existing = env.mkdir("existing")
    refused = env.start_daemon(extra=["--user", UNPRIVILEGED, "--filesystem",
                                      "fw=" + existing], wait=False)
    check_equal(refused.wait(10), 1, "status with a directory the user cannot write to")
    check("--user %s cannot write to %s" % (UNPRIVILEGED, existing) in refused.log_text(),
          "its log: %s" % refused.log_text())
    check_equal(os.stat(existing).st_uid, 0, "the existing directory's owner")


@suite.test
def allow_other_with_user_needs_fusermounts_consent(env):
    """With --user, fusermount3 mounts, and it refuses allow_other unless /etc/fuse.conf has
    user_allow_other. Without that line the start (and --check-config) is refused, naming the
    file; with it another user of the device reads the mounts."""
    require_user()
    open_to_others(env)
    base = [harness.binary("WEBFUSED", "webfused"), "--no-config", "--no-admin", "--port",
            str(harness.free_port()), "--mount-root", env.path("root"), "--user", UNPRIVILEGED,
            "--allow-other"]
    harness.keep_fuse_conf(env)
    # Commented out, after a line too long for fusermount3, and without the last newline: none
    # of them counts for fusermount3, so none may count here.
    harness.write_fuse_conf("# user_allow_other\n  #user_allow_other\nmount_max = 1000\n" +
                            "x" * 300 + "user_allow_other\nuser_allow_other")
    user = pwd.getpwnam(UNPRIVILEGED)
    # As root with --user (checked, then started), and started as that user.
    for argv, status, uid in ((base + ["--check-config"], 2, None), (base, 2, None),
                              (base[:-3] + ["--allow-other", "--check-config"], 2, user.pw_uid)):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, user=uid)
        check_equal(done.returncode, status, "exit status of %r as uid %s" % (argv[-3:], uid))
        check("needs a line 'user_allow_other' in /etc/fuse.conf" in done.stderr,
              "its message: %r" % done.stderr)
    harness.write_fuse_conf("# allow others\n  user_allow_other  # for webfused\n")
    daemon = env.start_daemon(extra=["--user", UNPRIVILEGED, "--allow-other"])
    reader = "wfit-r%d" % os.getpid()
    make_account(env, "useradd", reader, "--system", "--user-group", "--no-create-home",
                 "--shell", "/usr/sbin/nologin")
    env.add_cleanup(daemon.stop)  # before the account goes
    fake = env.fake(daemon)
    fake.attach("shared", {"open.txt": File(b"for everyone\n", mode=0o644)})
    check_equal(read_as(reader, os.path.join(daemon.mount_path("shared"), "open.txt")),
                (0, b"for everyone\n"), "reading as another user")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@suite.test
def what_is_left_under_a_name_in_the_mount_root_is_not_mounted_on(env):
    """Something in the mount root under a filesystem's name that is not an empty directory is
    not mounted on: a symbolic link (the mount went where it pointed: over /etc, for one, and
    the gateway hung on its own mount), a file (a mount every access to failed with EIO) or a
    directory of files (hidden by the mount). The provider and the history are told why, and
    what was there stays as it was. An empty directory (left by a crash) is mounted on."""
    daemon = env.start_daemon()
    src = env.mkdir("src")
    write(os.path.join(src, "f"), b"served\n")
    elsewhere = env.mkdir("elsewhere")
    write(os.path.join(elsewhere, "keep"), b"elsewhere\n")
    os.symlink(elsewhere, daemon.mount_path("link"))
    write(daemon.mount_path("file"), b"a file\n")
    os.mkdir(daemon.mount_path("full"))
    write(os.path.join(daemon.mount_path("full"), "keep"), b"full\n")
    refused = {"link": "mount point is a symbolic link",
               "file": "mount point is not a directory",
               "full": "mount point holds files"}
    for name, why in refused.items():
        fake = FakeWebfuse2(daemon.port, name, src)
        check(fake.closed.wait(10), "%s: the connection was not closed" % name)
        check_equal(fake.close_reason, "cannot mount %s: %s" % (name, why),
                    "close reason for %s" % name)
    # The longest name still gets the whole reason (a close frame holds 123 bytes).
    longest = "L" * 64
    os.mkdir(daemon.mount_path(longest))
    write(os.path.join(daemon.mount_path(longest), "keep"), b"full\n")
    fake = FakeWebfuse2(daemon.port, longest, src)
    check(fake.closed.wait(10), "the longest name: the connection was not closed")
    check_equal(fake.close_reason, "cannot mount %s: %s" % (longest, refused["full"]),
                "close reason for the longest name")
    answer = env.fake(daemon).add_filesystem("full", {})
    check_equal(answer.get("error", {}).get("message"),
                "cannot mount full: " + refused["full"], "JSON answer %r" % answer)
    check_equal(harness.mounts_under(env.dir), [], "mounts")
    check_equal(os.readlink(daemon.mount_path("link")), elsewhere, "the symbolic link")
    check_equal(os.listdir(elsewhere), ["keep"], "where the link points")
    check_equal(read(daemon.mount_path("file")), b"a file\n", "the file")
    check_equal(read(os.path.join(daemon.mount_path("full"), "keep")), b"full\n",
                "the directory's file")
    events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    failed = sorted((e["filesystem"], e["detail"]) for e in events if e["kind"] == "attach_failed")
    check_equal(failed, sorted([(n, "mount failed: " + why) for n, why in refused.items()] +
                               [("full", "mount failed: " + refused["full"]),
                                (longest, "mount failed: " + refused["full"])]), "history")
    os.mkdir(daemon.mount_path("empty"))
    fake = FakeWebfuse2(daemon.port, "empty", src)
    try:
        harness.wait_mounted(daemon.mount_path("empty"))
        check_equal(read(os.path.join(daemon.mount_path("empty"), "f")), b"served\n",
                    "read through a mount on an empty directory")
    finally:
        fake.abort()
    check(daemon.alive(), "webfused died")


@suite.test
def a_configured_mount_point_may_hold_files(env):
    """--filesystem NAME=DIR is the administrator's choice: DIR is mounted on even when it holds
    files (the mount hides them until it ends), as mount(8) would."""
    fixed = env.mkdir("fixed")
    write(os.path.join(fixed, "under"), b"hidden\n")
    daemon = env.start_daemon(extra=["--filesystem", "fw=" + fixed])
    src = env.mkdir("src")
    write(os.path.join(src, "f"), b"served\n")
    fake = FakeWebfuse2(daemon.port, "fw", src)
    try:
        harness.wait_mounted(fixed)
        check_equal(os.listdir(fixed), ["f"], "the mount's files")
    finally:
        fake.abort()
    harness.wait_until(lambda: not harness.is_mounted(fixed), 10, what="the mount to go")
    check_equal(read(os.path.join(fixed, "under")), b"hidden\n", "the file under the mount")


if __name__ == "__main__":
    suite.main()
