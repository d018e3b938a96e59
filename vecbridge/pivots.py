"""Pivot vectors for `vecbridge train --pivot ENCODER`: a built-in encoder's embeddings of built-in texts.

A pivot is a third space that `geometric` can step through when the source and target are too far apart to be
matched directly (see `align.geometric.GeometricTranslator._pivot_starts`). Its texts are ours, unrelated to the
user's, so training stays pair-free. The vectors are embedded once and cached under $VECBRIDGE_HOME/pivots,
keyed by encoder and by a fingerprint of the texts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vecbridge import paths, storage
from vecbridge.embed import embed_to_file, input_fingerprint
from vecbridge.errors import UserError
from vecbridge.texts import read_texts

# The general pool (mixed English; hash order, so its first rows are a random sample of it).
DEFAULT_TEXTS = "builtin:pool:train_a"
DEFAULT_ROWS = 10000


def pivot_path(encoder: str, texts: list[str]) -> Path:
    return paths.home() / "pivots" / encoder / f"{input_fingerprint(texts)[:16]}-{len(texts)}.npy"


def pivot_vectors(encoder: str, texts: str = DEFAULT_TEXTS, rows: int = DEFAULT_ROWS,
                  device: str = "auto") -> np.ndarray:
    """`rows` texts of the spec `texts` embedded by the built-in `encoder` (cached; resumable if interrupted)."""
    if rows < 1:
        raise UserError(f"--pivot-rows must be a positive number of texts, got {rows}")
    sample = read_texts(texts, limit=rows)
    path = pivot_path(encoder, sample)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        embed_to_file(encoder, texts, path, limit=rows, device=device)
    vectors = storage.read_vectors(path, f"pivot vectors ({encoder})")
    if len(vectors) != len(sample):
        raise UserError(f"cached pivot vectors {path} hold {len(vectors)} rows, expected {len(sample)}; "
                        "delete the file and run again")
    return vectors
