"""`audit()`, the job: read and check every input, train or adapt the attacker's translator, run the attacks on the
translated leak (beside the ideal and naive ones) and on each defence, and publish the report directory whole."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from align import Translator, translator_class
from align.geometric import PairsEnsembleTranslator
from attacks.defences import Defence, parse_defences
from attacks.errors import AttackError
from vecbridge import files, stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs import references
from vecbridge.jobs.audit.adaptation import METHOD, ReferenceFit, adaptation_start, choose_adapted
from vecbridge.jobs.audit.attributes import AttributeSpec, probe_rows, read_attributes
from vecbridge.jobs.audit.defences import defence_row, owner_queries
from vecbridge.jobs.audit.known import check_known_documents, known_documents_curve, known_order
from vecbridge.jobs.audit.leak import Leak, read_leak
from vecbridge.jobs.audit.reference import Reference, by_known, fitted_reference, load_reference
from vecbridge.jobs.audit.suite import AttackSuite, attack_table, similarity
from vecbridge.jobs.audit.summary import summary_lines
from vecbridge.jobs.checks import check_encoder
from vecbridge.jobs.pivots import cached_vectors
from vecbridge.jobs.translate import translate_vectors
from vecbridge.jobs.translators import REFERENCE_LIMIT, low_confidence_warning, save_translator

REPORT_FORMAT = "vecbridge-audit"
REPORT_FILES = {"report.json", "report.html", "translator"}
# Public text sets (auto's candidates closest to the known documents) the known-documents map fits against.
KNOWN_REFERENCES = 2


def is_report_dir(path: Path) -> bool:
    """Whether `path` is an audit report vecbridge wrote (its report.json says so, nothing foreign inside)."""
    try:
        if not set(os.listdir(path)) <= REPORT_FILES:
            return False
        return json.loads((path / "report.json").read_text(encoding="utf-8")).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class Inputs:
    """What the user gave, read and checked before any long work."""
    vectors: str
    known_encoder: str
    encoder: object  # the known encoder, loaded
    leak: Leak
    attributes: list[AttributeSpec]
    defences: list[Defence]
    translator: str | os.PathLike | None
    given: Translator | None
    queries: np.ndarray | None  # the owner's queries in the leak's space (--victim-encoder), or None

    def embed_cached(self, kind: str, texts: list[str]) -> np.ndarray:
        return cached_vectors(kind, self.known_encoder, list(texts))


@user_errors
def audit(vectors: str, known_encoder: str, report: str | os.PathLike, *, translator: str | os.PathLike | None = None,
          reference: str = references.AUTO, reference_limit: int = REFERENCE_LIMIT,
          attributes: str | os.PathLike | None = None, truth: str | os.PathLike | None = None,
          victim_encoder: str | None = None, defenses: str | None = None, top_k: int = 3, seed: int = 0,
          adapt: bool = True, overwrite: bool = False, progress: bool | None = None,
          known_documents: list[int] | None = None, reference_candidates: list[str] | None = None,
          general_reference: str | None = None) -> dict:
    """Run the leakage audit on the store `vectors` and publish `report` (report.json, report.html, and the
    translator it trained). With `translator` and `adapt`, the given map is adapted to the leak's domain: a
    geometric fit of the leaked vectors against the reference, started from the given map (see
    `adaptation.choose_adapted`). `truth`: TRUTH.jsonl, or builtin:CORPUS:SPLIT for a store embedded from that
    split. `known_documents` [K, ...]: the curve of what an attacker who knows K of the documents recovers
    (`known.py`). `reference_candidates` / `general_reference`: `reference` auto's candidates (default the
    fetched built-in corpora) and the general pool among them. Returns report.json's content."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    check_encoder(known_encoder, "--known-encoder", builtin=True)
    if victim_encoder is not None:
        check_encoder(victim_encoder, "--victim-encoder", builtin=True)
    if top_k < 1:
        raise UserError(f"--top-k must be a positive integer, got {top_k}")
    files_given = [p for p in (truth, attributes) if p is not None and not str(p).startswith("builtin:")]
    report = files.check_dir_output(report, overwrite, is_report_dir, "audit report",
                                    inputs=[*stores.spec_paths(vectors), *files_given])
    inputs = read_inputs(vectors, known_encoder, translator, attributes, truth, victim_encoder, defenses, seed)
    if reference_limit < 1:
        raise UserError("--reference-limit must be a positive number of texts")
    ks = check_known_documents(known_documents, inputs.leak)
    # translated once: the reference's ranking, the adaptation's start and (used as it is) the attack all read it
    given_x = None if inputs.given is None else translate_vectors(inputs.given, inputs.leak.vectors,
                                                                  name=f"--vectors {vectors}")
    adapting = inputs.given is not None and adapt and len(inputs.leak.vectors) >= translator_class(METHOD).min_rows
    with files.disk_errors(report), files.staged() as stage:
        tmp = stage.directory(report)
        bar = tqdm(total=3 + len(inputs.defences) + bool(ks), desc="audit", unit="step", disable=progress is False)
        bar.set_postfix_str("choosing the reference and training the translator" if inputs.given is None else
                            "adapting the translator")
        ref, fitted = attacker_reference(inputs, reference, reference_limit, given_x, seed,
                                         (reference_candidates, general_reference))
        fit = ReferenceFit(ref.vectors, seed, inputs.given)
        model, trained = attacker_translator(inputs, ref, fit, given_x, adapting, seed, tmp / "translator", fitted)
        bar.update()
        bar.set_postfix_str("attack models")
        suite = AttackSuite(inputs.attributes, inputs.embed_cached, inputs.encoder.encode, ref.vectors, ref.texts,
                            top_k, seed, progress)
        bar.update()
        bar.set_postfix_str("attacks")
        translated_x = given_x if model is inputs.given else translate_vectors(model, inputs.leak.vectors,
                                                                               name=f"--vectors {vectors}")
        findings = attack(inputs, suite, translated_x)
        bar.update()
        if ks:
            bar.set_postfix_str(f"known documents {', '.join(map(str, ks))}")
            findings["known_documents"] = known_curve(inputs, ks, ref, model, suite, findings["ideal_x"],
                                                      (reference, reference_limit, reference_candidates), seed,
                                                      progress)
            bar.update()
        rows = []
        for defence in inputs.defences:
            bar.set_postfix_str(f"defence {defence.label}")
            rows.append(defence_row(defence, inputs.leak, inputs.queries, inputs.given, adapting, fit, suite,
                                    findings["ideal"]))
            bar.update()
        bar.close()
        cost = {"seconds": round(time.perf_counter() - start_wall, 2),
                "cpu_seconds": round(time.process_time() - start_cpu, 2), "device": _device()}
        result = report_json(inputs, victim_encoder, ref, trained, findings, rows, cost)
        publish(tmp, result, inputs.leak)
    return result


def read_inputs(vectors: str, known_encoder: str, translator, attributes, truth, victim_encoder: str | None,
                defenses: str | None, seed: int) -> Inputs:
    """Every input read and checked against the others: attributes (probes' rows read), the leak and its truth,
    the defences (fitted on the leak: one that cannot apply to it is bad input), the given translator's spaces."""
    try:
        chosen = parse_defences(defenses, seed) if defenses else []
    except AttackError as e:
        raise UserError(f"--defenses: {e}") from None
    specs = read_attributes(attributes) if attributes is not None else []
    for a in specs:
        if a.kind == "probe":
            a.rows = probe_rows(a, seed)
    given = Translator.load(translator) if translator is not None else None
    leak = read_leak(vectors, specs, truth)
    try:
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
    queries = owner_queries(victim_encoder, leak.vectors.shape[1])
    return Inputs(vectors, known_encoder, encoder, leak, specs, chosen, translator, given, queries)


def attacker_reference(inputs: Inputs, spec: str, limit: int, given_x: np.ndarray | None, seed: int,
                       candidates: tuple = (None, None)) -> tuple[Reference, Translator | None]:
    """The attacker's public texts (the first `limit` of them, embedded by the known encoder) and, where choosing
    them fitted a map, that map. `spec` auto: without a given translator, the candidate whose fit to the leak
    scores best (`reference.fitted_reference`); through one, the candidate closest to the translated leak.
    `candidates`: (the candidate specs, the general pool's spec), None for the defaults."""
    if spec != references.AUTO:
        return load_reference(spec, limit, inputs.embed_cached), None
    specs, general = candidates
    if inputs.given is None:
        leak = inputs.leak.vectors
        ref, model = fitted_reference(leak, inputs.known_encoder, limit, inputs.embed_cached,
                                      lambda r: ReferenceFit(r.vectors, seed)(leak, "--vectors"), specs, general)
        ref.choice["profiled"] = "the leaked vectors"
        return ref, model
    # through a translator the leak compares in the known space, by content
    spec, choice = references.choose_reference(given_x, inputs.known_encoder, same_space=True, specs=specs)
    choice["profiled"] = "the leaked vectors through --translator"
    return load_reference(spec, limit, inputs.embed_cached, choice), None


def attacker_translator(inputs: Inputs, ref: Reference, fit: ReferenceFit, given_x: np.ndarray | None,
                        adapting: bool, seed: int, output: Path,
                        fitted: Translator | None = None) -> tuple[Translator, dict]:
    """The map the attack uses (trained from the leak, `fitted` where choosing the reference trained it, the given
    one adapted to it, or the given one), saved to `output` when the audit fitted it, and its report entry."""
    given, leak = inputs.given, inputs.leak
    model, adaptation = given, None
    if given is None:
        model = fitted or fit(leak.vectors, "--vectors")
    elif adapting:
        start = adaptation_start(given, leak.vectors, given_x)
        model, adaptation = choose_adapted(given, fit(leak.vectors, "--vectors", start=start, refine_only=True),
                                           leak.vectors, ref.vectors, seed)
    if model is not given:
        trained_on = {"source": str(inputs.vectors), "target": ref.spec,
                      "started_from": None if inputs.translator is None else str(inputs.translator)}
        save_translator(model, output, meta={"source_encoder": leak.info.get("encoder"),
                                             "target_encoder": inputs.known_encoder, "trained_on": trained_on})
    confidence = model.confidence_ or {}
    return model, {"method": (getattr(model, "config_", None) or {}).get("method", METHOD),
                   "source": "trained from the leaked vectors" if given is None else
                   "given, adapted to the leaked vectors" if model is not given else "given",
                   "adaptation": adaptation,
                   "path": "translator" if model is not given else str(inputs.translator),
                   "confidence": model.confidence_, "verdict": confidence.get("verdict"),
                   "warning": low_confidence_warning(confidence) if confidence.get("verdict") == "low" else None}


def attack(inputs: Inputs, suite: AttackSuite, translated_x: np.ndarray) -> dict:
    """The attacks on the translated leak beside the ideal (the truth texts embedded by the known encoder: no
    translation needed) and the naive (the leaked vectors as they are, where the dims allow)."""
    leak = inputs.leak
    translated = suite.run(translated_x, leak, items=True)
    truth_rows = leak.with_text()
    ideal_x = None if truth_rows is None else inputs.embed_cached("audit-truth", truth_rows.texts)
    ideal = None if truth_rows is None else suite.run(ideal_x, truth_rows)
    naive = suite.run(leak.vectors, leak) if leak.vectors.shape[1] == translated_x.shape[1] else None
    attributes, inversion = attack_table(translated, ideal, naive)
    return {"attributes": attributes, "inversion": inversion, "ideal": ideal, "items": translated["items"],
            "similarity": similarity(translated_x, ideal_x, leak, suite), "ideal_x": ideal_x}


def known_curve(inputs: Inputs, ks: list[int], ref: Reference, model: Translator, suite: AttackSuite,
                ideal_x: np.ndarray, reference: tuple, seed: int, progress: bool | None) -> list[dict]:
    """The known-documents curve (`known.known_documents_curve`): K = 0 is the audit's own attack; an attacker who
    knows K documents maps the leak by them (`PairsEnsembleTranslator`: the pairs on the leak's principal
    directions, beside geometric fits against the public texts, each calibrated on the pairs, kept where their
    out-of-fold pairs say so), or keeps the audit's own map where it is closer to the known pairs than the pairs'
    map is to its held-out ones. Its public texts are the reference given (`reference`: the spec, its limit and
    auto's candidates), or with auto the `KNOWN_REFERENCES` candidates closest to those documents in content (the
    attack models use the first)."""
    spec, limit, candidates = reference
    loaded = {ref.spec: ref}
    suites = {ref.spec: suite}

    def reference_of(chosen: str) -> Reference:
        if chosen not in loaded:
            loaded[chosen] = load_reference(chosen, limit, inputs.embed_cached)
        return loaded[chosen]

    def suite_of(chosen: str) -> AttackSuite:
        """The attack models on `chosen` (only the first public texts of a point are attacked with)."""
        if chosen not in suites:
            other = reference_of(chosen)
            suites[chosen] = AttackSuite(inputs.attributes, inputs.embed_cached, inputs.encoder.encode,
                                         other.vectors, other.texts, suite.top_k, seed, progress)
        return suites[chosen]

    def few_shot(known_x: np.ndarray, known_y: np.ndarray) -> tuple[Translator, AttackSuite, str]:
        specs = ([c["name"] for c in by_known(known_y, inputs.known_encoder, candidates)[1]["candidates"]
                  [:KNOWN_REFERENCES]] if spec == references.AUTO else [ref.spec])
        pairs_map = PairsEnsembleTranslator(seed=seed).fit(inputs.leak.vectors, reference_of(specs[0]).vectors,
                                                           pairs=(known_x, known_y),
                                                           targets=[reference_of(s).vectors for s in specs[1:]])
        # the vectors-only map never saw the pairs: where it is closer to them, the attacker keeps it
        if _mean_cosine(model.transform(known_x), known_y) > pairs_map.held_out_cosine_:
            return model, suite, ref.spec
        return pairs_map, suite_of(specs[0]), " + ".join(specs)

    return known_documents_curve(ks, inputs.leak.with_text(), ideal_x, known_order(inputs.leak, seed),
                                 (model, suite, ref.spec), few_shot)


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                                           1e-12)))


def report_json(inputs: Inputs, victim_encoder: str | None, ref: Reference, trained: dict, findings: dict,
                defence_rows: list[dict], cost: dict) -> dict:
    """report.json's content, its plain-language summary included."""
    leak = inputs.leak
    result = {
        "format": REPORT_FORMAT, "version": 1,
        "store": {"spec": str(inputs.vectors), "count": len(leak.ids), "dim": int(leak.vectors.shape[1]),
                  "backend": leak.info.get("backend"), "encoder": leak.info.get("encoder")},
        "known_encoder": inputs.known_encoder, "victim_encoder": victim_encoder,
        "reference": {"texts": ref.spec, "rows": len(ref.texts), "auto": ref.choice},
        "truth": {"source": leak.truth_source, "rows_with_text": sum(t is not None for t in leak.texts)},
        "translator": trained, "translation_failed": trained["verdict"] == "low",
        "known_documents": findings.get("known_documents"),
        "attributes": findings["attributes"], "inversion": findings["inversion"],
        "similarity": findings["similarity"], "defenses": defence_rows, "cost": cost,
        "items": sorted(findings["items"], key=lambda r: -(r["risk"] if r["risk"] is not None else -1)),
    }
    result["summary"] = summary_lines(result)
    return result


def publish(tmp: Path, result: dict, leak: Leak) -> None:
    """report.json and report.html written into the staged report directory `tmp`."""
    from vecbridge.report.html import render_html

    files.write_json_file(tmp / "report.json", result)
    html = render_html(result, {i: t for i, t in zip(leak.ids, leak.texts, strict=True) if t})
    (tmp / "report.html").write_text(html, encoding="utf-8")


def _device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"
