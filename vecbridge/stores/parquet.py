"""Parquet as a store: one file or a directory of shards (pyarrow.dataset), streamed by record batches.

Columns: `id` (optional: row numbers without it), `vector` (a fixed-size list of floats), `document` (or
`text`, optional); every other column is per-row metadata. Provenance lives in the schema metadata.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import dataclasses
import functools
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import claim
from vecbridge.stores.base import (
    PROVENANCE_KEY,
    Batch,
    StoreInfo,
    StoreReader,
    StoreWriter,
    document_field,
    first_line,
    parse_provenance,
    provenance_json,
)

# Rows per part file: a directory store's shards, and the unit a killed run resumes from.
PART_ROWS = 65536
PART_NAME = re.compile(r"part-\d{5}\.parquet")  # a directory store's shards: all it holds
# Record batches the reader decodes ahead of the one in use.
READ_AHEAD = 2


def schema_provenance(schema: pa.Schema) -> dict | None:
    return parse_provenance((schema.metadata or {}).get(PROVENANCE_KEY.encode()))


def arrow_store_info(spec, backend: str, schema: pa.Schema, names: list[str], count: int,
                     dim: int) -> tuple[str | None, str | None, StoreInfo]:
    """(id column, document column, StoreInfo) of an Arrow-schema store (Parquet, LanceDB)."""
    id_col = "id" if "id" in names else None
    doc_col = document_field(names)
    meta_fields = [schema.field(n) for n in names if n not in (id_col, doc_col, "vector")]
    id_field = schema.field("id").type if id_col else None
    id_type = "row" if not id_col else ("str" if pa.types.is_string(id_field) or pa.types.is_large_string(id_field)
                                        else "int")
    prov = schema_provenance(schema)
    info = StoreInfo(str(spec), backend, int(count), int(dim), (prov or {}).get("metric"), id_type=id_type,
                     documents=doc_col is not None, metadata=bool(meta_fields), encoder=(prov or {}).get("encoder"),
                     provenance=prov, metadata_schema=pa.schema(meta_fields) if meta_fields else None)
    return id_col, doc_col, info


def vectors_from_arrow(column, spec, what: str, dim: int) -> np.ndarray:
    """A fixed-size list (or list) column of floats as a float32 (rows, dim) array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise UserError(f"{what} {spec}: the vector column has null rows; every row needs a vector")
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size != len(column) * dim:
        raise UserError(f"{what} {spec}: vectors of different lengths in the vector column; expected {dim} each")
    return flat.reshape(len(column), dim)


def vector_dim(field: pa.Field, spec, what: str) -> int:
    t = field.type
    if not (pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type)):
        raise UserError(f"{what} {spec}: column {field.name!r} is {t}, not a fixed-size list of floats; write it as "
                        "fixed_size_list<float32>")
    return t.list_size


def split_columns(table_or_batch, names, id_col, doc_col, vec_col):
    """(ids, documents, metadata dicts) of an Arrow batch; ids default to row numbers from `start`."""
    ids = table_or_batch.column(id_col).to_pylist() if id_col else None
    docs = table_or_batch.column(doc_col).to_pylist() if doc_col else None
    meta_names = [n for n in names if n not in (id_col, doc_col, vec_col)]
    meta = table_or_batch.select(meta_names).to_pylist() if meta_names else None
    return ids, docs, meta


class ArrowReader(StoreReader):
    """What the Arrow-schema stores (Parquet, LanceDB) share: the schema's checks, and record batches as Batches."""

    backend = ""

    def describe(self, schema: pa.Schema, count: int, where: str = "") -> None:
        """Check the schema (`where`: what in the store it is, for messages) and set `info`."""
        names = schema.names
        if "vector" not in names:
            raise UserError(f"{self.what} {self.spec}{where} has no 'vector' column (columns: {', '.join(names)}); "
                            "vecbridge reads columns id, vector (fixed-size list of float32), document and metadata")
        dim = vector_dim(schema.field("vector"), self.spec, self.what)
        if count == 0:
            raise UserError(f"{self.what} {self.spec}{where} holds no rows")
        self.names = names
        self.id_col, self.doc_col, self.info = arrow_store_info(self.spec, self.backend, schema, names, count, dim)

    def rows(self, record_batches) -> Iterator[Batch]:
        """Batches from Arrow record batches; `self.start` counts the rows read (for messages)."""
        self.start = 0
        for rb in record_batches:
            if rb.num_rows == 0:
                continue
            yield self.batch(rb, self.start)
            self.start += rb.num_rows

    def batch(self, rows, first: int) -> Batch:
        """Arrow rows (a record batch or a table) as a Batch; `first` numbers them where the store has no ids."""
        rows = rows.select(self.names)
        ids, docs, meta = split_columns(rows, self.names, self.id_col, self.doc_col, "vector")
        vectors = vectors_from_arrow(rows.column("vector"), self.spec, self.what, self.info.dim)
        return Batch(ids if ids is not None else list(range(first, first + rows.num_rows)), vectors, docs, meta)


class Reader(ArrowReader):
    backend = "parquet"

    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        if not spec.path.exists():
            raise UserError(f"{what} {spec} does not exist; give a .parquet file or a directory of Parquet shards")
        try:
            self.dataset = ds.dataset(spec.path, format="parquet")
            schema = self.dataset.schema
            count = self.dataset.count_rows()
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{what} {spec} is not readable Parquet ({first_line(e)}); it may be truncated") from None
        self.describe(schema, count)

    def batches(self, size: int) -> Iterator[Batch]:
        try:
            # a batch or two read ahead while the last is used: Arrow's default (16 batches, 4 files, each file's
            # row groups fetched ahead whole) holds gigabytes when the consumer is slower than the disk
            yield from self.rows(self.dataset.to_batches(
                batch_size=size, batch_readahead=READ_AHEAD, fragment_readahead=1,
                fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False)))
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{self.what} {self.spec}: reading failed at row {self.start} ({first_line(e)}); the "
                            "file may be truncated or changing") from None

    @functools.cached_property
    def row_groups(self) -> tuple[list[int], list[tuple[ds.ParquetFileFragment, int]]]:
        """The first row of every row group, and its (file, row group id), in the order `batches` reads them."""
        firsts, groups, row = [], [], 0
        for fragment in self.dataset.get_fragments():
            for group in fragment.row_groups:
                firsts.append(row)
                groups.append((fragment, group.id))
                row += group.num_rows
        return firsts, groups

    def read_range(self, start: int, stop: int) -> Batch:
        """Reads the row groups that hold the rows: cheap where they are no longer than a batch (vecbridge writes
        groups of at most PART_ROWS rows; other writers' groups may be far longer)."""
        try:
            firsts, groups = self.row_groups
            lo, hi = max(bisect.bisect_right(firsts, start) - 1, 0), bisect.bisect_left(firsts, stop)
            tables = [fragment.subset(row_group_ids=[g for _, g in run]).to_table(schema=self.dataset.schema,
                                                                                  columns=self.names)
                      for fragment, run in itertools.groupby(groups[lo:hi], key=lambda group: group[0])]
            rows = pa.concat_tables(tables).slice(start - firsts[lo], max(stop - start, 0)) if tables \
                else self.dataset.schema.empty_table()
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{self.what} {self.spec}: reading rows {start}-{stop} failed ({first_line(e)}); the "
                            "file may be truncated or changing") from None
        return self.batch(rows, start)


def arrow_table(batch: Batch, dim: int, id_type: pa.DataType | None, meta_schema: pa.Schema | None,
                doc_name: str = "document") -> pa.Table:
    """A batch as an Arrow table: id, vector (fixed_size_list<float32>), document, metadata columns."""
    columns = {}
    if id_type is not None:
        columns["id"] = pa.array(batch.ids, type=id_type)
    vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    if batch.documents is not None:
        columns[doc_name] = pa.array(batch.documents, type=pa.string())
    table = pa.table(columns)
    if batch.metadata is not None or meta_schema is not None:  # a batch without metadata: nulls in the columns
        meta = metadata_table([m or {} for m in batch.metadata or [None] * len(batch)], meta_schema)
        for name in meta.column_names:
            table = table.append_column(meta.schema.field(name), meta.column(name))
    return table


def metadata_table(rows: list[dict], schema: pa.Schema | None) -> pa.Table:
    """Per-row metadata dicts as columns: every key any row has, a null where a row lacks it (in `schema`'s order
    and types when given, a key it lacks refused, never dropped; else sorted: a database's dicts come in no fixed
    order)."""
    names = sorted({k for row in rows for k in row})
    if schema is None:
        return pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})
    new = [name for name in names if name not in schema.names]
    if new:
        raise ValueError(f"metadata key {new[0]!r} is not among the keys of the first batch "
                         f"({', '.join(schema.names) or 'none'})")
    return pa.Table.from_pylist(rows, schema=schema)


def id_arrow_type(batch: Batch) -> pa.DataType:
    return pa.int64() if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in batch.ids) \
        else pa.string()


def part_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer of vecbridge's stores: no dictionary for the vectors (they never repeat: the encoder would
    hash a page's worth of floats per row group before giving up)."""
    return pq.ParquetWriter(path, schema, use_dictionary=[n for n in schema.names if n != "vector"])


def row_groups_ahead(paths: list[Path]) -> Iterator[pa.Table]:
    """The row groups of the Parquet files `paths` in order, each read while the one before is used (decoding
    and encoding overlap on two cores); at most two in memory."""
    groups = ((path, g) for path in paths for g in range(pq.ParquetFile(path).num_row_groups))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ahead = None
        for path, g in groups:
            group = pool.submit(lambda p, k: pq.ParquetFile(p).read_row_group(k), path, g)
            if ahead is not None:
                yield ahead.result()
            ahead = group
        if ahead is not None:
            yield ahead.result()


def _is_vecbridge_parquet(path) -> bool:
    try:
        return schema_provenance(ds.dataset(path, format="parquet").schema) is not None
    except (pa.ArrowException, OSError):
        return False


FIXED_COLUMNS = ("id", "vector", "document")  # an Arrow store's columns that are not metadata


def first_schema(writer: StoreWriter, batch: Batch) -> tuple[pa.DataType | None, pa.Schema | None, pa.Schema]:
    """(id type, metadata schema, whole schema with the provenance) of an Arrow store that `writer` (Parquet,
    LanceDB) starts with `batch`: ids kept unless the source numbers its rows, the source's metadata schema or
    else the one of the first batch's keys."""
    keep_ids = writer.source is None or writer.source.id_type != "row"
    meta_schema = writer.source.metadata_schema if writer.source else None
    try:
        table = arrow_table(batch, writer.dim, id_arrow_type(batch) if keep_ids else None, meta_schema)
    except (pa.ArrowException, ValueError) as e:
        raise UserError(f"{writer.what} {writer.spec}: the first rows' metadata cannot be stored as columns "
                        f"({first_line(e)})") from None
    if meta_schema is None and batch.metadata is not None:
        meta_schema = pa.schema([f for f in table.schema if f.name not in FIXED_COLUMNS])
    schema = table.schema.with_metadata({PROVENANCE_KEY: provenance_json({**writer.provenance,
                                                                          "metric": writer.metric})})
    return table.schema.field("id").type if keep_ids else None, meta_schema, schema


def resumed_schema(writer: StoreWriter, written: pa.Schema) -> tuple[pa.DataType | None, pa.Schema, pa.Schema]:
    """`first_schema` of the run that `writer` resumes, from the schema `written` read back from what that run
    wrote: the metadata columns are the written ones (a source without a metadata schema, such as Chroma's,
    gave them from the first batch's keys, not this run's), as Arrow built them (`as_written`)."""
    written = as_written(written)
    meta_schema = writer.source.metadata_schema if writer.source else None
    if meta_schema is None:
        meta_schema = pa.schema([f for f in written if f.name not in FIXED_COLUMNS])
    meta = {f.name: f for f in meta_schema}
    schema = pa.schema([meta.get(f.name, f) if f.name not in FIXED_COLUMNS else f for f in written],
                       metadata=written.metadata)
    return schema.field("id").type if "id" in schema.names else None, meta_schema, schema


def _as_built(t: pa.DataType) -> pa.DataType:
    """A type read back from Parquet as Arrow builds it from Python values: a list's values named `item`."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        values = pa.field("item", _as_built(t.value_type), t.value_field.nullable)
        if pa.types.is_fixed_size_list(t):
            return pa.list_(values, t.list_size)
        return pa.large_list(values) if pa.types.is_large_list(t) else pa.list_(values)
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_as_built(t.field(i).type)) for i in range(t.num_fields)])
    return t


def as_written(schema: pa.Schema) -> pa.Schema:
    """A schema read back from a part file as the writer built it: Parquet names a list's values `element` where
    Arrow named them `item` (the same columns, but other bytes in every file written with it), in the vector
    column and in any list of the metadata."""
    return pa.schema([f.with_type(_as_built(f.type)) for f in schema], metadata=schema.metadata)


def part_rows(batch: int) -> int:
    """Rows in each part file when rows come `batch` at a time: a part is closed at the first batch that takes it
    to `PART_ROWS` rows."""
    return -(-PART_ROWS // batch) * batch


@dataclasses.dataclass
class PartSink:
    """How a part file of a staged Parquet store is written, by the writer or by an engine's worker in another
    process (picklable): the columns fixed, each part under a temporary name renamed when whole."""

    parts: Path
    schema: pa.Schema
    dim: int
    id_type: pa.DataType | None
    meta_schema: pa.Schema | None
    spec: str
    what: str

    def table(self, batch: Batch, first: int) -> pa.Table:
        """A batch (from row `first`) as a table of the store's columns."""
        try:
            return arrow_table(batch, self.dim, self.id_type, self.meta_schema).cast(self.schema)
        except (pa.ArrowException, ValueError) as e:
            raise UserError(f"{self.what} {self.spec}: rows near {first} do not fit the columns of the first "
                            f"batch ({first_line(e)})") from None

    def write_part(self, k: int, batches: Iterator[tuple[int, Batch]]) -> int:
        """Part `k` from (first row, batch) pairs, one row group a batch; its rows."""
        path = self.parts / f"part-{k:05d}.parquet"
        tmp, rows = files.tmp_path(path), 0
        try:
            with files.disk_errors(path), part_writer(tmp, self.schema) as out:
                for first, batch in batches:
                    out.write_table(self.table(batch, first))
                    rows += len(batch)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return rows


class Writer(StoreWriter):
    """Rows go into part files of `part_rows(batch)` rows in a staged directory, each written under a temporary
    name and renamed when full (what a resume continues from), by this process or by an engine's workers. A
    directory store is that directory, renamed into place; a single `.parquet` file is the parts' row groups
    copied into one staged file at commit."""

    workers_write = True

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self.sharded = spec.path.suffix != ".parquet"
        inputs = [self.source.spec] if self.source and self.source.backend == "parquet" else []
        if self.sharded:
            files.check_dir_output(spec.path, self.overwrite, _is_vecbridge_parquet, "Parquet store",
                                   inputs=inputs, what=self.what, own=PART_NAME)
        else:
            files.check_file_output(spec.path, self.overwrite, inputs=inputs, sidecar=False, what=self.what,
                                         marker=_is_vecbridge_parquet)
        factor = 1 if self.sharded else 2  # a single file: the parts, then the file
        files.check_free_space(spec.path, factor * self.count * self.dim * 4 + 2**16)
        self.rows, self.writer, self.schema = 0, None, None
        self.part = self.closed_rows = 0  # the part being written; the rows in the closed ones

    def _part_path(self, k: int) -> Path:
        return self.parts / f"part-{k:05d}.parquet"

    def open_tmp(self, state):
        held = claim(Path(state["parts"])) if state else None
        self._staging = files.Staging()  # the directory store, or the single file
        self._parts_staging = files.Staging()  # the parts of a single file: never published
        self.parts = (self._staging if self.sharded else self._parts_staging).directory(self.spec.path)
        if held is None:
            return
        self.parts.rmdir()
        os.rename(held, self.parts)
        self.part = state["part"]
        self._drop_unfinished()  # a part being written when the run was killed; closed parts are whole
        if self.part:
            self.id_type, self.meta_schema, self.schema = resumed_schema(self, pq.read_schema(self._part_path(0)))
        self.rows = self.closed_rows = self.resumed_rows

    def set_schema(self, batch: Batch) -> None:
        """The store's columns, decided by its first batch (once)."""
        if self.schema is not None:
            return
        self.id_type, self.meta_schema, self.schema = first_schema(self, batch)

    def write(self, batch: Batch) -> None:
        self.set_schema(batch)
        table = self.sink().table(batch, self.rows)
        with files.disk_errors(self.spec.path):
            if self.writer is None:
                self._writing = files.tmp_path(self._part_path(self.part))
                self.writer = part_writer(self._writing, self.schema)
            self.writer.write_table(table)
            self.rows += len(batch)
            if self.rows - self.closed_rows >= PART_ROWS:
                self._close_part()

    def _close_part(self) -> None:
        self.writer.close()
        os.replace(self._writing, self._part_path(self.part))  # a part under its own name is whole
        self.writer, self.part, self.closed_rows = None, self.part + 1, self.rows

    # -- parts written by an engine's workers ---------------------------------------------------------------
    def sink(self) -> PartSink:
        return PartSink(self.parts, self.schema, self.dim, self.id_type, self.meta_schema, str(self.spec), self.what)

    def worker_parts(self, batch: int, first: Batch) -> tuple[PartSink, int, dict[int, int]]:
        """Let an engine's workers write the parts themselves, `part_rows(batch)` rows each (the parts this
        writer would cut): (the sink they write with, rows a part, {part: rows} of the whole parts after the
        resumed ones already in the staged directory, from a killed run of the same fingerprint). `first`
        decides the columns, as the first batch written would."""
        self.set_schema(Batch(first.ids, np.zeros((len(first.ids), self.dim), np.float32), first.documents,
                              first.metadata))
        size = part_rows(batch)
        held = {}
        for entry in self.parts.iterdir():
            k = int(entry.name[5:10]) if PART_NAME.fullmatch(entry.name) else -1
            if k >= self.part:
                rows = pq.ParquetFile(entry).metadata.num_rows
                if rows == min(size, self.count - k * size):  # else not this run's: written again
                    held[k] = rows
        return self.sink(), size, held

    def adopt_part(self, k: int, rows: int) -> None:
        """Part `k` (the next one) was written whole by a worker."""
        if k != self.part:
            raise RuntimeError(f"part {k} adopted after part {self.part - 1}")
        self.rows += rows
        self.part, self.closed_rows = k + 1, self.rows

    def _drop_unfinished(self) -> None:
        """Remove from the staged parts what is not a whole part (temporary files of parts being written)."""
        for entry in self.parts.iterdir():
            if not PART_NAME.fullmatch(entry.name):
                files.remove(entry)

    def durable_state(self) -> dict | None:
        if not self.closed_rows:  # nothing a resume could keep yet
            return None
        return {"rows": self.closed_rows, "parts": str(self.parts), "part": self.part}

    def commit(self) -> None:
        with files.disk_errors(self.spec.path):
            if self.writer is not None:
                self._close_part()
            self._drop_unfinished()  # what dead workers began
            if not self.sharded:
                with part_writer(self._staging.file(self.spec.path), self.schema) as out:
                    for group in row_groups_ahead([self._part_path(k) for k in range(self.part)]):
                        out.write_table(group)
            self._staging.publish()
            self._parts_staging.discard()
        self.committed = True

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for staging in ("_staging", "_parts_staging"):
            if hasattr(self, staging):
                getattr(self, staging).discard()
