#!/usr/bin/env bash
# cargo-fuzz (nightly, AddressSanitizer, debug assertions on): build every target in
# fuzz/ and run each for FUZZ_SECONDS (default 40) from its committed seeds
# (fuzz/seeds/<target>, plus the reproducers in fuzz/regressions/<target>) into a
# scratch corpus, so the tree is not modified.
# Crashes are saved under fuzz/artifacts/<target>/ and fail the stage.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
secs=${FUZZ_SECONDS:-40}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
cd fuzz
unset CARGO_TARGET_DIR RUSTFLAGS   # cargo-fuzz manages fuzz/target and its own flags
timeout 1200 cargo +nightly fuzz build -O -a
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export FUZZ_TMPDIR="$scratch"
summary=""
failed=""
for t in $(cargo +nightly fuzz list); do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  status=0
  # Known reproducers in regressions/<target> run first, so a fixed bug stays fixed.
  dirs=("seeds/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  # -timeout: any single input taking > 30 s is reported as a failure. The outer timeout
  # is only a safety net (it also covers a rebuild if the sources changed).
  timeout $((secs + 600)) cargo +nightly fuzz run -O -a "$t" "$scratch/$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -timeout=30 -print_final_stats=1 -rss_limit_mb=2048 \
    >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  if [ "$status" -ne 0 ]; then
    echo "fuzz $t: FAILED (status $status)" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -40 "$log" >&2
    echo "reproduce: cd fuzz && cargo +nightly fuzz run -O -a $t <the file named above>" >&2
    failed+=" $t"
    summary+=" $t FAILED;"
    continue
  fi
  echo "fuzz $t: ${execs:-?} execs, ${rate:-?} exec/s, no crash"
  summary+=" $t ${execs:-?} execs (${rate:-?}/s);"
done
echo "fuzz (${secs} s each):${summary} $((SECONDS - t0)) s"
if [ -n "$failed" ]; then
  echo "fuzz: failing targets:${failed}" >&2
  exit 1
fi
