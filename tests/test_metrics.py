"""Metrics and the vector helpers under them: ranks, top-1, the boundary check of vector blocks."""

import numpy as np
import pytest

from align.errors import AlignError
from align.metrics import evaluate
from align.vectors import check_vectors, closest_isometry, orthogonal_map, ranks_in_pool
from tests.helpers import random_isometry


def test_perfect_translation_is_rank_one_even_with_near_duplicates():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 64)).astype(np.float32)
    # near-identical targets: a separately computed true score could lose to a neighbour by rounding
    target = base + 0.05 * rng.standard_normal((500, 64)).astype(np.float32)
    m = evaluate(target.copy(), target, pool=500)
    assert m["top1"] == 1.0 and m["mean_rank"] == 1.0 and m["frac_closer"] == 0.0


def test_hand_made_ranks():
    target = np.eye(3, dtype=np.float32)
    pred = np.array([[1, 0, 0], [1, 0.5, 0], [0, 1, 0.1]], dtype=np.float32)
    # row 0 -> its target best; row 1 prefers target 0 (rank 2); row 2 prefers target 1 (rank 2)
    assert ranks_in_pool(pred, target).tolist() == [1, 2, 2]
    m = evaluate(pred, target, pool=3)
    assert m["top1"] == pytest.approx(1 / 3) and m["mean_rank"] == pytest.approx(5 / 3)
    assert m["frac_closer"] == pytest.approx((0 + 0.5 + 0.5) / 3)


def test_random_predictions_are_at_chance_and_pool_is_reported():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((1000, 32)).astype(np.float32)
    m = evaluate(rng.standard_normal((1000, 32)), target, pool=256)
    assert m["pool"] == 256 and m["n"] == 1000
    assert 100 < m["mean_rank"] < 160 and 0.4 < m["frac_closer"] < 0.6


def test_tail_is_ranked_in_a_full_size_pool():
    rng = np.random.default_rng(2)
    target = rng.standard_normal((10, 8)).astype(np.float32)
    pred = target.copy()
    pred[9] = target[0]  # the last row (in the short tail) points at row 0, outside its full-size window
    m = evaluate(pred, target, pool=4)
    assert m["top1"] == pytest.approx(0.9)


def test_shape_mismatch_is_an_error():
    with pytest.raises(AlignError, match="same shape"):
        evaluate(np.zeros((3, 4)), np.zeros((3, 5)))


@pytest.mark.parametrize("x, kwargs, match", [
    (np.ones(4), {}, "2-D"),
    (np.ones((3, 4), dtype=np.int64), {}, "dtype int64"),
    (np.ones((3, 4)), {"dim": 5}, "4 dims but the translator expects 5; .* reverse direction"),
    (np.ones((3, 4)), {"min_rows": 5}, "at least 5"),
    (np.array([[1.0, 0], [np.inf, 1]]), {}, "row 1 contains NaN or inf"),
    (np.array([[1.0, 0], [0, 0]]), {}, "row 1 is all zeros"),
])
def test_check_vectors_names_what_is_wrong(x, kwargs, match):
    with pytest.raises(AlignError, match=match) as e:
        check_vectors(x, "my vectors", **kwargs)
    assert str(e.value).startswith("my vectors") and "--" not in str(e.value)


def test_check_vectors_returns_float32_rows():
    out = check_vectors(np.ones((3, 4), dtype=np.float64))
    assert out.dtype == np.float32 and out.shape == (3, 4)


def test_procrustes_recovers_a_partial_isometry():
    rng = np.random.default_rng(0)
    q = random_isometry(rng, 12, 8, np.float32).T  # 8 -> 12 dims
    x = rng.standard_normal((50, 8)).astype(np.float32)
    np.testing.assert_allclose(orthogonal_map(x, x @ q), q, atol=1e-5)
    np.testing.assert_allclose(closest_isometry(2.0 * q), q, atol=1e-6)
