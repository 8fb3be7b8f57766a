"""Keyed hashes for identifiers: `patient_key` and `record_id` are HMAC-SHA256 of source ids, so
they are stable across re-ingests with the same key and reveal nothing without it.

An empty or cut-short key would make every id recomputable by anyone, so it is refused, never
used: the key file is written whole before it appears under its name (staged, fsynced, then
linked into place), and one that is empty or short anyway (a disk that filled under an older
version) stops the run with the way out in the message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from tasks.store import tables as st
from tasks.store.location import Location, ObjectPath

KEY_FILE = ".pseudonym_key"
KEY_BYTES = 32  # the key file holds this many random bytes as hex
MIN_FILE_CHARS = KEY_BYTES  # fewer characters than half of what is written: the file was cut short


class PseudonymKeyError(ValueError):
    """The configured key or the store's key file cannot be used."""


def check_configured(configured: str) -> bytes:
    """The key given in MSAIC_PSEUDONYM_KEY, refused when empty or blank."""
    if not configured.strip():
        raise PseudonymKeyError(
            "MSAIC_PSEUDONYM_KEY is set but empty: set the store's key, or unset it to use the key file"
        )
    return configured.encode()


def load_key(store: Location, configured: str | None) -> bytes:
    """The key from settings (MSAIC_PSEUDONYM_KEY), else the store's key file, created once with
    mode 0600 so that only its owner can re-identify."""
    if configured is not None:
        return check_configured(configured)
    path = store / KEY_FILE
    if not path.exists():
        _create_key_file(store, path)
    key = path.read_bytes().strip()
    if len(key) < MIN_FILE_CHARS:
        raise PseudonymKeyError(
            f"{path} holds {len(key)} characters, not a key ({2 * KEY_BYTES} hex characters expected): "
            "restore it from a backup; if the store holds no records yet, delete it to make a new one"
        )
    return key


def _create_key_file(store: Location, path: Location) -> None:
    """Write a new random key to a staged file (mode 0600, fsynced) and link it into place, so
    that the key file exists only whole; if another run linked its key first, that one stays.
    On object storage one PUT writes it whole (access is the bucket's policy); two first runs at
    once would each write one, and the second would win."""
    if isinstance(path, ObjectPath):
        path.write_text(secrets.token_hex(KEY_BYTES))
        return
    assert isinstance(store, Path) and isinstance(path, Path)
    staged = st.staging_dir(store) / f"{secrets.token_hex(8)}{KEY_FILE}"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(staged, path)
        except FileExistsError:
            return
        dir_fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        staged.unlink(missing_ok=True)


def keyed_hash(key: bytes, *parts: str, length: int = 32) -> str:
    """Hex HMAC-SHA256 of the parts joined with a separator that cannot occur in them."""
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:length]
