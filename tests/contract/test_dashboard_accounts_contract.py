"""The ``DashboardAccounts`` contract (dashboard users and sessions), on memory and on DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.conftest import billing_table
from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts, MemoryDashboardAccounts
from kassa.domain.dashboard import Actor, DashboardUser, new_session
from kassa.domain.errors import AlreadyExists

NOW = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", pytest.param("dynamodb", marks=pytest.mark.integration)])
def accounts(request: pytest.FixtureRequest, uid: str) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryDashboardAccounts()
        return
    with billing_table(request, f"contract-dash-{uid}") as (client, table):
        yield DynamoDashboardAccounts(client, table)


def user(email: str = "Ops@Example.com", role: str = "full") -> DashboardUser:
    return DashboardUser(id="dusr_1", email=email, role=role, password_hash="scrypt$1$1$1$AA==$AA==", created=NOW)


def test_a_user_is_found_by_email_case_insensitive_and_added_once(accounts):
    accounts.add_user(user())

    found = accounts.get_user("ops@example.COM")
    with pytest.raises(AlreadyExists) as twice:
        accounts.add_user(user(email="ops@example.com", role="read_only"))
    accounts.add_user(user(email="ops@example.com", role="read_only"), replace=True)

    assert found is not None and (found.id, found.role, found.created) == ("dusr_1", "full", NOW)
    assert twice.value.param == "email"
    assert accounts.get_user("ops@example.com").role == "read_only"
    assert accounts.get_user("nobody@example.com") is None
    assert accounts.remove_user("OPS@example.com") is True and accounts.get_user("ops@example.com") is None
    assert accounts.remove_user("ops@example.com") is False


def test_a_session_is_kept_under_its_token_hash_until_deleted(accounts):
    token, session = new_session(Actor(kind="key", id="key_1", role="read_only"), NOW)
    accounts.put_session(session)

    stored = accounts.get_session(session.id)
    accounts.delete_session(session.id)
    accounts.delete_session(session.id)  # twice: nothing to delete is fine

    assert stored == session and token not in stored.model_dump_json()
    assert accounts.get_session(session.id) is None
