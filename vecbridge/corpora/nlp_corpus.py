"""nlp-corpus (npm): 100,000 mixed English sentences in `package/builds/doc-N.json`, each a JSON list of strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def parse_document(text: str, doc: str) -> Iterator[dict]:
    for k, sentence in enumerate(json.loads(text)):
        if isinstance(sentence, str):
            yield {"id": f"{doc}:{k}", "text": sentence}


def parse(root: Path) -> Iterator[dict]:
    builds = root / "package" / "builds"
    # Numeric order (doc-2 before doc-10) keeps ids and first-wins dedupe stable.
    for path in sorted(builds.glob("doc-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        yield from parse_document(path.read_text(encoding="utf-8"), path.stem)
