"""API secret keys and link-signing keys: several at once, so that a key can be rolled (Stripe-like).

The ``kassa/api`` secret holds ``{"keys": [{"id", "secret", "role": "full" | "read_only",
"expires_at"?}]}`` (the old ``{"secret_key": …}`` is one full key without expiry). During a rotation
two keys are valid: the new one and the old one with an ``expires_at``. A ``read_only`` (restricted)
key may only read (GET, HEAD, OPTIONS).

The ``kassa/links`` secret holds ``{"keys": [{"id", "secret"}]}`` (or ``{"secret_key": …}``): the
first key signs new customer links, every listed key verifies them, so a link signed with the
previous key stays valid until its own expiry. Pure functions: the caller passes ``now``.
"""

from __future__ import annotations

import hmac
import secrets as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

ROLES = ("full", "read_only")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_KEY_PREFIX = "ksk_"
LINK_KEY_PREFIX = "klk_"


class KeyFormatError(ValueError):
    """A secret that is not a key list (a deployment mistake: fail loudly)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    secret: str
    role: str = "full"
    expires_at: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def permits(self, method: str) -> bool:
        """Whether this key may call ``method``: a full key anything, a read_only key only reads."""
        return self.role == "full" or method.upper() in READ_METHODS

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "secret": self.secret, "role": self.role}
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return body


def _instant(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as error:
        raise KeyFormatError(f"{where}.expires_at is not an ISO-8601 instant or Unix seconds") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_api_keys(value: Mapping[str, Any]) -> tuple[ApiKey, ...]:
    """The keys of a ``kassa/api`` secret value (both shapes); ``KeyFormatError`` when malformed."""
    if "keys" not in value:
        secret = value.get("secret_key")
        if not isinstance(secret, str) or not secret:
            raise KeyFormatError('the API secret holds neither "keys" nor "secret_key"')
        return (ApiKey(id="default", secret=secret),)
    raw = value["keys"]
    if not isinstance(raw, list) or not raw:
        raise KeyFormatError('the API secret\'s "keys" is not a non-empty list')
    keys: list[ApiKey] = []
    for n, entry in enumerate(raw):
        where = f"keys[{n}]"
        if not isinstance(entry, Mapping):
            raise KeyFormatError(f"{where} is not an object")
        key_id, secret, role = entry.get("id"), entry.get("secret"), entry.get("role", "full")
        if not isinstance(secret, str) or len(secret) < 16:
            raise KeyFormatError(f"{where}.secret must be a string of at least 16 characters")
        if role not in ROLES:
            raise KeyFormatError(f"{where}.role must be one of {', '.join(ROLES)}")
        keys.append(
            ApiKey(
                id=str(key_id) if key_id else f"key_{n}",
                secret=secret,
                role=role,
                expires_at=_instant(entry.get("expires_at"), where),
            )
        )
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids):
        raise KeyFormatError("key ids must be unique")
    return tuple(keys)


def authenticate(keys: Sequence[ApiKey], token: str, now: datetime) -> ApiKey | None:
    """The key ``token`` is, if it is one and has not expired (every key is compared, in constant time)."""
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(token.encode(), key.secret.encode()) and found is None:
            found = key
    return found if found is not None and found.valid_at(now) else None


def new_secret(prefix: str = API_KEY_PREFIX) -> str:
    return f"{prefix}{_random.token_urlsafe(32)}"


def roll_api_key(
    keys: Sequence[ApiKey],
    now: datetime,
    *,
    key_id: str | None = None,
    expires_in: timedelta = timedelta(hours=24),
    secret: str | None = None,
) -> tuple[tuple[ApiKey, ...], ApiKey]:
    """Roll one key (default: the first full key): a new key of its role takes its place and the old
    one expires ``expires_in`` from ``now`` (``0``: at once). Keys already expired are dropped.
    Returns the new key list and the new key."""
    live = [k for k in keys if k.valid_at(now)]
    candidates = [k for k in live if k.id == key_id] if key_id else [k for k in live if k.role == "full"]
    if not candidates:
        raise KeyFormatError(f"no valid key {key_id!r} to roll" if key_id else "no valid full key to roll")
    old = candidates[0]
    ends = (now + expires_in).astimezone(UTC).replace(microsecond=0)
    if old.expires_at is not None:
        ends = min(ends, old.expires_at)
    fresh = ApiKey(id=f"key_{_random.token_hex(6)}", secret=secret or new_secret(), role=old.role)
    rolled: list[ApiKey] = [fresh]
    for key in live:
        rolled.append(replace(key, expires_at=ends) if key is old else key)
    kept = tuple(k for k in rolled if k.valid_at(now))
    return kept, fresh


def add_api_key(
    keys: Sequence[ApiKey], now: datetime, role: str, secret: str | None = None
) -> tuple[tuple[ApiKey, ...], ApiKey]:
    """A new key of ``role`` added to the valid ones."""
    if role not in ROLES:
        raise KeyFormatError(f"role must be one of {', '.join(ROLES)}")
    fresh = ApiKey(id=f"key_{_random.token_hex(6)}", secret=secret or new_secret(), role=role)
    return (*[k for k in keys if k.valid_at(now)], fresh), fresh


def api_secret_value(keys: Sequence[ApiKey]) -> dict[str, Any]:
    return {"keys": [k.as_json() for k in keys]}


# ------------------------------------------------------------------------------ link-signing keys
def parse_link_keys(value: Mapping[str, Any]) -> tuple[str, ...]:
    """The link-signing secrets of a ``kassa/links`` value, the signing one first."""
    if "keys" not in value:
        secret = value.get("secret_key")
        if not isinstance(secret, str) or not secret:
            raise KeyFormatError('the links secret holds neither "keys" nor "secret_key"')
        return (secret,)
    raw = value["keys"]
    if not isinstance(raw, list) or not raw:
        raise KeyFormatError('the links secret\'s "keys" is not a non-empty list')
    found: list[str] = []
    for n, entry in enumerate(raw):
        secret = entry.get("secret") if isinstance(entry, Mapping) else None
        if not isinstance(secret, str) or len(secret) < 16:
            raise KeyFormatError(f"keys[{n}].secret must be a string of at least 16 characters")
        found.append(secret)
    return tuple(found)


def roll_link_keys(value: Mapping[str, Any], secret: str | None = None) -> dict[str, Any]:
    """A new signing key first, the previous signing key kept to verify the links it signed (they stay
    valid until their own expiry); older keys are dropped."""
    current = parse_link_keys(value)
    fresh = secret or new_secret(LINK_KEY_PREFIX)
    return {
        "keys": [
            {"id": f"link_{_random.token_hex(6)}", "secret": fresh},
            {"id": "previous", "secret": current[0]},
        ]
    }
