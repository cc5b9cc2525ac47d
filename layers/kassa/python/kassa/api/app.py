"""The REST API (checkout, catalog, customers, subscriptions, invoices) on Powertools' resolver.

Routes call one service each. Domain errors become 4xx ``{"error": {type, code, message, param}}``
in one place; request validation errors name the field; every /v1 route needs the secret key.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from pydantic import BaseModel

from kassa.adapters import container
from kassa.api.models import CheckoutIn, CompleteIn, CustomerIn, PriceIn, ProductIn
from kassa.domain.catalog import Recurring
from kassa.domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    Unavailable,
)
from kassa.domain.settings import MerchantSettings

logger = logging.getLogger("kassa.api")
app = APIGatewayRestResolver(enable_validation=True)
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


def error_response(status: int, type_: str, code: str, message: str, param: str | None = None) -> Response:
    body: dict[str, Any] = {"type": type_, "code": code, "message": message}
    if param:
        body["param"] = param
    return Response(status_code=status, content_type="application/json", body=json.dumps({"error": body}))


def _auth(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    if app.current_event.path.startswith("/v1/"):
        header = app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), container.api_secret_key().encode()):
            return error_response(
                401,
                "authentication_error",
                "invalid_api_key",
                "a valid secret key is required (Authorization: Bearer …)",
            )
    return next_middleware(app)


app.use(middlewares=[_auth])


@app.exception_handler(RequestValidationError)
def _invalid(error: RequestValidationError) -> Response:
    errors = error.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "missing":
        message = f"missing required field {param}"
    elif param:
        message = f"{param}: {message}"
    return error_response(400, "invalid_request_error", "parameter_invalid", message, param)


@app.exception_handler(DomainError)
def _domain(error: DomainError) -> Response:
    status = 400
    if isinstance(error, NotFound):
        status = 404
    elif isinstance(error, AlreadyExists | Conflict | IllegalTransition):
        status = 409
    elif isinstance(error, Unavailable):
        status = 503  # retryable: nothing was half-written (conditional writes and transactions)
    elif not isinstance(error, InvalidInput):
        status = 400
    type_ = "api_error" if status >= 500 else "invalid_request_error"
    return error_response(status, type_, error.code, error.message, error.param)


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return error_response(500, "api_error", "internal_error", "an unexpected error occurred; it has been logged")


@app.not_found
def _not_found(_: Exception) -> Response:
    return error_response(404, "invalid_request_error", "route_missing", "no such route")


def obj(kind: str, model: BaseModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"object": kind, **model.model_dump(mode="json", exclude={"version"})}


def page(kind: str, items: list[Any], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": [obj(kind, i) for i in items], "has_more": has_more}


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


@app.get("/v1/invoices/<invoice_id>", tags=["invoices"])
def get_invoice(invoice_id: str) -> dict[str, Any] | None:
    return obj("invoice", container.store().get_invoice(invoice_id))
