"""`vecbridge migrate` through the real CLI (plan, train or reuse, verify on held-out re-embedded documents,
translate into a real store) and the query-free verification behind its verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from align.vectors import unit_rows_np
from tests.helpers import assert_clean_failure, cli, fast_params_flags, random_isometry, snapshot
from vecbridge import stores
from vecbridge.jobs.translators import document_pairs
from vecbridge.jobs.verify import neighbourhood_check, pseudo_queries, pseudo_query_check, recommendation


def test_neighbourhood_check_ranks_the_options():
    rng = np.random.default_rng(0)
    new = unit_rows_np(rng.standard_normal((300, 24)))
    q = random_isometry(rng, 24, 24)
    old = unit_rows_np(new @ q + 0.3 * rng.standard_normal((300, 24)))  # another model: noisier neighbourhoods
    good = unit_rows_np(new + 0.02 * rng.standard_normal(new.shape))  # a near-perfect migration
    bad = unit_rows_np(rng.standard_normal(new.shape))  # a failed one
    check = neighbourhood_check(old, new, migrated=good, query_side=unit_rows_np(new @ q))
    assert check["reembed"] == 1.0 and check["migrate"] > 0.8 and check["migrate_self_top1"] > 0.95
    assert check["stay"] < 0.6 and check["query_side"] < check["migrate"]
    assert recommendation(check)["choice"] == "migrate"
    # a low label-free confidence overrides a good-looking check
    assert recommendation(check, "low")["choice"] == "stay"
    failed = neighbourhood_check(old, new, migrated=bad)
    assert failed["migrate"] < 0.15 and failed["migrate_self_top1"] < 0.05
    assert recommendation(failed)["choice"] == "stay"
    with pytest.raises(ValueError, match="held-out"):
        neighbourhood_check(old[:5], new[:5])


def test_pseudo_queries_score_each_option():
    docs = ["the quick brown fox jumps over the lazy dog", "a b", "one", "tea with milk and two sugars please"]
    spans = pseudo_queries(docs, seed=3)
    assert spans == pseudo_queries(docs, seed=3) and spans[2] == "one" and spans[1] == "a b"
    assert all(" ".join(doc.split()).find(span) >= 0 for doc, span in zip(docs, spans, strict=True))
    assert len(spans[0].split()) == 4  # 40% of 9 words
    rng = np.random.default_rng(0)
    new = unit_rows_np(rng.standard_normal((200, 32)))
    queries = unit_rows_np(new + 0.3 * rng.standard_normal(new.shape))
    q = random_isometry(rng, 32, 32)
    old = unit_rows_np(new @ q)
    check = pseudo_query_check(new, queries, migrated=unit_rows_np(new + 0.05 * rng.standard_normal(new.shape)),
                               old=old, queries_back=unit_rows_np(rng.standard_normal(new.shape)),
                               queries_old=unit_rows_np(queries @ q))
    assert check["reembed"] == 1.0 and 0.5 < check["reembed_ndcg"] < 1.0
    assert check["migrate"] > 0.9 and abs(check["stay"] - 1.0) < 1e-3 and check["query_side"] < 0.2
    rec = recommendation(check)
    assert rec["choice"] == "stay" and set(rec["expected_fraction_of_reembedding"]) == {"migrate", "query_side", "stay"}
    assert recommendation({k: v for k, v in check.items() if k != "stay"})["choice"] == "migrate"


def test_document_pairs_never_use_held_out_rows():
    docs = [f"text {i}" if i % 3 else None for i in range(90)]
    held = np.arange(0, 90, 2)
    rows, vecs = document_pairs(docs, 10, "minilm-l6", "s", 0, exclude=held)
    assert len(rows) == 10 and not set(rows) & set(held) and all(docs[r] for r in rows)
    assert vecs.shape == (10, 384)


def test_migrate_end_to_end(minilm_store, tmp_path, monkeypatch):
    d, src = minilm_store
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    before = snapshot(d)
    dest = f"chroma:{tmp_path}/chroma#new"
    # public pairs (the old model is minilm-l6 here too, so the map is near the identity)
    base = ["migrate", "--from", src, "--target-encoder", "minilm-l6", "--source-encoder", "minilm-l6",
            "--target-texts", d / "ref.txt", "--target-limit", 200, "--verify-documents", 40]
    rc, out, err = cli(*base, "--to", dest, "--dry-run", "--json")
    assert rc == 0, err
    plan = json.loads(out)["plan"]
    assert (plan["rows"], plan["dim_in"], plan["dim_out"], plan["documents"]) == (200, 384, 384, 200)
    assert plan["method"] == "procrustes" and plan["verify_documents"] == 40
    assert plan["reembed_instead"]["documents"] == 200 and plan["reembed_instead"]["texts_per_second"] > 0
    assert not (tmp_path / "chroma").exists()  # a dry run writes nothing

    rc, out, err = cli(*base, "--to", dest, "--save-translator", tmp_path / "tr")
    assert rc == 0, err
    assert err.startswith("plan: 200 vectors 384 -> 384 dims"), err  # the plan comes before any work
    # the old model (minilm-l6 here too) runs, so staying is measured: the same model cannot be beaten
    assert "migrated 200 vectors" in out and "verdict: do not migrate" in out, out
    with stores.open_reader(dest) as reader:
        assert reader.info.count == 200 and reader.info.encoder == "minilm-l6"
        got = stores.read_all(reader, "dest")
    with stores.open_reader(src) as reader:
        want = stores.read_all(reader, "src")
    assert got[2] == want[2]  # documents carried over, in order
    assert np.sum(got[0] * want[0], axis=1).mean() > 0.95  # near the identity map
    assert snapshot(d) == before  # the source was only read
    assert (tmp_path / "tr" / "config.json").is_file()

    # reuse the saved translator; the verification's numbers come back as JSON
    rc, out, err = cli("migrate", "--from", src, "--to", f"{tmp_path}/new.parquet", "--target-encoder",
                       "minilm-l6", "--translator", tmp_path / "tr", "--verify-documents", 40, "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["train"] is None and result["translate"]["rows"] == 200
    verify = result["verify"]
    assert verify["reembed"] == 1.0 and verify["migrate"] > 0.9 and verify["query_side"] > 0.9
    assert verify["stay"] == 1.0  # the store records minilm-l6, which runs: staying is measured (the same model)
    assert verify["neighbourhoods"]["migrate_self_top1"] > 0.95
    assert result["recommendation"]["choice"] in ("migrate", "stay")

    # bad input: one line, nothing written, checked before any training
    snap = snapshot(tmp_path)
    for extra, expected in (
            (["--to", dest], "already exists"),
            (["--to", f"{tmp_path}/x.parquet", "--translator", tmp_path / "tr"], "--translator reuses"),
            (["--to", src], "same store"),
            (["--to", f"{tmp_path}/x.parquet", "--verify-documents", "-1"], "expected an integer >= 0"),
    ):
        assert_clean_failure(*cli(*base, *extra)[::2], expected)
    assert_clean_failure(*cli("migrate", "--from", f"chroma:{tmp_path}/chroma#nope", "--to", f"{tmp_path}/y.parquet",
                              "--target-encoder", "minilm-l6")[::2], "collection 'nope' does not exist")
    assert_clean_failure(*cli("migrate", "--from", src, "--to", f"{tmp_path}/y.parquet",
                              "--target-encoder", "nope")[::2], "unknown encoder 'nope'")
    assert snapshot(tmp_path) == snap


def test_migrate_few_shot_from_documents(minilm_store, tmp_path, monkeypatch):
    d, src = minilm_store
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    rc, out, err = cli("migrate", "--from", src, "--to", f"{tmp_path}/new.parquet", "--target-encoder", "minilm-l6",
                       "--target-texts", d / "ref.txt", "--target-limit", 200, "--pairs-from-documents", 40,
                       "--verify-documents", 40, "--json", *fast_params_flags(pair_completions=1))
    assert rc == 0, err
    result = json.loads(out)
    assert result["plan"]["translator"].startswith("few-shot: 40 documents")
    assert result["train"]["confidence"]["validation"]["pairs"] == 10
    # a fraction of re-embedding's nDCG@10; on 40 pseudo-queries a translated store may beat re-embedding a little
    assert result["verify"]["documents"] == 40 and 0.0 <= result["verify"]["migrate"] <= 1.25
    assert result["translate"]["rows"] == 200


def test_embed_into_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    lines = [f"line {i} about {w}" for i, w in enumerate(["rain", "bread", "chess", "rivers"] * 5)]
    (tmp_path / "t.txt").write_text("".join(t + "\n" for t in lines))
    spec = f"lancedb:{tmp_path}/ld#docs"
    rc, out, err = cli("embed", "--encoder", "minilm-l6", "--input", tmp_path / "t.txt", "--output", spec)
    assert rc == 0 and "20 x 384 vectors" in out, err
    with stores.open_reader(spec) as reader:
        assert reader.info.encoder == "minilm-l6" and reader.info.documents
        vectors, ids, documents = stores.read_all(reader, "store")
    assert documents == lines and [int(i) for i in ids] == list(range(20))
    from encoders.registry import get_encoder

    assert np.abs(vectors - get_encoder("minilm-l6").encode(lines)).max() < 1e-5
    assert not list((tmp_path / "home" / "embedding").glob("*.npy"))  # the working file is gone
    assert_clean_failure(*cli("embed", "--encoder", "minilm-l6", "--input", tmp_path / "t.txt", "--output",
                              spec)[::2], "already exists")
