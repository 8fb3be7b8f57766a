"""Keyed hashes for identifiers: `patient_key` and `record_id` are HMAC-SHA256 of source ids, so
they are stable across re-ingests with the same key and reveal nothing without it."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = ".pseudonym_key"


def load_key(store: Path, configured: str | None) -> bytes:
    """The key from settings (MSAIC_PSEUDONYM_KEY), else the store's key file, created once
    with mode 0600 so that only its owner can re-identify."""
    if configured:
        return configured.encode()
    path = store / KEY_FILE
    store.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def keyed_hash(key: bytes, *parts: str, length: int = 32) -> str:
    """Hex HMAC-SHA256 of the parts joined with a separator that cannot occur in them."""
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:length]
