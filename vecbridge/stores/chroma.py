"""Chroma (`chroma:PATH#COLLECTION`, a local `PersistentClient`, or `chroma+http://HOST:PORT#COLLECTION`, a server
through `HttpClient`): paged reads of ids, embeddings, documents and
metadatas; writes in batches within the client's limit into a temporary collection renamed into place.

Telemetry is off and collections vecbridge creates have no embedding function, so nothing fetches a model.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import is_stale_tmp, tmp_name
from vecbridge.stores.base import (
    PROVENANCE_KEY,
    Batch,
    StoreInfo,
    StoreReader,
    StoreWriter,
    check_parent_dir,
    existing_dir,
    first_line,
    parse_provenance,
    provenance_json,
)

SPACES = {"cosine": "cosine", "l2": "l2", "ip": "ip"}


def client(path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def connect(spec, what: str):
    """The client of `spec`: a local PersistentClient, or an HttpClient checked with a heartbeat."""
    if spec.url is None:
        return client(spec.path)
    from urllib.parse import urlsplit

    import chromadb
    from chromadb.config import Settings

    parts = urlsplit(spec.url)
    try:
        c = chromadb.HttpClient(host=parts.hostname, port=parts.port, ssl=parts.scheme == "https",
                                settings=Settings(anonymized_telemetry=False))
        c.heartbeat()
    except Exception as e:
        raise UserError(f"{what} {spec}: no chroma server answers at {spec.url} ({first_line(e)}); start it "
                        "(`chroma run --path DIR --port PORT`) or check the address") from None
    return c


# what chroma writes in a collection's segment folder: what replacing or removing the collection may delete
SEGMENT_FILES = re.compile(r"(header|data_level0|length|link_lists)\.bin|index_metadata\.pickle")


def segment_dirs(root: Path, collection_id) -> list[Path]:
    """The folders of a local database `root` that hold the segments of the collection `collection_id` (chroma
    names each after its segment's id), read from its SQLite catalogue without writing to it."""
    uri = f"file:{urllib.parse.quote(str(root / 'chroma.sqlite3'))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            ids = [row[0] for row in db.execute("SELECT id FROM segments WHERE collection = ?",
                                                (str(collection_id),))]
    except sqlite3.Error:  # another layout than chromadb 1.x's: no folder is known to be the collection's
        return []
    return [root / i for i in ids if isinstance(i, str) and "/" not in i and (root / i).is_dir()]


def _names(c) -> list[str]:
    return [getattr(x, "name", x) for x in c.list_collections()]


def _space(collection) -> str | None:
    config = getattr(collection, "configuration", None) or {}
    space = (config.get("hnsw") or {}).get("space") if isinstance(config, dict) else None
    return SPACES.get(space or (collection.metadata or {}).get("hnsw:space") or "l2")


def _get_collection(c, spec, what):
    if spec.name not in _names(c):
        raise UserError(f"{what} {spec}: collection {spec.name!r} does not exist in {spec.url or spec.path} "
                        f"(collections: {', '.join(sorted(_names(c))) or 'none'}); check the name after '#'")
    return c.get_collection(spec.name, embedding_function=None)


class Reader(StoreReader):
    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        if spec.url is None:
            existing_dir(spec, what)
        try:
            self.client = connect(spec, what)
            self.collection = _get_collection(self.client, spec, what)
            count = self.collection.count()
            peek = self.collection.get(limit=1, include=["embeddings", "documents", "metadatas"])
        except UserError:
            raise
        except Exception as e:  # chromadb raises many types for a damaged store
            raise UserError(f"{what} {spec} cannot be opened by chromadb ({first_line(e)})") from None
        if count == 0:
            raise UserError(f"{what} {spec}: collection {spec.name!r} is empty")
        embeddings = peek.get("embeddings")
        if embeddings is None or len(embeddings) == 0 or embeddings[0] is None:
            raise UserError(f"{what} {spec}: collection {spec.name!r} holds no embeddings")
        meta = self.collection.metadata or {}
        prov = parse_provenance(meta.get(PROVENANCE_KEY))
        # whether documents / metadata exist is known from the first page; a whole scan would read the store twice
        self.info = StoreInfo(str(spec), "chroma", int(count), len(embeddings[0]), _space(self.collection),
                              id_type="str", documents=any(d is not None for d in peek.get("documents") or []),
                              metadata=any(m for m in peek.get("metadatas") or []),
                              encoder=(prov or {}).get("encoder"), provenance=prov)

    def batches(self, size: int) -> Iterator[Batch]:
        size = min(size, self.client.get_max_batch_size())
        offset = 0
        while offset < self.info.count:
            page = self.page(offset, size)
            if page is None:
                break
            yield page
            offset += len(page)
        self.check_unchanged(offset)

    def page(self, offset: int, limit: int) -> Batch | None:
        """Up to `limit` rows from row `offset` in the collection's order; None past its end."""
        try:
            page = self.collection.get(include=["embeddings", "documents", "metadatas"], limit=limit, offset=offset)
        except Exception as e:
            raise UserError(f"{self.what} {self.spec}: reading failed at row {offset} ({first_line(e)})") from None
        if not page["ids"]:
            return None
        docs, metas = page.get("documents"), page.get("metadatas")
        return Batch(list(page["ids"]), np.asarray(page["embeddings"], dtype=np.float32),
                     list(docs) if docs is not None and any(d is not None for d in docs) else None,
                     [dict(m) if m else None for m in metas] if metas is not None and any(metas) else None)

    def read_range(self, start: int, stop: int) -> Batch:
        """A server's rows by offset, in pages (every worker of an engine asks the server for its own rows). A
        local database is opened by one process at a time: not in ranges."""
        if self.spec.url is None:
            raise NotImplementedError
        pages, size = [], self.client.get_max_batch_size()
        for offset in range(start, stop, size):
            page = self.page(offset, min(size, stop - offset))
            if page is None:
                break
            pages.append(page)
        rows = sum(len(p) for p in pages)
        if rows != stop - start:
            raise UserError(f"{self.what} {self.spec} changed while being read (rows {start}-{stop} asked, {rows} "
                            "there); stop the writers and run again")
        return Batch.concat(pages) if pages else Batch([], np.zeros((0, self.info.dim), np.float32))

    def check_unchanged(self, offset: int) -> None:
        if offset != self.info.count or self.collection.count() != self.info.count:
            raise UserError(f"{self.what} {self.spec} changed while being read ({self.info.count} rows at the start, "
                            f"{offset} read); stop the writers and run again")


def is_vecbridge_collection(collection) -> bool:
    return parse_provenance((collection.metadata or {}).get(PROVENANCE_KEY)) is not None


def _metadata_value(v):
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return json.dumps(v, sort_keys=True, default=str)  # chroma keeps only scalars: nested values as JSON text


class Writer(StoreWriter):
    """A temporary collection `NAME-vecbridge-tmp-PID-RAND`, renamed to NAME on commit (an old NAME that
    vecbridge wrote is renamed away first and deleted after)."""

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.url is not None:  # a server: the temporary collection is renamed in place there
            self._name_check(spec)
            self.tmp, self.max_batch, self.rows = None, 0, 0
            self.client = connect(spec, self.what)
            self._check_destination()
            return
        if spec.path.exists() and not spec.path.is_dir():
            raise UserError(f"{self.what} {spec}: {spec.path} is not a directory; chroma stores are directories")
        self._name_check(spec)
        check_parent_dir(spec)
        self.tmp = self.client = None
        self.max_batch = self.rows = 0
        if spec.path.is_dir():
            self._check_destination()

    def _name_check(self, spec) -> None:
        if not (3 <= len(spec.name) <= 512 and spec.name[-1].isalnum()):
            raise UserError(f"{self.what} {spec}: chroma collection names have 3 to 512 characters and end with a "
                            f"letter or digit; {spec.name!r} does not: choose another name")

    def _check_destination(self) -> None:
        spec = self.spec
        self.client = self.client if spec.url is not None else client(spec.path)
        if spec.name in _names(self.client):
            if not self.overwrite:
                raise UserError(f"{self.what} {spec}: collection {spec.name!r} already exists; pass `overwrite` to "
                                "replace it or choose another name")
            old = self.client.get_collection(spec.name, embedding_function=None)
            if not is_vecbridge_collection(old):
                raise UserError(f"{self.what} {spec}: collection {spec.name!r} was not written by vecbridge; "
                                "`overwrite` only replaces vecbridge's own collections: choose another name")
            for folder in segment_dirs(spec.path, old.id) if spec.url is None else ():
                files.check_own_folder(folder, SEGMENT_FILES, f"{self.what} {spec}", "chroma collection")

    def open_tmp(self, state):
        if self.spec.url is None:
            root = self.root(state.get("root") if state else None)
            self.client = self.client if root == self.spec.path and self.client is not None else client(root)
        self.max_batch = self.client.get_max_batch_size()
        self.tmp = tmp_name(self.spec.name)
        if state:
            if state["collection"] not in _names(self.client):
                raise UserError(f"{self.what} {self.spec}: the unfinished collection {state['collection']!r} its "
                                "record names is gone; run without `resume` to start over")
            self.collection = self.client.get_collection(state["collection"], embedding_function=None)
            self.collection.modify(name=self.tmp)  # this run's name: no other run's sweep takes it
            if self.collection.count() < self.resumed_rows:
                raise UserError(f"{self.what} {self.spec}: the unfinished collection holds fewer rows than its "
                                "record says; run without `resume` to start over")
            self.rows = self.resumed_rows
        # a server's leftovers may belong to live runs on other hosts: only local ones are swept
        for name in _names(self.client) if self.spec.url is None else ():
            if is_stale_tmp(name, self.spec.name):
                self._delete(name)
        if not state:
            self.collection = self.client.create_collection(
                self.tmp, embedding_function=None,
                metadata={"hnsw:space": self.metric, PROVENANCE_KEY: provenance_json(self.provenance)})

    def durable_state(self) -> dict:
        return {"rows": self.rows, "root": self.staged_root(), "collection": self.tmp}

    def write(self, batch: Batch) -> None:
        ids = [str(i) for i in batch.ids]
        self.check_unique(ids, batch, "chroma", self.rows)
        metas = None
        if batch.metadata is not None:
            metas = [{k: _metadata_value(v) for k, v in m.items() if v is not None} or None if m else None
                     for m in batch.metadata]
        # after a resume, rows a kill left past the record come again: upsert writes them as they were
        put = self.collection.upsert if self.resumed_rows else self.collection.add
        for i in range(0, len(ids), self.max_batch):
            part = slice(i, i + self.max_batch)
            try:
                put(ids=ids[part], embeddings=np.asarray(batch.vectors[part], dtype=np.float32),
                                    documents=batch.documents[part] if batch.documents is not None else None,
                                    metadatas=metas[part] if metas is not None else None)
            except Exception as e:
                raise UserError(f"{self.what} {self.spec}: chromadb refused rows from id {ids[i]!r} "
                                f"({first_line(e)}); nothing was published") from None
        self.rows += len(ids)

    def commit(self) -> None:
        self.check_count(self.collection.count(), self.rows, "chroma")
        old = None
        if self.spec.name in _names(self.client):
            old = tmp_name(self.spec.name)
            self.client.get_collection(self.spec.name, embedding_function=None).modify(name=old)
        try:
            self.collection.modify(name=self.spec.name)
        except BaseException:
            if old:
                self.client.get_collection(old, embedding_function=None).modify(name=self.spec.name)
            raise
        if old:
            self._delete(old)
        self.publish_root()
        self.committed = True

    def abort(self) -> None:
        if self.tmp and self.tmp in _names(self.client):
            self._delete(self.tmp)
        self.discard_root()

    def _delete(self, name: str) -> None:
        """Delete a collection, and in a local database the segment folders chroma leaves behind (those of a
        segment it never flushed)."""
        root = None if self.spec.url is not None else Path(self.staged_root() or self.spec.path)
        left = segment_dirs(root, self.client.get_collection(name, embedding_function=None).id) if root else []
        self.client.delete_collection(name)
        for folder in left:
            files.remove(folder)
