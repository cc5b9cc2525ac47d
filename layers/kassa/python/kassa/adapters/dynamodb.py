"""DynamoDB implementation of the BillingStore port (single table, see docs/data-model.md).

Every entity is one item: key attributes, the attributes conditions need (version, status), index
attributes, and the model as a JSON document in ``doc``. ClientErrors are translated into domain
errors here and never leak upward.
"""

from __future__ import annotations

import json
import random
import time
import zlib
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
from kassa.domain.invoice import Invoice, InvoiceStatus, format_number
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.services.ports import Page, WebhookRecord

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
    def put_coupon(self, coupon: Coupon) -> None:
        item = self._item(f"COUPON#{coupon.id}", "COUPON", coupon, times_redeemed=_n(coupon.times_redeemed))
        self._put_new(item, f"coupon {coupon.id}")

    def get_coupon(self, coupon_id: str) -> Coupon:
        return self._require(f"COUPON#{coupon_id}", "COUPON", Coupon, f"no such coupon: {coupon_id}", "coupon")

    def put_promotion_code(self, code: PromotionCode) -> None:
        item = self._item(f"PROMO#{code.code.upper()}", "PROMO", code, times_redeemed=_n(code.times_redeemed))
        self._put_new(item, f"promotion code {code.code}")

    def get_promotion_code(self, code: str) -> PromotionCode:
        return self._require(
            f"PROMO#{code.upper()}", "PROMO", PromotionCode, f"no such promotion code: {code}", "promotion_code"
        )

    def count_redemption(self, coupon: Coupon, code: PromotionCode | None) -> None:
        """Save one more redemption of the coupon (and code): conditional on the count read, so two
        checkouts racing for the last redemption cannot both get it (Conflict)."""
        actions = []
        for pk, sk, model, before in (
            (f"COUPON#{coupon.id}", "COUPON", coupon, coupon.times_redeemed - 1),
            *(((f"PROMO#{code.code.upper()}", "PROMO", code, code.times_redeemed - 1),) if code else ()),
        ):
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": self._item(pk, sk, model, times_redeemed=_n(before + 1)),
                        "ConditionExpression": "times_redeemed = :t",
                        "ExpressionAttributeValues": {":t": _n(before)},
                    }
                }
            )
        self._call("transact_write_items", TransactItems=actions)

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

    def issue_credit_note(self, note: CreditNote, invoice: Invoice, customer: Customer | None) -> Invoice:
        """The note (once: its id is derived from the invoice and a sequence), the invoice's new
        amounts and, for a credit to the balance, the customer — in one transaction."""
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._item(f"INV#{invoice.id}", f"CN#{note.number}", note),
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

    def _cus_item(self, customer: Customer) -> dict[str, Any]:
        extra: dict[str, dict[str, str]] = {}
        notice = card_expiry_notice_at(customer)
        if notice is not None:  # the dunning index: the card_expiring email falls due then
            extra.update(self._dunning_keys(customer.id, notice))
        return self._item(f"CUS#{customer.id}", "CUSTOMER", customer, **extra)

    def _dunning_keys(self, entity_id: str, at: datetime) -> dict[str, dict[str, str]]:
        return {"gsi1pk": _s(f"DUN#{shard_of(entity_id, self._shards)}"), "gsi1sk": _s(f"{_iso(at)}#{entity_id}")}

    # ------------------------------------------------------------------ subscriptions
    def _sub_item(self, sub: Subscription) -> dict[str, Any]:
        extra: dict[str, dict[str, str]] = {
            "status": _s(sub.status.value),
            "gsi2pk": _s(f"CUS#{sub.customer}"),
            "gsi2sk": _s(f"SUB#{_iso(sub.created)}#{sub.id}"),
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
            **extra,
        )

    def invoices_by_tax_date(self, start: date, end: date) -> list[Invoice]:
        """Finalized invoices whose tax point is in [start, end] (one Query per month, never a Scan)."""
        if end < start:
            raise InvalidInput("the period ends before it starts", param="to")
        found: list[Invoice] = []
        month = date(start.year, start.month, 1)
        while month <= end:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "gsi3",
                "KeyConditionExpression": "gsi3pk = :p AND gsi3sk BETWEEN :a AND :b",
                "ExpressionAttributeValues": {
                    ":p": _s(f"TAXMONTH#{month:%Y-%m}"),
                    ":a": _s(start.isoformat()),
                    ":b": _s(end.isoformat() + "#~"),
                },
            }
            while True:
                response = self._call("query", **kwargs)
                found += [self._load(i, Invoice) for i in response.get("Items", [])]
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
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": self._sub_item(sub),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
            final = None
            if invoice is not None:
                seq, counter = self._next_number()
                final = invoice.finalize(format_number(invoice_prefix, seq), invoice.created)
                actions += [
                    counter,
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
        self._call("put_item", **self._versioned_put(self._sub_item(saved), sub.version))
        return saved

    def get_invoice(self, invoice_id: str) -> Invoice:
        found = self.find_invoice(invoice_id)
        if found is None:
            raise NotFound(f"no such invoice: {invoice_id}", param="invoice")
        return found

    def find_invoice(self, invoice_id: str) -> Invoice | None:
        item = self._get(f"INV#{invoice_id}", "INVOICE")
        return self._load(item, Invoice) if item else None

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
        self._call(
            "transact_write_items",
            TransactItems=[
                {"Put": self._versioned_put(self._inv_item(inv2), invoice.version)},
                {"Put": self._versioned_put(self._sub_item(sub2), sub.version)},
            ],
        )
        return inv2, sub2

    def renew(
        self, sub: Subscription, invoice: Invoice, invoice_prefix: str, customer: Customer | None = None
    ) -> tuple[Subscription, Invoice]:
        """Advance ``sub`` and store its period's invoice once; a draft is finalized with the next
        gapless number, any other status (a draft kept or voided under a pause) is stored as it is."""
        sub2 = sub.model_copy(update={"version": sub.version + 1, "latest_invoice": invoice.id})
        extra: list[dict[str, Any]] = []
        if customer is not None:  # its balance moved with this invoice: in the same transaction
            saved_customer = customer.model_copy(update={"version": customer.version + 1})
            item = self._cus_item(saved_customer)
            extra.append({"Put": self._versioned_put(item, customer.version)})
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
                        {"Put": self._versioned_put(self._sub_item(sub2), sub.version)},
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
                _backoff(attempt)
        raise Conflict("could not assign an invoice number; retry")

    def list_customer_invoices(self, customer_id: str, limit: int, starting_after: str | None) -> Page:
        return self._query_page(Invoice, f"CUS#{customer_id}", "INV#", limit, starting_after)

    def list_customer_subscriptions(self, customer_id: str) -> list[Subscription]:
        return list(self._query_page(Subscription, f"CUS#{customer_id}", "SUB#", 100, None).items)

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
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return None
        except Conflict:
            return self.get_webhook(record.id)

    def get_webhook(self, event_id: str) -> WebhookRecord | None:
        item = self._get(f"WHEVT#{event_id}", "EVENT")
        if item is None:
            return None
        return WebhookRecord(
            id=event_id,
            type=item["type"]["S"],
            status=item["status"]["S"],
            payload=zlib.decompress(item["payload_z"]["B"]).decode() if "payload_z" in item else item["payload"]["S"],
            received_at=datetime.strptime(item["received_at"]["S"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            note=item.get("note", {}).get("S"),
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
