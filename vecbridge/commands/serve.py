"""`vecbridge serve`: run the HTTP service (OpenAI-compatible embeddings, translation, models, health, metrics)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys

import uvicorn

from encoders.base import DEVICES
from vecbridge.commands.args import positive_float, positive_int
from vecbridge.errors import UserError
from vecbridge.service.app import DEFAULTS


def translator_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path or "@" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (a name without '@', and a translator directory), "
                                         f"got {text!r}")
    return name, path


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the HTTP service: OpenAI-compatible embeddings, translation, /metrics",
        description="Serve encoders and translators over HTTP: POST /v1/embeddings (the OpenAI request and response; "
                    "model ENCODER or ENCODER@TRANSLATOR), POST /v1/translate (JSON or .npy), GET /v1/models, "
                    "/health, /metrics (Prometheus) and the API docs at /docs. Concurrent requests are batched into "
                    "one model call. An API key is required to listen on an address other than loopback. SIGTERM "
                    "or Ctrl-C stops accepting connections and finishes the requests in flight.")
    p.add_argument("--encoder", action="append", default=[], metavar="NAME",
                   help="an encoder to serve (repeatable; see `vecbridge encoders`)")
    p.add_argument("--translator", action="append", default=[], type=translator_arg, metavar="NAME=DIR",
                   help="a translator directory from `vecbridge train`, served as NAME (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="file whose first line is the API key clients send as `Authorization: Bearer KEY` "
                        "(else $VECBRIDGE_API_KEY; required unless --host is loopback)")
    p.add_argument("--max-batch", type=positive_int, default=DEFAULTS["max_batch"], metavar="N",
                   help=f"most texts or vectors one batched model call takes (default {DEFAULTS['max_batch']})")
    p.add_argument("--max-inputs", type=positive_int, default=DEFAULTS["max_inputs"], metavar="N",
                   help=f"most texts one embeddings request may send (default {DEFAULTS['max_inputs']})")
    p.add_argument("--max-body-mb", type=positive_float, default=DEFAULTS["max_body_mb"], metavar="M",
                   help=f"largest request body in MB (default {DEFAULTS['max_body_mb']:g}); larger ones get 413")
    p.add_argument("--max-queue", type=positive_int, default=DEFAULTS["max_queue"], metavar="N",
                   help=f"requests that may wait for a worker (default {DEFAULTS['max_queue']}); more get 429")
    p.add_argument("--workers", type=positive_int, default=DEFAULTS["workers"], metavar="K",
                   help="batches computed at the same time, each in its own thread (default 1: one batch already "
                        "uses every core)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where encoders run (auto picks cuda)")
    p.add_argument("--shutdown-timeout", type=positive_float, default=30.0, metavar="S",
                   help="on SIGTERM, seconds to wait for requests in flight before closing them (default 30)")
    p.set_defaults(func=run)


class JsonLines(logging.Formatter):
    """One JSON object per line: the service's own records are JSON already; anything else (uvicorn, warnings,
    tracebacks) is wrapped as {"event": "log", "level", "logger", "message"}."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith("vecbridge.") and message.startswith("{") and not record.exc_info:
            return message
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return json.dumps({"event": "log", "level": record.levelname.lower(), "logger": record.name,
                           "message": message})


def _configure_logging() -> None:
    """Every line on stderr is one JSON object: the access log, the service's events, uvicorn's messages and
    Python warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.captureWarnings(True)
    for name, level in (("vecbridge.access", logging.INFO), ("vecbridge.service", logging.INFO),
                        ("uvicorn.error", logging.WARNING), ("py.warnings", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def run(args: argparse.Namespace) -> int:
    from vecbridge.service import create_app
    from vecbridge.service.security import check_bind, read_api_key

    if not args.encoder and not args.translator:
        raise UserError("nothing to serve: give --encoder NAME and/or --translator NAME=DIR")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    names = [name for name, _ in args.translator]
    if len(set(names)) != len(names):
        raise UserError(f"--translator names must differ; got {', '.join(names)}")
    api_key = read_api_key(args.api_key_file)
    check_bind(args.host, api_key)
    app = create_app(args.encoder, dict(args.translator), api_key=api_key, max_batch=args.max_batch,
                     max_inputs=args.max_inputs, max_body_mb=args.max_body_mb, max_queue=args.max_queue,
                     workers=args.workers, device=args.device)
    _configure_logging()
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=args.shutdown_timeout, lifespan="on")
    server = _Server(config)
    app.state.on_load_failure = lambda: setattr(server, "should_exit", True)
    sock = _listening_socket(args.host, args.port)
    # uvicorn takes SIGINT / SIGTERM for a graceful shutdown and re-raises the signal afterwards under the handler
    # it found; the command line's own handler would turn that into "terminated" and exit 143, so a stopped server
    # is not an error, it finds a no-op handler here.
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)} \
        if _main_thread() else {}
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's way out when it cannot bind; its reason is already on stderr
        raise UserError(f"could not listen on {args.host}:{args.port}; is the port in use, or the address not "
                        "one of this machine's?") from None
    finally:
        sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    models = app.state.models
    if models.status == "failed":
        raise UserError(models.error)
    if not server.started:
        raise UserError(f"could not listen on {args.host}:{args.port} (see the message above); is the port in use?")
    return 0


def _listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here before any model loads: a taken port is one line of ours, not uvicorn's
    log line and then ours."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise UserError(f"could not listen on {host}:{port} ({e.strerror or e}); give an address of this machine "
                        "as --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserError(f"could not listen on {host}:{port} ({e.strerror or e}); choose another --port, or stop "
                        "what listens there") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            logging.getLogger("vecbridge.service").info(json.dumps({"event": "listening",
                                                                    "url": f"http://{host}:{port}"}))


def _stopped(signum, frame) -> None:
    """The signal that stopped the server, re-raised by uvicorn once it has shut down: nothing left to do."""


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
