"""Matching kernels of the geometric translator: top-k and CSLS nearest neighbours between unit rows (in blocks),
spherical k-means steps and soft whitening. Plain functions over torch tensors; no state, no randomness.
"""

from __future__ import annotations

import torch

from align.vectors import unit_rows


def topk_rows(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine scores and indices of each row of `a` among the rows of `b` (both unit rows)."""
    vals, idx = [], []
    for s in range(0, len(a), chunk):
        v, i = (a[s:s + chunk] @ b.T).topk(k, dim=1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def csls_matches(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbours under CSLS in both directions between the rows of `a` and `b` (dot products).

    CSLS discounts hubs (rows close to everything) that plain nearest neighbours over-select. The similarity
    matrix is built a block of rows at a time, so memory stays O(chunk x rows) for any input size, and twice
    in all: the first pass collects both sides' mean top-k similarities (rows of a block directly, columns by
    merging each block's top-k into a running top-k), the second both sides' CSLS argmax the same way.
    Returns, for each row of `a`, its match in `b` and, for each row of `b`, its match in `a`.
    """
    ka, kb = min(k, len(b)), min(k, len(a))
    starts = range(0, len(a), chunk)
    ra, col_top = [], None
    for i in starts:
        s = a[i:i + chunk] @ b.T
        ra.append(s.topk(ka, dim=1).values.mean(dim=1))
        top = s.topk(min(kb, len(s)), dim=0).values
        col_top = top if col_top is None else torch.cat([col_top, top]).topk(min(kb, len(col_top) + len(top)),
                                                                              dim=0).values
    ra, rb = torch.cat(ra), col_top.mean(dim=0)
    fwd = []
    back_val = torch.full((len(b),), -float("inf"))
    back = torch.zeros(len(b), dtype=torch.long)
    for i in starts:
        s = 2 * (a[i:i + chunk] @ b.T) - ra[i:i + chunk, None] - rb[None, :]
        fwd.append(s.argmax(dim=1))
        val, idx = s.max(dim=0)
        better = val > back_val  # strict: ties keep the earlier row, as one argmax over all rows would
        back_val = torch.where(better, val, back_val)
        back = torch.where(better, idx + i, back)
    return torch.cat(fwd), back


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
