"""`vecbridge translate`: stream a vector file through a translator in bounded memory, output written atomically."""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from align import Translator
from vecbridge import storage
from vecbridge.errors import UserError
from vecbridge.report import emit


def register(sub) -> None:
    p = sub.add_parser("translate", help="translate stored vectors into the other space of a translator")
    p.add_argument("--translator", required=True, help="translator directory from `vecbridge train`")
    p.add_argument("--input", required=True, help="vectors to translate (.npy, memory-mapped)")
    p.add_argument("--output", required=True, help="translated vectors (.npy, float32, L2-normalised)")
    p.add_argument("--reverse", action="store_true", help="translate target-space vectors back to the source")
    p.add_argument("--search", action="store_true",
                   help="output queries for nearest-neighbour search among native vectors of the other space: "
                        "higher top-1, lower cosine to the true vector (geometric only; see README)")
    p.add_argument("--chunk", type=int, default=65536, help="rows per chunk (bounds memory)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def translate_file(translator: Translator, input_path, output_path, reverse: bool = False,
                   chunk: int = 65536, overwrite: bool = False, progress: bool = True, search: bool = False) -> dict:
    """Translate `input_path` chunk by chunk into a memory-mapped temp file, renamed onto `output_path`."""
    src = storage.open_vectors(input_path, "--input")
    dim_in, dim_out = ((translator.dim_target_, translator.dim_source_) if reverse
                       else (translator.dim_source_, translator.dim_target_))
    if src.shape[1] != dim_in:
        side = "target" if reverse else "source"
        hint = "" if reverse else " (vectors of the translator's target space need --reverse)"
        raise UserError(f"--input {input_path} has {src.shape[1]} dims but the translator's {side} "
                                f"space has {dim_in}{hint}")
    if search:
        translator.check_search()  # before the output file is created
    translate = translator.inverse_transform if reverse else translator.transform
    start = time.perf_counter()
    with storage.atomic_path(output_path, overwrite=overwrite) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(src.shape[0], dim_out))
        with tqdm(total=src.shape[0], unit="vec", unit_scale=True, disable=None if progress else True,
                  desc="translate") as bar:
            for i in range(0, src.shape[0], chunk):
                block = storage.check_rows(src[i:i + chunk], "--input", i)
                out[i:i + len(block)] = translate(block, search=search)
                bar.update(len(block))
        out.flush()
        del out
    seconds = time.perf_counter() - start
    return {"rows": int(src.shape[0]), "dim_in": int(dim_in), "dim_out": int(dim_out),
            "seconds": round(seconds, 3), "vectors_per_minute": round(src.shape[0] / max(seconds, 1e-9) * 60)}


def run(args: argparse.Namespace) -> int:
    if args.chunk < 1:
        raise UserError("--chunk must be a positive number of rows")
    translator = Translator.load(args.translator)
    config = translator.config_
    summary = translate_file(translator, args.input, args.output, args.reverse, args.chunk, args.overwrite,
                             search=args.search)
    encoder = config.get("source_encoder") if args.reverse else config.get("target_encoder")
    storage.write_json(storage.sidecar_path(args.output), {
        "encoder": encoder,
        "dim": summary["dim_out"],
        "count": summary["rows"],
        "normalised": True,
        "translated_by": {"translator": str(args.translator), "method": config.get("method"),
                          "direction": "reverse" if args.reverse else "forward",
                          "output": "search" if args.search else "faithful",
                          "input": str(args.input), "input_meta": storage.read_sidecar(args.input)},
    })
    emit({"output": str(args.output), **summary}, args.json, title="translated")
    return 0
