"""DynamoDB implementation of the BillingStore port (single table, see docs/data-model.md).

Every entity is one item: key attributes, the attributes conditions need (version, status), index
attributes, and the model as a JSON document in ``doc``. ClientErrors are translated into domain
errors here and never leak upward.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel

from kassa.adapters import usage
from kassa.domain.catalog import Price, Product
from kassa.domain.credit_notes import CreditNote
from kassa.domain.customer import Customer, card_expiry_notice_at
from kassa.domain.discounts import Coupon, PromotionCode
from kassa.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound, Unavailable
from kassa.domain.experiments import Experiment
from kassa.domain.invoice import Invoice, InvoiceStatus, format_number
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status, Subscription
from kassa.domain.usage import Aggregation, Meter, UsageState, usage_refs
from kassa.services.ports import ListQuery, Page, UsageKey, UsageOutcome, UsageWrite, WebhookRecord

M = TypeVar("M", bound=BaseModel)

WEBHOOK_RETENTION = timedelta(days=30)  # Stripe keeps events 30 days; so do we
NUMBER_RETRIES = 25  # invoice-number transactions lost to a concurrent finalization are retried


def _backoff(attempt: int) -> None:
    """Jittered exponential backoff (capped at ~0.3 s) between lost counter races."""
    time.sleep(random.uniform(0, min(0.3, 0.005 * 2**attempt)))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shard_of(entity_id: str, shards: int) -> int:
    return zlib.crc32(entity_id.encode()) % shards


LIST_CUSTOMERS = "LIST#CUSTOMER"  # the gsi4 partition of every customer


def list_position(model: Any) -> str:
    """Where an object sits in a listing (the gsi4/gsi2 sort keys): ``<created, whole seconds>#<id>``."""
    return f"{_iso(model.created)}#{model.id}"


def price_hash(sub: Subscription) -> str:
    """``ph``: a short fingerprint of the subscription's price set (its price entries change with it)."""
    return format(zlib.crc32(" ".join(sorted({i.price for i in sub.items})).encode()), "08x")


@dataclass(frozen=True)
class _PriceChange:
    exists: bool  # the subscription is stored
    old_hash: str | None  # its ph (None: stored before price entries existed)
    old: frozenset[str]  # the prices it has entries for


_NEW = _PriceChange(exists=False, old_hash=None, old=frozenset())  # a new subscription: every price entry


def listed_by(model: Any, query: ListQuery) -> bool:
    """Whether ``model`` belongs in the listing ``query`` asks for (every filter but the cursor)."""
    if query.created_gte is not None and _second(model.created) < _second(query.created_gte):
        return False
    if query.created_lte is not None and _second(model.created) > _second(query.created_lte):
        return False
    status = getattr(model, "status", None)
    if query.statuses is not None and (status is None or status.value not in query.statuses):
        return False
    if query.customer is not None and getattr(model, "customer", None) != query.customer:
        return False
    if query.price is not None and query.price not in _prices_of(model):
        return False
    if query.subscription is not None and getattr(model, "subscription", None) != query.subscription:
        return False
    total = getattr(model, "total", None)
    if query.total_gte is not None and (total is None or total < query.total_gte):
        return False
    if query.total_lte is not None and (total is None or total > query.total_lte):
        return False
    if query.name is not None and query.name.casefold() not in (getattr(model, "name", None) or "").casefold():
        return False
    return query.email is None or getattr(model, "email", "").strip().lower() == query.email.strip().lower()


def _prices_of(model: Any) -> set[str | None]:
    """A subscription's items' prices, an invoice's lines' prices."""
    return {i.price for i in getattr(model, "items", ())} | {line.price for line in getattr(model, "lines", ())}


def list_window(models: list[Any], query: ListQuery, cursor: str | None) -> Page:
    """The page of ``query`` over ``models`` (all candidates): filtered, newest first, after (or, with
    ending_before, the ``limit`` right before) the cursor position — the index listing's semantics."""
    ordered = sorted((m for m in models if listed_by(m, query)), key=list_position, reverse=True)
    if cursor is not None and query.ending_before:
        newer = [m for m in ordered if list_position(m) > cursor]
        return Page(newer[-query.limit :], has_more=len(newer) > query.limit)
    if cursor is not None:
        ordered = [m for m in ordered if list_position(m) < cursor]
    return Page(ordered[: query.limit], has_more=len(ordered) > query.limit)


def _second(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(microsecond=0)


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


class DynamoStore:
    def __init__(self, client: Any, table: str, due_shards: int = 4) -> None:
        self._db = client
        self._table = table
        self._shards = due_shards

    # ------------------------------------------------------------------ low level
    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("ReturnConsumedCapacity", "TOTAL")
        try:
            response: dict[str, Any] = getattr(self._db, op)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise Conflict("the item changed or already exists") from error
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                raise Conflict(f"transaction cancelled: {reasons}") from error
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise Unavailable("storage is throttling; retry") from error
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("InternalServerError", "ServiceUnavailable") or status >= 500:
                raise Unavailable(f"storage failed ({code or status}); retry") from error
            raise
        usage.count(f"dynamodb.{op}")
        kind, units = capacity_units(op, kwargs, response)
        usage.units(f"dynamodb.{kind}", units)
        usage.units(f"dynamodb.{kind}.{op}", units)
        return response

    def _item(self, pk: str, sk: str, model: BaseModel, **extra: dict[str, str]) -> dict[str, Any]:
        # defaults are left out of the stored document (restored on load): every KB is a write unit
        item: dict[str, Any] = {"pk": _s(pk), "sk": _s(sk), "doc": _s(model.model_dump_json(exclude_defaults=True))}
        if hasattr(model, "version"):
            item["version"] = _n(model.version)
        item.update(extra)
        return item

    def _get(self, pk: str, sk: str, consistent: bool = True) -> dict[str, Any] | None:
        response = self._call(
            "get_item", TableName=self._table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=consistent
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _require(self, pk: str, sk: str, cls: type[M], missing: str, param: str, consistent: bool = True) -> M:
        """The stored model, or NotFound naming the request field it came from."""
        item = self._get(pk, sk, consistent=consistent)
        if item is None:
            raise NotFound(missing, param=param)
        return self._load(item, cls)

    @staticmethod
    def _load(item: dict[str, Any], cls: type[M]) -> M:
        return cls.model_validate_json(item["doc"]["S"])

    def _put_new(self, item: dict[str, Any], what: str) -> None:
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict as error:
            raise AlreadyExists(f"{what} already exists") from error

    def _versioned_put(self, item: dict[str, Any], expected: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk) OR version = :v",
            "ExpressionAttributeValues": {":v": _n(expected)},
        }

    def _query_page(self, cls: type[M], pk_value: str, prefix: str, limit: int, starting_after: str | None) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :p" + (" AND begins_with(gsi2sk, :s)" if prefix else ""),
            "ExpressionAttributeValues": {":p": _s(pk_value), **({":s": _s(prefix)} if prefix else {})},
            "Limit": limit + 1,
            "ScanIndexForward": False,
        }
        if starting_after:
            cursor = self._get(*self._key_for_id(starting_after))
            if cursor is None or "gsi2sk" not in cursor:
                raise NotFound(f"no such object {starting_after}", param="starting_after")
            if cursor["gsi2pk"]["S"] != pk_value or not cursor["gsi2sk"]["S"].startswith(prefix):
                raise InvalidInput(f"{starting_after} is not in this list", param="starting_after")
            kwargs["ExclusiveStartKey"] = {
                "pk": cursor["pk"],
                "sk": cursor["sk"],
                "gsi2pk": cursor["gsi2pk"],
                "gsi2sk": cursor["gsi2sk"],
            }
        items = self._call("query", **kwargs).get("Items", [])
        return Page([self._load(i, cls) for i in items[:limit]], has_more=len(items) > limit)

    @staticmethod
    def _key_for_id(object_id: str) -> tuple[str, str]:
        prefix = object_id.split("_", 1)[0]
        return {
            "prod": ("PRODUCT#" + object_id, "PRODUCT"),
            "price": ("PRICE#" + object_id, "PRICE"),
            "cus": ("CUS#" + object_id, "CUSTOMER"),
            "sub": ("SUB#" + object_id, "SUBSCRIPTION"),
            "in": ("INV#" + object_id, "INVOICE"),
            "mtr": ("METER#" + object_id, "METER"),
            "exp": ("EXP#" + object_id, "EXPERIMENT"),
        }.get(prefix, ("?", "?"))

    # ------------------------------------------------------------------ catalog
    def _product_item(self, product: Product) -> dict[str, Any]:
        return self._item(
            f"PRODUCT#{product.id}",
            "PRODUCT",
            product,
            gsi2pk=_s("CATALOG#PRODUCT"),
            gsi2sk=_s(f"{_iso(product.created)}#{product.id}"),
        )

    def _price_item(self, price: Price) -> dict[str, Any]:
        return self._item(
            f"PRICE#{price.id}",
            "PRICE",
            price,
            gsi2pk=_s("CATALOG#PRICE"),
            gsi2sk=_s(f"{_iso(price.created)}#{price.id}"),
        )

    def _catalog_save(self, item: dict[str, Any], expected: int) -> None:
        request = self._versioned_put(item, expected)
        if expected == 0:  # products and prices written before they had versions carry no version attribute
            request["ConditionExpression"] += " OR attribute_not_exists(version)"
        self._call("put_item", **request)

    def put_product(self, product: Product) -> None:
        self._put_new(self._product_item(product), f"product {product.id}")

    def save_product(self, product: Product) -> Product:
        saved = product.model_copy(update={"version": product.version + 1})
        self._catalog_save(self._product_item(saved), product.version)
        return saved

    def get_product(self, product_id: str) -> Product:
        return self._require(
            f"PRODUCT#{product_id}", "PRODUCT", Product, f"no such product: {product_id}", "product", consistent=False
        )

    def list_products(self, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Product, "CATALOG#PRODUCT", "", limit, starting_after)

    def put_price(self, price: Price) -> None:
        self._put_new(self._price_item(price), f"price {price.id}")

    def save_price(self, price: Price) -> Price:
        saved = price.model_copy(update={"version": price.version + 1})
        self._catalog_save(self._price_item(saved), price.version)
        return saved

    def get_price(self, price_id: str) -> Price:
        return self._require(
            f"PRICE#{price_id}", "PRICE", Price, f"no such price: {price_id}", "price_id", consistent=False
        )

    def list_prices(self, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Price, "CATALOG#PRICE", "", limit, starting_after)

    # ------------------------------------------------------------------ coupons and promotion codes
    def _coupon_item(self, coupon: Coupon) -> dict[str, Any]:
        listing = {}
        if coupon.created is not None:  # listed (gsi2), newest first
            listing = {"gsi2pk": _s("CATALOG#COUPON"), "gsi2sk": _s(f"{_iso(coupon.created)}#{coupon.id}")}
        return self._item(f"COUPON#{coupon.id}", "COUPON", coupon, times_redeemed=_n(coupon.times_redeemed), **listing)

    def _promo_item(self, code: PromotionCode) -> dict[str, Any]:
        listing = {}
        if code.created is not None:
            listing = {"gsi2pk": _s("CATALOG#PROMO"), "gsi2sk": _s(f"{_iso(code.created)}#{code.id}")}
        return self._item(
            f"PROMO#{code.code.upper()}", "PROMO", code, times_redeemed=_n(code.times_redeemed), **listing
        )

    def put_coupon(self, coupon: Coupon) -> None:
        self._put_new(self._coupon_item(coupon), f"coupon {coupon.id}")

    def get_coupon(self, coupon_id: str) -> Coupon:
        return self._require(f"COUPON#{coupon_id}", "COUPON", Coupon, f"no such coupon: {coupon_id}", "coupon")

    def put_promotion_code(self, code: PromotionCode) -> None:
        """The code's item and, for lookups by id, ``PROMOID#<id>`` naming its code — in one write."""
        new = "attribute_not_exists(pk)"
        alias = {"pk": _s(f"PROMOID#{code.id}"), "sk": _s("PROMOID"), "code": _s(code.code.upper())}
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": self._promo_item(code), "ConditionExpression": new}},
                    {"Put": {"TableName": self._table, "Item": alias, "ConditionExpression": new}},
                ],
            )
        except Conflict as error:
            raise AlreadyExists(f"promotion code {code.code} already exists", param="code") from error

    def get_promotion_code(self, code: str) -> PromotionCode:
        return self._require(
            f"PROMO#{code.upper()}", "PROMO", PromotionCode, f"no such promotion code: {code}", "promotion_code"
        )

    def _promo_key_of(self, promotion_code_id: str) -> str | None:
        alias = self._get(f"PROMOID#{promotion_code_id}", "PROMOID")
        return alias["code"]["S"] if alias else None

    def get_promotion_code_by_id(self, promotion_code_id: str) -> PromotionCode:
        code = self._promo_key_of(promotion_code_id)
        if code is None:
            raise NotFound(f"no such promotion code: {promotion_code_id}", param="promotion_code")
        return self.get_promotion_code(code)

    def count_redemption(
        self, coupon: Coupon, code: PromotionCode | None, sub: Subscription | None = None
    ) -> Subscription | None:
        """Save one more redemption of the coupon (and code): conditional on the count read, so two
        checkouts racing for the last redemption cannot both get it (Conflict), and on the version
        read, so a coupon deleted or a code deactivated meanwhile is not written back. With ``sub``:
        the subscription carrying the discount is put in the same transaction under its version (and
        stored price set, as ``save_subscription``; a subscription not stored is a Conflict)."""
        actions: list[dict[str, Any]] = []
        for item, before, version in (
            (self._coupon_item(coupon), coupon.times_redeemed - 1, coupon.version),
            *(((self._promo_item(code), code.times_redeemed - 1, code.version),) if code else ()),
        ):
            item["times_redeemed"] = _n(before + 1)
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": item,
                        "ConditionExpression": "times_redeemed = :t AND "
                        "(attribute_not_exists(version) OR version = :v)",
                        "ExpressionAttributeValues": {":t": _n(before), ":v": _n(version)},
                    }
                }
            )
        if sub is None:
            self._call("transact_write_items", TransactItems=actions)
            return None
        saved = sub.model_copy(update={"version": sub.version + 1})
        change: _PriceChange | None = None
        while True:  # twice at most: again with the price entries when the stored price set differs
            try:
                self._call(
                    "transact_write_items",
                    TransactItems=[
                        *actions,
                        {"Put": self._sub_put(saved, sub.version, change)},
                        *self._price_actions(saved, change),
                    ],
                )
                return saved
            except Conflict:
                if change is not None:
                    raise
                change = self._price_change(saved, sub.version)
                if change is None or not change.exists:  # a real conflict (or no such subscription)
                    raise

    def _merchant_change(self, item: dict[str, Any], before: Coupon | PromotionCode) -> None:
        condition = "attribute_exists(pk) AND times_redeemed = :t AND "
        condition += "(version = :v OR attribute_not_exists(version))" if before.version == 0 else "version = :v"
        self._call(
            "put_item",
            TableName=self._table,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeValues={":t": _n(before.times_redeemed), ":v": _n(before.version)},
        )

    def save_coupon(self, coupon: Coupon) -> Coupon:
        saved = coupon.model_copy(update={"version": coupon.version + 1})
        self._merchant_change(self._coupon_item(saved), coupon)
        return saved

    def save_promotion_code(self, code: PromotionCode) -> PromotionCode:
        saved = code.model_copy(update={"version": code.version + 1})
        self._merchant_change(self._promo_item(saved), code)
        return saved

    def _gsi2_listing(self, cls: type[M], pk_value: str, cursor_key: tuple[str, str] | None, limit: int) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :p",
            "ExpressionAttributeValues": {":p": _s(pk_value)},
            "Limit": limit + 1,
            "ScanIndexForward": False,
        }
        if cursor_key is not None:
            cursor = self._get(*cursor_key)
            if cursor is None or cursor.get("gsi2pk", {}).get("S") != pk_value:
                raise NotFound("no such object in this list", param="starting_after")
            kwargs["ExclusiveStartKey"] = {k: cursor[k] for k in ("pk", "sk", "gsi2pk", "gsi2sk")}
        items = self._call("query", **kwargs).get("Items", [])
        return Page([self._load(i, cls) for i in items[:limit]], has_more=len(items) > limit)

    def list_coupons(self, limit: int, starting_after: str | None) -> Page:
        cursor = (f"COUPON#{starting_after}", "COUPON") if starting_after else None
        return self._gsi2_listing(Coupon, "CATALOG#COUPON", cursor, limit)

    def list_promotion_codes(self, limit: int, starting_after: str | None) -> Page:
        cursor = None
        if starting_after:
            code = self._promo_key_of(starting_after)
            if code is None:
                raise NotFound(f"no such promotion code: {starting_after}", param="starting_after")
            cursor = (f"PROMO#{code}", "PROMO")
        return self._gsi2_listing(PromotionCode, "CATALOG#PROMO", cursor, limit)

    # ------------------------------------------------------------------ credit notes
    def list_credit_notes(self, invoice_id: str) -> list[CreditNote]:
        response = self._call(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
            ExpressionAttributeValues={":p": _s(f"INV#{invoice_id}"), ":s": _s("CN#")},
            ConsistentRead=True,
        )
        return [self._load(item, CreditNote) for item in response.get("Items", [])]

    def get_credit_note(self, credit_note_id: str) -> CreditNote:
        """gsi1 ``CN#<id>`` names the note's item (``INV#<invoice>`` / ``CN#<number>``), read consistently."""
        item = self._first_in_gsi1(f"CN#{credit_note_id}")
        missing = f"no such credit note: {credit_note_id}"
        if item is None:
            raise NotFound(missing, param="credit_note")
        return self._require(item["pk"]["S"], item["sk"]["S"], CreditNote, missing, "credit_note")

    def _first_in_gsi1(self, key: str) -> dict[str, Any] | None:
        """The first gsi1 item under ``key`` (its keys name the item: read that from the table)."""
        items = self._call(
            "query",
            TableName=self._table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": _s(key)},
            Limit=1,
        ).get("Items", [])
        return items[0] if items else None

    def _cn_item(self, note: CreditNote) -> dict[str, Any]:
        # gsi1 ``CN#<id>``: the note by its id (get_credit_note; documents are asked for by note id)
        extra: dict[str, dict[str, str]] = {"gsi1pk": _s(f"CN#{note.id}"), "gsi1sk": _s(note.invoice)}
        if note.tax_date is not None:  # tax reports: next to the month's invoices, sort keys CN#…
            extra["gsi3pk"] = _s(f"TAXMONTH#{note.tax_date:%Y-%m}")
            extra["gsi3sk"] = _s(f"CN#{note.tax_date.isoformat()}#{note.id}")
        return self._item(f"INV#{note.invoice}", f"CN#{note.number}", note, **extra)

    def credit_notes_by_tax_date(self, start: date, end: date) -> list[CreditNote]:
        """Notes whose tax date is in [start, end]: gsi3 ``TAXMONTH#<month>``, sort keys ``CN#<date>#<id>``
        (the invoices' sort keys start with the date, so neither query sees the other's items)."""
        return self._by_tax_month(start, end, "CN#", CreditNote)

    def issue_credit_note(self, note: CreditNote, invoice: Invoice, customer: Customer | None) -> Invoice:
        """The note (once: its id is derived from the invoice and a sequence), the invoice's new
        amounts and, for a credit to the balance, the customer — in one transaction."""
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._cn_item(note),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": self._versioned_put(self._inv_item(saved), invoice.version)},
        ]
        if customer is not None:
            moved = customer.model_copy(update={"version": customer.version + 1})
            actions.append({"Put": self._versioned_put(self._cus_item(moved), customer.version)})
        self._call("transact_write_items", TransactItems=actions)
        return saved

    # ------------------------------------------------------------------ customers
    def create_customer(self, customer: Customer) -> None:
        email_key = customer.email.strip().lower()
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._cus_item(customer),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {"pk": _s(f"EMAIL#{email_key}"), "sk": _s("EMAIL"), "customer": _s(customer.id)},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ],
            )
        except Conflict as error:
            raise AlreadyExists(
                f"a customer with email {customer.email} already exists", param="customer.email"
            ) from error

    def get_customer(self, customer_id: str) -> Customer:
        return self._require(
            f"CUS#{customer_id}", "CUSTOMER", Customer, f"no such customer: {customer_id}", "customer_id"
        )

    def find_customer_by_email(self, email: str) -> Customer | None:
        link = self._get(f"EMAIL#{email.strip().lower()}", "EMAIL")
        return self.get_customer(link["customer"]["S"]) if link else None

    def save_customer(self, customer: Customer) -> Customer:
        saved = customer.model_copy(update={"version": customer.version + 1})
        self._call("put_item", **self._versioned_put(self._cus_item(saved), customer.version))
        return saved

    def change_customer_email(self, customer: Customer, previous_email: str) -> Customer:
        """The customer (versioned) and its email lookup moved from the previous email, in one transaction."""
        new_key, old_key = customer.email.strip().lower(), previous_email.strip().lower()
        saved = customer.model_copy(update={"version": customer.version + 1})
        actions: list[dict[str, Any]] = [{"Put": self._versioned_put(self._cus_item(saved), customer.version)}]
        if new_key != old_key:
            actions += [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {"pk": _s(f"EMAIL#{new_key}"), "sk": _s("EMAIL"), "customer": _s(customer.id)},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"pk": _s(f"EMAIL#{old_key}"), "sk": _s("EMAIL")},
                        "ConditionExpression": "customer = :c",
                        "ExpressionAttributeValues": {":c": _s(customer.id)},
                    }
                },
            ]
        try:
            self._call("transact_write_items", TransactItems=actions)
        except Conflict:
            owner = self._get(f"EMAIL#{new_key}", "EMAIL")
            if owner is not None and owner["customer"]["S"] != customer.id:
                raise AlreadyExists(f"a customer with email {customer.email} already exists", param="email") from None
            raise
        return saved

    def _cus_item(self, customer: Customer) -> dict[str, Any]:
        extra: dict[str, dict[str, str]] = {}
        notice = card_expiry_notice_at(customer)
        if notice is not None:  # the dunning index: the card_expiring email falls due then
            extra.update(self._dunning_keys(customer.id, notice))
        extra.update(self._list_keys(customer))  # gsi4: the merchant's customer listing
        return self._item(f"CUS#{customer.id}", "CUSTOMER", customer, **extra)

    def _dunning_keys(self, entity_id: str, at: datetime) -> dict[str, dict[str, str]]:
        return {"gsi1pk": _s(f"DUN#{shard_of(entity_id, self._shards)}"), "gsi1sk": _s(f"{_iso(at)}#{entity_id}")}

    # ------------------------------------------------------------------ subscriptions
    def _sub_item(self, sub: Subscription) -> dict[str, Any]:
        extra: dict[str, dict[str, str]] = {
            "status": _s(sub.status.value),
            "gsi2pk": _s(f"CUS#{sub.customer}"),
            "gsi2sk": _s(f"SUB#{_iso(sub.created)}#{sub.id}"),
            **self._list_keys(sub),  # gsi4: SUBSTATUS#<status>, keys only
            "ph": _s(price_hash(sub)),  # the price set its price entries were written for (see _sub_put)
        }
        due = sub.due_at
        if due is not None:  # sparse due index: finished subscriptions drop out of it
            extra["gsi1pk"] = _s(f"DUE#{shard_of(sub.id, self._shards)}")
            extra["gsi1sk"] = _s(f"{_iso(due)}#{sub.id}")
        return self._item(f"SUB#{sub.id}", "SUBSCRIPTION", sub, **extra)

    def _inv_item(self, inv: Invoice) -> dict[str, Any]:
        extra: dict[str, dict[str, str]] = {}
        if inv.next_dunning_at is not None and inv.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            extra.update(self._dunning_keys(inv.id, inv.next_dunning_at))  # sparse: paid invoices drop out
        elif inv.status is InvoiceStatus.PAID and inv.payment_intent:
            # a paid invoice is out of the dunning index: gsi1 then finds it by its payment
            # (refunds, disputes and fraud warnings name only the PaymentIntent), at no extra write
            extra.update(gsi1pk=_s(f"PI#{inv.payment_intent}"), gsi1sk=_s(inv.id))
        if inv.number is not None and inv.tax_date is not None:  # finalized: it counts in tax reports
            extra["gsi3pk"] = _s(f"TAXMONTH#{inv.tax_date:%Y-%m}")
            extra["gsi3sk"] = _s(f"{inv.tax_date.isoformat()}#{inv.id}")
        return self._item(
            f"INV#{inv.id}",
            "INVOICE",
            inv,
            status=_s(inv.status.value),
            gsi2pk=_s(f"CUS#{inv.customer}"),
            gsi2sk=_s(f"INV#{_iso(inv.created)}#{inv.id}"),
            **self._list_keys(inv),  # gsi4: INVSTATUS#<status>, keys only
            **extra,
        )

    def invoices_by_tax_date(self, start: date, end: date) -> list[Invoice]:
        """Finalized invoices whose tax point is in [start, end] (one Query per month, never a Scan)."""
        return self._by_tax_month(start, end, "", Invoice)

    def _by_tax_month(self, start: date, end: date, prefix: str, cls: type[M]) -> list[M]:
        """gsi3 items of ``cls`` with sort keys ``<prefix><date>#…`` for dates in [start, end]: one
        Query per ``TAXMONTH#<month>``, every page of it."""
        if end < start:
            raise InvalidInput("the period ends before it starts", param="to")
        found: list[M] = []
        month = date(start.year, start.month, 1)
        while month <= end:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "gsi3",
                "KeyConditionExpression": "gsi3pk = :p AND gsi3sk BETWEEN :a AND :b",
                "ExpressionAttributeValues": {
                    ":p": _s(f"TAXMONTH#{month:%Y-%m}"),
                    ":a": _s(f"{prefix}{start.isoformat()}"),
                    ":b": _s(f"{prefix}{end.isoformat()}#~"),
                },
            }
            while True:
                response = self._call("query", **kwargs)
                found += [self._load(i, cls) for i in response.get("Items", [])]
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        return found

    def _next_number(self) -> tuple[int, dict[str, Any]]:
        counter = self._get("COUNTER", "INVOICE_NUMBER")
        current = int(counter["seq"]["N"]) if counter else 0
        update: dict[str, Any] = {
            "Put": {
                "TableName": self._table,
                "Item": {"pk": _s("COUNTER"), "sk": _s("INVOICE_NUMBER"), "seq": _n(current + 1)},
                "ConditionExpression": "attribute_not_exists(pk)" if counter is None else "seq = :seq",
            }
        }
        if counter is not None:
            update["Put"]["ExpressionAttributeValues"] = {":seq": _n(current)}
        return current + 1, update

    def create_subscription(self, sub: Subscription, invoice: Invoice | None, invoice_prefix: str) -> Invoice | None:
        for attempt in range(NUMBER_RETRIES):
            actions: list[dict[str, Any]] = [
                {"Put": self._sub_put(sub, sub.version, _NEW)},
                *self._price_actions(sub, _NEW),  # one price entry per price (gsi4 SUBPRICE#<price>)
            ]
            final = None
            if invoice is not None:
                final = invoice
                if invoice.gets_number_when_stored:  # a draft; a checkout's open invoice is numbered when paid
                    seq, counter = self._next_number()
                    final = invoice.finalize(format_number(invoice_prefix, seq), invoice.created)
                    actions.append(counter)
                actions += [
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._inv_item(final),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            try:
                self._call("transact_write_items", TransactItems=actions)
                return final
            except Conflict:
                if self._get(f"SUB#{sub.id}", "SUBSCRIPTION") is not None:
                    raise AlreadyExists(f"subscription {sub.id} already exists") from None
                if invoice is not None and self.find_invoice(invoice.id) is not None:
                    raise Conflict(f"invoice {invoice.id} already exists") from None  # no retry can succeed
                _backoff(attempt)  # the counter moved: take the next number
        raise Conflict("could not assign an invoice number; retry")

    def get_subscription(self, subscription_id: str) -> Subscription:
        return self._require(
            f"SUB#{subscription_id}",
            "SUBSCRIPTION",
            Subscription,
            f"no such subscription: {subscription_id}",
            "subscription",
        )

    def save_subscription(self, sub: Subscription) -> Subscription:
        saved = sub.model_copy(update={"version": sub.version + 1})
        try:
            self._call("put_item", **self._sub_put(saved, sub.version))
        except Conflict:
            change = self._price_change(saved, sub.version)
            if change is None:
                raise
            actions = [{"Put": self._sub_put(saved, sub.version, change)}, *self._price_actions(saved, change)]
            self._call("transact_write_items", TransactItems=actions)
        return saved

    def get_invoice(self, invoice_id: str) -> Invoice:
        found = self.find_invoice(invoice_id)
        if found is None:
            raise NotFound(f"no such invoice: {invoice_id}", param="invoice")
        return found

    def find_invoice(self, invoice_id: str) -> Invoice | None:
        item = self._get(f"INV#{invoice_id}", "INVOICE")
        return self._load(item, Invoice) if item else None

    def find_invoice_by_payment_intent(self, payment_intent: str) -> Invoice | None:
        item = self._first_in_gsi1(f"PI#{payment_intent}")
        # the index key names the invoice (whatever the projection); read it consistently from the table
        return self.find_invoice(item["gsi1sk"]["S"]) if item else None

    def save_invoice(self, invoice: Invoice) -> Invoice:
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        self._call("put_item", **self._versioned_put(self._inv_item(saved), invoice.version))
        return saved

    def save_invoice_and_subscription(
        self, invoice: Invoice, sub: Subscription | None
    ) -> tuple[Invoice, Subscription | None]:
        if sub is None:
            return self.save_invoice(invoice), None
        inv2 = invoice.model_copy(update={"version": invoice.version + 1})
        sub2 = sub.model_copy(update={"version": sub.version + 1})
        change: _PriceChange | None = None
        while True:  # twice at most: again with the price entries when the price set changed
            try:
                self._call(
                    "transact_write_items",
                    TransactItems=[
                        {"Put": self._versioned_put(self._inv_item(inv2), invoice.version)},
                        {"Put": self._sub_put(sub2, sub.version, change)},
                        *self._price_actions(sub2, change),
                    ],
                )
                return inv2, sub2
            except Conflict:
                if change is not None or (change := self._price_change(sub2, sub.version)) is None:
                    raise

    def renew(
        self, sub: Subscription, invoice: Invoice, invoice_prefix: str, customer: Customer | None = None
    ) -> tuple[Subscription, Invoice]:
        """Advance ``sub`` and store its period's invoice once; a draft is finalized with the next
        gapless number, any other status (a draft kept or voided under a pause) is stored as it is."""
        sub2 = sub.model_copy(update={"version": sub.version + 1, "latest_invoice": invoice.id})
        extra: list[dict[str, Any]] = self._billed_usage_actions(sub.id, invoice)
        if customer is not None:  # its balance moved with this invoice: in the same transaction
            saved_customer = customer.model_copy(update={"version": customer.version + 1})
            item = self._cus_item(saved_customer)
            extra.append({"Put": self._versioned_put(item, customer.version)})
        change: _PriceChange | None = None
        for attempt in range(NUMBER_RETRIES):
            numbered = invoice.gets_number_when_stored
            counter_actions: list[dict[str, Any]] = []
            final = invoice
            if numbered:
                seq, counter = self._next_number()
                final = invoice.finalize(format_number(invoice_prefix, seq), invoice.created)
                counter_actions = [counter]
            try:
                self._call(
                    "transact_write_items",
                    TransactItems=[
                        {"Put": self._sub_put(sub2, sub.version, change)},
                        *self._price_actions(sub2, change),
                        *counter_actions,
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": self._inv_item(final),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        *extra,
                    ],
                )
                return sub2, final
            except Conflict:
                if self.find_invoice(invoice.id) is not None:
                    raise AlreadyExists(f"invoice {invoice.id} already exists") from None
                current = self.get_subscription(sub.id)
                if current.version != sub.version:
                    raise
                if customer is not None and self.get_customer(customer.id).version != customer.version:
                    raise
                for ref in usage_refs(invoice.lines):  # usage recorded since it was read: decide again
                    if self.get_usage(UsageKey(sub.id, ref.meter, ref.period_start)).seq != ref.seq:
                        raise
                if change is None and (change := self._price_change(sub2, sub.version)) is not None:
                    continue  # the price set changed (a scheduled change): again with the price entries
                _backoff(attempt)
        raise Conflict("could not assign an invoice number; retry")

    def finalize_invoice(
        self, invoice: Invoice, invoice_prefix: str, sub: Subscription | None = None
    ) -> tuple[Invoice, Subscription | None]:
        """Store ``invoice`` with the next gapless number (and ``sub``) in one transaction, both under
        their versions; a transaction lost to a concurrent numbering takes the next number."""
        saved_sub = sub.model_copy(update={"version": sub.version + 1}) if sub is not None else None
        for attempt in range(NUMBER_RETRIES):
            seq, counter = self._next_number()
            final = invoice.with_number(format_number(invoice_prefix, seq)).model_copy(
                update={"version": invoice.version + 1}
            )
            actions: list[dict[str, Any]] = [
                {"Put": self._versioned_put(self._inv_item(final), invoice.version)},
                counter,
            ]
            if sub is not None and saved_sub is not None:
                actions.append({"Put": self._versioned_put(self._sub_item(saved_sub), sub.version)})
            try:
                self._call("transact_write_items", TransactItems=actions)
                return final, saved_sub
            except Conflict:
                stored = self.find_invoice(invoice.id)
                if stored is not None and stored.version != invoice.version:
                    raise
                if sub is not None and self.get_subscription(sub.id).version != sub.version:
                    raise
                _backoff(attempt)  # the counter moved: take the next number
        raise Conflict("could not assign an invoice number; retry")

    def list_customer_invoices(self, customer_id: str, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Invoice, f"CUS#{customer_id}", "INV#", limit, starting_after)

    def list_customer_subscriptions(self, customer_id: str) -> list[Subscription]:
        return list(self._query_page(Subscription, f"CUS#{customer_id}", "SUB#", 100, None).items)

    # ------------------------------------------------------------------ merchant-wide listings (docs/data-model.md)
    def list_customers(self, query: ListQuery) -> Page:
        cursor = self._cursor_position(query, "cus", Customer)
        if query.email is not None:  # the email lookup item: GetItem ×2, no index
            found = self.find_customer_by_email(query.email)
            return list_window([found] if found is not None else [], query, cursor)
        return self._listing_page(query, cursor, Customer, [("gsi4", LIST_CUSTOMERS, "")])

    def list_subscriptions(self, query: ListQuery) -> Page:
        cursor = self._cursor_position(query, "sub", Subscription)
        if query.customer is not None:  # the customer's few subscriptions (gsi2), other filters on the page
            partitions = [("gsi2", f"CUS#{query.customer}", "SUB#")]
        elif query.price is not None:  # one price entry per (subscription, price)
            partitions = [("gsi4", f"SUBPRICE#{query.price}", "")]
        else:
            statuses = sorted(query.statuses) if query.statuses is not None else [s.value for s in Status]
            partitions = [("gsi4", f"SUBSTATUS#{s}", "") for s in statuses]
        return self._listing_page(query, cursor, Subscription, partitions)

    def list_invoices(self, query: ListQuery) -> Page:
        cursor = self._cursor_position(query, "in", Invoice)
        if query.customer is not None:
            partitions = [("gsi2", f"CUS#{query.customer}", "INV#")]
        else:
            statuses = sorted(query.statuses) if query.statuses is not None else [s.value for s in InvoiceStatus]
            partitions = [("gsi4", f"INVSTATUS#{s}", "") for s in statuses]
        return self._listing_page(query, cursor, Invoice, partitions)

    def _cursor_position(self, query: ListQuery, kind: str, cls: type[M]) -> str | None:
        """The list position (``<created>#<id>``) of the starting_after / ending_before object."""
        cursor, param = (
            (query.starting_after, "starting_after") if query.starting_after else (query.ending_before, "ending_before")
        )
        if not cursor:
            return None
        if cursor.split("_", 1)[0] != kind:
            raise InvalidInput(f"{cursor} is not in this list", param=param)
        item = self._get(*self._key_for_id(cursor), consistent=False)
        if item is None:
            raise NotFound(f"no such object {cursor}", param=param)
        return list_position(self._load(item, cls))

    def _listing_page(
        self, query: ListQuery, cursor: str | None, cls: type[M], partitions: list[tuple[str, str, str]]
    ) -> Page:
        """Merge the partitions' entries (each in index order, lazily paged) newest first — or, after
        ending_before, oldest first from the cursor — load them (gsi2 entries carry the document, gsi4
        entries are keys only: BatchGetItem) and keep those the filters accept until the page is full."""
        newest_first = query.ending_before is None
        low = _iso(query.created_gte) if query.created_gte is not None else "0"
        high = _iso(query.created_lte) + "#~" if query.created_lte is not None else "~"
        if cursor is not None and newest_first:
            high = min(high, cursor)
        elif cursor is not None:
            low = max(low, cursor)
        wanted = query.limit + 1
        streams = [
            self._index_entries(index, pk, prefix, low, high, newest_first, wanted + 1)
            for index, pk, prefix in partitions
        ]
        merged = heapq.merge(*streams, key=lambda entry: entry[0], reverse=newest_first)
        entries = (entry for entry in merged if entry[0] != cursor)
        accepted: list[Any] = []
        seen: set[str] = set()
        while len(accepted) < wanted:
            chunk = list(itertools.islice(entries, wanted - len(accepted)))
            if not chunk:
                break
            for model in self._load_entries(chunk, cls):
                if model.id not in seen and listed_by(model, query):
                    seen.add(model.id)
                    accepted.append(model)
        page = accepted[: query.limit]
        return Page(page if newest_first else page[::-1], has_more=len(accepted) > query.limit)

    def _index_entries(
        self, index: str, pk_value: str, prefix: str, low: str, high: str, newest_first: bool, page_size: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(position, index item) of one index partition between two positions, in index order."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": f"{index}pk = :p AND {index}sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": _s(pk_value), ":a": _s(prefix + low), ":b": _s(prefix + high)},
            "ScanIndexForward": not newest_first,
            "Limit": page_size,
        }
        while True:
            response = self._call("query", **kwargs)
            for item in response.get("Items", []):
                yield item[f"{index}sk"]["S"][len(prefix) :], item
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _load_entries(self, entries: list[tuple[str, dict[str, Any]]], cls: type[M]) -> list[Any]:
        """The models of index entries, in their order: from the entry's document, or (keys-only
        entries) one BatchGetItem of the objects named by the positions; vanished objects are skipped."""
        ids = [position.split("#", 1)[1] for position, _ in entries]
        docs = {i: item for i, (_, item) in zip(ids, entries, strict=True) if "doc" in item}
        missing = [self._key_for_id(i) for i in dict.fromkeys(ids) if i not in docs]
        while missing:
            keys = [{"pk": _s(pk), "sk": _s(sk)} for pk, sk in missing[:100]]
            missing = missing[100:]
            request: dict[str, Any] = {self._table: {"Keys": keys}}
            while request:
                response = self._call("batch_get_item", RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    docs[item["pk"]["S"].split("#", 1)[1]] = item
                request = response.get("UnprocessedKeys") or {}
        return [self._load(docs[i], cls) for i in ids if i in docs]

    def backfill_list_index(self) -> int:
        """One-time, offline: give customers, subscriptions and invoices stored before the listing index
        their gsi4 entries (and subscriptions their price entries). A Scan — never called by a function;
        ``python -m kassa_local.backfill``. Items written meanwhile are skipped (they have them). Returns
        how many items were updated."""
        kinds: dict[str, type[Customer] | type[Subscription] | type[Invoice]] = {
            "CUSTOMER": Customer,
            "SUBSCRIPTION": Subscription,
            "INVOICE": Invoice,
        }
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk IN (:c, :s, :i) AND attribute_not_exists(gsi4pk)",
            "ExpressionAttributeValues": {":c": _s("CUSTOMER"), ":s": _s("SUBSCRIPTION"), ":i": _s("INVOICE")},
        }
        updated = 0
        while True:
            # the one Scan in kassa: offline maintenance, outside the usage counters (which assert none happens)
            response: dict[str, Any] = self._db.scan(**kwargs)
            for item in response.get("Items", []):
                model: Customer | Subscription | Invoice = kinds[item["sk"]["S"]].model_validate_json(item["doc"]["S"])
                keys = self._list_keys(model)
                names = ", ".join(f"{name} = :{name}" for name in keys)
                update: dict[str, Any] = {
                    "TableName": self._table,
                    "Key": {"pk": item["pk"], "sk": item["sk"]},
                    "UpdateExpression": f"SET {names}",
                    "ConditionExpression": "attribute_not_exists(gsi4pk)",
                    "ExpressionAttributeValues": {f":{name}": value for name, value in keys.items()},
                }
                actions = [{"Update": update}]
                if isinstance(model, Subscription):
                    actions += self._price_actions(model, _NEW)
                try:
                    self._call("transact_write_items", TransactItems=actions)
                    updated += 1
                except Conflict:
                    pass  # written meanwhile: it has its entries
            if "LastEvaluatedKey" not in response:
                return updated
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _list_keys(self, model: Customer | Subscription | Invoice) -> dict[str, dict[str, str]]:
        """The gsi4 (listing) attributes of an item: its partition and its position."""
        if isinstance(model, Customer):
            partition = LIST_CUSTOMERS
        elif isinstance(model, Subscription):
            partition = f"SUBSTATUS#{model.status.value}"
        else:
            partition = f"INVSTATUS#{model.status.value}"
        return {"gsi4pk": _s(partition), "gsi4sk": _s(list_position(model))}

    # -- a subscription's price entries: written only when its price set changes
    def _sub_put(self, sub: Subscription, expected: int, change: _PriceChange | None = None) -> dict[str, Any]:
        """The versioned put of a subscription, carrying ``ph`` (a hash of its price set). Without
        ``change`` it is conditional on the stored ``ph`` being the same, so the common write (a renewal)
        writes no price entry; when that fails, ``_price_change`` says what changed and the write is
        made again with the price entries (``_price_actions``) under the stored state."""
        item = self._sub_item(sub)
        request: dict[str, Any] = {"TableName": self._table, "Item": item}
        if change is None:
            request["ConditionExpression"] = "version = :v AND ph = :h"
            request["ExpressionAttributeValues"] = {":v": _n(expected), ":h": item["ph"]}
        elif not change.exists:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        elif change.old_hash is None:  # stored before price entries existed: they are all written now
            request["ConditionExpression"] = "version = :v AND attribute_not_exists(ph)"
            request["ExpressionAttributeValues"] = {":v": _n(expected)}
        else:
            request["ConditionExpression"] = "version = :v AND ph = :h"
            request["ExpressionAttributeValues"] = {":v": _n(expected), ":h": _s(change.old_hash)}
        return request

    def _price_change(self, sub: Subscription, expected: int) -> _PriceChange | None:
        """After a conditional write of ``sub`` failed: the stored price set when that is what differs
        (same version, other ``ph``), None when the failure was a real conflict."""
        item = self._get(f"SUB#{sub.id}", "SUBSCRIPTION")
        if item is None:
            return _NEW
        if int(item["version"]["N"]) != expected:
            return None
        old_hash = item.get("ph", {}).get("S")
        if old_hash == price_hash(sub):
            return None
        old = frozenset(i.price for i in self._load(item, Subscription).items) if old_hash else frozenset()
        return _PriceChange(exists=True, old_hash=old_hash, old=old)

    def _price_actions(self, sub: Subscription, change: _PriceChange | None) -> list[dict[str, Any]]:
        if change is None:
            return []
        prices = {i.price for i in sub.items}
        position = list_position(sub)
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "pk": _s(f"SUB#{sub.id}"),
                        "sk": _s(f"PRICE#{price}"),
                        "gsi4pk": _s(f"SUBPRICE#{price}"),
                        "gsi4sk": _s(position),
                    },
                }
            }
            for price in sorted(prices - change.old)
        ]
        actions += [
            {"Delete": {"TableName": self._table, "Key": {"pk": _s(f"SUB#{sub.id}"), "sk": _s(f"PRICE#{price}")}}}
            for price in sorted(change.old - prices)
        ]
        return actions

    # ------------------------------------------------------------------ due work
    def _due_entries(self, prefix: str, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        found: list[tuple[str, datetime]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p AND gsi1sk <= :t",
            "ExpressionAttributeValues": {":p": _s(f"{prefix}#{shard}"), ":t": _s(f"{_iso(now)}#~")},
            "ProjectionExpression": "gsi1sk",
        }
        while len(found) < limit:
            response = self._call("query", **kwargs)
            for item in response.get("Items", []):
                due, entity_id = item["gsi1sk"]["S"].split("#", 1)
                found.append((entity_id, datetime.strptime(due, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def _earliest_entry(self, prefix: str) -> datetime | None:
        earliest: datetime | None = None
        for shard in range(self._shards):
            response = self._call(
                "query",
                TableName=self._table,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :p",
                ExpressionAttributeValues={":p": _s(f"{prefix}#{shard}")},
                ProjectionExpression="gsi1sk",
                Limit=1,
            )
            for item in response.get("Items", []):
                due = datetime.strptime(item["gsi1sk"]["S"].split("#", 1)[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                earliest = due if earliest is None or due < earliest else earliest
        return earliest

    def due_subscriptions(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        return self._due_entries("DUE", shard, now, limit)

    def next_due_after(self, now: datetime) -> datetime | None:
        return self._earliest_entry("DUE")

    def due_dunning(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Dunning work due by ``now`` in one shard: invoices (``in_…``), customers whose card
        expires (``cus_…``) and timers (``timer:…``)."""
        return self._due_entries("DUN", shard, now, limit)

    def next_dunning_after(self, now: datetime) -> datetime | None:
        return self._earliest_entry("DUN")

    def put_timer(self, key: str, at: datetime) -> None:
        """A one-off wake-up in the dunning index (e.g. ``timer:win_back:<subscription>``)."""
        item = {"pk": _s(f"TIMER#{key}"), "sk": _s("TIMER"), **self._dunning_keys(key, at)}
        self._call("put_item", TableName=self._table, Item=item)

    def delete_timer(self, key: str) -> None:
        self._call("delete_item", TableName=self._table, Key={"pk": _s(f"TIMER#{key}"), "sk": _s("TIMER")})

    def list_open_invoices(self, customer_id: str) -> list[Invoice]:
        """The customer's open (or uncollectible) invoices, oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :p AND begins_with(gsi2sk, :s)",
            "FilterExpression": "#st IN (:o, :u)",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": {
                ":p": _s(f"CUS#{customer_id}"),
                ":s": _s("INV#"),
                ":o": _s(InvoiceStatus.OPEN.value),
                ":u": _s(InvoiceStatus.UNCOLLECTIBLE.value),
            },
        }
        found: list[Invoice] = []
        while True:
            response = self._call("query", **kwargs)
            found += [self._load(i, Invoice) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # ------------------------------------------------------------------ settings
    def get_settings(self) -> MerchantSettings:
        item = self._get("SETTINGS", "MERCHANT", consistent=False)
        return self._load(item, MerchantSettings) if item else MerchantSettings()

    def put_settings(self, settings: MerchantSettings) -> None:
        self._call("put_item", TableName=self._table, Item=self._item("SETTINGS", "MERCHANT", settings))

    # ------------------------------------------------------------------ usage (docs/usage.md)
    # ------------------------------------------------------------------ experiments
    def _experiment_item(self, experiment: Experiment) -> dict[str, Any]:
        return self._item(
            f"EXP#{experiment.id}",
            "EXPERIMENT",
            experiment,
            gsi2pk=_s("CATALOG#EXPERIMENT"),
            gsi2sk=_s(f"{_iso(experiment.created)}#{experiment.id}"),
        )

    @staticmethod
    def _running_key(product_id: str) -> dict[str, Any]:
        return {"pk": _s(f"EXPRUN#{product_id}"), "sk": _s("EXPRUN")}

    def put_experiment(self, experiment: Experiment) -> None:
        """The experiment and its product's running lookup (``EXPRUN#<product>``), in one write."""
        new = "attribute_not_exists(pk)"
        lookup = {**self._running_key(experiment.product), "experiment": _s(experiment.id)}
        item = self._experiment_item(experiment)
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": new}},
                    {"Put": {"TableName": self._table, "Item": lookup, "ConditionExpression": new}},
                ],
            )
        except Conflict as error:
            raise AlreadyExists(f"product {experiment.product} has a running experiment", param="product") from error

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._require(
            f"EXP#{experiment_id}", "EXPERIMENT", Experiment, f"no such experiment: {experiment_id}", "experiment"
        )

    def running_experiment(self, product_id: str) -> Experiment | None:
        key = self._running_key(product_id)
        lookup = self._get(key["pk"]["S"], key["sk"]["S"], consistent=False)
        return self.get_experiment(lookup["experiment"]["S"]) if lookup else None

    def stop_experiment(self, experiment: Experiment) -> Experiment:
        saved = experiment.model_copy(update={"version": experiment.version + 1})
        put = self._versioned_put(self._experiment_item(saved), experiment.version)
        self._call(
            "transact_write_items",
            TransactItems=[
                {"Put": put},
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": self._running_key(experiment.product),
                        "ConditionExpression": "attribute_not_exists(pk) OR experiment = :e",
                        "ExpressionAttributeValues": {":e": _s(experiment.id)},
                    }
                },
            ],
        )
        return saved

    def list_experiments(self, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Experiment, "CATALOG#EXPERIMENT", "", limit, starting_after)

    def _meter_item(self, meter: Meter) -> dict[str, Any]:
        return self._item(
            f"METER#{meter.id}",
            "METER",
            meter,
            gsi2pk=_s("CATALOG#METER"),
            gsi2sk=_s(f"{_iso(meter.created)}#{meter.id}"),
        )

    def put_meter(self, meter: Meter) -> None:
        """The meter and its event-name lookup (``METERNAME#<event_name>``), in one write."""
        new = "attribute_not_exists(pk)"
        lookup = {"pk": _s(f"METERNAME#{meter.event_name}"), "sk": _s("METERNAME"), "meter": _s(meter.id)}
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": self._meter_item(meter), "ConditionExpression": new}},
                    {"Put": {"TableName": self._table, "Item": lookup, "ConditionExpression": new}},
                ],
            )
        except Conflict as error:
            raise AlreadyExists(
                f"a meter for event_name {meter.event_name} already exists", param="event_name"
            ) from error

    def get_meter(self, meter_id: str) -> Meter:
        return self._require(f"METER#{meter_id}", "METER", Meter, f"no such meter: {meter_id}", "meter")

    def find_meter(self, event_name: str) -> Meter | None:
        lookup = self._get(f"METERNAME#{event_name}", "METERNAME", consistent=False)
        return self.get_meter(lookup["meter"]["S"]) if lookup else None

    def save_meter(self, meter: Meter) -> Meter:
        saved = meter.model_copy(update={"version": meter.version + 1})
        self._call("put_item", **self._versioned_put(self._meter_item(saved), meter.version))
        return saved

    def list_meters(self, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Meter, "CATALOG#METER", "", limit, starting_after)

    @staticmethod
    def _usage_pk(subscription: str, meter: str) -> str:
        return f"USAGE#{subscription}#{meter}"

    @staticmethod
    def _period_sk(period_start: datetime) -> str:
        return f"P#{_iso(period_start)}"

    def get_usage(self, key: UsageKey) -> UsageState:
        item = self._get(self._usage_pk(key.subscription, key.meter), self._period_sk(key.period_start))
        return _usage_state(item) if item else UsageState()

    def late_usage(self, subscription_id: str, meter_id: str) -> list[datetime]:
        item = self._get(self._usage_pk(subscription_id, meter_id), "LATE")
        periods = item.get("periods", {}).get("SS", []) if item else []
        return sorted(datetime.fromisoformat(p.replace("Z", "+00:00")) for p in periods)

    def _billed_usage_actions(self, subscription: str, invoice: Invoice) -> list[dict[str, Any]]:
        """The usage an invoice bills, recorded in its transaction: each aggregate's billed quantity
        (and ``closed`` at the period end), only if its ``seq`` is the one read; late periods billed
        leave the late list."""
        actions: list[dict[str, Any]] = []
        late: dict[str, list[str]] = {}
        for ref in usage_refs(invoice.lines):
            sets = "SET bq = :q" + (", closed = :t" if ref.close else "")
            values: dict[str, Any] = {":q": _n(ref.quantity)}
            if ref.close:
                values[":t"] = {"BOOL": True}
            condition = "attribute_not_exists(seq)" if ref.seq == 0 else "seq = :seq"
            if ref.seq:
                values[":seq"] = _n(ref.seq)
            pk = self._usage_pk(subscription, ref.meter)
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": _s(pk), "sk": _s(self._period_sk(ref.period_start))},
                        "UpdateExpression": sets,
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
            if ref.late:
                late.setdefault(pk, []).append(_iso(ref.period_start))
        for pk, periods in late.items():
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": _s(pk), "sk": _s("LATE")},
                        "UpdateExpression": "DELETE periods :p",
                        "ExpressionAttributeValues": {":p": {"SS": sorted(set(periods))}},
                    }
                }
            )
        return actions

    def _transact_reasons(self, actions: list[dict[str, Any]], token: str | None = None) -> list[dict[str, Any]] | None:
        """A transaction whose cancellation reasons the caller decides on: None when it was written,
        the reasons (one per action) when it was cancelled. Counted as the other calls are.
        ``token``: its ClientRequestToken (an SDK retry of a written transaction answers written)."""
        request: dict[str, Any] = {"TransactItems": actions, "ReturnConsumedCapacity": "TOTAL"}
        if token is not None:
            request["ClientRequestToken"] = token
        try:
            self._db.transact_write_items(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            usage.count("dynamodb.transact_write_items")
            kind, units = capacity_units("transact_write_items", request, {})
            usage.units(f"dynamodb.{kind}", units)
            usage.units(f"dynamodb.{kind}.transact_write_items", units)
            if code == "TransactionCanceledException":
                reasons: list[dict[str, Any]] = list(error.response.get("CancellationReasons", []))  # type: ignore[arg-type]
                return reasons or [{"Code": "TransactionConflict"}] * len(actions)
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise Unavailable("storage is throttling; retry") from error
            raise Unavailable(f"storage failed ({code}); retry") from error
        usage.count("dynamodb.transact_write_items")
        kind, units = capacity_units("transact_write_items", request, {})
        usage.units(f"dynamodb.{kind}", units)
        usage.units(f"dynamodb.{kind}.transact_write_items", units)
        return None

    def record_usage(self, writes: list[UsageWrite]) -> list[UsageOutcome]:
        """Each event once, atomically with its aggregate: per transaction (≤ 100 actions) one dedupe
        put per event (``MEVT#<customer>#<identifier>``, condition: new), one put per distinct value
        new to a unique_count aggregate, and one update per aggregate — ADD for count, sum, distinct
        values and ``seq``; SET under a condition for max and latest; ``attribute_not_exists(closed)``
        unless the period is known to be closed (then its period is added to the ``LATE`` list). A
        cancelled transaction says which condition failed: a known identifier is a duplicate (left
        out), a known value is not counted again, a closed period is written as late, a max or latest
        not beaten is left out; then it is written again without them."""
        outcomes: list[UsageOutcome | None] = [None] * len(writes)
        firsts: dict[tuple[str, str], int] = {}
        for i, write in enumerate(writes):  # the same identifier twice in one call: the first counts
            seen = (write.event.customer, write.event.identifier)
            if seen in firsts:
                outcomes[i] = UsageOutcome.DUPLICATE
            else:
                firsts[seen] = i
        pending = [i for i in range(len(writes)) if outcomes[i] is None]
        while pending:
            chunk: list[int] = []
            keys: set[UsageKey] = set()
            actions = 0  # per event its dedupe put (+ a distinct value); per aggregate its update (+ late list)
            for i in pending:
                key = writes[i].key
                more = 1 + (writes[i].aggregation is Aggregation.UNIQUE_COUNT) + (key not in keys) * 2
                if actions + more > 100:
                    break
                chunk.append(i)
                keys.add(key)
                actions += more
            pending = pending[len(chunk) :]
            self._record_chunk(writes, chunk, outcomes)
        return [outcome or UsageOutcome.DUPLICATE for outcome in outcomes]

    def _record_chunk(self, writes: list[UsageWrite], chunk: list[int], outcomes: list[UsageOutcome | None]) -> None:
        live = list(chunk)
        closed: set[UsageKey] = set()
        known_values: set[tuple[UsageKey, str]] = set()
        beaten: set[tuple[UsageKey, str]] = set()  # (key, "max" | "latest") the stored value already beats
        for attempt in range(12):
            if not live:
                return
            actions, meaning = self._usage_actions(writes, live, closed, known_values, beaten)
            reasons = self._transact_reasons(actions)
            if reasons is None:
                for i in live:
                    outcomes[i] = UsageOutcome.LATE if writes[i].key in closed else UsageOutcome.ACCEPTED
                return
            conflict = False
            for reason, (kind, what) in zip(reasons, meaning, strict=False):
                code = reason.get("Code")
                if code in (None, "None"):
                    continue
                if code != "ConditionalCheckFailed":
                    conflict = True  # a concurrent transaction on one of the items: again
                    continue
                if kind == "dedupe":
                    assert isinstance(what, int)
                    outcomes[what] = UsageOutcome.DUPLICATE
                    live.remove(what)
                elif kind == "unique":
                    assert isinstance(what, tuple)
                    known_values.add(what)
                elif kind == "aggregate":
                    assert isinstance(what, UsageKey)
                    old = reason.get("Item") or {}
                    if old.get("closed", {}).get("BOOL"):
                        closed.add(what)
                    state = _usage_state(old) if old else UsageState()
                    batch = [writes[i].event for i in live if writes[i].key == what]
                    top = max((e.value for e in batch), default=0)
                    if state.max is not None and state.max >= top:
                        beaten.add((what, "max"))
                    newest = max(batch, key=lambda e: (e.timestamp, e.identifier), default=None)
                    if newest is not None and state.latest_at is not None and not _later(newest, state):
                        beaten.add((what, "latest"))
            if conflict:
                _backoff(attempt)
        raise Unavailable("usage could not be recorded (contended); retry")

    def _usage_actions(
        self,
        writes: list[UsageWrite],
        live: list[int],
        closed: set[UsageKey],
        known_values: set[tuple[UsageKey, str]],
        beaten: set[tuple[UsageKey, str]],
    ) -> tuple[list[dict[str, Any]], list[tuple[str, object]]]:
        actions: list[dict[str, Any]] = []
        meaning: list[tuple[str, object]] = []
        by_key: dict[UsageKey, list[int]] = {}
        for i in live:
            write = writes[i]
            event = write.event
            by_key.setdefault(write.key, []).append(i)
            expires = _n(int(write.expires_at.timestamp()))
            record = {
                "pk": _s(f"MEVT#{event.customer}#{event.identifier}"),
                "sk": _s("MEVT"),
                "meter": _s(event.meter),
                "ts": _s(_iso_us(event.timestamp)),
                "v": _n(event.value),
                "expires_at": expires,
            }
            actions.append(
                {"Put": {"TableName": self._table, "Item": record, "ConditionExpression": "attribute_not_exists(pk)"}}
            )
            meaning.append(("dedupe", i))
        for key, indexes in by_key.items():
            pk = self._usage_pk(key.subscription, key.meter)
            sk = self._period_sk(key.period_start)
            events = [writes[i].event for i in indexes]
            aggregation = writes[indexes[0]].aggregation
            new_values = []
            if aggregation is Aggregation.UNIQUE_COUNT:
                for value in dict.fromkeys(e.unique for e in events if e.unique is not None):
                    assert value is not None
                    if (key, value) in known_values:
                        continue
                    new_values.append(value)
                    item = {
                        "pk": _s(pk),
                        "sk": _s(f"{sk}#U#{value}"),
                        "expires_at": _n(int(writes[indexes[0]].expires_at.timestamp())),
                    }
                    actions.append(
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        }
                    )
                    meaning.append(("unique", (key, value)))
            values: dict[str, Any] = {
                ":c": _n(len(events)),
                ":s": _n(sum(e.value for e in events)),
                ":u": _n(len(new_values)),
                ":q": _n(len(events)),
            }
            sets: list[str] = []
            conditions: list[str] = [] if key in closed else ["attribute_not_exists(closed)"]
            if aggregation is Aggregation.MAX and (key, "max") not in beaten:
                values[":mx"] = _n(max(e.value for e in events))
                sets.append("mx = :mx")
                conditions.append("(attribute_not_exists(mx) OR mx < :mx)")
            if aggregation is Aggregation.LATEST and (key, "latest") not in beaten:
                newest = max(events, key=lambda e: (e.timestamp, e.identifier))
                values.update(
                    {":lv": _n(newest.value), ":lt": _s(_iso_us(newest.timestamp)), ":li": _s(newest.identifier)}
                )
                sets.append("lt = :lv, lt_at = :lt, lt_id = :li")
                conditions.append("(attribute_not_exists(lt_at) OR lt_at < :lt OR (lt_at = :lt AND lt_id < :li))")
            expression = "ADD cnt :c, sm :s, uq :u, seq :q" + (" SET " + ", ".join(sets) if sets else "")
            update: dict[str, Any] = {
                "TableName": self._table,
                "Key": {"pk": _s(pk), "sk": _s(sk)},
                "UpdateExpression": expression,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            if conditions:
                update["ConditionExpression"] = " AND ".join(conditions)
            actions.append({"Update": update})
            meaning.append(("aggregate", key))
            if key in closed:  # late: the next invoice adjusts this period
                actions.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": _s(pk), "sk": _s("LATE")},
                            "UpdateExpression": "ADD periods :p",
                            "ExpressionAttributeValues": {":p": {"SS": [_iso(key.period_start)]}},
                        }
                    }
                )
                meaning.append(("late", key))
        return actions, meaning

    # ------------------------------------------------------------------ webhook events
    def record_webhook(self, record: WebhookRecord) -> WebhookRecord | None:
        item = {
            "pk": _s(f"WHEVT#{record.id}"),
            "sk": _s("EVENT"),
            "type": _s(record.type),
            "status": _s(record.status),
            # raw bodies are kept for inspection only: compressed, they cost ~4x fewer write units
            "payload_z": {"B": zlib.compress(record.payload.encode(), 6)},
            "received_at": _s(_iso(record.received_at)),
            "expires_at": _n(int((record.received_at + WEBHOOK_RETENTION).timestamp())),
        }
        if record.note:
            item["note"] = _s(record.note)
        if record.payload_key:  # the body is in the files bucket (too large for an item): only its key here
            del item["payload_z"]
            item["payload_key"] = _s(record.payload_key)
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return None
        except Conflict:
            return self.get_webhook(record.id)

    def claim_once(self, key: str, expires_at: datetime) -> bool:
        """A once-only marker (``CLAIM#<key>``): the conditional put lets the first caller through;
        ``expires_at`` is the table's TTL attribute."""
        item = {"pk": _s(f"CLAIM#{key}"), "sk": _s("CLAIM"), "expires_at": _n(int(expires_at.timestamp()))}
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            return False
        return True

    def is_claimed(self, key: str) -> bool:
        """Whether the once-only marker ``CLAIM#<key>`` is stored (a consistent read)."""
        return self._get(f"CLAIM#{key}", "CLAIM") is not None

    def release_claim(self, key: str) -> None:
        """Delete the once-only marker ``CLAIM#<key>`` (nothing when there is none)."""
        self._call("delete_item", TableName=self._table, Key={"pk": _s(f"CLAIM#{key}"), "sk": _s("CLAIM")})

    def get_webhook(self, event_id: str) -> WebhookRecord | None:
        item = self._get(f"WHEVT#{event_id}", "EVENT")
        if item is None:
            return None
        return WebhookRecord(
            id=event_id,
            type=item["type"]["S"],
            status=item["status"]["S"],
            payload=(
                zlib.decompress(item["payload_z"]["B"]).decode()
                if "payload_z" in item
                else item.get("payload", {}).get("S", "")
            ),
            received_at=datetime.strptime(item["received_at"]["S"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            note=item.get("note", {}).get("S"),
            payload_key=item.get("payload_key", {}).get("S"),
        )

    def mark_webhook(self, event_id: str, status: str, note: str | None = None) -> bool:
        names = {"#s": "status"}
        values: dict[str, Any] = {":s": _s(status), ":done": _s("processed")}
        expression = "SET #s = :s"
        if note:
            expression += ", note = :n"
            values[":n"] = _s(note[:1000])
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": _s(f"WHEVT#{event_id}"), "sk": _s("EVENT")},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk) AND #s <> :done",
                ReturnValues="ALL_NEW",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except Conflict:
            return False


def _iso_us(when: datetime) -> str:
    """A fixed-width UTC time with microseconds: string order is time order (``latest``'s condition)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _usage_state(item: dict[str, Any]) -> UsageState:
    def number(name: str) -> int | None:
        return int(item[name]["N"]) if name in item else None

    latest_at = item.get("lt_at", {}).get("S")
    return UsageState(
        count=number("cnt") or 0,
        sum=number("sm") or 0,
        max=number("mx"),
        latest=number("lt"),
        latest_at=datetime.fromisoformat(latest_at.replace("Z", "+00:00")) if latest_at else None,
        latest_id=item.get("lt_id", {}).get("S"),
        unique=number("uq") or 0,
        seq=number("seq") or 0,
        closed=bool(item.get("closed", {}).get("BOOL")),
        billed_quantity=number("bq") or 0,
    )


def _later(event: Any, state: UsageState) -> bool:
    from kassa.domain.usage import later

    return later(event.timestamp, event.identifier, state.latest_at, state.latest_id)


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (strings as UTF-8, numbers ~1 byte per 2 digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "B" in value:
            size += len(value["B"])
        elif "N" in value:
            size += len(value["N"]) // 2 + 1
        else:
            size += len(json.dumps(value))
    return size


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def capacity_units(op: str, request: dict[str, Any], response: dict[str, Any]) -> tuple[str, float]:
    """Capacity units an on-demand table bills for this call, from the item sizes (DynamoDB's
    rules: writes 1 WRU per KB, transactional writes 2 per KB; strongly consistent reads 1 RRU
    per 4 KB, eventually consistent half, queries summed over the page). Computed here because
    moto's ReturnConsumedCapacity figures are not faithful; on AWS they agree."""
    if op == "get_item":
        size = item_size(response["Item"]) if "Item" in response else 0
        units = max(1, _ceil_div(size, 4096))
        return "read", units if request.get("ConsistentRead") else units / 2
    if op == "batch_get_item":  # each item rounded up to 4 KB, eventually consistent
        found = [i for items in response.get("Responses", {}).values() for i in items]
        return "read", sum(max(1, _ceil_div(item_size(i), 4096)) for i in found) / 2
    if op == "query":
        size = sum(item_size(i) for i in response.get("Items", []))
        return "read", max(1, _ceil_div(size, 4096)) / 2  # index queries are eventually consistent
    if op == "transact_write_items":
        total = 0
        for action in request["TransactItems"]:
            body = action.get("Put") or action.get("Update") or action.get("Delete") or action.get("ConditionCheck")
            total += 2 * max(1, _ceil_div(item_size(body.get("Item", body.get("Key", {}))), 1024))
        return "write", float(total)
    if op == "put_item":
        return "write", float(max(1, _ceil_div(item_size(request["Item"]), 1024)))
    if op == "update_item":  # billed on the larger of the item before and after; the item is read back
        return "write", float(max(1, _ceil_div(item_size(response.get("Attributes", {})), 1024)))
    return "write", 1.0


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
