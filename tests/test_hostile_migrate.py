"""`migrate` under hostile input (issue 35): every input that can be checked is checked before the first expensive
step (one line, nothing written), a migration its own translator rates `low` with nothing to verify it is refused
unless forced (and then marked in the new store's provenance), and a migration that fails at its last step leaves
no `--save-translator` folder behind and names the flags the user typed."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    assert_clean_failure,
    cli,
    fast_params_flags,
    procrustes_translator,
    random_unit_rows,
    sentences,
    snapshot,
)
from vecbridge import stores
from vecbridge.stores import npy

# a geometric fit in seconds whose one anchor start no second confirms: it rates itself low, as a fit of unrelated
# spaces does
LOW_FIT = fast_params_flags(anchor_starts=1, n_clusters=24, n_centroids=48)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A store of 300 random 16-dim rows without documents (encoder enc-a), reference texts, and a folder
    for outputs; the working directory is the world."""
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))  # a cache of embedded references: not the world's
    root = tmp_path / "w"
    root.mkdir()
    monkeypatch.chdir(root)
    x = random_unit_rows(0, 300, 16)
    npy.write_vectors(root / "store.npy", x, meta={"encoder": "enc-a"})
    (root / "ref.txt").write_text("".join(t + "\n" for t in sentences(300, 0)[0]))
    return root, x


def _low_translator(root, x):
    """A procrustes translator from the store's space to 384 dims fitted on unrelated rows: it rates itself low."""
    (root.parent / "fit").mkdir()
    return procrustes_translator(root.parent / "fit", x, random_unit_rows(1, len(x), 384), name="low",
                                 encoders=("enc-a", "minilm-l6"))


def test_pairs_from_documents_on_a_store_without_documents_is_refused_before_any_work(world):
    root, _ = world
    before = snapshot(root)
    rc, _, err = cli("migrate", "--from", "store.npy", "--to", "new.npy", "--target-encoder", "minilm-l6",
                     "--pairs-from-documents", 10, "--target-texts", "ref.txt")
    assert_clean_failure(rc, err, "--pairs-from-documents needs the store's documents, but --from store.npy holds "
                                  "none")
    assert "--source-encoder" in err and "`pairs`" not in err
    assert snapshot(root) == before


def test_a_translator_that_cannot_reach_the_target_encoder_is_refused_before_any_work(world, stores_world):
    root, _ = world
    translator = stores_world[0]  # 16 -> 24 dims
    before = snapshot(root)
    rc, _, err = cli("migrate", "--from", "store.npy", "--to", "new.npy", "--target-encoder", "minilm-l6",
                     "--translator", translator)
    assert_clean_failure(rc, err, "--translator maps into 24 dims but --target-encoder minilm-l6 makes 384")
    assert snapshot(root) == before


def test_a_reused_translator_rated_low_with_nothing_to_verify_is_refused_unless_forced(world):
    root, x = world
    tr = _low_translator(root, x)
    before = snapshot(root)
    argv = ["migrate", "--from", "store.npy", "--to", "new.parquet", "--target-encoder", "minilm-l6",
            "--translator", tr]
    rc, _, err = cli(*argv)
    assert_clean_failure(rc, err, "the translator rates itself low")
    assert "--pairs-from-documents" in err and "--source-encoder" in err and "--force" in err
    assert snapshot(root) == before
    rc, out, err = cli(*argv, "--force", "--json")
    assert rc == 0, err
    with stores.open_reader("new.parquet") as reader:
        mark = reader.info.provenance["migration"]
    assert mark["forced"] is True and mark["verified"] is False and mark["confidence"]["verdict"] == "low"
    assert pq.read_table("new.parquet").num_rows == len(x)


def test_a_trained_translator_rated_low_is_refused_and_leaves_nothing(world):
    root, _ = world
    before = snapshot(root)
    rc, out, err = cli("migrate", "--from", "store.npy", "--to", "new.parquet", "--target-encoder", "minilm-l6",
                       "--target-texts", "ref.txt", "--target-limit", 300, "--save-translator", "kept", "--json",
                       *LOW_FIT)
    assert rc != 0 and "Traceback" not in err and not out
    assert "the translator rates itself low" in err.strip().splitlines()[-1], err
    assert snapshot(root) == before


def test_a_migration_failing_at_its_last_step_leaves_no_saved_translator_and_names_its_flags(world):
    root, x = world
    ids = list(range(len(x)))
    ids[250] = ids[10]  # Chroma keeps one row per id: refused when the rows are written, after training
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 16)}),
                   root / "dup.parquet")
    before = snapshot(root)
    rc, out, err = cli("migrate", "--from", "dup.parquet", "--to", "chroma:db#new", "--target-encoder", "minilm-l6",
                       "--target-texts", "ref.txt", "--target-limit", 300, "--save-translator", "kept", "--force",
                       "--json", *LOW_FIT)
    last = err.strip().splitlines()[-1]
    assert rc != 0 and "Traceback" not in err and not out
    assert "error: --to chroma:db#new: the source has the id 10 more than once" in last, err
    assert "`output`" not in err and "--output" not in err
    assert snapshot(root) == before


def test_save_translator_is_checked_before_any_work(world):
    root, _ = world
    (root / "kept").mkdir()
    (root / "kept" / "mine.txt").write_text("mine\n")
    before = snapshot(root)
    rc, _, err = cli("migrate", "--from", "store.npy", "--to", "new.npy", "--target-encoder", "minilm-l6",
                     "--target-texts", "ref.txt", "--save-translator", "kept")
    assert_clean_failure(rc, err, "--save-translator kept already exists")
    assert snapshot(root) == before
