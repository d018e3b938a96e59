"""`vecbridge serve`: the HTTP service (FastAPI app, micro-batching queue, API key, metrics) over the library layer.

`create_app(encoders, translators, ...)` builds the ASGI app; `vecbridge.commands.serve` runs it under uvicorn.
"""

from vecbridge.service.app import create_app

__all__ = ["create_app"]
