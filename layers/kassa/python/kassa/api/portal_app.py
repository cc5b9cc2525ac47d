"""The customer portal's routes (docs/portal.md), included in the API's resolver (``kassa.api.app``).

- ``POST /v1/portal/sessions`` (secret key): a session for one customer, ``{"url": …}`` to send them to;
- ``GET /portal/session/<token>``: the session link, exchanged once for the session cookie
  (HttpOnly, Secure, SameSite=Lax, path ``/portal``), then on to ``/portal/account``;
- ``GET|POST /portal/login``: the sign-in-by-email form (the same answer whether or not the email is known);
- ``/portal/account…``: the customer's pages and actions. Every POST carries the session's CSRF token;
  another customer's subscription or invoice id is a 404 page.

Served under the API's existing ``/portal/{proxy+}`` route, with the portal's security headers
(``kassa.api.app.portal_headers``). Pages are HTML (``kassa.api.portal_page``); an action answers a
303 to the account page with a notice, the post/redirect/get pattern.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from pydantic import BaseModel, ConfigDict, Field

from kassa.adapters import container
from kassa.api.common import domain_error_response
from kassa.api.portal_page import (
    Words,
    address_lines,
    base_view,
    invoice_row,
    payment_method_label,
    preview_lines,
    price_label,
    render,
    render_refused,
    subscription_view,
)
from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, DomainError, InvalidInput, NotFound
from kassa.domain.invoice import Invoice
from kassa.domain.links import PORTAL_LINK_PURPOSES, Link, LinkRefused, signed_url, verify_link
from kassa.domain.portal import (
    ADDRESS_FORM_FIELDS,
    CustomerField,
    PortalUpdate,
    allowed_actions,
    change_options,
    csrf_matches,
    csrf_token,
    may_cancel,
)
from kassa.domain.settings import MerchantSettings
from kassa.services import portal

router = Router()

COOKIE = "kassa_portal"
NOTICES = ("changed", "canceled", "renewed", "paused", "resumed", "retained", "details_saved")
#: the errors the account page says after a refused action (``?error=…``)
ERRORS = ("action", "changed")


class PortalSessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1, max_length=64, description="the customer the session is for (cus_…)")
    return_url: str | None = Field(
        default=None,
        max_length=2000,
        description="where the portal's 'return to' link goes (https; default: settings.portal.default_return_url)",
    )


@router.post("/v1/portal/sessions", tags=["portal"], status_code=201)
def create_portal_session(body: PortalSessionIn) -> Response[dict[str, Any]]:
    """Create a customer portal session: redirect the customer to its url.

    The url opens the portal once, within ``settings.portal.link_minutes``; ``return_url`` (https) is
    where its "return to" link goes. Publishes billing_portal.session.created."""
    from kassa.api.app import _public_base

    billing = container.billing(with_gateway=False)
    info, url = portal.create_session(billing, container.link_secret(), _public_base(), body.customer, body.return_url)
    answer = {**info.model_dump(mode="json"), "url": url}
    return Response(status_code=201, content_type="application/json", body=answer)


# ---------------------------------------------------------------------------------- plumbing
def _base() -> str:
    from kassa.api.app import _public_base

    return urlsplit(_public_base()).path.rstrip("/") + "/portal"


def _header(name: str) -> str | None:
    headers = router.current_event.headers
    return headers.get(name) or headers.get(name.lower())


def _words(customer: Customer | None = None) -> Words:
    from kassa.api.invoice_page import accept_language

    return Words(customer.preferred_locale if customer else accept_language(_header("Accept-Language")))


# the portal's security headers (CSP, no framing, no referrer, no caching) are added to every /portal
# response by kassa.api.app's middleware
def _page(html: str, status: int = 200, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=html, cookies=cookies)


def _redirect(location: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(status_code=303, body="", headers={"Location": location}, cookies=cookies)


def _refused(kind: str, status: int, words: Words | None = None, settings: MerchantSettings | None = None) -> Response:
    settings = settings if settings is not None else container.store().get_settings()
    return _page(render_refused(kind, words or _words(), settings, _base()), status)


def _cookie_value() -> str | None:
    raw = _header("Cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


def _session_cookie(value: str, max_age: int) -> Cookie:
    return Cookie(
        name=COOKIE,
        value=value,
        path=_base(),
        secure=True,
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )


def _form() -> dict[str, str]:
    """The posted fields: a browser's form (urlencoded), or a JSON object's (a script's call)."""
    body = router.current_event.decoded_body or ""
    if body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return {str(key): str(value) for key, value in data.items() if value is not None}
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items() if values}


def _wants_json() -> bool:
    """Whether the caller asked for JSON (``Accept: application/json``, not a browser's ``text/html``):
    a script or API client, answered ``{"error": {…}}`` instead of a page."""
    accept = (_header("Accept") or "").lower()
    return "application/json" in accept and "text/html" not in accept


class Session:
    """The request's portal session: its link, customer, billing context, words and settings."""

    def __init__(self, link: Link, customer: Customer, billing: Any, settings: MerchantSettings) -> None:
        self.link, self.customer, self.billing, self.settings = link, customer, billing, settings
        self.words = Words(customer.preferred_locale)
        assert link.session is not None
        self.csrf = csrf_token(container.link_secret(), link.session)

    def view(self, **view: Any) -> dict[str, Any]:
        return base_view(
            self.words,
            self.settings,
            base=_base(),
            customer=self.customer,
            return_url=self.link.return_url,
            csrf=self.csrf,
            **view,
        )


def _session() -> Session | Response:
    """The request's session. The merchant settings are read here, once per request, and passed
    down to every page and service the request uses."""
    billing = container.billing()
    settings = billing.store.get_settings()
    if not settings.portal.enabled:
        return _refused("disabled", 403, settings=settings)
    try:
        link, customer = portal.session_of(billing, container.link_keys(), _cookie_value())
    except LinkRefused as error:
        kind = "session_expired" if error.code == "link_expired" else "signed_out"
        return _refused(kind, 401, settings=settings)
    return Session(link, customer, billing, settings)


def _action(
    do: Callable[[Session, dict[str, str]], Any],
    notice: str,
    fail: Callable[[Session, DomainError], Response] | None = None,
) -> Response:
    """A state change: the session, its CSRF token, then ``do``; a 303 to the account with ``notice``.
    Refused: ``fail``'s answer (a page naming the field), else a 303 to the account with an error; a
    caller that asks for JSON is answered the API's ``{"error": {…}}`` with its status instead."""
    found = _session()
    if isinstance(found, Response):
        return found
    form = _form()
    if not csrf_matches(container.link_keys(), found.link.session or "", form.get("csrf")):
        return _refused("link_invalid", 403, found.words, found.settings)
    try:
        do(found, form)
    except DomainError as error:
        if _wants_json():
            return domain_error_response(error)
        if isinstance(error, NotFound):
            return _refused("not_found", 404, found.words, found.settings)
        if fail is not None:
            return fail(found, error)
        return _redirect(f"{_base()}/account?error=action")
    return _redirect(f"{_base()}/account?notice={notice}")


def _query(name: str) -> str | None:
    return router.current_event.get_query_string_value(name)


# ---------------------------------------------------------------------------------- sign-in
@router.get("/portal/session/<token>", include_in_schema=False)
def open_portal_session(token: str) -> Response[str]:
    """The session link: exchanged once for the session cookie, then the account page."""
    billing = container.billing(with_gateway=False)
    settings = billing.store.get_settings()
    try:
        opened = portal.open_session(billing, container.link_keys(), token, settings.portal)
    except LinkRefused as error:
        return _refused(error.code, 403, settings=settings)
    max_age = int((opened.expires_at - billing.now()).total_seconds())
    return _redirect(f"{_base()}/account", cookies=[_session_cookie(opened.cookie, max_age)])


@router.get("/portal/login/<token>", include_in_schema=False)
def confirm_sign_in(token: str) -> Response[str]:
    """An emailed session link: a page whose button exchanges it (``POST``), so that a mail scanner
    fetching the link does not use it up. A refused link says why, as the session link does."""
    billing = container.billing(with_gateway=False)
    settings = billing.store.get_settings()
    try:
        verify_link(container.link_keys(), token, billing.now(), PORTAL_LINK_PURPOSES)
    except LinkRefused as error:
        return _refused(error.code, 403, settings=settings)
    words = _words()
    view = base_view(words, settings, base=_base(), title=words.t("login_title"), token=token)
    return _page(render("confirm", view))


@router.post("/portal/login/<token>", include_in_schema=False)
def sign_in(token: str) -> Response[str]:
    return open_portal_session(token)


@router.get("/portal/login", include_in_schema=False)
def login_page() -> Response[str]:
    settings = container.store().get_settings()
    words = _words()
    return _page(render("login", base_view(words, settings, base=_base(), sent=False, title=words.t("login_title"))))


@router.post("/portal/login", include_in_schema=False)
def login_request() -> Response[str]:
    """The same page for every email, known or not (no enumeration); a known customer is emailed a
    link at most once per window (``kassa.domain.portal.LOGIN_WINDOW``)."""
    email = _form().get("email", "")[:254]
    billing = container.billing(with_gateway=False)
    settings = billing.store.get_settings()
    portal.request_login(billing, email, settings.portal)
    words = _words()
    view = base_view(words, settings, base=_base(), sent=True, title=words.t("login_title"))
    return _page(render("login", view))


@router.post("/portal/account/logout", include_in_schema=False)
def logout() -> Response[str]:
    """Sign out: the session ends on the server (``portal.sign_out``: its cookie, replayed, opens
    nothing any more) and the browser's cookie is deleted. With the session's CSRF token, as every
    state change (without it: a 403, still signed in)."""
    found = _session()
    if isinstance(found, Response):  # no session (expired, signed out already): only the cookie to forget
        gone = _session_cookie("", 0)
        return _redirect(f"{_base()}/login", cookies=[gone])
    if not csrf_matches(container.link_keys(), found.link.session or "", _form().get("csrf")):
        return _refused("link_invalid", 403, found.words, found.settings)
    portal.sign_out(found.billing, container.link_keys(), _cookie_value())
    return _redirect(f"{_base()}/login", cookies=[_session_cookie("", 0)])


# ---------------------------------------------------------------------------------- the account
def _plan_name(s: Session, price_id: str, item_name: str | None = None) -> str:
    try:
        price = s.billing.price(price_id)
    except NotFound:
        return item_name or price_id
    product = s.billing.product(price.product)
    return price.nickname or (product.name if product else None) or item_name or price.id


def _price_option(s: Session, price_id: str) -> dict[str, Any]:
    price = s.billing.price(price_id)
    product = s.billing.product(price.product)
    return price_label(s.words, price, product.name if product else None)


@router.get("/portal/account", include_in_schema=False)
def account_page() -> Response[str]:
    """Subscriptions, payment method, billing details and invoices."""
    from kassa.services.invoicing import upcoming_invoice

    found = _session()
    if isinstance(found, Response):
        return found
    s = found
    seen = portal.overview(s.billing, s.customer, s.settings.portal)
    settings, now, words = seen.settings, s.billing.now(), s.words
    subscriptions = []
    for sub in seen.subscriptions:
        try:
            upcoming = upcoming_invoice(s.billing, sub, customer=s.customer, settings=s.settings)
        except DomainError:
            upcoming = None
        item = sub.single_item
        plan = (
            _plan_name(s, item.price, item.name)
            if item
            else ", ".join(_plan_name(s, i.price, i.name) for i in sub.items)
        )
        actions = allowed_actions(settings, sub, now)
        subscriptions.append(subscription_view(words, sub, plan=plan, next_invoice=upcoming, actions=actions))
    notice = _query("notice")
    view = s.view(
        subscriptions=subscriptions,
        invoices=[invoice_row(words, i) for i in seen.invoices] if settings.invoice_history else None,
        payment_method=(payment_method_label(words, s.customer) or "") if settings.payment_method_update else None,
        card_href=f"{_base()}/account/card" if settings.payment_method_update else None,
        address=address_lines(words, s.customer),
        can_edit_details=settings.customer_update.enabled and bool(settings.customer_update.allowed_updates),
        notice=words.t(f"notice.{notice}") if notice in NOTICES else None,
        error=words.t(f"error.{error}") if (error := _query("error")) in ERRORS else None,
    )
    return _page(render("account", view))


@router.get("/portal/account/card", include_in_schema=False)
def account_card() -> Response[str]:
    """On to the card-update page (``/portal/card``) with a card link signed now."""
    from kassa.api.app import _public_base

    found = _session()
    if isinstance(found, Response):
        return found
    if not found.settings.portal.payment_method_update:
        return _refused("not_found", 404, found.words, found.settings)
    days = found.settings.emails.card_link_days
    url, _ = signed_url(
        container.link_secret(),
        _public_base(),
        found.customer.id,
        "card_update",
        found.billing.now(),
        timedelta(days=days),
    )
    return _redirect(url)


def _session_invoice(invoice_id: str) -> tuple[Session, Invoice] | Response:
    """The session and one of its customer's issued invoices, or the page saying why not (another
    customer's invoice is a 404, like an unknown one)."""
    found = _session()
    if isinstance(found, Response):
        return found
    try:
        return found, portal.invoice(found.billing, found.customer.id, invoice_id)
    except NotFound:
        return _refused("not_found", 404, found.words, found.settings)


@router.get("/portal/account/invoices/<invoice_id>", include_in_schema=False)
def account_invoice(invoice_id: str) -> Response[str]:
    """One of the customer's invoices: on to its hosted page (signed now)."""
    from kassa.api.app import _public_base

    found = _session_invoice(invoice_id)
    if isinstance(found, Response):
        return found
    s, invoice = found
    valid = timedelta(days=s.settings.emails.invoice_link_days)
    secret, now = container.link_secret(), s.billing.now()
    url, _ = signed_url(secret, _public_base(), invoice.customer, "invoice", now, valid, invoice.id)
    return _redirect(url)


@router.get("/portal/account/invoices/<invoice_id>/pdf", include_in_schema=False)
def account_invoice_pdf(invoice_id: str):  # type: ignore[no-untyped-def]
    """The invoice's PDF (the same stored file as the hosted page's). No return annotation: Powertools
    would read the PDF's bytes as text."""
    from kassa.api.app import invoice_pdf_download

    found = _session_invoice(invoice_id)
    if isinstance(found, Response):
        return found
    s, invoice = found
    if invoice.number is None:  # a checkout's first invoice has its PDF once it is paid
        return _refused("not_found", 404, s.words, s.settings)
    return invoice_pdf_download(invoice, s.customer, s.settings)


# ---------------------------------------------------------------------------------- plan changes
def _change_page(
    s: Session,
    sub_id: str,
    error: str | None = None,
    status: int = 200,
    *,
    problem: str | None = None,
    chosen: dict[str, str] | None = None,
) -> Response[str]:
    """The plan-change form; after a refusal (``status`` 400/409) with ``error`` said, the field it
    names (``problem``: ``price`` or ``quantity``) marked, and the customer's choice (``chosen``) kept."""
    try:
        sub = portal.subscription(s.billing, s.customer.id, sub_id)
    except NotFound:
        return _refused("not_found", 404, s.words, s.settings)
    update = s.settings.portal.subscription_update
    options = change_options(s.settings.portal, sub)
    item = sub.single_item
    if not options or item is None:
        return _refused("not_found", 404, s.words, s.settings)
    chosen = chosen or {}
    view = s.view(
        title=s.words.t("change_title"),
        sub_id=sub.id,
        options=[_price_option(s, p) for p in options],
        current_price=item.price,
        selected=chosen["price"] if chosen.get("price") in options else item.price,
        quantity=chosen.get("quantity", item.quantity),
        quantity_allowed=PortalUpdate.QUANTITY in update.allowed_updates,
        max_quantity=update.max_quantity,
        error=error,
        problem=problem,
    )
    return _page(render("change", view), status)


#: the fields of the change form (a refusal naming another parameter marks none)
CHANGE_FIELDS = ("price", "quantity")


def _change_refused(
    s: Session, sub_id: str, error: DomainError, chosen: dict[str, str], *, preview: bool = False
) -> Response:
    """A plan change the request or the rules refuse, nothing changed: a field that does not fit is a
    400 naming it (the change form again, the field marked, in the customer's words); a subscription
    that changed meanwhile is a 409 (the form again: review the change; the account page saying so
    when it cannot be changed here any more); anything else — the
    subscription cannot be changed here — the account page with the error (a ``preview``: the form,
    400). A caller that asks for
    JSON gets the API's ``{"error": {…, "param": …}}`` with the same status."""
    if _wants_json():
        return domain_error_response(error)
    if isinstance(error, NotFound):
        return _refused("not_found", 404, s.words, s.settings)
    words = s.words
    if isinstance(error, Conflict):
        try:
            sub = portal.subscription(s.billing, s.customer.id, sub_id)
        except NotFound:
            return _refused("not_found", 404, s.words, s.settings)
        if not change_options(s.settings.portal, sub):  # not changeable any more: the account shows why
            return _redirect(f"{_base()}/account?error=changed")
        return _change_page(s, sub_id, words.t("error.changed"), 409)
    if isinstance(error, InvalidInput) and error.param in CHANGE_FIELDS:
        max_quantity = s.settings.portal.subscription_update.max_quantity
        text = words.t(f"error.{error.param}", max=max_quantity)
        return _change_page(s, sub_id, text, 400, problem=error.param, chosen=chosen)
    if isinstance(error, InvalidInput) or preview:
        return _change_page(s, sub_id, words.t("error.action"), 400, chosen=chosen)
    return _redirect(f"{_base()}/account?error=action")


@router.get("/portal/account/subscriptions/<sub_id>/change", include_in_schema=False)
def change_page(sub_id: str) -> Response[str]:
    found = _session()
    return found if isinstance(found, Response) else _change_page(found, sub_id)


def _quantity(raw: str | None, param: str = "quantity") -> int:
    value = (raw or "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 6:  # "²".isdigit(), but int("²") fails
        raise InvalidInput(f"{param} must be a whole number", param=param)
    return int(value)


@router.get("/portal/account/subscriptions/<sub_id>/preview", include_in_schema=False)
def change_preview(sub_id: str) -> Response[str]:
    """What the change costs, prorated, before the customer confirms it (the API's preview). Its
    confirm form carries the plan the preview was computed from, so a change made meanwhile is not
    confirmed unseen."""
    found = _session()
    if isinstance(found, Response):
        return found
    s, words = found, found.words
    price_id = _query("price") or ""
    chosen = {"price": price_id, "quantity": _query("quantity") or ""}
    try:
        quantity = _quantity(_query("quantity"))
        result = portal.change(s.billing, s.customer.id, sub_id, price_id, quantity, preview=True, merchant=s.settings)
    except DomainError as error:
        return _change_refused(s, sub_id, error, chosen, preview=True)
    sub = result.before
    assert sub is not None  # computed from this read
    item = sub.single_item
    assert item is not None
    old = _plan_name(s, item.price, item.name) + (f" × {item.quantity}" if item.quantity > 1 else "")
    new = _plan_name(s, price_id) + (f" × {quantity}" if quantity > 1 else "")
    renewal = words.day(sub.current_period_end)
    if result.invoice is not None:  # invoiced now (always_invoice, an interval switch)
        invoice = result.invoice
        lines = preview_lines(words, invoice, lambda price: _plan_name(s, price))
        total = words.money(invoice.amount_due, invoice.currency)
        total_label, when = words.t("preview.due_now"), words.t("preview.when_now", amount=total)
    else:
        upcoming = result.upcoming
        lines = preview_lines(words, upcoming, lambda price: _plan_name(s, price))
        currency = upcoming.currency if upcoming else sub.currency
        adjustment = sum(line.amount for line in upcoming.lines if line.proration) if upcoming else 0
        total = words.money(adjustment, currency)
        next_total = words.money(upcoming.amount_due if upcoming else 0, currency)
        total_label = words.t("preview.adjustment")
        key = "preview.when_next" if lines else "preview.when_none"
        when = words.t(key, date=renewal, amount=next_total)
    view = s.view(
        title=words.t("confirm_change"),
        sub_id=sub.id,
        old_plan=old,
        new_plan=new,
        lines=lines,
        total=total,
        total_label=total_label,
        when=when,
        price=price_id,
        quantity=quantity,
        from_price=item.price,
        from_quantity=item.quantity,
    )
    return _page(render("preview", view))


# ---------------------------------------------------------------------------------- cancellation
def _offer_text(words: Words, coupon: Any) -> str:
    if coupon.percent_off is not None:
        discount = words.t("percent_off", percent=f"{coupon.percent_off}%")
    else:
        discount = words.t("amount_off", amount=words.money(coupon.amount_off or 0, coupon.currency or "EUR"))
    duration = getattr(coupon.duration, "value", coupon.duration)
    return words.t(f"offer.{duration}", discount=discount, months=coupon.duration_in_months or 1)


@router.get("/portal/account/subscriptions/<sub_id>/cancel", include_in_schema=False)
def cancel_page(sub_id: str) -> Response[str]:
    """The reason, what canceling means, and the retention offer (the first time only)."""
    found = _session()
    if isinstance(found, Response):
        return found
    s, words, settings = found, found.words, found.settings.portal
    try:
        sub = portal.subscription(s.billing, s.customer.id, sub_id)
    except NotFound:
        return _refused("not_found", 404, words, s.settings)
    if not may_cancel(settings, sub):
        return _refused("not_found", 404, words, s.settings)
    offer = portal.retention_offer(s.billing, sub, settings)
    cancel = settings.subscription_cancel
    effect = words.t(f"cancel_effect.{cancel.mode}", date=words.day(sub.current_period_end))
    view = s.view(
        title=words.t("cancel_title"),
        sub_id=sub.id,
        offer=_offer_text(words, offer) if offer is not None else None,
        reasons=[(r.value, words.t(f"reason.{r.value}")) for r in cancel.reasons],
        cancel_effect=effect,
    )
    return _page(render("cancel", view))


def _change(s: Session, sub_id: str, form: dict[str, str]) -> Any:
    quantity = _quantity(form.get("quantity"))
    seen = None  # the plan the confirmed preview was computed from (a form without it: not checked)
    if form.get("from_price") or form.get("from_quantity"):
        seen = (form.get("from_price", ""), _quantity(form.get("from_quantity"), "from_quantity"))
    return portal.change(
        s.billing, s.customer.id, sub_id, form.get("price", ""), quantity, preview=False, merchant=s.settings, seen=seen
    )


def _cancel(s: Session, sub_id: str, form: dict[str, str]) -> Any:
    reason, comment = form.get("reason") or None, form.get("comment")
    offered = form.get("offered") == "1"  # sent from the page that showed the retention offer
    return portal.cancel(s.billing, s.customer.id, sub_id, reason, comment, s.settings.portal, offered=offered)


def _on(use: Callable[[Any, str, str, Any], Any]) -> Callable[[Session, str, dict[str, str]], Any]:
    return lambda s, sub_id, _: use(s.billing, s.customer.id, sub_id, s.settings.portal)


#: what a POST to /portal/account/subscriptions/<id>/<action> does, and the notice it answers with
SUBSCRIPTION_ACTIONS: dict[str, tuple[Callable[[Session, str, dict[str, str]], Any], str]] = {
    "change": (_change, "changed"),
    "cancel": (_cancel, "canceled"),
    "retention": (_on(portal.accept_retention), "retained"),  # the retention coupon instead of canceling
    "renew": (_on(portal.undo_cancel), "renewed"),  # undo a cancellation at the period end
    "pause": (_on(portal.pause), "paused"),
    "resume": (_on(portal.resume), "resumed"),
}


@router.post("/portal/account/subscriptions/<sub_id>/<action>", include_in_schema=False)
def subscription_action(sub_id: str, action: str) -> Response[str]:
    """A change to one of the customer's subscriptions (``SUBSCRIPTION_ACTIONS``), through the API's services."""
    if action not in SUBSCRIPTION_ACTIONS:
        return _refused("not_found", 404)
    do, notice = SUBSCRIPTION_ACTIONS[action]
    if action == "change":  # a field that does not fit: the form again (400) naming it
        form: dict[str, str] = {}

        def change(s: Session, posted: dict[str, str]) -> Any:
            form.update(posted)
            return do(s, sub_id, posted)

        def refused(s: Session, error: DomainError) -> Response:
            return _change_refused(s, sub_id, error, {k: form.get(k, "") for k in CHANGE_FIELDS})

        return _action(change, notice, refused)
    return _action(lambda s, form: do(s, sub_id, form), notice)


# ---------------------------------------------------------------------------------- billing details
def _details_view(s: Session, values: dict[str, Any], problem: str | None = None) -> dict[str, Any]:
    update = s.settings.portal.customer_update
    fields = [f.value for f in update.allowed_updates] if update.enabled else []
    problem_text = None
    if problem == CustomerField.TAX_ID.value:
        problem_text = s.words.t("error.tax_id")
    return s.view(
        title=s.words.t("details_title"),
        fields=fields,
        values=values,
        countries=s.words.countries(),
        problem=problem,
        problem_text=problem_text,
        error=(problem_text or s.words.t("error.field")) if problem else None,
    )


@router.get("/portal/account/details", include_in_schema=False)
def details_page() -> Response[str]:
    found = _session()
    if isinstance(found, Response):
        return found
    c = found.customer
    values = {"name": c.name, "tax_id": c.tax_id, **c.address.model_dump()}
    return _page(render("details", _details_view(found, values)))


@router.post("/portal/account/details", include_in_schema=False)
def details_save() -> Response[str]:
    """Name, billing address and VAT number through the API's customer update — only the fields the
    form has, merged over the customer as the update reads it, so a change the merchant's API made
    meanwhile to any other field is kept; a VAT number that does not fit the country is shown on the
    form (400), nothing is saved."""
    values: dict[str, Any] = {}

    def do(s: Session, form: dict[str, str]) -> None:
        values.update(form)
        allowed = {f.value for f in s.settings.portal.customer_update.allowed_updates}
        changes: dict[str, Any] = {}
        if CustomerField.NAME.value in allowed and "name" in form:
            changes["name"] = form["name"].strip()[:200] or None
        if CustomerField.ADDRESS.value in allowed and "country" in form:
            # the form's fields only: merged over the address on file as the update reads it (the form
            # has no state: it is kept for the same country, never carried into another)
            changes["address"] = {k: (form.get(k) or "").strip()[:200] or None for k in ADDRESS_FORM_FIELDS}
        if CustomerField.TAX_ID.value in allowed and "tax_id" in form:
            changes["tax_id"] = form["tax_id"].strip()[:40]
        portal.update_details(s.billing, s.customer.id, changes, s.settings.portal)

    def fail(s: Session, error: DomainError) -> Response:
        param = (error.param or "").split(".")[0]
        problem = param if param in {f.value for f in CustomerField} else "name"
        return _page(render("details", _details_view(s, values, problem)), 400)

    return _action(do, "details_saved", fail)
