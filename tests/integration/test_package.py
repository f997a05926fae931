#!/usr/bin/env python3
"""Install and package (issue 9): `cmake --install` into a temporary root, the .deb built by
CPack with its file list and dependencies checked, the installed binaries run for real from
both, the man pages cover every option of --help, and the systemd unit passes
systemd-analyze."""

import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402

suite = harness.Suite("test_package")

BUILD = os.environ.get("WEBFUSE_BUILD_DIR") or os.path.join(harness.REPO, "build")
SOURCE = os.environ.get("WEBFUSE_SOURCE_DIR") or harness.REPO

# What an installed webfuse consists of (paths inside the root, prefix /usr).
EXPECTED_FILES = [
    "etc/webfuse/webfused.conf",
    "usr/sbin/webfused",
    "usr/bin/webfuse-provider",
    "usr/bin/webfusectl",
    "usr/lib/systemd/system/webfused.service",
    "usr/share/man/man8/webfused.8",
    "usr/share/man/man1/webfuse-provider.1",
    "usr/share/man/man1/webfusectl.1",
    "usr/share/doc/webfuse/README.md",
    "usr/share/doc/webfuse/user-guide.md",
    "usr/share/webfuse/web/index.html",
    "usr/share/webfuse/web/webfuse-provider.js",
]


def run(argv, **kwargs):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=kwargs.pop("timeout", 120),
                       **kwargs)
    if p.returncode != 0:
        fail("%s failed with %d:\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p.stdout


def prefix_of_build():
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        m = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M)
    return m.group(1) if m else None


def serve_from(env, root):
    """Runs the daemon, provider and webfusectl installed under `root` together: a file attached
    by the installed provider reads back through the installed daemon's mount."""
    src = env.mkdir("src")
    data = os.urandom(200000)
    with open(os.path.join(src, "firmware.bin"), "wb") as f:
        f.write(data)
    saved = {k: os.environ.get(k) for k in ("WEBFUSED", "WEBFUSE_PROVIDER")}
    os.environ["WEBFUSED"] = os.path.join(root, "usr/sbin/webfused")
    os.environ["WEBFUSE_PROVIDER"] = os.path.join(root, "usr/bin/webfuse-provider")
    try:
        d = env.start_daemon()
        env.start_webfuse2_provider(d, "installed", src, read_only=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with open(os.path.join(d.mount_path("installed"), "firmware.bin"), "rb") as f:
        check(f.read() == data, "bytes read through the installed daemon's mount")
    out = run([os.path.join(root, "usr/bin/webfusectl"), "--url", d.admin_url,
               "--token-file", d.token_file, "filesystems"])
    check("installed" in out, "the installed webfusectl lists the mount: %r" % out)
    conf = os.path.join(root, "etc/webfuse/webfused.conf")
    with open(conf) as f:
        text = f.read().replace('"/usr/share/webfuse/web"',
                                '"%s"' % os.path.join(root, "usr/share/webfuse/web"))
    conf = env.path("installed.conf")
    with open(conf, "w") as f:
        f.write(text)
    out = run([os.path.join(root, "usr/sbin/webfused"), "--check-config", "--config", conf])
    check("valid" in out, "the installed example configuration is valid: %r" % out)


@suite.test(budget=240)
def install_into_temporary_root(env):
    check_equal(prefix_of_build(), "/usr", "install prefix of the build (a build tree configured "
                "before /usr became the default: reconfigure with -DCMAKE_INSTALL_PREFIX=/usr)")
    root = env.mkdir("root")
    run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=root))
    for path in EXPECTED_FILES:
        check(os.path.isfile(os.path.join(root, path)), "installed: %s" % path)
    unit = open(os.path.join(root, "usr/lib/systemd/system/webfused.service")).read()
    check("ExecStart=/usr/sbin/webfused --config /etc/webfuse/webfused.conf" in unit,
          "the unit starts the installed daemon with the installed configuration")
    serve_from(env, root)


@suite.test(budget=240)
def debian_package(env):
    check_equal(prefix_of_build(), "/usr", "install prefix of the build")
    for old in glob.glob(os.path.join(BUILD, "webfuse_*.deb")):
        os.unlink(old)
    run(["cpack", "-G", "DEB"], cwd=BUILD, timeout=200)
    debs = glob.glob(os.path.join(BUILD, "webfuse_*.deb"))
    check_equal(len(debs), 1, "packages built")
    deb = debs[0]
    listing = run(["dpkg-deb", "-c", deb])
    files = {line.split()[-1].lstrip("./") for line in listing.splitlines()
             if not line.startswith("d")}
    for path in EXPECTED_FILES:
        check(path in files, "in the package: %s (list: %s)" % (path, sorted(files)))
    stray = [f for f in files if not (f.startswith("usr/") or f.startswith("etc/webfuse/"))]
    check_equal(stray, [], "files outside /usr and /etc/webfuse")
    depends = run(["dpkg-deb", "-f", deb, "Depends"])
    for lib in ("libwebsockets", "libfuse3", "libuv1", "libjansson", "libsqlite3", "fuse3"):
        check(lib in depends, "Depends names %s: %r" % (lib, depends))
    check("-dev" not in depends, "Depends has no -dev package: %r" % depends)
    conffiles = run(["dpkg-deb", "-I", deb, "conffiles"])
    check_equal(conffiles.strip(), "/etc/webfuse/webfused.conf", "conffiles")
    root = env.mkdir("debroot")
    run(["dpkg-deb", "-x", deb, root])
    serve_from(env, root)


def options_of(help_text):
    return sorted(set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)))


@suite.test
def man_pages_cover_every_option(env):
    binaries = [("webfused", "webfused.8"), ("webfuse-provider", "webfuse-provider.1"),
                ("webfusectl", "webfusectl.1")]
    for name, page in binaries:
        exe = os.path.join(BUILD, name)
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
        text = open(os.path.join(SOURCE, "docs", "man", page)).read().replace("\\-", "-")
        missing = [o for o in options_of(p.stdout + p.stderr) if o not in text]
        check_equal(missing, [], "options of %s --help missing from %s" % (name, page))
        if shutil.which("groff"):
            r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(SOURCE, "docs", "man",
                                                                          page)],
                               capture_output=True, text=True, timeout=30)
            check_equal(r.stderr, "", "groff warnings for %s" % page)


@suite.test
def every_program_tells_the_projects_version(env):
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        version = re.search(r"project\(webfuse VERSION ([0-9.]+)", f.read()).group(1)
    for name in ("webfused", "webfuse-provider", "webfusectl"):
        for option in ("--version", "-V"):
            p = subprocess.run([os.path.join(BUILD, name), option], capture_output=True,
                               text=True, timeout=10)
            check_equal((p.returncode, p.stdout, p.stderr), (0, "%s %s\n" % (name, version), ""),
                        "%s %s" % (name, option))


@suite.test
def systemd_unit_verifies(env):
    if not shutil.which("systemd-analyze"):
        print("  systemd-analyze not installed: unit not verified")
        return
    unit = os.path.join(SOURCE, "scripts", "webfused.service")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True,
                       text=True, timeout=60)
    # The unit names /usr/sbin/webfused, which this machine need not have installed.
    complaints = [line for line in (p.stdout + p.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]
    check_equal(complaints, [], "systemd-analyze verify")


# Linux capability numbers (linux/capability.h), for CapabilityBoundingSet=.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38


def unit_settings(path):
    """{key: value} of the [Service] section of a unit file (the last value of a key)."""
    settings, section = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def as_the_unit_would(settings):
    """A function for the child before exec that applies the unit's settings that decide what
    an execve() of a set-user-ID program gains (NoNewPrivileges=, CapabilityBoundingSet=) and
    which sockets it may open (RestrictAddressFamilies=)."""
    import ctypes
    import socket
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    families = settings.get("RestrictAddressFamilies", "").split()
    check(not families or not families[0].startswith("~"), "a deny list this test cannot apply")
    restrict = harness.restrict_address_families([getattr(socket, f) for f in families]) \
        if families else (lambda: None)
    keep = set(settings.get("CapabilityBoundingSet", " ".join(CAPABILITIES)).split())
    unknown = keep - set(CAPABILITIES)
    check_equal(unknown, set(), "capabilities of the unit this test does not know")
    drop = [n for n, name in enumerate(CAPABILITIES) if name not in keep]
    no_new_privs = settings.get("NoNewPrivileges", "no").lower() in ("yes", "true", "on", "1")

    def apply():
        for cap in drop:
            prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails for caps this kernel lacks: fine
        if no_new_privs and prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            os._exit(126)
        restrict()

    return apply


@suite.test
def unit_lets_a_daemon_with_user_mount(env):
    """With the `user` key webfused drops root and mounts through the set-user-ID fusermount3:
    under the unit's privilege settings that must still work (NoNewPrivileges=yes would make the
    kernel ignore the set-user-ID bit, and every attach would fail)."""
    import pwd
    user = pwd.getpwnam("nobody")
    settings = unit_settings(os.path.join(SOURCE, "scripts", "webfused.service"))
    for d in (os.path.dirname(env.dir), env.dir):
        os.chmod(d, 0o711)  # the mount root must be reachable for nobody
    daemon = env.start_daemon(extra=["--user", "nobody"], preexec=as_the_unit_would(settings))
    src = env.mkdir("src")
    with open(os.path.join(src, "f.txt"), "wb") as f:
        f.write(b"mounted under the unit's limits\n")
    provider = env.start_webfuse2_provider(daemon, "unit", src, wait=False)
    harness.wait_until(lambda: harness.is_mounted(daemon.mount_path("unit"))
                       or not provider.alive(), 10, what="the mount or the provider's exit")
    check(harness.is_mounted(daemon.mount_path("unit")),
          "attach as %s failed under the unit's settings %r:\n%s"
          % (user.pw_name, {k: settings.get(k) for k in ("NoNewPrivileges",
                                                         "CapabilityBoundingSet")},
             daemon.log_text()))
    # Only the mount's owner may use it (no allow_other).
    cat = subprocess.run(["cat", os.path.join(daemon.mount_path("unit"), "f.txt")],
                         user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                         capture_output=True, timeout=30)
    check_equal(cat.stdout, b"mounted under the unit's limits\n",
                "bytes through the mount (stderr %r)" % cat.stderr)
    check("user_id=%d" % user.pw_uid in open("/proc/self/mountinfo").read(),
          "the mount belongs to %s (made by fusermount3)" % user.pw_name)


if __name__ == "__main__":
    suite.main()
