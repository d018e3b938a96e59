"""The audit's plain-language risk summary: which threat model demonstrated what (with a known-documents curve),
then what an attacker holding only the leaked vectors learns, one line per finding, from report.json's content
(the CLI prints it; report.html opens with it)."""

from __future__ import annotations

import numpy as np

FAILED = "translation failed: the leak was not demonstrated, which does not show that there is none"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def threat_lines(curve: list[dict]) -> list[str]:
    """One line per threat model of the known-documents curve: what the attacker who knows K documents shows."""
    lines = []
    for p in curve:
        who = "Vectors only (K = 0)" if p["k"] == 0 else f"Knowing {p['k']} of the documents (K = {p['k']})"
        t = p["translator"]
        check = t.get("validation")
        how = (f"verdict {t['verdict']}, {check['top1']:.0%} of {check['pairs']} held-out known documents found "
               f"first among {check['pool']}" if check else
               f"verdict {t['verdict'] or 'unknown'}, label-free confidence {t['confidence'] or 0:.2f}")
        if not p["demonstrated"]:
            lines.append(f"{who}: not demonstrated ({how}).")
            continue
        found = [f"{name!r} right for {_pct(a['accuracy'])} of {a['n']} records (ideal {_pct(a['ideal_accuracy'])})"
                 for name, a in p["attributes"].items() if a["accuracy"] is not None]
        kw = p["keywords"]
        if kw["f1"] is not None:
            found.append(f"keyword F1 {kw['f1']:.2f} (ideal {kw['ideal_f1']:.2f})")
        other = "" if p["k"] == 0 else " of the other records"
        lines.append(f"{who}: demonstrated{other}: {'; '.join(found) or 'translated'} ({how}).")
    return lines


def summary_lines(r: dict) -> list[str]:
    """The plain-language risk summary: what an attacker holding only these vectors learns; with a known-documents
    curve, first one line per threat model."""
    lines = threat_lines(r["known_documents"]) if r.get("known_documents") else []
    t = r["translator"]
    if r["translation_failed"]:
        lines.append(f"{FAILED[0].upper()}{FAILED[1:]} (translator confidence "
                     f"{(t['confidence'] or {}).get('score') or 0:.2f}, verdict low).")
    else:
        lines.append(f"The leaked vectors were translated into {r['known_encoder']}'s space (translator "
                     f"{t['source']}, verdict {t['verdict'] or 'unknown'}).")
    tried = (r["reference"].get("auto") or {}).get("tried")
    if tried:
        scores = ", ".join(f"{x['texts']} ({x['by']}) {x['confidence'] or 0:.2f}" for x in tried)
        lines.append(f"Public texts: {r['reference']['texts']}, the best label-free fit among those tried: {scores}.")
    for name, a in r["attributes"].items():
        if a["accuracy"] is None:
            lines.append(f"Attribute {name!r}: predicted for every record; no truth to score it.")
            continue
        lines.append(f"Attribute {name!r}: the attacker guesses it right for {_pct(a['accuracy'])} of {a['n']} "
                     f"records (top-{a['k']}: {_pct(a['top_k_accuracy'])}); with the true encoder "
                     f"{_pct(a['ideal_accuracy'])}, always guessing the commonest value {_pct(a['chance'])}.")
    kw = r["inversion"]["keywords"]
    if kw["f1"] is not None:
        ideal = "n/a" if kw["ideal_f1"] is None else f"{kw['ideal_f1']:.2f}"
        lines.append(f"Words: {_pct(kw['precision'])} of the words the attacker recovers are in the texts, which "
                     f"recovers {_pct(kw['recall'])} of their content words (F1 {kw['f1']:.2f}; true encoder "
                     f"{ideal}).")
    s = r["inversion"]["sensitive"]
    if s["items_with_sensitive"]:
        lines.append(f"Sensitive items (e-mail addresses, URLs, phone numbers, names): {s['items_with_leak']} of "
                     f"{s['items_with_sensitive']} records that hold one have one recovered ({_pct(s['fraction'])}).")
    for d in r["defenses"]:
        if d.get("inversion") is None:
            lines.append(f"Defence {d['label']}: {d.get('note', 'not measured')}.")
            continue
        accs = [a["accuracy"] for a in d["attributes"].values() if a["accuracy"] is not None]
        f1 = d["inversion"]["keywords_f1"]
        lines.append(f"Defence {d['label']}: owner's neighbours kept {_pct(d['utility']['neighbour_overlap_at_10'])}"
                     f"; attacker's mean attribute accuracy {_pct(np.mean(accs) if accs else None)}, keyword F1 "
                     f"{'n/a' if f1 is None else f'{f1:.2f}'} ({d['attacker']}).")
    return lines
