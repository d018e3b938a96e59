"""The leak: the store's vectors and ids, with the owner's truth for the rows that have one (TRUTH.jsonl, a
built-in corpus split the store was embedded from, or the store's own documents and metadata)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from align.vectors import check_vectors
from vecbridge import files, stores
from vecbridge.errors import UserError
from vecbridge.jobs.audit.attributes import AttributeSpec
from vecbridge.texts import jsonl_rows


@dataclass
class Leak:
    vectors: np.ndarray
    ids: list
    texts: list  # truth text per row, or None
    truth: dict  # attribute -> [value or None per row]
    truth_source: str | None
    info: dict

    def with_text(self) -> Leak | None:
        """The rows whose truth text is known (None when there are none)."""
        rows = [i for i, t in enumerate(self.texts) if t]
        return self.subset(rows) if rows else None

    def subset(self, rows) -> Leak:
        """The leak's rows `rows` (positions), in that order."""
        rows = [int(i) for i in rows]
        return Leak(self.vectors[rows], [self.ids[i] for i in rows], [self.texts[i] for i in rows],
                    {k: [v[i] for i in rows] for k, v in self.truth.items()}, self.truth_source, self.info)


def read_leak(spec: str, attributes: list[AttributeSpec], truth_path=None) -> Leak:
    """The leaked vectors with their ids, and the owner's truth (TRUTH.jsonl or builtin:CORPUS:SPLIT, else the
    store's documents and metadata) for every row that has one."""
    vectors, ids, documents, metadata, info = _read_store(spec)
    if truth_path is not None and str(truth_path).startswith("builtin:"):
        texts, truth = _builtin_truth(str(truth_path), ids, documents, attributes)
    elif truth_path is not None:
        texts, truth = _read_truth(truth_path, ids, attributes)
    else:
        texts = documents or [None] * len(ids)
        truth = {a.name: [None if not m or m.get(a.name) is None else str(m[a.name]) for m in
                          (metadata or [None] * len(ids))] for a in attributes}
    source = str(truth_path) if truth_path is not None else \
        "store documents and metadata" if documents or metadata else None
    texts = [t if isinstance(t, str) and t.strip() else None for t in texts]
    _check_truth_labels(attributes, truth)
    return Leak(vectors, ids, texts, truth, source, info.as_dict())


def _read_store(spec: str) -> tuple[np.ndarray, list, list | None, list | None, stores.StoreInfo]:
    with stores.open_reader(spec, "--vectors") as reader:
        info = reader.info
        vectors = np.empty((info.count, info.dim), dtype=np.float32)
        ids: list = []
        documents: list = []
        metadata: list = []
        for block in reader.batches(65536):
            vectors[len(ids):len(ids) + len(block)] = block.vectors[:info.count - len(ids)]
            documents.extend(block.documents or [None] * len(block))
            metadata.extend(block.metadata or [None] * len(block))
            ids.extend(block.ids)
        if len(ids) != info.count:
            raise UserError(f"--vectors {spec} changed while being read; stop the writers and run again")
    vectors = check_vectors(vectors, f"--vectors {spec}", min_rows=2)
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]  # JSON-native ids for the report
    return (vectors, ids, documents if any(d is not None for d in documents) else None,
            metadata if any(m for m in metadata) else None, info)


def _read_truth(path, ids: list, attributes: list[AttributeSpec]) -> tuple[list, dict]:
    what = f"--truth {path}"
    rows = _truth_rows(files.check_regular_file(path, "--truth"), what, attributes)
    where = {str(i): k for k, i in enumerate(ids)}
    unmatched = [row["id"] for _, row in rows if str(row["id"]) not in where]
    if unmatched:
        raise UserError(f"{what}: {len(unmatched)} of {len(rows)} truth ids match no vector in --vectors "
                        f"({len(rows) - len(unmatched)} matched; first unmatched: {unmatched[0]!r}); use the "
                        "store's ids (row numbers for a .npy file)")
    texts: list = [None] * len(ids)
    truth = {a.name: [None] * len(ids) for a in attributes}
    for number, row in rows:
        k = where[str(row["id"])]
        texts[k] = row.get("text")
        for a in attributes:
            value = row[a.name]
            if value is not None and not isinstance(value, str | int | bool):
                raise UserError(f"{what}: line {number}: attribute {a.name!r} must be a label string or null")
            truth[a.name][k] = None if value is None else str(value)
    return texts, truth


def _truth_rows(path, what: str, attributes: list[AttributeSpec]) -> list[tuple[int, dict]]:
    """(line number, row) of each TRUTH.jsonl row, each checked to hold an id and every attribute."""
    rows = []
    shape = '{"id": ..., "text": ..., "<attribute>": "<value>"}'
    for number, row in jsonl_rows(path, what, shape):
        if "id" not in row:
            raise UserError(f"{what}: line {number} has no \"id\"; each row is {shape}")
        if "text" in row and not (row["text"] is None or isinstance(row["text"], str)):
            raise UserError(f"{what}: line {number}: \"text\" must be a string")
        for a in attributes:
            if a.name not in row:
                raise UserError(f"{what}: line {number} (id {row['id']!r}) has no attribute {a.name!r}; "
                                "give it on every row (null where unknown)")
        rows.append((number, row))
    if not rows:
        raise UserError(f"{what} holds no rows")
    return rows


def _builtin_truth(spec: str, ids: list, documents: list | None,
                   attributes: list[AttributeSpec]) -> tuple[list, dict]:
    """The truth of a store `vecbridge embed` filled from the built-in split `spec`: id k is the split's row k,
    its text and its attribute columns. Where the store holds documents, each must be its row's text: ids that
    are not those row numbers would score every attack against another record's truth."""
    from vecbridge.corpora import load_corpus

    what = f"--truth {spec}"
    name, _, split = spec.removeprefix("builtin:").partition(":")
    if not split:
        raise UserError(f"{what}: name the split the store was embedded from, e.g. builtin:{name}:eval")
    ds = load_corpus(name, split)
    missing = [a.name for a in attributes if a.name not in ds.column_names]
    if missing:
        raise UserError(f"{what} has no column {missing[0]!r} for that attribute; its columns: "
                        f"{', '.join(ds.column_names)}")
    rows = [_row_number(i, len(ds)) for i in ids]
    if all(r is None for r in rows):
        raise UserError(f"{what}: no id of --vectors is a row number of that split ({len(ds)} rows); give the "
                        "split the store was embedded from, or a TRUTH.jsonl")
    table = ds.with_format("arrow")[:]
    column = {c: table[c].to_pylist() for c in ["text", *(a.name for a in attributes)]}
    texts = [None if r is None else column["text"][r] for r in rows]
    for k, (text, document) in enumerate(zip(texts, documents or [], strict=False)):
        if text is not None and document is not None and document != text:
            raise UserError(f"{what}: the store's document of id {ids[k]!r} is not that split's row {ids[k]}; "
                            "the store was not embedded from it in order: give its TRUTH.jsonl")
    truth = {a.name: [None if r is None or column[a.name][r] in (None, "") else str(column[a.name][r])
                      for r in rows] for a in attributes}
    return texts, truth


def _row_number(store_id, rows: int) -> int | None:
    """The row number a store id names (stores that keep ids as strings give "12" for row 12), or None."""
    text = str(store_id)
    return int(text) if text.isdigit() and str(int(text)) == text and int(text) < rows else None


def _check_truth_labels(attributes: list[AttributeSpec], truth: dict) -> None:
    for a in attributes:
        if a.labels is None:
            continue
        stray = sorted({v for v in truth[a.name] if v is not None and v not in a.labels})
        if stray:
            raise UserError(f"truth values of attribute {a.name!r} that are not among its labels: "
                            f"{', '.join(map(repr, stray[:5]))}; add them to the labels or set them to null")
