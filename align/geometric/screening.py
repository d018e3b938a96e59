"""Starts and their screening: each candidate start (known pairs, the identity, a pivot chain, matched anchors) gets
a few self-learning rounds on a subsample and a label-free score on held-out rows. A start is accepted when it
passes the bar; an anchor start must also be confirmed by an independent anchor start that reaches the same map
(the two are then averaged). When none is accepted the best is kept, and the report says so (`passed: false`).

Across domains (a store of one domain against a general reference) even the right map scores low: the score
compares the mapped rows with a second sample of the target, which they cannot resemble, and self-learning
pulls a right start toward the target's dense regions. A start that needs no confirmation is therefore also
scored as given, and accepted on the score's structural part alone (`STRUCTURE_OK`), which a wrong map does
not reach whatever the domains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from align.confidence import (
    AGREEMENT_OK,
    REPORT_DRAWS,
    VALIDATION_OK,
    map_agreement,
    pair_validation,
    translation_confidence,
)
from align.geometric.kernels import csls_matches
from align.geometric.refine import Pairs, self_learn
from align.vectors import closest_isometry, orthogonal_map

# Singular values of the known pairs' cross-covariance below this fraction of the largest one count as zero:
# the directions they belong to are not determined by the pairs.
RANK_TOLERANCE = 1e-6

# A start that needs no confirmation passes on the structural part of its score from here (`translation_confidence`:
# the neighbourhoods kept, against a random rotation's and the target's own): measured, the same model across
# domains 0.61-1.00 (ICD-10, Brown, WordNet against the pool), wrong maps <= 0.21 even after their screening rounds.
STRUCTURE_OK = 0.5


@dataclass(frozen=True)
class Start:
    """A candidate starting rotation and its screening rounds (None: the screen's default). `confirm`: the start
    is a random search's outcome (matched anchors) and counts only once an independent start of the same `family`
    reaches the same map."""

    name: str
    weight: np.ndarray
    rounds: int | None = None
    confirm: bool = False
    family: str = ""


@dataclass(frozen=True)
class Candidate:
    """A screened start: the rotation after the screening rounds, its label-free score on held-out rows and
    the screen's report (rounds, changed matches, held-out known pairs' validation)."""

    name: str
    weight: np.ndarray
    score: float
    report: dict
    confirm: bool = False
    family: str = ""
    structure: float = 0.0

    @property
    def validated_top1(self) -> float:
        return self.report.get("validation", {}).get("top1", 0.0)

    def passes(self, accept_score: float) -> bool:
        return self.score >= accept_score or self.validated_top1 >= VALIDATION_OK or \
            (not self.confirm and self.structure >= STRUCTURE_OK)


@dataclass(frozen=True)
class Screen:
    """The rows every start is screened on: self-learning on `fit_x`/`fit_y`, scoring on `hold_x`/`hold_y`
    (a map fitted to rows inflates those rows' scores) and, given `held_out` known pairs, their retrieval among
    `hold_y`."""

    fit_x: torch.Tensor
    fit_y: torch.Tensor
    hold_x: np.ndarray
    hold_y: np.ndarray
    known: Pairs | None
    held_out: Pairs | None
    rounds: int
    csls_k: int
    seed: int
    verbose: bool

    def __call__(self, start: Start) -> Candidate:
        w, report = self_learn(start.weight, self.fit_x, self.fit_y, known=self.known, csls_k=self.csls_k,
                               max_rounds=self.rounds if start.rounds is None else start.rounds,
                               desc=f"screen {start.name}", verbose=self.verbose)
        evidence = self.evidence(w)
        if not start.confirm:
            # the start as given may beat its rounds: across domains self-learning pulls a right map off
            given = self.evidence(start.weight)
            if given["score"] > evidence["score"]:
                w, evidence, report = start.weight, given, {**report, "kept": "the start as given"}
        report["structure"] = round(evidence["structure"], 4)
        if self.held_out is not None:
            report["validation"] = pair_validation(self.held_out.source.numpy() @ w,
                                                   self.held_out.target.numpy(), self.hold_y)
        return Candidate(start.name, w, float(evidence["score"]), report, start.confirm, start.family,
                         float(evidence["structure"]))

    def evidence(self, w: np.ndarray) -> dict:
        """The label-free confidence of a rotation on the held-out rows (its score and parts)."""
        return translation_confidence(self.hold_x, self.hold_y, lambda x: x @ w, lambda y: y @ w.T,
                                      seed=self.seed, draws=REPORT_DRAWS)

    def score(self, w: np.ndarray) -> float:
        """The label-free score of a rotation on the held-out rows."""
        return self.evidence(w)["score"]

    def agreement(self, a: Candidate, b: Candidate) -> float:
        """How far two screened maps agree on the held-out source rows (`map_agreement`)."""
        return map_agreement(self.hold_x, a.weight, b.weight)


def best_start(tiers: Iterable[list[Start]], screen: Screen, accept_score: float,
               agreement_ok: float = AGREEMENT_OK, screened: list[Candidate] | None = None) -> tuple[Candidate, dict]:
    """Screen the starts tier by tier (cheap ones first; a tier is built only when reached) until one is accepted:
    it passes `accept_score` or the validation of held-out known pairs, and, if it needs confirmation (anchors),
    an independent start of its family agrees with it at `agreement_ok` or more. Agreeing starts are averaged
    (the closest isometry to the sum of their maps) into one candidate named after the family. The best accepted
    candidate is the one that retrieves most held-out pairs, then the one with the highest label-free score.

    When no tier yields an accepted start the best candidate is still returned (the fit needs a map), but the
    report says `passed: false`, and the translator's verdict is then `low`: a start below the bar is never kept
    silently. Returns the chosen candidate and the init report. `screened`: a list the screened candidates are
    appended to as they come (the tiers' builder may read it to choose what to try next)."""
    candidates: list[Candidate] = [] if screened is None else screened
    agreements: dict[str, float] = {}
    accepted: list[Candidate] = []
    for tier in tiers:
        for start in tier:
            new = screen(start)
            for old in candidates:
                if new.confirm and old.confirm and new.family == old.family:
                    agreements[f"{old.name}~{new.name}"] = round(screen.agreement(old, new), 4)
            candidates.append(new)
        accepted = _accepted(candidates, agreements, screen, accept_score, agreement_ok)
        if accepted:
            break
    best = sorted(accepted or candidates, key=lambda c: (-c.validated_top1, -c.score))[0]
    # `chosen` names the kind of start (an anchor start by its family); `start` the candidate when they differ
    report = {"candidates": {c.name: round(c.score, 4) for c in candidates}, "chosen": best.family or best.name,
              "score": round(best.score, 4), "screen": best.report, "passed": bool(accepted)}
    if best.name != report["chosen"]:
        report["start"] = best.name
    if agreements:
        report["agreements"] = agreements
    if best.confirm:
        report["agreement"] = best.report.get("agreement", max(
            (v for k, v in agreements.items() if best.name in k.split("~")), default=None))
    return best, report


def _accepted(candidates: list[Candidate], agreements: dict[str, float], screen: Screen, accept_score: float,
              agreement_ok: float) -> list[Candidate]:
    """The candidates that may be kept: passing ones that need no confirmation, and, for each family that needs
    it, the average of the passing candidates that agree with the best passing one."""
    out = [c for c in candidates if c.passes(accept_score) and (not c.confirm or c.validated_top1 >= VALIDATION_OK)]
    for family in {c.family for c in candidates if c.confirm}:
        group = sorted((c for c in candidates if c.confirm and c.family == family), key=lambda c: -c.score)
        for lead in (c for c in group if c.passes(accept_score)):
            mates = [c for c in group if c is not lead and
                     agreements.get(f"{lead.name}~{c.name}", agreements.get(f"{c.name}~{lead.name}", 0.0))
                     >= agreement_ok]
            if not mates:
                continue
            members = [lead, *mates]
            w = closest_isometry(sum(c.weight.astype(np.float64) for c in members))
            agreement = min(screen.agreement(lead, c) for c in mates)
            score = screen.score(w)
            report = {**lead.report, "averaged": [c.name for c in members], "agreement": round(agreement, 4)}
            out.append(Candidate(family, w, float(score), report, True, family))
            break
    return out


def known_pairs_starts(known: Pairs, *, completions: int, rounds: int, seed: int) -> list[Start]:
    """Starts from known pairs: their Procrustes rotation, or, when they are fewer than the dims (8 pairs in
    16 dims, 64 in 384), `completions` rotations that agree on the directions the pairs span.

    Outside that span Procrustes is not determined: the SVD fills it with whatever basis its rounding gives, so
    the start, and the fixed point self-learning reaches from it, would change with the BLAS build. Each
    completion is instead the isometry between the unspanned directions closest to a reference: the identity
    (equal dims, the first one) or a random isometry seeded by `seed`. The start is then a smooth function of
    the data, and screening several completions keeps one unlucky completion from deciding the fit.
    """
    x, y = known.source.numpy().astype(np.float64), known.target.numpy().astype(np.float64)
    u, s, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    rank = int((s > s[0] * RANK_TOLERANCE).sum()) if s[0] > 0 else 0
    dims = min(x.shape[1], y.shape[1])
    if rank == dims:
        return [Start("known_pairs", (u @ vt).astype(np.float32), rounds)]
    spanned = u[:, :rank] @ vt[:rank]
    free_src = np.eye(x.shape[1]) - u[:, :rank] @ u[:, :rank].T
    free_tgt = np.eye(y.shape[1]) - vt[:rank].T @ vt[:rank]
    starts = []
    for i in range(completions):
        reference = np.eye(x.shape[1]) if i == 0 and x.shape[1] == y.shape[1] else \
            _random_isometry(x.shape[1], y.shape[1], np.random.default_rng([seed, i]))
        a, _, bt = np.linalg.svd(free_src @ reference @ free_tgt, full_matrices=False)
        w = spanned + a[:, :dims - rank] @ bt[:dims - rank]
        starts.append(Start(f"known_pairs:{i + 1}", w.astype(np.float32), rounds))
    return starts


def relative_start(known: Pairs, xs: torch.Tensor, yt: torch.Tensor, *, csls_k: int, rounds: int) -> Start:
    """A start from few known pairs that uses every unpaired row (relative representations): each row of a side
    described by its cosines to that side's known rows, each cosine standardised over the side's rows so that the
    two models' scales compare; every row matched to its CSLS nearest description on the other side (both ways),
    and the rotation fitted by Procrustes on those matches and the known pairs.

    A known-pairs rotation fixes only the directions the pairs span (32 pairs: 32 of 384); the descriptions
    place every row by all the pairs at once, so the matches, rough as they are, pin down every direction.
    """
    def described(rows: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        cos = rows @ anchors.T
        return torch.nn.functional.normalize((cos - cos.mean(0)) / (cos.std(0) + 1e-6), dim=1)

    fwd, back = csls_matches(described(xs, known.source), described(yt, known.target), csls_k)
    w = orthogonal_map(torch.cat([xs, xs[back], known.source]).numpy(),
                       torch.cat([yt[fwd], yt, known.target]).numpy())
    return Start("known_pairs:relative", w, rounds)


def _random_isometry(d_in: int, d_out: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((max(d_in, d_out), min(d_in, d_out))))
    return q if d_in >= d_out else q.T
