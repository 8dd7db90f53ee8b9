"""Signed tokens: a JSON payload and its HMAC-SHA256, made and checked with a key ring.

The keys come from ``UPLOADS_SIGNING_KEY`` (comma-separated): the first signs, every one
verifies, so a new key is put first while tokens signed with the old one still pass, and
the old one is dropped later. Unset, one key is generated once and kept in
``<data dir>/signing.key`` (mode 0600), which every process on that data dir reads.

A token is ``<payload>.<signature>``, both base64url without padding; the signature covers
the payload's base64 text. A payload with ``exp`` (seconds since the epoch) stops
verifying at that time. What a payload means is its user's business: each names its use
(``"use": "events"``), so a token made for one purpose is never taken for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uploads_api.storage.dirsync import fsync_dir, make_dirs

KEY_FILE = "signing.key"
# The decoder skips characters outside the alphabet; a token must not have any.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

log = logging.getLogger(__name__)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeyRing:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys or not all(keys):
            raise ValueError("a key ring needs at least one non-empty key")
        self._keys = [key.encode() for key in keys]

    @classmethod
    def load(cls, configured: Sequence[str], data_dir: Path) -> KeyRing:
        """The configured keys, else the data dir's generated one."""
        return cls(list(configured) or [load_or_create_key(data_dir / KEY_FILE)])

    def _mac(self, key: bytes, body: str) -> bytes:
        return hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()

    def sign(self, payload: Mapping[str, Any]) -> str:
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64encode(self._mac(self._keys[0], body))}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The payload, if a key of the ring signed it and its ``exp`` has not passed."""
        body, dot, signature = token.partition(".")
        if not dot or not _BASE64URL.fullmatch(body) or not _BASE64URL.fullmatch(signature):
            return None
        try:
            given = _b64decode(signature)
        except (binascii.Error, ValueError):
            return None
        # Every key is tried, even after a match, so the time taken says nothing about which.
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(self._mac(key, body), given)
        if not valid:
            return None
        try:
            payload = json.loads(_b64decode(body))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(payload, dict):
            return None
        expires = payload.get("exp")
        if expires is not None and (
            not isinstance(expires, int | float)
            or isinstance(expires, bool)
            or expires <= time.time()
        ):
            return None
        return payload


def load_or_create_key(path: Path) -> str:
    """The key kept at ``path``, made first if there is none.

    Processes that start together may each make one: each writes its own to a temporary
    file and links it into place, which fails if the name exists, so the first link wins
    and every process reads that one.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    make_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: its key is the one
        else:
            # The link is durable once its directory is: a crash cannot lose a key in use.
            fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise ValueError(f"{path} is empty: remove it to have a new key generated")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users (mode %o); chmod 600 it", path, mode & 0o777)
    return key
