"""Corpus parsers on small sample files cut from the real packages, the split rule, and the stored corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vecbridge.corpora import brown, cleaning, gcide, icd10, nlp_corpus, spamassassin, store, wordnet
from vecbridge.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "corpora"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_split_is_deterministic_disjoint_and_normalisation_insensitive():
    texts = [f"sentence number {i} about something" for i in range(3000)]
    splits = [cleaning.split_of(t) for t in texts]
    assert splits == [cleaning.split_of(t) for t in texts]
    assert cleaning.split_of("A  b\tC") == cleaning.split_of("a b c")
    share = {s: splits.count(s) / len(splits) for s in cleaning.SPLITS}
    assert 0.40 < share["train_a"] < 0.50 and 0.40 < share["train_b"] < 0.50 and 0.07 < share["eval"] < 0.13
    # Pinned: a change here silently reshuffles every stored corpus, and machines would disagree.
    assert [cleaning.split_of(t) for t in ("hello world", "the cat sat on the mat", "a", "b")] == \
        ["train_b", "train_a", "train_a", "train_b"]


def test_finish_rows_filters_length_dedupes_and_clips():
    rows = [{"id": "1", "text": "one two three four"}, {"id": "2", "text": "One  two three FOUR"},
            {"id": "3", "text": "too short"}, {"id": "4", "text": " ".join(["w"] * 70)}]
    kept = list(cleaning.finish_rows(rows, 4, 64))
    assert [r["id"] for r in kept] == ["1"] and kept[0]["split"] in cleaning.SPLITS
    clipped = list(cleaning.finish_rows(rows[3:], 1, 10, clip=True))
    assert clipped[0]["text"] == " ".join(["w"] * 10)


def test_strip_html_drops_script_style_and_decodes_entities():
    text = cleaning.strip_html("<style>x{}</style><p>a &amp; b</p><script>f()</script><br>c")
    assert cleaning.normalise(text) == "a & b c"


def test_nlp_corpus_reads_documents_in_numeric_order():
    rows = list(nlp_corpus.parse(FIXTURES / "nlp-corpus"))
    assert rows[0]["id"] == "doc-0:0" and rows[-1]["id"].startswith("doc-10:")
    assert all(isinstance(r["text"], str) for r in rows)


def test_wordnet_lines_give_gloss_and_lexname():
    line = ("00001930 03 n 01 physical_entity 0 007 @ 00001740 n 0000 ~ 00002452 n 0000 | "
            "an entity that has physical existence  \n")
    row = wordnet.parse_data_line(line)
    assert row == {"id": "n:00001930", "text": "an entity that has physical existence", "lexname": "noun.Tops",
                   "pos": "n", "lemma": "physical entity"}
    assert wordnet.parse_data_line("  1 This software and database is being provided\n") is None
    assert len(wordnet.LEXNAMES) == 45 and wordnet.LEXNAMES[18] == "noun.person"
    rows = list(wordnet.parse(FIXTURES / "wordnet"))
    assert len(rows) == 32 and {r["pos"] for r in rows} >= {"n", "v", "r"}
    assert all(r["lexname"] in wordnet.LEXNAMES for r in rows)


def test_brown_detokenises_and_labels_genre():
    assert brown.detokenise(["``", "Hi", "''", ",", "he", "said", "(", "twice", ")", "."]) == \
        '"Hi", he said (twice).'
    rows = list(brown.parse(FIXTURES / "brown"))
    assert {r["genre"] for r in rows} == {"news", "learned"}
    first = rows[0]["text"]
    assert first.startswith("The Fulton County Grand Jury said Friday") and "/" not in first
    assert first.endswith("took place.")


def test_gcide_base64_index_and_senses():
    assert gcide.decode_b64("A") == 0 and gcide.decode_b64("BA") == 64 and gcide.decode_b64("5I") == 57 * 64 + 8
    rows = list(gcide.parse(FIXTURES / "gcide"))
    heads = {r["headword"] for r in rows}
    assert "00-database-short" not in heads and {"Diluent", "Bogsucker"} <= heads
    # `Diluted` points at the same entry as `Dilute`: read once.
    assert len({r["id"] for r in rows}) == len(rows)
    med = next(r for r in rows if r["headword"] == "Diluent" and r["subject"])
    assert med["subject"] == "Med." and cleaning.normalise(med["text"]).startswith("An agent used for")
    text = " ".join(r["text"] for r in rows)
    assert "1913 Webster" not in text and "--Arbuthnot" not in text and "{" not in text
    assert next(r for r in rows if r["headword"] == "Bogsucker")["subject"] == "Zool."


def test_spamassassin_bodies_without_headers_and_labels():
    rows = {r["id"]: r for r in spamassassin.parse(FIXTURES / "spamassassin")}
    ham = rows["easy-ham-1/00001"]
    assert ham["label"] == "ham" and ham["list_id"] == "dev.example.org" and ham["group"] == "easy-ham-1"
    assert "From:" not in ham["text"] and "lock file is stale" in ham["text"]
    assert "Café at noon" in rows["easy-ham-1/00002"]["text"]  # quoted-printable decoded
    spam = rows["spam-2/00001"]
    assert spam["label"] == "spam" and spam["list_id"] == ""
    assert cleaning.normalise(spam["text"]) == "You have WON a free cruise & prize! Click now to claim it today."


def test_icd10_leaves_with_seventh_characters():
    rows = list(icd10.parse(FIXTURES / "icd10"))
    assert [r["id"] for r in rows] == ["A00.0", "A00.9", "S00.00XA", "S00.00XD", "S01.0XXD"]
    assert rows[2] == {"id": "S00.00XA", "text": "Unspecified superficial injury of scalp, initial encounter",
                       "chapter": "19", "category": "S00"}
    assert rows[0]["chapter"] == "01"


def _build_all(home):
    for name in store.SOURCES:
        store.build(name, FIXTURES / name)


def test_build_load_and_list(home):
    _build_all(home)
    mails = store.load_corpus("spamassassin")
    assert set(mails.column_names) == {"id", "text", "label", "group", "list_id", "split"}
    # The two spam mails have the same visible text: one is kept.
    assert len(mails) == 3
    parts = [store.load_corpus("brown", s) for s in cleaning.SPLITS]
    ids = [set(p["id"]) for p in parts]
    assert sum(map(len, ids)) == len(store.load_corpus("brown")) and not (ids[0] & ids[1])
    assert all(set(p["split"]) <= {s} for p, s in zip(parts, cleaning.SPLITS, strict=True))
    pool = store.load_corpus("pool")
    assert set(pool["source"]) == set(store.POOL_MEMBERS)
    assert all(4 <= len(t.split()) <= 64 for t in pool["text"])
    assert len({cleaning.dedupe_key(t) for t in pool["text"]}) == len(pool)
    # every corpus and split comes in hash order, like the pool: its first rows are a sample, not its first chapter
    for name in ("icd10", "brown"):
        for split in (None, *cleaning.SPLITS):
            texts = store.load_corpus(name, split)["text"]
            assert [cleaning.order_key(t) for t in texts] == sorted(cleaning.order_key(t) for t in texts)
    codes = store.load_corpus("icd10")["id"]
    assert sorted(codes) == ["A00.0", "A00.9", "S00.00XA", "S00.00XD", "S01.0XXD"] and codes != sorted(codes)
    listing = {e["name"]: e for e in store.list_corpora()}
    assert listing["icd10"]["rows"] == 5 and listing["pool"]["rows"] == len(pool)
    assert listing["wordnet"]["labels"]["lexname"]["distinct"] >= 2
    json.dumps(listing)


def test_fetch_skips_stored_corpora_without_downloading(home, monkeypatch):
    _build_all(home)
    monkeypatch.setattr(store, "download", lambda *a: pytest.fail("must not download"))
    assert [m["status"] for m in store.fetch(["pool"], progress=False)] == ["present"] * 4


def test_errors_for_unknown_and_unfetched(home):
    with pytest.raises(UserError, match="unknown corpus"):
        store.load_corpus("nope")
    with pytest.raises(UserError, match="vecbridge data fetch brown"):
        store.load_corpus("brown")
    with pytest.raises(UserError, match="vecbridge data fetch pool"):
        store.load_corpus("pool")
    with pytest.raises(UserError, match="unknown split"):
        store.load_corpus("brown", "test")
    with pytest.raises(UserError, match="unknown corpus"):
        store.fetch(["nope"], progress=False)


def test_hub_offline_is_a_clear_error(monkeypatch):
    from vecbridge.corpora import load_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        load_hub("jxm/nq_corpus_dpr")


def test_data_cli_list_json(home, capsys):
    import argparse

    from vecbridge.commands import data

    _build_all(home)
    parser = argparse.ArgumentParser()
    data.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "list", "--json"])
    assert args.func(args) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(store.BUILTINS)
    args = parser.parse_args(["data", "list"])
    assert args.func(args) == 0 and "train_a" in capsys.readouterr().out
