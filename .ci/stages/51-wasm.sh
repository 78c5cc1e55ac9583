#!/usr/bin/env bash
# The test suite on wasm32-wasip1 under Node's WASI (tools/node-wasi-run.mjs), once
# without and once with simd128 (separate target directories), then the kernel tests
# with relaxed SIMD.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$SECONDS

rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "wasm: Node.js >= 20 is needed for node:wasi (found ${node_major})" >&2
  exit 1
fi
export CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $root/tools/node-wasi-run.mjs"

# Every integration test. Tests that write files use CARGO_TARGET_TMPDIR (inside the
# crate, which the runner opens), not std::env::temp_dir() (unavailable on WASI).
args=(--lib)
for f in tests/*.rs; do
  args+=(--test "$(basename "$f" .rs)")
done

run() { # run LABEL RUSTFLAGS
  local label=$1 flags=$2 t=$SECONDS status=0 log="$root/target/wasm-$1.log"
  CARGO_TARGET_DIR="$root/target/wasm-$label" RUSTFLAGS="$flags" \
    timeout 1200 cargo test --target wasm32-wasip1 "${args[@]}" >"$log" 2>&1 \
    || status=$?
  grep -E '^(test result|     Running)' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "wasm ($label): FAILED (status $status), see $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  local n
  n=$(grep -oE '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s+0}')
  summary+=" $label: $n tests passed in $((SECONDS - t)) s;"
}
mkdir -p target
summary=""
run scalar ""
run simd128 "-C target-feature=+simd128"
# Relaxed SIMD (feature `relaxed-simd`: the portable kernel's multiply-adds become
# f32x4.relaxed_madd): unit tests, GEMM property tests and golden cases. Node 20 needs
# --experimental-wasm-relaxed-simd; later versions have it on by default.
relaxed_flag=""
if node --no-warnings --experimental-wasm-relaxed-simd -e 0 >/dev/null 2>&1; then
  relaxed_flag="--experimental-wasm-relaxed-simd"
fi
export CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $relaxed_flag $root/tools/node-wasi-run.mjs"
args=(--features relaxed-simd --lib --test gemm_props --test golden)
run relaxed "-C target-feature=+simd128,+relaxed-simd"
echo "wasm32-wasip1 (node $(node --version)):${summary} total $((SECONDS - t0)) s"
