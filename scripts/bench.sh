#!/usr/bin/env bash
# Measures webfuse against the FUSE limit (bindfs of the same directory) and the disk itself, in
# one run on one machine, and writes a Markdown table to $BUILD_DIR/bench/results.md.
#
#   scripts/bench.sh            full run (512 MiB reads, 5 runs per figure; a few minutes)
#   scripts/bench.sh --quick    smaller sizes and one run per figure, for development and smoke
#                               tests (also BENCH_QUICK=1)
#
# Needs root (page caches are dropped before every cold measurement, mounts are made). Builds a
# release build of its own in $BUILD_DIR/bench/build and installs bindfs when missing, and sshfs
# with openssh-server for the listing comparison (a private sshd on a loopback port with throwaway
# keys; the quick run uses sshfs only when it is installed already). Each figure is the median of
# BENCH_RUNS runs with min-max. Other work on the machine shows in absolute figures; the ratios
# within one run are what to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=${BENCH_QUICK:-0}
[ "${1:-}" = "--quick" ] && quick=1
if [ "$quick" = 1 ]; then
  runs=${BENCH_RUNS:-1} read_mib=64 write_mib=32 files=1000 random_reads=2000 stats=2000
  streams=(1 4 8) idle_sessions=16
else
  runs=${BENCH_RUNS:-5} read_mib=512 write_mib=256 files=10000 random_reads=20000 stats=10000
  streams=(1 8 64) idle_sessions=256
fi

if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ]; then
  echo "bench.sh needs root and /dev/fuse (it mounts and drops page caches)" >&2
  exit 1
fi

build_dir=${BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$repo/$build_dir ;; esac
bench=$build_dir/bench
bin=$bench/build
data=$bench/data
run=$bench/run
results=$bench/results.md
mkdir -p "$bench" "$data"

# ---- set-up ---------------------------------------------------------------------------------------

scripts/install-deps.sh
apt_install() {
  echo "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}
command -v bindfs >/dev/null || apt_install bindfs
if [ "$quick" = 0 ] && { ! command -v sshfs >/dev/null || [ ! -x /usr/sbin/sshd ]; }; then
  apt_install sshfs openssh-server || echo "no sshfs: the listing table goes without it"
fi
echo "building (release) in $bin"
BUILD_DIR=$bin scripts/build.sh -DCMAKE_BUILD_TYPE=Release -DWEBFUSE_SANITIZE=OFF \
  -DWEBFUSE_TESTS=OFF >/dev/null
for helper in bench_randread bench_statx bench_streams; do
  cc -O2 -Wall -Wextra -Werror -o "$bin/$helper" "tests/bench/$helper.c"
done

# Test data, kept between runs: one big file, one directory of small files, one tree.
big=big-${read_mib}M
make_data() {
  if [ ! -f "$data/$big" ]; then
    echo "writing $read_mib MiB of test data"
    head -c $((read_mib << 20)) /dev/urandom >"$data/$big.tmp"
    mv "$data/$big.tmp" "$data/$big"
  fi
  local n
  for n in "${streams[@]}"; do # the big file cut in n parts, one for each of n streams
    [ "$n" -eq 1 ] || [ -d "$data/$big-parts-$n" ] && continue
    rm -rf "$data/$big-parts-$n.tmp"
    mkdir "$data/$big-parts-$n.tmp"
    split -n "$n" -d -a 3 "$data/$big" "$data/$big-parts-$n.tmp/part-"
    mv "$data/$big-parts-$n.tmp" "$data/$big-parts-$n"
  done
  python3 - "$data" "$files" <<'EOF'
import os, sys
data, files = sys.argv[1], int(sys.argv[2])
small = os.path.join(data, "small-%d" % files)
if not os.path.isdir(small):
    os.makedirs(small + ".tmp", exist_ok=True)
    block = os.urandom(1024)
    for i in range(files):
        with open(os.path.join(small + ".tmp", "f%05d" % i), "wb") as f:
            f.write(block)
    os.rename(small + ".tmp", small)
tree = os.path.join(data, "tree-%d" % files)
if not os.path.isdir(tree):
    # `files` entries: dirs directories with files-per-dir files each.
    dirs = max(1, int(files ** 0.5))
    per_dir = files // dirs - 1
    for d in range(dirs):
        os.makedirs(os.path.join(tree + ".tmp", "d%03d" % d), exist_ok=True)
        for i in range(per_dir):
            open(os.path.join(tree + ".tmp", "d%03d" % d, "f%04d" % i), "wb").close()
    os.rename(tree + ".tmp", tree)
os.makedirs(os.path.join(data, "idle"), exist_ok=True)
EOF
}
make_data
small=small-$files
tree=tree-$files

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- processes ------------------------------------------------------------------------------------

daemon_pid=""
provider_pids=()
bind_mnt=$run/bindfs
ssh_mnt=$run/sshfs
ssh_dir=$bench/ssh
mnt=$run/mnt

cleanup() {
  set +e
  stop_providers
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  mountpoint -q "$bind_mnt" && fusermount3 -u -z "$bind_mnt"
  mountpoint -q "$ssh_mnt" && fusermount3 -u -z "$ssh_mnt"
  [ -f "$ssh_dir/sshd.pid" ] && kill "$(cat "$ssh_dir/sshd.pid")" 2>/dev/null
  for m in "$mnt"/* "$run"/bc*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -f "$data"/write-test
  release_page_reporting
}
trap cleanup EXIT

# A VM with free page reporting (virtio-balloon) hands memory back to its host as soon as it is
# free; on this kind of machine (min_free_ms 0) every page a cold run's page cache took had been
# handed back when the caches were dropped, and the host's fault on first touch was charged to
# whoever wrote the page: with 64 streams the gateway used up to twice the CPU per byte of one
# stream, by run order and timing, not by the code measured (with reporting held off, the same).
# Reporting is held off while the bench runs (pages must stay free a minute, and only the largest
# blocks go) and restored at exit; memory is touched once so that the pages the runs take are
# the host's already. Without these settings (other kernels, no balloon) nothing changes.
reporting=/sys/module/page_reporting/parameters
reporting_saved=()
hold_page_reporting() {
  local param value
  for param in min_free_ms:60000 page_reporting_order:10; do
    value=${param#*:} param=$reporting/${param%%:*}
    [ -w "$param" ] || continue
    reporting_saved+=("$param:$(cat "$param")")
    echo "$value" >"$param" || echo "cannot set $param: measured with it as it is" >&2
  done
  [ ${#reporting_saved[@]} -eq 0 ] && return 0
  python3 -c '
import mmap, sys
size = int(sys.argv[1]) << 20
m = mmap.mmap(-1, size)
for i in range(0, size, 4096):
    m[i] = 1' "$(awk '/MemAvailable/ { m = int($2 / 2048); print m < 4096 ? m : 4096 }' /proc/meminfo)"
}
release_page_reporting() {
  local saved
  for saved in "${reporting_saved[@]}"; do echo "${saved#*:}" >"${saved%%:*}"; done
  reporting_saved=()
}
hold_page_reporting

stop_providers() {
  [ ${#provider_pids[@]} -eq 0 ] && return 0
  kill "${provider_pids[@]}" 2>/dev/null || true
  wait "${provider_pids[@]}" 2>/dev/null || true
  provider_pids=()
  wait_for "no mounts left" mounts_gone
}

mount_count() {
  awk -v root="$mnt/" 'index($5, root) == 1' /proc/self/mountinfo | wc -l
}
mounts_gone() { [ "$(mount_count)" -eq 0 ]; }

wait_for() { # what, predicate...
  local what=$1
  shift
  for _ in $(seq 600); do
    "$@" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  exit 1
}

start_daemon() {
  rm -rf "$run"
  mkdir -p "$run" "$mnt" "$bind_mnt"
  port=$(free_port)
  # More sessions than the default limit (64): the memory figure attaches 256 of them.
  "$bin/webfused" --no-config --port "$port" --mount-root "$mnt" --no-admin --log-level error \
    --max-sessions $((idle_sessions + 16)) \
    2>"$run/webfused.log" &
  daemon_pid=$!
  wait_for "webfused to listen" python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port)).close()"
}

# sshfs of $data through a private sshd on a free loopback port, with keys made for this run
# only; sets ssh_ok. Without sshfs or sshd the listing table says "-" for it.
ssh_ok=""
start_sshfs() {
  command -v sshfs >/dev/null && [ -x /usr/sbin/sshd ] || return 0
  rm -rf "$ssh_dir"
  mkdir -p "$ssh_dir" "$ssh_mnt" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/id"
  cp "$ssh_dir/id.pub" "$ssh_dir/authorized_keys"
  local ssh_port
  ssh_port=$(free_port)
  cat >"$ssh_dir/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $ssh_dir/host_key
PidFile $ssh_dir/sshd.pid
AuthorizedKeysFile $ssh_dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -f "$ssh_dir/sshd_config" -E "$ssh_dir/sshd.log" || return 0
  sshfs -p "$ssh_port" -o "IdentityFile=$ssh_dir/id,StrictHostKeyChecking=no" \
    -o "UserKnownHostsFile=/dev/null,BatchMode=yes" "root@127.0.0.1:$data" "$ssh_mnt" \
    2>>"$ssh_dir/sshd.log" && ssh_ok=1
  return 0
}

# provider NAME [--protocol json]: a webfuse2 provider (or JSON) serving $data as NAME.
provider() {
  local name=$1
  shift
  if [ "${1:-}" = "--protocol" ]; then
    "$bin/webfuse-provider" --protocol json --url "ws://127.0.0.1:$port/" --fs "$name=$data" \
      2>>"$run/providers.log" &
  else
    "$bin/webfuse-provider" --url "ws://127.0.0.1:$port/$name" --path "${1:-$data}" \
      2>>"$run/providers.log" &
  fi
  provider_pids+=($!)
}

mounts_at_least() { [ "$(mount_count)" -ge "$1" ]; }
wait_mounts() { wait_for "$1 mounts" mounts_at_least "$1"; }

# ---- measuring ------------------------------------------------------------------------------------

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

now_ms() { date +%s%N | awk '{ printf "%.3f", $1 / 1e6 }'; }

# Runs "$@" $runs times (each prints one number) and prints "median min max".
repeat() {
  local values
  values=$(for _ in $(seq "$runs"); do "$@" || exit 1; done) || {
    echo "failed: $*" >&2
    return 1
  }
  sort -g <<<"$values" | awk '
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}

# MB/s of a dd run, from its own report.
dd_rate() {
  LC_ALL=C dd "$@" 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") t = $(i - 1); printf "%.1f\n", $1 / t / 1e6 }'
}

seq_read() { drop_caches; dd_rate if="$1/$big" of=/dev/null bs=1M; }

seq_write() {
  rm -f "$1/write-test"
  drop_caches
  dd_rate if=/dev/zero of="$1/write-test" bs=1M count="$write_mib" conv=fsync
}

timed_ms() { # prints the wall time of "$@" in ms
  local start end
  drop_caches
  start=$(now_ms)
  "$@" >/dev/null
  end=$(now_ms)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f\n", e - s }'
}
ls_l() { ls -l "$1/$small"; }
cat_all() { (cd "$1/$small" && cat -- *); }
find_all() { find "$1/$tree"; }

random_read() { drop_caches; "$bin/bench_randread" "$1/$big" "$random_reads" 42; }

# statx p50 and p99 as separate figures: field 1 or 2.
statx_p() { "$bin/bench_statx" "$2/$big" "$stats" | awk -v f="$1" '{ print $f }'; }

# ---- the table ------------------------------------------------------------------------------------

rows=()
fmt() { # "median min max" -> "median (min–max)"; "-" stays
  awk '$1 == "-" { printf "-"; next }
    { if ($1 >= 100) f = "%.0f"; else f = "%.1f"; printf f " (" f "–" f ")", $1, $2, $3 }' <<<"$1"
}
ratio() { awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { # measure, unit, ours, bindfs, direct
  rows+=("| $1 | $2 | $(fmt "$3") | $(fmt "$4") | $(fmt "$5") | $(ratio "$3" "$4") | $(ratio "$3" "$5") |")
  echo "  $1: ours $3, bindfs $4, direct $5"
}

# ---- the run --------------------------------------------------------------------------------------

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
threads_of() { ls "/proc/$1/task" | wc -l; }

start_daemon
echo "memory: $idle_sessions idle sessions"
rss_idle=$(status_kib "$daemon_pid" VmRSS)
threads_idle=$(threads_of "$daemon_pid")
for i in $(seq "$idle_sessions"); do provider "idle$i" "$data/idle"; done
wait_mounts "$idle_sessions"
sleep 1
rss_sessions=$(status_kib "$daemon_pid" VmRSS)
threads_sessions=$(threads_of "$daemon_pid")
stop_providers

provider bench
provider benchjson --protocol json
wait_mounts 2
bindfs --no-allow-other "$data" "$bind_mnt"
ours=$mnt/bench
json=$mnt/benchjson

echo "1. sequential read, $read_mib MiB"
echo 5 >"/proc/$daemon_pid/clear_refs" # VmHWM from here on: the peak during these reads
r_ours=$(repeat seq_read "$ours")
rss_peak=$(status_kib "$daemon_pid" VmHWM)
r_json=$(repeat seq_read "$json")
r_bind=$(repeat seq_read "$bind_mnt")
r_direct=$(repeat seq_read "$data")
row "sequential read $read_mib MiB, webfuse2 provider" "MB/s" "$r_ours" "$r_bind" "$r_direct"
row "sequential read $read_mib MiB, JSON provider" "MB/s" "$r_json" "$r_bind" "$r_direct"

echo "2. sequential write, $write_mib MiB with fsync"
row "sequential write $write_mib MiB + fsync" "MB/s" "$(repeat seq_write "$ours")" \
  "$(repeat seq_write "$bind_mnt")" "$(repeat seq_write "$data")"
rm -f "$data/write-test"

echo "3. metadata, $files files"
start_sshfs
listing_rows=()
listing() { # measure, function: a row of the main table and one of the listing table
  local o j s="-" b d
  o=$(repeat timed_ms "$2" "$ours")
  j=$(repeat timed_ms "$2" "$json")
  [ -n "$ssh_ok" ] && s=$(repeat timed_ms "$2" "$ssh_mnt")
  b=$(repeat timed_ms "$2" "$bind_mnt")
  d=$(repeat timed_ms "$2" "$data")
  row "$1" "ms" "$o" "$b" "$d"
  listing_rows+=("| $1 | $(fmt "$o") | $(fmt "$j") | $(fmt "$s") | $(fmt "$b") | $(fmt "$d") | $(ratio "$o" "$s") |")
  echo "    JSON $j, sshfs $s"
}
listing "\`ls -l\` of $files files" ls_l
row "\`cat\` of $files files of 1 KiB" "ms" "$(repeat timed_ms cat_all "$ours")" \
  "$(repeat timed_ms cat_all "$bind_mnt")" "$(repeat timed_ms cat_all "$data")"
listing "\`find\` over $files entries" find_all
if [ -n "$ssh_ok" ]; then
  fusermount3 -u "$ssh_mnt"
  kill "$(cat "$ssh_dir/sshd.pid")"
fi

echo "4. random 4 KiB reads"
row "random 4 KiB reads ($random_reads, one at a time)" "IOPS" "$(repeat random_read "$ours")" \
  "$(repeat random_read "$bind_mnt")" "$(repeat random_read "$data")"

echo "5. getattr round trips"
row "getattr p50 (statx FORCE_SYNC, $stats calls)" "µs" "$(repeat statx_p 1 "$ours")" \
  "$(repeat statx_p 1 "$bind_mnt")" "$(repeat statx_p 1 "$data")"
row "getattr p99" "µs" "$(repeat statx_p 2 "$ours")" "$(repeat statx_p 2 "$bind_mnt")" \
  "$(repeat statx_p 2 "$data")"

fusermount3 -u "$bind_mnt"
stop_providers

echo "6. concurrency"
# Each of N providers serves one mount of the same directory; reader i streams the i-th of N
# parts of the $read_mib MiB file to its end through mount i, so at every level the readers read
# the file once between them: the same amount of page cache filled on the mounts' side and read on
# the providers'. (On a VM that gives freed memory back to its host, fresh page cache costs more the
# more of it one run fills, and the gateway's one loop thread pays for it in the kernel's copy
# into the page cache: 64 streams of 64 MiB each ran at 0.78-0.87 of one stream of 64 MiB, and
# at 1.0 when the same 4 GiB of memory had been touched just before. N streams of a fixed size
# measured the host, not the gateway. Readers that stopped at the end of a slice of the whole file
# measured read-ahead past it: 64 of them made the mounts read 952 MiB for 512.) The provider
# side's copy is read into the page cache first, so the disk does not decide the figure. The
# readers open their files first and start together (bench_streams): the clock does not count the
# start of 64 processes.
# The same readers through N bindfs mounts of the directory show what the kernel's side of FUSE
# and the readers themselves cost at each level on this machine.
concurrent_read() { # n, mount i is the directory "$2$i"
  local n=$1 i files=("$big") paths=()
  if [ "$n" -gt 1 ]; then
    files=()
    for i in $(seq 0 $((n - 1))); do files+=("$(printf '%s-parts-%d/part-%03d' "$big" "$n" "$i")"); done
  fi
  drop_caches
  (cd "$data" && cat "${files[@]}") >/dev/null
  for i in $(seq "$n"); do paths+=("$2$i/${files[i - 1]}"); done
  "$bin/bench_streams" "${paths[@]}"
}
bind_streams() { # n: sets bind_agg, the figure of n readers through n bindfs mounts
  local n=$1
  for i in $(seq "$n"); do
    mkdir -p "$run/bc$i"
    bindfs --no-allow-other "$data" "$run/bc$i"
  done
  bind_agg=$(repeat concurrent_read "$n" "$run/bc")
  for i in $(seq "$n"); do fusermount3 -u "$run/bc$i"; done
}
concurrency_rows=()
single="" bind_single=""
for n in "${streams[@]}"; do
  for i in $(seq "$n"); do provider "c$i"; done
  wait_mounts "$n"
  echo 5 >"/proc/$daemon_pid/clear_refs"
  agg=$(repeat concurrent_read "$n" "$mnt/c")
  rss_streams=$(status_kib "$daemon_pid" VmHWM) # the peak at the most streams
  stop_providers
  bind_streams "$n"
  [ -z "$single" ] && single=$agg bind_single=$bind_agg
  concurrency_rows+=("| $n | $(fmt "$agg") | $(ratio "$agg" "$single") | $(fmt "$bind_agg") | $(ratio "$bind_agg" "$bind_single") | $(ratio "$agg" "$bind_agg") |")
  echo "  $n streams: ours $agg MB/s, bindfs $bind_agg MB/s"
done

# ---- report ---------------------------------------------------------------------------------------

per_session=$(awk -v a="$rss_idle" -v b="$rss_sessions" -v n="$idle_sessions" 'BEGIN { printf "%.1f", (b - a) / n }')
per_mount=$(awk -v a="$threads_idle" -v b="$threads_sessions" -v n="$idle_sessions" 'BEGIN { printf "%.2f", (b - a) / n }')
{
  echo "# webfuse benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified)'), ${runs} run(s) per figure$([ "$quick" = 1 ] && echo ', quick mode')."
  echo "Figures: median (min–max). Page caches dropped before each run (concurrency: the providers'"
  echo "source files are cached again before the streams start). \"ours\" is webfused with webfuse-provider"
  echo "(webfuse2 unless the row says JSON). Ratios are ours ÷ bindfs and ours ÷ direct of the figure"
  echo "itself: higher is better for MB/s and IOPS, lower is better for ms and µs."
  echo
  echo "| measure | unit | ours | bindfs | direct | ours ÷ bindfs | ours ÷ direct |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Listings (directory entries come with their attributes): webfused with webfuse-provider"
  echo "over webfuse2 and over JSON, sshfs of the same directory through a private sshd on loopback"
  echo "(\"-\": sshfs not installed), bindfs and the disk; ms, lower is better."
  echo
  echo "| measure | ours webfuse2 | ours JSON | sshfs | bindfs | direct | webfuse2 ÷ sshfs |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${listing_rows[@]}"
  echo
  echo "Concurrency: N webfuse2 providers, one mount each, one reader through each (1 MiB reads, all"
  echo "starting at once); together they stream the $read_mib MiB file once, each to the end of a"
  echo "1/N part of it."
  echo "bindfs: the same readers through N bindfs mounts of the directory (aggregate MB/s)."
  echo
  echo "| streams | ours MB/s | ours ÷ single stream | bindfs MB/s | bindfs ÷ single stream | ours ÷ bindfs |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${concurrency_rows[@]}"
  echo
  echo "Memory of webfused (VmRSS) and threads:"
  echo
  echo "| measure | value |"
  echo "| --- | --- |"
  echo "| RSS idle, no sessions | $rss_idle KiB |"
  echo "| RSS with $idle_sessions idle sessions attached | $rss_sessions KiB |"
  echo "| RSS per idle session | $per_session KiB |"
  echo "| peak RSS (VmHWM) during the webfuse2 sequential reads | $rss_peak KiB |"
  echo "| peak RSS (VmHWM) during the ${streams[-1]} concurrent streams | $rss_streams KiB |"
  echo "| threads idle / with $idle_sessions mounts | $threads_idle / $threads_sessions |"
  echo "| threads per mount | $per_mount |"
} >"$results"
echo
cat "$results"
