"""The merchant dashboard's accounts: users with scrypt-hashed passwords, sessions and their CSRF tokens.

Pure functions: the caller passes ``now`` (and, for tests, the random bytes where it matters).

* A **dashboard user** (``dusr_…``) signs in with an email and a password. The password is kept only as
  ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (hashlib.scrypt, a 16-byte random salt, N=2^15, r=8, p=3: one of
  OWASP's Password Storage Cheat Sheet's equivalent minimum settings, 32 MiB; the time one check takes is
  in docs/benchmarks.md). The parameters are stored with the hash, so they can be raised later.
  Its role is an API key's role (``full`` or ``read_only``): what it may do through the API is what a key
  of that role may do.
* A **session** is made by signing in, with a password or with one of the merchant's secret keys. The
  browser holds a random token in an HttpOnly cookie; the table holds only the token's SHA-256 (a leaked
  table row opens no session), the acting identity (the key id or the user id), its role, a CSRF token
  and an absolute expiry (``SESSION_HOURS``). Signing out deletes it.
* Every request authenticated by the cookie must carry the session's CSRF token in ``X-CSRF-Token``
  (a page on another origin can make the browser send the cookie, but cannot read the token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from kassa.domain.api_keys import READ_METHODS, ROLES
from kassa.domain.errors import DomainError, InvalidInput

SESSION_COOKIE = "__Host-kassa_session"  # __Host-: Secure, Path=/, no Domain (the browser enforces it)
CSRF_HEADER = "X-CSRF-Token"
SESSION_HOURS = 8
MIN_PASSWORD = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
_SCRYPT_MAXMEM = 64 * 1024 * 1024  # 128·r·N = 32 MiB, above OpenSSL's default cap
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Actor:
    """Who makes a request: one of the merchant's keys (``kind="key"``, its id) or a dashboard user
    (``kind="user"``, its ``dusr_`` id), with its role, and whether a dashboard session carries it."""

    kind: str  # "key" | "user"
    id: str
    role: str
    session: bool = False

    def permits(self, method: str) -> bool:
        """A full role may call anything, a read_only one only reads (as ``ApiKey.permits``)."""
        return self.role == "full" or method.upper() in READ_METHODS


class DashboardUser(BaseModel):
    id: str
    email: str
    role: str = "full"
    password_hash: str
    created: datetime


class Session(BaseModel):
    id: str  # SHA-256 of the cookie's token, hex
    actor_kind: str
    actor_id: str
    role: str
    email: str | None = None  # a user's, shown on the page
    csrf_token: str
    created: datetime
    expires_at: datetime

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at

    @property
    def actor(self) -> Actor:
        return Actor(kind=self.actor_kind, id=self.actor_id, role=self.role, session=True)


def normalized_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 254:
        raise InvalidInput("email must be an email address", param="email")
    return value


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", param="role")
    return role


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password``; refuses one shorter than ``MIN_PASSWORD``."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters", param="password")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` is the one ``encoded`` was made from (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_user(email: str, password: str, role: str, now: datetime) -> DashboardUser:
    return DashboardUser(
        id=f"dusr_{secrets.token_hex(8)}",
        email=normalized_email(email),
        role=check_role(role),
        password_hash=hash_password(password),
        created=now,
    )


def session_id(token: str) -> str:
    """What the table keys a session on: the SHA-256 of the cookie's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(actor: Actor, now: datetime, email: str | None = None) -> tuple[str, Session]:
    """A fresh session for ``actor`` (the cookie's token, and the record kept), valid ``SESSION_HOURS``."""
    token = secrets.token_urlsafe(32)
    session = Session(
        id=session_id(token),
        actor_kind=actor.kind,
        actor_id=actor.id,
        role=actor.role,
        email=email,
        csrf_token=secrets.token_urlsafe(32),
        created=now,
        expires_at=now + timedelta(hours=SESSION_HOURS),
    )
    return token, session


def csrf_matches(session: Session, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(session.csrf_token.encode(), (header or "").encode())


def cookie_token(cookie_header: str | None) -> str | None:
    """The session token in a ``Cookie`` header, if there is one."""
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


class SignInRefused(DomainError):
    """Wrong email or password, or not a valid key: one message for every case (no account probing)."""

    code = "sign_in_refused"
