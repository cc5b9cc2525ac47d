"""Domain limits on what a request may carry: ISO 3166-1 country codes, Stripe's eight-digit amount
cap, and merchant templates too big or too deeply nested for the settings item or Jinja's parser."""

from __future__ import annotations

import pytest
from babel import Locale
from pydantic import ValidationError

from kassa.domain.countries import ISO_3166_ALPHA2
from kassa.domain.customer import Address, ensure_valid_tax_id
from kassa.domain.errors import InvalidInput
from kassa.domain.money import MAX_AMOUNT
from kassa.domain.pricing import PriceTerms
from kassa.domain.settings import MAX_TEMPLATE_BYTES, MAX_TEMPLATES_BYTES, MerchantSettings

# CLDR regions with two letters that ISO 3166-1 has not assigned (exceptional or user-assigned codes)
CLDR_ONLY = {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "XK", "ZZ"}


def test_the_country_list_is_babels_less_cldrs_own_regions() -> None:
    cldr = {code for code in Locale("en").territories if len(code) == 2 and code.isalpha()}
    assert cldr - CLDR_ONLY == ISO_3166_ALPHA2
    assert len(ISO_3166_ALPHA2) == 249


@pytest.mark.parametrize("code", ["QQ", "XK", "EU", "UK", "ZZ"])
def test_an_address_refuses_codes_iso_3166_has_not_assigned(code: str) -> None:
    with pytest.raises(ValidationError, match="ISO 3166-1"):
        Address(country=code)
    assert Address(country="gb").country == "GB"


def test_amounts_are_capped_at_eight_digits() -> None:
    assert MAX_AMOUNT == 99_999_999
    assert PriceTerms.parse(unit_amount=MAX_AMOUNT).unit_amount == MAX_AMOUNT
    with pytest.raises(InvalidInput) as error:
        PriceTerms.parse(unit_amount=MAX_AMOUNT + 1)
    assert error.value.param == "unit_amount"
    with pytest.raises(InvalidInput) as error:
        PriceTerms.parse(billing_scheme="tiered", tiers_mode="volume", tiers=[{"up_to": "inf", "flat_amount": 10**40}])
    assert error.value.param == "tiers[0].flat_amount"


def test_a_tax_id_failing_its_check_digit_is_refused() -> None:
    ensure_valid_tax_id("DE136695976", "DE")
    ensure_valid_tax_id("anything", "US")  # a country whose numbers kassa cannot check
    with pytest.raises(InvalidInput) as error:
        ensure_valid_tax_id("DE136695977", "DE")
    assert error.value.param == "tax_id"


@pytest.mark.parametrize(
    ("templates", "words"),
    [
        ({"a.html.j2": "x" * (MAX_TEMPLATE_BYTES + 1)}, "at most"),
        ({f"t{i}.html.j2": "x" * MAX_TEMPLATE_BYTES for i in range(5)}, "together"),
        ({"a.html.j2": "{% if a %}" * 2000}, "nested too deeply"),
        ({"a.html.j2": "{{ " + "(" * 5000}, "nested too deeply"),
    ],
)
def test_templates_too_big_or_too_deep_are_refused_naming_the_field(templates: dict[str, str], words: str) -> None:
    assert MAX_TEMPLATES_BYTES < 400 * 1024
    with pytest.raises(ValidationError) as error:
        MerchantSettings.model_validate({"emails": {"templates": templates}})
    first = error.value.errors()[0]
    assert first["loc"] == ("emails", "templates")
    assert words in first["msg"]
