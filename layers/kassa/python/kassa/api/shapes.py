"""The API's JSON shapes of results that are not stored documents (kept out of the services)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kassa.domain.dunning import DunningFigures

RATE = Decimal("0.0001")  # recovery rates are shown to four places (the exact fraction is given too)


def figures_json(figures: DunningFigures) -> dict[str, Any]:
    """The API's shape: rates as decimal strings (exact fractions are kept as numerator/denominator)."""

    def rate(r: Any) -> dict[str, Any]:
        value = r.rate
        return {
            "recovered": r.recovered,
            "lost": r.lost,
            "pending": r.pending,
            "rate": None if value is None else str((Decimal(value.numerator) / value.denominator).quantize(RATE)),
            "rate_fraction": None if value is None else [value.numerator, value.denominator],
        }

    return {
        "object": "dunning_figures",
        "invoices": figures.invoices,
        "recovered": figures.recovered,
        "lost": figures.lost,
        "pending": figures.pending,
        "amount_recovered": figures.amount_recovered,
        "amount_lost": figures.amount_lost,
        "amount_pending": figures.amount_pending,
        "recovery_rate": rate(figures.overall),
        "by_decline_code": {code: rate(r) for code, r in figures.by_decline_code.items()},
        "by_decline_class": {cls.value: rate(r) for cls, r in figures.by_decline_class.items()},
        "attempts_to_recover": {str(k): v for k, v in figures.attempts_to_recover.items()},
    }
