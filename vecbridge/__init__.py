"""vecbridge front door: the command line, storage I/O and (later) the HTTP service.

The rooms behind it: `encoders` (text -> vectors), `align` (vectors -> vectors), `attacks` (vectors -> leakage).
"""

__version__ = "0.1.0"
