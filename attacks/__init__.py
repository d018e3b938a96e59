"""Leakage attacks on vectors in a known encoder's space, and the defences an owner can apply before storing.

numpy in, dicts out; text that needs embedding arrives as an `embed(texts) -> vectors` callable, so this room
imports no encoder and no translator. `attributes` (zero-shot and probe), `inversion` (retrieval, keyword
decoding, sensitive items), `defences` (noise, quantisation, PQ, dims, rotation), `metrics` (the scores).
"""

from attacks.errors import AttackError

__all__ = ["AttackError"]
