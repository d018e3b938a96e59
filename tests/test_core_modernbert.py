"""The ModernBERT core against transformers' ModernBertModel (random weights, local tokenizer, fp32 on CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import ModernBertConfig as HFConfig
from transformers import ModernBertModel as HFModel

from encoders.core import CoreEncoder
from encoders.core.attention import BLOCK, build_plan, varlen_attention
from encoders.core.modernbert import ModernBertConfig, ModernBertModel
from encoders.errors import EncoderError

VOCAB = 300
# 3 .. 340 tokens: shorter and longer than the +-64 window and than one 128-query block
LENGTHS = [3, 17, 64, 65, 66, 129, 200, 301, 340]
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4)
# ModernBERT-base's widths; two layers are one global and one local
BASE_LIKE = dict(hidden_size=768, intermediate_size=1152, num_hidden_layers=2, num_attention_heads=12)


@pytest.fixture(autouse=True)
def own_rng():
    """Seeds set here stay here."""
    with torch.random.fork_rng():
        yield


def hf_model(seed=0, **shape) -> HFModel:
    torch.manual_seed(seed)
    config = HFConfig(vocab_size=VOCAB, pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2,
                      sep_token_id=3, attn_implementation="sdpa", **shape)
    model = HFModel(config).eval()
    with torch.no_grad():  # norms start at 1; move them so a mis-wired norm cannot hide
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def tokenizer() -> Tokenizer:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": i for i in range(4, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok


def texts(lengths, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in rng.integers(4, VOCAB, n - 2)) for n in lengths]


def hf_hidden(model: HFModel, ids: list[list[int]]) -> torch.Tensor:
    batch = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, row in enumerate(ids):
        batch[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
    with torch.inference_mode():
        return model(input_ids=batch, attention_mask=mask).last_hidden_state


def ours_from(model: HFModel) -> ModernBertModel:
    ours = ModernBertModel(ModernBertConfig.from_dict(model.config.to_dict())).eval()
    ours.load_state_dict(model.state_dict())
    return ours


@pytest.mark.parametrize("shape,lengths", [(SMALL, LENGTHS), (BASE_LIKE, [3, 65, 129, 340])],
                         ids=["small", "base-like"])
def test_hidden_states_match_transformers(shape, lengths):
    ref = hf_model(**shape)
    ours = ours_from(ref)
    rng = np.random.default_rng(1)
    ids = [[2, *rng.integers(4, VOCAB, n - 2).tolist(), 3] for n in lengths]
    plan = build_plan(lengths, torch.device("cpu"), ours.window)
    with torch.inference_mode():
        got = ours(torch.tensor(sum(ids, [])), plan)
    want = hf_hidden(ref, ids)
    cu = plan.cu_seqlens.tolist()
    diff = max((got[cu[i]:cu[i + 1]] - want[i, :n]).abs().max().item() for i, n in enumerate(lengths))
    assert diff <= 1e-4


def write_folder(path, model: HFModel, prefix="", dialect="transformers", pooling="mean", prompts=None):
    config = model.config.to_dict()
    if dialect == "original":  # as answerdotai/ModernBERT-base's config.json states it
        every = config["layer_types"].index("full_attention", 1)
        config.pop("layer_types"), config.pop("rope_parameters")
        config.update(global_attn_every_n_layers=every, global_rope_theta=160000.0, local_rope_theta=10000.0)
    (path / "config.json").write_text(json.dumps(config))
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    tokenizer().save(str(path / "tokenizer.json"))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling/config.json").write_text(json.dumps({
        "pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    if prompts:
        (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return path


def reference_rows(model: HFModel, batch: list[str], pooling: str) -> np.ndarray:
    ids = [tokenizer().encode(t).ids for t in batch]
    hidden = hf_hidden(model, ids)
    rows = []
    for i, row in enumerate(ids):
        rows.append(hidden[i, 0] if pooling == "cls" else hidden[i, :len(row)].mean(0))
    out = torch.stack(rows).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("prefix,dialect", [("", "transformers"), ("model.", "original")])
def test_encoder_from_folder_matches_transformers(tmp_path, prefix, dialect):
    ref = hf_model(seed=3, **SMALL)
    enc = CoreEncoder(str(write_folder(tmp_path, ref, prefix, dialect)), device="cpu", batch_tokens=700)
    batch = texts([5, 300, 40, 3, 130, 70, 12, 66])  # unsorted, several token-budget batches
    got = enc.encode(batch)
    assert got.dtype == np.float32 and got.shape == (len(batch), SMALL["hidden_size"])
    assert np.abs(got - reference_rows(ref, batch, "mean")).max() <= 1e-5
    assert enc.last_stats.texts == len(batch) and enc.last_stats.truncated == 0
    assert np.concatenate(list(enc.iter_encode(iter(batch)))).tolist() == got.tolist()


def test_cls_pooling_and_prompts(tmp_path):
    ref = hf_model(seed=4, **SMALL)
    prompts = {"query": "w5 w6 ", "document": "w7 "}
    enc = CoreEncoder(str(write_folder(tmp_path, ref, pooling="cls", prompts=prompts)), device="cpu")
    batch = texts([10, 90, 4])
    docs, queries = enc.encode(batch), enc.encode_queries(batch)
    assert np.abs(docs - reference_rows(ref, ["w7 " + t for t in batch], "cls")).max() <= 1e-5
    assert np.abs(queries - reference_rows(ref, ["w5 w6 " + t for t in batch], "cls")).max() <= 1e-5


def test_config_dialects_agree():
    original = {"num_hidden_layers": 6, "global_attn_every_n_layers": 2, "local_attention": 32,
                "global_rope_theta": 80000.0, "local_rope_theta": 5000.0}
    current = {"num_hidden_layers": 6, "sliding_window": 16,
               "layer_types": ["full_attention", "sliding_attention"] * 3,
               "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 80000.0},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}}}
    a, b = ModernBertConfig.from_dict(original), ModernBertConfig.from_dict(current)
    assert a == b
    assert a.window == 16 and a.layer_types == ["global", "local"] * 3
    # the original code used the global theta everywhere when local_rope_theta was null
    assert ModernBertConfig.from_dict({**original, "local_rope_theta": None}).local_rope_theta == 80000.0


def test_other_attention_pattern_matches_transformers():
    ref = hf_model(seed=5, **SMALL, global_attn_every_n_layers=2, local_attention=32, global_rope_theta=9000.0)
    ours = ours_from(ref)
    assert ours.config.window == 16 and ours.config.global_rope_theta == 9000.0
    lengths = [40, 7, 150]
    ids = [[2, *range(4, n + 2), 3] for n in lengths]
    plan = build_plan(lengths, torch.device("cpu"), ours.window)
    with torch.inference_mode():
        got = ours(torch.tensor(sum(ids, [])), plan)
    want, cu = hf_hidden(ref, ids), plan.cu_seqlens.tolist()
    assert max((got[cu[i]:cu[i + 1]] - want[i, :n]).abs().max().item() for i, n in enumerate(lengths)) <= 1e-4


def test_local_attention_is_banded_without_a_square_mask():
    n, heads, dim, window = 700, 2, 16, 64
    q, k, v = torch.randn(3, n, heads, dim, generator=torch.Generator().manual_seed(0)).unbind(0)
    plan = build_plan([n], torch.device("cpu"), window)
    got = varlen_attention(q, k, v, plan, local=True)
    pos = torch.arange(n)
    band = (pos[:, None] - pos[None, :]).abs() <= window
    want = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=band).transpose(0, 1)
    assert (got - want).abs().max() <= 1e-5
    long = build_plan([8192], torch.device("cpu"), window)
    q_idx, k_idx, mask, _ = long.blocks
    assert mask.shape[-2:] == (BLOCK, BLOCK + 2 * window)
    assert mask.numel() < 8192 * 8192 // 16


@pytest.mark.parametrize("break_it,message", [
    (lambda p: (p / "config.json").unlink(), "config.json"),
    (lambda p: (p / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda p: (p / "tokenizer.json").unlink(), "tokenizer.json"),
    (lambda p: (p / "config.json").write_text(json.dumps({"model_type": "t5"})), "not in the encoder core"),
])
def test_bad_folders_say_what_is_wrong(tmp_path, break_it, message):
    folder = write_folder(tmp_path, hf_model(**SMALL))
    break_it(folder)
    with pytest.raises(EncoderError, match=message):
        CoreEncoder(str(folder), device="cpu")


def test_not_a_folder():
    with pytest.raises(EncoderError, match="not a model folder"):
        CoreEncoder("/no/such/folder", device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_matches_cpu_fp32(tmp_path):
    ref = hf_model(seed=6, **BASE_LIKE)
    folder = str(write_folder(tmp_path, ref))
    batch = texts(LENGTHS * 4, seed=2)
    cpu = CoreEncoder(folder, device="cpu").encode(batch)
    gpu_encoder = CoreEncoder(folder, device="cuda")
    gpu = gpu_encoder.encode(batch)
    assert (cpu * gpu).sum(1).min() >= 0.999
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return
    plan = build_plan(LENGTHS, torch.device("cuda"), gpu_encoder.model.window)
    assert plan.flash


def test_known_checkpoint_gets_its_prefixes_when_the_folder_omits_them(tmp_path):
    ref = hf_model(seed=7, **SMALL)
    folder = tmp_path / "modernbert-embed-base"
    folder.mkdir()
    enc = CoreEncoder(str(write_folder(folder, ref)), device="cpu")
    assert enc.prompts["document"] == "search_document: "
    batch = texts([9, 30])
    want = reference_rows(ref, ["search_document: " + t for t in batch], "mean")
    assert np.abs(enc.encode(batch) - want).max() <= 1e-5
