"""Which tax applies to a supply of digital services: the place-of-supply rules as code.

Every outcome is a ``Decision``: the taxing jurisdiction, the rate rows to charge (none: no tax),
whether the customer reverse-charges, and the rule (a stable id and one sentence) that decided it.
The order of the checks is the order of the rules in docs/tax.md:

1. exempt customer → no tax;                       2. nontaxable product → no tax;
3. special territory outside the EU VAT area → no EU VAT;
4. EU VAT area (Directive 2006/112/EC):
   domestic (customer in the seller's member state) → domestic VAT, B2B or B2C;
   business customer with a valid VAT number of another member state → reverse charge (Art. 44, 196);
   consumer (Art. 58: place of supply = customer) → customer's VAT via OSS or a local registration;
   EU seller without OSS below the €10,000 threshold (Art. 59c) → home VAT;
   seller outside the EU without OSS or local registration → not registered, no tax;
5. United States: sales tax of the state where SaaS is taxable and the seller is registered;
6. Canada: GST or HST, plus QST / PST / RST, each where the seller is registered;
7. other countries with rates (GB, NO, CH, AU, NZ, JP, SG, IN): local tax where registered; a
   non-resident seller does not charge a business customer there (reverse charge), except in
   Switzerland where a registered foreign supplier charges Swiss VAT to businesses too;
8. anywhere else → no tax rule, no tax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from kassa.domain.tax.model import (
    EU_REVERSE_CHARGE_MENTION,
    NONTAXABLE,
    RuleId,
    TaxCustomer,
    TaxRule,
    TaxSettings,
)
from kassa.domain.tax.rates import RateRow, RateTable, format_percent
from kassa.domain.tax.territories import EU_MEMBER_STATES, Location, Treatment
from kassa.domain.tax.vat_numbers import TaxIdCheck, ViesChecker, check_tax_id, confirm_with_vies

# Where a non-resident supplier does not charge tax to a registered business customer: the
# customer accounts for it (reverse charge / self-assessment). Switzerland is deliberately absent:
# a foreign supplier registered for Swiss VAT charges it to businesses as well.
B2B_REVERSE_CHARGE_COUNTRIES = frozenset({"GB", "NO", "AU", "NZ", "SG", "JP", "IN", "CA"})
TAX_NAMES = {
    "GB": "UK VAT",
    "NO": "Norwegian VAT",
    "CH": "Swiss VAT",
    "AU": "Australian GST",
    "NZ": "New Zealand GST",
    "SG": "Singapore GST",
    "JP": "Japanese consumption tax",
    "IN": "Indian IGST",
    "CA": "Canadian GST/HST",
}


@dataclass(frozen=True, slots=True)
class Decision:
    jurisdiction: str  # where the tax is due: "FI", "PT-20", "CA-QC", "US-TX", or the customer's place
    country: str  # its country
    rule: TaxRule
    rates: tuple[RateRow, ...] = ()  # the taxes to charge; empty: no tax
    reverse_charge: bool = False
    legal_mention: str | None = None
    vies_verified: bool | None = None


def _rule(rule_id: RuleId, description: str) -> TaxRule:
    return TaxRule(id=rule_id, description=description)


def describe_rates(rows: Sequence[RateRow]) -> str:
    parts = []
    for row in rows:
        text = f"{row.tax_type.replace('_', ' ')} {row.percent}%"
        if row.taxable_share != 1:
            text += f" on {format_percent(row.taxable_share)}% of the price"
        parts.append(text)
    return " + ".join(parts)


def check_customer_tax_id(
    customer: TaxCustomer, location: Location, settings: TaxSettings, vies: ViesChecker | None
) -> TaxIdCheck | None:
    """The customer's tax id, checked; VIES is asked only where it can change the outcome (a
    cross-border supply to a business in the EU VAT area)."""
    if not customer.tax_id or not customer.tax_id.strip():
        return None
    check = check_tax_id(customer.tax_id, location.tax_country)
    cross_border_eu = (
        location.tax_country in EU_MEMBER_STATES
        and not location.outside_eu_vat
        and location.tax_country != settings.home_tax_country
    )
    return confirm_with_vies(check, vies) if cross_border_eu else check


def decide(
    *,
    settings: TaxSettings,
    customer: TaxCustomer,
    location: Location,
    tax_id: TaxIdCheck | None,
    category: str,
    tax_code: str,
    on: date,
    rates: RateTable,
) -> Decision:
    jurisdiction, country = location.jurisdiction, location.tax_country
    if customer.tax_exempt:
        return Decision(jurisdiction, country, _rule(RuleId.CUSTOMER_EXEMPT, "The customer is tax-exempt: no tax."))
    if category == NONTAXABLE:
        return Decision(
            jurisdiction,
            country,
            _rule(RuleId.PRODUCT_NONTAXABLE, f"The product's tax code {tax_code!r} is not taxable: no tax."),
        )
    territory = location.territory
    if territory is not None and territory.treatment is Treatment.OUTSIDE_EU_VAT:
        return Decision(
            territory.code,
            territory.country,
            _rule(
                RuleId.OUTSIDE_EU_VAT_AREA,
                f"{territory.name} ({territory.country}) is outside the EU VAT area: no EU VAT charged; "
                f"{territory.local_tax}.",
            ),
        )
    if country in EU_MEMBER_STATES:
        return _eu(settings, location, tax_id, category, on, rates)
    if country == "US":
        return _us(settings, location, category, on, rates)
    if country == "CA":
        return _canada(settings, location, tax_id, category, on, rates)
    if rates.has(country, category):
        return _national(settings, location, tax_id, category, on, rates)
    return Decision(
        jurisdiction,
        country,
        _rule(RuleId.NO_TAX_RULE, f"kassa has no tax rules for {country}: no tax charged."),
    )


# ------------------------------------------------------------------ the EU VAT area
def _eu(
    settings: TaxSettings,
    location: Location,
    tax_id: TaxIdCheck | None,
    category: str,
    on: date,
    rates: RateTable,
) -> Decision:
    dest, jurisdiction, home = location.tax_country, location.jurisdiction, settings.home_tax_country
    where = dest
    if jurisdiction != dest:
        where = f"{dest} ({location.territory.name if location.territory else jurisdiction})"
    business = tax_id is not None and tax_id.valid
    invalid_note = ""
    if tax_id is not None and not tax_id.valid:
        invalid_note = f" The VAT number {tax_id.given!r} is not valid ({tax_id.reason}): treated as a consumer."

    if dest == home:
        rows = rates.rows_at(jurisdiction, on, category)
        who = "business customer" if business else "consumer"
        return Decision(
            jurisdiction,
            dest,
            _rule(RuleId.EU_DOMESTIC, f"Domestic supply in {where} to a {who}: {dest} {describe_rates(rows)}."),
            rows,
        )
    if business and tax_id is not None:
        verified = {
            True: "confirmed by VIES",
            None: "format and check digit valid, not confirmed by VIES",
        }[tax_id.vies_verified]
        return Decision(
            jurisdiction,
            dest,
            _rule(
                RuleId.EU_REVERSE_CHARGE,
                f"Business customer in {where} with VAT number {tax_id.normalized} ({verified}): place of supply "
                "is the customer's member state (Art. 44) and the customer accounts for the VAT (Art. 196, "
                "Directive 2006/112/EC): reverse charge, no VAT charged.",
            ),
            reverse_charge=True,
            legal_mention=EU_REVERSE_CHARGE_MENTION,
            vies_verified=tax_id.vies_verified,
        )
    consumer = (
        f"Consumer in {where}: digital services are taxed where the customer belongs (Art. 58, Directive 2006/112/EC)"
    )
    if settings.oss_registered:
        rows = rates.rows_at(jurisdiction, on, category)
        return Decision(
            jurisdiction,
            dest,
            _rule(RuleId.EU_OSS, f"{consumer}; {dest} {describe_rates(rows)}, declared through the OSS.{invalid_note}"),
            rows,
        )
    if dest in settings.registrations:
        rows = rates.rows_at(jurisdiction, on, category)
        return Decision(
            jurisdiction,
            dest,
            _rule(
                RuleId.EU_LOCAL_REGISTRATION,
                f"{consumer}; {dest} {describe_rates(rows)}, declared under the seller's {dest} VAT registration."
                f"{invalid_note}",
            ),
            rows,
        )
    if settings.eu_established:
        if settings.eu_threshold_exceeded:
            rows = rates.rows_at(jurisdiction, on, category)
            return Decision(
                jurisdiction,
                dest,
                _rule(
                    RuleId.EU_OVER_THRESHOLD,
                    f"{consumer}; the seller's EU cross-border sales exceed the €10,000 threshold (Art. 59c), so "
                    f"{dest} {describe_rates(rows)} is due: declare it through the OSS or a {dest} VAT registration."
                    f"{invalid_note}",
                ),
                rows,
            )
        rows = rates.rows_at(home, on, category)
        return Decision(
            home,
            home,
            _rule(
                RuleId.EU_BELOW_THRESHOLD,
                f"Consumer in {where}: the seller is not registered for the OSS and stays below the €10,000 "
                f"EU-wide threshold (Art. 59c, Directive 2006/112/EC), so the seller's home VAT applies: "
                f"{home} {describe_rates(rows)}.{invalid_note}",
            ),
            rows,
        )
    return Decision(
        jurisdiction,
        dest,
        _rule(
            RuleId.NOT_REGISTERED,
            f"{consumer}, but the seller, established outside the EU, is not registered for EU VAT (neither "
            f"the OSS non-union scheme nor a {dest} registration): no tax charged.{invalid_note}",
        ),
    )


# ------------------------------------------------------------------ United States
def _us(settings: TaxSettings, location: Location, category: str, on: date, rates: RateTable) -> Decision:
    jurisdiction = location.jurisdiction
    rows = rates.rows_at(jurisdiction, on, category)
    if not rows:
        return Decision(
            jurisdiction, "US", _rule(RuleId.NO_TAX_RULE, f"kassa has no sales tax data for {jurisdiction}: no tax.")
        )
    taxable = tuple(row for row in rows if row.taxable and row.rate > 0)
    if not taxable:
        note = "; ".join(row.note for row in rows if row.note)
        return Decision(
            jurisdiction,
            "US",
            _rule(RuleId.NOT_TAXABLE, f"{jurisdiction}: SaaS is not subject to state sales tax ({note}): no tax."),
        )
    if not settings.registered_in(jurisdiction):
        return Decision(
            jurisdiction,
            "US",
            _rule(
                RuleId.NOT_REGISTERED,
                f"{jurisdiction}: SaaS is taxable ({describe_rates(taxable)}) but the seller is not registered "
                f"there: no tax charged.",
            ),
        )
    return Decision(
        jurisdiction,
        "US",
        _rule(
            RuleId.REGISTERED,
            f"{jurisdiction}: the seller is registered; state {describe_rates(taxable)} "
            "(simplified: state-level base rate only, no local rates).",
        ),
        taxable,
    )


# ------------------------------------------------------------------ Canada
def _canada(
    settings: TaxSettings,
    location: Location,
    tax_id: TaxIdCheck | None,
    category: str,
    on: date,
    rates: RateTable,
) -> Decision:
    jurisdiction = location.jurisdiction
    provincial = rates.rows_at(jurisdiction, on, category)
    hst = tuple(row for row in provincial if row.tax_type == "HST")
    federal = hst or rates.rows_at("CA", on, category)
    others = () if hst else provincial
    foreign_business = tax_id is not None and tax_id.valid and settings.home_tax_country != "CA"
    charged: list[RateRow] = []
    notes: list[str] = []
    federal_name = "HST" if hst else "GST"
    if foreign_business:
        notes.append(
            f"{federal_name} not charged to a business customer with business number "
            f"{tax_id.normalized if tax_id else ''} (the customer self-assesses)"
        )
    elif settings.registered_in("CA"):
        charged.extend(federal)
    else:
        notes.append(f"{federal_name} not charged: the seller is not registered for GST/HST")
    for row in others:
        if settings.registered_in(jurisdiction):
            charged.append(row)
        else:
            notes.append(f"{row.tax_type} not charged: the seller is not registered in {jurisdiction}")
    note = ("; " + "; ".join(notes)) if notes else ""
    if charged:
        return Decision(
            jurisdiction,
            "CA",
            _rule(RuleId.REGISTERED, f"{jurisdiction}: the seller is registered: {describe_rates(charged)}{note}."),
            tuple(charged),
        )
    if foreign_business:
        return Decision(
            jurisdiction,
            "CA",
            _rule(RuleId.B2B_REVERSE_CHARGE, f"{jurisdiction}: no tax charged{note}."),
            reverse_charge=True,
            legal_mention=f"Reverse charge: {federal_name} to be self-assessed by the recipient.",
        )
    return Decision(jurisdiction, "CA", _rule(RuleId.NOT_REGISTERED, f"{jurisdiction}: no tax charged{note}."))


# ------------------------------------------------------------------ other countries
def _national(
    settings: TaxSettings,
    location: Location,
    tax_id: TaxIdCheck | None,
    category: str,
    on: date,
    rates: RateTable,
) -> Decision:
    country = location.tax_country
    jurisdiction = country
    name = TAX_NAMES.get(country, f"{country} tax")
    where = country if location.country == country else f"{country} ({location.country})"
    if location.territory is not None:
        where = f"{country} ({location.territory.name}: {location.territory.local_tax})"
    rows = rates.rows_at(jurisdiction, on, category)
    established = settings.home_tax_country == country
    if tax_id is not None and tax_id.valid and not established and country in B2B_REVERSE_CHARGE_COUNTRIES:
        return Decision(
            jurisdiction,
            country,
            _rule(
                RuleId.B2B_REVERSE_CHARGE,
                f"Business customer in {where} with tax id {tax_id.normalized}: a non-resident supplier does not "
                f"charge {name}; the customer accounts for it (reverse charge).",
            ),
            reverse_charge=True,
            legal_mention=f"Reverse charge: {name} to be accounted for by the recipient.",
        )
    if not settings.registered_in(jurisdiction):
        return Decision(
            jurisdiction,
            country,
            _rule(
                RuleId.NOT_REGISTERED,
                f"Customer in {where}: the seller is not registered for {name}: no tax charged.",
            ),
        )
    return Decision(
        jurisdiction,
        country,
        _rule(RuleId.REGISTERED, f"Customer in {where}: the seller is registered for {name}: {describe_rates(rows)}."),
        rows,
    )
