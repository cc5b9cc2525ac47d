"""The ``DashboardAccounts`` port on the billing table (see docs/data-model.md and docs/dashboard.md)::

    pk = DASHUSER#<email>   sk = DASHUSER   doc (DashboardUser: id, email, role, password_hash, created)
    pk = SESSION#<sha256>   sk = SESSION    doc (Session), expires_at (the table's TTL attribute)

A session's key is the SHA-256 of the cookie's token, never the token. Expired sessions are refused
when read (``Session.valid_at``) and removed by DynamoDB's TTL later. Calls go through
``DynamoStore._call`` (errors translated, calls counted) like every other table access.
"""

from __future__ import annotations

from typing import Any

from kassa.adapters.dynamodb import DynamoStore, _n, _s
from kassa.domain.dashboard import DashboardUser, Session
from kassa.domain.errors import AlreadyExists, Conflict


def _user_key(email: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(f"DASHUSER#{email.strip().lower()}"), "sk": _s("DASHUSER")}


def _session_key(session_id: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(f"SESSION#{session_id}"), "sk": _s("SESSION")}


class DynamoDashboardAccounts(DynamoStore):
    """``DashboardAccounts`` on the billing table. A ``DynamoStore`` only to share its low-level helpers."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)

    def add_user(self, user: DashboardUser, *, replace: bool = False) -> None:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": {**_user_key(user.email), "doc": _s(user.model_dump_json())},
        }
        if not replace:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        try:
            self._call("put_item", **request)
        except Conflict as error:
            raise AlreadyExists(f"a dashboard user with email {user.email} already exists", param="email") from error

    def get_user(self, email: str) -> DashboardUser | None:
        item = self._call("get_item", TableName=self._table, Key=_user_key(email), ConsistentRead=True).get("Item")
        return self._load(item, DashboardUser) if item else None

    def remove_user(self, email: str) -> bool:
        answer = self._call("delete_item", TableName=self._table, Key=_user_key(email), ReturnValues="ALL_OLD")
        return "Attributes" in answer

    def put_session(self, session: Session) -> None:
        item = {
            **_session_key(session.id),
            "doc": _s(session.model_dump_json()),
            "expires_at": _n(int(session.expires_at.timestamp())),
        }
        self._call("put_item", TableName=self._table, Item=item)

    def get_session(self, session_id: str) -> Session | None:
        item = self._call("get_item", TableName=self._table, Key=_session_key(session_id), ConsistentRead=True).get(
            "Item"
        )
        return self._load(item, Session) if item else None

    def delete_session(self, session_id: str) -> None:
        self._call("delete_item", TableName=self._table, Key=_session_key(session_id))


class MemoryDashboardAccounts:
    """``DashboardAccounts`` in memory (unit tests, the simulator)."""

    def __init__(self) -> None:
        self.users: dict[str, DashboardUser] = {}
        self.sessions: dict[str, Session] = {}

    def add_user(self, user: DashboardUser, *, replace: bool = False) -> None:
        key = user.email.strip().lower()
        if key in self.users and not replace:
            raise AlreadyExists(f"a dashboard user with email {user.email} already exists", param="email")
        self.users[key] = user.model_copy(deep=True)

    def get_user(self, email: str) -> DashboardUser | None:
        found = self.users.get(email.strip().lower())
        return found.model_copy(deep=True) if found else None

    def remove_user(self, email: str) -> bool:
        return self.users.pop(email.strip().lower(), None) is not None

    def put_session(self, session: Session) -> None:
        self.sessions[session.id] = session.model_copy(deep=True)

    def get_session(self, session_id: str) -> Session | None:
        found = self.sessions.get(session_id)
        return found.model_copy(deep=True) if found else None

    def delete_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
