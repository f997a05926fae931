#!/usr/bin/env bash
# Footprint for small devices: builds webfuse for size (MinSizeRel) twice, complete and without
# the admin API/sqlite (-DWEBFUSE_ADMIN=OFF), and reports the stripped size of each binary and
# the daemon's resident memory idle and with one filesystem attached. Also proves the small
# build works: a file attached by the provider is read back through its mount.
# Writes build/footprint/footprint.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

out=build/footprint
mkdir -p "$out"
work=$(mktemp -d /tmp/webfuse-footprint.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "$work"/mnt*/*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

build() { # variant dir, cmake args...
  local dir=$1
  shift
  echo "building $dir ($*)"
  BUILD_DIR=$dir scripts/build.sh -DCMAKE_BUILD_TYPE=MinSizeRel -DWEBFUSE_TESTS=OFF "$@" \
    > "$out/$dir.log" 2>&1 || { cat "$out/$dir.log" >&2; exit 1; }
}

stripped_size() {
  strip -o "$work/stripped" "$1"
  stat -c %s "$work/stripped"
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # what, command...
  local what=$1
  shift
  for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done
  echo "footprint: timed out waiting for $what" >&2
  exit 1
}

# Runs a variant's daemon; prints "idle-RSS attached-RSS" in KiB.
measure() { # build dir, variant name, daemon args...
  local dir=$1 name=$2
  shift 2
  local port root src
  port=$(free_port)
  root="$work/mnt-$name"
  src="$work/src-$name"
  mkdir -p "$root" "$src"
  head -c 4194304 /dev/urandom > "$src/image.bin"
  "$dir/webfused" --port "$port" --mount-root "$root" --log-level error "$@" &
  local daemon=$!
  pids+=("$daemon")
  wait_for "webfused on port $port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
  sleep 1
  local idle
  idle=$(rss_kib "$daemon")
  "$dir/webfuse-provider" --url "ws://127.0.0.1:$port/fw" --path "$src" --read-only --log-level error &
  local provider=$!
  pids+=("$provider")
  wait_for "the mount of $name" mountpoint -q "$root/fw"
  cmp "$root/fw/image.bin" "$src/image.bin"
  echo "$idle $(rss_kib "$daemon")"
  kill "$provider"
  wait "$provider" || true
  kill "$daemon"
  wait "$daemon" || true
}

build build-footprint
build build-footprint-small -DWEBFUSE_ADMIN=OFF
if ldd build-footprint-small/webfused | grep -q sqlite; then
  echo "footprint: the build without the admin API still links sqlite" >&2
  exit 1
fi

read -r full_idle full_attached < <(measure build-footprint full \
  --admin-port "$(free_port)" --admin-token-file "$work/token" --db "$work/history.db")
read -r small_idle small_attached < <(measure build-footprint-small small)

{
  echo "# webfuse footprint ($(date -u +%Y-%m-%d), $(uname -m), MinSizeRel, stripped)"
  echo
  echo "| binary | complete build (bytes) | without admin API/sqlite (bytes) |"
  echo "| --- | ---: | ---: |"
  echo "| webfused | $(stripped_size build-footprint/webfused) | $(stripped_size build-footprint-small/webfused) |"
  echo "| webfuse-provider | $(stripped_size build-footprint/webfuse-provider) | $(stripped_size build-footprint-small/webfuse-provider) |"
  echo "| webfusectl | $(stripped_size build-footprint/webfusectl) | $(stripped_size build-footprint-small/webfusectl) |"
  echo
  echo "| webfused resident memory (KiB) | complete build | without admin API/sqlite |"
  echo "| --- | ---: | ---: |"
  echo "| idle | $full_idle | $small_idle |"
  echo "| one filesystem attached, 4 MiB read | $full_attached | $small_attached |"
  echo
  echo "Shared libraries (not counted above):"
  ldd build-footprint/webfused | awk '/=>/ {print "- " $1}' | sort
} > "$out/footprint.md"
cat "$out/footprint.md"
