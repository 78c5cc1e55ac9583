#!/usr/bin/env bash
# The C ABI (capi/, its own crate and lock file, not part of the root crate's build):
# fmt and clippy; its Rust tests, which include `header_is_fresh` (the checked-in
# include/sae_kernels.h must be what cbindgen generates now); the C fixtures must be
# up to date with tests/fixtures/saelens; then the C test program (tests/c/test_capi.c)
# is compiled by `cc`, linked with the static library and with the shared one, and
# run, and once more built and run under AddressSanitizer + UBSan. Last, the no_std
# static library for Cortex-M (caller-owned weights only; no allocator exists there).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$SECONDS
cd capi
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test 2>&1 | grep -E "^test |test result|panicked|error" || { cargo test; exit 1; }
python3 tests/c/gen_fixtures.py --check
cargo build --lib
lib=target/debug
mkdir -p target/c
cflags=(-std=c11 -O1 -g -Wall -Wextra -Werror -Iinclude)
libs=(-lpthread -ldl -lm)
cc "${cflags[@]}" tests/c/test_capi.c "$lib/libsae_kernels_c.a" "${libs[@]}" -o target/c/test_capi
./target/c/test_capi "$root"
cc "${cflags[@]}" tests/c/test_capi.c -L"$lib" -lsae_kernels_c "${libs[@]}" -o target/c/test_capi_so
LD_LIBRARY_PATH="$lib" ./target/c/test_capi_so "$root" | tail -1 | sed 's/^/shared library: /'
cc "${cflags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
  tests/c/test_capi.c "$lib/libsae_kernels_c.a" "${libs[@]}" -o target/c/test_capi_asan
ASAN_OPTIONS=detect_leaks=1 ./target/c/test_capi_asan "$root" | tail -1 | sed 's/^/ASan+UBSan: /'
# README's C example ("### From C"), compiled and run as shown.
awk '/^### From C/{f=1} f&&/^```c$/{g=1;next} g&&/^```$/{exit} g' ../README.md >target/c/readme_example.c
cc "${cflags[@]}" target/c/readme_example.c "$lib/libsae_kernels_c.a" "${libs[@]}" -o target/c/readme_example
./target/c/readme_example "$root/tests/fixtures/saelens/topk" >target/c/readme_example.out
lines=$(grep -c "^row [01]: feature [0-9]* = " target/c/readme_example.out || true)
[ "$lines" -eq 6 ] || { echo "README C example printed:" >&2; cat target/c/readme_example.out >&2; exit 1; }
echo "README C example: $lines codes printed"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
nostd=(--lib --no-default-features --features panic-handler --target thumbv7em-none-eabihf)
cargo clippy "${nostd[@]}" -- -D warnings
cargo build --release "${nostd[@]}" 2>&1 | grep -v "dropping unsupported crate type" | tail -1
ls -la target/thumbv7em-none-eabihf/release/libsae_kernels_c.a | awk '{print "no_std staticlib: " $5 " bytes"}'
# The argument-checking fuzz target (capi/fuzz) for CAPI_FUZZ_SECONDS from its seeds
# into a scratch corpus. Off by default (0): its AddressSanitizer build of the library
# takes ~8 min on the 2-core machine; tests/args.rs above runs the same driver on
# 8000 seeded cases in every run. Needs cargo-fuzz (stage 53 installs it).
if [ "${CAPI_FUZZ_SECONDS:-0}" -gt 0 ] && cargo fuzz --version >/dev/null 2>&1; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  log="$scratch/fuzz.log"
  (cd fuzz && unset CARGO_TARGET_DIR RUSTFLAGS &&
    timeout 1200 cargo +nightly fuzz run -O -a args "$scratch" seeds/args -- \
      -max_total_time="$CAPI_FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1) || {
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" >&2 || tail -40 "$log" >&2
    echo "capi fuzz: FAILED (reproduce: cd capi/fuzz && cargo +nightly fuzz run -O -a args <file>)" >&2
    exit 1
  }
  echo "capi fuzz args: $(awk '/stat::number_of_executed_units/ {print $2}' "$log") execs, no failure"
else
  echo "capi fuzz: skipped (CAPI_FUZZ_SECONDS=N runs it for N s)"
fi
echo "capi: C ABI tests passed (static, shared, ASan+UBSan) in $((SECONDS - t0)) s"
