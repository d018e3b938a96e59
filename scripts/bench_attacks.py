"""Benchmark the leakage audit: attacks on leaked vectors of a victim encoder, translated into a known encoder's
space, against the ideal (truth texts in the known space), naive (leaked vectors as they are) and chance.

Leaks (labelled, off the pool's domain or its held-out split): SpamAssassin (label, list_id; train_b + eval),
ICD-10 (chapter; eval), Brown (genre; eval), WordNet (lexname; eval). Each attribute's probe is trained on the
same corpus's train_a split embedded by the known encoder; the keyword decoder and the retrieval index on
builtin:pool:train_b (the reference). Three translators are measured where asked:

- `pool`: trained without pairs pool-to-pool (the victim's vectors of pool train_b vs the known encoder's
  vectors of pool train_a: different texts), then applied to each leak: an attacker with a large store.
  With `--known-pairs K` the pool attacker is few-shot: it also holds the victim's vectors of K public texts
  it knows (the first K pool texts, embedded by both encoders), given to the fit as known pairs (the issue's
  e5-small victim, where the unsupervised start fails);
- `adapted`: `own`'s fit started from the `pool` translator's map (a general map adapted to the leak's domain),
  kept or dropped by the audit's rule (`vecbridge.jobs.audit.adaptation.choose_adapted`; `adaptation` in the
  row says which);
- `paired` (a bound, not an attack): orthogonal Procrustes fitted on the leak's own true pairs (victim vector,
  known-encoder vector of the same text), 2-fold, scored with the `adapted` (else `own`) attacker's reference;
- `own`: the audit's own path, trained from the leak's vectors alone against a reference of the attacker's:
  `--own-reference auto` (the audit's default) picks the built-in corpus whose profile is closest to the leak's
  and takes its first `--reference-rows` `train_b` texts that are not leaked texts (the attacker does not hold
  those); its keyword decoder and index are fitted on that reference, and its ideal is re-measured with them.

Defences (`--defenses`) are fitted once on the owner's store (the victim's pool vectors) and applied to it and to
every leak; the pool-to-pool translator is re-trained on the defended pool vectors (the attacker adapts) and
applied to the defended leak. The owner's utility is the leak's neighbour overlap@10 before / after the defence.
The keyword decoder and retrieval index are fitted once and shared by every task.

    python scripts/bench_attacks.py --victim mpnet-base --known minilm-l6 --leak-size 2000 --json
    python scripts/bench_attacks.py --victim minilm-l3 --known minilm-l6 --leak-size 200 --tasks brown \
        --pool-rows 3000 --defenses rotation,int8
    python scripts/bench_attacks.py --victim e5-small --known minilm-l6 --known-pairs 64 --translators pool,adapted

`--leave-one-out` audits instead, through `vecbridge.jobs.audit.audit` (what `vecbridge audit` runs, on a .npy store),
a leak of each labelled corpus with that corpus removed from the reference candidates (the general pool without it
where it is a pool member: no candidate covers the leak's domain), for each `--victims` encoder and `--sizes`
(`all`: every vector of the leak splits), with `--known-documents` K's; per audit it prints one JSON row: the
references tried and their scores, each K's verdict and attribute accuracy against the ideal, the goal (>= 0.8 x
the ideal at K = 0, or >= 0.9 x at K = 64) and false `ok`s (a point reading not `low` whose attack gains under half
of the ideal's gain over chance), and the audit's wall and CPU time.

    python scripts/bench_attacks.py --leave-one-out --victims mpnet-base,e5-small --sizes 2000,all \
        --known-documents 16,64,256 --reference-rows 5000 --probe-rows 5000 --out loo.json

`--demo-audit N` times instead the demo's audit end to end (`vecbridge.jobs.audit.audit`, what `vecbridge audit`
runs): N WordNet eval glosses embedded by minilm-l3 into Chroma (made once under --demo-dir), the demo's
translator (scripts/demo.sh makes DEMO_DIR/minilm-l3-to-minilm-l6), the lexname probe, three defences; it prints
one JSON object: wall and CPU seconds in all and per stage, the load average, and what the attacker recovers.

    python scripts/bench_attacks.py --demo-audit 10000 --demo-dir out/demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align import Translator, translator_class  # noqa: E402
from attacks.defences import parse_defences  # noqa: E402
from attacks.inversion import DECODERS  # noqa: E402
from vecbridge.corpora import load_corpus  # noqa: E402
from vecbridge.jobs.audit.adaptation import adaptation_start, choose_adapted  # noqa: E402
from vecbridge.jobs.audit.attributes import AttributeSpec, probe_rows  # noqa: E402
from vecbridge.jobs.audit.defences import defence_utility  # noqa: E402
from vecbridge.jobs.audit.leak import Leak  # noqa: E402
from vecbridge.jobs.audit.suite import AttackSuite, attack_table  # noqa: E402
from vecbridge.jobs.pivots import cached_vectors  # noqa: E402
from vecbridge.jobs.references import AUTO, choose_reference  # noqa: E402
from vecbridge.texts import read_texts  # noqa: E402

TASKS = {  # corpus: (leak splits, attributes)
    "spamassassin": (("train_b", "eval"), ("label", "list_id")),
    "icd10": (("eval",), ("chapter",)),
    "brown": (("eval",), ("genre",)),
    "wordnet": (("eval",), ("lexname",)),
}


def leak_rows(corpus: str, size: int, seed: int, fixed: str | None = None) -> tuple[list[str], dict]:
    """A seeded sample of `size` labelled texts of the corpus's leak splits, or, with `fixed` (a folder), the texts
    of FIXED/CORPUS.jsonl where it exists (a sample kept from an earlier run; labels looked up by text)."""
    splits, attrs = TASKS[corpus]
    table = [load_corpus(corpus, s).with_format("arrow")[:] for s in splits]
    texts = [t for tb in table for t in tb["text"].to_pylist()]
    labels = {a: [v for tb in table for v in tb[a].to_pylist()] for a in attrs}
    listing = Path(fixed) / f"{corpus}.jsonl" if fixed else None
    if listing is not None and listing.is_file():
        where: dict = {}
        for i, t in enumerate(texts):
            where.setdefault(t, i)
        chosen = [json.loads(line)["text"] for line in listing.read_text(encoding="utf-8").splitlines() if line]
        missing = [t for t in chosen if t not in where]
        if missing:
            raise SystemExit(f"{listing}: {len(missing)} texts are not in {corpus} {'+'.join(splits)}")
        order = [where[t] for t in chosen]
    else:
        order = np.random.default_rng(seed).permutation(len(texts))[:size]
    return [texts[i] for i in order], {a: [labels[a][i] or None for i in order] for a in attrs}


def probe_specs(corpus: str, rows: int | None, seed: int) -> list[AttributeSpec]:
    """The corpus's attributes as probes on its train_a split, each with its labelled rows read (at most `rows`,
    a seeded sample)."""
    specs = [AttributeSpec(a, None, f"builtin:{corpus}:train_a", a) for a in TASKS[corpus][1]]
    for a in specs:
        texts, labels = probe_rows(a, seed)
        if rows is not None and len(texts) > rows:
            keep = sorted(np.random.default_rng(seed).choice(len(texts), rows, replace=False).tolist())
            texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        a.rows = texts, labels
    return specs


def probe_embedder(specs: list[AttributeSpec], known: str):
    """embed_cached for the probes: the union of the corpus's probe texts embedded once (cached), rows looked up."""
    union = list(dict.fromkeys(t for a in specs for t in a.rows[0]))
    where = {t: i for i, t in enumerate(union)}

    def embed_cached(kind: str, texts: list[str]) -> np.ndarray:
        vectors = cached_vectors(kind, known, union)
        return vectors[[where[t] for t in texts]]

    return embed_cached


PARAMS: dict = {}  # --param NAME=VALUE: geometric's hyper-parameters (e.g. fewer restarts for a quick check)


def fit(src: np.ndarray, tgt: np.ndarray, seed: int, start: np.ndarray | None = None, pairs=None,
        refine_only: bool = False):
    """geometric with --param's; `refine_only`: `start` is refined whatever its screen score (the audit's
    adaptation, `vecbridge.jobs.audit.adaptation.ReferenceFit`)."""
    params = {"seed": seed, **PARAMS, **({"accept_score": 0.0} if refine_only else {})}
    return translator_class("geometric")(**params).fit(src, tgt, start=start, pairs=pairs)


def score(suite: AttackSuite, translator, x_leak: np.ndarray, leak: Leak, ideal: dict, naive: dict | None) -> dict:
    return score_translation(suite, translator.transform(x_leak), translator.confidence_, leak, ideal, naive)


def score_translation(suite: AttackSuite, y: np.ndarray, confidence: dict | None, leak: Leak, ideal: dict,
                      naive: dict | None) -> dict:
    """The attacks on the translated leak `y`, beside the ideal (and naive), with the translator's confidence."""
    attributes, inversion = attack_table(suite.run(y, leak), ideal, naive)
    conf = confidence or {}
    return {"verdict": conf.get("verdict"), "confidence": conf.get("score"),
            "attributes": {k: {m: v[m] for m in ("accuracy", "top_k_accuracy", "ideal_accuracy", "naive_accuracy",
                                                 "chance", "n")} for k, v in attributes.items()},
            "keywords": {m: inversion["keywords"][m] for m in ("precision", "recall", "f1", "ideal_f1")},
            "retrieval_f1": inversion["retrieval"]["f1"], "retrieval_ideal_f1": inversion["retrieval"]["ideal_f1"],
            "sensitive": inversion["sensitive"]["fraction"],
            "sensitive_ideal": inversion["sensitive"]["ideal_fraction"]}


def own_rows(args, specs: list[AttributeSpec], texts: list[str], x_leak: np.ndarray, x_truth: np.ndarray,
             leak: Leak, pool_translator, wanted: list[str]) -> dict:
    """The audit's own path on one leak: a reference chosen like the audit's (auto) or given, without the leaked
    texts; translator, decoder and index on it; scored against the ideal measured with the same decoder.
    `adapted` (with the pool translator): the same fit started from the pool translator's map, a general map
    adapted to the leak's domain; its auto reference is ranked on the leak translated by the pool translator (as
    the audit does with `--translator`)."""
    out, prepared = {}, {}  # prepared: spec -> (reference vectors and texts, suite, ideal, naive), built once
    for name in ("own", "adapted"):
        if name not in wanted or (name == "adapted" and pool_translator is None):
            continue
        t, c = time.perf_counter(), time.process_time()
        profiled = x_leak if name == "own" else pool_translator.transform(x_leak)
        start = None if name == "own" else adaptation_start(pool_translator, x_leak, profiled)
        spec, choice = choose_reference(profiled, args.known, same_space=name == "adapted") \
            if args.own_reference == AUTO else \
            (args.own_reference, None)
        if spec not in prepared:
            ref_texts = reference_texts(spec, set(texts), args.reference_rows)
            ref_vectors = cached_vectors("references", args.known, ref_texts)
            suite = AttackSuite(specs, probe_embedder(specs, args.known), None, ref_vectors, ref_texts,
                                seed=args.seed, progress=False, decoder=args.decoder)
            ideal = suite.run(x_truth, leak)
            naive = suite.run(x_leak, leak) if x_leak.shape[1] == ref_vectors.shape[1] else None
            prepared[spec] = ref_vectors, ref_texts, suite, ideal, naive
        ref_vectors, ref_texts, suite, ideal, naive = prepared[spec]
        setup_s, setup_cpu_s = round(time.perf_counter() - t, 1), round(time.process_time() - c, 1)
        t, c = time.perf_counter(), time.process_time()
        model = fit(x_leak, ref_vectors, args.seed, start=start, refine_only=name == "adapted")
        adaptation = None
        if name == "adapted":  # the map the audit would use: the adaptation, or the pool translator as given
            model, adaptation = choose_adapted(pool_translator, model, x_leak, ref_vectors, args.seed)
        out[name] = {**score(suite, model, x_leak, leak, ideal, naive), "reference": spec, "adaptation": adaptation,
                     "reference_rows": len(ref_texts),
                     "reference_distance": None if choice is None else choice["candidates"][0]["distance"],
                     "chosen_start": (adaptation or {}).get("start") or model.fit_report_["stages"]["init"]["chosen"],
                     "setup_s": setup_s,
                     "setup_cpu_s": setup_cpu_s, "train_s": round(time.perf_counter() - t, 1),
                     "train_cpu_s": round(time.process_time() - c, 1)}
    if "paired" in wanted and prepared:  # the bound: a map fitted on the leak's own true pairs, scored like them
        spec = out.get("adapted", out.get("own"))["reference"]
        _, _, suite, ideal, naive = prepared[spec]
        out["paired"] = {**score_translation(suite, paired_bound(x_leak, x_truth), None, leak, ideal, naive),
                         "reference": spec}
    return out


def reference_texts(spec: str, leaked: set[str], rows: int) -> list[str]:
    """The first `rows` texts of `spec` that are not leaked texts (the attacker does not hold those). Where the leak
    took most of a built-in `train_b` split (SpamAssassin's leak is all of train_b + eval), the same corpus's
    `train_a` texts make up the rest: public texts of the leak's domain, as an attacker would gather."""
    out = [x for x in read_texts(spec, limit=rows + len(leaked)) if x not in leaked][:rows]
    if len(out) < rows and spec.startswith("builtin:") and spec.endswith(":train_b"):
        more = read_texts(spec[:-len("train_b")] + "train_a", limit=rows + len(leaked))
        out += [x for x in more if x not in leaked][:rows - len(out)]
    return out


def paired_bound(x_leak: np.ndarray, y_truth: np.ndarray) -> np.ndarray:
    """The leak translated by orthogonal Procrustes fitted on its own true pairs, 2-fold (each half mapped by the
    map fitted on the other half): what a linear map of the same size could do with every pair known."""
    y, half = np.zeros_like(y_truth), len(x_leak) // 2
    for a, b in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        y[b] = translator_class("procrustes")().fit(x_leak[a], y_truth[a]).transform(x_leak[b])
    return y


LEAK_BLOCK = 2000  # leak vectors are embedded and cached in blocks of the seeded order: every size shares them
FALSE_OK_GAIN = 0.5  # a point reading not `low` is a false ok when its attack gains under this share of the ideal's


def leak_vectors(victim: str, texts: list[str]) -> np.ndarray:
    """The victim's vectors of `texts` (a prefix of a corpus's seeded order), cached block by block."""
    return np.concatenate([cached_vectors("bench-attacks", victim, texts[b:b + LEAK_BLOCK])
                           for b in range(0, len(texts), LEAK_BLOCK)])


def loo_candidates(corpus: str, work: Path, rows: int) -> tuple[list[str], str]:
    """The reference candidates without `corpus`: every other fetched built-in corpus, and the general pool (its
    train_b texts whose source is not `corpus`, written to WORK/pool-without-CORPUS.jsonl where it is a member)."""
    from vecbridge.corpora.store import POOL_MEMBERS
    from vecbridge.jobs.references import GENERAL, PROFILE_ROWS, candidate_specs

    others = [c for c in candidate_specs() if c != GENERAL and c.split(":")[1] != corpus]
    if corpus not in POOL_MEMBERS:
        return [GENERAL, *others], GENERAL
    general = work / f"pool-without-{corpus}.jsonl"
    if not general.is_file():
        table = load_corpus("pool", "train_b").with_format("arrow")[:]
        keep = [t for t, src in zip(table["text"].to_pylist(), table["source"].to_pylist(), strict=True)
                if src != corpus][:max(rows, PROFILE_ROWS)]
        general.write_text("".join(json.dumps({"text": t}) + "\n" for t in keep), encoding="utf-8")
    return [str(general), *others], str(general)


def loo_audit(args, victim: str, corpus: str, size: int | None, work: Path) -> dict:
    """One leave-one-domain-out audit: the leak written as a .npy store with its truth and probe attributes, the
    audit run with `corpus` out of the candidates, and its row."""
    from vecbridge.jobs.audit import audit
    from vecbridge.stores import npy

    texts, truth = leak_rows(corpus, size or 10**9, args.seed)
    case = work / f"{victim}-{corpus}-{len(texts)}"
    case.mkdir(parents=True, exist_ok=True)
    npy.write_vectors(case / "leak.npy", leak_vectors(victim, texts), overwrite=True)
    (case / "truth.jsonl").write_text("".join(json.dumps({"id": i, "text": t, **{a: v[i] for a, v in truth.items()}})
                                              + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    attributes = {}
    for spec in probe_specs(corpus, args.probe_rows, args.seed):
        rows = case / f"probe-{spec.name}.jsonl"
        rows.write_text("".join(json.dumps({"text": t, spec.name: v}) + "\n" for t, v in zip(*spec.rows, strict=True)),
                        encoding="utf-8")
        attributes[spec.name] = {"train": str(rows), "column": spec.name}
    (case / "attributes.json").write_text(json.dumps(attributes), encoding="utf-8")
    candidates, general = loo_candidates(corpus, work, args.reference_rows)
    t, c = time.perf_counter(), time.process_time()
    r = audit(str(case / "leak.npy"), args.known, case / "report", reference=AUTO,
              reference_limit=args.reference_rows, attributes=case / "attributes.json", truth=case / "truth.jsonl",
              seed=args.seed, overwrite=True, progress=False, known_documents=args.known_documents,
              reference_candidates=candidates, general_reference=general)
    return loo_row(r, victim, corpus, len(texts), round(time.perf_counter() - t, 1), round(time.process_time() - c, 1))


def loo_row(r: dict, victim: str, corpus: str, n: int, wall_s: float, cpu_s: float) -> dict:
    """The audit's row: references tried, and per K its verdict, each attribute's accuracy / ideal / chance."""
    points = {}
    for p in r["known_documents"]:
        ratios = {k: None if not a["ideal_accuracy"] else round(a["accuracy"] / a["ideal_accuracy"], 3)
                  for k, a in p["attributes"].items()}
        gains = [(a["accuracy"] - a["chance"]) / (a["ideal_accuracy"] - a["chance"])
                 for a in p["attributes"].values() if a["ideal_accuracy"] > a["chance"]]
        points[p["k"]] = {"method": p["translator"].get("method"), "verdict": p["translator"]["verdict"],
                          "demonstrated": p["demonstrated"],
                          "validation_top1": (p["translator"]["validation"] or {}).get("top1"),
                          "reference": p["reference"], "scored": p["scored"], "ratio": ratios,
                          "attributes": {k: {m: a[m] for m in ("accuracy", "ideal_accuracy", "chance")}
                                         for k, a in p["attributes"].items()},
                          "keywords_f1": p["keywords"]["f1"], "keywords_ideal_f1": p["keywords"]["ideal_f1"],
                          "false_ok": bool(p["demonstrated"] and gains and min(gains) < FALSE_OK_GAIN),
                          "seconds": p["seconds"]}

    def reaches(k: int, share: float) -> bool:
        return k in points and all(v is not None and v >= share for v in points[k]["ratio"].values())

    return {"victim": victim, "corpus": corpus, "n": n, "reference": r["reference"]["texts"],
            "tried": [{m: t[m] for m in ("texts", "by", "confidence", "verdict")}
                      for t in r["reference"]["auto"]["tried"]],
            "points": points, "goal_met": reaches(0, 0.8) or reaches(64, 0.9),
            "false_ok": any(p["false_ok"] for p in points.values()), "wall_s": wall_s, "cpu_s": cpu_s}


def leave_one_out(args) -> dict:
    """Every (victim, corpus, size) leave-one-domain-out audit, rows written to --out as they come."""
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    result: dict = {}
    for victim in args.victims.split(","):
        for size in args.sizes.split(","):
            for corpus in args.tasks.split(","):
                rows.append(loo_audit(args, victim, corpus, None if size == "all" else int(size), work))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                result = {"known": args.known, "reference_rows": args.reference_rows, "probe_rows": args.probe_rows,
                          "known_documents": args.known_documents, "seed": args.seed, "rows": rows,
                          "wall_s": round(time.perf_counter() - start, 1), "load_average": os.getloadavg()}
                if args.out:
                    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


DEMO_DEFENCES = "noise:0.05,int8,rotation"
DEMO_ATTRIBUTES = {"lexname": {"train": "builtin:wordnet:train_a", "column": "lexname"}}
# the audit's steps, timed by wrapping the names its job module calls; `embedding` (every cached_vectors call:
# a cache read once the texts were embedded) runs inside the steps that need vectors and is counted in them too
DEMO_STAGES = {"inputs": "read_inputs", "reference": "attacker_reference", "translator": "attacker_translator",
               "attack_models": "AttackSuite", "attacks": "attack", "defences": "defence_row", "report": "publish",
               "embedding": "cached_vectors"}


def demo_audit(rows: int, demo_dir: Path, defences: str, reference_rows: int) -> dict:
    """The demo's audit on `rows` stored glosses, timed end to end and per stage."""
    from vecbridge.jobs import embed
    from vecbridge.jobs.audit import audit, job

    translator = demo_dir / "minilm-l3-to-minilm-l6"
    if not (translator / "config.json").is_file():
        raise SystemExit(f"{translator} holds no translator: run scripts/demo.sh (DEMO_DIR={demo_dir}) first")
    store = f"chroma:{demo_dir}/chroma-{rows}#glosses"
    if not (demo_dir / f"chroma-{rows}").is_dir():
        embed("minilm-l3", "builtin:wordnet:eval", store, limit=rows, progress=False)
    attributes = demo_dir / "attributes.json"
    attributes.write_text(json.dumps(DEMO_ATTRIBUTES) + "\n", encoding="utf-8")
    stages = {name: 0.0 for name in DEMO_STAGES}

    def timed(name: str, function):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[name] += time.perf_counter() - t
        return wrapper

    for name, attr in DEMO_STAGES.items():
        setattr(job, attr, timed(name, getattr(job, attr)))
    load = os.getloadavg()
    t, c = time.perf_counter(), time.process_time()
    r = audit(store, "minilm-l6", demo_dir / f"audit-{rows}", translator=translator,
              reference="builtin:wordnet:train_b", reference_limit=reference_rows, attributes=attributes,
              truth="builtin:wordnet:eval", defenses=defences, overwrite=True, progress=False)
    a = r["attributes"]["lexname"]
    return {"rows": rows, "defences": defences, "reference_rows": reference_rows,
            "wall_s": round(time.perf_counter() - t, 1), "cpu_s": round(time.process_time() - c, 1),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "stages_s": {k: round(v, 1) for k, v in stages.items()},
            "translator": {k: r["translator"][k] for k in ("source", "verdict")},
            "lexname": {k: a[k] for k in ("accuracy", "top_k_accuracy", "ideal_accuracy", "naive_accuracy", "chance",
                                          "n")},
            "keywords_f1": r["inversion"]["keywords"]["f1"],
            "keywords_ideal_f1": r["inversion"]["keywords"]["ideal_f1"],
            "defenses": [{"label": d["label"], "verdict": (d.get("translator") or {}).get("verdict"),
                          "lexname_accuracy": ((d.get("attributes") or {}).get("lexname") or {}).get("accuracy"),
                          "keywords_f1": (d.get("inversion") or {}).get("keywords_f1"),
                          "neighbour_overlap_at_10": d["utility"]["neighbour_overlap_at_10"]}
                         for d in r["defenses"]],
            "summary": r["summary"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-audit", type=int, default=None, metavar="N",
                    help="time the demo's audit of N stored WordNet glosses end to end and per stage, and stop")
    ap.add_argument("--demo-dir", type=Path, default=Path("out/demo"), metavar="DIR",
                    help="--demo-audit's folder: scripts/demo.sh's DEMO_DIR, holding its translator")
    ap.add_argument("--demo-reference-rows", type=int, default=5000, metavar="N",
                    help="--demo-audit's reference texts (the demo's DEMO_REF)")
    ap.add_argument("--leave-one-out", action="store_true",
                    help="audit each corpus's leak with that corpus out of the reference candidates, and stop")
    ap.add_argument("--victims", default="mpnet-base,e5-small", help="--leave-one-out's victim encoders")
    ap.add_argument("--sizes", default="2000,all", help="--leave-one-out's leak sizes (all: every vector)")
    ap.add_argument("--known-documents", default="16,64,256", metavar="K[,K...]",
                    type=lambda text: [int(k) for k in text.split(",")],
                    help="--leave-one-out's known-documents attackers")
    ap.add_argument("--work-dir", default="out/bench-attacks-loo", metavar="DIR",
                    help="--leave-one-out's stores, truths and reports")
    ap.add_argument("--victim", default="mpnet-base")
    ap.add_argument("--known", default="minilm-l6")
    ap.add_argument("--leak-size", type=int, default=2000)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--reference-rows", type=int, default=20000)
    ap.add_argument("--pool-rows", type=int, default=20000, help="rows per side of the pool-to-pool translator")
    ap.add_argument("--reference", default="builtin:pool:train_b", metavar="SPEC",
                    help="the attacker's public texts: keyword decoder and retrieval (first --reference-rows)")
    ap.add_argument("--pool-texts", default=None, metavar="SPEC",
                    help="the victim's store texts for the pool translator (pool train_b texts; default: the "
                         "reference's first --pool-rows)")
    ap.add_argument("--pool-known-texts", default="builtin:pool:train_a", metavar="SPEC",
                    help="the attacker's texts for the pool translator's target side (first --pool-rows)")
    ap.add_argument("--probe-rows", type=int, default=None,
                    help="labelled rows per probe, a seeded sample (default: the audit's 20,000)")
    ap.add_argument("--translators", default="pool,own",
                    help="any of pool, own, adapted, paired (comma-separated)")
    ap.add_argument("--own-reference", default=AUTO, metavar="SPEC",
                    help="the own translator's reference (its target side, keyword decoder and index): auto (the "
                         "audit's default: the built-in corpus closest to the leak) or a text spec")
    ap.add_argument("--pool-cache", default=None, metavar="DIR",
                    help="load the pool translator from DIR if it holds one, else fit it and save it there (a re-run "
                         "with other leaks re-uses it; the defences still re-fit)")
    ap.add_argument("--known-pairs", type=int, default=0, metavar="K",
                    help="few-shot pool attacker: it also holds the victim's vectors of K public texts it knows (the "
                         "first K pool texts, embedded by both encoders), given to the fit as known pairs")
    ap.add_argument("--defenses", default="", help="e.g. noise:0.01,int8,binary,pq:48,dims:128,rotation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--leak-texts", default=None, metavar="DIR",
                    help="fixed leak samples: DIR/CORPUS.jsonl ({\"text\": ...} rows) where present")
    ap.add_argument("--decoder", default="ridge", choices=sorted(DECODERS), help="the keyword decoder")
    ap.add_argument("--out", default=None, metavar="FILE", help="also write the result (so far) to FILE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.leave_one_out:
        result = leave_one_out(args)
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return
    if args.demo_audit is not None:
        result = demo_audit(args.demo_audit, args.demo_dir, args.defenses or DEMO_DEFENCES, args.demo_reference_rows)
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return
    for item in args.param:
        name, _, value = item.partition("=")
        PARAMS[name] = json.loads(value) if value[:1] in "-0123456789tfn[{\"" else value
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    wanted = args.translators.split(",")
    if "paired" in wanted and not {"own", "adapted"} & set(wanted):
        raise SystemExit("--translators paired is scored on the own / adapted attacker's reference: name one of them")
    reference = read_texts(args.reference, limit=args.reference_rows)
    ref_known = cached_vectors("references", args.known, reference)
    pool_known = pool_victim = pairs = None
    if "pool" in wanted:
        pool_known = cached_vectors("pivots", args.known, read_texts(args.pool_known_texts, limit=args.pool_rows))
        pool_texts = read_texts(args.pool_texts, limit=args.pool_rows) if args.pool_texts else \
            reference[:args.pool_rows]
        pool_victim = cached_vectors("references", args.victim, pool_texts)
        if args.known_pairs:  # the attacker knows these texts: its own encoder's vectors of them are the pairs
            k = args.known_pairs
            pairs = (pool_victim[:k], cached_vectors("pivots", args.known, pool_texts[:k]))
    timings: dict = {}

    def timed(name: str, make):
        t, c = time.perf_counter(), time.process_time()
        out = make()
        timings[f"{name}_s"], timings[f"{name}_cpu_s"] = (round(time.perf_counter() - t, 1),
                                                          round(time.process_time() - c, 1))
        print(f"{name}: {timings[f'{name}_s']} s", file=sys.stderr, flush=True)
        return out

    pool_translator = None
    # what the cached pool translator was fitted on: a cache of another set-up is refused, never re-used silently
    made_of = {"victim": args.victim, "known": args.known, "pool_rows": args.pool_rows, "seed": args.seed,
               "known_pairs": args.known_pairs, "pool_texts": args.pool_texts, "params": PARAMS,
               "pool_known_texts": args.pool_known_texts}
    if pool_victim is not None and args.pool_cache and Path(args.pool_cache).is_dir():
        cached = Translator.read_config(args.pool_cache).get("bench_pool")
        if cached != made_of:
            raise SystemExit(f"--pool-cache {args.pool_cache} holds a pool translator of another set-up ({cached}); "
                             "give a new directory")
        pool_translator = Translator.load(args.pool_cache)
        timings["pool_translator_loaded_from"] = args.pool_cache
    elif pool_victim is not None:
        pool_translator = timed("pool_translator", lambda: fit(pool_victim, pool_known, args.seed, pairs=pairs))
        if args.pool_cache:
            pool_translator.save(args.pool_cache, meta={"bench_pool": made_of})
    # the keyword decoder and the retrieval index, fitted once on the reference and shared by every task
    base = timed("decoder_and_index", lambda: AttackSuite([], None, None, ref_known, reference, seed=args.seed,
                                                          progress=False, decoder=args.decoder))
    rows, tasks = [], {}

    def publish(final: bool = False) -> dict:
        result = {"victim": args.victim, "known": args.known, "leak_size": args.leak_size,
                  "pool_rows": args.pool_rows, "known_pairs": args.known_pairs,
                  "reference_rows": args.reference_rows, "probe_rows": args.probe_rows,
                  "decoder": args.decoder, "params": PARAMS, "complete": final, "rows": rows, **timings,
                  "wall_s": round(time.perf_counter() - start_wall, 1),
                  "cpu_s": round(time.process_time() - start_cpu, 1)}
        if args.out:  # the result so far, rewritten after every step: a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return result

    for corpus in args.tasks.split(","):
        texts, truth = leak_rows(corpus, args.leak_size, args.seed, args.leak_texts)
        specs = probe_specs(corpus, args.probe_rows, args.seed)
        suite = AttackSuite(specs, probe_embedder(specs, args.known), None, ref_known, reference, seed=args.seed,
                            progress=False, fitted=base)
        x_leak = cached_vectors("bench-attacks", args.victim, texts)
        leak = Leak(x_leak, list(range(len(texts))), texts, truth, corpus, {})
        x_truth = cached_vectors("audit-truth", args.known, texts)
        ideal = suite.run(x_truth, leak)
        naive = suite.run(x_leak, leak) if x_leak.shape[1] == ref_known.shape[1] else None
        tasks[corpus] = suite, x_leak, leak, ideal
        row = {"corpus": corpus, "n": len(texts)}
        if pool_translator is not None:
            row["pool"] = score(suite, pool_translator, x_leak, leak, ideal, naive)
        if {"own", "adapted", "paired"} & set(wanted):
            row.update(own_rows(args, specs, texts, x_leak, x_truth, leak, pool_translator, wanted))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        publish()
    # Each defence is fitted once on the owner's store (the victim's pool vectors) and applied to every leak; the
    # pool attacker re-trains its translator on the defended pool vectors (it adapts to the defence).
    for defence in parse_defences(args.defenses, args.seed) if args.defenses and pool_victim is not None else []:
        defence.fit(pool_victim)
        adapted = timed(f"defence {defence.label} translator",
                        lambda d=defence: fit(d.transform(pool_victim), pool_known, args.seed,
                                            pairs=None if pairs is None else (d.transform(pairs[0]), pairs[1])))
        for row in rows:
            suite, x_leak, leak, ideal = tasks[row["corpus"]]
            defended = defence.transform(x_leak)
            row.setdefault("defenses", []).append({
                "defence": defence.label, "utility": defence_utility(defence, x_leak, defended, None),
                **score(suite, adapted, defended, leak, ideal, None)})
            print(json.dumps({"corpus": row["corpus"], **row["defenses"][-1]}), file=sys.stderr, flush=True)
        publish()
    result = publish(final=True)
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))


if __name__ == "__main__":
    main()
