"""Where vecbridge keeps its caches: `$VECBRIDGE_HOME`, else `$XDG_CACHE_HOME/vecbridge`, else ~/.cache/vecbridge."""

import os
from pathlib import Path

from vecbridge.errors import UserError


def home() -> Path:
    env = os.environ.get("VECBRIDGE_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(xdg).expanduser() / "vecbridge"
    if path.exists() and not path.is_dir():
        source = "VECBRIDGE_HOME" if env else "the cache directory"
        raise UserError(f"{source} {path} is not a directory; point VECBRIDGE_HOME at a directory")
    return path


def corpora_dir() -> Path:
    return home() / "corpora"


def models_dir() -> Path:
    return home() / "models"


def downloads_dir() -> Path:
    return home() / "downloads"
