import os
from typing import Any, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

def set_bf16_screen(on: bool) -> None:
    """Allow (``True``, the default) or forbid the encoder's bf16 screen for the
    whole process. Where the CPU has fast AVX512_BF16 and ``d_in >= 128``, ``encode``
    computes the pre-activations in bf16, bounds their error, and recomputes exactly in
    float32 only the features that could be non-zero: TopK when ``d_sae >= 80·k``;
    standard and JumpReLU when ``d_sae >= 2048`` and a probe of the first rows finds few
    pre-activations near or above their thresholds (trained SAEs). The codes are the
    same bits either way, so this switch is for timing comparisons."""

def bf16_screen() -> bool:
    """Whether the encoder's bf16 screen is allowed (see ``set_bf16_screen``)."""

class SAE:
    """A sparse autoencoder in SAELens' layout that encodes numpy arrays.

    Make one with ``SAE.load(dir)`` or ``SAE.from_arrays(...)``. One model may be
    shared by many threads: every method releases the GIL while it computes.
    """

    @staticmethod
    def load(dir: Union[str, os.PathLike[str]]) -> "SAE":
        """Load a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``;
        architectures ``standard``, ``topk``, ``jumprelu``).

        Raises ``FileNotFoundError`` if the folder or a file is missing and
        ``ValueError`` if a file is malformed or unsupported (naming the field)."""
    @staticmethod
    def from_arrays(
        W_enc: npt.NDArray[np.float32],
        b_enc: npt.NDArray[np.float32],
        W_dec: npt.NDArray[np.float32],
        b_dec: npt.NDArray[np.float32],
        *,
        architecture: str = "standard",
        k: Optional[int] = None,
        threshold: Optional[npt.NDArray[np.float32]] = None,
        apply_b_dec_to_input: bool = True,
    ) -> "SAE":
        """An SAE from float32 arrays (copied): ``W_enc`` (d_in, d_sae), ``b_enc``
        (d_sae,), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in,); ``architecture`` is
        ``"standard"``, ``"topk"`` (with ``k``) or ``"jumprelu"`` (with
        ``threshold``, (d_sae,)). Raises ``ValueError`` for wrong dtypes or shapes."""
    @property
    def d_in(self) -> int:
        """Input width (SAELens ``d_in``)."""
    @property
    def d_sae(self) -> int:
        """Number of features (SAELens ``d_sae``)."""
    @property
    def architecture(self) -> str:
        """``"standard"``, ``"topk"`` or ``"jumprelu"``."""
    @property
    def k(self) -> Optional[int]:
        """TopK's k, or None."""
    @property
    def apply_b_dec_to_input(self) -> bool:
        """Whether ``b_dec`` is subtracted from inputs before encoding."""
    def encode(
        self,
        x: npt.NDArray[np.float32],
        out: Optional[npt.NDArray[np.float32]] = None,
    ) -> npt.NDArray[np.float32]:
        """Dense codes: ``x`` float32 (n, d_in), C-contiguous (read in place, not
        copied) -> float32 (n, d_sae). ``ValueError`` for any other dtype, layout or
        width.

        ``out``: float32 (n, d_sae), C-contiguous, writeable, not overlapping ``x``;
        the codes are written there and ``out`` is returned (reuse one buffer across
        calls instead of a fresh array each time). ``ValueError`` if it does not fit
        (``out`` is then untouched) or if another call is writing it."""
    def encode_sparse(
        self, x: npt.NDArray[np.float32], k: Optional[int] = None
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """CSR codes ``(indptr, indices, values)``: only codes > 0, or with ``k`` the
        ``k`` largest of each row (ties: the lower feature), indices ascending per
        row. ``scipy.sparse.csr_matrix((values, indices, indptr), shape=(n, d_sae))``
        accepts them as they are."""
    def decode(self, codes: Any) -> npt.NDArray[np.float32]:
        """Reconstruction from dense float32 codes (n, d_sae) -> (n, d_in), or from a
        scipy.sparse CSR matrix (as ``decode_sparse``)."""
    def decode_sparse(
        self,
        indptr: npt.NDArray[np.integer[Any]],
        indices: npt.NDArray[np.integer[Any]],
        values: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]:
        """Reconstruction from CSR arrays (as returned by ``encode_sparse``) ->
        float32 (len(indptr) - 1, d_in)."""
