"""Fixtures shared by several test modules: the minilm-l6 encoder, a procrustes translator with a source to
translate, and a LanceDB store of minilm-l6 documents with reference texts. Helpers that tests import by name are
in tests/helpers.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import D_IN, D_OUT, N, procrustes_translator, random_isometry, random_unit_rows, write_store


@pytest.fixture(scope="session")
def minilm():
    """The registry's shared minilm-l6 on the CPU."""
    from encoders.registry import get_encoder

    return get_encoder("minilm-l6", device="cpu")


@pytest.fixture(scope="module")
def stores_world(tmp_path_factory):
    """A procrustes translator D_IN -> D_OUT (fake encoders enc-a -> enc-b), the isometry it learned, and N unit
    rows of D_IN dims to translate: (translator folder, isometry, rows)."""
    root = tmp_path_factory.mktemp("stores")
    rng = np.random.default_rng(0)
    x = random_unit_rows(rng, 1000, D_IN)
    q = random_isometry(rng, D_OUT, D_IN, np.float32)
    return procrustes_translator(root, x, x @ q.T), q, random_unit_rows(rng, N, D_IN)


@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory):
    """Two disjoint small text files, a source store of the first embedded by minilm-l6 (with documents) and
    a reference file of the second: (folder with ref.txt, the store's spec)."""
    from encoders.registry import get_encoder

    topics = ["weather", "market", "garden", "music", "football", "cooking", "travel", "physics"]
    d = tmp_path_factory.mktemp("texts")
    lines = [f"note {i}: a short {topics[i % 8]} report about item {i * 7 % 23} and {topics[i * 3 % 8]}"
             for i in range(400)]
    (d / "ref.txt").write_text("".join(line + "\n" for line in lines[200:]))
    docs = lines[:200]
    src = write_store(f"lancedb:{d}/ld#docs", get_encoder("minilm-l6").encode(docs), documents=docs,
                      encoder="minilm-l6")
    return d, src
