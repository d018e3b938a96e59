"""Will a migrated store serve the new model's queries? A prediction without real queries, from held-out
documents re-embedded by the new model.

`pseudo_query_check` (what `vecbridge migrate`'s verdict rests on): each held-out document yields a pseudo-query, a
contiguous span of its words (the inverse cloze task), embedded by the new model (and by the old one when it still
runs); the span must find its own document among the held-out documents. Each option is scored by nDCG@10 with that
one relevant document: re-embedding (new queries, re-embedded documents), migrating (new queries, migrated
documents), translating queries instead (new queries translated back, old documents) and staying (old queries, old
documents). This measures retrieval itself; agreement with the re-embedded neighbourhoods (below) does not: two
models that retrieve equally well can disagree on most neighbours.

`neighbourhood_check`, a diagnostic:
The documents themselves stand in for queries. For each held-out document, its neighbours among the documents
re-embedded by the new model are what a re-embedded store would return; the same new-model vector's neighbours among
the *migrated* documents are what the migrated store returns; the old vector's neighbours among the old documents
are what staying on the old model returns; and the new vector translated back into the old space, among the old
documents, is the query-side alternative. Each is scored by its overlap@k with the re-embedded neighbourhoods
(the document itself excluded everywhere), so re-embedding scores 1 by construction.
"""

from __future__ import annotations

import numpy as np

from align.vectors import unit_rows_np


def _neighbours(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest `docs` (cosine) of each query row i, row i itself excluded."""
    sims = unit_rows_np(queries) @ unit_rows_np(docs).T
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
        sims = unit_rows_np(reembedded) @ unit_rows_np(migrated).T
        out["migrate_self_top1"] = float(np.mean(sims.argmax(axis=1) == np.arange(n)))
        out["migrate_cosine"] = float(np.mean(np.sum(unit_rows_np(reembedded) * unit_rows_np(migrated), axis=1)))
    if query_side is not None:
        out["query_side"] = _overlap(_neighbours(query_side, old, k), truth)
    return out


def recommendation(check: dict, confidence_verdict: str | None = None) -> dict:
    """What to do, from `pseudo_query_check` (or `neighbourhood_check`): the option closest to re-embedding among
    migrating, translating queries instead and staying on the old model (when it was measured)."""
    options = {name: check[name] for name in ("migrate", "query_side", "stay") if check.get(name) is not None}
    best = max(options, key=options.get)
    says = {
        "migrate": "migrate: the translated store should serve the new model's queries "
                   + ("better than staying on the old model" if "stay" in options else
                      "(staying on the old model was not measured: give `source_encoder` if it still runs)"),
        "query_side": "translate the new model's queries into the old space (`reverse`) and keep the old store: "
                      "it should serve them better than migrating the store",
        "stay": "do not migrate: the translated store would serve the new model's queries worse than staying on the "
                "old model; re-embed the documents to change models",
    }[best]
    if best != "stay" and confidence_verdict == "low":
        best, says = "stay", ("do not migrate: the translator's label-free confidence is low, so the measured "
                              "retrieval may not hold beyond the held-out documents; re-embed the documents")
    return {"choice": best, "says": says,
            "expected_fraction_of_reembedding": {k: round(v, 4) for k, v in options.items()}}


def pseudo_queries(documents: list[str], seed: int = 0, fraction: float = 0.4, min_words: int = 2) -> list[str]:
    """One span of each document's words (a `fraction` of them, at least `min_words`, at a seeded random
    start): queries whose relevant document is known, with no real queries at hand."""
    rng = np.random.default_rng(seed)
    out = []
    for doc in documents:
        words = doc.split()
        n = min(len(words), max(min_words, round(len(words) * fraction)))
        start = int(rng.integers(0, len(words) - n + 1)) if len(words) > n else 0
        out.append(" ".join(words[start:start + n]))
    return out


def _ndcg_own(queries: np.ndarray, docs: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(nDCG@k, top-1) when query i's only relevant item is document i."""
    sims = unit_rows_np(queries) @ unit_rows_np(docs).T
    own = sims[np.arange(len(sims)), np.arange(len(sims))]
    rank = (sims > own[:, None]).sum(axis=1) + 1  # ties count in the item's favour
    gains = np.where(rank <= k, 1.0 / np.log2(rank + 1), 0.0)
    return float(gains.mean()), float(np.mean(rank == 1))


def pseudo_query_check(reembedded: np.ndarray, queries_new: np.ndarray, migrated: np.ndarray | None = None,
                       old: np.ndarray | None = None, queries_back: np.ndarray | None = None,
                       queries_old: np.ndarray | None = None, k: int = 10) -> dict:
    """nDCG@k of each option on pseudo-queries (row-aligned with their held-out documents), as a fraction of
    re-embedding's. `queries_back`: the new model's pseudo-queries translated into the old space (query-side);
    `queries_old`: the same pseudo-queries embedded by the old model (staying; only when the old model runs)."""
    base, base_top1 = _ndcg_own(queries_new, reembedded, k)
    out = {"documents": int(len(reembedded)), "k": int(k), "reembed_ndcg": round(base, 4),
           "reembed_top1": round(base_top1, 4), "reembed": 1.0}
    for name, q, d in (("migrate", queries_new, migrated), ("query_side", queries_back, old),
                       ("stay", queries_old, old)):
        if q is not None and d is not None:
            score, top1 = _ndcg_own(q, d, k)
            out[name] = round(score / max(base, 1e-9), 4)
            out[f"{name}_ndcg"], out[f"{name}_top1"] = round(score, 4), round(top1, 4)
    return out
