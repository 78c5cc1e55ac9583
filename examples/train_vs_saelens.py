#!/usr/bin/env python3
"""Time per training step, sae-kernels against SAELens, printed as one table.

    cargo build --release --example train
    python examples/train_vs_saelens.py --input train.npy --eval eval.npy [--arch standard,topk]

Needs `pip install sae-lens` (it brings torch). For each architecture, in one process:

1. SAELens' own step on a fresh model (batch 1024 of N(0, 1) rows, d from the input, h = 8·d):
   `training_forward_pass`, the fired-latent bookkeeping, `loss.backward()`,
   `clip_grad_norm_(1.0)`, Adam's step and `zero_grad`, as SAELens' trainer runs them. Its
   cost does not depend on the density of the codes (every product is dense), so a fresh
   model on random rows times it fairly. Best and median over `--reps` timings of at least
   0.5 s each, per-process CPU time.
2. Our whole run: `target/release/examples/train --arch A --input … --eval … --time-steps N`,
   which trains on the real rows and prints the mean CPU time per step over all N steps (our
   sparse path gets faster as the codes get sparser; the mean is what a user waits for).
3. SAELens' step again, so that a change of load during the run shows up as a spread.

The ratio is ours / SAELens (best and median of both SAELens timings pooled). Both sides run
on one thread (`torch.set_num_threads(1)`; our binary is single-threaded unless built with
the `parallel` feature). On a shared machine run it when it is quiet: the two sides are
minutes apart, and the table says how far SAELens' own timings moved in between.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("WANDB_MODE", "disabled")


def saelens_step_times(arch, n, d, h, k, reps):
    """Per-step CPU seconds of SAELens' training step, `reps` timings of >= 0.5 s each."""
    import torch
    from sae_lens import (
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import TrainStepInput

    torch.manual_seed(0)
    if arch == "standard":
        cfg = StandardTrainingSAEConfig(
            d_in=d, d_sae=h, dtype="float32", device="cpu", l1_coefficient=1.0
        )
        sae, coefficients = StandardTrainingSAE(cfg), {"l1": 1.0}
    else:
        cfg = TopKTrainingSAEConfig(d_in=d, d_sae=h, k=k, dtype="float32", device="cpu")
        sae, coefficients = TopKTrainingSAE(cfg), {}
    sae.train()
    x = torch.randn(n, d)
    adam = torch.optim.Adam(sae.parameters(), lr=1e-3)
    silent = torch.zeros(h)

    def one_step():
        out = sae.training_forward_pass(
            step_input=TrainStepInput(
                sae_in=x,
                coefficients=coefficients,
                dead_neuron_mask=silent > 1000,
                n_training_steps=0,
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            fired = (out.feature_acts > 0).any(0)
            silent.add_(1)
            silent[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        adam.step()
        adam.zero_grad()

    one_step()
    one_step()
    times = []
    for _ in range(reps):
        calls, start = 0, time.process_time()
        while True:
            one_step()
            calls += 1
            spent = time.process_time() - start
            if spent >= 0.5:
                break
        times.append(spent / calls)
    return times


def ours(binary, arch, input_path, eval_path, steps, k):
    """Run our trainer's timing mode; returns (mean CPU ms over all steps, its output line)."""
    cmd = [binary, "--arch", arch, "--input", input_path, "--time-steps", str(steps)]
    if eval_path:
        cmd += ["--eval", eval_path]
    if arch == "topk":
        cmd += ["--k", str(k)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"mean over all \d+ steps \(CPU ([0-9.]+)\)", out)
    if not m:
        sys.exit(f"unexpected output from {' '.join(cmd)}:\n{out}")
    lines = [l.strip() for l in out.splitlines() if l.startswith(("sae-kernels", "  CPU"))]
    return float(m.group(1)), lines


def input_dim(path):
    import numpy as np

    shape = np.load(path, mmap_mode="r").shape
    if len(shape) != 2:
        sys.exit(f"{path}: expected a 2-D array, found shape {shape}")
    return shape[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True, help="2-D .npy training activations")
    ap.add_argument("--eval", help="2-D .npy held-out activations (passed to train)")
    ap.add_argument("--arch", default="standard,topk", help="comma-separated: standard, topk")
    ap.add_argument("--steps", type=int, default=2000, help="our timed steps (default 2000)")
    ap.add_argument("--batch", type=int, default=1024, help="rows per step (train's default)")
    ap.add_argument("--k", type=int, default=32, help="TopK: active features per row")
    ap.add_argument("--reps", type=int, default=10, help="SAELens timings per bracket")
    ap.add_argument(
        "--binary",
        default=os.path.join("target", "release", "examples", "train"),
        help="our train example (cargo build --release --example train)",
    )
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} not found: run `cargo build --release --example train` first")
    import torch

    torch.set_num_threads(1)
    d = input_dim(a.input)
    h = 8 * d
    rows = []
    for arch in a.arch.split(","):
        if arch not in ("standard", "topk"):
            sys.exit(f"--arch: unknown architecture {arch!r} (standard, topk)")
        before = saelens_step_times(arch, a.batch, d, h, a.k, a.reps)
        mean_ms, lines = ours(a.binary, arch, a.input, a.eval, a.steps, a.k)
        for line in lines:
            print(line, flush=True)
        after = saelens_step_times(arch, a.batch, d, h, a.k, a.reps)
        both = [t * 1e3 for t in before + after]
        best, median = min(both), statistics.median(both)
        spread = (min(before) * 1e3, min(after) * 1e3)
        rows.append((arch, best, median, spread, mean_ms))
    print()
    print(f"time per training step, one thread, CPU time, batch {a.batch}, d = {d}, h = {h}")
    print(
        "| architecture | SAELens best / median (best before, after) | sae-kernels, "
        f"mean over {a.steps} steps | ratio to best / median |"
    )
    print("|---|---|---|---|")
    for arch, best, median, (b0, b1), mean_ms in rows:
        name = f"TopK k = {a.k}" if arch == "topk" else "standard"
        print(
            f"| {name} | {best:.1f} / {median:.1f} ms ({b0:.1f}, {b1:.1f}) | {mean_ms:.1f} ms "
            f"| {mean_ms / best:.3f} / {mean_ms / median:.3f} |"
        )


if __name__ == "__main__":
    main()
