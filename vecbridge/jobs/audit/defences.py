"""One report row per defence: what it costs the owner's search, and what the attacker still recovers from the
defended vectors with a translator fitted to them (or the given one re-used, by a non-adaptive attacker)."""

from __future__ import annotations

import numpy as np

from align import Translator
from align.vectors import check_vectors
from attacks.defences import Defence, neighbour_overlap
from vecbridge.errors import UserError
from vecbridge.jobs.audit.adaptation import ReferenceFit, adaptation_start
from vecbridge.jobs.audit.leak import Leak
from vecbridge.jobs.audit.suite import AttackSuite, attack_table
from vecbridge.jobs.pivots import cached_vectors
from vecbridge.jobs.translate import translate_vectors
from vecbridge.texts import read_texts

UTILITY_QUERIES = ("builtin:pool:eval", 200)  # the owner's queries, embedded by --victim-encoder


def owner_queries(victim_encoder: str | None, dim: int) -> np.ndarray | None:
    """The owner's queries embedded by `victim_encoder` (None without one), to measure each defence's cost."""
    if victim_encoder is None:
        return None
    spec, n = UTILITY_QUERIES
    queries = cached_vectors("audit-queries", victim_encoder, read_texts(spec, limit=n))
    if queries.shape[1] != dim:
        raise UserError(f"--victim-encoder {victim_encoder} makes {queries.shape[1]} dims but --vectors hold {dim}; "
                        "give the encoder that made the stored vectors")
    return queries


def defence_utility(defence: Defence, x: np.ndarray, defended: np.ndarray, queries: np.ndarray | None) -> dict:
    """The owner's search after the defence: overlap@10 of stored rows' neighbours, and of the owner's queries'
    results where --victim-encoder gives queries."""
    utility = {"neighbour_overlap_at_10": neighbour_overlap(x, x, defended, defence.transform_query(x),
                                                             exclude_self=True)}
    utility["query_overlap_at_10"] = None if queries is None else neighbour_overlap(
        x, queries, defended, defence.transform_query(queries))
    return utility


def _score(model: Translator) -> float:
    return (model.confidence_ or {}).get("score") or 0.0


def adapted_to_defence(given: Translator, defended: np.ndarray, fit: ReferenceFit, what: str) -> Translator:
    """The adaptive attacker's map for the defended vectors: the given map refined on them first (the right map
    when the defence only blurs the vectors); where that reads low and the start failed the fit's own screen,
    the fit's own search too (a secret rotation leaves the given start nothing to refine), and the
    better-scoring of the two. Another dim: its own search."""
    if defended.shape[1] != given.dim_source_:
        return fit(defended, what, defended=True)
    start = adaptation_start(given, defended, translate_vectors(given, defended, name=what))
    model = fit(defended, what, start=start, refine_only=True)
    # a searching fit would accept a start that clears the screen's bar and refine it again: search past a rejected one
    if (model.confidence_ or {}).get("verdict") == "low" and not fit.start_passes(model):
        searched = fit(defended, what, start=start, defended=True)
        if _score(searched) > _score(model):
            model = searched
    return model


def defence_row(defence: Defence, leak: Leak, queries: np.ndarray | None, given: Translator | None,
                adapt: bool, fit: ReferenceFit, suite: AttackSuite, ideal: dict | None) -> dict:
    """The defence's report row: its parameters, the owner's utility, and the attack on the defended leak."""
    what = f"defended vectors ({defence.label})"
    defended = check_vectors(defence.transform(leak.vectors), what)
    row = {"name": defence.name, "label": defence.label, "params": defence.params,
           "utility": defence_utility(defence, leak.vectors, defended, queries)}
    if given is not None and adapt:
        row["attacker"] = "given translator adapted to the defended vectors"
        model = adapted_to_defence(given, defended, fit, what)
    elif given is not None:
        # the audit holds no vectors the given translator was trained on, so it cannot re-train it
        row["attacker"] = "given translator re-used (not re-trained)"
        if defended.shape[1] != given.dim_source_:
            row.update(translator=None, attributes=None, inversion=None,
                       note=f"the defended vectors have {defended.shape[1]} dims; the given translator takes "
                            f"{given.dim_source_}: not measured")
            return row
        model = given
    else:
        row["attacker"] = "translator re-trained on the defended vectors"
        model = fit(defended, what, defended=True)
    confidence = model.confidence_ or {}
    attributes, inversion = attack_table(suite.run(translate_vectors(model, defended, name=what), leak), ideal, None)
    row.update(translator={"confidence": confidence.get("score"), "verdict": confidence.get("verdict")},
               attributes={k: {"accuracy": v["accuracy"], "top_k_accuracy": v["top_k_accuracy"]}
                           for k, v in attributes.items()},
               inversion={"keywords_f1": inversion["keywords"]["f1"], "retrieval_f1": inversion["retrieval"]["f1"],
                          "sensitive_fraction": inversion["sensitive"]["fraction"]})
    return row
