"""`vecbridge stores inspect STORE`: what a vector store holds, without changing it."""

from __future__ import annotations

import argparse

from vecbridge.jobs import inspect_store
from vecbridge.report import emit
from vecbridge.stores import KNOWN


def register(sub) -> None:
    p = sub.add_parser("stores", help="inspect vector stores (Chroma, Qdrant, LanceDB, faiss, hnswlib, Parquet, .npy)",
                       description=f"Vector stores vecbridge reads and writes: {KNOWN}.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    inspect = verbs.add_parser("inspect", help="count, dim, metric, exact or lossy, ids, documents, metadata, encoder",
                               description="Open STORE read-only and say what it holds: count, dim, metric, whether "
                                           "its vectors are exact (lossy faiss PQ / SQ indexes are not), the id type, "
                                           "whether documents and metadata are present, and the encoder it records.")
    inspect.add_argument("store", metavar="STORE", help=KNOWN)
    inspect.add_argument("--json", action="store_true", help="print a JSON document on stdout")
    inspect.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    info = inspect_store(args.store)
    if not args.json:
        info.pop("layout", None)
        provenance = info.pop("provenance", None)
        if provenance:
            info["translated_by"] = provenance.get("translated_by")
    emit(info, args.json, title=args.store)
    return 0
