#!/usr/bin/env python3
"""Start-up and mounts that go away under the gateway: a second webfused cannot take over a
running one's mount root or history; a listen address that cannot work is refused; a mount
unmounted by hand, or whose connection is aborted, is noticed, leaves nothing mounted and its
provider is told; a low limit of open files is raised."""

import os
import resource
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402
from fakeprovider import File  # noqa: E402

suite = harness.Suite("test_startup")


def webfused(*args, preexec_fn=None):
    """Runs webfused to completion (it must refuse to start); returns (status, stderr)."""
    argv = [harness.binary("WEBFUSED", "webfused"), "--no-config"] + list(args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                          preexec_fn=preexec_fn)
    return done.returncode, done.stderr


@suite.test
def second_daemon_on_the_same_mount_root_is_refused_and_leaves_the_mounts(env):
    daemon = env.start_daemon(admin=False)
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("still here")
    env.start_webfuse2_provider(daemon, "keep", src)
    status, err = webfused("--port", str(harness.free_port()), "--no-admin",
                           "--mount-root", daemon.mount_root)
    check(status != 0, "a second webfused on the same mount root exited with 0")
    check("another webfused is already using the mount root" in err, "its error: %r" % err)
    with open(os.path.join(daemon.mount_path("keep"), "f")) as f:
        check_equal(f.read(), "still here", "the first daemon's mount after the refusal")


@suite.test
def second_daemon_on_the_same_history_is_refused_before_touching_it(env):
    daemon = env.start_daemon()
    other_root = env.path("new", "other-root")
    status, err = webfused("--port", str(harness.free_port()), "--admin-port",
                           str(harness.free_port()), "--mount-root", other_root,
                           "--db", daemon.db, "--admin-token-file", daemon.token_file)
    check(status != 0, "a second webfused on the same database exited with 0")
    check("another webfused is already using the history database" in err, "its error: %r" % err)
    check(daemon.alive(), "the first daemon died")
    check(not os.path.exists(env.path("new")), "the refused start left the mount root it made")


@suite.test
def a_port_in_use_is_named_and_the_start_leaves_nothing(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        root = env.path("made", "root")
        fixed = env.path("made-fixed", "fw", "dir")
        status, err = webfused("--port", str(port), "--no-admin", "--mount-root", root,
                               "--filesystem", "fw=" + fixed)
    check_equal(status, 1, "exit status with the port in use")
    check("cannot listen on 127.0.0.1:%d (is the port in use" % port in err, "its error: %r" % err)
    check("libwebsockets:" not in err, "libwebsockets' own lines before ours: %r" % err)
    check(not os.path.exists(env.path("made")), "the failed start left the mount root it made")
    check(not os.path.exists(env.path("made-fixed")),
          "the failed start left the --filesystem directory it made")


@suite.test
def listen_address_that_is_neither_ip_nor_interface_is_refused(env):
    status, err = webfused("--bind", "999.1.1.1", "--no-admin", "--mount-root", env.mkdir("r"))
    check_equal(status, 2, "exit status for --bind 999.1.1.1")
    check("--bind must be an IP address or a network interface" in err, "its error: %r" % err)


def listeners(port):
    """The addresses listening on TCP `port`, as (family, hex address) from /proc/net."""
    found = []
    for family in ("tcp", "tcp6"):
        with open("/proc/net/" + family) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.append((family, address))
    return sorted(found)


@suite.test
def an_ipv4_bind_address_is_the_only_one_listened_on(env):
    """libwebsockets 4.1 listens on every address of both families when given an IPv4 one:
    --bind 127.0.0.1 must not open the provider or the admin port to the network."""
    daemon = env.start_daemon()
    loopback = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    check_equal(listeners(daemon.port), [("tcp", loopback)], "listeners on the provider port")
    check_equal(listeners(daemon.admin_port), [("tcp", loopback)], "listeners on the admin port")


@suite.test
def ipv6_addresses_are_logged_in_brackets(env):
    port, admin_port = harness.free_port(), harness.free_port()
    argv = [harness.binary("WEBFUSED", "webfused"), "--no-config", "--bind", "::1",
            "--port", str(port), "--admin-bind", "::1", "--admin-port", str(admin_port),
            "--mount-root", env.path("root"), "--db", env.path("h.db"),
            "--admin-token-file", env.path("token")]
    daemon = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    env.add_cleanup(daemon.kill)
    lines = []
    while not any("listening on" in line for line in lines):
        line = daemon.stderr.readline()
        check(line, "webfused ended before listening: %r" % lines)
        lines.append(line)
    daemon.terminate()
    rest = daemon.communicate(timeout=20)[1]
    text = "".join(lines)
    check("listening on ws://[::1]:%d/" % port in text and
          "admin API on http://[::1]:%d/" % admin_port in text, "the log: %r" % text)
    check_equal(daemon.returncode, 0, "exit status (%s)" % rest[-2000:])
    check("Sanitizer" not in rest, "a sanitizer report: %s" % rest[-4000:])


@suite.test
def a_listen_address_the_machine_lacks_stops_the_start(env):
    """libwebsockets listens nowhere (and says so only at debug level) for an address no
    interface has, and on every address when it cannot list the interfaces. Both stop the
    start with a message; the second is what systemd's RestrictAddressFamilies= without
    AF_NETLINK does."""
    root = env.path("root")
    # A missing address may still come (DHCP): status 1, which systemd restarts; --check-config
    # (of this machine) and a malformed value: 2.
    for args, message, status in (
            (["--bind", "10.99.99.99"], "no network interface has this address", 1),
            (["--bind", "127.0.0.1", "--admin-bind", "10.99.99.98"],
             "--admin-bind 10.99.99.98: no network interface has this address", 1),
            (["--check-config", "--bind", "10.99.99.99"], "no network interface has this", 2),
            (["--bind", "nosuch0"], "must be an IP address or a network interface", 2)):
        got, err = webfused("--port", str(harness.free_port()), "--mount-root", root, *args)
        check_equal(got, status, "exit status for %r" % args)
        check(message in err, "for %r: %r" % (args, err))
    # As under systemd's RestrictAddressFamilies= without AF_NETLINK.
    without_netlink = harness.restrict_address_families(
        [socket.AF_UNIX, socket.AF_INET, socket.AF_INET6])
    status, err = webfused("--port", str(harness.free_port()), "--no-admin", "--mount-root", root,
                           preexec_fn=without_netlink)
    check_equal(status, 2, "exit status without netlink sockets")
    check("cannot list the network interfaces" in err and "AF_NETLINK" in err,
          "its message: %r" % err)
    check(not os.path.exists(root), "the refused starts left the mount root")
    status, _ = webfused("--check-config", "--bind", "0.0.0.0", "--admin-bind", "::",
                         preexec_fn=without_netlink)
    check_equal(status, 0, "wildcard addresses need no interface list")


@suite.test
def a_mount_root_inside_or_around_another_leaves_its_mounts(env):
    """Daemons whose mount roots nest: the start of one must not take another's live mounts
    for stale ones (only the children of its own root are its mounts)."""
    top = env.mkdir("top")
    outer = os.path.join(top, "outer")
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("still here")
    first = env.start_daemon(admin=False, mount_root=outer)
    env.start_webfuse2_provider(first, "a", src)
    inside = env.start_daemon(admin=False, mount_root=os.path.join(outer, "nested"))
    env.start_webfuse2_provider(inside, "b", src)
    first.stop()  # a restart of the outer daemon, with the inner one's mount below its root
    first = env.start_daemon(admin=False, mount_root=outer)
    around = env.start_daemon(admin=False, mount_root=top)
    env.start_webfuse2_provider(first, "a", src)
    for path in (first.mount_path("a"), inside.mount_path("b")):
        with open(os.path.join(path, "f")) as f:
            check_equal(f.read(), "still here", "reading %s" % path)
    check("stale" not in first.log_text() + around.log_text(), "a live mount taken for stale")


@suite.test
def stale_mounts_under_a_symlinked_root_with_a_slash_go_at_restart(env):
    """The mount table shows resolved paths: a root given through a symbolic link and with a
    trailing slash must still find the mounts a killed daemon left."""
    real = env.mkdir("real")
    link = env.path("link")
    os.symlink(real, link)
    given = link + "/"
    daemon = env.start_daemon(admin=False, mount_root=given)
    env.start_webfuse2_provider(daemon, "left", env.mkdir("src"), wait=False)
    harness.wait_mounted(os.path.join(real, "left"))
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    check_equal([m[0] for m in harness.mounts_under(real)], [os.path.join(real, "left")],
                "the dead mount a kill -9 left")
    again = env.start_daemon(admin=False, mount_root=given)
    check_equal(harness.mounts_under(real), [], "mounts after the restart")
    check("detached stale mount %s" % os.path.join(real, "left") in again.log_text(),
          "the restart's log: %s" % again.log_text())
    env.start_webfuse2_provider(again, "left", env.mkdir("src2"), wait=False)
    harness.wait_mounted(os.path.join(real, "left"))  # the name attaches again


@suite.test
def a_filesystem_dir_through_a_symlink_with_a_slash_is_found_in_the_mount_table(env):
    """--filesystem NAME=DIR given through a symbolic link and with a trailing slash: the mount
    gets its 4 MiB read-ahead (its FUSE connection is found), a kill -9 leaves a dead mount that
    the restart detaches, and DIR, being configuration, stays."""
    real = env.mkdir("real")
    os.symlink(real, env.path("link"))
    given = ["--filesystem", "fw=%s/fw/" % env.path("link")]
    fixed = os.path.join(real, "fw")
    daemon = env.start_daemon(admin=False, extra=given)
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"first\n")
    env.start_webfuse2_provider(daemon, "fw", src, wait=False)
    harness.wait_mounted(fixed)
    with open(os.path.join(fixed, "f"), "rb") as f:  # the first open sets the read-ahead
        check_equal(f.read(), b"first\n", "contents through the mount")
    with open("/sys/class/bdi/0:%d/read_ahead_kb" % os.minor(os.stat(fixed).st_dev)) as f:
        check_equal(f.read().strip(), "4096", "read-ahead of the mount (KiB)")
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    again = env.start_daemon(admin=False, extra=given)
    check_equal(harness.mounts_under(real), [], "mounts after the restart")
    check("detached stale mount %s" % fixed in again.log_text(),
          "the restart's log: %s" % again.log_text())
    check(os.path.isdir(fixed), "the --filesystem directory after the stale mount went")
    env.start_webfuse2_provider(again, "fw", env.mkdir("src2"), wait=False)
    harness.wait_mounted(fixed)  # the name attaches again


@suite.test
def dot_dot_in_a_path_the_start_makes_is_refused(env):
    """The start makes the mount root and each --filesystem DIR with its parents and removes what
    it made when it fails; a ".." would make one directory and remove another."""
    existing = env.mkdir("data")
    for args in (["--mount-root", env.mkdir("root"), "--filesystem",
                  "fw=%s/new/../data" % env.path("")],
                 ["--mount-root", env.path("new", "..", "root")],
                 ["--mount-root", env.mkdir("root2"), "--filesystem", "fw=/"]):
        status, err = webfused("--no-admin", *args)
        check_equal(status, 2, "exit status for %r" % args)
        check("without . or .. components" in err, "its error: %r" % err)
    check(os.path.isdir(existing) and not os.path.exists(env.path("new")),
          "the refused starts touched no directory")


@suite.test
def hand_unmount_closes_the_webfuse2_connection_with_a_reason(env):
    daemon = env.start_daemon()
    provider = env.start_webfuse2_provider(daemon, "gone", env.mkdir("src"))
    mount = daemon.mount_path("gone")
    subprocess.run(["fusermount3", "-u", mount], check=True, timeout=10)
    harness.wait_until(lambda: "filesystem gone was unmounted on the device" in
                       provider.log_text(), 5.0, what="the provider to hear why")
    harness.wait_until(lambda: daemon.api("GET", "/api/v1/filesystems/gone").status == 404, 5.0,
                       what="the admin API to forget the filesystem")
    harness.wait_until(lambda: daemon.api_ok("GET", "/api/v1/sessions")["total"] == 0, 5.0,
                       what="the admin API to forget the session")
    check_hand_unmount_recorded(daemon, "gone")


def check_hand_unmount_recorded(daemon, name, closed_session=True,
                                detail="unmounted on the device"):
    """The history has the detach of `name`, saying why (`detail`); when its session is closed,
    the session's row in the history shows the filesystem detached with that reason."""
    def detach_event():
        events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
        return [e for e in events if e["kind"] == "detach" and e["filesystem"] == name]

    events = harness.wait_until(detach_event, 5.0, what="the detach of %s in the history" % name)
    check_equal(events[0]["detail"], detail, "detail of the detach event")
    if not closed_session:
        return  # a live session is listed with its live filesystems only
    sessions = daemon.api_ok("GET", "/api/v1/sessions?state=all")["sessions"]
    rows = [f for s in sessions for f in s["filesystems"] if f["name"] == name]
    check(rows, "no filesystem row for %s in %r" % (name, sessions))
    check_equal((rows[0]["state"], rows[0].get("reason")), ("detached", detail),
                "the history's row of %s" % name)


@suite.test
def hand_unmount_tells_a_json_provider_which_keeps_its_other_filesystem(env):
    daemon = env.start_daemon()
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("other")
    provider = env.start_provider(daemon, [("gone", env.mkdir("src-gone")), ("other", src)])
    subprocess.run(["fusermount3", "-u", daemon.mount_path("gone")], check=True, timeout=10)
    harness.wait_until(lambda: "gone: detached by the gateway" in provider.log_text(), 5.0,
                       what="the JSON provider to be told")
    with open(os.path.join(daemon.mount_path("other"), "f")) as f:
        check_equal(f.read(), "other", "the session's other filesystem")
    check(provider.alive(), "the JSON provider's session ended")
    live = daemon.api_ok("GET", "/api/v1/sessions")["sessions"]
    check_equal([[f["name"] for f in s["filesystems"]] for s in live], [["other"]],
                "the live session's filesystems in the admin API")
    check_hand_unmount_recorded(daemon, "gone", closed_session=False)


@suite.test
def a_connection_aborted_on_the_device_leaves_no_dead_mount(env):
    """Aborting a mount's FUSE connection (fusectl) ends the mount like an unmount by hand: the
    dead mount is taken away, the history says what happened, and the name can be attached
    again."""
    daemon = env.start_daemon()
    fake = env.fake(daemon)
    fake.attach("gone", {"f": File(b"first\n")})
    fake.attach("other", {"f": File(b"other\n")})
    mount = daemon.mount_path("gone")
    with open("/sys/fs/fuse/connections/%d/abort" % os.minor(os.stat(mount).st_dev), "w") as f:
        f.write("1")
    harness.wait_until(lambda: not harness.is_mounted(mount), 5.0,
                       what="the aborted mount to be taken away")
    check_hand_unmount_recorded(daemon, "gone", closed_session=False,
                                detail="connection aborted on the device")
    with open(os.path.join(daemon.mount_path("other"), "f"), "rb") as f:
        check_equal(f.read(), b"other\n", "the session's other filesystem")
    again = env.fake(daemon)
    again.attach("gone", {"f": File(b"second\n")})
    with open(os.path.join(mount, "f"), "rb") as f:
        check_equal(f.read(), b"second\n", "the name attached again")


@suite.test
def a_mount_root_with_a_space_still_finds_each_mounts_connection(env):
    """The mount table writes a space in a path as \\040: under a mount root with a space the
    gateway still finds each mount's FUSE connection, so read-ahead is raised (4 MiB) and a mount
    aborted on the device is taken away."""
    daemon = env.start_daemon(mount_root=env.path("mount root"))
    fake = env.fake(daemon)
    fake.attach("spaced", {"f": File(b"first\n")})
    mount = daemon.mount_path("spaced")
    with open(os.path.join(mount, "f"), "rb") as f:
        check_equal(f.read(), b"first\n", "contents through the mount")
    minor = os.minor(os.stat(mount).st_dev)
    with open("/sys/class/bdi/0:%d/read_ahead_kb" % minor) as f:
        check_equal(f.read().strip(), "4096", "read-ahead of the mount (KiB)")
    with open("/sys/fs/fuse/connections/%d/abort" % minor, "w") as f:
        f.write("1")
    harness.wait_until(lambda: not harness.is_mounted(mount), 5.0,
                       what="the aborted mount to be taken away")
    check_hand_unmount_recorded(daemon, "spaced", closed_session=False,
                                detail="connection aborted on the device")


@suite.test
def a_low_limit_of_open_files_does_not_cap_the_mounts(env):
    """Each mount holds two descriptors: started with a soft limit of 64 open files (the hard
    limit higher, as usual), the gateway raises its own and still takes 60 filesystems."""
    daemon = env.start_daemon(
        preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096)))
    with open("/proc/%d/limits" % daemon.pid) as f:
        line = [l for l in f if l.startswith("Max open files")][0]
    check_equal(line.split()[3:5], ["4096", "4096"], "limit of open files (soft, hard)")
    fake = env.fake(daemon)
    names = ["fs%02d" % i for i in range(60)]
    for name in names:
        fake.attach(name, {"f": File(name.encode())})
    for name in names:
        with open(os.path.join(daemon.mount_path(name), "f"), "rb") as f:
            check_equal(f.read(), name.encode(), "contents of %s/f" % name)
    check(daemon.alive(), "webfused died")

if __name__ == "__main__":
    suite.main()
