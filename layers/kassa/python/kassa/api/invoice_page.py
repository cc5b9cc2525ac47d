"""The hosted invoice page (``/portal/invoices/<token>``): an issued invoice in the customer's language.

What the customer sees behind the signed ``invoice`` link (``kassa.domain.links``) of a receipt or a
payment email, or the API's ``hosted_invoice_url``: the merchant's name and colour, the invoice
number and dates, seller and buyer, the lines, VAT per rate, the totals, what is paid or due, a
"Download PDF" link and, while the invoice is open or uncollectible, a card form that pays it (the
shared portal script ``static/portal.js`` with ``static/invoice.js``: Stripe.js confirms a
SetupIntent, kassa charges the invoice on-session, 3-D Secure is confirmed on the page). Where the
merchant offers SEPA Direct Debit, the form also takes a bank account (IBAN, account holder, the
mandate to accept) as the card page does; while its debit is with the bank the page says so instead.

The page is rendered here, on the server, from a Jinja2 template (``static/invoice.html.j2``,
autoescaped); its words come from ``static/invoice_page.<language>.json`` (every language has exactly
English's keys: a test keeps them equal), money and dates are formatted by babel for the locale
(``kassa.emails.render``'s helpers: integer minor units, never a float). Pure: no I/O beyond reading
the package's own files.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from kassa import i18n
from kassa.domain.customer import Address, Customer
from kassa.domain.invoice import COLLECTABLE, Invoice, InvoiceStatus
from kassa.domain.parties import Party
from kassa.domain.payment_methods import may_charge
from kassa.domain.settings import MerchantSettings

DEFAULT_LANGUAGE = "en"
_PACKAGE = "kassa.api"
_PREFIX = "invoice_page."

#: the strings the page's script needs (the rest is rendered on the server)
SCRIPT_KEYS = (
    "loading",
    "processing",
    "confirming",
    "paid_message",
    "declined",
    "auth_failed",
    "error",
    "confirm_button",
    "processing_message",
    "iban_invalid",
    "mandate_required",
)


# ---------------------------------------------------------------------------------- words
def page_languages() -> frozenset[str]:
    """Languages with a page translations file (``static/invoice_page.<language>.json``)."""
    return i18n.languages(_PACKAGE, "static", _PREFIX)


def page_strings(language: str) -> Mapping[str, str]:
    if language not in page_languages():
        raise KeyError(f"no invoice page translations for {language!r}")
    return i18n.strings(_PACKAGE, "static", language, _PREFIX)


placeholders = i18n.placeholders


def translate(language: str, key: str, **values: Any) -> str:
    """The page string ``key`` in ``language`` (English when that language lacks it), formatted."""
    text = page_strings(language).get(key)
    if text is None:
        text = page_strings(DEFAULT_LANGUAGE)[key]
    return text.format_map(values)


def page_locale(locale: str | None) -> tuple[str, str]:
    """(language of the words, babel locale): ``nl-BE`` → (nl, nl_BE); a language the page does not
    speak, or nonsense, → English for words, money and dates together."""
    from babel import Locale, UnknownLocaleError

    raw = (locale or "").strip().replace("-", "_")
    try:
        parsed = Locale.parse(raw) if raw else None
    except (UnknownLocaleError, ValueError, TypeError):
        language = raw.split("_")[0].lower()
        return (language, language) if language in page_languages() else (DEFAULT_LANGUAGE, DEFAULT_LANGUAGE)
    if parsed is None or parsed.language not in page_languages():
        return DEFAULT_LANGUAGE, DEFAULT_LANGUAGE
    return parsed.language, str(parsed)


def accept_language(header: str | None) -> str | None:
    """The first language of an ``Accept-Language`` header the page speaks (for pages shown before
    the invoice is known: a refused link)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*":
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        language, _ = page_locale(tag)
        if language != DEFAULT_LANGUAGE or tag.lower().startswith("en"):
            return tag
    return None


# ---------------------------------------------------------------------------------- formatting
class _Format:
    """Money, dates, percentages and countries for one babel locale."""

    def __init__(self, language: str, locale: str) -> None:
        self.language, self.locale = language, locale

    def t(self, key: str, **values: Any) -> str:
        return translate(self.language, key, **values)

    def money(self, amount: int, currency: str) -> str:
        from kassa.emails.render import format_money

        return format_money(amount, currency, self.locale)

    def day(self, value: date | datetime | None) -> str | None:
        from kassa.emails.render import format_day

        return format_day(value, self.locale) if value is not None else None

    def rate(self, rate: str | None) -> str | None:
        """A tax rate ("21", "14.975") as the locale writes a percentage (21%, 21 %, 14,975 %)."""
        if rate is None:
            return None
        from babel.numbers import format_percent

        try:
            value = Decimal(rate) / 100
        except InvalidOperation:
            return rate
        return str(format_percent(value, locale=self.locale, decimal_quantization=False))

    def country(self, code: str) -> str:
        from babel import Locale

        return str(Locale.parse(self.locale).territories.get(code.upper(), code.upper()))

    def mention(self, key: str) -> str:
        """A legal mention (reverse charge, OSS, export …) in the words of the invoice's PDF."""
        from kassa.documents import pdf

        language = self.language if self.language in pdf.available_languages() else DEFAULT_LANGUAGE
        return pdf.translations(language).get(f"mention.{key}") or pdf.translations(DEFAULT_LANGUAGE)[f"mention.{key}"]


def _address_lines(address: Address, fmt: _Format) -> list[str]:
    city = " ".join(part for part in (address.postal_code, address.city) if part)
    lines = [address.line1, address.line2, city, address.state, fmt.country(address.country)]
    return [line for line in lines if line]


def _party(party: Party, fmt: _Format) -> dict[str, Any]:
    return {
        "name": party.name,
        "address": _address_lines(party.address, fmt),
        "tax_id": party.tax_id,
        "email": party.email,
        "registration": party.registration,
    }


def _is_period(start: datetime | None, end: datetime | None) -> bool:
    return start is not None and end is not None and end > start


# ---------------------------------------------------------------------------------- the page's model
def payable(invoice: Invoice) -> bool:
    """Whether the page offers to pay the invoice: open or uncollectible (written off, but the
    customer may still pay it) with something due, and no bank debit of it with the bank."""
    return invoice.status in COLLECTABLE and invoice.amount_due > 0 and not debit_processing(invoice)


def debit_processing(invoice: Invoice) -> bool:
    """A bank debit (SEPA) of the invoice is with the bank: paid when it settles, nothing to pay now."""
    return invoice.status in COLLECTABLE and not may_charge(invoice.attempt_outcome)


def invoice_view(
    invoice: Invoice,
    customer: Customer | None,
    settings: MerchantSettings,
    *,
    token: str,
    thanks: bool = False,
) -> dict[str, Any]:
    """Everything the template shows, formatted for the invoice's language (``invoice.locale``, else
    the customer's ``preferred_locale``)."""
    language, locale = page_locale(invoice.locale or (customer.preferred_locale if customer else None))
    fmt = _Format(language, locale)
    cur = invoice.currency

    def money(amount: int) -> str:
        return fmt.money(amount, cur)

    # the numbers the PDF and the e-invoice show (kassa.domain.documents): net lines, VAT per rate
    from kassa.domain.documents import invoice_document  # the PDF/UBL document model: not on a cold start

    doc = invoice_document(invoice, settings=settings, customer=customer)
    status = invoice.status
    number = invoice.number
    title = fmt.t("title", number=number) if number else fmt.t("title_unnumbered")
    issued = invoice.finalized_at or invoice.created

    lines = []
    for line in doc.lines:
        lines.append(
            {
                "description": line.description,
                # a line's own period when it differs from the invoice's (a proration, an item added)
                "period": fmt.t("period_range", start=fmt.day(line.period_start), end=fmt.day(line.period_end))
                if _is_period(line.period_start, line.period_end)
                and (line.period_start, line.period_end) != (invoice.period_start, invoice.period_end)
                else None,
                "quantity": line.quantity,
                "unit_price": money(line.unit_amount) if line.unit_amount is not None else None,
                "vat": fmt.rate(line.tax_rate),
                "amount": money(line.net_amount),
                "discount": money(line.discount_amount) if line.discount_amount else None,
            }
        )

    totals: list[dict[str, Any]] = [{"label": fmt.t("subtotal"), "value": money(doc.subtotal)}]
    for group in doc.vat_groups:
        label = fmt.t("vat_rate", rate=fmt.rate(group.rate), base=money(group.taxable_amount))
        totals.append({"label": label, "value": money(group.tax_amount), "minor": True})
    totals.append({"label": fmt.t("total"), "value": money(doc.total), "strong": True})
    notes = invoice.pre_payment_credit_notes_amount
    if notes:
        totals.append({"label": fmt.t("credit_notes"), "value": money(-notes)})
    if doc.credit_applied - notes:  # the customer's balance (credit, or a debt carried)
        totals.append({"label": fmt.t("applied_balance"), "value": money(notes - doc.credit_applied)})
    if status is InvoiceStatus.PAID:
        totals.append({"label": fmt.t("amount_paid"), "value": money(doc.amount_paid), "strong": True, "due": True})
        if invoice.amount_refunded:
            totals.append({"label": fmt.t("amount_refunded"), "value": money(-invoice.amount_refunded)})
    elif status is not InvoiceStatus.VOID:
        totals.append({"label": fmt.t("amount_due"), "value": money(doc.amount_due), "strong": True, "due": True})

    details = [
        (fmt.t("invoice_number"), number or fmt.t("first_payment")),
        (fmt.t("date_of_issue"), fmt.day(issued)),
    ]
    if _is_period(invoice.period_start, invoice.period_end):
        period = fmt.t("period_range", start=fmt.day(invoice.period_start), end=fmt.day(invoice.period_end))
        details.append((fmt.t("period"), period))

    if status is InvoiceStatus.PAID:
        headline = fmt.t("headline.paid", amount=money(invoice.amount_paid))
        subline = fmt.t("paid_on", date=fmt.day(invoice.paid_at)) if invoice.paid_at else None
    elif status is InvoiceStatus.VOID:
        headline, subline = money(invoice.total), fmt.t("void_notice")
    else:
        headline = fmt.t("headline.due", amount=money(invoice.amount_due))
        subline = fmt.t("overdue_notice") if status is InvoiceStatus.UNCOLLECTIBLE or invoice.first_failed_at else None
        if debit_processing(invoice):
            subline = fmt.t("processing_notice")

    colour = settings.emails.colour
    logo = settings.emails.logo_url
    can_pay = payable(invoice)
    return {
        "lang": language,
        "title": title,
        "merchant": settings.seller_name,
        "colour": colour,
        "logo_url": logo,
        # a bank debit with the bank: "Processing" (paid when it settles), not "Due"
        "status": "processing" if debit_processing(invoice) else status.value,
        "status_label": fmt.t("status.processing" if debit_processing(invoice) else f"status.{status.value}"),
        "headline": headline,
        "subline": subline,
        "thanks": fmt.t("thanks") if thanks and status is InvoiceStatus.PAID else None,
        "details": [(label, value) for label, value in details if value],
        "seller": _party(doc.seller, fmt),
        "buyer": _party(doc.buyer, fmt),
        "lines": lines,
        "totals": totals,
        "notes": [fmt.mention(key) for key in doc.notes],
        "pdf_href": f"{token}/pdf",
        "payable": can_pay,
        "pay_button": fmt.t("pay_button", amount=money(invoice.amount_due)),
        "support": fmt.t("questions", email=settings.support_email) if settings.support_email else None,
        "t": fmt.t,
        "script": {
            "token": token,
            "strings": {key: fmt.t(key) for key in SCRIPT_KEYS},
        }
        if can_pay
        else None,
    }


def logo_origin(settings: MerchantSettings) -> str | None:
    """The origin the page loads the merchant's logo from (added to its CSP's ``img-src``)."""
    logo = settings.emails.logo_url
    if not logo:
        return None
    parts = urlsplit(logo)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme == "https" and parts.netloc else None


# ---------------------------------------------------------------------------------- rendering
@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader(_PACKAGE, "static"),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def render_invoice(
    invoice: Invoice, customer: Customer | None, settings: MerchantSettings, *, token: str, thanks: bool = False
) -> str:
    """The hosted invoice page's HTML."""
    view = invoice_view(invoice, customer, settings, token=token, thanks=thanks)
    return str(_environment().get_template("invoice.html.j2").render(page="invoice", **view))


#: what a refused page says: (title key, body key)
REFUSALS = {
    "link_expired": ("link_expired_title", "link_expired_body"),
    "link_invalid": ("link_invalid_title", "link_invalid_body"),
    "not_found": ("not_found_title", "not_found_body"),
    "pdf_unavailable": ("title_unnumbered", "pdf_unavailable"),
}


def render_refused(kind: str, locale: str | None, settings: MerchantSettings | None = None) -> str:
    """The page shown instead of the invoice (an expired or tampered link, an unknown invoice), in
    ``locale``'s language."""
    language, _ = page_locale(locale)
    title_key, body_key = REFUSALS[kind]
    return str(
        _environment()
        .get_template("invoice.html.j2")
        .render(
            page="refused",
            lang=language,
            title=translate(language, title_key),
            body=translate(language, body_key),
            merchant=settings.seller_name if settings else None,
            colour=settings.emails.colour if settings else "#1f6feb",
            logo_url=None,
        )
    )
