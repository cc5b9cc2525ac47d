"""A person subscribing on the demo storefront in a real browser (Debian's chromium driven by
Playwright), typing the test card into localstripe's Stripe.js shim as people do: the number in
groups of four, a four-digit year or MM/YY; an expired card is refused on the page, a declined first
payment is shown as an error."""

from __future__ import annotations

import pytest

from kassa_local.client import Api
from kassa_local.demo import seats_price

pytestmark = pytest.mark.e2e

STATUS_SETTLED = (
    "[' is ', 'rror', 'declined', 'expired'].some(t => document.getElementById('status').textContent.includes(t))"
)


@pytest.fixture(scope="module")
def price(api_module: Api) -> dict:
    product = api_module.post("/v1/products", {"name": "Storefront coffee"}, expect=201)
    return dict(
        api_module.post(
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
    )


@pytest.fixture(scope="module")
def api_module(stack_config) -> Api:
    return Api(stack_config)


def _open(browser, stack_config, price, email: str):
    page = browser.new_page()
    page.goto(stack_config["storefront_url"])
    page.locator(f"input[name=price][value={price['id']}]").check()
    page.fill("#email", email)
    page.fill("#name", "Browsing Person")
    page.locator("#card input").first.wait_for()
    return page


def _type_card(page, keys: list[str]) -> None:
    """Click the number box and type, one key at a time; the shim moves the focus from box to box."""
    page.locator("#card input").first.click()
    for text in keys:
        page.keyboard.type(text, delay=15)


def _card_boxes(page) -> list[str]:
    return [page.locator("#card input").nth(i).input_value() for i in range(5)]


def _submit(page, shot) -> str:
    page.click("#subscribe")
    page.wait_for_function(STATUS_SETTLED, timeout=30_000)
    page.screenshot(path=str(shot), full_page=True)
    return page.text_content("#status") or ""


def test_a_person_subscribes_typing_the_card_with_spaces_and_a_four_digit_year(
    api: Api, stack_config, browser, price, tmp_path
):
    page = _open(browser, stack_config, price, "browser@example.com")
    _type_card(page, ["4242 4242 4242 4242", "12", "2034", "123", "75001"])
    # each part landed in its own box: the focus moved on only once the part was complete
    assert _card_boxes(page) == ["4242 4242 4242 4242", "12", "2034", "123", "75001"]
    status = _submit(page, tmp_path / "storefront.png")
    assert "is active" in status, status
    assert "ok" in (page.get_attribute("#status", "class") or "")

    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "active"
    assert sub["price"] == price["id"]
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "paid"
    # the storefront's default country is the Netherlands: 21% Dutch VAT on the exclusive price
    assert (invoice["subtotal"], invoice["tax"], invoice["amount_paid"]) == (1250, 263, 1513)


def test_an_expired_card_is_refused_on_the_page(api: Api, stack_config, browser, price, tmp_path):
    page = _open(browser, stack_config, price, "expired@example.com")
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    _type_card(page, ["4242 4242 4242 4242", "01", "2021", "123", "75001"])
    assert _card_boxes(page)[1:3] == ["01", "2021"]
    status = _submit(page, tmp_path / "storefront-expired.png")
    assert "The card has expired (01/2021)" in status, status
    assert "error" in (page.get_attribute("#status", "class") or "")
    assert posted == []  # checked on the page, before any checkout is created


def test_a_declined_first_payment_is_an_error_that_says_so(api: Api, stack_config, browser, price, tmp_path):
    page = _open(browser, stack_config, price, "declined@example.com")
    # MM/YY as one sequence: the month box moves on after "12", the slash is dropped from the year
    _type_card(page, ["4000 0000 0000 0341", "12/34", "123", "75001"])
    assert _card_boxes(page) == ["4000 0000 0000 0341", "12", "34", "123", "75001"]
    status = _submit(page, tmp_path / "storefront-declined.png")
    assert "Your card was declined" in status, status
    assert "is incomplete" not in status
    assert "error" in (page.get_attribute("#status", "class") or "")
    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "incomplete"
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "open"
    assert invoice["last_payment_error"]["code"] == "card_declined"


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


def _complete_3ds(page, *, success: bool = True) -> None:
    """localstripe's shim asks in a dialog, as the bank's 3-D Secure page would."""
    label = "Complete authentication" if success else "Fail authentication"
    page.get_by_role("button", name=label).click(timeout=30_000)


def test_a_card_that_asks_for_3ds_is_authenticated_at_checkout_and_the_first_payment_made(
    api: Api, stack_config, browser, price, tmp_path
):
    page = _open(browser, stack_config, price, "three-ds@example.com")
    completions: list[str] = []
    page.on("request", lambda r: completions.append(r.url.rsplit("/", 1)[-1]) if "/demo/checkout/" in r.url else None)
    _type_card(page, ["4000 0027 6000 3184", "12", "2034", "123", "75001"])
    page.click("#subscribe")
    _complete_3ds(page)  # saving the card (the SetupIntent asks too)
    _complete_3ds(page)  # the first payment, confirmed on-session with confirmCardPayment
    page.wait_for_function(STATUS_SETTLED, timeout=30_000)
    page.screenshot(path=str(tmp_path / "storefront-3ds.png"), full_page=True)
    status = page.text_content("#status") or ""
    assert "is active" in status, status
    assert completions == ["complete", "confirm_payment"]

    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "active"
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "paid" and invoice["amount_paid"] == 1513
    assert invoice["number"]  # numbered as it was paid


def test_a_failed_3ds_authentication_leaves_the_checkout_incomplete(api: Api, stack_config, browser, price, tmp_path):
    page = _open(browser, stack_config, price, "three-ds-fails@example.com")
    _type_card(page, ["4000 0027 6000 3184", "12", "2034", "123", "75001"])
    page.click("#subscribe")
    _complete_3ds(page)
    _complete_3ds(page, success=False)
    page.wait_for_function(STATUS_SETTLED, timeout=30_000)
    page.screenshot(path=str(tmp_path / "storefront-3ds-failed.png"), full_page=True)
    status = page.text_content("#status") or ""
    assert "not confirmed" in status and "error" in (page.get_attribute("#status", "class") or ""), status
    sub_id = status.split("Subscription ", 1)[1].split(" ", 1)[0]
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "incomplete"
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "open"
    assert invoice["last_payment_error"]["code"] == "payment_intent_authentication_failure"
