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


# Provider stand-ins that, like a sanitizer build of webfuse-provider, write a report when they
# exit on SIGTERM (a leak; LeakSanitizer unable to look), and nothing when they are killed.
LEAKY_PROVIDERS = r"""
def provider_reporting(env, report):
    script = "trap 'echo %s; exit 23' TERM; echo ready; while :; do sleep 0.1; done" % report
    p = harness.Process("webfuse-provider", ["bash", "-c", script], env._log_path("provider"))
    env.processes.append(p)
    harness.wait_until(lambda: "ready" in p.log_text(), 10, what="the provider to start")


@suite.test
def leaky_provider_left_running(env):
    provider_reporting(env, "==1==ERROR: LeakSanitizer: detected memory leaks")


@suite.test
def provider_whose_leak_check_failed_left_running(env):
    provider_reporting(env, "==1==LeakSanitizer has encountered a fatal error.")
"""


@suite.test
def provider_left_running_gets_sigterm_and_its_leak_report_fails_the_test(env):
    status, out = run_inner(env, LEAKY_PROVIDERS)
    lines = [result_line(out, name) for name in (
        "leaky_provider_left_running", "provider_whose_leak_check_failed_left_running")]
    print("  inner suite: %s" % "; ".join(str(line) for line in lines))
    check_equal(status, 1, "exit status of the inner suite (output:\n%s)" % out)
    check(all(line and line.startswith("FAIL") for line in lines),
          "a report did not fail its test:\n%s" % out)
    check("LeakSanitizer: detected memory leaks" in out and "a sanitizer reported" in out
          and "LeakSanitizer has encountered a fatal error" in out,
          "the failures do not show the reports:\n%s" % out)


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
