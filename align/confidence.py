"""Label-free confidence that a translator between two embedding spaces works, from unpaired vectors only: one plain
function over numpy arrays, shared by every translator for model selection and reporting."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from align.errors import AlignError
from align.vectors import ranks_in_pool, unit_rows

Mapping = Callable[[np.ndarray], np.ndarray]

# Floor of `structure`'s reference (two target samples' neighbourhood agreement above chance): noise lies under it.
STRUCTURE_FLOOR = 0.05

# Below this score a translator is reported as failed (`verdict: "low"`): it separates maps at chance from working ones.
LOW_CONFIDENCE = 0.6

# A few-shot verdict is "ok" from this top-1 of held-out known pairs: paired evidence outranks the label-free score.
VALIDATION_OK = 0.25

# Draws of sampled rows that a reported confidence averages (`translation_confidence`): one draw is too noisy.
REPORT_DRAWS = 8

# Least agreement (`map_agreement`) at which two anchor starts confirm each other: starts in wrong basins agree near 0.
AGREEMENT_OK = 0.5


def map_agreement(x, w1: np.ndarray, w2: np.ndarray) -> float:
    """Mean cosine between the images of the same rows `x` under two linear maps: 1 for one map, ~0 for unrelated."""
    x = np.asarray(x, dtype=np.float32)
    return float((unit_rows(x @ w1) * unit_rows(x @ w2)).sum(dim=1).mean())


def with_start_check(confidence: dict, passed: bool, agreement: float | None) -> dict:
    """`confidence` with the start screen's evidence: `passed` (a start reached the screen's bar and, if it needed
    it, was confirmed; if not, the verdict is `low` whatever the score), `agreement` (the confirming starts', or
    None) and `margin`, the smaller of score - LOW_CONFIDENCE and agreement - AGREEMENT_OK (negative: below)."""
    margin = confidence["score"] - LOW_CONFIDENCE
    out = dict(confidence)
    if agreement is not None:
        out["agreement"] = agreement
        margin = min(margin, agreement - AGREEMENT_OK)
    out["margin"] = margin
    out["start_passed"] = bool(passed)
    if not passed:
        out["verdict"], out["verdict_from"] = "low", "no start passed the screen"
    return out


def _mutual_nn_rate(sims: torch.Tensor) -> float:
    """Fraction of rows whose nearest column has that row as its own nearest row."""
    fwd = sims.argmax(dim=1)
    back = sims.argmax(dim=0)
    return float((back[fwd] == torch.arange(sims.shape[0])).float().mean())


def _knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's k nearest other rows (cosine; rows already unit length)."""
    sims = x @ x.T
    sims.fill_diagonal_(-float("inf"))
    return sims.topk(k, dim=1).indices


def _neighbourhood_agreement(na: torch.Tensor, nb: torch.Tensor, match: torch.Tensor) -> float:
    """How often a's k-NN `na` land, through `match` (a row -> a b row), among b's k-NN `nb` of the match: what
    makes the score structural, as featureless clouds or a map into the wrong region keep few neighbourhoods."""
    mapped = match[na]                              # (n, k): b-rows matched to a's neighbours
    target = nb[match]                              # (n, k): neighbours in b of each row's own match
    hits = (mapped[:, :, None] == target[:, None, :]).any(dim=2)
    return float(hits.float().mean())


def translation_confidence(src, tgt, forward_fn: Mapping, backward_fn: Mapping | None = None,
                           max_samples: int = 4096, k: int = 10, seed: int = 0, draws: int = 1) -> dict:
    """Score in [0, 1] that `forward_fn` (source -> target) is a meaningful translation; no pairs needed.

    Parts in [0, 1], cosines taken around each space's mean: `cycle`, mean cos(G(F(x)), x) and cos(F(G(y)), y) (1
    without `backward_fn`); `mnn` and `distribution`, the mutual-NN rate and mean NN cosine of F(src) into tgt,
    relative to two disjoint samples of tgt; `structure`, how often x's k-NN land, through F's matches, among
    the k-NN of x's match, less the same for F then a random rotation (on a featureless target any rotation
    does as well), relative to two samples of tgt above chance (`STRUCTURE_FLOOR` at least). `score` =
    structure x the others' geometric mean; `verdict`: "low" under `LOW_CONFIDENCE`. `draws`: independent draws
    of rows averaged (the first is the `draws=1` score); `spread`: their scores' standard deviation.
    """
    src, tgt = np.asarray(src, dtype=np.float32), np.asarray(tgt, dtype=np.float32)
    if src.ndim != 2 or tgt.ndim != 2:
        raise AlignError(f"confidence needs 2-D arrays; got source {src.shape} and target {tgt.shape}")
    if draws < 1:
        raise AlignError(f"draws must be >= 1, got {draws}")
    m = min(max_samples, len(src), len(tgt) // 2)
    if m < 2 * k + 2:
        raise AlignError(f"confidence needs at least {2 * k + 2} source and {2 * (2 * k + 2)} target "
                         f"vectors; got {len(src)} and {len(tgt)}")
    runs = [_one_draw(src, tgt, forward_fn, backward_fn, m, k,
                      np.random.default_rng(seed if d == 0 else [seed, d])) for d in range(draws)]
    mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    score = mean.pop("score")
    return {"score": score, "verdict": "ok" if score >= LOW_CONFIDENCE else "low", **mean,
            "samples": m, "draws": draws, "spread": float(np.std([r["score"] for r in runs]))}


def _one_draw(src: np.ndarray, tgt: np.ndarray, forward_fn: Mapping, backward_fn: Mapping | None, m: int, k: int,
              rng: np.random.Generator) -> dict:
    """One draw of `translation_confidence`: its parts and raw measures on `m` sampled rows (`rng`)."""
    s = src[rng.choice(len(src), m, replace=False)]
    t_idx = rng.permutation(len(tgt))
    t1, t2 = tgt[t_idx[:m]], tgt[t_idx[m:2 * m]]

    fs = np.asarray(forward_fn(s), dtype=np.float32)
    if fs.shape != (m, tgt.shape[1]):
        raise AlignError(f"forward_fn returned shape {fs.shape}; expected {(m, tgt.shape[1])}")
    # cosines around each space's mean: the direction all texts share would make any output near it look close
    ms, mt = s.mean(0), np.concatenate([t1, t2]).mean(0)
    us, ufs, ut1, ut2 = unit_rows(s - ms), unit_rows(fs - mt), unit_rows(t1 - mt), unit_rows(t2 - mt)

    cycles = []
    if backward_fn is not None:
        cycles.append(float((unit_rows(backward_fn(fs) - ms) * us).sum(dim=1).mean()))
        back_t2 = np.asarray(backward_fn(t2), dtype=np.float32)
        cycles.append(float((unit_rows(forward_fn(back_t2) - mt) * ut2).sum(dim=1).mean()))
    cycle = float(np.mean(cycles)) if cycles else 1.0

    sims, ref = ufs @ ut1.T, ut2 @ ut1.T
    mnn, mnn_ref = _mutual_nn_rate(sims), _mutual_nn_rate(ref)
    nn_cos, nn_cos_ref = float(sims.max(dim=1).values.mean()), float(ref.max(dim=1).values.mean())
    knn_s, knn_t1, knn_t2 = _knn(us, k), _knn(ut1, k), _knn(ut2, k)
    structure = _neighbourhood_agreement(knn_s, knn_t1, sims.argmax(dim=1))
    structure_ref = _neighbourhood_agreement(knn_t2, knn_t1, ref.argmax(dim=1))
    rotation, _ = torch.linalg.qr(torch.as_tensor(rng.normal(size=(fs.shape[1], fs.shape[1])),
                                                  dtype=torch.float32))
    structure_null = _neighbourhood_agreement(knn_s, knn_t1, ((ufs @ rotation) @ ut1.T).argmax(dim=1))
    chance = k / m

    parts = {
        "cycle": float(np.clip(cycle, 0.0, 1.0)),
        "mnn": float(np.clip(mnn / max(mnn_ref, 1e-6), 0.0, 1.0)),
        "distribution": float(np.clip(nn_cos / max(nn_cos_ref, 1e-6), 0.0, 1.0)),
        "structure": float(np.clip((structure - max(structure_null, chance))
                                   / max(structure_ref - chance, STRUCTURE_FLOOR), 0.0, 1.0)),
    }
    others = [parts["cycle"], parts["mnn"], parts["distribution"]]
    score = parts["structure"] * float(np.prod(others) ** (1 / len(others)))
    return {"score": score, **parts,
            "mnn_rate": mnn, "mnn_rate_reference": mnn_ref,
            "nn_cosine": nn_cos, "nn_cosine_reference": nn_cos_ref,
            "neighbourhood_agreement": structure, "neighbourhood_agreement_reference": structure_ref,
            "neighbourhood_agreement_null": structure_null}


def pair_validation(pred: np.ndarray, true_target: np.ndarray, pool: np.ndarray) -> dict:
    """Retrieval of held-out known pairs: each prediction `pred[i]` ranked among all true targets plus `pool` rows
    (its own is `true_target[i]`)."""
    ranks = ranks_in_pool(pred, np.concatenate([true_target, pool]))
    return {"pairs": int(len(pred)), "pool": int(len(true_target) + len(pool)),
            "top1": float((ranks == 1).mean()), "median_rank": float(np.median(ranks))}


def with_pair_validation(confidence: dict, validation: dict) -> dict:
    """`confidence` with the held-out known-pair check attached; that check decides the verdict."""
    verdict = "ok" if validation["top1"] >= VALIDATION_OK else "low"
    return {**confidence, "verdict": verdict, "verdict_from": "held-out known pairs", "validation": validation}
