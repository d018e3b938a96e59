"""The API's routers, one module per concern: `embeddings` (OpenAI-compatible), `translate`, and `operations`
(the model list, health, metrics and docs). `create_app` includes them in this order."""

from vecbridge.service.routes import embeddings, operations, translate

ROUTERS = (embeddings.router, translate.router, operations.router)

__all__ = ["ROUTERS"]
