"""The customer portal in a real browser (Debian's chromium driven by Playwright) on the local stack:
the merchant's backend creates a session, the customer opens its URL once, sees their subscriptions
and invoices (PDF), changes plan with the prorated preview, cancels with a reason after the retention
coupon was offered once, updates the VAT number; another customer's ids are 404s, the session link
cannot be reused, a form without the CSRF token is refused, and sign-in by email answers the same
for every address. Screenshots go to tests/artefacts/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"


def _shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"portal-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def shop(stack, stack_config):
    """Two plans of one product and a retention coupon, allowed in the portal's settings."""
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Coffee club"}, expect=201)

    def price(amount: int, nickname: str) -> dict[str, Any]:
        body = {
            "product": product["id"],
            "currency": "EUR",
            "unit_amount": amount,
            "nickname": nickname,
            "recurring": {"interval": "month"},
        }
        return api.post("/v1/prices", body, expect=201)

    basic, premium = price(1000, "Basic"), price(2000, "Premium")
    api.post("/v1/coupons", {"id": "STAY25", "percent_off": 25, "duration": "repeating", "duration_in_months": 3}, 201)
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings["portal"] = {
        "subscription_update": {"products": {product["id"]: [basic["id"], premium["id"]]}},
        "subscription_cancel": {"retention_coupon": "STAY25"},
        "subscription_pause": {"enabled": True},
        "return_url_hosts": ["shop.example"],
    }
    api.request("PUT", "/v1/settings", json=settings, expect=200)
    return {"basic": basic, "premium": premium, "product": product}


def _session(api: Api, customer: str, return_url: str = "https://shop.example/account") -> dict[str, Any]:
    return api.post("/v1/portal/sessions", {"customer": customer, "return_url": return_url}, expect=201)


def test_a_customer_manages_their_subscription_in_the_portal(api: Api, stack, shop, browser):
    started = api.subscribe(shop["basic"]["id"], "portal-anna@example.nl", locale="en")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]
    first_invoice = api.get(f"/v1/subscriptions/{sub_id}")["latest_invoice"]
    api.advance(by="15d")  # halfway through the month: the change is prorated

    session = _session(api, customer)
    assert session["object"] == "billing_portal.session" and session["url"].startswith(stack.config.api_url)
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    response = page.goto(session["url"])
    assert response is not None and response.url.endswith("/portal/account")
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    cookie = next(c for c in context.cookies() if c["name"] == "kassa_portal")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    # subscriptions and invoices
    card = page.locator(f"#sub-{sub_id}")
    assert "Basic" in card.inner_text() and "Active" in card.inner_text()
    invoice_row = page.locator(f"tr[data-invoice='{first_invoice}']")
    assert "Paid" in invoice_row.inner_text()
    assert page.get_attribute("#return", "href") == "https://shop.example/account"
    _shot(page, "account")
    with page.expect_download() as download:
        invoice_row.locator("a[download]").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")

    # change plan: the preview shows the prorated amount before anything changes
    card.get_by_role("link", name="Change plan").click()
    page.check(f"input[value='{shop['premium']['id']}']")
    page.click("#preview")
    page.wait_for_selector("#proration")
    preview_text = page.inner_text("#proration")
    assert "Adjustment on your next invoice" in preview_text
    _shot(page, "change-preview")
    assert api.get(f"/v1/subscriptions/{sub_id}")["price"] == shop["basic"]["id"]  # nothing changed yet
    page.click("#confirm")
    assert "Your plan was changed." in page.inner_text("#notice")
    changed = api.get(f"/v1/subscriptions/{sub_id}")
    assert changed["price"] == shop["premium"]["id"]
    # the amount the preview showed is the proration the change made (Premium's rest − Basic's unused part)
    pending = sum(line["amount"] for line in changed["pending_lines"])
    assert pending > 0 and f"{pending / 100:.2f}" in preview_text.replace(",", ".")
    assert "Premium" in page.inner_text(f"#sub-{sub_id}")

    # cancel: the retention coupon is offered until it is answered; a reason is recorded; at the period end
    page.locator(f"#sub-{sub_id}").get_by_role("link", name="Cancel subscription").click()
    assert "25% off for the next 3 months" in page.inner_text("#offer")
    _shot(page, "cancel-offer")
    page.goto(page.url)  # opened and left without an answer: offered again
    assert page.locator("#offer").count() == 1
    page.check("input[value='too_expensive']")
    page.fill("#comment", "Lovely beans, but pricey")
    page.click("#confirm-cancel")
    assert "Your subscription was canceled." in page.inner_text("#notice")
    canceled = api.get(f"/v1/subscriptions/{sub_id}")
    assert canceled["status"] == "active" and canceled["cancel_at_period_end"] is True
    assert canceled["cancellation_details"]["feedback"] == "too_expensive"
    assert canceled["cancellation_details"]["comment"] == "Lovely beans, but pricey"
    assert "Cancels on" in page.inner_text(f"#sub-{sub_id}")
    _shot(page, "canceled")
    # the same domain events as the API's own routes
    assert api.wait_events("customer.subscription.updated", lambda e: e["detail"]["data"]["id"] == sub_id, count=2)
    # changed their mind: "Don't cancel" until the period ends
    page.locator(f"#sub-{sub_id}").get_by_role("button", name="Don't cancel").click()
    assert "Your subscription will continue." in page.inner_text("#notice")
    assert api.get(f"/v1/subscriptions/{sub_id}")["cancel_at_period_end"] is False
    # canceling after the offer declined it: not offered again
    page.locator(f"#sub-{sub_id}").get_by_role("link", name="Cancel subscription").click()
    assert page.locator("#offer").count() == 0
    page.goto(stack.config.api_url + "/portal/account")

    # billing details: a VAT number that does not fit the country is shown on the form, nothing saved
    page.click("#edit-details")
    page.fill("#tax_id", "DE123")
    page.click("#save-details")
    assert page.locator("#tax-id-problem").is_visible()
    _shot(page, "details-invalid-vat")
    assert api.get(f"/v1/customers/{customer}")["tax_id"] is None
    assert not violations, violations

    # signing out ends the session on the server: the old cookie, replayed, opens nothing
    cookie = next(c for c in context.cookies() if c["name"] == "kassa_portal")["value"]
    page.goto(stack.config.api_url + "/portal/account")
    page.click("#logout")
    assert page.url.endswith("/portal/login")
    assert not [c for c in context.cookies() if c["name"] == "kassa_portal"]
    replayed = requests.get(
        stack.config.api_url + "/portal/account",
        headers={"Cookie": f"kassa_portal={cookie}"},
        timeout=30,
        allow_redirects=False,
    )
    assert replayed.status_code == 401
    context.close()


def test_the_retention_offer_keeps_the_subscription(api: Api, shop, browser):
    started = api.subscribe(shop["basic"]["id"], "portal-ben@example.nl", locale="nl")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.goto(_session(api, customer)["url"])
    assert page.get_attribute("html", "lang") == "nl"
    assert "Actief" in page.inner_text(f"#sub-{sub_id}")
    _shot(page, "account-nl-phone")
    # pausing payments, allowed by these settings, and resuming them
    page.locator(f"#sub-{sub_id}").get_by_role("button", name="Betalingen pauzeren").click()
    assert "Gepauzeerd" in page.inner_text(f"#sub-{sub_id}")
    assert api.get(f"/v1/subscriptions/{sub_id}")["pause_collection"]["behavior"] == "void"
    page.locator(f"#sub-{sub_id}").get_by_role("button", name="Betalingen hervatten").click()
    assert api.get(f"/v1/subscriptions/{sub_id}")["pause_collection"] is None
    # the card page the portal leads to speaks Dutch too
    account = page.url
    page.goto(account.split("?", 1)[0].rstrip("/") + "/card")
    assert page.get_attribute("html", "lang") == "nl" and page.inner_text("#title") == "Uw kaart bijwerken"
    _shot(page, "card-nl-phone")
    page.goto(account)
    page.locator(f"#sub-{sub_id}").locator("a.danger").click()
    page.click("#accept-offer")
    _shot(page, "retained-nl")
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["discount"]["coupon"]["id"] == "STAY25" and sub["cancel_at_period_end"] is False
    # answered: the cancel page does not offer it again
    page.locator(f"#sub-{sub_id}").locator("a.danger").click()
    assert page.locator("#offer").count() == 0
    context.close()


def test_a_session_link_works_once_and_only_for_its_customer(api: Api, stack, shop, browser):
    mine = api.subscribe(shop["basic"]["id"], "portal-cleo@example.nl")["subscription"]
    other = api.subscribe(shop["basic"]["id"], "portal-dirk@example.nl")["subscription"]
    other_invoice = api.get(f"/v1/subscriptions/{other['id']}")["latest_invoice"]
    session = _session(api, mine["customer"])
    base = stack.config.api_url + "/portal/account"

    context = browser.new_context()
    page = context.new_page()
    page.goto(session["url"])
    for path in (
        f"/subscriptions/{other['id']}/change",
        f"/subscriptions/{other['id']}/cancel",
        f"/invoices/{other_invoice}",
        f"/invoices/{other_invoice}/pdf",
        "/subscriptions/sub_doesnotexist/cancel",
    ):
        response = page.request.get(base + path, max_redirects=0)
        assert response.status == 404, (path, response.status)
        assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
    # an action on another customer's subscription, even with this session's own CSRF token
    page.locator(f"#sub-{mine['id']}").locator("a.danger").click()
    csrf = page.get_attribute("#cancel-form input[name=csrf]", "value")
    answer = page.request.post(f"{base}/subscriptions/{other['id']}/cancel", form={"csrf": csrf or ""})
    assert answer.status == 404
    assert api.get(f"/v1/subscriptions/{other['id']}")["cancel_at_period_end"] is False
    # without the CSRF token, nothing changes
    answer = page.request.post(f"{base}/subscriptions/{mine['id']}/cancel", form={"reason": "unused"})
    assert answer.status == 403
    assert api.get(f"/v1/subscriptions/{mine['id']}")["cancel_at_period_end"] is False
    context.close()

    # the link was exchanged: a second browser cannot use it
    again = browser.new_context().new_page()
    response = again.goto(session["url"])
    assert response is not None and response.status == 403
    assert "already used" in again.inner_text("#title")
    _shot(again, "link-used")
    # no cookie, no account
    assert requests.get(base, timeout=30, allow_redirects=False).status_code == 401


def test_portal_sessions_validate_their_input(api: Api, shop):
    customer = api.subscribe(shop["basic"]["id"], "portal-eva@example.nl")["subscription"]["customer"]
    refused = api.post("/v1/portal/sessions", {"customer": customer, "return_url": "javascript:alert(1)"}, expect=400)
    assert refused["error"]["param"] == "return_url"
    refused = api.post("/v1/portal/sessions", {"customer": customer, "return_url": "https://evil.example/"}, 400)
    assert refused["error"]["param"] == "return_url"
    missing = api.post("/v1/portal/sessions", {"customer": "cus_nobody"}, expect=404)
    assert missing["error"]["param"] == "customer"
    body = {"portal": {"subscription_cancel": {"reasons": ["bored"]}}}
    bad = api.request("PUT", "/v1/settings", json=body, expect=400).json()
    assert "portal.subscription_cancel.reasons" in bad["error"]["param"]
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings["portal"]["subscription_update"]["products"] = {shop["product"]["id"]: ["price_missing"]}
    bad = api.request("PUT", "/v1/settings", json=settings, expect=400).json()
    assert bad["error"]["param"] == f"portal.subscription_update.products.{shop['product']['id']}[0]"


def test_sign_in_by_email_answers_the_same_and_sends_one_link(api: Api, stack, shop, browser):
    customer = api.subscribe(shop["basic"]["id"], "portal-finn@example.nl")["subscription"]["customer"]
    page = browser.new_context().new_page()
    answers = []
    for email in ("portal-finn@example.nl", "nobody-here@example.nl", "portal-finn@example.nl"):
        page.goto(stack.config.api_url + "/portal/login")
        page.fill("#email", email)
        page.click("#send-link")
        answers.append(page.inner_text("#login-sent"))
    assert answers[0] == answers[1] == answers[2]
    api.advance(by="1m")  # the notification queue delivers the request
    emails = [e for e in stack.outbox(customer) if e["template"] == "portal_login"]
    assert len(emails) == 1, emails  # one email per window, however often it is asked for
    link = next(word for word in emails[0]["text"].split() if "/portal/login/" in word)
    assert requests.get(link, timeout=30).status_code == 200  # a mail scanner fetching it uses nothing up
    page.goto(link)
    _shot(page, "sign-in-confirm")
    page.click("#continue")
    assert page.url.endswith("/portal/account")
    assert "portal-finn" in page.inner_text("#customer-name")


def test_a_confirm_after_the_merchant_changed_the_plan_shows_the_change_again(api: Api, shop, browser):
    """The customer previews Basic → Premium; meanwhile the merchant moves them to 2 × Basic through the
    API. The confirm is refused (409) with the change form and its reason, and nothing is changed
    past the merchant's change; a forged quantity is a 400 naming the field, the form marking it."""
    started = api.subscribe(shop["basic"]["id"], "portal-race@example.nl", locale="en")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]
    page = browser.new_context().new_page()
    page.goto(_session(api, customer)["url"])
    page.locator(f"#sub-{sub_id}").get_by_role("link", name="Change plan").click()
    page.check(f"input[value='{shop['premium']['id']}']")
    page.click("#preview")
    page.wait_for_selector("#proration")
    api.post(f"/v1/subscriptions/{sub_id}/change", {"quantity": 2, "proration_behavior": "none"})

    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#confirm")
    assert posted.value.status == 409
    assert "Your subscription changed in the meantime" in page.inner_text("body")
    _shot(page, "change-stale")
    after = api.get(f"/v1/subscriptions/{sub_id}")
    assert (after["price"], after["quantity"]) == (shop["basic"]["id"], 2)  # the merchant's change, only

    preview = page.request.get(
        page.url.split("/change")[0] + f"/preview?price={shop['premium']['id']}&quantity=abc",
        headers={"Accept": "application/json"},
    )
    assert preview.status == 400 and preview.json()["error"]["param"] == "quantity"
