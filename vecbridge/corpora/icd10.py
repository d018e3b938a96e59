"""ICD-10-CM (the data files of PyPI simple-icd-10-cm, read as data, never imported): one row per billable leaf
code with its description, labelled with its chapter ("01".."22") and 3-character category (e.g. "A00").

Leaf codes that take a 7th character (injuries, pregnancy, ...) expand as the package itself expands them: the
code padded with X, plus each extension its `sevenChrDef` (own or inherited) allows, kept only where the
official code list confirms the code; the description is the leaf's plus ", " plus the extension's."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path


def _leaves(elem: ET.Element, seven: list[tuple[str, str]]) -> Iterator[tuple[ET.Element, list]]:
    own = elem.find("sevenChrDef")
    if own is not None:
        seven = [(ext.get("char", ""), ext.text or "") for ext in own.findall("extension")]
    children = elem.findall("section") + elem.findall("diag")
    if elem.tag == "diag" and not elem.findall("diag"):
        yield elem, seven
    for child in children:
        yield from _leaves(child, seven)


def _expand(code: str, desc: str, seven: list[tuple[str, str]], codes: set[str]) -> Iterator[tuple[str, str]]:
    if not seven:
        yield code, desc
        return
    padded = (code + "." if len(code) == 3 else code).ljust(7, "X")
    for char, extension in seven:
        if (padded + char).replace(".", "") in codes:
            yield padded + char, f"{desc}, {extension}"


def parse_tabular(xml_text: str, codes: set[str]) -> Iterator[dict]:
    """Tabular XML + the set of valid codes (no dots) -> rows."""
    root = ET.fromstring(xml_text)
    for chapter in root.findall("chapter"):
        number = f"{int(chapter.findtext('name', '0')):02d}"
        for leaf, seven in _leaves(chapter, []):
            for code, desc in _expand(leaf.findtext("name", ""), leaf.findtext("desc", ""), seven, codes):
                yield {"id": code, "text": desc, "chapter": number, "category": code[:3]}


def parse(root: Path) -> Iterator[dict]:
    data = root / "simple_icd_10_cm" / "data"
    (xml_path,) = data.glob("icd10c-tabular-*.xml")
    (codes_path,) = data.glob("code-list-*.txt")
    codes = set(codes_path.read_text(encoding="utf-8").split())
    yield from parse_tabular(xml_path.read_text(encoding="utf-8"), codes)
