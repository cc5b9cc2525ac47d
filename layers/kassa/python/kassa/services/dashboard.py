"""Use case: signing in to the merchant dashboard, the sessions it keeps, and adding its users.

The rules (password hashing, session and CSRF tokens, roles) are ``kassa.domain.dashboard``'s; this
module reads and writes them through the ``DashboardAccounts`` port. A session made with a secret key
lasts only as long as that key: a rolled key past its ``expires_at`` ends its sessions too; a removed
user's sessions end at their next request, and a user's new role applies at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kassa.domain.api_keys import ApiKey, authenticate
from kassa.domain.dashboard import (
    Actor,
    DashboardUser,
    Session,
    SignInRefused,
    hash_password,
    new_session,
    new_user,
    normalized_email,
    session_id,
    verify_password,
)
from kassa.domain.errors import InvalidInput
from kassa.services.ports import DashboardAccounts

REFUSED = "the email or password is wrong, or the key is not valid"
# compared against when the email has no user, so that an unknown email takes as long as a wrong password
_NO_USER_HASH = "scrypt$32768$8$3$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def add_user(
    accounts: DashboardAccounts, email: str, password: str, role: str, now: datetime, *, replace: bool = False
) -> DashboardUser:
    """A new dashboard user (``replace``: a new password and role for an existing email, same id)."""
    user = new_user(email, password, role, now)
    if replace:
        existing = accounts.get_user(user.email)
        if existing is not None:
            user = existing.model_copy(update={"password_hash": hash_password(password), "role": user.role})
    accounts.add_user(user, replace=replace)
    return user


def sign_in_with_password(accounts: DashboardAccounts, email: str, password: str, now: datetime) -> tuple[str, Session]:
    """The cookie's token and the session of the user ``email`` is, when ``password`` is theirs."""
    try:
        user = accounts.get_user(normalized_email(email))
    except InvalidInput:  # not an email address: refused like a wrong password
        user = None
    if not verify_password(password, user.password_hash if user else _NO_USER_HASH) or user is None:
        raise SignInRefused(REFUSED)
    token, session = new_session(Actor(kind="user", id=user.id, role=user.role), now, email=user.email)
    accounts.put_session(session)
    return token, session


def sign_in_with_key(
    accounts: DashboardAccounts, keys: Sequence[ApiKey], secret: str, now: datetime
) -> tuple[str, Session]:
    """A session acting as the secret key ``secret`` is (its id and role; the secret is not kept)."""
    key = authenticate(keys, secret, now)
    if key is None:
        raise SignInRefused(REFUSED)
    token, session = new_session(Actor(kind="key", id=key.id, role=key.role), now)
    accounts.put_session(session)
    return token, session


def current_session(accounts: DashboardAccounts, keys: Sequence[ApiKey], token: str, now: datetime) -> Session | None:
    """The live session of a cookie's token: not expired or signed out, and its actor still there — a
    key still valid, a user not removed (with the user's role as it is now: a change applies at once)."""
    session = accounts.get_session(session_id(token))
    if session is None or not session.valid_at(now):
        return None
    if session.actor_kind == "key":
        return session if any(k.id == session.actor_id and k.valid_at(now) for k in keys) else None
    user = accounts.get_user(session.email or "")
    if user is None or user.id != session.actor_id:
        return None
    return session if user.role == session.role else session.model_copy(update={"role": user.role})


def remove_user(accounts: DashboardAccounts, email: str) -> bool:
    """Remove a dashboard user; their sessions end at their next request."""
    return accounts.remove_user(normalized_email(email))


def sign_out(accounts: DashboardAccounts, token: str) -> None:
    accounts.delete_session(session_id(token))
