"""Choosing a reference by domain profile (`align.references`): invariant to rotations, ranks the candidate of the
source's own domain first, and rejects inputs too small to profile."""

import json

import numpy as np
import pytest

from align.errors import AlignError
from align.references import profile, profile_distance, rank_in_space, rank_references
from tests.helpers import random_isometry


def domain(rng, n, centre, spread, d=64):
    """`n` unit rows around `centre` (a narrow domain for a small `spread`), with a shared anisotropic shape."""
    shape = np.linspace(1.0, 0.1, d)
    v = centre + spread * rng.normal(size=(n, d)) * shape
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_profile_is_rotation_invariant():
    rng = np.random.default_rng(0)
    x = domain(rng, 800, np.eye(64)[0], 0.2)
    q = random_isometry(rng, 64, 64)
    a, b = profile(x), profile(x @ q)
    assert profile_distance(a, b) < 1e-6
    assert a.concentration == pytest.approx(b.concentration, abs=1e-6)


def test_the_source_domain_ranks_first_in_another_space():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=64)
    centre /= np.linalg.norm(centre)
    q = random_isometry(rng, 96, 64)  # a 64 -> 96 isometry: the "other encoder"
    leak = domain(rng, 1500, centre, 0.15)  # narrow: one field
    same = domain(rng, 2000, centre, 0.15) @ q.T  # other texts of that field, in the target space
    broad = domain(rng, 2000, 0.2 * centre, 1.0) @ q.T  # a general mix
    other = domain(rng, 2000, centre, 0.5) @ q.T  # a related but wider field
    ranking = rank_references(leak, {"broad": broad, "same": same, "other": other})
    names = [c["name"] for c in ranking["candidates"]]
    assert names[0] == "same"
    assert ranking["candidates"][0]["distance"] * 3 < ranking["candidates"][1]["distance"]
    assert ranking["source"]["rows"] == 1000


def test_a_source_in_the_candidates_space_is_ranked_by_its_mean():
    # a leak already put in the known space by a roughly right translator: a small rotation of its field's
    # texts, which also stretches them (a translator's distortion, which the profiles would carry)
    rng = np.random.default_rng(3)
    centres = {name: c / np.linalg.norm(c) for name, c in zip(("field", "near", "far"), rng.normal(size=(3, 64)),
                                                                strict=True)}
    centres["near"] = centres["field"] + 0.6 * centres["near"]
    candidates = {name: domain(rng, 2000, c, 0.3) for name, c in centres.items()}
    skew = rng.normal(size=(64, 64))
    q, r = np.linalg.qr(np.eye(64) + 0.05 * (skew - skew.T))
    off = q * np.sign(np.diag(r))  # a small rotation: the translator's error
    leak = domain(rng, 1500, centres["field"], 0.3) @ off @ np.diag(np.linspace(1.5, 0.5, 64))
    ranking = rank_in_space(leak, candidates)
    assert [c["name"] for c in ranking["candidates"]] == ["field", "near", "far"]
    assert ranking["candidates"][0]["distance"] * 2 < ranking["candidates"][1]["distance"]
    assert ranking["source"]["rows"] == 1000
    with pytest.raises(AlignError, match="source's 64 dims"):
        rank_in_space(leak, {"other": leak[:, :32]})
    with pytest.raises(AlignError, match="no candidate"):
        rank_in_space(leak, {})


def test_bad_inputs():
    rng = np.random.default_rng(2)
    with pytest.raises(AlignError, match="at least 33 rows"):
        profile(domain(rng, 20, np.eye(64)[0], 0.2))
    with pytest.raises(AlignError, match="no candidate"):
        rank_references(domain(rng, 200, np.eye(64)[0], 0.2), {})


def _texts(path, lines):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    return str(path)


CLINIC = ["{} of the {} {}, initial encounter", "Chronic {} of {} {}", "{} {} due to {} infection"]
ORGANS = ["left knee", "right lung", "liver", "kidney", "scalp", "upper arm", "lower back", "heart valve"]
HARMS = ["Fracture", "Inflammation", "Abscess", "Laceration", "Stenosis", "Ulcer", "Contusion", "Neoplasm"]
TALK = ["the team won the {} match on {} evening", "our {} trip to the {} was {}", "I think the {} movie was {}"]
WORDS = ["football", "Saturday", "beach", "lovely", "mountains", "new", "funny", "long", "cold", "late"]


def _domain_texts(templates, a, b, n, seed):
    rng = np.random.default_rng(seed)
    return [templates[i % len(templates)].format(*rng.choice(a + b, 3)) for i in range(n)]


def test_choose_reference_picks_the_leaks_domain_with_the_real_encoder(tmp_path, monkeypatch):
    """The real minilm-l6 on two candidate corpora: a leak of clinical codes picks the clinical candidate (the
    candidate list is the only thing replaced: the built-in corpora are too big for a unit test)."""
    from encoders.registry import get_encoder
    from vecbridge.jobs import references

    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    clinic = _texts(tmp_path / "clinic.jsonl", _domain_texts(CLINIC, ORGANS, HARMS, 120, 1))
    chat = _texts(tmp_path / "chat.jsonl", _domain_texts(TALK, WORDS, WORDS, 120, 2))
    monkeypatch.setattr(references, "candidate_specs", lambda: [chat, clinic])
    leak = get_encoder("minilm-l6", device="cpu").encode(_domain_texts(CLINIC, ORGANS, HARMS, 150, 3))
    chosen, report = references.choose_reference(leak, "minilm-l6", rows=100)
    assert chosen == clinic and report["chosen"] == clinic
    assert [c["name"] for c in report["candidates"]] == [clinic, chat]
    assert report["candidates"][0]["distance"] < report["candidates"][1]["distance"]


def test_choose_reference_without_candidates_is_a_user_error(tmp_path, monkeypatch):
    from vecbridge.errors import UserError
    from vecbridge.jobs import references

    monkeypatch.setattr(references, "candidate_specs", lambda: [])
    with pytest.raises(UserError, match="vecbridge data fetch"):
        references.choose_reference(np.ones((100, 64), dtype=np.float32), "minilm-l6")
