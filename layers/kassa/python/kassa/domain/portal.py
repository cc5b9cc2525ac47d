"""The customer portal's rules: its configuration (what a customer may do), its sessions, and who may
see what (docs/portal.md).

Like Stripe's customer portal: the merchant's backend creates a session for one customer and sends
the customer to its URL, or the customer asks for a sign-in link by email. The URL's token (a signed
``portal_session`` link, ``kassa.domain.links``) is exchanged **once** for a session cookie (a signed
``portal`` token with the same session id), after which every page and action is the customer's own:
a subscription or invoice id of another customer is "not found", never "forbidden" (a 404 says
nothing about whether it exists). State changes carry a CSRF token derived from the session id.

Pure functions and models: the caller passes ``now``, the secret and the data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from kassa.domain.cancellation import CancellationFeedback
from kassa.domain.customer import Address
from kassa.domain.errors import IllegalTransition, InvalidInput, NotFound
from kassa.domain.pausing import PauseBehavior
from kassa.domain.subscription import TERMINAL, Status, Subscription

MAX_URL_LENGTH = 2000
#: hosts a return URL may use over plain http (a developer's machine, the local stack)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
#: how long one sign-in-by-email window lasts: at most one email per customer per window
LOGIN_WINDOW = timedelta(minutes=15)


#: Stripe's portal order: the most common answers first, "other" last
DEFAULT_REASONS = (
    CancellationFeedback.TOO_EXPENSIVE,
    CancellationFeedback.MISSING_FEATURES,
    CancellationFeedback.SWITCHED_SERVICE,
    CancellationFeedback.UNUSED,
    CancellationFeedback.CUSTOMER_SERVICE,
    CancellationFeedback.TOO_COMPLEX,
    CancellationFeedback.LOW_QUALITY,
    CancellationFeedback.OTHER,
)


def _each_once(values: list[Any]) -> list[Any]:
    """A settings list that names each value once (a validator)."""
    if len(set(values)) != len(values):
        raise ValueError("each value once")
    return values


class PortalUpdate(StrEnum):
    PRICE = "price"
    QUANTITY = "quantity"


class CustomerField(StrEnum):
    NAME = "name"
    ADDRESS = "address"
    TAX_ID = "tax_id"


class SubscriptionUpdateSettings(BaseModel):
    """Plan and quantity changes (Stripe's ``features.subscription_update``): the prices a customer
    may switch to, per product (a subscription of a product not listed cannot be changed)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    allowed_updates: list[PortalUpdate] = Field(default_factory=lambda: [PortalUpdate.PRICE, PortalUpdate.QUANTITY])
    # product id → the price ids offered for it (the subscription's own price need not be listed)
    products: dict[str, list[str]] = Field(default_factory=dict, max_length=50)
    proration_behavior: Literal["create_prorations", "always_invoice", "none"] = "create_prorations"
    max_quantity: int = Field(default=100, ge=1, le=10_000)

    _updates_once = field_validator("allowed_updates")(lambda cls, value: _each_once(value))

    @field_validator("products")
    @classmethod
    def _prices(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for product, prices in value.items():
            if not product.startswith("prod_"):
                raise ValueError(f"{product!r} is not a product id (prod_…)")
            if not prices or len(prices) > 20:
                raise ValueError(f"{product}: give 1 to 20 price ids")
            if len(set(prices)) != len(prices):
                raise ValueError(f"{product}: each price once")
            bad = [p for p in prices if not p.startswith("price_")]
            if bad:
                raise ValueError(f"{product}: {bad[0]!r} is not a price id (price_…)")
        return value


class SubscriptionCancelSettings(BaseModel):
    """Cancellation (Stripe's ``features.subscription_cancel``): at the period end by default, the
    reasons offered (Stripe's ``cancellation_details.feedback`` values) and an optional retention
    coupon offered once per subscription before it is canceled."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mode: Literal["at_period_end", "immediately"] = "at_period_end"
    reasons: list[CancellationFeedback] = Field(default_factory=lambda: list(DEFAULT_REASONS), max_length=8)
    retention_coupon: str | None = Field(default=None, max_length=255)

    _reasons_once = field_validator("reasons")(lambda cls, value: _each_once(value))


class SubscriptionPauseSettings(BaseModel):
    """Pausing payments (``pause_collection``): off unless the merchant allows it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    behavior: PauseBehavior = PauseBehavior.VOID


class CustomerUpdateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    allowed_updates: list[CustomerField] = Field(default_factory=lambda: list(CustomerField))

    _fields_once = field_validator("allowed_updates")(lambda cls, value: _each_once(value))


class PortalSettings(BaseModel):
    """What the customer portal lets a customer do (``settings.portal``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # how long a session URL (from the API or a sign-in email) may wait to be opened, and how long
    # the session it opens lasts
    link_minutes: int = Field(default=60, ge=1, le=24 * 60)
    session_minutes: int = Field(default=60, ge=5, le=24 * 60)
    # the hosts a return_url may point to (empty: any https host)
    return_url_hosts: list[str] = Field(default_factory=list, max_length=20)
    # where "return to <merchant>" goes when a session was not given a return_url (sign-in by email)
    default_return_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    invoice_history: bool = True
    payment_method_update: bool = True
    subscription_update: SubscriptionUpdateSettings = Field(default_factory=SubscriptionUpdateSettings)
    subscription_cancel: SubscriptionCancelSettings = Field(default_factory=SubscriptionCancelSettings)
    subscription_pause: SubscriptionPauseSettings = Field(default_factory=SubscriptionPauseSettings)
    customer_update: CustomerUpdateSettings = Field(default_factory=CustomerUpdateSettings)

    @field_validator("return_url_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not host or any(c in host for c in "/@?# \t") or host.count(":") == 1:
                raise ValueError(f"{host!r} is not a host name")
        return [host.lower() for host in value]

    @field_validator("default_return_url")
    @classmethod
    def _default_return(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:  # declared after return_url_hosts, so those are known
            return check_return_url(value, info.data.get("return_url_hosts") or [])
        except InvalidInput as error:  # a ValueError, so the API names the field
            raise ValueError(error.message.replace("return_url", "default_return_url", 1)) from error


#: the address fields of the billing-details form (it has no state)
ADDRESS_FORM_FIELDS = ("country", "line1", "line2", "city", "postal_code")


def details_address(on_file: Address, form: Mapping[str, str | None]) -> Address:
    """The billing address the details form saves, over the one on file: the form's fields
    (``ADDRESS_FORM_FIELDS``) replace theirs, and the state — which the form has not — is kept for the
    same country and dropped for another (a US state is never carried into another country's address
    and its tax). ``InvalidInput`` naming ``address`` for a country that is none."""
    given = {key: form.get(key) for key in ADDRESS_FORM_FIELDS}
    country = (given.pop("country") or "").strip().upper()
    state = on_file.state if country == on_file.country else None
    try:
        return Address(country=country, state=state, **given)
    except ValidationError as error:
        raise InvalidInput("choose a country", param="address") from error


# ---------------------------------------------------------------------------------- return URLs
def check_return_url(url: str, hosts: list[str] | tuple[str, ...] = ()) -> str:
    """A return URL the portal may link to: absolute https (http only to this machine), no user or
    password in it, at most 2000 characters, and one of ``hosts`` when the merchant listed some.
    ``InvalidInput`` naming ``return_url`` otherwise (a ``javascript:`` URL never reaches a page)."""
    text = (url or "").strip()
    if not text or len(text) > MAX_URL_LENGTH or any(ord(c) < 33 for c in text):
        raise InvalidInput("return_url must be an absolute URL of at most 2000 characters", param="return_url")
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError as error:
        raise InvalidInput("return_url is not a valid URL", param="return_url") from error
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput("return_url must be an https URL", param="return_url")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise InvalidInput("return_url must be an https URL (http only for localhost)", param="return_url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("return_url must not contain a user name or password", param="return_url")
    if hosts and host not in hosts:
        raise InvalidInput(
            f"return_url's host {host} is not one of settings.portal.return_url_hosts", param="return_url"
        )
    return text


# ---------------------------------------------------------------------------------- sessions
def csrf_token(secret: str, session: str) -> str:
    """The token every state-changing form of a session carries (HMAC of the session id: nothing is
    stored, and another session's token does not fit)."""
    return hmac.new(secret.encode(), f"kassa portal csrf {session}".encode(), hashlib.sha256).hexdigest()[:40]


def csrf_matches(secrets: tuple[str, ...] | list[str], session: str, given: str | None) -> bool:
    """Whether a form's token is its session's (under any of the link keys, during a rotation)."""
    if not given:
        return False
    return any(hmac.compare_digest(csrf_token(secret, session).encode(), given.encode()) for secret in secrets)


def session_claim_key(session: str) -> str:
    """The store's once-only key for a session link's exchange."""
    return f"portal_session:{session}"


def signed_out_key(session: str) -> str:
    """The store's marker of a session signed out: its cookie opens nothing any more."""
    return f"portal_signed_out:{session}"


def login_window(now: datetime) -> str:
    """Which sign-in window ``now`` falls in (one email per customer and window)."""
    seconds = int(LOGIN_WINDOW.total_seconds())
    return str(int(now.timestamp()) // seconds)


def login_session_id(customer: str, window: str) -> str:
    """The session id of a sign-in email: the same for a redelivered request (the same email)."""
    digest = hashlib.sha256(f"{customer}:{window}".encode()).hexdigest()[:24]
    return f"bps_{digest}"


# ---------------------------------------------------------------------------------- isolation
def owned(sub: Subscription | None, customer: str) -> Subscription:
    """The subscription when it is the session customer's; otherwise ``NotFound`` — exactly what an
    unknown id answers, so a customer learns nothing about other customers' ids."""
    if sub is None or sub.customer != customer:
        raise NotFound("no such subscription", param="subscription")
    return sub


def owned_invoice_check(invoice_customer: str | None, customer: str) -> None:
    if invoice_customer != customer:
        raise NotFound("no such invoice", param="invoice")


# ---------------------------------------------------------------------------------- what is allowed
def live(sub: Subscription) -> bool:
    return sub.status not in TERMINAL and sub.status is not Status.INCOMPLETE


def product_of_single_item(sub: Subscription) -> str | None:
    item = sub.single_item
    return item.product if item is not None else None


def change_options(settings: PortalSettings, sub: Subscription) -> list[str]:
    """The price ids the customer may switch this subscription to, its own first (so a quantity can
    change alone); empty when plan changes are off, the subscription's product is not one the merchant
    listed (as Stripe's ``subscription_update.products``), or it cannot be changed now."""
    update = settings.subscription_update
    item = sub.single_item
    if not update.enabled or not live(sub) or item is None or sub.scheduled_change:
        return []
    if sub.changes_blocked or sub.cancel_at_period_end or sub.pause_collection:
        return []
    listed = update.products.get(item.product or "")
    if not listed:
        return []
    offered = list(listed) if PortalUpdate.PRICE in update.allowed_updates else []
    return [item.price, *(price for price in offered if price != item.price)]


def check_change(
    settings: PortalSettings, sub: Subscription, price: str, quantity: int, price_product: str | None
) -> None:
    """Refuse a change the merchant does not offer: a price not listed for the subscription's product
    (or of another product), a quantity change when quantities are fixed, or no change at all."""
    update = settings.subscription_update
    options = change_options(settings, sub)
    if not options:
        raise IllegalTransition("this subscription cannot be changed here", param="subscription")
    item = sub.single_item
    assert item is not None  # change_options answers nothing for a subscription of several items
    if price not in options or (price != item.price and price_product != item.product):
        raise InvalidInput("this plan is not offered for this subscription", param="price")
    if quantity != item.quantity and PortalUpdate.QUANTITY not in update.allowed_updates:
        raise InvalidInput("the quantity cannot be changed", param="quantity")
    if not 1 <= quantity <= update.max_quantity:
        raise InvalidInput(f"quantity must be between 1 and {update.max_quantity}", param="quantity")
    if price == item.price and quantity == item.quantity:
        raise InvalidInput("choose another plan or quantity", param="price")


def may_cancel(settings: PortalSettings, sub: Subscription) -> bool:
    return settings.subscription_cancel.enabled and live(sub) and not sub.cancel_at_period_end


def may_undo_cancel(settings: PortalSettings, sub: Subscription, now: datetime) -> bool:
    return (
        settings.subscription_cancel.enabled and sub.cancel_at_period_end and live(sub) and now < sub.current_period_end
    )


def check_reason(settings: PortalSettings, reason: str | None) -> CancellationFeedback | None:
    if not reason:
        return None
    try:
        feedback = CancellationFeedback(reason)
    except ValueError as error:
        raise InvalidInput("choose one of the reasons offered", param="reason") from error
    if feedback not in settings.subscription_cancel.reasons:
        raise InvalidInput("choose one of the reasons offered", param="reason")
    return feedback


def may_pause(settings: PortalSettings, sub: Subscription) -> bool:
    return settings.subscription_pause.enabled and sub.status is Status.ACTIVE and not sub.pause_collection


def may_resume(settings: PortalSettings, sub: Subscription) -> bool:
    return settings.subscription_pause.enabled and live(sub) and bool(sub.pause_collection)


def may_change(settings: PortalSettings, sub: Subscription) -> bool:
    """Whether the change page has anything to offer: another price, or the quantity."""
    options = change_options(settings, sub)
    quantity = PortalUpdate.QUANTITY in settings.subscription_update.allowed_updates
    return len(options) > 1 or (bool(options) and quantity)


def allowed_actions(settings: PortalSettings, sub: Subscription, now: datetime) -> dict[str, bool]:
    """What the account page offers for one subscription."""
    return {
        "change": may_change(settings, sub),
        "cancel": may_cancel(settings, sub),
        "undo_cancel": may_undo_cancel(settings, sub, now),
        "pause": may_pause(settings, sub),
        "resume": may_resume(settings, sub),
    }


def retention_offer_key(sub_id: str) -> str:
    """Marks that the cancel page showed the retention offer (taking it is possible only after)."""
    return f"portal_retention_offered:{sub_id}"


def retention_answer_key(sub_id: str) -> str:
    """Marks the offer answered — taken, or declined by canceling: it is not shown again."""
    return f"portal_retention_answered:{sub_id}"


def retention_coupon_for(settings: PortalSettings, sub: Subscription) -> str | None:
    """The retention coupon the cancel page may offer for this subscription: the configured one, unless
    the subscription's discount is that coupon already. Offered until it is answered (the caller
    claims the answer)."""
    coupon = settings.subscription_cancel.retention_coupon
    if coupon is None or not may_cancel(settings, sub):
        return None
    applied = (sub.discount or {}).get("coupon")
    if isinstance(applied, dict) and applied.get("id") == coupon:
        return None
    return coupon
