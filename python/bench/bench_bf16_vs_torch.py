#!/usr/bin/env python3
"""Our bf16-compute batch encoder product against PyTorch's bf16 matmul, in one run.

    cargo build --release --example bench
    python python/bench/bench_bf16_vs_torch.py [--rounds 3]

For the shapes (n, d, h) = (4096, 512, 4096) and (1024, 768, 16384), one thread each:
ours is `target/release/examples/bench --bf16-only` (our f32 GEMM and
`gemm_nt_half_bf16_dot`: X rounded to bf16 as it is packed, M stored as bf16, f32
accumulation, `vdpbf16ps` where the CPU has AVX512_BF16); torch is `X @ W` in
float32 and in bfloat16 (torch.set_num_threads(1), CPU time). The two sides are
timed in alternating rounds, so load on the shared machine falls on both alike; each
figure is the best over the rounds. The error columns are ours: bf16 compute against
our f32 result (largest |Δ| over the largest |c|, and RMS(Δ) over RMS(c)).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHAPES = [(4096, 512, 4096), (1024, 768, 16384)]


def torch_rates(torch, reps):
    """Best GFLOP/s of `X @ W` per shape, f32 and bf16 (CPU time)."""
    out = {}
    for (n, d, h) in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=g)
        w = torch.randn(d, h, generator=g)
        flop = 2.0 * n * d * h
        for name, (a, b) in (("f32", (x, w)), ("bf16", (x.bfloat16(), w.bfloat16()))):
            a @ b  # warm-up
            best = float("inf")
            for _ in range(reps):
                t0 = time.process_time()
                a @ b
                best = min(best, time.process_time() - t0)
            out[(n, d, h, name)] = flop / best * 1e-9
    return out


def ours(binary):
    """Our rates and errors per shape, from one `bench --bf16-only` run."""
    res = subprocess.run([binary, "--bf16-only", "--quick"], check=True,
                         capture_output=True, text=True).stdout
    out = {}
    for line in res.splitlines():
        f = line.split()
        if not f or f[0] != "BF16":
            continue
        if f[1] == "n/a":
            sys.exit("this CPU has no AVX512_BF16: nothing to compare")
        n, d, h = map(int, f[1:4])
        out[(n, d, h)] = tuple(map(float, f[4:8]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench", default=os.path.join(ROOT, "target", "release",
                                                     "examples", "bench"))
    args = ap.parse_args()
    if not os.path.exists(args.bench):
        sys.exit(f"{args.bench} not found: cargo build --release --example bench")
    import torch
    torch.set_num_threads(1)
    best_t, best_o = {}, {}
    for _ in range(args.rounds):
        for k, v in torch_rates(torch, 3).items():
            best_t[k] = max(best_t.get(k, 0.0), v)
        for k, v in ours(args.bench).items():
            old = best_o.get(k)
            best_o[k] = v if old is None else (max(old[0], v[0]), max(old[1], v[1]), v[2], v[3])
    print(f"one thread, CPU time, best of {args.rounds} alternating rounds; torch "
          f"{torch.__version__}")
    print(f"{'(n, d, h)':<20} {'ours f32':>9} {'ours bf16':>10} {'bf16/f32':>9} "
          f"{'torch f32':>10} {'torch bf16':>11} {'bf16/f32':>9} {'ours/torch bf16':>16} "
          f"{'max|Δ|/max|c|':>14} {'rms rel':>9}")
    for (n, d, h) in SHAPES:
        o32, o16, emax, erms = best_o[(n, d, h)]
        t32, t16 = best_t[(n, d, h, "f32")], best_t[(n, d, h, "bf16")]
        print(f"{str((n, d, h)):<20} {o32:>9.1f} {o16:>10.1f} {o16 / o32:>8.2f}x "
              f"{t32:>10.1f} {t16:>11.1f} {t16 / t32:>8.2f}x {o16 / t16:>15.2f}x "
              f"{emax:>14.2e} {erms:>9.2e}")
    print("(GFLOP/s, 2·n·d·h per product)")


if __name__ == "__main__":
    main()
