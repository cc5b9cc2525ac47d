"""Use case: the customer portal (docs/portal.md).

Sessions: the merchant's backend creates one for a customer (``create_session``: a signed link that
expires, with its return URL), or the customer asks for a sign-in email (``request_login``: the same
answer whether or not the email is known; at most one email per customer per window). The link is
exchanged once (``open_session``, a once-only claim in the store) for the session cookie's token.

Every action a customer takes here goes through the service the API uses for it — plan changes
(``plan_changes``), cancellation, pausing, coupons, customer updates — so it makes the same state
change and publishes the same domain events; this module adds only the portal's rules (what the
merchant allows, ``kassa.domain.portal``) and the isolation: a subscription or invoice that is not the
session customer's is ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from kassa.domain.cancellation import CancellationDetails
from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, DomainError, IllegalTransition, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.links import (
    PORTAL_COOKIE_PURPOSES,
    PORTAL_LINK_PURPOSES,
    Link,
    LinkRefused,
    link_url,
    sign_link,
    verify_link,
)
from kassa.domain.portal import (
    LOGIN_WINDOW,
    CustomerField,
    PortalSettings,
    check_change,
    check_reason,
    check_return_url,
    details_address,
    live,
    login_session_id,
    login_window,
    may_cancel,
    may_pause,
    may_resume,
    may_undo_cancel,
    owned,
    owned_invoice_check,
    retention_answer_key,
    retention_coupon_for,
    retention_offer_key,
    session_claim_key,
    signed_out_key,
)
from kassa.domain.proration import ProrationBehavior
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.services import cancellation, coupons, customers, pausing, plan_changes
from kassa.services.context import RETRIES, BillingContext
from kassa.services.plan_changes import PlanChange

#: what the portal lists of a customer's invoices (newest first)
INVOICE_HISTORY = 24
#: a used session link's marker is kept past the link's expiry (after it, the signature refuses it)
CLAIM_MARGIN = timedelta(days=1)
LOGIN_REQUESTED = "billing_portal.login_requested"


class LinkUsed(LinkRefused):
    """A portal session link that was already exchanged for a session."""

    code = "link_used"


class PortalSessionInfo(BaseModel):
    """A portal session as the API answers it and ``billing_portal.session.created`` carries it (never
    the URL: it is the customer's key)."""

    id: str
    object: str = "billing_portal.session"
    customer: str
    return_url: str | None
    created: datetime
    expires_at: datetime


class LoginRequest(BaseModel):
    """What ``billing_portal.login_requested`` carries: whom to email a sign-in link, in which window."""

    id: str  # the customer
    object: str = "billing_portal.login_request"
    window: str


@dataclass(frozen=True)
class Opened:
    cookie: str  # the session cookie's token
    expires_at: datetime
    link: Link


def portal_settings(ctx: BillingContext, settings: PortalSettings | None = None) -> PortalSettings:
    """The portal's settings: ``settings`` when the caller read them already for this request (the
    routes read the merchant settings once per request and pass them down), else from the store."""
    return settings if settings is not None else ctx.store.get_settings().portal


def _enabled(settings: PortalSettings) -> None:
    if not settings.enabled:
        raise IllegalTransition("the customer portal is switched off (settings.portal.enabled)", param="customer")


def check_configuration(ctx: BillingContext, settings: PortalSettings) -> None:
    """What the settings model cannot check alone, before ``PUT /v1/settings`` stores it: each listed
    product and price exists, each price is its product's and billed in advance (not metered), and the
    retention coupon exists. ``InvalidInput`` names the field (``portal.subscription_update.products.
    prod_x[1]``)."""
    from kassa.domain.catalog import UsageType

    for product_id, prices in settings.subscription_update.products.items():
        where = f"portal.subscription_update.products.{product_id}"
        if ctx.product(product_id) is None:
            raise InvalidInput(f"no such product: {product_id}", param=where)
        for index, price_id in enumerate(prices):
            try:
                price = ctx.price(price_id)
            except NotFound as error:
                raise InvalidInput(f"no such price: {price_id}", param=f"{where}[{index}]") from error
            if price.product != product_id:
                raise InvalidInput(f"{price_id} is a price of {price.product}", param=f"{where}[{index}]")
            if price.recurring.usage_type is UsageType.METERED:
                raise InvalidInput(f"{price_id} is metered: offer prices billed in advance", param=f"{where}[{index}]")
    coupon = settings.subscription_cancel.retention_coupon
    if coupon is not None:
        try:
            ctx.store.get_coupon(coupon)
        except NotFound as error:
            raise InvalidInput(
                f"no such coupon: {coupon}", param="portal.subscription_cancel.retention_coupon"
            ) from error


# ---------------------------------------------------------------------------------- sessions
def session_token(
    secret: str, settings: PortalSettings, customer_id: str, session: str, return_url: str | None, now: datetime
) -> tuple[str, datetime]:
    """A portal session link's token (valid ``settings.link_minutes``)."""
    valid = timedelta(minutes=settings.link_minutes)
    return sign_link(secret, customer_id, "portal_session", now, valid, session=session, return_url=return_url)


def create_session(
    ctx: BillingContext, secret: str, public_url: str, customer_id: str, return_url: str | None
) -> tuple[PortalSessionInfo, str]:
    """``POST /v1/portal/sessions``: a session for one customer; answers it and its URL."""
    settings = portal_settings(ctx)
    _enabled(settings)
    try:
        ctx.store.get_customer(customer_id)
    except NotFound as error:
        raise NotFound(f"no such customer: {customer_id}", param="customer") from error
    back = check_return_url(return_url, settings.return_url_hosts) if return_url else settings.default_return_url
    now = ctx.now()
    session = new_id("bps", 24)
    token, expires = session_token(secret, settings, customer_id, session, back, now)
    info = PortalSessionInfo(id=session, customer=customer_id, return_url=back, created=now, expires_at=expires)
    ctx.emit(DomainEvent.of("billing_portal.session.created", info, now, cause="created"))
    return info, link_url(public_url, "portal_session", token)


def open_session(
    ctx: BillingContext, secrets: Sequence[str], token: str, settings: PortalSettings | None = None
) -> Opened:
    """Exchange a session link, once, for the session cookie's token (``LinkUsed`` the second time,
    ``LinkExpired`` after its expiry, ``LinkRefused`` when tampered)."""
    now = ctx.now()
    link = verify_link(secrets, token, now, PORTAL_LINK_PURPOSES)
    settings = portal_settings(ctx, settings)
    if not settings.enabled:
        raise LinkRefused("the customer portal is switched off", param="token")
    assert link.session is not None  # verify_link refuses a portal link without one
    if not ctx.store.claim_once(session_claim_key(link.session), link.expires_at + CLAIM_MARGIN):
        raise LinkUsed("this link was used already; ask for a new one", param="token")
    valid = timedelta(minutes=settings.session_minutes)
    cookie, expires = sign_link(
        secrets[0], link.customer, "portal", now, valid, session=link.session, return_url=link.return_url
    )
    return Opened(cookie, expires, link)


def session_of(ctx: BillingContext, secrets: Sequence[str], cookie: str | None) -> tuple[Link, Customer]:
    """The session a cookie stands for, and its customer (``LinkRefused`` / ``LinkExpired`` otherwise,
    and ``LinkRefused`` for a session signed out: its cookie opens nothing any more)."""
    link = verify_link(secrets, cookie or "", ctx.now(), PORTAL_COOKIE_PURPOSES)
    if link.session is None or ctx.store.is_claimed(signed_out_key(link.session)):
        raise LinkRefused("this session was signed out", param="token")
    try:
        return link, ctx.store.get_customer(link.customer)
    except NotFound as error:
        raise LinkRefused("this session is not valid", param="token") from error


def sign_out(ctx: BillingContext, secrets: Sequence[str], cookie: str | None) -> None:
    """End a session on the server: its id is marked signed out in the store (until the cookie's
    token would have expired anyway), so the cookie — a copy kept, a replayed request — opens nothing.
    A cookie that opens no session any more needs nothing."""
    try:
        link = verify_link(secrets, cookie or "", ctx.now(), PORTAL_COOKIE_PURPOSES)
    except LinkRefused:
        return
    if link.session is not None:
        ctx.store.claim_once(signed_out_key(link.session), link.expires_at + CLAIM_MARGIN)


def request_login(ctx: BillingContext, email: str, settings: PortalSettings | None = None) -> None:
    """The customer asks for a sign-in link. Answers nothing either way (no enumeration); for a known
    customer, once per window, ``billing_portal.login_requested`` asks the notifications function to
    email the link (the API sends no email itself)."""
    settings = portal_settings(ctx, settings)
    customer = ctx.store.find_customer_by_email(email.strip()) if settings.enabled and "@" in email else None
    if customer is None:
        return
    now = ctx.now()
    window = login_window(now)
    if ctx.store.claim_once(f"portal_login:{customer.id}:{window}", now + 2 * LOGIN_WINDOW):
        request = LoginRequest(id=customer.id, window=window)
        ctx.emit(DomainEvent.of(LOGIN_REQUESTED, request, now, cause=window))


def login_link(
    ctx: BillingContext, secret: str, public_url: str, customer_id: str, window: str
) -> tuple[str, datetime]:
    """The sign-in email's session URL (the same session id for the same window: a redelivered request
    makes the same link, and the outbox sends it once). It opens a page whose button exchanges the
    link: mail scanners that fetch every link in an email do not use it up."""
    settings = portal_settings(ctx)
    session = login_session_id(customer_id, window)
    token, expires = session_token(secret, settings, customer_id, session, settings.default_return_url, ctx.now())
    return link_url(public_url, "portal_session", token, confirm=True), expires


# ---------------------------------------------------------------------------------- what the customer sees
@dataclass(frozen=True)
class Overview:
    customer: Customer
    subscriptions: list[Subscription]
    invoices: list[Invoice]
    settings: PortalSettings


def overview(ctx: BillingContext, customer: Customer, settings: PortalSettings | None = None) -> Overview:
    settings = portal_settings(ctx, settings)
    subs = [s for s in ctx.store.list_customer_subscriptions(customer.id) if live(s)]
    invoices: list[Invoice] = []
    if settings.invoice_history:
        page = ctx.store.list_customer_invoices(customer.id, INVOICE_HISTORY, None)
        invoices = [i for i in page.items if i.status is not InvoiceStatus.DRAFT]
    return Overview(customer, subs, invoices, settings)


def subscription(ctx: BillingContext, customer_id: str, subscription_id: str) -> Subscription:
    """One of the customer's subscriptions; ``NotFound`` for any other id."""
    if not subscription_id.startswith("sub_"):
        raise NotFound("no such subscription", param="subscription")
    try:
        sub = ctx.store.get_subscription(subscription_id)
    except NotFound:
        sub = None
    return owned(sub, customer_id)


def invoice(ctx: BillingContext, customer_id: str, invoice_id: str) -> Invoice:
    """One of the customer's issued invoices; ``NotFound`` for any other id (and for a draft)."""
    found = ctx.store.find_invoice(invoice_id) if invoice_id.startswith("in_") else None
    owned_invoice_check(found.customer if found else None, customer_id)
    assert found is not None
    if found.status is InvoiceStatus.DRAFT:
        raise NotFound("no such invoice", param="invoice")
    return found


# ---------------------------------------------------------------------------------- plan changes
def _price_product(ctx: BillingContext, price_id: str) -> str:
    try:
        return ctx.price(price_id).product
    except NotFound as error:
        raise InvalidInput("this plan is not offered for this subscription", param="price") from error


def change(
    ctx: BillingContext,
    customer_id: str,
    subscription_id: str,
    price_id: str,
    quantity: int,
    *,
    preview: bool,
    merchant: MerchantSettings | None = None,
    seen: tuple[str, int] | None = None,
) -> PlanChange:
    """Change (or ``preview``: compute, changing nothing) the plan and/or quantity among the prices
    the merchant offers, prorated as ``settings.portal.subscription_update.proration_behavior``.
    ``merchant``: the merchant settings read for this request (the plan change prices and taxes with
    them too). ``seen``: the price and quantity the customer's preview was computed from.

    The customer's intent — this price, this quantity — is checked against the portal's rules on the
    subscription ``plan_changes.change_plan`` reads, the very read the change is computed from and
    written under, never an earlier one. A write that loses to a concurrent change (the merchant's
    API) is computed again from a fresh read and checked again; when the intent no longer fits that
    subscription — it is not offered any more, the plan is already the one asked for, or it is no
    longer the plan the customer saw (``seen``: also when the subscription previewed cannot be changed
    here any more) — the change is refused with a ``Conflict`` (a 409: review it again) and nothing is
    written."""
    settings = portal_settings(ctx, merchant.portal if merchant is not None else None)
    if not subscription_id.startswith("sub_"):
        raise NotFound("no such subscription", param="subscription")
    reads = 0

    def check(sub: Subscription) -> None:
        nonlocal reads
        reads += 1
        owned(sub, customer_id)
        try:
            check_change(settings, sub, price_id, quantity, _price_product(ctx, price_id))
        except (InvalidInput, IllegalTransition) as error:
            if reads > 1 or (seen is not None and isinstance(error, IllegalTransition)):
                # it fitted the read before (whose write lost), or the subscription previewed
                raise _changed_meanwhile() from error
            raise  # the request itself does not fit
        item = sub.single_item
        assert item is not None  # check_change refuses a subscription of several items
        if seen is not None and seen != (item.price, item.quantity):
            raise _changed_meanwhile()

    try:
        return plan_changes.change_plan(
            ctx,
            subscription_id,
            price_id=price_id,
            quantity=quantity,
            behavior=ProrationBehavior(settings.subscription_update.proration_behavior),
            preview=preview,
            settings=merchant,
            check=check,
            attempts=RETRIES,
        )
    except DomainError as error:
        if isinstance(error, NotFound) and reads == 0:  # the subscription itself: as any id not the customer's
            raise NotFound("no such subscription", param="subscription") from error
        if error.param == "price_id":  # the API's name for the portal's price
            error.param = "price"
        raise


def _changed_meanwhile() -> Conflict:
    return Conflict(
        "this subscription changed since the change was shown; review the change again", param="subscription"
    )


# ---------------------------------------------------------------------------------- cancellation
def cancel(
    ctx: BillingContext,
    customer_id: str,
    subscription_id: str,
    reason: str | None,
    comment: str | None,
    settings: PortalSettings | None = None,
    *,
    offered: bool = False,
) -> Subscription:
    """Cancel as the merchant configured (at the period end by default) with the customer's reason;
    the retention offer, if it was made, counts as declined (it is used up). ``offered``: the cancel
    was sent from a page that showed the offer — its answer is claimed before canceling, the same
    once-only claim ``accept_retention`` makes, so of an accept and a cancel sent at once only one
    succeeds (the other is refused: "answered already")."""
    settings = portal_settings(ctx, settings)
    sub = subscription(ctx, customer_id, subscription_id)
    if not may_cancel(settings, sub):
        raise IllegalTransition("this subscription cannot be canceled here", param="subscription")
    feedback = check_reason(settings, reason)
    details = CancellationDetails(feedback=feedback, comment=(comment or "").strip()[:5000] or None)
    at_period_end = settings.subscription_cancel.mode == "at_period_end"
    answer = retention_answer_key(sub.id)
    if offered and not ctx.store.claim_once(answer, sub.current_period_end + CLAIM_MARGIN):
        raise IllegalTransition("this offer was answered already; open the page again", param="subscription")
    try:
        canceled = cancellation.cancel(ctx, sub.id, at_period_end=at_period_end, details=details)
    except Exception:
        if offered:  # not canceled: the offer stands, as after a failed accept
            ctx.store.release_claim(answer)
        raise
    if not offered and ctx.store.is_claimed(retention_offer_key(sub.id)):  # offered, and declined
        ctx.store.claim_once(retention_answer_key(sub.id), canceled.current_period_end + CLAIM_MARGIN)
    return canceled


def undo_cancel(
    ctx: BillingContext, customer_id: str, subscription_id: str, settings: PortalSettings | None = None
) -> Subscription:
    settings = portal_settings(ctx, settings)
    sub = subscription(ctx, customer_id, subscription_id)
    if not may_undo_cancel(settings, sub, ctx.now()):
        raise IllegalTransition("this subscription has no cancellation to undo", param="subscription")
    return cancellation.undo_cancel(ctx, sub.id)


def retention_offer(ctx: BillingContext, sub: Subscription, settings: PortalSettings | None = None) -> Any | None:
    """The coupon to offer on the cancel page until the offer is answered — taken, or declined by
    canceling (a customer who opens the page and goes back is offered it again); None when there is
    none, or it was answered. Showing it marks it offered (taking it is possible only after)."""
    coupon_id = retention_coupon_for(portal_settings(ctx, settings), sub)
    if coupon_id is None or ctx.store.is_claimed(retention_answer_key(sub.id)):
        return None
    try:
        coupon = ctx.store.get_coupon(coupon_id)
    except NotFound:
        return None
    ctx.store.claim_once(retention_offer_key(sub.id), sub.current_period_end + CLAIM_MARGIN)  # shown before: kept
    return coupon


def accept_retention(
    ctx: BillingContext, customer_id: str, subscription_id: str, settings: PortalSettings | None = None
) -> Subscription:
    """The customer takes the retention coupon instead of canceling: applied as the API's
    ``POST /v1/subscriptions/{id}/discount`` applies a coupon. Only after it was offered, and once:
    the answer is claimed (a conditional write) before the coupon is applied, so of two concurrent
    requests one applies it and the other is refused."""
    settings = portal_settings(ctx, settings)
    sub = subscription(ctx, customer_id, subscription_id)
    coupon_id = retention_coupon_for(settings, sub)
    if coupon_id is None or not ctx.store.is_claimed(retention_offer_key(sub.id)):
        raise IllegalTransition("there is no offer for this subscription", param="subscription")
    answer = retention_answer_key(sub.id)
    if not ctx.store.claim_once(answer, sub.current_period_end + CLAIM_MARGIN):
        raise IllegalTransition("this offer was answered already", param="subscription")
    try:
        return coupons.apply_subscription_discount(ctx, sub.id, coupon_id)
    except Exception:
        ctx.store.release_claim(answer)  # not applied: the offer stands (the claim guards the applying only)
        raise


# ---------------------------------------------------------------------------------- pausing
def pause(
    ctx: BillingContext, customer_id: str, subscription_id: str, settings: PortalSettings | None = None
) -> Subscription:
    settings = portal_settings(ctx, settings)
    sub = subscription(ctx, customer_id, subscription_id)
    if not may_pause(settings, sub):
        raise IllegalTransition("payments for this subscription cannot be paused here", param="subscription")
    return pausing.pause_collection(ctx, sub.id, settings.subscription_pause.behavior)


def resume(
    ctx: BillingContext, customer_id: str, subscription_id: str, settings: PortalSettings | None = None
) -> Subscription:
    settings = portal_settings(ctx, settings)
    sub = subscription(ctx, customer_id, subscription_id)
    if not may_resume(settings, sub):
        raise IllegalTransition("this subscription's payments are not paused", param="subscription")
    return pausing.resume_collection(ctx, sub.id)


# ---------------------------------------------------------------------------------- billing details
def update_details(
    ctx: BillingContext, customer_id: str, changes: dict[str, Any], settings: PortalSettings | None = None
) -> Customer:
    """Name, billing address and VAT number, as far as the merchant allows: through the API's customer
    update (validation of the VAT number for the country, ``customer.updated``); invoices finalized
    from now on are taxed from them. Only these fields are written, under the version of the read the
    update makes (retried from a fresh read on a conflict): a change the merchant's API made meanwhile
    to anything else — the email, the address's state — is kept. ``changes["address"]``: an
    ``Address``, or the form's address fields (``kassa.domain.portal.details_address``), merged over
    the address of that same read."""
    update = portal_settings(ctx, settings).customer_update
    allowed = {field.value for field in update.allowed_updates} if update.enabled else set()
    refused = sorted(set(changes) - allowed)
    if refused:
        raise InvalidInput(f"{refused[0]} cannot be changed here", param=refused[0])
    if CustomerField.TAX_ID.value in changes and changes[CustomerField.TAX_ID.value] == "":
        changes = {**changes, CustomerField.TAX_ID.value: None}
    form_address = changes.get(CustomerField.ADDRESS.value)
    if not isinstance(form_address, Mapping):
        return customers.update_customer(ctx, customer_id, changes)

    def on(current: Customer) -> dict[str, Any]:
        return {**changes, CustomerField.ADDRESS.value: details_address(current.address, form_address)}

    return customers.update_customer(ctx, customer_id, on)
