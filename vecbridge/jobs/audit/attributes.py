"""The attributes an audit infers (ATTRS.json): zero-shot labels, or a probe trained on a labelled public corpus,
and the probe's labelled rows read once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.texts import jsonl_rows

PROBE_LIMIT = 20000  # labelled training rows per probe, a seeded sample of the rest
TEMPLATES = ["This text is about {}."]


@dataclass
class AttributeSpec:
    name: str
    labels: list[str] | None
    train: str | None = None
    column: str | None = None
    templates: list[str] = field(default_factory=lambda: list(TEMPLATES))
    rows: tuple[list[str], list[str]] | None = None  # a probe's labelled training texts, once read

    @property
    def kind(self) -> str:
        return "probe" if self.train else "zero-shot"


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where} must be a list of at least 2 non-empty label strings")
    if len(set(value)) != len(value):
        raise UserError(f"{where} repeats a label")
    return value


def read_attributes(path: str | os.PathLike) -> list[AttributeSpec]:
    """ATTRS.json: {"attr": ["label", ...]} (zero-shot) or {"attr": {"labels": [...], "train": SPEC,
    "column": NAME}} (probe; `labels` optional there), or {"attr": {"labels": [...], "templates": [...]}}."""
    what = f"--attributes {path}"
    data = files.read_json(files.check_regular_file(path, "--attributes"), "--attributes")
    if not isinstance(data, dict) or not data:
        raise UserError(f"{what} must be a JSON object of attributes, e.g. "
                        '{"topic": ["sport", "politics"]} or {"topic": {"labels": [...], "train": SPEC, '
                        '"column": NAME}}')
    return [_attribute(name, value, f"{what}: attribute {name!r}") for name, value in data.items()]


def _attribute(name: str, value, where: str) -> AttributeSpec:
    if isinstance(value, list):
        return AttributeSpec(name, _strings(value, where))
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a list of labels or an object with labels / train / column")
    unknown = set(value) - {"labels", "train", "column", "templates"}
    if unknown:
        raise UserError(f"{where} has unknown keys {sorted(unknown)}; use labels, train, column, templates")
    train, column = value.get("train"), value.get("column")
    if (train is None) != (column is None) or (train is not None and not (isinstance(train, str)
                                                                           and isinstance(column, str))):
        raise UserError(f"{where}: a probe needs both \"train\" (a text SPEC) and \"column\" (its label column)")
    labels = value.get("labels")
    labels = _strings(labels, f"{where}: labels") if labels is not None or not train else None
    templates = value.get("templates", list(TEMPLATES))
    if not isinstance(templates, list) or not templates or not all(
            isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise UserError(f"{where}: templates must be a list of strings each holding one {{}} for the label")
    return AttributeSpec(name, labels, train, column, templates)


def probe_rows(a: AttributeSpec, seed: int) -> tuple[list[str], list[str]]:
    """(texts, labels) of a probe's labelled public corpus: builtin:CORPUS[:split] or a .jsonl file; at most
    `PROBE_LIMIT` rows, a seeded sample."""
    where = f"attribute {a.name!r}: train {a.train!r}"
    texts, labels = _builtin_rows(a, where) if a.train.startswith("builtin:") else _jsonl_rows(a, where)
    keep = [i for i, v in enumerate(labels) if v not in (None, "") and (a.labels is None or str(v) in a.labels)]
    if len(keep) > PROBE_LIMIT:
        keep = sorted(np.random.default_rng(seed).choice(keep, PROBE_LIMIT, replace=False).tolist())
    rows = [texts[i] for i in keep], [str(labels[i]) for i in keep]
    if len(set(rows[1])) < 2:
        raise UserError(f"{where}: fewer than 2 labels among its rows of column {a.column!r}; check the column")
    return rows


def _builtin_rows(a: AttributeSpec, where: str) -> tuple[list, list]:
    from vecbridge.corpora import load_corpus

    name, _, split = a.train.removeprefix("builtin:").partition(":")
    ds = load_corpus(name, split or None)
    if a.column not in ds.column_names:
        raise UserError(f"{where} has no column {a.column!r}; its columns: {', '.join(ds.column_names)}")
    table = ds.with_format("arrow")[:]
    return table["text"].to_pylist(), table[a.column].to_pylist()


def _jsonl_rows(a: AttributeSpec, where: str) -> tuple[list, list]:
    path = files.check_regular_file(a.train, where)
    texts, labels = [], []
    for number, row in jsonl_rows(path, where, f'{{"text": "...", "{a.column}": "<value>"}}'):
        if not isinstance(row.get("text"), str) or a.column not in row:
            raise UserError(f"{where}: line {number} needs \"text\" and {a.column!r}")
        texts.append(row["text"])
        labels.append(row[a.column])
    return texts, labels
