"""Text clean-up shared by the corpus parsers: whitespace, HTML, length filters, dedupe and the split hash.

The split depends only on the normalised text, so it is the same on every machine and a text (or a duplicate
of it in another corpus) always lands in the same split: the two sides of a translator never share a text.
"""

from __future__ import annotations

import hashlib
import html.parser
import unicodedata
from collections.abc import Iterable, Iterator

SPLITS = ("train_a", "train_b", "eval")
# Percent boundaries on a 0..99 hash bucket: 45% train_a, 45% train_b, 10% eval.
_SPLIT_BOUNDS = ((45, "train_a"), (90, "train_b"), (100, "eval"))
# Versioned salt: changing the split rule must change every assignment, not silently a few of them.
_SPLIT_SALT = b"vecbridge-split-v1"


def normalise(text: str) -> str:
    """Collapse whitespace runs to one space and trim."""
    return " ".join(text.split())


def dedupe_key(text: str) -> str:
    """Texts equal up to Unicode compatibility forms, case and whitespace count as one."""
    return unicodedata.normalize("NFKC", normalise(text)).casefold()


def _digest(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(dedupe_key(text).encode("utf-8"), digest_size=8, key=_SPLIT_SALT).digest(), "big")


def split_of(text: str) -> str:
    bucket = _digest(text) % 100
    return next(name for bound, name in _SPLIT_BOUNDS if bucket < bound)


def order_key(text: str) -> int:
    """A stable pseudo-random position: the high bits of the split hash, independent of the split bucket."""
    return _digest(text) >> 8


def word_count(text: str) -> int:
    return len(text.split())


def clip_words(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words])


def finish_rows(rows: Iterable[dict], min_words: int, max_words: int, clip: bool = False) -> Iterator[dict]:
    """Normalise `text`, drop rows outside min..max words (or clip to max), drop duplicates, add `split`.

    The first occurrence of a duplicate wins, so parsers should yield rows in a stable order.
    """
    seen: set[str] = set()
    for row in rows:
        text = normalise(row["text"])
        if clip:
            text = clip_words(text, max_words)
        n = word_count(text)
        if n < min_words or n > max_words:
            continue
        key = dedupe_key(text)
        if key in seen:
            continue
        seen.add(key)
        yield {**row, "text": text, "split": split_of(text)}


class _TextExtractor(html.parser.HTMLParser):
    _SKIP = {"script", "style", "head", "title"}
    _BREAKS = {"br", "p", "div", "tr", "li", "td", "h1", "h2", "h3", "h4", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def strip_html(markup: str) -> str:
    """Visible text of an HTML document (scripts, styles and the head dropped, entities decoded)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)
