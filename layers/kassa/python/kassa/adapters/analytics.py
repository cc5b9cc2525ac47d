"""The ``AnalyticsStore`` port: on the billing table (``DynamoAnalytics``) and in memory (``MemoryAnalytics``).

Items (docs/data-model.md)::

    pk = ANCUS#<customer>      sk = ANALYTICS    version, doc (JSON: the customer's applied contribution)
    pk = AN#<kind>#<CURRENCY>  sk = <key>        c_<counter> numbers (kind: mrr | cohort | trial | usage;
                                                 key: <YYYY-MM>, or <cohort YYYY-MM>|<YYYY-MM>)
    pk = ANMETA                sk = CURRENCIES   currencies (string set): which partitions exist

A customer's change is one TransactWriteItems: its contribution under its version (a concurrent
refresh of the same customer loses with ``Conflict`` and reads again) and an ``ADD`` of the
difference to each aggregate that changes. A change to more aggregates than one transaction holds
(DynamoDB: 100 actions) is applied in steps: the first transaction stores the contribution under
its version together with the whole difference (``pending``, JSON) and ``applied = 0``; each next
one adds one chunk of the difference and moves ``applied`` on under the condition that it still
names the chunk before, so a chunk replayed (a retry, a concurrent refresh finishing it) is
refused and added once; the last one removes ``pending``. Whoever reads a customer with a
``pending`` difference (the next refresh, a retry of the message) finishes it first. A report is
one Query per kind and currency.
"""

from __future__ import annotations

import json
from typing import Any

from kassa.adapters.dynamodb import DynamoStore, _n, _s
from kassa.domain.errors import Conflict
from kassa.services.ports import CustomerAnalytics

KINDS = ("mrr", "cohort", "trial", "usage")
CUSTOMER_PREFIX = "ANCUS#"
AGGREGATE_PREFIX = "AN#"
META_KEY = "ANMETA"
KEY_PREFIXES = (CUSTOMER_PREFIX, AGGREGATE_PREFIX, META_KEY)
MAX_ACTIONS = 100  # DynamoDB's transaction limit
CHUNK = MAX_ACTIONS - 1  # aggregates added per step of a large change (plus the customer's progress)

Key = tuple[str, str, str]
Counters = dict[Key, dict[str, int]]


def _encode(contribution: Counters) -> str:
    return json.dumps(sorted([list(key), counters] for key, counters in contribution.items()), separators=(",", ":"))


def _decode(doc: str) -> Counters:
    return {(k[0], k[1], k[2]): {c: int(v) for c, v in counters.items()} for k, counters in json.loads(doc)}


def _pk(kind: str, currency: str) -> str:
    return f"{AGGREGATE_PREFIX}{kind}#{currency}"


class DynamoAnalytics(DynamoStore):
    """``AnalyticsStore`` on the billing table. A ``DynamoStore`` only to share its low-level calls."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)

    @staticmethod
    def _customer_key(customer_id: str) -> dict[str, Any]:
        return {"pk": _s(f"{CUSTOMER_PREFIX}{customer_id}"), "sk": _s("ANALYTICS")}

    def customer_state(self, customer_id: str) -> CustomerAnalytics | None:
        key = self._customer_key(customer_id)
        item = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if not item:
            return None
        version = int(item["version"]["N"])
        if "pending" in item:  # a large change not yet fully added: finish it before anything else
            self._finish(customer_id, version, _decode(item["pending"]["S"]), int(item["applied"]["N"]))
        return CustomerAnalytics(customer_id, _decode(item["doc"]["S"]), version)

    def _finish(self, customer: str, version: int, delta: Counters, applied: int) -> None:
        """Add the chunks of a stored difference from ``applied`` on, each once (see the module)."""
        keys = sorted(delta)
        chunks = [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]
        index, refused = applied, 0
        while index < len(chunks):
            last = index == len(chunks) - 1
            progress = {
                "Update": {
                    "TableName": self._table,
                    "Key": self._customer_key(customer),
                    "UpdateExpression": "REMOVE pending, applied" if last else "SET applied = :next",
                    "ConditionExpression": "version = :v AND applied = :done",
                    "ExpressionAttributeValues": {
                        ":v": _n(version),
                        ":done": _n(index),
                        **({} if last else {":next": _n(index + 1)}),
                    },
                }
            }
            actions = [progress, *(self._add(self._table, key, delta[key]) for key in chunks[index])]
            try:
                self._call("transact_write_items", TransactItems=actions)
            except Conflict:  # another reader added this chunk, or a concurrent write got in the way
                key = self._customer_key(customer)
                item = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True).get("Item")
                if not item or "pending" not in item or int(item["version"]["N"]) != version:
                    return  # finished by someone else
                refused += 1
                if refused > len(chunks):
                    raise  # still not done: the message is retried, and its reader goes on from there
                index = int(item["applied"]["N"])  # on from where the other reader got to
                continue
            index += 1

    def _customer_put(self, customer_id: str, contribution: Counters, version: int) -> dict[str, Any]:
        return {
            "pk": _s(f"{CUSTOMER_PREFIX}{customer_id}"),
            "sk": _s("ANALYTICS"),
            "version": _n(version),
            "doc": _s(_encode(contribution)),
        }

    @staticmethod
    def _add(table: str, key: Key, counters: dict[str, int]) -> dict[str, Any]:
        names = {f"#c{i}": f"c_{name}" for i, name in enumerate(sorted(counters))}
        values = {f":v{i}": _n(counters[name]) for i, name in enumerate(sorted(counters))}
        return {
            "Update": {
                "TableName": table,
                "Key": {"pk": _s(_pk(key[0], key[1])), "sk": _s(key[2])},
                "UpdateExpression": "ADD " + ", ".join(f"#c{i} :v{i}" for i in range(len(counters))),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def apply(self, previous: CustomerAnalytics, contribution: Counters, delta: Counters) -> None:
        customer, version = previous.customer, previous.version
        put: dict[str, Any] = {
            "Put": {
                "TableName": self._table,
                "Item": self._customer_put(customer, contribution, version + 1),
                **(
                    {
                        # never over a large change not yet fully added (customer_state finishes it first)
                        "ConditionExpression": "version = :v AND attribute_not_exists(pending)",
                        "ExpressionAttributeValues": {":v": _n(version)},
                    }
                    if version
                    else {"ConditionExpression": "attribute_not_exists(pk)"}
                ),
            }
        }
        currencies = sorted({key[1] for key in delta})
        meta = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": _s(META_KEY), "sk": _s("CURRENCIES")},
                    "UpdateExpression": "ADD currencies :c",
                    "ExpressionAttributeValues": {":c": {"SS": currencies}},
                }
            }
        ][: 1 if currencies else 0]
        if len(delta) + 1 + len(meta) <= MAX_ACTIONS:
            adds = [self._add(self._table, key, counters) for key, counters in sorted(delta.items())]
            self._call("transact_write_items", TransactItems=[put, *adds, *meta])
            return
        put["Put"]["Item"].update({"pending": _s(_encode(delta)), "applied": _n(0)})
        self._call("transact_write_items", TransactItems=[put, *meta])
        self._finish(customer, version + 1, delta, 0)

    def aggregates(self, kind: str, currency: str, low: str = "", high: str = "~") -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": _s(_pk(kind, currency)), ":low": _s(low or " "), ":high": _s(high)},
        }
        while True:
            response = self._call("query", **kwargs)
            for item in response.get("Items", []):
                out[item["sk"]["S"]] = {
                    name[2:]: int(value["N"]) for name, value in item.items() if name.startswith("c_") and "N" in value
                }
            if "LastEvaluatedKey" not in response:
                return out
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def currencies(self) -> list[str]:
        key = {"pk": _s(META_KEY), "sk": _s("CURRENCIES")}
        item = self._call("get_item", TableName=self._table, Key=key).get("Item") or {}
        return sorted(item.get("currencies", {}).get("SS", []))

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self._table: requests[start : start + 25]}
            while pending:
                response = self._call("batch_write_item", RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    def replace_all(self, customers: dict[str, Counters], totals: Counters) -> None:
        currencies = sorted(set(self.currencies()) | {key[1] for key in totals})
        requests: list[dict[str, Any]] = []
        for currency in currencies:
            for kind in KINDS:
                for sk in self.aggregates(kind, currency):
                    if (kind, currency, sk) not in totals:
                        requests.append({"DeleteRequest": {"Key": {"pk": _s(_pk(kind, currency)), "sk": _s(sk)}}})
        for (kind, currency, sk), counters in sorted(totals.items()):
            item = {"pk": _s(_pk(kind, currency)), "sk": _s(sk), **{f"c_{c}": _n(v) for c, v in counters.items()}}
            requests.append({"PutRequest": {"Item": item}})
        for customer, contribution in sorted(customers.items()):
            previous = self.customer_state(customer)
            version = (previous.version if previous else 0) + 1
            requests.append({"PutRequest": {"Item": self._customer_put(customer, contribution, version)}})
        if currencies:
            meta = {"pk": _s(META_KEY), "sk": _s("CURRENCIES"), "currencies": {"SS": currencies}}
            requests.append({"PutRequest": {"Item": meta}})
        self._batch(requests)


class MemoryAnalytics:
    """``AnalyticsStore`` in memory (unit tests, the in-memory world), with the same version rule."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerAnalytics] = {}
        self.counters: Counters = {}

    def customer_state(self, customer_id: str) -> CustomerAnalytics | None:
        return self.customers.get(customer_id)

    def apply(self, previous: CustomerAnalytics, contribution: Counters, delta: Counters) -> None:
        stored = self.customers.get(previous.customer)
        if (stored.version if stored else 0) != previous.version:
            raise Conflict(f"the analytics of customer {previous.customer} changed")
        for key, counters in delta.items():
            target = self.counters.setdefault(key, {})
            for name, value in counters.items():
                target[name] = target.get(name, 0) + value
                if not target[name]:
                    del target[name]  # DynamoDB keeps a 0; the reports read both alike
            if not target:
                del self.counters[key]
        self.customers[previous.customer] = CustomerAnalytics(previous.customer, contribution, previous.version + 1)

    def aggregates(self, kind: str, currency: str, low: str = "", high: str = "~") -> dict[str, dict[str, int]]:
        return {
            key[2]: dict(counters)
            for key, counters in sorted(self.counters.items())
            if key[0] == kind and key[1] == currency and low <= key[2] <= high
        }

    def currencies(self) -> list[str]:
        return sorted({key[1] for key in self.counters})

    def replace_all(self, customers: dict[str, Counters], totals: Counters) -> None:
        self.counters = {key: dict(counters) for key, counters in totals.items()}
        for customer, contribution in customers.items():
            previous = self.customers.get(customer)
            self.customers[customer] = CustomerAnalytics(
                customer, contribution, (previous.version if previous else 0) + 1
            )
