"""Resume records: beside a destination being built, how many rows its temporary store durably holds, with the
run's fingerprint (translator, input, options). A record's name carries its process id, so the sweeps of later
runs remove it with the store once that process is dead; a run with `resume` takes over the furthest record of
a dead run with its own fingerprint."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from vecbridge import files
from vecbridge.errors import UserError

RESUME_FORMAT = "vecbridge-resume"
RESUME_SUFFIX = ".resume.json"
# Least seconds between two records: each fsyncs the rows written since the last one, which stalls the writer
# while it lasts; a resumed run redoes at most this much work.
CHECKPOINT_SECONDS = 10.0
# the keys of a record's state that name a temporary collection or table; its other strings are paths
NAME_KEYS = ("collection", "table")


class ResumeRecords:
    """The resume records of one destination (`spec`, a local store) for one run."""

    def __init__(self, spec, fingerprint: str | None, what: str) -> None:
        self.spec, self.fingerprint, self.what = spec, fingerprint, what
        # records are named after the store's path, plus `#NAME` for a collection or table
        self.dest = spec.path.parent / (spec.path.name + (f"#{spec.name}" if spec.name else ""))
        self.record: Path | None = None  # this run's record
        self.taken: Path | None = None  # the dead run's record this run took over
        self.last = 0.0

    def take_over(self) -> tuple[int, dict] | None:
        """(rows, state) recorded by the dead run with this run's fingerprint that got furthest; None when there
        is none. Dead runs' records with another fingerprint (another translator, input or options) and none
        with this one are refused."""
        mine, others = [], 0
        for entry in self.dest.parent.iterdir() if self.dest.parent.is_dir() else ():
            if not entry.name.endswith(RESUME_SUFFIX) or not files.is_stale_tmp(entry.name, f".{self.dest.name}"):
                continue
            try:
                record = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("format") != RESUME_FORMAT:
                continue
            if record.get("fingerprint") == self.fingerprint and isinstance(record.get("rows"), int):
                mine.append((record["rows"], entry, record))
            else:
                others += 1
        if not mine:
            if others:
                raise UserError(f"{self.what} {self.spec}: the unfinished translation there was made with another "
                                "translator, input or options; resuming it would mix two translations: run "
                                "without `resume` to discard it and start over")
            return None
        rows, self.taken, record = max(mine, key=lambda m: m[0])
        state = record.get("state") or {}
        self.check_own(state)
        return rows, state

    def check_own(self, state) -> None:
        """Refuse a record whose state names anything but this destination's own temporary files and folders
        beside it (paths) or its own temporary collections and tables (names): a resume moves what it names."""
        path = self.spec.path
        own_file = re.compile(re.escape(f".{path.name}{files.TMP_TAG}") + r"\d+-[0-9a-f]{8}")
        own_name = re.compile(re.escape(f"{self.spec.name}{files.TMP_TAG}") + r"\d+-[0-9a-f]{8}")
        for key, value in state.items() if isinstance(state, dict) else [("state", state)]:
            if value is None or (isinstance(value, int) and key not in NAME_KEYS):
                continue
            ok = isinstance(value, str) and (
                own_name.fullmatch(value) if key in NAME_KEYS else
                own_file.fullmatch(Path(value).name) and os.path.realpath(Path(value).parent) ==
                os.path.realpath(path.parent) and not Path(value).is_symlink())
            if not ok:
                raise UserError(f"{self.what} {self.spec}: the resume record {self.taken} names {value!r}, which is "
                                "not one of vecbridge's temporary files beside the destination; run without `resume` "
                                "(its record is then discarded, and nothing it names is touched)")

    def sweep(self) -> None:
        files.sweep_stale(self.dest)

    def checkpoint(self, durable_state: Callable[[], dict | None], force: bool = False) -> None:
        """Record `durable_state()` (which holds `rows`), at most every `CHECKPOINT_SECONDS` unless `force`."""
        if self.fingerprint is None or (not force and time.monotonic() - self.last < CHECKPOINT_SECONDS):
            return
        state = durable_state()
        if state is None:
            return
        if self.record is None:
            self.record = files.tmp_path(self.dest, RESUME_SUFFIX)
        rows = state.pop("rows")
        part = self.record.with_name(self.record.name + ".part")
        files.write_json_file(part, {"format": RESUME_FORMAT, "fingerprint": self.fingerprint,
                                     "spec": str(self.spec), "rows": int(rows), "state": state})
        os.replace(part, self.record)
        self.last = time.monotonic()
        if self.taken is not None:  # this run's record now says where its store is
            self.taken.unlink(missing_ok=True)
            self.taken = None

    def finish(self, committed: bool) -> None:
        """Remove this run's record, and once committed the dead run's it took over."""
        for record in (self.record, self.taken if committed else None):
            if record is not None:
                record.unlink(missing_ok=True)
