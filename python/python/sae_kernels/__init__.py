"""Sparse autoencoder (SAE) encoding on numpy, with the sae-kernels Rust library.

>>> import numpy as np, sae_kernels
>>> sae = sae_kernels.SAE.load("path/to/saelens_folder")      # doctest: +SKIP
>>> codes = sae.encode(x)                  # x: float32 (n, d_in), read in place
>>> indptr, indices, values = sae.encode_sparse(x, k=32)
>>> x_hat = sae.decode(codes)

See ``SAE`` for the details. Every method releases the GIL while it computes.
"""

from ._native import SAE, __version__, set_bf16_screen, bf16_screen

__all__ = ["SAE", "__version__", "set_bf16_screen", "bf16_screen"]
