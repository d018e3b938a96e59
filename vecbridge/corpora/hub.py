"""Datasets from a hub (`hf:DATASET[:split]`) through `datasets`, failing fast with a clear message offline."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import datasets

from vecbridge.errors import UserError

_CONNECT_TIMEOUT_S = 5.0


def _offline_reason() -> str | None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    # A quick connect decides reachability; without it an offline machine can wait minutes on retries.
    try:
        socket.create_connection((endpoint.hostname, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        return f"the hub at {constants.ENDPOINT} is unreachable ({e.__class__.__name__})"
    return None


def load_hub(dataset: str, split: str | None = None) -> datasets.Dataset:
    """Load `split` (default `train`) of a hub dataset; it must have a `text` column."""
    split = split or "train"
    spec = f"hf:{dataset}:{split}"
    reason = _offline_reason()
    if reason:
        raise UserError(f"cannot load {spec}: {reason}; use a builtin: corpus or a local .jsonl/.txt file")
    try:
        ds = datasets.load_dataset(dataset, split=split)
    except Exception as e:  # datasets raises many types (network, missing config, bad split) for user input
        message = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise UserError(f"cannot load {spec}: {message}") from None
    if "text" not in ds.column_names:
        raise UserError(f"{spec} has no `text` column (columns: {', '.join(ds.column_names)})")
    return ds
