#!/usr/bin/env bash
# README's main job, exactly as a newcomer runs it (no arguments, built-in toy
# benchmark), into a scratch output folder; fails unless the learned dictionary
# recovers the ground truth (MMCS >= 0.95, the README's stated result) and every
# output file was written (including the SAELens folder). Then the untied
# architectures on real activations when ../shared/realdata is there (a short run:
# the full comparison with SAELens is README's "Real data" command), and the CLI's
# handling of a negative flag value.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log="$out/train.log"
cargo run --release --example train -- --out "$out/train" >"$log" 2>&1 || { cat "$log"; exit 1; }
mmcs=$(awk '/MMCS vs ground truth/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }' "$log")
for f in model.saek metrics.csv loss_l0.svg feature_frequency.svg sae/cfg.json sae/sae_weights.safetensors; do
  [ -s "$out/train/$f" ] || { echo "main job: $f missing" >&2; exit 1; }
done
awk -v m="${mmcs:-0}" 'BEGIN { exit !(m >= 0.95) }' || {
  echo "main job: MMCS ${mmcs:-?} < 0.95" >&2; cat "$log" >&2; exit 1; }
grep -E "MMCS|FVU|L0 |dead|wall" "$log"
echo "main job: MMCS $mmcs >= 0.95, outputs written"

# A negative number is a flag value, rejected with the intended message.
msg=$(cargo run --release --example train -- --alpha -1 2>&1 >/dev/null || true)
echo "$msg" | grep -q -- "--alpha must be finite and >= 0, got -1" || {
  echo "main job: --alpha -1 gave: $msg" >&2; exit 1; }

real=../shared/realdata
if [ -f "$real/minilm_l5_train.npy" ]; then
  for arch in standard topk jumprelu; do
    cargo run --release --example train -- --arch "$arch" --input "$real/minilm_l5_train.npy" \
      --eval "$real/minilm_l5_eval.npy" --hidden 768 --batch 256 --steps 40 --eval-every 40 \
      --out "$out/$arch" >"$out/$arch.log" 2>&1 || { cat "$out/$arch.log"; exit 1; }
    fvu=$(awk '/^  FVU/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }' "$out/$arch.log")
    grep -q '"architecture": *"'"$arch"'"' "$out/$arch/sae/cfg.json" || {
      echo "main job: $arch cfg.json lacks its architecture" >&2; cat "$out/$arch/sae/cfg.json" >&2; exit 1; }
    awk -v f="${fvu:-9}" 'BEGIN { exit !(f < 0.9) }' || {
      echo "main job: $arch on real data: FVU ${fvu:-?} after 40 steps" >&2; cat "$out/$arch.log" >&2; exit 1; }
    echo "main job: $arch on real activations (40 steps, h = 768): FVU $fvu, SAELens folder written"
    # Where SAELens is installed, it must load the folder and measure the same FVU.
    py=${SAE_LENS_PYTHON:-python3}
    if "$py" -c "import sae_lens" 2>/dev/null; then
      theirs=$("$py" .ci/saelens_eval.py "$out/$arch/sae" "$real/minilm_l5_eval.npy" | awk '{print $(NF-2)}')
      awk -v a="$fvu" -v b="$theirs" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }' || {
        echo "main job: SAELens measures FVU $theirs for the $arch folder, we $fvu" >&2; exit 1; }
      echo "main job: SAELens loads the $arch folder and measures FVU $theirs"
    fi
  done
fi
