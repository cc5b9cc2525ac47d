"""UBL 2.1 e-invoices following Peppol BIS Billing 3.0 (EN 16931), from a :class:`Document`.

``invoice_ubl(doc)`` renders an Invoice (type 380), ``credit_note_ubl(doc)`` a CreditNote (type
381, with a BillingReference to its invoice). Everything the document says was decided by
``kassa.domain.documents``; this module only lays it out, with the standard library's
``xml.etree.ElementTree`` (no lxml in the Lambda layer).

- **Endpoints (BT-34, BT-49).** A party's Peppol id (``<EAS>:<id>``); else, from its VAT number,
  the Peppol EAS scheme of the VAT number's country (9944 NL, 9930 DE, 9957 FR, 9925 BE, 9920 ES,
  0211 IT, 0213 FI, 0184 DK CVR, 0007 SE organisation number, 0192 NO organisation number, …:
  :data:`VAT_EAS`); else the party's email with scheme ``EM``. ``EM`` is in the EN 16931 EAS list
  but **not** in Peppol's (PEPPOL-EN16931-CL008, fatal): a buyer without a Peppol id or a VAT
  number — a consumer — cannot be addressed on the Peppol network, and its e-invoice fails that one
  Peppol rule while passing every EN 16931 rule. kassa says so rather than invent an identifier.
- **VAT numbers.** The seller's (BT-31) and the buyer's (BT-48) VAT identifiers when their numbers
  carry a country prefix; a seller number without one is its tax registration (BT-32, scheme
  ``TAX``), a buyer number without one its legal registration (BT-47). On a document whose lines
  are all "not subject to VAT" (O) EN 16931 forbids VAT identifiers (BR-O-02): the seller's number
  is then shown as BT-32 and the buyer's is left out.
- **Legal entity.** RegistrationName is the party's name; the seller's company registration is its
  CompanyID, with the ICD of its country where Peppol checks one (0106 KvK for NL, 0002 SIREN for FR,
  0208 for BE, 0184 CVR for DK, 0007 for SE, 0192 for NO).
- **Payment means** (one: UBL-SR-47 wants a single code). 30 (credit transfer) with the seller's
  IBAN and BIC while an invoice is still to pay and the seller has an IBAN; otherwise 48 (bank
  card): kassa charges cards, and refunds them. Payment terms say an amount due is charged
  automatically (BR-CO-25).
- **Lines.** One per document line, with its period (end date inclusive: kassa's periods end
  exclusively), its discount as a line allowance (reason code 95), the VAT category and the net
  price; a negative line (a proration credit) has a negative quantity and a positive price. A net
  amount that is not a whole multiple of the quantity is priced per the line's quantity
  (BaseQuantity), so that quantity × price − allowance equals the net amount exactly (PEPPOL R120).
- **Amounts** are written in the currency's minor unit (EUR ``12.34``, JPY ``1200``). EN 16931
  allows at most two decimals for every amount but the price (BR-DEC-*): a three-decimal currency
  (KWD, BHD, JOD, OMR, TND, IQD, LYD) is written with two decimals when every amount is a whole
  number of 10 fils, and refused with :class:`EInvoiceError` otherwise — never rounded, which
  would make the e-invoice disagree with the invoice.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timedelta

from kassa.domain.documents import NOT_SUBJECT, OSS_MENTION, Document, DocumentLine, VatGroup, vat_identifier
from kassa.domain.errors import InvalidInput
from kassa.domain.money import exponent
from kassa.domain.parties import Party

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
INVOICE_TYPE_CODE = "380"
CREDIT_NOTE_TYPE_CODE = "381"
UNIT_CODE = "C62"  # "one" (UN/ECE Recommendation 20): a seat, a unit of a subscription
DISCOUNT_REASON_CODE = "95"  # UNCL 5189: discount

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
ET.register_namespace("cac", NS_CAC)
ET.register_namespace("cbc", NS_CBC)

#: the Peppol EAS scheme of a VAT number, by its prefix (Peppol's code list, BIS Billing 3.0.19)
VAT_EAS: dict[str, str] = {
    "AD": "9922",
    "AL": "9923",
    "AT": "9914",
    "BA": "9924",
    "BE": "9925",
    "BG": "9926",
    "CH": "9927",
    "CY": "9928",
    "CZ": "9929",
    "DE": "9930",
    "DK": "0184",  # CVR number: "DK" + 8 digits (PEPPOL-COMMON-R042)
    "EE": "9931",
    "EL": "9933",  # the Greek TIN, without EL (GR-R-009)
    "ES": "9920",
    "FI": "0213",
    "FR": "9957",
    "GB": "9932",
    "HR": "9934",
    "HU": "9910",
    "IE": "9935",
    "IT": "0211",
    "LI": "9936",
    "LT": "9937",
    "LU": "9938",
    "LV": "9939",
    "MC": "9940",
    "ME": "9941",
    "MK": "9942",
    "MT": "9943",
    "NL": "9944",
    "NO": "0192",  # the organisation number (9 digits) inside NO…MVA
    "PL": "9945",
    "PT": "9946",
    "RO": "9947",
    "RS": "9948",
    "SE": "0007",  # the organisation number (10 digits) inside SE…01
    "SI": "9949",
    "SK": "9950",
    "SM": "9951",
    "TR": "9952",
    "VA": "9953",
}

#: the ICD of a seller's company registration (BT-30) where the Peppol rules check one
REGISTRATION_ICD: dict[str, str] = {"NL": "0106", "FR": "0002", "BE": "0208", "DK": "0184", "SE": "0007", "NO": "0192"}


class EInvoiceError(InvalidInput):
    """The document cannot be written as a valid EN 16931 e-invoice (and kassa will not guess)."""

    code = "einvoice_unsupported"


# ------------------------------------------------------------------ building blocks
def _cbc(parent: ET.Element, tag: str, text: str | None, **attrs: str) -> ET.Element | None:
    if text is None or str(text).strip() == "":  # Peppol R008: no empty elements
        return None
    element = ET.SubElement(parent, f"{{{NS_CBC}}}{tag}", attrs)
    element.text = str(text)
    return element


def _cac(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{NS_CAC}}}{name}")


class _Amounts:
    """Amounts in the document's currency, with the decimals EN 16931 allows."""

    def __init__(self, currency: str, amounts: Iterable[int]) -> None:
        self.currency = currency
        self.exp = exponent(currency)
        if self.exp > 2:
            step = 10 ** (self.exp - 2)
            if any(amount % step for amount in amounts):
                raise EInvoiceError(
                    f"EN 16931 allows at most 2 decimals for amounts (BR-DEC): this {currency} document has "
                    f"amounts in {currency}'s {self.exp}rd decimal, which an e-invoice cannot carry exactly",
                    param="currency",
                )

    def text(self, minor: int, *, exp: int | None = None) -> str:
        exp = min(self.exp, 2) if exp is None else exp
        if exp < self.exp:
            minor //= 10 ** (self.exp - exp)  # exact: checked in __init__
        sign = "-" if minor < 0 else ""
        whole, frac = divmod(abs(minor), 10**exp)
        return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"

    def add(self, parent: ET.Element, name: str, minor: int) -> None:
        _cbc(parent, name, self.text(minor), currencyID=self.currency)

    def price(self, parent: ET.Element, name: str, minor: int) -> None:
        # BT-146 has no decimal limit: a three-decimal currency's price keeps its third decimal
        _cbc(parent, name, self.text(minor, exp=self.exp), currencyID=self.currency)


def _end_date(start: datetime | None, end: datetime | None) -> str | None:
    """kassa's periods end exclusively; an e-invoice's end date is the last day of the period."""
    if end is None:
        return None
    last = end - timedelta(microseconds=1) if end.time() == datetime.min.time() and end != start else end
    day = last.date()
    if start is not None and day < start.date():
        day = start.date()
    return day.isoformat()


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def party_endpoint(party: Party) -> tuple[str, str]:
    """The party's electronic address (scheme, identifier): its Peppol id, else derived from its VAT
    number, else its email under ``EM`` (see the module docstring)."""
    if party.peppol_id and party.peppol_scheme and party.peppol_identifier:
        return party.peppol_scheme, party.peppol_identifier
    vat = vat_identifier(party)
    if vat is not None and vat[:2] in VAT_EAS:
        scheme = VAT_EAS[vat[:2]]
        if scheme == "9933":
            return scheme, vat[2:]
        if scheme == "0007":
            return scheme, _digits(vat)[:10]
        if scheme == "0192":
            return scheme, _digits(vat)[:9]
        return scheme, vat
    if party.email:
        return "EM", party.email
    raise EInvoiceError(
        f"{party.name} has no Peppol id, VAT number or email to address an e-invoice to", param="peppol_id"
    )


def _address(parent: ET.Element, party: Party, name: str = "PostalAddress") -> None:
    address = _cac(parent, name)
    a = party.address
    _cbc(address, "StreetName", a.line1)
    _cbc(address, "AdditionalStreetName", a.line2)
    _cbc(address, "CityName", a.city)
    _cbc(address, "PostalZone", a.postal_code)
    _cbc(address, "CountrySubentity", a.state)
    _cbc(_cac(address, "Country"), "IdentificationCode", a.country)


def _tax_scheme(parent: ET.Element, company_id: str, scheme: str) -> None:
    tax = _cac(parent, "PartyTaxScheme")
    _cbc(tax, "CompanyID", company_id)
    _cbc(_cac(tax, "TaxScheme"), "ID", scheme)


def _party(parent: ET.Element, role: str, party: Party, *, seller: bool, not_subject: bool) -> None:
    holder = _cac(parent, role)
    p = _cac(holder, "Party")
    scheme, identifier = party_endpoint(party)
    _cbc(p, "EndpointID", identifier, schemeID=scheme)
    _cbc(_cac(p, "PartyName"), "Name", party.name)
    _address(p, party)
    vat = vat_identifier(party)
    compact_tax_id = re.sub(r"[^0-9A-Za-z]", "", party.tax_id).upper() if party.tax_id else None
    legal_id: str | None = None
    legal_scheme: str | None = None
    if vat is not None and not not_subject:
        _tax_scheme(p, vat, "VAT")
    elif seller and compact_tax_id:
        _tax_scheme(p, compact_tax_id, "TAX")  # BT-32: a number without a country prefix, or an O document
    elif not seller and compact_tax_id and vat is None:
        legal_id = compact_tax_id  # BT-47: a business number (ABN, BN, UEN …)
    if seller and party.registration:
        legal_scheme = REGISTRATION_ICD.get(party.address.country)
        legal_id = _digits(party.registration) if legal_scheme and _digits(party.registration) else party.registration
    entity = _cac(p, "PartyLegalEntity")
    _cbc(entity, "RegistrationName", party.name)
    if legal_id:
        _cbc(entity, "CompanyID", legal_id, **({"schemeID": legal_scheme} if legal_scheme else {}))
    if party.email:
        contact = _cac(p, "Contact")
        _cbc(contact, "ElectronicMail", party.email)


def _tax_category(parent: ET.Element, name: str, category: str, rate: str) -> ET.Element:
    element = _cac(parent, name)
    _cbc(element, "ID", category)
    if category != NOT_SUBJECT:  # BR-O-05: no rate on "not subject to VAT"
        _cbc(element, "Percent", rate)
    return element


def _tax_total(root: ET.Element, doc: Document, money: _Amounts) -> None:
    total = _cac(root, "TaxTotal")
    money.add(total, "TaxAmount", doc.tax)
    for group in doc.vat_groups:
        _subtotal(total, group, money)


def _subtotal(total: ET.Element, group: VatGroup, money: _Amounts) -> None:
    sub = _cac(total, "TaxSubtotal")
    money.add(sub, "TaxableAmount", group.taxable_amount)
    money.add(sub, "TaxAmount", group.tax_amount)
    category = _tax_category(sub, "TaxCategory", group.category, group.rate)
    _cbc(category, "TaxExemptionReasonCode", group.exemption_reason_code)
    _cbc(category, "TaxExemptionReason", group.exemption_reason)
    _cbc(_cac(category, "TaxScheme"), "ID", "VAT")


def _payment_means(root: ET.Element, doc: Document, payable: int) -> None:
    """One payment means (UBL-SR-47 wants one code): a credit transfer to the seller's IBAN while an
    invoice is still to pay and the seller has one; otherwise the bank card kassa charges (and a
    credit note refunds)."""
    means = _cac(root, "PaymentMeans")
    if doc.kind == "invoice" and payable > 0 and doc.seller.iban:
        _cbc(means, "PaymentMeansCode", "30", name="Credit transfer")
        _cbc(means, "PaymentID", doc.number)
        account = _cac(means, "PayeeFinancialAccount")
        _cbc(account, "ID", doc.seller.iban)
        _cbc(account, "Name", doc.seller.name)
        if doc.seller.bic:
            _cbc(_cac(account, "FinancialInstitutionBranch"), "ID", doc.seller.bic)
        return
    _cbc(means, "PaymentMeansCode", "48", name="Bank card")
    _cbc(means, "PaymentID", doc.number)


def _line_price(line: DocumentLine) -> tuple[int, int, int, int | None]:
    """(signed quantity, allowance, price, base quantity) with quantity × price / base − allowance
    equal to the net amount exactly (PEPPOL-EN16931-R120)."""
    quantity = abs(line.quantity) or 1
    if line.net_amount < 0:
        signed, allowance, gross = -quantity, 0, -line.net_amount  # a credit: negative quantity, positive price
    else:
        allowance = line.discount_amount if line.discount_amount > 0 else 0
        signed, gross = quantity, line.net_amount + allowance
    if gross % quantity == 0:
        return signed, allowance, gross // quantity, None
    return signed, allowance, gross, quantity


def _line(root: ET.Element, index: int, line: DocumentLine, money: _Amounts, *, credit: bool) -> None:
    element = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")
    _cbc(element, "ID", str(index))
    quantity, allowance, price, base = _line_price(line)
    _cbc(element, "CreditedQuantity" if credit else "InvoicedQuantity", str(quantity), unitCode=UNIT_CODE)
    money.add(element, "LineExtensionAmount", line.net_amount)
    start = line.period_start.date().isoformat() if line.period_start else None
    end = _end_date(line.period_start, line.period_end)
    if start or end:
        period = _cac(element, "InvoicePeriod")
        _cbc(period, "StartDate", start)
        _cbc(period, "EndDate", end)
    if allowance:
        charge = _cac(element, "AllowanceCharge")
        _cbc(charge, "ChargeIndicator", "false")
        _cbc(charge, "AllowanceChargeReasonCode", DISCOUNT_REASON_CODE)
        _cbc(charge, "AllowanceChargeReason", "Discount")
        money.add(charge, "Amount", allowance)
    item = _cac(element, "Item")
    _cbc(item, "Name", line.description)
    category = _tax_category(item, "ClassifiedTaxCategory", line.category, line.tax_rate)
    _cbc(_cac(category, "TaxScheme"), "ID", "VAT")
    price_element = _cac(element, "Price")
    money.price(price_element, "PriceAmount", price)
    if base is not None:
        _cbc(price_element, "BaseQuantity", str(base), unitCode=UNIT_CODE)


def _document_period(doc: Document) -> tuple[str, str | None]:
    starts = [doc.period_start] + [line.period_start for line in doc.lines if line.period_start]
    start = min(starts)
    ends = [_end_date(doc.period_start, doc.period_end)] + [
        _end_date(line.period_start, line.period_end) for line in doc.lines
    ]
    known = [e for e in ends if e]
    return start.date().isoformat(), max(known) if known else None


def _note(doc: Document) -> str | None:
    parts = []
    if "oss" in doc.notes:
        parts.append(OSS_MENTION)
    if doc.memo:
        parts.append(doc.memo)
    # BR-CL-08 reads "#XXX#" as a subject code: a free text keeps no "#"
    return " — ".join(parts).replace("#", "") or None


def _check(doc: Document) -> None:
    if not doc.number:
        raise EInvoiceError("an e-invoice is made once the invoice is numbered (finalized)", param="number")
    if not doc.lines:
        raise EInvoiceError("an e-invoice has at least one line (BR-16)", param="lines")
    needs_tax_id = {g.category for g in doc.vat_groups} - {NOT_SUBJECT}
    if needs_tax_id and not doc.seller.tax_id:
        raise EInvoiceError(
            "the seller has no VAT number: set seller_tax_id in the merchant settings "
            "(EN 16931 BR-S-02, BR-AE-02, BR-E-02, BR-G-02, BR-Z-02)",
            param="seller_tax_id",
        )


def _amounts_of(doc: Document) -> list[int]:
    values = [
        doc.subtotal,
        doc.allowance_total,
        doc.tax,
        doc.total,
        doc.credit_applied,
        doc.amount_paid,
        doc.amount_due,
    ]
    for line in doc.lines:
        values += [line.net_amount, line.discount_amount]
    for group in doc.vat_groups:
        values += [group.taxable_amount, group.tax_amount]
    return values


def _render(doc: Document, *, credit: bool) -> bytes:
    _check(doc)
    money = _Amounts(doc.currency, _amounts_of(doc))
    namespace = NS_CREDIT_NOTE if credit else NS_INVOICE
    root = ET.Element(f"{{{namespace}}}{'CreditNote' if credit else 'Invoice'}")
    _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    _cbc(root, "ProfileID", PROFILE_ID)
    _cbc(root, "ID", doc.number)
    _cbc(root, "IssueDate", doc.issue_date.isoformat())
    if not credit:
        _cbc(root, "DueDate", doc.due_date.isoformat() if doc.due_date else None)
    _cbc(
        root,
        "CreditNoteTypeCode" if credit else "InvoiceTypeCode",
        CREDIT_NOTE_TYPE_CODE if credit else INVOICE_TYPE_CODE,
    )
    _cbc(root, "Note", _note(doc))
    _cbc(root, "DocumentCurrencyCode", doc.currency)
    _cbc(root, "BuyerReference", doc.buyer_reference or doc.buyer.name)
    start, end = _document_period(doc)
    period = _cac(root, "InvoicePeriod")
    _cbc(period, "StartDate", start)
    _cbc(period, "EndDate", end)
    if credit and doc.invoice_reference:
        reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(reference, "ID", doc.invoice_reference)
        _cbc(reference, "IssueDate", doc.invoice_reference_date.isoformat() if doc.invoice_reference_date else None)
    not_subject = any(g.category == NOT_SUBJECT for g in doc.vat_groups)
    _party(root, "AccountingSupplierParty", doc.seller, seller=True, not_subject=not_subject)
    _party(root, "AccountingCustomerParty", doc.buyer, seller=False, not_subject=not_subject)
    prepaid = 0 if credit else doc.credit_applied + doc.amount_paid
    payable = doc.total - prepaid
    _payment_means(root, doc, payable)
    if payable > 0 and doc.due_date is None:
        _cbc(_cac(root, "PaymentTerms"), "Note", "Charged automatically to the payment card on file")
    _tax_total(root, doc, money)
    totals = _cac(root, "LegalMonetaryTotal")
    money.add(totals, "LineExtensionAmount", doc.subtotal)
    money.add(totals, "TaxExclusiveAmount", doc.subtotal - doc.allowance_total)
    money.add(totals, "TaxInclusiveAmount", doc.total)
    if doc.allowance_total:
        money.add(totals, "AllowanceTotalAmount", doc.allowance_total)
    if prepaid:
        money.add(totals, "PrepaidAmount", prepaid)
    money.add(totals, "PayableAmount", payable)
    for index, line in enumerate(doc.lines, start=1):
        _line(root, index, line, money, credit=credit)
    # the document's namespace as the default one (``<Invoice xmlns=…>``), as in Peppol's examples;
    # ElementTree keeps one registry, so it is set for each document (a Lambda renders one at a time)
    ET.register_namespace("", namespace)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def invoice_ubl(doc: Document) -> bytes:
    """The invoice as a Peppol BIS Billing 3.0 UBL Invoice (UTF-8 XML)."""
    if doc.kind != "invoice":
        raise EInvoiceError("invoice_ubl renders an invoice; use credit_note_ubl for a credit note", param="kind")
    return _render(doc, credit=False)


def credit_note_ubl(doc: Document) -> bytes:
    """The credit note as a Peppol BIS Billing 3.0 UBL CreditNote (UTF-8 XML) referring to its invoice."""
    if doc.kind != "credit_note":
        raise EInvoiceError("credit_note_ubl renders a credit note; use invoice_ubl for an invoice", param="kind")
    return _render(doc, credit=True)
