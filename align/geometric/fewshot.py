"""Few-shot maps from known pairs alone, for pairs whose domain no unpaired target set covers (an attacker's known
documents against a public reference of other texts): self-learning against such a set pulls the map toward the
wrong texts, and the set's mean is not where the pairs' rows lie. The unpaired source rows still lend their shape.

`PairsSubspaceTranslator`: the source rows centred on their own mean and projected on their `dims` leading
principal directions, rotated onto the pairs' targets (orthogonal Procrustes, no unit rows: lengths carry
meaning here), the target mean estimated from the pairs. `dims` is chosen by held-out pairs (`FOLDS`-fold):
fewer pairs than dims leave the rotation of the unspanned directions arbitrary, and dropping the weak directions
beats guessing them.

Measured on a 2,000-vector ICD-10 leak of mpnet-base read by minilm-l6, WordNet glosses as the unpaired targets
(chapter accuracy, ideal 0.90): 64 pairs 0.75 by plain Procrustes of unit rows, 0.79 on the 32 directions chosen;
256 pairs 0.85, 0.86 (96 directions). The geometric fit against WordNet from the pairs' rotation: 0.39 and 0.50.
Tried and dropped: the mutual nearest neighbours of the mapped leak among the targets as extra pairs (+0.01 in
accuracy, lower held-out cosine), a ridge map (lower), whitening (not measured).

`PairsEnsembleTranslator`: the subspace map beside geometric fits against one or more unpaired target sets of
other texts, each fitted without one fold of the known pairs (cross-fitting: every pair is out of fold for some
members, so the ensemble is validated on pairs none of those members saw). Each member is calibrated on its own
pairs: its output moved by the pairs' mean residual (a geometric fit puts the leak on the target set's mean, not
where the leak's texts lie) and its spread around the leak's mean scaled to the pairs' targets'. The members' unit
rows are averaged. The ensemble is kept where its out-of-fold cosine beats the subspace map's alone.
Measured (the same ICD-10 leak, and Brown and WordNet leaks with their corpus out of the targets; attribute
accuracy / ideal at 64 pairs): the subspace map 0.88 / 0.77 / 0.83, a single geometric fit from the relative
start 0.29 / 0.85 / 0.90 (0.84 / 0.86 / 0.91 calibrated), the ensemble of both with 4 such fits 0.91 / 0.92 / 0.97.
Tried and dropped (each within 0.03 and of either sign across leaks; BENCHMARKS.md §4): a third target set,
members refitted on all the pairs, the subspace map's weight chosen by the out-of-fold pairs, the translations
averaged over the leak's own nearest neighbours, 8 members, affine members.
"""

from __future__ import annotations

import numpy as np

from align.base import Translator
from align.confidence import REPORT_DRAWS, pair_validation, translation_confidence, with_pair_validation
from align.errors import AlignError
from align.geometric.translator import GeometricTranslator
from align.vectors import check_vectors, orthogonal_map, unit_rows_np

# Candidate numbers of leading source directions (capped at the source dim); the full space is always a candidate.
DIMS_GRID = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)

# Folds of the known pairs that choose `dims` (each fold held out once); also their validation.
FOLDS = 4

# Fewest known pairs from which the held-out folds decide the verdict (as `GeometricTranslator`'s validation).
MIN_VALIDATION_PAIRS = 16

# Target rows among which each held-out pair's translation is ranked (its own target beside them).
VALIDATION_POOL = 4000


def principal_directions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' mean and their principal directions (columns, strongest first)."""
    mean = x.mean(0, dtype=np.float64)
    centred = x - mean
    vals, vecs = np.linalg.eigh(centred.T @ centred)
    return mean, vecs[:, ::-1]


def subspace_map(mean_x: np.ndarray, directions: np.ndarray, kx: np.ndarray, ky: np.ndarray,
                 dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, source mean, target mean) of y = target mean + (x - source mean) W: `kx` centred on `mean_x` and
    projected on the first `dims` `directions`, rotated onto `ky` centred on the mean its rotated rows imply (the
    pairs' own means first: the rotation and the target mean each depend on the other)."""
    p = directions[:, :min(dims, len(kx))]
    z = (kx - mean_x) @ p
    r = orthogonal_map(z - z.mean(0), ky - ky.mean(0))
    mean_y = (ky - z @ r).mean(0)
    r = orthogonal_map(z, ky - mean_y)
    mean_y = (ky - z @ r).mean(0)
    return (p @ r).astype(np.float32), mean_x.astype(np.float32), mean_y.astype(np.float32)


def checked_pairs(src, tgt, pairs) -> tuple[np.ndarray, ...]:
    """The inputs of a fit from known pairs, checked: (src, tgt, known source rows, known target rows)."""
    if not isinstance(pairs, tuple) or len(pairs) != 2:
        raise AlignError("pairs must be a tuple (known source rows, known target rows)")
    src = check_vectors(src, "source vectors", min_rows=2)
    tgt = check_vectors(tgt, "target vectors", min_rows=2)
    kx = check_vectors(pairs[0], "paired source vectors", src.shape[1], min_rows=2)
    ky = check_vectors(pairs[1], "paired target vectors", tgt.shape[1], min_rows=2)
    if len(kx) != len(ky):
        raise AlignError(f"paired vectors must have the same number of rows; got {len(kx)} and {len(ky)}")
    return src, tgt, kx, ky


def _folds(n: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), min(FOLDS, n))


def _validation_pool(tgt: np.ndarray, seed: int) -> np.ndarray:
    """A seeded sample of `VALIDATION_POOL` target rows among which held-out pairs are ranked."""
    return tgt[np.random.default_rng(seed).permutation(len(tgt))[:VALIDATION_POOL]]


def _cosines(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.sum(pred * true, axis=1) / np.maximum(
        np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1), 1e-12)


class PairsSubspaceTranslator(Translator):
    """`PairsSubspaceTranslator(seed=0).fit(src, tgt, pairs=(known_src, known_tgt))`: a few-shot map from the known
    pairs on the principal directions of the unpaired source rows `src`; `tgt` (unpaired target rows) only pools
    the held-out pairs' retrieval and the label-free score. `dims` 0: chosen by held-out pairs among `DIMS_GRID`."""

    method = "pairs_subspace"
    fit_options = frozenset({"confidence"})

    def __init__(self, dims: int = 0, seed: int = 0):
        self.dims, self.seed = dims, seed

    def fit(self, src, tgt, pairs=None, confidence: bool = True) -> PairsSubspaceTranslator:
        """`confidence` False: no label-free confidence (`confidence_` None; a part whose caller checks the whole)."""
        src, tgt, kx, ky = self._checked(src, tgt, pairs)
        mean_x, directions = principal_directions(src)
        held = self._held_out(mean_x, directions, kx, ky)
        self.dims_ = max(held, key=lambda d: held[d]["cosine"])
        self.held_out_cosine_ = held[self.dims_]["cosine"]
        self.weight_, self.source_mean_, self.target_mean_ = subspace_map(mean_x, directions, kx, ky, self.dims_)
        self.dim_source_, self.dim_target_ = src.shape[1], tgt.shape[1]
        self.fit_report_ = {"dims": self.dims_, "pairs": len(kx),
                            "held_out_cosine": {d: round(h["cosine"], 4) for d, h in held.items()}}
        self.confidence_ = self._confidence(src, tgt, ky, held[self.dims_]["pred"]) if confidence else None
        return self

    def _checked(self, src, tgt, pairs) -> tuple[np.ndarray, ...]:
        if self.dims < 0:
            raise AlignError(f"dims must be >= 0 (0 = chosen by held-out pairs), got {self.dims}")
        return checked_pairs(src, tgt, pairs)

    def _held_out(self, mean_x, directions, kx, ky) -> dict[int, dict]:
        """Per candidate dims (those the folds' pairs can span, and the full space): every pair's translation by the
        map fitted without its fold, and their mean cosine to the true targets."""
        folds = _folds(len(kx), self.seed)
        fitted = len(kx) - max(len(f) for f in folds)
        full = kx.shape[1]
        out = {}
        for d in [self.dims] if self.dims else [d for d in DIMS_GRID if d <= fitted and d < full] + [full]:
            pred = np.zeros_like(ky)
            for fold in folds:
                rest = np.setdiff1d(np.arange(len(kx)), fold)
                w, mx, my = subspace_map(mean_x, directions, kx[rest], ky[rest], d)
                pred[fold] = my + (kx[fold] - mx) @ w
            out[d] = {"pred": pred, "cosine": float(_cosines(pred, ky).mean())}
        return out

    def _confidence(self, src, tgt, ky, held_pred) -> dict:
        """The label-free confidence, its verdict decided by the held-out pairs' retrieval among `tgt` rows."""
        confidence = translation_confidence(src, tgt, self.transform, self.inverse_transform, seed=self.seed,
                                            draws=REPORT_DRAWS)
        if len(ky) < MIN_VALIDATION_PAIRS:
            # across domains the label-free score has nothing to compare: only held-out pairs may clear a map
            return {**confidence, "verdict": "low",
                    "verdict_from": f"fewer than {MIN_VALIDATION_PAIRS} known pairs: too few to validate"}
        return with_pair_validation(confidence, pair_validation(held_pred, ky, _validation_pool(tgt, self.seed)))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.target_mean_ + (x - self.source_mean_) @ self.weight_

    def _backward(self, y: np.ndarray) -> np.ndarray:
        return self.source_mean_ + (y - self.target_mean_) @ self.weight_.T


# Folds of the known pairs in the ensemble: one geometric member per fold and target set, fitted without that fold.
ENSEMBLE_FOLDS = 4

# Fewest known pairs for the ensemble (8 per fold): from 16 pairs (12 per member, 4 per fold) the members' relative
# start is loose and the out-of-fold check too noisy to refuse them (Brown genre at 16 pairs: 0.44 of the ideal
# where the pairs' map alone reads 0.58).
ENSEMBLE_MIN_PAIRS = 32

# The members refine the pairs' relative start whatever its screen score: no search from scratch (the out-of-fold
# check judges them; a search against other texts finds nothing and costs minutes).
MEMBER_PARAMS = {"accept_score": 0.0, "verbose": False}

# Source rows each geometric member is fitted on (a seeded sample of larger leaks; every row is calibrated and
# translated): the members' cost stays that of a 4,000-row leak whatever the leak's size.
MEMBER_ROWS = 4000


def _spread(x: np.ndarray) -> float:
    return float(((x - x.mean(0)) ** 2).sum(1).mean())


class _Calibrated:
    """A fitted map's output moved by its pairs' mean residual and its spread around the mapped rows' mean
    scaled to the pairs' targets' spread, as unit rows."""

    def __init__(self, model: Translator, src: np.ndarray, kx: np.ndarray, ky: np.ndarray):
        self.model = model
        z = model.transform(src)
        self.offset = (ky - model.transform(kx)).mean(0)
        self.centre = (z + self.offset).mean(0)
        self.scale = float(np.sqrt(_spread(ky) / max(_spread(z + self.offset), 1e-12)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.model.transform(x) + self.offset
        return unit_rows_np(self.centre + self.scale * (z - self.centre))

    def backward(self, y: np.ndarray) -> np.ndarray:
        return unit_rows_np(self.model.inverse_transform(self.centre + (y - self.centre) / self.scale - self.offset))


class PairsEnsembleTranslator(Translator):
    """`PairsEnsembleTranslator(seed=0).fit(src, tgt, pairs=(known_src, known_tgt), targets=[more target sets])`:
    the few-shot ensemble (module docstring) over `tgt` and `targets` (unpaired target rows, each of other texts
    than the pairs maybe); its verdict comes from the out-of-fold pairs' retrieval among `tgt` rows. From fewer
    than `ENSEMBLE_MIN_PAIRS` pairs, the subspace map alone (calibrated, its own verdict). `member_params`: the
    geometric members' other hyper-parameters (`GeometricTranslator`'s, over `MEMBER_PARAMS`)."""

    method = "pairs_ensemble"

    def __init__(self, pair_weight: float = 1.0, member_params: dict | None = None, seed: int = 0):
        self.pair_weight, self.member_params, self.seed = pair_weight, member_params, seed

    def fit(self, src, tgt, pairs=None, targets=()) -> PairsEnsembleTranslator:
        src, tgt, kx, ky = checked_pairs(src, tgt, pairs)
        sets = [tgt, *(check_vectors(t, "target vectors", tgt.shape[1], min_rows=2) for t in targets)]
        self.dim_source_, self.dim_target_ = src.shape[1], tgt.shape[1]
        few = len(kx) < ENSEMBLE_MIN_PAIRS
        subspace = PairsSubspaceTranslator(seed=self.seed).fit(src, tgt, pairs=(kx, ky), confidence=few)
        if few:
            self.members_ = [_Calibrated(subspace, src, kx, ky)]
            self.held_out_cosine_ = subspace.held_out_cosine_
            self.fit_report_ = {"chosen": "pairs_subspace", "members": 1, "pairs": len(kx),
                                "why": f"fewer than {ENSEMBLE_MIN_PAIRS} known pairs"}
            self.confidence_ = subspace.confidence_
            return self
        folds = np.array_split(np.random.default_rng(self.seed).permutation(len(kx)), ENSEMBLE_FOLDS)
        sub_oof, geo_oof = np.zeros_like(ky), np.zeros_like(ky)
        members: list[_Calibrated] = []
        rows = src if len(src) <= MEMBER_ROWS else \
            src[np.sort(np.random.default_rng(self.seed).permutation(len(src))[:MEMBER_ROWS])]
        for j, fold in enumerate(folds):
            rest = np.setdiff1d(np.arange(len(kx)), fold)
            part = PairsSubspaceTranslator(seed=self.seed).fit(src, tgt, pairs=(kx[rest], ky[rest]), confidence=False)
            sub_oof[fold] = _Calibrated(part, src, kx[rest], ky[rest]).forward(kx[fold])
            for t in sets:
                geo = GeometricTranslator(**{**MEMBER_PARAMS, **(self.member_params or {})}, seed=self.seed + j,
                                          pair_weight=self.pair_weight).fit(
                    rows, t, pairs=(kx[rest], ky[rest]), confidence=False)
                members.append(_Calibrated(geo, src, kx[rest], ky[rest]))
                geo_oof[fold] += members[-1].forward(kx[fold])
        whole = _Calibrated(subspace, src, kx, ky)
        # out of fold, the ensemble is the subspace map beside the members that did not see the pair (fewer than
        # the whole ensemble: a conservative estimate)
        ensemble_oof = unit_rows_np(sub_oof + geo_oof)
        cosines = {"pairs_subspace": float(_cosines(sub_oof, ky).mean()),
                   "ensemble": float(_cosines(ensemble_oof, ky).mean())}
        chosen = max(cosines, key=cosines.get)
        self.members_ = [whole, *members] if chosen == "ensemble" else [whole]
        self.held_out_cosine_ = cosines[chosen]
        self.fit_report_ = {"chosen": chosen, "members": len(self.members_), "pairs": len(kx),
                            "target_sets": len(sets), "folds": len(folds), "member_rows": len(rows),
                            "held_out_cosine": {m: round(c, 4) for m, c in cosines.items()},
                            "subspace_dims": subspace.dims_}
        confidence = translation_confidence(src, tgt, self.transform, self.inverse_transform, seed=self.seed,
                                            draws=REPORT_DRAWS)
        held = ensemble_oof if chosen == "ensemble" else sub_oof
        self.confidence_ = with_pair_validation(confidence, pair_validation(held, ky, _validation_pool(tgt, self.seed)))
        return self

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return unit_rows_np(sum(m.forward(x) for m in self.members_))

    def _backward(self, y: np.ndarray) -> np.ndarray:
        return unit_rows_np(sum(m.backward(y) for m in self.members_))
