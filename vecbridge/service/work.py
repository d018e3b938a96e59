"""What a batch worker thread does: the model calls (through the library layer) and the response bytes, so that
neither runs on the event loop. Embedding requests of one encoder share one `encode` call."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

import numpy as np
import pydantic_core

from vecbridge import jobs
from vecbridge.errors import ROOM_ERRORS, UserError
from vecbridge.service.errors import ApiError
from vecbridge.service.metrics import Metrics
from vecbridge.service.npy import npy_bytes
from vecbridge.service.registry import LoadedTranslator, Route, direction_name

log = logging.getLogger("vecbridge.service")


@dataclass
class EmbedJob:
    texts: list[str]
    route: Route
    model: str
    encoding_format: str


@dataclass
class TranslateJob:
    vectors: np.ndarray
    loaded: LoadedTranslator
    reverse: bool
    search: bool
    as_npy: bool


def _split_tokens(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole numbers that add up to `total`."""
    whole = max(sum(weights), 1)
    shares = [total * w // whole for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _answer_error(e: Exception) -> Exception:
    """A library error from one request's work becomes that request's 400; anything else stays a 500."""
    if isinstance(e, (UserError, *ROOM_ERRORS)):
        return ApiError(400, str(e), code="invalid_input")
    log.exception("batch job failed")
    return e


class BatchRunner:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def __call__(self, key, payloads: list) -> list:
        try:
            if key[0] == "embed":
                return self.embed(payloads)
            # one call per request: a float32 row depends on its matrix product's other rows, never on other clients'
            return [self.translate(job) for job in payloads]
        except Exception as e:  # noqa: BLE001 - handed to every request of the batch
            return [_answer_error(e)] * len(payloads)

    def embed(self, batch: list[EmbedJob]) -> list:
        encoder = batch[0].route.encoder
        texts = [t for job in batch for t in job.texts]
        vectors, tokens = jobs.embed_texts(encoder, texts)
        self.metrics.embedded.labels(encoder.name).inc(len(texts))
        # usage: the batch's token count split over its requests by text length (exact for a request alone)
        shares = _split_tokens(tokens, [sum(len(t) for t in job.texts) for job in batch])
        results, start = [], 0
        for job, share in zip(batch, shares, strict=True):
            rows, start = vectors[start:start + len(job.texts)], start + len(job.texts)
            try:
                if job.route.translator is not None:
                    rows = jobs.translate_vectors(job.route.translator.translator, rows, reverse=job.route.reverse)
                    self.metrics.translated.labels(job.route.translator.name).inc(len(rows))
                results.append(_embedding_body(rows, job, share))
            except Exception as e:  # noqa: BLE001 - this request's failure, not the batch's
                results.append(_answer_error(e))
        return results

    def translate(self, job: TranslateJob):
        try:
            out = jobs.translate_vectors(job.loaded.translator, job.vectors, reverse=job.reverse, search=job.search)
        except Exception as e:  # noqa: BLE001
            return _answer_error(e)
        self.metrics.translated.labels(job.loaded.name).inc(len(out))
        if job.as_npy:
            return npy_bytes(out)
        return pydantic_core.to_json({"translator": job.loaded.name,
                                      "direction": direction_name(job.reverse), "vectors": out.tolist()})


def _embedding_body(rows: np.ndarray, job: EmbedJob, tokens: int) -> bytes:
    if job.encoding_format == "base64":
        data = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
    else:
        data = rows.tolist()
    return pydantic_core.to_json({
        "object": "list",
        "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(data)],
        "model": job.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
