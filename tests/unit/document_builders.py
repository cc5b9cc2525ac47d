"""Invoices for the document tests (test_documents.py, test_ubl.py), built with kassa's own domain
functions — lines, the coupon, the tax engine, the customer balance — the way
``kassa.services.invoicing.finish_invoice`` does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kassa.domain.balance import with_balance
from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import Address, Customer
from kassa.domain.discounts import Coupon, apply_discount
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus, from_lines
from kassa.domain.parties import buyer_party
from kassa.domain.periods import Period
from kassa.domain.settings import MerchantSettings
from kassa.services.tax import tax_invoice

START = datetime(2025, 3, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)

NL_SELLER = MerchantSettings(
    seller_name="Koffie Abonnement B.V.",
    seller_address=Address(country="NL", line1="Damrak 1", city="Amsterdam", postal_code="1012 LG"),
    seller_tax_id="NL000099998B57",
    seller_registration="12345678",
    seller_peppol_id="0106:12345678",
    seller_iban="NL91ABNA0417164300",
    seller_bic="ABNANL2A",
    support_email="billing@koffie.example",
)
#: the same seller without a Peppol id or bank account: its endpoint comes from its VAT number
NL_SELLER_NO_PEPPOL = NL_SELLER.model_copy(update={"seller_peppol_id": None, "seller_iban": None, "seller_bic": None})


def customer(country: str, **fields: Any) -> Customer:
    addresses = {
        "NL": Address(country="NL", line1="Kerkstraat 2", city="Utrecht", postal_code="3511 AB"),
        "DE": Address(country="DE", line1="Hauptstraße 1", city="Berlin", postal_code="10115"),
        "US": Address(country="US", line1="1 Main St", city="Portland", state="OR", postal_code="97201"),
        "JP": Address(country="JP", line1="1-1 Chiyoda", city="Tokyo", postal_code="100-0001"),
        "KW": Address(country="KW", line1="Gulf Road 1", city="Kuwait City", postal_code="13001"),
    }
    values: dict[str, Any] = {
        "id": f"cus_{country.lower()}",
        "email": f"ada@example.{country.lower()}",
        "name": "Ada Lovelace",
        "address": addresses[country],
        "created": START,
    }
    return Customer(**(values | fields))


def line(
    amount: int,
    description: str = "Coffee club",
    *,
    quantity: int = 1,
    price: str | None = "price_coffee",
    inclusive: bool = False,
    proration: bool = False,
) -> InvoiceLine:
    return InvoiceLine(
        description=description,
        amount=amount,
        quantity=quantity,
        unit_amount=amount // quantity if amount % quantity == 0 else None,
        price=price,
        proration=proration,
        period_start=START,
        period_end=END,
        tax_behavior=TaxBehavior.INCLUSIVE if inclusive else TaxBehavior.EXCLUSIVE,
    )


def invoice(
    buyer: Customer,
    lines: Sequence[InvoiceLine],
    *,
    settings: MerchantSettings = NL_SELLER,
    currency: str = "EUR",
    coupon: Coupon | None = None,
    tax_codes: dict[str, str | None] | None = None,
    number: str = "KASSA-0042",
    paid: bool = False,
) -> tuple[Invoice, Customer]:
    """A finalized invoice as finish_invoice makes it: coupon, tax, parties, balance; then numbered
    (and paid). Returns it with the customer after the balance moved."""
    draft = from_lines(
        "in_test",
        buyer.id,
        "sub_test",
        currency,
        list(lines),
        Period(start=START, end=END),
        START,
        BillingReason.SUBSCRIPTION_CYCLE,
    )
    if coupon is not None:
        applied = apply_discount(draft.lines, coupon, currency)
        draft = draft.model_copy(
            update={
                "lines": [
                    item.model_copy(update={"amount": item.amount - off, "discount_amount": off})
                    for item, off in zip(draft.lines, applied.amounts, strict=True)
                ],
                "total_discount": applied.total,
                "discount": coupon.describe(),
            }
        )
    taxed, _ = tax_invoice(draft, buyer, settings, tax_codes)
    taxed = taxed.model_copy(
        update={"seller": settings.seller_party(), "buyer": buyer_party(buyer), "locale": buyer.preferred_locale}
    )
    balanced, moved = with_balance(taxed, buyer)
    final = balanced.finalize(number, START)
    if paid:
        final = final.transition(InvoiceStatus.PAID, START)
    return final, moved or buyer
