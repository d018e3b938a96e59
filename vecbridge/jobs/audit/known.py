"""The known-documents threat model: an attacker who knows K of the leaked documents (public pages in a private
index, a few of the victim's own mails) maps the leak by those K pairs (from 16 on, held-out folds of them
validate the map) and reads the other records; one point of the curve per K, scored beside the ideal on those records.
The known documents are never scored as recovered."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from align import Translator
from vecbridge.errors import UserError
from vecbridge.jobs.audit.leak import Leak
from vecbridge.jobs.audit.suite import AttackSuite, attack_table

# Fewest records left to score once the known documents are set aside.
MIN_SCORED_ROWS = 20


def check_known_documents(ks: list[int] | None, leak: Leak) -> list[int]:
    """The K's asked for, sorted, each once, with 0 (the vectors-only attacker) first; [] when none were asked.
    Each must leave `MIN_SCORED_ROWS` records with a truth text to score."""
    if not ks:
        return []
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in ks):
        raise UserError(f"--known-documents must be numbers of documents (0 or more), got {ks}")
    with_text = sum(bool(t) for t in leak.texts)
    if with_text == 0:
        raise UserError("--known-documents needs the documents' texts: give --truth with a \"text\" per row (or a "
                        "store that holds its documents)")
    most = with_text - MIN_SCORED_ROWS
    if max(ks) > most:
        raise UserError(f"--known-documents {max(ks)}: the truth gives the text of {with_text} records and "
                        f"{MIN_SCORED_ROWS} must stay unknown to score the attack; ask for at most {max(most, 0)}")
    return sorted({0, *ks})


def known_order(leak: Leak, seed: int) -> np.ndarray:
    """The order in which the attacker comes to know documents: a seeded permutation of the positions of the rows
    with a truth text (in `leak.with_text()`); the attacker who knows K knows the first K (nested across K)."""
    return np.random.default_rng(seed).permutation(sum(bool(t) for t in leak.texts))


def curve_point(k: int, model: Translator, suite: AttackSuite, rows: Leak, ideal_x: np.ndarray, order: np.ndarray,
                reference: str, seconds: float) -> dict:
    """What the attacker who knows `k` documents (`order[:k]` of `rows`, the leak's rows with a text) recovers from
    the others, beside the ideal on those same records."""
    scored = np.sort(order[k:])
    leak = rows.subset(scored)
    translated = suite.run(model.transform(leak.vectors), leak)
    attributes, inversion = attack_table(translated, suite.run(ideal_x[scored], leak), None)
    confidence = model.confidence_ or {}
    return {"k": k, "known_ids": [rows.ids[i] for i in np.sort(order[:k])], "scored": len(scored),
            "reference": reference,
            "translator": {"method": model.method, "confidence": confidence.get("score"),
                           "verdict": confidence.get("verdict"), "verdict_from": confidence.get("verdict_from"),
                           "validation": confidence.get("validation")},
            "demonstrated": confidence.get("verdict") != "low",
            "attributes": {name: {m: a[m] for m in ("accuracy", "top_k_accuracy", "ideal_accuracy", "chance", "n")}
                           for name, a in attributes.items()},
            "keywords": {m: inversion["keywords"][m] for m in ("precision", "recall", "f1", "ideal_f1")},
            "retrieval_f1": inversion["retrieval"]["f1"], "retrieval_ideal_f1": inversion["retrieval"]["ideal_f1"],
            "sensitive_fraction": inversion["sensitive"]["fraction"],
            "sensitive_ideal_fraction": inversion["sensitive"]["ideal_fraction"], "seconds": round(seconds, 2)}


def known_documents_curve(ks: list[int], rows: Leak, ideal_x: np.ndarray, order: np.ndarray, vectors_only: tuple,
                          few_shot: Callable[[np.ndarray, np.ndarray], tuple]) -> list[dict]:
    """One `curve_point` per K of `ks` (0 first): K = 0 is `vectors_only` (the audit's own map, its suite and
    reference spec); for K > 0 `few_shot(known_x, known_ideal_x)` returns (map, suite, reference
    spec) fitted with the first K of `order` as known pairs (their leaked vectors and their texts' known-encoder
    vectors)."""
    curve = []
    for k in ks:
        start = time.perf_counter()
        if k == 0:
            model, suite, spec = vectors_only
        else:
            known = order[:k]
            model, suite, spec = few_shot(rows.vectors[known], ideal_x[known])
        curve.append(curve_point(k, model, suite, rows, ideal_x, order, spec, time.perf_counter() - start))
    return curve
