"""`vecbridge audit`: attack a leaked vector store the way an attacker without the encoder would, measure what
leaks and what defences buy, and write report.json + report.html."""

from __future__ import annotations

import argparse

from vecbridge.commands.args import non_negative_int, positive_int
from vecbridge.report import emit


def register(sub) -> None:
    from vecbridge.jobs.references import AUTO
    from vecbridge.jobs.translators import REFERENCE_LIMIT, REFERENCE_TEXTS

    p = sub.add_parser(
        "audit", help="measure what leaked vectors reveal to an attacker with a public encoder",
        description="Translate the stored vectors without pairs into a public (known) encoder's space, infer "
                    "attributes and recover words and sensitive items there, score it against the truth you give, "
                    "re-run it against each defence, and write DIR/report.json and DIR/report.html.")
    p.add_argument("--vectors", required=True, metavar="STORE", help="the leaked store (any store spec)")
    p.add_argument("--known-encoder", required=True, metavar="NAME", help="the attacker's public encoder")
    p.add_argument("--translator", metavar="DIR",
                   help="a translator from the store's space to --known-encoder trained elsewhere; without it the "
                        "audit trains one without pairs from the leaked vectors and --reference. A given one is "
                        "adapted to the leak (a geometric fit against --reference started from its map; kept "
                        "unless its verdict is low where the given one's is not), as an attacker would")
    p.add_argument("--no-adapt", action="store_true",
                   help="use --translator as it is (a non-adaptive attacker; it then cannot follow a defence)")
    p.add_argument("--reference", default=AUTO, metavar="SPEC",
                   help="public texts the attacker embeds with --known-encoder: the translator's target side, the "
                        "retrieval corpus and the keyword decoder's training texts (default auto: the built-in "
                        f"corpus closest to the leak's domain; e.g. {REFERENCE_TEXTS} for the general pool)")
    p.add_argument("--reference-limit", type=positive_int, default=REFERENCE_LIMIT, metavar="N",
                   help=f"how many reference texts, the first ones (default {REFERENCE_LIMIT})")
    p.add_argument("--attributes", metavar="ATTRS.json",
                   help='attributes to infer: {"attr": ["label", ...]} (zero-shot) or {"attr": {"labels": [...], '
                        '"train": SPEC, "column": NAME}} (a probe trained on labelled public texts)')
    p.add_argument("--truth", metavar="TRUTH.jsonl",
                   help='the owner\'s truth: rows {"id": ..., "text": ..., "<attr>": "<value>"}, or '
                        "builtin:CORPUS:SPLIT for a store `vecbridge embed` filled from that split (id k: its row k, "
                        "its text and label columns) (default: the store's own documents and metadata)")
    p.add_argument("--victim-encoder", metavar="NAME",
                   help="the encoder that made the stored vectors, to measure each defence's cost on real queries")
    p.add_argument("--defenses", metavar="LIST", help="defences to measure, e.g. noise:0.01,int8,binary,pq:48,"
                                                      "dims:128,rotation")
    p.add_argument("--known-documents", type=document_counts, metavar="K[,K...]",
                   help="also measure an attacker who knows K of the leaked documents (needs their texts: --truth): "
                        "a few-shot translator on those K pairs, a quarter held out to validate it, scored on the "
                        "other records; one point per K (e.g. 16,64,256), beside the vectors-only attacker (K = 0)")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="top-k for attribute accuracy")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for sampling, the translator and the defences' randomness (default 0)")
    p.add_argument("--report", required=True, metavar="DIR", help="report directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an audit report vecbridge wrote at DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def document_counts(text: str) -> list[int]:
    """`--known-documents K[,K...]`: numbers of documents, 0 or more."""
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        ks = []
    if not ks or any(k < 0 for k in ks):
        raise argparse.ArgumentTypeError(f"expected numbers of documents such as 16,64,256, got {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    from vecbridge.jobs.audit import audit

    r = audit(args.vectors, args.known_encoder, args.report, translator=args.translator, reference=args.reference,
              reference_limit=args.reference_limit, attributes=args.attributes, truth=args.truth,
              victim_encoder=args.victim_encoder, defenses=args.defenses, top_k=args.top_k, seed=args.seed,
              adapt=not args.no_adapt, overwrite=args.overwrite, known_documents=args.known_documents)
    summary = {"report": str(args.report), "translation_failed": r["translation_failed"],
               "translator_verdict": r["translator"]["verdict"],
               "attributes": {k: {m: v[m] for m in ("accuracy", "top_k_accuracy", "ideal_accuracy",
                                                     "naive_accuracy", "chance", "n")}
                              for k, v in r["attributes"].items()},
               "keywords_f1": r["inversion"]["keywords"]["f1"],
               "keywords_ideal_f1": r["inversion"]["keywords"]["ideal_f1"],
               "sensitive_fraction": r["inversion"]["sensitive"]["fraction"],
               "defenses": [{"label": d["label"], "utility": d["utility"]["neighbour_overlap_at_10"],
                             "keywords_f1": (d.get("inversion") or {}).get("keywords_f1")} for d in r["defenses"]],
               "known_documents": None if r["known_documents"] is None else [
                   {"k": p["k"], "demonstrated": p["demonstrated"], "verdict": p["translator"]["verdict"],
                    "attributes": {k: v["accuracy"] for k, v in p["attributes"].items()},
                    "keywords_f1": p["keywords"]["f1"]} for p in r["known_documents"]],
               "seconds": r["cost"]["seconds"], "summary": r["summary"]}
    if args.json:
        emit(summary, True)
    else:
        print("\n".join(r["summary"]))
        print(f"report: {args.report}/report.html")
    return 0
