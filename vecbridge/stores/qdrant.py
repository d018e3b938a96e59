"""Qdrant in local mode (`qdrant:PATH#COLLECTION[/VECTOR_NAME]`, `QdrantClient(path=...)`): scrolled reads of
vectors and payloads; writes into a new collection that the alias COLLECTION is pointed at on commit.

A payload's `document` (or `text`) field is the row's document; the rest is its metadata. Local mode allows one
client per directory, so readers and writers of one directory in this process share a client.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from collections.abc import Iterator

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import is_stale_tmp, tmp_name
from vecbridge.stores.base import (
    DOCUMENT_FIELDS,
    PROVENANCE_KEY,
    Batch,
    StoreInfo,
    StoreReader,
    StoreWriter,
    check_parent_dir,
    existing_dir,
    first_line,
    parse_provenance,
)

METRICS = {"Cosine": "cosine", "Euclid": "l2", "Dot": "ip", "Manhattan": "l1"}
DISTANCES = {"cosine": "Cosine", "l2": "Euclid", "ip": "Dot", "l1": "Manhattan"}
# what local mode writes in a collection's folder: what replacing the collection deletes with it
COLLECTION_FILES = re.compile(r"storage\.sqlite(-journal|-wal|-shm)?")
_clients: dict[str, list] = {}  # resolved path -> [client, users]


def acquire(path, what, spec):
    from qdrant_client import QdrantClient

    key = str(path.resolve())
    if key not in _clients:
        try:
            _clients[key] = [QdrantClient(path=str(path)), 0]
        except RuntimeError as e:  # another process holds the directory's lock
            raise UserError(f"{what} {spec}: {first_line(e)}") from None
    _clients[key][1] += 1
    return _clients[key][0]


def release(path) -> None:
    key = str(path.resolve())
    entry = _clients.get(key)
    if entry:
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _clients[key]


def _aliases(c) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}


def _vector_params(collection_info, spec, what):
    """(vector name or None, VectorParams) of the vectors the spec names."""
    vectors = collection_info.config.params.vectors
    if not isinstance(vectors, dict):
        if spec.vector_name:
            raise UserError(f"{what} {spec}: collection {spec.name!r} has one unnamed vector, not "
                            f"{spec.vector_name!r}; drop '/{spec.vector_name}'")
        return None, vectors
    if spec.vector_name:
        if spec.vector_name not in vectors:
            raise UserError(f"{what} {spec}: collection {spec.name!r} has no vector {spec.vector_name!r} "
                            f"(vectors: {', '.join(sorted(vectors))})")
        return spec.vector_name, vectors[spec.vector_name]
    if len(vectors) != 1:
        raise UserError(f"{what} {spec}: collection {spec.name!r} has named vectors {', '.join(sorted(vectors))}; "
                        f"say which: qdrant:{spec.path}#{spec.name}/NAME")
    name = next(iter(vectors))
    return name, vectors[name]


class Reader(StoreReader):
    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        existing_dir(spec, what)
        self.client = acquire(spec.path, what, spec)
        try:
            if not self.client.collection_exists(spec.name):
                names = [c.name for c in self.client.get_collections().collections] + list(_aliases(self.client))
                raise UserError(f"{what} {spec}: collection {spec.name!r} does not exist in {spec.path} "
                                f"(collections: {', '.join(sorted(names)) or 'none'}); check the name after '#'")
            info = self.client.get_collection(spec.name)
            self.vector_name, params = _vector_params(info, spec, what)
            count = self.client.count(spec.name, exact=True).count
            first, _ = self.client.scroll(spec.name, limit=1, with_payload=True, with_vectors=False)
        except UserError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise UserError(f"{what} {spec} cannot be opened by qdrant-client ({first_line(e)})") from None
        if count == 0:
            self.close()
            raise UserError(f"{what} {spec}: collection {spec.name!r} is empty")
        payload = first[0].payload or {}
        meta = info.config.metadata or {}
        prov = parse_provenance(meta.get(PROVENANCE_KEY))
        self.info = StoreInfo(str(spec), "qdrant", int(count), int(params.size),
                              METRICS.get(getattr(params.distance, "value", params.distance)),
                              id_type="int" if isinstance(first[0].id, int) else "str",
                              documents=any(f in payload for f in DOCUMENT_FIELDS),
                              metadata=bool(set(payload) - set(DOCUMENT_FIELDS)),
                              encoder=(prov or {}).get("encoder"), provenance=prov)

    def batches(self, size: int) -> Iterator[Batch]:
        offset, read = None, 0
        while True:
            try:
                points, offset = self.client.scroll(self.spec.name, limit=size, offset=offset, with_payload=True,
                                                    with_vectors=[self.vector_name] if self.vector_name else True)
            except Exception as e:
                raise UserError(f"{self.what} {self.spec}: reading failed after {read} rows ({first_line(e)})") \
                    from None
            if not points:
                break
            vectors = np.asarray([p.vector[self.vector_name] if self.vector_name else p.vector for p in points],
                                 dtype=np.float32)
            docs, metas, has_docs = [], [], False
            for p in points:
                payload = dict(p.payload or {})
                field = next((f for f in DOCUMENT_FIELDS if f in payload), None)
                docs.append(payload.pop(field) if field else None)
                has_docs |= field is not None
                metas.append(payload or None)
            yield Batch([p.id for p in points], vectors, docs if has_docs else None,
                        metas if any(metas) else None)
            read += len(points)
            if offset is None:
                break
        if read != self.info.count:
            raise UserError(f"{self.what} {self.spec} changed while being read ({self.info.count} rows at the start, "
                            f"{read} read); stop the writers and run again")

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            release(self.spec.path)
            self.client = None


def _point_id(v, spec, what):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and int(v) >= 0:
        return int(v)
    try:
        return str(uuid.UUID(str(v)))
    except ValueError:
        raise UserError(f"{what} {spec}: qdrant ids are non-negative integers or UUIDs but the source has id "
                        f"{v!r}; write to a store that keeps string ids (chroma:, lancedb:, Parquet)") from None


def bulk_load(client, collection: str, on: bool) -> bool:
    """Local mode commits every point to its collection's sqlite file, each commit synced to disk (what costs
    most of its time). During a bulk load (`on`) commits are not synced: a killed run loses nothing (the system
    holds the pages), only a power cut could cost the unfinished collection. At its end the file is synced once
    and syncing restored. Returns whether the load is on; a client that keeps no such file is left as it is."""
    local = getattr(client, "_client", None)
    persistence = getattr(getattr(local, "collections", {}).get(collection), "storage", None)
    connection = getattr(persistence, "storage", None)
    if not isinstance(connection, sqlite3.Connection):
        return False
    connection.execute(f"PRAGMA synchronous = {'OFF' if on else 'FULL'}")
    if not on:
        with open(persistence.location, "rb") as f:
            os.fsync(f.fileno())
    return on


class Writer(StoreWriter):
    """A new collection `NAME-vecbridge-tmp-PID-RAND`; on commit the alias NAME is pointed at it (the collection
    an older alias NAME pointed at, which vecbridge wrote, is then deleted)."""

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.path.exists() and not spec.path.is_dir():
            raise UserError(f"{self.what} {spec}: {spec.path} is not a directory; qdrant stores are directories")
        check_parent_dir(spec)
        self.tmp = self.client = self.client_path = None
        self.rows, self.bulk = 0, False
        if spec.path.is_dir():
            self.client_path = spec.path
            self.client = acquire(spec.path, self.what, spec)
            try:
                self._check_destination()
            except BaseException:
                self.close()
                raise

    def _check_destination(self) -> None:
        spec, c = self.spec, self.client
        if not c.collection_exists(spec.name):
            return
        if not self.overwrite:
            raise UserError(f"{self.what} {spec}: collection {spec.name!r} already exists; pass `overwrite` to "
                            "replace it or choose another name")
        if spec.name not in _aliases(c) or parse_provenance(
                (c.get_collection(spec.name).config.metadata or {}).get(PROVENANCE_KEY)) is None:
            raise UserError(f"{self.what} {spec}: collection {spec.name!r} was not written by vecbridge; "
                            "`overwrite` only replaces vecbridge's own collections: choose another name")
        files.check_own_folder(spec.path / "collection" / _aliases(c)[spec.name], COLLECTION_FILES,
                               f"{self.what} {spec}", "qdrant collection")

    def open_tmp(self, state):
        from qdrant_client import models

        if self.client is None:
            self.client_path = self.root(state.get("root") if state else None)
            self.client = acquire(self.client_path, self.what, self.spec)
        if state:
            # qdrant cannot rename a collection; local mode's lock on the directory keeps other runs out meanwhile
            self.tmp = state["collection"]
            if not self.client.collection_exists(self.tmp) or \
                    self.client.count(self.tmp, exact=True).count < self.resumed_rows:
                raise UserError(f"{self.what} {self.spec}: the unfinished collection {self.tmp!r} its record names "
                                "is gone or holds fewer rows; run without `resume` to start over")
            self.rows = self.resumed_rows
        published = set(_aliases(self.client).values())
        for col in self.client.get_collections().collections:
            if col.name not in published and col.name != self.tmp and is_stale_tmp(col.name, self.spec.name):
                self.client.delete_collection(col.name)
        if state:
            return
        self.tmp = tmp_name(self.spec.name)
        params = models.VectorParams(size=self.dim, distance=models.Distance(DISTANCES.get(self.metric, "Cosine")))
        self.client.create_collection(self.tmp, vectors_config={self.spec.vector_name: params}
                                      if self.spec.vector_name else params,
                                      metadata={PROVENANCE_KEY: self.provenance})

    def durable_state(self) -> dict:
        return {"rows": self.rows, "root": self.staged_root(), "collection": self.tmp}

    def write(self, batch: Batch) -> None:
        from qdrant_client import models

        ids = [_point_id(v, self.spec, self.what) for v in batch.ids]
        self.check_unique(ids, batch, "qdrant", self.rows)
        if not self.bulk:
            self.bulk = bulk_load(self.client, self.tmp, True)
        points, rows = [], batch.vectors.tolist()
        for i, pid in enumerate(ids):
            payload = dict(batch.metadata[i] or {}) if batch.metadata is not None else {}
            if batch.documents is not None and batch.documents[i] is not None:
                payload[DOCUMENT_FIELDS[0]] = batch.documents[i]
            vector = rows[i]
            points.append(models.PointStruct(id=pid, vector={self.spec.vector_name: vector}
                                             if self.spec.vector_name else vector, payload=payload or None))
        try:
            self.client.upsert(self.tmp, points=points, wait=True)
        except Exception as e:
            raise UserError(f"{self.what} {self.spec}: qdrant refused rows from id {batch.ids[0]!r} "
                            f"({first_line(e)}); nothing was published") from None
        self.rows += len(batch)

    def commit(self) -> None:
        from qdrant_client import models

        if self.bulk:
            self.bulk = bulk_load(self.client, self.tmp, False)
        self.check_count(self.client.count(self.tmp, exact=True).count, self.rows, "qdrant")
        old = _aliases(self.client).get(self.spec.name)
        ops = [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.spec.name))] if old else []
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=self.tmp,
                                                                               alias_name=self.spec.name)))
        self.client.update_collection_aliases(change_aliases_operations=ops)
        if old:
            self.client.delete_collection(old)
        self.close()  # local mode writes its files when the client closes
        self.publish_root()
        self.committed = True

    def abort(self) -> None:
        if self.tmp and self.client is not None and self.client.collection_exists(self.tmp):
            self.client.delete_collection(self.tmp)
        self.close()
        self.discard_root()

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            release(self.client_path)
            self.client = None
