"""The seller's tax settings and the customer's tax id: validated, with errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.domain.errors import InvalidInput
from kassa.domain.tax import TaxSettings, check_eu_vat_number, check_tax_id
from kassa.domain.tax.vat_numbers import confirm_with_vies


def test_defaults_and_normalization() -> None:
    settings = TaxSettings(home_country="nl", registrations=["gb", " us-wa ", "CA-QC"])
    assert settings.home_country == "NL" and settings.default_tax_code == "saas"
    assert settings.registrations == frozenset({"GB", "US-WA", "CA-QC"})
    assert settings.registered_in("NL") and settings.registered_in("US-WA") and not settings.registered_in("US-TX")
    assert TaxSettings(home_country="MC").home_tax_country == "FR"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({}, "home_country"),
        ({"home_country": "N1"}, "home_country"),
        ({"home_country": "NLD"}, "home_country"),
        ({"home_country": "NL", "registrations": ["XX"]}, "registrations"),
        ({"home_country": "NL", "registrations": ["US-ZZ"]}, "registrations"),
        ({"home_country": "NL", "registrations": ["EL"]}, "registrations"),
        ({"home_country": "NL", "registrations": ["CA-ON"]}, "registrations"),
        ({"home_country": "NL", "registrations": "GB"}, "registrations"),
        ({"home_country": "NL", "default_tax_code": "food"}, "default_tax_code"),
        ({"home_country": "NL", "oss_registered": "perhaps"}, "oss_registered"),
        ({"home_country": "US", "eu_threshold_exceeded": True}, "eu_threshold_exceeded"),
        ({"home_country": "NL", "surprise": 1}, "surprise"),
    ],
)
def test_invalid_settings_name_the_field(data: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        TaxSettings(**data)
    assert error.value.param == param
    assert error.value.message


def test_settings_are_immutable() -> None:
    settings = TaxSettings(home_country="NL")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        settings.oss_registered = True  # type: ignore[misc]


# ------------------------------------------------------------------ tax ids
@pytest.mark.parametrize(
    ("number", "country", "normalized"),
    [
        ("NL 0044 95445 B01", "NL", "NL004495445B01"),
        ("el-094259216", "GR", "EL094259216"),
        ("FR 40 303 265 045", "MC", "FR40303265045"),  # Monaco businesses have French numbers
        ("ATU13585627", "AT", "ATU13585627"),
    ],
)
def test_valid_eu_vat_numbers(number: str, country: str, normalized: str) -> None:
    check = check_eu_vat_number(number, country)
    assert check.valid and check.normalized == normalized and check.vies_verified is None


def test_national_tax_ids() -> None:
    assert check_tax_id("GB980780684", "IM").valid  # Isle of Man: UK VAT numbers
    assert check_tax_id("27AAPFU0939F1ZV", "IN").valid
    assert check_tax_id("T5835678256246", "JP").normalized == "T5835678256246"
    assert not check_tax_id("12345", "AU").valid
    unknown = check_tax_id("123", "BR")
    assert not unknown.valid and unknown.reason is not None and "cannot validate" in unknown.reason


def test_vies_is_only_asked_about_valid_eu_numbers() -> None:
    class Loud:
        def check(self, vat_number: str) -> bool | None:
            raise AssertionError("must not be called")

    assert confirm_with_vies(check_tax_id("GB980780684", "GB"), Loud()).vies_verified is None
    assert confirm_with_vies(check_eu_vat_number("DE000", "DE"), Loud()).vies_verified is None
