"""The attacks room on vectors with known answers: real minilm-l6 vectors under an exact rotation (the attack on
the translated vectors equals the ideal), the defences' shapes and utility, the keyword decoder and scores on
known cases, and the sensitive-item patterns."""

from __future__ import annotations

import numpy as np
import pytest

from attacks import AttackError
from attacks.attributes import ProbeAttribute, ZeroShotAttribute, attribute_scores, rank_labels
from attacks.defences import (
    Binary,
    DimensionReduction,
    GaussianNoise,
    Int8,
    ProductQuantisation,
    SecretRotation,
    neighbour_overlap,
    parse_defences,
)
from attacks.inversion import KeywordDecoder, NearestTexts, content_words, recovered_items, sensitive_items
from attacks.metrics import chance, item_f1, keyword_scores, top_k_accuracy
from tests.helpers import TOPICS, sentences


@pytest.fixture(scope="module")
def space():
    from encoders.registry import get_encoder

    enc = get_encoder("minilm-l6")
    train_texts, train_labels = sentences(160, 0)
    texts, labels = sentences(80, 1)
    return enc, enc.encode(train_texts), train_labels, train_texts, enc.encode(texts), labels, texts


def test_exact_rotation_attack_equals_ideal(space):
    enc, x_train, y_train, _, x, y, _ = space
    rotation = SecretRotation(seed=3).fit(x)
    leaked = rotation.transform(x)
    translated = leaked @ rotation.rotation_.T  # the exact inverse: what a perfect translator returns
    for model in (ZeroShotAttribute(list(TOPICS)).fit(enc.encode), ProbeAttribute().fit(x_train, y_train)):
        ideal = attribute_scores(rank_labels(model, x, 2), y, 2)
        attacked = attribute_scores(rank_labels(model, translated, 2), y, 2)
        naive = attribute_scores(rank_labels(model, leaked, 2), y, 2)
        assert attacked == ideal
        assert ideal["accuracy"] > 0.9 and ideal["chance"] == 0.25 and ideal["n"] == 80
        assert naive["accuracy"] < ideal["accuracy"] - 0.3


def test_attribute_scores_skip_unknown_truth():
    ranked = [["a", "b"], ["b", "a"], ["a", "b"]]
    assert attribute_scores(ranked, ["a", None, "b"], 2) == {"accuracy": 0.5, "top_k_accuracy": 1.0, "k": 2,
                                                             "chance": 0.5, "n": 2}
    assert top_k_accuracy([], [], 1) is None and chance([]) is None
    with pytest.raises(AttackError, match="at least 2 distinct labels"):
        ZeroShotAttribute(["only"]).fit(lambda t: np.ones((len(t), 4)))
    with pytest.raises(AttackError, match="exactly one"):
        ZeroShotAttribute(["a", "b"], templates=["no slot"]).fit(lambda t: np.ones((len(t), 4)))


def test_keyword_scores_known_case():
    assert keyword_scores([{"a", "b"}, set()], [{"b", "c"}, {"d"}]) == {
        "precision": 0.5, "recall": pytest.approx(1 / 3), "f1": pytest.approx(0.4), "n": 2}
    assert item_f1({"a"}, {"a"}) == 1.0 and item_f1(set(), {"a"}) == 0.0
    assert content_words("The storms and the RAIN, 2024 forecasts!") == {"storms", "rain", "forecasts"}


def test_keyword_decoder_and_retrieval_on_a_known_space(space):
    _, x_train, _, train_texts, x, _, texts = space
    decoder = KeywordDecoder(seed=0).fit(x_train, train_texts)
    predicted = decoder.predict(x)
    scores = keyword_scores([set(p) for p in predicted], [content_words(t) for t in texts])
    # 2 of each text's 4 content words come from its topic's 5: a good decoder finds the topic's words
    assert scores["recall"] > 0.6 and scores["f1"] > 0.4
    nearest = NearestTexts().fit(x_train, train_texts)
    sims, rows = nearest.search(x_train[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(sims[:, 0], 1, atol=1e-5)
    with pytest.raises(AttackError, match="at least 20 texts"):
        KeywordDecoder().fit(x[:5], texts[:5])


def test_attack_suite_reuses_a_fitted_decoder_and_index(space):
    from vecbridge.jobs.audit.attributes import AttributeSpec
    from vecbridge.jobs.audit.leak import Leak
    from vecbridge.jobs.audit.suite import AttackSuite

    _, x_train, y_train, train_texts, x, y, texts = space
    spec = AttributeSpec("topic", None, "probe.jsonl", "topic", rows=(train_texts, y_train))
    lookup = dict(zip(train_texts, x_train, strict=True))

    def embed_cached(kind, tx):
        return np.stack([lookup[t] for t in tx])

    base = AttackSuite([], None, None, x_train, train_texts, progress=False)
    shared = AttackSuite([spec], embed_cached, None, x_train, train_texts, progress=False, fitted=base)
    fresh = AttackSuite([spec], embed_cached, None, x_train, train_texts, progress=False)
    assert shared.decoder is base.decoder and shared.nearest is base.nearest
    leak = Leak(x, list(range(len(x))), texts, {"topic": y}, None, {})
    assert shared.run(x, leak) == fresh.run(x, leak)


def test_defences_shapes_and_utility():
    rng = np.random.default_rng(7)  # not the noise's seed 0: noise drawn like the data would be parallel to it
    x = rng.normal(size=(600, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    overlaps = {}
    for d in (GaussianNoise(0.01), GaussianNoise(0.2), Int8(), Binary(), ProductQuantisation(8), DimensionReduction(8),
              SecretRotation()):
        y = d.fit(x).transform(x)
        assert y.dtype == np.float32 and y.shape == (600, 8 if d.name == "dims" else 32)
        assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
        overlaps[d.label] = neighbour_overlap(x, q, y, d.transform_query(q))
        assert 0 <= overlaps[d.label] <= 1
    assert overlaps["rotation"] == pytest.approx(1.0)
    assert overlaps["noise:0.01"] > 0.9 and overlaps["int8"] > 0.9
    assert overlaps["noise:0.2"] < overlaps["noise:0.01"] and overlaps["binary"] < overlaps["int8"]
    assert overlaps["dims:8"] < 0.6
    self_overlap = neighbour_overlap(x, x, x, x, exclude_self=True)
    assert self_overlap == 1.0


@pytest.mark.parametrize("text, expected", [
    ("blur", "unknown defence 'blur'"), ("noise", "needs a parameter"), ("noise:-1", "positive number"),
    ("pq:abc", "positive integer"), ("int8:3", "takes no parameter"), ("int8,int8", "given twice"),
    ("noise:0.1,,int8", "empty entry"), ("noise:nan", "positive number")])
def test_parse_defences_errors(text, expected):
    with pytest.raises(AttackError, match=expected):
        parse_defences(text)


def test_parse_defences_and_bad_fits():
    labels = [d.label for d in parse_defences("noise:0.01, int8,binary,pq:48,dims:128,rotation")]
    assert labels == ["noise:0.01", "int8", "binary", "pq:48", "dims:128", "rotation"]
    x = np.random.default_rng(0).normal(size=(100, 30)).astype(np.float32)
    with pytest.raises(AttackError, match="not a multiple of 8"):
        ProductQuantisation(8).fit(x)
    with pytest.raises(AttackError, match="below the vectors' 30 dims"):
        DimensionReduction(30).fit(x)


def test_sensitive_patterns():
    text = ("Dr. Alice Martin wrote to bob.smith@example.org (see https://www.example.com/page?id=3, or call "
            "+1 415-555-0199). John Doe wrote: the Acme Widgets Inc. board met. Jane Roe <jane@roe.net> agreed. "
            "Released 2002-08-22 on host 192.168.1.1, version 1.2.3, price $1,234.56.")
    found = {(i["kind"], i["value"]) for i in sensitive_items(text)}
    assert found == {("email", "bob.smith@example.org"), ("email", "jane@roe.net"),
                     ("url", "https://www.example.com/page?id=3"), ("phone", "+1 415-555-0199"),
                     ("person", "Alice Martin"), ("person", "John Doe"), ("person", "Jane Roe"),
                     ("organisation", "Acme Widgets Inc")}
    assert sensitive_items("Nothing here: 12 apples, 2002-08-22, 10.0.0.1, v2.3.4, call me later.") == []
    items = sensitive_items("Ask Dr. Alice Martin or visit http://www.example.com today")
    assert [i["tokens"] for i in items] == [["example"], ["alice", "martin"]] or \
        sorted(i["kind"] for i in items) == ["person", "url"]
    recovered = recovered_items(items, ["alice", "martin", "weather"])
    assert [i["kind"] for i in recovered] == ["person"]
