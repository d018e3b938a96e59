"""The attacker's translator: geometric fits of leaked (or defended) vectors against the attacker's reference,
and the policy for a given translator: where its adaptation to the leak starts, and whether it is used."""

from __future__ import annotations

import numpy as np

from align import Translator, translator_class
from align.confidence import REPORT_DRAWS, translation_confidence
from align.geometric.translator import SHORT_START_ROWS
from align.vectors import orthogonal_map
from vecbridge.errors import UserError

METHOD = "geometric"
# a given translator's output stage, kept by every map the audit re-fits from it: the same kind of map
OUTPUT_STAGES = ("affine", "whiten")


def output_stage(given: Translator | None) -> dict:
    """The geometric output-stage parameters (`train --affine / --whiten`) of a given translator, which the maps
    the audit re-fits from it (adapted to the leak, re-trained on defended vectors) keep; {} for any other."""
    if given is None or getattr(given, "method", None) != METHOD:
        return {}
    return {name: value for name, value in given.get_params().items() if name in OUTPUT_STAGES and value}


class ReferenceFit:
    """Geometric fits of vectors against the attacker's reference: `fit(x, what, start=..., refine_only=...)`.
    Every map keeps the given translator's output stage."""

    def __init__(self, reference: np.ndarray, seed: int, given: Translator | None = None):
        self.reference, self.seed, self.kept = reference, seed, output_stage(given)

    def __call__(self, x: np.ndarray, what: str, start: np.ndarray | None = None, refine_only: bool = False,
                 defended: bool = False, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> Translator:
        """A fit of `x` (named `what` in errors). `refine_only`: the given `start` is refined whatever its screen
        score (adapting a translator refines it); otherwise a start the screen rejects gives way to the fit's own
        search. `defended`: a defence row's fit (`search_params`). `pairs`: known pairs (rows of `x`'s space,
        their reference-space rows), few-shot."""
        cls = translator_class(METHOD)
        if len(x) < cls.min_rows:
            raise UserError(f"{what} hold {len(x)} rows; training a translator needs at least {cls.min_rows} "
                            "(or give --translator)")
        params = {**self.kept, **(search_params(len(x)) if defended else {}),
                  **({"accept_score": 0.0} if refine_only else {})}
        return cls(seed=self.seed, **params).fit(x, self.reference, start=start, pairs=pairs)

    @staticmethod
    def start_passes(model: Translator) -> bool:
        """Whether the start `model` was refined from cleared the screen's default bar, where a fit with its own
        search accepts it (and refines it the same way) instead of searching. Strictly above: the report rounds."""
        return model.fit_report_["stages"]["init"]["score"] > translator_class(METHOD)().accept_score


def search_params(rows: int) -> dict:
    """A defence row's search on a leak of `rows` rows: no bagged start from `SHORT_START_ROWS` leaked rows on.
    Bagging steadies a lucky anchor start on a few thousand rows; a leak that large finds the same map without it
    (a small reference alone would bag it), and bagging is most of a searching row's time."""
    return {"bag_starts": 0} if rows >= SHORT_START_ROWS else {}


def adaptation_start(given: Translator, x: np.ndarray, given_x: np.ndarray) -> np.ndarray:
    """The start for adapting `given` to the rows `x` (`given_x`: its output on them): a geometric translator's
    own rotation; for any other method, the rotation between centred unit rows closest to what it does to `x`.

    A geometric rotation acts on rows centred on its training mean; an off-domain leak's outputs, centred on
    their own mean, are a distorted image of it, so a rotation fitted back to them is another map."""
    weight = getattr(given, "weight_", None) if getattr(given, "method", None) == METHOD else None
    if weight is not None and np.shape(weight) == (x.shape[1], given_x.shape[1]):
        return np.asarray(weight, dtype=np.float32)
    xc, yc = x - x.mean(0), given_x - given_x.mean(0)
    return orthogonal_map(xc / np.linalg.norm(xc, axis=1, keepdims=True),
                          yc / np.linalg.norm(yc, axis=1, keepdims=True))


def choose_adapted(given: Translator, adapted: Translator, x: np.ndarray, reference: np.ndarray,
                   seed: int) -> tuple[Translator, dict]:
    """The translator the attack uses: the given one adapted to the leak `x` (fitted against `reference`),
    unless the adaptation cannot be trusted where the given map can; and the report of that choice.

    The adapted map is used when its verdict is not `low`, or the given one's is `low` too, or it grew from the
    given map (its chosen start) and scores above the given map on the same rows: an off-domain leak has no
    counterpart in the reference, so a map that works there can score under the verdict line; an adaptation
    that left the given map's basin (another start) has only its own score to show, and that must pass."""
    given_conf, new_conf = given.confidence_ or {}, adapted.confidence_ or {}
    start = adapted.fit_report_["stages"]["init"]["chosen"]
    on_leak = translation_confidence(x, reference, given.transform, given.inverse_transform, seed=seed,
                                     draws=REPORT_DRAWS)["score"]
    low, given_low = new_conf.get("verdict") == "low", given_conf.get("verdict") == "low"
    # only a map whose own verdict is ok lends it (a translator saved without a confidence lends nothing)
    better = (start == "given" and given_conf.get("verdict") == "ok" and on_leak is not None
              and (new_conf.get("score") or 0.0) > on_leak)
    keep = not low or given_low or better
    report = {"used": keep, "start": start, "confidence": new_conf.get("score"), "verdict": new_conf.get("verdict"),
              "given_confidence": given_conf.get("score"), "given_verdict": given_conf.get("verdict"),
              "given_confidence_on_leak": on_leak,
              "why": "its verdict is not low" if not low else
                     "the given translator's verdict is low too" if given_low else
                     "grown from the given map, it scores above the given map on the leak" if better else
                     "its verdict is low where the given translator's is not, and it does not improve on the given "
                     "map from the given map's start"}
    if low and better:
        # the verdict it earns: a trusted map's, improved on these rows (its own score stays in the report)
        adapted.confidence_ = {**new_conf, "verdict": given_conf.get("verdict"), "verdict_from":
                               f"adapted from a translator whose verdict is {given_conf.get('verdict')}, scoring "
                               f"above it on the leak ({new_conf.get('score'):.2f} vs {on_leak:.2f})"}
    return (adapted if keep else given), report
