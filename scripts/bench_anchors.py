"""The published unsupervised anchors on exactly the translator benchmark's vectors, beside `geometric` and the
paired bound: top-1 / mean rank / seconds per method, pair and size.

The anchors' code is never part of this repository: give the folder of a downloaded copy by flag; a method whose
copy is not there is reported as skipped.

- `mini-vec2vec` (guy-dar/mini-vec2vec): `--mini-vec2vec DIR` holds its notebook `linear_vec2vec.ipynb`. Its code
  cells are run as published (anchors, 100 refinement rounds, cluster correction), except the two that download
  its own NQ embeddings and split them: those are replaced by our vectors, preprocessed as that cell does (each
  side centred on its training mean and L2-normalised, the eval rows with the same means).
- `rosetta` (dominik-schnaus/unpaired-rosetta): `--rosetta DIR` holds its package `unpaired_rosetta` (MPOpt comes
  from `pylibmgm`, importable from DIR or the environment). `WassersteinProcrustes()` with its published defaults
  (C = 30 centres, S = 30 restarts, b = 10,000, R = 100); `--rosetta-params` overrides them (e.g.
  `num_restarts=8,batch_size=2000`), and the row says which were used.
- `geometric`: vecbridge's default translator, its label-free verdict beside it.
- `bound`: the best of procrustes / ridge fitted on the same N source texts embedded by both models.

Data: bench_translate's cache ($VECBRIDGE_HOME/bench/translate): N `train_a` texts in the source space, N other
(`train_b`) texts in the target space, scored on the 8,192 held-out `eval` texts embedded by both (top-1 among
8,192; chance 0.0001). Vectors missing from the cache are embedded by bench_translate (`vecbridge embed`); a
training set larger than the cached one is grown from it (only the new texts are embedded). e5-small's input
convention is part of its name: `e5-small` (`passage: `), `e5-small:none` (no prefix), `e5-small:query`.

    python scripts/bench_anchors.py --pairs e5-small:minilm-l6,minilm-l3:minilm-l6 --sizes 10000 \\
        --mini-vec2vec /work/anchors/mini-vec2vec --rosetta /work/anchors/unpaired-rosetta --json
    python scripts/bench_anchors.py --pairs e5-small:none:minilm-l6 --sizes 10000 --methods bound,geometric
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import bench_dir, embedded_file, text_file, vectors  # noqa: E402

from align import translator_class  # noqa: E402
from align.metrics import evaluate  # noqa: E402
from encoders.e5 import TEXT_PREFIXES  # noqa: E402
from vecbridge.jobs.embedding import input_fingerprint  # noqa: E402
from vecbridge.stores import npy  # noqa: E402

METHODS = ("bound", "geometric", "mini-vec2vec", "rosetta")
# `geometric@K` / `procrustes@K` / `ridge@K`: K known pairs (the first K train_a texts embedded by both);
# `geometric/PARAM=VALUE`: a translator parameter
# the notebook's cells that load and split its own NQ embeddings: replaced by our vectors
NOTEBOOK_DATA_CELLS = ("hf_hub_download", "embed_A, embed_B =")


def centred_units(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Rows centred on `train`'s mean and L2-normalised (both anchors preprocess this way)."""
    mean = train.mean(0)
    return [(a - mean) / np.maximum(np.linalg.norm(a - mean, axis=1, keepdims=True), 1e-10)
            for a in (train, *others)]


def scored(pred: np.ndarray, target: np.ndarray, seconds: float, **extra) -> dict:
    m = evaluate(pred, target, pool=len(target))
    return {"top1": round(m["top1"], 4), "mean_rank": round(m["mean_rank"], 1), "mean_cosine":
            round(m["mean_cosine"], 4), "seconds": round(seconds, 1), **extra}


def run_bound(data: dict, seed: int) -> dict:
    best = None
    for name in ("procrustes", "ridge"):
        start = time.perf_counter()
        model = translator_class(name)().fit(data["src_pairs"], data["tgt_pairs"])
        row = scored(model.transform(data["src_eval"]), data["tgt_eval"], time.perf_counter() - start, paired=name)
        best = row if best is None or row["top1"] > best["top1"] else best
    return best


def run_geometric(data: dict, seed: int, shots: int = 0, params: dict | None = None) -> dict:
    """`geometric` unsupervised, or given the first `shots` train_a texts embedded by both (few-shot)."""
    pairs = (data["src_pairs"][:shots], data["tgt_pairs"][:shots]) if shots else None
    start = time.perf_counter()
    model = translator_class("geometric")(seed=seed, verbose=False, **(params or {})).fit(
        data["src_a"], data["tgt_b"], pairs=pairs)
    conf = model.confidence_
    stages = model.fit_report_["stages"]
    init = stages["init"]
    extra = {"validation_top1": conf["validation"]["top1"]} if "validation" in conf else {}
    return scored(model.transform(data["src_eval"]), data["tgt_eval"], time.perf_counter() - start,
                  verdict=conf["verdict"], confidence=round(conf["score"], 3), start=init["chosen"],
                  start_passed=init["passed"], stage_seconds={k: round(v["seconds"], 1) for k, v in stages.items()
                                                              if isinstance(v, dict) and "seconds" in v}, **extra)


def run_paired(data: dict, name: str, shots: int) -> dict:
    """A paired method fitted on the first `shots` train_a pairs alone: what those pairs give without the rest."""
    start = time.perf_counter()
    model = translator_class(name)().fit(data["src_pairs"][:shots], data["tgt_pairs"][:shots])
    return scored(model.transform(data["src_eval"]), data["tgt_eval"], time.perf_counter() - start)


def notebook_cells(folder: Path) -> list[str]:
    """mini-vec2vec's code cells up to its final evaluation, without the cells that load its own data."""
    nb = json.loads((folder / "linear_vec2vec.ipynb").read_text())
    cells = []
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "Final Evaluation" in text:
            break
        if cell["cell_type"] != "code" or any(marker in text for marker in NOTEBOOK_DATA_CELLS):
            continue
        # its loader's import, unused once the data cells are replaced (`datasets` is not installed here)
        cells.append(text.replace("from datasets import load_dataset\n", ""))
    return cells


def run_mini_vec2vec(data: dict, seed: int, folder: Path) -> dict:
    import torch

    cells = notebook_cells(folder)
    xa, xe = centred_units(data["src_a"], data["src_eval"])
    yb, ye = centred_units(data["tgt_b"], data["tgt_eval"])
    torch.manual_seed(seed)
    np.random.seed(seed)
    namespace = {"__name__": "mini_vec2vec"}
    start = time.perf_counter()
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        exec(cells[0], namespace)  # imports and helpers
        namespace.update(X_train=torch.from_numpy(xa), Y_train=torch.from_numpy(yb),
                         X_eval=torch.from_numpy(xe), Y_eval=torch.from_numpy(ye))
        for cell in cells[1:]:
            exec(cell, namespace)
    seconds = time.perf_counter() - start
    w = namespace["W"].numpy()
    return scored(xe @ w, ye, seconds, settings="notebook as published")


def run_rosetta(data: dict, seed: int, folder: Path, params: dict) -> dict:
    import torch

    sys.path.insert(0, str(folder))
    from unpaired_rosetta import WassersteinProcrustes

    aligner = WassersteinProcrustes(**params)
    start = time.perf_counter()
    aligner.fit(torch.from_numpy(data["src_a"]), torch.from_numpy(data["tgt_b"]), randomness=seed)
    seconds = time.perf_counter() - start
    pred = aligner.transform(torch.from_numpy(data["src_eval"])).numpy()
    _, ye = centred_units(data["tgt_b"], data["tgt_eval"])
    return scored(pred, ye, seconds, settings={"num_clusters": aligner.num_clusters,
                                               "num_restarts": aligner.num_restarts,
                                               "batch_size": aligner.batch_size,
                                               "num_iterations": aligner.num_iterations})


def grown_vectors(encoder: str, name: str, n: int) -> np.ndarray:
    """bench_translate's `vectors`, except that a training set larger than every cached one is grown from the
    largest cached one (a prefix of the same shuffle): only the texts past it are embedded (`vecbridge embed`, into
    `tail-NAME-M-N.npy`), and the two are joined into the usual `texts-NAME-N.npy`, its sidecar naming both parts.
    e5-small embeds ~20 texts/s here: 10,000 -> 100,000 saves the 10,000 already paid for."""
    folder = bench_dir() / encoder
    sizes = [int(p.stem.rsplit("-", 1)[1]) for p in folder.glob(f"texts-{name}-*.npy")
             if p.stem.rsplit("-", 1)[1].isdigit()]
    if not name.startswith("train") or not sizes or max(sizes) >= n:
        return vectors(encoder, name, n)
    m = max(sizes)
    head_path = folder / f"texts-{name}-{m}.npy"
    lines = text_file(name, n).read_text().splitlines(keepends=True)
    tail = bench_dir() / f"tail-{name}-{m}-{n}.jsonl"
    if not tail.exists():
        tail.write_text("".join(lines[m:]))
    head, rest = npy.read_vectors(head_path), embedded_file(encoder, tail)
    texts = [json.loads(line)["text"] for line in lines]
    parts = [npy.read_sidecar(head_path), npy.read_sidecar(folder / f"{tail.stem}.npy")]
    if parts[0].get("input_sha256") != input_fingerprint(texts[:m]):
        raise SystemExit(f"{head_path} is not the first {m} texts of {name}; delete it")
    meta = {**{k: v for k, v in parts[1].items() if k != "vecbridge"}, "count": n,
            "source": str(text_file(name, n)), "input_sha256": input_fingerprint(texts),
            "joined_from": [str(head_path), str(tail)]}
    out = folder / f"texts-{name}-{n}.npy"
    npy.write_vectors(out, np.concatenate([head, rest]), meta=meta)
    return npy.read_vectors(out)


def pair_data(src: str, tgt: str, n: int, swap: bool = False) -> dict:
    """`src_a` / `tgt_b`: the unpaired training sets (source: train_a, target: train_b; `swap`: the other way
    round, so an encoder embedded on train_a alone can be the target); `src_pairs` / `tgt_pairs`: train_a
    embedded by both (the bound's and the few-shot pairs' texts); the eval sets."""
    src_pairs, tgt_pairs = grown_vectors(src, "train_a", n), grown_vectors(tgt, "train_a", n)
    return {"src_a": grown_vectors(src, "train_b", n) if swap else src_pairs,
            "tgt_b": tgt_pairs if swap else grown_vectors(tgt, "train_b", n),
            "src_pairs": src_pairs, "tgt_pairs": tgt_pairs,
            "src_eval": vectors(src, "eval", n), "tgt_eval": vectors(tgt, "eval", n)}


def geometry(src: str, tgt: str, n: int = 2000, k: int = 10) -> dict:
    """How alike the two spaces are on the same `n` eval texts (the structure an unsupervised map must find):
    each side's mean-vector norm (a shared direction, 0 for an isotropic space), the correlation of the centred
    pairwise cosines, and the share of each text's `k` nearest texts that both spaces agree on."""
    xs, ys = (centred_units(vectors(e, "eval", n)[:n])[0] for e in (src, tgt))
    upper = np.triu_indices(n, 1)
    grams = [(a @ a.T) for a in (xs, ys)]
    for g in grams:
        np.fill_diagonal(g, -np.inf)
    near = [set(map(tuple, np.c_[np.repeat(np.arange(n), k), np.argsort(-g, 1)[:, :k].ravel()])) for g in grams]
    return {"pair": f"{src}->{tgt}", "texts": n,
            "mean_norm": [round(float(np.linalg.norm(vectors(e, "eval", n)[:n].mean(0))), 3) for e in (src, tgt)],
            "gram_corr": round(float(np.corrcoef(grams[0][upper], grams[1][upper])[0, 1]), 3),
            f"knn{k}_overlap": round(len(near[0] & near[1]) / (n * k), 3)}


def encoder_pair(text: str) -> tuple[str, str]:
    """`SRC:TGT`, where either may carry e5-small's prefix option (`e5-small:none:minilm-l6`)."""
    names: list[str] = []
    for part in text.split(":"):
        if part in TEXT_PREFIXES and names:
            names[-1] += f":{part}"
        else:
            names.append(part)
    if len(names) != 2:
        raise SystemExit(f"--pairs: {text!r} is not SOURCE:TARGET")
    return names[0], names[1]


def parse_params(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = int(value) if value.isdigit() else float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="minilm-l3:minilm-l6,e5-small:minilm-l6,minilm-l6:e5-small")
    ap.add_argument("--sizes", default="10000", help="comma-separated vectors per side (N)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--mini-vec2vec", type=Path, help="folder of a mini-vec2vec copy (its notebook)")
    ap.add_argument("--rosetta", type=Path, help="folder holding the `unpaired_rosetta` package")
    ap.add_argument("--rosetta-params", default="", help="WassersteinProcrustes overrides, e.g. num_restarts=8")
    ap.add_argument("--swap-sets", action="store_true",
                    help="unpaired source on train_b, target on train_a (a target embedded on train_a only)")
    ap.add_argument("--geometry", action="store_true",
                    help="only compare the two spaces on 2,000 eval texts (shared direction, pairwise cosines, 10-NN)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.geometry:
        for pair in args.pairs.split(","):
            print(json.dumps(geometry(*encoder_pair(pair))))
        return
    methods = args.methods.split(",")
    unknown = {m for m in methods if m.split("@")[0].split("/")[0] not in (*METHODS, "procrustes", "ridge")}
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    folders = {"mini-vec2vec": (args.mini_vec2vec, "linear_vec2vec.ipynb"),
               "rosetta": (args.rosetta, "unpaired_rosetta/__init__.py")}
    rows = []
    for pair in args.pairs.split(","):
        src, tgt = encoder_pair(pair)
        for n in map(int, args.sizes.split(",")):
            data = pair_data(src, tgt, n, args.swap_sets)
            for method in methods:
                name, _, rest = method.partition("@")
                name, *params = name.split("/")
                shots, *more = rest.split("/") if rest else ("0",)
                params = parse_params(",".join([*params, *more]))
                for seed in range(args.seeds if name in ("geometric", "mini-vec2vec", "rosetta") else 1):
                    row = {"pair": f"{src}->{tgt}", "n": n, "method": method, "seed": seed,
                           "sets": "train_b->train_a" if args.swap_sets else "train_a->train_b"}
                    folder, marker = folders.get(method, (None, None))
                    if marker and (folder is None or not (folder / marker).exists()):
                        row["skipped"] = f"no copy given (--{method} DIR with {marker})"
                    elif method == "bound":
                        row |= run_bound(data, seed)
                    elif name == "geometric":
                        row |= run_geometric(data, seed, int(shots), params)
                    elif name in ("procrustes", "ridge"):
                        row |= run_paired(data, name, int(shots))
                    elif method == "mini-vec2vec":
                        row |= run_mini_vec2vec(data, seed, folder)
                    else:
                        row |= run_rosetta(data, seed, folder, parse_params(args.rosetta_params))
                    row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    (bench_dir() / f"anchors-{int(time.time())}.json").write_text(json.dumps(rows, indent=1))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(" | ".join(str(r.get(k, "")) for k in ("pair", "n", "method", "seed", "top1", "mean_rank",
                                                         "seconds", "verdict", "skipped")))


if __name__ == "__main__":
    main()
