#!/usr/bin/env python3
"""The harness's teardown (issue 8): processes a test leaves running are stopped with SIGTERM, so
that they exit through their own shutdown and a sanitizer build can report leaks; a report in
any process's log, or a process that needs SIGKILL, fails the test.

Each case runs a small suite of its own (a file written into the test's directory) and checks
what that suite reported."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_teardown")
INTEGRATION = os.path.dirname(os.path.abspath(__file__))

PROLOGUE = """
import os, signal, sys, time
sys.path.insert(0, %r)
import harness
suite = harness.Suite("inner")
""" % INTEGRATION


def run_inner(env, body):
    """Runs a suite made of `body` (test functions with @suite.test); returns (status, output)."""
    path = env.path("inner_suite.py")
    with open(path, "w") as f:
        f.write(PROLOGUE + body + "\nsuite.main()\n")
    p = subprocess.run([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    return p.returncode, out


def result_line(out, name):
    for line in out.splitlines():
        if line.startswith(("PASS " + name, "FAIL " + name)):
            return line
    return None


# A provider stand-in that, like a sanitizer build of webfuse-provider, reports a leak when it
# exits on SIGTERM, and writes nothing when it is killed.
LEAKY_PROVIDER = r"""
@suite.test
def leaky_provider_left_running(env):
    script = "trap 'echo ==1==ERROR: LeakSanitizer: detected memory leaks; exit 23' TERM; " \
             "echo ready; while :; do sleep 0.1; done"
    p = harness.Process("webfuse-provider", ["bash", "-c", script], env._log_path("provider"))
    env.processes.append(p)
    harness.wait_until(lambda: "ready" in p.log_text(), 10, what="the provider to start")
"""


@suite.test
def provider_left_running_gets_sigterm_and_its_leak_report_fails_the_test(env):
    status, out = run_inner(env, LEAKY_PROVIDER)
    line = result_line(out, "leaky_provider_left_running")
    print("  inner suite: %s" % line)
    check_equal(status, 1, "exit status of the inner suite (output:\n%s)" % out)
    check(line and line.startswith("FAIL"), "the leak report did not fail the test:\n%s" % out)
    check("LeakSanitizer: detected memory leaks" in out and "a sanitizer reported" in out,
          "the failure does not show the report:\n%s" % out)


WEDGED_DAEMON = """
@suite.test
def daemon_that_ignores_sigterm(env):
    daemon = env.start_daemon()
    daemon.signal(signal.SIGSTOP)  # stopped: SIGTERM waits, only SIGKILL ends it


@suite.test
def provider_and_daemon_that_stop_cleanly(env):
    daemon = env.start_daemon()
    src = env.mkdir("src")
    env.start_webfuse2_provider(daemon, "clean", src)
"""


@suite.test(budget=90)
def daemon_that_needs_sigkill_at_teardown_fails_the_test(env):
    status, out = run_inner(env, WEDGED_DAEMON)
    wedged = result_line(out, "daemon_that_ignores_sigterm")
    clean = result_line(out, "provider_and_daemon_that_stop_cleanly")
    print("  inner suite: %s; %s" % (wedged, clean))
    check_equal(status, 1, "exit status of the inner suite (output:\n%s)" % out)
    check(wedged and wedged.startswith("FAIL"), "the wedged daemon did not fail its test:\n%s"
          % out)
    check("webfused (pid" in out and "after SIGTERM and was killed" in out,
          "the failure does not say the daemon was killed:\n%s" % out)
    check(clean and clean.startswith("PASS"), "a clean stop failed:\n%s" % out)


if __name__ == "__main__":
    suite.main()
