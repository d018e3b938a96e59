"""The leakage audit: translate a leaked store's vectors into a known encoder's space, run the attacks of
`attacks/` on them (attributes, retrieval, keywords, sensitive items), re-run them against each defence, and
publish `report.json` + a self-contained `report.html` (see README, "Audit").

Everything the user gives is checked before any long work; the report directory is staged and published whole.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from align import Translator, translator_class
from align.confidence import REPORT_DRAWS, translation_confidence
from align.vectors import check_vectors, orthogonal_map
from attacks.attributes import ProbeAttribute, ZeroShotAttribute, attribute_scores, rank_labels
from attacks.defences import Defence, neighbour_overlap, parse_defences
from attacks.errors import AttackError
from attacks.inversion import DECODERS, NearestTexts, content_words, recovered_items, sensitive_items
from attacks.metrics import item_f1, keyword_scores
from vecbridge import files, stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs import references
from vecbridge.jobs.checks import check_encoder
from vecbridge.jobs.pivots import cached_vectors
from vecbridge.jobs.translators import (
    REFERENCE_LIMIT,
    low_confidence_warning,
    save_translator,
    translate_vectors,
)
from vecbridge.texts import read_texts

REPORT_FORMAT = "vecbridge-audit"
REPORT_FILES = {"report.json", "report.html", "translator"}
FAILED = "translation failed: the leak was not demonstrated, which does not show that there is none"
# geometric parameters of the output stage, carried from a given translator into the maps the audit re-fits
OUTPUT_STAGES = ("affine", "whiten")
PROBE_LIMIT = 20000  # labelled training rows per probe, a seeded sample of the rest
UTILITY_QUERIES = ("builtin:pool:eval", 200)  # the owner's queries, embedded by --victim-encoder


def is_report_dir(path: Path) -> bool:
    """Whether `path` is an audit report vecbridge wrote (its report.json says so, nothing foreign inside)."""
    try:
        if not set(os.listdir(path)) <= REPORT_FILES:
            return False
        return json.loads((path / "report.json").read_text(encoding="utf-8")).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# -- reading what the user gives -----------------------------------------------------------------------------
@dataclass
class AttributeSpec:
    name: str
    labels: list[str] | None
    train: str | None = None
    column: str | None = None
    templates: list[str] = field(default_factory=lambda: ["This text is about {}."])
    rows: tuple[list[str], list[str]] | None = None  # a probe's labelled training texts, once read

    @property
    def kind(self) -> str:
        return "probe" if self.train else "zero-shot"


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where} must be a list of at least 2 non-empty label strings")
    if len(set(value)) != len(value):
        raise UserError(f"{where} repeats a label")
    return value


def read_attributes(path: str | os.PathLike) -> list[AttributeSpec]:
    """ATTRS.json: {"attr": ["label", ...]} (zero-shot) or {"attr": {"labels": [...], "train": SPEC,
    "column": NAME}} (probe; `labels` optional there), or {"attr": {"labels": [...], "templates": [...]}}."""
    what = f"--attributes {path}"
    data = files.read_json(files.check_regular_file(path, "--attributes"), "--attributes")
    if not isinstance(data, dict) or not data:
        raise UserError(f"{what} must be a JSON object of attributes, e.g. "
                        '{"topic": ["sport", "politics"]} or {"topic": {"labels": [...], "train": SPEC, '
                        '"column": NAME}}')
    specs = []
    for name, value in data.items():
        where = f"{what}: attribute {name!r}"
        if isinstance(value, list):
            specs.append(AttributeSpec(name, _strings(value, where)))
            continue
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a list of labels or an object with labels / train / column")
        unknown = set(value) - {"labels", "train", "column", "templates"}
        if unknown:
            raise UserError(f"{where} has unknown keys {sorted(unknown)}; use labels, train, column, templates")
        train, column = value.get("train"), value.get("column")
        if (train is None) != (column is None) or (train is not None and not (isinstance(train, str)
                                                                               and isinstance(column, str))):
            raise UserError(f"{where}: a probe needs both \"train\" (a text SPEC) and \"column\" (its label column)")
        labels = value.get("labels")
        labels = _strings(labels, f"{where}: labels") if labels is not None or not train else None
        templates = value.get("templates", ["This text is about {}."])
        if not isinstance(templates, list) or not templates or not all(
                isinstance(t, str) and t.count("{}") == 1 for t in templates):
            raise UserError(f"{where}: templates must be a list of strings each holding one {{}} for the label")
        specs.append(AttributeSpec(name, labels, train, column, templates))
    return specs


@dataclass
class Leak:
    vectors: np.ndarray
    ids: list
    texts: list  # truth text per row, or None
    truth: dict  # attribute -> [value or None per row]
    truth_source: str | None
    info: dict


def _read_store(spec: str) -> tuple[np.ndarray, list, list | None, list | None, stores.StoreInfo]:
    with stores.open_reader(spec, "--vectors") as reader:
        info = reader.info
        vectors = np.empty((info.count, info.dim), dtype=np.float32)
        ids: list = []
        documents: list = []
        metadata: list = []
        for block in reader.batches(65536):
            vectors[len(ids):len(ids) + len(block)] = block.vectors[:info.count - len(ids)]
            documents.extend(block.documents or [None] * len(block))
            metadata.extend(block.metadata or [None] * len(block))
            ids.extend(block.ids)
        if len(ids) != info.count:
            raise UserError(f"--vectors {spec} changed while being read; stop the writers and run again")
    vectors = check_vectors(vectors, f"--vectors {spec}", min_rows=2)
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]  # JSON-native ids for the report
    return (vectors, ids, documents if any(d is not None for d in documents) else None,
            metadata if any(m for m in metadata) else None, info)


def _read_truth(path, ids: list, attributes: list[AttributeSpec]) -> tuple[list, dict]:
    what = f"--truth {path}"
    path = files.check_regular_file(path, "--truth")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{what}: line {number} is not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or "id" not in row:
                    raise UserError(f"{what}: line {number} has no \"id\"; each row is "
                                    '{"id": ..., "text": ..., "<attribute>": "<value>"}')
                if "text" in row and not (row["text"] is None or isinstance(row["text"], str)):
                    raise UserError(f"{what}: line {number}: \"text\" must be a string")
                for a in attributes:
                    if a.name not in row:
                        raise UserError(f"{what}: line {number} (id {row['id']!r}) has no attribute {a.name!r}; "
                                        "give it on every row (null where unknown)")
                rows.append((number, row))
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text") from None
    if not rows:
        raise UserError(f"{what} holds no rows")
    where = {str(i): k for k, i in enumerate(ids)}
    unmatched = [row["id"] for _, row in rows if str(row["id"]) not in where]
    if unmatched:
        raise UserError(f"{what}: {len(unmatched)} of {len(rows)} truth ids match no vector in --vectors "
                        f"({len(rows) - len(unmatched)} matched; first unmatched: {unmatched[0]!r}); use the "
                        "store's ids (row numbers for a .npy file)")
    texts: list = [None] * len(ids)
    truth = {a.name: [None] * len(ids) for a in attributes}
    for number, row in rows:
        k = where[str(row["id"])]
        texts[k] = row.get("text")
        for a in attributes:
            value = row[a.name]
            if value is not None and not isinstance(value, str | int | bool):
                raise UserError(f"{what}: line {number}: attribute {a.name!r} must be a label string or null")
            truth[a.name][k] = None if value is None else str(value)
    return texts, truth


def _check_truth_labels(attributes: list[AttributeSpec], truth: dict) -> None:
    for a in attributes:
        if a.labels is None:
            continue
        stray = sorted({v for v in truth[a.name] if v is not None and v not in a.labels})
        if stray:
            raise UserError(f"truth values of attribute {a.name!r} that are not among its labels: "
                            f"{', '.join(map(repr, stray[:5]))}; add them to the labels or set them to null")


def read_leak(spec: str, attributes: list[AttributeSpec], truth_path=None) -> Leak:
    """The leaked vectors with their ids, and the owner's truth (TRUTH.jsonl, else the store's documents and
    metadata) for every row that has one."""
    vectors, ids, documents, metadata, info = _read_store(spec)
    if truth_path is not None:
        texts, truth = _read_truth(truth_path, ids, attributes)
        source = str(truth_path)
    else:
        texts = documents or [None] * len(ids)
        truth = {a.name: [None if not m or m.get(a.name) is None else str(m[a.name]) for m in
                          (metadata or [None] * len(ids))] for a in attributes}
        source = "store documents and metadata" if documents or metadata else None
    texts = [t if isinstance(t, str) and t.strip() else None for t in texts]
    _check_truth_labels(attributes, truth)
    return Leak(vectors, ids, texts, truth, source, info.as_dict())


def _probe_rows(a: AttributeSpec, seed: int) -> tuple[list[str], list[str]]:
    """(texts, labels) of a probe's labelled public corpus: builtin:CORPUS[:split] or a .jsonl file."""
    where = f"attribute {a.name!r}: train {a.train!r}"
    if a.train.startswith("builtin:"):
        from vecbridge.corpora import load_corpus

        name, _, split = a.train.removeprefix("builtin:").partition(":")
        ds = load_corpus(name, split or None)
        if a.column not in ds.column_names:
            raise UserError(f"{where} has no column {a.column!r}; its columns: {', '.join(ds.column_names)}")
        table = ds.with_format("arrow")[:]
        texts, labels = table["text"].to_pylist(), table[a.column].to_pylist()
    else:
        path = files.check_regular_file(a.train, f"{where}")
        texts, labels = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{where}: line {number} is not valid JSON") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str) or a.column not in row:
                    raise UserError(f"{where}: line {number} needs \"text\" and {a.column!r}")
                texts.append(row["text"])
                labels.append(row[a.column])
    keep = [i for i, v in enumerate(labels) if v not in (None, "") and (a.labels is None or str(v) in a.labels)]
    if len(keep) > PROBE_LIMIT:
        keep = sorted(np.random.default_rng(seed).choice(keep, PROBE_LIMIT, replace=False).tolist())
    rows = [texts[i] for i in keep], [str(labels[i]) for i in keep]
    if len(set(rows[1])) < 2:
        raise UserError(f"{where}: fewer than 2 labels among its rows of column {a.column!r}; check the column")
    return rows


# -- the attacks ----------------------------------------------------------------------------------------------
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
                    texts, labels = a.rows or _probe_rows(a, seed)
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


def _ideal(leak: Leak, embed_cached) -> tuple[np.ndarray | None, Leak | None]:
    """The truth texts embedded by the known encoder (the attack with no translation needed), on those rows."""
    rows = [i for i, t in enumerate(leak.texts) if t]
    if not rows:
        return None, None
    sub = Leak(leak.vectors[rows], [leak.ids[i] for i in rows], [leak.texts[i] for i in rows],
               {k: [v[i] for i in rows] for k, v in leak.truth.items()}, leak.truth_source, leak.info)
    return embed_cached("audit-truth", sub.texts), sub


def _owner_queries(victim_encoder: str | None, dim: int) -> np.ndarray | None:
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


# -- the job ---------------------------------------------------------------------------------------------------
@user_errors
def audit(vectors: str, known_encoder: str, report: str | os.PathLike, *, translator: str | os.PathLike | None = None,
          reference: str = references.AUTO, reference_limit: int = REFERENCE_LIMIT,
          attributes: str | os.PathLike | None = None, truth: str | os.PathLike | None = None,
          victim_encoder: str | None = None, defenses: str | None = None, top_k: int = 3, seed: int = 0,
          adapt: bool = True, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Run the leakage audit on the store `vectors` and publish `report` (report.json, report.html, and the
    translator it trained). With `translator` and `adapt`, the given map is adapted to the leak's domain: a
    geometric fit of the leaked vectors against the reference, started from the given map (see `_adapted`).
    Returns report.json's content."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    check_encoder(known_encoder, "--known-encoder", builtin=True)
    if victim_encoder is not None:
        check_encoder(victim_encoder, "--victim-encoder", builtin=True)
    if top_k < 1:
        raise UserError(f"--top-k must be a positive integer, got {top_k}")
    report = files.check_dir_output(report, overwrite, is_report_dir, "audit report",
                                         inputs=[*stores.spec_paths(vectors), *[p for p in (truth, attributes)
                                                                                 if p is not None]])
    try:
        chosen = parse_defences(defenses, seed) if defenses else []
    except AttackError as e:
        raise UserError(f"--defenses: {e}") from None
    specs = read_attributes(attributes) if attributes is not None else []
    for a in specs:
        if a.kind == "probe":
            a.rows = _probe_rows(a, seed)
    given = Translator.load(translator) if translator is not None else None
    leak = read_leak(vectors, specs, truth)
    try:  # fitted up front: a defence that cannot apply to these vectors is bad input, found before any work
        for defence in chosen:
            defence.fit(leak.vectors)
    except AttackError as e:
        raise UserError(f"--defenses: {e}") from None
    from encoders.registry import get_encoder

    encoder = get_encoder(known_encoder)
    known_dim = encoder.dim or len(encoder.encode(["dim"])[0])
    if given is not None:
        config = getattr(given, "config_", {}) or {}
        if given.dim_source_ != leak.vectors.shape[1]:
            raise UserError(f"--translator {translator} takes {given.dim_source_}-dim vectors but --vectors hold "
                            f"{leak.vectors.shape[1]}; give a translator from the leaked store's space")
        if given.dim_target_ != known_dim or config.get("target_encoder") not in (None, known_encoder):
            raise UserError(f"--translator {translator} maps into {config.get('target_encoder') or 'a space'} "
                            f"({given.dim_target_} dims), not --known-encoder {known_encoder} ({known_dim} dims)")
    queries = _owner_queries(victim_encoder, leak.vectors.shape[1])
    if reference_limit < 1:
        raise UserError("--reference-limit must be a positive number of texts")

    def embed_cached(kind: str, texts: list[str]) -> np.ndarray:
        return cached_vectors(kind, known_encoder, list(texts))

    choice = None
    adapting = given is not None and adapt and len(leak.vectors) >= translator_class("geometric").min_rows
    # the leak through the given translator, translated once: the reference's ranking, the adaptation's start and
    # (when it is used as it is) the attack all read it
    given_x = None if given is None else translate_vectors(given, leak.vectors, name=f"--vectors {vectors}")
    if reference == references.AUTO:
        # A given translator puts the leak in the known space, where it compares with the candidates directly
        # (their mean rows, `align.references.rank_in_space`); the raw leak only by its rotation-invariant profile,
        # which carries its own encoder's traits (BENCHMARKS.md, "Leakage audit")
        ranked = leak.vectors if given is None else given_x
        reference, choice = references.choose_reference(ranked, known_encoder, same_space=given is not None)
        choice["profiled"] = "the leaked vectors" if given is None else "the leaked vectors through --translator"
    ref_texts = read_texts(reference, limit=reference_limit)
    ref_vectors = embed_cached("references", ref_texts)
    method = "geometric"
    kept = output_stage(given)

    def fit(x: np.ndarray, what: str, start: np.ndarray | None = None, refine_only: bool = False) -> Translator:
        """A geometric fit of `x` against the reference. `refine_only`: the given `start` is refined, whatever its
        screen score (no search of its own: adapting a translator refines it; BENCHMARKS.md, "Adapting a given
        translator"); otherwise a start the screen rejects gives way to the fit's own search."""
        if len(x) < translator_class(method).min_rows:
            raise UserError(f"--vectors hold {len(x)} rows; training a translator needs at least "
                            f"{translator_class(method).min_rows} (or give --translator)")
        params = {**kept, "accept_score": 0.0} if refine_only else kept
        return translator_class(method)(seed=seed, **params).fit(x, ref_vectors, start=start)

    with files.disk_errors(report), files.staged() as stage:
        tmp = stage.directory(report)
        bar = tqdm(total=3 + len(chosen), desc="audit", unit="step", disable=progress is False)
        model, adaptation = given, None
        if given is None:
            bar.set_postfix_str("training the translator")
            model = fit(leak.vectors, "--vectors")
        elif adapting:
            bar.set_postfix_str("adapting the translator")
            model, adaptation = _adapted(given, fit(leak.vectors, "--vectors", refine_only=True,
                                                    start=_adaptation_start(given, leak.vectors, given_x)),
                                         leak.vectors, ref_vectors, seed)
        if model is not given:
            trained_on = {"source": str(vectors), "target": reference,
                          "started_from": None if translator is None else str(translator)}
            save_translator(model, tmp / "translator", meta={"source_encoder": leak.info.get("encoder"),
                                                              "target_encoder": known_encoder,
                                                              "trained_on": trained_on})
        confidence = model.confidence_
        trained = {"method": (getattr(model, "config_", None) or {}).get("method", method),
                   "source": "trained from the leaked vectors" if given is None else
                   "given, adapted to the leaked vectors" if model is not given else "given",
                   "adaptation": adaptation,
                   "path": "translator" if model is not given else str(translator),
                   "confidence": confidence, "verdict": (confidence or {}).get("verdict"),
                   "warning": low_confidence_warning(confidence)
                   if (confidence or {}).get("verdict") == "low" else None}
        bar.update()
        bar.set_postfix_str("attack models")
        suite = AttackSuite(specs, embed_cached, encoder.encode, ref_vectors, ref_texts, top_k, seed, progress)
        bar.update()
        bar.set_postfix_str("attacks")
        translated_x = given_x if model is given else translate_vectors(model, leak.vectors,
                                                                         name=f"--vectors {vectors}")
        translated = suite.run(translated_x, leak, items=True)
        ideal_x, ideal_leak = _ideal(leak, embed_cached)
        ideal = suite.run(ideal_x, ideal_leak) if ideal_x is not None else None
        naive = suite.run(leak.vectors, leak) if leak.vectors.shape[1] == known_dim else None
        attributes_table, inversion = attack_table(translated, ideal, naive)
        similarity = _similarity(translated_x, ideal_x, leak, suite, naive is not None)
        bar.update()
        defence_rows = []
        for defence in chosen:
            bar.set_postfix_str(f"defence {defence.label}")
            defence_rows.append(_defence_row(defence, leak, queries, given, fit, suite, ideal, adapting))
            bar.update()
        bar.close()
        result = {
            "format": REPORT_FORMAT, "version": 1,
            "store": {"spec": str(vectors), "count": len(leak.ids), "dim": int(leak.vectors.shape[1]),
                      "backend": leak.info.get("backend"), "encoder": leak.info.get("encoder")},
            "known_encoder": known_encoder, "victim_encoder": victim_encoder,
            "reference": {"texts": reference, "rows": len(ref_texts), "auto": choice},
            "truth": {"source": leak.truth_source, "rows_with_text": sum(t is not None for t in leak.texts)},
            "translator": trained, "translation_failed": trained["verdict"] == "low",
            "attributes": attributes_table, "inversion": inversion, "similarity": similarity,
            "defenses": defence_rows,
            "cost": {"seconds": round(time.perf_counter() - start_wall, 2),
                     "cpu_seconds": round(time.process_time() - start_cpu, 2), "device": _device()},
            "items": sorted(translated["items"], key=lambda r: -(r["risk"] if r["risk"] is not None else -1)),
        }
        result["summary"] = summary_lines(result)
        from vecbridge.report.html import render_html

        files.write_json_file(tmp / "report.json", result)
        html = render_html(result, {i: t for i, t in zip(leak.ids, leak.texts, strict=True) if t})
        (tmp / "report.html").write_text(html, encoding="utf-8")
    return result


def _device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _similarity(translated_x, ideal_x, leak: Leak, suite: AttackSuite, naive: bool) -> dict:
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


def _adaptation_start(given: Translator, x: np.ndarray, given_x: np.ndarray) -> np.ndarray:
    """The start for adapting `given` to the rows `x` (`given_x`: its output on them): a geometric translator's
    own rotation; for any other method, the rotation between centred unit rows closest to what it does to `x`.

    The geometric rotation acts on rows centred on the mean of the vectors it was trained on. An off-domain leak
    sits far from that mean, so its outputs, centred on their own mean, are a distorted image of the rotation and
    the rotation fitted back to them is another map: for an e5-small -> minilm-l6 translator on 2,000 ICD-10
    codes, that start failed the screen (top-1 0.003 after the fit's own search) where its own rotation started
    an adaptation that reached 0.55 (the map as given: 0.16; BENCHMARKS.md, "Adapting a given translator")."""
    weight = getattr(given, "weight_", None) if getattr(given, "method", None) == "geometric" else None
    if weight is not None and np.shape(weight) == (x.shape[1], given_x.shape[1]):
        return np.asarray(weight, dtype=np.float32)
    xc, yc = x - x.mean(0), given_x - given_x.mean(0)
    return orthogonal_map(xc / np.linalg.norm(xc, axis=1, keepdims=True),
                          yc / np.linalg.norm(yc, axis=1, keepdims=True))


def output_stage(given: Translator | None) -> dict:
    """The geometric output-stage parameters (`train --affine / --whiten`) of a given translator, which the maps
    the audit re-fits from it (adapted to the leak, re-trained on defended vectors) keep; {} for any other."""
    if given is None or getattr(given, "method", None) != "geometric":
        return {}
    return {name: value for name, value in given.get_params().items() if name in OUTPUT_STAGES and value}


def _adapted(given: Translator, adapted: Translator, x: np.ndarray, reference: np.ndarray,
             seed: int) -> tuple[Translator, dict]:
    """The translator the attack uses: the given one adapted to the leak `x` (fitted against `reference`),
    unless the adaptation cannot be trusted where the given map can.

    The adapted map is used when its verdict is not `low`, or the given one's is `low` too, or it grew from the
    given map (its chosen start) and scores above the given map on the same rows: the label-free confidence of
    the given map re-measured on the leak against the reference. An off-domain leak has no counterpart in the
    reference, so a map that works there can score under the verdict line (e5-small -> minilm-l6 on ICD-10 codes:
    0.53, top-1 0.16 -> 0.55, where the given map scores 0.06 on those rows); an adaptation that left the given
    map's basin (another start) has only its own score to show, and that must pass."""
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


def _score(model: Translator) -> float:
    return (model.confidence_ or {}).get("score") or 0.0


def _defence_row(defence: Defence, leak: Leak, queries, given: Translator | None, fit, suite: AttackSuite,
                 ideal: dict | None, adapt: bool = False) -> dict:
    defended = check_vectors(defence.transform(leak.vectors), f"defended vectors ({defence.label})")
    row = {"name": defence.name, "label": defence.label, "params": defence.params,
           "utility": defence_utility(defence, leak.vectors, defended, queries)}
    if given is not None and adapt:
        # the adaptive attacker: the given map adapted to the defended vectors (its own search where it cannot
        # start from the given map: another dim, or a start the screen rejects)
        row["attacker"] = "given translator adapted to the defended vectors"
        what = f"defended vectors ({defence.label})"
        if defended.shape[1] != given.dim_source_:  # dims:K: its own search
            model = fit(defended, what)
        else:
            # refined from the given map first (cheap, and the right map when the defence only blurs the vectors:
            # the screen can reject a blurred start, and a search from scratch then finds nothing off-domain);
            # where that reads low, the fit's own search too (a secret rotation leaves the given start nothing to
            # refine), and the better-scoring of the two
            start = _adaptation_start(given, defended, translate_vectors(given, defended, name=what))
            model = fit(defended, what, start=start, refine_only=True)
            if (model.confidence_ or {}).get("verdict") == "low":
                searched = fit(defended, what, start=start)
                if _score(searched) > _score(model):
                    model = searched
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
        model = fit(defended, f"defended vectors ({defence.label})")
    confidence = model.confidence_ or {}
    attacked = suite.run(translate_vectors(model, defended, name=f"defended vectors ({defence.label})"), leak)
    attributes, inversion = attack_table(attacked, ideal, None)
    row.update(translator={"confidence": confidence.get("score"), "verdict": confidence.get("verdict")},
               attributes={k: {"accuracy": v["accuracy"], "top_k_accuracy": v["top_k_accuracy"]}
                           for k, v in attributes.items()},
               inversion={"keywords_f1": inversion["keywords"]["f1"], "retrieval_f1": inversion["retrieval"]["f1"],
                          "sensitive_fraction": inversion["sensitive"]["fraction"]})
    return row


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def summary_lines(r: dict) -> list[str]:
    """The plain-language risk summary: what an attacker holding only these vectors learns."""
    lines = []
    t = r["translator"]
    if r["translation_failed"]:
        lines.append(f"{FAILED[0].upper()}{FAILED[1:]} (translator confidence "
                     f"{(t['confidence'] or {}).get('score') or 0:.2f}, verdict low).")
    else:
        lines.append(f"The leaked vectors were translated into {r['known_encoder']}'s space (translator "
                     f"{t['source']}, verdict {t['verdict'] or 'unknown'}).")
    for name, a in r["attributes"].items():
        if a["accuracy"] is None:
            lines.append(f"Attribute {name!r}: predicted for every record; no truth to score it.")
            continue
        lines.append(f"Attribute {name!r}: the attacker guesses it right for {_pct(a['accuracy'])} of {a['n']} "
                     f"records (top-{a['k']}: {_pct(a['top_k_accuracy'])}); with the true encoder "
                     f"{_pct(a['ideal_accuracy'])}, always guessing the commonest value {_pct(a['chance'])}.")
    kw = r["inversion"]["keywords"]
    if kw["f1"] is not None:
        ideal = "n/a" if kw["ideal_f1"] is None else f"{kw['ideal_f1']:.2f}"
        lines.append(f"Words: {_pct(kw['precision'])} of the words the attacker recovers are in the texts, which "
                     f"recovers {_pct(kw['recall'])} of their content words (F1 {kw['f1']:.2f}; true encoder "
                     f"{ideal}).")
    s = r["inversion"]["sensitive"]
    if s["items_with_sensitive"]:
        lines.append(f"Sensitive items (e-mail addresses, URLs, phone numbers, names): {s['items_with_leak']} of "
                     f"{s['items_with_sensitive']} records that hold one have one recovered ({_pct(s['fraction'])}).")
    for d in r["defenses"]:
        if d.get("inversion") is None:
            lines.append(f"Defence {d['label']}: {d.get('note', 'not measured')}.")
            continue
        accs = [a["accuracy"] for a in d["attributes"].values() if a["accuracy"] is not None]
        f1 = d["inversion"]["keywords_f1"]
        lines.append(f"Defence {d['label']}: owner's neighbours kept {_pct(d['utility']['neighbour_overlap_at_10'])}"
                     f"; attacker's mean attribute accuracy {_pct(np.mean(accs) if accs else None)}, keyword F1 "
                     f"{'n/a' if f1 is None else f'{f1:.2f}'} ({d['attacker']}).")
    return lines
