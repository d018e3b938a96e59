"""CoreEncoder: texts -> tokenizer -> packed batches by token budget -> core model -> masked pooling -> rows.

CUDA with bf16 autocast (and flash-attention when installed) when a GPU is present; fp32 on CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from encoders.base import BatchedEncoder, resolve_device
from encoders.core.attention import build_plan
from encoders.core.loading import load_checkpoint


class CoreEncoder(BatchedEncoder):
    """Our own encoder core for ModernBERT and BERT checkpoints (local folder or hub id).

    `batch_tokens` bounds the tokens of one forward pass (default: 8192 on CPU, 65536 on CUDA); `chunk` is how
    many texts are tokenised at a time. Safe to call from several threads: the tokenizer is configured once
    here, and the forward pass keeps no state.
    """

    backend = "core"

    def __init__(self, name_or_path: str, name: str | None = None, architecture: str | None = None,
                 device: str = "auto", batch_tokens: int | None = None, max_length: int | None = None,
                 chunk: int = 8192):
        ckpt = load_checkpoint(name_or_path, architecture)
        device = resolve_device(device)
        if batch_tokens is None:  # CPU: small passes keep activations in cache; GPU: big ones keep it busy
            batch_tokens = 65536 if device == "cuda" else 8192
        super().__init__(batch_tokens=batch_tokens, chunk=chunk)
        self.device = device
        self.model = ckpt.model.to(self.device)
        self.tokenizer = ckpt.tokenizer
        self.pooling, self.prompts = ckpt.pooling, ckpt.prompts
        self.name = name or f"{'modernbert' if ckpt.architecture == 'modernbert' else 'core'}:{name_or_path}"
        self.dim = self.model.config.hidden_size
        self.max_length = min(max_length or ckpt.max_length, self.model.config.max_position_embeddings)
        self.tokenizer.no_padding()  # a tokenizer.json may carry padding settings; packing needs none
        self.tokenizer.enable_truncation(self.max_length)

    def encode(self, texts: Iterable[str], prompt_name: str = "document") -> np.ndarray:
        """(N, dim) float32 L2-normalised rows, each text prefixed with the checkpoint's prompt `prompt_name`
        ("document" or "query", e.g. 'search_document: '), if the checkpoint has one."""
        prompt = self.prompts.get(prompt_name, "")
        return super().encode([prompt + t for t in texts])

    def encode_queries(self, texts: Iterable[str]) -> np.ndarray:
        return self.encode(texts, "query")

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        encs = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        # one more than max_length marks a text that was cut
        lengths = np.fromiter((len(e.ids) + bool(e.overflowing) for e in encs), dtype=np.int64, count=len(encs))
        return [e.ids for e in encs], lengths

    @torch.inference_mode()
    def _encode_batch(self, ids: list[list[int]]) -> np.ndarray:
        lengths = [len(i) for i in ids]
        flat = torch.tensor([t for i in ids for t in i], dtype=torch.long, device=self.device)
        plan = build_plan(lengths, flat.device, self.model.window)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
            hidden = self.model(flat, plan)
        return pool(hidden.float(), plan, self.pooling).cpu().numpy()


def pool(hidden: torch.Tensor, plan, mode: str) -> torch.Tensor:
    """(T, H) packed hidden states -> (B, H): first token (CLS) or mean over each sequence's own tokens only."""
    if mode == "cls":
        return hidden[plan.cu_seqlens[:-1].long()]
    n = plan.cu_seqlens.numel() - 1
    sums = torch.zeros(n, hidden.shape[1], dtype=hidden.dtype, device=hidden.device).index_add_(0, plan.seq_ids, hidden)
    return sums / torch.diff(plan.cu_seqlens).to(hidden.dtype)[:, None]
