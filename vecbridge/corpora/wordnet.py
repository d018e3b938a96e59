"""WordNet glosses (Debian wordnet-base): one row per synset of `data.{noun,verb,adj,adv}`, labelled with its
lexicographer class (field 2 of the line, a lexicographer file number) and part of speech."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# The fixed numbering of WordNet 3.0's lexicographer files (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
DATA_FILES = ("noun", "verb", "adj", "adv")


def parse_data_line(line: str) -> dict | None:
    """One synset line -> row; None for the licence header (lines that start with spaces)."""
    if not line.strip() or line.startswith(" "):
        return None
    fields, _, gloss = line.partition(" | ")
    offset, lex_filenum, pos, w_cnt, *rest = fields.split(" ")
    lemma = rest[0] if int(w_cnt, 16) else ""
    return {"id": f"{pos}:{offset}", "text": gloss.strip(), "lexname": LEXNAMES[int(lex_filenum)],
            "pos": pos, "lemma": lemma.replace("_", " ")}


def parse(root: Path) -> Iterator[dict]:
    folder = root / "usr" / "share" / "wordnet"
    for name in DATA_FILES:
        with open(folder / f"data.{name}", encoding="utf-8") as f:
            for line in f:
                row = parse_data_line(line)
                if row is not None:
                    yield row
