"""A person subscribing with a bank account on the demo storefront in chromium: the IBAN form with the
SEPA mandate text (the merchant's name and creditor identifier, the 8-week refund right, the notice
before each debit), localstripe's Stripe.js shim confirming the IBAN (``confirmSepaDebitSetup``,
``payment_method_data[type]=sepa_debit``), the first invoice processing and then paid."""

from __future__ import annotations

import os
import shutil

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

CREDITOR = "DE98ZZZ09999999999"  # the sepa_merchant fixture's (tests/e2e/conftest.py)
SETTLED = (
    "['processing', 'rror', 'not valid', 'Accept'].some(t => document.getElementById('status').textContent.includes(t))"
)


@pytest.fixture(scope="module")
def sepa_price(stack_config, sepa_merchant) -> dict:
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Koffie"}, expect=201)
    body = {"product": product["id"], "currency": "EUR", "unit_amount": 1250, "recurring": {"interval": "month"}}
    return dict(api.post("/v1/prices", {**body, "nickname": "Koffie per maand"}, expect=201))


def _open(browser, stack_config, price, email: str):
    page = browser.new_page()
    page.goto(stack_config["storefront_url"])
    page.locator(f"input[name=price][value={price['id']}]").check()
    page.fill("#email", email)
    page.fill("#name", "Daan de Vries")
    page.locator("#methods").wait_for()
    page.locator("input[name=method][value=sepa_debit]").check()
    return page


def test_the_iban_form_shows_the_mandate_and_the_first_debit_is_processing_then_paid(
    api: Api, stack, stack_config, browser, sepa_price, tmp_path
):
    page = _open(browser, stack_config, sepa_price, "daan@example.nl")
    assert page.is_visible("#iban-box") and not page.is_visible("#card-box")
    mandate = page.text_content("#mandate-text") or ""
    assert f"Koffie Club BV (creditor identifier {CREDITOR})" in mandate
    assert "within 8 weeks" in mandate and "at least 14 days before" in mandate
    assert page.input_value("#account-holder") == "Daan de Vries"
    page.fill("#iban", "de89 3704 0044 0532 0130 00")
    page.check("#mandate-ok")
    shot = tmp_path / "storefront-iban.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("KASSA_SCREENSHOT_DIR"):
        shutil.copy(shot, os.path.join(os.environ["KASSA_SCREENSHOT_DIR"], "storefront-iban.png"))
    page.click("#subscribe")
    page.wait_for_function(SETTLED, timeout=30_000)
    status = page.text_content("#status") or ""
    assert "processing" in status and "is active" in status, status
    raw = page.text_content("#raw") or ""
    assert '"attempt_outcome": "processing"' in raw
    customer = api.get(f"/v1/customers?email={'daan@example.nl'}")["data"][0]
    account = customer["default_payment_method"]
    assert (account["type"], account["last4"], account["country"]) == ("sepa_debit", "3000", "DE")
    assert account["mandate"]["reference"] and account["mandate"]["accepted_at"]
    assert account["mandate"]["ip_address"] == "127.0.0.1"
    assert "Chrome" in (account["mandate"]["user_agent"] or "")
    stack.drain()  # the bank settles; payment_intent.succeeded arrives
    [invoice] = api.get(f"/v1/customers/{customer['id']}/invoices")["data"]
    assert invoice["status"] == "paid"
    page.close()


def test_an_invalid_iban_or_an_unaccepted_mandate_is_refused_on_the_page(browser, stack_config, sepa_price):
    page = _open(browser, stack_config, sepa_price, "typo@example.nl")
    page.fill("#iban", "NL91 ABNA 0417 1643 01")  # one digit off: the check digits fail
    page.check("#mandate-ok")
    page.click("#subscribe")
    page.wait_for_function(SETTLED, timeout=10_000)
    assert "IBAN is not valid" in (page.text_content("#status") or "")
    page.fill("#iban", "NL91 ABNA 0417 1643 00")
    page.uncheck("#mandate-ok")
    page.click("#subscribe")
    page.wait_for_function("document.getElementById('status').textContent.includes('Accept')", timeout=10_000)
    assert "Accept the SEPA Direct Debit mandate" in (page.text_content("#status") or "")
    page.close()


def test_the_mandate_is_shown_in_the_language_chosen_and_the_customer_keeps_it(
    api: Api, stack, browser, stack_config, sepa_price
):
    page = _open(browser, stack_config, sepa_price, "sanne@example.nl")
    assert page.input_value("#locale") == "en"  # chromium's en-US
    page.select_option("#locale", "nl")
    page.wait_for_function("document.getElementById('mandate-text').lang === 'nl'", timeout=10_000)
    mandate = page.text_content("#mandate-text") or ""
    assert f"geeft u toestemming aan (A) Koffie Club BV (incassant-ID {CREDITOR})" in mandate
    assert "binnen 8 weken" in mandate and "minstens 14 dagen van tevoren" in mandate
    assert page.text_content("#mandate-accept-text") == "Ik ga akkoord met deze SEPA-incassomachtiging."
    page.fill("#iban", "NL91 ABNA 0417 1643 00")
    page.check("#mandate-ok")
    page.click("#subscribe")
    page.wait_for_function(SETTLED, timeout=30_000)
    assert "processing" in (page.text_content("#status") or "")
    customer = api.get("/v1/customers?email=sanne@example.nl")["data"][0]
    assert customer["preferred_locale"] == "nl"
    assert customer["default_payment_method"]["type"] == "sepa_debit"
    page.close()
