"""`vecbridge audit` end to end through the CLI on a tiny Chroma collection: victim vectors are minilm-l6 vectors
under a secret rotation, the attacker's translator is fitted on public pairs (so it undoes the rotation), the
known encoder is minilm-l6. The report's numbers, its HTML in a real headless browser, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TOPICS, assert_clean_failure, cli, sentences, snapshot
from vecbridge.stores import npy

ROOT = Path(__file__).resolve().parents[1]
DEFENCES = "noise:0.02,int8,binary,pq:48,dims:32,rotation"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import chromadb

    from align.paired import ProcrustesTranslator
    from encoders.registry import get_encoder
    from vecbridge.jobs import save_translator

    d = tmp_path_factory.mktemp("audit")
    enc = get_encoder("minilm-l6")
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(384, 384)))[0].astype(np.float32)
    public, _ = sentences(300, 2)
    y = enc.encode(public)
    save_translator(ProcrustesTranslator().fit(y @ rotation, y), d / "tr",
                    meta={"source_encoder": "victim", "target_encoder": "minilm-l6"})
    (d / "ref.txt").write_text("".join(t + "\n" for t in public))
    probe_texts, probe_labels = sentences(120, 3)
    (d / "probe.jsonl").write_text("".join(json.dumps({"text": t, "topic": label}) + "\n"
                                           for t, label in zip(probe_texts, probe_labels, strict=True)))
    texts, labels = sentences(60, 1)
    texts[0] += ". Write to Dr. Alice Martin, alice@example.org"
    from chromadb.config import Settings

    # the settings vecbridge's reader uses: one process may hold one client per path and settings
    client = chromadb.PersistentClient(str(d / "db"), settings=Settings(anonymized_telemetry=False))
    collection = client.create_collection("leak", embedding_function=None, metadata={"hnsw:space": "cosine"})
    ids = [f"doc{i}" for i in range(len(texts))]
    collection.add(ids=ids, embeddings=(enc.encode(texts) @ rotation).tolist(), documents=texts,
                   metadatas=[{"topic": label} for label in labels])
    (d / "truth.jsonl").write_text("".join(json.dumps({"id": i, "text": t, "topic": label, "probe": label}) + "\n"
                                           for i, t, label in zip(ids, texts, labels, strict=True)))
    (d / "attrs.json").write_text(json.dumps({"topic": list(TOPICS),
                                              "probe": {"train": str(d / "probe.jsonl"), "column": "topic"}}))
    return d


def base_args(d: Path, report: Path) -> list:
    return ["audit", "--vectors", f"chroma:{d}/db#leak", "--known-encoder", "minilm-l6", "--translator", d / "tr",
            "--reference", d / "ref.txt", "--attributes", d / "attrs.json", "--truth", d / "truth.jsonl",
            "--report", report]


@pytest.fixture(scope="module")
def audited(world, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    report = world / "report"
    env = {**os.environ, "VECBRIDGE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "vecbridge", *map(str, base_args(world, report)), "--defenses",
                           DEFENCES, "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return report, json.loads(proc.stdout), json.loads((report / "report.json").read_text())


def test_audit_report(audited):
    report, summary, r = audited
    assert sorted(os.listdir(report)) == ["report.html", "report.json"]
    assert summary["translation_failed"] is False and r["translator"]["verdict"] == "ok"
    for name in ("topic", "probe"):
        a = r["attributes"][name]
        # the translator undoes the rotation exactly: the attack scores what the true encoder scores
        assert a["accuracy"] == pytest.approx(a["ideal_accuracy"], abs=0.02) and a["accuracy"] > 0.9
        assert a["naive_accuracy"] < 0.6 and a["chance"] == 0.25 and a["n"] == 60
    kw = r["inversion"]["keywords"]
    assert kw["f1"] == pytest.approx(kw["ideal_f1"], abs=0.02) and kw["f1"] > 0.3
    assert kw["naive_f1"] < kw["f1"]
    sensitive = r["inversion"]["sensitive"]
    assert sensitive["items_with_sensitive"] == 1 and sensitive["by_kind"]["email"]["items"] == 1
    rows = {d["label"]: d for d in r["defenses"]}
    assert list(rows) == DEFENCES.split(",")
    assert rows["rotation"]["utility"]["neighbour_overlap_at_10"] > 0.99  # ties among near-duplicates aside
    assert rows["int8"]["utility"]["neighbour_overlap_at_10"] > 0.9
    assert rows["dims:32"]["attributes"] is None and "not measured" in rows["dims:32"]["note"]
    assert rows["int8"]["attributes"]["topic"]["accuracy"] > 0.9  # int8 keeps what leaks
    assert r["cost"]["device"] in ("cpu", "gpu") and r["cost"]["seconds"] > 0
    assert len(r["items"]) == 60 and {"id", "predictions", "keywords", "risk"} <= set(r["items"][0])
    assert r["items"][0]["risk"] >= r["items"][-1]["risk"]
    assert any("guesses it right" in line for line in r["summary"])


def test_report_html_in_a_headless_browser(audited, tmp_path):
    report, _, _ = audited
    page = (report / "report.html").read_text()
    assert 'src="http' not in page and "<script" not in page  # self-contained, nothing to fetch
    assert page.index('id="summary"') < page.index('id="threat-model"') < page.index('id="plots"')
    assert page.count("data:image/png;base64,") == 3 and "<mark>" in page
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (report / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr
    assert "Leakage audit of" in dom.stdout and "guesses it right" in dom.stdout
    shot = subprocess.run([*flags, f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1200,2400", url],
                          capture_output=True, text=True, timeout=60)
    assert shot.returncode == 0 and (tmp_path / "shot.png").stat().st_size > 10000, shot.stderr
    for log in (dom.stderr, shot.stderr):
        assert "Uncaught" not in log and "CONSOLE" not in log.upper().replace("CONSOLE_", "")


def test_bad_input(world, audited, tmp_path, monkeypatch):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    d = world
    report = tmp_path / "rep"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "list.json").write_text('["a", "b"]')
    (bad / "string.json").write_text('{"topic": "sport"}')
    (bad / "one.json").write_text('{"topic": ["sport"]}')
    (bad / "unmatched.jsonl").write_text('{"id": "doc1", "topic": null, "probe": null}\n'
                                         '{"id": "zzz", "topic": "music", "probe": "music"}\n')
    (bad / "missing.jsonl").write_text('{"id": "doc1", "topic": "music", "probe": "music"}\n{"id": "doc2"}\n')
    args = base_args(d, report)

    def replaced(flag, value):
        out = list(args)
        out[out.index(flag) + 1] = value
        return out

    before = snapshot(d)
    cases = [
        (replaced("--vectors", f"chroma:{d}/db#nope"), "nope"),
        (replaced("--vectors", f"{tmp_path}/none.npy"), "none.npy"),
        (replaced("--known-encoder", "nope"), "unknown encoder 'nope' for --known-encoder"),
        (replaced("--attributes", bad / "list.json"), "must hold a JSON object, not list"),
        (replaced("--attributes", bad / "string.json"), "must be a list of labels"),
        (replaced("--attributes", bad / "one.json"), "at least 2 non-empty label strings"),
        (replaced("--truth", bad / "unmatched.jsonl"), "1 of 2 truth ids match no vector in --vectors (1 matched"),
        (replaced("--truth", bad / "missing.jsonl"), "line 2 (id 'doc2') has no attribute 'topic'"),
        ([*args, "--defenses", "blur"], "unknown defence 'blur'"),
        ([*args, "--defenses", "noise:-0.1"], "must be a positive number"),
        ([*args, "--defenses", "pq:7"], "not a multiple of 7"),
        ([*args, "--defenses", "dims:64"], "at most their 60 rows"),
        (replaced("--report", audited[0]), "already exists; pass --overwrite"),
        ([*args, "--known-documents", "16,41"], "--known-documents 41: the truth gives the text of 60 records and "
                                                "20 must stay unknown to score the attack; ask for at most 40"),
        ([*args, "--known-documents", "16,x"], "expected numbers of documents such as 16,64,256, got '16,x'"),
    ]
    for argv, expected in cases:
        assert_clean_failure(*cli(*argv)[::2], expected)
        assert not report.exists()
    assert snapshot(d) == before


def _rotated_leak(root, enc, rotation) -> None:
    """root/leak.npy: 240 topic sentences embedded by `enc` and rotated (the victim's space), with their truth
    (root/truth.jsonl, attribute `topic`) and root/attrs.json."""
    texts, labels = sentences(240, 4)
    npy.write_vectors(root / "leak.npy", enc.encode(texts) @ rotation)
    (root / "truth.jsonl").write_text("".join(json.dumps({"id": i, "text": t, "topic": label}) + "\n"
                                              for i, (t, label) in enumerate(zip(texts, labels, strict=True))))
    (root / "attrs.json").write_text(json.dumps({"topic": list(TOPICS)}))


def test_a_given_translator_is_adapted_to_the_leak(world, tmp_path):
    # the given map is close but not right (a general translator off by a small rotation); the audit adapts it:
    # a geometric fit of the leaked vectors against the reference, started from the given map, lands on the
    # truth (cosine ~1) and recovers the words the true encoder does, where the map as given (--no-adapt) does
    # not (cosine 0.76, keyword F1 0.90 vs 1.00 when measured)
    from align.paired import ProcrustesTranslator
    from encoders.registry import get_encoder
    from vecbridge.jobs import save_translator

    enc = get_encoder("minilm-l6")
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(384, 384)))[0].astype(np.float32)
    skew = np.random.default_rng(9).normal(size=(384, 384))
    q, r = np.linalg.qr(np.eye(384) + 0.035 * (skew - skew.T))
    off = (q * np.sign(np.diag(r))).astype(np.float32)  # a small rotation: the given map's error
    public, _ = sentences(300, 2)
    y = enc.encode(public)
    save_translator(ProcrustesTranslator().fit(y @ rotation, y @ off), tmp_path / "tr",
                    meta={"source_encoder": "victim", "target_encoder": "minilm-l6"})
    _rotated_leak(tmp_path, enc, rotation)
    env = {**os.environ, "VECBRIDGE_HOME": str(tmp_path / "home")}
    reports = {}
    for name, extra in (("adapted", ["--defenses", "noise:0.02"]), ("given", ["--no-adapt"])):
        argv = ["audit", "--vectors", tmp_path / "leak.npy", "--known-encoder", "minilm-l6", "--translator",
                tmp_path / "tr", "--reference", world / "ref.txt", "--attributes", tmp_path / "attrs.json",
                "--truth", tmp_path / "truth.jsonl", "--report", tmp_path / name, *extra]
        proc = subprocess.run([sys.executable, "-m", "vecbridge", *map(str, argv)], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    adapted, given = reports["adapted"], reports["given"]
    assert adapted["translator"]["source"] == "given, adapted to the leaked vectors"
    assert adapted["translator"]["adaptation"]["start"] == "given" and adapted["translator"]["verdict"] == "ok"
    assert (tmp_path / "adapted" / "translator" / "config.json").is_file()
    assert given["translator"]["source"] == "given" and not (tmp_path / "given" / "translator").exists()
    a = adapted["attributes"]["topic"]
    assert a["accuracy"] == pytest.approx(a["ideal_accuracy"], abs=0.03)
    cos = {k: np.mean(r["similarity"]["translated_vs_truth"]) for k, r in reports.items()}
    assert cos["adapted"] > 0.95 and cos["adapted"] > cos["given"] + 0.1, cos
    kw = {k: r["inversion"]["keywords"] for k, r in reports.items()}
    assert kw["adapted"]["f1"] == pytest.approx(kw["adapted"]["ideal_f1"], abs=0.03)
    assert kw["adapted"]["f1"] > kw["given"]["f1"] + 0.05, kw
    # the defence row re-adapts the given map to the noisy vectors, refined from its start
    (noisy,) = adapted["defenses"]
    assert noisy["attacker"] == "given translator adapted to the defended vectors"
    assert noisy["attributes"]["topic"]["accuracy"] == pytest.approx(a["ideal_accuracy"], abs=0.05), noisy


def test_maps_re_fitted_from_a_given_translator_keep_its_output_stage():
    from align.geometric import GeometricTranslator
    from align.paired import ProcrustesTranslator
    from vecbridge.jobs.audit.adaptation import output_stage

    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    assert output_stage(GeometricTranslator(affine=0.03)) == {"affine": 0.03}
    assert output_stage(GeometricTranslator(whiten=0.4)) == {"whiten": 0.4}
    assert output_stage(GeometricTranslator()) == {}
    assert output_stage(ProcrustesTranslator().fit(x, x)) == {}
    assert output_stage(None) == {}


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    return (centres[rng.integers(0, 12, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def test_an_adapted_map_starts_from_a_geometric_translators_own_rotation():
    from align.confidence import map_agreement
    from align.geometric import GeometricTranslator
    from align.paired import ProcrustesTranslator
    from vecbridge.jobs.audit.adaptation import adaptation_start

    x = _clustered(800, 16, 0)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0].astype(np.float32)
    geo = GeometricTranslator(seed=0, verbose=False).fit(x[:400], x[400:] @ rotation, start=rotation)
    leak = x[:300] + 3.0  # off-domain: far from the mean the translator was trained around
    assert np.array_equal(adaptation_start(geo, leak, geo.transform(leak)), geo.weight_)
    # any other method: the rotation closest to what it does to the rows (its outputs are unit rows, so only
    # near its own rotation: mean cosine 0.96 of the images measured)
    lin = ProcrustesTranslator().fit(x, x @ rotation)
    start = adaptation_start(lin, leak, lin.transform(leak))
    assert np.allclose(start @ start.T, np.eye(16), atol=1e-4)
    assert map_agreement(leak - leak.mean(0), start, rotation) > 0.85


def test_an_adaptation_read_low_is_used_only_when_it_grew_from_the_given_map_and_beats_it_on_the_leak():
    # an off-domain leak has no counterpart in the reference: a map that works there can read `low`. The audit then
    # trusts it only if it grew from the given (trusted) map and scores above that map on the same rows.
    from align.geometric import GeometricTranslator
    from align.paired import ProcrustesTranslator
    from encoders.registry import get_encoder
    from vecbridge.jobs.audit.adaptation import choose_adapted

    enc = get_encoder("minilm-l6")
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(384, 384)))[0].astype(np.float32)
    skew = np.random.default_rng(9).normal(size=(384, 384))
    q, r = np.linalg.qr(np.eye(384) + 0.035 * (skew - skew.T))
    off = (q * np.sign(np.diag(r))).astype(np.float32)  # a small rotation: the given map's error
    reference = enc.encode(sentences(300, 2)[0])
    leak = enc.encode(sentences(300, 4)[0]) @ rotation
    given = ProcrustesTranslator().fit(reference @ rotation, reference @ off)  # a general map, somewhat wrong
    given.confidence_ = {**given.confidence_, "verdict": "ok", "verdict_from": "held-out known pairs"}
    adapted = GeometricTranslator(seed=0, verbose=False).fit(leak, reference, start=rotation.T @ off)
    assert adapted.fit_report_["stages"]["init"]["chosen"] == "given"
    score = adapted.confidence_["score"]

    def case(verdict: str, chosen: str, given_verdict: str = "ok"):
        a = GeometricTranslator(verbose=False)
        a.__dict__.update(adapted.__dict__)
        a.confidence_ = {**adapted.confidence_, "verdict": verdict}
        a.fit_report_ = {"stages": {"init": {"chosen": chosen}}}
        g = ProcrustesTranslator()
        g.__dict__.update(given.__dict__)
        g.confidence_ = {**given.confidence_, "verdict": given_verdict}
        return choose_adapted(g, a, leak, reference, seed=0)

    model, report = case("ok", "given")
    assert report["used"] and model.confidence_["verdict"] == "ok"
    on_leak = report["given_confidence_on_leak"]
    assert on_leak < score - 0.05, (on_leak, score)  # the adaptation really does better on these rows
    model, report = case("low", "given")  # read low off-domain, but grown from the given map and better
    assert report["used"] and report["why"].startswith("grown from the given map")
    assert model.confidence_["verdict"] == "ok" and "adapted from a translator" in model.confidence_["verdict_from"]
    assert model.confidence_["score"] == score
    model, report = case("low", "pooled_anchors")  # left the given map's basin: its own score must pass
    assert not report["used"] and isinstance(model, ProcrustesTranslator)
    model, report = case("low", "pooled_anchors", given_verdict="low")  # nothing better to fall back on
    assert report["used"] and model.confidence_["verdict"] == "low"
    model, report = case("low", "given", given_verdict=None)  # a translator without a verdict lends none
    assert not report["used"] and isinstance(model, ProcrustesTranslator)


def test_truth_from_the_builtin_split_a_store_was_embedded_from(tmp_path, monkeypatch):
    # `vecbridge embed --input builtin:CORPUS:SPLIT` gives row k the id k: --truth builtin:CORPUS:SPLIT reads each
    # id's text and labels from that row, and refuses a store whose documents are not those rows
    from tests.helpers import write_store
    from vecbridge.corpora import load_corpus, store
    from vecbridge.errors import UserError
    from vecbridge.jobs.audit.attributes import AttributeSpec
    from vecbridge.jobs.audit.leak import read_leak

    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    store.build("wordnet", ROOT / "tests" / "fixtures" / "corpora" / "wordnet")
    table = load_corpus("wordnet", "train_a").with_format("arrow")[:]
    texts, labels = table["text"].to_pylist(), table["lexname"].to_pylist()
    x = np.random.default_rng(0).normal(size=(len(texts) - 2, 8)).astype(np.float32)
    lexname = [AttributeSpec("lexname", None, "builtin:wordnet:train_b", "lexname")]
    npy.write_vectors(tmp_path / "leak.npy", x)
    leak = read_leak(str(tmp_path / "leak.npy"), lexname, "builtin:wordnet:train_a")
    assert leak.texts == texts[:len(x)] and leak.truth["lexname"] == labels[:len(x)]
    assert leak.truth_source == "builtin:wordnet:train_a"
    same = write_store(f"chroma:{tmp_path}/db#same", x, documents=texts[:len(x)])
    assert read_leak(same, lexname, "builtin:wordnet:train_a").truth == leak.truth
    other = write_store(f"chroma:{tmp_path}/db#other", x, documents=texts[2:])
    for spec, truth, expected in [
            (other, "builtin:wordnet:train_a", "the store's document of id '0' is not that split's row 0"),
            (str(tmp_path / "leak.npy"), "builtin:wordnet", "name the split the store was embedded from"),
            (str(tmp_path / "leak.npy"), "builtin:icd10:eval", "has no column 'lexname'")]:
        if truth.startswith("builtin:icd10"):
            store.build("icd10", ROOT / "tests" / "fixtures" / "corpora" / "icd10")
        with pytest.raises(UserError, match=expected):
            read_leak(spec, lexname, truth)


def test_an_attacker_who_knows_documents(world, tmp_path):
    # the vectors-only attacker holds a wrong map (Procrustes on shuffled pairs, used as given) and demonstrates
    # nothing; an attacker who knows 64 of the leaked documents maps the leak by them (each quarter held out in turn
    # validates it) and reads the other records as the true encoder does; the known documents are never scored
    from align.paired import ProcrustesTranslator
    from encoders.registry import get_encoder
    from vecbridge.jobs import save_translator

    enc = get_encoder("minilm-l6")
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(384, 384)))[0].astype(np.float32)
    public, _ = sentences(300, 2)
    y = enc.encode(public)
    shuffled = np.random.default_rng(1).permutation(len(y))
    save_translator(ProcrustesTranslator().fit(y @ rotation, y[shuffled]), tmp_path / "wrong",
                    meta={"source_encoder": "victim", "target_encoder": "minilm-l6"})
    _rotated_leak(tmp_path, enc, rotation)
    rc, out, err = cli("audit", "--vectors", tmp_path / "leak.npy", "--known-encoder", "minilm-l6", "--translator",
                       tmp_path / "wrong", "--no-adapt", "--reference", world / "ref.txt", "--attributes",
                       tmp_path / "attrs.json", "--truth", tmp_path / "truth.jsonl", "--known-documents", "64",
                       "--report", tmp_path / "rep", "--json")
    assert rc == 0, err
    r = json.loads((tmp_path / "rep" / "report.json").read_text())
    curve = {p["k"]: p for p in r["known_documents"]}
    assert list(curve) == [0, 64] and [p["k"] for p in json.loads(out)["known_documents"]] == [0, 64]
    vectors_only, known = curve[0], curve[64]
    assert vectors_only["scored"] == 240 and vectors_only["known_ids"] == []
    assert vectors_only["attributes"]["topic"]["accuracy"] < 0.6
    assert known["scored"] == 176 and len(set(known["known_ids"])) == 64
    assert known["translator"]["verdict"] == "ok" and known["translator"]["verdict_from"] == "held-out known pairs"
    assert known["translator"]["method"] == "pairs_ensemble"
    assert known["translator"]["validation"]["pairs"] == 64 and known["translator"]["validation"]["top1"] > 0.7
    a = known["attributes"]["topic"]
    assert a["n"] == 176 and a["accuracy"] > 0.9 and a["accuracy"] == pytest.approx(a["ideal_accuracy"], abs=0.03)
    assert known["keywords"]["f1"] == pytest.approx(known["keywords"]["ideal_f1"], abs=0.05)
    first = r["summary"][:2]
    assert first[0].startswith("Vectors only (K = 0): ") and first[1].startswith("Knowing 64 of the documents")
    assert "demonstrated of the other records: 'topic' right for" in first[1]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.index('id="summary"') < page.index('id="known-documents"') < page.index('id="plots"')


CLINIC = (["{} of the {} {}, initial encounter", "Chronic {} of {} {}", "{} {} due to {} infection"],
          ["left knee", "right lung", "liver", "kidney", "scalp", "upper arm", "lower back", "heart valve", "Fracture",
           "Inflammation", "Abscess", "Laceration", "Stenosis", "Ulcer", "Contusion", "Neoplasm"])
CHAT = (["the team won the {} match on {} evening with {}", "our {} trip to the {} was {}", "I think the {} movie "
         "was {} and {}"], ["football", "Saturday", "beach", "lovely", "mountains", "new", "funny", "long", "cold",
                            "late", "rainy", "quiet", "crowded", "music", "friends", "dinner"])


def _notes(domain, n: int, seed: int) -> list[str]:
    templates, words = domain
    rng = np.random.default_rng(seed)
    return [templates[i % len(templates)].format(*rng.choice(words, 3)) for i in range(n)]


def test_the_reference_is_the_candidate_whose_fit_scores_best(tmp_path, monkeypatch):
    # three candidates, the real minilm-l6: a leak of clinical notes (under a secret rotation) is fitted against
    # the profile's closest candidate and the general one, then the content's closest to the translated leak;
    # the clinical one, whose fit scores best label-free, is kept, and every candidate tried is reported
    from align import translator_class
    from encoders.registry import get_encoder
    from tests.helpers import FAST
    from vecbridge.jobs.audit.reference import fitted_reference
    from vecbridge.jobs.pivots import cached_vectors

    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))

    def corpus(name, parts):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for part in parts for t in part))
        return str(tmp_path / f"{name}.jsonl")

    clinic = corpus("clinic", [_notes(CLINIC, 400, 1)])
    chat = corpus("chat", [_notes(CHAT, 400, 2)])
    general = corpus("general", [_notes(CHAT, 200, 5), _notes(CLINIC, 200, 6)])
    enc = get_encoder("minilm-l6", device="cpu")
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(384, 384)))[0].astype(np.float32)
    leak = enc.encode(_notes(CLINIC, 400, 3)) @ rotation
    params = {**FAST, "verbose": False}

    def fit(ref):
        return translator_class("geometric")(seed=0, **params).fit(leak, ref.vectors)

    ref, model = fitted_reference(leak, "minilm-l6", 400, lambda kind, t: cached_vectors(kind, "minilm-l6", t), fit,
                                  candidates=[chat, clinic, general], general=general)
    tried = {t["texts"]: t for t in ref.choice["tried"]}
    assert ref.spec == clinic and ref.choice["chosen"] == clinic and len(ref.texts) == 400
    assert general in tried and tried[general]["by"] == "general pool"
    assert tried[clinic]["confidence"] == max(t["confidence"] for t in tried.values())
    assert model.confidence_["score"] == tried[clinic]["confidence"]
    assert ref.choice["content"]["candidates"][0]["name"] == clinic
