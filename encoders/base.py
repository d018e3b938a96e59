"""The encoder interface every backend implements: texts in, L2-normalised float32 rows out, input order kept."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class EncodeStats:
    """What the last `encode` call did; `truncated` counts texts cut at `max_length` tokens."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    extra: dict = field(default_factory=dict)


class Encoder(ABC):
    """A text encoder. Subclasses set `name`, `dim`, `max_length`, `backend` and implement `_encode`."""

    name: str
    dim: int
    max_length: int
    backend: str

    def __init__(self) -> None:
        self.last_stats = EncodeStats()

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts (any order the backend likes internally) and return rows in input order."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, row i = texts[i], each row L2-normalised."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode(texts), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "max_length": self.max_length, "backend": self.backend}
