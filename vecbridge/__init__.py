"""vecbridge front door: the command line, vector stores and files, and the HTTP service (`vecbridge serve`,
OpenAI-compatible embeddings and translation) with its Python client.

The rooms behind it: `encoders` (text -> vectors), `align` (vectors -> vectors), `attacks` (vectors -> leakage).
"""

__version__ = "0.1.0"
