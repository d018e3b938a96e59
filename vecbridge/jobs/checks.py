"""Checks that several jobs share, each written once: encoder names, a translator's two directions, whether
vectors belong to a translator's input space, and whether two store specs name the same store."""

from __future__ import annotations

import os

from align import Translator
from encoders.registry import ENCODERS, PREFIXES
from vecbridge.errors import UserError


def installed_encoders() -> dict[str, bool]:
    """Every built-in encoder name -> whether its packages are installed."""
    return {name: entry.installed() for name, entry in ENCODERS.items()}


def check_encoder(name: str, what: str = "encoder", builtin: bool = False) -> None:
    """Refuse, without loading anything, an encoder name the registry does not know or a built-in that is not
    installed. `builtin`: prefixed names (`hf:<model>`) are refused too (jobs that cache built-in corpora)."""
    entry = ENCODERS.get(name)
    if entry is None:
        prefix, sep, rest = name.partition(":")
        if not builtin and sep and prefix in PREFIXES and rest:
            return
        known = ", ".join([*ENCODERS, *([] if builtin else [f"{p}:<model>" for p in PREFIXES])])
        raise UserError(f"unknown encoder {name!r} for {what}; known encoders: {known}")
    if not entry.installed():
        extra = "pip install 'vecbridge[models]'" if entry.extra == "models" else "pip install vecbridge"
        raise UserError(f"encoder {name!r} ({what}) is not installed; run: {extra}")


def direction(translator: Translator, reverse: bool) -> tuple[int, int, str | None, str | None]:
    """(input dim, output dim, input encoder, output encoder) of one direction of `translator`."""
    config = getattr(translator, "config_", {}) or {}
    if reverse:
        return (translator.dim_target_, translator.dim_source_, config.get("target_encoder"),
                config.get("source_encoder"))
    return translator.dim_source_, translator.dim_target_, config.get("source_encoder"), config.get("target_encoder")


def check_space(translator: Translator, where: str, dim: int, encoder: str | None, reverse: bool = False,
                allow_mismatch: bool = False) -> None:
    """Refuse vectors (`where`, e.g. "input x.npy") of another dim than the translator's input side, or embedded
    by another encoder than the one it was trained on (unless `allow_mismatch`)."""
    dim_in, _, encoder_in, _ = direction(translator, reverse)
    side = "target" if reverse else "source"
    if dim != dim_in:
        hint = " (vectors of the translator's other space need `reverse`)" if dim == direction(
            translator, not reverse)[0] else ""
        raise UserError(f"{where} has {dim} dims but the translator's {side} space has {dim_in}{hint}")
    if encoder and encoder_in and encoder != encoder_in and not allow_mismatch:
        raise UserError(f"{where} was embedded by {encoder!r} but the translator's {side} space is {encoder_in!r}; "
                        f"translate vectors of {encoder_in!r} (or pass `allow_encoder_mismatch`)")


def same_store(a, b) -> bool:
    """Whether two parsed store specs name one store (the same backend, collection and path or server)."""
    if a.scheme != b.scheme or a.name != b.name:
        return False
    if a.url is not None or b.url is not None:
        return a.url == b.url
    try:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    except OSError:
        return False
