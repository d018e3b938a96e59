"""The registry of what one service serves: its translators and encoders once loaded, and how a request's `model`
or `translator` names them."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from align import Translator
from encoders.base import Encoder
from vecbridge import jobs
from vecbridge.jobs.checks import check_encoder
from vecbridge.service.errors import ApiError

log = logging.getLogger("vecbridge.service")


def direction_name(reverse: bool) -> str:
    """How responses name a translation direction."""
    return "reverse" if reverse else "forward"


@dataclass
class LoadedTranslator:
    name: str
    path: str
    translator: Translator

    @property
    def config(self) -> dict:
        return getattr(self.translator, "config_", {}) or {}

    def side(self, reverse: bool) -> tuple[int, int, str | None]:
        """(input dims, output dims, input encoder) of one direction."""
        t, c = self.translator, self.config
        if reverse:
            return t.dim_target_, t.dim_source_, c.get("target_encoder")
        return t.dim_source_, t.dim_target_, c.get("source_encoder")

    def direction_for(self, encoder: str, dim: int) -> bool | None:
        """`reverse` for vectors of `encoder` (dims `dim`): the direction whose input space is that encoder, else
        (no encoder names recorded) the one whose input dims match, when only one does; None when neither."""
        for reverse in (False, True):
            if self.side(reverse)[2] == encoder:
                return reverse
        if self.side(False)[2] is None and self.side(True)[2] is None:
            fits = [reverse for reverse in (False, True) if self.side(reverse)[0] == dim]
            if len(fits) == 1:
                return fits[0]
        return None


@dataclass
class Route:
    """What a `model` of /v1/embeddings means: an encoder, and perhaps a translator applied after it."""

    encoder: Encoder
    translator: LoadedTranslator | None = None
    reverse: bool = False

    @property
    def dims(self) -> int:
        return self.encoder.dim if self.translator is None else self.translator.side(self.reverse)[1]


class Registry:
    """Translators are loaded here, before the server starts, so that a bad directory stops it; encoders are built
    by `load` in the background while /health answers 503."""

    def __init__(self, encoder_names: list[str], translators: dict[str, str], device: str = "auto"):
        for name in encoder_names:
            check_encoder(name)
        self.encoder_names = list(dict.fromkeys(encoder_names))
        self.device = device
        self.translators = {name: LoadedTranslator(name, str(path), jobs.load_translator(path))
                            for name, path in translators.items()}
        self.encoders: dict[str, Encoder] = {}
        self.status, self.error = "loading", None
        self.created = int(time.time())

    def load(self) -> None:
        """Build every encoder and run it once (so the first request does not pay for warm-up); sets `status`."""
        try:
            for name in self.encoder_names:
                started = time.perf_counter()
                encoder = jobs.load_encoder(name, device=self.device)
                jobs.embed_texts(encoder, ["warm-up"])
                self.encoders[name] = encoder
                log.info(json.dumps({"event": "encoder_loaded", "encoder": name,
                                     "seconds": round(time.perf_counter() - started, 2)}))
            self.status = "ok"
            log.info(json.dumps({"event": "ready"}))
        except Exception as e:  # noqa: BLE001 - any failure to load leaves the service unhealthy, said once
            self.status, self.error = "failed", f"loading the encoders failed: {e}"
            log.error(json.dumps({"event": "load_failed", "error": self.error}))

    def translator(self, name: str, param: str = "translator") -> LoadedTranslator:
        if name not in self.translators:
            known = ", ".join(self.translators) or "none (start the server with --translator NAME=DIR)"
            raise ApiError(404, f"unknown translator {name!r}; loaded translators: {known}", param=param,
                           code="model_not_found")
        return self.translators[name]

    def route(self, model: str) -> Route:
        """The encoder (and translator) a /v1/embeddings `model` names: ENCODER or ENCODER@TRANSLATOR."""
        encoder_name, sep, translator_name = model.rpartition("@") if "@" in model else (model, "", "")
        if encoder_name not in self.encoder_names:
            known = ", ".join(self.encoder_names) or "none (start the server with --encoder NAME)"
            raise ApiError(404, f"unknown model {model!r}: encoder {encoder_name!r} is not loaded; loaded encoders: "
                                f"{known} (or ENCODER@TRANSLATOR)", param="model", code="model_not_found")
        if self.status != "ok":
            raise ApiError(503, f"the encoders are {'still loading' if self.status == 'loading' else 'not loaded'}"
                                f"{'' if self.error is None else ': ' + self.error}; retry when /health says ok",
                           param="model", code="not_ready", headers={"Retry-After": "2"})
        encoder = self.encoders[encoder_name]
        if not sep:
            return Route(encoder)
        loaded = self.translator(translator_name, param="model")
        reverse = loaded.direction_for(encoder_name, encoder.dim)
        if reverse is None:
            c = loaded.config
            raise ApiError(400, f"translator {translator_name!r} maps {c.get('source_encoder')!r} <-> "
                                f"{c.get('target_encoder')!r}; encoder {encoder_name!r} is neither side, so "
                                f"{model!r} cannot translate its vectors", param="model", code="model_mismatch")
        return Route(encoder, loaded, reverse)

    def cards(self) -> list[dict]:
        """/v1/models entries: encoders, translators, and each ENCODER@TRANSLATOR a loaded encoder can use."""
        cards = []
        for name in self.encoder_names:
            enc = self.encoders.get(name)
            cards.append({"id": name, "kind": "encoder", "dims": getattr(enc, "dim", None),
                          "backend": getattr(enc, "backend", None), "max_length": getattr(enc, "max_length", None)})
        for name, loaded in self.translators.items():
            c = loaded.config
            cards.append({"id": name, "kind": "translator", "dim_source": loaded.translator.dim_source_,
                          "dim_target": loaded.translator.dim_target_, "source_encoder": c.get("source_encoder"),
                          "target_encoder": c.get("target_encoder"), "method": c.get("method"),
                          "confidence": c.get("confidence")})
            for enc_name in self.encoder_names:
                enc = self.encoders.get(enc_name)
                reverse = loaded.direction_for(enc_name, getattr(enc, "dim", 0))
                if reverse is not None:
                    cards.append({"id": f"{enc_name}@{name}", "kind": "encoder+translator",
                                  "dims": loaded.side(reverse)[1], "method": c.get("method"),
                                  "direction": direction_name(reverse),
                                  "source_encoder": enc_name, "target_encoder": loaded.side(not reverse)[2]})
        return [{"object": "model", "created": self.created, "owned_by": "vecbridge", **card} for card in cards]
