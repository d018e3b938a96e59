"""A BERT sentence encoder exported to ONNX (fp32) and run with onnxruntime; the graph returns the masked
mean of the token states, which `Encoder.encode` normalises."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from encoders.base import BatchedEncoder, resolve_device
from encoders.errors import EncoderError


class OnnxMeanPoolEncoder(BatchedEncoder):
    backend = "onnxruntime"

    def __init__(self, name: str, model_path: Path, tokenizer_path: Path, dim: int, max_length: int,
                 output_name: str, device: str = "auto", batch_tokens: int = 16384) -> None:
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
        # The shared tokenizer.json carries the source model's truncation/padding; ours differ.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self._pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        self.tokenizer.enable_truncation(self.max_length + 1)
        try:
            encs = self.tokenizer.encode_batch(texts)
        finally:
            self.tokenizer.no_truncation()
        return np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=self._pad_id, pad_token="[PAD]")
        try:
            encs = self.tokenizer.encode_batch(texts)
        finally:
            self.tokenizer.no_truncation()
            self.tokenizer.no_padding()
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        (pooled,) = self.session.run([self.output_name], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(pooled, dtype=np.float32)
