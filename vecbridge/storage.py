"""Vector files: the one place that reads `.npy` + JSON sidecar files, and writes them through `safe_write`.

Readers check the file before anything is loaded (a regular file, a float 2-D .npy whose header matches its
size) and memory-map it; rows are validated by align's one vector validator where they enter a job.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np

from align.vectors import check_vectors
from vecbridge import safe_write
from vecbridge.errors import UserError
from vecbridge.safe_write import VECTORS_FORMAT, sidecar_path

__all__ = ["check_regular_file", "open_vectors", "read_json", "read_sidecar", "read_vectors", "sidecar_path",
           "write_vectors", "vectors_meta"]


def check_regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path if it is an existing regular file (following links), else a one-line error."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} {path} is a directory; give a file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path} is not readable (permission denied)")
    return path


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON object from a regular UTF-8 file, or a one-line error that says what is wrong with it."""
    path = check_regular_file(path, what)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {e.start}); the file is corrupt") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno}); the file is corrupt") \
            from None
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} must hold a JSON object, not {type(obj).__name__}")
    return obj


def read_sidecar(path: str | os.PathLike) -> dict:
    """The sidecar of vector file `path` ({} when there is none)."""
    side = sidecar_path(path)
    if not side.exists() and not side.is_symlink():
        return {}
    return read_json(side, "sidecar")


def open_vectors(path: str | os.PathLike, name: str = "input") -> np.ndarray:
    """Memory-map a 2-D float .npy file without reading it; checks the file, rank, dtype and emptiness."""
    path = check_regular_file(path, name)
    if path.suffix != ".npy":
        raise UserError(f"{name} {path} is not a .npy file; vecbridge reads vectors from .npy files "
                        "(numpy.save of a float32 array, one row per item)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{name} {path} is not a readable .npy array ({reason}); it may be truncated") from None
    if not isinstance(arr, np.ndarray):
        raise UserError(f"{name} {path} is not a single .npy array")
    if arr.ndim != 2:
        raise UserError(f"{name} {path} has shape {arr.shape}; expected a 2-D array (items x dims)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UserError(f"{name} {path} has dtype {arr.dtype}; expected float vectors (float32)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{name} {path} is empty (shape {arr.shape})")
    return arr


def read_vectors(path: str | os.PathLike, name: str = "input", min_rows: int = 1) -> np.ndarray:
    """A whole vector file in memory as float32, every row validated."""
    arr = np.array(open_vectors(path, name), dtype=np.float32)  # in memory and writable, not the mapped file
    return check_vectors(arr, f"{name} {path}", min_rows=min_rows)


def vectors_meta(meta: dict | None, vectors_shape: tuple[int, int]) -> dict:
    """A sidecar: the caller's metadata plus the format marker, dim and count (what marks vecbridge's files)."""
    return {**(meta or {}), "format": VECTORS_FORMAT, "dim": int(vectors_shape[1]), "count": int(vectors_shape[0])}


def write_vectors(path: str | os.PathLike, vectors: np.ndarray, meta: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write float32 rows to `path` (.npy) and their sidecar `path.json`, published together."""
    path = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise UserError(f"cannot write {path}: vectors must be 2-D, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise UserError(f"refusing to write {path}: the vectors contain NaN or inf")
    safe_write.check_file_output(path, overwrite)
    with safe_write.disk_errors(path), safe_write.staged() as stage:
        with safe_write.npy_file(stage.file(path), *vectors.shape) as f:
            f.write(vectors.astype("<f4", copy=False).tobytes())
        safe_write.write_json_file(stage.file(sidecar_path(path)), vectors_meta(meta, vectors.shape))
    return path
