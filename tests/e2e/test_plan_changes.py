"""Plan changes prorated to the second, previews, downgrades at period end and credit balance —
for a customer outside every registration (Oregon), so the amounts are Stripe's own examples."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}


def _price(api: Api, product: str, amount: int) -> str:
    body = {"product": product, "currency": "USD", "unit_amount": amount, "recurring": {"interval": "month"}}
    return str(api.post("/v1/prices", body, expect=201)["id"])


@pytest.fixture(scope="module")
def plans(stack_config) -> dict[str, str]:
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Plans"}, expect=201)["id"]
    return {"basic": _price(api, product, 1000), "pro": _price(api, product, 2000)}


def test_upgrading_halfway_with_always_invoice_charges_the_difference_at_once(api: Api, plans):
    # the module's stack starts on 2026-01-31 09:00: the first period ends 2026-02-28 09:00 (28 days)
    sub = api.subscribe(plans["basic"], "upgrade@example.com", address=OREGON)["subscription"]
    api.advance("14d")  # exactly halfway
    change = {"price_id": plans["pro"], "proration_behavior": "always_invoice"}

    preview = api.post(f"/v1/subscriptions/{sub['id']}/preview", change)
    assert [line["amount"] for line in preview["invoice"]["lines"]] == [-500, 1000]  # Stripe: −$5 + $10
    assert preview["invoice"]["amount_due"] == 500
    assert api.get(f"/v1/subscriptions/{sub['id']}")["price"] == plans["basic"]  # a preview changes nothing

    done = api.post(f"/v1/subscriptions/{sub['id']}/change", change)
    assert done["subscription"]["price"] == plans["pro"]
    assert done["invoice"]["billing_reason"] == "subscription_update"
    assert [line["amount"] for line in done["invoice"]["lines"]] == [-500, 1000]
    assert (done["invoice"]["status"], done["invoice"]["amount_paid"]) == ("paid", 500)


def test_a_downgrade_scheduled_for_the_period_end_applies_at_renewal(api: Api, plans):
    sub = api.subscribe(plans["pro"], "downgrade@example.com", address=OREGON)["subscription"]
    change = {"price_id": plans["basic"], "schedule_downgrade_at_period_end": True}
    done = api.post(f"/v1/subscriptions/{sub['id']}/change", change)
    assert done["invoice"] is None
    assert done["subscription"]["price"] == plans["pro"]
    effective = datetime.fromisoformat(done["subscription"]["scheduled_change"]["effective_at"])
    assert effective == datetime.fromisoformat(sub["current_period_end"])
    api.advance("32d")
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    assert current["price"] == plans["basic"] and current["scheduled_change"] is None
    renewal = api.get(f"/v1/invoices/{current['latest_invoice']}")
    assert [line["amount"] for line in renewal["lines"]][-1] == 1000 and renewal["amount_paid"] >= 1000


def test_create_prorations_wait_for_the_next_invoice(api: Api, plans):
    sub = api.subscribe(plans["basic"], "quantity@example.com", address=OREGON)["subscription"]
    done = api.post(f"/v1/subscriptions/{sub['id']}/change", {"quantity": 3})
    assert done["invoice"] is None
    pending = done["subscription"]["pending_lines"]
    assert len(pending) == 2 and pending[0]["amount"] < 0 < pending[1]["amount"]
    preview = api.post(f"/v1/subscriptions/{sub['id']}/preview", {"quantity": 3})
    upcoming = preview["upcoming_invoice"]
    assert upcoming["lines"][-1]["amount"] == 3000  # the next period at the new quantity
    api.advance("32d")
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = api.get(f"/v1/invoices/{current['latest_invoice']}")
    amounts = [line["amount"] for line in renewal["lines"]]
    assert amounts[:2] == [p["amount"] for p in pending] and amounts[-1] == 3000
    assert renewal["status"] == "paid" and renewal["amount_paid"] == sum(amounts)
    assert current["pending_lines"] == []


def test_a_downgrade_invoiced_now_becomes_credit_used_by_the_next_renewal(api: Api, plans):
    sub = api.subscribe(plans["pro"], "credit@example.com", address=OREGON)["subscription"]
    done = api.post(
        f"/v1/subscriptions/{sub['id']}/change", {"price_id": plans["basic"], "proration_behavior": "always_invoice"}
    )
    invoice = done["invoice"]
    assert invoice["total"] < 0 and invoice["amount_due"] == 0 and invoice["status"] == "paid"
    customer = api.get(f"/v1/customers/{sub['customer']}")
    assert customer["balance"] == invoice["total"] and customer["balance_currency"] == "USD"
    api.advance("32d")
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = api.get(f"/v1/invoices/{current['latest_invoice']}")
    assert renewal["starting_balance"] == invoice["total"]
    assert renewal["amount_due"] == max(0, renewal["total"] + invoice["total"])
    assert api.get(f"/v1/customers/{sub['customer']}")["balance"] == min(0, renewal["total"] + invoice["total"])


def test_a_billing_cycle_anchor_chosen_at_checkout_prorates_until_it(api: Api, plans, stack):
    now = stack.clock.now()
    anchor = (now + timedelta(days=10)).replace(minute=0, second=0, microsecond=0)  # ten days on
    started = api.subscribe(
        plans["basic"], "anchored@example.com", address=OREGON, billing_cycle_anchor=anchor.isoformat()
    )
    sub, invoice = started["subscription"], started["invoice"]
    assert datetime.fromisoformat(sub["billing_cycle_anchor"]) == anchor
    assert datetime.fromisoformat(sub["current_period_end"]) == anchor
    [partial] = invoice["lines"]  # only the time until the anchor, prorated
    assert 0 < partial["amount"] < 1000 and invoice["status"] == "paid"
    naive = api.request(
        "POST",
        "/v1/checkout",
        json={
            "price_id": plans["basic"],
            "customer": {"email": "naive@example.com", "address": OREGON},
            "billing_cycle_anchor": "2030-01-01T00:00:00",
        },
    )
    assert naive.status_code == 400 and naive.json()["error"]["param"] == "billing_cycle_anchor"
    api.advance(to=(anchor + timedelta(hours=1)).isoformat())
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = api.get(f"/v1/invoices/{current['latest_invoice']}")
    assert datetime.fromisoformat(renewal["period_start"]) == anchor
    assert [line["amount"] for line in renewal["lines"]] == [1000]


def test_a_one_off_item_is_billed_on_the_next_invoice(api: Api, plans):
    sub = api.subscribe(plans["basic"], "oneoff@example.com", address=OREGON)["subscription"]
    item = {"amount": 250, "quantity": 2, "description": "setup fee"}
    updated = api.post(f"/v1/subscriptions/{sub['id']}/invoice_items", item, expect=201)
    assert [line["amount"] for line in updated["pending_lines"]] == [500]
    zero = api.request("POST", f"/v1/subscriptions/{sub['id']}/invoice_items", json={**item, "amount": 0})
    assert zero.status_code == 400 and zero.json()["error"]["param"] == "amount"
    api.advance("32d")
    latest = api.get(f"/v1/subscriptions/{sub['id']}")["latest_invoice"]
    renewal = api.get(f"/v1/invoices/{latest}")
    assert [(line["description"], line["amount"]) for line in renewal["lines"]][0] == ("setup fee", 500)
    assert renewal["amount_paid"] == 1500
