"""Pivot vectors for `vecbridge train `pivots` ENCODER`: a built-in encoder's embeddings of built-in texts.

A pivot is a third space that `geometric` can step through when the source and target are too far apart to be
matched directly (`GeometricTranslator.fit(..., pivots=...)`). Its texts are ours, unrelated to the
user's, so training stays pair-free. The vectors are embedded once and cached under $VECBRIDGE_HOME/pivots,
keyed by encoder and by a fingerprint of the texts.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from encoders.errors import EncoderError
from vecbridge import files, paths
from vecbridge.errors import UserError
from vecbridge.jobs.embedding import embed, input_fingerprint
from vecbridge.stores import npy
from vecbridge.texts import read_texts

# The general pool (mixed English, in hash order: any stretch of it is a random sample).
DEFAULT_TEXTS = "builtin:pool:train_a"
DEFAULT_ROWS = 10000

# `--pivot auto` (the default): every installed built-in encoder but the two sides' own is a fallback pivot.
AUTO = "auto"
# Fewest rows per side for which auto pivots are tried. Each pivot leg is a whole unsupervised fit between one
# side and the pivot's 10,000 pool vectors, costing minutes; on a few hundred rows the direct fit's failure says
# more about the sample than about the spaces (and a leg on them is no more likely to pass).
AUTO_MIN_ROWS = 2000


def pivot_vectors(encoder: str, texts: str = DEFAULT_TEXTS, rows: int = DEFAULT_ROWS,
                  device: str = "auto") -> np.ndarray:
    """The last `rows` texts of the spec `texts` embedded by the built-in `encoder` (cached; resumable).

    The last ones, because training sets taken from the same spec (the demo, `embed `limit``) take the first
    ones: a pivot should not share its texts with either side.
    """
    if rows < 1:
        raise UserError(f"`pivot_rows` must be a positive number of texts, got {rows}")
    return cached_vectors("pivots", encoder, read_texts(texts)[-rows:], device)


def auto_pivots(exclude: set[str | None], texts: str = DEFAULT_TEXTS, rows: int = DEFAULT_ROWS,
                log: Callable[[str], None] | None = None) -> dict[str, Callable[[], np.ndarray | None]]:
    """The fallback pivots of ``pivots` auto`: every installed built-in encoder not in `exclude`, in the
    registry's order, each as a function that embeds its pivot texts (cached) only when the fit reaches it, and
    returns None when they cannot be had (a corpus not fetched, a model that fails to load)."""
    from encoders.registry import list_encoders

    def lazy(name: str) -> Callable[[], np.ndarray | None]:
        def vectors() -> np.ndarray | None:
            if log is not None:
                log(f"pivot {name}: no direct start has passed so far; trying {name} as a pivot (its {rows} pivot "
                    "vectors are embedded once and cached)")
            try:
                return pivot_vectors(name, texts, rows)
            except (UserError, EncoderError) as exc:
                if log is not None:
                    log(f"pivot {name}: skipped ({exc})")
                return None
        return vectors

    names = [e["name"] for e in list_encoders() if e.get("installed") and ":" not in e["name"]]
    return {name: lazy(name) for name in names if name not in exclude}


def cached_vectors(kind: str, encoder: str, sample: list[str], device: str = "auto") -> np.ndarray:
    """`sample` embedded by the built-in `encoder`, cached under $VECBRIDGE_HOME/KIND/ENCODER and keyed by a
    fingerprint of the texts (embedded once; an interrupted embedding resumes)."""
    stem = paths.home() / kind / encoder / f"{input_fingerprint(sample)[:16]}-{len(sample)}"
    path = stem.with_suffix(".npy")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        listing = stem.with_suffix(".jsonl")
        if not listing.is_file():
            with files.staged() as stage:
                tmp = stage.file(listing)
                tmp.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample), encoding="utf-8")
        embed(encoder, str(listing), path, device=device)
    vectors = npy.read_vectors(path, f"cached {kind} vectors ({encoder})")
    if len(vectors) != len(sample):
        raise UserError(f"cached {kind} vectors {path} hold {len(vectors)} rows, expected {len(sample)}; "
                        "delete the file and run again")
    return vectors
