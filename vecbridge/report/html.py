"""The audit's self-contained report.html: the plain-language summary first, the threat model, the plots
(matplotlib, embedded as base64 PNG), the defence table and the riskiest records with the recovered words
that are true highlighted. No script, no external asset: it opens the same offline."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np

RISKIEST = 20
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #dde;padding-bottom:.2em}
.verdict{padding:.8em 1em;border-radius:6px;margin:1em 0}
.failed{background:#fff4e5;border:1px solid #f0a030}.leak{background:#fdecec;border:1px solid #d04040}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccd;padding:.3em .6em;text-align:left}
th{background:#f1f3f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
mark{background:#ffe066;padding:0 .1em}.muted{color:#667}.rec{font-size:.92em}
img{max-width:100%;height:auto}
"""


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.0%}" if pct else f"{x:.3f}"
    return html.escape(str(x))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def _plots(r: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots = []
    attrs = r["attributes"]
    if attrs:
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(attrs) + 2), 3.4))
        series = [("translated", "accuracy", "#d04040"), ("ideal (true encoder)", "ideal_accuracy", "#3070c0"),
                  ("naive (vectors as they are)", "naive_accuracy", "#999999"), ("chance", "chance", "#e0b040")]
        x = np.arange(len(attrs))
        for k, (label, key, color) in enumerate(series):
            values = [a[key] if a[key] is not None else 0.0 for a in attrs.values()]
            ax.bar(x + (k - 1.5) * 0.2, values, 0.2, label=label, color=color)
        ax.set_xticks(x, list(attrs), rotation=15)
        ax.set_ylim(0, 1)
        ax.set_ylabel("top-1 accuracy")
        ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: bars stay clear
        plots.append(("Attribute accuracy: translated vs ideal, naive and chance", _png(fig)))
    measured = [d for d in r["defenses"] if d.get("inversion") is not None]
    if measured:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, d in enumerate(measured):
            accs = [a["accuracy"] for a in d["attributes"].values() if a["accuracy"] is not None]
            leak = np.mean(accs) if accs else d["inversion"]["keywords_f1"]
            if leak is None:
                continue
            ax.scatter(d["utility"]["neighbour_overlap_at_10"], leak, color="#d04040")
            # defences often land on one point (rotation, int8): stagger the labels so that each stays legible
            ax.annotate(d["label"], (d["utility"]["neighbour_overlap_at_10"], leak), fontsize=8,
                        xytext=(-40, 6 - 10 * (i % 4)), textcoords="offset points")
        ax.set_xlabel("owner's utility: neighbour overlap@10 with the undefended store")
        ax.set_ylabel("attack: mean attribute accuracy" if attrs else "attack: keyword F1")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        plots.append(("Privacy / utility per defence (lower right is best for the owner)", _png(fig)))
    sim = r["similarity"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(-0.2, 1.0, 49)
    if sim.get("translated_vs_truth"):
        ax.hist(sim["translated_vs_truth"], bins=bins, alpha=0.6, label="translated vs true (cosine)",
                color="#d04040")
    ax.hist(sim["retrieval_translated"], bins=bins, alpha=0.6, label="translated: nearest public text",
            color="#e0b040")
    if sim.get("retrieval_ideal"):
        ax.hist(sim["retrieval_ideal"], bins=bins, alpha=0.5, label="ideal: nearest public text", color="#3070c0")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("records")
    ax.legend(fontsize=8)
    plots.append(("Similarity histograms", _png(fig)))
    return plots


def _highlight(text: str, words: set[str]) -> str:
    """`text` escaped, with each occurrence of a recovered true word marked."""
    if not words:
        return html.escape(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(x, pct: bool = False) -> str:
    return f'<td class="num">{_fmt(x, pct)}</td>' if isinstance(x, int | float) or x is None else \
        f"<td>{html.escape(str(x))}</td>"


def _reference_and_curve(r: dict) -> list[str]:
    """The references tried (auto), and the known-documents curve: what leaks as the attacker knows more."""
    parts = []
    tried = (r["reference"].get("auto") or {}).get("tried")
    if tried:
        rows = [[_td(t["texts"]), _td(t["by"]), _td(t["rows"]), _td(t["confidence"]), _td(t["verdict"])]
                for t in tried]
        header = ["public texts", "tried by", "texts", "label-free confidence", "verdict"]
        parts.append('<section id="references"><h2>References tried</h2><p>The attacker fits the leak against each '
                     "candidate and keeps the fit that scores best label-free.</p>" + _table(header, rows) +
                     "</section>")
    curve = r.get("known_documents")
    if curve:
        names = list(curve[0]["attributes"])
        rows = [[_td(p["k"]), _td(p["scored"]), _td(p["translator"]["verdict"]),
                 _td((p["translator"].get("validation") or {}).get("top1"), True),
                 *[_td(p["attributes"][n]["accuracy"], True) for n in names],
                 *[_td(p["attributes"][n]["ideal_accuracy"], True) for n in names],
                 _td(p["keywords"]["f1"]), _td(p["reference"])] for p in curve]
        parts.append('<section id="known-documents"><h2>What an attacker who knows K documents gets</h2><p>Each row '
                     "is an attacker who knows K of the leaked documents (their texts and vectors): it fits the "
                     "translation with them as known pairs, a quarter held out to check it, and is scored on the "
                     "other records only.</p>" + _table(
                         ["K", "records scored", "verdict", "held-out found first", *[f"{n}" for n in names],
                          *[f"{n} ideal" for n in names], "keyword F1", "public texts"], rows) + "</section>")
    return parts


def render_html(r: dict, texts: dict) -> str:
    """report.html from report.json's content `r` and the truth texts by id (shown for the riskiest records)."""
    failed = r["translation_failed"]
    t = r["translator"]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vecbridge leakage audit: "
             f"{html.escape(r['store']['spec'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>Leakage audit of {html.escape(r['store']['spec'])}</h1>",
             '<section id="summary"><h2>Summary</h2>',
             f'<div class="verdict {"failed" if failed else "leak"}">' +
             "".join(f"<p>{html.escape(line)}</p>" for line in r["summary"]) + "</div></section>"]
    parts.append(
        '<section id="threat-model"><h2>Threat model</h2><p>An attacker holds only the stored vectors '
        f"({r['store']['count']} of {r['store']['dim']} dims): not the encoder that made them, not one text paired "
        f"with its vector. They translate the vectors without pairs into the space of a public encoder "
        f"({html.escape(r['known_encoder'])}), using public texts ({html.escape(r['reference']['texts'])}, "
        f"{r['reference']['rows']} texts), and read them there: attributes by zero-shot labels or probes trained on "
        "public labelled data, content by retrieval of the nearest public texts and a keyword decoder trained on "
        "public texts. Scores compare the attack with the truth the owner gave "
        f"({html.escape(str(r['truth']['source'] or 'none'))}); <em>ideal</em> is the same attack with the true "
        "texts embedded by the public encoder (a perfect translation), <em>naive</em> uses the leaked vectors as "
        "they are, <em>chance</em> always guesses the commonest value.</p>"
        f"<p>Translator: {html.escape(t['source'])}, method {html.escape(str(t['method']))}, label-free "
        f"confidence {_fmt((t['confidence'] or {}).get('score'))}, verdict {html.escape(str(t['verdict']))}."
        + (f" {html.escape(t['warning'])}" if t.get("warning") else "") + "</p></section>")
    parts.extend(_reference_and_curve(r))
    parts.append('<section id="plots"><h2>Plots</h2>')
    for title, img in _plots(r):
        parts.append(f"<figure><figcaption>{html.escape(title)}</figcaption>{img}</figure>")
    parts.append("</section>")
    if r["attributes"]:
        rows = [[_td(name), _td(a["kind"]), _td(a["n"]), _td(a["accuracy"], True), _td(a["top_k_accuracy"], True),
                 _td(a["ideal_accuracy"], True), _td(a["naive_accuracy"], True), _td(a["chance"], True)]
                for name, a in r["attributes"].items()]
        parts.append('<section id="attributes"><h2>Attributes</h2>' + _table(
            ["attribute", "attack", "records", "accuracy", "top-k", "ideal", "naive", "chance"], rows) + "</section>")
    inv = r["inversion"]
    rows = [[_td("keywords"), _td(inv["keywords"]["precision"]), _td(inv["keywords"]["recall"]),
             _td(inv["keywords"]["f1"]), _td(inv["keywords"]["ideal_f1"])],
            [_td("retrieval (nearest public text)"), _td(inv["retrieval"]["precision"]),
             _td(inv["retrieval"]["recall"]), _td(inv["retrieval"]["f1"]), _td(inv["retrieval"]["ideal_f1"])]]
    s = inv["sensitive"]
    parts.append('<section id="inversion"><h2>Content recovery</h2>' + _table(
        ["attack", "precision", "recall", "F1", "ideal F1"], rows) +
        f"<p>Sensitive items: {s['items_with_leak']} of {s['items_with_sensitive']} records holding one have at "
        f"least one recovered ({_fmt(s['fraction'], True)}).</p></section>")
    if r["defenses"]:
        rows = []
        for d in r["defenses"]:
            accs = None if not d.get("attributes") else [a["accuracy"] for a in d["attributes"].values()
                                                         if a["accuracy"] is not None]
            rows.append([_td(d["label"]), _td(d["utility"]["neighbour_overlap_at_10"], True),
                         _td(d["utility"]["query_overlap_at_10"], True),
                         _td(float(np.mean(accs)) if accs else None, True),
                         _td((d.get("inversion") or {}).get("keywords_f1")),
                         _td((d.get("translator") or {}).get("verdict")), _td(d.get("note") or d["attacker"])])
        parts.append('<section id="defenses"><h2>Defences</h2>' + _table(
            ["defence", "neighbours kept@10", "owner queries kept@10", "attack: mean accuracy", "keyword F1",
             "translator verdict", "attacker"], rows) + "</section>")
    risky = [i for i in r["items"] if i["risk"] is not None][:RISKIEST]
    parts.append(f'<section id="records"><h2>Riskiest records</h2><p class="muted">Up to {RISKIEST}, riskiest first; '
                 "recovered words that are in the text are <mark>highlighted</mark>.</p>")
    for item in risky:
        text = texts.get(item["id"], "")
        preds = "; ".join(f"{html.escape(k)}: {html.escape(', '.join(v))}" for k, v in item["predictions"].items())
        sens = ", ".join(html.escape(f"{x['kind']} {x['value']}") for x in item["sensitive_recovered"])
        parts.append(f'<div class="rec"><h3>{html.escape(str(item["id"]))} <span class="muted">risk '
                     f"{_fmt(item['risk'])}</span></h3><p>{_highlight(text[:1200], set(item['true_keywords']))}</p>"
                     f"<p class=\"muted\">predicted: {preds or 'n/a'}<br>recovered words: "
                     f"{html.escape(', '.join(item['keywords'])) or 'none'}"
                     + (f"<br>sensitive items recovered: {sens}" if sens else "") + "</p></div>")
    parts.append("</section>")
    c = r["cost"]
    parts.append(f'<footer class="muted"><p>Cost: {c["seconds"]} s wall, {c["cpu_seconds"]} s CPU on '
                 f"{c['device']}. vecbridge audit report format {r['version']}.</p></footer></body></html>")
    return "".join(parts)
