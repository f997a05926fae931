#!/usr/bin/env bash
# Builds webfuse, starts webfused on its defaults with the browser provider page (web/) at / of
# its provider port, and attaches an example directory through webfuse-provider (webfuse2,
# read-write). Ctrl-C stops both; the mounts go away.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${BUILD_DIR:-build} # where build.sh built

mount_root=/run/webfuse
example=$build/demo/example
mkdir -p "$example/docs"
echo "Hello from the provider side." > "$example/hello.txt"
echo "These bytes were read through FUSE, straight from the provider." > "$example/docs/readme.txt"
head -c 1048576 /dev/urandom > "$example/firmware.bin"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$build/webfused" --mount-root "$mount_root" --docroot web &
pids+=($!)
sleep 0.5
"$build/webfuse-provider" --url ws://127.0.0.1:8081/example --path "$example" &
pids+=($!)

for _ in $(seq 50); do
  mountpoint -q "$mount_root/example" && break
  sleep 0.1
done
if ! mountpoint -q "$mount_root/example"; then
  echo "the example filesystem did not appear at $mount_root/example" >&2
  exit 1
fi
cat <<MSG

webfused is running; the provider serves $example as "example", read-write.
Try, in another terminal:
  ls -l $mount_root/example
  cat $mount_root/example/hello.txt
  sha256sum $mount_root/example/firmware.bin $example/firmware.bin
  echo "written on the device" > $mount_root/example/note.txt; cat $example/note.txt

The browser page is at http://127.0.0.1:8081/ : pick files there and attach them, and they
appear under $mount_root/upload (read-only, read straight from the browser). webfused listens
on 127.0.0.1 only; to open the page from another machine, start it with --bind 0.0.0.0.
Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
