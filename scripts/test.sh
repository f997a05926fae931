#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test under ctest.
# Integration tests mount for real: run as root (or with /dev/fuse usable), else they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
cd build
ctest --output-on-failure --timeout 600
