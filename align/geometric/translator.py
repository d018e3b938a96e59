"""`GeometricTranslator`, the estimator: inputs checked, few-shot pairs split, a start chosen, self-learning to the
fixed point, the optional whitening or affine stage, the label-free confidence; search output and persistence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

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
from align.geometric.screening import Candidate, Screen, Start, best_start, known_pairs_starts, relative_start
from align.geometric.workers import available_cores, run_side_by_side
from align.vectors import check_vectors, closest_isometry, orthogonal_map, shrunk_linear_map, unit_rows

# Weight of the direction against the shared mean in `search` output, relative to the faithful output's.
SEARCH_WEIGHT = 2.0

# A pivot leg only lends its rotation to a fit that refines it again: it gets fewer final rounds and anchor starts.
LEG_FINAL_ITERS = 2
LEG_ANCHOR_STARTS = 2

# With `jobs` 0, anchor starts on at least this many rows a side run in worker processes: they outlast the startup.
PARALLEL_ROWS = 2000

# Random streams apart from the fit's own: a pivot chain's subsamples and each anchor start (with its index).
LEG_STREAM = 2
ANCHOR_STREAM = 1

# From this many rows a side an anchor start skips its mutual-NN and centroid rounds: they cost time and agreement.
SHORT_START_ROWS = 10000

# With no start passed, the best is refined only if another start agrees with it this much: wrong starts agree near 0.
UNREFINED_AGREEMENT = 0.3

# A bagged start averages only the anchor starts that agree this much with the accepted one (the same basin).
BAG_AGREEMENT = 0.5

# Fewest known pairs from which a quarter is held out to validate the few-shot map.
MIN_VALIDATION_PAIRS = 16


class _KnownSplit(NamedTuple):
    """Known pairs as centred unit rows: all of them, those fitted on, those held out, and the held-out check."""

    all_pairs: Pairs | None = None
    fit_pairs: Pairs | None = None
    held_out: Pairs | None = None
    check: Callable[[np.ndarray], dict] | None = None


class GeometricTranslator(Translator):
    """Fully unsupervised translator: `GeometricTranslator(seed=0).fit(src, tgt).transform(x)`.

    Stages (timed in `fit_report_`):
    1. centre + L2-normalise each side (the dims may differ: the map is a partial isometry);
    2. init: candidate starts, cheapest first (`_start_tiers`), each screened by `screen_iters` self-learning
       rounds on `screen_sample` rows and scored label-free on held-out rows, until one passes `accept_score`;
       an anchor start (`_anchor_start`; up to `anchor_starts`, side by side as `jobs` allows, 0 = as the cores
       allow) counts only once an independent one reaches the same map. If none passes, the verdict is `low`;
    3. small fits: up to `bag_starts` refined anchor starts averaged into the next stage's start (`_bagged_start`);
    4. final refine: full-batch self-learning on up to `final_sample` rows a side (`_final_refine`); from
       `MIN_VALIDATION_PAIRS` known pairs on, a quarter is held out of every stage to validate the map. Known
       pairs weigh `pair_weight` x all the pseudo-pairs together in every Procrustes step (0: one row each);
    5. optional, off by default: a whitened (`whiten` > 0) or affine (`affine` > 0, e.g. 0.03) output stage;
    6. output = target mean + target scale x mapped centred unit input; label-free confidence.
    """

    method = "geometric"
    min_rows = 200
    supports_search = True
    fit_options = frozenset({"pivots", "fallback_pivots", "start", "log", "confidence"})
    state_numbers = ("source_scale", "target_scale")

    def __init__(self, seed: int = 0, n_clusters: int = 20, restarts: int = 24, qap_restarts: int = 20,
                 init_sample: int = 6000, rel_neighbours: int = 50, refine_iters: int = 64,
                 refine_sample: int = 1000, score_sample: int = 2000, csls_k: int = 10,
                 centroid_rounds: int = 20, n_centroids: int = 512, screen_iters: int = 2, screen_sample: int = 6000,
                 final_iters: int = 6, final_sample: int = 30000, accept_score: float = 0.5,
                 pair_completions: int = 4, whiten: float = 0.0, anchor_starts: int = 3, jobs: int = 0,
                 leg_rows: int = 10000, affine: float = 0.0, bag_starts: int = 8, pair_weight: float = 0.0,
                 verbose: bool = True):
        self.seed, self.n_clusters, self.restarts, self.qap_restarts = seed, n_clusters, restarts, qap_restarts
        self.init_sample, self.rel_neighbours = init_sample, rel_neighbours
        self.refine_iters, self.refine_sample, self.csls_k = refine_iters, refine_sample, csls_k
        self.score_sample, self.centroid_rounds, self.n_centroids = score_sample, centroid_rounds, n_centroids
        self.screen_iters, self.screen_sample = screen_iters, screen_sample
        self.final_iters, self.final_sample, self.accept_score = final_iters, final_sample, accept_score
        self.pair_completions, self.whiten, self.verbose = pair_completions, whiten, verbose
        self.anchor_starts, self.jobs, self.leg_rows, self.affine = anchor_starts, jobs, leg_rows, affine
        self.bag_starts, self.pair_weight = bag_starts, pair_weight

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None, pivots=None, fallback_pivots=None, start=None,
            log: Callable[[str], None] | None = None, confidence: bool = True,
            _leg: bool = False) -> GeometricTranslator:
        """Fit on unpaired `src` and `tgt`. `pairs`: optional known pairs (few-shot), an int (k, 2) array of
        (source_row, target_row) or a tuple of two row-aligned arrays. `pivots`: optional {name: vectors} of third
        encoders on their own texts (`_pivot_chain`), tried before the anchor search. `fallback_pivots`: {name:
        vectors, or a function returning them or None}, tried only once the direct starts failed (a function is
        called only then). `start`: an optional rotation (source dim x target dim) screened first, e.g. a
        translator fitted on other data of the same spaces. `log`: called with a line as each pivot leg starts.
        `confidence` False: the label-free confidence is not measured (`confidence_` None: a member of an ensemble
        whose caller checks the whole; a quarter of a few-shot fit's time). `_leg` (a pivot leg): raise
        `_LegFailed` as soon as no start passes, instead of refining a `low` map."""
        src, tgt, known, start, pivots, fallback = self._checked_inputs(src, tgt, pairs, start, pivots,
                                                                        fallback_pivots)
        t_start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        report: dict = {"stages": {}, "n_source": len(src), "n_target": len(tgt)}
        stages = report["stages"]
        xs, yt = self._centred_rows(src, tgt, rng)
        split = self._split_pairs(known, tgt, rng)

        t0 = time.perf_counter()
        best, init, screened, screen = self._initial_start(xs, yt, split, src, tgt, pivots, fallback, start, log,
                                                           _leg)
        stages["init"] = {**init, "seconds": _since(t0)}
        start_w = best.weight
        if self._bagging(init, known, xs, yt, _leg):
            t0 = time.perf_counter()
            start_w, stages["bag"] = self._bagged_start(best, xs, yt, screened, screen, rng)
            stages["bag"]["seconds"] = _since(t0)

        t0 = time.perf_counter()
        self.target_scale_ = float(np.linalg.norm(tgt - self.target_mean_, axis=1).mean())
        self.source_scale_ = float(np.linalg.norm(src - self.source_mean_, axis=1).mean())
        w, final = self._final_map(best, start_w, init, split, xs, yt, rng, screen)
        stages["final_refine"] = {**final, "seconds": _since(t0)}
        self.weight_ = w
        self._output_stage(w, xs, yt, split.all_pairs, rng, stages)
        self.dim_source_, self.dim_target_ = src.shape[1], tgt.shape[1]

        t0 = time.perf_counter()
        self.confidence_ = self._fit_confidence(src, tgt, init, final) if confidence else None
        stages["confidence"] = {"seconds": _since(t0)}
        report["seconds"] = _since(t_start)
        self.fit_report_ = report
        return self

    def _check_params(self) -> None:
        """Refuse parameter values `fit` cannot work with."""
        if not self.whiten >= 0:
            raise AlignError(f"whiten must be >= 0 (0 = off), got {self.whiten}")
        if not self.affine >= 0:
            raise AlignError(f"affine must be >= 0 (0 = off), got {self.affine}")
        if self.affine > 0 and self.whiten > 0:
            raise AlignError("whiten and affine are two output stages: set one of them, not both")
        if self.pair_completions < 1:
            raise AlignError(f"pair_completions must be >= 1, got {self.pair_completions}")
        if not self.pair_weight >= 0:
            raise AlignError(f"pair_weight must be >= 0 (0 = each known pair counts as one row), got "
                             f"{self.pair_weight}")
        if self.bag_starts < 0:
            raise AlignError(f"bag_starts must be >= 0 (0 or 1 = off), got {self.bag_starts}")
        if self.anchor_starts < 1:
            raise AlignError(f"anchor_starts must be >= 1, got {self.anchor_starts}")
        if self.jobs < 0:
            raise AlignError(f"jobs must be >= 0 (0 = as the cores allow), got {self.jobs}")
        if self.leg_rows and self.leg_rows < self.min_rows:
            raise AlignError(f"leg_rows must be 0 (all rows) or at least {self.min_rows}, got {self.leg_rows}")

    def _checked_inputs(self, src, tgt, pairs, start, pivots, fallback_pivots) -> tuple:
        """The parameters and `fit`'s inputs checked: (src, tgt, known pairs or None, start or None, pivots,
        fallback pivots)."""
        self._check_params()
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
        return src, tgt, known, start, pivots, fallback

    def _centred_rows(self, src, tgt, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """Set both means; return each side's centred unit rows, shuffled so that the held-out scoring rows are a
        random sample whatever the input order."""
        self.source_mean_, self.target_mean_ = src.mean(0), tgt.mean(0)
        xs = unit_rows(torch.from_numpy(src[rng.permutation(len(src))] - self.source_mean_))
        yt = unit_rows(torch.from_numpy(tgt[rng.permutation(len(tgt))] - self.target_mean_))
        return xs, yt

    def _split_pairs(self, known, tgt, rng) -> _KnownSplit:
        """Known pairs as centred unit rows; from `MIN_VALIDATION_PAIRS` on, a quarter held out with their check."""
        if known is None:
            return _KnownSplit()
        all_pairs = Pairs(unit_rows(torch.from_numpy(known[0] - self.source_mean_)),
                          unit_rows(torch.from_numpy(known[1] - self.target_mean_)), self.pair_weight)
        held = _held_out_pairs(len(known[0]), rng)
        if held is None:
            return _KnownSplit(all_pairs, all_pairs)
        return _KnownSplit(all_pairs, Pairs(all_pairs.source[~held], all_pairs.target[~held], self.pair_weight),
                           Pairs(all_pairs.source[held], all_pairs.target[held]),
                           self._pair_check(known[0][held], known[1][held], tgt, rng))

    def _initial_start(self, xs, yt, split: _KnownSplit, src, tgt, pivots: dict, fallback: dict, given, log,
                       leg: bool) -> tuple[Candidate, dict, list[Candidate], Screen]:
        """The start tiers screened until one is accepted (`best_start`): the chosen candidate, the init report
        (with the pivot legs' reports), the candidates screened and the screen."""
        legs: dict = {}
        screened: list[Candidate] = []
        starts = self._start_tiers(xs, yt, split.fit_pairs, src, tgt, pivots, fallback, given, legs, screened, log)
        screen = self._screen(xs, yt, split.fit_pairs, split.held_out)
        best, init = best_start(starts, screen, self.accept_score, screened=screened)
        if leg and not init["passed"]:
            raise _LegFailed(init)
        if legs:
            init["pivots"] = legs
        return best, init, screened, screen

    def _final_map(self, best: Candidate, start_w, init: dict, split: _KnownSplit, xs, yt, rng,
                   screen: Screen) -> tuple[np.ndarray, dict]:
        """The final refine from `start_w`; unless no start passed, no pairs are known and no two starts agree
        (`UNREFINED_AGREEMENT`): the map is at chance, and `best` is kept as it is. A start its screening rounds
        made worse (kept as given: across domains) keeps the refine only if the refine scores as well."""
        if not (init["passed"] or split.all_pairs is not None or
                (init.get("agreement") or 0.0) >= UNREFINED_AGREEMENT):
            return best.weight, {"skipped": "no start passed the screen and no two starts agree: the map is at "
                                            "chance, so it is kept unrefined"}
        w, report = self._final_refine(start_w, xs, yt, split.fit_pairs, split.all_pairs, split.check, rng)
        if "kept" in best.report and screen.score(w) < best.score:
            return best.weight, {**report, "kept": "the start as given: the refine scored lower"}
        return w, report

    def _output_stage(self, w, xs, yt, all_pairs: Pairs | None, rng, stages: dict) -> None:
        """Set `forward_` and `backward_`: the rotation, or the whitened or affine maps (timed into `stages`)."""
        self.forward_, self.backward_ = w, w.T
        if self.whiten > 0:
            t0 = time.perf_counter()
            self.forward_, self.backward_ = self._whitened_maps(w, xs, yt, all_pairs, rng)
            stages["whiten"] = {"seconds": _since(t0)}
        elif self.affine > 0:
            t0 = time.perf_counter()
            self.forward_, self.backward_ = self._affine_maps(w, xs, yt, all_pairs, rng)
            stages["affine"] = {"seconds": _since(t0)}

    def _fit_confidence(self, src, tgt, init: dict, final: dict) -> dict:
        """The fitted map's label-free confidence, with the start screen's evidence and any held-out pairs' check."""
        confidence = translation_confidence(src, tgt, self._forward, self._backward, seed=self.seed,
                                            draws=REPORT_DRAWS)
        confidence = with_start_check(confidence, init["passed"], init.get("agreement"))
        if "validation" in final:
            confidence = with_pair_validation(confidence, final["validation"])
        return confidence

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
        the known pairs' relative start; their completions (both screened with the final refine's rounds), a given
        start and the identity (models of one family often share coordinates); each pivot's chain (legs reported
        into `legs`); two anchor starts; each fallback pivot's chain; further anchor starts. If neither of the
        first two anchor starts reaches the bar (`screened`), the fallback pivots come first: a third start must
        pass and agree, so it rarely rescues."""
        first = []
        if known is not None:
            rounds = max(self.screen_iters, self.final_iters)
            # a tier of its own: when it passes, a few held-out pairs' noise does not hand the fit to a completion
            yield [relative_start(known, xs, yt, csls_k=self.csls_k, rounds=rounds)]
            first += known_pairs_starts(known, completions=self.pair_completions, rounds=rounds, seed=self.seed)
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
        """The start through one pivot space and the legs' report; None when a leg is not confident (that stops
        the chain). Two spaces too far apart for the anchor search can each be close to a third encoder's (on its
        own texts: still pair-free): the legs source -> pivot and pivot -> target are fitted like any pair, and
        the product of their rotations starts the direct map, screened and refined on source and target alone."""
        # the direct fit screens and refines the leg's rotation again: no output stage, fewer rounds and starts
        leg_params = {**self.get_params(), "whiten": 0.0, "affine": 0.0,
                      "final_iters": min(self.final_iters, LEG_FINAL_ITERS),
                      "anchor_starts": min(self.anchor_starts, LEG_ANCHOR_STARTS)}
        t0 = time.perf_counter()
        report, w = {}, None
        if self.leg_rows and max(len(src), len(tgt)) > self.leg_rows:
            # at most `leg_rows` rows of each side: a random subsample, the same for every pivot
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
        rows = (self.get_params(), xs.numpy(), yt.numpy(),
                None if known is None else (known.source.numpy(), known.target.numpy(), known.weight))
        return run_side_by_side(_anchor_start_job, [(*rows, i, self.verbose and k == 0)
                                                    for k, i in enumerate(indices)], jobs)

    def _anchor_start(self, xs, yt, known: Pairs | None, index: int) -> Start:
        """Matched anchors (`restarts` k-means runs of `n_clusters` centroids) on `init_sample` rows per side, then
        `refine_iters` damped rounds and `centroid_rounds` centroid rounds. Its own random stream (seed, `index`)
        makes each start an independent search, the same in whichever order or process it runs."""
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
        """Whether to bag (`_bagged_start`): an accepted anchor start, no known pairs, fewer than `SHORT_START_ROWS`
        rows on a side, `bag_starts` > 1, and not a pivot leg (its rotation is refined again anyway)."""
        return (self.bag_starts > 1 and not leg and known is None and init_report["passed"]
                and init_report["chosen"] == "pooled_anchors" and min(len(xs), len(yt)) < SHORT_START_ROWS)

    def _bagged_start(self, best, xs, yt, screened: list, screen, rng) -> tuple[np.ndarray, dict]:
        """Up to `bag_starts` anchor starts (screened ones, then new ones), each refined by full-batch
        self-learning, averaged (the closest isometry to their sum) into the final refine's start: on a few
        thousand rows one start's fixed point is luck, and their errors differ. Starts under the screen's bar or
        agreeing with `best` under `BAG_AGREEMENT` (another basin) are left out."""
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
        """Full-batch self-learning on up to `final_sample` rows per side until the matches stop changing (many
        rows pin down the directions a few pseudo-pairs leave loose). `check` (held-out pairs) validates the
        converged map; one more round then adds `all_pairs`."""
        x, y = self._final_rows(xs, yt, rng)
        # a known-pairs start is rougher: it still gains after `final_iters` rounds
        rounds = self.final_iters if known is None else 4 * self.final_iters
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
        """Forward and backward matrices: whiten with (C + eps I)^-1/2, rotate, colour with the other side's C^1/2, so
        the spectra match (a rotation keeps the source's); eps = `whiten` x the mean eigenvalue spares the noisy
        low-variance directions. The rotation is fitted on the final map's CSLS matches between whitened rows."""
        px, py = self._final_pairs(w, xs, yt, known, rng)
        wx, cx_half = whitener(xs, self.whiten)
        wy, cy_half = whitener(yt, self.whiten)
        r = orthogonal_map((px @ wx).numpy(), (py @ wy).numpy())
        forward = (wx.numpy() @ r @ cy_half.numpy()).astype(np.float32)
        backward = (wy.numpy() @ r.T @ cx_half.numpy()).astype(np.float32)
        return forward, backward

    def _affine_maps(self, w, xs, yt, known: Pairs | None, rng) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward matrices: least-squares maps on the final map's CSLS matches (plus any known pairs),
        pulled toward the rotation (`shrunk_linear_map`, strength `affine`): a general map follows a strongly
        anisotropic space, but fitted freely it learns the pseudo-pairs' noise. `_map` keeps the rotation's lengths."""
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
        """Output for nearest-neighbour search among the other space's native vectors, the shared mean weighed 1 /
        `SEARCH_WEIGHT`: ranking unit rows by their dot with mean + w x direction scores each row's centred part
        minus (1 / 2w) x its squared norm, and w = 1 leans too far toward rows near the mean. Fixed, not tuned."""
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
        # without an output stage the maps are the rotation, stored only by older artifacts
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

    xs, yt = tensor(xs), tensor(yt)
    known = None if known is None else Pairs(tensor(known[0]), tensor(known[1]), known[2])
    return GeometricTranslator(**{**params, "verbose": verbose})._anchor_start(xs, yt, known, index)


def _since(t0: float) -> float:
    """Seconds since `t0` (`time.perf_counter`), as the fit report gives them."""
    return round(time.perf_counter() - t0, 2)


def _held_out_pairs(n: int, rng) -> torch.Tensor | None:
    """Mask of the known pairs held out of fitting to validate a few-shot map (fitted pairs flatter it): a
    quarter, once there are `MIN_VALIDATION_PAIRS`; None when there are too few to spare any."""
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
