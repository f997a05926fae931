#!/usr/bin/env python3
"""Skips that CI must not mistake for passes (issue 8): every test program that would be skipped
(exit 77, which ctest counts as passing) on a machine that cannot run it fails instead when
WEBFUSE_REQUIRE_ALL=1, and says why.

Each case runs a real test program where it cannot run (as the user nobody, or without chromium,
or without the provider binary), once without the variable (skipped) and once with it (failed)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_require_all")

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
INTEGRATION = os.path.join(harness.REPO, "tests", "integration")


def run(argv, env_changes):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop(harness.REQUIRE_ALL_VARIABLE, None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       cwd="/", timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def skipped_then_failed(argv, env_changes, reason):
    """`argv` is skipped (77, "SKIP: <reason>") without WEBFUSE_REQUIRE_ALL, skipped with it set
    to 0, and fails (1) with it set to 1, naming the reason and the variable."""
    status, out = run(argv, env_changes)
    check_equal(status, harness.SKIP_EXIT, "exit status without %s (output %r)"
                % (harness.REQUIRE_ALL_VARIABLE, out))
    check("SKIP: " in out and reason in out, "no skip message naming %r: %r" % (reason, out))
    status, out = run(argv, dict(env_changes, WEBFUSE_REQUIRE_ALL="0"))
    check_equal(status, harness.SKIP_EXIT, "exit status with WEBFUSE_REQUIRE_ALL=0 (%r)" % out)
    status, out = run(argv, dict(env_changes, WEBFUSE_REQUIRE_ALL="1"))
    print("  %s -> %d: %s" % (os.path.basename(argv[-1]), status,
                              out.strip().splitlines()[0] if out.strip() else ""))
    check_equal(status, 1, "exit status with WEBFUSE_REQUIRE_ALL=1 (output %r)" % out)
    check(reason in out and "WEBFUSE_REQUIRE_ALL=1 forbids skipping" in out,
          "the failure does not say why: %r" % out)
    check("SKIP" not in out, "still reported as a skip: %r" % out)


@suite.test
def integration_suite_without_root_fails_when_all_are_required(env):
    skipped_then_failed(NOBODY + [sys.executable, os.path.join(INTEGRATION, "test_startup.py")],
                        {}, "must run as root")


@suite.test
def provider_protocol_tests_without_the_provider_fail_when_all_are_required(env):
    for name in ("test_provider_protocol.py", "test_provider_webfuse2.py"):
        skipped_then_failed([sys.executable, os.path.join(INTEGRATION, name)],
                            {"WEBFUSE_PROVIDER": None}, "set WEBFUSE_PROVIDER")


@suite.test
def browser_test_without_chromium_fails_when_all_are_required(env):
    skipped_then_failed([sys.executable, os.path.join(harness.REPO, "tests", "browser",
                                                      "test_browser.py")],
                        {"CHROMIUM": env.path("no-such-chromium")}, "no-such-chromium is missing")


@suite.test
def firmware_demo_without_root_fails_when_all_are_required(env):
    skipped_then_failed(NOBODY + ["bash", os.path.join(harness.REPO, "scripts",
                                                       "demo-firmware-update.sh")],
                        {}, "mounting needs root")


if __name__ == "__main__":
    suite.main()
