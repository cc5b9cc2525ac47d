"""Prefixed resource ids (cus_, sub_, in_, price_, prod_ …), random or derived."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 20) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def derived_id(prefix: str, *parts: str, length: int = 24) -> str:
    """A stable id from its parts: the same parts always give the same id (idempotent creation)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"
