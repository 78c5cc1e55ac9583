#!/usr/bin/env python3
"""The TopK encoder with and without its bf16 screen, side by side in one process.

    pip install ./python
    python python/bench/bench_topk_screen.py [--rounds 8]

For TopK (k = 32) SAEs of shape (d_in, d_sae) = (384, 3072), (768, 16384) and
(768, 24576) with SAELens-like random weights (the folders of bench_vs_saelens.py),
`encode(x, out=buf)`, `encode_sparse(x, k=32)` and `encode_sparse(x)` on a batch of
1024 N(0, 1) rows are timed with the screen on
(the default where the CPU has fast AVX512_BF16, h >= 80·k and d >= 128) and off
(`sae_kernels.set_bf16_screen(False)`), in alternating calls, so
that load on the shared machine falls on both alike; each figure is the best CPU time
over the rounds. The two outputs are checked to be equal bit for bit.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_saelens import write_folder  # noqa: E402

SHAPES = [(384, 3072), (768, 16384), (768, 24576)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--rows", type=int, default=1024)
    a = ap.parse_args()

    import sae_kernels

    print(f"batch {a.rows}, TopK k=32, best CPU time of {a.rounds} alternating rounds")
    print("| (d_in, d_sae) | call | screen on (ms) | screen off (ms) | off / on | same output |")
    print("|---|---|---|---|---|---|")
    for d, h in SHAPES:
        with tempfile.TemporaryDirectory() as tmp:
            write_folder(tmp, d, h, "topk", 32, 0)
            sae = sae_kernels.SAE.load(tmp)
        x = np.random.default_rng(1).standard_normal((a.rows, d)).astype(np.float32)
        bufs = {on: np.empty((a.rows, h), np.float32) for on in (True, False)}
        calls = [
            ("encode(x, out=)", lambda on: sae.encode(x, out=bufs[on])),
            ("encode_sparse(x, k=32)", lambda on: sae.encode_sparse(x, k=32)),
            ("encode_sparse(x)", lambda on: sae.encode_sparse(x)),
        ]
        for name, call in calls:
            best = {True: float("inf"), False: float("inf")}
            got = {}
            for _ in range(a.rounds):
                for on in (True, False):
                    sae_kernels.set_bf16_screen(on)
                    t0 = time.process_time()
                    got[on] = call(on)
                    best[on] = min(best[on], time.process_time() - t0)
            sae_kernels.set_bf16_screen(True)
            parts = [got[True]] if isinstance(got[True], np.ndarray) else list(got[True])
            other = [got[False]] if isinstance(got[False], np.ndarray) else list(got[False])
            same = all(np.array_equal(np.asarray(p).view(np.uint8), np.asarray(q).view(np.uint8))
                       for p, q in zip(parts, other))
            print(f"| ({d}, {h}) | `{name}` | {best[True] * 1e3:.1f} | {best[False] * 1e3:.1f} | "
                  f"{best[False] / best[True]:.2f}x | {'yes' if same else 'NO'} |")
            if not same:
                sys.exit("the screened output differs from the plain one")


if __name__ == "__main__":
    main()
