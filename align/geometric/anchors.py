"""The anchor search: k-means centroids of each side matched by quadratic assignment, pooled over restarts, and the
rotation they imply through each row's similarities to the anchors (a representation comparable across spaces).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, quadratic_assignment
from tqdm.auto import tqdm

from align.geometric.kernels import topk_rows
from align.vectors import orthogonal_map, unit_rows


def pooled_anchor_map(x: torch.Tensor, y: torch.Tensor, *, restarts: int, n_clusters: int, qap_restarts: int,
                      neighbours: int, rng: np.random.Generator, verbose: bool) -> np.ndarray:
    """A rough rotation from `restarts` runs of matched anchors, pooled.

    Single k-means/QAP runs match only part of the centroids correctly; the relative representation over the
    pooled anchors averages the mistakes out.
    """
    anchors_x, anchors_y = [], []
    for _ in tqdm(range(restarts), desc="anchors", disable=not verbose, leave=False):
        cx, cy = matched_anchors(x, y, n_clusters, qap_restarts, int(rng.integers(2**31)))
        anchors_x.append(cx)
        anchors_y.append(cy)
    return relative_procrustes(x, y, torch.cat(anchors_x), torch.cat(anchors_y), neighbours)


def matched_anchors(x: torch.Tensor, y: torch.Tensor, k: int, qap_restarts: int,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means centroids of each side, the target's reordered to match by quadratic assignment.

    The assignment maximises the agreement of the centred centroid-similarity matrices (a CKA-like
    objective). Candidates: FAQ started from an isometry-invariant guess (centroids matched by their sorted
    similarity profiles, VecMap's idea applied to centroids; exact on well-separated clusters) and
    `qap_restarts` random 2-opt searches (better on real text, where clusters overlap); best objective wins.
    """
    from sklearn.cluster import KMeans  # imported when used: seconds of start-up for every geometric load

    cx = KMeans(k, n_init=1, random_state=seed, max_iter=50).fit(x.numpy()).cluster_centers_
    cy = KMeans(k, n_init=1, random_state=seed + 1, max_iter=50).fit(y.numpy()).cluster_centers_
    cx = cx / np.linalg.norm(cx, axis=1, keepdims=True)
    cy = cy / np.linalg.norm(cy, axis=1, keepdims=True)
    h = np.eye(k) - 1.0 / k
    kx, ky = h @ cx @ cx.T @ h, h @ cy @ cy.T @ h
    dx, dy = -np.sort(-kx, axis=1), -np.sort(-ky, axis=1)
    _, guess = linear_sum_assignment(((dx[:, None, :] - dy[None, :, :]) ** 2).sum(-1))
    best = quadratic_assignment(kx, ky, method="faq", options={"maximize": True, "P0": np.eye(k)[guess]})
    rng = np.random.default_rng(seed)
    for _ in range(qap_restarts):
        res = quadratic_assignment(kx, ky, method="2opt", options={"maximize": True, "rng": rng})
        if res.fun > best.fun:
            best = res
    return torch.from_numpy(cx.astype(np.float32)), torch.from_numpy(cy[best.col_ind].astype(np.float32))


def relative_procrustes(x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                        n_neighbours: int) -> np.ndarray:
    """Rotation from pseudo-pairs: each source row against the mean of its nearest target rows, where
    nearness compares the rows' similarity profiles to the matched anchors (comparable across spaces)."""
    rx = _standardise(x @ cx.T)
    ry = _standardise(y @ cy.T)
    _, idx = topk_rows(rx, ry, n_neighbours)
    return orthogonal_map(x.numpy(), y[idx].mean(dim=1).numpy())


def _standardise(r: torch.Tensor) -> torch.Tensor:
    r = (r - r.mean(dim=0)) / r.std(dim=0).clamp_min(1e-6)
    return unit_rows(r)
