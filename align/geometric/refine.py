"""Self-learning refinement of a rotation between two sets of centred unit rows: full-batch CSLS rounds (the
workhorse), damped subsample rounds (a wide basin for a rough start) and centroid rounds (low-variance directions).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from align.geometric.kernels import csls_mutual_pairs, lloyd, mapped_matches, topk_rows
from align.vectors import closest_isometry, orthogonal_map, unit_rows


class Pairs(NamedTuple):
    """Known pairs as row-aligned centred unit rows of each side. `weight`: their total weight in a Procrustes
    step relative to the pseudo-pairs' (1: as much as all of them together); 0: each counts as one row."""

    source: torch.Tensor
    target: torch.Tensor
    weight: float = 0.0


def _with_known(px: torch.Tensor, py: torch.Tensor, known: Pairs | None) -> tuple[torch.Tensor, torch.Tensor]:
    if known is None:
        return px, py
    # rows scaled by sqrt(c) weigh c times in the cross-covariance x^T y that Procrustes solves
    scale = (known.weight * len(px) / len(known.source)) ** 0.5 if known.weight > 0 else 1.0
    return torch.cat([px, known.source * scale]), torch.cat([py, known.target * scale])


def matched_pairs(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, known: Pairs | None,
                  csls_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pseudo-pairs of one self-learning round under the map `w`: every source row with its CSLS nearest
    target and every target row with its CSLS nearest source, plus any known pairs, as (source rows, target
    rows, the forward matches)."""
    fwd, back = mapped_matches(x, y, w, csls_k)
    px, py = _with_known(torch.cat([x, x[back]]), torch.cat([y[fwd], y]), known)
    return px, py, fwd


def self_learn(w: np.ndarray, x: torch.Tensor, y: torch.Tensor, *, known: Pairs | None, csls_k: int,
               max_rounds: int, desc: str, verbose: bool, tol: float = 0.005) -> tuple[np.ndarray, dict]:
    """Self-learning (VecMap-style): each round pairs every source row with its CSLS nearest target and
    every target row with its CSLS nearest source (both directions, not only mutual pairs: twice the
    evidence and no bias toward easy rows), then refits the rotation by Procrustes on all those pairs plus
    any known pairs. Stops when fewer than `tol` of the forward matches change between rounds.
    """
    wt = torch.from_numpy(w)
    prev, changed = None, []
    bar = tqdm(range(max_rounds), desc=desc, disable=not verbose, leave=False)
    for _ in bar:
        px, py, fwd = matched_pairs(wt, x, y, known=known, csls_k=csls_k)
        wt = torch.from_numpy(orthogonal_map(px.numpy(), py.numpy()))
        if prev is not None:
            changed.append(round(float((fwd != prev).float().mean()), 4))
            bar.set_postfix(changed=changed[-1])
            if changed[-1] < tol:
                break
        prev = fwd
    return wt.numpy(), {"rounds": len(changed) + 1, "changed": changed}


def damped_refine(w: np.ndarray, fit_x: torch.Tensor, fit_y: torch.Tensor, *, known: Pairs | None,
                  rng: np.random.Generator, rounds: int, sample: int, neighbours: int, csls_k: int,
                  progress: tuple[torch.Tensor, torch.Tensor] | None = None, desc: str = "refine",
                  mutual: bool = True) -> np.ndarray:
    """Damped Procrustes against pseudo-targets on fresh subsamples of `sample` rows; known pairs always kept.

    The first three quarters of the rounds use the mean of `neighbours` target neighbours (a wide basin, robust
    to a poor start), the rest CSLS mutual nearest neighbours (precise); `mutual=False`: only the neighbour-mean
    rounds are run. Each new rotation is averaged with the previous one, so no single noisy subsample decides.
    `progress`: held-out rows whose CSLS mutual-NN rate a progress bar shows (None: no bar).
    """
    wt = torch.from_numpy(w)
    mean_rounds = rounds * 3 // 4
    if not mutual:
        rounds = mean_rounds
    bar = tqdm(range(rounds), desc=desc, disable=progress is None, leave=False)
    for it in bar:
        xa = fit_x[rng.choice(len(fit_x), min(sample, len(fit_x)), replace=False)]
        if it < mean_rounds:
            _, idx = topk_rows(unit_rows(xa @ wt), fit_y, neighbours)
            px, py = xa, fit_y[idx].mean(dim=1)
        else:
            yb = fit_y[rng.choice(len(fit_y), min(2 * sample, len(fit_y)), replace=False)]
            si, ti, _ = csls_mutual_pairs(unit_rows(xa @ wt), yb, csls_k)
            px, py = xa[si], yb[ti]
        px, py = _with_known(px, py, known)
        wt = torch.from_numpy(closest_isometry(0.5 * wt.numpy() + 0.5 * orthogonal_map(px.numpy(), py.numpy())))
        if progress is not None and (it % 8 == 7 or it == rounds - 1):
            bar.set_postfix(mnn=round(csls_mutual_pairs(unit_rows(progress[0] @ wt), progress[1], csls_k)[2], 4))
    return wt.numpy()


def centroid_refine(w: np.ndarray, xs: torch.Tensor, yt: torch.Tensor, *, rng: np.random.Generator, rounds: int,
                    sample: int, n_centroids: int, verbose: bool) -> np.ndarray:
    """Damped rounds of `centroid_procrustes` on fresh subsamples of `sample` rows per side."""
    wt = torch.from_numpy(w)
    m = min(len(xs), len(yt), sample)
    for _ in tqdm(range(rounds), desc="centroids", disable=not verbose, leave=False):
        x = xs[rng.choice(len(xs), m, replace=False)]
        y = yt[rng.choice(len(yt), m, replace=False)]
        w_new = centroid_procrustes(x, y, wt, min(n_centroids, m // 10), int(rng.integers(2**31)))
        wt = torch.from_numpy(closest_isometry(0.5 * wt.numpy() + 0.5 * w_new))
    return wt.numpy()


def centroid_procrustes(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Rotation between k-means centroids of the source and target centroids grown from their images.

    Centroids average out the text-to-text noise of single nearest-neighbour matches, so they pin down the
    low-variance directions that noisy pseudo-pairs leave loose (mini-vec2vec's cluster-level refinement).
    """
    g = torch.Generator().manual_seed(seed)
    cx = lloyd(x, x[torch.randperm(len(x), generator=g)[:k]], 10)
    cy = lloyd(y, unit_rows(cx @ w), 10)
    return orthogonal_map(cx.numpy(), cy.numpy())
