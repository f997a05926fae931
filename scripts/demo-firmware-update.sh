#!/usr/bin/env bash
# The firmware update, told end to end on this machine:
#
#   the laptop   a tmpfs of its own holds a squashfs firmware image; webfuse-provider lends the
#                directory it is in (webfuse2, read-only) to the device's webfused
#   the device   mounts the image with `mount -o loop,ro` straight from the FUSE mount, checks
#                every file in it, unmounts it, and the provider detaches
#
# and then shows that the device wrote no copy of the image to its disks: the loop device's
# backing file is the FUSE file, the used space of every writable filesystem of the device is
# measured before and after, and every such filesystem is searched for a file of the image's
# size and hash written during the demo. The provider and then webfused are stopped with SIGTERM:
# each must exit with status 0, and neither log may hold a sanitizer report.
#
# Binaries: $WEBFUSED and $WEBFUSE_PROVIDER, else build/ (scripts/build.sh). Needs root, /dev/fuse,
# loop devices, squashfs support and mksquashfs (scripts/install-deps.sh); exits with 77 when the
# machine cannot do it (with 1 when WEBFUSE_REQUIRE_ALL=1). Everything it starts or mounts is
# undone on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

WEBFUSED=${WEBFUSED:-build/webfused}
WEBFUSE_PROVIDER=${WEBFUSE_PROVIDER:-build/webfuse-provider}
SKIP=77
IMAGE_PAYLOAD_MIB=24 # incompressible bytes in the image, so its size stands out

step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
die() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}
# With WEBFUSE_REQUIRE_ALL=1 (scripts/test.sh as root, CI) a machine that cannot run the demo
# fails it: a skip would count as a pass.
skip() {
  if [ -n "${WEBFUSE_REQUIRE_ALL:-}" ] && [ "$WEBFUSE_REQUIRE_ALL" != 0 ]; then
    die "$*, and WEBFUSE_REQUIRE_ALL=$WEBFUSE_REQUIRE_ALL forbids skipping"
  fi
  printf 'SKIP: %s\n' "$*"
  exit "$SKIP"
}

[ "$(id -u)" -eq 0 ] || skip "mounting needs root"
[ -e /dev/fuse ] || skip "/dev/fuse is missing"
command -v mksquashfs >/dev/null || skip "mksquashfs is missing (apt-get install squashfs-tools)"
grep -qw squashfs /proc/filesystems || modprobe squashfs 2>/dev/null ||
  skip "the kernel cannot mount squashfs"
losetup -f >/dev/null 2>&1 || skip "no free loop device"
for bin in "$WEBFUSED" "$WEBFUSE_PROVIDER"; do
  [ -x "$bin" ] || die "$bin is missing: run scripts/build.sh (or set WEBFUSED/WEBFUSE_PROVIDER)"
done

work=$(mktemp -d /tmp/webfuse-firmware-demo.XXXXXX)
laptop=$work/laptop            # stands for the provider's machine: a tmpfs of its own
mount_root=$work/run-webfuse   # the device's webfuse mount root
target=$work/update            # where the device mounts the image
pids=()

# Whether a child of this script has ended (a zombie until it is waited for).
exited() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$state" ] || [ "$state" = Z ]
}

cleanup() {
  local status=$?
  set +e
  mountpoint -q "$target" && umount "$target"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do exited "$pid" && break; sleep 0.1; done
    exited "$pid" || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # A daemon that died hard leaves its mounts behind.
  for mp in $(awk -v root="$work/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$mp" 2>/dev/null
  done
  if [ $status -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -s "$log" ] && { printf -- '---- %s\n' "$(basename "$log")"; tail -n 40 "$log"; } >&2
    done
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # seconds, description, command...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  die "timed out after ${seconds}s waiting for $what"
}

# Stops a process this script started (index in pids) with SIGTERM, as Ctrl-C or systemd would:
# it must exit with status 0 within 10 s.
stop() { # index, name
  local pid=${pids[$1]} name=$2 status=0
  kill -TERM "$pid"
  wait_for 10 "$name to exit after SIGTERM" exited "$pid"
  wait "$pid" || status=$?
  unset "pids[$1]"
  [ "$status" -eq 0 ] || die "$name exited with status $status"
}

# Reports of AddressSanitizer, LeakSanitizer and UBSan (a build with -DWEBFUSE_SANITIZE=ON), and
# LeakSanitizer's word that it could not look for leaks.
sanitizer_reports() {
  grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |LeakSanitizer has encountered a fatal' "$@"
}

# ---- the laptop: a firmware image ----------------------------------------------------------------

step "Laptop: building a squashfs firmware image on its own tmpfs ($laptop)"
mkdir -p "$laptop" "$mount_root" "$target"
mount -t tmpfs -o size=$((IMAGE_PAYLOAD_MIB * 3 + 16))m webfuse-demo-laptop "$laptop"
rootfs=$laptop/rootfs
mkdir -p "$rootfs/etc" "$rootfs/bin" "$rootfs/lib/firmware" "$laptop/export"
printf 'NAME="webfuse demo firmware"\nVERSION="2.0.1"\n' > "$rootfs/etc/os-release"
printf '#!/bin/sh\necho "firmware 2.0.1 is running"\n' > "$rootfs/bin/hello"
chmod 755 "$rootfs/bin/hello"
head -c $((IMAGE_PAYLOAD_MIB * 1024 * 1024 - 12345)) /dev/urandom > "$rootfs/lib/firmware/blob.bin"
head -c 12345 /dev/urandom > "$rootfs/lib/firmware/calibration.dat"
image=$laptop/export/firmware-2.0.1.squashfs
mksquashfs "$rootfs" "$image" -noappend -quiet -all-root >/dev/null
image_size=$(stat -c %s "$image")
image_sha=$(sha256sum "$image" | cut -d' ' -f1)
(cd "$rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$work/expected.sha256"
say "image: $(basename "$image"), $image_size bytes, sha256 ${image_sha:0:16}..."
say "files: $(wc -l < "$work/expected.sha256") ($(cut -c67- "$work/expected.sha256" | tr '\n' ' '))"

# ---- the gateway and the provider ---------------------------------------------------------------

step "Device: starting webfused; laptop: webfuse-provider lends $(dirname "$image") read-only"
port=$(free_port)
"$WEBFUSED" --no-config --port "$port" --mount-root "$mount_root" --no-admin --log-level warn \
  2> "$work/webfused.log" &
pids+=($!)
wait_for 10 "webfused to listen on port $port" \
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null
"$WEBFUSE_PROVIDER" --url "ws://127.0.0.1:$port/firmware" --path "$laptop/export" --read-only \
  2> "$work/provider.log" &
pids+=($!)
fw=$mount_root/firmware
wait_for 10 "the mount at $fw" mountpoint -q "$fw"
say "attached: $fw ($(awk -v mp="$fw" '$5 == mp { for (i = 7; $i != "-"; i++); print $(i + 1) }' /proc/self/mountinfo))"
ls -l "$fw" | sed 's/^/   /'

# ---- what the device's disks hold before ---------------------------------------------------------

# Filesystems the device could write a copy to: every read-write filesystem that stores files
# and is large enough to hold the image, except the laptop's tmpfs and the demo's own mounts.
device_filesystems() {
  local mp fstype opts
  while read -r mp fstype opts; do
    case " ext2 ext3 ext4 xfs btrfs f2fs vfat exfat ubifs jffs2 overlay tmpfs " in
      *" $fstype "*) ;;
      *) continue ;;
    esac
    case ",$opts," in *,rw,*) ;; *) continue ;; esac
    case "$mp/" in "$work"/*) continue ;; esac
    [ $(($(stat -f -c '%b' "$mp") * $(stat -f -c '%S' "$mp"))) -ge "$image_size" ] || continue
    echo "$mp"
  done < <(awk '{ for (i = 7; $i != "-"; i++); print $5, $(i + 1), $6 }' /proc/self/mountinfo |
    sed 's/\\040/ /g' | sort -u)
}

used_bytes() { df -B1 --output=used "$1" | tail -n 1 | tr -d ' '; }

mapfile -t filesystems < <(device_filesystems)
[ ${#filesystems[@]} -gt 0 ] || die "found no writable filesystem of the device to watch"
declare -A used_before
for mp in "${filesystems[@]}"; do used_before[$mp]=$(used_bytes "$mp"); done
touch "$work/started"
say "watching ${#filesystems[@]} writable filesystem(s) of the device: ${filesystems[*]}"

# ---- the update ---------------------------------------------------------------------------------

step "Device: mount -o loop,ro $fw/$(basename "$image") $target"
mount -o loop,ro -t squashfs "$fw/$(basename "$image")" "$target"
loopdev=$(findmnt -n -o SOURCE "$target")
backing=$(losetup -n -O BACK-FILE "$loopdev" | sed 's/[[:space:]]*$//')
say "$loopdev reads its blocks from: $backing"
[ "$backing" = "$fw/$(basename "$image")" ] || die "the loop device is backed by $backing"

step "Device: checking every file of the image (sha256)"
(cd "$target" && sha256sum --quiet -c "$work/expected.sha256") || die "content differs"
say "$(wc -l < "$work/expected.sha256") files match: $(cd "$target" && sh ./bin/hello)"

step "Device: unmounting the image; laptop: the provider detaches"
umount "$target"
stop 1 webfuse-provider
wait_for 10 "$fw to be unmounted" bash -c "! mountpoint -q '$fw'"
say "the image is gone from the device: $fw is no longer mounted"

# ---- no copy on the device -----------------------------------------------------------------------

step "Device: was the image ($image_size bytes) written anywhere?"
# A copy would show as growth of about the image's size (a little less while the filesystem
# still delays allocating blocks): half of it is the line.
grown=()
for mp in "${filesystems[@]}"; do
  delta=$(($(used_bytes "$mp") - used_before[$mp]))
  say "$(printf '%-28s used space changed by %+d KiB' "$mp" $((delta / 1024)))"
  [ "$delta" -lt $((image_size / 2)) ] || grown+=("$mp")
done

# Any file written since the demo began with the image's size and hash would be a copy.
copies=0
for mp in "${filesystems[@]}"; do
  while IFS= read -r -d '' candidate; do
    if [ "$(sha256sum "$candidate" | cut -d' ' -f1)" = "$image_sha" ]; then
      say "COPY: $candidate"
      copies=$((copies + 1))
    fi
  done < <(find "$mp" -xdev -type f -size "${image_size}c" -newer "$work/started" -print0 \
    2>/dev/null)
done
[ ${#grown[@]} -eq 0 ] || die "grew by half the image's size or more: ${grown[*]}"
[ $copies -eq 0 ] || die "found $copies copy/copies of the image on the device"
say "no file of $image_size bytes with the image's sha256 was written on ${#filesystems[@]} filesystem(s)"

step "Device: stopping webfused"
stop 0 webfused
if sanitizer_reports "$work/webfused.log" "$work/provider.log"; then
  die "a sanitizer reported a bug (lines above; the logs follow)"
fi
say "webfused exited with status 0; no sanitizer report in its log or the provider's"

cat <<MSG

OK: the device loop-mounted a $((image_size / 1024 / 1024)) MiB firmware image and checked all of it,
reading its blocks through webfuse from the laptop; none of its filesystems grew by the image's
size, and no copy of the image exists on them. (Blocks it read may sit in the page cache, which
is memory the kernel frees at will, not storage.)
MSG
