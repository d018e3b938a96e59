"""Printing results: one JSON document on stdout with --json (for scripts), else aligned `key: value` lines.
The audit's report (report.json schema, self-contained HTML) lives in `vecbridge.report.html`."""

from __future__ import annotations

import json
import sys


def emit(result: dict, as_json: bool, title: str | None = None) -> None:
    if as_json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
        return
    if title:
        print(title)
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        print(f"  {key:<{width}}  {value}")
