"""Leakage audits (vectors -> what leaks): attribute inference and content recovery from translated vectors.

Arrives with the leakage-audit issue; it reads vectors that `align` produced and knows nothing of encoders' internals.
"""
