#!/usr/bin/env bash
# Installs what webfuse needs to build and test on Debian 12. Skips apt when all is there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libwebsockets-dev libfuse3-dev fuse3 libuv1-dev libjansson-dev libsqlite3-dev libcmocka-dev
  libcrypt-dev libssl-dev openssl
  python3 git
  nodejs chromium squashfs-tools
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Some Node.js packages bring npm along; Debian's own needs the npm package.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$(dirname "$0")/install-node-deps.sh"
