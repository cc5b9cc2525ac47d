"""Where a customer is, for tax: country, special territory (by postal code), state or province.

Some parts of member states are outside the EU VAT area (Article 6 of Council Directive 2006/112/EC):
no EU VAT is charged there, even though the country code is an EU one. Others are inside but apply
regional rates (the Azores and Madeira). A few non-EU countries are inside a neighbour's VAT area
for these purposes: Monaco applies French VAT, the Isle of Man UK VAT, Liechtenstein (and the German
enclave of Büsingen) Swiss VAT.

Matching is by normalized postal-code prefix (spaces, hyphens and a leading country prefix such as
``AX-`` removed), the longest prefix first. An address without a postal code is taken to be in the
main territory of its country: kassa cannot see a special territory it is not told about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput

EU_MEMBER_STATES = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    }
)

# Countries inside a neighbour's VAT area for digital services.
VAT_AREA_ALIASES: dict[str, str] = {"MC": "FR", "IM": "GB", "LI": "CH"}


class Treatment(StrEnum):
    OUTSIDE_EU_VAT = "outside_eu_vat"  # no EU VAT; a local tax may exist (kassa does not collect it)
    REGIONAL_RATE = "regional_rate"  # inside the EU VAT area with a regional rate (own jurisdiction)
    OTHER_VAT_AREA = "other_vat_area"  # outside the EU VAT area, inside another one (Büsingen: Swiss VAT)


@dataclass(frozen=True, slots=True)
class Territory:
    code: str  # "ES-CN"; the jurisdiction reported for it unless ``jurisdiction`` says otherwise
    name: str
    country: str  # the member state it belongs to
    treatment: Treatment
    postal_prefixes: tuple[str, ...]
    local_tax: str  # what applies instead, in a few words, for the rule's sentence
    jurisdiction: str | None = None  # REGIONAL_RATE: rate jurisdiction; OTHER_VAT_AREA: that country


_OUT = Treatment.OUTSIDE_EU_VAT
TERRITORIES: tuple[Territory, ...] = (
    Territory("ES-CN", "Canary Islands", "ES", _OUT, ("35", "38"), "the local IGIC applies (not collected by kassa)"),
    Territory("ES-CE", "Ceuta", "ES", _OUT, ("51",), "the local IPSI applies (not collected by kassa)"),
    Territory("ES-ML", "Melilla", "ES", _OUT, ("52",), "the local IPSI applies (not collected by kassa)"),
    Territory("DE-HGL", "Heligoland", "DE", _OUT, ("27498",), "no VAT applies"),
    Territory(
        "DE-BUS",
        "Büsingen am Hochrhein",
        "DE",
        Treatment.OTHER_VAT_AREA,
        ("78266",),
        "Swiss VAT applies (Swiss customs and VAT territory)",
        jurisdiction="CH",
    ),
    Territory("FI-AX", "Åland Islands", "FI", _OUT, ("22",), "Åland is outside the EU VAT area"),
    Territory("GR-69", "Mount Athos", "GR", _OUT, ("63086",), "Mount Athos is outside the EU VAT area"),
    # French overseas departments (outermost regions, outside the EU VAT area). Guadeloupe, Martinique
    # and Réunion have their own local VAT (8.5% standard) under French law; French Guiana and
    # Mayotte have none. kassa collects neither.
    Territory("FR-BL", "Saint-Barthélemy", "FR", _OUT, ("97133",), "no EU VAT; local rules apply"),
    Territory("FR-MF", "Saint-Martin", "FR", _OUT, ("97150",), "no EU VAT; local rules apply"),
    Territory("FR-GP", "Guadeloupe", "FR", _OUT, ("971",), "the local DOM VAT applies (not collected by kassa)"),
    Territory("FR-MQ", "Martinique", "FR", _OUT, ("972",), "the local DOM VAT applies (not collected by kassa)"),
    Territory("FR-GF", "French Guiana", "FR", _OUT, ("973",), "no VAT applies there"),
    Territory("FR-RE", "Réunion", "FR", _OUT, ("974",), "the local DOM VAT applies (not collected by kassa)"),
    Territory("FR-PM", "Saint-Pierre-et-Miquelon", "FR", _OUT, ("975",), "no EU VAT; local rules apply"),
    Territory("FR-YT", "Mayotte", "FR", _OUT, ("976",), "no VAT applies there"),
    Territory("FR-TF", "French Southern Territories", "FR", _OUT, ("984",), "no EU VAT"),
    Territory("FR-WF", "Wallis and Futuna", "FR", _OUT, ("986",), "no EU VAT; local rules apply"),
    Territory("FR-PF", "French Polynesia", "FR", _OUT, ("987",), "no EU VAT; local rules apply"),
    Territory("FR-NC", "New Caledonia", "FR", _OUT, ("988",), "no EU VAT; local rules apply"),
    Territory("IT-LIV", "Livigno", "IT", _OUT, ("23041",), "Livigno is outside the EU VAT area"),
    Territory("IT-CAM", "Campione d'Italia", "IT", _OUT, ("22061",), "Campione d'Italia is outside the EU VAT area"),
    Territory(
        "PT-20",
        "Azores",
        "PT",
        Treatment.REGIONAL_RATE,
        ("95", "96", "97", "98", "99"),
        "the Azores' regional VAT rate applies",
        jurisdiction="PT-20",
    ),
    Territory(
        "PT-30",
        "Madeira",
        "PT",
        Treatment.REGIONAL_RATE,
        ("90", "91", "92", "93", "94"),
        "Madeira's regional VAT rate applies",
        jurisdiction="PT-30",
    ),
)

# ISO 3166-1 codes of territories that customers may give as their country.
_TERRITORY_COUNTRY_CODES: dict[str, str] = {
    "AX": "FI-AX",
    "GP": "FR-GP",
    "MQ": "FR-MQ",
    "GF": "FR-GF",
    "RE": "FR-RE",
    "YT": "FR-YT",
    "PM": "FR-PM",
    "BL": "FR-BL",
    "MF": "FR-MF",
    "TF": "FR-TF",
    "WF": "FR-WF",
    "PF": "FR-PF",
    "NC": "FR-NC",
}
_BY_CODE = {t.code: t for t in TERRITORIES}

US_STATES = frozenset(
    (
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
        "GU",
        "VI",
        "AS",
        "MP",
    )
)
CA_PROVINCES = frozenset(["AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"])
# First letter of a Canadian postal code → province (X: NT, or NU for X0A/X0B/X0C).
_CA_POSTAL = {
    "A": "NL",
    "B": "NS",
    "C": "PE",
    "E": "NB",
    "G": "QC",
    "H": "QC",
    "J": "QC",
    "K": "ON",
    "L": "ON",
    "M": "ON",
    "N": "ON",
    "P": "ON",
    "R": "MB",
    "S": "SK",
    "T": "AB",
    "V": "BC",
    "X": "NT",
    "Y": "YT",
}


@dataclass(frozen=True, slots=True)
class Location:
    country: str  # as given on the address (ISO 3166-1 alpha-2)
    tax_country: str  # whose rules apply: MC → FR, IM → GB, LI → CH, Büsingen → CH, a territory → its state
    territory: Territory | None = None
    region: str | None = None  # US state or Canadian province code

    @property
    def jurisdiction(self) -> str:
        if self.territory is not None:
            return self.territory.jurisdiction or self.territory.code
        if self.region is not None:
            return f"{self.tax_country}-{self.region}"
        return self.tax_country

    @property
    def outside_eu_vat(self) -> bool:
        return self.territory is not None and self.territory.treatment is not Treatment.REGIONAL_RATE


def normalize_postal_code(postal_code: str | None) -> str:
    if not postal_code:
        return ""
    return re.sub(r"[\s\-.]", "", postal_code).upper()


def territory_of(country: str, postal_code: str | None) -> Territory | None:
    """The special territory an address is in, if any."""
    country = country.upper()
    if country in _TERRITORY_COUNTRY_CODES:
        return _BY_CODE[_TERRITORY_COUNTRY_CODES[country]]
    code = re.sub(r"^[A-Z]+", "", normalize_postal_code(postal_code))  # "AX-22100" → "22100"
    if not code:
        return None
    candidates = [
        (len(prefix), territory)
        for territory in TERRITORIES
        if territory.country == country
        for prefix in territory.postal_prefixes
        if code.startswith(prefix)
    ]
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def _us_state(address: Address) -> str:
    state = (address.state or "").strip().upper()
    if state not in US_STATES:
        raise InvalidInput(
            "a US address needs its two-letter state code (e.g. 'WA') to determine sales tax",
            param="address.state",
        )
    return state


def _ca_province(address: Address) -> str:
    state = (address.state or "").strip().upper()
    if state:
        if state not in CA_PROVINCES:
            raise InvalidInput(f"unknown Canadian province or territory {address.state!r}", param="address.state")
        return state
    postal = normalize_postal_code(address.postal_code)
    if postal and postal[0] in _CA_POSTAL:
        if postal[0] == "X" and postal[:3] in {"X0A", "X0B", "X0C"}:
            return "NU"
        return _CA_POSTAL[postal[0]]
    raise InvalidInput(
        "a Canadian address needs its province code (e.g. 'QC') or postal code to determine GST/HST/PST/QST",
        param="address.state",
    )


def locate(address: Address) -> Location:
    country = address.country.upper()
    territory = territory_of(country, address.postal_code)
    if territory is not None:
        tax_country = territory.country
        if territory.treatment is Treatment.OTHER_VAT_AREA and territory.jurisdiction:
            tax_country = territory.jurisdiction
        return Location(country=country, tax_country=tax_country, territory=territory)
    tax_country = VAT_AREA_ALIASES.get(country, country)
    if tax_country == "US":
        return Location(country=country, tax_country="US", region=_us_state(address))
    if tax_country == "CA":
        return Location(country=country, tax_country="CA", region=_ca_province(address))
    return Location(country=country, tax_country=tax_country)
