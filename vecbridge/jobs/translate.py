"""`translate`: every vector of one store (a `.npy` file among them) into a new store through a translator,
batch by batch, ids, documents and metadata carried over; and `translate_vectors`, the same in memory."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from align import Translator
from align.vectors import check_vectors
from vecbridge import engine as engines
from vecbridge import stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs.checks import check_space, direction, same_store
from vecbridge.stores.base import STORE_FORMAT


def translate_vectors(translator: Translator, vectors, reverse: bool = False, search: bool = False,
                      name: str = "vectors") -> np.ndarray:
    """Translate rows in memory (the service's path, and each batch of `translate`); output always finite (the
    translator refuses to return a row that is not)."""
    block = check_vectors(np.asarray(vectors, dtype=np.float32), name, direction(translator, reverse)[0])
    return (translator.inverse_transform if reverse else translator.transform)(block, search=search)


def run_fingerprint(translator: Translator, translator_path: str | None, in_spec: stores.StoreSpec,
                    info: stores.StoreInfo, out_spec: stores.StoreSpec, options: dict) -> str:
    """sha256 of what decides a translation's rows: the translator (its files, or its weights and config), the
    input (spec, count, dim, and the file's size and mtime where it is one file), the output spec and options."""
    h = hashlib.sha256()
    if translator_path is not None:
        for name in sorted(os.listdir(translator_path)):
            h.update(name.encode())
            h.update((Path(translator_path) / name).read_bytes())
    else:
        h.update(translator.fingerprint().encode())
    source = {"spec": str(in_spec), "count": info.count, "dim": info.dim}
    if in_spec.path is not None and in_spec.path.is_file():
        st = in_spec.path.stat()
        source.update(path=os.path.realpath(in_spec.path), size=st.st_size, mtime_ns=st.st_mtime_ns)
    h.update(json.dumps({"source": source, "output": str(out_spec), "options": options}, sort_keys=True).encode())
    return h.hexdigest()


def _provenance(translator: Translator, translator_path: str | None, info: stores.StoreInfo, in_spec,
                reverse: bool, search: bool) -> dict:
    _, dim_out, _, encoder_out = direction(translator, reverse)
    config = getattr(translator, "config_", {}) or {}
    return {"format": STORE_FORMAT, "encoder": encoder_out, "dim": int(dim_out),
            "translated_by": {"translator": translator_path, "method": config.get("method", translator.method),
                              "direction": "reverse" if reverse else "forward",
                              "output": "search" if search else "faithful", "source": str(in_spec),
                              "source_encoder": info.encoder, "source_exact": info.exact}}


class TranslateBatch:
    """`translate`'s step for an engine: a batch's vectors (from row `first` of `source`) -> translated vectors.
    Picklable: a copy in another process loads the translator once from its directory `path` (an in-memory
    translator without one travels with the copy)."""

    def __init__(self, translator: Translator | None, path: str | None, reverse: bool, search: bool,
                 source: str):
        self.translator, self.path, self.reverse, self.search, self.source = translator, path, reverse, search, source

    def __getstate__(self) -> dict:
        return {**self.__dict__, "translator": None} if self.path is not None else self.__dict__

    def __call__(self, vectors: np.ndarray, first: int) -> np.ndarray:
        if self.translator is None:
            self.translator = Translator.load(self.path)
        return translate_vectors(self.translator, vectors, self.reverse, self.search,
                                 name=f"`input` {self.source} (batch from row {first})")


@user_errors
def translate(translator: Translator | str | os.PathLike, input, output, *, reverse: bool = False,
              search: bool = False, batch: int | None = None, overwrite: bool = False,
              allow_encoder_mismatch: bool = False, resume: bool = False, engine: str = "local",
              address: str | None = None, progress: bool | None = None, provenance: dict | None = None) -> dict:
    """Translate every vector of the store `input` into a new store `output` (any two specs, `.npy` included).

    The source is only read. The destination is built under a temporary name and swapped in when complete; it
    records its provenance (encoder, translator, method, direction, source). Its last committed batch is recorded
    beside it: with `resume`, the temporary store of a killed run of the same translation (same translator, input
    and options) is continued from there, and the result is the store one run would write. `batch`: rows per
    batch (default: the destination backend's). `engine`: where the batches are translated, `local` (this
    process) or `ray` (a Ray cluster: the one at `address`, or a local one started for the run); both write the
    same store, and either resumes the other's. Returns a summary that says whether the source's vectors were
    exact, which of its fields the destination cannot hold and how many rows a killed run had written.
    `provenance`: more fields for the destination's provenance (`migrate` marks a forced migration).
    """
    if batch is not None and batch < 1:
        raise UserError(f"`batch` must be a positive number of rows, got {batch}")
    in_spec, out_spec = stores.parse_spec(input, "`input`"), stores.parse_spec(output, "`output`")
    if same_store(in_spec, out_spec):
        raise UserError(f"`output` {out_spec} is the same store as `input`; write to another path or collection")
    translator_path = None
    if not isinstance(translator, Translator):
        translator_path, translator = str(translator), Translator.load(translator)
    batch = batch or stores.batch_rows(in_spec, out_spec)
    with stores.open_reader(in_spec, "`input`") as reader:
        info = reader.info
        check_space(translator, f"`input` {info.spec}", info.dim, info.encoder, reverse, allow_encoder_mismatch)
        if search:
            translator.check_search()
        dim_out = direction(translator, reverse)[1]
        fingerprint = run_fingerprint(translator, translator_path, in_spec, info, out_spec,
                                      {"reverse": reverse, "search": search, "batch": batch})
        engines.check(engine, address, reader, "`input`")
        start = time.perf_counter()
        with stores.open_writer(out_spec, "`output`", dim=int(dim_out), count=info.count, metric=info.metric,
                                provenance={**_provenance(translator, translator_path, info, in_spec, reverse,
                                                          search), **(provenance or {})},
                                overwrite=overwrite, source=info, fingerprint=fingerprint, resume=resume) as writer:
            step = TranslateBatch(translator, translator_path and os.path.abspath(translator_path), reverse, search,
                                  str(in_spec))
            flow = engines.Flow(in_spec, "`input`", reader, writer, step, batch, skip=writer.resumed_rows,
                                desc="translate")
            rows = engines.run(flow, engine, address, progress)
            if rows != info.count:
                raise UserError(f"`input` {in_spec} changed while being read ({info.count} rows at the start, "
                                f"{rows} read); stop the writers and run again")
            writer.commit()
    seconds = time.perf_counter() - start
    return {"input": str(in_spec), "output": str(out_spec), "rows": int(rows), "dim_in": int(info.dim),
            "dim_out": int(dim_out), "exact": info.exact, "dropped": writer.dropped,
            "resumed_rows": int(writer.resumed_rows), "seconds": round(seconds, 3),
            "vectors_per_minute": round(rows / max(seconds, 1e-9) * 60)}
