"""Defences an owner can apply to vectors before storing them, and what each costs the owner in search quality.

Each defence is fitted on the owner's vectors (`fit`), changes the stored vectors (`transform`) and says how the
owner's own queries must be changed to search them (`transform_query`). Parsed from one compact vocabulary:
`noise:0.01,int8,binary,pq:48,dims:128,rotation`.
"""

from __future__ import annotations

import inspect

import faiss
import numpy as np

from align.vectors import unit_rows_np
from attacks.errors import AttackError


class Defence:
    name = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @property
    def params(self) -> dict:
        """The defence's own settings (its `__init__` arguments but the seed), scikit-learn style."""
        names = [k for k in inspect.signature(type(self).__init__).parameters if k not in ("self", "seed")]
        return {k: getattr(self, k) for k in names}

    @property
    def label(self) -> str:
        return ":".join([self.name, *(str(v) for v in self.params.values())])

    def fit(self, x: np.ndarray) -> Defence:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform_query(self, q: np.ndarray) -> np.ndarray:
        return unit_rows_np(q)


class GaussianNoise(Defence):
    """Each stored vector plus N(0, scale^2) per dimension, renormalised (cosine stores keep unit rows)."""

    name = "noise"

    def __init__(self, scale: float, seed: int = 0) -> None:
        super().__init__(seed)
        self.scale = scale

    def transform(self, x):
        rng = np.random.default_rng(self.seed)
        return unit_rows_np(x + rng.normal(0.0, self.scale, size=x.shape))


class Int8(Defence):
    """Scalar quantisation to int8 with one scale for the whole store (read back as floats)."""

    name = "int8"

    def fit(self, x):
        self.scale_ = float(np.abs(x).max()) / 127 or 1.0
        return self

    def transform(self, x):
        return unit_rows_np(np.clip(np.round(x / self.scale_), -127, 127) * self.scale_)


class Binary(Defence):
    """One bit per dimension (the sign), read back as +-1/sqrt(dim)."""

    name = "binary"

    def transform(self, x):
        return unit_rows_np(np.where(x >= 0, 1.0, -1.0))


class ProductQuantisation(Defence):
    """faiss product quantisation with `m` sub-quantisers of 8 bits, trained on the store; stored vectors are
    their reconstructions."""

    name = "pq"

    def __init__(self, m: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.m = m

    def fit(self, x):
        if x.shape[1] % self.m:
            raise AttackError(f"pq:{self.m}: the vectors' {x.shape[1]} dims are not a multiple of {self.m}; "
                              f"give a divisor of {x.shape[1]}")
        bits = 8 if len(x) >= 256 * 4 else max(1, int(np.log2(max(len(x) // 4, 2))))
        self.pq_ = faiss.ProductQuantizer(x.shape[1], self.m, bits)
        self.pq_.cp.seed = self.seed
        self.pq_.cp.min_points_per_centroid = 1  # small stores are the point: no warning for few rows per code
        self.pq_.train(np.ascontiguousarray(x, dtype=np.float32))
        return self

    def transform(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return unit_rows_np(self.pq_.decode(self.pq_.compute_codes(x)))


class DimensionReduction(Defence):
    """PCA to `dims` dimensions fitted on the store; queries are projected the same way."""

    name = "dims"

    def __init__(self, dims: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.dims = dims

    def fit(self, x):
        if not 1 <= self.dims < x.shape[1] or self.dims > len(x):
            raise AttackError(f"dims:{self.dims} must be below the vectors' {x.shape[1]} dims and at most their "
                              f"{len(x)} rows")
        self.mean_ = x.mean(axis=0)
        self.components_ = np.linalg.svd(x - self.mean_, full_matrices=False)[2][:self.dims].T.astype(np.float32)
        return self

    def transform(self, x):
        return unit_rows_np((x - self.mean_) @ self.components_)

    transform_query = transform


class SecretRotation(Defence):
    """A random orthogonal matrix only the owner holds: every distance is kept, so search is unchanged."""

    name = "rotation"

    def fit(self, x):
        q, r = np.linalg.qr(np.random.default_rng(self.seed).normal(size=(x.shape[1], x.shape[1])))
        self.rotation_ = (q * np.sign(np.diag(r))).astype(np.float32)
        return self

    def transform(self, x):
        return unit_rows_np(x @ self.rotation_)

    transform_query = transform


def _number(kind: str, raw: str, cast):
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or not np.isfinite(value) or value <= 0:
        what = "a positive integer" if cast is int else "a positive number"
        raise AttackError(f"defence {kind}:{raw}: the parameter must be {what}")
    return value


def parse_defences(text: str, seed: int = 0) -> list[Defence]:
    """`noise:SCALE`, `int8`, `binary`, `pq:M`, `dims:K`, `rotation`, comma-separated, each once."""
    makers = {"noise": lambda p: GaussianNoise(_number("noise", p, float), seed),
              "pq": lambda p: ProductQuantisation(_number("pq", p, int), seed),
              "dims": lambda p: DimensionReduction(_number("dims", p, int), seed),
              "int8": lambda p: Int8(seed), "binary": lambda p: Binary(seed),
              "rotation": lambda p: SecretRotation(seed)}
    out, labels = [], set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise AttackError(f"--defenses {text!r} has an empty entry; write e.g. noise:0.01,int8,pq:48")
        kind, sep, param = part.partition(":")
        if kind not in makers:
            raise AttackError(f"unknown defence {kind!r}; choose from noise:SCALE, int8, binary, pq:M, dims:K, "
                              "rotation")
        takes = kind in ("noise", "pq", "dims")
        if takes and not sep:
            raise AttackError(f"defence {kind} needs a parameter, e.g. {kind}:" +
                              {"noise": "0.01", "pq": "48", "dims": "128"}[kind])
        if not takes and sep:
            raise AttackError(f"defence {kind} takes no parameter; write just {kind}")
        defence = makers[kind](param)
        if defence.label in labels:
            raise AttackError(f"defence {defence.label} is given twice")
        labels.add(defence.label)
        out.append(defence)
    return out


def neighbour_overlap(index_vectors: np.ndarray, queries: np.ndarray, defended: np.ndarray,
                      defended_queries: np.ndarray, k: int = 10, exclude_self: bool = False) -> float:
    """Mean overlap@k of each query's nearest stored rows before and after the defence (1.0: search unchanged).
    `exclude_self`: the queries are the stored rows themselves, whose own row is not counted."""
    extra = 1 if exclude_self else 0
    k = min(k, len(index_vectors) - extra)

    def neighbours(base, q):
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(np.ascontiguousarray(base, dtype=np.float32))
        found = index.search(np.ascontiguousarray(q, dtype=np.float32), k + extra)[1]
        if exclude_self:
            return [[j for j in row if j != i][:k] for i, row in enumerate(found)]
        return found.tolist()

    before, after = neighbours(index_vectors, queries), neighbours(defended, defended_queries)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(before, after, strict=True)]))
