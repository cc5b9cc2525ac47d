"""A person subscribing on the demo storefront in a real browser (Debian's chromium driven by
Playwright), with the test card typed into localstripe's Stripe.js shim."""

from __future__ import annotations

import pytest

from kassa_local.client import Api

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
