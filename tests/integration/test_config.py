#!/usr/bin/env python3
"""webfused's configuration file, --check-config, log targets, SIGHUP and systemd readiness
(issue 9): every key of the file takes effect, the command line overrides it, every kind of
mistake is an error naming the key and the file, SIGHUP reopens the log under traffic without
touching sessions, and a Type=notify service manager hears READY=1 and STOPPING=1."""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402

suite = harness.Suite("test_config")
suite.needs_provider = True

WEBFUSED = harness.binary("WEBFUSED", "webfused")


def write_config(env, content, name="webfused.conf"):
    path = env.path(name)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content, indent=2))
    return path


def check_config(*args, timeout=10, cwd=None):
    """Runs webfused --check-config with args (after --no-config: the machine's own
    configuration must not count); returns (status, stdout, stderr)."""
    p = subprocess.run([WEBFUSED, "--no-config", "--check-config"] + list(args),
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def start_from_config(env, config_path, port, mount_root, admin_port=None, token_file=None,
                      db=None, extra=()):
    """Starts webfused with nothing but --config (and `extra`); waits until it listens."""
    argv = [WEBFUSED, "--config", config_path] + list(extra)
    d = harness.Daemon(env, argv, env._log_path("webfused"), port, mount_root, admin_port,
                       token_file, db)
    env.processes.append(d)

    def listening():
        if not d.alive():
            fail("webfused exited with status %s before listening" % d.returncode())
        return harness.port_open(port) and (not admin_port or harness.port_open(admin_port))

    harness.wait_until(listening, 10.0, what="webfused to listen on port %d" % port)
    return d


def full_config(env):
    """A configuration that sets every option a file may set, to values unlike the defaults."""
    return {
        "port": harness.free_port(),
        "bind": "127.0.0.1",
        "mount-root": env.mkdir("root-from-file"),
        "timeout": 7,
        "max-message": 4194304,
        "log-level": "debug",
        "log": env.path("webfused.log"),
        "admin-port": harness.free_port(),
        "admin-bind": "127.0.0.1",
        "admin-token-file": env.path("token-from-file"),
        "db": env.path("history-from-file.db"),
    }


@suite.test
def every_key_takes_effect(env):
    cfg = full_config(env)
    path = write_config(env, cfg)
    status, out, err = check_config("--config", path)
    check_equal(status, 0, "--check-config status (stderr %r)" % err)
    check(path in out and "valid" in out, "--check-config says the file is valid: %r" % out)

    d = start_from_config(env, path, cfg["port"], cfg["mount-root"], cfg["admin-port"],
                          cfg["admin-token-file"], cfg["db"])
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"from the file's settings\n")
    env.start_webfuse2_provider(d, "cfg", src)
    with open(os.path.join(cfg["mount-root"], "cfg", "f"), "rb") as f:
        check_equal(f.read(), b"from the file's settings\n", "bytes through the mount")
    check(os.path.getsize(cfg["admin-token-file"]) > 0, "the token file named in the file exists")
    check(os.path.exists(cfg["db"]), "the history database named in the file exists")
    sessions = d.api_ok("GET", "/api/v1/sessions")
    check(len(sessions["sessions"]) == 1, "the admin API on the file's port lists the session")
    with open(cfg["log"]) as f:
        log = f.read()
    check("listening on ws://127.0.0.1:%d/" % cfg["port"] in log,
          "the log file named in the file has the start-up line")
    check(" debug: " in log, "log-level from the file: debug lines are written")
    check_equal(os.path.getsize(d.log_path), 0, "bytes on stderr while logging to a file")


@suite.test
def flags_take_booleans(env):
    port = harness.free_port()
    root = env.mkdir("root")
    path = write_config(env, {"port": port, "mount-root": root, "no-admin": True})
    d = start_from_config(env, path, port, root)
    check(d.alive(), "daemon runs with no-admin from the file")
    path = write_config(env, {"port": port, "mount-root": root, "no-admin": False,
                              "admin-port": port}, "conflict.conf")
    status, _, err = check_config("--config", path)
    check_equal(status, 2, "no-admin false keeps the admin port, which then collides")
    check("--admin-port must differ" in err, "collision explained: %r" % err)


@suite.test
def command_line_overrides_file(env):
    file_port, cli_port = harness.free_port(), harness.free_port()
    root = env.mkdir("root")
    path = write_config(env, {"port": file_port, "mount-root": env.mkdir("ignored"),
                              "no-admin": True, "log-level": "error"})
    d = start_from_config(env, path, cli_port, root,
                          extra=["--port", str(cli_port), "--mount-root", root, "-l", "info"])
    check(not harness.port_open(file_port), "the file's port is not used")
    src = env.mkdir("src")
    env.start_webfuse2_provider(d, "over", src)
    check(harness.is_mounted(os.path.join(root, "over")), "mounted under the command line's root")
    check("listening on" in d.log_text(), "info lines kept: --log-level from the command line")


@suite.test
def errors_name_the_key_and_the_file(env):
    cases = [
        ({"prot": 1}, ['unknown key "prot"']),
        ({"port": "eighty"}, ['key "port"', "must be a number"]),
        ({"port": 70000}, ['key "port"', "from 1 to 65535"]),
        ({"port": True}, ['key "port"', "string or an integer"]),
        ({"mount-root": ["a"]}, ['key "mount-root"', "string or an integer"]),
        ({"mount-root": "relative"}, ['key "mount-root"', "absolute path"]),
        ({"bind": "not-an-address"}, ['key "bind"', "IP address"]),
        ({"timeout": 0}, ['key "timeout"', "from 1 to 3600"]),
        ({"busy-poll": 10001}, ['key "busy-poll"', "from 0 to 10000"]),
        ({"busy-poll": -1}, ['key "busy-poll"', "from 0 to 10000"]),
        ({"read-budget": 1000}, ['key "read-budget"', "from 65536 to 1073741824"]),
        ({"slow-read": 0}, ['key "slow-read"', "from 1 to 600000"]),
        ({"max-message": 10}, ['key "max-message"']),
        ({"log-level": "loud"}, ['key "log-level"', "error, warn, info or debug"]),
        ({"log": "relative.log"}, ['key "log"', "stderr, syslog or an absolute path"]),
        ({"no-admin": "yes"}, ['key "no-admin"', "true or false"]),
        ({"db": ""}, ['key "db"', "file name"]),
        ({"config": "/etc/other"}, ['unknown key "config"']),
        ({"no-config": True}, ['unknown key "no-config"']),
        ({"help": True}, ['unknown key "help"']),
        ({"filesystem": ["ok", "../x"]}, ['key "filesystem"', "NAME[=DIR]"]),
        ({"filesystem": ["fw=relative"]}, ['key "filesystem"', "absolute path"]),
        ({"filesystem": ["fw", "fw=/tmp/x"]}, ['key "filesystem"', "listed twice"]),
        ({"filesystem": [True]}, ['key "filesystem"', "item 0 must be a string"]),
        ({"filesystem": []}, ['key "filesystem"', "an empty list"]),
        ({"filesystem": ["a=/tmp/same", "b=/tmp/same"]}, ["a and b would both mount at"]),
        ({"filesystem": {"logs": "/x"}}, ['key "filesystem"', "string or an integer"]),
        ({"port": [8081]}, ['key "port"', "string or an integer"]),
        ("[1, 2]", ["one JSON object"]),
        ('{"port": 1,', ["webfused.conf:1:"]),
        ('{"port": 8001, "port": 8002}', ["duplicate"]),
    ]
    for content, expected in cases:
        path = write_config(env, content)
        status, out, err = check_config("--config", path)
        check_equal(status, 2, "status for %r (stdout %r)" % (content, out))
        check(path in err, "error for %r names the file: %r" % (content, err))
        for text in expected:
            check(text in err, "error for %r mentions %r: %r" % (content, text, err))
    # As on the command line, a list key also takes one value, and numbers may be strings.
    status, _, err = check_config("--config", write_config(env, {"filesystem": "logs",
                                                                 "port": "8081"}))
    check_equal(status, 0, "one string for filesystem, a number as a string (%r)" % err)
    status, _, err = check_config("--config", "/dev/zero")
    check_equal(status, 2, "status for a device as the configuration")
    check("regular file" in err, "a device is refused: %r" % err)
    status, _, err = check_config("--config", env.path("missing.conf"))
    check_equal(status, 2, "status for a missing file")
    check("missing.conf" in err, "missing file named: %r" % err)


@suite.test
def check_config_covers_the_command_line(env):
    status, out, _ = check_config("--port", "9000", "--no-admin", "--config", write_config(env, {}))
    check_equal(status, 0, "valid options")
    status, _, err = check_config("--port", "0", "--config", write_config(env, {}))
    check_equal(status, 2, "bad command-line value")
    check("--port" in err, "the command-line option is named: %r" % err)


@suite.test
def config_file_in_every_form_getopt_accepts(env):
    good = write_config(env, {"no-admin": True}, "good.conf")
    bad = write_config(env, {"port": 70000}, "bad.conf")
    forms = [lambda f: ["-c", f], lambda f: ["-c" + f], lambda f: ["--config", f],
             lambda f: ["--config=" + f], lambda f: ["--conf", f], lambda f: ["--conf=" + f],
             lambda f: ["--co", f]]
    for form in forms:
        status, out, err = check_config(*form(good))
        check_equal(status, 0, "status for %r (stderr %r)" % (form(good), err))
        check("configuration %s is valid" % good in out,
              "%r: the file was read: %r" % (form(good), out))
        status, out, err = check_config(*form(bad))
        check_equal(status, 2, "status for %r (stdout %r)" % (form(bad), out))
        check(bad in err and 'key "port"' in err, "%r: the error names the file: %r"
              % (form(bad), err))
    # The last one counts, whatever its form.
    status, out, _ = check_config("--config", bad, "-c" + good)
    check_equal(status, 0, "status when the last --config names the good file")


@suite.test
def errors_about_two_keys_name_the_file(env):
    port = str(harness.free_port())
    cases = [
        ({"cert": "/etc/hostname"}, [], "--cert and --key go together"),
        ({"admin-key": "/etc/hostname"}, [], "--admin-cert and --admin-key go together"),
        ({"group": "nogroup"}, ["--no-admin"], "--group needs --user"),
        ({"admin-port": int(port)}, ["--port", port], "--admin-port must differ from --port"),
        ({"port": int(port), "admin-port": int(port)}, [], "--admin-port must differ from --port"),
    ]
    for cfg, args, message in cases:
        path = write_config(env, cfg)
        status, _, err = check_config("--config", path, *args)
        check_equal(status, 2, "status for %r %r" % (cfg, args))
        check_equal(err.strip(), "webfused: %s: %s" % (path, message), "error for %r %r"
                    % (cfg, args))
    # Both from the command line (it overrides the file's value): no file to name.
    path = write_config(env, {"admin-port": 9000})
    status, _, err = check_config("--config", path, "--port", port, "--admin-port", port)
    check_equal((status, err.strip()), (2, "webfused: --admin-port must differ from --port"),
                "an error about command-line values only")


DEFAULT_CONFIG = "/etc/webfuse/webfused.conf"


def check_config_with_default_file(env, content, *args):
    """webfused --check-config ARGS (no --no-config of its own) in a private mount namespace
    whose /etc is an overlay holding `content` as /etc/webfuse/webfused.conf: the machine's /etc
    is left alone. Returns (status, stdout, stderr)."""
    upper, work = env.mkdir("etc-upper", "webfuse"), env.mkdir("etc-work")
    with open(os.path.join(upper, "webfused.conf"), "w") as f:
        f.write(json.dumps(content))
    script = ('mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc && exec "$@"'
              % (os.path.dirname(upper), work))
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        "sh", WEBFUSED, "--check-config"] + list(args),
                       capture_output=True, text=True, timeout=20)
    check("mount" not in p.stderr or "webfused" in p.stderr,
          "cannot set up the overlay on /etc: %r" % p.stderr)
    return p.returncode, p.stdout, p.stderr


@suite.test
def no_config_skips_the_default_file(env):
    bad = {"port": 70000}
    status, _, err = check_config_with_default_file(env, bad, "--no-admin")
    check_equal(status, 2, "status with a bad default file (stderr %r)" % err)
    check(DEFAULT_CONFIG in err and 'key "port"' in err, "the default file was read: %r" % err)
    status, out, err = check_config_with_default_file(env, bad, "--no-admin", "--no-config")
    check_equal(status, 0, "status with --no-config (stderr %r)" % err)
    check("(command line only)" in out, "no file read: %r" % out)
    good = write_config(env, {"no-admin": True}, "good.conf")
    # The last of --config and --no-config counts.
    status, out, err = check_config_with_default_file(env, bad, "--no-config", "--config", good)
    check_equal((status, "configuration %s is valid" % good in out), (0, True),
                "--no-config --config FILE (stdout %r, stderr %r)" % (out, err))
    status, out, err = check_config_with_default_file(env, bad, "--no-admin", "--config",
                                                      write_config(env, bad, "bad.conf"),
                                                      "--no-config")
    check_equal((status, "(command line only)" in out), (0, True),
                "--config FILE --no-config (stdout %r, stderr %r)" % (out, err))


@suite.test
def test_daemons_ignore_the_machines_configuration(env):
    """The harness starts every daemon with --no-config: a webfuse installed on this machine must
    not change the tests. Here the daemon's own /etc (an overlay in a private mount namespace)
    holds a default file it would refuse to start with."""
    import ctypes
    upper, work = env.mkdir("etc-upper", "webfuse"), env.mkdir("etc-work")
    with open(os.path.join(upper, "webfused.conf"), "w") as f:
        f.write('{"port": 70000}')
    options = ("lowerdir=/etc,upperdir=%s,workdir=%s"
               % (os.path.dirname(upper), work)).encode()
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private = 0x20000, 0x4000, 0x40000

    def own_etc():
        if (libc.unshare(clone_newns) != 0
                or libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0
                or libc.mount(b"overlay", b"/etc", b"overlay", 0, options) != 0):
            os._exit(125)

    d = env.start_daemon(preexec=own_etc)
    check(d.alive(), "the daemon runs")
    check(DEFAULT_CONFIG not in d.log_text(), "the log mentions the default file:\n%s"
          % d.log_text())


def security_files(env):
    """A self-signed certificate, its key and a users file (alice may attach "cfg")."""
    cert, key = env.path("cert.pem"), env.path("key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    line = subprocess.run([harness.binary("WEBFUSECTL", "webfusectl"), "passwd", "alice", "--fs",
                           "cfg"], env=dict(os.environ, WEBFUSE_PASSWORD="pw-alice"),
                          check=True, capture_output=True, text=True, timeout=30).stdout
    users = env.path("users")
    with open(users, "w") as f:
        f.write(line)
    return cert, key, users


def valid_values(env):
    """A valid value for every option a configuration file may hold."""
    cert, key, users = security_files(env)
    return {
        "port": harness.free_port(), "bind": "127.0.0.1", "mount-root": env.mkdir("r"),
        "timeout": 5, "max-message": 4194304, "log-level": "warn", "log": "stderr",
        "docroot": env.mkdir("www"), "admin-port": harness.free_port(),
        "admin-bind": "127.0.0.1", "admin-token-file": env.path("tok"), "db": env.path("h.db"),
        "no-admin": True, "cert": cert, "key": key, "admin-cert": cert, "admin-key": key,
        "auth-file": users, "auth-header": "X-Device-Token", "max-sessions": 3,
        "max-filesystems": 2, "max-pending": 16, "max-path": 256, "idle-timeout": 5,
        "busy-poll": 0, "read-budget": 4194304, "slow-read": 500, "allow-other": True, "user": "nobody", "group": "nogroup",
        "filesystem": ["firmware=" + env.path("fw"), "logs"],
    }


# Options that steer the command line itself and have no place in the file.
NOT_IN_FILE = {"config", "no-config", "check-config", "help", "version"}

# Keys that only make sense in pairs.
PAIRS = {"cert": "key", "key": "cert", "admin-cert": "admin-key", "admin-key": "admin-cert",
         "group": "user"}


@suite.test
def every_option_of_help_is_a_key(env):
    help_text = subprocess.run([WEBFUSED, "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    options = sorted(set(re.findall(r"--([a-z][a-z0-9-]+)", help_text)) - NOT_IN_FILE)
    values = valid_values(env)
    check_equal([o for o in options if o not in values], [],
                "options of --help without a value in this test")
    for option in options:
        cfg = {option: values[option]}
        if option in PAIRS:
            cfg[PAIRS[option]] = values[PAIRS[option]]
        status, _, err = check_config("--config", write_config(env, cfg))
        check_equal(status, 0, "--check-config of %r (stderr %r)" % (cfg, err))
    # allow-other with user: fusermount3 must allow it (test_hardening checks the refusal).
    harness.keep_fuse_conf(env)
    harness.write_fuse_conf("user_allow_other\n")
    status, _, err = check_config("--config", write_config(env, values))
    check_equal(status, 0, "--check-config of every key at once (stderr %r)" % err)


@suite.test
def check_config_reads_the_files_it_names(env):
    cert, key, users = security_files(env)
    bad_users = env.path("bad-users")
    with open(bad_users, "w") as f:
        f.write("# comment\nalice:not-a-hash:cfg\n")
    cases = [
        ({"cert": env.path("missing.pem"), "key": key}, "missing.pem"),
        ({"auth-file": bad_users}, bad_users + ":2"),
        ({"auth-file": env.path("no-users")}, "no-users"),
        ({"user": "no-such-user-here"}, "no-such-user-here"),
        ({"cert": cert}, "--cert and --key go together"),
    ]
    for cfg, expected in cases:
        status, out, err = check_config("--no-admin", "--config", write_config(env, cfg))
        check_equal(status, 2, "status for %r (stdout %r)" % (cfg, out))
        check(expected in err, "error for %r mentions %r: %r" % (cfg, expected, err))
    # Paths a start would refuse; --check-config makes none of them.
    a_file, empty_token = env.path("a-file"), env.path("empty-token")
    for path in (a_file, empty_token):
        open(path, "w").close()
    os.chmod(empty_token, 0o600)
    cases = [
        ({"mount-root": a_file, "no-admin": True}, "mount root %s is not a directory" % a_file),
        ({"mount-root": os.path.join(a_file, "sub"), "no-admin": True},
         "mount root %s is not a directory (a file is in its path)" % os.path.join(a_file, "sub")),
        ({"log": env.path("no-dir", "x.log"), "no-admin": True},
         "cannot open the log %s" % env.path("no-dir", "x.log")),
        ({"admin-token-file": empty_token, "db": env.path("h.db")},
         "the admin token file %s must hold one token" % empty_token),
    ]
    for cfg, expected in cases:
        status, out, err = check_config("--config", write_config(env, cfg))
        check_equal(status, 2, "status for %r (stdout %r)" % (cfg, out))
        check(expected in err, "error for %r mentions %r: %r" % (cfg, expected, err))
    check(not os.path.exists(env.path("h.db")) and not os.path.exists(env.path("no-dir")),
          "--check-config made files")


@suite.test
def relative_paths_in_the_file_are_relative_to_it(env):
    """Under systemd webfused starts in /: a relative path in the configuration file is taken
    from the file's directory, not from wherever webfused runs."""
    security_files(env)  # cert.pem, key.pem and users next to the file
    path = write_config(env, {"cert": "cert.pem", "key": "key.pem", "auth-file": "users",
                              "no-admin": True})
    status, out, err = check_config("--config", path, cwd="/")
    check_equal(status, 0, "relative names next to the file (%r)" % err)
    path = write_config(env, {"auth-file": "missing-users", "no-admin": True}, "other.conf")
    status, out, err = check_config("--config", path, cwd="/")
    check_equal(status, 2, "a relative name that is not there")
    check(env.path("missing-users") in err, "the error names the file's directory: %r" % err)


@suite.test
def security_keys_take_effect(env):
    cert, key, users = security_files(env)
    port, root = harness.free_port(), env.mkdir("root")
    path = write_config(env, {"port": port, "mount-root": root, "no-admin": True,
                              "auth-file": users, "cert": cert, "key": key})
    d = start_from_config(env, path, port, root)
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"behind TLS and a login\n")
    url = "wss://localhost:%d/cfg" % port
    os.environ["WEBFUSE_PASSWORD"] = "wrong"
    try:
        refused = env.start_webfuse2_provider(d, "cfg", src, url=url, wait=False,
                                              extra=["--ca", cert, "--user", "alice"])
        check_equal(refused.wait(20), 1, "a wrong password from the file's users is refused")
        os.environ["WEBFUSE_PASSWORD"] = "pw-alice"
        env.start_webfuse2_provider(d, "cfg", src, url=url, extra=["--ca", cert, "--user", "alice"])
    finally:
        del os.environ["WEBFUSE_PASSWORD"]
    with open(os.path.join(root, "cfg", "f"), "rb") as f:
        check_equal(f.read(), b"behind TLS and a login\n", "bytes through the mount")


@suite.test
def fixed_filesystems_only(env):
    fixed_dir = env.path("new", "deeper", "firmware-here")  # made, with its parents, at start
    port, root = harness.free_port(), env.mkdir("root")
    admin_port = harness.free_port()
    path = write_config(env, {"port": port, "mount-root": root, "admin-port": admin_port,
                              "admin-token-file": env.path("tok"), "db": env.path("h.db"),
                              "filesystem": ["firmware=" + fixed_dir, "logs"]})
    d = start_from_config(env, path, port, root, admin_port, env.path("tok"), env.path("h.db"))
    src = env.mkdir("src")
    with open(os.path.join(src, "image.bin"), "wb") as f:
        f.write(b"fixed place\n")
    env.start_webfuse2_provider(d, "firmware", src,
                                url="ws://127.0.0.1:%d/firmware" % port, wait=False)
    harness.wait_mounted(fixed_dir, 10.0)
    with open(os.path.join(fixed_dir, "image.bin"), "rb") as f:
        check_equal(f.read(), b"fixed place\n", "read at the fixed mount point")
    env.start_webfuse2_provider(d, "logs", src)  # no DIR: under the mount root
    refused = env.start_webfuse2_provider(d, "other", src, wait=False)
    check_equal(refused.wait(20), 1, "a name not listed is refused")
    check("is not a filesystem this gateway accepts" in refused.log_text(),
          "the provider hears why: %s" % refused.log_text())
    fake = env.fake(d)
    answer = fake.add_filesystem("other", {})
    check_equal(answer.get("error", {}).get("code"), 101, "JSON: code for a name not listed")
    events = d.api_ok("GET", "/api/v1/events?limit=50")["events"]
    check(any(e["kind"] == "attach_denied" and e.get("filesystem") == "other" for e in events),
          "attach_denied events for the refused name: %r" % events)
    mounts = {f["name"]: f["mountpoint"] for f in d.api_ok("GET", "/api/v1/filesystems")[
        "filesystems"]}
    check_equal(mounts, {"firmware": fixed_dir, "logs": os.path.join(root, "logs")},
                "mount points")
    # A detach removes a mount point under the mount root, not a configured directory.
    for name in ("firmware", "logs"):
        d.api_ok("DELETE", "/api/v1/filesystems/" + name, expect=202)
        harness.wait_until(lambda: d.api("GET", "/api/v1/filesystems/" + name).status == 404,
                           10.0, what="%s to go" % name)
    check(os.path.isdir(fixed_dir) and not harness.is_mounted(fixed_dir),
          "the configured directory stays after the detach")
    check(not os.path.exists(os.path.join(root, "logs")), "the mount point under the root goes")


class LogReader(threading.Thread):
    """Reads a file through a mount over and over until stopped; records every failure."""

    def __init__(self, path, expected):
        super().__init__(daemon=True)
        self.path, self.expected = path, expected
        self.stop = threading.Event()
        self.reads = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            try:
                with open(self.path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                if digest != self.expected:
                    self.errors.append("content differs")
                self.reads += 1
            except OSError as e:
                self.errors.append(str(e))


@suite.test
def sighup_reopens_the_log_under_traffic(env):
    log = env.path("daemon.log")
    d = env.start_daemon(extra=["--log", log])
    src = env.mkdir("src")
    data = os.urandom(1 << 20)
    with open(os.path.join(src, "big"), "wb") as f:
        f.write(data)
    env.start_webfuse2_provider(d, "traffic", src)
    reader = LogReader(os.path.join(d.mount_path("traffic"), "big"),
                       hashlib.sha256(data).hexdigest())
    reader.start()
    harness.wait_until(lambda: reader.reads >= 3, 20.0, what="reads before SIGHUP")
    rotated = log + ".1"
    os.rename(log, rotated)
    for _ in range(3):
        d.signal(signal.SIGHUP)
        harness.wait_until(lambda: os.path.exists(log) and "log reopened" in open(log).read(),
                           10.0, what="a new log file after SIGHUP")
        os.rename(log, rotated + ".again")
    d.signal(signal.SIGHUP)
    harness.wait_until(lambda: os.path.exists(log), 10.0, what="the log file again")
    before = reader.reads
    harness.wait_until(lambda: reader.reads >= before + 3, 20.0, what="reads after SIGHUP")
    reader.stop.set()
    reader.join(30)
    check_equal(reader.errors, [], "read errors during the reloads")
    check(d.alive(), "the daemon survives SIGHUP")
    sessions = d.api_ok("GET", "/api/v1/sessions")["sessions"]
    check_equal(len(sessions), 1, "sessions after SIGHUP")
    check("listening on" in open(rotated).read(), "the old file kept the lines before rotation")


@suite.test
def sighup_without_a_log_file_reopens_nothing(env):
    d = env.start_daemon()
    d.signal(signal.SIGHUP)
    harness.wait_until(lambda: "SIGHUP" in d.log_text(), 10.0, what="the SIGHUP line")
    text = d.log_text()
    check("nothing to reload" in text, "SIGHUP with the log on stderr says there is nothing to do")
    check("log reopened" not in text, "no claim of a reopened log: %r" % text[-300:])
    check(d.alive(), "the daemon survives SIGHUP")


def passwd_line(name, password, names):
    return subprocess.run([harness.binary("WEBFUSECTL", "webfusectl"), "passwd", name, "--fs",
                           names], env=dict(os.environ, WEBFUSE_PASSWORD=password), check=True,
                          capture_output=True, text=True, timeout=30).stdout


def provider_as(env, d, name, src, user, password, wait=True):
    os.environ["WEBFUSE_PASSWORD"] = password
    try:
        return env.start_webfuse2_provider(d, name, src, extra=["--user", user], wait=wait)
    finally:
        del os.environ["WEBFUSE_PASSWORD"]


@suite.test
def sighup_rereads_the_users_file_under_traffic(env):
    users = env.path("users")
    with open(users, "w") as f:
        f.write(passwd_line("alice", "pw-alice", "cfg"))
    d = env.start_daemon(extra=["--auth-file", users])
    src = env.mkdir("src")
    data = os.urandom(1 << 20)
    with open(os.path.join(src, "big"), "wb") as f:
        f.write(data)
    provider_as(env, d, "cfg", src, "alice", "pw-alice")
    reader = LogReader(os.path.join(d.mount_path("cfg"), "big"), hashlib.sha256(data).hexdigest())
    reader.start()
    harness.wait_until(lambda: reader.reads >= 3, 20.0, what="reads before SIGHUP")

    refused = provider_as(env, d, "other", src, "bob", "pw-bob", wait=False)
    check_equal(refused.wait(20), 1, "bob before he is in the file")
    with open(users, "w") as f:  # alice leaves, bob arrives
        f.write(passwd_line("bob", "pw-bob", "other"))
    d.signal(signal.SIGHUP)
    harness.wait_until(lambda: "SIGHUP: 1 user(s) may attach" in d.log_text(), 20.0,
                       what="the users file re-read")
    provider_as(env, d, "other", src, "bob", "pw-bob")
    gone = provider_as(env, d, "cfg2", src, "alice", "pw-alice", wait=False)
    check_equal(gone.wait(20), 1, "alice after she left the file")

    with open(users, "w") as f:
        f.write("this is not a users file\n")
    d.signal(signal.SIGHUP)
    harness.wait_until(lambda: "keeping the users as they were" in d.log_text(), 20.0,
                       what="a broken users file refused")
    d.api_ok("DELETE", "/api/v1/filesystems/other", expect=202)
    harness.wait_unmounted(d.mount_path("other"), 10.0)
    provider_as(env, d, "other", src, "bob", "pw-bob")

    before = reader.reads
    harness.wait_until(lambda: reader.reads >= before + 3, 20.0, what="reads after SIGHUP")
    reader.stop.set()
    reader.join(30)
    check_equal(reader.errors, [], "errors of the logged-in session's reader")
    names = sorted(f["name"] for f in d.api_ok("GET", "/api/v1/filesystems")["filesystems"])
    check_equal(names, ["cfg", "other"], "mounts after the reloads")


@suite.test
def syslog_target(env):
    if os.path.exists("/dev/log"):
        print("  /dev/log exists (a syslog daemon runs): syslog delivery not checked here")
        status, _, err = check_config("--log", "syslog", "--no-admin")
        check_equal(status, 0, "--log syslog accepted (%r)" % err)
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    env.add_cleanup(lambda: (sock.close(), os.unlink("/dev/log")))
    d = env.start_daemon(extra=["--log", "syslog"], log_level="info")
    sock.settimeout(10)
    seen = []
    while not any("listening on" in m for m in seen):
        seen.append(sock.recv(65536).decode(errors="replace"))
    line = [m for m in seen if "listening on" in m][0]
    check("webfused[%d]" % d.pid in line, "syslog line carries the name and pid: %r" % line)
    check(line.startswith("<30>"), "daemon facility, info priority: %r" % line)
    check_equal(os.path.getsize(d.log_path), 0, "bytes on stderr while logging to syslog")


@suite.test
def systemd_readiness(env):
    path = env.path("notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env.add_cleanup(sock.close)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        d = env.start_daemon()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    check_equal(sock.recv(4096), b"READY=1", "first notification")
    check(harness.port_open(d.port), "listening when READY=1 arrives")
    d.signal(signal.SIGTERM)
    check_equal(sock.recv(4096), b"STOPPING=1", "notification on SIGTERM")
    check_equal(d.wait(10), 0, "exit status")


if __name__ == "__main__":
    suite.main()
