"""Choosing a reference by domain profile (`align.references`): invariant to rotations, ranks the candidate of the
source's own domain first, and rejects inputs too small to profile."""

import numpy as np
import pytest

from align.errors import AlignError
from align.references import profile, profile_distance, rank_references


def domain(rng, n, centre, spread, d=64):
    """`n` unit rows around `centre` (a narrow domain for a small `spread`), with a shared anisotropic shape."""
    shape = np.linspace(1.0, 0.1, d)
    v = centre + spread * rng.normal(size=(n, d)) * shape
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_profile_is_rotation_invariant():
    rng = np.random.default_rng(0)
    x = domain(rng, 800, np.eye(64)[0], 0.2)
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    a, b = profile(x), profile(x @ q)
    assert profile_distance(a, b) < 1e-6
    assert a.concentration == pytest.approx(b.concentration, abs=1e-6)


def test_the_source_domain_ranks_first_in_another_space():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=64)
    centre /= np.linalg.norm(centre)
    q, _ = np.linalg.qr(rng.normal(size=(64, 96)).T)  # a 64 -> 96 isometry: the "other encoder"
    leak = domain(rng, 1500, centre, 0.15)  # narrow: one field
    same = domain(rng, 2000, centre, 0.15) @ q.T  # other texts of that field, in the target space
    broad = domain(rng, 2000, 0.2 * centre, 1.0) @ q.T  # a general mix
    other = domain(rng, 2000, centre, 0.5) @ q.T  # a related but wider field
    ranking = rank_references(leak, {"broad": broad, "same": same, "other": other})
    names = [c["name"] for c in ranking["candidates"]]
    assert names[0] == "same"
    assert ranking["candidates"][0]["distance"] * 3 < ranking["candidates"][1]["distance"]
    assert ranking["source"]["rows"] == 1000


def test_bad_inputs():
    rng = np.random.default_rng(2)
    with pytest.raises(AlignError, match="at least 33 rows"):
        profile(domain(rng, 20, np.eye(64)[0], 0.2))
    with pytest.raises(AlignError, match="no candidate"):
        rank_references(domain(rng, 200, np.eye(64)[0], 0.2), {})
