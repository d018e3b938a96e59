"""PairsSubspaceTranslator on small synthetic spaces: a few known pairs map a leak whose domain the unpaired
targets do not cover, the source's strong directions chosen by held-out pairs; its verdict comes from those pairs
only; bad input is refused. PairsEnsembleTranslator: geometric members beside it are kept only where their
out-of-fold pairs say so."""

import numpy as np
import pytest

from align.errors import AlignError
from align.geometric.fewshot import (
    ENSEMBLE_MIN_PAIRS,
    MIN_VALIDATION_PAIRS,
    PairsEnsembleTranslator,
    PairsSubspaceTranslator,
)
from align.metrics import evaluate
from tests.helpers import random_isometry


def leak_world(n=600, d=64, strong=8, seed=0):
    """(leak source rows, their true target rows, unpaired target rows of another domain): the leak varies in
    `strong` latent directions, which the source and the target see through two isometries; each side adds weak
    variation of its own in every direction (what two encoders do not share) and its own offset; the other
    domain's rows sit elsewhere in the target space."""
    rng = np.random.default_rng(seed)
    z = np.c_[rng.normal(size=(n, strong)), np.zeros((n, d - strong))]
    to_source, to_target = random_isometry(rng, d, d), random_isometry(rng, d, d)
    src = z @ to_source + 0.2 * rng.normal(size=(n, d)) + 0.3 * rng.normal(size=d)
    truth = z @ to_target + 0.2 * rng.normal(size=(n, d)) + 0.3 * rng.normal(size=d)
    other = rng.normal(size=(800, d)) + 2.0 * rng.normal(size=d)
    return [a.astype(np.float32) for a in (src, truth, other)]


@pytest.fixture(scope="module")
def world():
    return leak_world()


def test_a_few_pairs_map_a_leak_the_unpaired_targets_do_not_cover(world):
    # 24 pairs in 64 dims: the leak's strong directions are chosen (the full space maps the weak ones, which the
    # target does not share), the target mean comes from the pairs (the unpaired rows' is elsewhere), and the
    # other rows land on their truths (measured: top-1 0.81, cosine 0.85 against 0.74 and 0.80 in the full space)
    src, truth, other = world
    known = np.arange(24)
    model = PairsSubspaceTranslator(seed=0).fit(src, other, pairs=(src[known], truth[known]))
    assert model.dims_ < src.shape[1]
    rest = np.arange(24, len(src))
    m = evaluate(model.transform(src[rest]), truth[rest], pool=len(rest))
    assert m["mean_cosine"] > 0.8 and m["top1"] > 0.7
    full = PairsSubspaceTranslator(dims=src.shape[1], seed=0).fit(src, other, pairs=(src[known], truth[known]))
    assert evaluate(full.transform(src[rest]), truth[rest], pool=len(rest))["mean_cosine"] < m["mean_cosine"] - 0.02
    assert model.confidence_["verdict"] == "ok" and model.confidence_["verdict_from"] == "held-out known pairs"
    assert model.confidence_["validation"]["pairs"] == 24
    assert set(model.fit_report_["held_out_cosine"]) >= {8, 16, src.shape[1]}


def test_its_verdict_comes_from_held_out_pairs_only(world):
    # too few pairs to hold any out: `low` whatever the map; pairs that do not match (shuffled): `low` too
    src, truth, other = world
    few = np.arange(MIN_VALIDATION_PAIRS - 1)
    model = PairsSubspaceTranslator(seed=0).fit(src, other, pairs=(src[few], truth[few]))
    assert model.confidence_["verdict"] == "low" and "too few to validate" in model.confidence_["verdict_from"]
    known = np.arange(48)
    shuffled = np.random.default_rng(1).permutation(known)
    wrong = PairsSubspaceTranslator(seed=0).fit(src, other, pairs=(src[known], truth[shuffled]))
    assert wrong.confidence_["verdict"] == "low" and wrong.confidence_["validation"]["top1"] < 0.1  # measured 0.0


def test_bad_input_is_refused(world):
    src, truth, other = world
    pairs = (src[:20], truth[:20])
    for kwargs, fit_args, message in [
            ({"dims": -1}, (src, other, pairs), "dims must be >= 0"),
            ({}, (src, other, None), "pairs must be a tuple"),
            ({}, (src, other, (src[:20], truth[:19])), "same number of rows"),
            ({}, (src, other, (src[:20, :8], truth[:20])), "paired source vectors")]:
        with pytest.raises(AlignError, match=message):
            PairsSubspaceTranslator(**kwargs).fit(*fit_args[:2], pairs=fit_args[2])


# the members' quick search: a start that fails the screen (the off-domain targets) is searched for briefly
FAST_MEMBERS = {"bag_starts": 0, "restarts": 1, "anchor_starts": 1}  # (no search from the members by default)


@pytest.fixture(scope="module")
def covered_world():
    """(leak source rows, their truths, unpaired target rows of the same domain (other rows' truths), unpaired
    target rows of another domain)."""
    src, truth, other = leak_world(n=1000, d=32, strong=12)
    return src[:500], truth[:500], truth[500:], other


def test_the_ensemble_is_kept_where_its_out_of_fold_pairs_say_so(covered_world):
    # targets of the leak's domain: the geometric members find the map and the ensemble is kept (9 = the subspace
    # map + 4 folds x 2 target sets); targets of another domain: their fits score lower out of fold, and the
    # pairs' own map is used alone (measured mean cosine to the truths: 0.88 both)
    leak, truth, same, other = covered_world
    known, rest = np.arange(ENSEMBLE_MIN_PAIRS), np.arange(ENSEMBLE_MIN_PAIRS, len(leak))
    kept = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(
        leak, same, pairs=(leak[known], truth[known]), targets=[same[::-1]])
    dropped = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(
        leak, other, pairs=(leak[known], truth[known]))
    for model, chosen, members in [(kept, "ensemble", 9), (dropped, "pairs_subspace", 1)]:
        cosines = model.fit_report_["held_out_cosine"]
        assert model.fit_report_["chosen"] == chosen == max(cosines, key=cosines.get)
        assert model.fit_report_["members"] == members and round(model.held_out_cosine_, 4) == cosines[chosen]
        assert model.confidence_["verdict"] == "ok" and model.confidence_["validation"]["pairs"] == len(known)
        assert evaluate(model.transform(leak[rest]), truth[rest], pool=len(rest))["mean_cosine"] > 0.8
        back = model.inverse_transform(truth[rest])  # what the label-free score reads: finite source-space rows
        assert back.shape == leak[rest].shape and np.isfinite(back).all()


def test_members_of_a_large_leak_are_fitted_on_a_sample(covered_world, monkeypatch):
    # a leak larger than MEMBER_ROWS: each member fits a seeded sample (unmeasured label-free confidence: the
    # ensemble checks the whole), and every row is still calibrated and translated
    from align.geometric import fewshot

    monkeypatch.setattr(fewshot, "MEMBER_ROWS", 300)
    leak, truth, same, _ = covered_world
    known, rest = np.arange(ENSEMBLE_MIN_PAIRS), np.arange(ENSEMBLE_MIN_PAIRS, len(leak))
    model = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(
        leak, same, pairs=(leak[known], truth[known]))
    assert model.fit_report_["member_rows"] == 300 and model.fit_report_["chosen"] == "ensemble"
    assert all(m.model.confidence_ is None for m in model.members_[1:])
    assert model.confidence_["verdict"] == "ok"
    assert evaluate(model.transform(leak[rest]), truth[rest], pool=len(rest))["mean_cosine"] > 0.8


def test_the_ensemble_from_too_few_or_wrong_pairs_reads_low(covered_world):
    leak, truth, same, _ = covered_world
    few = np.arange(MIN_VALIDATION_PAIRS - 1)
    model = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(leak, same, pairs=(leak[few], truth[few]))
    assert model.fit_report_["chosen"] == "pairs_subspace" and model.confidence_["verdict"] == "low"
    some = np.arange(ENSEMBLE_MIN_PAIRS - 1)  # the pairs' map alone, validated by its own folds
    model = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(leak, same, pairs=(leak[some], truth[some]))
    assert model.fit_report_["members"] == 1 and model.confidence_["verdict_from"] == "held-out known pairs"
    known = np.arange(32)
    shuffled = np.random.default_rng(1).permutation(known)
    wrong = PairsEnsembleTranslator(member_params=FAST_MEMBERS, seed=0).fit(
        leak, same, pairs=(leak[known], truth[shuffled]))
    assert wrong.confidence_["verdict"] == "low" and wrong.confidence_["validation"]["top1"] < 0.2
    with pytest.raises(AlignError, match="target vectors"):
        PairsEnsembleTranslator(seed=0).fit(leak, same, pairs=(leak[known], truth[known]), targets=[same[:, :8]])
