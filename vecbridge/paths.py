"""Where vecbridge keeps its caches: `$VECBRIDGE_HOME`, else `$XDG_CACHE_HOME/vecbridge`, else ~/.cache/vecbridge."""

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("VECBRIDGE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "vecbridge"


def corpora_dir() -> Path:
    return home() / "corpora"


def models_dir() -> Path:
    return home() / "models"


def downloads_dir() -> Path:
    return home() / "downloads"
