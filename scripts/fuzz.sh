#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) into $BUILD_DIR
# (default build-fuzz/) and runs each for SECONDS (default 60), starting from its seed corpus in
# tests/fuzz/<target>/ and the regression inputs in tests/fuzz/regressions/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Prints the executions of each target. A crash stops with status 1: the input is kept in
# $BUILD_DIR/fuzz-crashes/; once fixed, copy it into tests/fuzz/regressions/<target>/, where
# every build's ctest replays it. New interesting inputs collect in $BUILD_DIR/fuzz-corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec_json codec_webfuse2 admin options config)

scripts/install-deps.sh
# clang and its libFuzzer runtime are only needed here, not for the normal build.
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build_dir=${BUILD_DIR:-build-fuzz}
CC=clang BUILD_DIR="$build_dir" scripts/build.sh -DWEBFUSE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  >/dev/null
# Leaks count as findings too; a report stops the run.
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
summary=()
for t in "${targets[@]}"; do
  corpus="$build_dir/fuzz-corpus/$t"
  crashes="$build_dir/fuzz-crashes"
  log="$build_dir/fuzz-$t.log"
  mkdir -p "$corpus" "$crashes"
  seeds=("tests/fuzz/$t")
  [ -d "tests/fuzz/regressions/$t" ] && seeds+=("tests/fuzz/regressions/$t")
  echo "fuzzing $t for $seconds s"
  # The first directory collects new inputs; the checked-in ones are only read. The targets'
  # own output (usage texts, logs) is silenced; libFuzzer's and the sanitizers' reports are not.
  if "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
      -close_fd_mask=3 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/$t-" \
      "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and $crashes/)"
    status=1
    tail -n 60 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  summary+=("$(printf '%-16s %12s executions  %s' "$t" "${runs:-?}" "$result")")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
