"""Read the texts to embed from one SPEC: a `.jsonl` file (field `text`), a `.txt` file (one text per line),
`builtin:CORPUS[:split]` (a fetched built-in corpus) or `hf:DATASET[:split]` (a hub dataset)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from vecbridge.errors import UserError


def jsonl_rows(path, what: str, shape: str = '{"text": "..."}') -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file; a line that is not a JSON object is a
    one-line error naming `what` and the line (`shape`: what a line should look like)."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{what}: line {number} is not valid JSON ({e.msg}); each line must be an "
                                    f"object such as {shape}") from None
                if not isinstance(row, dict):
                    raise UserError(f"{what}: line {number} is not an object; each line must be one such as "
                                    f"{shape}")
                yield number, row
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text") from None


def _read_jsonl(path: Path) -> list[str]:
    texts = []
    for number, record in jsonl_rows(path, str(path)):
        if "text" not in record:
            raise UserError(f"{path}: line {number} has no `text` field; "
                            "each line must be an object such as {\"text\": \"...\"}")
        if not isinstance(record["text"], str) or not record["text"].strip():
            raise UserError(f"{path}: line {number}: `text` must be a non-empty string")
        try:
            record["text"].encode("utf-8")
        except UnicodeEncodeError as e:
            raise UserError(f"{path}: line {number}: `text` holds an invalid character "
                            f"({record['text'][e.start]!r}, a lone surrogate escape); fix the text's "
                            "encoding") from None
        texts.append(record["text"])
    return texts


def _read_txt(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def _split_spec(rest: str) -> tuple[str, str | None]:
    name, _, split = rest.partition(":")
    return name, split or None


def _read_file(path: Path) -> list[str]:
    readers = {".jsonl": _read_jsonl, ".txt": _read_txt}
    if path.suffix not in readers:
        raise UserError(f"cannot read texts from {path}: unknown extension {path.suffix!r}; use a .jsonl file "
                        "(field `text`), a .txt file (one text per line), builtin:CORPUS or hf:DATASET")
    if not path.exists():
        raise UserError(f"text file {path} does not exist")
    if not path.is_file():
        raise UserError(f"text file {path} is not a regular file; give a .jsonl or .txt file")
    try:
        return readers[path.suffix](path)
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    except OSError as e:
        raise UserError(f"text file {path} cannot be read ({e.strerror})") from None


def read_texts(spec: str, limit: int | None = None) -> list[str]:
    """The texts named by `spec`, in a deterministic order, at most `limit` of them (the first ones).

    `.jsonl`: one JSON object per line with a non-empty string `text`; blank lines are skipped.
    `.txt`: one text per line; blank lines are skipped, so line numbers and text indices may differ.
    `builtin:CORPUS[:split]`: e.g. `builtin:pool:train_a`, `builtin:spamassassin` (fetch it first).
    `hf:DATASET[:split]`: a hub dataset with a `text` column (split defaults to `train`).
    Bad input (missing or empty file, malformed line, unknown corpus or split) raises UserError.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"limit must be a positive integer, got {limit!r}")
    if spec.startswith("builtin:"):
        from vecbridge.corpora import load_corpus

        name, split = _split_spec(spec.removeprefix("builtin:"))
        ds = load_corpus(name, split)
        column = ds.select(range(min(limit, len(ds)))) if limit is not None else ds
        texts = column.with_format("arrow")["text"].to_pylist()
    elif spec.startswith("hf:"):
        from vecbridge.corpora import load_hub

        name, split = _split_spec(spec.removeprefix("hf:"))
        if not name:
            raise UserError("hf: needs a dataset name, e.g. hf:jxm/nq_corpus_dpr or hf:jxm/nq_corpus_dpr:train")
        ds = load_hub(name, split)
        column = ds.select(range(min(limit, len(ds)))) if limit is not None else ds
        texts = list(column["text"])
    else:
        texts = _read_file(Path(spec))
    if not texts:
        raise UserError(f"{spec} holds no texts; give a file or corpus with at least one text")
    return texts[:limit] if limit is not None else texts
