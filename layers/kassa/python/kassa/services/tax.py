"""Tax on invoices: every draft invoice is taxed by the tax engine (kassa.domain.tax) before it
is finalized, from the customer's location and tax id, the seller's settings and each product's
tax code, at the invoice's tax point (the start of the period it bills)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Protocol

from kassa.domain.catalog import TaxBehavior
from kassa.domain.credit_notes import CreditNote, credit_note_taxed_lines
from kassa.domain.invoice import Invoice
from kassa.domain.tax import LineTax, TaxCustomer, TaxLineInput, TaxQuote, TaxSettings, quote_tax
from kassa.domain.tax.report import TaxedLine

if TYPE_CHECKING:
    from kassa.domain.customer import Customer
    from kassa.domain.settings import MerchantSettings
    from kassa.domain.tax.vat_numbers import ViesChecker


def tax_customer(customer: Customer) -> TaxCustomer:
    return TaxCustomer(address=customer.address, tax_id=customer.tax_id, tax_exempt=customer.tax_exempt)


class TaxQuoter(Protocol):
    """Who computes the tax: kassa's engine (default, with an optional VIES checker) or the optional
    Stripe Tax provider (kassa.adapters.stripe_tax), both returning kassa's TaxQuote."""

    def __call__(
        self,
        lines: Sequence[TaxLineInput],
        *,
        currency: str,
        customer: TaxCustomer,
        settings: TaxSettings,
        tax_date: date,
    ) -> TaxQuote: ...


def engine_quoter(vies: ViesChecker | None = None) -> TaxQuoter:
    def quote(
        lines: Sequence[TaxLineInput], *, currency: str, customer: TaxCustomer, settings: TaxSettings, tax_date: date
    ) -> TaxQuote:
        return quote_tax(lines, currency=currency, customer=customer, settings=settings, tax_date=tax_date, vies=vies)

    return quote


def tax_invoice(
    invoice: Invoice,
    customer: Customer,
    settings: MerchantSettings,
    tax_codes: dict[str, str | None] | None = None,
    quoter: TaxQuoter | None = None,
) -> tuple[Invoice, TaxQuote]:
    """The invoice with each line's tax, the totals, the breakdown and the rule/legal mention.

    ``tax_codes`` maps a line's price id to its product's tax code (None: the seller's default)."""
    codes = tax_codes or {}
    quote = (quoter or engine_quoter())(
        [
            TaxLineInput(
                amount=line.amount,
                tax_behavior=line.tax_behavior,
                tax_code=codes.get(line.price or ""),
                reference=str(index),
            )
            for index, line in enumerate(invoice.lines)
        ],
        currency=invoice.currency,
        customer=tax_customer(customer),
        settings=settings.tax_settings(),
        tax_date=invoice.period_start.date(),
    )
    lines = []
    for line, taxed in zip(invoice.lines, quote.lines, strict=True):
        lines.append(
            line.model_copy(
                update={
                    "tax_amount": taxed.tax_amount,
                    "tax_rate": taxed.rate,
                    "tax_jurisdiction": taxed.jurisdiction,
                    "tax_code": taxed.tax_code,
                    "tax_details": taxed.model_dump(mode="json"),
                }
            )
        )
    subtotal = sum(line.amount for line in lines)
    exclusive_tax = sum(line.tax_amount for line in lines if line.tax_behavior is TaxBehavior.EXCLUSIVE)
    total = subtotal + exclusive_tax
    taxed_invoice = invoice.model_copy(
        update={
            "lines": lines,
            "subtotal": subtotal,
            "tax": quote.tax_amount,
            "total": total,
            "amount_due": max(total, 0),
            "tax_date": quote.tax_date,
            "tax_breakdown": [row.model_dump(mode="json") for row in quote.breakdown],
            "tax_rule": quote.rule.id.value if quote.rule else None,
            "tax_note": quote.legal_mention,
            "customer_tax_id": quote.customer_tax_id,
            "customer_country": customer.address.country,
        }
    )
    return taxed_invoice, quote


REPORTABLE = ("open", "paid", "uncollectible")  # finalized and not voided


def taxed_lines_of(invoices: list[Invoice]) -> list[TaxedLine]:
    """The reports' view of finalized invoices: each taxed line with its tax point and currency."""
    out: list[TaxedLine] = []
    for invoice in invoices:
        if invoice.status.value not in REPORTABLE or invoice.tax_date is None:
            continue
        for line in invoice.lines:
            if line.tax_details is None:
                continue
            out.append(
                TaxedLine(
                    invoice_id=invoice.id,
                    tax_date=invoice.tax_date,
                    currency=invoice.currency,
                    line=LineTax.model_validate(line.tax_details),
                )
            )
    return out


def reported_lines(invoices: list[Invoice], credit_notes: list[CreditNote]) -> list[TaxedLine]:
    """The reports' input for a period: the finalized invoices' taxed lines at their tax points, and
    the issued credit notes' taxed lines as negative lines at the notes' own tax dates (a void note
    counts for nothing)."""
    lines = taxed_lines_of(invoices)
    for note in credit_notes:
        lines.extend(credit_note_taxed_lines(note))
    return lines
