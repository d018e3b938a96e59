"""The benchmarks' pictures: one function per figure, each taking the result rows in the shape the benchmark script
writes them and drawing one PNG. The benchmark scripts call these on the rows they have just measured (`--plot PNG`);
the pictures in BENCHMARKS.md are drawn from the recorded results under docs/benchmarks/ by the command line:

    python scripts/figures.py translate docs/benchmarks/translate.json docs/benchmarks/translate-top1.png
    python scripts/figures.py migrate docs/benchmarks/migrate.json docs/benchmarks/migrate-retention.png
    python scripts/figures.py defences docs/benchmarks/audit-defences.json docs/benchmarks/audit-defences.png

- `translate`: top-1 of each translator against the paired bound, per encoder pair (bench_translate.py's rows, or
  its `--offdomain` rows: one group per pair, corpus and leak size);
- `migrate`: the retention of each migration option, per task and pair: re-embedding (1.0), staying on the old
  model, each translated store and its query-side twin (bench_migrate.py's `--retention` rows);
- `defences`: the audit's defence curve, attack accuracy against the owner's utility for each defence
  (the result bench_attacks.py writes with `--out`).

RESULTS.json is a JSON list of rows, a JSON object holding them (`rows`, `retention`; bench_attacks.py's result as it
is), or JSON lines (bench_migrate.py's `--log`). Keys the scripts do not write (`measured`, `source`) are ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

PAIRED = ("procrustes", "ridge", "mlp")
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#98df8a", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
BOUND_COLOUR = "#b0b0b0"
OFFDOMAIN_POOL = "bench pool train_b"  # bench_translate.py --offdomain's name for --reference pool
CHANCE_TOP1 = 0.005  # top-1 under this among thousands of candidates: the map is at chance (1 / 8,192 = 0.0001)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def _value(v: float) -> str:
    """A recorded value as it was written: up to 4 decimals, at least 3 (0.8055, 0.942, 0.990, 0.0005)."""
    whole, _, decimals = f"{v:.4f}".partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(3, '0')}"


def _short(encoder_pair: str) -> str:
    return encoder_pair.replace("->", " -> ")


def describe_method(label: str) -> str:
    """bench_translate's method spec (`NAME[@K][+PIVOT][/PARAM=VALUE...]`) in words."""
    head, *params = label.split("/")
    head, _, pivot = head.partition("+")
    name, _, shots = head.partition("@")
    words = [name if not (name == "geometric" and not shots and not pivot) else "geometric, unsupervised"]
    if pivot:
        words.append(f"via pivot {pivot}")
    if shots:
        words.append(f"{shots} known pairs")
    words += [p.replace("=", " ") for p in params]
    return ", ".join(words)


def _method_name(label: str) -> str:
    return label.split("/")[0].split("+")[0].split("@")[0]


def _translate_groups(rows: list[dict]) -> dict[str, dict]:
    """{group label: {"bound": best paired top-1 or None, "series": {method label: [top-1 per seed]},
    "verdicts": {method label: {verdict per seed}}}}, in the rows' order."""
    groups: dict[str, dict] = {}
    for r in rows:
        if "corpus" in r:  # an --offdomain row: a small leak of one corpus against a reference
            key = f"{_short(r['pair'])}\n{r['corpus']}, {r['rows']:,} rows"
            top1, bound, method = r["top1"], r.get("bound_top1"), "geometric"
            params = r.get("params") or {}
            if params:
                method += "".join(f"/{k}={v}" for k, v in params.items())
            if r.get("auto") is None:  # a reference given, not chosen by `auto`: say which
                method += (" against the general pool" if r.get("reference") == OFFDOMAIN_POOL else
                           f" against {r.get('reference')}")
        else:
            key = _short(r["pair"])
            if r.get("n_train", 25000) != 25000:
                key += f"\n{r['n_train']:,} a side"
            if r.get("split"):
                key += f", split {r['split']}"
            top1, bound, method = r["eval"]["top1"], None, r["method"]
        g = groups.setdefault(key, {"bound": None, "series": {}, "verdicts": {}})
        if bound is not None:
            g["bound"] = max(g["bound"] or 0.0, bound)
        if _method_name(method) in PAIRED:
            if "@" not in method and top1 is not None:  # the paired bound: all pairs; @K is a baseline, not drawn
                g["bound"] = max(g["bound"] or 0.0, top1)
            continue
        if method == "identity" or top1 is None:
            continue
        g["series"].setdefault(method, []).append(top1)
        g["verdicts"].setdefault(method, set()).add(r.get("verdict"))
    return groups


def translate_figure(rows: list[dict], out: str | Path, title: str | None = None) -> Path:
    """Top-1 of each translator against the paired bound, one group of bars per encoder pair: a grey bar for the
    best paired map on all training pairs, one bar per method (the mean over seeds, whiskers from the worst to the
    best seed), each labelled with its value(s); a map at chance shows as 0.000, not as a missing bar."""
    plt = _pyplot()
    groups = _translate_groups(rows)
    methods = list(dict.fromkeys(m for g in groups.values() for m in g["series"]))
    colour = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(methods)}
    bars = sum(1 + len(g["series"]) for g in groups.values())
    fig, ax = plt.subplots(figsize=(9.5, 1.2 + 0.27 * bars + 0.25 * len(groups)))
    y, ticks, labels, seen = 0.0, [], [], set()
    for key, g in groups.items():
        top = y
        entries = [("paired bound", [g["bound"]] if g["bound"] is not None else [], BOUND_COLOUR)]
        entries += [(m, v, colour[m]) for m, v in g["series"].items()]
        for name, values, c in entries:
            if not values:
                ax.text(0.005, y, "paired bound not measured", va="center", fontsize=7, color="#666666")
                y += 1
                continue
            lo, hi, mean = min(values), max(values), sum(values) / len(values)
            legend = (name if name == "paired bound" else describe_method(name))
            # a map at chance keeps a sliver of its colour, so that the failure shows as a bar, not as a gap
            ax.barh(y, max(mean, 0.006), height=0.8, color=c, label=None if legend in seen else legend,
                    xerr=[[mean - lo], [hi - mean]] if len(values) > 1 else None,
                    error_kw={"elinewidth": 0.8, "capsize": 2})
            seen.add(legend)
            text = _value(lo) if _value(lo) == _value(hi) else f"{_value(lo)}-{_value(hi)}"
            if len(values) > 1:
                text += f" ({len(values)} seeds)"
            if hi < CHANCE_TOP1:
                text += ": fails (chance level)"
            if g["verdicts"].get(name) == {"low"}:
                text += ", verdict low"
            ax.text(max(hi, 0.006) + 0.008, y, text, va="center", fontsize=7,
                    color="#b00000" if hi < CHANCE_TOP1 else "black")
            y += 1
        ticks.append((top + y - 1) / 2)
        labels.append(key)
        y += 0.6
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(y - 0.4, -0.8)  # top to bottom in the rows' order
    ax.set_xlim(0, 1.28)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("top-1 among held-out texts embedded by both encoders (1 = every text finds its own twin)")
    ax.axvline(1.0, color="#dddddd", lw=0.8, zorder=0)
    axes_inches = fig.get_figheight() * (fig.subplotpars.top - fig.subplotpars.bottom)
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.5 / axes_inches), ncol=3, fontsize=7, frameon=False)
    default = ("Small stores of one domain: top-1 against the paired bound" if any("corpus" in r for r in rows)
               else "Translators: top-1 against the paired bound")
    ax.set_title(title or default, fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(fig, out)


MIGRATE_KINDS = {"reembed": ("re-embed (the reference)", "#b0b0b0"), "stay": ("stay on the old model", "#444444"),
                 "store": ("translated store (migrate)", "#1f77b4"),
                 "query": ("query-side (new queries translated back)", "#ff7f0e")}


def migrate_figure(rows: list[dict], out: str | Path, title: str | None = None) -> Path:
    """The retention of each migration option (nDCG@10 as a fraction of re-embedding's), one panel per task and
    pair: re-embedding (1.0), staying on the old model (also drawn as a dashed line), then each translator's
    migrated store beside its query-side twin."""
    plt = _pyplot()
    panels: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        panels.setdefault((r["task"], r["pair"]), []).append(r)
    sizes = [len(p) for p in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, sharex=True,
                             figsize=(9.5, 0.9 + sum(0.2 * n + 0.7 for n in sizes)),
                             gridspec_kw={"height_ratios": [max(n, 1) for n in sizes]})
    seen = set()
    for ax, ((task, pair), items) in zip(axes[:, 0], panels.items(), strict=True):
        stay = next((r["ndcg_retention"] for r in items if r["row"] == "stay"), None)
        for y, r in enumerate(items):
            kind = ("reembed" if r["row"] == "reembed" else "stay" if r["row"] == "stay" else
                    "query" if r["row"].endswith(" query-side") else "store")
            legend, c = MIGRATE_KINDS[kind]
            value = r["ndcg_retention"]
            ax.barh(y, max(value, 0.004), height=0.8, color=c, label=None if legend in seen else legend)
            seen.add(legend)
            text = _value(value)
            if r.get("verdict") == "low":
                text += " (translator read low)"
            ax.text(max(value, 0.004) + 0.008, y, text, va="center", fontsize=7,
                    color="#b00000" if value < 0.01 else "black")
        names = ["re-embed" if r["row"] == "reembed" else "  query-side" if r["row"].endswith(" query-side")
                 else r["row"] for r in items]
        ax.set_yticks(range(len(items)), names, fontsize=7)
        ax.invert_yaxis()
        if stay is not None:
            ax.axvline(stay, color=MIGRATE_KINDS["stay"][1], ls="--", lw=0.8)
        ax.axvline(1.0, color="#dddddd", lw=0.8, zorder=0)
        ax.set_title(f"{task}: {_short(pair)}", fontsize=9, loc="left")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1, 0].set_xlim(0, 1.2)
    axes[-1, 0].set_xlabel("retention: nDCG@10 of the new model's queries as a fraction of re-embedding's")
    fig.legend(loc="upper right", fontsize=7, ncol=2, bbox_to_anchor=(0.99, 1.0 + 0.35 / fig.get_figheight()))
    fig.suptitle(title or "Store migration: what each option keeps of re-embedding", fontsize=10, x=0.02,
                 ha="left", y=1.0 + 0.35 / fig.get_figheight())
    fig.tight_layout()
    return _save(fig, out)


DEFENCE_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h"]


def defence_points(result: dict) -> dict[str, list[dict]]:
    """{attribute (corpus): [{defence, utility, accuracy, ideal, chance, share, verdict}]} from bench_attacks.py's
    result: the undefended pool attacker (utility 1) and each defence row. `share` = the attack's gain over chance
    as a fraction of the ideal attack's (0 = chance, 1 = the ideal attack, which reads the truth texts' vectors)."""
    curves: dict[str, list[dict]] = {}
    for row in result.get("rows", []):
        steps = []
        if isinstance(row.get("pool"), dict):
            steps.append(("none", 1.0, row["pool"]))
        for d in row.get("defenses", []):
            steps.append((d["defence"], d["utility"]["neighbour_overlap_at_10"], d))
        for label, utility, scored in steps:
            for attr, a in (scored.get("attributes") or {}).items():
                ideal, chance, acc = a.get("ideal_accuracy"), a.get("chance"), a.get("accuracy")
                if None in (ideal, chance, acc) or ideal <= chance:
                    continue
                curves.setdefault(f"{attr} ({row['corpus']})", []).append(
                    {"defence": label, "utility": utility, "accuracy": acc, "ideal": ideal, "chance": chance,
                     "share": (acc - chance) / (ideal - chance), "verdict": scored.get("verdict")})
    return curves


def defence_figure(result: dict | str | Path, out: str | Path | None, title: str | None = None) -> Path | None:
    """The audit's defence curve: for each attribute, the attack against the defended store (y: its gain over
    chance as a share of the ideal attack's) against what the defence leaves the owner (x: neighbour overlap@10 of
    the stored rows, 1 = untouched); one colour per attribute, one marker per defence (`none`: the undefended
    store), hollow where the attacker's translator read `low` (the attack is drawn all the same: a `low` verdict
    is not protection). `out` None draws nothing (bench_attacks.py without `--plot`)."""
    if out is None:
        return None
    if not isinstance(result, dict):
        result = load_results(result)
    plt = _pyplot()
    curves = defence_points(result)
    defences = list(dict.fromkeys(p["defence"] for pts in curves.values() for p in pts))
    marker = {d: DEFENCE_MARKERS[i % len(DEFENCE_MARKERS)] for i, d in enumerate(defences)}
    fig, ax = plt.subplots(figsize=(9.5, 5.6))
    for i, (name, points) in enumerate(curves.items()):
        c = COLOURS[i % len(COLOURS)]
        ax.plot([], [], color=c, lw=6, label=name)  # the attribute's colour in the legend
        for p in points:
            low = p["verdict"] == "low"
            ax.scatter(p["utility"], p["share"], marker=marker[p["defence"]], s=42, zorder=3,
                       facecolors="white" if low else c, edgecolors=c, linewidths=1.2)
    for d in defences:
        ax.scatter([], [], marker=marker[d], color="#555555", label=f"defence: {d}")
    ax.scatter([], [], marker="o", facecolors="white", edgecolors="#555555", label="hollow: translator read low")
    ax.axhline(1.0, color="#999999", lw=0.8, ls="--")
    ax.axhline(0.0, color="#999999", lw=0.8, ls="--")
    for level, text in ((1.0, "ideal attack "), (0.0, "chance ")):
        ax.text(1.0, level, text, fontsize=7, va="bottom", ha="right", color="#666666",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("owner's utility: neighbour overlap@10 of the stored rows after the defence (1 = untouched)")
    ax.set_ylabel("attack: gain over chance, as a share of the ideal attack's")
    ax.invert_xaxis()
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    who = result.get("victim"), result.get("known")
    default = "Audit: what each defence costs the owner and the attacker"
    if all(who):
        default += f"\n(victim {who[0]}, attacker's encoder {who[1]}, {result.get('leak_size', '?'):,}-vector leaks)"
    ax.set_title(title or default, fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(fig, out)


def load_results(path: str | Path) -> dict | list:
    """A results file as the scripts write it: JSON (a list of rows or an object) or JSON lines."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _rows(data: dict | list, *keys: str) -> list[dict]:
    if isinstance(data, list):
        return data
    for key in keys:
        if isinstance(data.get(key), list):
            return data[key]
    raise SystemExit(f"no result rows: expected a list, or an object with one of {', '.join(keys)}")


FIGURES: dict[str, Callable] = {
    "translate": lambda data, out: translate_figure(_rows(data, "rows"), out),
    "migrate": lambda data, out: migrate_figure(_rows(data, "retention", "rows"), out),
    "defences": lambda data, out: defence_figure(data, out),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=sorted(FIGURES))
    ap.add_argument("results", type=Path, help="RESULTS.json as the benchmark script wrote it")
    ap.add_argument("out", type=Path, help="the PNG to write")
    args = ap.parse_args(argv)
    print(FIGURES[args.figure](load_results(args.results), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
