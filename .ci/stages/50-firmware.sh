#!/usr/bin/env bash
# Cortex-M4F firmware under QEMU (mps2-an386): trains a tied SAE in static buffers
# with no allocator and checks it against the host's values (tests/firmware/), then
# runs the d=64/h=256 size probes. Installs qemu-system-arm and the target if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$SECONDS

if ! command -v qemu-system-arm >/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
fi
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

export CARGO_TARGET_DIR="$root/target/firmware"
cd tests/firmware
# The runner (qemu) is set in tests/firmware/.cargo/config.toml; a hung image would
# never exit, hence the timeouts.
timeout 900 cargo test --release
timeout 600 cargo build --release --bins
out="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release"
qemu=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic
      -semihosting-config enable=on,target=native -kernel)
for bin in size_forward size_train; do
  timeout 120 "${qemu[@]}" "$out/$bin"
done

sizes=""
if command -v llvm-size >/dev/null; then
  for bin in size_forward size_train; do
    # flash = .vector_table + .text + .rodata + .data; static RAM = .data + .bss + .uninit
    sizes+=$(llvm-size -A "$out/$bin" | awk -v b="$bin" '
      $1 ~ /^\.(vector_table|text|rodata)$/ {f += $2}
      $1 == ".data" {f += $2; r += $2}
      $1 ~ /^\.(bss|uninit)$/ {r += $2}
      END {printf " %s: flash %.1f KiB, static RAM %.1f KiB;", b, f/1024, r/1024}')
  done
fi
echo "firmware: QEMU train_sae passed, size probes ran;${sizes} $((SECONDS - t0)) s"
