"""`vecbridge migrate`: move a vector store to a new embedding model in one command: plan, train (or reuse) a
translator, verify on held-out re-embedded documents, translate into a new store, and say what to do."""

from __future__ import annotations

import argparse
import json
import sys

from vecbridge import engine, jobs, stores
from vecbridge.commands.args import non_negative_int, parse_param, positive_int
from vecbridge.errors import UserError
from vecbridge.jobs import progressive

# the job's parameters whose flag has another name (see `vecbridge.cli.flag_names`)
PARAMETER_FLAGS = {"reference_texts": "--target-texts", "reference_limit": "--target-limit",
                   "save_translator_to": "--save-translator", "input": "--from", "output": "--to"}


def register(sub) -> None:
    p = sub.add_parser(
        "migrate", help="migrate a vector store to a new embedding model without re-embedding it",
        description="Translate every vector of --from into the space of --target-encoder as the new store --to "
                    "(ids, documents and metadata carried over; the source is only read; the new store is swapped "
                    "in when complete). Prints a plan first (rows, dims, how the translator is obtained, estimated "
                    "time, and what re-embedding every document would cost), then trains a translator (or reuses "
                    "--translator), checks it on held-out documents re-embedded by the new model, translates, and "
                    "ends with a verdict: migrate, translate queries instead (--reverse), or stay / re-embed. "
                    f"Stores: {stores.KNOWN}.")
    p.add_argument("status", nargs="*", metavar="status STORE",
                   help="`vecbridge migrate status STORE`: where a progressive migration into STORE stands")
    p.add_argument("--from", dest="source", metavar="STORE", help="the store to migrate (only read; required)")
    p.add_argument("--to", dest="destination", metavar="STORE", help="the new store to create (required)")
    p.add_argument("--target-encoder", metavar="NAME", help="the new model (a built-in encoder; required)")
    p.add_argument("--translator", metavar="DIR", help="reuse a translator from `vecbridge train` instead of training")
    p.add_argument("--source-encoder", metavar="NAME",
                   help="the old model, when it still runs: fit on public pairs (reference texts embedded by both)")
    p.add_argument("--pairs-from-documents", type=positive_int, metavar="K",
                   help="fit with K of the store's documents re-embedded by the new model as known pairs (the "
                        "cheapest reliable path when the store keeps its documents)")
    p.add_argument("--method", default=None, help="translator method (default: geometric; procrustes with "
                                                  "--source-encoder)")
    p.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of the method; repeatable")
    p.add_argument("--target-texts", default=jobs.REFERENCE_TEXTS, metavar="SPEC",
                   help=f"reference texts for the new model's side (default {jobs.REFERENCE_TEXTS}; auto: the built-in "
                        "corpus whose vectors look most like the store's domain)")
    p.add_argument("--target-limit", type=positive_int, default=jobs.REFERENCE_LIMIT, metavar="N",
                   help=f"how many reference texts (default {jobs.REFERENCE_LIMIT})")
    p.add_argument("--save-translator", metavar="DIR", help="keep the trained translator here (e.g. to translate "
                                                            "queries with --reverse later)")
    p.add_argument("--verify-documents", type=non_negative_int, default=1000, metavar="N",
                   help="documents held out from training and re-embedded by the new model to verify the migration "
                        "(default 1000; 0 skips the check)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed for sampling and training (default 0)")
    p.add_argument("--dry-run", action="store_true", help="print the plan only; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace --to if it is a store vecbridge wrote")
    p.add_argument("--resume", action="store_true", help="continue a killed run's unfinished destination")
    p.add_argument("--force", action="store_true",
                   help="write --to even when the translator rates itself low and no documents can verify it "
                        "(refused otherwise); the new store's provenance records it")
    p.add_argument("--progressive", action="store_true",
                   help="after migrating, re-embed the documents by the new model in resumable batches, replacing "
                        "their rows in place (the store serves throughout; see `migrate status STORE`)")
    p.add_argument("--documents", metavar="FILE.jsonl",
                   help="the store's documents from a file, one {\"text\": ...} line per row in its order, for the "
                        "verification and --progressive (default: the store's own)")
    p.add_argument("--order", choices=progressive.ORDERS, default="random",
                   help="with --progressive: which documents first: random (default), or queries: those that the "
                        "query log --queries reaches")
    p.add_argument("--queries", metavar="SPEC", help="with --order queries: a query log (.jsonl / .txt texts)")
    p.add_argument("--checkpoint-rows", type=positive_int, metavar="N",
                   help="with --progressive: documents re-embedded between checkpoints (default: 5%% of them)")
    p.add_argument("--engine", choices=engine.ENGINES, default="local",
                   help="where batches are translated and re-embedded: local (this process, default) or ray")
    p.add_argument("--address", metavar="HOST:PORT", help="with --engine ray: the Ray cluster to join (default: "
                                                          "start a local one)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    p.set_defaults(func=run)


def _plan_lines(plan: dict) -> list[str]:
    est = plan["estimated_seconds"]
    lines = [f"plan: {plan['rows']:,} vectors {plan['dim_in']} -> {plan['dim_out']} dims "
             f"({plan['source_encoder'] or 'unknown encoder'} -> {plan['target_encoder']}), {plan['from']} -> "
             f"{plan['to']}",
             f"  translator: {plan['translator']} (method {plan['method']})",
             f"  estimated: train ~{est['train']} s, translate ~{est['translate']} s"
             + (f", verify ~{est['verify']} s on {plan['verify_documents']} held-out documents" if est["verify"]
                is not None else ", no verification (the store has too few documents)")]
    re = plan["reembed_instead"]
    if re:
        lines.append(f"  re-embedding instead: {re['documents']:,} documents at {re['texts_per_second']} texts/s "
                     f"~{re['seconds']} s")
    if not plan["exact"]:
        lines.append("  note: the source stores approximate vectors (a lossy index): translation starts from them")
    return lines


def _progressive_lines(state: dict) -> int:
    last = state["checkpoints"][-1]
    print(f"re-embedded {state['done']:,} of {state['documents']:,} documents in place in {state['seconds']:.0f} s"
          + (f"; retention {last['retention']:.3f} of re-embedding" if last["retention"] is not None else ""))
    return 0


def _status(args: argparse.Namespace) -> int:
    if len(args.status) != 2 or args.status[0] != "status":
        raise UserError(f"unexpected {' '.join(args.status)!r}: write `vecbridge migrate status STORE`, or migrate "
                        "with --from, --to and --target-encoder")
    st = jobs.progressive_status(args.status[1])
    if args.json:
        json.dump(st, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    def pct(x):
        return "not measured" if x is None else f"{x:.3f}"
    eta = ("complete" if st["complete"] else "ETA unknown" if st["eta_seconds"] is None else
           f"ETA ~{st['eta_seconds']:,} s at {st['documents_per_second']} documents/s")
    print(f"{st['destination']}: {st['done']:,} of {st['documents']:,} documents re-embedded by {st['encoder']} "
          f"({st['fraction']:.1%}, {st['order']} order); {eta}")
    print(f"retention at the last checkpoint: {pct(st['retention'])} of re-embedding (the translated bridge "
          f"{pct(st['bridge'])}, staying on the old model {pct(st['stay'])})")
    if st["complete"]:
        print("the store is fully re-embedded" + (f"; {st['translated_rows_left']:,} rows without a document keep "
                                                   "their translated vectors" if st["translated_rows_left"] else ""))
    else:
        print("continue it with the same migrate command and --resume")
    return 0


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.status:
        return _status(args)
    missing = [f for f, v in (("--from", args.source), ("--to", args.destination),
                              ("--target-encoder", args.target_encoder)) if v is None]
    if missing:
        raise UserError(f"migrate needs {', '.join(missing)} (or: vecbridge migrate status STORE)")

    result = jobs.migrate(
        args.source, args.destination, args.target_encoder, translator=args.translator,
        source_encoder=args.source_encoder, pairs_from_documents=args.pairs_from_documents, method=args.method,
        params=dict(args.param) or None, reference_texts=args.target_texts, reference_limit=args.target_limit,
        save_translator_to=args.save_translator, verify_documents=args.verify_documents, dry_run=args.dry_run,
        overwrite=args.overwrite, resume=args.resume, seed=args.seed, log=log, documents=args.documents,
        progressive=progressive.Progressive(args.order, args.queries, args.checkpoint_rows) if args.progressive
        else None, engine=args.engine, address=args.address, force=args.force,
        on_plan=None if args.json else lambda plan: [log(line) for line in _plan_lines(plan)])
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
        return 0
    if args.dry_run:
        return 0
    if "plan" not in result:  # a progressive migration resumed
        return _progressive_lines(result["progressive"])
    train = result["train"]
    if train:
        conf = train.get("confidence") or {}
        print(f"trained {train['method']} translator in {train['train_seconds']} s: label-free confidence "
              f"{conf.get('score', float('nan')):.2f} ({conf.get('verdict', 'n/a')})")
    t = result["translate"]
    print(f"migrated {t['rows']:,} vectors to {t['output']} in {t['seconds']} s")
    check, rec = result["verify"], result["recommendation"]
    if check:
        fr = rec["expected_fraction_of_reembedding"]
        names = {"migrate": "migrated store", "query_side": "queries translated instead", "stay": "staying on the old "
                 "model"}
        print(f"verified on {check['documents']} held-out documents: pseudo-queries (spans of the documents) find "
              f"their document with nDCG@{check['k']} {check['reembed_ndcg']:.3f} after re-embedding; as a fraction "
              "of that: " + ", ".join(f"{names[k]} {v:.2f}" for k, v in fr.items()))
        print(f"verdict: {rec['says']}")
    else:
        print("verdict: not verified (the store has no documents to re-embed); see the label-free confidence")
    if result["progressive"] is not None:
        _progressive_lines(result["progressive"])
    if train and "warning" in train:
        print(f"warning: {train['warning']}", file=sys.stderr)
    return 0
