"""Will a migrated store serve the new model's queries? A prediction without queries, from held-out documents
re-embedded by the new model.

The documents themselves stand in for queries. For each held-out document, its neighbours among the documents
re-embedded by the new model are what a re-embedded store would return; the same new-model vector's neighbours among
the *migrated* documents are what the migrated store returns; the old vector's neighbours among the old documents
are what staying on the old model returns; and the new vector translated back into the old space, among the old
documents, is the query-side alternative. Each is scored by its overlap@k with the re-embedded neighbourhoods
(the document itself excluded everywhere), so re-embedding scores 1 by construction.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbours(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest `docs` (cosine) of each query row i, row i itself excluded."""
    sims = _unit(queries) @ _unit(docs).T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return top


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    k = a.shape[1]
    return float(np.mean([len(np.intersect1d(x, y, assume_unique=True)) / k for x, y in zip(a, b, strict=True)]))


def neighbourhood_check(old: np.ndarray, reembedded: np.ndarray, migrated: np.ndarray | None = None,
                        query_side: np.ndarray | None = None, k: int = 10) -> dict:
    """Overlap@k with the re-embedded neighbourhoods of: the migrated documents (`migrated`: the held-out old
    vectors translated forward), staying on the old model (`old`), and new-model queries translated back into the
    old space (`query_side`: the re-embedded vectors translated in reverse) searching the old documents.

    Also the migrated self top-1: how often a document's new-model vector finds its own migrated vector first.
    All inputs are row-aligned held-out documents (at least k + 2 rows).
    """
    n = len(old)
    if n < k + 2 or len(reembedded) != n:
        raise ValueError(f"need at least {k + 2} row-aligned held-out documents, got {n} and {len(reembedded)}")
    truth = _neighbours(reembedded, reembedded, k)
    out = {"documents": int(n), "k": int(k), "reembed": 1.0, "stay": _overlap(_neighbours(old, old, k), truth)}
    if migrated is not None:
        out["migrate"] = _overlap(_neighbours(reembedded, migrated, k), truth)
        sims = _unit(reembedded) @ _unit(migrated).T
        out["migrate_self_top1"] = float(np.mean(sims.argmax(axis=1) == np.arange(n)))
        out["migrate_cosine"] = float(np.mean(np.sum(_unit(reembedded) * _unit(migrated), axis=1)))
    if query_side is not None:
        out["query_side"] = _overlap(_neighbours(query_side, old, k), truth)
    return out


def recommendation(check: dict, confidence_verdict: str | None = None) -> dict:
    """What to do, from `neighbourhood_check`: the option whose neighbourhoods come closest to re-embedding,
    among migrating, translating queries instead, and staying on the old model; re-embedding is the reference."""
    options = {name: check[name] for name in ("migrate", "query_side", "stay") if name in check}
    best = max(options, key=options.get)
    says = {
        "migrate": "migrate: the translated store should serve the new model's queries better than staying on the "
                   "old model",
        "query_side": "translate the new model's queries into the old space (--reverse) and keep the old store: "
                      "closer to re-embedding than migrating the store",
        "stay": "do not migrate: the translated store would serve the new model's queries worse than staying on the "
                "old model; re-embed the documents to change models",
    }[best]
    if best != "stay" and confidence_verdict == "low":
        best, says = "stay", ("do not migrate: the translator's label-free confidence is low, so the measured "
                              "neighbourhoods may not hold beyond the held-out documents; re-embed the documents")
    return {"choice": best, "says": says,
            "expected_fraction_of_reembedding": {k: round(v, 4) for k, v in options.items()}}
