"""Who sold and who bought: the parties an issued invoice records.

An invoice freezes both parties when it is made (``kassa.services.invoicing.finish_invoice``, the
moment its tax is computed): the seller's legal name, address, VAT number, Peppol id, company
registration and bank details from the merchant settings, and the customer's name, address, VAT
number, Peppol id and email. Changing the settings or the customer later never changes an issued
invoice's documents (PDF, e-invoice). An invoice stored before parties were recorded has none; its
documents fall back to the current settings and customer (:func:`parties_of`).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from kassa.domain.customer import Address, Customer

#: a Peppol participant id, ``<ICD scheme>:<identifier>`` (``0106:12345678``, ``9944:NL123456789B01``)
PEPPOL_ID = re.compile(r"(\d{4}):([A-Za-z0-9][A-Za-z0-9.\-_:/+]{0,49})")


class Party(BaseModel):
    """One side of an invoice, as it stood when the invoice was issued."""

    model_config = ConfigDict(frozen=True)

    name: str
    address: Address
    tax_id: str | None = None  # a VAT number (or national business number)
    peppol_id: str | None = None  # "<scheme>:<id>"
    email: str | None = None
    registration: str | None = None  # company registration (KvK, HRB, SIREN …), seller only
    iban: str | None = None  # bank transfer details, seller only
    bic: str | None = None

    @property
    def peppol_scheme(self) -> str | None:
        return self.peppol_id.split(":", 1)[0] if self.peppol_id else None

    @property
    def peppol_identifier(self) -> str | None:
        return self.peppol_id.split(":", 1)[1] if self.peppol_id else None


def peppol_id_error(value: str) -> str | None:
    """Why ``value`` is not a Peppol participant id, or None when it is one."""
    if not PEPPOL_ID.fullmatch(value):
        return "a Peppol id is '<4-digit scheme>:<identifier>', e.g. 0106:12345678"
    return None


def buyer_party(customer: Customer) -> Party:
    """The customer as an invoice records it (their name, or their email when they gave none)."""
    return Party(
        name=customer.name or customer.email,
        address=customer.address,
        tax_id=customer.tax_id,
        peppol_id=customer.peppol_id,
        email=customer.email,
    )
