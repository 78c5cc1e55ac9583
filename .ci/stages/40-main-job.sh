#!/usr/bin/env bash
# README's main job, exactly as a newcomer runs it (no arguments, built-in toy
# benchmark), into a scratch output folder; fails unless the learned dictionary
# recovers the ground truth (MMCS >= 0.95, the README's stated result) and every
# output file was written.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log="$out/train.log"
cargo run --release --example train -- --out "$out/train" >"$log" 2>&1 || { cat "$log"; exit 1; }
mmcs=$(awk '/MMCS vs ground truth/ {print $NF}' "$log")
for f in model.saek metrics.csv loss_l0.svg feature_frequency.svg; do
  [ -s "$out/train/$f" ] || { echo "main job: $f missing" >&2; exit 1; }
done
awk -v m="${mmcs:-0}" 'BEGIN { exit !(m >= 0.95) }' || {
  echo "main job: MMCS ${mmcs:-?} < 0.95" >&2; cat "$log" >&2; exit 1; }
grep -E "MMCS|FVU|L0 |dead|wall" "$log"
echo "main job: MMCS $mmcs >= 0.95, outputs written"
