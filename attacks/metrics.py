"""Scores of the attacks: attribute accuracy (top-1, top-k, chance) and keyword precision / recall / F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def top_k_accuracy(ranked: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> float | None:
    """Fraction of rows whose true label is among the first `k` of its ranked predictions (None for no rows)."""
    if len(truth) == 0:
        return None
    return float(np.mean([t in list(r)[:k] for r, t in zip(ranked, truth, strict=True)]))


def chance(truth: Sequence[str]) -> float | None:
    """The majority class's share: what always guessing the most frequent value scores."""
    if len(truth) == 0:
        return None
    return Counter(truth).most_common(1)[0][1] / len(truth)


def set_scores(predicted: set, truth: set) -> tuple[int, int, int]:
    """(true positives, predicted, true) counts of one item."""
    return len(predicted & truth), len(predicted), len(truth)


def _prf(tp: int, n_pred: int, n_true: int) -> dict:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def item_f1(predicted: set, truth: set) -> float:
    return _prf(*set_scores(predicted, truth))["f1"]


def keyword_scores(predicted: Sequence[set], truth: Sequence[set]) -> dict:
    """Micro-averaged precision, recall and F1 of predicted word sets against true word sets, and `n` items."""
    tp = n_pred = n_true = 0
    for p, t in zip(predicted, truth, strict=True):
        a, b, c = set_scores(set(p), set(t))
        tp, n_pred, n_true = tp + a, n_pred + b, n_true + c
    return {**_prf(tp, n_pred, n_true), "n": len(truth)}
