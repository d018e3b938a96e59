"""Translation quality against paired ground truth: mean cosine, top-1, mean/median rank, fraction closer.

The one metrics implementation of vecbridge; `vecbridge eval`, the benchmarks and the tests all call it.
"""

from __future__ import annotations

import numpy as np

from align.errors import AlignError
from align.vectors import ranks_in_pool, unit_rows


def mean_cosine(pred: np.ndarray, target: np.ndarray) -> float:
    return float((unit_rows(pred) * unit_rows(target)).sum(dim=1).mean())


def evaluate(pred: np.ndarray, target: np.ndarray, pool: int = 8192) -> dict:
    """Metrics of translated `pred` against paired `target` (row i = the same text in both).

    Every item is ranked within a pool of exactly `pool` consecutive rows (or all rows if fewer): rows are cut
    into consecutive pools and a short tail is ranked against the last `pool` rows. Ranks depend on the pool
    size, so it is reported with them.
    """
    pred = np.asarray(pred, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if pred.shape != target.shape:
        raise AlignError(f"predictions {pred.shape} and targets {target.shape} must have the same shape")
    n = len(pred)
    pool = max(1, min(pool, n))
    parts = []
    for start in range(0, n, pool):
        end = min(start + pool, n)
        window = min(start, n - pool)
        parts.append(ranks_in_pool(pred[start:end], target[window:window + pool], offset=start - window))
    ranks = np.concatenate(parts)
    return {
        "n": n,
        "pool": int(pool),
        "mean_cosine": mean_cosine(pred, target),
        "top1": float((ranks == 1).mean()),
        "mean_rank": float(ranks.mean()),
        "median_rank": float(np.median(ranks)),
        # fraction of the other pool items that score above the true match (0 = perfect, ~0.5 = chance)
        "frac_closer": float(((ranks - 1) / max(pool - 1, 1)).mean()),
    }
