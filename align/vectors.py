"""Blocks of vectors (rows = items): boundary validation, unit rows, ranking within a pool, closest isometries,
and the package versions an artifact records. The leaf of `align`: it imports nothing of `align` but its error.
"""

from __future__ import annotations

import platform
from importlib import metadata

import numpy as np
import torch

from align.errors import AlignError


def check_vectors(x, name: str = "input", dim: int | None = None, min_rows: int = 1) -> np.ndarray:
    """Validate a block of vectors at the boundary and return it as float32 (rows = items).

    Raises AlignError for a non-2-D or non-float array, `dim` columns expected and not found, fewer than
    `min_rows` rows, and rows with NaN/inf or all zeros (no direction to translate).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise AlignError(f"{name} has shape {x.shape}; expected a 2-D array (items x dims)")
    if not np.issubdtype(x.dtype, np.floating):
        raise AlignError(f"{name} has dtype {x.dtype}; expected float vectors")
    if dim is not None and x.shape[1] != dim:
        raise AlignError(f"{name} has {x.shape[1]} dims but the translator expects {dim}; use vectors from the "
                         "encoder the translator was trained on, or translate in the reverse direction")
    if x.shape[0] < min_rows:
        raise AlignError(f"{name} has {x.shape[0]} vectors; this method needs at least {min_rows}")
    x = x.astype(np.float32, copy=False)
    sq = np.einsum("ij,ij->i", x, x)  # one pass: a NaN/inf row has no finite norm, a zero row none above 0
    if np.isfinite(sq).all() and sq.all():
        return x
    bad = ~np.isfinite(x).all(axis=1)  # which rows, and why (huge or tiny finite rows get here and pass)
    if bad.any():
        raise AlignError(f"{name}: row {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} rows); "
                         "remove or re-embed them")
    zero = ~x.any(axis=1)
    if zero.any():
        raise AlignError(f"{name}: row {int(np.argmax(zero))} is all zeros ({int(zero.sum())} rows); "
                         "zero vectors have no direction to translate")
    return x


def unit_rows_np(x) -> np.ndarray:
    """Rows scaled to unit L2 norm, as a float32 numpy array (the numpy twin of `unit_rows`)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def unit_rows(x) -> torch.Tensor:
    """Rows scaled to unit L2 norm, as a float32 tensor (the one normalising helper used across `align`)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t.float(), dim=1)


def ranks_in_pool(pred: np.ndarray, target: np.ndarray, offset: int = 0, chunk: int = 1024) -> np.ndarray:
    """Rank (1 = best) of each true target among all rows of `target`, by cosine to the prediction.

    Prediction i's true target is `target[offset + i]`. The true pair's score is read from the same matrix
    product that scores the whole pool: a separately computed dot product differs by float rounding and lets
    an item beat itself. Ties count in the item's favour, as a system ordering by score could return either.
    """
    p, t = unit_rows(pred), unit_rows(target)
    ranks = np.empty(len(p), dtype=np.int64)
    for start in range(0, len(p), chunk):
        scores = p[start:start + chunk] @ t.T
        rows = torch.arange(scores.shape[0])
        true = scores[rows, rows + start + offset]
        ranks[start:start + chunk] = (1 + (scores > true[:, None]).sum(dim=1)).numpy()
    return ranks


def closest_isometry(m: np.ndarray) -> np.ndarray:
    """The partial isometry (orthonormal rows or columns) closest to `m`: U V^T of its SVD, in float64.

    Keeps damped averages of rotations orthogonal, and solves Procrustes (see `orthogonal_map`).
    """
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def orthogonal_map(x_centered: np.ndarray, y_centered: np.ndarray) -> np.ndarray:
    """W (dx x dy) with orthonormal rows/columns minimising ||x W - y|| over paired rows (orthogonal Procrustes):
    the closest isometry to x^T y. For different dims W is a partial isometry."""
    return closest_isometry(np.asarray(x_centered).T.astype(np.float64) @ np.asarray(y_centered).astype(np.float64))


def shrunk_linear_map(x: np.ndarray, y: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """The linear map A (dx x dy) minimising ||x A - y||^2 + strength x rows x ||A - prior||^2 over paired rows:
    a least-squares map pulled toward `prior` (a rotation), i.e. the prior plus a ridge regression (sklearn's
    `Ridge`, alpha = strength x rows) of the residual y - x prior."""
    from sklearn.linear_model import Ridge  # imported when used: seconds of start-up otherwise

    x, y, prior = (np.asarray(a, dtype=np.float64) for a in (x, y, prior))
    fit = Ridge(alpha=strength * len(x), fit_intercept=False, solver="cholesky").fit(x, y - x @ prior)
    return (prior + fit.coef_.T).astype(np.float32)


def package_versions(*extra_names: str) -> dict:
    """Python's and the core packages' versions (plus `extra_names`), as recorded in artifacts and sidecars."""
    out = {"python": platform.python_version()}
    for name in ("vecbridge", "numpy", "torch", "faiss-cpu", "scikit-learn", "lightning", *extra_names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
