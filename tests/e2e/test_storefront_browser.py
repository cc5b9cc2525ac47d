"""A person subscribing on the demo storefront in a real browser (Debian's chromium driven by
Playwright), with the test card typed into localstripe's Stripe.js shim."""

from __future__ import annotations

import pytest

from kassa_local.client import Api
from kassa_local.demo import seats_price

pytestmark = pytest.mark.e2e


def test_a_person_subscribes_on_the_storefront_with_the_test_card(api: Api, stack_config, browser, tmp_path):
    product = api.post("/v1/products", {"name": "Storefront coffee"}, expect=201)
    price = api.post(
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "EUR",
            "unit_amount": 1250,
            "recurring": {"interval": "month"},
            "nickname": "Browser plan",
        },
        expect=201,
    )
    page = browser.new_page()
    page.goto(stack_config["storefront_url"])
    page.locator(f"input[name=price][value={price['id']}]").check()
    page.fill("#email", "browser@example.com")
    page.fill("#name", "Browsing Person")
    card_inputs = page.locator("#card input")
    card_inputs.first.wait_for()
    for index, value in enumerate(["4242424242424242", "12", "34", "123", "75001"]):
        card_inputs.nth(index).fill(value)
    page.click("#subscribe")
    page.wait_for_function(
        "[' is ', 'rror'].some(t => document.getElementById('status').textContent.includes(t))", timeout=30_000
    )
    status = page.text_content("#status") or ""
    page.screenshot(path=str(tmp_path / "storefront.png"), full_page=True)
    assert "is active" in status, status

    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "active"
    assert sub["price"] == price["id"]
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "paid"
    # the storefront's default country is the Netherlands: 21% Dutch VAT on the exclusive price
    assert (invoice["subtotal"], invoice["tax"], invoice["amount_paid"]) == (1250, 263, 1513)


def test_a_team_buys_seven_seats_of_the_tiered_price(api: Api, stack_config, browser, tmp_path):
    # the seeded demo's seats price: 1–5 at 10.00 (+ 5.00 flat), 6–10 at 8.00, 11+ at 5.00, graduated
    price = seats_price(api)
    page = browser.new_page()
    page.goto(stack_config["storefront_url"])
    page.locator(f"input[name=price][value={price['id']}]").check()
    quantity = page.locator("#quantity")
    quantity.wait_for(state="visible")
    quantity.fill("12")  # 5000 + 500 + 5 × 800 + 2 × 500
    assert page.get_attribute("#quote-total", "data-amount") == "10500"
    quantity.fill("7")  # 5 × 10.00 + 5.00 + 2 × 8.00 = 71.00
    total = page.text_content("#quote-total") or ""
    assert page.get_attribute("#quote-total", "data-amount") == "7100"
    assert total.startswith("7 seats: ") and "71.00" in total and "per month" in total, total
    rows = page.locator("#quote-tiers tr")
    assert rows.count() == 3  # the header and two tiers
    cells = [[c.strip() for c in rows.nth(i).locator("td").all_text_contents()] for i in (1, 2)]
    assert [row[:3] for row in cells] == [["1", "1–5", "5"], ["2", "6–10", "2"]], cells
    assert "55.00" in cells[0][5] and "16.00" in cells[1][5], cells
    page.fill("#email", "team@example.com")
    page.fill("#name", "Team Lead")
    card_inputs = page.locator("#card input")
    card_inputs.first.wait_for()
    for index, value in enumerate(["4242424242424242", "12", "34", "123", "75001"]):
        card_inputs.nth(index).fill(value)
    page.screenshot(path=str(tmp_path / "storefront-seats.png"), full_page=True)
    page.click("#subscribe")
    page.wait_for_function(
        "[' is ', 'rror'].some(t => document.getElementById('status').textContent.includes(t))", timeout=30_000
    )
    status = page.text_content("#status") or ""
    page.screenshot(path=str(tmp_path / "storefront-seats-done.png"), full_page=True)
    assert "is active" in status, status

    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "active" and sub["quantity"] == 7
    assert [(item["price"], item["quantity"]) for item in sub["items"]["data"]] == [(price["id"], 7)]
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    [line] = invoice["lines"]
    assert [(t["quantity"], t["amount"]) for t in line["tiers"]] == [(5, 5500), (2, 1600)]
    # the amount the page showed, plus 21% Dutch VAT (the storefront's default country): 14.91
    assert (invoice["subtotal"], invoice["tax"], invoice["amount_paid"]) == (7100, 1491, 8591)
    assert invoice["status"] == "paid"
