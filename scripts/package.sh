#!/usr/bin/env bash
# Builds the Debian package of webfuse (stripped release binaries, /usr and /etc) into
# build-package/ and prints its path. Install it with: apt-get install ./build-package/webfuse_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export BUILD_DIR=build-package
scripts/build.sh -DCMAKE_BUILD_TYPE=Release -DWEBFUSE_TESTS=OFF -DCMAKE_INSTALL_PREFIX=/usr
cd "$BUILD_DIR"
rm -f webfuse_*.deb
cpack -G DEB >/dev/null
ls "$PWD"/webfuse_*.deb
