"""The ``Outbox`` port on the billing table: every customer email, recorded before it is sent.

One item per email (see docs/data-model.md)::

    pk = MAIL#<key>   sk = MAIL
    template, to, locale, created, status (pending | sent | failed)   [customer, reply_to]
    content_z     Binary: zlib of {"subject", "html", "text"} as JSON (a rendered email: 2.3–3.3x smaller)
    message_id, sent_at, error                                        (set by mark_sent / mark_failed)
    gsi2pk = CUS#<customer>     gsi2sk = MAIL#<created>#<key>         (only with a customer)
    gsi3pk = OUTBOX#<YYYY-MM>   gsi3sk = <created>#<key>

``created`` is stored as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, fixed width, so the index sort keys
order by time). ``claim`` is a conditional put: the first claim of a key wins, later ones get the
stored record back. The low-level calls go through ``DynamoStore._call``, so errors are translated
into domain errors and the calls and capacity units are counted like every other table access.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from typing import Any

from kassa.adapters.dynamodb import DynamoStore, _s
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.services.ports import OutboxRecord, OutgoingEmail

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
MAX_ERROR = 1000  # characters of a failure's error message kept on the item
MAX_KEY = 900  # bytes: the key is part of the index sort keys, which DynamoDB caps at 1024 bytes
_CREATED = "%Y-%m-%dT%H:%M:%S.%fZ"
_MONTH_FORMAT = "%Y-%m"


def _created(when: datetime) -> str:
    """Sortable UTC timestamp, microseconds kept (a naive datetime is taken as UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(_CREATED)


def _parse(value: str) -> datetime:
    return datetime.strptime(value, _CREATED).replace(tzinfo=UTC)


def _month(value: str) -> str:
    try:
        return datetime.strptime(value, _MONTH_FORMAT).replace(tzinfo=UTC).strftime(_MONTH_FORMAT)
    except ValueError:
        raise InvalidInput(f"month must be YYYY-MM, not {value!r}", param="month") from None


def _key(key: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(f"MAIL#{key}"), "sk": _s("MAIL")}


class DynamoOutbox(DynamoStore):
    """``Outbox`` on the billing table. A ``DynamoStore`` only to share its low-level helpers; use it
    as an ``Outbox``."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)

    # ------------------------------------------------------------------ items
    @staticmethod
    def email_item(email: OutgoingEmail) -> dict[str, Any]:
        if not email.key or len(email.key.encode()) > MAX_KEY:
            raise InvalidInput(f"an email key must be 1–{MAX_KEY} bytes", param="key")
        created = _created(email.created)
        content = json.dumps({"subject": email.subject, "html": email.html, "text": email.text}, ensure_ascii=False)
        item: dict[str, Any] = {
            **_key(email.key),
            "template": _s(email.template),
            "to": _s(email.to),
            "locale": _s(email.locale),
            "created": _s(created),
            "status": _s(PENDING),
            "content_z": {"B": zlib.compress(content.encode(), 6)},
            "gsi3pk": _s(f"OUTBOX#{created[:7]}"),
            "gsi3sk": _s(f"{created}#{email.key}"),
        }
        if email.customer:
            item["customer"] = _s(email.customer)
            item["gsi2pk"] = _s(f"CUS#{email.customer}")
            item["gsi2sk"] = _s(f"MAIL#{created}#{email.key}")
        if email.reply_to:
            item["reply_to"] = _s(email.reply_to)
        return item

    @staticmethod
    def record_from_item(item: dict[str, Any]) -> OutboxRecord:
        content = json.loads(zlib.decompress(item["content_z"]["B"]).decode())

        def text(name: str) -> str | None:
            value = item.get(name)
            return value["S"] if value and "S" in value else None

        sent_at = text("sent_at")
        return OutboxRecord(
            email=OutgoingEmail(
                key=item["pk"]["S"].removeprefix("MAIL#"),
                template=item["template"]["S"],
                to=item["to"]["S"],
                customer=text("customer"),
                locale=item["locale"]["S"],
                subject=content["subject"],
                html=content["html"],
                text=content["text"],
                created=_parse(item["created"]["S"]),
                reply_to=text("reply_to"),
            ),
            status=item["status"]["S"],
            message_id=text("message_id"),
            sent_at=_parse(sent_at) if sent_at else None,
            error=text("error"),
        )

    # ------------------------------------------------------------------ Outbox
    def claim(self, email: OutgoingEmail) -> OutboxRecord | None:
        item = self.email_item(email)
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return None
        except Conflict:
            stored = self.get(email.key)
            if stored is None:  # claimed and gone again between the two calls: let the caller retry
                raise Conflict(f"the outbox entry {email.key} changed; retry") from None
            return stored

    def get(self, key: str) -> OutboxRecord | None:
        item = self._get(f"MAIL#{key}", "MAIL")
        return self.record_from_item(item) if item else None

    def mark_sent(self, key: str, message_id: str, sent_at: datetime) -> None:
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=_key(key),
                UpdateExpression="SET #s = :s, message_id = :m, sent_at = :t REMOVE #e",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={":s": _s(SENT), ":m": _s(message_id), ":t": _s(_created(sent_at))},
                ReturnValues="ALL_NEW",  # the item's size, for the write units counted
            )
        except Conflict:
            raise NotFound(f"no outbox entry {key}", param="key") from None

    def mark_failed(self, key: str, error: str) -> None:
        """Record a failed send. A record already ``sent`` stays sent (a late failure of a concurrent
        duplicate attempt must not make the email look unsent, or it would be sent again)."""
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=_key(key),
                UpdateExpression="SET #s = :s, #e = :e",
                ConditionExpression="attribute_exists(pk) AND #s <> :sent",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={":s": _s(FAILED), ":e": _s(error[:MAX_ERROR]), ":sent": _s(SENT)},
                ReturnValues="ALL_NEW",
            )
        except Conflict:
            if self._get(f"MAIL#{key}", "MAIL") is None:
                raise NotFound(f"no outbox entry {key}", param="key") from None

    def list_customer(self, customer_id: str, limit: int = 100) -> list[OutboxRecord]:
        return self._newest_first("gsi2", f"CUS#{customer_id}", "MAIL#", limit)

    def list_month(self, month: str, limit: int = 100) -> list[OutboxRecord]:
        return self._newest_first("gsi3", f"OUTBOX#{_month(month)}", "", limit)

    def _newest_first(self, index: str, partition: str, prefix: str, limit: int) -> list[OutboxRecord]:
        if limit < 1:
            raise InvalidInput("limit must be at least 1", param="limit")
        condition = f"{index}pk = :p" + (f" AND begins_with({index}sk, :s)" if prefix else "")
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {":p": _s(partition), **({":s": _s(prefix)} if prefix else {})},
            "ScanIndexForward": False,
        }
        found: list[OutboxRecord] = []
        while len(found) < limit:
            kwargs["Limit"] = limit - len(found)
            response = self._call("query", **kwargs)
            found.extend(self.record_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]
