"""Tax: place-of-supply rules, effective-dated rates with sources, quotes and reports. Pure domain.

    from kassa.domain.tax import TaxSettings, TaxCustomer, TaxLineInput, quote_tax

    quote = quote_tax(
        [TaxLineInput(amount=10000)],
        currency="EUR",
        customer=TaxCustomer(address=Address(country="FI")),
        settings=TaxSettings(home_country="NL", oss_registered=True),
        tax_date=date(2024, 9, 1),
    )
    quote.tax_amount  # 2550 (Finland 25.5%, declared through the OSS)

Rules and sources: docs/tax.md. Rates: ``data/rates.csv`` (package data).
"""

from kassa.domain.tax.engine import breakdown, combined_rate, compute_line, quote_tax
from kassa.domain.tax.model import (
    EU_REVERSE_CHARGE_MENTION,
    NONTAXABLE,
    SAAS,
    TAX_CODES,
    BreakdownRow,
    LineTax,
    RuleId,
    TaxComponent,
    TaxCustomer,
    TaxLineInput,
    TaxQuote,
    TaxRule,
    TaxSettings,
    tax_category,
)
from kassa.domain.tax.rates import (
    RateRow,
    RateTable,
    default_rates,
    format_percent,
    load_rates,
    parse_percent,
)
from kassa.domain.tax.report import (
    JurisdictionReport,
    JurisdictionReportRow,
    OssReturn,
    OssReturnRow,
    TaxedLine,
    jurisdiction_report,
    oss_return,
    render_jurisdiction_csv,
    render_oss_csv,
    taxed_lines,
)
from kassa.domain.tax.rules import Decision, decide
from kassa.domain.tax.territories import EU_MEMBER_STATES, Location, Territory, Treatment, locate
from kassa.domain.tax.vat_numbers import TaxIdCheck, ViesChecker, check_eu_vat_number, check_tax_id

__all__ = [
    "EU_MEMBER_STATES",
    "EU_REVERSE_CHARGE_MENTION",
    "NONTAXABLE",
    "SAAS",
    "TAX_CODES",
    "BreakdownRow",
    "Decision",
    "JurisdictionReport",
    "JurisdictionReportRow",
    "LineTax",
    "Location",
    "OssReturn",
    "OssReturnRow",
    "RateRow",
    "RateTable",
    "RuleId",
    "TaxComponent",
    "TaxCustomer",
    "TaxIdCheck",
    "TaxLineInput",
    "TaxQuote",
    "TaxRule",
    "TaxSettings",
    "TaxedLine",
    "Territory",
    "Treatment",
    "ViesChecker",
    "breakdown",
    "check_eu_vat_number",
    "check_tax_id",
    "combined_rate",
    "compute_line",
    "decide",
    "default_rates",
    "format_percent",
    "jurisdiction_report",
    "load_rates",
    "locate",
    "oss_return",
    "parse_percent",
    "quote_tax",
    "render_jurisdiction_csv",
    "render_oss_csv",
    "tax_category",
    "taxed_lines",
]
