"""The REST API (checkout, catalog, customers, subscriptions, invoices) on Powertools' resolver.

Routes call one service each. Domain errors become 4xx ``{"error": {type, code, message, param}}``
in one place; request validation errors name the field; every /v1 route needs the secret key.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response

from kassa.adapters import container
from kassa.adapters.container import DEFAULT_STRIPE_JS_URL
from kassa.api import accounting_routes, card_page, dashboard, openapi, reports
from kassa.api.audit import audit_middleware
from kassa.api.common import error_response, new_app, obj, page, query_date, query_limit, static_text
from kassa.api.idempotency import idempotency_middleware
from kassa.api.models import (
    AssignmentIn,
    BillingThresholdsIn,
    CancelIn,
    ChangeIn,
    CheckoutIn,
    CompleteIn,
    ConfirmPaymentIn,
    CouponIn,
    CustomerIn,
    CustomerUpdateIn,
    DiscountIn,
    ExperimentIn,
    InvoiceItemIn,
    MandateAcceptanceIn,
    MeterIn,
    PauseCollectionIn,
    PayIn,
    PortalConfirmIn,
    PortalConfirmPaymentIn,
    PortalTokenIn,
    PriceIn,
    PriceUpdateIn,
    ProductIn,
    ProductUpdateIn,
    PromotionCodeIn,
    PromotionCodeUpdateIn,
    RedirectPaymentIn,
    RefundIn,
    UsageAlertIn,
)
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.catalog import Recurring
from kassa.domain.credit_notes import CreditNoteRequest, notes_with_tax
from kassa.domain.customer import CLEARABLE_FIELDS
from kassa.domain.errors import InvalidInput, NotFound
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.links import CARD_PURPOSES, INVOICE_PURPOSES, LinkRefused, sign_link, signed_url, verify_link
from kassa.domain.payment_methods import may_charge
from kassa.domain.settings import MerchantSettings
from kassa.services import (
    cancellation,
    catalog,
    checkout,
    collection,
    coupons,
    credit_notes,
    customers,
    experiments,
    hosted_invoice,
    invoice_actions,
    invoicing,
    listing,
    pausing,
    payments,
    plan_changes,
    usage,
)
from kassa.services.ports import ChargeStatus, MandateAcceptance

app = new_app(dashboard_sessions=True)  # the dashboard (kassa.api.dashboard) calls /v1 with its session
# after auth: Idempotency-Key on every POST /v1 (api/idempotency.py), then the audit trail of every
# write (api/audit.py), inside it: a replayed answer records nothing again
app.use(middlewares=[idempotency_middleware, audit_middleware])
app.include_router(accounting_routes.router)  # audit trail, journal, bookkeeping CSVs, revenue report
TITLE, VERSION = "kassa API", "1"
DESCRIPTION = (
    "Subscription billing: catalog, checkout, subscriptions, invoices, dunning, tax. Amounts are integers in the "
    'currency\'s minor unit. Errors are {"error": {"type", "code", "message", "param"}} with a 4xx status.'
)


def _limit() -> int:
    return query_limit(app)


def created(body: dict[str, Any] | None) -> Response[dict[str, Any]]:
    return Response(status_code=201, content_type="application/json", body=body)


def openapi_document() -> dict[str, Any]:
    """The document of every route (this function's and the tax function's), served from here."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer  # ~90 ms: not on a cold start

    from kassa.api import meter_events_app, tax_app  # the other functions' resolvers, only for the document

    return openapi.openapi_document(
        [app, tax_app.app, meter_events_app.app],
        server=openapi.server_url(app),
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        security_schemes={"secretKey": HTTPBearer(description="the merchant's kassa secret key")},
        security=[{"secretKey": []}],
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_json() -> dict[str, Any]:
    return openapi_document()


@app.get("/docs", include_in_schema=False)
def docs() -> Any:
    """Swagger UI over the same document as /openapi.json (``?format=json``: the document itself)."""
    document = openapi_document()
    if app.current_event.get_query_string_value("format") == "json":
        return document
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=openapi.swagger_page(document))


# ---------------------------------------------------------------- catalog
@app.post("/v1/products", tags=["catalog"], status_code=201)
def create_product(body: ProductIn) -> Response[dict[str, Any]]:
    product = catalog.create_product(container.billing(with_gateway=False), body.name, body.description, body.tax_code)
    return created(obj("product", product))


@app.get("/v1/products", tags=["catalog"])
def list_products() -> dict[str, Any]:
    """Products, newest first; ``active=true|false`` lists only the active or only the archived ones."""
    result = catalog.list_products(
        container.store(), _limit(), app.current_event.get_query_string_value("starting_after"), _active_filter()
    )
    return page("product", result.items, result.has_more)


@app.get("/v1/products/<product_id>", tags=["catalog"])
def get_product(product_id: str) -> dict[str, Any] | None:
    return obj("product", container.store().get_product(product_id))


@app.post("/v1/products/<product_id>", tags=["catalog"])
def update_product(product_id: str, body: ProductUpdateIn) -> dict[str, Any] | None:
    """Change name, description, tax_code or active (false archives: no new prices); publishes product.updated."""
    given = _cleared(body, "description", "tax_code")
    product = catalog.update_product(container.billing(with_gateway=False), product_id, **given)
    return obj("product", product)


@app.post("/v1/prices", tags=["catalog"], status_code=201)
def create_price(body: PriceIn) -> Response[dict[str, Any]]:
    """A per-unit, package (transform_quantity) or tiered (graduated or volume) recurring price."""
    price = catalog.create_price(
        container.billing(with_gateway=False),
        product_id=body.product,
        currency=body.currency,
        terms=body.terms(),  # InvalidInput names the field, e.g. tiers[2].up_to
        recurring=Recurring(**body.recurring.model_dump()),
        tax_behavior=body.tax_behavior,
        nickname=body.nickname,
        payment_method_types=body.payment_method_types,
    )
    return created(obj("price", price))


@app.get("/v1/prices", tags=["catalog"])
def list_prices() -> dict[str, Any]:
    """Prices, newest first; ``active=true|false`` lists only the active or only the archived ones."""
    result = catalog.list_prices(
        container.store(), _limit(), app.current_event.get_query_string_value("starting_after"), _active_filter()
    )
    return page("price", result.items, result.has_more)


@app.get("/v1/prices/<price_id>", tags=["catalog"])
def get_price(price_id: str) -> dict[str, Any] | None:
    return obj("price", container.store().get_price(price_id))


@app.post("/v1/prices/<price_id>", tags=["catalog"])
def update_price(price_id: str, body: PriceUpdateIn) -> dict[str, Any] | None:
    """Archive or unarchive (active) or rename (nickname); amounts and terms are immutable. Publishes price.updated."""
    given = _cleared(body, "nickname")
    price = catalog.update_price(
        container.billing(with_gateway=False), price_id, active=given.get("active"), nickname=given.get("nickname")
    )
    return obj("price", price)


def _active_filter() -> bool | None:
    raw = app.current_event.get_query_string_value("active")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidInput("active must be true or false", param="active")
    return raw == "true"


def _cleared(body: ProductUpdateIn | PriceUpdateIn, *clearable: str) -> dict[str, Any]:
    """The fields the body gives; an explicit null removes a clearable text field (as ``""`` does)
    and is refused on the others."""
    given: dict[str, Any] = {}
    for key in body.model_fields_set:
        value = getattr(body, key)
        if value is None and key not in clearable:
            raise InvalidInput(f"{key} cannot be null", param=key)
        given[key] = "" if value is None else value
    return given


# ---------------------------------------------------------------- coupons
@app.post("/v1/coupons", tags=["coupons"], status_code=201)
def create_coupon(body: CouponIn) -> Response[dict[str, Any]]:
    fields = body.model_dump(exclude_none=True)
    if "applies_to" in fields:
        fields["applies_to"] = tuple(fields["applies_to"])
    return created(obj("coupon", coupons.create_coupon(container.billing(with_gateway=False), **fields)))


@app.get("/v1/coupons/<coupon_id>", tags=["coupons"])
def get_coupon(coupon_id: str) -> dict[str, Any] | None:
    return obj("coupon", container.store().get_coupon(coupon_id))


@app.post("/v1/promotion_codes", tags=["coupons"], status_code=201)
def create_promotion_code(body: PromotionCodeIn) -> Response[dict[str, Any]]:
    fields = body.model_dump(exclude_none=True, exclude={"code", "coupon"})
    promo = coupons.create_promotion_code(container.billing(with_gateway=False), body.code, body.coupon, **fields)
    return created(obj("promotion_code", promo))


@app.get("/v1/coupons", tags=["coupons"])
def list_coupons() -> dict[str, Any]:
    """Coupons, newest first; ``active=true|false``: only those that can (cannot) be redeemed now."""
    result = coupons.list_coupons(
        container.billing(with_gateway=False),
        _limit(),
        app.current_event.get_query_string_value("starting_after"),
        _active_filter(),
    )
    return page("coupon", result.items, result.has_more)


@app.delete("/v1/coupons/<coupon_id>", tags=["coupons"])
def delete_coupon(coupon_id: str) -> dict[str, Any]:
    """Delete a coupon: it can no longer be redeemed (nor its codes); discounts made from it go on."""
    coupon = coupons.delete_coupon(container.billing(with_gateway=False), coupon_id)
    return {"id": coupon.id, "object": "coupon", "deleted": True}


@app.get("/v1/promotion_codes", tags=["coupons"])
def list_promotion_codes() -> dict[str, Any]:
    """Promotion codes, newest first; ``active=true|false``, ``code=`` (case-insensitive), ``coupon=``."""
    query = app.current_event.get_query_string_value
    result = coupons.list_promotion_codes(
        container.billing(with_gateway=False),
        _limit(),
        query("starting_after"),
        _active_filter(),
        code=query("code"),
        coupon=query("coupon"),
    )
    return page("promotion_code", result.items, result.has_more)


@app.get("/v1/promotion_codes/<promotion_code_id>", tags=["coupons"])
def get_promotion_code(promotion_code_id: str) -> dict[str, Any] | None:
    return obj("promotion_code", container.store().get_promotion_code_by_id(promotion_code_id))


@app.post("/v1/promotion_codes/<promotion_code_id>", tags=["coupons"])
def update_promotion_code(promotion_code_id: str, body: PromotionCodeUpdateIn) -> dict[str, Any] | None:
    """Deactivate (``active: false``) or reactivate a code; publishes promotion_code.updated."""
    promo = coupons.update_promotion_code(container.billing(with_gateway=False), promotion_code_id, body.active)
    return obj("promotion_code", promo)


@app.post("/v1/subscriptions/<subscription_id>/discount", tags=["coupons"])
def apply_subscription_discount(subscription_id: str, body: DiscountIn) -> dict[str, Any] | None:
    """Redeem a coupon or promotion code for a running subscription (the checkout's rules), replacing
    its discount; the first invoice it covers is the next one."""
    if (body.coupon is None) == (body.promotion_code is None):
        raise InvalidInput("give a coupon or a promotion_code (one of them)", param="coupon")
    sub = coupons.apply_subscription_discount(
        container.billing(with_gateway=False), subscription_id, body.coupon, body.promotion_code
    )
    return obj("subscription", sub)


@app.delete("/v1/subscriptions/<subscription_id>/discount", tags=["coupons"])
def remove_subscription_discount(subscription_id: str) -> dict[str, Any] | None:
    """Remove the subscription's discount: the next invoices are not discounted."""
    billing = container.billing(with_gateway=False)
    return obj("subscription", coupons.remove_subscription_discount(billing, subscription_id))


# ---------------------------------------------------------------- customers
@app.post("/v1/customers", tags=["customers"], status_code=201)
def create_customer(body: CustomerIn) -> Response[dict[str, Any]]:
    customer = customers.create_customer(
        container.billing(),
        body.email,
        body.name,
        body.address,
        body.preferred_locale,
        body.tax_id,
        body.tax_exempt,
        body.peppol_id,
    )
    return created(obj("customer", customer))


@app.get("/v1/customers/<customer_id>", tags=["customers"])
def get_customer(customer_id: str) -> dict[str, Any] | None:
    return obj("customer", container.store().get_customer(customer_id))


@app.post("/v1/customers/<customer_id>", tags=["customers"])
def update_customer(customer_id: str, body: CustomerUpdateIn) -> dict[str, Any] | None:
    """Change email (unique: 409 naming email), name, address, preferred_locale, tax_id, tax_exempt or peppol_id;
    the Stripe customer follows; publishes customer.updated with the previous values."""
    changes: dict[str, Any] = {}
    for key in body.model_fields_set:
        value = getattr(body, key)
        if value is None and key not in CLEARABLE_FIELDS:
            raise InvalidInput(f"{key} cannot be null", param=key)
        changes[key] = None if value == "" and key in CLEARABLE_FIELDS else value
    return obj("customer", customers.update_customer(container.billing(), customer_id, changes))


@app.get("/v1/customers/<customer_id>/invoices", tags=["invoices"])
def list_customer_invoices(customer_id: str) -> dict[str, Any]:
    store = container.store()
    store.get_customer(customer_id)
    result = store.list_customer_invoices(
        customer_id, _limit(), app.current_event.get_query_string_value("starting_after")
    )
    return invoice_list(result.items, result.has_more)


@app.get("/v1/customers/<customer_id>/subscriptions", tags=["subscriptions"])
def list_customer_subscriptions(customer_id: str) -> dict[str, Any]:
    store = container.store()
    store.get_customer(customer_id)
    return page("subscription", store.list_customer_subscriptions(customer_id), False)


# ---------------------------------------------------------------- checkout
@app.post("/v1/checkout", tags=["checkout"], status_code=201)
def create_checkout(body: CheckoutIn) -> Response[dict[str, Any]]:
    """Start a checkout: the customer, the subscription and the SetupIntent for Stripe.js."""
    if body.customer_id is None and body.customer is None:
        raise InvalidInput("give customer_id or customer", param="customer")
    c = body.customer
    if (body.items is None) == (body.price_id is None):
        raise InvalidInput("give items, or price_id (and quantity) for one item", param="items")
    result = checkout.start_checkout(
        container.billing(),
        price_id=body.price_id,
        quantity=body.quantity,
        items=[(item.price, item.quantity) for item in body.items] if body.items is not None else None,
        billing_thresholds=body.billing_thresholds.model_dump() if body.billing_thresholds else None,
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
            "invoice": invoice_json(result.invoice),
            # never more of the customer than who it is: whoever calls checkout learns nothing else
            "customer": {
                "object": "customer",
                "id": result.customer.id,
                "email": result.customer.email,
                "name": result.customer.name,
            },
            "client_secret": result.setup_intent.client_secret,
            "setup_intent_id": result.setup_intent.id,
            "publishable_key": result.publishable_key,
            "payment_method_types": list(result.payment_method_types),
            # the first invoice may be paid at the customer's bank instead (POST …/redirect_payment)
            "redirect_payment_method_types": list(result.redirect_payment_method_types),
            "mandate": _mandate_terms(result.payment_method_types, result.customer.preferred_locale),
        }
    )


def _mandate_terms(types: tuple[str, ...] | list[str], locale: str | None) -> dict[str, Any] | None:
    """What a page shows before a bank account is saved, in the customer's language: the SEPA
    rulebook's mandate with the merchant's name and SEPA creditor identifier, or the ACH authorisation."""
    from kassa.emails.render import mandate_terms

    settings = container.store().get_settings()
    debits = settings.bank_debits
    return mandate_terms(
        locale,
        types,
        seller_name=settings.seller_name,
        creditor_id=debits.sepa_creditor_id,
        pre_notification_days=debits.pre_notification_days,
    )


def _acceptance(body: MandateAcceptanceIn | None) -> MandateAcceptance | None:
    return MandateAcceptance(body.ip_address, body.user_agent) if body is not None else None


def _browser_acceptance() -> MandateAcceptance:
    """The customer's browser, as the portal (which the browser calls itself) sees it."""
    identity = app.current_event.request_context.identity
    agent = app.current_event.headers.get("User-Agent") or app.current_event.headers.get("user-agent")
    return MandateAcceptance(identity.source_ip, agent or identity.user_agent)


@app.post("/v1/checkout/<subscription_id>/complete", tags=["checkout"])
def complete_checkout(subscription_id: str, body: CompleteIn) -> dict[str, Any]:
    """After Stripe.js confirmed the card: attach it and charge the first invoice on-session. A card
    that asks for 3-D Secure answers ``requires_action: true`` with ``payment_intent_client_secret``
    for Stripe.js's ``confirmCardPayment``; then call ``/confirm_payment`` (or ``/complete`` again)."""
    billing = container.billing()
    result = checkout.complete_checkout(
        billing, subscription_id, body.setup_intent_id, _acceptance(body.mandate_acceptance)
    )
    return _checkout_answer(billing, result)


@app.post("/v1/checkout/<subscription_id>/confirm_payment", tags=["checkout"])
def confirm_checkout_payment(subscription_id: str, body: ConfirmPaymentIn) -> dict[str, Any]:
    """After Stripe.js confirmed the first invoice's PaymentIntent (3-D Secure): read it from Stripe and
    apply its outcome (the payment_intent.succeeded webhook does the same, whichever comes first)."""
    billing = container.billing()
    result = checkout.confirm_checkout_payment(billing, subscription_id, body.payment_intent)
    return _checkout_answer(billing, result)


@app.post("/v1/checkout/<subscription_id>/redirect_payment", tags=["checkout"])
def start_checkout_redirect_payment(subscription_id: str, body: RedirectPaymentIn) -> dict[str, Any]:
    """Pay the first invoice by iDEAL or Bancontact instead of confirming the SetupIntent: a
    PaymentIntent with ``payment_method_types=[ideal]`` and ``setup_future_usage=off_session``,
    confirmed with ``return_url``. Send the customer to ``redirect_url`` (their bank); back on
    ``return_url?payment_intent=…``, call ``/confirm_payment`` with it (the payment_intent.succeeded
    webhook does the same). The SEPA Direct Debit it generates becomes the default payment method."""
    billing = container.billing()
    started = checkout.start_redirect_payment(billing, subscription_id, body.payment_method_type, body.return_url)
    intent = started.payment_intent
    return {
        "subscription": obj("subscription", started.subscription),
        "invoice": invoice_json(started.invoice),
        "requires_action": intent.awaiting_customer,
        "payment_intent": intent.id,
        "payment_intent_client_secret": intent.client_secret,
        "redirect_url": intent.redirect_url,
    }


def _checkout_answer(billing: Any, result: collection.CollectResult) -> dict[str, Any]:
    response: dict[str, Any] = {
        "subscription": obj("subscription", result.subscription),
        "invoice": invoice_json(result.invoice),
        "requires_action": False,
        # a bank debit is with the bank: the invoice stays open until it settles (days, by webhook)
        "processing": bool(result.invoice and not may_charge(result.invoice.attempt_outcome)),
    }
    charge = result.charge
    if charge is not None and charge.status is ChargeStatus.REQUIRES_ACTION and charge.client_secret:
        response.update(requires_action=True, payment_intent_client_secret=charge.client_secret)
        response["payment_intent"] = charge.payment_intent
    elif (intent := collection.open_payment_intent(billing, result.invoice)) is not None:
        # charged before (the webhook came first, or /complete is called again): the same intent
        response.update(requires_action=True, payment_intent_client_secret=intent.client_secret)
        response["payment_intent"] = intent.id
    return response


# ---------------------------------------------------------------- merchant settings
@app.get("/v1/settings", tags=["settings"])
def get_settings() -> dict[str, Any] | None:
    """Get the merchant settings."""
    return obj("settings", container.store().get_settings())


@app.put("/v1/settings", tags=["settings"])
def put_settings(body: MerchantSettings) -> dict[str, Any] | None:
    """Replace the merchant settings (seller, tax, dunning, emails, customer portal)."""
    from kassa.services.portal import check_configuration

    check_configuration(container.billing(with_gateway=False), body.portal)  # the prices and coupon it names
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
        cancellation.cancel(
            billing, subscription_id, at_period_end=body.at_period_end, details=details, prorate=body.prorate
        ),
    )


def _change(subscription_id: str, body: ChangeIn, preview: bool) -> dict[str, Any]:
    if body.items is None and body.price_id is None and body.quantity is None:
        raise InvalidInput("give items, or price_id and/or quantity", param="items")
    if body.items is not None and (body.price_id is not None or body.quantity is not None):
        raise InvalidInput("give items or the price_id/quantity shorthand, not both", param="items")
    result = plan_changes.change_plan(
        container.billing(),
        subscription_id,
        price_id=body.price_id,
        quantity=body.quantity,
        items=body.items,
        behavior=body.proration_behavior,
        schedule_downgrade=body.schedule_downgrade_at_period_end,
        preview=preview,
    )
    out = {"subscription": obj("subscription", result.subscription), "invoice": invoice_json(result.invoice)}
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
    return obj("subscription", pausing.pause_collection(billing, subscription_id, body.behavior, body.resumes_at))


@app.post("/v1/subscriptions/<subscription_id>/resume_collection", tags=["subscriptions"])
def resume_collection(subscription_id: str) -> dict[str, Any] | None:
    return obj("subscription", pausing.resume_collection(container.billing(with_gateway=False), subscription_id))


@app.post("/v1/subscriptions/<subscription_id>/resume", tags=["subscriptions"])
def resume_subscription(subscription_id: str) -> dict[str, Any]:
    """Resume a paused subscription: the cycle restarts now and the new period is invoiced at once."""
    result = pausing.resume(container.billing(), subscription_id)
    return {"subscription": obj("subscription", result.subscription), "invoice": invoice_json(result.invoice)}


@app.post("/v1/subscriptions/<subscription_id>/invoice_items", tags=["subscriptions"], status_code=201)
def add_invoice_item(subscription_id: str, body: InvoiceItemIn) -> Response[dict[str, Any]]:
    """A one-off item added to the subscription's next invoice."""
    billing = container.billing(with_gateway=False)
    sub = invoicing.add_invoice_item(
        billing, subscription_id, amount=body.amount, description=body.description, quantity=body.quantity
    )
    return created(obj("subscription", sub))


# ---------------------------------------------------------------- price experiments
@app.post("/v1/experiments", tags=["experiments"], status_code=201)
def create_experiment(body: ExperimentIn) -> Response[dict[str, Any]]:
    """Split new checkouts of a product between price variants by weight (percent, summing to 100)."""
    found = experiments.create(
        container.billing(with_gateway=False),
        name=body.name,
        product=body.product,
        variants=[(v.name, v.price, v.weight) for v in body.variants],
    )
    return created(obj("experiment", found))


@app.get("/v1/experiments", tags=["experiments"])
def list_experiments() -> dict[str, Any]:
    """Experiments, newest first."""
    ctx = container.billing(with_gateway=False)
    result = experiments.list_page(ctx, _limit(), app.current_event.get_query_string_value("starting_after"))
    return page("experiment", result.items, result.has_more)


@app.get("/v1/experiments/<experiment_id>", tags=["experiments"])
def get_experiment(experiment_id: str) -> dict[str, Any]:
    """The experiment and its figures per variant: checkouts started and converted, MRR, churn, p-value."""
    from kassa.api.shapes import experiment_json

    found, figures = experiments.report(container.billing(with_gateway=False), experiment_id)
    return experiment_json(found, figures)


@app.post("/v1/experiments/<experiment_id>/stop", tags=["experiments"])
def stop_experiment(experiment_id: str) -> dict[str, Any] | None:
    """Stop it: new checkouts are charged the price they ask for; the figures stay."""
    return obj("experiment", experiments.stop(container.billing(with_gateway=False), experiment_id))


@app.post("/v1/products/<product_id>/experiment_assignment", tags=["experiments"])
def experiment_assignment(product_id: str, body: AssignmentIn) -> dict[str, Any]:
    """The variant (and price) a visitor or customer sees for the product's running experiment."""
    if (body.email is None) == (body.customer_id is None):
        raise InvalidInput("give the visitor's email or a customer_id", param="email")
    found = experiments.assignment(
        container.billing(with_gateway=False), product_id, email=body.email, customer_id=body.customer_id
    )
    if found is None:
        raise NotFound(f"product {product_id} has no running experiment", param="product")
    return {
        "object": "experiment_assignment",
        "experiment": found.experiment.id,
        "product": product_id,
        "variant": found.variant.id,
        "price": found.variant.price,
    }


# ---------------------------------------------------------------- usage (meters; events go to meter_ingest)
@app.post("/v1/meters", tags=["usage"], status_code=201)
def create_meter(body: MeterIn) -> Response[dict[str, Any]]:
    """A meter: which events (event_name) it aggregates, and how (count, sum, max, unique_count, latest)."""
    meter = usage.create_meter(
        container.billing(with_gateway=False),
        event_name=body.event_name,
        display_name=body.display_name,
        aggregation=body.aggregation,
        value_property=body.value_property,
    )
    return created(obj("billing.meter", meter))


@app.get("/v1/meters", tags=["usage"])
def list_meters() -> dict[str, Any]:
    """Meters, newest first."""
    result = usage.list_meters(container.store(), _limit(), app.current_event.get_query_string_value("starting_after"))
    return page("billing.meter", result.items, result.has_more)


@app.get("/v1/meters/<meter_id>", tags=["usage"])
def get_meter(meter_id: str) -> dict[str, Any] | None:
    return obj("billing.meter", container.store().get_meter(meter_id))


@app.post("/v1/meters/<meter_id>/deactivate", tags=["usage"])
def deactivate_meter(meter_id: str) -> dict[str, Any] | None:
    """Archive a meter: new events for it are refused; the usage it recorded is still billed."""
    return obj("billing.meter", usage.archive_meter(container.billing(with_gateway=False), meter_id))


@app.get("/v1/subscriptions/<subscription_id>/usage", tags=["usage"])
def subscription_usage(subscription_id: str) -> dict[str, Any]:
    """Per metered item: the usage so far in the current period and what it costs so far."""
    return usage.subscription_usage(container.billing(with_gateway=False), subscription_id)


@app.get("/v1/subscriptions/<subscription_id>/upcoming_invoice", tags=["usage"])
def upcoming_invoice(subscription_id: str) -> dict[str, Any] | None:
    """The next renewal invoice as it would be made now: the fixed fees in advance and the usage to date."""
    billing = container.billing(with_gateway=False)
    return obj("invoice", invoicing.upcoming_invoice(billing, billing.store.get_subscription(subscription_id)))


@app.post("/v1/subscriptions/<subscription_id>/billing_thresholds", tags=["usage"])
def set_billing_thresholds(subscription_id: str, body: BillingThresholdsIn) -> dict[str, Any] | None:
    """Progressive billing: usage accrued in a period that reaches amount_gte is invoiced and charged at once."""
    billing = container.billing(with_gateway=False)
    sub = billing.store.get_subscription(subscription_id)
    if not usage.metered_items(sub):
        raise InvalidInput("billing_thresholds need a metered item", param="amount_gte")
    thresholds = body.model_dump()
    return obj(
        "subscription",
        invoicing.update_subscription(billing, subscription_id, {"billing_thresholds": thresholds}, "thresholds"),
    )


@app.post("/v1/customers/<customer_id>/usage_alert", tags=["usage"])
def set_usage_alert(customer_id: str, body: UsageAlertIn) -> dict[str, Any] | None:
    """An optional usage alert: usage.threshold_reached once the usage accrued in a period reaches amount_gte."""
    return obj("customer", usage.set_usage_alert(container.billing(with_gateway=False), customer_id, body.amount_gte))


@app.post("/v1/subscriptions/<subscription_id>/uncancel", tags=["subscriptions"])
def undo_cancellation(subscription_id: str) -> dict[str, Any] | None:
    return obj("subscription", cancellation.undo_cancel(container.billing(with_gateway=False), subscription_id))


@app.get("/v1/customers/<customer_id>/entitlements", tags=["customers"])
def customer_entitlements(customer_id: str) -> dict[str, Any]:
    found = cancellation.entitlements_of(container.billing(with_gateway=False), customer_id)
    return {"object": "list", "data": [{"object": "entitlement", **e.model_dump(mode="json")} for e in found]}


@app.post("/v1/invoices/<invoice_id>/credit_notes", tags=["invoices"], status_code=201)
def create_credit_note(invoice_id: str, body: CreditNoteRequest) -> Response[dict[str, Any]]:
    note, invoice = credit_notes.credit_invoice(container.billing(), invoice_id, body)
    return created({"credit_note": obj("credit_note", note), "invoice": invoice_json(invoice)})


@app.get("/v1/invoices/<invoice_id>/credit_notes", tags=["invoices"])
def list_credit_notes(invoice_id: str) -> dict[str, Any]:
    store = container.store()
    invoice = store.get_invoice(invoice_id)
    # notes stored before notes carried tax are shown with the tax derived from the invoice
    return page("credit_note", notes_with_tax(invoice, store.list_credit_notes(invoice_id)), False)


@app.get("/v1/invoices/<invoice_id>", tags=["invoices"])
def get_invoice(invoice_id: str) -> dict[str, Any] | None:
    """The invoice, with ``hosted_invoice_url`` (the customer's signed invoice page) and ``invoice_pdf``."""
    return invoice_json(container.store().get_invoice(invoice_id))


# ---------------------------------------------------------------- documents (PDF, UBL)
# The document routes declare no return type: Powertools then sends a non-JSON Response as it is
# (bytes, base64-encoded for API Gateway); with one it would serialize the body through pydantic.
def _document(file: Any) -> Response[bytes]:
    """A stored document as the response: bytes (base64 through API Gateway), its type and file name."""
    return Response(
        status_code=200,
        content_type=file.content_type,
        body=file.data,
        headers={"Content-Disposition": f'inline; filename="{file.filename}"', "Cache-Control": "private, no-cache"},
    )


@app.get("/v1/invoices/<invoice_id>/pdf", tags=["invoices"], responses=openapi.document_responses("application/pdf"))
def get_invoice_pdf(invoice_id: str):
    """The invoice as a PDF in the customer's language (made once per state, then served from storage)."""
    from kassa.services import documents

    billing = container.billing(with_gateway=False)
    return _document(documents.invoice_file(billing, container.files(), invoice_id, "pdf"))


@app.get("/v1/invoices/<invoice_id>/ubl", tags=["invoices"], responses=openapi.document_responses("application/xml"))
def get_invoice_ubl(invoice_id: str):
    """The invoice as a UBL 2.1 e-invoice (EN 16931)."""
    from kassa.services import documents

    billing = container.billing(with_gateway=False)
    return _document(documents.invoice_file(billing, container.files(), invoice_id, "ubl"))


@app.get(
    "/v1/credit_notes/<credit_note_id>/pdf", tags=["invoices"], responses=openapi.document_responses("application/pdf")
)
def get_credit_note_pdf(credit_note_id: str):
    """The credit note as a PDF, naming the invoice it credits."""
    from kassa.services import documents

    billing = container.billing(with_gateway=False)
    return _document(documents.credit_note_file(billing, container.files(), credit_note_id, "pdf"))


@app.get(
    "/v1/credit_notes/<credit_note_id>/ubl", tags=["invoices"], responses=openapi.document_responses("application/xml")
)
def get_credit_note_ubl(credit_note_id: str):
    """The credit note as a UBL 2.1 CreditNote."""
    from kassa.services import documents

    billing = container.billing(with_gateway=False)
    return _document(documents.credit_note_file(billing, container.files(), credit_note_id, "ubl"))


@app.post("/v1/invoices/<invoice_id>/finalize", tags=["invoices"])
def finalize_invoice(invoice_id: str) -> dict[str, Any] | None:
    """draft → open with the next invoice number (e.g. a draft kept while collection was paused)."""
    return invoice_json(invoice_actions.finalize(container.billing(with_gateway=False), invoice_id))


@app.post(
    "/v1/invoices/<invoice_id>/pay",
    tags=["invoices"],
    responses={
        402: {
            "description": "The charge was declined (card_error; the code is the decline code)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    },
)
def pay_invoice(invoice_id: str, body: PayIn) -> Response[Any]:
    """Charge an open or uncollectible invoice now with the customer's default card, or mark it paid
    without charging (``paid_out_of_band``). A declined charge is a 402 ``card_error``. (``Response[Any]``:
    the 402's body is the error's JSON text, which a ``dict`` annotation would refuse as the answer.)"""
    billing = container.billing(with_gateway=not body.paid_out_of_band)
    result = invoice_actions.pay(billing, invoice_id, paid_out_of_band=body.paid_out_of_band)
    charge = result.charge
    unpaid = result.invoice is not None and result.invoice.status is not InvoiceStatus.PAID
    if unpaid and charge is not None and charge.status in (ChargeStatus.DECLINED, ChargeStatus.REQUIRES_ACTION):
        code = charge.decline_code or charge.code or "card_declined"
        message = f"invoice {invoice_id} was not paid: {charge.message or code}"
        return error_response(402, "card_error", code, message, "payment_method")
    return Response(status_code=200, content_type="application/json", body=invoice_json(result.invoice))


@app.post("/v1/invoices/<invoice_id>/void", tags=["invoices"])
def void_invoice(invoice_id: str) -> dict[str, Any] | None:
    """open or uncollectible → void; a paid invoice cannot be voided (409)."""
    return invoice_json(invoice_actions.void(container.billing(with_gateway=False), invoice_id))


@app.post("/v1/invoices/<invoice_id>/mark_uncollectible", tags=["invoices"])
def mark_invoice_uncollectible(invoice_id: str) -> dict[str, Any] | None:
    """open → uncollectible: written off, no more retries (it can still be paid)."""
    return invoice_json(invoice_actions.mark_uncollectible(container.billing(with_gateway=False), invoice_id))


# ---------------------------------------------------------------- lists and search (merchant-wide)
def _list_params() -> dict[str, str | None]:
    return dict(app.current_event.query_string_parameters or {})


def _list(kind: str, path: str, result: Any) -> dict[str, Any]:
    return {**page(kind, result.items, result.has_more), "url": path}


@app.get("/v1/customers", tags=["customers"])
def list_customers() -> dict[str, Any]:
    """Customers, newest first; ``email`` (exact, case-insensitive), ``name`` (a part of the name,
    case-insensitive), ``created[gte|gt|lte|lt]`` (unix seconds or ISO 8601), ``limit``,
    ``starting_after`` / ``ending_before``."""
    result = listing.list_customers(container.store(), _list_params(), _limit())
    return _list("customer", "/v1/customers", result)


@app.get("/v1/subscriptions", tags=["subscriptions"])
def list_subscriptions() -> dict[str, Any]:
    """Subscriptions, newest first; ``status`` (a status, ``all``, ``ended``; default: all but canceled),
    ``price``, ``customer``, ``created[gte|gt|lte|lt]``, ``limit``, ``starting_after`` / ``ending_before``."""
    result = listing.list_subscriptions(container.store(), _list_params(), _limit())
    return _list("subscription", "/v1/subscriptions", result)


@app.get("/v1/invoices", tags=["invoices"])
def list_invoices() -> dict[str, Any]:
    """Invoices, newest first; ``status``, ``customer``, ``subscription``, ``price`` (a line on it),
    ``total[gte]`` / ``total[lte]`` (minor units), ``created[gte|gt|lte|lt]`` (unix seconds or ISO 8601),
    ``limit``, ``starting_after`` / ``ending_before``."""
    result = listing.list_invoices(container.store(), _list_params(), _limit())
    return {**invoice_list(result.items, result.has_more), "url": "/v1/invoices"}


# ---------------------------------------------------------------- dunning and customer emails
def _public_base() -> str:
    """Where this API is reachable from a browser: KASSA_PUBLIC_URL, else the request's host and stage."""
    configured = container.env().public_url
    if configured:
        return str(configured)
    event = app.current_event
    host = event.headers.get("Host") or event.headers.get("host") or ""
    stage = event.request_context.stage
    return f"https://{host}" + (f"/{stage}" if stage and stage != "$default" else "")


def _parse_day(name: str, default: date) -> date:
    return query_date(app, name, default)


@app.post("/v1/customers/<customer_id>/card_update_link", tags=["dunning"], status_code=201)
def card_update_link(customer_id: str) -> Response[dict[str, Any]]:
    """A signed, expiring link to the customer's card-update page (what the payment_failed email carries)."""
    store = container.store()
    store.get_customer(customer_id)
    days = store.get_settings().emails.card_link_days
    token, expires = sign_link(
        container.link_secret(), customer_id, "card_update", container.now(), timedelta(days=days)
    )
    return created(
        {
            "object": "card_update_link",
            "customer": customer_id,
            "url": f"{_public_base()}/portal/card?token={token}",
            "expires_at": expires.isoformat(),
        }
    )


@app.get("/v1/customers/<customer_id>/emails", tags=["dunning"])
def list_customer_emails(customer_id: str) -> dict[str, Any]:
    """The emails sent (or being sent) to a customer, newest first, from the outbox."""
    container.store().get_customer(customer_id)
    records = container.outbox().list_customer(customer_id, _limit())
    return {"object": "list", "data": [email_json(r) for r in records], "has_more": False}


def email_json(record: Any) -> dict[str, Any]:
    email = record.email
    return {
        "object": "email",
        "key": email.key,
        "template": email.template,
        "to": email.to,
        "locale": email.locale,
        "subject": email.subject,
        "text": email.text,
        "status": record.status,
        "created": email.created.isoformat(),
        "sent_at": record.sent_at.isoformat() if record.sent_at else None,
    }


@app.get("/v1/dunning/figures", tags=["dunning"])
def dunning_figures() -> dict[str, Any]:
    """Recovery figures for invoices with a tax point in [from, to] (default: this year so far):
    invoices recovered, amounts recovered per currency, recovery rate overall and by decline code."""
    from kassa.api.shapes import figures_json
    from kassa.services.dunning import recovery_figures

    today = container.now().date()
    start = _parse_day("from", date(today.year, 1, 1))
    end = _parse_day("to", today)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        **figures_json(recovery_figures(container.store(), start, end)),
    }


# subscription analytics: GET /v1/reports/mrr | churn | cohorts | ltv (kassa.api.reports)
app.include_router(reports.router)


# ---------------------------------------------------------------- the customer's card page (no login)
def _link_refused(error: LinkRefused) -> Response:
    response = error_response(403, "invalid_request_error", error.code, error.message, error.param)
    if app.current_event.path.startswith("/portal/"):
        response.headers.update(portal_headers())
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def portal_headers(img_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """What every customer-facing /portal response carries: a CSP allowing only this page's own script
    and Stripe.js (``KASSA_STRIPE_JS_URL``'s origin), no framing (clickjacking), no referrer (the link's
    token is in the URL), no caching, no MIME sniffing. ``img_origins``: where a page may also load
    images from (the hosted invoice page's merchant logo)."""
    stripe = _origin(container.env().stripe_js_url or DEFAULT_STRIPE_JS_URL)
    scripts = " ".join(["'self'", stripe, *card_page.script_hashes()])  # the card page's inline script
    styles = " ".join(["'self'", "'unsafe-inline'"])  # Stripe.js and the shim style their elements inline
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {styles}",
            f"connect-src 'self' {stripe} https://api.stripe.com",
            f"frame-src {stripe} https://hooks.stripe.com",
            " ".join(["img-src 'self' data:", *img_origins]),
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def _portal(response: Response) -> Response:
    response.headers.update(portal_headers())
    return response


def _portal_headers(app_: Any, next_middleware: Any) -> Response:
    """The portal headers on every /portal response the routes answer (a page that sets its own, such
    as the hosted invoice page's CSP with the merchant's logo origin, keeps them)."""
    response: Response = next_middleware(app_)
    if app_.current_event.path.startswith("/portal/"):
        for name, value in portal_headers().items():
            response.headers.setdefault(name, value)
    return response


app.use(middlewares=[_portal_headers])
dashboard.install(app)  # the merchant dashboard under /dashboard (kassa.api.dashboard)


app.exception_handler(LinkRefused)(_link_refused)


@app.get("/portal/card", include_in_schema=False)
def card_update_page() -> Response[str]:
    """The card-update page, in the customer's language (``kassa.api.card_page``); the token is
    checked before anything is shown (a refused link: a 403 page in the browser's language)."""
    from kassa.api.invoice_page import accept_language

    token = app.current_event.get_query_string_value("token") or ""
    try:
        link = verify_link(container.link_keys(), token, container.now(), CARD_PURPOSES)
        customer = container.store().get_customer(link.customer)
    except (LinkRefused, NotFound) as error:
        code = error.code if isinstance(error, LinkRefused) else "link_invalid"
        languages = app.current_event.headers.get("Accept-Language") or app.current_event.headers.get("accept-language")
        page_html = card_page.render_refused(accept_language(languages), code)
        return _portal(Response(status_code=403, content_type="text/html; charset=utf-8", body=page_html))
    page_html = card_page.render_card(customer.preferred_locale)
    return _portal(Response(status_code=200, content_type="text/html; charset=utf-8", body=page_html))


@app.post("/portal/card/session", include_in_schema=False)
def card_session(body: PortalTokenIn) -> dict[str, Any]:
    """What the page needs: who, the card on file, the open invoices, and either the open
    PaymentIntent to authenticate (an ``authenticate`` link whose invoice waits for 3-D Secure:
    ``mode: authenticate``, no SetupIntent) or a SetupIntent for a new card (``mode: card``)."""
    from kassa.emails.render import format_money

    billing = container.billing()
    link = verify_link(container.link_keys(), body.token, billing.now(), CARD_PURPOSES)
    try:
        customer = billing.store.get_customer(link.customer)
    except NotFound as error:
        raise LinkRefused("this link is not valid", param="token") from error
    card = customer.default_payment_method
    # what a new card pays: the open invoices (a pending checkout's first one has no number until it
    # is paid); written-off (uncollectible) invoices are not due from the customer
    invoices = [i for i in billing.store.list_open_invoices(customer.id) if i.retried_on_new_card]
    offered = customers.offered_payment_method_types(billing, customer.id)
    answer: dict[str, Any] = {
        "purpose": link.purpose,
        "customer": {"name": customer.name, "email": customer.email},
        "card": card.model_dump(mode="json", exclude={"payment_method_id"}) if card else None,
        "payment_method_types": list(offered),
        "mandate": _mandate_terms(offered, customer.preferred_locale),
        "open_invoices": [
            {
                "number": i.number,
                "amount_due": i.amount_due,
                "currency": i.currency,
                "amount_due_formatted": format_money(i.amount_due, i.currency, customer.preferred_locale),
            }
            for i in invoices
        ],
        "publishable_key": billing.gateway.publishable_key,
        "stripe_js_url": container.env().stripe_js_url,
        "expires_at": link.expires_at.isoformat(),
    }
    if link.purpose == "authenticate" and link.invoice:
        invoice = billing.store.find_invoice(link.invoice)
        if invoice is not None and invoice.customer == customer.id:
            intent = collection.open_payment_intent(billing, invoice)
            if intent is not None:
                # confirm the open PaymentIntent (3-D Secure): no new card, no new charge
                return {
                    **answer,
                    "mode": "authenticate",
                    "invoice": {"id": invoice.id, "number": invoice.number},
                    "payment_intent": intent.id,
                    "payment_intent_client_secret": intent.client_secret,
                    "payment_method": intent.payment_method,
                }
            if invoice.status is InvoiceStatus.PAID:
                return {**answer, "mode": "paid", "invoice": {"id": invoice.id, "number": invoice.number}}
    intent_setup = customers.card_setup_intent(billing, customer.id, link.purpose, customer=customer, offered=offered)
    return {**answer, "mode": "card", "setup_intent_id": intent_setup.id, "client_secret": intent_setup.client_secret}


def _invoice_answers(billing: Any, results: list[collection.CollectResult]) -> list[dict[str, Any]]:
    """Each retried invoice's status; one that asks for 3-D Secure carries the PaymentIntent to confirm."""
    answers = []
    for r in results:
        if r.invoice is None:
            continue
        row: dict[str, Any] = {"id": r.invoice.id, "number": r.invoice.number, "status": r.invoice.status.value}
        if not may_charge(r.invoice.attempt_outcome):
            row["processing"] = True  # a bank debit with the bank: paid when it settles
        intent = collection.open_payment_intent(billing, r.invoice)
        if intent is not None:
            row.update(
                requires_action=True, payment_intent=intent.id, payment_intent_client_secret=intent.client_secret
            )
        answers.append(row)
    return answers


@app.post("/portal/card/confirm", include_in_schema=False)
def card_confirm(body: PortalConfirmIn) -> dict[str, Any]:
    """After Stripe.js confirmed the SetupIntent: the card becomes the default, open invoices are retried
    on-session (the customer is on the page: a card that asks for 3-D Secure is confirmed there)."""
    billing = container.billing()
    link = verify_link(container.link_keys(), body.token, billing.now(), CARD_PURPOSES)
    customer, results = collection.update_card(
        billing, link.customer, body.setup_intent_id, off_session=False, acceptance=_browser_acceptance()
    )
    card = customer.default_payment_method
    return {
        "card": card.model_dump(mode="json", exclude={"payment_method_id"}) if card else None,
        "invoices": _invoice_answers(billing, results),
    }


@app.post("/portal/card/confirm_payment", include_in_schema=False)
def card_confirm_payment(body: PortalConfirmPaymentIn) -> dict[str, Any]:
    """After Stripe.js confirmed an open invoice's PaymentIntent on the page (3-D Secure): apply its
    outcome — idempotent with the payment_intent.succeeded webhook; nothing new is charged."""
    billing = container.billing()
    link = verify_link(container.link_keys(), body.token, billing.now(), CARD_PURPOSES)
    intent = billing.gateway.get_payment_intent(body.payment_intent)
    invoice = billing.store.find_invoice(intent.invoice) if intent.invoice else None
    if invoice is None or invoice.customer != link.customer:
        raise InvalidInput("this payment is not one of this customer's invoices", param="payment_intent")
    result = collection.confirm_payment(billing, invoice.id, intent.id)
    return {"invoices": _invoice_answers(billing, [result])}


# ---------------------------------------------------------------- the hosted invoice page (no login)
# A signed ``invoice`` link (kassa.domain.links, valid ``emails.invoice_link_days``) opens one invoice:
# the page (kassa.api.invoice_page), its PDF and a Pay button while it is open or uncollectible.
_PORTAL_ASSETS = {"portal.js": "text/javascript; charset=utf-8", "invoice.js": "text/javascript; charset=utf-8"}


@app.get("/portal/assets/<name>", include_in_schema=False)
def portal_asset(name: str) -> Response[str]:
    """The portal pages' scripts (served from 'self': the pages' CSP allows no other script)."""
    if name not in _PORTAL_ASSETS:
        return error_response(404, "invalid_request_error", "route_not_found", f"no asset {name}")
    return Response(status_code=200, content_type=_PORTAL_ASSETS[name], body=static_text(name))


def invoice_links(invoices: list[Any]) -> dict[str, tuple[str, str]]:
    """Each issued invoice's ``hosted_invoice_url`` and ``invoice_pdf`` (Stripe's fields), signed now
    for ``emails.invoice_link_days``; drafts have none."""
    issued = [i for i in invoices if i is not None and i.status is not InvoiceStatus.DRAFT]
    if not issued:
        return {}
    days = container.store().get_settings().emails.invoice_link_days
    # signed from the start of today for a day more: the same URL all day (repeated reads of an
    # invoice answer the same document), valid at least ``days``
    secret, base = container.link_secret(), _public_base()
    today = container.now().replace(hour=0, minute=0, second=0)
    links = {}
    for invoice in issued:
        url, _ = signed_url(secret, base, invoice.customer, "invoice", today, timedelta(days=days + 1), invoice.id)
        links[invoice.id] = (url, f"{url}/pdf")
    return links


def invoice_json(invoice: Any, links: dict[str, tuple[str, str]] | None = None) -> dict[str, Any] | None:
    """The invoice in Stripe's shape, with ``hosted_invoice_url`` and ``invoice_pdf`` (null for a draft)."""
    body = obj("invoice", invoice)
    if body is None:
        return None
    hosted, pdf = (links if links is not None else invoice_links([invoice])).get(invoice.id, (None, None))
    return {**body, "hosted_invoice_url": hosted, "invoice_pdf": pdf}


def invoice_list(items: list[Any], has_more: bool) -> dict[str, Any]:
    links = invoice_links(items)
    return {"object": "list", "data": [invoice_json(i, links) for i in items], "has_more": has_more}


def _invoice_refused(kind: str, status: int, settings: MerchantSettings | None = None) -> Response[str]:
    from kassa.api.invoice_page import accept_language, render_refused

    headers = app.current_event.headers
    wanted = accept_language(headers.get("Accept-Language") or headers.get("accept-language"))
    html = render_refused(kind, wanted, settings)
    return _portal(Response(status_code=status, content_type="text/html; charset=utf-8", body=html))


def _hosted(token: str) -> tuple[Any, Any, MerchantSettings] | Response[str]:
    """The link's invoice, customer and the settings, or the page saying why not (4xx, never a 500)."""
    store = container.store()
    settings = store.get_settings()  # the merchant's name and colour, on a refused link's page too
    try:
        link = verify_link(container.link_keys(), token, container.now(), INVOICE_PURPOSES)
    except LinkRefused as error:
        return _invoice_refused(error.code, 403, settings)
    invoice = store.find_invoice(link.invoice or "")
    if invoice is None or invoice.customer != link.customer or invoice.status is InvoiceStatus.DRAFT:
        return _invoice_refused("not_found", 404, settings)
    try:
        customer = store.get_customer(invoice.customer)
    except NotFound:
        customer = None
    return invoice, customer, settings


@app.get("/portal/invoices/<token>", include_in_schema=False)
def hosted_invoice_page(token: str) -> Response[str]:
    """The hosted invoice page: the invoice in its language, the PDF link and, while it is open or
    uncollectible, a Pay button (``static/invoice.js``)."""
    from kassa.api.invoice_page import logo_origin, render_invoice

    found = _hosted(token)
    if isinstance(found, Response):
        return found
    invoice, customer, settings = found
    thanks = app.current_event.get_query_string_value("paid") == "1"
    html = render_invoice(invoice, customer, settings, token=token, thanks=thanks)
    origin = logo_origin(settings)
    response = Response(status_code=200, content_type="text/html; charset=utf-8", body=html)
    response.headers.update(portal_headers((origin,) if origin else ()))
    return response


@app.get("/portal/invoices/<token>/pdf", include_in_schema=False)
def hosted_invoice_pdf(token: str):  # type: ignore[no-untyped-def]
    """The invoice's PDF (made once and kept in the files bucket: kassa.services.documents), as a download.
    No return annotation: Powertools validates an annotated route's body, and would read the PDF's
    bytes as UTF-8 text."""
    found = _hosted(token)
    if isinstance(found, Response):
        return found
    invoice, customer, settings = found
    if invoice.number is None:  # a checkout's first invoice is numbered (and has its PDF) once it is paid
        return _invoice_refused("pdf_unavailable", 409, settings)
    return invoice_pdf_download(invoice, customer, settings)


def invoice_pdf_download(invoice: Any, customer: Any, settings: MerchantSettings) -> Response[bytes]:
    """A numbered invoice's PDF as a download with the portal's headers (the hosted invoice page's and
    the customer portal's): made once and kept in the files bucket (kassa.services.documents), from the
    invoice, customer and settings the caller read already."""
    from kassa.services.documents import invoice_pdf_file

    file = invoice_pdf_file(container.files(), invoice, settings, customer)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", invoice.number)
    return _portal(
        Response(
            status_code=200,
            content_type=file.content_type,
            body=file.data,
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    )


def _hosted_invoice_link(billing: Any, token: str) -> Any:
    link = verify_link(container.link_keys(), token, billing.now(), INVOICE_PURPOSES)
    try:
        return link, hosted_invoice.invoice_of(billing, link.customer, link.invoice or "")
    except (NotFound, InvalidInput) as error:
        raise LinkRefused("this link is not valid", param="token") from error


@app.post("/portal/invoices/session", include_in_schema=False)
def hosted_invoice_session(body: PortalTokenIn) -> dict[str, Any]:
    """What the Pay button needs: ``mode: pay`` with a SetupIntent for a new card (where the merchant
    offers SEPA Direct Debit, also a bank account: ``payment_method_types``, the ``mandate`` terms in the
    page's language and the ``customer``'s name and email, as the card page's session), ``mode:
    authenticate`` with the invoice's own PaymentIntent waiting for 3-D Secure, or the status when it
    cannot be paid (``paid``, ``void``; ``open`` while a bank debit of it is processing)."""
    from kassa.api.invoice_page import payable

    billing = container.billing()
    link, invoice = _hosted_invoice_link(billing, body.token)
    answer: dict[str, Any] = {
        "invoice": {"id": invoice.id, "number": invoice.number, "status": invoice.status.value},
        "publishable_key": billing.gateway.publishable_key,
        "stripe_js_url": container.env().stripe_js_url,
        "expires_at": link.expires_at.isoformat(),
    }
    if not payable(invoice):
        return {**answer, "mode": invoice.status.value}
    intent = hosted_invoice.pending_authentication(billing, invoice)
    if intent is not None:
        return {
            **answer,
            "mode": "authenticate",
            "payment_intent": intent.id,
            "payment_intent_client_secret": intent.client_secret,
            "payment_method": intent.payment_method,
        }
    customer = billing.store.get_customer(link.customer)
    offered = customers.offered_payment_method_types(billing, link.customer)
    setup = customers.card_setup_intent(billing, link.customer, "invoice", customer=customer, offered=offered)
    answer = {**answer, "mode": "pay", "setup_intent_id": setup.id, "client_secret": setup.client_secret}
    if "sepa_debit" in offered:
        # a bank account too, as on the card page: the SEPA mandate in the page's language, who holds it
        answer.update(
            payment_method_types=list(offered),
            mandate=_mandate_terms(offered, invoice.locale or customer.preferred_locale),
            customer={"name": customer.name, "email": customer.email},
        )
    return answer


@app.post("/portal/invoices/pay", include_in_schema=False)
def hosted_invoice_pay(body: PortalConfirmIn) -> dict[str, Any]:
    """After Stripe.js confirmed the SetupIntent: the card (or bank account, its mandate accepted by this
    browser) becomes the default and this invoice is charged on-session (a bank that asks for 3-D Secure
    answers ``requires_action``, confirmed on the page; a bank debit answers ``processing``)."""
    billing = container.billing()
    link, invoice = _hosted_invoice_link(billing, body.token)
    result = hosted_invoice.pay_with_new_card(
        billing, link.customer, invoice.id, body.setup_intent_id, acceptance=_browser_acceptance()
    )
    return {"invoices": _invoice_answers(billing, [result])}


@app.post("/portal/invoices/confirm_payment", include_in_schema=False)
def hosted_invoice_confirm_payment(body: PortalConfirmPaymentIn) -> dict[str, Any]:
    """After Stripe.js confirmed this invoice's PaymentIntent (3-D Secure): apply its outcome, once."""
    billing = container.billing()
    _, invoice = _hosted_invoice_link(billing, body.token)
    intent = billing.gateway.get_payment_intent(body.payment_intent)
    if intent.invoice != invoice.id:
        raise InvalidInput("this payment is not this invoice's", param="payment_intent")
    return {"invoices": _invoice_answers(billing, [collection.confirm_payment(billing, invoice.id, intent.id)])}


# ------------------------------------------------------------------ refunds, disputes, fraud warnings
# (docs/payments.md)
@app.post("/v1/refunds", tags=["payments"])
def create_refund(body: RefundIn) -> Response[dict[str, Any]]:
    """Refund part or all of a paid invoice's payment through Stripe (a post-payment credit note).
    An ``Idempotency-Key`` header, as on every POST, replays the first response for 24 h
    (api/idempotency.py); the refund also keeps the key, so the same key answers the first refund
    (and another amount or reason is 400 ``idempotency_key_in_use``) for as long as the invoice exists."""
    key = app.current_event.headers.get("Idempotency-Key") or None
    invoice, refund = payments.refund_invoice(container.billing(), body.invoice, body.amount, body.reason, key)
    return created({"object": "refund", **refund.model_dump(mode="json"), "invoice": invoice_json(invoice)})


@app.get("/v1/refunds", tags=["payments"])
def list_refunds() -> dict[str, Any]:
    invoice_id = app.current_event.get_query_string_value("invoice", "") or ""
    if not invoice_id:
        raise InvalidInput("invoice is required", param="invoice")
    invoice = container.store().get_invoice(invoice_id)
    data = [{"object": "refund", "invoice": invoice.id, **r.model_dump(mode="json")} for r in invoice.refunds]
    return {"object": "list", "data": data, "has_more": False}


@app.get("/v1/payments/figures", tags=["payments"])
def payment_figures() -> dict[str, Any]:
    """Refunds, disputes (by status, amount lost) and fraud warnings over invoices with a tax point
    in [from, to]."""
    today = container.now().date()
    start = _parse_day("from", today.replace(day=1))
    end = _parse_day("to", today)
    return payments.figures(container.store(), start, end)


# ---------------------------------------------------------------- the customer portal (docs/portal.md)
# POST /v1/portal/sessions, the session link, sign-in by email and the customer's pages under
# /portal/account (kassa.api.portal_app: it uses this module's portal_headers and _public_base)
from kassa.api.portal_app import router as portal_router  # noqa: E402

app.include_router(portal_router)


# ---------------------------------------------------------------- outbound webhooks (docs/webhooks.md)
from kassa.api import webhook_endpoints  # noqa: E402 - its routes join this resolver

app.include_router(webhook_endpoints.router)
