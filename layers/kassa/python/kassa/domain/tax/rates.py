"""Effective-dated tax rates, read from ``data/rates.csv`` (package data, shipped with the layer).

One row per (jurisdiction, tax type, category) and period::

    jurisdiction,tax_type,category,rate,taxable_share,valid_from,valid_to,source,note
    FI,VAT,saas,24,1,2015-01-01,2024-08-31,"European Commission, TEDB, https://…",since 2013-01-01
    FI,VAT,saas,25.5,1,2024-09-01,,"Finnish Tax Administration (Vero), …",

- ``rate`` is a percentage written as a plain decimal ("25.5", "9.975"); it is parsed into an exact
  ``Fraction`` (never a float): "25.5" → 255/1000.
- ``taxable_share`` is the part of the price the rate applies to ("1"; Texas taxes 80% of a data
  processing charge: "0.8"; "0" means the category is not taxable there).
- ``valid_from`` and ``valid_to`` are inclusive dates; an empty ``valid_to`` means "until further
  notice". The rows of one (jurisdiction, tax type, category) must follow each other without gap or
  overlap; a date before the first row of a jurisdiction is refused rather than guessed.
- ``source`` cites where the rate comes from (official page or the European Commission's Taxes in
  Europe Database); ``note`` says what was simplified ("VERIFY: …" marks rows to confirm).

Reading the packaged file is the only I/O here, done once and cached; every lookup is pure. Tests and
what-if simulations can build a ``RateTable`` from their own CSV text with ``load_rates``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from importlib import resources

from kassa.domain.errors import InvalidInput

RATES_FILE = "rates.csv"
COLUMNS = ("jurisdiction", "tax_type", "category", "rate", "taxable_share", "valid_from", "valid_to", "source", "note")
_DECIMAL = re.compile(r"\d+(\.\d+)?")
_JURISDICTION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")


def parse_decimal(text: str, *, param: str = "rate") -> Fraction:
    """An exact fraction from a plain decimal string ("25.5" → 51/2). Floats never get here."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text.strip()):
        raise InvalidInput(f"{param} must be a plain decimal string like '25.5', got {text!r}", param=param)
    return Fraction(text.strip())


def parse_percent(text: str) -> Fraction:
    """A percentage string as an exact fraction of one: "25.5" → Fraction(255, 1000)."""
    return parse_decimal(text) / 100


def format_decimal(value: Fraction) -> str:
    """The exact decimal rendering of a terminating fraction (no trailing zeros): 51/2 → "25.5"."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        raise ValueError(f"{value} has no finite decimal expansion")
    places = max(twos, fives)
    scaled = value * 10**places
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled.numerator), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}".rstrip("0").rstrip(".")


def format_percent(rate: Fraction) -> str:
    """A rate (fraction of one) as a percentage string: Fraction(255, 1000) → "25.5"."""
    return format_decimal(rate * 100)


@dataclass(frozen=True, slots=True)
class RateRow:
    jurisdiction: str  # "FI", "PT-20", "CA-QC", "US-WA"
    tax_type: str  # VAT, GST, HST, QST, PST, RST, IGST, consumption_tax, sales_tax
    category: str  # the tax category the row applies to ("saas": electronically supplied services)
    rate: Fraction  # fraction of one: 25.5% → 255/1000
    taxable_share: Fraction  # part of the price the rate applies to (1; Texas 4/5; 0 = not taxable)
    valid_from: date
    valid_to: date | None  # inclusive; None = open
    source: str
    note: str = ""

    @property
    def percent(self) -> str:
        return format_percent(self.rate)

    @property
    def taxable(self) -> bool:
        return self.taxable_share > 0

    def covers(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


class RateTable:
    """The rate rows, indexed for lookups at a date. Validates the rows on construction."""

    def __init__(self, rows: Iterable[RateRow]) -> None:
        grouped: dict[tuple[str, str, str], list[RateRow]] = defaultdict(list)
        for row in rows:
            grouped[(row.jurisdiction, row.tax_type, row.category)].append(row)
        self._series: dict[tuple[str, str, str], tuple[RateRow, ...]] = {}
        for key, series in grouped.items():
            ordered = tuple(sorted(series, key=lambda r: r.valid_from))
            _check_series(key, ordered)
            self._series[key] = ordered
        by_place: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
        for key in self._series:
            by_place[(key[0], key[2])].append(key)
        self._by_place = {place: tuple(sorted(keys)) for place, keys in by_place.items()}

    @property
    def rows(self) -> tuple[RateRow, ...]:
        return tuple(row for key in sorted(self._series) for row in self._series[key])

    @property
    def jurisdictions(self) -> frozenset[str]:
        return frozenset(key[0] for key in self._series)

    def has(self, jurisdiction: str, category: str = "saas") -> bool:
        return (jurisdiction, category) in self._by_place

    def series(self, jurisdiction: str, tax_type: str, category: str = "saas") -> tuple[RateRow, ...]:
        return self._series.get((jurisdiction, tax_type, category), ())

    def rows_at(self, jurisdiction: str, on: date, category: str = "saas") -> tuple[RateRow, ...]:
        """The rows of every tax type of ``jurisdiction`` in force on ``on`` (empty if kassa has no
        data for the jurisdiction at all). A known jurisdiction without a row for that date is an
        error: the date lies before the data starts, and kassa does not guess."""
        found: list[RateRow] = []
        for key in self._by_place.get((jurisdiction, category), ()):
            row = next((r for r in self._series[key] if r.covers(on)), None)
            if row is None:
                first = self._series[key][0].valid_from
                raise InvalidInput(
                    f"no {key[1]} rate for {jurisdiction} on {on.isoformat()}: the rate data starts on "
                    f"{first.isoformat()}",
                    param="tax_date",
                )
            found.append(row)
        return tuple(found)

    def change_dates(self) -> tuple[tuple[str, str, date], ...]:
        """(jurisdiction, tax type, date) of every rate change (a row following another)."""
        return tuple((key[0], key[1], row.valid_from) for key in sorted(self._series) for row in self._series[key][1:])


def _check_series(key: tuple[str, str, str], series: Sequence[RateRow]) -> None:
    name = "/".join(key)
    for row in series:
        if row.valid_to is not None and row.valid_to < row.valid_from:
            raise InvalidInput(f"{name}: valid_to {row.valid_to} is before valid_from {row.valid_from}")
    for before, after in zip(series, series[1:], strict=False):
        if before.valid_to is None:
            raise InvalidInput(f"{name}: the row from {before.valid_from} is open-ended but another follows it")
        if after.valid_from != before.valid_to + timedelta(days=1):
            raise InvalidInput(
                f"{name}: the row from {after.valid_from} does not start the day after {before.valid_to} "
                "(gap or overlap)"
            )


def _date(text: str, column: str, line: int) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"rates line {line}: {column} {text!r} is not an ISO date", param=column) from None


def load_rates(text: str) -> RateTable:
    """A rate table from CSV text (the packaged file, or a test's own)."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise InvalidInput(f"rates CSV columns must be {', '.join(COLUMNS)}")
    rows = []
    for line, record in enumerate(reader, start=2):
        jurisdiction = record["jurisdiction"].strip()
        if not _JURISDICTION.fullmatch(jurisdiction):
            raise InvalidInput(f"rates line {line}: bad jurisdiction {jurisdiction!r}", param="jurisdiction")
        source = record["source"].strip()
        if not source:
            raise InvalidInput(f"rates line {line}: every rate needs its source", param="source")
        share = parse_decimal(record["taxable_share"] or "1", param="taxable_share")
        if share > 1:
            raise InvalidInput(f"rates line {line}: taxable_share above 1", param="taxable_share")
        valid_to = record["valid_to"].strip()
        rows.append(
            RateRow(
                jurisdiction=jurisdiction,
                tax_type=record["tax_type"].strip(),
                category=record["category"].strip(),
                rate=parse_percent(record["rate"]),
                taxable_share=share,
                valid_from=_date(record["valid_from"].strip(), "valid_from", line),
                valid_to=_date(valid_to, "valid_to", line) if valid_to else None,
                source=source,
                note=record["note"].strip(),
            )
        )
    return RateTable(rows)


@lru_cache(maxsize=1)
def default_rates() -> RateTable:
    """The packaged rate table (``kassa/domain/tax/data/rates.csv``), read once per process."""
    text = resources.files("kassa.domain.tax").joinpath("data").joinpath(RATES_FILE).read_text(encoding="utf-8")
    return load_rates(text)
