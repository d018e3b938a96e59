"""read_texts: the one reader of texts to embed, for files, built-in corpora and hub datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from vecbridge.corpora import store
from vecbridge.errors import UserError
from vecbridge.texts import read_texts

FIXTURES = Path(__file__).parent / "fixtures" / "corpora"


def test_jsonl_and_txt(tmp_path):
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"text": "first"}\n\n{"text": "second", "x": 1}\n')
    assert read_texts(str(jl)) == ["first", "second"]
    assert read_texts(str(jl), limit=1) == ["first"]
    txt = tmp_path / "a.txt"
    txt.write_text("one\n\n  \ntwo words\r\n")
    assert read_texts(str(txt)) == ["one", "two words"]


@pytest.mark.parametrize("content, pattern", [
    ('{"text": "ok"}\n{"text": broken}\n', "line 2 is not valid JSON"),
    ('{"text": "ok"}\n{"title": "x"}\n', "line 2 has no `text` field"),
    ('{"text": 3}\n', "line 1: `text` must be a non-empty string"),
    ("", "holds no texts"),
])
def test_bad_jsonl(tmp_path, content, pattern):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=pattern):
        read_texts(str(path))


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_texts(str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="holds no texts"):
        read_texts(str(tmp_path / "empty.txt"))
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(UserError, match="unknown extension"):
        read_texts(str(tmp_path / "x.csv"))
    with pytest.raises(UserError, match="positive integer"):
        read_texts(str(tmp_path / "x.csv"), limit=0)


def test_builtin(tmp_path, monkeypatch):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match="vecbridge data fetch spamassassin"):
        read_texts("builtin:spamassassin")
    for name in store.SOURCES:
        store.build(name, FIXTURES / name)
    a, b = read_texts("builtin:pool:train_a"), read_texts("builtin:pool:train_b")
    assert a and b and not set(a) & set(b)
    assert read_texts("builtin:pool:train_a") == a
    assert read_texts("builtin:brown", limit=3) == read_texts("builtin:brown")[:3]
    with pytest.raises(UserError, match="unknown corpus"):
        read_texts("builtin:nope")
    with pytest.raises(UserError, match="unknown split"):
        read_texts("builtin:pool:test")


def test_hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        read_texts("hf:jxm/nq_corpus_dpr")
