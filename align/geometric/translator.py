"""`GeometricTranslator`, the estimator: inputs checked, few-shot pairs split, a start chosen, self-learning to the
fixed point, the optional whitening or affine stage, the label-free confidence; search output and persistence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from align.base import Translator, select_pairs
from align.confidence import (
    REPORT_DRAWS,
    pair_validation,
    translation_confidence,
    with_pair_validation,
    with_start_check,
)
from align.errors import AlignError
from align.geometric.anchors import pooled_anchor_map
from align.geometric.kernels import whitener
from align.geometric.refine import Pairs, centroid_refine, damped_refine, matched_pairs, self_learn
from align.geometric.screening import Screen, Start, best_start, known_pairs_starts
from align.geometric.workers import available_cores, run_side_by_side
from align.vectors import check_vectors, closest_isometry, orthogonal_map, shrunk_linear_map, unit_rows

# Weight of the direction against the shared mean in `search` output, relative to the faithful output's.
SEARCH_WEIGHT = 2.0

# Final self-learning rounds and anchor starts of a pivot leg (see `_pivot_chain`).
LEG_FINAL_ITERS = 2
LEG_ANCHOR_STARTS = 2

# Anchor starts on at least this many rows per side run side by side when `jobs` is 0 (auto): with the default
# parameters one then takes a minute or more on a core, against a few seconds to start a worker process.
PARALLEL_ROWS = 2000

# A pivot chain subsamples the two sides from the random stream (seed, LEG_STREAM).
LEG_STREAM = 2

# Anchor starts draw from the random stream (seed, ANCHOR_STREAM, start index), apart from the fit's own.
ANCHOR_STREAM = 1
# From this many rows on each side an anchor start ends after the neighbour-mean three quarters of its damped
# rounds. On 25,000-row pairs its mutual-NN rounds (1,000 x 2,000 rows) took a right start from top-1 0.97 to
# 0.78 and the centroid rounds back only to 0.95, for ~40% of its time; without them two right starts agree
# at 0.88-0.90 instead of 0.84-0.87, and l3 -> mpnet with no flag takes 4.8 minutes instead of 5.3-7.0. On a
# 3,000-row leak those stages are what makes two right starts agree (BENCHMARKS.md, "The 8-draw screen
# re-measured; anchor starts without their last stages, ...").
SHORT_START_ROWS = 10000

# A fit whose starts all failed the screen skips the final refine when the best start agrees with no other start
# above this (mean cosine of their images): wrong starts agree at 0.00-0.16, right ones at 0.60 and more
# (BENCHMARKS.md), and a start that agrees but is not confirmed (under `AGREEMENT_OK`) is still refined.
UNREFINED_AGREEMENT = 0.3

# A bagged start averages only the anchor starts that agree with the accepted one at least this much: on a
# 3,000-row leak the eight starts of a seed agree 0.77-0.88 with each other, wrong starts 0.00-0.15.
BAG_AGREEMENT = 0.5

# Fewest known pairs from which a quarter is held out to validate the few-shot map (4 held out).
MIN_VALIDATION_PAIRS = 16


class GeometricTranslator(Translator):
    """Fully unsupervised translator: `GeometricTranslator(seed=0).fit(src, tgt).transform(x)`.

    Stages (timed in `fit_report_`):
    1. centre + L2-normalise each side (the dims may differ: the map is a partial isometry);
    2. init: candidate starts, each screened by `screen_iters` full-batch self-learning rounds on
       `screen_sample` rows (a known-pairs start: `final_iters` rounds) and scored by the label-free
       confidence on held-out rows. Cheap candidates first: known pairs (few-shot; fewer pairs than dims give
       `pair_completions` starts) and, for equal dims, the identity. Then, while none reaches `accept_score`
       (a bar for scores on a subsample, below the reported verdict's `LOW_CONFIDENCE`), each pivot given to
       `fit`: source -> pivot -> target legs fitted like any pair (on at most `leg_rows` rows per side; a leg
       in which no start passes stops the chain at once), their rotations composed. Only if still none
       passes: `restarts` k-means runs of `n_clusters` centroids per side matched by quadratic assignment; the
       pooled anchors give each row a relative representation (its similarities to the anchors), each source
       row's pseudo-target is the mean of its `rel_neighbours` nearest targets in that space; Procrustes; then
       `refine_iters` damped subsample rounds and `centroid_rounds` centroid rounds widen the basin (from
       `SHORT_START_ROWS` rows a side: the neighbour-mean rounds only). An anchor
       start is a random search's outcome: it counts only once an independent anchor start (fresh subsamples,
       k-means and assignments) reaches the same map (`AGREEMENT_OK`), and the agreeing ones are averaged;
       up to `anchor_starts` are drawn, the first two side by side on the machine's cores (`jobs`: 0 = as
       the cores allow when a start is big enough to pay for a worker process, 1 = one after another; each
       start has its own random stream, so the result is the same either way). If no start is accepted the
       best is refined anyway, and the verdict is `low` (`confidence_["start_passed"]` false), whatever the
       final score; unless no two starts even came near each other (agreement under `UNREFINED_AGREEMENT`,
       no known pairs): the best is then kept as it is, since a refine could only polish a map that is at
       chance (the pair failed; the final refine cost a failing 25,000-row pair 70 s of its 6.2 minutes);
       Bagging (an accepted anchor start on fewer than `SHORT_START_ROWS` rows a side, no known pairs):
       anchor starts up to `bag_starts` are each refined by full-batch self-learning and their maps averaged
       into the final refine's start (`_bagged_start`);
    3. final refine: full-batch self-learning on up to `final_sample` rows per side (CSLS nearest
       neighbours in both directions, Procrustes) until the matches stop changing (`final_iters` at most,
       twice that with known pairs). Few-shot: with 16 or more known pairs a quarter is held out of every stage
       so far; the converged map is validated on them (`confidence_["validation"]`, which then decides the
       verdict) and one last round adds them;
    4. optional (`whiten` > 0, off by default): both sides softly whitened, the rotation re-fitted between the
       whitened rows on the final matches, the output coloured with the target's covariance. Mean cosine rises
       and top-1 falls a little (BENCHMARKS.md), so retrieval keeps the rotation;
       or (`affine` > 0, off by default) an affine stage: a general linear map each way, fitted by least squares on
       the final matches (plus any known pairs) and pulled toward the rotation with strength `affine` (a ridge
       around it; try 0.03); each output row keeps the rotation's length. It follows a target whose spectrum
       the rotation cannot reach (a strongly anisotropic source such as e5-small: top-1 +1.8 to +4.2 points) and changes
       close pairs by a tenth of a point at most (BENCHMARKS.md);
    5. output = target mean + target scale x mapped centred unit input; label-free confidence.
    """

    method = "geometric"
    min_rows = 200
    supports_search = True
    state_numbers = ("source_scale", "target_scale")

    def __init__(self, seed: int = 0, n_clusters: int = 20, restarts: int = 24, qap_restarts: int = 20,
                 init_sample: int = 6000, rel_neighbours: int = 50, refine_iters: int = 64,
                 refine_sample: int = 1000, score_sample: int = 2000, csls_k: int = 10,
                 centroid_rounds: int = 20, n_centroids: int = 512, screen_iters: int = 2, screen_sample: int = 6000,
                 final_iters: int = 6, final_sample: int = 30000, accept_score: float = 0.5,
                 pair_completions: int = 4, whiten: float = 0.0, anchor_starts: int = 3, jobs: int = 0,
                 leg_rows: int = 10000, affine: float = 0.0, bag_starts: int = 8, verbose: bool = True):
        self.seed, self.n_clusters, self.restarts, self.qap_restarts = seed, n_clusters, restarts, qap_restarts
        self.init_sample, self.rel_neighbours = init_sample, rel_neighbours
        self.refine_iters, self.refine_sample, self.csls_k = refine_iters, refine_sample, csls_k
        self.score_sample, self.centroid_rounds, self.n_centroids = score_sample, centroid_rounds, n_centroids
        self.screen_iters, self.screen_sample = screen_iters, screen_sample
        self.final_iters, self.final_sample, self.accept_score = final_iters, final_sample, accept_score
        self.pair_completions, self.whiten, self.verbose = pair_completions, whiten, verbose
        self.anchor_starts, self.jobs, self.leg_rows, self.affine = anchor_starts, jobs, leg_rows, affine
        self.bag_starts = bag_starts

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None, pivots=None, fallback_pivots=None, start=None,
            log: Callable[[str], None] | None = None, _leg: bool = False) -> GeometricTranslator:
        """Fit on unpaired `src` and `tgt`. `pairs`: optional known pairs (few-shot): an int (k, 2) array of
        (source_row, target_row) or a tuple of two row-aligned arrays. `pivots`: optional {name: vectors} from
        third encoders on their own texts (pair-free stepping stones, see `_pivot_chain`), tried before the anchor
        search. `fallback_pivots`: {name: vectors, or a function that returns them or None (unavailable)}, tried
        in order only after the direct starts have failed (the anchor search included; after its first two starts
        when neither reaches the bar, see `_start_tiers`); a function is called
        only then, so pivots that are never needed cost nothing. `start`: an optional rotation (source dim x target
        dim) screened first, like the identity: a translator fitted on other data of the same two spaces, to be
        adapted to these rows (a general map refined on one domain's vectors). `log`: called with a line as each
        pivot leg starts (progress bars follow `verbose`). `_leg` (a pivot leg, `_pivot_chain`): when no start
        passes, raise `_LegFailed` at once instead of refining a map whose verdict can only be `low`."""
        if not self.whiten >= 0:
            raise AlignError(f"whiten must be >= 0 (0 = off), got {self.whiten}")
        if not self.affine >= 0:
            raise AlignError(f"affine must be >= 0 (0 = off), got {self.affine}")
        if self.affine > 0 and self.whiten > 0:
            raise AlignError("whiten and affine are two output stages: set one of them, not both")
        if self.pair_completions < 1:
            raise AlignError(f"pair_completions must be >= 1, got {self.pair_completions}")
        if self.bag_starts < 0:
            raise AlignError(f"bag_starts must be >= 0 (0 or 1 = off), got {self.bag_starts}")
        if self.anchor_starts < 1:
            raise AlignError(f"anchor_starts must be >= 1, got {self.anchor_starts}")
        if self.jobs < 0:
            raise AlignError(f"jobs must be >= 0 (0 = as the cores allow), got {self.jobs}")
        if self.leg_rows and self.leg_rows < self.min_rows:
            raise AlignError(f"leg_rows must be 0 (all rows) or at least {self.min_rows}, got {self.leg_rows}")
        src = check_vectors(src, "source vectors", min_rows=self.min_rows)
        tgt = check_vectors(tgt, "target vectors", min_rows=self.min_rows)
        known = _known_pairs(src, tgt, pairs)
        if start is not None:
            start = np.asarray(start, dtype=np.float32)
            if start.shape != (src.shape[1], tgt.shape[1]) or not np.isfinite(start).all():
                raise AlignError(f"start must be a finite {src.shape[1]} x {tgt.shape[1]} rotation, got shape "
                                 f"{start.shape}")
        pivots = {name: check_vectors(p, f"pivot vectors {name!r}", min_rows=self.min_rows)
                  for name, p in (pivots or {}).items()}
        fallback = {name: p if callable(p) else check_vectors(p, f"pivot vectors {name!r}", min_rows=self.min_rows)
                    for name, p in (fallback_pivots or {}).items()}
        t_start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        report: dict = {"stages": {}, "n_source": len(src), "n_target": len(tgt)}

        self.source_mean_, self.target_mean_ = src.mean(0), tgt.mean(0)
        # shuffled once so that the held-out scoring rows are a random sample whatever the input order
        xs = unit_rows(torch.from_numpy(src[rng.permutation(len(src))] - self.source_mean_))
        yt = unit_rows(torch.from_numpy(tgt[rng.permutation(len(tgt))] - self.target_mean_))
        all_pairs = fit_pairs = held_out = check = None
        if known is not None:
            all_pairs = fit_pairs = Pairs(unit_rows(torch.from_numpy(known[0] - self.source_mean_)),
                                          unit_rows(torch.from_numpy(known[1] - self.target_mean_)))
            held = _held_out_pairs(len(known[0]), rng)
            if held is not None:
                fit_pairs = Pairs(all_pairs.source[~held], all_pairs.target[~held])
                held_out = Pairs(all_pairs.source[held], all_pairs.target[held])
                check = self._pair_check(known[0][held], known[1][held], tgt, rng)

        t0 = time.perf_counter()
        legs: dict = {}
        screened: list = []
        starts = self._start_tiers(xs, yt, fit_pairs, src, tgt, pivots, fallback, start, legs, screened, log)
        screen = self._screen(xs, yt, fit_pairs, held_out)
        best, init_report = best_start(starts, screen, self.accept_score, screened=screened)
        if _leg and not init_report["passed"]:
            raise _LegFailed(init_report)
        if legs:
            init_report["pivots"] = legs
        report["stages"]["init"] = {**init_report, "seconds": round(time.perf_counter() - t0, 2)}

        start_w = best.weight
        if self._bagging(init_report, known, xs, yt, _leg):
            t0 = time.perf_counter()
            start_w, report["stages"]["bag"] = self._bagged_start(best, xs, yt, screened, screen, rng)
            report["stages"]["bag"]["seconds"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        self.target_scale_ = float(np.linalg.norm(tgt - self.target_mean_, axis=1).mean())
        self.source_scale_ = float(np.linalg.norm(src - self.source_mean_, axis=1).mean())
        if init_report["passed"] or known is not None or \
                (init_report.get("agreement") or 0.0) >= UNREFINED_AGREEMENT:
            w, final_report = self._final_refine(start_w, xs, yt, fit_pairs, all_pairs, check, rng)
        else:
            w, final_report = best.weight, {"skipped": "no start passed the screen and no two starts agree: the "
                                                       "map is at chance, so it is kept unrefined"}
        report["stages"]["final_refine"] = {**final_report, "seconds": round(time.perf_counter() - t0, 2)}
        self.weight_ = w

        self.forward_, self.backward_ = w, w.T
        if self.whiten > 0:
            t0 = time.perf_counter()
            self.forward_, self.backward_ = self._whitened_maps(w, xs, yt, all_pairs, rng)
            report["stages"]["whiten"] = {"seconds": round(time.perf_counter() - t0, 2)}
        elif self.affine > 0:
            t0 = time.perf_counter()
            self.forward_, self.backward_ = self._affine_maps(w, xs, yt, all_pairs, rng)
            report["stages"]["affine"] = {"seconds": round(time.perf_counter() - t0, 2)}
        self.dim_source_, self.dim_target_ = src.shape[1], tgt.shape[1]

        t0 = time.perf_counter()
        self.confidence_ = translation_confidence(src, tgt, self._forward, self._backward, seed=self.seed,
                                                   draws=REPORT_DRAWS)
        self.confidence_ = with_start_check(self.confidence_, init_report["passed"], init_report.get("agreement"))
        if "validation" in final_report:
            self.confidence_ = with_pair_validation(self.confidence_, final_report["validation"])
        report["stages"]["confidence"] = {"seconds": round(time.perf_counter() - t0, 2)}
        report["seconds"] = round(time.perf_counter() - t_start, 2)
        self.fit_report_ = report
        return self

    def _holdout_size(self, xs, yt) -> int:
        """Rows held out from fitting for scoring: `score_sample`, or a quarter of the smaller side."""
        return min(self.score_sample, len(xs) // 4, len(yt) // 4)

    def _screen(self, xs, yt, known: Pairs | None, held_out: Pairs | None) -> Screen:
        """Screening on up to `screen_sample` fitting rows; scored on the held-out rows (twice as many targets)."""
        n = self._holdout_size(xs, yt)
        m = min(self.screen_sample, len(xs) - n, len(yt) - n)
        return Screen(fit_x=xs[n:n + m], fit_y=yt[n:n + m], hold_x=xs[:n].numpy(), hold_y=yt[:2 * n].numpy(),
                      known=known, held_out=held_out, rounds=self.screen_iters, csls_k=self.csls_k,
                      seed=self.seed, verbose=self.verbose)

    def _start_tiers(self, xs, yt, known: Pairs | None, src, tgt, pivots: dict, fallback: dict, given, legs: dict,
                     screened: list, log) -> Iterator[list[Start]]:
        """Candidate starts, cheapest first, one tier at a time (each built only if no earlier one passed):
        known pairs, a given start and the identity; each given pivot's chain (its legs' reports go into `legs`);
        matched anchors; each fallback pivot's chain (its vectors fetched only then; one unavailable is skipped).
        When neither of the first two anchor starts even reaches the bar (`screened`: the candidates screened so
        far), the fallback pivots come before the remaining anchor starts: a third start rarely rescues two that
        both missed (it then has to pass and agree with one of them), and a pivot chain that passes spares its
        time (minilm-l3 -> mpnet-base). One start that passes but waits for confirmation keeps
        the order.

        A few known pairs give a rough start that needs more self-learning rounds than the other starts to show
        its score. It is the cheapest start and, once it
        passes, the pivot and anchor searches are skipped, so it gets the final refine's rounds.
        Models of one family (distilled from one teacher, or fine-tuned from one base) often share coordinates
        up to a small rotation; the identity is then a far better start than any anchor matching. It is only a
        candidate: the label-free score decides.
        """
        first = []
        if known is not None:
            first += known_pairs_starts(known, completions=self.pair_completions,
                                        rounds=max(self.screen_iters, self.final_iters), seed=self.seed)
        if given is not None:
            first.append(Start("given", closest_isometry(given), self.screen_iters))
        if xs.shape[1] == yt.shape[1]:
            first.append(Start("identity", np.eye(xs.shape[1], dtype=np.float32), self.screen_iters))
        yield first
        yield from self._pivot_tiers(src, tgt, dict(pivots), legs, log)
        # an anchor start counts only once a second one confirms it: the first two are built together
        yield self._anchor_starts(xs, yt, known, list(range(min(2, self.anchor_starts))))
        if not any(c.passes(self.accept_score) for c in screened if c.confirm):
            yield from self._pivot_tiers(src, tgt, fallback, legs, log)
        for i in range(2, self.anchor_starts):
            yield self._anchor_starts(xs, yt, known, [i])
        yield from self._pivot_tiers(src, tgt, fallback, legs, log)

    def _pivot_tiers(self, src, tgt, pivots: dict, legs: dict, log) -> Iterator[list[Start]]:
        """Each pivot's chain, one tier each, in order; `pivots` is emptied as they are tried, so a later call
        tries only the rest. A function is called for its vectors only then (None: unavailable, skipped)."""
        for name in list(pivots):
            piv = pivots.pop(name)
            if callable(piv):
                piv = piv()
                if piv is None:
                    legs[name] = {"skipped": "unavailable"}
                    continue
                piv = check_vectors(piv, f"pivot vectors {name!r}", min_rows=self.min_rows)
            w, legs[name] = self._pivot_chain(name, src, piv, tgt, log)
            yield [] if w is None else [Start(f"pivot:{name}", w)]

    def _pivot_chain(self, name: str, src, pivot, tgt, log) -> tuple[np.ndarray | None, dict]:
        """The start through one pivot space and the legs' report; None when a leg is not confident.

        A pivot is a third encoder's vectors on its own texts. Two spaces too far apart for the anchor search
        (minilm-l3 and mpnet-base) can each be close to a third one (minilm-l6): the legs source -> pivot and
        pivot -> target are fitted unsupervised like any pair, and the product of their rotations starts the
        direct map, which is then screened and refined on the source and target rows alone. Still pair-free:
        the pivot's texts are unrelated to both sides. A leg below the confidence verdict line stops the chain.
        """
        # a leg only lends its rotation, which the direct fit screens and refines again: no output stage, and
        # `LEG_FINAL_ITERS` final rounds (the last four of a full refine gain the leg a few tenths of a point
        # of top-1, l3 -> l6 0.980 -> 0.982 for 70 s, which the direct fit's own refine does not need)
        # `LEG_ANCHOR_STARTS` anchor starts at most (a leg whose first two anchor starts do not agree is dropped
        # rather than given a third: the chain is one fallback among others)
        leg_params = {**self.get_params(), "whiten": 0.0, "affine": 0.0,
                      "final_iters": min(self.final_iters, LEG_FINAL_ITERS),
                      "anchor_starts": min(self.anchor_starts, LEG_ANCHOR_STARTS)}
        t0 = time.perf_counter()
        report, w = {}, None
        if self.leg_rows and max(len(src), len(tgt)) > self.leg_rows:
            # and on at most `leg_rows` rows of each side (a random subsample, the same for every pivot)
            rng = np.random.default_rng([self.seed, LEG_STREAM])
            src = src[np.sort(rng.permutation(len(src))[:self.leg_rows])]
            tgt = tgt[np.sort(rng.permutation(len(tgt))[:self.leg_rows])]
            report["rows"] = {"source": len(src), "target": len(tgt)}
        for leg, (a, b) in (("source_to_pivot", (src, pivot)), ("pivot_to_target", (pivot, tgt))):
            if log is not None:
                log(f"pivot {name}: fitting {leg.replace('_', ' ')}")
            try:
                fitted = type(self)(**leg_params).fit(a, b, log=log, _leg=True)
            except _LegFailed as failed:
                # no start of the leg passed: its verdict could only be `low`, so it is not refined further
                report[leg] = {"start_score": failed.init["score"], "chosen": failed.init["chosen"],
                               "passed": False}
                w = None
                break
            report[leg] = {"confidence": round(fitted.confidence_["score"], 4),
                           "chosen": fitted.fit_report_["stages"]["init"]["chosen"]}
            if fitted.confidence_["verdict"] == "low":
                w = None
                break
            w = fitted.weight_ if w is None else w @ fitted.weight_
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return w, report

    def _anchor_starts(self, xs, yt, known: Pairs | None, indices: list[int]) -> list[Start]:
        """Anchor starts number `indices`, side by side when `jobs` and the cores allow (`workers`)."""
        jobs = self.jobs or (available_cores() if min(self.init_sample, len(xs), len(yt)) >= PARALLEL_ROWS else 1)
        # numpy across processes (torch would pass its tensors through shared-memory file descriptors)
        rows = (self.get_params(), xs.numpy(), yt.numpy(), None if known is None else tuple(t.numpy() for t in known))
        return run_side_by_side(_anchor_start_job, [(*rows, i, self.verbose and k == 0)
                                                    for k, i in enumerate(indices)], jobs)

    def _anchor_start(self, xs, yt, known: Pairs | None, index: int) -> Start:
        """Matched anchors on `init_sample` rows per side: a weak start, so damped subsample rounds and centroid
        rounds bring it closer before it is screened. Each start draws its subsamples, k-means seeds and
        assignments from its own random stream (the seed and `index`), so starts are independent searches and
        the same whichever order or process they run in."""
        rng = np.random.default_rng([self.seed, ANCHOR_STREAM, index])
        xi = xs[rng.choice(len(xs), min(self.init_sample, len(xs)), replace=False)]
        yi = yt[rng.choice(len(yt), min(self.init_sample, len(yt)), replace=False)]
        w = pooled_anchor_map(xi, yi, restarts=self.restarts, n_clusters=self.n_clusters,
                              qap_restarts=self.qap_restarts, neighbours=self.rel_neighbours, rng=rng,
                              verbose=self.verbose)
        n = self._holdout_size(xs, yt)
        short = min(len(xs), len(yt)) >= SHORT_START_ROWS
        w = damped_refine(w, xs[n:], yt[n:], known=known, rng=rng, rounds=self.refine_iters,
                          sample=self.refine_sample, neighbours=self.rel_neighbours, csls_k=self.csls_k,
                          progress=(xs[:n], yt[:n]) if self.verbose else None, desc="refine anchors",
                          mutual=not short)
        if not short:
            w = centroid_refine(w, xs, yt, rng=rng, rounds=self.centroid_rounds, sample=8 * self.refine_sample,
                                n_centroids=self.n_centroids, verbose=self.verbose)
        return Start(f"pooled_anchors:{index + 1}", w, confirm=True, family="pooled_anchors")

    def _bagging(self, init_report: dict, known, xs, yt, leg: bool) -> bool:
        """Whether the accepted start is bagged (`_bagged_start`): an accepted anchor start, no known pairs, fewer
        than `SHORT_START_ROWS` rows on a side, `bag_starts` > 1, and not a pivot leg (a leg only lends its
        rotation to a map that is refined again)."""
        return (self.bag_starts > 1 and not leg and known is None and init_report["passed"]
                and init_report["chosen"] == "pooled_anchors" and min(len(xs), len(yt)) < SHORT_START_ROWS)

    def _bagged_start(self, best, xs, yt, screened: list, screen, rng) -> tuple[np.ndarray, dict]:
        """On a few thousand rows, where one anchor start's fixed point is a matter of luck: anchor starts up
        to `bag_starts` (the screened ones and new ones), each refined by full-batch self-learning alone, and
        their maps averaged (the closest isometry to their sum) into the final refine's start.

        Each refined start lands on its own fixed point (on a 3,000-row off-domain leak top-1 0.69-0.85 from
        eight starts of one seed), and their errors differ: the average of eight refined maps, refined again,
        gave 0.87-0.89 on 3 of 3 seeds where the two averaged starts gave 0.78-0.87 (BENCHMARKS.md). Starts that
        do not reach the screen's bar, or agree with the accepted start `best` under `BAG_AGREEMENT` (another
        basin: a wrong start's screen can pass the bar), are left out. Every new start has its own random stream."""
        anchors = [c for c in screened if c.family == "pooled_anchors"]
        new = self._anchor_starts(xs, yt, None, list(range(len(anchors), self.bag_starts)))
        members = [c for c in [*anchors, *(screen(s) for s in new)]
                   if c.passes(self.accept_score) and screen.agreement(best, c) >= BAG_AGREEMENT]
        report = {"starts": len(anchors) + len(new), "averaged": len(members)}
        if not members:
            return best.weight, report
        x, y = self._final_rows(xs, yt, rng)
        refined = [self_learn(c.weight, x, y, known=None, csls_k=self.csls_k, max_rounds=self.final_iters,
                              desc=f"bag {c.name}", verbose=self.verbose)[0] for c in members]
        return closest_isometry(sum(r.astype(np.float64) for r in refined)).astype(np.float32), report

    def _final_rows(self, xs, yt, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to `final_sample` random rows of each side: what full-batch self-learning is run on."""
        x = xs[rng.choice(len(xs), min(self.final_sample, len(xs)), replace=False)]
        y = yt[rng.choice(len(yt), min(self.final_sample, len(yt)), replace=False)]
        return x, y

    def _final_refine(self, w, xs, yt, known: Pairs | None, all_pairs: Pairs | None, check,
                      rng) -> tuple[np.ndarray, dict]:
        """Full-batch self-learning on up to `final_sample` rows per side until the matches stop changing.
        Matching many rows at once is what pins down the directions that a few pseudo-pairs leave loose.

        Few-shot with held-out pairs: `check` (the map -> their validation) scores the converged map, then one
        more round with `all_pairs` adds them (the usual refit on all data once validated).
        """
        x, y = self._final_rows(xs, yt, rng)
        # A known-pairs start is rougher and still gains after `final_iters` rounds; unsupervised starts do not
        # (BENCHMARKS.md).
        rounds = self.final_iters if known is None else 2 * self.final_iters
        w, rep = self_learn(w, x, y, known=known, csls_k=self.csls_k, max_rounds=rounds, desc="final refine",
                            verbose=self.verbose)
        rep = {"rows": [len(x), len(y)], **rep}
        if check is not None:
            rep["validation"] = check(w)
            w, _ = self_learn(w, x, y, known=all_pairs, csls_k=self.csls_k, max_rounds=1,
                              desc="final refine, all pairs", verbose=self.verbose)
        return w, rep

    def _pair_check(self, pair_src, pair_tgt, tgt, rng) -> Callable[[np.ndarray], dict]:
        """The validation of a rotation on held-out known pairs, as `transform` would translate them: each
        translated source row ranked among the raw held-out targets and up to 4,000 other target rows."""
        pool = tgt[rng.choice(len(tgt), min(4000, len(tgt)), replace=False)]
        xc = unit_rows(pair_src - self.source_mean_).numpy()

        def check(w: np.ndarray) -> dict:
            return pair_validation(self.target_mean_ + self.target_scale_ * (xc @ w), pair_tgt, pool)
        return check

    def _final_pairs(self, w, xs, yt, known: Pairs | None, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """The converged map's pseudo-pairs (`matched_pairs`) on up to `final_sample` rows per side: what an
        output stage is fitted on."""
        x, y = self._final_rows(xs, yt, rng)
        px, py, _ = matched_pairs(torch.from_numpy(w), x, y, known=known, csls_k=self.csls_k)
        return px, py

    def _whitened_maps(self, w, xs, yt, known: Pairs | None, rng) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward matrices: soft-whiten -> rotate -> colour, the rotation fitted on the final map's
        CSLS matches (both directions, plus any known pairs) between whitened rows.

        An orthogonal map keeps the source's spectrum; the target's differs, so directions the target
        stretches come out too weak and the ones it squeezes too strong. Whitening each side with
        (C + eps I)^-1/2 and colouring with the other side's C^1/2 matches the spectra; eps = `whiten` x the
        mean eigenvalue keeps the noisy low-variance directions from being blown up. From pseudo-pairs the
        whitened low-variance directions carry their matching noise, hence its cost in top-1.
        """
        px, py = self._final_pairs(w, xs, yt, known, rng)
        wx, cx_half = whitener(xs, self.whiten)
        wy, cy_half = whitener(yt, self.whiten)
        r = orthogonal_map((px @ wx).numpy(), (py @ wy).numpy())
        forward = (wx.numpy() @ r @ cy_half.numpy()).astype(np.float32)
        backward = (wy.numpy() @ r.T @ cx_half.numpy()).astype(np.float32)
        return forward, backward

    def _affine_maps(self, w, xs, yt, known: Pairs | None, rng) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward matrices: least-squares maps on the final map's CSLS matches (both directions,
        plus any known pairs), each pulled toward the rotation (`shrunk_linear_map`, strength `affine`).

        A rotation keeps the source's spectrum. When the two spaces weigh their directions very differently
        (e5-small's centred vectors are dominated by a few directions) a general linear map ranks better, as
        paired ridge maps show; fitted freely on pseudo-pairs it also learns their noise (top-1 falls), so it is
        kept near the rotation. `_map` gives each output row the rotation's length: the stage changes directions
        only, and the faithful output stays on the rotation's scale.
        """
        px, py = (t.numpy() for t in self._final_pairs(w, xs, yt, known, rng))
        return shrunk_linear_map(px, py, w, self.affine), shrunk_linear_map(py, px, w.T, self.affine)

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
        u = unit_rows(x - own_mean).numpy()
        out = u @ m
        if self.affine > 0:
            # the affine stage's directions at the rotation's lengths (`_affine_maps`)
            length = np.linalg.norm(u @ (self.weight_.T if reverse else self.weight_), axis=1, keepdims=True)
            out *= length / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return mean + weight * scale * out

    def _search(self, x: np.ndarray, reverse: bool) -> np.ndarray:
        """Output for nearest-neighbour search among native vectors of the other space: the shared mean weighs
        1 / `SEARCH_WEIGHT` of the faithful output's share.

        Every native vector carries the space's mean, which says nothing about which text is which; ranking
        unit-length native rows by their dot with mean + w x direction scores each row's centred part minus
        (1 / 2w) x its squared norm, so the mean's weight sets how much the ranking leans toward rows near the
        mean. The faithful output (w = 1) leans too far: w = 2 retrieves better and lowers mean cosine
        (BENCHMARKS.md). Fixed, not tuned per pair: there are no pairs to tune it with.
        """
        return self._map(x, reverse, SEARCH_WEIGHT)

    # -- persistence --------------------------------------------------------------------------------
    def _get_state(self):
        """The rotation and both means; the whitened or affine maps only when they differ from the rotation."""
        tensors = {"weight": self.weight_, "source_mean": self.source_mean_, "target_mean": self.target_mean_}
        if self.whiten > 0 or self.affine > 0:
            tensors |= {"forward": self.forward_, "backward": self.backward_}
        state = {"source_scale": self.source_scale_, "target_scale": self.target_scale_,
                 "fit_report": getattr(self, "fit_report_", None)}
        return tensors, state

    def _tensor_shapes(self, state):
        ds, dt = self.dim_source_, self.dim_target_
        shapes = {"weight": (ds, dt), "source_mean": (ds,), "target_mean": (dt,),
                  "forward": (ds, dt), "backward": (dt, ds)}
        # without an output stage the maps are the rotation (artifacts written before this rule store them anyway)
        return shapes, set() if self.whiten > 0 or self.affine > 0 else {"forward", "backward"}

    def _set_state(self, tensors, state):
        self.weight_ = tensors["weight"]
        self.forward_ = tensors.get("forward", self.weight_)
        self.backward_ = tensors.get("backward", self.weight_.T)
        self.source_mean_, self.target_mean_ = tensors["source_mean"], tensors["target_mean"]
        self.source_scale_, self.target_scale_ = float(state["source_scale"]), float(state["target_scale"])
        self.fit_report_ = state.get("fit_report")


class _LegFailed(Exception):
    """A pivot leg in which no start passed the screen (`init`: its init report)."""

    def __init__(self, init: dict):
        super().__init__("no start passed")
        self.init = init


def _anchor_start_job(params: dict, xs: np.ndarray, yt: np.ndarray, known: tuple | None, index: int,
                      verbose: bool) -> Start:
    """One anchor start by a translator with `params` (a worker process's entry point: `_anchor_starts`)."""
    # joblib hands large arrays to a worker as read-only memory maps; torch wants writable memory (it is only read)
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(a, requirements="W"))

    xs, yt, known = tensor(xs), tensor(yt), None if known is None else Pairs(*map(tensor, known))
    return GeometricTranslator(**{**params, "verbose": verbose})._anchor_start(xs, yt, known, index)


def _held_out_pairs(n: int, rng) -> torch.Tensor | None:
    """Mask of the known pairs held out of fitting to validate a few-shot map: a quarter, once there are
    `MIN_VALIDATION_PAIRS`; None when there are too few to spare any.

    Held-out pairs are the only honest check of a few-shot map: the pairs a map was fitted with retrieve their
    targets far more often than new ones.
    """
    if n < MIN_VALIDATION_PAIRS:
        return None
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[:n // 4]] = True
    return torch.from_numpy(held)


def _known_pairs(src, tgt, pairs) -> tuple[np.ndarray, np.ndarray] | None:
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
