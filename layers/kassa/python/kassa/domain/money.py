"""Money: integer amounts in a currency's minor unit. No floats, no mixed currencies, explicit rounding.

Exponents follow ISO 4217 (EUR 2, JPY 0, KWD 3). Rounding of a fraction of a minor unit is always
explicit: ``ROUND_HALF_UP`` (away from zero on .5, the usual commercial rule and Stripe's for
proration and tax) unless another mode is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from kassa.domain.errors import CurrencyMismatch, InvalidInput

# ISO 4217 minor-unit exponents for the currencies kassa accepts (Stripe's settlement currencies
# plus the three-decimal ones). Zero-decimal list per Stripe's docs; three-decimal per ISO 4217.
_ZERO = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
    "ISK",
}
_THREE = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_TWO = {
    "AED",
    "AUD",
    "BGN",
    "BRL",
    "CAD",
    "CHF",
    "CNY",
    "CZK",
    "DKK",
    "EUR",
    "GBP",
    "HKD",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "MXN",
    "MYR",
    "NOK",
    "NZD",
    "PHP",
    "PLN",
    "RON",
    "SEK",
    "SGD",
    "THB",
    "TRY",
    "TWD",
    "USD",
    "ZAR",
}

EXPONENTS: dict[str, int] = {**{c: 0 for c in _ZERO}, **{c: 2 for c in _TWO}, **{c: 3 for c in _THREE}}

#: The largest amount kassa accepts in a request, in minor units: Stripe's limit of eight digits
#: (99,999,999: EUR 999,999.99, JPY 99,999,999). Bigger integers are refused, naming the field,
#: before any arithmetic is done with them.
MAX_AMOUNT = 99_999_999


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency.upper()]
    except KeyError:
        raise InvalidInput(f"unsupported currency {currency!r}", param="currency") from None


def normalize_currency(currency: str) -> str:
    code = currency.upper()
    exponent(code)
    return code


class Rounding(Enum):
    HALF_UP = "half_up"  # .5 away from zero
    HALF_EVEN = "half_even"  # banker's
    DOWN = "down"  # toward zero
    UP = "up"  # away from zero


def round_fraction(value: Fraction, mode: Rounding = Rounding.HALF_UP) -> int:
    """Round an exact fraction of minor units to an integer number of minor units."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    remainder = Fraction(rest, magnitude.denominator)
    if mode is Rounding.DOWN or remainder == 0:
        result = whole
    elif mode is Rounding.UP or remainder > Fraction(1, 2):
        result = whole + 1
    elif remainder < Fraction(1, 2):
        result = whole
    elif mode is Rounding.HALF_UP:
        result = whole + 1
    else:  # HALF_EVEN
        result = whole + (whole % 2)
    return sign * result


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidInput(
                f"money amounts are integers in minor units, got {type(self.amount).__name__}",
                param="amount",
            )
        code = normalize_currency(self.currency)
        if code != self.currency:
            object.__setattr__(self, "currency", code)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return exponent(self.currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def times(self, quantity: int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidInput("quantity must be an integer", param="quantity")
        return Money(self.amount * quantity, self.currency)

    def scaled(self, factor: Fraction, rounding: Rounding = Rounding.HALF_UP) -> Money:
        """This amount times an exact fraction, rounded explicitly to the minor unit."""
        if not isinstance(factor, Fraction | int):
            raise InvalidInput("scale factors are exact fractions, never floats", param="factor")
        return Money(round_fraction(Fraction(self.amount) * factor, rounding), self.currency)

    def allocate(self, ratios: list[int]) -> list[Money]:
        """Split without losing a minor unit (largest-remainder method): each part gets its
        floor share, and the units left over go to the parts with the largest remainders (ties:
        earlier parts first). A zero ratio never receives anything."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise InvalidInput("allocation ratios must be non-negative and not all zero")
        total = sum(ratios)
        sign = -1 if self.amount < 0 else 1
        magnitude = abs(self.amount)
        parts = [magnitude * r // total for r in ratios]
        remainders = [magnitude * r % total for r in ratios]
        left = magnitude - sum(parts)
        for i in sorted(range(len(ratios)), key=lambda k: (-remainders[k], k))[:left]:
            parts[i] += 1
        return [Money(sign * p, self.currency) for p in parts]

    def decimal(self) -> str:
        """The amount in major units as a plain decimal string, at the currency's exponent
        (``"12.00"``, ``"1200"`` for JPY, ``"1.250"`` for KWD): what bookkeeping imports read."""
        exp = self.exponent
        sign = "-" if self.amount < 0 else ""
        whole, frac = divmod(abs(self.amount), 10**exp) if exp else (abs(self.amount), 0)
        return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"

    def format(self) -> str:
        """Plain decimal rendering (locale formatting lives with the emails)."""
        return f"{self.decimal()} {self.currency}"

    def to_dict(self) -> dict[str, object]:
        return {"amount": self.amount, "currency": self.currency}
