"""Dashboard accounts: scrypt passwords, sessions (expiry, sign-out, keys rolled away), CSRF tokens,
the session cookie, and what a role may do — in memory (kassa.domain.dashboard, kassa.services.dashboard)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kassa.adapters.dashboard_accounts import MemoryDashboardAccounts
from kassa.domain.api_keys import ApiKey
from kassa.domain.dashboard import (
    SESSION_COOKIE,
    SESSION_HOURS,
    Actor,
    SignInRefused,
    cookie_token,
    csrf_matches,
    hash_password,
    new_session,
    session_id,
    verify_password,
)
from kassa.domain.errors import AlreadyExists, InvalidInput
from kassa.services import dashboard

NOW = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
KEYS = (
    ApiKey(id="key_full", secret="ksk_" + "f" * 40),
    ApiKey(id="key_old", secret="ksk_" + "o" * 40, expires_at=NOW + timedelta(hours=1)),
    ApiKey(id="key_ro", secret="ksk_" + "r" * 40, role="read_only"),
)


@pytest.fixture(scope="module")
def accounts() -> MemoryDashboardAccounts:
    """One user (hashing is deliberately slow: made once for the module)."""
    store = MemoryDashboardAccounts()
    dashboard.add_user(store, " Ops@Example.com ", PASSWORD, "full", NOW)
    return store


def test_a_password_is_stored_only_as_a_salted_scrypt_hash():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)

    assert first.startswith("scrypt$32768$8$3$") and PASSWORD not in first
    assert first != second  # a fresh salt each time
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + "!", first)
    assert not verify_password(PASSWORD, "bcrypt$whatever") and not verify_password(PASSWORD, "garbage")


def test_a_short_password_a_bad_email_or_an_unknown_role_is_refused_naming_the_field():
    store = MemoryDashboardAccounts()
    for args, param in [
        (("ops@example.com", "short", "full"), "password"),
        (("not-an-email", PASSWORD, "full"), "email"),
        (("ops@example.com", PASSWORD, "admin"), "role"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            dashboard.add_user(store, *args, NOW)
        assert refused.value.param == param
    assert store.users == {}


def test_an_email_has_one_user_and_reset_keeps_its_id_with_a_new_password_and_role(accounts):
    before = accounts.get_user("ops@example.com")
    with pytest.raises(AlreadyExists):
        dashboard.add_user(accounts, "ops@example.com", PASSWORD, "full", NOW)
    store = MemoryDashboardAccounts()
    store.add_user(before)
    after = dashboard.add_user(store, "OPS@example.com", "another long password", "read_only", NOW, replace=True)

    assert before is not None and before.email == "ops@example.com"
    assert after.id == before.id and after.role == "read_only"
    with pytest.raises(SignInRefused):
        dashboard.sign_in_with_password(store, "ops@example.com", PASSWORD, NOW)
    assert (
        dashboard.sign_in_with_password(store, "ops@example.com", "another long password", NOW)[1].role == "read_only"
    )


def test_signing_in_with_the_password_makes_a_session_that_expires(accounts):
    token, session = dashboard.sign_in_with_password(accounts, "OPS@example.com", PASSWORD, NOW)
    user = accounts.get_user("ops@example.com")

    assert user is not None and session.actor == Actor(kind="user", id=user.id, role="full", session=True)
    assert session.id == session_id(token) and token not in session.model_dump_json()
    assert session.email == "ops@example.com" and session.csrf_token and session.csrf_token != token
    later = NOW + timedelta(hours=SESSION_HOURS) - timedelta(seconds=1)
    assert dashboard.current_session(accounts, KEYS, token, later) == session
    assert dashboard.current_session(accounts, KEYS, token, NOW + timedelta(hours=SESSION_HOURS)) is None
    assert dashboard.current_session(accounts, KEYS, token + "x", NOW) is None


def test_a_wrong_password_and_an_unknown_email_are_refused_alike(accounts):
    messages = set()
    for email, password in [("ops@example.com", "wrong password!"), ("nobody@example.com", PASSWORD), ("x", PASSWORD)]:
        with pytest.raises(SignInRefused) as refused:
            dashboard.sign_in_with_password(accounts, email, password, NOW)
        messages.add(refused.value.message)
    assert messages == {dashboard.REFUSED}


def test_a_session_made_with_a_key_acts_as_that_key_and_ends_with_it(accounts):
    token, session = dashboard.sign_in_with_key(accounts, KEYS, "ksk_" + "o" * 40, NOW)
    _, read_only = dashboard.sign_in_with_key(accounts, KEYS, "ksk_" + "r" * 40, NOW)

    assert session.actor == Actor(kind="key", id="key_old", role="full", session=True)
    assert "ksk_" not in session.model_dump_json()  # the secret is not kept
    assert read_only.actor.role == "read_only"
    assert dashboard.current_session(accounts, KEYS, token, NOW + timedelta(minutes=59)) is not None
    # the rolled key expired: its sessions end with it, however long they had left
    assert dashboard.current_session(accounts, KEYS, token, NOW + timedelta(hours=1)) is None
    assert dashboard.current_session(accounts, KEYS[:1], token, NOW) is None  # the key was removed
    with pytest.raises(SignInRefused):
        dashboard.sign_in_with_key(accounts, KEYS, "ksk_" + "o" * 40, NOW + timedelta(hours=2))
    with pytest.raises(SignInRefused):
        dashboard.sign_in_with_key(accounts, KEYS, "ksk_not_a_key_at_all", NOW)


def test_signing_out_ends_the_session(accounts):
    token, _ = dashboard.sign_in_with_key(accounts, KEYS, "ksk_" + "f" * 40, NOW)
    dashboard.sign_out(accounts, token)
    dashboard.sign_out(accounts, token)

    assert dashboard.current_session(accounts, KEYS, token, NOW) is None


def test_the_csrf_token_must_be_the_sessions_own():
    _, session = new_session(Actor(kind="user", id="dusr_1", role="full"), NOW)
    _, other = new_session(Actor(kind="user", id="dusr_1", role="full"), NOW)

    assert csrf_matches(session, session.csrf_token)
    assert not csrf_matches(session, None) and not csrf_matches(session, "")
    assert not csrf_matches(session, other.csrf_token)
    assert not csrf_matches(session, session.csrf_token[:-1])


def test_the_session_token_is_read_from_its_cookie_only():
    assert cookie_token(f"theme=dark; {SESSION_COOKIE}=abc123; other=1") == "abc123"
    assert cookie_token("kassa_session=abc123") is None  # not the __Host- cookie
    assert cookie_token(f"{SESSION_COOKIE}=") is None
    assert cookie_token(None) is None


def test_a_read_only_actor_may_only_read():
    viewer, admin = Actor(kind="user", id="dusr_1", role="read_only"), Actor(kind="key", id="k", role="full")

    assert viewer.permits("GET") and viewer.permits("head") and not viewer.permits("POST")
    assert not viewer.permits("DELETE") and admin.permits("POST") and admin.permits("DELETE")


def test_a_removed_user_is_signed_out_and_a_new_role_applies_at_once():
    store = MemoryDashboardAccounts()
    user = dashboard.add_user(store, "temp@example.com", PASSWORD, "full", NOW)
    token, _ = dashboard.sign_in_with_password(store, "temp@example.com", PASSWORD, NOW)

    store.add_user(user.model_copy(update={"role": "read_only"}), replace=True)
    downgraded = dashboard.current_session(store, KEYS, token, NOW)
    assert downgraded is not None and downgraded.actor.role == "read_only"

    assert dashboard.remove_user(store, " TEMP@example.com") is True
    assert dashboard.current_session(store, KEYS, token, NOW) is None
    assert dashboard.remove_user(store, "temp@example.com") is False
    # another user later given the same email does not inherit the old sessions
    store.add_user(user.model_copy(update={"id": "dusr_other"}))
    assert dashboard.current_session(store, KEYS, token, NOW) is None
