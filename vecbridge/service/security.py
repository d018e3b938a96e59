"""API keys: where the key comes from, when one is required (any bind address that is not loopback), and the
constant-time check of `Authorization: Bearer KEY`."""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from pathlib import Path

from vecbridge.errors import UserError

ENV_KEY = "VECBRIDGE_API_KEY"
MIN_KEY_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def read_api_key(key_file: str | os.PathLike | None, environ=os.environ) -> str | None:
    """The key from `key_file` (first line, surrounding whitespace removed), else from $VECBRIDGE_API_KEY."""
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise UserError(f"--api-key-file {path} is not a readable file; write the key on its first line")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--api-key-file {path} cannot be read ({e}); write the key on its first line") from None
        key, where = (lines[0].strip() if lines else ""), f"--api-key-file {path}"
    else:
        key, where = environ.get(ENV_KEY, "").strip(), f"${ENV_KEY}"
        if not key:
            return None
    if len(key) < MIN_KEY_LENGTH:
        raise UserError(f"the API key in {where} has {len(key)} characters; use at least {MIN_KEY_LENGTH} random "
                        "ones, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return key


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if api_key is None and not is_loopback(host):
        raise UserError(f"--host {host} is reachable from other machines, so an API key is required: give "
                        f"--api-key-file FILE or set ${ENV_KEY}, or bind 127.0.0.1")


def authorized(header: bytes | None, api_key: str) -> bool:
    """Whether an Authorization header value is `Bearer <api_key>` (compared in constant time)."""
    if not header:
        return False
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(token.strip(), api_key.encode("utf-8"))
