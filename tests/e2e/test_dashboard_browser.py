"""The merchant dashboard in a real browser (Debian's chromium driven by Playwright) on the local stack:
signing in (with a dashboard user, and with the secret key, which the page never shows or keeps), the
overview's charts over a few months of billing, searching a customer, and changing a plan after its
preview. Screenshots are kept in tests/artefacts/ (ignored by git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts
from kassa.services import dashboard
from kassa_local.client import Api

pytestmark = pytest.mark.e2e

ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"
PASSWORD = "a long dashboard password"
EMAIL = "ops@shop.example"


def _price(api: Api, product: str, nickname: str, amount: int) -> dict:
    body = {"product": product, "currency": "EUR", "unit_amount": amount, "nickname": nickname}
    return api.post("/v1/prices", {**body, "recurring": {"interval": "month"}}, expect=201)


@pytest.fixture(scope="module")
def history(stack) -> dict:
    """Two months of a small shop: six subscribers, an upgrade, a quantity change and a cancellation."""
    api = Api(stack.config.as_json())
    product = api.post("/v1/products", {"name": "Roastery subscription"}, expect=201)["id"]
    starter, pro, team = (_price(api, product, n, a) for n, a in (("Starter", 1500), ("Pro", 4900), ("Team", 2900)))
    people = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"]
    subs = {}
    for n, name in enumerate(people):
        email = name.split()[0].lower() + "@example.com"
        started = api.subscribe((starter, pro)[n % 2]["id"], email)
        api.post(f"/v1/customers/{started['subscription']['customer']}", {"name": name})
        subs[name] = started["subscription"]
    api.advance(by="32d")
    api.post(f"/v1/subscriptions/{subs['Ada Lovelace']['id']}/change", {"price_id": pro["id"]})
    api.post(f"/v1/subscriptions/{subs['Alan Turing']['id']}/cancel", {})
    for name in ("Barbara Liskov", "Donald Knuth"):
        started = api.subscribe(team["id"], name.split()[0].lower() + "@example.com", quantity=2)
        api.post(f"/v1/customers/{started['subscription']['customer']}", {"name": name})
        subs[name] = started["subscription"]
    api.advance(by="31d")
    accounts = DynamoDashboardAccounts(stack.client("dynamodb"), stack.environment["BILLING_TABLE"])
    dashboard.add_user(accounts, EMAIL, PASSWORD, "full", stack.clock.now())
    return {"subs": subs, "prices": {"starter": starter, "pro": pro, "team": team}}


def _open(browser, stack):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(stack.config.dashboard_url)
    return page, problems


def test_a_user_signs_in_sees_the_charts_and_finds_a_customer(stack, browser, history):
    ARTEFACTS.mkdir(exist_ok=True)
    page, problems = _open(browser, stack)
    page.wait_for_selector("#signin-form")
    page.screenshot(path=str(ARTEFACTS / "dashboard-signin.png"))
    page.fill("#signin-email", EMAIL)
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-submit")
    page.wait_for_selector("#kpi-mrr")
    page.wait_for_selector("#revenue-value:not(:has-text('…'))")

    mrr = page.text_content("#kpi-mrr .value") or ""
    assert "€" in mrr and mrr.strip() not in ("€0.00", "€0"), mrr
    assert page.locator("#chart-mrr").bounding_box()["height"] > 100
    # Chart.js drew the three charts, over the report's months, with something in them
    drawn = page.evaluate(
        "['chart-mrr', 'chart-subscribers', 'chart-movements'].map(id => {"
        " const chart = Chart.getChart(document.getElementById(id));"
        " return chart ? [chart.config.type, chart.data.labels.length, chart.data.datasets.length,"
        " chart.data.datasets.some(d => d.data.some(v => v !== 0))] : null; })"
    )
    assert drawn == [["line", 12, 1, True], ["line", 12, 1, True], ["bar", 12, 5, True]], drawn
    assert page.text_content("#who-name") == EMAIL
    page.screenshot(path=str(ARTEFACTS / "dashboard-overview.png"), full_page=True)

    page.click("[data-nav=customers]")
    expect(page.locator("#list tr.row")).to_have_count(6)  # every customer, newest first
    page.fill("#customer-search", "hopp")
    page.click("#filters button[type=submit]")
    rows = page.locator("#list tr.row")
    expect(rows).to_have_count(1)
    assert "Grace Hopper" in (rows.first.text_content() or "")
    rows.first.click()
    page.wait_for_selector("#customer-name")
    assert page.text_content("#customer-name") == "Grace Hopper"
    assert "paid" in (page.text_content("#main") or "")  # her invoices
    page.screenshot(path=str(ARTEFACTS / "dashboard-customer.png"), full_page=True)

    # the lists' filters: the one canceled subscription, the invoices on the Team price
    page.click("[data-nav=subscriptions]")
    page.select_option("#filters select[name=status]", "canceled")
    page.click("#filters button[type=submit]")
    expect(page.locator("#list tr.row")).to_have_count(1)
    assert history["subs"]["Alan Turing"]["id"] in (page.text_content("#list") or "")
    page.click("[data-nav=invoices]")
    page.select_option("#filters select[name=price]", history["prices"]["team"]["id"])
    page.click("#filters button[type=submit]")
    expect(page.locator("#list tr.row")).to_have_count(4)  # two subscribers, two invoices each
    page.screenshot(path=str(ARTEFACTS / "dashboard-invoices.png"), full_page=True)
    assert not problems, problems


def test_signing_in_with_the_key_then_changing_a_plan_after_its_preview(stack, browser, history):
    page, problems = _open(browser, stack)
    page.wait_for_selector("#signin-form")
    page.click("#tab-key")
    page.fill("#signin-key", stack.api_secret_key)
    page.click("#signin-submit")
    page.wait_for_selector("#kpi-mrr")
    # the key is nowhere in the page, its storage or a cookie script could read
    assert stack.api_secret_key not in page.content()
    assert page.input_value("#signin-key") == ""
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    stored = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert stack.api_secret_key not in stored

    sub = history["subs"]["Grace Hopper"]
    page.goto(stack.config.dashboard_url + f"#/subscriptions/{sub['id']}")
    page.wait_for_selector("#change-plan:not([disabled])")
    page.click("#change-plan")
    page.select_option("#change-price", history["prices"]["team"]["id"])
    page.fill("#change-quantity", "3")
    page.click("#modal-secondary")  # Preview
    page.wait_for_selector("#preview-result")
    preview = page.text_content("#preview-result") or ""
    assert "€" in preview and (page.text_content("#preview-total") or "").strip()
    page.screenshot(path=str(ARTEFACTS / "dashboard-change-preview.png"))
    api = Api(stack.config.as_json())
    unchanged = api.get(f"/v1/subscriptions/{sub['id']}")
    assert unchanged["price"] == history["prices"]["pro"]["id"]  # a preview changes nothing

    page.click("#modal-confirm")
    page.wait_for_selector("#modal", state="hidden")
    page.wait_for_selector("#toast:not([hidden])")
    changed = api.get(f"/v1/subscriptions/{sub['id']}")
    assert (changed["price"], changed["quantity"]) == (history["prices"]["team"]["id"], 3)
    assert not problems, problems

    # the browser sends the cookie by itself, but without the CSRF header the API refuses the call
    refused = page.evaluate(
        "fetch('/v1/customers', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({email: 'forged@example.com', address: {country: 'NL'}})})"
        ".then(async r => [r.status, (await r.json()).error.code])"
    )
    assert refused == [403, "csrf_token_invalid"]
    assert api.get("/v1/customers?email=forged@example.com")["data"] == []

    page.click("#signout")
    page.wait_for_selector("#signin-form")
    # signed out: the API refuses the old session (the page's fetch sends the cookie)
    status = page.evaluate("fetch('/v1/customers').then(r => r.status)")
    assert status == 401


def test_a_read_only_user_sees_the_actions_disabled(stack, browser, history):
    accounts = DynamoDashboardAccounts(stack.client("dynamodb"), stack.environment["BILLING_TABLE"])
    dashboard.add_user(accounts, "viewer@shop.example", PASSWORD, "read_only", stack.clock.now())
    page, problems = _open(browser, stack)
    page.wait_for_selector("#signin-form")
    page.fill("#signin-email", "viewer@shop.example")
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-submit")
    page.wait_for_selector("#kpi-mrr")
    assert page.text_content("#who-role") == "Read only"

    page.goto(stack.config.dashboard_url + f"#/subscriptions/{history['subs']['Ada Lovelace']['id']}")
    page.wait_for_selector("#cancel")
    for action in ("#change-plan", "#pause", "#cancel"):
        assert page.locator(action).is_disabled(), action
    assert not problems, problems


def _sign_in_with_key(page, stack) -> None:
    page.wait_for_selector("#signin-form")
    page.click("#tab-key")
    page.fill("#signin-key", stack.api_secret_key)
    page.click("#signin-submit")
    page.wait_for_selector("#kpi-mrr")


def test_the_actions_pause_refund_link_cancel_and_a_declined_retry(stack, browser, history):
    api = Api(stack.config.as_json())
    page, problems = _open(browser, stack)
    _sign_in_with_key(page, stack)
    sub = history["subs"]["Donald Knuth"]

    page.goto(stack.config.dashboard_url + f"#/subscriptions/{sub['id']}")
    page.click("#pause")
    page.select_option("#pause-behavior", "void")
    page.click("#modal-confirm")
    page.wait_for_selector("#resume")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["pause_collection"]["behavior"] == "void"
    page.click("#resume")
    page.click("#modal-confirm")
    page.wait_for_selector("#pause")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["pause_collection"] is None

    # a part of a paid invoice refunded to the card
    paid = api.get(f"/v1/invoices?subscription={sub['id']}&status=paid")["data"][0]
    page.goto(stack.config.dashboard_url + f"#/invoices/{paid['id']}")
    page.click("#credit")
    page.fill("#credit-amount", "5.00")
    page.select_option("#credit-how", "refund")
    page.click("#modal-confirm")
    page.wait_for_selector("#modal", state="hidden")
    refunds = api.get(f"/v1/refunds?invoice={paid['id']}")["data"]
    assert [r["amount"] for r in refunds] == [500]

    # a card-update link for the customer, shown to copy
    page.goto(stack.config.dashboard_url + f"#/customers/{sub['customer']}")
    page.click("#card-link")
    page.click("#modal-confirm")
    page.wait_for_selector("#card-link-url")
    assert "/portal/card?token=" in (page.text_content("#card-link-url") or "")
    page.click("#modal-cancel")

    page.goto(stack.config.dashboard_url + f"#/subscriptions/{sub['id']}")
    page.click("#cancel")
    page.click("#modal-confirm")  # at the period end (the default)
    page.wait_for_selector("#toast:not([hidden])")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["cancel_at_period_end"] is True

    # an open invoice whose card declines: the retry's 402 is shown in the dialog, nothing changes
    started = api.subscribe(history["prices"]["starter"]["id"], "declined@example.com", card="4000000000000341")
    invoice = started["subscription"]["latest_invoice"]
    page.goto(stack.config.dashboard_url + f"#/invoices/{invoice}")
    page.click("#retry")
    page.click("#modal-confirm")
    page.wait_for_selector("#modal-error:not([hidden])")
    assert "declined" in (page.text_content("#modal-error") or "")
    assert api.get(f"/v1/invoices/{invoice}")["status"] == "open"
    page.screenshot(path=str(ARTEFACTS / "dashboard-retry-declined.png"))
    assert [p for p in problems if "402" not in p] == [], problems
