"""The attacker's models in the known space (one per attribute, the keyword decoder, the reference index), every
attack run on a set of rows and scored against the leak's truth, and the report's tables of those scores."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from attacks.attributes import ProbeAttribute, ZeroShotAttribute, attribute_scores, rank_labels
from attacks.errors import AttackError
from attacks.inversion import DECODERS, NearestTexts, content_words, recovered_items, sensitive_items
from attacks.metrics import item_f1, keyword_scores
from vecbridge.errors import UserError
from vecbridge.jobs.audit.attributes import AttributeSpec, probe_rows
from vecbridge.jobs.audit.leak import Leak


class AttackSuite:
    """The attacker's models in the known space: one per attribute, the keyword decoder, the reference index."""

    def __init__(self, attributes: list[AttributeSpec], embed_cached: Callable[[str, list[str]], np.ndarray],
                 embed: Callable[[list[str]], np.ndarray], reference_vectors: np.ndarray,
                 reference_texts: list[str], top_k: int = 3, seed: int = 0, progress: bool | None = None,
                 fitted: AttackSuite | None = None, decoder: str = "ridge"):
        """`fitted`: a suite on the same reference whose keyword decoder and index are re-used (not re-fitted).
        `decoder`: the keyword decoder, a name of `attacks.inversion.DECODERS`."""
        self.top_k = top_k
        self.models: dict = {}
        for a in tqdm(attributes, desc="attack models", unit="attr", disable=progress is False):
            try:
                if a.kind == "probe":
                    texts, labels = a.rows or probe_rows(a, seed)
                    self.models[a.name] = ProbeAttribute().fit(embed_cached("audit-probes", texts), labels)
                else:
                    self.models[a.name] = ZeroShotAttribute(a.labels, a.templates).fit(embed)
            except AttackError as e:
                raise UserError(f"attribute {a.name!r}: {e}") from None
        self.kinds = {a.name: a.kind for a in attributes}
        if fitted is not None:
            self.decoder, self.nearest = fitted.decoder, fitted.nearest
            return
        self.decoder = DECODERS[decoder](seed=seed).fit(reference_vectors, reference_texts)
        self.nearest = NearestTexts().fit(reference_vectors, reference_texts)

    def run(self, x: np.ndarray, leak: Leak, items: bool = False) -> dict:
        """Every attack on `x` (rows in the known space, row i = leaked row i), scored against the truth."""
        truth_words = [content_words(t) if t else None for t in leak.texts]
        with_text = [i for i, w in enumerate(truth_words) if w is not None]
        out: dict = {"attributes": {}, "rows": {}}
        for name, model in self.models.items():
            ranked = rank_labels(model, x, self.top_k)
            out["rows"][name] = ranked
            scores = attribute_scores(ranked, leak.truth[name], self.top_k)
            out["attributes"][name] = {**scores, "kind": self.kinds[name]}
        keywords = self.decoder.predict(x)
        sims, nn = self.nearest.search(x, 1)
        retrieved = [self.nearest.texts_[j] for j in nn[:, 0]]
        kw = keyword_scores([set(keywords[i]) for i in with_text], [truth_words[i] for i in with_text])
        ret = keyword_scores([content_words(retrieved[i]) for i in with_text], [truth_words[i] for i in with_text])
        sensitive = [sensitive_items(t) if t else [] for t in leak.texts]
        leaked = [recovered_items(s, keywords[i]) for i, s in enumerate(sensitive)]
        with_items = sum(bool(s) for s in sensitive)
        out["inversion"] = {
            "keywords": {k: kw[k] for k in ("precision", "recall", "f1", "n")},
            "retrieval": {"precision": ret["precision"], "recall": ret["recall"], "f1": ret["f1"], "n": ret["n"],
                          "mean_similarity": float(sims[:, 0].mean())},
            "sensitive": {"items_with_sensitive": with_items, "items_with_leak": sum(bool(v) for v in leaked),
                          "fraction": (sum(bool(v) for v in leaked) / with_items) if with_items else None,
                          "by_kind": _by_kind(sensitive, leaked)},
        }
        if not with_text:
            out["inversion"]["keywords"].update(precision=None, recall=None, f1=None)
            out["inversion"]["retrieval"].update(precision=None, recall=None, f1=None)
        if items:
            out["items"] = [self._item(i, leak, out["rows"], keywords[i], retrieved[i], float(sims[i, 0]),
                                       truth_words[i], sensitive[i], leaked[i]) for i in range(len(x))]
        return out

    def _item(self, i, leak, ranked, keywords, retrieved, similarity, truth_words, sensitive, leaked) -> dict:
        predictions = {name: rows[i] for name, rows in ranked.items()}
        parts = [float(predictions[n][0] == leak.truth[n][i]) for n in predictions if leak.truth[n][i] is not None]
        f1 = None if truth_words is None else item_f1(set(keywords), truth_words)
        if f1 is not None:
            parts.append(f1)
        risk = 1.0 if leaked else (float(np.mean(parts)) if parts else None)
        return {"id": leak.ids[i], "predictions": predictions, "keywords": keywords, "retrieved": retrieved,
                "retrieved_similarity": similarity, "keyword_f1": f1,
                "true_keywords": sorted(set(keywords) & truth_words) if truth_words else [],
                "sensitive_recovered": [{"kind": s["kind"], "value": s["value"]} for s in leaked],
                "sensitive_found": len(sensitive), "risk": risk}


def _by_kind(sensitive: list, leaked: list) -> dict:
    kinds = {s["kind"] for row in sensitive for s in row}
    return {k: {"items": sum(s["kind"] == k for row in sensitive for s in row),
                "recovered": sum(s["kind"] == k for row in leaked for s in row)} for k in sorted(kinds)}


def attack_table(translated: dict, ideal: dict | None, naive: dict | None) -> tuple[dict, dict]:
    """report.json's `attributes` and `inversion`: the translated attack beside the ideal and naive ones."""
    attributes = {}
    for name, s in translated["attributes"].items():
        attributes[name] = {**s, "ideal_accuracy": ideal["attributes"][name]["accuracy"] if ideal else None,
                            "ideal_top_k_accuracy": ideal["attributes"][name]["top_k_accuracy"] if ideal else None,
                            "naive_accuracy": naive["attributes"][name]["accuracy"] if naive else None}
    inv = translated["inversion"]
    inversion = {
        "retrieval": {**inv["retrieval"], "ideal_f1": ideal["inversion"]["retrieval"]["f1"] if ideal else None,
                      "naive_f1": naive["inversion"]["retrieval"]["f1"] if naive else None},
        "keywords": {**inv["keywords"], "ideal_f1": ideal["inversion"]["keywords"]["f1"] if ideal else None,
                     "naive_f1": naive["inversion"]["keywords"]["f1"] if naive else None},
        "sensitive": {**inv["sensitive"],
                      "ideal_fraction": ideal["inversion"]["sensitive"]["fraction"] if ideal else None},
    }
    return attributes, inversion


def similarity(translated_x: np.ndarray, ideal_x: np.ndarray | None, leak: Leak, suite: AttackSuite) -> dict:
    """Histograms' data: cosine of each translated row to its truth text's known vector, and top-1 retrieval
    similarity of translated and ideal rows."""
    out: dict = {"translated_vs_truth": None}
    if ideal_x is not None:
        rows = [i for i, t in enumerate(leak.texts) if t]
        cos = np.sum(translated_x[rows] * ideal_x, axis=1)
        out["translated_vs_truth"] = [round(float(c), 4) for c in cos]
    out["retrieval_translated"] = [round(float(s), 4) for s in suite.nearest.search(translated_x, 1)[0][:, 0]]
    out["retrieval_ideal"] = None if ideal_x is None else [
        round(float(s), 4) for s in suite.nearest.search(ideal_x, 1)[0][:, 0]]
    return out
