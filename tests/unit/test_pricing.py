"""Pricing: per unit, package (transform_quantity), graduated and volume tiers, flat fees, validation.

Every expected amount is computed by hand in the comment next to it, in minor units:
EUR has 2 decimals (7.00 EUR = 700), JPY none (¥1000 = 1000), KWD 3 (1.500 KWD = 1500).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kassa.api.models import PriceIn
from kassa.domain.catalog import Price, Recurring
from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money
from kassa.domain.periods import Interval
from kassa.domain.pricing import (
    BillingScheme,
    Priced,
    PriceTerms,
    QuantityRound,
    Tier,
    TiersMode,
    TransformQuantity,
    param_from_loc,
    price_total,
)

CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def tiered(mode: str, tiers: list[dict[str, Any]]) -> PriceTerms:
    return PriceTerms.parse(billing_scheme="tiered", tiers_mode=mode, tiers=tiers)


def package(unit_amount: int, divide_by: int, round_: str) -> PriceTerms:
    return PriceTerms.parse(unit_amount=unit_amount, transform_quantity={"divide_by": divide_by, "round": round_})


def amount(terms: PriceTerms, quantity: int) -> int:
    return price_total(terms, quantity).amount


# Stripe's Typographic tiers, in EUR: 1–5 at 7.00, 6–10 at 6.50, 11+ at 6.00.
EUR_TIERS: list[dict[str, Any]] = [
    {"up_to": 5, "unit_amount": 700},
    {"up_to": 10, "unit_amount": 650},
    {"up_to": "inf", "unit_amount": 600},
]
# JPY, a flat fee on every tier: 1–3 ¥1000 + ¥500, 4–10 ¥800 + ¥300, 11+ ¥600 + ¥0.
JPY_TIERS: list[dict[str, Any]] = [
    {"up_to": 3, "unit_amount": 1000, "flat_amount": 500},
    {"up_to": 10, "unit_amount": 800, "flat_amount": 300},
    {"up_to": "inf", "unit_amount": 600, "flat_amount": 0},
]
# KWD, a flat-only first tier: 10 seats included for 15.000 KWD, then 1.500 KWD a seat.
KWD_INCLUDED: list[dict[str, Any]] = [
    {"up_to": 10, "flat_amount": 15000},
    {"up_to": "inf", "unit_amount": 1500},
]
# KWD, flat-only bands: 1–10 for 15.000, 11–50 for 45.000, 51+ at 0.750 each.
KWD_BANDS: list[dict[str, Any]] = [
    {"up_to": 10, "unit_amount": 0, "flat_amount": 15000},
    {"up_to": 50, "unit_amount": 0, "flat_amount": 45000},
    {"up_to": "inf", "unit_amount": 750},
]


# ------------------------------------------------------------------ per unit
@pytest.mark.parametrize(
    ("unit_amount", "quantity", "expected"),
    [
        (1500, 1, 1500),  # 15.00 EUR × 1
        (1500, 3, 4500),  # 15.00 EUR × 3 = 45.00
        (1000, 7, 7000),  # ¥1000 × 7
        (1500, 4, 6000),  # 1.500 KWD × 4 = 6.000
        (0, 9, 0),  # a free price
        (1500, 0, 0),  # nothing
    ],
)
def test_per_unit_is_unit_amount_times_quantity(unit_amount: int, quantity: int, expected: int) -> None:
    priced = price_total(PriceTerms.parse(unit_amount=unit_amount), quantity)
    assert priced == Priced(amount=expected, quantity=quantity, billed_quantity=quantity, tiers=())


# ------------------------------------------------------------------ package pricing (transform_quantity)
@pytest.mark.parametrize(
    ("quantity", "up", "down"),
    [
        # 5.00 EUR per package of 5 units: up = ceil(q / 5) packages, down = floor(q / 5) packages
        (1, 500, 0),  # up: 1 package × 500; down: 0 packages
        (4, 500, 0),  # one under a multiple: up 1 × 500; down 0
        (5, 500, 500),  # exact multiple: 1 package either way
        (6, 1000, 500),  # one over: up 2 × 500 = 1000; down 1 × 500
        (7, 1000, 500),  # the brief's example: up 2 packages (10.00), down 1 (5.00)
        (9, 1000, 500),  # one under 10: up 2, down 1
        (10, 1000, 1000),  # exact multiple: 2 packages
        (11, 1500, 1000),  # one over: up 3 × 500 = 1500; down 2 × 500 = 1000
        (0, 0, 0),  # nothing to bill
    ],
)
def test_package_pricing_in_eur_rounds_up_and_down(quantity: int, up: int, down: int) -> None:
    assert amount(package(500, 5, "up"), quantity) == up
    assert amount(package(500, 5, "down"), quantity) == down


@pytest.mark.parametrize(
    ("quantity", "billed", "expected"),
    [
        (1, 1, 1000),  # Stripe's 10 USD per 5 users, in JPY: ¥1000 per 5 users or portion thereof
        (3, 1, 1000),
        (5, 1, 1000),
        (6, 2, 2000),  # 6 users → 2 packages → ¥2000
        (7, 2, 2000),
    ],
)
def test_stripes_per_five_users_example_in_jpy(quantity: int, billed: int, expected: int) -> None:
    priced = price_total(package(1000, 5, "up"), quantity)
    assert (priced.quantity, priced.billed_quantity, priced.amount, priced.tiers) == (quantity, billed, expected, ())


def test_stripes_car_rental_minutes_to_hours_in_jpy() -> None:
    # ¥1000 per hour, usage in minutes: 150 minutes / 60 = 2.5 → up 3 hours (¥3000), down 2 hours (¥2000)
    assert price_total(package(1000, 60, "up"), 150).billed_quantity == 3
    assert amount(package(1000, 60, "up"), 150) == 3000
    assert amount(package(1000, 60, "down"), 150) == 2000


@pytest.mark.parametrize(
    ("quantity", "up", "down"),
    [
        # 2.500 KWD per dozen: up ceil(q / 12), down floor(q / 12)
        (23, 5000, 2500),  # one under 24: up 2 × 2500, down 1 × 2500
        (24, 5000, 5000),  # exact: 2 dozen = 5.000 KWD
        (25, 7500, 5000),  # one over: up 3 × 2500 = 7.500, down 2 × 2500 = 5.000
    ],
)
def test_package_pricing_in_kwd(quantity: int, up: int, down: int) -> None:
    assert amount(package(2500, 12, "up"), quantity) == up
    assert amount(package(2500, 12, "down"), quantity) == down


def test_divide_by_one_changes_nothing() -> None:
    assert price_total(package(700, 1, "up"), 13) == price_total(package(700, 1, "down"), 13)
    assert amount(package(700, 1, "up"), 13) == 9100  # 13 × 700


# ------------------------------------------------------------------ graduated
@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, 700),  # 1 × 700
        (5, 3500),  # exactly up_to of tier 1: 5 × 700
        (6, 4150),  # up_to + 1: 5 × 700 + 1 × 650 = 3500 + 650
        (10, 6750),  # exactly up_to of tier 2: 3500 + 5 × 650 = 3500 + 3250
        (11, 7350),  # into the last tier: 6750 + 1 × 600
        (20, 12750),  # Stripe's table: 3500 + 3250 + 10 × 600 = 12750 (127.50)
        (25, 15750),  # 3500 + 3250 + 15 × 600 = 15750 (157.50)
    ],
)
def test_graduated_in_eur_at_each_boundary(quantity: int, expected: int) -> None:
    assert amount(tiered("graduated", EUR_TIERS), quantity) == expected


def test_graduated_breakdown_shows_each_tier_with_units() -> None:
    priced = price_total(tiered("graduated", EUR_TIERS), 12)
    # 5 × 700 = 3500 | 5 × 650 = 3250 | 2 × 600 = 1200 → 7950
    assert priced.amount == 7950
    assert [(t.tier, t.up_to, t.quantity, t.unit_amount, t.flat_amount, t.amount) for t in priced.tiers] == [
        (1, 5, 5, 700, 0, 3500),
        (2, 10, 5, 650, 0, 3250),
        (3, None, 2, 600, 0, 1200),
    ]
    assert (priced.quantity, priced.billed_quantity) == (12, 12)


def test_graduated_breakdown_stops_at_the_tier_the_quantity_reaches() -> None:
    priced = price_total(tiered("graduated", EUR_TIERS), 5)
    assert [(t.tier, t.quantity, t.amount) for t in priced.tiers] == [(1, 5, 3500)]  # tier 2 has no unit, no line


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, 1500),  # 1 × 1000 + 500 flat
        (3, 3500),  # exactly up_to: 3 × 1000 + 500
        (4, 4600),  # up_to + 1: 3500 + (1 × 800 + 300)
        (10, 9400),  # 3500 + (7 × 800 + 300) = 3500 + 5900
        (11, 10000),  # 9400 + (1 × 600 + 0)
    ],
)
def test_graduated_with_a_flat_fee_per_tier_in_jpy(quantity: int, expected: int) -> None:
    assert amount(tiered("graduated", JPY_TIERS), quantity) == expected


def test_graduated_flat_fee_is_charged_once_per_tier_with_units() -> None:
    priced = price_total(tiered("graduated", JPY_TIERS), 4)
    # tier 1: 3 × 1000 + 500 = 3500; tier 2: 1 × 800 + 300 = 1100; tier 3 untouched: no flat fee
    assert [(t.tier, t.quantity, t.flat_amount, t.amount) for t in priced.tiers] == [
        (1, 3, 500, 3500),
        (2, 1, 300, 1100),
    ]
    assert priced.amount == 4600


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, 15000),  # 1 × 0 + 15.000 flat
        (10, 15000),  # exactly up_to: 10 × 0 + 15.000
        (11, 16500),  # up_to + 1: 15.000 + 1 × 1.500
        (20, 30000),  # 15.000 + 10 × 1.500 = 30.000 KWD
    ],
)
def test_graduated_included_units_for_a_flat_fee_in_kwd(quantity: int, expected: int) -> None:
    assert amount(tiered("graduated", KWD_INCLUDED), quantity) == expected


def test_graduated_quantity_zero_charges_nothing_not_even_flat_fees() -> None:
    priced = price_total(tiered("graduated", KWD_INCLUDED), 0)
    assert priced == Priced(amount=0, quantity=0, billed_quantity=0, tiers=())


# ------------------------------------------------------------------ volume
@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, 700),  # 1 × 700 (tier 1)
        (5, 3500),  # exactly up_to: 5 × 700
        (6, 3900),  # up_to + 1: all 6 at tier 2: 6 × 650 (Stripe: 39 USD)
        (10, 6500),  # 10 × 650
        (11, 6600),  # 11 × 600
        (20, 12000),  # Stripe's table: 20 × 600 = 120.00
        (25, 15000),  # 25 × 600 = 150.00
    ],
)
def test_volume_in_eur_at_each_boundary(quantity: int, expected: int) -> None:
    assert amount(tiered("volume", EUR_TIERS), quantity) == expected


@pytest.mark.parametrize(
    ("quantity", "expected", "tier"),
    [
        (1, 1500, 1),  # 1 × 1000 + 500
        (3, 3500, 1),  # exactly up_to: 3 × 1000 + 500
        (4, 3500, 2),  # up_to + 1: 4 × 800 + 300 = 3500
        (10, 8300, 2),  # 10 × 800 + 300
        (11, 6600, 3),  # 11 × 600 + 0: the total falls
    ],
)
def test_volume_with_flat_fees_in_jpy(quantity: int, expected: int, tier: int) -> None:
    priced = price_total(tiered("volume", JPY_TIERS), quantity)
    assert priced.amount == expected
    assert [(t.tier, t.quantity) for t in priced.tiers] == [(tier, quantity)]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1, 15000),  # band 1: 0 × 1 + 15.000
        (10, 15000),  # exactly up_to: 15.000
        (11, 45000),  # up_to + 1: band 2, 45.000
        (50, 45000),  # exactly up_to of band 2
        (51, 38250),  # band 3: 51 × 0.750 = 38.250 KWD
    ],
)
def test_volume_flat_only_bands_in_kwd(quantity: int, expected: int) -> None:
    assert amount(tiered("volume", KWD_BANDS), quantity) == expected


def test_volume_breakdown_is_the_single_tier() -> None:
    priced = price_total(tiered("volume", EUR_TIERS), 7)
    # all 7 units at tier 2: 7 × 650 = 4550
    assert [(t.tier, t.up_to, t.quantity, t.unit_amount, t.flat_amount, t.amount) for t in priced.tiers] == [
        (2, 10, 7, 650, 0, 4550)
    ]
    assert priced.amount == 4550


def test_volume_quantity_zero_charges_nothing() -> None:
    assert price_total(tiered("volume", JPY_TIERS), 0) == Priced(amount=0, quantity=0, billed_quantity=0)


@pytest.mark.parametrize("quantity", [-1, 1.0, True, "3"])
def test_quantity_must_be_a_non_negative_integer(quantity: Any) -> None:
    for terms in (PriceTerms.parse(unit_amount=100), tiered("graduated", EUR_TIERS)):
        with pytest.raises(InvalidInput) as error:
            price_total(terms, quantity)
        assert error.value.param == "quantity"


# ------------------------------------------------------------------ shapes and serialization
def test_inf_is_read_as_none_and_serialized_as_null() -> None:
    assert Tier(up_to="inf", unit_amount=600).up_to is None  # type: ignore[arg-type]
    terms = tiered("graduated", EUR_TIERS)
    assert terms.tiers is not None and terms.tiers[-1].up_to is None
    dumped = terms.model_dump(mode="json")
    assert dumped["tiers"][-1] == {"up_to": None, "unit_amount": 600, "flat_amount": 0}
    assert dumped["billing_scheme"] == "tiered" and dumped["tiers_mode"] == "graduated"
    assert PriceTerms.model_validate(dumped) == terms  # null reads back as the fallback tier


def test_terms_are_frozen_and_enums_parse() -> None:
    terms = package(500, 5, "down")
    assert terms.billing_scheme is BillingScheme.PER_UNIT
    assert terms.transform_quantity == TransformQuantity(divide_by=5, round=QuantityRound.DOWN)
    with pytest.raises(ValidationError):
        terms.unit_amount = 1  # type: ignore[misc]
    assert tiered("volume", EUR_TIERS).tiers_mode is TiersMode.VOLUME


def test_nulls_in_a_raw_body_count_as_absent() -> None:
    terms = PriceTerms.parse(unit_amount=100, tiers=None, tiers_mode=None, transform_quantity=None)
    assert terms == PriceTerms(unit_amount=100)


@pytest.mark.parametrize(
    ("loc", "param"),
    [(("tiers", 2, "up_to"), "tiers[2].up_to"), (("transform_quantity", "divide_by"), "transform_quantity.divide_by")],
)
def test_param_from_loc(loc: tuple[int | str, ...], param: str) -> None:
    assert param_from_loc(loc) == param


# ------------------------------------------------------------------ validation: every error names its field
def _tiers(*up_tos: Any) -> list[dict[str, Any]]:
    return [{"up_to": u, "unit_amount": 100} for u in up_tos]


TIERED: dict[str, Any] = {"billing_scheme": "tiered", "tiers_mode": "graduated"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    # per_unit
    ("per_unit needs unit_amount", {}, "unit_amount"),
    ("per_unit unit_amount null", {"unit_amount": None}, "unit_amount"),
    ("negative unit_amount", {"unit_amount": -1}, "unit_amount"),
    ("float unit_amount", {"unit_amount": 1.5}, "unit_amount"),
    ("whole float unit_amount", {"unit_amount": 2.0}, "unit_amount"),
    ("string unit_amount", {"unit_amount": "100"}, "unit_amount"),
    ("bool unit_amount", {"unit_amount": True}, "unit_amount"),
    ("per_unit with tiers", {"tiers": _tiers(5, "inf")}, "tiers"),
    ("per_unit with tiers_mode", {"unit_amount": 100, "tiers_mode": "volume"}, "tiers_mode"),
    ("unknown scheme", {"billing_scheme": "metered", "unit_amount": 100}, "billing_scheme"),
    ("unknown field", {"unit_amount": 100, "amount": 100}, "amount"),
    # both unit_amount and tiers
    ("tiered with unit_amount", {**TIERED, "unit_amount": 100, "tiers": _tiers(5, "inf")}, "unit_amount"),
    ("per_unit with both", {"unit_amount": 100, "tiers": _tiers(5, "inf")}, "unit_amount"),
    # tiered needs tiers and tiers_mode
    ("tiered without tiers_mode", {"billing_scheme": "tiered", "tiers": _tiers(5, "inf")}, "tiers_mode"),
    ("unknown tiers_mode", {**TIERED, "tiers_mode": "stairs", "tiers": _tiers(5, "inf")}, "tiers_mode"),
    ("tiered without tiers", TIERED, "tiers"),
    ("tiered with no tier", {**TIERED, "tiers": []}, "tiers"),
    ("tiers not a list", {**TIERED, "tiers": "5,inf"}, "tiers"),
    ("251 tiers", {**TIERED, "tiers": _tiers(*range(1, 251), "inf")}, "tiers"),
    # up_to
    ("up_to repeated", {**TIERED, "tiers": _tiers(5, 10, 10, "inf")}, "tiers[2].up_to"),
    ("up_to descending", {**TIERED, "tiers": _tiers(5, 3, "inf")}, "tiers[1].up_to"),
    ("up_to zero", {**TIERED, "tiers": _tiers(0, "inf")}, "tiers[0].up_to"),
    ("up_to negative", {**TIERED, "tiers": _tiers(-5, "inf")}, "tiers[0].up_to"),
    ("last tier not inf", {**TIERED, "tiers": _tiers(5, 10)}, "tiers[1].up_to"),
    ("single finite tier", {**TIERED, "tiers": _tiers(5)}, "tiers[0].up_to"),
    ("inf before the last", {**TIERED, "tiers": _tiers("inf", "inf")}, "tiers[0].up_to"),
    ("inf in the middle", {**TIERED, "tiers": _tiers(5, "inf", 10, "inf")}, "tiers[1].up_to"),
    ("null up_to before the last", {**TIERED, "tiers": _tiers(5, None, "inf")}, "tiers[1].up_to"),
    ("up_to not a number", {**TIERED, "tiers": _tiers(5, 10, "abc")}, "tiers[2].up_to"),
    ("up_to numeric string", {**TIERED, "tiers": _tiers("5", "inf")}, "tiers[0].up_to"),
    ("up_to float", {**TIERED, "tiers": _tiers(2.5, "inf")}, "tiers[0].up_to"),
    ("up_to INF upper case", {**TIERED, "tiers": _tiers(5, "INF")}, "tiers[1].up_to"),
    ("up_to missing", {**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"unit_amount": 1}]}, "tiers[1].up_to"),
    # tier amounts
    (
        "negative tier unit_amount",
        {**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": "inf", "unit_amount": -1}]},
        "tiers[1].unit_amount",
    ),
    (
        "negative tier flat_amount",
        {**TIERED, "tiers": [{"up_to": 5, "flat_amount": -100}, {"up_to": "inf", "unit_amount": 1}]},
        "tiers[0].flat_amount",
    ),
    (
        "float tier unit_amount",
        {**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": "inf", "unit_amount": 6.5}]},
        "tiers[1].unit_amount",
    ),
    (
        "string tier flat_amount",
        {**TIERED, "tiers": [{"up_to": 5, "flat_amount": "10"}, {"up_to": "inf", "unit_amount": 1}]},
        "tiers[0].flat_amount",
    ),
    ("tier without an amount", {**TIERED, "tiers": [{"up_to": 5}, {"up_to": "inf", "unit_amount": 1}]}, "tiers[0]"),
    (
        "tier with an unsupported field",
        {**TIERED, "tiers": [{"up_to": 5, "flat_amount_decimal": "1.5"}, {"up_to": "inf", "unit_amount": 1}]},
        "tiers[0].flat_amount_decimal",
    ),
    (
        "tier unit_amount_decimal as a float",
        {**TIERED, "tiers": [{"up_to": 5, "unit_amount_decimal": 1.5}, {"up_to": "inf", "unit_amount": 1}]},
        "tiers[0].unit_amount_decimal",
    ),
    (
        "unit_amount_decimal with 13 decimal places",
        {"unit_amount_decimal": "0.0000000000001"},
        "unit_amount_decimal",
    ),
    (
        "unit_amount and unit_amount_decimal",
        {"unit_amount": 1, "unit_amount_decimal": "0.5"},
        "unit_amount_decimal",
    ),
    ("tier not an object", {**TIERED, "tiers": [5, {"up_to": "inf", "unit_amount": 1}]}, "tiers[0]"),
    # transform_quantity
    (
        "transform_quantity with tiers",
        {**TIERED, "tiers": _tiers(5, "inf"), "transform_quantity": {"divide_by": 5, "round": "up"}},
        "transform_quantity",
    ),
    (
        "divide_by zero",
        {"unit_amount": 1, "transform_quantity": {"divide_by": 0, "round": "up"}},
        "transform_quantity.divide_by",
    ),
    (
        "divide_by negative",
        {"unit_amount": 1, "transform_quantity": {"divide_by": -5, "round": "up"}},
        "transform_quantity.divide_by",
    ),
    (
        "divide_by float",
        {"unit_amount": 1, "transform_quantity": {"divide_by": 2.0, "round": "up"}},
        "transform_quantity.divide_by",
    ),
    ("divide_by missing", {"unit_amount": 1, "transform_quantity": {"round": "up"}}, "transform_quantity.divide_by"),
    (
        "round unknown",
        {"unit_amount": 1, "transform_quantity": {"divide_by": 5, "round": "nearest"}},
        "transform_quantity.round",
    ),
    ("round missing", {"unit_amount": 1, "transform_quantity": {"divide_by": 5}}, "transform_quantity.round"),
]


@pytest.mark.parametrize(("raw", "param"), [(raw, param) for _, raw, param in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_terms_raise_invalid_input_naming_the_field(raw: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        PriceTerms.parse(**raw)
    assert error.value.param == param
    assert error.value.message


def test_not_both_says_so() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        PriceTerms.parse(**TIERED, unit_amount=100, tiers=_tiers(5, "inf"))


def test_direct_construction_raises_invalid_input_too() -> None:
    with pytest.raises(InvalidInput) as error:
        PriceTerms(unit_amount=-1)
    assert error.value.param == "unit_amount"
    with pytest.raises(InvalidInput) as error:
        PriceTerms(
            billing_scheme=BillingScheme.TIERED,
            tiers_mode=TiersMode.VOLUME,
            tiers=(Tier(up_to=10, unit_amount=1), Tier(up_to=5, unit_amount=1), Tier(up_to=None, unit_amount=1)),
        )
    assert error.value.param == "tiers[1].up_to"


def test_250_tiers_are_allowed() -> None:
    terms = PriceTerms.parse(**TIERED, tiers=_tiers(*range(1, 250), "inf"))
    # 300 units: 249 tiers of one unit each, then 51 in the fallback tier, all at 100
    assert amount(terms, 300) == 30000


def test_free_tier_with_zero_amounts_is_allowed() -> None:
    terms = tiered("graduated", [{"up_to": 3, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 250}])
    assert amount(terms, 3) == 0  # 3 × 0
    assert amount(terms, 5) == 500  # 3 × 0 + 2 × 250


# ------------------------------------------------------------------ properties
@st.composite
def tier_lists(draw: st.DrawFn) -> list[Tier]:
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=200), min_size=0, max_size=5)))
    amounts = st.integers(min_value=0, max_value=100_000)
    ups: list[int | None] = [*bounds, None]
    return [Tier(up_to=u, unit_amount=draw(amounts), flat_amount=draw(amounts)) for u in ups]


def terms_of(mode: TiersMode, tiers: list[Tier]) -> PriceTerms:
    return PriceTerms(billing_scheme=BillingScheme.TIERED, tiers_mode=mode, tiers=tuple(tiers))


quantities = st.integers(min_value=0, max_value=500)


@given(tier_lists(), quantities, quantities)
def test_graduated_total_never_decreases_as_quantity_grows(tiers: list[Tier], a: int, b: int) -> None:
    terms = terms_of(TiersMode.GRADUATED, tiers)
    low, high = sorted((a, b))
    assert amount(terms, low) <= amount(terms, high)


@given(tier_lists(), quantities)
def test_graduated_total_is_the_sum_of_its_tier_lines(tiers: list[Tier], quantity: int) -> None:
    priced = price_total(terms_of(TiersMode.GRADUATED, tiers), quantity)
    assert priced.amount == sum(line.amount for line in priced.tiers)
    assert sum(line.quantity for line in priced.tiers) == quantity
    assert [line.tier for line in priced.tiers] == list(range(1, len(priced.tiers) + 1))
    for line in priced.tiers:
        assert line.quantity >= 1
        assert line.amount == line.quantity * line.unit_amount + line.flat_amount


@given(tier_lists(), st.integers(min_value=0, max_value=120))
def test_graduated_matches_a_unit_by_unit_count(tiers: list[Tier], quantity: int) -> None:
    # each unit n (1-based) costs the unit_amount of the first tier with n <= up_to; each tier reached adds its flat
    expected = 0
    reached: set[int] = set()
    for n in range(1, quantity + 1):
        index = next(i for i, t in enumerate(tiers) if t.up_to is None or n <= t.up_to)
        expected += tiers[index].unit_amount
        reached.add(index)
    expected += sum(tiers[i].flat_amount for i in reached)
    assert amount(terms_of(TiersMode.GRADUATED, tiers), quantity) == expected


@given(tier_lists(), st.integers(min_value=1, max_value=500))
def test_volume_total_is_its_single_tier(tiers: list[Tier], quantity: int) -> None:
    priced = price_total(terms_of(TiersMode.VOLUME, tiers), quantity)
    (line,) = priced.tiers
    tier = tiers[line.tier - 1]
    assert tier.up_to is None or quantity <= tier.up_to
    assert line.tier == 1 or (tiers[line.tier - 2].up_to or 0) < quantity  # the first tier that fits
    assert line.quantity == quantity
    assert priced.amount == line.amount == quantity * tier.unit_amount + tier.flat_amount


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=100))
def test_round_up_bills_the_least_number_of_packages_that_covers_the_quantity(quantity: int, divide_by: int) -> None:
    billed = price_total(package(1, divide_by, "up"), quantity).billed_quantity
    assert billed * divide_by >= quantity
    assert billed == 0 or (billed - 1) * divide_by < quantity


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=100), st.integers(0, 10_000))
def test_round_down_bills_only_full_packages(quantity: int, divide_by: int, unit_amount: int) -> None:
    priced = price_total(package(unit_amount, divide_by, "down"), quantity)
    assert priced.billed_quantity * divide_by <= quantity < (priced.billed_quantity + 1) * divide_by
    assert priced.amount == unit_amount * priced.billed_quantity
    assert priced.quantity == quantity


# ------------------------------------------------------------------ Price carries the terms
def old_document(unit_amount: int, currency: str) -> str:
    # a Price as stored before tiers existed (DynamoDB keeps model_dump_json(exclude_defaults=True))
    return (
        f'{{"id":"price_old","product":"prod_1","currency":"{currency}","unit_amount":{unit_amount},'
        '"recurring":{"interval":"month"},"created":"2025-01-01T00:00:00Z"}'
    )


@given(
    st.integers(min_value=0, max_value=99_999_999),
    st.sampled_from(["EUR", "JPY", "KWD"]),
    st.integers(min_value=0, max_value=10_000),
)
def test_an_old_price_document_reads_back_as_per_unit_with_the_same_amounts(
    unit_amount: int, currency: str, quantity: int
) -> None:
    price = Price.model_validate_json(old_document(unit_amount, currency))
    assert price.billing_scheme is BillingScheme.PER_UNIT
    assert (price.tiers, price.tiers_mode, price.transform_quantity) == (None, None, None)
    assert price.amount_for(quantity) == Money(unit_amount, currency).times(quantity)  # the old formula
    assert price.terms == PriceTerms(unit_amount=unit_amount)
    assert price.model_dump_json(exclude_defaults=True) == old_document(unit_amount, currency)  # unchanged shape


def price(**pricing: Any) -> Price:
    return Price(
        id="price_1",
        product="prod_1",
        currency="EUR",
        recurring=Recurring(interval=Interval.MONTH),
        created=CREATED,
        **pricing,
    )


def test_a_tiered_price_round_trips_through_its_stored_document() -> None:
    stored = price(billing_scheme="tiered", tiers_mode="graduated", tiers=EUR_TIERS)
    assert stored.unit_amount is None
    again = Price.model_validate_json(stored.model_dump_json(exclude_defaults=True))
    assert again == stored
    assert again.amount_for(6) == Money(4150, "EUR")  # 5 × 700 + 1 × 650
    assert again.priced(6).tiers[1].quantity == 1
    assert stored.model_dump(mode="json")["tiers"][-1]["up_to"] is None


def test_a_package_price_charges_per_package() -> None:
    per_five = price(unit_amount=500, transform_quantity={"divide_by": 5, "round": "up"})
    assert per_five.amount_for(7) == Money(1000, "EUR")  # 7 units → 2 packages × 5.00


@pytest.mark.parametrize(
    ("pricing", "param"),
    [
        ({}, "unit_amount"),
        ({"unit_amount": -1}, "unit_amount"),
        ({"unit_amount": 1.5}, "unit_amount"),
        ({"billing_scheme": "tiered", "tiers": EUR_TIERS}, "tiers_mode"),
        ({"billing_scheme": "tiered", "tiers_mode": "volume", "tiers": _tiers(5, 10, 10, "inf")}, "tiers[2].up_to"),
        ({"billing_scheme": "tiered", "tiers_mode": "volume", "tiers": _tiers(5, "abc")}, "tiers[1].up_to"),
        ({"unit_amount": 5, "transform_quantity": {"divide_by": 0, "round": "up"}}, "transform_quantity.divide_by"),
    ],
)
def test_price_refuses_invalid_terms_naming_the_field(pricing: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        price(**pricing)
    assert error.value.param == param


def test_price_per_unit_amount_for_is_unchanged() -> None:
    assert price(unit_amount=1500).amount_for(3) == Money(4500, "EUR")  # 15.00 × 3


# ------------------------------------------------------------------ the HTTP request body
def body(**pricing: Any) -> PriceIn:
    return PriceIn.model_validate(
        {"product": "prod_1", "currency": "eur", "recurring": {"interval": "month"}, **pricing}
    )


def test_price_in_passes_tiers_through_to_the_domain() -> None:
    terms = body(billing_scheme="tiered", tiers_mode="volume", tiers=EUR_TIERS).terms()
    assert amount(terms, 6) == 3900  # 6 × 650
    assert body(unit_amount=1500).terms() == PriceTerms(unit_amount=1500)


def test_price_in_errors_name_the_tier_field() -> None:
    with pytest.raises(InvalidInput) as error:
        body(billing_scheme="tiered", tiers_mode="graduated", tiers=_tiers(5, 10, 10, "inf")).terms()
    assert error.value.param == "tiers[2].up_to"
    with pytest.raises(InvalidInput) as error:
        body(transform_quantity={"divide_by": 0, "round": "up"}, unit_amount=5).terms()
    assert error.value.param == "transform_quantity.divide_by"
