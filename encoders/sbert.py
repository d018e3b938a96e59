"""Encoders run through sentence-transformers: any folder it can load (bundled packages, local checkpoints,
hub ids where a hub is reachable). On CUDA the weights run in fp16."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from encoders.base import BatchedEncoder, resolve_device
from encoders.errors import EncoderError


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Keep transformers/huggingface_hub off the network while a bundled local folder loads."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def load_sentence_transformer(source: str | os.PathLike, device: str, local: bool):
    """Load a SentenceTransformer; `local` forbids any hub access (the folder must hold the whole model)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # The per-tensor "Loading weights" bar would interleave with embed's own progress bar.
    hf_logging.disable_progress_bar()
    ctx = _offline() if local else contextlib.nullcontext()
    with ctx:
        model = SentenceTransformer(str(source), device=device, local_files_only=local)
    if device == "cuda":
        model.half()
    model.eval()
    return model


class SentenceTransformerEncoder(BatchedEncoder):
    backend = "sentence-transformers"

    def __init__(self, name: str, source: str | os.PathLike, device: str = "auto", local: bool = True,
                 batch_tokens: int = 16384) -> None:
        super().__init__(batch_tokens=batch_tokens)
        self.name = name
        self.device = resolve_device(device)
        self.model = load_sentence_transformer(source, self.device, local)
        # sentence-transformers 5+ renamed get_sentence_embedding_dimension (older name kept for 3.x/4.x).
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int(get_dim() if get_dim else self.model.get_sentence_embedding_dimension())
        max_length = self.model.max_seq_length or getattr(self.model.tokenizer, "model_max_length", 512)
        self.max_length = int(min(max_length, 1 << 20))

    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        # Tokenising to max_length + 1 tells "cut" (length max_length + 1) from "fits exactly".
        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=True,
                                   max_length=self.max_length + 1, verbose=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=len(texts), show_progress_bar=False,
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


def hf_encoder(name: str, model: str, device: str = "auto") -> SentenceTransformerEncoder:
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
        return SentenceTransformerEncoder(name, source, device=device, local=local)
    except EncoderError:
        raise
    except Exception as e:  # noqa: BLE001 - loaders raise many types; the user needs one actionable line
        if path.is_dir():
            raise EncoderError(f"cannot load the folder {path} as a sentence-transformers model "
                               f"({_first_line(e)})") from None
        raise EncoderError(f"cannot load the model {model!r}: it is not a local folder, the hub is offline "
                           f"or unreachable, and it is not in the local hub cache ({_first_line(e)}); "
                           "give a local folder as hf:/path/to/model") from None
