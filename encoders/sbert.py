"""Encoders run through sentence-transformers: any folder it can load (bundled packages, local checkpoints,
hub ids where a hub is reachable). On CUDA the weights run in fp16."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from encoders.base import BatchedEncoder, resolve_device
from encoders.errors import EncoderError


def load_sentence_transformer(source: str | os.PathLike, device: str, local: bool):
    """Load a SentenceTransformer; `local` forbids any hub access (the folder must hold the whole model)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # The per-tensor "Loading weights" bar would interleave with embed's own progress bar.
    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(source), device=device, local_files_only=local)
    if device == "cuda":
        model.half()
    model.eval()
    return model


class SentenceTransformerEncoder(BatchedEncoder):
    """One lock serialises calls into the model: transformers' fast tokenizers rewrite their truncation and
    padding settings on every call (so concurrent calls corrupt each other), and each call already runs on every
    core."""

    backend = "sentence-transformers"

    def __init__(self, name: str, source: str | os.PathLike, device: str = "auto", local: bool = True,
                 batch_tokens: int | None = None) -> None:
        super().__init__(batch_tokens=batch_tokens)
        self.name = name
        self.device = resolve_device(device)
        self.model = load_sentence_transformer(source, self.device, local)
        # sentence-transformers 5+ renamed get_sentence_embedding_dimension (older name kept for 3.x/4.x).
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int(get_dim() if get_dim else self.model.get_sentence_embedding_dimension())
        max_length = self.model.max_seq_length or getattr(self.model.tokenizer, "model_max_length", 512)
        self.max_length = int(min(max_length, 1 << 20))
        self._lock = threading.Lock()

    def _tokenize(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        # Tokenising to max_length + 1 tells "cut" (length max_length + 1) from "fits exactly".
        with self._lock:
            ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=True,
                                       max_length=self.max_length + 1, verbose=False)["input_ids"]
        return texts, np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def _encode_batch(self, items: list[str]) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            out = self.model.encode(items, batch_size=len(items), show_progress_bar=False,
                                    convert_to_numpy=False, convert_to_tensor=True,
                                    normalize_embeddings=False)
        return out.float().cpu().numpy()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _hub_reachable(model: str) -> bool:
    """One short metadata request: without it an unreachable hub costs minutes of download retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().model_info(model, timeout=10)
    except RepositoryNotFoundError:
        raise EncoderError(f"the hub has no model {model!r} (or it is private: log in first); "
                           "check the id, or give a local folder as hf:/path/to/model") from None
    except Exception:  # noqa: BLE001 - network failures surface as many transport error types
        return False
    return True


def hf_encoder(name: str, model: str, device: str = "auto",
               batch_tokens: int | None = None) -> SentenceTransformerEncoder:
    """`hf:<model id or local folder>`: a local folder loads offline; an id is downloaded when the hub is
    reachable, else taken from the local hub cache if it is there."""
    if not model:
        raise EncoderError("hf: needs a model id or a local folder, e.g. hf:/path/to/model")
    path = Path(model).expanduser()
    if path.is_dir():
        source, local = str(path), True
    else:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        source, local = model, offline or not _hub_reachable(model)
    try:
        return SentenceTransformerEncoder(name, source, device=device, local=local, batch_tokens=batch_tokens)
    except EncoderError:
        raise
    except Exception as e:  # noqa: BLE001 - loaders raise many types; the user needs one actionable line
        if path.is_dir():
            raise EncoderError(f"cannot load the folder {path} as a sentence-transformers model "
                               f"({_first_line(e)})") from None
        raise EncoderError(f"cannot load the model {model!r}: it is not a local folder, the hub is offline "
                           f"or unreachable, and it is not in the local hub cache ({_first_line(e)}); "
                           "give a local folder as hf:/path/to/model") from None
