#!/usr/bin/env python3
"""What the codes' array costs: `encode(x)` (a new array per call) against
`encode(x, out=buf)` (one buffer reused), and optionally another build of the
extension (`--baseline-native PATH`, e.g. an older wheel's
`sae_kernels/_native.abi3.so`) in the same run, at batch 1024 for the shapes of
bench_vs_saelens.py. No torch needed.

    PYTHONPATH=... OMP_NUM_THREADS=1 python python/bench/bench_out.py [--repeats 15]

CPU time per call (time.process_time), best of `--repeats` turns, the contenders in
turns and each after an untimed call (bench_vs_saelens.best_cpu_times). Minor page
faults per call are counted (resource.getrusage) over the timed calls.
"""
import argparse
import os
import resource
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_saelens import best_cpu_times, load_native, write_folder  # noqa: E402


def faults(fn, calls=3):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--baseline-native", default=None, metavar="PATH")
    a = ap.parse_args()
    import sae_kernels

    base_cls = load_native(a.baseline_native) if a.baseline_native else None
    print(f"sae_kernels {sae_kernels.__version__}, CPU time per call, best of {a.repeats}"
          + (f", baseline {a.baseline_native}" if base_cls else ""))
    print()
    print("| (d_in, d_sae) | architecture | batch | codes MB | encode(x) ms | faults | "
          "encode(x, out=buf) ms | faults |" + (" baseline encode(x) ms | faults |" if base_cls else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if base_cls else ""))
    tmp = tempfile.mkdtemp(prefix="saek-bench-out-")
    n = 1024
    for (d, h) in [(384, 3072), (768, 16384)]:
        for arch, k in [("standard", None), ("topk", 32)]:
            path = os.path.join(tmp, f"{arch}_{d}_{h}")
            write_folder(path, d, h, arch, k, seed=d + h)
            ours = sae_kernels.SAE.load(path)
            x = np.random.default_rng(n).standard_normal((n, d), dtype=np.float32)
            buf = np.empty((n, h), dtype=np.float32)
            fns = [lambda: ours.encode(x), lambda: ours.encode(x, out=buf)]
            if base_cls:
                base = base_cls.load(path)
                fns.append(lambda: base.encode(x))
                assert np.array_equal(base.encode(x), ours.encode(x))
            ts = best_cpu_times(fns, a.repeats, 1)
            fl = [faults(f) for f in fns]
            name = arch if k is None else f"topk k={k}"
            cells = " | ".join(f"{t * 1e3:.3f} | {f:.0f}" for t, f in zip(ts, fl))
            print(f"| ({d}, {h}) | {name} | {n} | {buf.nbytes / 1e6:.1f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
