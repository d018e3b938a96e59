"""Benchmark translators on the standard split: quality (cos / top-1 / rank), train time, label-free confidence.

Data (cached under $VECBRIDGE_HOME/bench/translate): N `train_a` pool texts embedded by the source encoder,
N disjoint `train_b` texts by the target encoder, 8,192 held-out pool texts (in-distribution) and 4,096
held-out out-of-distribution texts (SpamAssassin bodies + ICD-10 descriptions) embedded by both. Every text
set is embedded by every encoder through the real `vecbridge embed` CLI (resumable, cached).

    python scripts/bench_translate.py --pairs minilm-l3:minilm-l6 --methods identity,procrustes,ridge,geometric
    python scripts/bench_translate.py --pairs minilm-l3:mpnet-base --methods geometric@64   # few-shot: 64 pairs
    python scripts/bench_translate.py --pairs minilm-l3:mpnet-base --methods geometric+minilm-l6  # via a pivot
    python scripts/bench_translate.py --pairs minilm-l3:minilm-l6 --methods geometric/whiten=0.4  # a parameter
    python scripts/bench_translate.py --throughput          # translate speed, 1M vectors 384 -> 768
    python scripts/bench_translate.py --pairs minilm-l3:minilm-l6 --methods procrustes,geometric --plot top1.png
    python scripts/bench_translate.py --pairs minilm-l6:mpnet-base --methods procrustes,geometric --split 1
    python scripts/bench_translate.py --pairs mpnet-base:minilm-l6 --offdomain icd10 --offdomain-rows 1000,3000 \
        --reference auto --reference-rows 10000   # one domain's leak against the reference `auto` picks

`--split K` (default 0, the benchmark split) draws another training split of the same kind of texts: `train_a`
and `train_b` texts are taken at offset K x N of the same two shuffles (N = --n-train), so split K's training
texts are disjoint from split 0's and from every other split's; the eval / OOD sets are unchanged. Split K > 0
caches its files with a `-sK` suffix (`texts-train_a-25000-s1.jsonl`). The pivot texts (train_a's shuffle past
100,000) stay disjoint while (K + 1) x N <= 100,000.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align import translator_class
from align.confidence import REPORT_DRAWS, translation_confidence
from align.metrics import evaluate
from vecbridge import files, paths
from vecbridge.stores import npy
from vecbridge.texts import read_texts

SETS = {  # name -> (text specs, how many, shuffle name, offset into the shuffled texts)
    "train_a": (["builtin:pool:train_a"], 25000, "train_a", 0),
    "train_b": (["builtin:pool:train_b"], 25000, "train_b", 0),
    "eval": (["builtin:pool:eval"], 8192, "eval", 0),
    "ood": (["builtin:spamassassin", "builtin:icd10"], 4096, "ood", 0),
    # pivot encoders' texts (`geometric+ENCODER`): train_a's shuffle past the first 100,000, so they are disjoint
    # from the source texts (a prefix of that shuffle) for any --n-train up to 100,000, and from the rest
    "pivot": (["builtin:pool:train_a"], 10000, "train_a", 100_000),
}
PAIRED = ("procrustes", "ridge", "mlp")


@dataclass(frozen=True)
class Method:
    """A benchmark method: `NAME[@K][+ENCODER][/PARAM=VALUE...]`: K known pairs (few-shot), a pivot encoder,
    translator parameters (e.g. `geometric/whiten=0.4`)."""

    name: str
    shots: int = 0
    pivot: str | None = None
    params: tuple[tuple[str, int | float], ...] = ()
    label: str = ""

    @classmethod
    def parse(cls, spec: str) -> Method:
        head, *params = spec.split("/")
        head, _, pivot = head.partition("+")
        name, _, shots = head.partition("@")
        pairs = tuple((k, int(v) if v.isdigit() else float(v)) for k, _, v in (p.partition("=") for p in params))
        return cls(name, int(shots) if shots else 0, pivot or None, pairs, spec)


def bench_dir() -> Path:
    d = paths.home() / "bench" / "translate"
    d.mkdir(parents=True, exist_ok=True)
    return d


def split_suffix(name: str, split: int) -> str:
    return f"-s{split}" if split and name.startswith("train") else ""


def text_file(name: str, n_train: int, split: int = 0) -> Path:
    """Deterministic sample of a text set, written once as JSONL so every encoder embeds the same rows.
    Training sets of split K start at offset K x n_train of their shuffle (see the module docstring)."""
    specs, n, shuffle, offset = SETS[name]
    n = n_train if name.startswith("train") else n
    if name.startswith("train") and split:
        if (split + 1) * n_train > SETS["pivot"][3]:
            raise SystemExit(f"--split {split} x --n-train {n_train} would reach the pivot texts")
        offset += split * n_train
    path = bench_dir() / f"texts-{name}-{n}{split_suffix(name, split)}.jsonl"
    if path.exists():
        return path
    per_spec = -(-n // len(specs))
    texts: list[str] = []
    for spec in specs:
        items = read_texts(spec)
        random.Random(f"{spec}:{shuffle}").shuffle(items)
        texts.extend(items[offset:offset + per_spec])
    texts = texts[:n]
    with files.staged() as stage:
        stage.file(path).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def vectors(encoder: str, name: str, n_train: int, split: int = 0) -> np.ndarray:
    if name.startswith("train") and not split:
        # a smaller training set is a prefix of a larger one (same shuffle): reuse a bigger cached file
        for cached in sorted((bench_dir() / encoder).glob(f"texts-{name}-*.npy")):
            size = cached.stem.rsplit("-", 1)[1]
            if size.isdigit() and int(size) > n_train:
                return npy.read_vectors(cached)[:n_train]
    return embedded_file(encoder, text_file(name, n_train, split))


def run_method(spec: Method, seed: int, data: dict, vec2vec_minutes: float) -> dict:
    """One trained translator, scored. `geometric@K` is few-shot: `geometric` given K known pairs (the first K
    `train_a` texts embedded by both encoders) on top of the unpaired training sets; `procrustes@K` (any paired
    method) is fitted on those K pairs alone, the baseline a user with K pairs already has. `geometric+ENCODER` may
    step through ENCODER's vectors of the disjoint `pivot` texts. `/PARAM=VALUE` sets translator parameters."""
    method = spec.name
    if method == "identity":
        if data["src_a"].shape[1] != data["tgt_b"].shape[1]:
            return {}
        forward, backward, seconds, conf, model = (lambda x: x), (lambda y: y), 0.0, None, None
    else:
        params = {"seed": seed, **dict(spec.params)}
        if method == "vec2vec":
            params["time_budget_s"] = vec2vec_minutes * 60
        model = translator_class(method)(**params)
        start = time.perf_counter()
        fit_args = {}
        if spec.shots:
            fit_args["pairs"] = (data["src_a"][:spec.shots], data["tgt_a"][:spec.shots])
        if spec.pivot:
            fit_args["pivots"] = {spec.pivot: vectors(spec.pivot, "pivot", 0)}
        if method in PAIRED:
            n = spec.shots or len(data["src_a"])
            model.fit(data["src_a"][:n], data["tgt_a"][:n])
        else:
            model.fit(data["src_a"], data["tgt_b"], **fit_args)
        seconds = time.perf_counter() - start
        forward, backward = model.transform, model.inverse_transform
        conf = getattr(model, "confidence_", None)
    if conf is None:
        conf = translation_confidence(data["src_a"], data["tgt_b"], forward, backward, draws=REPORT_DRAWS)
    row = {"method": spec.label, "seed": seed, "train_s": round(seconds, 1), "confidence": conf.get("score"),
           "verdict": conf.get("verdict"), "spread": conf.get("spread")}
    if isinstance(conf.get("validation"), dict):
        row["validation_top1"] = conf["validation"]["top1"]
    if conf.get("margin") is not None:
        row["margin"] = round(conf["margin"], 4)
    init = (getattr(model, "fit_report_", None) or {}).get("stages", {}).get("init")
    if init:  # which start the fit kept, whether it passed its screen, and the anchor starts' agreement
        row["start"] = {k: init[k] for k in ("chosen", "score", "passed", "agreement", "agreements", "seconds")
                        if k in init}
    search = getattr(model, "supports_search", False)
    for split, pool in (("eval", 8192), ("ood", 4096)):
        m = evaluate(forward(data[f"src_{split}"]), data[f"tgt_{split}"], pool=pool)
        row[split] = {k: m[k] for k in ("mean_cosine", "top1", "mean_rank", "median_rank", "pool")}
        if search:  # the same translator's search output (`translate --search`)
            m = evaluate(model.transform(data[f"src_{split}"], search=True), data[f"tgt_{split}"], pool=pool)
            row[f"{split}_search"] = {k: m[k] for k in ("mean_cosine", "top1", "mean_rank")}
    return row


def bench_pair(src: str, tgt: str, methods: list[str], seeds: int, n_train: int, vec2vec_minutes: float,
               split: int = 0, first_seed: int = 0):
    data = {
        "src_a": vectors(src, "train_a", n_train, split), "tgt_a": vectors(tgt, "train_a", n_train, split),
        "tgt_b": vectors(tgt, "train_b", n_train, split),
        "src_eval": vectors(src, "eval", n_train), "tgt_eval": vectors(tgt, "eval", n_train),
        "src_ood": vectors(src, "ood", n_train), "tgt_ood": vectors(tgt, "ood", n_train),
    }
    rows = []
    for method in map(Method.parse, methods):
        for seed in range(first_seed, first_seed + (seeds if method.name in ("geometric", "vec2vec", "mlp") else 1)):
            row = run_method(method, seed, data, vec2vec_minutes)
            if row:
                row.update(pair=f"{src}->{tgt}", n_train=n_train, split=split)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| pair | method | seed | eval cos | eval top-1 | eval rank | ood cos | ood top-1 | ood rank "
             "| train s | confidence | search: eval cos / top-1, ood top-1 |", "|" + "---|" * 12]
    for r in rows:
        e, o = r["eval"], r["ood"]
        conf = "-" if r["confidence"] is None else f"{r['confidence']:.2f} {r.get('verdict') or ''}".strip()
        if "validation_top1" in r:
            conf += f" (held-out pairs {r['validation_top1']:.2f})"
        search = "-"
        if "eval_search" in r:
            search = (f"{r['eval_search']['mean_cosine']:.3f} / {r['eval_search']['top1']:.3f}, "
                      f"{r['ood_search']['top1']:.3f}")
        lines.append(f"| {r['pair']} | {r['method']} | {r['seed']} | {e['mean_cosine']:.3f} | {e['top1']:.3f} | "
                     f"{e['mean_rank']:.2f} | {o['mean_cosine']:.3f} | {o['top1']:.3f} | {o['mean_rank']:.2f} | "
                     f"{r['train_s']:.1f} | {conf} | {search} |")
    return "\n".join(lines)


def throughput(rows: int, translator_dir: str | None) -> dict:
    """Time `vecbridge translate` on `rows` vectors (384 -> 768) as a separate process; report peak RSS."""
    work = bench_dir() / "throughput"
    work.mkdir(exist_ok=True)
    inp = work / f"input-{rows}.npy"
    if not inp.exists():
        arr = np.lib.format.open_memmap(inp, mode="w+", dtype=np.float32, shape=(rows, 384))
        rng = np.random.default_rng(0)
        for i in range(0, rows, 100_000):
            block = rng.standard_normal((min(100_000, rows - i), 384), dtype=np.float32)
            arr[i:i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        arr.flush()
        del arr
    if translator_dir is None:
        raise SystemExit("--throughput needs --translator DIR (a 384 -> 768 translator)")
    out = work / "output.npy"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vecbridge", "translate", "--translator", translator_dir,
                    "--input", str(inp), "--output", str(out), "--overwrite"], check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.unlink()
    return {"rows": rows, "seconds": round(seconds, 1), "vectors_per_minute": round(rows / seconds * 60),
            "peak_rss_mb": round(peak_mb), "input_mb": round(inp.stat().st_size / 2**20)}


def offdomain_file(corpus: str, split: str, n: int) -> Path:
    """`n` texts of one built-in corpus's split (seeded shuffle), as JSONL: one domain, never the pool's mix."""
    path = bench_dir() / f"texts-{corpus}-{split}-{n}.jsonl"
    if not path.exists():
        items = read_texts(f"builtin:{corpus}:{split}")
        random.Random(f"{corpus}:{split}").shuffle(items)
        with files.staged() as stage:
            stage.file(path).write_text("".join(json.dumps({"text": t}) + "\n" for t in items[:n]))
    return path


def embedded_file(encoder: str, texts: Path) -> np.ndarray:
    """`texts` (JSONL) embedded by `encoder` through the real `vecbridge embed` CLI, cached beside the bench."""
    out = bench_dir() / encoder / f"{texts.stem}.npy"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "vecbridge", "embed", "--encoder", encoder, "--input", str(texts),
                        "--output", str(out)], check=True)
    return npy.read_vectors(out)


def bench_offdomain(src: str, tgt: str, corpora: list[str], sizes: list[int], seed: int, eval_n: int = 2000,
                    reference: str = "pool", reference_rows: int = 25000, params: dict | None = None) -> list:
    """A small leak of one domain: the first N texts of a corpus's `train_a` split in the source space, against a
    reference in the target space; scored on `eval_n` held-out texts of the same corpus (its `eval` split)
    embedded by both, beside the paired bound at the same size (procrustes on the same N texts embedded by both).

    `reference`: `pool` (the built-in pool's 25,000 `train_b` texts of the benchmark), `auto` (the product's
    `--target-texts auto`: the built-in corpus whose profile is closest to the leak's, its first `reference_rows`
    `train_b` texts, chosen for each leak size) or a text spec. `params`: geometric's parameters (default: its
    defaults), e.g. from `--methods geometric/bag_starts=0`."""
    from vecbridge.jobs.references import AUTO, choose_reference
    from vecbridge.jobs.translators import reference_vectors

    rows = []
    for corpus in corpora:
        train = offdomain_file(corpus, "train_a", max(sizes))
        held = offdomain_file(corpus, "eval", eval_n)
        xs, ys = embedded_file(src, train), embedded_file(tgt, train)
        xe, ye = embedded_file(src, held), embedded_file(tgt, held)
        for n in sizes:
            n = min(n, len(xs))
            start = time.perf_counter()
            choice = None
            if reference == "pool":
                spec, target = "bench pool train_b", vectors(tgt, "train_b", 25000)
            else:
                spec = reference
                if reference == AUTO:
                    spec, choice = choose_reference(xs[:n], tgt)
                target = reference_vectors(tgt, spec, reference_rows)
            chose_s = time.perf_counter() - start
            model = translator_class("geometric")(seed=seed, **(params or {})).fit(xs[:n], target)
            seconds = time.perf_counter() - start
            conf = model.confidence_ or {}
            got = evaluate(model.transform(xe), ye, pool=len(ye))
            bound = evaluate(translator_class("procrustes")().fit(xs[:n], ys[:n]).transform(xe), ye, pool=len(ye))
            row = {"pair": f"{src}->{tgt}", "corpus": corpus, "rows": n, "seed": seed, "params": params or {},
                   "reference": spec,
                   "reference_rows": len(target), "top1": got["top1"], "bound_top1": bound["top1"],
                   "ratio": got["top1"] / max(bound["top1"], 1e-9), "cos": got["mean_cosine"],
                   "train_s": round(seconds, 1), "choose_s": round(chose_s, 1), "confidence": conf.get("score"),
                   "spread": conf.get("spread"), "verdict": conf.get("verdict"),
                   "start": model.fit_report_["stages"]["init"]["chosen"],
                   "auto": None if choice is None else [(c["name"], c["distance"]) for c in choice["candidates"]]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def plot(rows: list[dict], png: str) -> None:
    """Top-1 against the paired bound of the rows just measured (scripts/figures.py: `translate`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from figures import translate_figure

    print(f"figure: {translate_figure(rows, png)}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="minilm-l3:minilm-l6,minilm-l6:mpnet-base,minilm-l3:mpnet-base",
                    help="comma-separated SOURCE:TARGET encoder pairs")
    ap.add_argument("--methods", default="identity,procrustes,ridge,mlp,geometric")
    ap.add_argument("--seeds", type=int, help="how many seeds (default 3; 1 with --offdomain)")
    ap.add_argument("--n-train", type=int, default=25000, help="vectors per side")
    ap.add_argument("--split", type=int, default=0, help="training split K (0 = the benchmark split; see above)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--sets", default=",".join(SETS), help="with --prepare: which text sets to embed, in order")
    ap.add_argument("--vec2vec-minutes", type=float, default=10.0)
    ap.add_argument("--throughput", action="store_true", help="measure translate speed instead")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--translator", help="translator dir for --throughput")
    ap.add_argument("--prepare", metavar="ENCODERS",
                    help="only embed every text set with these comma-separated encoders (fills the cache)")
    ap.add_argument("--offdomain", metavar="CORPORA",
                    help="small one-domain leaks (e.g. icd10,spamassassin,brown) against the pool: see bench_offdomain")
    ap.add_argument("--offdomain-rows", default="1000,3000,10000")
    ap.add_argument("--reference", default="pool", help="with --offdomain: pool, auto or a text spec")
    ap.add_argument("--reference-rows", type=int, default=25000, help="with --offdomain and a spec / auto")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG", help="also draw the rows measured: top-1 against the paired bound per "
                                                  "pair (scripts/figures.py)")
    args = ap.parse_args()
    if args.plot and (args.prepare or args.throughput):
        ap.error("--plot draws translator rows: not with --prepare or --throughput")
    if args.offdomain:
        # --methods names geometric variants here (`geometric`, `geometric/bag_starts=0`); --seeds counts from
        # --first-seed
        rows = []
        variants = [Method.parse(m) for m in args.methods.split(",") if m.startswith("geometric")]
        if any(m.shots or m.pivot for m in variants):
            raise SystemExit("--offdomain runs unsupervised geometric fits: drop @shots and +pivot from --methods")
        for pair in args.pairs.split(","):
            src, tgt = pair.split(":")
            for seed in range(args.first_seed, args.first_seed + (args.seeds or 1)):
                for method in variants or [Method.parse("geometric")]:
                    rows += bench_offdomain(src, tgt, args.offdomain.split(","),
                                            [int(n) for n in args.offdomain_rows.split(",")], seed,
                                            reference=args.reference, reference_rows=args.reference_rows,
                                            params=dict(method.params))
        (bench_dir() / f"offdomain-{int(time.time())}.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows, indent=1))
        if args.plot:
            plot(rows, args.plot)
        return
    if args.prepare:
        for name in args.sets.split(","):
            for encoder in args.prepare.split(","):
                vectors(encoder, name, args.n_train, args.split)
        return
    if args.throughput:
        result = throughput(args.rows, args.translator)
        print(json.dumps(result) if args.json else result)
        return
    rows = []
    for pair in args.pairs.split(","):
        src, tgt = pair.split(":")
        rows += bench_pair(src, tgt, args.methods.split(","), args.seeds or 3, args.n_train, args.vec2vec_minutes,
                           args.split, args.first_seed)
    result_path = bench_dir() / f"results-{int(time.time())}.json"
    result_path.write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
