"""Pivot vectors for `vecbridge train --pivot ENCODER`: a built-in encoder's embeddings of built-in texts.

A pivot is a third space that `geometric` can step through when the source and target are too far apart to be
matched directly (see `align.geometric.GeometricTranslator._pivot_starts`). Its texts are ours, unrelated to the
user's, so training stays pair-free. The vectors are embedded once and cached under $VECBRIDGE_HOME/pivots,
keyed by encoder and by a fingerprint of the texts.
"""

from __future__ import annotations

import json

import numpy as np

from vecbridge import paths, safe_write, storage
from vecbridge.errors import UserError
from vecbridge.jobs.embedding import embed, input_fingerprint
from vecbridge.texts import read_texts

# The general pool (mixed English, in hash order: any stretch of it is a random sample).
DEFAULT_TEXTS = "builtin:pool:train_a"
DEFAULT_ROWS = 10000


def pivot_vectors(encoder: str, texts: str = DEFAULT_TEXTS, rows: int = DEFAULT_ROWS,
                  device: str = "auto") -> np.ndarray:
    """The last `rows` texts of the spec `texts` embedded by the built-in `encoder` (cached; resumable).

    The last ones, because training sets taken from the same spec (the demo, `embed --limit`) take the first
    ones: a pivot should not share its texts with either side.
    """
    if rows < 1:
        raise UserError(f"--pivot-rows must be a positive number of texts, got {rows}")
    return cached_vectors("pivots", encoder, read_texts(texts)[-rows:], device)


def cached_vectors(kind: str, encoder: str, sample: list[str], device: str = "auto") -> np.ndarray:
    """`sample` embedded by the built-in `encoder`, cached under $VECBRIDGE_HOME/KIND/ENCODER and keyed by a
    fingerprint of the texts (embedded once; an interrupted embedding resumes)."""
    stem = paths.home() / kind / encoder / f"{input_fingerprint(sample)[:16]}-{len(sample)}"
    path = stem.with_suffix(".npy")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        listing = stem.with_suffix(".jsonl")
        if not listing.is_file():
            with safe_write.staged() as stage:
                tmp = stage.file(listing)
                tmp.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample), encoding="utf-8")
        embed(encoder, str(listing), path, device=device)
    vectors = storage.read_vectors(path, f"cached {kind} vectors ({encoder})")
    if len(vectors) != len(sample):
        raise UserError(f"cached {kind} vectors {path} hold {len(vectors)} rows, expected {len(sample)}; "
                        "delete the file and run again")
    return vectors
