"""The attacker's reference (public texts embedded by the known encoder): a given spec, or with `auto` the candidate
whose fit to the leak scores best label-free among the best few by profile and by content, the general pool always
among them (`fitted_reference`); an attacker who knows documents ranks the candidates by those (`by_known`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from align import Translator
from align.references import rank_in_space, rank_references
from vecbridge.jobs import references
from vecbridge.texts import read_texts

# Candidates fitted by their profile's rank (the general pool and the content's closest are fitted besides).
TRIED_BY_PROFILE = 1


@dataclass
class Reference:
    """The attacker's public texts, embedded by the known encoder, and how they were chosen."""
    spec: str
    texts: list[str]
    vectors: np.ndarray
    choice: dict | None


def load_reference(spec: str, limit: int, embed_cached: Callable[[str, list[str]], np.ndarray],
                   choice: dict | None = None) -> Reference:
    """The first `limit` texts of `spec` embedded by the known encoder (cached)."""
    texts = read_texts(spec, limit=limit)
    return Reference(spec, texts, embed_cached("references", texts), choice)


def _score(model: Translator) -> float:
    return (model.confidence_ or {}).get("score") or 0.0


def fitted_reference(x: np.ndarray, known_encoder: str, limit: int,
                     embed_cached: Callable[[str, list[str]], np.ndarray], fit: Callable[[Reference], Translator],
                     candidates: list[str] | None = None, general: str | None = None,
                     ) -> tuple[Reference, Translator]:
    """The reference for the leaked vectors `x` chosen by the fit it gives, and that fit. Tried: the candidate
    whose rotation-invariant profile is closest to the leak's (`TRIED_BY_PROFILE`), the general pool, then the
    candidate closest in content to the leak translated by the best map so far (its mean in the known space), if
    not tried yet. Kept: the fit with the best label-free confidence. `candidates`: specs (default the fetched
    built-in corpora); `general`: the general pool's spec among them (default `references.GENERAL`)."""
    profiles = references.profile_vectors(known_encoder, candidates)
    general = general or references.GENERAL
    by_profile = rank_references(x, profiles)
    order = [c["name"] for c in by_profile["candidates"][:TRIED_BY_PROFILE]]
    tried: list[dict] = []
    fits: dict[str, tuple[Reference, Translator]] = {}

    def attempt(spec: str, by: str) -> None:
        ref = load_reference(spec, limit, embed_cached)
        fits[spec] = ref, fit(ref)
        conf = fits[spec][1].confidence_ or {}
        tried.append({"texts": spec, "by": by, "rows": len(ref.texts), "confidence": conf.get("score"),
                      "verdict": conf.get("verdict")})

    for spec in order:
        attempt(spec, "profile")
    if general in profiles and general not in fits:
        attempt(general, "general pool")
    mapped_by = max(fits, key=lambda s: _score(fits[s][1]))
    by_content = rank_in_space(fits[mapped_by][1].transform(x), profiles)
    # the closest in content not tried yet: where the profile and the content agree, the next one, so that at
    # least two candidates are always fitted
    closest = next((c["name"] for c in by_content["candidates"] if c["name"] not in fits), None)
    if closest is not None:
        attempt(closest, "content")
    best = max(fits, key=lambda s: _score(fits[s][1]))
    ref, model = fits[best]
    ref.choice = {"chosen": best, "by": "the best label-free confidence among the candidates tried",
                  "tried": tried, "profile": by_profile,
                  "content": {**by_content, "translated_by": f"the map fitted against {mapped_by}"}}
    return ref, model


def by_known(known_x: np.ndarray, known_encoder: str, candidates: list[str] | None = None) -> tuple[str, dict]:
    """The candidate closest in content to documents the attacker knows (`known_x`: their known-encoder vectors),
    and the ranking."""
    ranking = rank_in_space(known_x, references.profile_vectors(known_encoder, candidates))
    return ranking["candidates"][0]["name"], {"chosen": ranking["candidates"][0]["name"],
                                              "by": "the known documents' mean in the known space", **ranking}
