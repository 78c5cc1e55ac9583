"""The Dask example (python/examples/dask_encode.py) run as a user runs it: a local
cluster of 2 worker processes encodes 5 shards; every output must equal the
single-process encoding of the same shard bit for bit (same chunking), load with
scipy, and agree with the dense codes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sae_kernels import SAE

pytest.importorskip("dask.distributed")
scipy_sparse = pytest.importorskip("scipy.sparse")

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "dask_encode.py"
SAE_DIR = HERE.parents[1] / "tests" / "fixtures" / "saelens" / "topk"

sys.path.insert(0, str(EXAMPLE.parent))
import dask_encode  # noqa: E402


@pytest.mark.parametrize("k", [None, 2])
def test_two_workers_match_single_process(tmp_path, k):
    sae = SAE.load(SAE_DIR)
    rng = np.random.default_rng(11)
    shards = []
    for i, rows in enumerate([1000, 1, 2500, 777, 64]):
        path = tmp_path / f"acts_{i:03d}.npy"
        np.save(path, rng.standard_normal((rows, sae.d_in), dtype=np.float32))
        shards.append(path)
    out = tmp_path / "codes"
    args = [sys.executable, str(EXAMPLE), "--sae", str(SAE_DIR), "--out", str(out),
            "--workers", "2", "--chunk-rows", "300"]
    if k is not None:
        args += ["--k", str(k)]
    proc = subprocess.run(args + [str(s) for s in shards], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 shards, 4342 rows" in proc.stdout, proc.stdout
    for shard in shards:
        x = np.load(shard)
        got = np.load(dask_encode.output_path(str(out), str(shard)))
        ip, ix, vs = dask_encode.encode_array(sae, x, k=k, chunk_rows=300)
        assert np.array_equal(got["indptr"], ip)
        assert np.array_equal(got["indices"], ix)
        assert np.array_equal(got["data"], vs)
        m = scipy_sparse.load_npz(dask_encode.output_path(str(out), str(shard)))
        assert m.shape == (x.shape[0], sae.d_sae)
        dense = sae.encode(x)
        if k is None:
            assert np.allclose(m.toarray(), dense, rtol=1e-6, atol=1e-6)
        else:
            assert (np.diff(m.indptr) <= k).all()
    assert not list(out.glob("*.tmp.npz"))
