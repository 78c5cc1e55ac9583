"""Tests of the sae_kernels Python package.

The references are SAELens' own outputs: tests/fixtures/saelens/<name>/expected.json,
written by SAELens 6.54.12 (tests/fixtures/saelens/gen_fixtures.py) for the folders
beside it. Tolerance as in the Rust test (tests/saelens.rs): max|ours - SAELens| /
max|SAELens| <= 1e-5, and the same set of non-zero codes.

If sae-lens itself is importable, ``test_against_sae_lens_itself`` also compares with
``SAE.load_from_disk(dir).encode`` on fresh random inputs.
"""

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import sae_kernels
from sae_kernels import SAE

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "saelens"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())
TOL = 1e-5


def expected(name):
    e = json.loads((FIXTURES / name / "expected.json").read_text())
    n = e["n"]
    x = np.asarray(e["x"], dtype=np.float32).reshape(n, -1)
    codes = np.asarray(e["codes"], dtype=np.float64).reshape(n, -1)
    recon = np.asarray(e["recon"], dtype=np.float64).reshape(n, -1)
    return x, codes, recon


def rel_err(got, want):
    scale = np.abs(want).max()
    assert scale > 0
    return float(np.abs(got.astype(np.float64) - want).max() / scale)


def top_k_reference(dense, k):
    """The k largest positive codes per row (ties: lower index), as a dense array."""
    out = np.zeros_like(dense)
    for i, row in enumerate(dense):
        pos = np.flatnonzero(row > 0)
        # Sort by value descending, then index ascending.
        order = sorted(pos, key=lambda j: (-row[j], j))[:k]
        out[i, order] = row[order]
    return out


def test_fixtures_present():
    assert len(NAMES) >= 8, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_reproduces_saelens_encode_and_decode(name):
    sae = SAE.load(FIXTURES / name)
    x, want_codes, want_recon = expected(name)
    assert (sae.d_in, sae.d_sae) == (x.shape[1], want_codes.shape[1])
    codes = sae.encode(x)
    assert codes.dtype == np.float32 and codes.shape == want_codes.shape
    assert rel_err(codes, want_codes) <= TOL
    assert np.array_equal(codes != 0, want_codes != 0), "active features differ"
    # One row at a time (batches of <= 4 rows take the small-batch path).
    rows = np.concatenate([sae.encode(x[i : i + 1]) for i in range(len(x))])
    assert rel_err(rows, want_codes) <= TOL
    assert np.array_equal(rows != 0, want_codes != 0)
    recon = sae.decode(want_codes.astype(np.float32))
    assert recon.dtype == np.float32 and recon.shape == want_recon.shape
    assert rel_err(recon, want_recon) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_sparse_matches_dense(name):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    sae = SAE.load(FIXTURES / name)
    x, want_codes, want_recon = expected(name)
    dense = sae.encode(x)
    indptr, indices, values = sae.encode_sparse(x)
    assert (indptr.dtype, indices.dtype, values.dtype) == (np.int64, np.int32, np.float32)
    m = scipy_sparse.csr_matrix((values, indices, indptr), shape=dense.shape)
    assert m.has_sorted_indices
    assert np.array_equal(m.toarray(), dense)
    assert m.nnz == np.count_nonzero(dense)
    for k in (1, 2, 3, 100):
        ip, ix, vs = sae.encode_sparse(x, k=k)
        mk = scipy_sparse.csr_matrix((vs, ix, ip), shape=dense.shape)
        assert np.array_equal(mk.toarray(), top_k_reference(dense, k)), k
    # Decoding SAELens' codes from CSR, directly and as a scipy matrix.
    ref = scipy_sparse.csr_matrix(want_codes.astype(np.float32))
    assert rel_err(sae.decode_sparse(ref.indptr, ref.indices, ref.data), want_recon) <= TOL
    assert rel_err(sae.decode(ref), want_recon) <= TOL
    assert np.allclose(sae.decode(m), sae.decode(dense), rtol=0, atol=1e-5)


def test_properties():
    sae = SAE.load(FIXTURES / "topk")
    assert (sae.d_in, sae.d_sae, sae.architecture, sae.k) == (8, 32, "topk", 4)
    assert sae.apply_b_dec_to_input is True
    assert "topk" in repr(sae)
    sae = SAE.load(str(FIXTURES / "jumprelu_f16"))
    assert (sae.architecture, sae.k, sae.apply_b_dec_to_input) == ("jumprelu", None, False)
    assert SAE.load(FIXTURES / "standard").architecture == "standard"
    assert isinstance(sae_kernels.__version__, str)


def random_sae(d, h, seed=0, **kw):
    rng = np.random.default_rng(seed)
    w_enc = rng.standard_normal((d, h), dtype=np.float32) / np.float32(np.sqrt(d))
    w_dec = np.ascontiguousarray(w_enc.T)
    b_enc = rng.standard_normal(h, dtype=np.float32) * np.float32(0.1)
    b_dec = rng.standard_normal(d, dtype=np.float32) * np.float32(0.1)
    return SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, **kw), (w_enc, b_enc, w_dec, b_dec)


def numpy_encode(x, w, architecture="standard", k=None, threshold=None, apply=True):
    w_enc, b_enc, w_dec, b_dec = (a.astype(np.float64) for a in w)
    xc = x.astype(np.float64) - (b_dec if apply else 0)
    pre = xc @ w_enc + b_enc
    if architecture == "standard":
        return np.maximum(pre, 0)
    if architecture == "jumprelu":
        return np.where(pre > threshold, np.maximum(pre, 0), 0)
    out = np.zeros_like(pre)
    for i, row in enumerate(pre):
        keep = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        out[i, keep] = np.maximum(row[keep], 0)
    return out


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_from_arrays_matches_numpy(arch):
    d, h, n = 24, 96, 37
    kw = {}
    thr = None
    if arch == "topk":
        kw = {"architecture": "topk", "k": 5}
    elif arch == "jumprelu":
        thr = np.full(96, 0.3, dtype=np.float32)
        kw = {"architecture": "jumprelu", "threshold": thr}
    sae, w = random_sae(d, h, seed=3, **kw)
    assert sae.architecture == arch
    x = np.random.default_rng(1).standard_normal((n, d), dtype=np.float32)
    want = numpy_encode(x, w, arch, kw.get("k"), thr)
    got = sae.encode(x)
    assert rel_err(got, want) <= TOL
    recon = sae.decode(got)
    want_recon = got.astype(np.float64) @ w[2].astype(np.float64) + w[3]
    assert rel_err(recon, want_recon) <= TOL


def test_topk_screen_gives_the_plain_bits():
    """TopK with h >= 80·k, d >= 128 is screened in bf16 where the CPU has fast AVX512_BF16; the
    codes must be the unscreened ones bit for bit (``set_bf16_screen(False)`` turns the
    screen off). On other CPUs both calls take the plain path and agree trivially."""
    d, h, n, k = 128, 2048, 80, 8
    sae, w = random_sae(d, h, seed=5, architecture="topk", k=k)
    x = np.random.default_rng(2).standard_normal((n, d), dtype=np.float32) * 3
    assert sae_kernels.bf16_screen()
    screened = sae.encode(x)
    sae_kernels.set_bf16_screen(False)
    try:
        assert not sae_kernels.bf16_screen()
        plain = sae.encode(x)
    finally:
        sae_kernels.set_bf16_screen(True)
    assert np.array_equal(screened.view(np.uint32), plain.view(np.uint32))
    assert ((screened > 0).sum(axis=1) <= k).all()
    want = numpy_encode(x, w, "topk", k, None)
    assert rel_err(screened, want) <= TOL


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_threshold_screen_gives_the_plain_bits(arch):
    """Standard and JumpReLU SAEs whose codes are sparse, as trained ones are (here a
    bias of -2.3 leaves about 1 % of the pre-activations positive), are screened in
    bf16 where the CPU has fast AVX512_BF16 and d_sae >= 2048; the codes must be the
    unscreened ones bit for bit. On other CPUs both calls take the plain path."""
    d, h, n = 128, 2048, 64
    rng = np.random.default_rng(7)
    w_enc = rng.standard_normal((d, h), dtype=np.float32) / np.float32(np.sqrt(d))
    b_enc = np.full(h, -2.3, np.float32)
    w_dec = np.ascontiguousarray(w_enc.T)
    b_dec = np.zeros(d, np.float32)
    kw = {"architecture": arch}
    thr = None
    if arch == "jumprelu":
        thr = rng.uniform(0.0, 0.5, h).astype(np.float32)
        kw["threshold"] = thr
    sae = SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, **kw)
    x = rng.standard_normal((n, d), dtype=np.float32)
    screened = sae.encode(x)
    sae_kernels.set_bf16_screen(False)
    try:
        plain = sae.encode(x)
    finally:
        sae_kernels.set_bf16_screen(True)
    assert np.array_equal(screened.view(np.uint32), plain.view(np.uint32))
    assert 0 < (screened > 0).sum() < 0.05 * n * h
    want = numpy_encode(x, (w_enc, b_enc, w_dec, b_dec), arch, None, thr)
    assert rel_err(screened, want) <= TOL


@pytest.mark.parametrize("arch", ["standard", "topk"])
def test_new_codes_array_is_fully_written(arch):
    """`encode` returns an uninitialised array that it fills: freeing a NaN-filled
    array of the same size first makes the allocator hand that memory back, so any
    element left unwritten would show as NaN."""
    kw = {"architecture": "topk", "k": 9} if arch == "topk" else {}
    sae, w = random_sae(16, 4096, seed=8, **kw)
    x = np.random.default_rng(8).standard_normal((300, 16), dtype=np.float32)
    want = numpy_encode(x, w, arch, kw.get("k"))
    for rows in (300, 5, 1):
        for _ in range(2):  # (the first may be mapped memory, returned to the system)
            junk = np.full((rows, 4096), np.nan, dtype=np.float32)
            del junk
        got = sae.encode(x[:rows])
        assert not np.isnan(got).any(), rows
        assert rel_err(got, want[:rows]) <= TOL, rows


def test_encode_reads_x_in_place():
    # x is 40 MB; the codes 1.3 MB. A copy of x would show in numpy's traced memory.
    sae, _ = random_sae(512, 16)
    x = np.random.default_rng(0).standard_normal((20000, 512), dtype=np.float32)
    x.setflags(write=False)  # read-only arrays are fine too
    tracemalloc.start()
    try:
        codes = sae.encode(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codes.shape == (20000, 16)
    assert peak < 8 * 2**20, f"peak traced memory {peak} bytes: was x copied?"


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_encode_into_out(arch):
    kw = {"standard": {}, "topk": {"architecture": "topk", "k": 7},
          "jumprelu": {"architecture": "jumprelu",
                       "threshold": np.full(96, 0.2, dtype=np.float32)}}[arch]
    sae, _ = random_sae(24, 96, seed=4, **kw)
    rng = np.random.default_rng(5)
    out = np.full((50, 96), np.nan, dtype=np.float32)
    for n in (50, 3, 1):  # the packed and the small-batch paths
        x = rng.standard_normal((n, 24), dtype=np.float32)
        o = out[:n]  # a C-contiguous view of the buffer's first rows
        got = sae.encode(x, out=o)
        assert got is o
        assert np.array_equal(o, sae.encode(x))
        assert np.array_equal(sae.encode(x, o), sae.encode(x))  # positional too
    assert not np.isnan(out).any()  # the 50-row call wrote every row
    empty = np.empty((0, 96), dtype=np.float32)
    assert sae.encode(np.zeros((0, 24), np.float32), out=empty) is empty


def test_encode_into_out_writes_no_new_array():
    # Codes of 20000 x 512 rows are 40 MB: a fresh array would show in numpy's traced
    # memory, the caller's `out` does not.
    sae, _ = random_sae(16, 512)
    x = np.random.default_rng(0).standard_normal((20000, 16), dtype=np.float32)
    out = np.empty((20000, 512), dtype=np.float32)
    want = sae.encode(x)
    tracemalloc.start()
    try:
        got = sae.encode(x, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got is out and np.array_equal(out, want)
    assert peak < 4 * 2**20, f"peak traced memory {peak} bytes: was a new array made?"
    tracemalloc.start()
    try:
        sae.encode(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= out.nbytes, f"without out=, the codes are a new array ({peak} bytes)"


def test_encode_refuses_bad_out():
    sae, _ = random_sae(8, 8, seed=6)  # d_in == d_sae: `x` itself has the codes' shape
    d = h = 8
    x = np.random.default_rng(6).standard_normal((4, d), dtype=np.float32)
    ro = np.zeros((4, h), np.float32)
    ro.setflags(write=False)
    big = np.zeros((8, h), np.float32)
    buf = np.zeros(64, np.float32)
    xo = buf[:32].reshape(4, d)
    cases = [
        (lambda o: sae.encode(x, out=o), np.zeros((4, h), np.float64), "float32"),
        (lambda o: sae.encode(x, out=o), np.zeros(4 * h, np.float32), "2-D"),
        (lambda o: sae.encode(x, out=o), [[0.0] * h] * 4, "numpy"),
        (lambda o: sae.encode(x, out=o), np.zeros((4, h), np.dtype(">f4")), "float32"),
        (lambda o: sae.encode(x, out=o), np.zeros((5, h), np.float32), r"shape \(5, 8\), expected \(4, 8\)"),
        (lambda o: sae.encode(x, out=o), np.zeros((4, h + 1), np.float32), "shape"),
        (lambda o: sae.encode(x, out=o), np.zeros((h, 4), np.float32).T, "C-contiguous"),
        (lambda o: sae.encode(x, out=o), big[::2], "C-contiguous"),
        (lambda o: sae.encode(x, out=o), ro, "read-only"),
        (lambda o: sae.encode(x, out=o), x, "overlaps"),
        (lambda o: sae.encode(xo, out=o), buf[16:48].reshape(4, h), "overlaps"),
        (lambda o: sae.encode(x.astype(np.float64), out=o), np.zeros((4, h), np.float32), "`x`"),
    ]
    for call, o, needle in cases:
        before = np.array(o, copy=True)
        with pytest.raises(ValueError, match=needle):
            call(o)
        assert np.array_equal(np.asarray(o), before), needle  # left untouched
    # Adjacent but not overlapping: fine.
    got = sae.encode(xo, out=buf[32:].reshape(4, h))
    assert np.array_equal(got, sae.encode(xo))
    assert np.array_equal(x, np.random.default_rng(6).standard_normal((4, d), dtype=np.float32))


def test_out_in_use_by_another_call():
    """Two threads writing one `out` at the same time: the second gets ValueError
    (the first keeps it until its codes are written)."""
    sae, _ = random_sae(256, 4096, seed=5)
    x = np.random.default_rng(3).standard_normal((2048, 256), dtype=np.float32)
    out = np.empty((2048, 4096), np.float32)
    errors, done = [], threading.Event()

    def work():
        sae.encode(x, out=out)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        try:
            sae.encode(x[:1], out=out[:1])
        except ValueError as e:
            errors.append(str(e))
    t.join()
    # Row 0 may have been written by a 1-row call (another summation order) just
    # before the worker took `out`: the other rows are exactly the worker's.
    want = sae.encode(x)
    assert np.array_equal(out[1:], want[1:])
    assert np.allclose(out[0], want[0], rtol=0, atol=1e-5)
    assert errors and all("in use" in e for e in errors), errors[:3]


def test_empty_batch():
    sae = SAE.load(FIXTURES / "standard")
    x = np.zeros((0, sae.d_in), dtype=np.float32)
    assert sae.encode(x).shape == (0, sae.d_sae)
    ip, ix, vs = sae.encode_sparse(x)
    assert ip.tolist() == [0] and ix.size == 0 and vs.size == 0
    assert sae.decode(np.zeros((0, sae.d_sae), dtype=np.float32)).shape == (0, sae.d_in)


def test_bad_input_raises_clear_errors(tmp_path):
    sae = SAE.load(FIXTURES / "standard")
    d, h = sae.d_in, sae.d_sae
    x = np.ones((3, d), dtype=np.float32)
    cases = [
        (lambda: sae.encode(x.astype(np.float64)), "float32"),
        (lambda: sae.encode(np.ones(d, dtype=np.float32)), "2-D"),
        (lambda: sae.encode(np.ones((3, d + 1), dtype=np.float32)), "columns"),
        (lambda: sae.encode(np.ones((3, 2 * d), dtype=np.float32)[:, ::2]), "C-contiguous"),
        (lambda: sae.encode([[1.0] * d]), "numpy"),
        (lambda: sae.encode(None), "numpy"),
        (lambda: sae.encode_sparse(x, k=0), "`k`"),
        (lambda: sae.decode(np.ones((3, h + 1), dtype=np.float32)), "columns"),
        (lambda: sae.decode_sparse(np.array([0, 1]), np.array([h]), np.ones(1, np.float32)), "indices"),
        (lambda: sae.decode_sparse(np.array([0, 2, 1]), np.array([0, 1]), np.ones(2, np.float32)), "row_ptr"),
        (lambda: sae.decode_sparse(np.array([0, 3]), np.array([0, 1]), np.ones(2, np.float32)), "row_ptr"),
        (lambda: sae.decode_sparse(np.array([-1, 1]), np.array([0]), np.ones(1, np.float32)), "indptr"),
        (lambda: sae.decode_sparse(np.array([0, 1]), np.array([0]), np.ones(2, np.float32)), "values"),
        (lambda: sae.decode_sparse(np.array([0, 1]), np.array([0.5]), np.ones(1, np.float32)), "integers"),
        (lambda: sae.decode_sparse(np.array([], dtype=np.int64), np.array([0]), np.ones(1, np.float32)), "indptr"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError, match=needle):
            call()
    # A NaN input gives a NaN code: dense codes carry it, the sparse form refuses it.
    xn = x.copy()
    xn[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        sae.encode_sparse(xn)

    with pytest.raises(FileNotFoundError):
        SAE.load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="sae_weights"):
        (tmp_path / "cfg.json").write_text(json.dumps({
            "d_in": 8, "d_sae": 32, "architecture": "standard",
            "metadata": {"sae_lens_version": "6.0.0"}}))
        SAE.load(tmp_path)
    bad = tmp_path / "gated"
    bad.mkdir()
    (bad / "cfg.json").write_text(json.dumps({
        "d_in": 8, "d_sae": 32, "architecture": "gated",
        "metadata": {"sae_lens_version": "6.0.0"}}))
    with pytest.raises(ValueError, match="architecture"):
        SAE.load(bad)
    (tmp_path / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="sae_weights.safetensors"):
        SAE.load(tmp_path)


def test_from_arrays_refuses_bad_shapes():
    d, h = 4, 6
    w_enc = np.zeros((d, h), np.float32)
    w_dec = np.zeros((h, d), np.float32)
    b_enc, b_dec = np.zeros(h, np.float32), np.zeros(d, np.float32)
    SAE.from_arrays(w_enc, b_enc, w_dec, b_dec)  # fine
    cases = [
        (lambda: SAE.from_arrays(w_enc, b_enc, w_enc, b_dec), "W_dec"),
        (lambda: SAE.from_arrays(w_enc, b_dec, w_dec, b_dec), "b_enc"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_enc), "b_dec"),
        (lambda: SAE.from_arrays(w_enc.astype(np.float64), b_enc, w_dec, b_dec), "float32"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, architecture="gated"), "architecture"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, architecture="topk"), "`k`"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, architecture="topk", k=0), "`k`"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, k=3), "`k`"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, architecture="jumprelu"), "threshold"),
        (lambda: SAE.from_arrays(w_enc, b_enc, w_dec, b_dec, architecture="jumprelu",
                                 threshold=np.zeros(h + 1, np.float32)), "threshold"),
        (lambda: SAE.from_arrays(np.zeros((0, h), np.float32), b_enc, np.zeros((h, 0), np.float32),
                                 np.zeros(0, np.float32)), "dimension"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError, match=needle):
            call()


def test_threads_share_one_model():
    sae, _ = random_sae(256, 4096, seed=5)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((512, 256), dtype=np.float32) for _ in range(4)]
    want = [sae.encode(x) for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(3):
            got[i] = sae.encode(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert np.array_equal(g, w)



def test_gil_is_released_during_encode():
    """While another thread is inside one encode call, this thread keeps running
    Python code: it records time stamps in the middle half of the call. (Checked to
    discriminate: a call that holds the GIL, such as a catastrophically backtracking
    re.match, gives no stamp there.)"""
    sae, _ = random_sae(256, 4096, seed=5)
    x = np.random.default_rng(3).standard_normal((1024, 256), dtype=np.float32)
    span = {}

    def work():
        span["t0"] = time.perf_counter()
        sae.encode(x)
        span["t1"] = time.perf_counter()

    stamps = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    q = (span["t1"] - span["t0"]) / 4
    inside = sum(1 for s in stamps if span["t0"] + q < s < span["t1"] - q)
    assert inside > 100, (inside, span)


def test_against_sae_lens_itself(tmp_path):
    """Direct comparison with SAELens' own encode (only where sae-lens is installed)."""
    sae_lens = pytest.importorskip("sae_lens")
    torch = pytest.importorskip("torch")
    for name in ["standard", "topk", "jumprelu", "prev6_topk"]:
        theirs = sae_lens.SAE.load_from_disk(str(FIXTURES / name), device="cpu")
        ours = SAE.load(FIXTURES / name)
        x = np.random.default_rng(7).standard_normal((64, ours.d_in), dtype=np.float32)
        with torch.no_grad():
            want = theirs.encode(torch.from_numpy(x)).double().numpy()
            want_recon = theirs.decode(torch.from_numpy(want).float()).double().numpy()
        got = ours.encode(x)
        assert rel_err(got, want) <= TOL, name
        assert np.array_equal(got != 0, want != 0), name
        assert rel_err(ours.decode(want.astype(np.float32)), want_recon) <= TOL, name
