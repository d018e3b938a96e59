"""Reading a checkpoint folder (local or hub id) into a core model: config dialects, weights, tokenizer, and the
sentence-transformers pipeline around it (modules.json, 1_Pooling, prompts). Never pickle, never remote code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from encoders.core.bert import BertConfig, BertModel
from encoders.core.modernbert import ModernBertConfig, ModernBertModel
from encoders.errors import EncoderError

ARCHITECTURES = {"modernbert": (ModernBertConfig, ModernBertModel), "bert": (BertConfig, BertModel)}
# heads and buffers a checkpoint may carry that an encoder does not use
UNUSED_PREFIXES = ("pooler.", "head.", "decoder.", "cls.", "lm_head.", "classifier.", "embeddings.position_ids")
# checkpoints that need prefixes but whose folder does not state them (config_sentence_transformers.json has
# empty prompts), keyed by the folder or hub name
KNOWN_PROMPTS = {
    "modernbert-embed-base": {"query": "search_query: ", "document": "search_document: "},
    "modernbert-embed-large": {"query": "search_query: ", "document": "search_document: "},
}


@dataclass
class Checkpoint:
    """Everything an encoder needs from a folder: the model with weights, tokenizer and the pooling recipe."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    architecture: str
    pooling: str  # "mean" or "cls"
    max_length: int
    prompts: dict[str, str] = field(default_factory=dict)  # e.g. {"query": "search_query: ", "document": ...}


def resolve_folder(name_or_path: str) -> Path:
    """A local folder, or a hub id downloaded (config, tokenizer and safetensors only) into the hub cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.count("/") != 1:
        raise EncoderError(f"{name_or_path!r} is not a model folder nor a hub id like 'org/name'")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, allow_patterns=["*.json", "model.safetensors"]))
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        raise EncoderError(
            f"could not fetch {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "download the folder yourself and pass its path"
        ) from None


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EncoderError(f"{path} is missing: {what}") from None
    except json.JSONDecodeError as e:
        raise EncoderError(f"{path} is not valid JSON ({e})") from None


def load_checkpoint(name_or_path: str, architecture: str | None = None) -> Checkpoint:
    """Build the core model for a folder or hub id; `architecture` ("modernbert" / "bert") asserts what it is."""
    root = resolve_folder(name_or_path)
    pooling, sub = "mean", ""
    if (root / "modules.json").exists():
        pooling, sub = _read_modules(root)
    folder = root / sub
    config = _read_json(folder / "config.json", "a model folder needs the transformers config.json")
    arch = config.get("model_type", "")
    if arch not in ARCHITECTURES:
        raise EncoderError(
            f"{folder}: architecture {arch!r} is not in the encoder core (supported: {sorted(ARCHITECTURES)}); "
            "use the sentence-transformers backend for it"
        )
    if architecture is not None and arch != architecture:
        raise EncoderError(f"{folder} holds a {arch!r} model, not {architecture!r}")
    config_cls, model_cls = ARCHITECTURES[arch]
    model = model_cls(config_cls.from_dict(config))
    load_weights(model, folder)
    if not (folder / "tokenizer.json").exists():
        raise EncoderError(f"{folder / 'tokenizer.json'} is missing: the core reads fast-tokenizer files only")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    st = _read_optional(folder / "sentence_bert_config.json")
    max_length = int(st.get("max_seq_length") or config.get("max_position_embeddings") or 512)
    prompts = _read_optional(root / "config_sentence_transformers.json").get("prompts") or {}
    prompts = prompts or KNOWN_PROMPTS.get(Path(name_or_path.rstrip("/")).name.lower(), {})
    return Checkpoint(model.eval(), tokenizer, arch, pooling, max_length, prompts)


def _read_optional(path: Path) -> dict:
    return _read_json(path, "") if path.exists() else {}


def _read_modules(root: Path) -> tuple[str, str]:
    """The sentence-transformers pipeline: (pooling mode, transformer sub-folder); anything we can't run fails."""
    pooling, sub = "mean", ""
    for module in _read_json(root / "modules.json", ""):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Transformer":
            sub = module.get("path", "")
        elif kind == "Pooling":
            cfg = _read_json(root / module["path"] / "config.json", "the pooling module needs its config.json")
            modes = [k[len("pooling_mode_"):] for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
            if modes not in (["cls_token"], ["mean_tokens"]):
                raise EncoderError(
                    f"{root}: pooling {modes} is not supported by the encoder core (CLS or mean only); "
                    "use the sentence-transformers backend"
                )
            pooling = "cls" if modes == ["cls_token"] else "mean"
        elif kind != "Normalize":  # the Encoder interface L2-normalises every row anyway
            raise EncoderError(
                f"{root}: sentence-transformers module {module.get('type')!r} is not supported by the encoder core; "
                "use the sentence-transformers backend"
            )
    return pooling, sub


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """model.safetensors (or pytorch_model.bin read with weights_only=True, which runs no code) into `model`."""
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").exists():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise EncoderError(f"{folder} has no model.safetensors (or pytorch_model.bin): no weights to load")
    # task models wrap the encoder as `model.` (ModernBERT) or `bert.` (BERT)
    prefix = next((p for p in ("", "model.", "bert.") if f"{p}embeddings.{_first_embedding(model)}" in state), None)
    if prefix is None:
        raise EncoderError(f"{folder}: the weights don't look like a {type(model).__name__} (no embeddings found)")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EncoderError(
            f"{folder}: weights don't match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def _first_embedding(model: torch.nn.Module) -> str:
    return next(k for k in model.state_dict() if k.startswith("embeddings.")).split(".", 1)[1]
