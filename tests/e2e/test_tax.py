"""Tax end to end: four customers subscribe and renew; their invoices carry the right tax; the
EU OSS return for the quarter adds up to those invoices."""

from __future__ import annotations

import csv
import io

import pytest
import requests

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

# An Irish seller registered for the EU One-Stop Shop, for Canadian GST/HST and Québec QST, and in
# California (where SaaS is not taxable).
SETTINGS = {
    "seller_name": "Irish SaaS Ltd",
    "seller_address": {"country": "IE"},
    "invoice_prefix": "IESAAS",
    "tax": {"home_country": "IE", "oss_registered": True, "registrations": ["CA", "CA-QC", "US-CA"]},
}
GERMAN_VAT = "DE136695976"  # passes the German check digit (python-stdnum)


def _price(api: Api, currency: str) -> str:
    product = api.post("/v1/products", {"name": f"Cloud storage ({currency})"}, expect=201)
    price = api.post(
        "/v1/prices",
        {"product": product["id"], "currency": currency, "unit_amount": 1000, "recurring": {"interval": "month"}},
        expect=201,
    )
    return str(price["id"])


@pytest.fixture(scope="module")
def invoices(stack, stack_config) -> dict[str, list[dict]]:
    api = Api(stack_config)
    api.request("PUT", "/v1/settings", expect=200, json=SETTINGS)
    eur, usd, cad = _price(api, "EUR"), _price(api, "USD"), _price(api, "CAD")
    customers = {
        "nl": api.subscribe(eur, "nl-consumer@example.com", address={"country": "NL"}),
        "de": api.subscribe(eur, "de-business@example.com", address={"country": "DE"}, tax_id=GERMAN_VAT),
        "ca": api.subscribe(usd, "californian@example.com", address={"country": "US", "state": "CA"}),
        "qc": api.subscribe(cad, "quebecois@example.com", address={"country": "CA", "state": "QC"}),
    }
    assert {c["subscription"]["status"] for c in customers.values()} == {"active"}
    api.advance("29d")  # 2026-01-31 → the renewal on 2026-02-28
    return {
        key: sorted(
            api.get(f"/v1/customers/{c['subscription']['customer']}/invoices")["data"], key=lambda i: i["number"]
        )
        for key, c in customers.items()
    }


def test_each_customer_paid_a_first_invoice_and_a_renewal(invoices):
    for key, found in invoices.items():
        assert [i["status"] for i in found] == ["paid", "paid"], key
        assert [i["billing_reason"] for i in found] == ["subscription_create", "subscription_cycle"], key


def test_a_dutch_consumer_pays_dutch_vat_through_the_oss(invoices):
    for invoice in invoices["nl"]:
        assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (1000, 210, 1210)
        assert invoice["tax_rule"] == "eu_b2c_oss"
        assert invoice["lines"][0]["tax_rate"] == "21" and invoice["lines"][0]["tax_jurisdiction"] == "NL"
        assert invoice["tax_note"] is None


def test_a_german_business_with_a_valid_vat_number_is_reverse_charged(invoices):
    for invoice in invoices["de"]:
        assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (1000, 0, 1000)
        assert invoice["tax_rule"] == "eu_reverse_charge"
        assert invoice["customer_tax_id"] == GERMAN_VAT
        assert "Article 196" in invoice["tax_note"]


def test_a_californian_pays_no_tax_on_saas(invoices):
    for invoice in invoices["ca"]:
        assert (invoice["currency"], invoice["subtotal"], invoice["tax"]) == ("USD", 1000, 0)
        assert invoice["tax_rule"] == "not_taxable"


def test_a_quebec_customer_pays_gst_and_qst(invoices):
    for invoice in invoices["qc"]:
        assert (invoice["currency"], invoice["subtotal"], invoice["tax"], invoice["total"]) == ("CAD", 1000, 150, 1150)
        components = {(row["jurisdiction"], row["rate"], row["tax_amount"]) for row in invoice["tax_breakdown"]}
        assert components == {("CA", "5", 50), ("CA-QC", "9.975", 100)}


def test_the_oss_return_for_the_quarter_adds_up_to_the_invoices(api: Api, invoices):
    oss = api.get("/v1/tax/reports/oss", params={"year": 2026, "quarter": 1})
    rows = [r for r in oss["rows"]]
    oss_invoices = [i for found in invoices.values() for i in found if i["tax_rule"] == "eu_b2c_oss"]
    assert len(oss_invoices) == 2
    assert sum(r["taxable_amount"] for r in rows) == sum(i["subtotal"] for i in oss_invoices) == 2000
    assert sum(r["vat_amount"] for r in rows) == sum(i["tax"] for i in oss_invoices) == 420
    assert {(r["member_state"], r["rate"]) for r in rows} == {("NL", "21")}

    csv_text = requests.get(
        api.base + "/v1/tax/reports/oss",
        params={"year": 2026, "quarter": 1, "format": "csv"},
        headers=api.session.headers,
        timeout=30,
    )
    assert csv_text.status_code == 200 and csv_text.headers["Content-Type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(csv_text.text)))
    assert [
        (r["member_state_of_consumption"], r["vat_rate"], r["taxable_amount_eur"], r["vat_amount_eur"]) for r in parsed
    ] == [("NL", "21", "20.00", "4.20"), ("TOTAL", "", "20.00", "4.20")]


def test_the_jurisdiction_report_lists_every_tax_charged(api: Api, invoices):
    report = api.get("/v1/tax/reports/jurisdictions", params={"from": "2026-01-01", "to": "2026-03-31"})
    taxed = {(r["jurisdiction"], r["rate"]): r["tax_amount"] for r in report["rows"] if r["tax_amount"]}
    assert taxed == {("NL", "21"): 420, ("CA", "5"): 100, ("CA-QC", "9.975"): 200}
    bad = api.request("GET", "/v1/tax/reports/jurisdictions", params={"from": "2026-13-01", "to": "2026-03-31"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"


def test_a_quote_applies_the_rate_in_force_at_the_tax_point(api: Api, invoices):
    before = api.post("/v1/tax/quote", {"country": "FI", "amount": 10000, "currency": "EUR", "date": "2024-08-31"})
    after = api.post("/v1/tax/quote", {"country": "FI", "amount": 10000, "currency": "EUR", "date": "2024-09-01"})
    assert (before["rate"], before["tax_amount"]) == ("24", 2400)
    assert (after["rate"], after["tax_amount"]) == ("25.5", 2550)
    business = api.request(
        "POST", "/v1/tax/quote", json={"country": "DE", "amount": 100, "currency": "EUR", "customer_type": "business"}
    )
    assert business.status_code == 400 and business.json()["error"]["param"] == "vat_id"
