"""Benchmark the leakage audit: attacks on leaked vectors of a victim encoder, translated into a known encoder's
space, against the ideal (truth texts in the known space), naive (leaked vectors as they are) and chance.

Leaks (labelled, off the pool's domain or its held-out split): SpamAssassin (label, list_id; train_b + eval),
ICD-10 (chapter; eval), Brown (genre; eval), WordNet (lexname; eval). Each attribute's probe is trained on the
same corpus's train_a split embedded by the known encoder; the keyword decoder and the retrieval index on
builtin:pool:train_b (the reference). Two translators are measured where asked:

- `pool`: trained without pairs pool-to-pool (the victim's vectors of pool train_b vs the known encoder's
  vectors of pool train_a: different texts), then applied to each leak: an attacker with a large store;
- `own`: the audit's own path, trained from the leak's vectors alone against the reference.

Defences (`--defenses`) are applied to the leak (fitted on it) and, for the `pool` attacker, to the victim's
pool vectors as well, and the pool-to-pool translator is re-trained on the defended vectors (the attacker adapts).

    python scripts/bench_attacks.py --victim mpnet-base --known minilm-l6 --leak-size 2000 --json
    python scripts/bench_attacks.py --victim minilm-l3 --known minilm-l6 --leak-size 200 --tasks brown \
        --pool-rows 3000 --defenses rotation,int8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align import translator_class  # noqa: E402
from attacks.defences import parse_defences  # noqa: E402
from vecbridge.corpora import load_corpus  # noqa: E402
from vecbridge.jobs.audit import AttackSuite, AttributeSpec, Leak, _probe_rows, attack_table  # noqa: E402
from vecbridge.jobs.pivots import cached_vectors  # noqa: E402
from vecbridge.texts import read_texts  # noqa: E402

TASKS = {  # corpus: (leak splits, attributes)
    "spamassassin": (("train_b", "eval"), ("label", "list_id")),
    "icd10": (("eval",), ("chapter",)),
    "brown": (("eval",), ("genre",)),
    "wordnet": (("eval",), ("lexname",)),
}


def leak_rows(corpus: str, size: int, seed: int) -> tuple[list[str], dict]:
    splits, attrs = TASKS[corpus]
    table = [load_corpus(corpus, s).with_format("arrow")[:] for s in splits]
    texts = [t for tb in table for t in tb["text"].to_pylist()]
    labels = {a: [v for tb in table for v in tb[a].to_pylist()] for a in attrs}
    order = np.random.default_rng(seed).permutation(len(texts))[:size]
    return [texts[i] for i in order], {a: [labels[a][i] or None for i in order] for a in attrs}


PARAMS: dict = {}  # --param NAME=VALUE: geometric's hyper-parameters (e.g. fewer restarts for a quick check)


def fit(src: np.ndarray, tgt: np.ndarray, seed: int):
    return translator_class("geometric")(**{"seed": seed, **PARAMS}).fit(src, tgt)


def score(suite: AttackSuite, translator, x_leak: np.ndarray, leak: Leak, ideal: dict, naive: dict | None) -> dict:
    attacked = suite.run(translator.transform(x_leak), leak)
    attributes, inversion = attack_table(attacked, ideal, naive)
    conf = translator.confidence_ or {}
    return {"verdict": conf.get("verdict"), "confidence": conf.get("score"),
            "attributes": {k: {m: v[m] for m in ("accuracy", "top_k_accuracy", "ideal_accuracy", "naive_accuracy",
                                                 "chance", "n")} for k, v in attributes.items()},
            "keywords": {m: inversion["keywords"][m] for m in ("precision", "recall", "f1", "ideal_f1")},
            "retrieval_f1": inversion["retrieval"]["f1"], "retrieval_ideal_f1": inversion["retrieval"]["ideal_f1"],
            "sensitive": inversion["sensitive"]["fraction"],
            "sensitive_ideal": inversion["sensitive"]["ideal_fraction"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", default="mpnet-base")
    ap.add_argument("--known", default="minilm-l6")
    ap.add_argument("--leak-size", type=int, default=2000)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--reference-rows", type=int, default=20000)
    ap.add_argument("--pool-rows", type=int, default=20000, help="rows per side of the pool-to-pool translator")
    ap.add_argument("--translators", default="pool,own", help="pool, own or both")
    ap.add_argument("--defenses", default="", help="e.g. noise:0.01,int8,binary,pq:48,dims:128,rotation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for item in args.param:
        name, _, value = item.partition("=")
        PARAMS[name] = json.loads(value) if value[:1] in "-0123456789tfn[{\"" else value
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    wanted = args.translators.split(",")
    reference = read_texts("builtin:pool:train_b", limit=args.reference_rows)
    ref_known = cached_vectors("references", args.known, reference)
    pool_known = pool_victim = None
    if "pool" in wanted:
        pool_known = cached_vectors("pivots", args.known, read_texts("builtin:pool:train_a", limit=args.pool_rows))
        pool_victim = cached_vectors("references", args.victim, reference[:args.pool_rows])
    timings: dict = {}
    t = time.perf_counter()
    pool_translator = fit(pool_victim, pool_known, args.seed) if pool_victim is not None else None
    timings["pool_translator_s"] = round(time.perf_counter() - t, 1)
    rows = []
    for corpus in args.tasks.split(","):
        texts, truth = leak_rows(corpus, args.leak_size, args.seed)
        specs = [AttributeSpec(a, None, f"builtin:{corpus}:train_a", a) for a in TASKS[corpus][1]]
        for a in specs:
            a.rows = _probe_rows(a, args.seed)
        suite = AttackSuite(specs, lambda kind, tx: cached_vectors(kind, args.known, list(tx)), None, ref_known,
                            reference, seed=args.seed, progress=False)
        x_leak = cached_vectors("bench-attacks", args.victim, texts)
        leak = Leak(x_leak, list(range(len(texts))), texts, truth, corpus, {})
        ideal = suite.run(cached_vectors("audit-truth", args.known, texts), leak)
        naive = suite.run(x_leak, leak) if x_leak.shape[1] == ref_known.shape[1] else None
        row = {"corpus": corpus, "n": len(texts)}
        if pool_translator is not None:
            row["pool"] = score(suite, pool_translator, x_leak, leak, ideal, naive)
        if "own" in wanted:
            t = time.perf_counter()
            own = fit(x_leak, ref_known, args.seed)
            row["own"] = {**score(suite, own, x_leak, leak, ideal, naive),
                          "train_s": round(time.perf_counter() - t, 1)}
        for defence in parse_defences(args.defenses, args.seed) if args.defenses and pool_victim is not None else []:
            defence.fit(x_leak)
            t = time.perf_counter()
            adapted = fit(defence.transform(pool_victim), pool_known, args.seed)
            from vecbridge.jobs.audit import defence_utility

            row.setdefault("defenses", []).append({
                "defence": defence.label, "utility": defence_utility(defence, x_leak, defence.transform(x_leak), None),
                **score(suite, adapted, defence.transform(x_leak), leak, ideal, None),
                "train_s": round(time.perf_counter() - t, 1)})
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"victim": args.victim, "known": args.known, "leak_size": args.leak_size, "pool_rows": args.pool_rows,
              "reference_rows": args.reference_rows, "rows": rows, **timings,
              "wall_s": round(time.perf_counter() - start_wall, 1),
              "cpu_s": round(time.process_time() - start_cpu, 1)}
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))


if __name__ == "__main__":
    main()
