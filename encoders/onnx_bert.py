"""A BERT sentence encoder exported to ONNX (fp32) and run with onnxruntime; the graph returns the masked
mean of the token states, which `Encoder.encode` normalises. onnxruntime sessions are safe to run from
several threads at once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from encoders.base import BatchedEncoder, resolve_device
from encoders.errors import EncoderError


class OnnxMeanPoolEncoder(BatchedEncoder):
    backend = "onnxruntime"

    def __init__(self, name: str, model_path: Path, tokenizer_path: Path, dim: int, max_length: int,
                 output_name: str, device: str = "auto", batch_tokens: int | None = None) -> None:
        super().__init__(batch_tokens=batch_tokens)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name, self.dim, self.max_length, self.output_name = name, dim, max_length, output_name
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EncoderError(f"encoder {name!r} on cuda needs onnxruntime-gpu; "
                                   "install it or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Set once here and never per call, so threads can share the tokenizer. The shared tokenizer.json
        # carries the source model's padding; batches are padded below instead.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self._pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        encs = self.tokenizer.encode_batch(texts)
        # one more than max_length marks a text that was cut
        lengths = np.fromiter((len(e.ids) + bool(e.overflowing) for e in encs), dtype=np.int64, count=len(encs))
        return [e.ids for e in encs], lengths

    def _encode_batch(self, items: list[list[int]]) -> np.ndarray:
        ids = np.full((len(items), max(map(len, items))), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(items):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        (pooled,) = self.session.run([self.output_name], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(pooled, dtype=np.float32)
