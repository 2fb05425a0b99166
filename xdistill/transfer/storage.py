"""How the teacher-output cache stores hidden states (``--cache-hidden``).

At mBERT width (768) a float16 hidden state costs 1.5 KB per token: 330 GB for the paper's 7.2
million transfer sentences. Two cheaper codes, each decoded when a batch is read:

* ``int8``: per stored position, a symmetric scale ``s = max|x| / 127`` (float16) and
  ``q = round(x / s)`` (int8): ``F + 2`` bytes per position (770 at mBERT width), error at most
  ``s / 2`` per value.
* ``pca:K``: the top ``K`` principal components of the teacher's hidden states (fit on a sample of
  the transfer set's positions: Pearson 1901; computed by SVD of the centered sample), each position
  stored as its ``K`` coordinates in float16: ``2K`` bytes (``pca:256``: 512 bytes at mBERT width);
  decoded as ``mean + z @ basis.T``. The representation loss then matches the teacher's hidden
  state projected onto those components.

Logits are always float16 (``C`` values per position, ``C`` the label count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import parse_hidden_storage

#: sample size for the PCA fit: at most this many positions
PCA_SAMPLE_POSITIONS = 50_000


@dataclass
class HiddenStorage:
    """The code of one cached feature: ``kind`` ``fp16``, ``int8`` or ``pca`` (with ``components``
    and, once fit, ``basis`` ``(F, K)`` and ``mean`` ``(F,)`` float32)."""

    kind: str = "fp16"
    components: int = 0
    basis: np.ndarray | None = None
    mean: np.ndarray | None = None

    @classmethod
    def parse(cls, spec: str) -> "HiddenStorage":
        """From ``--cache-hidden`` (``fp16``, ``int8``, ``pca:K``).

        Raises:
            ConfigError: another value.
        """
        kind, k = parse_hidden_storage(spec)
        return cls(kind, k)

    @property
    def spec(self) -> str:
        return f"pca:{self.components}" if self.kind == "pca" else self.kind

    @property
    def dtype(self):
        return np.int8 if self.kind == "int8" else np.float16

    def stored_width(self, width: int) -> int:
        """Values stored per position for a feature of ``width``."""
        return min(self.components, width) if self.kind == "pca" else width

    def bytes_per_position(self, width: int) -> int:
        """Bytes per stored position for a feature of ``width`` (the int8 scale included)."""
        return self.stored_width(width) * np.dtype(self.dtype).itemsize + (2 if self.kind == "int8" else 0)

    def fit(self, sample: np.ndarray) -> None:
        """Fit the principal components on ``sample`` ``(N, F)`` (``pca`` only; nothing otherwise)."""
        if self.kind != "pca":
            return
        x = torch.from_numpy(np.asarray(sample, dtype=np.float32))
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        self.mean = mean.numpy()
        self.basis = vh[: self.stored_width(x.shape[1])].T.contiguous().numpy()

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``x`` ``(P, F)`` float32 -> stored values ``(P, W)`` and, for int8, scales ``(P, 1)`` float16."""
        if self.kind == "int8":
            scale = (np.abs(x).max(axis=1, keepdims=True) / 127.0).astype(np.float16)
            safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
            return np.clip(np.rint(x / safe), -127, 127).astype(np.int8), scale
        if self.kind == "pca":
            return ((x - self.mean) @ self.basis).astype(np.float16), None
        return x.astype(np.float16), None

    def decode(self, values: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """Stored ``values`` ``(P, W)`` (and int8 ``scale``) -> ``(P, F)``: float16 as stored, else float32."""
        if self.kind == "int8":
            return values.astype(np.float32) * scale.astype(np.float32)
        if self.kind == "pca":
            return values.astype(np.float32) @ self.basis.T + self.mean
        return values

    def save(self, folder: Path, key: str) -> None:
        """The PCA's basis and mean as ``KEY.basis.npy`` and ``KEY.mean.npy`` (nothing for other kinds)."""
        if self.kind == "pca":
            np.save(Path(folder) / f"{key}.basis.npy", self.basis)
            np.save(Path(folder) / f"{key}.mean.npy", self.mean)

    @classmethod
    def load(cls, folder: Path, key: str, spec: str) -> "HiddenStorage":
        out = cls.parse(spec)
        if out.kind == "pca":
            out.basis = np.load(Path(folder) / f"{key}.basis.npy")
            out.mean = np.load(Path(folder) / f"{key}.mean.npy")
        return out
