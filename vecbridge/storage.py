"""Storage I/O: the one place that reads and writes vector files (.npy + JSON sidecar), always atomically.

Readers validate once at the boundary (rank, dtype, finiteness, zero rows) and memory-map large inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge.errors import UserError

SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"output {path} already exists; pass --overwrite to replace it or choose another path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: directory {parent} is not writable")


def write_json(path: str | os.PathLike, obj: dict, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); the file is corrupt") from None


def write_vectors(path: str | os.PathLike, vectors: np.ndarray, meta: dict | None = None,
                  overwrite: bool = False) -> None:
    """Write float32 rows to `path` (.npy) and, if given, `meta` to the sidecar `path.json`, both atomically."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, vectors)
    if meta is not None:
        write_json(sidecar_path(path), meta)


def open_vectors(path: str | os.PathLike, name: str = "input") -> np.ndarray:
    """Memory-map a 2-D float .npy file without reading it; checks rank, dtype and emptiness only."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{name} {path} does not exist")
    if path.suffix != ".npy":
        raise UserError(f"{name} {path} is not a .npy file; vecbridge reads vectors from .npy files "
                        "(numpy.save of a float32 array, one row per item)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"{name} {path} is not a readable .npy array ({e})") from None
    if arr.ndim != 2:
        raise UserError(f"{name} {path} has shape {arr.shape}; expected a 2-D array (items x dims)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UserError(f"{name} {path} has dtype {arr.dtype}; expected float vectors (float32)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{name} {path} is empty (shape {arr.shape})")
    return arr


def check_rows(block: np.ndarray, name: str = "input", offset: int = 0) -> np.ndarray:
    """Reject NaN/inf and all-zero rows (they have no direction to translate); return float32."""
    block = np.asarray(block, dtype=np.float32)
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise UserError(f"{name}: row {offset + int(np.argmax(bad))} contains NaN or inf; "
                        f"{int(bad.sum())} such rows in this block; remove or re-embed them")
    zero = ~block.any(axis=1)
    if zero.any():
        raise UserError(f"{name}: row {offset + int(np.argmax(zero))} is all zeros; "
                        f"{int(zero.sum())} such rows in this block; zero vectors have no direction")
    return block


def read_vectors(path: str | os.PathLike, name: str = "input", chunk: int = 65536) -> np.ndarray:
    """Read a whole vector file into memory as float32, validated row by row."""
    arr = open_vectors(path, name)
    return np.concatenate([check_rows(arr[i:i + chunk], name, i) for i in range(0, arr.shape[0], chunk)])


def read_sidecar(path: str | os.PathLike) -> dict:
    side = sidecar_path(path)
    return read_json(side) if side.exists() else {}
