#!/usr/bin/env python3
"""sae_kernels' encode against SAELens' own ``SAE.encode`` (PyTorch on CPU), side by
side in one run, on the same SAELens folders and the same inputs.

    pip install ./python sae-lens          # sae-lens brings torch
    python python/bench/bench_vs_saelens.py [--threads 1] [--quick]

Shapes (d_in, d_sae) = (384, 3072) and (768, 16384), architectures standard and TopK
(k = 32), batches of 1 and 1024 rows of N(0, 1) float32. Both sides get the same
thread count (torch.set_num_threads; sae_kernels is single-threaded). Times are CPU
time (time.process_time) per call including the Python call overhead, the best of
several calls, each after a warm-up call; the contenders of one row are timed in
turns (a few calls of each, then again), so that a load change on the shared machine
hits all of them alike. The codes of both sides are compared too (max relative difference, and
how many rows have a different set of active features).

Ours is timed twice: `encode(x)` (a new array per call, as SAELens returns a new
tensor) and `encode(x, out=buf)` (one buffer reused across calls).
`--baseline-native PATH` also times another build of the extension module
(`sae_kernels/_native.abi3.so` of an older wheel, say) in the same run, for
before/after comparisons. The fixed cost of a call is shown on a (8, 32) model.

The random models above have dense codes (about 46 % of a standard SAE's are
non-zero), unlike trained SAEs (L0 of a few dozen). `--trained DIR... --inputs NPY`
adds rows for trained SAELens folders on real activations (the file's first 1 and
1024 rows), where our encoder's bf16 screen can skip most of the exact work, e.g.

    cargo run --release --example train -- --arch standard --input train.npy --out /tmp/std
    python python/bench/bench_vs_saelens.py --trained /tmp/std/sae --inputs eval.npy

After the table, the batch-1024 rows are set against this core's f32 FMA peak
(`--peak-gflops`, or measured by running `target/release/examples/bench --peak-only`
when that binary exists; build it with `cargo build --release --example bench`): the
encoder's product `X·W_enc` is 2·n·d·h FLOP on both sides, so SAELens' time fixes the
fraction of peak a given speed-up would need from us, and PyTorch's bare `X @ W_enc`
(MKL) in the same run shows how close to peak its GEMM already is.
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

# Neither side uses numpy's BLAS; its idle worker threads showed up in this process's
# CPU time (perf: 3 % of a profile of our encode calls) unless held to one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def write_folder(path, d, h, arch, k, seed):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    w_enc = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32)
    tensors = {
        "W_enc": w_enc,
        "b_enc": (rng.standard_normal(h) * 0.05 - 0.1).astype(np.float32),
        "W_dec": np.ascontiguousarray(w_enc.T),
        "b_dec": (rng.standard_normal(d) * 0.05).astype(np.float32),
    }
    cfg = {"d_in": d, "d_sae": h, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none", "architecture": arch,
           "metadata": {"sae_lens_version": "6.54.12"}}
    if arch == "topk":
        cfg["k"] = k
        cfg["rescale_acts_by_decoder_norm"] = False
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    save_file(tensors, os.path.join(path, "sae_weights.safetensors"))


def best_cpu_times(fns, repeats, inner):
    """Best CPU time per call of each function, timed in turns, each turn after one
    untimed call (the previous contender's weights and arrays have taken the caches;
    without it, whatever runs after SAELens looked up to 1 ms slower at batch 1)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            fn()  # warm-up
            t0 = time.process_time()
            for _ in range(inner):
                fn()
            best[i] = min(best[i], (time.process_time() - t0) / inner)
    return best


def best_cpu_time(fn, repeats, inner):
    return best_cpu_times([fn], repeats, inner)[0]


def load_native(path):
    """Another build of `sae_kernels._native` (its SAE class), under another name."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("saek_baseline._native", path)
    spec = importlib.util.spec_from_file_location("saek_baseline._native", path,
                                                  loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod.SAE


def fma_peak(given):
    """This core's f32 FMA peak in GFLOP/s: given, or from the Rust bench binary."""
    if given:
        return given, "given"
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "target", "release", "examples", "bench")
    try:
        out = subprocess.run([exe, "--peak-only"], capture_output=True, text=True,
                             timeout=120).stdout
    except OSError:
        return None, "not measured (build it: cargo build --release --example bench)"
    m = re.search(r"FMA peak: ([0-9.]+) GFLOP/s", out)
    return (float(m.group(1)), "examples/bench --peak-only, this run") if m else (None, "?")


def timed_row(d, h, name, theirs, ours, base, x, rep, big):
    """One table row: SAELens' `encode` against ours (plain, `out=`, and the baseline
    build's) on the rows `x`; batch-1024 rows are also kept in `big`."""
    import torch

    n = x.shape[0]
    xt = torch.from_numpy(x)
    buf = np.empty((n, h), dtype=np.float32)
    inner = 20 if n == 1 else 1
    fns = [lambda: theirs.encode(xt), lambda: ours.encode(x),
           lambda: ours.encode(x, out=buf)]
    if base:
        fns.append(lambda: base.encode(x))
    ts = best_cpu_times(fns, rep, inner)
    t_sl, t_us, t_out = ts[:3]
    want = theirs.encode(xt).numpy()
    got = ours.encode(x)
    assert np.array_equal(ours.encode(x, out=buf), got)
    rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    other = int(((got != 0) != (want != 0)).any(axis=1).sum())
    l0 = float((got != 0).sum(axis=1).mean())
    bval = f" {ts[3] * 1e3:.3f} |" if base else ""
    print(f"| ({d}, {h}) | {name} | {n} | {l0:.1f} | {t_sl * 1e3:.3f} | {t_us * 1e3:.3f} | "
          f"{t_sl / t_us:.2f}x | {t_out * 1e3:.3f} | {t_sl / t_out:.2f}x |{bval} "
          f"{rel:.1e} | {other} |", flush=True)
    if n == 1024:
        w = theirs.W_enc.detach()
        t_mm = best_cpu_time(lambda: xt @ w, rep, 1)
        big.append((d, h, name, t_sl, t_us, t_out, t_mm))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="this core's f32 FMA peak (default: measure it with examples/bench)")
    ap.add_argument("--baseline-native", default=None, metavar="PATH",
                    help="another build's _native extension file, timed in the same run")
    ap.add_argument("--trained", nargs="*", default=[], metavar="DIR",
                    help="SAELens folders of trained SAEs, also timed, on --inputs")
    ap.add_argument("--inputs", default=None, metavar="NPY",
                    help="activations for --trained (n×d_in .npy, any float dtype; "
                         "the first 1 and 1024 rows)")
    a = ap.parse_args()
    if a.trained and not a.inputs:
        ap.error("--trained needs --inputs")

    import torch
    import sae_lens
    import sae_kernels

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    rep = 2 if a.quick else 5
    base_cls = load_native(a.baseline_native) if a.baseline_native else None
    print(f"torch {torch.__version__}, sae-lens {sae_lens.__version__}, "
          f"sae_kernels {sae_kernels.__version__}, threads {a.threads}, CPU time, best of {rep}"
          + (f", baseline {a.baseline_native}" if base_cls else ""))
    print()
    bcol = " baseline ms |" if base_cls else ""
    print("| (d_in, d_sae) | architecture | batch | L0 | SAELens ms | sae_kernels ms | "
          f"speed-up | with out= ms | speed-up |{bcol} max rel diff | rows with other support |")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if base_cls else "") + "---|---|")
    tmp = tempfile.mkdtemp(prefix="saek-bench-")
    big = []  # batch-1024 rows: (d, h, name, SAELens s, ours s, ours out= s, torch X @ W_enc s)
    for (d, h) in [(384, 3072), (768, 16384)]:
        for arch, k in [("standard", None), ("topk", 32)]:
            path = os.path.join(tmp, f"{arch}_{d}_{h}")
            write_folder(path, d, h, arch, k, seed=d + h)
            theirs = sae_lens.SAE.load_from_disk(path, device="cpu")
            ours = sae_kernels.SAE.load(path)
            base = base_cls.load(path) if base_cls else None
            for n in (1, 1024):
                x = np.random.default_rng(n).standard_normal((n, d), dtype=np.float32)
                name = arch if k is None else f"topk k={k}"
                timed_row(d, h, name, theirs, ours, base, x, rep, big)
    for folder in a.trained:
        theirs = sae_lens.SAE.load_from_disk(folder, device="cpu")
        ours = sae_kernels.SAE.load(folder)
        base = base_cls.load(folder) if base_cls else None
        rows = np.load(a.inputs, mmap_mode="r")
        for n in (1, 1024):
            x = np.ascontiguousarray(rows[:n], dtype=np.float32)
            name = f"{ours.architecture}, trained"
            timed_row(ours.d_in, ours.d_sae, name, theirs, ours, base, x, rep, big)
    tiny = os.path.join(tmp, "standard_8_32")
    write_folder(tiny, 8, 32, "standard", None, seed=1)
    theirs, ours = sae_lens.SAE.load_from_disk(tiny, device="cpu"), sae_kernels.SAE.load(tiny)
    x = np.ones((1, 8), dtype=np.float32)
    xt, buf = torch.from_numpy(x), np.empty((1, 32), dtype=np.float32)
    t_sl, t_us, t_out = best_cpu_times([lambda: theirs.encode(xt), lambda: ours.encode(x),
                                        lambda: ours.encode(x, out=buf)], rep, 2000)
    print(f"| (8, 32) | standard | 1 | | {t_sl * 1e3:.4f} | {t_us * 1e3:.4f} | "
          f"{t_sl / t_us:.2f}x | {t_out * 1e3:.4f} | {t_sl / t_out:.2f}x |"
          + (" |" if base_cls else "") + " | |")
    print("(the last row: the fixed cost of one call, on a model too small to compute much)")
    peak, how = fma_peak(a.peak_gflops)
    print()
    print(f"f32 FMA peak of this core: {peak if peak else '?'} GFLOP/s ({how})")
    print()
    print("| (d_in, d_sae) | architecture | SAELens GFLOP/s | torch X @ W_enc alone | ours | "
          "ours with out= | ours for 1.5x | ours for 2x |")
    print("|---|---|---|---|---|---|---|---|")
    for d, h, name, t_sl, t_us, t_out, t_mm in big:
        flop = 2.0 * 1024 * d * h

        def col(t):
            g = flop / t / 1e9
            return f"{g:.0f}" + (f" ({100 * g / peak:.0f} %)" if peak else "")
        print(f"| ({d}, {h}) | {name} | {col(t_sl)} | {col(t_mm)} | {col(t_us)} | "
              f"{col(t_out)} | {col(t_sl / 1.5)} | {col(t_sl / 2.0)} |")
    print("(GFLOP/s of the encoder product 2·n·d·h, with % of the FMA peak; the last two "
          "columns: the rate our whole encode would need for that speed-up)")


if __name__ == "__main__":
    main()
