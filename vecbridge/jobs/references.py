"""``reference_texts` auto` / ``reference` auto`: the built-in corpus whose vectors look most like the source's domain.

An unsupervised translator matches a source set to a reference set of the target space, so a store of one narrow
domain needs a reference of that domain, not the general pool. Each fetched built-in corpus (the
pool, and each of its members and labelled corpora on its own) is a candidate: `PROFILE_ROWS` of its `train_b`
texts are embedded by the target encoder (cached), and `align.references.rank_references` orders them by how close
their rotation-invariant profile is to the source vectors'. The closest one's `train_b` split is the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from align.references import PROFILE_ROWS, SPECTRUM_K, rank_in_space, rank_references
from vecbridge.errors import UserError
from vecbridge.jobs import pivots as pivot_data
from vecbridge.texts import read_texts

AUTO = "auto"
SPLIT = "train_b"
GENERAL = f"builtin:pool:{SPLIT}"  # the general pool, which mixes every member corpus
# A corpus with fewer texts is not a candidate: its spectrum would rest on a handful of rows (and every profile is
# taken on as many rows as the smallest candidate has).
MIN_CANDIDATE_ROWS = 2 * SPECTRUM_K


def candidate_specs() -> list[str]:
    """The fetched built-in corpora as reference candidates, `builtin:NAME:train_b`."""
    from vecbridge.corpora.store import BUILTINS, is_fetched  # datasets and pyarrow: imported when used

    return [f"builtin:{name}:{SPLIT}" for name in BUILTINS if is_fetched(name)]


def profile_vectors(encoder: str, specs: list[str] | None = None, rows: int = PROFILE_ROWS,
                    log: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """{spec: its first `rows` texts embedded by `encoder` (cached)} for each candidate with enough texts to
    profile: `specs`, by default the fetched built-in corpora (`candidate_specs`)."""
    specs = candidate_specs() if specs is None else list(specs)
    if not specs:
        raise UserError("`reference_texts` auto needs built-in corpora; run `vecbridge data fetch` first, or give "
                        "a reference spec")
    candidates = {}
    for spec in specs:
        if log is not None:
            log(f"reference auto: profiling {spec} ({encoder})")
        texts = read_texts(spec, limit=rows)
        if len(texts) > MIN_CANDIDATE_ROWS:
            candidates[spec] = pivot_data.cached_vectors("references", encoder, texts)
    if not candidates:
        raise UserError(f"`reference_texts` auto: no built-in corpus has enough texts to profile ({', '.join(specs)}); "
                        "give a reference spec")
    return candidates


def choose_reference(source: np.ndarray, encoder: str, rows: int = PROFILE_ROWS,
                     log: Callable[[str], None] | None = None, same_space: bool = False,
                     specs: list[str] | None = None) -> tuple[str, dict]:
    """The reference spec for `source` vectors in the space of `encoder`, and the ranking that chose it.
    `same_space`: the source rows are already in `encoder`'s space (a leak through a translator): the sets are
    compared directly (`rank_in_space`), not by their rotation-invariant profiles. `specs`: the candidates
    (default: the fetched built-in corpora)."""
    candidates = profile_vectors(encoder, specs, rows, log)
    ranking = (rank_in_space if same_space else rank_references)(source, candidates, rows)
    chosen = ranking["candidates"][0]["name"]
    if log is not None:
        log(f"reference auto: {chosen} (distance {ranking['candidates'][0]['distance']})")
    return chosen, {"chosen": chosen, **ranking}
