"""Files on disk: checked reads, and the one write path. Every artifact vecbridge publishes (vector files and
their sidecars, translators, corpora, reports, stores) is staged beside its destination under one temp-name
scheme, checked, then published by renames, all or nothing.

Rules it enforces:
- a destination that exists is replaced only with `overwrite` and only if vecbridge wrote it (its own marker),
  never a directory with other content, never one of the job's inputs;
- staged files carry a tagged name (`.NAME.vecbridge-tmp-PID-RAND`): they are removed on every failure path
  this process sees (errors, Ctrl-C, SIGTERM), and a later run on the same destination removes those of
  processes that no longer exist (SIGKILL, power loss);
- data is written with plain writes (no memory-mapped output: a full disk is an error, not a SIGBUS) and
  fsynced before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vecbridge.errors import UserError

VECTORS_FORMAT = "vecbridge-vectors"
SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


# -- checked reads -------------------------------------------------------------------------------------
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


# -- temp names ------------------------------------------------------------------------------------------
# One scheme for every temporary thing vecbridge makes: files and folders `.NAME.vecbridge-tmp-PID-RAND[SUFFIX]`
# beside their destination, collections and tables `NAME.vecbridge-tmp-PID-RAND`. The process id lets a later
# run sweep what a dead process left; the random part keeps two runs of one process apart.
TMP_TAG = ".vecbridge-tmp-"


def tmp_name(name: str, suffix: str = "") -> str:
    """A temporary name for `name` (a collection, a table, or a file's name with its leading dot)."""
    return f"{name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def tmp_path(dest: Path, suffix: str = "") -> Path:
    """A temporary path beside `dest`, hidden (leading dot)."""
    return dest.parent / tmp_name(f".{dest.name}", suffix)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_tmp(candidate: str, name: str) -> bool:
    """Whether `candidate` is a temporary name for `name` left by a process that no longer runs."""
    prefix = f"{name}{TMP_TAG}"
    if not candidate.startswith(prefix):
        return False
    pid = candidate[len(prefix):].split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid))


def claim(path: Path) -> Path:
    """Rename a dead run's temporary file or folder to a temporary name of this process (so that no sweep takes
    it for a dead run's) and return the new path."""
    head, _, rest = path.name.partition(TMP_TAG)
    _, _, tagged = rest.partition("-")
    new = path.with_name(tmp_name(head, tagged[8:]))
    try:
        os.rename(path, new)
    except FileNotFoundError:
        raise UserError(f"the unfinished store {path} that a resume record names is gone; run without `resume` "
                        "to start over") from None
    return new


def remove(path: Path) -> None:
    """Remove a file or a folder (not following a link), whichever it is; nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_stale(dest: str | os.PathLike) -> list[Path]:
    """Remove temp files and folders left beside `dest` by processes that no longer run; return them."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    removed = [entry for entry in dest.parent.iterdir() if is_stale_tmp(entry.name, f".{dest.name}")]
    for entry in removed:
        remove(entry)
    return removed


# -- checks before any work ------------------------------------------------------------------------------
def check_parent(dest: Path) -> None:
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"cannot write {dest}: directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise UserError(f"cannot write {dest}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {dest}: directory {parent} is not writable")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _contains(folder: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def is_vecbridge_vectors(path: Path) -> bool:
    """Whether `path` is a vector file vecbridge wrote: a regular file with a sidecar that says so."""
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        return False
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    # sidecars written before the format marker always had `dim` and `count`
    return isinstance(meta, dict) and (meta.get("format") == VECTORS_FORMAT or {"dim", "count"} <= set(meta))


def _check_replace(dest: Path, overwrite: bool, what: str, right_kind: Callable[[], bool], kind: str,
                   ours: Callable[[Path], bool], not_ours: str) -> None:
    """Refuse to replace an existing `dest` without `overwrite`, of another kind, or not vecbridge's own."""
    if not overwrite:
        raise UserError(f"{what} {dest} already exists; pass `overwrite` to replace it or choose another path")
    if not right_kind():
        raise UserError(f"{what} {dest} exists and is not {kind}; vecbridge will not replace it")
    if not ours(dest):
        raise UserError(f"{what} {dest} {not_ours}")


def check_file_output(dest: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                      sidecar: bool = True, what: str = "output", marker: Callable[[Path], bool] | None = None
                      ) -> Path:
    """Refuse, before any work, an output file that cannot or must not be written.

    An existing file is replaced only with `overwrite`, only if `marker(dest)` says vecbridge wrote it
    (default: a vector file with a vecbridge sidecar), and never when it is one of `inputs`.
    """
    dest = Path(dest)
    check_parent(dest)
    if dest.is_dir():
        raise UserError(f"{what} {dest} is a directory; give a file path")
    side = sidecar_path(dest)
    if sidecar and (side.is_dir() or (side.exists() and not side.is_file())):
        raise UserError(f"cannot write the sidecar {side}: it exists and is not a regular file; remove it")
    for src in inputs:
        if _same_file(dest, Path(src)):
            raise UserError(f"{what} {dest} is the same file as the input {src}; write to another path")
    if dest.exists() or dest.is_symlink():
        _check_replace(dest, overwrite, what, dest.is_file, "a regular file", marker or is_vecbridge_vectors,
                       f"was not written by vecbridge (no vecbridge sidecar {side.name}); `overwrite` only replaces "
                       "vecbridge's own outputs: move it away or choose another path")
    elif sidecar and side.is_file() and not overwrite:
        raise UserError(f"the sidecar {side} of {what} {dest} already exists; pass `overwrite` or remove it")
    return dest


def foreign_entry(folder: Path, own: re.Pattern) -> str | None:
    """The first file or folder under `folder` (links not followed) whose path relative to it (with '/') `own`
    does not match in full: something vecbridge or its store library did not write. None when there is none."""
    for top, dirs, names in os.walk(folder):
        for name in sorted(dirs + names):
            rel = os.path.relpath(os.path.join(top, name), folder).replace(os.sep, "/")
            if not own.fullmatch(rel):
                return rel
    return None


def check_own_folder(folder: Path, own: re.Pattern, what: str, kind: str) -> None:
    """Refuse to replace `folder`, the files of a `kind` that vecbridge wrote, when it holds anything else (a
    user's file put there would be deleted with it)."""
    rel = foreign_entry(folder, own) if folder.is_dir() else None
    if rel is not None:
        raise UserError(f"{what}: the {kind} to replace holds {folder / rel}, which vecbridge did not write; "
                        f"`overwrite` only replaces vecbridge's own {kind}s with nothing else inside: move it away or "
                        "choose another destination")


def check_dir_output(dest: str | os.PathLike, overwrite: bool, is_artifact: Callable[[Path], bool], kind: str,
                     inputs: Iterable[str | os.PathLike] = (), what: str = "output", own: re.Pattern | None = None
                     ) -> Path:
    """Refuse, before any work, an output directory that cannot or must not be written.

    An existing directory is replaced only with `overwrite` and only if `is_artifact(dest)` recognises it as
    a `kind` that vecbridge wrote (its marker file, nothing else inside: `own`, where given, matches the relative
    path of everything it may hold); never one holding an input.
    """
    dest = Path(dest)
    if dest.name in ("", ".", ".."):
        raise UserError(f"{what} {dest} must name a new directory, not {str(dest)!r}")
    check_parent(dest)
    for src in inputs:
        if _contains(dest, Path(src)):
            raise UserError(f"{what} {dest} contains the input {src}; choose another directory")
    if dest.exists() or dest.is_symlink():
        _check_replace(dest, overwrite, what, lambda: dest.is_dir() and not dest.is_symlink(), f"a {kind} directory",
                       is_artifact, f"is not a {kind} that vecbridge wrote; `overwrite` only replaces vecbridge's own "
                       f"{kind}s: move it away or choose another directory")
        if own is not None:
            check_own_folder(dest, own, f"{what} {dest}", kind)
    return dest


def check_free_space(dest: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(dest.parent if str(dest.parent) else ".").free
    if needed_bytes > free:
        raise UserError(f"not enough disk space for {dest}: needs {needed_bytes / 2**20:.1f} MiB, "
                        f"{free / 2**20:.1f} MiB free; free some space or write elsewhere")


@contextlib.contextmanager
def disk_errors(dest: Path) -> Iterator[None]:
    """OS errors while writing `dest` as one-line user errors (a full disk above all)."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device while writing {dest}; nothing was published; "
                            "free some space and run again") from None
        if e.errno == errno.EDQUOT:
            raise UserError(f"disk quota exceeded while writing {dest}; nothing was published") from None
        raise UserError(f"cannot write {dest}: {e.strerror or e}") from None


# -- staging and publishing ------------------------------------------------------------------------------
class Staging:
    """Temp files and folders beside their destinations; `publish` renames all into place or none."""

    def __init__(self) -> None:
        self._moves: list[tuple[Path, Path]] = []

    def file(self, dest: str | os.PathLike) -> Path:
        """A temp path (not yet created) that `publish` renames onto `dest`."""
        dest = Path(dest)
        sweep_stale(dest)
        tmp = tmp_path(dest)
        self._moves.append((tmp, dest))
        return tmp

    def directory(self, dest: str | os.PathLike) -> Path:
        """An empty temp folder that `publish` renames onto `dest`."""
        dest = Path(dest)
        sweep_stale(dest)
        tmp = tmp_path(dest)
        tmp.mkdir()
        self._moves.append((tmp, dest))
        return tmp

    def publish(self) -> None:
        backups: list[tuple[Path, Path]] = []
        published: list[Path] = []
        try:
            for tmp, dest in self._moves:
                if not tmp.exists():
                    raise RuntimeError(f"staged {tmp} was never written")
                if dest.is_dir() and not dest.is_symlink():
                    bak = tmp_path(dest)
                    os.rename(dest, bak)
                    backups.append((bak, dest))
                elif dest.exists():
                    bak = tmp_path(dest)
                    os.link(dest, bak)  # the old file stays in place until the atomic replace below
                    backups.append((bak, dest))
                os.replace(tmp, dest)
                published.append(dest)
        except BaseException:
            for dest in published:
                remove(dest)
            for bak, dest in backups:
                with contextlib.suppress(OSError):
                    os.replace(bak, dest) if not bak.is_dir() else os.rename(bak, dest)
            raise
        for bak, _ in backups:
            remove(bak)
        self._moves = []

    def discard(self) -> None:
        for tmp, _ in self._moves:
            remove(tmp)
        self._moves = []


@contextlib.contextmanager
def staged() -> Iterator[Staging]:
    """Stage files in the block; on success they are published together, on any failure all are removed."""
    staging = Staging()
    try:
        yield staging
        staging.publish()
    finally:
        staging.discard()


# -- writers ---------------------------------------------------------------------------------------------
def write_json_file(tmp: Path, obj) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class RowFile:
    """The one `.npy` writer: a file of a known final shape written block by block. `sync` makes the rows so far
    durable; `rows` given reopens a file a killed run left at its last synced row count, the rest cut off."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str = "<f4", rows: int | None = None) -> None:
        import numpy as np

        self.path, self.dtype, self.rows = Path(path), dtype, 0
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                   "fortran_order": False, "shape": tuple(int(n) for n in shape)})
        self.header = buf.getvalue()
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        if rows is None:
            self.file = open(self.path, "wb")
            self.file.write(self.header)
            return
        self.file = open(self.path, "r+b")
        size = os.fstat(self.file.fileno()).st_size
        if self.file.read(len(self.header)) != self.header or size < len(self.header) + rows * self.row_bytes:
            self.file.close()
            raise UserError(f"the unfinished file {self.path} does not hold the {rows} rows its record says; run "
                            "without `resume` to start over")
        self.file.truncate(len(self.header) + rows * self.row_bytes)
        self.file.seek(0, os.SEEK_END)
        self.rows = rows

    def write(self, block) -> None:
        import numpy as np

        self.file.write(memoryview(np.ascontiguousarray(block, dtype=self.dtype)).cast("B"))
        self.rows += len(block)

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if not self.file.closed:
            self.sync()
            self.file.close()
