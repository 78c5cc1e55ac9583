#!/usr/bin/env python3
"""Turn the SAELens fixtures (tests/fixtures/saelens/<name>: expected.json written by
SAELens itself, sae_weights.safetensors) into plain text the C test reads with fscanf.

Usage: python3 capi/tests/c/gen_fixtures.py [--check]
Writes capi/tests/c/fixtures/<name>.txt; --check fails if any file would change.
Standard library only.

Format (whitespace-separated tokens):
    saek-fixture 1
    name <name>
    dims <n> <d_in> <d_sae>
    arch <0 standard | 1 topk | 2 jumprelu> <k> <apply_b_dec_to_input 0/1>
    <array-name> <count> <values...>     for x, codes, recon (SAELens' outputs)
    and, unless the loader transforms the weights on load (topk with
    rescale_acts_by_decoder_norm), the weights as f32:
    w_enc, b_enc, w_dec, b_dec, threshold (count 0 unless jumprelu)
"""
import json
import math
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "tests" / "fixtures" / "saelens"
OUT = Path(__file__).resolve().parent / "fixtures"


def tensors(path):
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen])
    data = raw[8 + hlen :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        buf = data[a:b]
        dt = t["dtype"]
        if dt == "F32":
            vals = struct.unpack(f"<{len(buf) // 4}f", buf)
        elif dt == "F64":
            vals = struct.unpack(f"<{len(buf) // 8}d", buf)
        elif dt == "F16":
            vals = struct.unpack(f"<{len(buf) // 2}e", buf)
        elif dt == "BF16":
            halves = struct.unpack(f"<{len(buf) // 2}H", buf)
            vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
        else:
            raise SystemExit(f"{path}: unexpected dtype {dt}")
        out[name] = [float(v) for v in vals]
    return out


def f32(v):
    """v rounded to f32, printed so that strtod/strtof gives it back exactly."""
    return repr(struct.unpack("<f", struct.pack("<f", v))[0])


def arr(name, vals, exact_f32=False):
    body = " ".join(f32(v) if exact_f32 else repr(float(v)) for v in vals)
    return f"{name} {len(vals)}\n{body}\n"


def fixture(name):
    d = SRC / name
    cfg = json.loads((d / "cfg.json").read_text())
    e = json.loads((d / "expected.json").read_text())
    arch = cfg.get("architecture")
    if arch is None:  # pre-v6
        act = cfg.get("activation_fn_str", "relu")
        arch = "topk" if act == "topk" else "standard"
        k = cfg.get("activation_fn_kwargs", {}).get("k", 0) if act == "topk" else 0
    else:
        k = cfg.get("k", 0) if arch == "topk" else 0
    code = {"standard": 0, "topk": 1, "jumprelu": 2}[arch]
    apply = 1 if cfg.get("apply_b_dec_to_input", True) else 0
    n, din, dsae = e["n"], cfg["d_in"], cfg["d_sae"]
    text = "saek-fixture 1\n"
    text += f"name {name}\ndims {n} {din} {dsae}\narch {code} {k} {apply}\n"
    text += arr("x", e["x"]) + arr("codes", e["codes"]) + arr("recon", e["recon"])
    if not cfg.get("rescale_acts_by_decoder_norm", False):
        t = tensors(d / "sae_weights.safetensors")
        thr = t.get("threshold")
        if thr is None and "log_threshold" in t:
            thr = [math.exp(v) for v in t["log_threshold"]]
        for key in ["W_enc", "b_enc", "W_dec", "b_dec"]:
            text += arr(key.lower(), t[key], exact_f32=True)
        text += arr("threshold", thr if code == 2 else [], exact_f32=True)
    return text


def main():
    check = "--check" in sys.argv[1:]
    OUT.mkdir(exist_ok=True)
    stale = []
    names = sorted(p.name for p in SRC.iterdir() if (p / "expected.json").exists())
    for name in names:
        text = fixture(name)
        path = OUT / f"{name}.txt"
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    listing = "".join(f"{n}\n" for n in names)
    lpath = OUT / "LIST"
    if not (lpath.exists() and lpath.read_text() == listing):
        if check:
            stale.append(lpath.name)
        else:
            lpath.write_text(listing)
    if stale:
        raise SystemExit(f"stale C fixtures: {stale}; run python3 capi/tests/c/gen_fixtures.py")
    print(f"{len(names)} fixtures: {' '.join(names)}")


if __name__ == "__main__":
    main()
