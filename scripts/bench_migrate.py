"""Benchmark store migration: retrieval retention of migrated documents, and store -> store throughput.

Retention (`--retention`): retrieval tasks built from built-in dictionaries, term -> definition (WordNet lemma ->
gloss, GCIDE headword -> definition): N documents of the corpus's `train_a` split, Q queries (distinct terms of
those documents; relevant = every document of that term). Every text set is embedded by every encoder through the
real `vecbridge embed` CLI (cached under $VECBRIDGE_HOME/bench/migrate). For each pair OLD -> NEW, the new model's
queries search the documents as each option leaves them, scored by nDCG@10 and recall@10 as a fraction of the same
queries against the documents re-embedded by NEW:

    reembed      the reference (1.0): documents re-embedded by the new model
    stay         old-model queries against the old documents (not migrating at all)
    ceiling      Procrustes and ridge fitted on all documents paired (the paired ceiling)
    ridge@2000   a ridge map fitted on 2,000 document pairs (what the aecp tool does by default)
    unsupervised geometric: the store's own vectors against the built-in pool embedded by the new model
    public       procrustes on public pairs: 8,192 pool texts embedded by both models (`--source-encoder`)
    docs@K       geometric with K documents re-embedded as known pairs (`--pairs-from-documents K`)
    query-side   the new model's queries translated back into the old space (`--reverse`) against the old store

Beside each translator: `vecbridge migrate`'s prediction without queries (vecbridge.jobs.verify: neighbourhood
overlap on 1,000 held-out re-embedded documents) and whether it ranked migrating against staying correctly.

Throughput (`--throughput`): `vecbridge translate` store -> store of 1M vectors 384 -> 768 (Parquet, faiss,
LanceDB; 100k for Chroma and Qdrant), vectors per minute and peak RSS of the child process.

    python scripts/bench_migrate.py --retention --pairs minilm-l3:minilm-l6,minilm-l6:mpnet-base,mpnet-base:minilm-l6
    python scripts/bench_migrate.py --throughput --rows 1000000
    python scripts/bench_migrate.py --markdown rows.jsonl --plot retention.png   # the table and picture of a --log
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from align import translator_class
from vecbridge import files, paths
from vecbridge.corpora import load_corpus
from vecbridge.jobs.verify import neighbourhood_check, pseudo_queries, pseudo_query_check, recommendation
from vecbridge.stores import npy

TASKS = {"wordnet": "lemma", "gcide": "headword"}
# target-side reference vectors: pool texts embedded by the target encoder, cached by scripts/bench_translate.py
REFERENCE = {"minilm-l6": "texts-train_b-25000", "mpnet-base": "texts-train_b-25000-s1",
             "minilm-l3": "texts-train_b-25000"}
PUBLIC = "texts-eval-8192"  # pool texts embedded by every encoder: public pairs
HELD_OUT = 1000


def bench_dir() -> Path:
    d = paths.home() / "bench" / "migrate"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pseudo_file(task: str, n_docs: int, held: np.ndarray, seed: int) -> Path:
    """The held-out documents' pseudo-queries (`vecbridge migrate`'s verification), written once."""
    path = bench_dir() / f"{task}-pseudo-{n_docs}-{len(held)}-s{seed}.jsonl"
    if not path.exists():
        docs = [json.loads(line)["text"] for line in (bench_dir() / f"{task}-docs-{n_docs}.jsonl").open()]
        spans = pseudo_queries([docs[i] for i in held], seed)
        with files.staged() as stage:
            stage.file(path).write_text("".join(json.dumps({"text": t}) + "\n" for t in spans))
    return path


def task_files(task: str, n_docs: int, n_queries: int) -> tuple[Path, Path, Path]:
    """(documents.jsonl, queries.jsonl, qrels.json) of a term -> definition task, written once."""
    d = bench_dir()
    docs_p, q_p, rel_p = (d / f"{task}-docs-{n_docs}.jsonl", d / f"{task}-queries-{n_docs}-{n_queries}.jsonl",
                          d / f"{task}-qrels-{n_docs}-{n_queries}.json")
    if docs_p.exists() and q_p.exists() and rel_p.exists():
        return docs_p, q_p, rel_p
    ds = load_corpus(task, "train_a")
    seen, docs, terms = set(), [], []
    for text, term in zip(ds["text"], ds[TASKS[task]], strict=True):
        term = (term or "").replace("_", " ").strip()
        if term and text and text not in seen and len(text) > 10:
            seen.add(text)
            docs.append(text)
            terms.append(term.lower())
    order = list(range(len(docs)))
    random.Random(f"{task}:docs").shuffle(order)
    order = order[:n_docs]
    docs, terms = [docs[i] for i in order], [terms[i] for i in order]
    by_term: dict[str, list[int]] = {}
    for i, t in enumerate(terms):
        by_term.setdefault(t, []).append(i)
    queries = sorted(by_term)
    random.Random(f"{task}:queries").shuffle(queries)
    queries = queries[:n_queries]
    with files.staged() as stage:
        stage.file(docs_p).write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
        stage.file(q_p).write_text("".join(json.dumps({"text": q}) + "\n" for q in queries))
        stage.file(rel_p).write_text(json.dumps([by_term[q] for q in queries]))
    return docs_p, q_p, rel_p


def embedded(encoder: str, texts: Path) -> np.ndarray:
    out = bench_dir() / encoder / f"{texts.stem}.npy"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "vecbridge", "embed", "--encoder", encoder,
                        "--input", str(texts), "--output", str(out)], check=True)
    return npy.read_vectors(out)


def translate_cache(encoder: str, stem: str) -> np.ndarray:
    """Vectors cached by scripts/bench_translate.py (run its --prepare for the encoder if missing)."""
    path = paths.home() / "bench" / "translate" / encoder / f"{stem}.npy"
    if not path.exists():
        raise SystemExit(f"missing {path}: run scripts/bench_translate.py --prepare for {encoder} first")
    return npy.read_vectors(path)


def retrieval(queries: np.ndarray, docs: np.ndarray, qrels: list[list[int]], k: int = 10) -> dict:
    sims = queries @ docs.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, recall = [], []
    for row, rel in zip(top, qrels, strict=True):
        rel = set(rel)
        gains = np.array([1.0 if j in rel else 0.0 for j in row])
        ideal = discounts[:min(len(rel), k)].sum()
        ndcg.append(float(gains @ discounts) / ideal)
        recall.append(gains.sum() / min(len(rel), k))
    return {"ndcg10": float(np.mean(ndcg)), "recall10": float(np.mean(recall))}


def fit(method: str, src: np.ndarray, tgt: np.ndarray, pairs=None, **params):
    return translator_class(method)(**params).fit(src, tgt, pairs=pairs)


def bench_task_pair(task: str, old: str, new: str, n_docs: int, n_queries: int, seed: int, shots: list[int],
                    log_path: Path | None = None) -> list:
    docs_p, q_p, rel_p = task_files(task, n_docs, n_queries)
    qrels = json.loads(rel_p.read_text())
    od, nd = embedded(old, docs_p), embedded(new, docs_p)
    oq, nq = embedded(old, q_p), embedded(new, q_p)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(len(od), size=HELD_OUT, replace=False))
    rest = np.setdiff1d(np.arange(len(od)), held)
    pseudo = pseudo_file(task, n_docs, held, seed)
    pq_old, pq_new = embedded(old, pseudo), embedded(new, pseudo)
    reembed = retrieval(nq, nd, qrels)
    rows = []

    def row(name: str, scores: dict, **extra) -> None:
        r = {"task": task, "pair": f"{old}->{new}", "row": name, **scores,
             "ndcg_retention": scores["ndcg10"] / reembed["ndcg10"],
             "recall_retention": scores["recall10"] / reembed["recall10"], **extra}
        rows.append(r)
        print(json.dumps(r, default=float), file=sys.stderr, flush=True)
        if log_path is not None:
            with open(log_path, "a") as f:
                f.write(json.dumps(r, default=float) + "\n")

    row("reembed", reembed)
    stay = retrieval(oq, od, qrels)
    row("stay", stay)

    def translator_rows(name: str, tr, seconds: float, confidence=None) -> None:
        migrated = tr.transform(od)
        neighbourhoods = neighbourhood_check(od[held], nd[held], migrated=migrated[held],
                                             query_side=tr.inverse_transform(nd[held]))
        check = pseudo_query_check(nd[held], pq_new, migrated=migrated[held], old=od[held],
                                   queries_back=tr.inverse_transform(pq_new), queries_old=pq_old)
        verdict = (confidence or {}).get("verdict")
        rec = recommendation(check, verdict)
        scores = retrieval(nq, migrated, qrels)
        qs = retrieval(tr.inverse_transform(nq), od, qrels)
        truth = {"migrate": scores["ndcg10"], "query_side": qs["ndcg10"], "stay": stay["ndcg10"]}
        row(name, scores, train_s=round(seconds, 1), predicted=check, neighbourhoods=neighbourhoods,
            choice=rec["choice"], best=max(truth, key=truth.get),
            confidence=None if confidence is None else round(float(confidence.get("score", float("nan"))), 3),
            verdict=verdict, prediction_right=bool((truth["migrate"] > truth["stay"]) ==
                                                   (check["migrate"] > check["stay"])),
            neighbourhood_prediction_right=bool((truth["migrate"] > truth["stay"]) ==
                                                (neighbourhoods["migrate"] > neighbourhoods["stay"])))
        row(f"{name} query-side", qs, predicted_fraction=check["query_side"],
            prediction_right=bool((qs["ndcg10"] > stay["ndcg10"]) == (check["query_side"] > check["stay"])))

    t = time.perf_counter()
    translator_rows("ceiling procrustes (all pairs)", fit("procrustes", od, nd), time.perf_counter() - t)
    t = time.perf_counter()
    translator_rows("ceiling ridge (all pairs)", fit("ridge", od, nd), time.perf_counter() - t)
    sample = rng.choice(rest, size=min(2000, len(rest)), replace=False)
    t = time.perf_counter()
    translator_rows("ridge@2000", fit("ridge", od[sample], nd[sample]), time.perf_counter() - t)
    t = time.perf_counter()
    translator_rows("public pairs (procrustes, 8,192 pool texts)",
                    fit("procrustes", translate_cache(old, PUBLIC), translate_cache(new, PUBLIC)),
                    time.perf_counter() - t)
    reference = translate_cache(new, REFERENCE[new])
    t = time.perf_counter()
    tr = fit("geometric", od, reference, seed=seed)
    translator_rows("unsupervised (geometric, store vs pool)", tr, time.perf_counter() - t,
                    getattr(tr, "confidence_", None))
    for k in shots:
        picked = np.sort(rng.choice(rest, size=k, replace=False))
        tgt = np.concatenate([reference, nd[picked]])
        pairs = np.stack([picked, len(reference) + np.arange(k)], axis=1)
        t = time.perf_counter()
        tr = fit("geometric", od, tgt, pairs=pairs, seed=seed)
        translator_rows(f"docs@{k} (geometric few-shot)", tr, time.perf_counter() - t,
                        getattr(tr, "confidence_", None))
    return rows


ORDERS = {"random": ("random", None), "queries": ("queries", "all"), "queries-unseen": ("queries", "other half")}


def progressive_curves(task: str, old: str, new: str, n_docs: int, n_queries: int, seed: int,
                       checkpoints: int = 10, log_path: Path | None = None,
                       orders: tuple[str, ...] = tuple(ORDERS)) -> list[dict]:
    """`vecbridge migrate --progressive` through the library on the task's store of old-model vectors (documents
    from the task's file): the task's real queries scored against the destination at every checkpoint, as a
    fraction of re-embedding, in random order and in query-first order (the log being the measured queries, then
    the other half of them), beside staying and the bridge (the translated store, checkpoint 0)."""
    from vecbridge import jobs
    from vecbridge.jobs.progressive import Progressive

    docs_p, q_p, rel_p = task_files(task, n_docs, n_queries)
    qrels = json.loads(rel_p.read_text())
    od_path = bench_dir() / old / f"{docs_p.stem}.npy"
    embedded(old, docs_p)
    nd, nq, oq, od = embedded(new, docs_p), embedded(new, q_p), embedded(old, q_p), embedded(old, docs_p)
    half = np.arange(len(nq)) % 2 == 0
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        tmp = Path(tmp)
        halves = {"all": (q_p, np.ones(len(nq), bool)), "other half": (tmp / "log-a.jsonl", ~half)}
        texts = [json.loads(line)["text"] for line in q_p.open()]
        halves["other half"][0].write_text("".join(json.dumps({"text": t}) + "\n"
                                                   for t, h in zip(texts, half, strict=True) if h))
        tr_dir = tmp / "translator"
        for order, log_name in (ORDERS[name] for name in orders):
            measured = halves[log_name or "all"][1]
            q_rel = [r for r, m in zip(qrels, measured, strict=True) if m]
            base = retrieval(nq[measured], nd, q_rel)["ndcg10"]
            stay = retrieval(oq[measured], od, q_rel)["ndcg10"] / base
            dest = tmp / "new.npy"

            def measure(state, order=order, log_name=log_name, measured=measured, q_rel=q_rel, base=base,
                        stay=stay, dest=dest):
                now = npy.read_vectors(dest)
                r = {"task": task, "pair": f"{old}->{new}", "row": "progressive", "order": order,
                     "log": log_name, "fraction": round(state["done"] / state["documents"], 4),
                     "retention": retrieval(nq[measured], now, q_rel)["ndcg10"] / base, "stay": stay,
                     "predicted": state["checkpoints"][-1]["retention"], "seconds": round(state["seconds"], 1)}
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
                if log_path is not None:
                    with open(log_path, "a") as f:
                        f.write(json.dumps(r) + "\n")

            reuse = tr_dir.exists()
            result = jobs.migrate(str(od_path), str(dest), new, translator=str(tr_dir) if reuse else None,
                                  source_encoder=None if reuse else old, save_translator_to=None if reuse else tr_dir,
                                  seed=seed, overwrite=True, documents=str(docs_p), progress=False,
                                  progressive=Progressive(order, None if log_name is None else str(halves[log_name][0]),
                                                          -(-n_docs // checkpoints), measure),
                                  log=lambda m: print(m, file=sys.stderr))
            rows[-1]["final_provenance"] = result["progressive"]["complete"]
    return rows


def ordering_simulation(task: str, old: str, new: str, n_docs: int, n_queries: int, seed: int) -> list[dict]:
    """Query-first orders for queries the log never held, simulated on the cached vectors (no re-embedding): the
    bridge (procrustes on the public pairs, as `migrate` fits it), re-embedded rows calibrated as the job writes
    them; the log is the even queries, the odd ones are measured. Each order's retention at 10-60% re-embedded:
    the job's (best rank among each logged query's k nearest rows in both stores) at k = 10/20/50, then by how many
    logged queries reach a row, by the sum of reciprocal ranks, by the nearest logged query's similarity, and
    random."""
    from align import translator_class
    from align.vectors import unit_rows_np
    from vecbridge.jobs.progressive import calibrated, calibration

    docs_p, q_p, rel_p = task_files(task, n_docs, n_queries)
    qrels = json.loads(rel_p.read_text())
    od, nd = unit_rows_np(embedded(old, docs_p)), unit_rows_np(embedded(new, docs_p))
    oq, nq = unit_rows_np(embedded(old, q_p)), unit_rows_np(embedded(new, q_p))
    tr = translator_class("procrustes")().fit(translate_cache(old, "texts-eval-8192"),
                                              translate_cache(new, "texts-eval-8192"))
    bridge, n, rng = tr.transform(od), len(od), np.random.default_rng(seed)
    true = calibrated(nd, *calibration(nd[held := rng.choice(n, 1000, replace=False)], bridge[held]))
    log = np.arange(len(nq)) % 2 == 0
    rel = [r for r, m in zip(qrels, ~log, strict=True) if m]
    base = retrieval(nq[~log], nd, rel)["ndcg10"]
    tie = rng.random(n)

    def point(order, f):
        mixed = bridge.copy()
        mixed[order[:round(f * n)]] = true[order[:round(f * n)]]
        return round(retrieval(nq[~log], mixed, rel)["ndcg10"] / base, 4)

    orders = {"random": np.argsort(tie)}
    for k in (10, 20, 50):
        tops = [np.argsort(-(q[log] @ store.T), axis=1)[:, :k] for q, store in ((nq, bridge), (oq, od))]
        best, hits, rr = np.full(n, k), np.zeros(n), np.zeros(n)
        for top in tops:
            for r in range(k):
                best[top[:, r]] = np.minimum(best[top[:, r]], r)
                np.add.at(hits, top[:, r], 1)
                np.add.at(rr, top[:, r], 1 / (r + 1))
        orders[f"best rank, k={k}{' (the job)' if k == 10 else ''}"] = np.lexsort((tie, best))
        orders[f"logged queries reaching it, k={k}"] = np.lexsort((tie, best, -hits))
        orders[f"reciprocal rank sum, k={k}"] = np.lexsort((tie, -rr))
    orders["nearest logged query's similarity"] = np.lexsort(
        (tie, -np.maximum((oq[log] @ od.T).max(0), (nq[log] @ bridge.T).max(0))))
    stay = retrieval(oq[~log], od, rel)["ndcg10"] / base
    return [{"task": task, "pair": f"{old}->{new}", "row": "ordering", "order": name, "stay": round(stay, 4),
             **{f"{f:.0%}": point(order, f) for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)}}
            for name, order in orders.items()]


def progressive_markdown(rows: list[dict]) -> str:
    """One line per run: retention at each checkpoint (fraction re-embedded), staying beside it."""
    runs: dict = {}
    for r in rows:
        if r.get("row") == "progressive":
            runs.setdefault((r["task"], r["pair"], r["order"], r["log"]), []).append(r)
    fractions = sorted({r["fraction"] for rs in runs.values() for r in rs})
    out = ["| task | old -> new | order | stay | " + " | ".join(f"{f:.0%}" for f in fractions) + " | passes stay at |",
           "|---|---|---|---|" + "---|" * len(fractions) + "---|"]
    for (task, pair, order, log), rs in runs.items():
        by = {r["fraction"]: r["retention"] for r in rs}
        stay = rs[0]["stay"]
        cross = next((f for f in fractions if by.get(f, 0) >= stay), None)
        name = order if log is None else f"{order} (log: {'the measured queries' if log == 'all' else 'other half'})"
        out.append(f"| {task} | {pair} | {name} | {stay:.3f} | "
                   + " | ".join(f"{by[f]:.3f}" if f in by else "" for f in fractions)
                   + f" | {'never' if cross is None else f'{cross:.0%}'} |")
    return "\n".join(out)


def markdown(rows: list[dict]) -> str:
    out = ["| task | pair | row | nDCG@10 | retention (nDCG) | retention (recall@10) | predicted: migrate / "
           "query-side / stay (pseudo-queries) | choice (best measured) | prediction vs stay right | confidence | "
           "train s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("predicted")
        pred = (f"{p['migrate']:.3f} / {p['query_side']:.3f} / {p['stay']:.3f}" if p else
                (f"{r['predicted_fraction']:.3f}" if "predicted_fraction" in r else ""))
        choice = f"{r['choice']} ({r['best']})" if "choice" in r else ""
        conf = "" if r.get("confidence") is None else f"{r['confidence']:.2f} ({r['verdict']})"
        right = "" if "prediction_right" not in r else ("yes" if r["prediction_right"] else "**no**")
        out.append(f"| {r['task']} | {r['pair']} | {r['row']} | {r['ndcg10']:.3f} | {r['ndcg_retention']:.3f} | "
                   f"{r['recall_retention']:.3f} | {pred} | {choice} | {right} | {conf} | {r.get('train_s', '')} |")
    return "\n".join(out)


def throughput(rows: int, backends: list[str], small_rows: int) -> list[dict]:
    """`vecbridge translate` store -> store in a child process: vectors/minute and the child's peak RSS. The input
    store is written first by the library's own writers (random unit rows, 384 dims)."""
    results = []
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        tr_dir = tmp / "translator"
        fit("procrustes", rng.standard_normal((4096, 384), dtype=np.float32),
            rng.standard_normal((4096, 768), dtype=np.float32)).save(tr_dir)
        for backend in backends:
            n = small_rows if backend in ("chroma", "qdrant") else rows
            src, dst = {"npy": (tmp / "in.npy", tmp / "out.npy"),
                        "parquet": (tmp / "in.parquet", tmp / "out.parquet"),
                        "faiss": (f"faiss:{tmp}/in.faiss", f"faiss:{tmp}/out.faiss"),
                        "lancedb": (f"lancedb:{tmp}/lance#src", f"lancedb:{tmp}/lance#dst"),
                        "chroma": (f"chroma:{tmp}/chroma#src", f"chroma:{tmp}/chroma#dst"),
                        "qdrant": (f"qdrant:{tmp}/qdrant#src", f"qdrant:{tmp}/qdrant#dst")}[backend]
            vectors = rng.standard_normal((n, 384), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            build = tmp / "build.npy"
            npy.write_vectors(build, vectors, {"encoder": "bench-384"}, overwrite=True)
            del vectors
            if backend == "npy":
                build.rename(src)
                Path(f"{build}.json").rename(f"{src}.json")
            else:
                _copy_store(build, src)
            start = time.perf_counter()
            # /usr/bin/time -f %M: the child's own peak RSS (ru_maxrss from wait4 would carry this process's
            # memory over the fork)
            child = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "vecbridge", "translate",
                                    "--translator", str(tr_dir), "--input", str(src), "--output", str(dst),
                                    "--allow-encoder-mismatch"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
            seconds = time.perf_counter() - start
            if child.returncode:
                raise SystemExit(f"vecbridge translate failed on {backend}: {child.stderr.strip()[-500:]}")
            results.append({"backend": backend, "rows": n, "seconds": round(seconds, 2),
                            "vectors_per_minute": round(n / seconds * 60),
                            "peak_rss_mib": round(int(child.stderr.strip().splitlines()[-1]) / 1024)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def _copy_store(npy: Path, spec) -> None:
    """Write the benchmark's input store from a .npy file with the library's own writer (ids = row numbers)."""
    from vecbridge import stores

    with stores.open_reader(str(npy), "--input") as reader, \
            stores.open_writer(str(spec), "--output", dim=reader.info.dim, count=reader.info.count,
                               metric=reader.info.metric, provenance={}, overwrite=True,
                               source=reader.info) as writer:
        for block in reader.batches(16384):
            writer.write(block)
        writer.commit()


def plot(rows: list[dict], png: str) -> None:
    """The retention of each migration option in the rows (scripts/figures.py: `migrate`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from figures import migrate_figure

    print(f"figure: {migrate_figure(rows, png)}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retention", action="store_true")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--progressive", action="store_true",
                    help="the retention curve of `migrate --progressive` in random and query-first order")
    ap.add_argument("--orderings", action="store_true",
                    help="query-first orders for unseen queries, simulated on the cached vectors")
    ap.add_argument("--orders", default=",".join(ORDERS),
                    help=f"the orders of a --progressive run, in this order (default {','.join(ORDERS)})")
    ap.add_argument("--checkpoints", type=int, default=10, help="checkpoints of a --progressive run (default 10)")
    ap.add_argument("--tasks", default="wordnet,gcide")
    ap.add_argument("--pairs", default="minilm-l3:minilm-l6,minilm-l6:mpnet-base,mpnet-base:minilm-l6")
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shots", default="100,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prepare", action="store_true", help="only build and embed the task texts")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small-rows", type=int, default=100_000)
    ap.add_argument("--backends", default="npy,parquet,faiss,lancedb,chroma,qdrant")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--log", type=Path, help="append each row as a JSON line to this file as it is measured")
    ap.add_argument("--markdown", type=Path, help="print the table of the rows logged in this JSONL file")
    ap.add_argument("--plot", metavar="PNG", help="also draw the retention rows (those measured, or with --markdown "
                                                  "those logged) as a picture (scripts/figures.py)")
    args = ap.parse_args()
    if args.plot and not (args.retention or args.markdown):
        ap.error("--plot draws retention rows: give --retention or --markdown")
    result: dict = {}
    if args.markdown:
        rows = [json.loads(line) for line in args.markdown.open()]
        print(markdown(rows))
        if args.plot:
            plot(rows, args.plot)
        return
    if args.retention or args.prepare:
        pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
        encoders = sorted({e for p in pairs for e in p})
        for task in args.tasks.split(","):
            docs_p, q_p, _ = task_files(task, args.docs, args.queries)
            for enc in encoders:
                embedded(enc, q_p)
                embedded(enc, docs_p)
        if args.retention:
            rows = []
            for task in args.tasks.split(","):
                for old, new in pairs:
                    rows += bench_task_pair(task, old, new, args.docs, args.queries, args.seed,
                                            [int(s) for s in args.shots.split(",") if s], args.log)
            result["retention"] = rows
            print(markdown(rows))
            if args.plot:
                plot(rows, args.plot)
    if args.progressive:
        rows = []
        for task in args.tasks.split(","):
            for old, new in (tuple(p.split(":")) for p in args.pairs.split(",")):
                rows += progressive_curves(task, old, new, args.docs, args.queries, args.seed, args.checkpoints,
                                           args.log, tuple(args.orders.split(",")))
        result["progressive"] = rows
        print(progressive_markdown(rows))
    if args.orderings:
        rows = [r for task in args.tasks.split(",") for old, new in (tuple(p.split(":")) for p in args.pairs.split(","))
                for r in ordering_simulation(task, old, new, args.docs, args.queries, args.seed)]
        result["orderings"] = rows
        for r in rows:
            print(json.dumps(r))
    if args.throughput:
        result["throughput"] = throughput(args.rows, args.backends.split(","), args.small_rows)
    if args.json:
        print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
