"""Subscription analytics on the local stack: events → the analytics rule and queue → the analytics
function → monthly aggregates, read by GET /v1/reports/mrr; the rebuild gives the same numbers."""

from __future__ import annotations

import csv
import io
import json

import pytest
import requests

from kassa_local.cli import main
from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def _drain(api: Api) -> None:
    response = requests.post(api.base + "/_local/drain", timeout=120)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def history(stack_config) -> Api:
    """From 2026-01-31 09:00: A at €15/month; on 5 Feb B at 2 × €15 and A up to 3 (invoiced at once);
    on 10 Mar A cancels."""
    api = Api(stack_config)
    price = api.catalog("EUR", 1500)["id"]
    a = api.subscribe(price, "a.analytics@example.com")["subscription"]
    api.advance("5d")
    api.subscribe(price, "b.analytics@example.com", quantity=2)
    api.post(f"/v1/subscriptions/{a['id']}/change", {"quantity": 3, "proration_behavior": "always_invoice"})
    api.advance(to="2026-03-10T12:00:00Z")
    api.post(f"/v1/subscriptions/{a['id']}/cancel", {"at_period_end": False})
    _drain(api)
    return api


COLUMNS = ("month", "mrr", "new", "expansion", "contraction", "churn", "reactivation", "customers")
EXPECTED = [
    dict(zip(COLUMNS, row, strict=True))
    for row in (
        ("2026-01", 1500, 1500, 0, 0, 0, 0, 1),
        ("2026-02", 7500, 3000, 3000, 0, 0, 0, 2),  # B new at 3000; A from 1500 to 4500 on 5 Feb
        ("2026-03", 3000, 0, 0, 0, 4500, 0, 1),  # A's 4500 churns
    )
]


def test_the_mrr_report_shows_the_months_movements(history: Api) -> None:
    report = history.get("/v1/reports/mrr?from=2026-01&to=2026-03&currency=EUR")
    assert report["currency"] == "EUR"
    assert report["data"] == EXPECTED
    # the default reporting currency is the merchant's (EUR): the same figures
    assert history.get("/v1/reports/mrr?from=2026-01&to=2026-03")["data"] == EXPECTED


def test_the_other_reports_and_csv(history: Api) -> None:
    churn = history.get("/v1/reports/churn?from=2026-03&to=2026-03&currency=EUR")["data"][0]
    assert (churn["customers_start"], churn["churned_customers"], churn["logo_churn_rate"]) == (2, 1, "0.5000")
    assert churn["gross_revenue_churn_rate"] == "0.6000"  # 4500 of 7500
    ltv = history.get("/v1/reports/ltv?from=2026-03&to=2026-03&currency=EUR")
    assert ltv["data"][0]["arpu"] == 3000 and ltv["data"][0]["ltv"] == 6000  # 3000 ÷ 0.5
    cohorts = history.get("/v1/reports/cohorts?from=2026-01&to=2026-03&currency=EUR")["data"]
    assert [(c["cohort"], c["customers"]) for c in cohorts] == [("2026-01", 1), ("2026-02", 1)]
    response = history.request("GET", "/v1/reports/mrr?from=2026-01&to=2026-03&currency=EUR&format=csv", 200)
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["month"], r["mrr"], r["churn"], r["currency"]) for r in rows] == [
        ("2026-01", "1500", "0", "EUR"),
        ("2026-02", "7500", "0", "EUR"),
        ("2026-03", "3000", "4500", "EUR"),
    ]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("from=2026-03&to=2026-01", "from"),
        ("from=2026-1&to=2026-03", "from"),
        ("from=2026-01&to=2026-13", "to"),
        ("currency=XYZ", "currency"),
        ("format=xml", "format"),
        ("to=2026-3", "to"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(history: Api, query: str, param: str) -> None:
    body = history.request("GET", f"/v1/reports/mrr?{query}", 400).json()
    assert body["error"]["param"] == param


def test_the_default_range_is_the_twelve_months_up_to_to(history: Api) -> None:
    report = history.get("/v1/reports/mrr?to=2026-03&currency=EUR")
    assert (report["from"], report["to"], len(report["data"])) == ("2025-04", "2026-03", 12)
    assert report["data"][-3:] == EXPECTED and report["data"][0]["mrr"] == 0


def test_replayed_events_through_the_queue_change_nothing(history: Api, stack) -> None:
    """Every routed event sent to the analytics queue again, newest first, as SQS may redeliver them."""
    from infra import wiring

    routed = [e for e in stack.events() if e["detail-type"] in wiring.ANALYTICS_ROUTE.detail_types]
    assert len(routed) >= 8
    ddb, sqs = stack.client("dynamodb"), stack.client("sqs")
    key = {"pk": {"S": "ANMETA"}, "sk": {"S": "CURRENCIES"}}
    assert ddb.get_item(TableName="billing", Key=key)["Item"]["currencies"]["SS"] == ["EUR"]

    def versions() -> dict[str, str]:
        items = ddb.scan(
            TableName="billing",
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": "ANCUS#"}},
        )
        return {i["pk"]["S"]: i["version"]["N"] for i in items["Items"]}

    before = versions()
    url = sqs.get_queue_url(QueueName=wiring.ANALYTICS_QUEUE.name)["QueueUrl"]
    for envelope in reversed(routed):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(envelope))
    _drain(history)
    assert versions() == before  # nothing written
    assert history.get("/v1/reports/mrr?from=2026-01&to=2026-03&currency=EUR")["data"] == EXPECTED


def test_the_rebuild_gives_the_same_numbers(history: Api, stack) -> None:
    assert main(["--state-dir", str(stack.state_dir), "analytics", "rebuild"]) == 0
    assert history.get("/v1/reports/mrr?from=2026-01&to=2026-03&currency=EUR")["data"] == EXPECTED
    # what AWS runs: the analytics function invoked with {"action": "rebuild"}
    assert stack.invoke("analytics", {"action": "rebuild"})["customers"] >= 2
    assert history.get("/v1/reports/mrr?from=2026-01&to=2026-03&currency=EUR")["data"] == EXPECTED
    with pytest.raises(ValueError, match="rebuild"):
        stack.invoke("analytics", {"action": "drop"})
