#!/usr/bin/env bash
# A newcomer's first hour, in a fresh copy of the committed checkout (git clone of HEAD)
# placed in an empty temporary folder, so no ../shared (or any other file outside the
# repository) is within reach:
#   1. README's two commands: `cargo run --release --example train` and `cargo test`;
#   2. `cargo publish --dry-run` (packages, checks the metadata, builds the .crate's
#      contents) with no warning, then `cargo test` inside the unpacked .crate;
#   3. the encode example as a user runs it: a NaN in the input is an error naming the
#      file, row and column (exit 1), --allow-non-finite lets it through, and --sparse
#      writes a CSR .npz that numpy + scipy (pip-installed into a venv) load and that
#      equals the dense output of the same encode;
#   4. training a dictionary too large for a memory limit (`ulimit -v`) stops with a
#      clean error (exit 1), not an abort.
# Registry dependencies do not depend on where the crate lives, so the copy builds
# into this checkout's target/ (CARGO_TARGET_DIR; override with FRESH_TARGET_DIR)
# and reuses the dependencies the earlier stages compiled; only sae-kernels itself is
# rebuilt. The venv is kept in ~/.cache/sae-kernels-ci (pip's wheel cache too).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$SECONDS
times=""
lap() { times+=" $1 $((SECONDS - t_lap)) s;"; t_lap=$SECONDS; }
t_lap=$SECONDS

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
repo="$tmp/sae-kernels"
git clone -q --no-hardlinks "$root" "$repo"
git -C "$repo" checkout -q --detach "$(git -C "$root" rev-parse HEAD)"
[ ! -e "$tmp/shared" ] && [ ! -e "$repo/shared" ] || { echo "fresh clone: shared/ is reachable" >&2; exit 1; }
export CARGO_TARGET_DIR="${FRESH_TARGET_DIR:-$root/target}"
unset SAE_GOLDEN_DIR SAE_KERNEL RUSTFLAGS
cd "$repo"
lap clone

# 1. README's two commands.
log="$tmp/train.log"
cargo run --release --example train -- --out "$tmp/train" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
mmcs=$(grep -oE 'MMCS vs ground truth +[0-9.]+' "$log" | awk '{print $NF}')
echo "fresh clone: train ok (MMCS ${mmcs:-?})"
lap train
log="$tmp/test.log"
cargo test >"$log" 2>&1 || { tail -60 "$log" >&2; echo "fresh clone: cargo test FAILED" >&2; exit 1; }
tests=$(grep -oE '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s+0}')
grep -q "golden: [0-9]* cases passed" "$log" || grep -q "test golden_cases_match_jax ... ok" "$log" \
  || { echo "fresh clone: the golden test did not run" >&2; exit 1; }
echo "fresh clone: cargo test ok ($tests tests passed)"
lap "cargo test"

# 2. The package: metadata without warnings, contents that test green.
log="$tmp/publish.log"
cargo publish --dry-run >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
if grep -v "aborting upload due to dry run" "$log" | grep -qi "^warning"; then
  cat "$log" >&2; echo "package: cargo publish --dry-run warns" >&2; exit 1
fi
files=$(cargo package --list 2>/dev/null | wc -l)
pkg="$CARGO_TARGET_DIR/package/sae-kernels-$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)"
log="$tmp/package-test.log"
(cd "$pkg" && cargo test) >"$log" 2>&1 || { tail -60 "$log" >&2; echo "package: cargo test in $pkg FAILED" >&2; exit 1; }
ptests=$(grep -oE '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s+0}')
echo "package: $files files, publish --dry-run clean, $ptests tests passed in the unpacked .crate"
lap package

# 3. The encode example with Python's own readers.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sae-kernels-ci/venv"
if ! "$venv/bin/python" -c "import numpy, scipy" 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 keeps ensurepip in a separate package.
    rm -rf "$venv"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check numpy scipy
fi
py="$venv/bin/python"
lap venv
enc="$CARGO_TARGET_DIR/debug/examples/encode"   # built by `cargo test` above
[ -x "$enc" ] || cargo build -q --example encode
sae=tests/fixtures/saelens/standard
d_in=$("$py" -c "import json; print(json.load(open('$sae/cfg.json'))['d_in'])")
"$py" - "$tmp" "$d_in" <<'EOF'
import sys, numpy as np
tmp, d = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((777, d)).astype(np.float32)
np.save(f"{tmp}/x.npy", x)
x[612, d - 2] = np.nan
np.save(f"{tmp}/x_nan.npy", x)
EOF
"$enc" --sae "$sae" --input "$tmp/x.npy" --output "$tmp/dense.npy"
"$enc" --sae "$sae" --input "$tmp/x.npy" --output "$tmp/codes.npz" --sparse --chunk 100
"$py" - "$tmp" <<'EOF'
import sys, numpy as np, scipy.sparse
tmp = sys.argv[1]
dense = np.load(f"{tmp}/dense.npy")
z = np.load(f"{tmp}/codes.npz")
assert z["indptr"].dtype == np.int64 and z["data"].dtype == np.float32, z["indptr"].dtype
assert np.issubdtype(z["indices"].dtype, np.integer), z["indices"].dtype
assert list(z["shape"]) == list(dense.shape), (z["shape"], dense.shape)
codes = scipy.sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=z["shape"])
assert codes.nnz == np.count_nonzero(dense) > 0, (codes.nnz, np.count_nonzero(dense))
assert np.array_equal(codes.toarray(), dense), "CSR codes differ from the dense codes"
assert np.array_equal(scipy.sparse.load_npz(f"{tmp}/codes.npz").toarray(), dense)
print(f"encode --sparse: scipy reads {codes.shape} with {codes.nnz} non-zeros, equal to the dense output")
EOF
status=0
"$enc" --sae "$sae" --input "$tmp/x_nan.npy" --output "$tmp/nan.npy" 2>"$tmp/nan.err" || status=$?
msg=$(cat "$tmp/nan.err")
if [ "$status" -ne 1 ] || [[ "$msg" != *"x_nan.npy"*"row 612, column $((d_in - 2))"* ]] || [ -e "$tmp/nan.npy" ]; then
  echo "encode with a NaN input: expected exit 1 naming the file, row 612, column $((d_in - 2)); got $status: $msg" >&2
  exit 1
fi
echo "encode with a NaN input: exit 1, $msg"
"$enc" --sae "$sae" --input "$tmp/x_nan.npy" --output "$tmp/nan.npz" --sparse --allow-non-finite >/dev/null
"$py" -c "
import numpy as np, scipy.sparse
c = scipy.sparse.load_npz('$tmp/nan.npz').toarray()
rows = sorted(set(np.nonzero(np.isnan(c))[0]))
assert rows == [612], rows
print('encode --allow-non-finite: NaN propagates to row 612 only')"
lap encode

# 4. A model too large for the memory limit is an error, not an abort.
train="$CARGO_TARGET_DIR/release/examples/train"
status=0
(ulimit -v 3000000; exec "$train" --hidden 1000000 --steps 1 --out "$tmp/big") >"$tmp/big.log" 2>&1 || status=$?
if [ "$status" -ne 1 ] || ! grep -q "cannot allocate" "$tmp/big.log"; then
  echo "train --hidden 1000000 under ulimit -v 3000000: expected exit 1 with 'cannot allocate', got $status:" >&2
  cat "$tmp/big.log" >&2
  exit 1
fi
echo "train --hidden 1000000 under ulimit -v: exit 1, $(grep -m1 "cannot allocate" "$tmp/big.log")"
lap ulimit

echo "fresh clone (no ../shared): train + cargo test ($tests tests), package ($ptests tests), encode checks;${times} total $((SECONDS - t0)) s"
