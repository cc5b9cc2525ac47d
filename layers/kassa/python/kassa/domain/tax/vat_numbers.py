"""Customer tax ids: EU VAT numbers (format and check digit, python-stdnum), national business
numbers elsewhere, and the optional VIES confirmation.

Policy (see docs/tax.md):
- a number is *valid* when its format and check digit are right and, for an EU VAT number, its
  prefix is the customer's country (Greece: EL; Monaco: FR). A number without a prefix gets the
  customer's;
- VIES (the Commission's VAT Information Exchange System) is optional and never blocks a quote: the
  checker answers True (registered), False (not registered) or None (not asked, unavailable, timed
  out). A ``ViesChecker`` that raises is treated as None;
- True or None: a valid number keeps its business treatment (reverse charge); the quote records
  ``vies_verified`` as True or None, so unconfirmed reverse charges can be re-checked later;
- False: VIES says the number is not registered, so the customer is treated as a consumer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import import_module
from types import ModuleType
from typing import Protocol

from kassa.domain.tax.territories import EU_MEMBER_STATES, VAT_AREA_ALIASES


class ViesChecker(Protocol):
    """Asks VIES whether an EU VAT number (with prefix, e.g. "FI20774740") is registered.

    Returns True or False when VIES answered, None when it could not tell (member state service
    down, timeout). Implementations (an adapter, later) bound their own wait and cache answers; the
    domain only calls ``check``.
    """

    def check(self, vat_number: str) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class TaxIdCheck:
    given: str
    country: str  # the country whose number was expected (the customer's tax country)
    scheme: str  # "eu_vat", "gb_vat", "no_orgnr", "ch_uid", "au_abn", "nz_ird", "sg_uen", "jp_cn", …
    valid: bool
    normalized: str | None = None  # compact form with prefix, e.g. "EL094259216"
    reason: str | None = None  # why not valid
    vies_verified: bool | None = None


def eu_vat_prefix(country: str) -> str:
    """The VAT-number prefix of a member state: the ISO code, except Greece (EL)."""
    return "EL" if country == "GR" else country


_EU_PREFIXES = frozenset(eu_vat_prefix(c) for c in EU_MEMBER_STATES) | {"XI"}


@cache
def _stdnum(name: str) -> ModuleType:
    """A python-stdnum validator module (``stdnum.<name>``), imported on the first check that needs it:
    stdnum's package imports pydoc and pkgutil (~20 ms), not worth a cold start of every function."""
    return import_module(f"stdnum.{name}")


def check_eu_vat_number(number: str, country: str) -> TaxIdCheck:
    """Format and check digit of an EU VAT number, whose prefix must be ``country``'s."""
    tax_country = VAT_AREA_ALIASES.get(country.upper(), country.upper())
    expected = eu_vat_prefix(tax_country)
    compact = re.sub(r"[^0-9A-Z+*]", "", number.upper())
    if compact[:2] not in _EU_PREFIXES and compact[:2] != "GR":
        compact = expected + compact  # typed without its prefix
    prefix = compact[:2]
    if prefix != expected:
        hint = " (Greek VAT numbers start with EL)" if prefix == "GR" else ""
        return TaxIdCheck(
            number,
            tax_country,
            "eu_vat",
            False,
            reason=f"prefix {prefix} does not match the customer's country {tax_country}{hint}",
        )
    try:
        valid = bool(_stdnum("eu.vat").is_valid(compact))
    except Exception:  # a validator bug must not break a quote
        valid = False
    if not valid:
        return TaxIdCheck(number, tax_country, "eu_vat", False, reason="format or check digit is not valid")
    return TaxIdCheck(number, tax_country, "eu_vat", True, normalized=str(_stdnum("eu.vat").compact(compact)))


def _strip(prefix: str, value: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


def _gb(value: str) -> str | None:
    digits = _strip("GB", value)
    return "GB" + str(_stdnum("gb.vat").compact(digits)) if _stdnum("gb.vat").is_valid(digits) else None


def _no(value: str) -> str | None:
    digits = _strip("NO", value).removesuffix("MVA")
    return "NO" + digits + "MVA" if _stdnum("no.orgnr").is_valid(digits) else None


def _ch(value: str) -> str | None:
    if _stdnum("ch.vat").is_valid(value):
        return str(_stdnum("ch.vat").compact(value))
    return str(_stdnum("ch.uid").compact(value)) if _stdnum("ch.uid").is_valid(value) else None


def _au(value: str) -> str | None:
    return str(_stdnum("au.abn").compact(value)) if _stdnum("au.abn").is_valid(value) else None


def _nz(value: str) -> str | None:
    return str(_stdnum("nz.ird").compact(value)) if _stdnum("nz.ird").is_valid(value) else None


def _sg(value: str) -> str | None:
    return str(_stdnum("sg.uen").compact(value)) if _stdnum("sg.uen").is_valid(value) else None


def _jp(value: str) -> str | None:
    digits = _strip("T", value)  # qualified invoice issuer numbers are "T" + the corporate number
    return "T" + str(_stdnum("jp.cn").compact(digits)) if _stdnum("jp.cn").is_valid(digits) else None


def _in(value: str) -> str | None:
    return str(_stdnum("in_.gstin").compact(value)) if _stdnum("in_.gstin").is_valid(value) else None


def _ca(value: str) -> str | None:
    return str(_stdnum("ca.bn").compact(value)) if _stdnum("ca.bn").is_valid(value) else None


NATIONAL_VALIDATORS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "GB": ("gb_vat", _gb),
    "NO": ("no_orgnr", _no),
    "CH": ("ch_uid", _ch),
    "AU": ("au_abn", _au),
    "NZ": ("nz_ird", _nz),
    "SG": ("sg_uen", _sg),
    "JP": ("jp_cn", _jp),
    "IN": ("in_gstin", _in),
    "CA": ("ca_bn", _ca),
}


def check_tax_id(number: str, country: str) -> TaxIdCheck:
    """A customer's tax id checked against the scheme of its (tax) country."""
    tax_country = VAT_AREA_ALIASES.get(country.upper(), country.upper())
    if tax_country in EU_MEMBER_STATES:
        return check_eu_vat_number(number, tax_country)
    if tax_country not in NATIONAL_VALIDATORS:
        return TaxIdCheck(
            number, tax_country, "unknown", False, reason=f"kassa cannot validate tax ids of {tax_country}"
        )
    scheme, validate = NATIONAL_VALIDATORS[tax_country]
    compact = re.sub(r"[^0-9A-Z]", "", number.upper())
    try:
        normalized = validate(compact)
    except Exception:  # a validator bug must not break a quote
        normalized = None
    if normalized is None:
        return TaxIdCheck(number, tax_country, scheme, False, reason="format or check digit is not valid")
    return TaxIdCheck(number, tax_country, scheme, True, normalized=normalized)


def confirm_with_vies(check: TaxIdCheck, vies: ViesChecker | None) -> TaxIdCheck:
    """Ask VIES about a valid EU VAT number; never raises, never blocks beyond the checker's own wait."""
    if vies is None or not check.valid or check.scheme != "eu_vat" or check.normalized is None:
        return check
    try:
        answer = vies.check(check.normalized)
    except Exception:  # VIES being down must never stop billing
        answer = None
    if answer is None:
        return check
    if answer:
        return replace(check, vies_verified=True)
    return replace(check, valid=False, vies_verified=False, reason="VIES reports the number as not registered")
