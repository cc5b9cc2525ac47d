"""EU VAT for digital services: place of supply, OSS, reverse charge, thresholds, special territories."""

from __future__ import annotations

import pytest
from tax_helpers import VALID_VAT, BrokenVies, FixedVies, quote, settings

from kassa.domain.tax import EU_REVERSE_CHARGE_MENTION, RuleId

NOT_OSS_NL = settings("NL")


# ------------------------------------------------------------------ B2C: place of supply = customer
@pytest.mark.parametrize(
    ("country", "on", "rate", "tax"),
    [
        ("FI", "2024-08-31", "24", 2400),
        ("FI", "2024-09-01", "25.5", 2550),
        ("SK", "2024-12-31", "20", 2000),
        ("SK", "2025-01-01", "23", 2300),
        ("EE", "2025-06-30", "22", 2200),
        ("EE", "2025-07-01", "24", 2400),
        ("RO", "2025-07-31", "19", 1900),
        ("RO", "2025-08-01", "21", 2100),
        ("LU", "2022-12-31", "17", 1700),
        ("LU", "2023-06-15", "16", 1600),
        ("LU", "2024-01-01", "17", 1700),
        ("DE", "2020-08-01", "16", 1600),
        ("IE", "2021-01-15", "21", 2100),
        ("HU", "2025-01-01", "27", 2700),
    ],
)
def test_consumer_pays_own_country_vat_through_oss(country: str, on: str, rate: str, tax: int) -> None:
    result = quote(country, 10000, on=on)
    assert (result.jurisdiction, result.rate, result.tax_amount, result.total) == (country, rate, tax, 10000 + tax)
    assert result.rule is not None and result.rule.id is RuleId.EU_OSS
    assert "Art. 58" in result.rule.description and "OSS" in result.rule.description
    assert not result.reverse_charge and result.legal_mention is None


def test_domestic_consumer_and_domestic_business_pay_domestic_vat() -> None:
    consumer = quote("NL")
    business = quote("NL", tax_id=VALID_VAT["NL"])
    for result in (consumer, business):
        assert result.rule is not None and result.rule.id is RuleId.EU_DOMESTIC
        assert (result.rate, result.tax_amount, result.reverse_charge) == ("21", 2100, False)
    assert business.rule is not None and "business customer" in business.rule.description


# ------------------------------------------------------------------ reverse charge
@pytest.mark.parametrize("country", sorted(set(VALID_VAT) - {"NL"}))
def test_business_with_valid_vat_number_in_another_member_state_is_reverse_charged(country: str) -> None:
    result = quote(country, tax_id=VALID_VAT[country])
    assert (result.tax_amount, result.rate, result.total) == (0, "0", 10000)
    assert result.reverse_charge is True
    assert result.legal_mention == EU_REVERSE_CHARGE_MENTION
    assert result.rule is not None and result.rule.id is RuleId.EU_REVERSE_CHARGE
    assert result.customer_tax_id == VALID_VAT[country]
    assert result.vies_verified is None  # no VIES checker given
    assert result.jurisdiction == country
    (row,) = result.breakdown
    assert (row.jurisdiction, row.reverse_charge, row.taxable_amount, row.tax_amount) == (country, True, 10000, 0)


def test_legal_mention_wording() -> None:
    assert EU_REVERSE_CHARGE_MENTION == (
        "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"
    )


@pytest.mark.parametrize(
    ("tax_id", "reason"),
    [
        ("FI20774741", "check digit"),  # wrong check digit
        ("DE136695976", "prefix DE"),  # valid German number, Finnish customer
        ("hello", "check digit"),
    ],
)
def test_invalid_vat_number_means_consumer_rate(tax_id: str, reason: str) -> None:
    result = quote("FI", tax_id=tax_id, on="2025-01-01")
    assert (result.rate, result.tax_amount, result.reverse_charge) == ("25.5", 2550, False)
    assert result.rule is not None and result.rule.id is RuleId.EU_OSS
    assert "not valid" in result.rule.description and reason in result.rule.description
    assert result.customer_tax_id is None


def test_greek_numbers_need_the_el_prefix() -> None:
    assert quote("GR", tax_id="EL094259216").reverse_charge
    wrong = quote("GR", tax_id="GR094259216")
    assert not wrong.reverse_charge and wrong.rule is not None and "EL" in wrong.rule.description


def test_number_typed_without_prefix_gets_the_customers() -> None:
    result = quote("FI", tax_id="2077 4740")
    assert result.reverse_charge and result.customer_tax_id == "FI20774740"
    assert quote("AT", tax_id="U13585627").customer_tax_id == "ATU13585627"


# ------------------------------------------------------------------ VIES: optional, never blocking
def test_vies_confirmation_is_recorded() -> None:
    vies = FixedVies(True)
    result = quote("DE", tax_id="DE 136 695 976", vies=vies)
    assert vies.asked == ["DE136695976"]
    assert result.reverse_charge and result.vies_verified is True
    assert result.rule is not None and "confirmed by VIES" in result.rule.description


def test_vies_unavailable_still_reverse_charges_with_unverified_flag() -> None:
    for vies in (FixedVies(None), BrokenVies()):
        result = quote("DE", tax_id=VALID_VAT["DE"], vies=vies)
        assert result.reverse_charge and result.vies_verified is None
        assert result.rule is not None and "not confirmed by VIES" in result.rule.description


def test_vies_saying_not_registered_means_consumer() -> None:
    result = quote("DE", tax_id=VALID_VAT["DE"], vies=FixedVies(False))
    assert not result.reverse_charge and result.tax_amount == 1900
    assert result.vies_verified is False
    assert result.rule is not None and "VIES" in result.rule.description


def test_vies_is_asked_only_when_it_matters() -> None:
    vies = FixedVies(True)
    quote("NL", tax_id=VALID_VAT["NL"], vies=vies)  # domestic: taxed anyway
    quote("DE", tax_id="DE123", vies=vies)  # format invalid: no need to ask
    quote("DE", vies=vies)  # no number
    assert vies.asked == []


# ------------------------------------------------------------------ sellers without OSS
def test_eu_seller_below_threshold_without_oss_charges_home_vat() -> None:
    result = quote("FI", seller=NOT_OSS_NL, on="2025-01-01")
    assert (result.jurisdiction, result.rate, result.tax_amount) == ("NL", "21", 2100)
    assert result.rule is not None and result.rule.id is RuleId.EU_BELOW_THRESHOLD
    assert "10,000" in result.rule.description


def test_eu_seller_over_threshold_charges_destination_vat() -> None:
    seller = settings("NL", eu_threshold_exceeded=True)
    result = quote("FI", seller=seller, on="2025-01-01")
    assert (result.jurisdiction, result.rate) == ("FI", "25.5")
    assert result.rule is not None and result.rule.id is RuleId.EU_OVER_THRESHOLD


def test_local_registration_without_oss() -> None:
    seller = settings("NL", registrations=["FR"])
    result = quote("FR", seller=seller)
    assert (result.rate, result.tax_amount) == ("20", 2000)
    assert result.rule is not None and result.rule.id is RuleId.EU_LOCAL_REGISTRATION


def test_seller_outside_the_eu() -> None:
    us_seller = settings("US")
    consumer = quote("DE", seller=us_seller)
    assert consumer.tax_amount == 0 and consumer.rule is not None
    assert consumer.rule.id is RuleId.NOT_REGISTERED
    assert "not registered" in consumer.rule.description  # the rule says so
    non_union_oss = quote("DE", seller=settings("US", oss_registered=True))
    assert non_union_oss.tax_amount == 1900 and non_union_oss.rule is not None
    assert non_union_oss.rule.id is RuleId.EU_OSS
    business = quote("DE", seller=us_seller, tax_id=VALID_VAT["DE"])
    assert business.reverse_charge and business.legal_mention == EU_REVERSE_CHARGE_MENTION


# ------------------------------------------------------------------ territories
@pytest.mark.parametrize(
    ("country", "postal_code", "territory"),
    [
        ("ES", "35001", "ES-CN"),  # Las Palmas
        ("ES", "38001", "ES-CN"),  # Santa Cruz de Tenerife
        ("ES", "51001", "ES-CE"),  # Ceuta
        ("ES", "52001", "ES-ML"),  # Melilla
        ("DE", "27498", "DE-HGL"),  # Heligoland
        ("FI", "22100", "FI-AX"),  # Mariehamn
        ("FI", "AX-22100", "FI-AX"),
        ("AX", None, "FI-AX"),
        ("GR", "630 86", "GR-69"),  # Mount Athos
        ("GR", "63086", "GR-69"),
        ("FR", "97100", "FR-GP"),  # Guadeloupe
        ("FR", "97200", "FR-MQ"),  # Martinique
        ("FR", "97300", "FR-GF"),  # French Guiana
        ("FR", "97400", "FR-RE"),  # Réunion
        ("FR", "97600", "FR-YT"),  # Mayotte
        ("RE", "97400", "FR-RE"),
        ("GP", None, "FR-GP"),
        ("IT", "23041", "IT-LIV"),  # Livigno
        ("IT", "22061", "IT-CAM"),  # Campione d'Italia
    ],
)
def test_special_territories_outside_the_eu_vat_area_get_no_eu_vat(
    country: str, postal_code: str | None, territory: str
) -> None:
    for tax_id in (None, VALID_VAT.get(country)):
        result = quote(country, postal_code=postal_code, tax_id=tax_id)
        assert (result.jurisdiction, result.tax_amount, result.reverse_charge) == (territory, 0, False)
        assert result.rule is not None and result.rule.id is RuleId.OUTSIDE_EU_VAT_AREA
        assert "outside the EU VAT area" in result.rule.description


def test_dom_with_local_vat_says_so() -> None:
    result = quote("FR", postal_code="97400")
    assert result.rule is not None and "local DOM VAT" in result.rule.description


@pytest.mark.parametrize(
    ("country", "postal_code"),
    [
        ("ES", "28001"),
        ("DE", "27499"),
        ("DE", "10115"),
        ("FI", "00100"),
        ("GR", "63085"),
        ("IT", "23040"),
        ("ES", None),
    ],
)
def test_neighbouring_postal_codes_stay_inside(country: str, postal_code: str | None) -> None:
    result = quote(country, postal_code=postal_code)
    assert result.jurisdiction == country and result.tax_amount > 0


def test_busingen_is_swiss_vat_territory() -> None:
    not_registered = quote("DE", postal_code="78266")
    assert (not_registered.jurisdiction, not_registered.tax_amount) == ("CH", 0)
    assert not_registered.rule is not None and "Büsingen" in not_registered.rule.description
    registered = quote("DE", postal_code="78266", seller=settings("NL", oss_registered=True, registrations=["CH"]))
    assert (registered.rate, registered.tax_amount) == ("8.1", 810)


def test_azores_and_madeira_regional_rates_through_oss() -> None:
    azores = quote("PT", postal_code="9500-321", on="2025-01-01")
    madeira = quote("PT", postal_code="9000-123", on="2025-01-01")
    lisbon = quote("PT", postal_code="1100-148", on="2025-01-01")
    assert [(q.jurisdiction, q.rate) for q in (azores, madeira, lisbon)] == [
        ("PT-20", "16"),
        ("PT-30", "22"),
        ("PT", "23"),
    ]
    (component,) = azores.lines[0].components
    assert component.country == "PT"  # the member state of consumption in the OSS return


def test_monaco_is_french_vat_and_isle_of_man_uk_vat() -> None:
    monaco = quote("MC", on="2025-01-01")
    assert (monaco.jurisdiction, monaco.rate) == ("FR", "20")
    assert quote("MC", tax_id="FR40303265045").reverse_charge
    isle_of_man = quote("IM", seller=settings("NL", oss_registered=True, registrations=["GB"]))
    assert (isle_of_man.jurisdiction, isle_of_man.rate) == ("GB", "20")
