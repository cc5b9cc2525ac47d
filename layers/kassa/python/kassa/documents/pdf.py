"""Render an invoice or credit note (``kassa.domain.documents.Document``) as an A4 PDF with fpdf2.

The layout follows what customers know from Stripe's invoices: the merchant's logo (or name, in the
brand colour) and the document's title; number, dates and service period; the seller and the buyer
with their VAT numbers; one row per line (period, quantity, unit price, VAT rate, amount; a tiered
line's breakdown, its discount and a proration mark beneath it); subtotal, VAT per rate, total,
balance applied, paid and due; the legal mention of each VAT group; the payment status.

Every word comes from ``translations/<language>.json`` (en, nl, de, fr, es, it, pl, sv); money and
dates are formatted by babel for the document's locale through the helpers of
:mod:`kassa.emails.render`, so a PDF says ``€ 127,05`` exactly where the Dutch email does. Text is
set in DejaVu Sans (``fonts/``, Bitstream Vera licence), which covers every letter of those
languages (Polish ł, ś, ż …); fpdf2 embeds only the glyphs used.

fpdf2 (with fontTools and Pillow) takes ~220 ms to import: it is imported in :func:`render_pdf`,
never at module level, so functions that do not render pay nothing for it. No I/O beyond the
package's own files: the logo is given as bytes, never fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from importlib.resources import as_file, files
from io import BytesIO
from typing import TYPE_CHECKING, Any, Protocol

from babel import Locale, UnknownLocaleError
from babel.numbers import format_percent

from kassa import i18n

if TYPE_CHECKING:
    from fpdf import FPDF

    from kassa.domain.documents import Document

_PACKAGE = "kassa.documents"
DEFAULT_LANGUAGE = "en"
#: bump when the layout changes: stored documents are keyed on it (kassa.services.documents)
LAYOUT_VERSION = "1"

FONT = "DejaVu"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}

# A4 portrait, in mm
PAGE_W = 210.0
MARGIN = 18.0
CONTENT_W = PAGE_W - 2 * MARGIN
INK = (33, 37, 41)
MUTED = (107, 114, 128)
RULE = (222, 226, 230)
PAID = (22, 128, 61)
VOID = (185, 28, 28)


# ---------------------------------------------------------------------------------- words
def available_languages() -> frozenset[str]:
    return i18n.languages(_PACKAGE, "translations")


def translations(language: str) -> Mapping[str, str]:
    return i18n.strings(_PACKAGE, "translations", language)


def document_locale(locale: str | None) -> tuple[str, str]:
    """(language of the words, babel locale): ``nl-BE`` → (nl, nl_BE); a language without
    translations, or an invalid locale, → English for words, money and dates together."""
    raw = (locale or "").strip().replace("-", "_")
    try:
        parsed = Locale.parse(raw) if raw else None
    except (UnknownLocaleError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.language not in available_languages():
        return DEFAULT_LANGUAGE, DEFAULT_LANGUAGE
    return parsed.language, str(parsed)


class _Words:
    """The document's words and formats in one locale."""

    def __init__(self, locale: str | None, currency: str) -> None:
        self.language, self.locale = document_locale(locale)
        self.currency = currency

    def t(self, key: str, **values: Any) -> str:
        text = translations(self.language).get(key) or translations(DEFAULT_LANGUAGE)[key]
        return text.format_map(values)

    def money(self, amount: int) -> str:
        from kassa.emails.render import format_money

        return format_money(int(amount), self.currency, self.locale)

    def day(self, value: date | datetime | None, fmt: str = "long") -> str:
        from kassa.emails.render import format_day

        return format_day(value, self.locale, fmt) if value is not None else ""

    def period(self, start: date | datetime | None, end: date | datetime | None, fmt: str = "medium") -> str:
        if start is None or end is None:
            return ""
        return self.t("period", start=self.day(start, fmt), end=self.day(end, fmt))

    def rate(self, rate: Any) -> str:
        """A VAT rate ("21", "14.975", Decimal) as the locale writes a percentage: 21%, 21 %, 21 %."""
        try:
            value = Decimal(str(rate))
        except (InvalidOperation, ValueError):
            return str(rate)
        return str(format_percent(value / 100, locale=self.locale, decimal_quantization=False))

    def country(self, code: str) -> str:
        return str(Locale.parse(self.locale).territories.get(code.upper(), code.upper()))

    def number(self, value: int) -> str:
        from babel.numbers import format_decimal

        return str(format_decimal(value, locale=self.locale))


# ---------------------------------------------------------------------------------- helpers
def _value(obj: Any, name: str, default: Any = None) -> Any:
    value = getattr(obj, name, default)
    return default if value is None else value


def _text(value: Any) -> str:
    """An enum's value or a plain string."""
    return str(getattr(value, "value", value)) if value is not None else ""


def _rgb(colour: str) -> tuple[int, int, int]:
    hexa = colour.lstrip("#")
    if len(hexa) == 3:
        hexa = "".join(c * 2 for c in hexa)
    if len(hexa) != 6:
        raise ValueError("brand_colour must be a hex colour like #1f6feb")
    return int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16)


def _address_lines(party: Any, words: _Words) -> list[str]:
    address = _value(party, "address")
    if address is None:
        return []
    lines = [_value(address, "line1", ""), _value(address, "line2", "")]
    city = " ".join(p for p in (_value(address, "postal_code", ""), _value(address, "city", "")) if p)
    state = _value(address, "state", "")
    lines.append(", ".join(p for p in (city, state) if p))
    country = _value(address, "country", "")
    if country:
        lines.append(words.country(country))
    return [line for line in lines if line]


def _party_lines(party: Any, words: _Words, *, seller: bool) -> list[tuple[str, bool]]:
    """(text, bold) rows of one party's block."""
    rows: list[tuple[str, bool]] = [(str(_value(party, "name", "")), True)]
    rows += [(line, False) for line in _address_lines(party, words)]
    if _value(party, "tax_id"):
        rows.append((words.t("field", label=words.t("vat_number"), value=party.tax_id), False))
    if seller and _value(party, "registration"):
        rows.append((words.t("field", label=words.t("registration"), value=party.registration), False))
    if _value(party, "email"):
        rows.append((str(party.email), False))
    if seller and _value(party, "iban"):
        bic = " · " + words.t("field", label=words.t("bic"), value=party.bic) if _value(party, "bic") else ""
        rows.append((words.t("field", label=words.t("iban"), value=party.iban) + bic, False))
    return rows


def _tier_text(tier: Mapping[str, Any], previous_up_to: int | None, words: _Words) -> str:
    first = (previous_up_to or 0) + 1
    up_to = tier.get("up_to")
    span = (
        words.t("tier_from", first=words.number(first))
        if up_to is None
        else words.t("tier_range", first=words.number(first), last=words.number(int(up_to)))
    )
    return words.t("tier", tier=tier.get("tier", ""), range=span)


# ---------------------------------------------------------------------------------- the renderer
class _Footed(Protocol):
    footer_left: str
    footer_right: str


def _fpdf_class() -> type[FPDF]:
    from fpdf import FPDF

    class _Page(FPDF):  # type: ignore[misc]
        footer_left = ""
        footer_right = ""

        def footer(self) -> None:
            self.set_y(-14)
            self.set_draw_color(*RULE)
            self.line(MARGIN, self.get_y() - 2, PAGE_W - MARGIN, self.get_y() - 2)
            self.set_font(FONT, "", 7.5)
            self.set_text_color(*MUTED)
            self.cell(CONTENT_W * 0.7, 4, self.footer_left)
            self.cell(CONTENT_W * 0.3, 4, self.footer_right.replace("%PAGE%", str(self.page_no())), align="R")

    return _Page


def _load_fonts(pdf: FPDF) -> None:
    for style, name in _FONT_FILES.items():
        with as_file(files(_PACKAGE) / "fonts" / name) as path:
            pdf.add_font(FONT, style, str(path))


class _Renderer:
    def __init__(self, doc: Document, brand: tuple[int, int, int], logo: bytes | None, paid_on: date | None) -> None:
        self.doc = doc
        self.brand = brand
        self.logo = logo
        self.paid_on = paid_on
        self.words = _Words(_value(doc, "locale"), str(doc.currency))
        self.credit = _text(_value(doc, "kind", "invoice")) == "credit_note"
        self.pdf = _fpdf_class()(orientation="P", unit="mm", format="A4")

    # -- primitives
    def font(self, size: float, bold: bool = False, colour: tuple[int, int, int] = INK) -> None:
        self.pdf.set_font(FONT, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)

    def rule(self, y: float | None = None, colour: tuple[int, int, int] = RULE, width: float = 0.2) -> None:
        y = self.pdf.get_y() if y is None else y
        self.pdf.set_draw_color(*colour)
        self.pdf.set_line_width(width)
        self.pdf.line(MARGIN, y, PAGE_W - MARGIN, y)

    def text_at(self, x: float, y: float, w: float, text: str, *, align: str = "L", h: float = 4.6) -> None:
        self.pdf.set_xy(x, y)
        self.pdf.cell(w, h, text, align=align)

    # -- document
    def render(self) -> bytes:
        pdf = self.pdf
        _load_fonts(pdf)
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(auto=True, margin=22)
        title = self.words.t("credit_note" if self.credit else "invoice")
        seller = self.doc.seller
        pdf.set_title(f"{title} {self.doc.number}")
        pdf.set_author(str(_value(seller, "name", "")))
        pdf.set_creator("kassa")
        pdf.set_lang(self.words.locale.replace("_", "-"))
        issued = _value(self.doc, "issue_date")
        if isinstance(issued, date):
            from datetime import UTC, time

            moment = issued if isinstance(issued, datetime) else datetime.combine(issued, time(12), tzinfo=UTC)
            pdf.set_creation_date(moment)  # the same document renders to the same bytes
        footed: _Footed = pdf  # type: ignore[assignment]  # the _Page subclass
        footed.footer_left = " · ".join(p for p in (str(_value(seller, "name", "")), str(self.doc.number)) if p)
        footed.footer_right = self.words.t("page", page="%PAGE%", pages="{nb}")
        pdf.alias_nb_pages("{nb}")
        pdf.add_page()
        self._band()
        self._header(title)
        self._meta()
        self._parties()
        self._headline()
        self._lines()
        self._totals()
        self._mentions()
        self._footnotes()
        return bytes(pdf.output())

    def _band(self) -> None:
        self.pdf.set_fill_color(*self.brand)
        self.pdf.rect(0, 0, PAGE_W, 3.2, style="F")

    def _header(self, title: str) -> None:
        pdf = self.pdf
        top = MARGIN
        drawn = False
        if self.logo:
            try:
                pdf.image(BytesIO(self.logo), x=MARGIN, y=top, h=13, keep_aspect_ratio=True)
                drawn = True
            except Exception:  # noqa: BLE001 - an unreadable logo falls back to the name
                drawn = False
        if not drawn:
            self.font(17, bold=True, colour=self.brand)
            pdf.set_xy(MARGIN, top + 1)
            pdf.cell(CONTENT_W * 0.6, 9, str(_value(self.doc.seller, "name", "")))
        self.font(22, bold=True)
        pdf.set_xy(MARGIN + CONTENT_W * 0.5, top)
        pdf.cell(CONTENT_W * 0.5, 11, title, align="R")
        pdf.set_y(top + 19)

    def _meta(self) -> None:
        w = self.words
        doc = self.doc
        rows = [(w.t("credit_note_number" if self.credit else "invoice_number"), str(doc.number))]
        if self.credit and _value(doc, "invoice_reference"):
            reference = str(doc.invoice_reference)
            if _value(doc, "invoice_reference_date"):
                reference = w.t("credits_invoice_of", number=reference, date=w.day(doc.invoice_reference_date))
            rows.append((w.t("credits_invoice"), reference))
        rows.append((w.t("issue_date"), w.day(_value(doc, "issue_date"))))
        if not self.credit and self._due() is not None:
            rows.append((w.t("due_date"), w.day(self._due())))
        period = w.period(_value(doc, "period_start"), _value(doc, "period_end"), "long")
        if period:
            rows.append((w.t("service_period"), period))
        y = self.pdf.get_y()
        for label, value in rows:
            self.font(8.5, colour=MUTED)
            self.text_at(MARGIN, y, 42, label)
            self.font(8.5, bold=True)
            self.text_at(MARGIN + 42, y, CONTENT_W - 42, value)
            y += 4.8
        self.pdf.set_y(y + 5)

    def _parties(self) -> None:
        w = self.words
        col = CONTENT_W / 2
        top = self.pdf.get_y()
        bottoms = []
        blocks = (
            (w.t("seller"), self.doc.seller, True),
            (w.t("credit_buyer" if self.credit else "buyer"), self.doc.buyer, False),
        )
        for index, (label, party, seller) in enumerate(blocks):
            x = MARGIN + index * col
            y = top
            self.font(7.5, bold=True, colour=MUTED)
            self.text_at(x, y, col - 4, label.upper())
            y += 5.2
            for text, bold in _party_lines(party, w, seller=seller):
                self.font(9 if bold else 8.5, bold=bold)
                self.pdf.set_xy(x, y)
                self.pdf.multi_cell(col - 6, 4.4, text, align="L")
                y = self.pdf.get_y()
            bottoms.append(y)
        self.pdf.set_y(max(bottoms) + 7)

    def _due(self) -> date | None:
        """The due date: the document's, else its issue date (kassa charges the card on issue)."""
        return _value(self.doc, "due_date") or _value(self.doc, "issue_date")

    def _status(self) -> tuple[str, tuple[int, int, int]]:
        """The status stamp: Paid, Due, Void, Uncollectible (an invoice), Issued or Void (a credit note)."""
        w = self.words
        status = _text(_value(self.doc, "status", ""))
        if status == "paid":
            return w.t("status_paid_nodate"), PAID
        if status == "void":
            return w.t("status_void"), VOID
        if status == "uncollectible":
            return w.t("status_uncollectible"), VOID
        if self.credit:
            return w.t("status_issued"), MUTED
        return w.t("status_open"), self.brand

    def _headline(self) -> None:
        """The amount in large type, with what happened to it: "€147.58 due March 1, 2026",
        "€147.58 paid on March 2, 2026", "€24.19 credited"; the status stamp on the right."""
        w = self.words
        doc = self.doc
        status = _text(_value(doc, "status", ""))
        due = self._due()
        if self.credit:
            text = w.t("headline_credit", amount=w.money(doc.total))
        elif status == "paid" and self.paid_on:
            text = w.t("headline_paid", amount=w.money(doc.amount_paid or doc.total), date=w.day(self.paid_on))
        elif status in ("open", "uncollectible") and due is not None and doc.amount_due > 0:
            text = w.t("headline_due", amount=w.money(doc.amount_due), date=w.day(due))
        else:
            text = w.money(doc.amount_paid if status == "paid" else doc.total)
        y = self.pdf.get_y()
        label, colour = self._status()
        self.font(9, bold=True, colour=colour)
        stamp = self.pdf.get_string_width(label) + 6
        size = 15.0
        self.font(size, bold=True)
        while size > 10 and self.pdf.get_string_width(text) > CONTENT_W - stamp - 6:
            size -= 0.5
            self.font(size, bold=True)
        self.text_at(MARGIN, y, CONTENT_W - stamp - 4, text, h=8)
        self.font(9, bold=True, colour=colour)
        self.pdf.set_draw_color(*colour)
        self.pdf.set_line_width(0.35)
        self.pdf.set_xy(PAGE_W - MARGIN - stamp, y + 1)
        self.pdf.cell(stamp, 6, label, border=1, align="C")
        self.pdf.set_y(y + 14)

    # -- the table
    COLS = (("col_description", 80.0, "L"), ("col_quantity", 16.0, "R"), ("col_unit_price", 28.0, "R"),
            ("col_vat", 16.0, "R"), ("col_amount", CONTENT_W - 140.0, "R"))  # fmt: skip

    def _columns(self) -> list[tuple[float, float, str]]:
        x = MARGIN
        out = []
        for _, width, align in self.COLS:
            out.append((x, width, align))
            x += width
        return out

    def _table_head(self) -> None:
        y = self.pdf.get_y()
        self.font(7.5, bold=True, colour=MUTED)
        for (x, width, align), (key, _, _) in zip(self._columns(), self.COLS, strict=True):
            self.text_at(x, y, width, self.words.t(key).upper(), align=align)
        self.rule(y + 5.6, colour=INK, width=0.3)
        self.pdf.set_y(y + 7.4)

    def _lines(self) -> None:
        self._table_head()
        for line in _value(self.doc, "lines", ()):
            self._line(line)

    def _line(self, line: Any) -> None:
        w = self.words
        pdf = self.pdf
        cols = self._columns()
        if pdf.get_y() > 250:
            pdf.add_page()
            pdf.set_y(MARGIN + 4)
            self._table_head()
        y = pdf.get_y()
        quantity = _value(line, "quantity")
        unit = _value(line, "unit_amount")
        rate = _value(line, "tax_rate")
        amount = _value(line, "net_amount", 0)
        discount = _value(line, "discount_amount", 0)
        # description (wrapped), then the numbers on its first row
        self.font(9)
        pdf.set_xy(cols[0][0], y)
        pdf.multi_cell(cols[0][1] - 3, 4.5, str(_value(line, "description", "")), align="L")
        after = pdf.get_y()
        self.font(9)
        self.text_at(cols[1][0], y, cols[1][1], w.number(int(quantity)) if quantity is not None else "", align="R")
        self.text_at(cols[2][0], y, cols[2][1], w.money(unit) if unit is not None else "", align="R")
        self.text_at(cols[3][0], y, cols[3][1], w.rate(rate) if rate is not None else "", align="R")
        self.text_at(cols[4][0], y, cols[4][1], w.money(amount + discount), align="R")
        y = after
        sub: list[str] = []
        period = w.period(_value(line, "period_start"), _value(line, "period_end"))
        if period:
            sub.append(period)
        if _value(line, "proration", False):
            sub.append(w.t("prorated"))
        if sub:
            self.font(7.5, colour=MUTED)
            self.text_at(cols[0][0], y, cols[0][1] + cols[1][1], " · ".join(sub), h=4)
            y += 4
        previous: int | None = None
        for raw in _value(line, "tiers", ()) or ():
            tier: Mapping[str, Any] = raw if isinstance(raw, Mapping) else raw.model_dump()
            self.font(7.5, colour=MUTED)
            self.text_at(cols[0][0] + 4, y, cols[0][1] - 4, _tier_text(tier, previous, w), h=4)
            count = w.number(int(tier.get("quantity", 0)))
            unit_text = w.money(int(tier.get("unit_amount", 0)))
            if tier.get("flat_amount"):  # "3 × €10.00 + €5.00 flat fee" across the quantity and unit columns
                unit_text = f"{count} × {unit_text} + {w.money(int(tier['flat_amount']))} {w.t('tier_flat')}"
                self.text_at(cols[1][0] - 10, y, cols[1][1] + cols[2][1] + 10, unit_text, align="R", h=4)
            else:
                self.text_at(cols[1][0], y, cols[1][1], count, align="R", h=4)
                self.text_at(cols[2][0], y, cols[2][1], unit_text, align="R", h=4)
            self.text_at(cols[4][0], y, cols[4][1], w.money(int(tier.get("amount", 0))), align="R", h=4)
            previous = tier.get("up_to")
            y += 4
        if discount:
            self.font(7.5, colour=MUTED)
            self.text_at(cols[0][0] + 4, y, cols[0][1], w.t("discount"), h=4)
            self.text_at(cols[4][0], y, cols[4][1], w.money(-int(discount)), align="R", h=4)
            y += 4
        y += 2
        self.rule(y)
        pdf.set_y(y + 2.4)

    # -- totals
    def _totals(self) -> None:
        w = self.words
        doc = self.doc
        rows: list[tuple[str, str, bool]] = [(w.t("subtotal"), w.money(doc.subtotal), False)]
        if _value(doc, "allowance_total", 0):
            rows.append((w.t("allowance_total"), w.money(-int(doc.allowance_total)), False))
        for group in _value(doc, "vat_groups", ()):
            rate = w.rate(_value(group, "rate", 0))
            label = w.t("vat_line", rate=rate, base=w.money(_value(group, "taxable_amount", 0)))
            rows.append((label, w.money(_value(group, "tax_amount", 0)), False))
        rows.append((w.t("total_credited" if self.credit else "total"), w.money(doc.total), True))
        if self.credit:
            for key in ("refund_amount", "credit_amount", "out_of_band_amount"):
                if _value(doc, key, 0):
                    rows.append((w.t(key), w.money(getattr(doc, key)), False))
        else:
            if _value(doc, "credit_applied", 0):
                rows.append((w.t("credit_applied"), w.money(-abs(int(doc.credit_applied))), False))
            rows.append((w.t("amount_paid"), w.money(_value(doc, "amount_paid", 0)), False))
            rows.append((w.t("amount_due"), w.money(_value(doc, "amount_due", 0)), True))
        needed = 6.2 * len(rows) + 4
        if self.pdf.get_y() + needed > 272:
            self.pdf.add_page()
        x = MARGIN + CONTENT_W * 0.42
        width = CONTENT_W - CONTENT_W * 0.42
        y = self.pdf.get_y() + 1.5
        for label, value, bold in rows:
            if bold:
                self.pdf.set_draw_color(*RULE)
                self.pdf.set_line_width(0.2)
                self.pdf.line(x, y - 0.6, PAGE_W - MARGIN, y - 0.6)
            self.font(9, bold=bold)
            self.text_at(x, y + 0.4, width * 0.66, label)
            self.text_at(x + width * 0.66, y + 0.4, width * 0.34, value, align="R")
            y += 6.2
        self.pdf.set_y(y + 4)

    def _mentions(self) -> None:
        """The legal mention of each VAT group (and each mention key in ``notes``), translated."""
        keys = [_text(_value(group, "mention")) for group in _value(self.doc, "vat_groups", ())]
        keys += [_text(key) for key in _value(self.doc, "notes", ())]
        known = translations(DEFAULT_LANGUAGE)
        texts = [self.words.t(f"mention.{key}") for key in dict.fromkeys(keys) if f"mention.{key}" in known]
        self._paragraphs(texts, size=8, colour=INK)

    def _footnotes(self) -> None:
        w = self.words
        doc = self.doc
        texts: list[str] = []
        status = _text(_value(doc, "status", ""))
        iban = _value(doc.seller, "iban")
        if not self.credit and status in ("open", "uncollectible") and iban and _value(doc, "amount_due", 0) > 0:
            texts.append(w.t("pay_by_transfer", iban=iban, number=doc.number))
        reason = _text(_value(doc, "reason"))
        if self.credit and reason and f"reason.{reason}" in translations(DEFAULT_LANGUAGE):
            texts.append(w.t("reason", reason=w.t(f"reason.{reason}")))
        if _value(doc, "memo"):
            texts.append(str(doc.memo))
        self._paragraphs(texts, size=8, colour=MUTED)

    def _paragraphs(self, texts: list[str], *, size: float, colour: tuple[int, int, int]) -> None:
        for text in texts:
            self.font(size, colour=colour)
            self.pdf.set_x(MARGIN)
            self.pdf.multi_cell(CONTENT_W, 4.2, text, align="L")
            self.pdf.ln(1.2)


def render_pdf(doc: Document, *, brand_colour: str, logo: bytes | None = None, paid_on: date | None = None) -> bytes:
    """The document as PDF bytes: A4, in the document's language (``doc.locale``; English when kassa
    has no words for it), the merchant's ``brand_colour`` (a hex colour) and ``logo`` (PNG or JPEG
    bytes; None, or an unreadable image: the merchant's name in the brand colour). ``paid_on``: the
    day a paid invoice was paid ("Paid on …"; the Document does not carry it)."""
    return _Renderer(doc, _rgb(brand_colour), logo, paid_on).render()
