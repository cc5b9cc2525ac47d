"""The customer portal's pages (``/portal/account…``), rendered on the server in the customer's language.

One Jinja2 template (``static/portal.html.j2``, autoescaped, the hosted invoice page's environment)
shows every page: the account (subscriptions, payment method, billing details, invoices), a plan
change and its prorated preview, the cancellation (reason, retention offer), the billing-details form,
and the sign-in and refusal pages. No script: every action is a form posted with the session's CSRF
token, so the pages run under the portal's CSP unchanged.

The words come from ``static/portal_page.<language>.json`` (every language has exactly English's keys:
a test keeps them equal); money and dates are babel's for the locale (``kassa.emails.render``'s
helpers: integer minor units, never a float). Pure: no I/O beyond the package's own files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import cache
from typing import Any

from kassa import i18n
from kassa.api.invoice_page import DEFAULT_LANGUAGE, page_locale, payable
from kassa.domain.catalog import Price
from kassa.domain.customer import Customer
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription

_PACKAGE = "kassa.api"
_PREFIX = "portal_page."


def portal_languages() -> frozenset[str]:
    """Languages with a portal translations file (``static/portal_page.<language>.json``)."""
    return i18n.languages(_PACKAGE, "static", _PREFIX)


def portal_strings(language: str) -> Mapping[str, str]:
    if language not in portal_languages():
        raise KeyError(f"no portal translations for {language!r}")
    return i18n.strings(_PACKAGE, "static", language, _PREFIX)


class Words:
    """The portal's words, money and dates for one customer's locale."""

    def __init__(self, locale: str | None) -> None:
        self.language, self.locale = page_locale(locale)
        if self.language not in portal_languages():
            self.language, self.locale = DEFAULT_LANGUAGE, DEFAULT_LANGUAGE

    def t(self, key: str, **values: Any) -> str:
        text = portal_strings(self.language).get(key)
        if text is None:
            text = portal_strings(DEFAULT_LANGUAGE)[key]
        return text.format_map(values)

    def money(self, amount: int, currency: str) -> str:
        from kassa.emails.render import format_money

        return format_money(amount, currency, self.locale)

    def day(self, value: date | datetime | None) -> str:
        from kassa.emails.render import format_day

        return format_day(value, self.locale) if value is not None else ""

    def country(self, code: str) -> str:
        from babel import Locale

        return str(Locale.parse(self.locale).territories.get(code.upper(), code.upper()))

    def countries(self) -> list[tuple[str, str]]:
        """ISO 3166-1 alpha-2 countries with their names in the locale, sorted by name."""
        from babel import Locale

        names = Locale.parse(self.locale).territories
        return sorted(((c, str(n)) for c, n in names.items() if len(c) == 2 and c.isalpha() and c != "ZZ"), key=_name)

    def per(self, amount: int, currency: str, interval: str, count: int) -> str:
        """``€25.00 per month``, ``€60.00 every 3 months``."""
        money = self.money(amount, currency)
        if count == 1:
            return self.t(f"per.{interval}", amount=money)
        return self.t(f"every.{interval}", amount=money, count=count)


def _name(row: tuple[str, str]) -> str:
    return row[1].casefold()


# ---------------------------------------------------------------------------------- views
def price_label(words: Words, price: Price, product_name: str | None) -> dict[str, Any]:
    name = price.nickname or product_name or price.id
    unit = price.unit_amount
    amount = (
        words.per(unit, price.currency, price.recurring.interval.value, price.recurring.interval_count)
        if unit is not None
        else words.t("tiered")
    )
    return {"id": price.id, "name": name, "amount": amount}


def subscription_view(
    words: Words,
    sub: Subscription,
    *,
    plan: str,
    next_invoice: Invoice | None,
    actions: Mapping[str, bool],
) -> dict[str, Any]:
    item = sub.single_item
    status = "paused" if sub.pause_collection else sub.status.value
    if sub.cancel_at_period_end:
        note = words.t("cancels_on", date=words.day(sub.current_period_end))
    elif sub.pause_collection:
        note = words.t("payments_paused")
    elif sub.trial_end and sub.status.value == "trialing":
        note = words.t("trial_ends", date=words.day(sub.trial_end))
    else:
        note = words.t("renews_on", date=words.day(sub.current_period_end))
    return {
        "id": sub.id,
        "plan": plan,
        "quantity": item.quantity if item is not None else None,
        "status": status,
        "status_label": words.t(f"status.{status}"),
        "note": note,
        "next": words.t(
            "next_invoice",
            amount=words.money(next_invoice.amount_due, next_invoice.currency),
            date=words.day(sub.current_period_end),
        )
        if next_invoice is not None and not sub.cancel_at_period_end
        else None,
        "actions": dict(actions),
    }


def invoice_row(words: Words, invoice: Invoice) -> dict[str, Any]:
    status = invoice.status
    return {
        "id": invoice.id,
        "number": invoice.number or words.t("first_payment"),
        "date": words.day(invoice.finalized_at or invoice.created),
        "amount": words.money(invoice.total, invoice.currency),
        "status": status.value,
        "status_label": words.t(f"invoice_status.{status.value}"),
        "pdf": invoice.number is not None and status is not InvoiceStatus.DRAFT,
        "payable": payable(invoice),  # its hosted page has a Pay button
    }


def payment_method_label(words: Words, customer: Customer) -> str | None:
    method = customer.default_payment_method
    if method is None:
        return None
    if method.is_bank_account:
        return words.t("bank_account", last4=method.last4 or "")
    brand = (method.brand or "card").capitalize()
    if method.exp_month and method.exp_year:
        return words.t(
            "card_expiring", brand=brand, last4=method.last4 or "", month=method.exp_month, year=method.exp_year
        )
    return words.t("card", brand=brand, last4=method.last4 or "")


def address_lines(words: Words, customer: Customer) -> list[str]:
    a = customer.address
    city = " ".join(part for part in (a.postal_code, a.city) if part)
    return [line for line in (a.line1, a.line2, city, a.state, words.country(a.country)) if line]


def preview_lines(words: Words, invoice: Invoice | None, plan_of: Callable[[str], str]) -> list[dict[str, str]]:
    """The prorated lines of a change in the customer's words: the credit for the unused time of the
    old plan, the charge for the rest of the period on the new one (``plan_of``: a price's name)."""
    if invoice is None:
        return []
    rows = []
    for line in invoice.lines:
        if not line.proration:
            continue
        key = "preview.unused" if line.amount < 0 else "preview.remaining"
        plan = plan_of(line.price) if line.price else line.description
        if line.quantity > 1:
            plan = f"{plan} × {line.quantity}"
        text = words.t(key, plan=plan, date=words.day(line.period_start))
        rows.append({"description": text, "amount": words.money(line.amount, invoice.currency)})
    return rows


# ---------------------------------------------------------------------------------- rendering
def base_view(words: Words, settings: MerchantSettings, **view: Any) -> dict[str, Any]:
    return {
        "lang": words.language,
        "merchant": settings.seller_name,
        "colour": settings.emails.colour,
        "logo_url": settings.emails.logo_url,
        "support": words.t("questions", email=settings.support_email) if settings.support_email else None,
        "t": words.t,
        "customer": None,
        "return_url": None,
        "csrf": None,
        "notice": None,
        "error": None,
        **view,
    }


@cache
def _template() -> Any:
    from kassa.api.invoice_page import _environment

    return _environment().get_template("portal.html.j2")


def render(page: str, view: Mapping[str, Any]) -> str:
    return str(_template().render(page=page, **view))


#: what a refused page says: (title key, body key)
REFUSALS = {
    "link_expired": ("refused.expired_title", "refused.expired_body"),
    "link_invalid": ("refused.invalid_title", "refused.invalid_body"),
    "link_used": ("refused.used_title", "refused.used_body"),
    "not_found": ("refused.not_found_title", "refused.not_found_body"),
    "disabled": ("refused.disabled_title", "refused.disabled_body"),
    "session_expired": ("refused.session_expired_title", "refused.session_expired_body"),
    "signed_out": ("refused.signed_out_title", "refused.signed_out_body"),
}


def render_refused(kind: str, words: Words, settings: MerchantSettings, base: str) -> str:
    """The page shown instead (an expired, used or tampered link, no session, an id that is not the
    customer's), in ``words``' language, with a way to sign in again where that helps."""
    title, body = REFUSALS.get(kind, REFUSALS["link_invalid"])
    login = kind not in ("not_found", "disabled")
    view = base_view(words, settings, base=base, title=words.t(title), body=words.t(body), login=login)
    return render("refused", view)
