"""The ``AuditLog`` port: on the billing table (``DynamoAuditLog``) and in memory (``MemoryAuditLog``).

One item per entry (docs/data-model.md, docs/audit.md)::

    pk = AUDIT#<aud_…>   sk = AUDIT   doc = the entry (JSON)   expires_at = created + retention (TTL)
    gsi2pk = AUDITOBJ#<object>      gsi2sk = <created>#<aud_…>   (an object's entries)
    gsi3pk = AUDITMONTH#<YYYY-MM>   gsi3sk = <created>#<aud_…>   (every entry, by month)

An entry is only ever written with ``attribute_not_exists(pk)``: a second write of its id changes
nothing (and the api function's role may PutItem ``AUDIT#`` items, never UpdateItem or DeleteItem
them: infra/wiring.py ``KeyPrefixes.append``). Listings query the indexes, never a Scan.

A request being recorded has a pending record until its entries are written (docs/audit.md)::

    pk = PENDAUDIT#<audp_…>   sk = PENDAUDIT   doc_z = zlib of the record (JSON)
    gsi3pk = PENDAUDIT#ALL    gsi3sk = <created>#<audp_…>   (the stale ones, oldest first)
    expires_at = created + retention (TTL: never kept longer than its entries would be)
"""

from __future__ import annotations

import builtins
import json
import zlib
from datetime import datetime
from typing import Any

from kassa.adapters.dynamodb import DynamoStore, _s
from kassa.adapters.outbox import _created
from kassa.domain.audit import AuditEvent, PendingAudit
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.revenue import months
from kassa.services.ports import Page

PENDING_PREFIX = "PENDAUDIT#"
PENDING_PARTITION = "PENDAUDIT#ALL"
PENDING_TTL_S = 400 * 86400  # a pending record nobody delivered is not kept for ever


def _position(event: AuditEvent) -> str:
    return f"{_created(event.created)}#{event.id}"


def _check(start: datetime, end: datetime) -> None:
    if end < start:
        raise InvalidInput("the period ends before it starts", param="to")


class DynamoAuditLog(DynamoStore):
    """``AuditLog`` on the billing table (a ``DynamoStore`` only to share its low-level helpers)."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)

    @staticmethod
    def item(event: AuditEvent) -> dict[str, Any]:
        position = _position(event)
        return {
            "pk": _s(f"AUDIT#{event.id}"),
            "sk": _s("AUDIT"),
            "doc": _s(event.model_dump_json()),
            "gsi2pk": _s(f"AUDITOBJ#{event.object_id}"),
            "gsi2sk": _s(position),
            "gsi3pk": _s(f"AUDITMONTH#{event.created:%Y-%m}"),
            "gsi3sk": _s(position),
            "expires_at": {"N": str(int(event.expires_at.timestamp()))},
        }

    def append(self, event: AuditEvent) -> bool:
        try:
            self._call(
                "put_item", TableName=self._table, Item=self.item(event), ConditionExpression="attribute_not_exists(pk)"
            )
        except Conflict:
            return False
        return True

    def hold(self, pending: PendingAudit) -> None:
        position = f"{_created(pending.created)}#{pending.key}"
        item = {
            **self._pending_key(pending.key),
            "doc_z": {"B": zlib.compress(pending.model_dump_json().encode())},
            "gsi3pk": _s(PENDING_PARTITION),
            "gsi3sk": _s(position),
            "expires_at": {"N": str(int(pending.created.timestamp()) + PENDING_TTL_S)},
        }
        self._call("put_item", TableName=self._table, Item=item)

    def release(self, key: str) -> None:
        self._call("delete_item", TableName=self._table, Key=self._pending_key(key))

    def stale(self, until: datetime, limit: int) -> builtins.list[PendingAudit]:
        response = self._call(
            "query",
            TableName=self._table,
            IndexName="gsi3",
            KeyConditionExpression="gsi3pk = :p AND gsi3sk <= :u",
            ExpressionAttributeValues={":p": _s(PENDING_PARTITION), ":u": _s(f"{_created(until)}#~")},
            Limit=limit,
        )
        out = []
        for item in response.get("Items", []):
            key = {"pk": item["pk"], "sk": item["sk"]}
            found = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            if found:  # the index lags: one released meanwhile is gone
                out.append(PendingAudit.model_validate_json(zlib.decompress(found["doc_z"]["B"])))
        return out

    @staticmethod
    def _pending_key(key: str) -> dict[str, Any]:
        return {"pk": _s(f"{PENDING_PREFIX}{key}"), "sk": _s("PENDAUDIT")}

    def get(self, event_id: str) -> AuditEvent:
        response = self._call("get_item", TableName=self._table, Key={"pk": _s(f"AUDIT#{event_id}"), "sk": _s("AUDIT")})
        if "Item" not in response:
            raise NotFound(f"no audit event {event_id}", param="starting_after")
        return AuditEvent.model_validate_json(response["Item"]["doc"]["S"])

    def list(
        self, object_id: str | None, start: datetime, end: datetime, limit: int, starting_after: str | None
    ) -> Page:
        _check(start, end)
        low = f"{_created(start)}#"
        if starting_after:
            low = max(low, _position(self.get(starting_after)) + " ")
        high = f"{_created(end)}#~"
        if object_id is not None:
            partitions = [("gsi2", f"AUDITOBJ#{object_id}")]
        else:
            partitions = [("gsi3", f"AUDITMONTH#{m:%Y-%m}") for m in months(start.date(), end.date())]
        found: builtins.list[AuditEvent] = []
        for index, partition in partitions:
            found += self._query(index, partition, low, high, limit + 1 - len(found))
            if len(found) > limit:
                break
        return Page(found[:limit], len(found) > limit)

    def _query(self, index: str, partition: str, low: str, high: str, wanted: int) -> builtins.list[AuditEvent]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": f"{index}pk = :p AND {index}sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": _s(partition), ":a": _s(low), ":b": _s(high)},
            "Limit": wanted,
        }
        out: builtins.list[AuditEvent] = []
        while len(out) < wanted:
            response = self._call("query", **kwargs)
            out += [AuditEvent.model_validate_json(i["doc"]["S"]) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return out[:wanted]


class MemoryAuditLog:
    """``AuditLog`` in memory (unit tests), with the table's rules: written once, listed in order."""

    def __init__(self) -> None:
        self.events: dict[str, str] = {}  # id -> the entry as JSON, as the table keeps it
        self.pending: dict[str, str] = {}  # key -> the pending record as JSON

    def hold(self, pending: PendingAudit) -> None:
        self.pending[pending.key] = pending.model_dump_json()

    def release(self, key: str) -> None:
        self.pending.pop(key, None)

    def stale(self, until: datetime, limit: int) -> builtins.list[PendingAudit]:
        held = [PendingAudit.model_validate_json(doc) for doc in self.pending.values()]
        return sorted((p for p in held if p.created <= until), key=lambda p: (p.created, p.key))[:limit]

    def append(self, event: AuditEvent) -> bool:
        if event.id in self.events:
            return False
        self.events[event.id] = event.model_dump_json()
        return True

    def list(
        self, object_id: str | None, start: datetime, end: datetime, limit: int, starting_after: str | None
    ) -> Page:
        _check(start, end)
        stored = [AuditEvent.model_validate(json.loads(e)) for e in self.events.values()]
        low = _created(start)
        if starting_after:
            if starting_after not in self.events:
                raise NotFound(f"no audit event {starting_after}", param="starting_after")
            low = max(low, _position(AuditEvent.model_validate_json(self.events[starting_after])) + " ")
        high = f"{_created(end)}#~"
        found = sorted(
            (e for e in stored if (object_id is None or e.object_id == object_id) and low <= _position(e) <= high),
            key=_position,
        )
        return Page(found[:limit], len(found) > limit)
