"""Unsupervised translation by shared geometry: a start (the identity, a chain through a pivot space, or matched
k-means anchors) -> Procrustes -> self-learning on nearest-neighbour and centroid pseudo-pairs -> the target mean
restored. No paired data is used anywhere: every choice among candidates is made with label-free scores.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, quadratic_assignment
from sklearn.cluster import KMeans
from tqdm.auto import tqdm

from align.base import Translator, check_vectors, select_pairs, unit_rows
from align.confidence import VALIDATION_OK, pair_validation, translation_confidence, with_pair_validation
from align.errors import AlignError
from align.paired import orthogonal_map

# Weight of the direction against the shared mean in `search` output, relative to the faithful output's.
SEARCH_WEIGHT = 2.0

# Fewest known pairs from which a quarter is held out to validate the few-shot map (4 held out).
MIN_VALIDATION_PAIRS = 16


def _polar(w: np.ndarray) -> np.ndarray:
    """The closest partial isometry to `w` (keeps damped averages of rotations orthogonal)."""
    u, _, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def _topk_rows(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine scores and indices of each row of `a` among the rows of `b` (both unit rows)."""
    vals, idx = [], []
    for s in range(0, len(a), chunk):
        v, i = (a[s:s + chunk] @ b.T).topk(k, dim=1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def _csls_matches(a: torch.Tensor, b: torch.Tensor, k: int,
                  chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
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


def _mapped_matches(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSLS matches between the mapped unit rows `x @ w` and the unit rows `y`, computed in the smaller dim.

    Into a bigger space (384 -> 768) cos(x w, y) = x . (y w^T) / |x w|: matching against `y @ w.T` halves the
    cost of every similarity block and gives the same similarities up to float rounding.
    """
    if w.shape[0] < w.shape[1]:
        return _csls_matches(x / (x @ w).norm(dim=1, keepdim=True).clamp_min(1e-12), y @ w.T, k)
    return _csls_matches(unit_rows(x @ w), y, k)


def _csls_mutual_pairs(xm: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mutual CSLS nearest neighbours: source indices, target indices and the mutual-NN rate."""
    fwd, back = _csls_matches(xm, y, k)
    src = torch.arange(len(xm))
    mutual = back[fwd] == src
    return src[mutual], fwd[mutual], float(mutual.float().mean())


class GeometricTranslator(Translator):
    """Fully unsupervised translator: `GeometricTranslator(seed=0).fit(src, tgt).transform(x)`.

    Stages (timed in `fit_report_`):
    1. centre + L2-normalise each side (the dims may differ: the map is a partial isometry);
    2. init: candidate starts, each screened by `screen_iters` full-batch self-learning rounds on
       `screen_sample` rows (a known-pairs start: `final_iters` rounds) and scored by the label-free
       confidence on held-out rows. Cheap candidates first: known pairs (few-shot) and, for equal dims, the
       identity. Then, while none reaches
       `accept_score` (a screening bar on subsample scores, as benchmarked; the reported verdict uses
       `LOW_CONFIDENCE`), each pivot given to `fit`: source -> pivot -> target legs fitted like any pair,
       their rotations composed. Only if still none passes:
       `restarts` k-means runs of `n_clusters` centroids per side matched by quadratic assignment; the pooled
       anchors give each row a relative representation (its similarities to the anchors), each source row's
       pseudo-target is the mean of its `rel_neighbours` nearest targets in that space; Procrustes; then
       `refine_iters` damped subsample rounds and `centroid_rounds` centroid rounds widen the basin;
    3. final refine: full-batch self-learning on up to `final_sample` rows per side (CSLS nearest
       neighbours in both directions, Procrustes) until the matches stop changing (`final_iters` at most,
       twice that with known pairs). Few-shot: with 16 or more known pairs a quarter is held out of every stage
       so far; the converged map is validated on them (`confidence_["validation"]`, which then decides the
       verdict) and one last round adds them;
    4. optional (`whiten` > 0, off by default): both sides softly whitened, the rotation re-fitted between the
       whitened rows on the final matches, the output coloured with the target's covariance. The map follows
       the two spaces' different spectra: mean cosine rises by 0.03-0.08, top-1 falls by 0-0.8 points
       in-distribution and 1-3 points out of distribution (BENCHMARKS.md), so retrieval keeps the rotation;
    5. output = target mean + target scale x mapped centred unit input; label-free confidence.
    """

    method = "geometric"
    min_rows = 200
    supports_search = True

    def __init__(self, seed: int = 0, n_clusters: int = 20, restarts: int = 24, qap_restarts: int = 20,
                 init_sample: int = 6000, rel_neighbours: int = 50, refine_iters: int = 64,
                 refine_sample: int = 1000, score_sample: int = 2000, csls_k: int = 10,
                 centroid_rounds: int = 20, n_centroids: int = 512, screen_iters: int = 2, screen_sample: int = 6000,
                 final_iters: int = 6, final_sample: int = 30000, accept_score: float = 0.5,
                 whiten: float = 0.0, verbose: bool = True):
        self.seed, self.n_clusters, self.restarts, self.qap_restarts = seed, n_clusters, restarts, qap_restarts
        self.init_sample, self.rel_neighbours = init_sample, rel_neighbours
        self.refine_iters, self.refine_sample, self.csls_k = refine_iters, refine_sample, csls_k
        self.score_sample, self.centroid_rounds, self.n_centroids = score_sample, centroid_rounds, n_centroids
        self.screen_iters, self.screen_sample = screen_iters, screen_sample
        self.final_iters, self.final_sample, self.accept_score = final_iters, final_sample, accept_score
        self.whiten, self.verbose = whiten, verbose

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None, pivots=None) -> GeometricTranslator:
        """Fit on unpaired `src` and `tgt`. `pairs`: optional known pairs (few-shot). `pivots`: optional
        {name: vectors} from third encoders on their own texts (pair-free stepping stones, see `_pivot_starts`)."""
        if not self.whiten >= 0:
            raise AlignError(f"whiten must be >= 0 (0 = off), got {self.whiten}")
        src = check_vectors(src, "source vectors", min_rows=self.min_rows)
        tgt = check_vectors(tgt, "target vectors", min_rows=self.min_rows)
        known = _known_pairs(src, tgt, pairs)
        pivots = {name: check_vectors(p, f"pivot vectors {name!r}", min_rows=self.min_rows)
                  for name, p in (pivots or {}).items()}
        t_start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        report: dict = {"stages": {}, "n_source": len(src), "n_target": len(tgt)}

        self.source_mean_, self.target_mean_ = src.mean(0), tgt.mean(0)
        # shuffled once so that the held-out scoring rows are a random sample whatever the input order
        xs = unit_rows(torch.from_numpy(src[rng.permutation(len(src))] - self.source_mean_))
        yt = unit_rows(torch.from_numpy(tgt[rng.permutation(len(tgt))] - self.target_mean_))
        kx = ky = val = check = None
        if known is not None:
            kx = unit_rows(torch.from_numpy(known[0] - self.source_mean_))
            ky = unit_rows(torch.from_numpy(known[1] - self.target_mean_))
        fit_pairs = (kx, ky)
        held = None if known is None else _held_out_pairs(len(kx), rng)
        if held is not None:
            fit_pairs, val = (kx[~held], ky[~held]), (kx[held], ky[held])
            check = self._pair_check(known[0][held], known[1][held], tgt, rng)

        t0 = time.perf_counter()
        w, init_report = self._initialise(xs, yt, *fit_pairs, rng, lambda: self._pivot_starts(src, tgt, pivots),
                                          val=val)
        report["stages"]["init"] = {**init_report, "seconds": round(time.perf_counter() - t0, 2)}

        t0 = time.perf_counter()
        self.target_scale_ = float(np.linalg.norm(tgt - self.target_mean_, axis=1).mean())
        self.source_scale_ = float(np.linalg.norm(src - self.source_mean_, axis=1).mean())
        w, final_report = self._final_refine(w, xs, yt, *fit_pairs, rng, check, (kx, ky))
        report["stages"]["final_refine"] = {**final_report, "seconds": round(time.perf_counter() - t0, 2)}
        self.weight_ = w

        self.forward_, self.backward_ = w, w.T
        if self.whiten > 0:
            t0 = time.perf_counter()
            self.forward_, self.backward_ = self._whitened_maps(w, xs, yt, kx, ky, rng)
            report["stages"]["whiten"] = {"seconds": round(time.perf_counter() - t0, 2)}
        self.dim_source_, self.dim_target_ = src.shape[1], tgt.shape[1]

        t0 = time.perf_counter()
        self.confidence_ = translation_confidence(src, tgt, self._forward, self._backward, seed=self.seed)
        if "validation" in final_report:
            self.confidence_ = with_pair_validation(self.confidence_, final_report["validation"])
        report["stages"]["confidence"] = {"seconds": round(time.perf_counter() - t0, 2)}
        report["seconds"] = round(time.perf_counter() - t_start, 2)
        self.fit_report_ = report
        return self

    def _initialise(self, xs, yt, kx, ky, rng, pivot_starts, val=None) -> tuple[np.ndarray, dict]:
        """Candidate starts (known pairs, the identity, pivot chains, matched anchors), each refined on a
        subsample and scored with the label-free confidence on held-out rows; the best one is returned.
        Each slower kind of start is tried only while no earlier one passes `accept_score`.

        Few-shot (`val`: held-out known pairs, kept out of every start and screen): each screened start is also
        validated on them, a start passes if their top-1 reaches `VALIDATION_OK`, and the best is the one that
        retrieves most of them (then the label-free score breaks ties).

        Anchors from all restarts are pooled: single k-means/QAP runs match only part of the centroids
        correctly, and the relative representation over the pooled anchors averages the mistakes out.
        """
        candidates = []  # (name, start, screening rounds)
        if kx is not None:
            # A few known pairs give a rough start (64 pairs: top-1 0.12 on minilm-l6 -> e5-small) that needs more
            # self-learning rounds than the other starts to show its score. It is the cheapest start and, once it
            # passes, the pivot and anchor searches are skipped, so it gets the final refine's rounds.
            candidates.append(("known_pairs", orthogonal_map(kx.numpy(), ky.numpy()),
                               max(self.screen_iters, self.final_iters)))
        if xs.shape[1] == yt.shape[1]:
            # Models of one family (distilled from one teacher, or fine-tuned from one base) often share
            # coordinates up to a small rotation; the identity is then a far better start than any anchor
            # matching. It is only a candidate: the label-free score decides.
            candidates.append(("identity", np.eye(xs.shape[1], dtype=np.float32), self.screen_iters))
        scored = [self._screen(name, w, xs, yt, kx, ky, iters, val) for name, w, iters in candidates]
        legs = {}

        def validated(c) -> float:
            return c[3].get("validation", {}).get("top1", 0.0)

        def passed() -> bool:
            return any(c[0] >= self.accept_score or validated(c) >= VALIDATION_OK for c in scored)

        if not passed():
            for name, w, leg_report in pivot_starts():
                legs[name] = leg_report
                if w is not None:
                    scored.append(self._screen(f"pivot:{name}", w, xs, yt, kx, ky, val=val))
                if passed():
                    break
        # The anchor search is the slow part: skip it when a cheap start already aligns the spaces confidently.
        if not passed():
            xi = xs[rng.choice(len(xs), min(self.init_sample, len(xs)), replace=False)]
            yi = yt[rng.choice(len(yt), min(self.init_sample, len(yt)), replace=False)]
            anchors_x, anchors_y = [], []
            for _ in tqdm(range(self.restarts), desc="anchors", disable=not self.verbose, leave=False):
                cx, cy, _ = _matched_anchors(xi, yi, self.n_clusters, self.qap_restarts,
                                             int(rng.integers(2**31)))
                anchors_x.append(cx)
                anchors_y.append(cy)
            w = _relative_procrustes(xi, yi, torch.cat(anchors_x), torch.cat(anchors_y), self.rel_neighbours)
            # a weak start: a wide-basin subsample refinement and centroid rounds bring it closer first
            w, _ = self._refine(w, xs, yt, kx, ky, rng, self.refine_iters, desc="refine anchors")
            w = self._centroid_refine(w, xs, yt, rng)
            scored.append(self._screen("pooled_anchors", w, xs, yt, kx, ky, val=val))
        scored.sort(key=lambda c: (-validated(c), -c[0]))
        best = scored[0]
        report = {"candidates": {n: round(sc, 4) for sc, n, _, _ in scored}, "chosen": best[1],
                  "score": round(best[0], 4), "screen": best[3]}
        if legs:
            report["pivots"] = legs
        return best[2], report

    def _pivot_starts(self, src, tgt, pivots):
        """Starts through pivot spaces, one per pivot (lazily: the caller stops once one passes).

        A pivot is a third encoder's vectors on its own texts. Two spaces too far apart for the anchor search
        (minilm-l3 and mpnet-base) can each be close to a third one (minilm-l6): the legs source -> pivot and
        pivot -> target are fitted unsupervised like any pair, and the product of their rotations starts the
        direct map, which is then screened and refined on the source and target rows alone. Still pair-free:
        the pivot's texts are unrelated to both sides. A leg below the confidence verdict line stops the chain.
        """
        params = {**self.get_params(), "whiten": 0.0}  # a leg only lends its rotation
        for name, piv in pivots.items():
            t0 = time.perf_counter()
            report, w = {}, None
            for leg, (a, b) in (("source_to_pivot", (src, piv)), ("pivot_to_target", (piv, tgt))):
                if self.verbose:
                    print(f"pivot {name}: fitting {leg.replace('_', ' ')}", file=sys.stderr)
                fitted = GeometricTranslator(**params).fit(a, b)
                report[leg] = {"confidence": round(fitted.confidence_["score"], 4),
                               "chosen": fitted.fit_report_["stages"]["init"]["chosen"]}
                if fitted.confidence_["verdict"] == "low":
                    w = None
                    break
                w = fitted.weight_ if w is None else w @ fitted.weight_
            report["seconds"] = round(time.perf_counter() - t0, 2)
            yield name, w, report

    def _holdout_size(self, xs, yt) -> int:
        """Rows held out from fitting for scoring: `score_sample`, or a quarter of the smaller side."""
        return min(self.score_sample, len(xs) // 4, len(yt) // 4)

    def _screen(self, name, w, xs, yt, kx, ky, iters=None, val=None) -> tuple[float, str, np.ndarray, dict]:
        """A few (`iters`, default `screen_iters`) full-batch self-learning rounds on the fitting rows of a
        subsample, then the shared label-free confidence on held-out rows (a map fitted to rows inflates those
        rows' scores) and, given held-out known pairs `val`, their retrieval among the held-out target rows."""
        n = self._holdout_size(xs, yt)
        m = min(self.screen_sample, len(xs) - n, len(yt) - n)
        w, rep = _self_learn(w, xs[n:n + m], yt[n:n + m], kx, ky, self.csls_k,
                             self.screen_iters if iters is None else iters,
                             desc=f"screen {name}", verbose=self.verbose)
        hold_x, hold_y = xs[:n].numpy(), yt[:2 * n].numpy()
        score = translation_confidence(hold_x, hold_y, lambda x: x @ w, lambda y: y @ w.T, seed=self.seed)["score"]
        if val is not None:
            rep["validation"] = pair_validation(val[0].numpy() @ w, val[1].numpy(), hold_y)
        return float(score), name, w, rep

    def _refine(self, w, xs, yt, kx, ky, rng, iters, desc):
        """Self-learning: damped Procrustes against pseudo-targets on fresh subsamples; known pairs always kept.

        Early rounds use the mean of many target neighbours (a wide basin, robust to a poor start); later
        rounds use CSLS mutual nearest neighbours (precise). Scored by the CSLS mutual-NN rate on rows held
        out from fitting, since a rotation fitted to a sample's own matches inflates that sample's rate.
        """
        n = self._holdout_size(xs, yt)
        hold_x, hold_y = xs[:n], yt[:n]
        fit_x, fit_y = xs[n:], yt[n:]
        wt = torch.from_numpy(w)
        trace = []
        bar = tqdm(range(iters), desc=desc, disable=not self.verbose, leave=False)
        for it in bar:
            xa = fit_x[rng.choice(len(fit_x), min(self.refine_sample, len(fit_x)), replace=False)]
            if it < iters * 3 // 4:
                _, idx = _topk_rows(unit_rows(xa @ wt), fit_y, self.rel_neighbours)
                px, py = xa, fit_y[idx].mean(dim=1)
            else:
                yb = fit_y[rng.choice(len(fit_y), min(2 * self.refine_sample, len(fit_y)), replace=False)]
                si, ti, _ = _csls_mutual_pairs(unit_rows(xa @ wt), yb, self.csls_k)
                px, py = xa[si], yb[ti]
            if kx is not None:
                px, py = torch.cat([px, kx]), torch.cat([py, ky])
            wt = torch.from_numpy(_polar(0.5 * wt.numpy() + 0.5 * orthogonal_map(px.numpy(), py.numpy())))
            if it % 8 == 7 or it == iters - 1:
                trace.append(round(_csls_mutual_pairs(unit_rows(hold_x @ wt), hold_y, self.csls_k)[2], 4))
                bar.set_postfix(mnn=trace[-1])
        return wt.numpy(), {"score": trace[-1], "trace": trace}

    def _centroid_refine(self, w, xs, yt, rng) -> np.ndarray:
        wt = torch.from_numpy(w)
        m = min(len(xs), len(yt), 8 * self.refine_sample)
        for _ in tqdm(range(self.centroid_rounds), desc="centroids", disable=not self.verbose, leave=False):
            x = xs[rng.choice(len(xs), m, replace=False)]
            y = yt[rng.choice(len(yt), m, replace=False)]
            k = min(self.n_centroids, m // 10)
            w_new = _centroid_procrustes(x, y, wt, k, int(rng.integers(2**31)))
            wt = torch.from_numpy(_polar(0.5 * wt.numpy() + 0.5 * w_new))
        return wt.numpy()

    def _final_refine(self, w, xs, yt, kx, ky, rng, check=None, all_pairs=None) -> tuple[np.ndarray, dict]:
        """Full-batch self-learning on up to `final_sample` rows per side until the matches stop changing.
        Matching many rows at once is what pins down the directions that a few pseudo-pairs leave loose.

        Few-shot with held-out pairs: `check` (the map -> their validation) scores the converged map, then one
        more round with `all_pairs` adds them (the usual refit on all data once validated).
        """
        x = xs[rng.choice(len(xs), min(self.final_sample, len(xs)), replace=False)]
        y = yt[rng.choice(len(yt), min(self.final_sample, len(yt)), replace=False)]
        # A known-pairs start is rougher and converges slower (64 pairs, minilm-l6 -> e5-small: top-1 0.81 after 6
        # rounds, 0.85 after 12); unsupervised starts gain nothing past 6 (minilm-l3 -> l6: 0.982 either way).
        iters = self.final_iters if kx is None else 2 * self.final_iters
        w, rep = _self_learn(w, x, y, kx, ky, self.csls_k, iters, desc="final refine", verbose=self.verbose)
        rep = {"rows": [len(x), len(y)], **rep}
        if check is not None:
            rep["validation"] = check(w)
            w, _ = _self_learn(w, x, y, *all_pairs, self.csls_k, 1, desc="final refine, all pairs",
                               verbose=self.verbose)
        return w, rep

    def _pair_check(self, pair_src, pair_tgt, tgt, rng):
        """The validation of a rotation on held-out known pairs, as `transform` would translate them: each
        translated source row ranked among the raw held-out targets and up to 4,000 other target rows."""
        pool = tgt[rng.choice(len(tgt), min(4000, len(tgt)), replace=False)]
        xc = unit_rows(pair_src - self.source_mean_).numpy()

        def check(w: np.ndarray) -> dict:
            return pair_validation(self.target_mean_ + self.target_scale_ * (xc @ w), pair_tgt, pool)
        return check

    def _whitened_maps(self, w, xs, yt, kx, ky, rng) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward matrices: soft-whiten -> rotate -> colour, the rotation fitted on the final map's
        CSLS matches (both directions, plus any known pairs) between whitened rows.

        An orthogonal map keeps the source's spectrum; the target's differs, so directions the target
        stretches come out too weak and the ones it squeezes too strong. Whitening each side with
        (C + eps I)^-1/2 and colouring with the other side's C^1/2 matches the spectra; eps = `whiten` x the
        mean eigenvalue keeps the noisy low-variance directions from being blown up. With true pairs this
        family scores cos 0.674 / top-1 0.993 on minilm-l3 -> l6, against 0.642 / 0.994 for the rotation;
        from pseudo-pairs the whitened low-variance directions carry their matching noise, hence the top-1 cost.
        """
        x = xs[rng.choice(len(xs), min(self.final_sample, len(xs)), replace=False)]
        y = yt[rng.choice(len(yt), min(self.final_sample, len(yt)), replace=False)]
        fwd, back = _mapped_matches(x, y, torch.from_numpy(w), self.csls_k)
        wx, cx_half = _whitener(xs, self.whiten)
        wy, cy_half = _whitener(yt, self.whiten)
        px, py = torch.cat([x, x[back]]), torch.cat([y[fwd], y])
        if kx is not None:
            px, py = torch.cat([px, kx]), torch.cat([py, ky])
        r = orthogonal_map((px @ wx).numpy(), (py @ wy).numpy())
        forward = (wx.numpy() @ r @ cy_half.numpy()).astype(np.float32)
        backward = (wy.numpy() @ r.T @ cx_half.numpy()).astype(np.float32)
        return forward, backward

    # -- applying -----------------------------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self._map(x, reverse=False, weight=1.0)

    def _backward(self, y: np.ndarray) -> np.ndarray:
        return self._map(y, reverse=True, weight=1.0)

    def _map(self, x: np.ndarray, reverse: bool, weight: float) -> np.ndarray:
        """The other space's mean + `weight` x its scale x the mapped centred unit input."""
        if reverse:
            mean, scale, m, own_mean = self.source_mean_, self.source_scale_, self.backward_, self.target_mean_
        else:
            mean, scale, m, own_mean = self.target_mean_, self.target_scale_, self.forward_, self.source_mean_
        return mean + weight * scale * (unit_rows(x - own_mean).numpy() @ m)

    def _search(self, x: np.ndarray, reverse: bool) -> np.ndarray:
        """Output for nearest-neighbour search among native vectors of the other space: the shared mean weighs
        1 / `SEARCH_WEIGHT` of the faithful output's share.

        Every native vector carries the space's mean, which says nothing about which text is which; ranking
        unit-length native rows by their dot with mean + w x direction scores each row's centred part minus
        (1 / 2w) x its squared norm, so the mean's weight sets how much the ranking leans toward rows near the
        mean. The faithful output (w = 1) leans too far: measured with eval pairs, w = 2 raises top-1 by 0.3-4
        points in-distribution (OOD: -0.7 to +11) and lowers mean cosine (minilm-l6 -> e5-small: top-1 0.850 ->
        0.891, OOD 0.364 -> 0.477, cosine 0.891 -> 0.778). Fixed, not tuned per pair: no pairs to tune it with.
        """
        return self._map(x, reverse, SEARCH_WEIGHT)

    # -- persistence --------------------------------------------------------------------------------
    def _get_state(self):
        tensors = {"weight": self.weight_, "forward": self.forward_, "backward": self.backward_,
                   "source_mean": self.source_mean_, "target_mean": self.target_mean_}
        state = {"source_scale": self.source_scale_, "target_scale": self.target_scale_,
                 "fit_report": getattr(self, "fit_report_", None)}
        return tensors, state

    @classmethod
    def _upgrade(cls, params, tensors, state):
        # before the whitening stage: a `shrink` flag, scalar shrinks and only the rotation was stored
        if "forward" not in tensors and "weight" in tensors:
            params.pop("shrink", None)
            tensors["forward"] = tensors["weight"] * float(state.pop("forward_shrink", 1.0))
            tensors["backward"] = tensors["weight"].T * float(state.pop("backward_shrink", 1.0))
        return params, tensors, state

    def _set_state(self, tensors, state):
        self.weight_, self.forward_, self.backward_ = tensors["weight"], tensors["forward"], tensors["backward"]
        self.source_mean_, self.target_mean_ = tensors["source_mean"], tensors["target_mean"]
        self.source_scale_, self.target_scale_ = float(state["source_scale"]), float(state["target_scale"])
        self.fit_report_ = state.get("fit_report")


def _self_learn(w: np.ndarray, x: torch.Tensor, y: torch.Tensor, kx, ky, k: int, iters: int, desc: str,
                verbose: bool, tol: float = 0.005) -> tuple[np.ndarray, dict]:
    """Self-learning (VecMap-style): each round pairs every source row with its CSLS nearest target and
    every target row with its CSLS nearest source (both directions, not only mutual pairs: twice the
    evidence and no bias toward easy rows), then refits the rotation by Procrustes on all those pairs plus
    any known pairs. Stops when fewer than `tol` of the forward matches change between rounds.
    """
    wt = torch.from_numpy(w)
    prev, changed = None, []
    bar = tqdm(range(iters), desc=desc, disable=not verbose, leave=False)
    for _ in bar:
        fwd, back = _mapped_matches(x, y, wt, k)
        px, py = torch.cat([x, x[back]]), torch.cat([y[fwd], y])
        if kx is not None:
            px, py = torch.cat([px, kx]), torch.cat([py, ky])
        wt = torch.from_numpy(orthogonal_map(px.numpy(), py.numpy()))
        if prev is not None:
            changed.append(round(float((fwd != prev).float().mean()), 4))
            bar.set_postfix(changed=changed[-1])
            if changed[-1] < tol:
                break
        prev = fwd
    return wt.numpy(), {"rounds": len(changed) + 1, "changed": changed}


def _matched_anchors(x: torch.Tensor, y: torch.Tensor, k: int, qap_restarts: int, seed: int):
    """k-means centroids of each side, the target's reordered to match by quadratic assignment.

    The assignment maximises the agreement of the centred centroid-similarity matrices (a CKA-like
    objective). Candidates: FAQ started from an isometry-invariant guess (centroids matched by their sorted
    similarity profiles, VecMap's idea applied to centroids; exact on well-separated clusters) and
    `qap_restarts` random 2-opt searches (better on real text, where clusters overlap); best objective wins.
    """
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
    return (torch.from_numpy(cx.astype(np.float32)), torch.from_numpy(cy[best.col_ind].astype(np.float32)),
            float(best.fun))


def _lloyd(x: torch.Tensor, centers: torch.Tensor, iters: int) -> torch.Tensor:
    """Spherical k-means iterations from given centres (deterministic, no restarts)."""
    for _ in range(iters):
        assign = (x @ centers.T).argmax(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = sums.norm(dim=1) == 0
        centers = torch.where(empty[:, None], centers, unit_rows(sums))
    return centers


def _centroid_procrustes(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Rotation between k-means centroids of the source and target centroids grown from their images.

    Centroids average out the text-to-text noise of single nearest-neighbour matches, so they pin down the
    low-variance directions that noisy pseudo-pairs leave loose (mini-vec2vec's cluster-level refinement).
    """
    g = torch.Generator().manual_seed(seed)
    cx = _lloyd(x, x[torch.randperm(len(x), generator=g)[:k]], 10)
    cy = _lloyd(y, unit_rows(cx @ w), 10)
    return orthogonal_map(cx.numpy(), cy.numpy())


def _whitener(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(C + eps x mean eigenvalue x I)^-1/2 and C^1/2 of the rows' second-moment matrix C."""
    c = (x.T.double() @ x.double()) / len(x)
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp_min(0)
    soft = vals + eps * vals.mean()
    return ((vecs * soft.rsqrt()) @ vecs.T).float(), ((vecs * vals.sqrt()) @ vecs.T).float()


def _relative_procrustes(x, y, cx, cy, n_neighbours: int) -> np.ndarray:
    """Rotation from pseudo-pairs: each source row against the mean of its nearest target rows, where
    nearness compares the rows' similarity profiles to the matched anchors (comparable across spaces)."""
    rx = _standardise(x @ cx.T)
    ry = _standardise(y @ cy.T)
    _, idx = _topk_rows(rx, ry, n_neighbours)
    return orthogonal_map(x.numpy(), y[idx].mean(dim=1).numpy())


def _standardise(r: torch.Tensor) -> torch.Tensor:
    r = (r - r.mean(dim=0)) / r.std(dim=0).clamp_min(1e-6)
    return unit_rows(r)


def _held_out_pairs(n: int, rng) -> torch.Tensor | None:
    """Mask of the known pairs held out of fitting to validate a few-shot map: a quarter, once there are
    `MIN_VALIDATION_PAIRS`; None when there are too few to spare any.

    Held-out pairs are the only honest check of a few-shot map: the pairs a map was fitted with retrieve their
    targets far more often than new ones (64 pairs, minilm-l6 -> e5-small: top-1 1.00 against 0.86).
    """
    if n < MIN_VALIDATION_PAIRS:
        return None
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[:n // 4]] = True
    return torch.from_numpy(held)


def _known_pairs(src, tgt, pairs):
    """Few-shot pairs as (source rows, target rows): an int (k, 2) index array or a tuple of two arrays."""
    if pairs is None:
        return None
    if isinstance(pairs, tuple) and len(pairs) == 2 and np.asarray(pairs[0]).ndim == 2:
        a = check_vectors(pairs[0], "paired source vectors", src.shape[1])
        b = check_vectors(pairs[1], "paired target vectors", tgt.shape[1])
        if len(a) != len(b):
            raise AlignError(f"paired vectors must have the same number of rows; got {len(a)} and {len(b)}")
        return a, b
    return select_pairs(src, tgt, pairs)
