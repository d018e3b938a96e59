"""Vector stores through a translator: `translate_store` (any store -> any store, ids, documents and metadata
carried over, the destination swapped in only when complete) and `inspect_store`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tqdm import tqdm

from align import Translator
from vecbridge import stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs.translators import _direction, translate_vectors
from vecbridge.stores.base import STORE_FORMAT


def _same_store(a: stores.StoreSpec, b: stores.StoreSpec) -> bool:
    if a.scheme != b.scheme or a.name != b.name:
        return False
    try:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    except OSError:
        return False


def _check_space(translator: Translator, info: stores.StoreInfo, reverse: bool, allow_mismatch: bool) -> None:
    dim_in, _, encoder_in, _ = _direction(translator, reverse)
    side = "target" if reverse else "source"
    if info.dim != dim_in:
        hint = " (vectors of the translator's other space need --reverse)" if info.dim == _direction(
            translator, not reverse)[0] else ""
        raise UserError(f"--input {info.spec} has {info.dim} dims but the translator's {side} space has "
                        f"{dim_in}{hint}")
    if info.encoder and encoder_in and info.encoder != encoder_in and not allow_mismatch:
        raise UserError(f"--input {info.spec} was embedded by {info.encoder!r} but the translator's {side} space is "
                        f"{encoder_in!r}; translate vectors of {encoder_in!r} (or pass --allow-encoder-mismatch)")


def run_fingerprint(translator: Translator, translator_path: str | None, in_spec: stores.StoreSpec,
                    info: stores.StoreInfo, out_spec: stores.StoreSpec, options: dict) -> str:
    """sha256 of what decides a translation's rows: the translator's weights and config, the input (spec, count,
    dim, and the file's size and mtime where it is one file), the output spec and the options."""
    h = hashlib.sha256()
    if translator_path is not None:
        for name in sorted(os.listdir(translator_path)):
            h.update(name.encode())
            h.update((Path(translator_path) / name).read_bytes())
    else:
        tensors, state = translator._get_state()
        h.update(json.dumps([translator.method, translator.get_params(), state], sort_keys=True, default=str).encode())
        for name in sorted(tensors):
            h.update(name.encode())
            h.update(tensors[name].tobytes())
    source = {"spec": str(in_spec), "count": info.count, "dim": info.dim}
    if in_spec.path is not None and in_spec.path.is_file():
        st = in_spec.path.stat()
        source.update(path=os.path.realpath(in_spec.path), size=st.st_size, mtime_ns=st.st_mtime_ns)
    h.update(json.dumps({"source": source, "output": str(out_spec), "options": options}, sort_keys=True).encode())
    return h.hexdigest()


@user_errors
def translate_store(translator: Translator | str | os.PathLike, input, output, *, reverse: bool = False,
                    search: bool = False, batch: int = 4096, overwrite: bool = False,
                    allow_encoder_mismatch: bool = False, resume: bool = False, progress: bool | None = None) -> dict:
    """Translate every vector of the store `input` into a new store `output` (any two backends), batch by batch.

    The source is only read. The destination is built under a temporary name and swapped in when complete;
    it records its provenance (encoder, translator, method, direction, source). Its last committed batch is
    recorded beside it: with `resume`, the temporary store of a killed run of the same translation (same
    translator, input and options) is continued from there, and the result is the store one run would write.
    Returns a summary that says whether the source's vectors were exact, which of its fields the destination
    backend cannot hold and how many rows were taken over from a killed run (`resumed_rows`).
    """
    if batch < 1:
        raise UserError(f"--chunk must be a positive number of rows, got {batch}")
    in_spec, out_spec = stores.parse_spec(input, "--input"), stores.parse_spec(output, "--output")
    if _same_store(in_spec, out_spec):
        raise UserError(f"--output {out_spec} is the same store as --input; write to another path or collection")
    translator_path = None
    if not isinstance(translator, Translator):
        translator_path, translator = str(translator), Translator.load(translator)
    with stores.open_reader(in_spec, "--input") as reader:
        info = reader.info
        _check_space(translator, info, reverse, allow_encoder_mismatch)
        if search:
            translator.check_search()
        _, dim_out, _, encoder_out = _direction(translator, reverse)
        config = getattr(translator, "config_", {}) or {}
        provenance = {"format": STORE_FORMAT, "encoder": encoder_out, "dim": int(dim_out),
                      "translated_by": {"translator": translator_path,
                                        "method": config.get("method", translator.method),
                                        "direction": "reverse" if reverse else "forward",
                                        "output": "search" if search else "faithful",
                                        "source": str(in_spec), "source_encoder": info.encoder,
                                        "source_exact": info.exact}}
        fingerprint = run_fingerprint(translator, translator_path, in_spec, info, out_spec,
                                      {"reverse": reverse, "search": search, "batch": batch})
        start = time.perf_counter()
        with stores.open_writer(out_spec, "--output", dim=int(dim_out), count=info.count, metric=info.metric,
                                provenance=provenance, overwrite=overwrite, source=info, fingerprint=fingerprint,
                                resume=resume) as writer:
            resumed = writer.resumed_rows
            rows = 0
            with tqdm(total=info.count, initial=resumed, unit="vec", unit_scale=True, desc="translate",
                      disable=None if progress is None else not progress) as bar:
                for block in reader.batches(batch):
                    if rows + len(block) <= resumed:  # already in the temporary store
                        rows += len(block)
                        continue
                    if rows < resumed:
                        block, rows = block.tail(resumed - rows), resumed
                    block.vectors = translate_vectors(translator, block.vectors, reverse, search,
                                                      name=f"--input {in_spec} (batch from row {rows})")
                    writer.write(block)
                    writer.checkpoint()
                    rows += len(block)
                    bar.update(len(block))
            if rows != info.count:
                raise UserError(f"--input {in_spec} changed while being read ({info.count} rows at the start, "
                                f"{rows} read); stop the writers and run again")
            writer.commit()
    seconds = time.perf_counter() - start
    return {"input": str(in_spec), "output": str(out_spec), "rows": int(rows), "dim_in": int(info.dim),
            "dim_out": int(dim_out), "exact": info.exact, "dropped": writer.dropped, "resumed_rows": int(resumed),
            "seconds": round(seconds, 3), "vectors_per_minute": round(rows / max(seconds, 1e-9) * 60)}


@user_errors
def inspect_store(store) -> dict:
    """What a store holds: backend, count, dim, metric, exact or lossy, id type, documents / metadata present,
    the encoder it records and vecbridge's provenance (when vecbridge wrote it)."""
    with stores.open_reader(store, "store") as reader:
        return reader.info.as_dict()
