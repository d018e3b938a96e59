"""Attribute inference on vectors of a known space: zero-shot (nearest embedded label) and probe (a classifier
trained on labelled public vectors of the same space). Both rank every label for every row."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from align.vectors import unit_rows_np
from attacks.errors import AttackError
from attacks.metrics import chance, top_k_accuracy

Embed = Callable[[list[str]], np.ndarray]
DEFAULT_TEMPLATES = ("This text is about {}.",)


class ZeroShotAttribute:
    """Each row's labels ranked by cosine to the labels' embeddings (the mean over `templates` per label)."""

    def __init__(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> None:
        self.labels = list(labels)
        self.templates = tuple(templates)

    def fit(self, embed: Embed) -> ZeroShotAttribute:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise AttackError(f"zero-shot needs at least 2 distinct labels, got {self.labels!r}")
        for t in self.templates:
            if t.count("{}") != 1:
                raise AttackError(f"template {t!r} must hold exactly one {{}} where the label goes")
        texts = [t.format(label) for label in self.labels for t in self.templates]
        vectors = unit_rows_np(embed(texts)).reshape(len(self.labels), len(self.templates), -1).mean(axis=1)
        self.classes_ = np.array(self.labels, dtype=object)
        self.label_vectors_ = unit_rows_np(vectors)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(rows, labels) cosine similarities, in the order of `classes_`."""
        if x.shape[1] != self.label_vectors_.shape[1]:
            raise AttackError(f"vectors have {x.shape[1]} dims but the labels were embedded in "
                              f"{self.label_vectors_.shape[1]}")
        return unit_rows_np(x) @ self.label_vectors_.T


class ProbeAttribute:
    """A logistic-regression probe trained on labelled vectors of the known space (public data)."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, y: Sequence[str]) -> ProbeAttribute:
        y = np.asarray(y, dtype=object)
        if len(set(y)) < 2:
            raise AttackError(f"a probe needs training rows of at least 2 labels, got {sorted(set(y))}")
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(unit_rows_np(x), y.astype(str))
        self.classes_ = self.model_.classes_.astype(object)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(unit_rows_np(x))


def rank_labels(model, x: np.ndarray, k: int) -> list[list[str]]:
    """The `k` best labels of every row, best first."""
    s = model.scores(x)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[str(model.classes_[j]) for j in row] for row in order]


def attribute_scores(ranked: Sequence[Sequence[str]], truth: Sequence[str | None], k: int) -> dict:
    """Accuracy, top-k accuracy, chance and `n` over the rows whose truth is known (not None)."""
    keep = [i for i, t in enumerate(truth) if t is not None]
    r, t = [ranked[i] for i in keep], [truth[i] for i in keep]
    return {"accuracy": top_k_accuracy(r, t, 1), "top_k_accuracy": top_k_accuracy(r, t, k), "k": k,
            "chance": chance(t), "n": len(t)}
