#!/usr/bin/env python3
"""scripts/demo-firmware-update.sh must not report success when the processes it ran did not end
well (issue 8): a webfused that exits with a status other than 0 after SIGTERM, or a sanitizer
report in the log of webfused or of the provider, fails the demo.

The demo runs for real (root, loop devices, squashfs) with $WEBFUSED or $WEBFUSE_PROVIDER set to a
wrapper around the real binary that spoils only its end. ctest's demo.firmware_update runs it
with the real binaries."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_demo")
suite.needs_provider = True
DEMO = os.path.join(harness.REPO, "scripts", "demo-firmware-update.sh")
LEAK = "==4242==ERROR: LeakSanitizer: detected memory leaks"

# Runs the real binary; on SIGTERM passes it on, waits, then does what $AFTER says.
WRAPPER = """#!/bin/bash
%s "$@" &
child=$!
trap 'kill -TERM $child; wait $child; status=$?; %s' TERM
wait $child
"""


def wrapper(env, name, real, after):
    path = env.path(name)
    with open(path, "w") as f:
        f.write(WRAPPER % (real, after))
    os.chmod(path, 0o755)
    return path


def run_demo(env, **binaries):
    environment = dict(os.environ, WEBFUSED=harness.binary("WEBFUSED", "webfused"),
                       WEBFUSE_PROVIDER=harness.binary("WEBFUSE_PROVIDER", "webfuse-provider"))
    environment.update(binaries)
    p = subprocess.run(["bash", DEMO], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=environment, timeout=240)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def failed_line(out):
    return next((line for line in out.splitlines() if line.startswith("FAILED")), None)


@suite.test(budget=240)
def demo_fails_when_webfused_exits_with_an_error(env):
    daemon = wrapper(env, "webfused", harness.binary("WEBFUSED", "webfused"), "exit 3")
    status, out = run_demo(env, WEBFUSED=daemon)
    print("  demo: status %d, %s" % (status, failed_line(out)))
    check_equal(status, 1, "exit status of the demo (output:\n%s)" % out)
    check("FAILED: webfused exited with status 3" in out, "the demo does not say why:\n%s" % out)
    check("OK: the device" not in out, "the demo still says OK:\n%s" % out)


@suite.test(budget=240)
def demo_fails_on_a_sanitizer_report_of_the_provider(env):
    provider = wrapper(env, "webfuse-provider",
                       harness.binary("WEBFUSE_PROVIDER", "webfuse-provider"),
                       "echo %s >&2; exit $status" % LEAK)
    status, out = run_demo(env, WEBFUSE_PROVIDER=provider)
    print("  demo: status %d, %s" % (status, failed_line(out)))
    check_equal(status, 1, "exit status of the demo (output:\n%s)" % out)
    check("FAILED: a sanitizer reported a bug" in out and LEAK in out,
          "the demo does not show the report:\n%s" % out)


def main():
    harness.require_root_and_fuse()
    if not shutil.which("mksquashfs"):
        harness.skip("mksquashfs is missing (apt-get install squashfs-tools)")
    with open("/proc/filesystems") as f:
        if "squashfs" not in f.read().split() and subprocess.run(
                ["modprobe", "squashfs"], stderr=subprocess.DEVNULL).returncode != 0:
            harness.skip("the kernel cannot mount squashfs")
    if subprocess.run(["losetup", "-f"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        harness.skip("no free loop device")
    suite.main()


if __name__ == "__main__":
    main()
