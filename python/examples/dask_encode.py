#!/usr/bin/env python3
"""Encode a sharded activation set with Dask workers calling sae_kernels.

Each shard is a ``.npy`` file of float32 activations (rows x d_in). Every shard is
one Dask task: a worker process loads the SAE once (cached per process), memory-maps
the shard, encodes it in chunks of rows (bounded memory) into CSR and writes
``<out>/<shard-stem>.codes.npz`` in scipy's ``save_npz`` layout (keys ``indptr``,
``indices``, ``data``, ``shape``, ``format``), so ``scipy.sparse.load_npz`` reads it.

    python dask_encode.py --sae SAE_DIR --out OUT_DIR [--k K] [--workers 2] \
        [--scheduler tcp://host:8786] shard0.npy shard1.npy ...

Without ``--scheduler`` it starts a local cluster of ``--workers`` worker processes
(one thread each); with it, it uses an existing Dask cluster, whose workers must have
sae_kernels installed and see the same paths.
"""
import argparse
import functools
import os
import sys
import time

import numpy as np

DEFAULT_CHUNK_ROWS = 8192


@functools.lru_cache(maxsize=4)
def load_sae(sae_dir):
    """The SAE of a folder, loaded once per worker process."""
    import sae_kernels

    return sae_kernels.SAE.load(sae_dir)


def encode_array(sae, x, k=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """CSR codes of ``x`` (rows x d_in), encoded ``chunk_rows`` rows at a time:
    ``(indptr int64, indices int32, values float32)``."""
    parts, offset, indptr = [], 0, [np.zeros(1, dtype=np.int64)]
    for r0 in range(0, x.shape[0], chunk_rows):
        chunk = np.ascontiguousarray(x[r0 : r0 + chunk_rows], dtype=np.float32)
        ip, ix, vs = sae.encode_sparse(chunk, k=k)
        indptr.append(ip[1:] + offset)
        offset += int(ip[-1])
        parts.append((ix, vs))
    indices = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    values = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    return np.concatenate(indptr), indices, values


def output_path(out_dir, shard):
    stem = os.path.splitext(os.path.basename(shard))[0]
    return os.path.join(out_dir, f"{stem}.codes.npz")


def encode_shard(sae_dir, shard, out_dir, k=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """One task: encode one shard file and write its CSR codes. Returns a summary."""
    t0 = time.perf_counter()
    sae = load_sae(sae_dir)
    x = np.load(shard, mmap_mode="r")
    if x.ndim != 2 or x.shape[1] != sae.d_in:
        raise ValueError(f"{shard}: shape {x.shape}, the SAE needs (rows, {sae.d_in})")
    indptr, indices, values = encode_array(sae, x, k=k, chunk_rows=chunk_rows)
    path = output_path(out_dir, shard)
    tmp = path + ".tmp.npz"
    np.savez(tmp, indptr=indptr, indices=indices, data=values,
             shape=np.array([x.shape[0], sae.d_sae]), format=np.array(b"csr"))
    os.replace(tmp, path)  # a retried task never leaves a half-written file
    return {"shard": shard, "rows": int(x.shape[0]), "nnz": int(indptr[-1]),
            "output": path, "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def run(sae_dir, shards, out_dir, k=None, workers=2, scheduler=None,
        chunk_rows=DEFAULT_CHUNK_ROWS):
    """Encode every shard on a Dask cluster; returns the per-shard summaries."""
    from dask.distributed import Client, LocalCluster

    os.makedirs(out_dir, exist_ok=True)
    sae_dir, out_dir = os.path.abspath(sae_dir), os.path.abspath(out_dir)
    shards = [os.path.abspath(s) for s in shards]
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(encode_shard, sae_dir, s, out_dir, k, chunk_rows,
                                 pure=False) for s in shards]
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("shards", nargs="+", help=".npy files of float32 (rows, d_in)")
    p.add_argument("--sae", required=True, help="SAELens folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--k", type=int, default=None, help="keep the k largest codes per row")
    p.add_argument("--workers", type=int, default=2, help="local worker processes")
    p.add_argument("--scheduler", default=None, help="address of an existing cluster")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    results = run(a.sae, a.shards, a.out, a.k, a.workers, a.scheduler, a.chunk_rows)
    rows = sum(r["rows"] for r in results)
    for r in results:
        print(f"{os.path.basename(r['shard'])}: {r['rows']} rows, {r['nnz']} codes "
              f"-> {r['output']} ({r['seconds']:.2f} s, worker pid {r['pid']})")
    pids = len({r["pid"] for r in results})
    print(f"{len(results)} shards, {rows} rows on {pids} worker processes in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
