"""GCIDE (Debian dict-gcide): the 1913 Webster in dictd format, `gcide.index` (headword, base64 offset, base64
length) over the gzip-compressed `gcide.dict.dz`. One row per numbered sense, with its subject tag such as
`Zool.` or `Med.` (empty where none) as a label and the tag itself removed from the text."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # etymologies and source tags such as [1913 Webster]
_BRACES = re.compile(r"\{([^{}]*)\}")  # cross-reference markup {Dilute}
_CITATION = re.compile(r"\s--\s?[A-Z][^\n]*")  # trailing author credit: "water. --Arbuthnot."
_SENSE = re.compile(r"(?m)^\s*(?:\d+\.|Note:)\s")
_SUBJECT = re.compile(r"^\(([A-Z][A-Za-z.& ]{1,30})\)\s*")
_HEADER_SUBJECT = re.compile(r"\(([A-Z][A-Za-z.& ]{1,30})\)\s*$")
# Quotations and their credits are indented far deeper than definitions (3-6 spaces).
_QUOTE_INDENT = 8


def decode_b64(s: str) -> int:
    """dictd's base64 numbers: big-endian digits of the base64 alphabet, no padding."""
    value = 0
    for c in s:
        value = value * 64 + _B64_VALUE[c]
    return value


def parse_index(text: str) -> list[tuple[str, int, int]]:
    """Index lines -> (headword, offset, length), database-info entries (`00-database-*`) left out."""
    entries = []
    for line in text.splitlines():
        head, offset, length = line.split("\t")
        if not head.startswith("00-"):
            entries.append((head, decode_b64(offset), decode_b64(length)))
    return entries


def entry_senses(entry: str) -> Iterator[tuple[str, str]]:
    """(subject, text) for each sense of one entry; quotations, etymologies and synonym lists dropped."""
    entry = _BRACKETS.sub(" ", _BRACKETS.sub(" ", entry))
    # The first line holds headword, pronunciation, part of speech and, for a one-sense entry, its subject.
    header, _, body = entry.partition("\n")
    header_subject = _HEADER_SUBJECT.search(header)
    default_subject = header_subject.group(1) if header_subject else ""
    body = body.split("Syn:")[0]
    lines = [ln for ln in body.splitlines() if len(ln) - len(ln.lstrip()) < _QUOTE_INDENT]
    body = _BRACES.sub(r"\1", _CITATION.sub("", "\n".join(lines)))
    starts = [m.start() for m in _SENSE.finditer(body)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    for begin, end in zip(starts, [*starts[1:], len(body)], strict=True):
        sense = re.sub(r"^\s*(?:\d+\.|Note:)?\s*", "", body[begin:end]).strip()
        match = _SUBJECT.match(sense)
        subject = match.group(1) if match else default_subject
        text = sense[match.end():] if match else sense
        if text:
            yield subject, text


def parse_dict(index_text: str, data: bytes) -> Iterator[dict]:
    # Several headwords point at one entry (inflected forms); each entry is read once.
    seen: set[tuple[int, int]] = set()
    for head, offset, length in parse_index(index_text):
        if (offset, length) in seen:
            continue
        seen.add((offset, length))
        entry = data[offset:offset + length].decode("utf-8", errors="replace")
        for k, (subject, text) in enumerate(entry_senses(entry)):
            yield {"id": f"{offset}:{k}", "text": text, "headword": head, "subject": subject}


def parse(root: Path) -> Iterator[dict]:
    folder = root / "usr" / "share" / "dictd"
    index_text = (folder / "gcide.index").read_text(encoding="utf-8")
    # A .dict.dz is an ordinary gzip stream (dictzip adds a random-access table in a header field).
    with gzip.open(folder / "gcide.dict.dz") as f:
        data = f.read()
    yield from parse_dict(index_text, data)
