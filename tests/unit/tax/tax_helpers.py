"""Helpers shared by the tax tests (imported by bare name, like tests/unit/fakes.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import Address
from kassa.domain.tax import TaxCustomer, TaxLineInput, TaxQuote, TaxSettings, ViesChecker, quote_tax

D = date.fromisoformat

# Real, check-digit-valid VAT numbers (public company registrations, also used in python-stdnum's tests).
VALID_VAT = {
    "AT": "ATU13585627",
    "BE": "BE0403019261",
    "DE": "DE136695976",
    "ES": "ESA28015865",
    "FI": "FI20774740",
    "FR": "FR40303265045",
    "GR": "EL094259216",
    "IE": "IE6388047V",
    "IT": "IT00743110157",
    "NL": "NL004495445B01",
    "PL": "PL5260250995",
    "SE": "SE556188840401",
}


def settings(home: str = "NL", **kwargs: Any) -> TaxSettings:
    return TaxSettings(home_country=home, **kwargs)


OSS_NL = settings("NL", oss_registered=True)


def quote(
    country: str,
    amount: int = 10000,
    *,
    on: date | str = "2025-09-01",
    seller: TaxSettings = OSS_NL,
    postal_code: str | None = None,
    state: str | None = None,
    tax_id: str | None = None,
    exempt: bool = False,
    inclusive: bool = False,
    currency: str = "EUR",
    tax_code: str | None = None,
    vies: ViesChecker | None = None,
) -> TaxQuote:
    customer = TaxCustomer(
        address=Address(country=country, postal_code=postal_code, state=state), tax_id=tax_id, tax_exempt=exempt
    )
    line = TaxLineInput(
        amount=amount,
        tax_behavior=TaxBehavior.INCLUSIVE if inclusive else TaxBehavior.EXCLUSIVE,
        tax_code=tax_code,
    )
    return quote_tax(
        [line],
        currency=currency,
        customer=customer,
        settings=seller,
        tax_date=D(on) if isinstance(on, str) else on,
        vies=vies,
    )


class FixedVies:
    """A ViesChecker answering the same thing for every number, recording what it was asked."""

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def check(self, vat_number: str) -> bool | None:
        self.asked.append(vat_number)
        return self.answer


class BrokenVies:
    """A ViesChecker whose service times out."""

    def __init__(self) -> None:
        self.calls = 0

    def check(self, vat_number: str) -> bool | None:
        self.calls += 1
        raise TimeoutError("VIES did not answer in time")
