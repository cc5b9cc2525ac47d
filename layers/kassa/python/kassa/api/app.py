"""The REST API (checkout, catalog, customers, subscriptions, invoices) on Powertools' resolver.

Routes call one service each. Domain errors become 4xx ``{"error": {type, code, message, param}}``
in one place; request validation errors name the field; every /v1 route needs the secret key.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from kassa.adapters import container
from kassa.api.common import new_app, obj, page
from kassa.api.models import (
    CancelIn,
    ChangeIn,
    CheckoutIn,
    CompleteIn,
    CouponIn,
    CustomerIn,
    InvoiceItemIn,
    PauseCollectionIn,
    PriceIn,
    ProductIn,
    PromotionCodeIn,
)
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.catalog import Recurring
from kassa.domain.credit_notes import CreditNoteRequest
from kassa.domain.errors import InvalidInput
from kassa.domain.settings import MerchantSettings

app = new_app()
app.enable_swagger(
    path="/docs",
    title="kassa API",
    version="1",
    description="Subscription billing: catalog, checkout, subscriptions, invoices. Amounts are integers in the "
    "currency's minor unit.",
    security_schemes={"secretKey": HTTPBearer(description="the merchant's kassa secret key")},
    security=[{"secretKey": []}],
)

MAX_LIMIT = 100


def _limit() -> int:
    raw = app.current_event.get_query_string_value("limit", "10") or "10"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
    return int(raw)


def created(body: dict[str, Any] | None) -> Response[dict[str, Any]]:
    return Response(status_code=201, content_type="application/json", body=body)


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(app.get_openapi_json_schema(title="kassa API", version="1"))
    return schema


# ---------------------------------------------------------------- catalog
@app.post("/v1/products", tags=["catalog"])
def create_product(body: ProductIn) -> Response[dict[str, Any]]:
    product = container.billing(with_gateway=False).create_product(body.name, body.description, body.tax_code)
    return created(obj("product", product))


@app.get("/v1/products", tags=["catalog"])
def list_products() -> dict[str, Any]:
    result = container.store().list_products(_limit(), app.current_event.get_query_string_value("starting_after"))
    return page("product", result.items, result.has_more)


@app.post("/v1/prices", tags=["catalog"])
def create_price(body: PriceIn) -> Response[dict[str, Any]]:
    price = container.billing(with_gateway=False).create_price(
        body.product,
        body.currency,
        body.unit_amount,
        Recurring(**body.recurring.model_dump()),
        body.tax_behavior,
        body.nickname,
    )
    return created(obj("price", price))


@app.get("/v1/prices", tags=["catalog"])
def list_prices() -> dict[str, Any]:
    result = container.store().list_prices(_limit(), app.current_event.get_query_string_value("starting_after"))
    return page("price", result.items, result.has_more)


@app.get("/v1/prices/<price_id>", tags=["catalog"])
def get_price(price_id: str) -> dict[str, Any] | None:
    return obj("price", container.store().get_price(price_id))


# ---------------------------------------------------------------- coupons
@app.post("/v1/coupons", tags=["coupons"])
def create_coupon(body: CouponIn) -> Response[dict[str, Any]]:
    fields = body.model_dump(exclude_none=True)
    if "applies_to" in fields:
        fields["applies_to"] = tuple(fields["applies_to"])
    return created(obj("coupon", container.billing(with_gateway=False).create_coupon(**fields)))


@app.get("/v1/coupons/<coupon_id>", tags=["coupons"])
def get_coupon(coupon_id: str) -> dict[str, Any] | None:
    return obj("coupon", container.store().get_coupon(coupon_id))


@app.post("/v1/promotion_codes", tags=["coupons"])
def create_promotion_code(body: PromotionCodeIn) -> Response[dict[str, Any]]:
    fields = body.model_dump(exclude_none=True, exclude={"code", "coupon"})
    promo = container.billing(with_gateway=False).create_promotion_code(body.code, body.coupon, **fields)
    return created(obj("promotion_code", promo))


# ---------------------------------------------------------------- customers
@app.post("/v1/customers", tags=["customers"])
def create_customer(body: CustomerIn) -> Response[dict[str, Any]]:
    customer = container.billing().create_customer(
        body.email, body.name, body.address, body.preferred_locale, body.tax_id, body.tax_exempt
    )
    return created(obj("customer", customer))


@app.get("/v1/customers/<customer_id>", tags=["customers"])
def get_customer(customer_id: str) -> dict[str, Any] | None:
    return obj("customer", container.store().get_customer(customer_id))


@app.get("/v1/customers/<customer_id>/invoices", tags=["invoices"])
def list_customer_invoices(customer_id: str) -> dict[str, Any]:
    store = container.store()
    store.get_customer(customer_id)
    result = store.list_customer_invoices(
        customer_id, _limit(), app.current_event.get_query_string_value("starting_after")
    )
    return page("invoice", result.items, result.has_more)


@app.get("/v1/customers/<customer_id>/subscriptions", tags=["subscriptions"])
def list_customer_subscriptions(customer_id: str) -> dict[str, Any]:
    store = container.store()
    store.get_customer(customer_id)
    return page("subscription", store.list_customer_subscriptions(customer_id), False)


# ---------------------------------------------------------------- checkout
@app.post("/v1/checkout", tags=["checkout"])
def checkout(body: CheckoutIn) -> Response[dict[str, Any]]:
    if body.customer_id is None and body.customer is None:
        raise InvalidInput("give customer_id or customer", param="customer")
    c = body.customer
    result = container.billing().start_checkout(
        price_id=body.price_id,
        quantity=body.quantity,
        customer_id=body.customer_id,
        email=c.email if c else None,
        name=c.name if c else None,
        address=c.address if c else None,
        locale=c.preferred_locale if c else "en",
        trial_days=body.trial_days,
        tax_id=c.tax_id if c else None,
        tax_exempt=c.tax_exempt if c else False,
        billing_cycle_anchor=body.billing_cycle_anchor,
        backdate_start_date=body.backdate_start_date,
        proration_behavior=body.proration_behavior,
        coupon=body.coupon,
        promotion_code=body.promotion_code,
        missing_payment_method=body.trial_end_behavior,
    )
    return created(
        {
            "subscription": obj("subscription", result.subscription),
            "invoice": obj("invoice", result.invoice),
            "customer": obj("customer", result.customer),
            "client_secret": result.setup_intent.client_secret,
            "setup_intent_id": result.setup_intent.id,
            "publishable_key": result.publishable_key,
        }
    )


@app.post("/v1/checkout/<subscription_id>/complete", tags=["checkout"])
def complete_checkout(subscription_id: str, body: CompleteIn) -> dict[str, Any]:
    result = container.billing().complete_checkout(subscription_id, body.setup_intent_id)
    response: dict[str, Any] = {
        "subscription": obj("subscription", result.subscription),
        "invoice": obj("invoice", result.invoice),
    }
    if result.charge is not None and result.charge.client_secret and result.charge.status.value == "requires_action":
        response["payment_intent_client_secret"] = result.charge.client_secret
    return response


# ---------------------------------------------------------------- merchant settings
@app.get("/v1/settings", tags=["settings"])
def get_settings() -> dict[str, Any] | None:
    return obj("settings", container.store().get_settings())


@app.put("/v1/settings", tags=["settings"])
def put_settings(body: MerchantSettings) -> dict[str, Any] | None:
    container.store().put_settings(body)
    return obj("settings", body)


# ---------------------------------------------------------------- reads
@app.get("/v1/subscriptions/<subscription_id>", tags=["subscriptions"])
def get_subscription(subscription_id: str) -> dict[str, Any] | None:
    return obj("subscription", container.store().get_subscription(subscription_id))


@app.post("/v1/subscriptions/<subscription_id>/cancel", tags=["subscriptions"])
def cancel_subscription(subscription_id: str, body: CancelIn) -> dict[str, Any] | None:
    details = CancellationDetails(reason=body.reason, feedback=body.feedback, comment=body.comment)
    billing = container.billing(with_gateway=body.prorate)  # a final invoice may need charging
    return obj(
        "subscription",
        billing.cancel(subscription_id, at_period_end=body.at_period_end, details=details, prorate=body.prorate),
    )


def _change(subscription_id: str, body: ChangeIn, preview: bool) -> dict[str, Any]:
    if body.price_id is None and body.quantity is None:
        raise InvalidInput("give price_id and/or quantity", param="price_id")
    result = container.billing().change_plan(
        subscription_id,
        price_id=body.price_id,
        quantity=body.quantity,
        behavior=body.proration_behavior,
        schedule_downgrade=body.schedule_downgrade_at_period_end,
        preview=preview,
    )
    out = {"subscription": obj("subscription", result.subscription), "invoice": obj("invoice", result.invoice)}
    if preview:
        out["upcoming_invoice"] = obj("invoice", result.upcoming)
    return out


@app.post("/v1/subscriptions/<subscription_id>/change", tags=["subscriptions"])
def change_subscription(subscription_id: str, body: ChangeIn) -> dict[str, Any]:
    """Change the price and/or quantity, prorated to the second (or scheduled for the period end)."""
    return _change(subscription_id, body, preview=False)


@app.post("/v1/subscriptions/<subscription_id>/preview", tags=["subscriptions"])
def preview_change(subscription_id: str, body: ChangeIn) -> dict[str, Any]:
    """The exact lines and totals a change would produce (invoiced now, or on the next renewal); changes nothing."""
    return _change(subscription_id, body, preview=True)


@app.post("/v1/subscriptions/<subscription_id>/pause_collection", tags=["subscriptions"])
def pause_collection(subscription_id: str, body: PauseCollectionIn) -> dict[str, Any] | None:
    billing = container.billing(with_gateway=False)
    return obj("subscription", billing.pause_collection(subscription_id, body.behavior, body.resumes_at))


@app.post("/v1/subscriptions/<subscription_id>/resume_collection", tags=["subscriptions"])
def resume_collection(subscription_id: str) -> dict[str, Any] | None:
    return obj("subscription", container.billing(with_gateway=False).resume_collection(subscription_id))


@app.post("/v1/subscriptions/<subscription_id>/resume", tags=["subscriptions"])
def resume_subscription(subscription_id: str) -> dict[str, Any]:
    """Resume a paused subscription: the cycle restarts now and the new period is invoiced at once."""
    result = container.billing().resume(subscription_id)
    return {"subscription": obj("subscription", result.subscription), "invoice": obj("invoice", result.invoice)}


@app.post("/v1/subscriptions/<subscription_id>/invoice_items", tags=["subscriptions"])
def add_invoice_item(subscription_id: str, body: InvoiceItemIn) -> Response[dict[str, Any]]:
    """A one-off item added to the subscription's next invoice."""
    billing = container.billing(with_gateway=False)
    sub = billing.add_invoice_item(
        subscription_id, amount=body.amount, description=body.description, quantity=body.quantity
    )
    return created(obj("subscription", sub))


@app.post("/v1/subscriptions/<subscription_id>/uncancel", tags=["subscriptions"])
def undo_cancellation(subscription_id: str) -> dict[str, Any] | None:
    return obj("subscription", container.billing(with_gateway=False).undo_cancel(subscription_id))


@app.get("/v1/customers/<customer_id>/entitlements", tags=["customers"])
def customer_entitlements(customer_id: str) -> dict[str, Any]:
    found = container.billing(with_gateway=False).entitlements_of(customer_id)
    return {"object": "list", "data": [{"object": "entitlement", **e.model_dump(mode="json")} for e in found]}


@app.post("/v1/invoices/<invoice_id>/credit_notes", tags=["invoices"])
def create_credit_note(invoice_id: str, body: CreditNoteRequest) -> Response[dict[str, Any]]:
    note, invoice = container.billing().credit_invoice(invoice_id, body)
    return created({"credit_note": obj("credit_note", note), "invoice": obj("invoice", invoice)})


@app.get("/v1/invoices/<invoice_id>/credit_notes", tags=["invoices"])
def list_credit_notes(invoice_id: str) -> dict[str, Any]:
    store = container.store()
    store.get_invoice(invoice_id)
    return page("credit_note", store.list_credit_notes(invoice_id), False)


@app.get("/v1/invoices/<invoice_id>", tags=["invoices"])
def get_invoice(invoice_id: str) -> dict[str, Any] | None:
    return obj("invoice", container.store().get_invoice(invoice_id))
