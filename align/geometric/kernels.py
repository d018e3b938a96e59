"""Matching kernels of the geometric translator: top-k (faiss) and CSLS nearest neighbours between unit rows,
spherical k-means steps and soft whitening. Plain functions over torch tensors; no state, no randomness.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from align.vectors import unit_rows


def topk_rows(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine scores and indices of each row of `a` among the rows of `b` (both unit rows), best first.

    faiss's exact inner-product search: blocked BLAS products with heap selection, which keeps its k best as it
    goes, where torch's `topk` over each block of the similarity matrix costs as much as the product itself.
    """
    k = min(k, len(b))
    vals, idx = faiss.knn(_float_rows(a), _float_rows(b), k, metric=faiss.METRIC_INNER_PRODUCT)
    return torch.from_numpy(vals), torch.from_numpy(idx)


def csls_matches(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int = 4096,
                 candidates: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbours under CSLS in both directions between the rows of `a` and `b` (dot products).

    CSLS (2 cos - r_a - r_b, r = a row's mean top-k similarity) discounts hubs (rows close to everything) that
    plain nearest neighbours over-select. Exact: each row keeps its `candidates` most similar rows of the other
    side (`topk_rows` both ways), which also give both sides' r. The CSLS winner is taken among the candidates;
    a row whose winner could lie outside them (its best candidate does not beat 2 x its last candidate's
    similarity - the other side's smallest r) is recomputed against every row, `chunk` rows at a time; the more
    candidates, the fewer such rows. Only exact ties between candidates may be broken differently from one argmax
    over all rows.
    Returns, for each row of `a`, its match in `b` and, for each row of `b`, its match in `a`.
    """
    ka, kb = min(k, len(b)), min(k, len(a))
    row_v, row_i = topk_rows(a, b, max(candidates, ka))
    col_v, col_i = topk_rows(b, a, max(candidates, kb))
    ra, rb = row_v[:, :ka].mean(dim=1), col_v[:, :kb].mean(dim=1)
    return _csls_winners(row_v, row_i, rb, a, b, chunk), _csls_winners(col_v, col_i, ra, b, a, chunk)


def _float_rows(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)


def _csls_winners(cand_v: torch.Tensor, cand_i: torch.Tensor, r_other: torch.Tensor, rows: torch.Tensor,
                  other: torch.Tensor, chunk: int) -> torch.Tensor:
    """Each row's CSLS argmax in `other` from its candidates (similarities `cand_v` to rows `cand_i`, sorted
    descending); rows whose winner the candidates cannot guarantee are searched in full. The row's own r is the
    same for every match and drops out."""
    best, arg = (2 * cand_v - r_other[cand_i]).max(dim=1)
    won = cand_i.gather(1, arg[:, None]).squeeze(1)
    if cand_v.shape[1] < len(other):
        unsure = (best <= 2 * cand_v[:, -1] - r_other.min()).nonzero().squeeze(1)
        for s in range(0, len(unsure), chunk):
            part = unsure[s:s + chunk]
            won[part] = (2 * (rows[part] @ other.T) - r_other[None, :]).argmax(dim=1)
    return won


def mapped_matches(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSLS matches between the mapped unit rows `x @ w` and the unit rows `y`, computed in the smaller dim.

    Into a bigger space (384 -> 768) cos(x w, y) = x . (y w^T) / |x w|: matching against `y @ w.T` halves the
    cost of every similarity block and gives the same similarities up to float rounding.
    """
    if w.shape[0] < w.shape[1]:
        return csls_matches(x / (x @ w).norm(dim=1, keepdim=True).clamp_min(1e-12), y @ w.T, k)
    return csls_matches(unit_rows(x @ w), y, k)


def csls_mutual_pairs(xm: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mutual CSLS nearest neighbours: source indices, target indices and the mutual-NN rate."""
    fwd, back = csls_matches(xm, y, k)
    src = torch.arange(len(xm))
    mutual = back[fwd] == src
    return src[mutual], fwd[mutual], float(mutual.float().mean())


def lloyd(x: torch.Tensor, centers: torch.Tensor, iters: int) -> torch.Tensor:
    """Spherical k-means iterations from given centres (deterministic, no restarts)."""
    for _ in range(iters):
        assign = (x @ centers.T).argmax(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = sums.norm(dim=1) == 0
        centers = torch.where(empty[:, None], centers, unit_rows(sums))
    return centers


def whitener(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(C + eps x mean eigenvalue x I)^-1/2 and C^1/2 of the rows' second-moment matrix C."""
    c = (x.T.double() @ x.double()) / len(x)
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp_min(0)
    soft = vals + eps * vals.mean()
    return ((vecs * soft.rsqrt()) @ vecs.T).float(), ((vecs * vals.sqrt()) @ vecs.T).float()
