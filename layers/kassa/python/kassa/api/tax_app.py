"""The tax API: quotes for a hypothetical sale, and reports over finalized invoices.

Invoices themselves are taxed when they are built (kassa.services.tax, called by checkout and
renewal before finalization) with the same engine, the merchant's tax settings (PUT /v1/settings,
field ``tax``) and each product's tax code.
"""

from __future__ import annotations

from datetime import date as Date  # noqa: N812 - the request field is called `date`
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from kassa.adapters import container
from kassa.api.common import csv_response, new_app, query_date, wants_csv
from kassa.domain.catalog import TaxBehavior
from kassa.domain.countries import is_country_code
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.money import MAX_AMOUNT
from kassa.domain.tax import TaxCustomer, TaxLineInput
from kassa.domain.tax.report import (
    jurisdiction_report,
    oss_return,
    quarter_bounds,
    render_jurisdiction_csv,
    render_oss_csv,
)
from kassa.services.tax import reported_lines

app = new_app()


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: str = Field(min_length=2, max_length=2, description="the customer's country, ISO 3166-1 alpha-2")
    amount: StrictInt = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="minor units of the currency")
    currency: str = Field(min_length=3, max_length=3)
    postal_code: str | None = Field(default=None, max_length=20)
    state: str | None = Field(default=None, max_length=3, description="US state or Canadian province code")
    vat_id: str | None = Field(default=None, max_length=40)
    date: Date | None = Field(default=None, description="tax point; default: today (the clock)")
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    customer_type: Literal["business", "individual"] = "individual"
    tax_exempt: bool = False
    tax_code: str | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not is_country_code(value):
            raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {value!r}")
        return value.upper()


@app.post("/v1/tax/quote", tags=["tax"])
def quote(body: QuoteIn) -> dict[str, Any]:
    """The tax a sale would carry: jurisdiction, rate, rule and legal mention."""
    if body.customer_type == "business" and not body.vat_id:
        raise InvalidInput("a business customer needs its vat_id (tax id)", param="vat_id")
    settings = container.store().get_settings()
    result = container.tax_quoter()(
        [TaxLineInput(amount=body.amount, tax_behavior=body.tax_behavior, tax_code=body.tax_code)],
        currency=body.currency,
        customer=TaxCustomer(
            address=Address(country=body.country, postal_code=body.postal_code, state=body.state),
            tax_id=body.vat_id if body.customer_type == "business" else None,
            tax_exempt=body.tax_exempt,
        ),
        settings=settings.tax_settings(),
        tax_date=body.date or container.clocks.current().now().date(),
    )
    return {"object": "tax.quote", **result.model_dump(mode="json")}


def _int(name: str, low: int, high: int) -> int:
    raw = app.current_event.get_query_string_value(name) or ""
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer between {low} and {high}", param=name)
    return int(raw)


@app.get("/v1/tax/reports/jurisdictions", tags=["tax"])
def jurisdictions() -> Any:
    """Tax collected per jurisdiction over finalized invoices, net of credit notes (JSON, or format=csv)."""
    start, end = query_date(app, "from"), query_date(app, "to")
    store = container.store()
    lines = reported_lines(store.invoices_by_tax_date(start, end), store.credit_notes_by_tax_date(start, end))
    report = jurisdiction_report(
        lines, period_start=start, period_end=end, jurisdiction=app.current_event.get_query_string_value("jurisdiction")
    )
    if wants_csv(app):
        return csv_response(render_jurisdiction_csv(report), f"tax-{start}-{end}.csv")
    return {"object": "tax.report", **report.model_dump(mode="json")}


@app.get("/v1/tax/reports/oss", tags=["tax"])
def oss() -> Any:
    """The EU OSS quarterly return over finalized invoices, net of credit notes (JSON, or format=csv)."""
    year, quarter = _int("year", 2015, 2100), _int("quarter", 1, 4)
    start, end = quarter_bounds(year, quarter)
    store = container.store()
    lines = reported_lines(store.invoices_by_tax_date(start, end), store.credit_notes_by_tax_date(start, end))
    result = oss_return(lines, year=year, quarter=quarter)
    if wants_csv(app):
        return csv_response(render_oss_csv(result), f"oss-{year}-Q{quarter}.csv")
    return {"object": "tax.oss_return", **result.model_dump(mode="json")}
