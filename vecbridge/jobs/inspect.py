"""`inspect_store`: what a store holds, read without changing it."""

from __future__ import annotations

from vecbridge import stores
from vecbridge.errors import user_errors


@user_errors
def inspect_store(store) -> dict:
    """What a store holds: backend, count, dim, metric, exact or lossy, id type, documents / metadata present,
    the encoder it records and vecbridge's provenance (when vecbridge wrote it)."""
    with stores.open_reader(store, "store") as reader:
        return reader.info.as_dict()
