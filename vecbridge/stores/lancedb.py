"""LanceDB embedded (`lancedb:PATH#TABLE`): the `vector` column, an optional `id` and `document` (or `text`)
column, every other column kept as metadata; provenance in the table's schema metadata.

LanceDB OSS cannot rename tables, so a new table is built as `TABLE-vecbridge-tmp-PID-RAND` in the same
database and its directory renamed onto `TABLE.lance` on commit (the table's files are never read by hand).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import claim, is_stale_tmp, tmp_name
from vecbridge.stores.base import (
    Batch,
    StoreWriter,
    check_parent_dir,
    existing_dir,
    first_line,
)
from vecbridge.stores.parquet import ArrowReader, arrow_table, first_schema, resumed_schema, schema_provenance

# what lance writes in a table's directory: what an `overwrite` may delete with it
LANCE_FILES = re.compile(r"_versions(/[^/]+\.manifest|/latest_version_hint\.json)?|_transactions(/[^/]+\.txn)?|"
                         r"data(/[^/]+\.lance)?|_deletions(/[^/]+\.(arrow|bin))?|_indices(/.+)?|_latest\.manifest")


def _connect(path):
    import lancedb

    return lancedb.connect(str(path))


def _tables(db) -> list[str]:
    return list(db.list_tables().tables)


class Reader(ArrowReader):
    backend = "lancedb"

    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        existing_dir(spec, what)
        try:
            db = _connect(spec.path)
            if spec.name not in _tables(db):
                raise UserError(f"{what} {spec}: table {spec.name!r} does not exist in {spec.path} (tables: "
                                f"{', '.join(sorted(_tables(db))) or 'none'}); check the name after '#'")
            self.table = db.open_table(spec.name)
            schema = self.table.schema
            count = self.table.count_rows()
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{what} {spec} cannot be opened by lancedb ({first_line(e)})") from None
        self.describe(schema, count, f": table {spec.name!r}")

    def batches(self, size: int) -> Iterator[Batch]:
        try:
            yield from self.rows(self.table.search().limit(None).to_batches(size))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{self.what} {self.spec}: reading failed at row {self.start} ({first_line(e)})") from None
        if self.start != self.info.count:
            raise UserError(f"{self.what} {self.spec} changed while being read ({self.info.count} rows at the start, "
                            f"{self.start} read); stop the writers and run again")

    def read_range(self, start: int, stop: int) -> Batch:
        try:
            rows = self.table.take_offsets(list(range(start, min(stop, self.info.count)))).to_arrow()
        except Exception as e:
            raise UserError(f"{self.what} {self.spec}: reading rows {start}-{stop} failed ({first_line(e)}); it may be "
                            "changing: stop the writers and run again") from None
        return self.batch(rows, start)


class Writer(StoreWriter):
    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.path.exists() and not spec.path.is_dir():
            raise UserError(f"{self.what} {spec}: {spec.path} is not a directory; lancedb databases are directories")
        check_parent_dir(spec)
        self.db = None
        if spec.path.is_dir():
            self.db = _connect(spec.path)
            if spec.name in _tables(self.db):
                if not self.overwrite:
                    raise UserError(f"{self.what} {spec}: table {spec.name!r} already exists; pass `overwrite` to "
                                    "replace it or choose another name")
                if schema_provenance(self.db.open_table(spec.name).schema) is None:
                    raise UserError(f"{self.what} {spec}: table {spec.name!r} was not written by vecbridge; "
                                    "`overwrite` only replaces vecbridge's own tables: choose another name")
                files.check_own_folder(spec.path / f"{spec.name}.lance", LANCE_FILES, f"{self.what} {spec}",
                                       "lancedb table")
        self.tmp = self.table = None
        self.rows = 0

    def _dir(self, name: str) -> Path:
        return self.base / f"{name}.lance"

    def open_tmp(self, state):
        self.base = self.root(state.get("root") if state else None)
        self.db = self.db if self.base == self.spec.path and self.db is not None else _connect(self.base)
        if state:
            self.tmp = claim(self._dir(state["table"])).name.removesuffix(".lance")
            try:
                self.table = self.db.open_table(self.tmp)
                if self.table.version != state["version"]:
                    self.table.restore(state["version"])  # the versions a kill left after the record
                rows = self.table.count_rows()
            except Exception as e:
                raise UserError(f"{self.what} {self.spec}: the unfinished table cannot be resumed ({first_line(e)}); "
                                "run without `resume` to start over") from None
            if rows != self.resumed_rows:
                raise UserError(f"{self.what} {self.spec}: the unfinished table holds {rows} rows, its record "
                                f"{self.resumed_rows}; run without `resume` to start over")
            self.id_type, self.meta_schema, self.schema = resumed_schema(self, self.table.schema)
            self.rows = rows
        for entry in self.base.iterdir():
            if entry.suffix == ".lance" and is_stale_tmp(entry.stem, self.spec.name):
                shutil.rmtree(entry, ignore_errors=True)
        self.tmp = self.tmp or tmp_name(self.spec.name)

    def durable_state(self) -> dict | None:
        if self.table is None:
            return None
        return {"rows": self.rows, "root": self.staged_root(), "table": self.tmp, "version": self.table.version}

    def write(self, batch: Batch) -> None:
        if self.table is None:
            self.id_type, self.meta_schema, self.schema = first_schema(self, batch)
            self.table = self.db.create_table(self.tmp, schema=self.schema)
            if not self._dir(self.tmp).is_dir():
                raise UserError(f"{self.what} {self.spec}: lancedb did not create {self._dir(self.tmp)}; only local "
                                "databases with one directory per table are supported")
        try:
            self.table.add(arrow_table(batch, self.dim, self.id_type, self.meta_schema).cast(self.schema))
        except Exception as e:
            raise UserError(f"{self.what} {self.spec}: lancedb refused rows near row {self.rows} "
                            f"({first_line(e)}); nothing was published") from None
        self.rows += len(batch)

    def commit(self) -> None:
        dest, backup = self._dir(self.spec.name), None
        if dest.exists():
            backup = self._dir(tmp_name(self.spec.name))
            os.rename(dest, backup)
        try:
            os.rename(self._dir(self.tmp), dest)
        except BaseException:
            if backup:
                os.rename(backup, dest)
            raise
        if backup:
            shutil.rmtree(backup, ignore_errors=True)
        self.publish_root()
        self.committed = True

    def abort(self) -> None:
        if self.tmp:
            shutil.rmtree(self._dir(self.tmp), ignore_errors=True)
        self.discard_root()
