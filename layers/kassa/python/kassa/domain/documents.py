"""What an invoice (or credit note) document says: the one view the PDF and the e-invoice share.

Pure domain: no I/O. :func:`invoice_document` and :func:`credit_note_document` turn an invoice (or
a credit note and its invoice) into a :class:`Document` — parties, lines without VAT, the VAT
breakdown per category and rate, totals and legal mentions — in integer minor units. Renderers
(``kassa.documents.ubl``, the PDF) only lay it out; they decide nothing about tax.

**Parties.** An invoice's ``seller`` and ``buyer`` were frozen when it was made; an invoice stored
before that has none and falls back to the current settings (``settings.seller_party()``) and
customer (``buyer_party(customer)``).

**Amounts.** Every line is shown *without* VAT (``net_amount``), after its own discount:

- exclusive price: ``net = amount`` (the invoice line's amount is already net);
- inclusive price: ``net = amount − tax_amount`` exactly (the tax engine made ``net + tax = amount``).

``discount_amount`` is the coupon's part on the same net basis. kassa takes a coupon off each
covered line before tax (``kassa.domain.discounts``), so the document models discounts **per line**
(a line allowance in UBL) and ``allowance_total`` (document-level allowances) is always 0. For an
inclusive line the discount is converted to net as the engine would have: ``round((amount +
discount) / (1 + rate))`` half up, minus the net.

``subtotal = Σ net``, ``tax = Σ VAT``, ``total = subtotal − allowance_total + tax`` (the invoice's
``total``). ``credit_applied`` is what reduced the amount due before payment: the customer balance
used and pre-payment credit notes (``total − invoice.amount_due``; negative when a debt carried on
the balance was added). ``amount_paid`` is what was charged; ``amount_due`` what is still to pay
(``0`` once paid). A negative invoice total (proration credits) is not payable: its ``amount_due``
is the negative total — what the customer is owed, moved to their balance — and nothing is applied.

**Tax rules → VAT categories (UNCL 5305).** Each line's rule (``tax_details.rule.id``, the stable
:class:`~kassa.domain.tax.model.RuleId`) and effective rate decide its category and mention key:

=================================================  ========  ==============  ==================
rule                                               category  mention         VATEX code
=================================================  ========  ==============  ==================
eu_domestic, eu_b2c_local_registration,            S         None            –
eu_b2c_over_threshold, eu_b2c_below_threshold,
registered — with a rate > 0
eu_b2c_oss (rate > 0)                              S         ``oss``         –
any of the above with rate 0 (taxable, 0 %)        Z         ``zero_rated``  –
eu_reverse_charge                                  AE        reverse_charge  VATEX-EU-AE
b2b_reverse_charge (outside the EU)                AE        reverse_charge  – (text only)
customer_exempt                                    E         ``exempt``      – (text only)
product_nontaxable                                 E         ``exempt``      – (text only)
outside_eu_vat_area, not_taxable, no_tax_rule,     G         ``export``      VATEX-EU-G
not_registered, untaxed lines — buyer outside
the EU VAT area and the seller has a VAT number
the same, otherwise (buyer in the EU, or a seller  O         not_subject     VATEX-EU-O
without a VAT number)
=================================================  ========  ==============  ==================

EN 16931 allows an ``O`` (not subject to VAT) breakdown only when every line is ``O`` (BR-O-11 …
BR-O-14) and forbids VAT numbers on such a document (BR-O-02: the e-invoice then shows the seller's
number as its tax registration, BT-32). So on a document that mixes ``O`` lines with other
categories, those lines become ``E`` with the text "Not subject to VAT" (mention ``not_subject``).
Categories other than ``S`` form one breakdown each (EN 16931 allows one ``AE``, ``E``, ``G``,
``Z`` and ``O`` subtotal); ``S`` forms one per rate. US sales tax and Canadian GST/QST are shown as
``S`` at the line's effective rate (EN 16931 knows only VAT).

**Credit notes.** A note's lines take their net and tax from the note (``net_amount``,
``tax_amount``, ``tax_rate`` on :class:`~kassa.domain.credit_notes.CreditNoteLine`) when it carries
them; a note stored before notes carried tax (``tax_date`` None) gets it from
``credit_notes.notes_with_tax`` (after the invoice's ``previous`` notes); without those fields at
all, each line's tax is derived from its invoice line in proportion: ``tax = round(amount × line
tax / line creditable amount)``. The category is the credited invoice
line's; a custom line takes the invoice's single category when it has one, else it is ``E``
("Credit without VAT adjustment") when untaxed or ``S`` at its rate when taxed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from kassa.domain.catalog import TaxBehavior
from kassa.domain.money import Rounding, round_fraction
from kassa.domain.parties import Party, buyer_party
from kassa.domain.tax.model import EU_REVERSE_CHARGE_MENTION, RuleId
from kassa.domain.tax.territories import EU_MEMBER_STATES, VAT_AREA_ALIASES

if TYPE_CHECKING:
    from kassa.domain.credit_notes import CreditNote
    from kassa.domain.customer import Customer
    from kassa.domain.invoice import Invoice, InvoiceLine
    from kassa.domain.settings import MerchantSettings

DocumentKind = Literal["invoice", "credit_note"]

# ------------------------------------------------------------------ categories and mentions
STANDARD = "S"
ZERO_RATED = "Z"
EXEMPT = "E"
REVERSE_CHARGE = "AE"
EXPORT = "G"
NOT_SUBJECT = "O"
INTRA_COMMUNITY = "K"  # intra-community supply of goods: kassa sells services, never used today

#: the mention keys a document may carry (``Document.notes``, ``VatGroup.mention``); renderers
#: translate them (the PDF) or use :data:`MENTION_TEXTS` (the e-invoice)
MENTIONS = ("reverse_charge", "oss", "export", "exempt", "not_subject", "zero_rated")

OSS_MENTION = (
    "VAT of the customer's member state, declared through the One-Stop Shop "
    "(Article 58 and Title XII Chapter 6 of Council Directive 2006/112/EC)"
)
EXPORT_REASON = "Export outside the EU: the place of supply is outside the EU VAT area"
NOT_SUBJECT_REASON = "Not subject to VAT"
CUSTOMER_EXEMPT_REASON = "Exempt from VAT: the customer is tax exempt"
PRODUCT_EXEMPT_REASON = "Exempt from VAT: the product is not taxable"
EXEMPT_REASON = "Exempt from VAT"
UNADJUSTED_CREDIT_REASON = "Credit without VAT adjustment"
NON_EU_REVERSE_CHARGE = "Reverse charge: tax to be accounted for by the recipient"

#: English texts of the mention keys (the e-invoice's note and exemption reasons)
MENTION_TEXTS: dict[str, str] = {
    "reverse_charge": EU_REVERSE_CHARGE_MENTION,
    "oss": OSS_MENTION,
    "export": EXPORT_REASON,
    "exempt": EXEMPT_REASON,
    "not_subject": NOT_SUBJECT_REASON,
    "zero_rated": "Zero rated",
}

_TAXING_RULES = frozenset(
    {
        RuleId.EU_DOMESTIC,
        RuleId.EU_OSS,
        RuleId.EU_LOCAL_REGISTRATION,
        RuleId.EU_OVER_THRESHOLD,
        RuleId.EU_BELOW_THRESHOLD,
        RuleId.REGISTERED,
    }
)
_EXEMPT_RULES = {RuleId.CUSTOMER_EXEMPT: CUSTOMER_EXEMPT_REASON, RuleId.PRODUCT_NONTAXABLE: PRODUCT_EXEMPT_REASON}
_REVERSE_RULES = frozenset({RuleId.EU_REVERSE_CHARGE, RuleId.B2B_REVERSE_CHARGE})

_ISO_PREFIXES_EXTRA = frozenset({"EL", "XI"})  # Greece's VAT prefix; Northern Ireland


# ------------------------------------------------------------------ the view
@dataclass(frozen=True)
class VatGroup:
    """One line of the VAT breakdown: a category (UNCL 5305) at a rate, with its mention."""

    category: str
    rate: str  # percentage as an exact decimal string ("21", "25.5"); "0" for categories without VAT
    taxable_amount: int
    tax_amount: int
    mention: str | None = None  # a key of MENTIONS
    exemption_reason_code: str | None = None  # VATEX code, e.g. "VATEX-EU-AE"
    exemption_reason: str | None = None  # English text


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: int
    unit_amount: int | None  # per unit, without VAT, before the discount; None when not a whole minor unit
    net_amount: int  # without VAT, after the line's discount
    discount_amount: int  # the coupon's part, on the same basis as net_amount
    tax_rate: str  # the effective rate ("21", "0")
    category: str  # UNCL 5305
    period_start: datetime | None
    period_end: datetime | None  # exclusive, as on the invoice line
    proration: bool = False
    tiers: tuple[dict[str, Any], ...] | None = None  # a tiered price's breakdown (the invoice line's)
    tax_amount: int = 0  # the VAT of the line
    mention: str | None = None


@dataclass(frozen=True)
class Document:
    kind: DocumentKind
    number: str | None  # None: not numbered yet (a draft, a checkout's unpaid first invoice)
    issue_date: date
    due_date: date | None  # None: charged automatically (kassa's invoices are paid by card)
    currency: str
    seller: Party
    buyer: Party
    period_start: datetime
    period_end: datetime  # exclusive, as on the invoice
    lines: tuple[DocumentLine, ...]
    vat_groups: tuple[VatGroup, ...]
    subtotal: int  # Σ line net amounts
    allowance_total: int  # document-level allowances: always 0 (kassa discounts each line)
    tax: int
    total: int  # with VAT
    credit_applied: int  # balance used + pre-payment credit notes (negative: a debt added)
    amount_paid: int
    amount_due: int  # still to pay (negative: a credit moved to the customer's balance)
    status: str
    locale: str
    invoice_reference: str | None = None  # a credit note's invoice number
    invoice_reference_date: date | None = None
    notes: tuple[str, ...] = ()  # mention keys, in MENTIONS order
    buyer_reference: str | None = None  # BT-10: the subscription (or customer) id
    tax_date: date | None = None  # the tax point
    memo: str | None = None  # a credit note's memo
    reason: str | None = None  # a credit note's reason
    refund_amount: int = 0  # a post-payment credit note's split
    credit_amount: int = 0
    out_of_band_amount: int = 0
    rule_ids: tuple[str, ...] = field(default=())  # the tax rules that decided the lines


# ------------------------------------------------------------------ helpers shared with renderers
def vat_identifier(party: Party) -> str | None:
    """The party's tax id as a VAT identifier (BT-31/BT-48): a number whose first two letters are a
    country code (EN 16931 BR-CO-9), compacted (upper case, no spaces, dots or dashes); None when
    it has no tax id or one without such a prefix (an ABN, a Canadian business number, …)."""
    if not party.tax_id:
        return None
    compact = "".join(ch for ch in party.tax_id.upper() if ch.isalnum())
    prefix = compact[:2]
    from kassa.domain.countries import is_country_code

    if len(compact) > 2 and prefix.isalpha() and (prefix in _ISO_PREFIXES_EXTRA or is_country_code(prefix)):
        return compact
    return None


def outside_eu_vat_area(country: str) -> bool:
    return VAT_AREA_ALIASES.get(country, country) not in EU_MEMBER_STATES


def format_rate(rate: str | None) -> str:
    """An exact decimal percentage without trailing zeros ("21", "25.5", "14.975", "0")."""
    if not rate:
        return "0"
    value = abs(Fraction(rate))
    if value == 0:
        return "0"
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest and len(digits) < 6:  # kassa's rates have at most three decimals
        whole_digit, rest = divmod(rest * 10, value.denominator)
        digits += str(whole_digit)
    digits = digits.rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


@dataclass(frozen=True)
class _Taxed:
    """A line's VAT treatment."""

    category: str
    rate: str
    mention: str | None
    reason: str | None
    rule: str | None


def _rule_of(details: dict[str, Any] | None) -> RuleId | None:
    rule = (details or {}).get("rule") or {}
    try:
        return RuleId(str(rule["id"])) if isinstance(rule, dict) and rule.get("id") else None
    except ValueError:
        return None


def line_treatment(
    *,
    details: dict[str, Any] | None,
    rate: str | None,
    tax_amount: int,
    seller_vat: bool,
    buyer_country: str,
) -> _Taxed:
    """A line's category, rate and mention from its tax rule (the table of the module docstring)."""
    rule = _rule_of(details)
    rule_id = rule.value if rule else None
    rate_text = format_rate(rate)
    reverse = bool((details or {}).get("reverse_charge"))
    if rule in _EXEMPT_RULES:
        return _Taxed(EXEMPT, "0", "exempt", _EXEMPT_RULES[rule], rule_id)
    if rule in _REVERSE_RULES or (reverse and rate_text == "0"):
        mention = (details or {}).get("legal_mention")
        text = EU_REVERSE_CHARGE_MENTION if rule is RuleId.EU_REVERSE_CHARGE else (mention or NON_EU_REVERSE_CHARGE)
        return _Taxed(REVERSE_CHARGE, "0", "reverse_charge", text, rule_id)
    if rate_text != "0" or tax_amount != 0:
        return _Taxed(STANDARD, rate_text, "oss" if rule is RuleId.EU_OSS else None, None, rule_id)
    if rule in _TAXING_RULES:
        return _Taxed(ZERO_RATED, "0", "zero_rated", None, rule_id)
    # outside the scope of the seller's VAT: not registered, no rule, not taxable, a special territory
    territory = rule is RuleId.OUTSIDE_EU_VAT_AREA
    if seller_vat and (territory or outside_eu_vat_area(buyer_country)):
        return _Taxed(EXPORT, "0", "export", EXPORT_REASON, rule_id)
    return _Taxed(NOT_SUBJECT, "0", "not_subject", NOT_SUBJECT_REASON, rule_id)


_VATEX = {REVERSE_CHARGE: "VATEX-EU-AE", EXPORT: "VATEX-EU-G", NOT_SUBJECT: "VATEX-EU-O"}
_GENERIC_REASON = {EXEMPT: EXEMPT_REASON, REVERSE_CHARGE: EU_REVERSE_CHARGE_MENTION, EXPORT: EXPORT_REASON}


@dataclass
class _Entry:
    """A document line on its way: amounts and treatment."""

    line: DocumentLine
    treatment: _Taxed


def _settle_not_subject(entries: list[_Entry]) -> list[_Entry]:
    """O only stands alone (BR-O-11 …): on a mixed document, not-subject lines become E."""
    categories = {e.treatment.category for e in entries}
    if NOT_SUBJECT not in categories or categories == {NOT_SUBJECT}:
        return entries
    out = []
    for entry in entries:
        if entry.treatment.category == NOT_SUBJECT:
            t = entry.treatment
            treatment = _Taxed(EXEMPT, "0", "not_subject", NOT_SUBJECT_REASON, t.rule)
            entry = _Entry(
                _replace_line(entry.line, category=EXEMPT),
                treatment,
            )
        out.append(entry)
    return out


def _replace_line(line: DocumentLine, **changes: Any) -> DocumentLine:
    return replace(line, **changes)


def _groups(entries: Sequence[_Entry]) -> tuple[VatGroup, ...]:
    """The VAT breakdown: one group per category (per rate for S), in first-seen order."""
    order: list[tuple[str, str]] = []
    members: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        key = (entry.treatment.category, entry.treatment.rate if entry.treatment.category == STANDARD else "0")
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(entry)
    groups = []
    for key in order:
        category, rate = key
        items = members[key]
        mentions = [e.treatment.mention for e in items if e.treatment.mention]
        mention = mentions[0] if mentions and all(m == mentions[0] for m in mentions) else None
        if category == STANDARD:
            mention = "oss" if "oss" in mentions else None
        if category == EXEMPT and mention is None:
            mention = "exempt"
        reasons = {e.treatment.reason for e in items if e.treatment.reason}
        reason = reasons.pop() if len(reasons) == 1 else _GENERIC_REASON.get(category) if reasons else None
        code = _VATEX.get(category)
        if category == REVERSE_CHARGE and not any(e.treatment.rule == RuleId.EU_REVERSE_CHARGE.value for e in items):
            code = None  # a reverse charge outside the EU: its mention says which rule
        groups.append(
            VatGroup(
                category=category,
                rate=rate,
                taxable_amount=sum(e.line.net_amount for e in items),
                tax_amount=sum(e.line.tax_amount for e in items),
                mention=mention,
                exemption_reason_code=code,
                exemption_reason=reason if category not in (STANDARD, ZERO_RATED) else None,
            )
        )
    return tuple(groups)


def _notes(groups: Iterable[VatGroup], lines: Iterable[_Entry]) -> tuple[str, ...]:
    seen = {g.mention for g in groups if g.mention} | {e.treatment.mention for e in lines if e.treatment.mention}
    return tuple(m for m in MENTIONS if m in seen)


def _net_of(line: InvoiceLine) -> tuple[int, int, int | None]:
    """(net, discount on the net basis, unit amount without VAT) of an invoice line."""
    if line.tax_behavior is TaxBehavior.INCLUSIVE:
        net = line.amount - line.tax_amount
        discount = 0
        if line.discount_amount:
            rate = Fraction(line.tax_rate or "0") / 100
            before = round_fraction(Fraction(line.amount + line.discount_amount) / (1 + rate), Rounding.HALF_UP)
            discount = before - net
        gross = net + discount
        unit = gross // line.quantity if line.quantity and gross % line.quantity == 0 else None
        return net, discount, unit
    unit = line.unit_amount
    if unit is not None and line.quantity and unit * line.quantity != line.amount + line.discount_amount:
        unit = None  # a prorated or credited line: the unit price no longer multiplies out
    return line.amount, line.discount_amount, unit


def _document_line(line: InvoiceLine, treatment: _Taxed) -> DocumentLine:
    net, discount, unit = _net_of(line)
    return DocumentLine(
        description=line.description,
        quantity=line.quantity,
        unit_amount=unit,
        net_amount=net,
        discount_amount=discount,
        tax_rate=treatment.rate,
        category=treatment.category,
        period_start=line.period_start,
        period_end=line.period_end,
        proration=line.proration,
        tiers=tuple(line.tiers) if line.tiers else None,
        tax_amount=line.tax_amount,
        mention=treatment.mention,
    )


def parties_of(invoice: Invoice, settings: MerchantSettings, customer: Customer | None) -> tuple[Party, Party]:
    """The invoice's frozen seller and buyer, or (an invoice stored before parties) the current ones."""
    seller = invoice.seller or settings.seller_party()
    if invoice.buyer is not None:
        buyer = invoice.buyer
    elif customer is not None:
        buyer = buyer_party(customer)
    else:
        from kassa.domain.customer import Address
        from kassa.domain.errors import InvalidInput

        if invoice.customer_country is None:
            raise InvalidInput(f"invoice {invoice.id} has no recorded buyer: pass its customer", param="customer")
        buyer = Party(
            name=invoice.customer, address=Address(country=invoice.customer_country), tax_id=invoice.customer_tax_id
        )
    return seller, buyer


def _issue_date(invoice: Invoice) -> date:
    return (invoice.finalized_at or invoice.created).date()


def _document(
    kind: DocumentKind,
    entries: list[_Entry],
    invoice: Invoice,
    customer: Customer | None,
    seller: Party,
    buyer: Party,
    **fields: Any,
) -> Document:
    """A document of ``entries`` (settled, grouped per VAT rate and totalled; nothing applied or paid)
    over ``invoice``'s period, in its (else the customer's) language; ``fields``: number, dates …"""
    entries = _settle_not_subject(entries)
    groups = _groups(entries)
    subtotal = sum(e.line.net_amount for e in entries)
    tax = sum(e.line.tax_amount for e in entries)
    return Document(
        kind=kind,
        due_date=None,
        seller=seller,
        buyer=buyer,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        lines=tuple(e.line for e in entries),
        vat_groups=groups,
        subtotal=subtotal,
        allowance_total=0,
        tax=tax,
        total=subtotal + tax,
        credit_applied=0,
        amount_paid=0,
        amount_due=subtotal + tax,
        locale=invoice.locale or (customer.preferred_locale if customer else None) or "en",
        notes=_notes(groups, entries),
        buyer_reference=invoice.subscription or invoice.customer,
        rule_ids=tuple(dict.fromkeys(e.treatment.rule for e in entries if e.treatment.rule)),
        **fields,
    )


def invoice_document(invoice: Invoice, *, settings: MerchantSettings, customer: Customer | None) -> Document:
    """What ``invoice``'s documents say (see the module docstring)."""
    seller, buyer = parties_of(invoice, settings, customer)
    seller_vat = vat_identifier(seller) is not None
    entries = []
    for line in invoice.lines:
        treatment = line_treatment(
            details=line.tax_details,
            rate=line.tax_rate,
            tax_amount=line.tax_amount,
            seller_vat=seller_vat,
            buyer_country=buyer.address.country,
        )
        entries.append(_Entry(_document_line(line, treatment), treatment))
    doc = _document(
        "invoice",
        entries,
        invoice,
        customer,
        seller,
        buyer,
        number=invoice.number,
        issue_date=_issue_date(invoice),
        currency=invoice.currency,
        status=invoice.status.value,
        tax_date=invoice.tax_date,
    )
    if doc.total < 0:  # a credit: due as it stands, nothing applied or paid
        return doc
    paid = invoice.amount_paid
    return replace(
        doc, credit_applied=doc.total - invoice.amount_due, amount_paid=paid, amount_due=invoice.amount_due - paid
    )


# ------------------------------------------------------------------ credit notes
def _note_line_amounts(note_line: Any, source: InvoiceLine | None) -> tuple[int, int, str | None]:
    """(net, tax, rate) of a credit note line: its own tax fields when it carries them, else derived
    from the invoice line in proportion (notes stored before notes carried tax)."""
    amount = int(note_line.amount)
    net = getattr(note_line, "net_amount", None)
    tax = getattr(note_line, "tax_amount", None)
    rate = getattr(note_line, "tax_rate", None)
    if isinstance(net, int) and isinstance(tax, int) and net + tax == amount:
        if rate is None and source is not None and tax:
            rate = source.tax_rate
        return net, tax, rate
    if source is None:
        return amount, 0, None
    exclusive = source.tax_behavior is TaxBehavior.EXCLUSIVE
    gross = max(0, source.amount + (source.tax_amount if exclusive else 0))
    tax = round_fraction(Fraction(amount * source.tax_amount, gross), Rounding.HALF_UP) if gross > 0 else 0
    tax = max(0, min(tax, amount))
    return amount - tax, tax, source.tax_rate


def _note_with_tax(note: CreditNote, invoice: Invoice, previous: Sequence[CreditNote]) -> CreditNote:
    """A note stored before notes carried tax (``tax_date`` None) with the tax derived from its
    invoice by kassa's rule (``credit_notes.notes_with_tax``, after the ``previous`` notes)."""
    if getattr(note, "tax_date", "absent") is not None:
        return note  # it carries its tax (or notes have no tax fields yet: derived per line below)
    from kassa.domain import credit_notes

    derive = getattr(credit_notes, "notes_with_tax", None)
    if derive is None:
        return note
    done: list[CreditNote] = derive(invoice, [*previous, note])
    return next(n for n in done if n.id == note.id)


def credit_note_document(
    note: CreditNote,
    invoice: Invoice,
    *,
    settings: MerchantSettings,
    customer: Customer | None,
    previous: Sequence[CreditNote] = (),
) -> Document:
    """What a credit note's documents say: its lines (amounts credited, positive) with the VAT they
    reverse, in the categories of the invoice lines they credit, referring to ``invoice``.
    ``previous``: the invoice's other notes, for a note stored before notes carried tax."""
    note = _note_with_tax(note, invoice, [n for n in previous if n.id != note.id])
    seller, buyer = parties_of(invoice, settings, customer)
    seller_vat = vat_identifier(seller) is not None

    def treat(details: dict[str, Any] | None, rate: str | None, tax: int) -> _Taxed:
        return line_treatment(
            details=details, rate=rate, tax_amount=tax, seller_vat=seller_vat, buyer_country=buyer.address.country
        )

    invoice_treatments = [treat(line.tax_details, line.tax_rate, line.tax_amount) for line in invoice.lines]
    entries: list[_Entry] = []
    for note_line in note.lines:
        index = note_line.invoice_line
        source = invoice.lines[index] if index is not None and 0 <= index < len(invoice.lines) else None
        net, tax, rate = _note_line_amounts(note_line, source)
        if source is not None:
            treatment = invoice_treatments[index]  # type: ignore[index]
            description = note_line.description or source.description
            start, end, proration, tiers = source.period_start, source.period_end, source.proration, source.tiers
            quantity = 1
        else:
            kinds = {(t.category, t.rate) for t in invoice_treatments}
            if tax:
                details = getattr(note_line, "tax_details", None)
                treatment = treat(details, rate, tax)
            elif len(kinds) == 1 and next(iter(kinds))[0] != STANDARD:
                treatment = invoice_treatments[0]
            else:
                treatment = _Taxed(EXEMPT, "0", None, UNADJUSTED_CREDIT_REASON, None)
            description = note_line.description or "Credit"
            start, end, proration, tiers = invoice.period_start, invoice.period_end, False, None
            quantity = 1
        line = DocumentLine(
            description=description,
            quantity=quantity,
            unit_amount=net,
            net_amount=net,
            discount_amount=0,
            tax_rate=treatment.rate,
            category=treatment.category,
            period_start=start,
            period_end=end,
            proration=proration,
            tiers=tuple(tiers) if tiers else None,
            tax_amount=tax,
            mention=treatment.mention,
        )
        entries.append(_Entry(line, treatment))
    return _document(
        "credit_note",
        entries,
        invoice,
        customer,
        seller,
        buyer,
        number=note.number,
        issue_date=note.created.date(),
        currency=note.currency,
        status=note.status.value,
        invoice_reference=invoice.number,
        invoice_reference_date=_issue_date(invoice),
        tax_date=getattr(note, "tax_date", None) or note.created.date(),
        memo=note.memo,
        reason=note.reason.value if note.reason else None,
        refund_amount=note.refund_amount,
        credit_amount=note.credit_amount,
        out_of_band_amount=note.out_of_band_amount,
    )
