"""Which reference set to translate against: a label-free match between the domain of a source set and candidate
target sets, compared through what any rotation keeps.

An unsupervised translator matches the two sets' distributions. When the source is one narrow domain (a store of
diagnosis codes, one mailing list) and the target a broad mix of texts, the true map does not match them and the
fit fails. A reference of the source's own domain, found among candidates by its profile, makes the problem the one
the translator solves. The profile of a set of vectors:

- `concentration`: the length of the mean unit row (0 for directions spread evenly, 1 for one direction): a narrow
  domain is concentrated;
- `spectrum`: the top `k` eigenvalues of the centred unit rows' covariance, normalised to sum 1: its shape;
- `neighbour`: the mean cosine of each centred row's 10 nearest other rows: how tightly it clusters.

All three are invariant to rotations and comparable across dims (the spectrum's top `k` only). Each is also a
property of the encoder, so a profile distance ranks candidates for one source; it is not an absolute scale.

When the source is already in the candidates' space (a leak put there by a translator), `rank_in_space` compares
the sets directly: the distance between their mean unit rows (a linear-kernel MMD), which a translator that is only
roughly right still carries to the right place. The profiles then mislead, as they also carry the translator's
distortion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from align.errors import AlignError
from align.vectors import unit_rows_np

PROFILE_ROWS = 1000
SPECTRUM_K = 32
NEIGHBOURS = 10


@dataclass(frozen=True)
class Profile:
    concentration: float
    spectrum: np.ndarray
    neighbour: float
    rows: int

    def as_dict(self) -> dict:
        return {"concentration": round(self.concentration, 4), "neighbour": round(self.neighbour, 4),
                "rows": self.rows}


def profile(vectors: np.ndarray, rows: int = PROFILE_ROWS, k: int = SPECTRUM_K, seed: int = 0) -> Profile:
    """The profile of up to `rows` rows of `vectors` (a seeded sample when there are more)."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) < k + 1 or v.shape[1] < k:
        raise AlignError(f"a reference profile needs at least {k + 1} rows of at least {k} dims; got {v.shape}")
    if len(v) > rows:
        v = v[np.sort(np.random.default_rng(seed).choice(len(v), rows, replace=False))]
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    concentration = float(np.linalg.norm(v.mean(0)))
    c = v - v.mean(0)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    # eigenvalues of C^T C / n are the squared singular values of C / sqrt(n): the smaller side's Gram is enough
    vals = np.linalg.svd(c, compute_uv=False)[:k] ** 2
    gram = c @ c.T
    np.fill_diagonal(gram, -np.inf)
    top = np.partition(gram, -NEIGHBOURS, axis=1)[:, -NEIGHBOURS:]
    return Profile(concentration, vals / vals.sum(), float(top.mean()), len(v))


def profile_distance(a: Profile, b: Profile) -> float:
    """How far two profiles are: log ratios of concentration and neighbour cosine plus the RMS log ratio of the
    spectra (each a scale-free term, so none dominates by its units)."""
    conc = abs(np.log(max(a.concentration, 1e-6) / max(b.concentration, 1e-6)))
    neigh = abs(np.log(max(a.neighbour, 1e-6) / max(b.neighbour, 1e-6)))
    k = min(len(a.spectrum), len(b.spectrum))
    spec = float(np.sqrt(np.mean(np.log(a.spectrum[:k] / b.spectrum[:k]) ** 2)))
    return float(conc + neigh + spec)


def rank_references(source: np.ndarray, candidates: dict[str, np.ndarray], rows: int = PROFILE_ROWS,
                    seed: int = 0) -> dict:
    """{"source": the source's profile, "candidates": [{name, distance, profile}] from the closest profile to the
    farthest}, on equal sample sizes on both sides (the neighbour term depends on the number of rows)."""
    if not candidates:
        raise AlignError("no candidate references to rank")
    n = min(rows, len(source), *(len(v) for v in candidates.values()))
    own = profile(source, n, seed=seed)
    ranked = []
    for name, vectors in candidates.items():
        p = profile(vectors, n, seed=seed)
        ranked.append({"name": name, "distance": round(profile_distance(own, p), 4), "profile": p.as_dict()})
    ranked.sort(key=lambda r: r["distance"])
    return {"source": own.as_dict(), "candidates": ranked}


def rank_in_space(source: np.ndarray, candidates: dict[str, np.ndarray], rows: int = PROFILE_ROWS,
                  seed: int = 0) -> dict:
    """Like `rank_references`, for a source in the candidates' own space: {"source": {"rows"}, "candidates":
    [{name, distance}]} from the closest to the farthest, `distance` = the squared distance between the mean unit
    rows of (up to `rows` rows of) the source and of each candidate."""
    if not candidates:
        raise AlignError("no candidate references to rank")
    src = _sample(source, rows, seed)
    dims = {v.shape[1] for v in candidates.values()}
    if dims != {src.shape[1]}:
        raise AlignError(f"ranking in one space needs candidates of the source's {src.shape[1]} dims; got "
                         f"{sorted(dims)}")
    mean = unit_rows_np(src).mean(0)
    ranked = [{"name": name,
               "distance": round(float(np.sum((mean - unit_rows_np(_sample(v, rows, seed)).mean(0)) ** 2)), 6)}
              for name, v in candidates.items()]
    ranked.sort(key=lambda r: r["distance"])
    return {"source": {"rows": len(src)}, "candidates": ranked, "by": "mean in the known space"}


def _sample(v: np.ndarray, rows: int, seed: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise AlignError(f"a reference ranking needs at least 2 rows; got {v.shape}")
    return v[np.sort(np.random.default_rng(seed).choice(len(v), rows, replace=False))] if len(v) > rows else v


