"""Load a SAELens folder written by `cargo run --example train -- --out DIR` with SAELens
itself and evaluate it on an .npy of activations with the definitions of
../shared/realdata/README.md (FVU against the per-coordinate mean of the evaluated rows,
L0 = mean non-zero codes per row; float64 sums), so its numbers can be put next to the
ones the train example printed.

  python saelens_eval.py DIR/sae eval.npy [--rows N]

Needs: pip install sae-lens (it brings torch).
"""
import argparse
import os

os.environ.setdefault("WANDB_MODE", "disabled")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sae_lens import SAE  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("npy")
    ap.add_argument("--rows", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sae = SAE.load_from_disk(a.folder, device="cpu")
    x = np.load(a.npy).astype(np.float32)
    if a.rows:
        x = x[: a.rows]
    err = 0.0
    l0 = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 4096):
            xb = torch.from_numpy(x[i : i + 4096])
            f = sae.encode(xb)
            r = sae.decode(f)
            err += float(((xb - r).double() ** 2).sum())
            l0 += float((f > 0).double().sum())
    var = float(((x.astype(np.float64) - x.astype(np.float64).mean(0)) ** 2).sum())
    print(f"SAELens {type(sae).__name__} on {len(x)} rows: FVU {err / var:.4f}  L0 {l0 / len(x):.2f}")


if __name__ == "__main__":
    main()
