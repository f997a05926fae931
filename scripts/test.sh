#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test under ctest.
#   scripts/test.sh              release build in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer (leaks too) in
#                                build-asan/; any report fails the test that caused it
# Integration tests mount for real: run as root (or with /dev/fuse usable), else they are skipped.
# As root nothing may be skipped (WEBFUSE_REQUIRE_ALL=1: a test that cannot run fails, since
# ctest counts a skip as passed); WEBFUSE_REQUIRE_ALL=0 allows skips again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  export WEBFUSE_REQUIRE_ALL=${WEBFUSE_REQUIRE_ALL:-1}
fi
scripts/install-deps.sh
if [ "${1:-}" = "--sanitize" ]; then
  export BUILD_DIR=build-asan ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
  scripts/build.sh -DWEBFUSE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
  export BUILD_DIR=build
  scripts/build.sh
fi
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600
