"""Vector stores: the one store-spec parser, and `open_reader` / `open_writer` over one module per backend.

Specs: `PATH.npy`, `PATH.parquet` or a directory of Parquet shards (`parquet:PATH` to force it),
`chroma:PATH#COLLECTION`, `qdrant:PATH#COLLECTION[/VECTOR_NAME]`, `lancedb:PATH#TABLE`, `faiss:PATH`,
`hnswlib:PATH[?dim=N&space=cosine]`, and Chroma servers `chroma+http(s)://HOST:PORT#COLLECTION`
(`qdrant+http://` parses but is not supported yet).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from vecbridge.errors import UserError
from vecbridge.stores.base import Batch, StoreInfo, StoreReader, StoreSpec, StoreWriter

__all__ = ["Batch", "StoreInfo", "StoreReader", "StoreSpec", "StoreWriter", "batch_rows", "open_reader",
           "open_writer", "parse_spec", "read_all", "spec_paths"]

# scheme -> module of vecbridge.stores that implements it
BACKENDS = {"npy": "npy", "parquet": "parquet", "chroma": "chroma", "qdrant": "qdrant", "lancedb": "lancedb",
            "faiss": "faiss", "hnswlib": "hnswlib"}
SERVERS = ("chroma+http", "chroma+https", "qdrant+http", "qdrant+https")
SUPPORTED_SERVERS = ("chroma+http", "chroma+https")
NAMED = {"chroma": "COLLECTION", "qdrant": "COLLECTION", "lancedb": "TABLE"}
KNOWN = ("PATH.npy, PATH.parquet, a directory of Parquet shards (parquet:DIR for a new one), "
         "chroma:PATH#COLLECTION, chroma+http://HOST:PORT#COLLECTION, "
         "qdrant:PATH#COLLECTION[/VECTOR_NAME], lancedb:PATH#TABLE, faiss:PATH, hnswlib:PATH")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+]*):(?!\\)")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_spec(text, what: str = "store") -> StoreSpec:
    """Parse a store spec once, with a one-line error that shows the accepted forms."""
    if isinstance(text, StoreSpec):
        return text
    text = str(text)
    if not text.strip():
        raise UserError(f"{what} is empty; give a store: {KNOWN}")
    m = _SCHEME.match(text)
    if not m:
        path = Path(text)
        if text.endswith(".npy"):
            return StoreSpec(text, "npy", path)
        if text.endswith(".parquet"):
            return StoreSpec(text, "parquet", path)
        if path.is_dir():
            if any(path.glob("*.parquet")):
                return StoreSpec(text, "parquet", path)
            raise UserError(f"{what} {text} is a directory with no Parquet shards (*.parquet) in it; give a "
                            f"vector file or a store: {KNOWN}")
        raise UserError(f"{what} {text} is not a store vecbridge knows (no scheme, not .npy or .parquet, not a "
                        f"directory of Parquet shards); give one of: {KNOWN}")
    scheme, rest = m.group(1).lower(), text[m.end():]
    if scheme in SUPPORTED_SERVERS:
        return _server_spec(text, scheme, rest, what)
    if scheme in SERVERS:
        raise UserError(f"{what} {text}: {scheme}:// servers are not supported yet; copy the collection to a "
                        f"local store or use the local form ({scheme.split('+')[0]}:PATH#COLLECTION)")
    if scheme not in BACKENDS:
        raise UserError(f"{what} {text}: unknown store scheme {scheme!r}; give one of: {KNOWN}")
    rest, _, query = rest.partition("?")
    options = tuple(parse_qsl(query, keep_blank_values=True))
    path_text, hash_sign, fragment = rest.partition("#")
    if not path_text:
        raise UserError(f"{what} {text}: the path is missing; write {scheme}:PATH" +
                        (f"#{NAMED[scheme]}" if scheme in NAMED else ""))
    name = vector_name = None
    if scheme in NAMED:
        if not hash_sign or not fragment:
            raise UserError(f"{what} {text}: the {NAMED[scheme].lower()} is missing; write "
                            f"{scheme}:{path_text}#{NAMED[scheme]}")
        name, _, vector_name = fragment.partition("/") if scheme == "qdrant" else (fragment, "", "")
        for part, label in ((name, NAMED[scheme].lower()), (vector_name, "vector name")):
            if part and not _NAME.match(part):
                raise UserError(f"{what} {text}: {label} {part!r} may hold only letters, digits, '.', '_' and "
                                "'-', starting with a letter or digit")
        vector_name = vector_name or None
    elif hash_sign:
        raise UserError(f"{what} {text}: {scheme}: stores have no #COLLECTION part; write {scheme}:PATH")
    return StoreSpec(text, scheme, Path(path_text), name, vector_name, options=options)


def _server_spec(text: str, scheme: str, rest: str, what: str) -> StoreSpec:
    """`chroma+http://HOST:PORT#COLLECTION`: a store served over HTTP (no path: nothing local to stage or record)."""
    backend, protocol = scheme.split("+")
    address, hash_sign, name = rest.partition("#")
    parsed = urlsplit(f"{protocol}:{address}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if not address.startswith("//") or not parsed.hostname or port == -1 or parsed.path not in ("", "/"):
        raise UserError(f"{what} {text}: write {scheme}://HOST:PORT#{NAMED[backend]}")
    if not hash_sign or not name:
        raise UserError(f"{what} {text}: the collection is missing; write {scheme}://{parsed.netloc}#COLLECTION")
    if not _NAME.match(name):
        raise UserError(f"{what} {text}: collection {name!r} may hold only letters, digits, '.', '_' and '-', "
                        "starting with a letter or digit")
    url = f"{protocol}://{parsed.hostname}:{port or (443 if protocol == 'https' else 8000)}"
    return StoreSpec(text, backend, None, name, None, url=url)


# Rows per batch when the caller names none: large for file formats (fewer, bigger writes), smaller for
# databases (their clients send each batch as one request).
FILE_BATCH_ROWS, DATABASE_BATCH_ROWS = 65536, 4096


def batch_rows(*specs) -> int:
    """The default batch size for moving rows between stores `specs`: the smallest any of them wants."""
    return min(DATABASE_BATCH_ROWS if parse_spec(s).scheme in ("chroma", "qdrant") else FILE_BATCH_ROWS
               for s in specs)


def _backend(spec: StoreSpec):
    return importlib.import_module(f"vecbridge.stores.{BACKENDS[spec.scheme]}")


def open_reader(spec, what: str = "`input`") -> StoreReader:
    """A read-only reader of `spec`; it never creates or changes anything in the store."""
    spec = parse_spec(spec, what)
    return _backend(spec).Reader(spec, what)


def open_writer(spec, what: str = "`output`", **kwargs) -> StoreWriter:
    """A writer for a new store at `spec` (see `StoreWriter`); checks the destination before any work."""
    spec = parse_spec(spec, what)
    return _backend(spec).Writer(spec, what=what, **kwargs)


def spec_paths(*specs) -> list[Path]:
    """The file-system paths of store specs (for the "never write over an input" checks)."""
    return [parse_spec(s).path for s in specs if s is not None and parse_spec(s).path is not None]


def read_all(reader: StoreReader, what: str, min_rows: int = 1, batch: int = FILE_BATCH_ROWS) -> tuple:
    """Every row of an open store in memory: (float32 vectors, every row validated; ids; documents or None)."""
    import numpy as np

    from align.vectors import check_vectors

    info = reader.info
    vectors = np.empty((info.count, info.dim), dtype=np.float32)
    ids: list = []
    documents: list | None = [] if info.documents else None
    for block in reader.batches(batch):
        if len(ids) + len(block) > info.count:
            break
        vectors[len(ids):len(ids) + len(block)] = block.vectors
        if documents is not None:
            documents.extend(block.documents or [None] * len(block))
        ids.extend(block.ids)
    if len(ids) != info.count:
        raise UserError(f"{what} {info.spec} changed while being read ({info.count} rows at the start, "
                        f"{len(ids)} read); stop the writers and run again")
    return check_vectors(vectors, f"{what} {info.spec}", min_rows=min_rows), ids, documents
