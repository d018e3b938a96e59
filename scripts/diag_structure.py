"""How much similarity structure do two encoders share on the *same* texts, after each normalisation of the rows?

A diagnosis for the unsupervised translator (issue 16), paired on purpose: for each pair of encoders, the Pearson
correlation of the two cosine matrices (upper triangles) and the top-10 neighbour overlap, on the first N eval
texts of bench_translate's cache, after: centring + unit length (what `geometric` matches on), iterative
normalisation (centre + unit, 5 times), and PCA whitening of strength p (eigenvalue^-p/2, with eps x the mean
eigenvalue added). A normalisation that raised the shared structure of the far pairs would help their start.

    python scripts/diag_structure.py --encoders minilm-l3,minilm-l6,mpnet-base,e5-small --rows 3000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def centred(x: np.ndarray, rounds: int = 1) -> np.ndarray:
    for _ in range(rounds):
        x = unit(x - x.mean(0))
    return x


def whitened(x: np.ndarray, p: float, eps: float = 0.0) -> np.ndarray:
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    lam = s**2 / len(x)
    return unit((x @ vt.T) * (lam + eps * lam.mean()) ** (-p / 2))


def shared(a: np.ndarray, b: np.ndarray) -> dict:
    ka, kb = a @ a.T, b @ b.T
    iu = np.triu_indices(len(a), 1)
    na, nb = np.argsort(-ka, 1)[:, 1:11], np.argsort(-kb, 1)[:, 1:11]
    overlap = np.mean([len(set(p) & set(q)) / 10 for p, q in zip(na, nb, strict=True)])
    return {"correlation": round(float(np.corrcoef(ka[iu], kb[iu])[0, 1]), 3), "overlap10": round(float(overlap), 3)}


VARIANTS = {
    "centred": lambda x: centred(x),
    "iterative x5": lambda x: centred(x, 5),
    "whiten p=0.5": lambda x: whitened(x, 0.5),
    "whiten p=1 eps=0.1": lambda x: whitened(x, 1.0, 0.1),
    "whiten p=1 eps=0.01": lambda x: whitened(x, 1.0, 0.01),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default="minilm-l3,minilm-l6,mpnet-base,e5-small")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--cache", default=None, help="bench_translate's cache (default: $VECBRIDGE_HOME/bench/translate)")
    args = ap.parse_args()
    home = Path(os.environ.get("VECBRIDGE_HOME", Path.home() / ".cache" / "vecbridge"))
    cache = Path(args.cache) if args.cache else home / "bench" / "translate"
    vectors = {}
    for name in args.encoders.split(","):
        path = cache / name / "texts-eval-8192.npy"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run bench_translate.py --prepare {name} --sets eval first")
        vectors[name] = np.load(path)[:args.rows].astype(np.float64)
    for a, b in itertools.combinations(vectors, 2):
        row = {k: shared(f(vectors[a]), f(vectors[b])) for k, f in VARIANTS.items()}
        print(json.dumps({"pair": f"{a} / {b}", **row}), flush=True)


if __name__ == "__main__":
    main()
