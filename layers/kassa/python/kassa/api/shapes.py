"""The API's JSON shapes of results that are not stored documents (kept out of the services)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kassa.domain.dunning import DunningFigures
from kassa.domain.experiments import Experiment, VariantFigures

RATE = Decimal("0.0001")  # recovery rates are shown to four places (the exact fraction is given too)


def _decimal(value: Any) -> str | None:
    return None if value is None else str((Decimal(value.numerator) / value.denominator).quantize(RATE))


def experiment_json(experiment: Experiment, figures: list[VariantFigures]) -> dict[str, Any]:
    """The experiment with its figures per variant: rates as decimal strings (four places), the
    conversion p-value against the first variant as a number (null for the control or without data)."""
    by_variant = {f.variant.id: f for f in figures}
    variants = []
    for v in experiment.variants:
        f = by_variant[v.id]
        variants.append(
            {
                **v.model_dump(mode="json"),
                "checkouts_started": f.started,
                "checkouts_paid": f.converted,
                "conversion_rate": _decimal(f.conversion),
                "mrr": f.mrr,
                "churned": f.churned,
                "churn_rate": _decimal(f.churn),
                "p_value": None if f.p_value is None else round(f.p_value, 6),
            }
        )
    body = {"object": "experiment", **experiment.model_dump(mode="json", exclude={"version", "variants"})}
    return {**body, "variants": variants}


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
