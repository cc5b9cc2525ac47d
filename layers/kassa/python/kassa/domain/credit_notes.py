"""Credit notes (Stripe's rules), as pure functions over an invoice and its earlier notes.

- On an **open** (or uncollectible) invoice a note is *pre-payment*: it reduces ``amount_due`` and
  nothing is refunded; a note that brings ``amount_due`` to 0 marks the invoice paid (Stripe).
- On a **paid** invoice a note is *post-payment*: its total splits into ``refund_amount`` (back
  through Stripe) + ``credit_amount`` (to the customer balance) + ``out_of_band_amount`` (settled
  outside), and the three must sum exactly to the total.
- A note's total never exceeds what is still creditable: the invoice total minus the totals of its
  earlier (non-void) notes; a line of an invoice is never credited beyond its own amount (tax included
  for exclusive prices); refunds never exceed what was paid minus earlier refunds; currencies match.

Draft invoices are edited, not credited; void invoices owe nothing. Amounts are integers in minor
units.

**The tax a note reverses.** Every credited amount splits into ``net_amount + tax_amount == amount``
(what the customer is credited: tax included, whether the invoice line's price was exclusive or
inclusive), by one rule, :func:`reversed_tax`:

- an ``invoice_line_item`` credit reverses the line's tax in proportion to what it credits of the
  line's creditable amount ``g`` (``line_creditable_amount``: amount + tax for an exclusive price,
  the amount for an inclusive one) carrying tax ``x``: ``tax = round(amount × x / g)``, rounded half
  up in minor units (the tax engine's ``ROUNDING``), kept between what the line has left: never more
  than the line's tax not yet reversed by its earlier (issued) notes, never so little that the net
  credited would pass the line's net. So a credit of the whole line reverses the whole tax, several
  partial notes never reverse more than the line had, and the note that credits the rest of the line
  takes the rest of its tax exactly;
- a ``custom_line_item`` credits the invoice as a whole. On an invoice whose lines are all taxed in
  one jurisdiction at one non-zero rate, it reverses tax at that rate, *inclusive* of it, by the same
  rule over the invoice: ``tax = round(amount × invoice tax / invoice total)``, kept between what the
  invoice has left after all its earlier notes (a custom line's ``tax_behavior`` is ``inclusive``).
  On an invoice with several rates (or jurisdictions), or without tax, a custom line carries no tax
  (``tax_amount`` 0, ``tax_rate`` and ``tax_behavior`` None) and is left out of the tax reports;
- a note never makes its invoice reverse more than the invoice's own tax;
- on a line with several taxes (Canada's GST + QST), the tax is split between them in proportion
  to each one's tax on the line, again never beyond what each has left; each tax's taxable part
  follows the net credited (Texas: 80% of it).

Each taxed line keeps ``tax_details``: the invoice line's ``LineTax`` (rule, jurisdiction,
components) with the credited amounts, which the tax reports read as negative lines in the period
of the note's own ``tax_date`` (:func:`credit_note_taxed_lines`).

Notes stored before notes carried tax (no ``tax_date``) load as untaxed (``tax_amount`` 0, net =
amount); :func:`notes_with_tax` derives their tax from the invoice by the rule above, in the order
of their numbers, and ``issue_credit_note`` does so for the earlier notes it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from kassa.domain.balance import BalanceTransactionType, CustomerBalanceTransaction
from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import CurrencyMismatch, IllegalTransition, InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.invoice import Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.money import MAX_AMOUNT, normalize_currency, round_fraction
from kassa.domain.payments import refunded_before_note
from kassa.domain.tax.engine import ROUNDING, breakdown
from kassa.domain.tax.model import LineTax, TaxComponent
from kassa.domain.tax.report import TaxedLine


class CreditNoteReason(StrEnum):
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"


class CreditNoteStatus(StrEnum):
    ISSUED = "issued"
    VOID = "void"


class CreditNoteType(StrEnum):
    PRE_PAYMENT = "pre_payment"
    POST_PAYMENT = "post_payment"


class CreditNoteLineType(StrEnum):
    INVOICE_LINE_ITEM = "invoice_line_item"
    CUSTOM_LINE_ITEM = "custom_line_item"


class CreditNoteLineInput(BaseModel):
    """What a request credits: an amount against one invoice line (by its index) or a custom amount.
    Its tax is kassa's to compute (:class:`CreditNoteLine`)."""

    model_config = ConfigDict(frozen=True)

    type: CreditNoteLineType
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT)
    invoice_line: StrictInt | None = Field(default=None, ge=0)
    description: str | None = None

    def model_post_init(self, __context: object) -> None:
        if self.type is CreditNoteLineType.INVOICE_LINE_ITEM and self.invoice_line is None:
            raise InvalidInput("an invoice_line_item credit names its invoice_line", param="lines.invoice_line")
        if self.type is CreditNoteLineType.CUSTOM_LINE_ITEM:
            if self.invoice_line is not None:
                raise InvalidInput("a custom_line_item names no invoice_line", param="lines.invoice_line")
            if not self.description:
                raise InvalidInput("a custom_line_item needs a description", param="lines.description")


class CreditNoteLine(CreditNoteLineInput):
    """A line of an issued note: the credited ``amount`` (tax included) and the tax it reverses.

    ``net_amount + tax_amount == amount``. ``tax_rate`` is the effective percentage of the invoice
    line ("21", "14.975"; None when untaxed), ``tax_behavior`` the invoice line's (``inclusive`` for
    a taxed custom line, None for an untaxed one), ``tax_details`` the credited part as the tax
    engine's ``LineTax`` (what the reports read)."""

    net_amount: StrictInt
    tax_amount: StrictInt = 0
    tax_rate: str | None = None
    tax_behavior: TaxBehavior | None = None
    tax_jurisdiction: str | None = None
    tax_details: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _untaxed_when_stored_without_tax(cls, data: Any) -> Any:
        # a line stored before notes carried tax: all of it was net
        if isinstance(data, dict) and "net_amount" not in data and isinstance(data.get("amount"), int):
            tax = data.get("tax_amount", 0)
            data = {**data, "net_amount": data["amount"] - (tax if isinstance(tax, int) else 0)}
        return data

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if self.net_amount + self.tax_amount != self.amount:
            raise InvalidInput("a credit note line's net_amount + tax_amount is its amount", param="lines.net_amount")


class CreditNoteRequest(BaseModel):
    """What the merchant asks for. On paid invoices the split defaults to a full refund."""

    model_config = ConfigDict(frozen=True)

    lines: tuple[CreditNoteLineInput, ...] = Field(min_length=1)
    reason: CreditNoteReason | None = None
    memo: str | None = Field(default=None, max_length=5000)
    currency: str | None = None
    refund_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    credit_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    out_of_band_amount: StrictInt | None = Field(default=None, ge=0, le=MAX_AMOUNT)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


class CreditNote(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    number: str
    invoice: str
    customer: str
    currency: str
    type: CreditNoteType
    lines: tuple[CreditNoteLine, ...]
    total: StrictInt
    reason: CreditNoteReason | None = None
    memo: str | None = None
    status: CreditNoteStatus = CreditNoteStatus.ISSUED
    refund_amount: StrictInt = 0
    credit_amount: StrictInt = 0
    out_of_band_amount: StrictInt = 0
    created: datetime
    voided_at: datetime | None = None
    # the tax it reverses (see the module's docstring): subtotal = Σ net_amount, tax = Σ tax_amount,
    # subtotal + tax = total; the breakdown per jurisdiction, tax type and rate, like the invoice's;
    # ``tax_date``: the note's own date, the period the reports count it in (None: stored before)
    subtotal: StrictInt
    tax: StrictInt = 0
    tax_breakdown: list[dict[str, Any]] = Field(default_factory=list)
    tax_date: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _totals_when_stored_without_tax(cls, data: Any) -> Any:
        if isinstance(data, dict) and "subtotal" not in data and isinstance(data.get("lines"), list | tuple):
            nets, taxes = 0, 0
            for line in data["lines"]:
                if isinstance(line, CreditNoteLine):
                    nets, taxes = nets + line.net_amount, taxes + line.tax_amount
                elif isinstance(line, dict) and isinstance(line.get("amount"), int):
                    tax = line.get("tax_amount", 0) if isinstance(line.get("tax_amount", 0), int) else 0
                    nets += line.get("net_amount", line["amount"] - tax)
                    taxes += tax
            data = {**data, "subtotal": nets, "tax": data.get("tax", taxes)}
        return data

    @property
    def reported_on(self) -> date:
        """The date the tax reports count the note at: its ``tax_date`` (its creation date before)."""
        return self.tax_date or self.created.date()

    def model_post_init(self, __context: object) -> None:
        if self.total != sum(line.amount for line in self.lines):
            raise InvalidInput("a credit note's total is the sum of its lines", param="total")
        if self.subtotal != sum(line.net_amount for line in self.lines) or self.tax != sum(
            line.tax_amount for line in self.lines
        ):
            raise InvalidInput("a credit note's subtotal and tax are the sums of its lines", param="subtotal")
        if self.type is CreditNoteType.POST_PAYMENT and (
            self.refund_amount + self.credit_amount + self.out_of_band_amount != self.total
        ):
            raise InvalidInput(
                "refund_amount + credit_amount + out_of_band_amount must equal the total", param="refund_amount"
            )


def credit_note_number(invoice_number: str, sequence: int) -> str:
    """The invoice's number with a per-invoice sequence: ``KASSA-0042-CN-01``."""
    if sequence < 1:
        raise InvalidInput("credit note sequences start at 1", param="sequence")
    return f"{invoice_number}-CN-{sequence:02d}"


def credit_note_id(invoice_id: str, sequence: int) -> str:
    """Derived from (invoice, sequence): a retried request cannot issue a second note."""
    return derived_id("cn", invoice_id, str(sequence))


def line_creditable_amount(line: InvoiceLine) -> int:
    """What the customer was charged for ``line``: its amount plus tax when the tax came on top."""
    tax = line.tax_amount if line.tax_behavior is TaxBehavior.EXCLUSIVE else 0
    return max(0, line.amount + tax)


# ------------------------------------------------------------------ the tax a note reverses
def reversed_tax(amount: int, *, gross: int, tax: int, credited_before: int = 0, reversed_before: int = 0) -> int:
    """The tax inside ``amount`` credited of a line (or an invoice) whose creditable amount ``gross``
    carries ``tax``, after earlier notes credited ``credited_before`` of it reversing ``reversed_before``:
    ``round(amount × tax / gross)`` (half up), never more than the tax left, never so little that the
    net credited passes the net; so crediting what is left reverses exactly the tax left."""
    if amount <= 0 or gross <= 0 or tax <= 0:
        return 0
    return _portion(amount, gross, tax, credited_before, reversed_before)


def _portion(amount: int, whole: int, part: int, whole_done: int, part_done: int) -> int:
    """What ``amount`` of ``whole`` carries of ``part`` (a part of ``whole``): proportional, rounded
    half up, kept within what is left of ``part`` and never leaving more of it than of ``whole``."""
    if whole <= 0 or part <= 0:
        return 0
    ideal = round_fraction(Fraction(amount * part, whole), ROUNDING)
    left = part - part_done
    high = max(0, min(amount, left))
    low = max(0, left - (whole - whole_done - amount))
    return min(high, max(low, ideal))


_ComponentKey = tuple[str, str, str]


def _key(component: TaxComponent | dict[str, Any]) -> _ComponentKey:
    if isinstance(component, TaxComponent):
        return (component.jurisdiction, component.tax_type, component.rate)
    return (str(component["jurisdiction"]), str(component["tax_type"]), str(component["rate"]))


@dataclass
class _Taken:
    """What issued notes credited of one source (an invoice line, or the whole invoice)."""

    gross: int = 0
    net: int = 0
    tax: int = 0
    components: dict[_ComponentKey, list[int]] = field(default_factory=dict)  # [taxable, tax]

    def add(self, line: CreditNoteLine) -> None:
        self.gross += line.amount
        self.net += line.net_amount
        self.tax += line.tax_amount
        for component in (line.tax_details or {}).get("components", ()):
            sums = self.components.setdefault(_key(component), [0, 0])
            sums[0] += int(component["taxable_amount"])
            sums[1] += int(component["tax_amount"])


@dataclass(frozen=True)
class _Source:
    """What a credit line takes its tax from: an invoice line, or the invoice for custom lines."""

    gross: int
    tax: int
    details: LineTax | None = None
    rate: str | None = None
    behavior: TaxBehavior | None = None
    jurisdiction: str | None = None


_UNTAXED = _Source(gross=0, tax=0)


def _line_source(line: InvoiceLine) -> _Source:
    details = LineTax.model_validate(line.tax_details) if line.tax_details is not None else None
    return _Source(
        gross=line_creditable_amount(line),
        tax=line.tax_amount,
        details=details,
        rate=line.tax_rate,
        behavior=line.tax_behavior,
        jurisdiction=line.tax_jurisdiction,
    )


def _invoice_source(invoice: Invoice) -> _Source:
    """A custom line's source: the invoice as a whole when all its lines are taxed in one
    jurisdiction at one non-zero rate; untaxed otherwise."""
    if not invoice.lines or any(line.tax_details is None for line in invoice.lines):
        return _UNTAXED
    taxes = [LineTax.model_validate(line.tax_details) for line in invoice.lines]
    if len({(t.jurisdiction, t.rate, t.rule.id, t.reverse_charge) for t in taxes}) != 1 or taxes[0].rate == "0":
        return _UNTAXED
    gross, tax = sum(t.total for t in taxes), sum(t.tax_amount for t in taxes)
    if gross <= 0 or tax <= 0:
        return _UNTAXED
    components: dict[_ComponentKey, TaxComponent] = {}
    for t in taxes:
        for c in t.components:
            seen = components.get(_key(c))
            components[_key(c)] = (
                c
                if seen is None
                else seen.model_copy(
                    update={
                        "taxable_amount": seen.taxable_amount + c.taxable_amount,
                        "tax_amount": seen.tax_amount + c.tax_amount,
                    }
                )
            )
    details = taxes[0].model_copy(
        update={
            "reference": None,
            "tax_behavior": TaxBehavior.INCLUSIVE,
            "taxable_amount": gross - tax,
            "tax_amount": tax,
            "total": gross,
            "components": tuple(components.values()),
        }
    )
    return _Source(
        gross=gross,
        tax=tax,
        details=details,
        rate=taxes[0].rate,
        behavior=TaxBehavior.INCLUSIVE,
        jurisdiction=taxes[0].jurisdiction,
    )


def _component_taxes(tax: int, source: _Source, taken: _Taken) -> list[int]:
    """``tax`` split between the source's taxes in proportion to each one's tax, within what each has left."""
    assert source.details is not None
    components = source.details.components
    if len(components) <= 1:
        return [tax] * len(components)
    done = [taken.components.get(_key(c), [0, 0])[1] for c in components]
    shares = [_portion(tax, source.tax, c.tax_amount, taken.tax, d) for c, d in zip(components, done, strict=True)]
    caps = [max(0, c.tax_amount - d) for c, d in zip(components, done, strict=True)]
    diff = tax - sum(shares)
    order = sorted(range(len(shares)), key=lambda i: (-(caps[i] - shares[i]), i))
    for i in order if diff > 0 else reversed(order):
        step = min(diff, max(0, caps[i] - shares[i])) if diff > 0 else -min(-diff, shares[i])
        shares[i] += step
        diff -= step
    return shares


def _credit_line(line: CreditNoteLineInput, source: _Source, taken: _Taken, invoice_tax_left: int) -> CreditNoteLine:
    tax = reversed_tax(
        line.amount, gross=source.gross, tax=source.tax, credited_before=taken.gross, reversed_before=taken.tax
    )
    tax = min(tax, max(0, invoice_tax_left))  # a note never reverses more than its invoice's tax
    net = line.amount - tax
    details = None
    if source.details is not None:
        components = source.details.components
        taxes = _component_taxes(tax, source, taken)
        credited_components = tuple(
            c.model_copy(
                update={
                    "taxable_amount": _portion(
                        net,
                        source.details.taxable_amount,
                        c.taxable_amount,
                        taken.net,
                        taken.components.get(_key(c), [0, 0])[0],
                    ),
                    "tax_amount": part,
                }
            )
            for c, part in zip(components, taxes, strict=True)
        )
        details = source.details.model_copy(
            update={
                "reference": None if line.invoice_line is None else str(line.invoice_line),
                "taxable_amount": net,
                "tax_amount": tax,
                "total": line.amount,
                "components": credited_components,
            }
        ).model_dump(mode="json")
    return CreditNoteLine(
        **line.model_dump(include=set(CreditNoteLineInput.model_fields)),
        net_amount=net,
        tax_amount=tax,
        tax_rate=source.rate,
        tax_behavior=source.behavior,
        tax_jurisdiction=source.jurisdiction,
        tax_details=details,
    )


def credit_note_lines(
    invoice: Invoice, lines: Sequence[CreditNoteLineInput], previous: Sequence[CreditNote] = ()
) -> tuple[CreditNoteLine, ...]:
    """``lines`` with the tax each reverses (the rule of the module's docstring), after the issued
    notes among ``previous`` (with their tax: see :func:`notes_with_tax`)."""
    whole = _Taken()
    per_line: dict[int, _Taken] = {}
    for note in previous:
        if note.status is not CreditNoteStatus.ISSUED:
            continue
        for earlier in note.lines:
            whole.add(earlier)
            if earlier.invoice_line is not None:
                per_line.setdefault(earlier.invoice_line, _Taken()).add(earlier)
    invoice_source: _Source | None = None
    out: list[CreditNoteLine] = []
    for line in lines:
        index = line.invoice_line
        if index is None:
            invoice_source = invoice_source or _invoice_source(invoice)
            source, taken = invoice_source, whole
        else:
            source = _line_source(invoice.lines[index]) if index < len(invoice.lines) else _UNTAXED
            taken = per_line.setdefault(index, _Taken())
        credited = _credit_line(line, source, taken, invoice.tax - whole.tax)
        out.append(credited)
        whole.add(credited)
        if index is not None:
            taken.add(credited)
    return tuple(out)


def _tax_fields(lines: Sequence[CreditNoteLine]) -> dict[str, Any]:
    details = [LineTax.model_validate(line.tax_details) for line in lines if line.tax_details is not None]
    return {
        "lines": tuple(lines),
        "subtotal": sum(line.net_amount for line in lines),
        "tax": sum(line.tax_amount for line in lines),
        "tax_breakdown": [row.model_dump(mode="json") for row in breakdown(details)],
    }


def notes_with_tax(invoice: Invoice, notes: Sequence[CreditNote]) -> list[CreditNote]:
    """``notes`` of ``invoice``, those stored before notes carried tax (no ``tax_date``) with the tax
    derived from the invoice by the module's rule, in the order of their numbers; their ``tax_date``
    becomes their creation date. Notes with a ``tax_date`` are returned as they are."""
    done: dict[str, CreditNote] = {}
    for note in sorted(notes, key=lambda n: n.number):
        if note.tax_date is None and note.invoice == invoice.id:
            lines = credit_note_lines(invoice, note.lines, list(done.values()))
            note = note.model_copy(update={**_tax_fields(lines), "tax_date": note.created.date()})
        done[note.id] = note
    return [done[note.id] for note in notes]


def credit_note_taxed_lines(note: CreditNote) -> tuple[TaxedLine, ...]:
    """What the tax reports read of a note: each taxed line's credited part as a negative line, at
    the note's own tax date. A void note counts for nothing; an untaxed custom line is not reported."""
    if note.status is not CreditNoteStatus.ISSUED:
        return ()
    out = []
    for line in note.lines:
        if line.tax_details is None:
            continue
        tax = LineTax.model_validate(line.tax_details)
        negative = tax.model_copy(
            update={
                "taxable_amount": -tax.taxable_amount,
                "tax_amount": -tax.tax_amount,
                "total": -tax.total,
                "components": tuple(
                    c.model_copy(update={"taxable_amount": -c.taxable_amount, "tax_amount": -c.tax_amount})
                    for c in tax.components
                ),
            }
        )
        out.append(
            TaxedLine(
                invoice_id=note.invoice,
                credit_note=note.id,
                tax_date=note.reported_on,
                currency=note.currency,
                line=negative,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class InvoiceCreditState:
    """An invoice's credit-note totals, as Stripe shows them, derived from its issued notes."""

    pre_payment_credit_notes_amount: int
    post_payment_credit_notes_amount: int
    refunded: int
    credited_per_line: tuple[int, ...]
    creditable: int  # invoice total − every issued note's total (never below 0)


def credit_state(invoice: Invoice, notes: Sequence[CreditNote] = ()) -> InvoiceCreditState:
    issued = [note for note in notes if note.status is CreditNoteStatus.ISSUED]
    for note in notes:
        if note.invoice != invoice.id:
            raise InvalidInput(f"credit note {note.id} belongs to invoice {note.invoice}", param="credit_notes")
    per_line = [0] * len(invoice.lines)
    for note in issued:
        for line in note.lines:
            if line.invoice_line is not None and line.invoice_line < len(per_line):
                per_line[line.invoice_line] += line.amount
    pre = sum(n.total for n in issued if n.type is CreditNoteType.PRE_PAYMENT)
    post = sum(n.total for n in issued if n.type is CreditNoteType.POST_PAYMENT)
    return InvoiceCreditState(
        pre_payment_credit_notes_amount=pre,
        post_payment_credit_notes_amount=post,
        refunded=sum(n.refund_amount for n in issued),
        credited_per_line=tuple(per_line),
        creditable=max(0, invoice.total - pre - post),
    )


@dataclass(frozen=True)
class CreditNoteOutcome:
    """The issued note and what the caller writes back: the invoice's new amounts and status, the
    refund to ask Stripe for, and the balance entry to record (for ``credit_amount``)."""

    credit_note: CreditNote
    amount_due: int
    invoice_status: InvoiceStatus
    pre_payment_credit_notes_amount: int
    post_payment_credit_notes_amount: int
    refund_amount: int
    balance_transaction: CustomerBalanceTransaction | None


def issue_credit_note(
    invoice: Invoice,
    request: CreditNoteRequest,
    *,
    previous: Sequence[CreditNote] = (),
    credit_note_id: str,
    number: str,
    now: datetime,
) -> CreditNoteOutcome:
    """Validate ``request`` against ``invoice`` and its ``previous`` notes and issue the note.

    ``invoice.amount_due`` must already reflect earlier pre-payment notes (write back each outcome's
    ``amount_due``).
    """
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID):
        raise IllegalTransition(
            f"invoice {invoice.id} is {invoice.status.value}: "
            "only open, uncollectible or paid invoices take credit notes"
        )
    if request.currency is not None and normalize_currency(request.currency) != invoice.currency:
        raise CurrencyMismatch(
            f"invoice {invoice.id} is in {invoice.currency}, not {request.currency}", param="currency"
        )
    previous = notes_with_tax(invoice, previous)
    state = credit_state(invoice, previous)
    per_line = list(state.credited_per_line)
    for line in request.lines:
        if line.invoice_line is None:
            continue
        if line.invoice_line >= len(invoice.lines):
            raise InvalidInput(f"invoice {invoice.id} has no line {line.invoice_line}", param="lines.invoice_line")
        left = line_creditable_amount(invoice.lines[line.invoice_line]) - per_line[line.invoice_line]
        if line.amount > left:
            raise InvalidInput(
                f"line {line.invoice_line} can be credited {max(0, left)} more, not {line.amount}",
                param="lines.amount",
            )
        per_line[line.invoice_line] += line.amount
    total = request.total
    if total > state.creditable:
        raise InvalidInput(
            f"the credit note total {total} exceeds the {state.creditable} still creditable on invoice {invoice.id}",
            param="lines",
        )
    refund = credit = out_of_band = 0
    status: InvoiceStatus = invoice.status
    if invoice.status is InvoiceStatus.PAID:
        kind = CreditNoteType.POST_PAYMENT
        given = (request.refund_amount, request.credit_amount, request.out_of_band_amount)
        if all(part is None for part in given):
            refund = total
        else:
            refund, credit, out_of_band = (part or 0 for part in given)
        if refund + credit + out_of_band != total:
            raise InvalidInput(
                f"refund_amount + credit_amount + out_of_band_amount = {refund + credit + out_of_band}, "
                f"but the credit note total is {total}",
                param="refund_amount",
            )
        # refunds made outside kassa (the Stripe dashboard) count too: one limit for every refund
        already = refunded_before_note(invoice.refunds, invoice.charge_amount_refunded, state.refunded, credit_note_id)
        if refund > invoice.amount_paid - already:
            raise InvalidInput(
                f"refund_amount {refund} exceeds the {max(0, invoice.amount_paid - already)} paid and not yet refunded",
                param="refund_amount",
            )
        amount_due = invoice.amount_due
    else:
        kind = CreditNoteType.PRE_PAYMENT
        if request.refund_amount or request.credit_amount or request.out_of_band_amount:
            raise InvalidInput(
                "a credit note on an unpaid invoice reduces its amount due; nothing is refunded or credited",
                param="refund_amount",
            )
        if total > invoice.amount_due:
            raise InvalidInput(
                f"the credit note total {total} exceeds the amount due {invoice.amount_due}", param="lines"
            )
        amount_due = invoice.amount_due - total
        status = InvoiceStatus.PAID if amount_due == 0 else invoice.status
    note = CreditNote(
        id=credit_note_id,
        number=number,
        invoice=invoice.id,
        customer=invoice.customer,
        currency=invoice.currency,
        type=kind,
        **_tax_fields(credit_note_lines(invoice, request.lines, previous)),
        tax_date=now.date(),
        total=total,
        reason=request.reason,
        memo=request.memo,
        refund_amount=refund,
        credit_amount=credit,
        out_of_band_amount=out_of_band,
        created=now,
    )
    entry = None
    if credit:
        entry = CustomerBalanceTransaction(
            id=derived_id("cbtxn", credit_note_id, "credit"),
            customer=invoice.customer,
            amount=-credit,
            currency=invoice.currency,
            type=BalanceTransactionType.CREDIT_NOTE,
            invoice=invoice.id,
            credit_note=credit_note_id,
            description=f"Credit note {number}",
            created=now,
        )
    return CreditNoteOutcome(
        credit_note=note,
        amount_due=amount_due,
        invoice_status=status,
        pre_payment_credit_notes_amount=state.pre_payment_credit_notes_amount
        + (total if kind is CreditNoteType.PRE_PAYMENT else 0),
        post_payment_credit_notes_amount=state.post_payment_credit_notes_amount
        + (total if kind is CreditNoteType.POST_PAYMENT else 0),
        refund_amount=refund,
        balance_transaction=entry,
    )


@dataclass(frozen=True)
class VoidOutcome:
    credit_note: CreditNote
    amount_due: int  # the invoice's amount due after the void
    balance_transaction: CustomerBalanceTransaction | None  # reverses the note's credit_amount


def void_credit_note(note: CreditNote, invoice: Invoice, now: datetime) -> VoidOutcome:
    """Void an issued note: a pre-payment note gives back the amount due (while the invoice is still
    unpaid); a post-payment note's balance credit is reversed. A note that refunded money cannot be
    voided (the refund cannot be taken back). Voiding a void note changes nothing."""
    if note.invoice != invoice.id:
        raise InvalidInput(f"credit note {note.id} belongs to invoice {note.invoice}", param="invoice")
    if note.status is CreditNoteStatus.VOID:
        return VoidOutcome(note, invoice.amount_due, None)
    if note.refund_amount:
        raise IllegalTransition(f"credit note {note.id} refunded {note.refund_amount}; a refund cannot be voided")
    amount_due = invoice.amount_due
    if note.type is CreditNoteType.PRE_PAYMENT:
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise IllegalTransition(
                f"invoice {invoice.id} is {invoice.status.value}: the pre-payment credit note can no longer be voided"
            )
        amount_due += note.total
    entry = None
    if note.credit_amount:
        entry = CustomerBalanceTransaction(
            id=derived_id("cbtxn", note.id, "void"),
            customer=note.customer,
            amount=note.credit_amount,
            currency=note.currency,
            type=BalanceTransactionType.CREDIT_NOTE,
            invoice=note.invoice,
            credit_note=note.id,
            description=f"Credit note {note.number} voided",
            created=now,
        )
    voided = note.model_copy(update={"status": CreditNoteStatus.VOID, "voided_at": now})
    return VoidOutcome(voided, amount_due, entry)
