"""The hosted invoice page on the local stack: the receipt email links it; the page shows the invoice
in the customer's language with the security headers of every /portal page; its PDF downloads; the
merchant API gives the same link as ``hosted_invoice_url``; an open invoice (a declined renewal) is
paid on the page in a real browser (Debian's chromium driven by Playwright), also with 3-D Secure;
a tampered, foreign or expired link is a 4xx page."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kassa.emails.render import format_money
from kassa_local.client import Api

pytestmark = pytest.mark.e2e

DECLINING_CARD = "4000000000000341"
THREE_D_SECURE_CARD = "4000002760003184"


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _email(stack, customer: str, template: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in stack.outbox(customer) if e["template"] == template]
        if found or time.monotonic() > deadline:
            assert found, f"no {template} email for {customer}"
            return found[0]
        stack.drain()
        time.sleep(0.2)


def _invoice_link(email: dict) -> str:
    return next(word for word in email["text"].split() if "/portal/invoices/" in word)


def _portal_headers(response: requests.Response) -> None:
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def receipt(stack, stack_config):
    """A paid checkout in Dutch and its receipt email."""
    api = Api(stack_config)
    price = api.catalog(currency="EUR", amount=1500)
    started = api.subscribe(price["id"], "factuur@example.nl", address={"country": "NL"}, locale="nl")
    invoice = api.get(f"/v1/invoices/{started['subscription']['latest_invoice']}")
    assert invoice["status"] == "paid"
    return api, invoice, _email(stack, invoice["customer"], "receipt")


def test_the_receipt_links_the_hosted_invoice_page_in_the_customers_language(stack_config, receipt):
    api, invoice, email = receipt
    link = _invoice_link(email)
    assert link.startswith(f"{stack_config['api_url']}/portal/invoices/")
    assert link in email["text"]

    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    _portal_headers(page)
    text = _text(page.text)
    assert '<html lang="nl">' in page.text
    assert f"Factuur {invoice['number']}" in text
    assert format_money(invoice["total"], "EUR", "nl") in page.text  # € 18,15: Dutch money
    assert "Betaald op" in text and "PDF downloaden" in text
    assert 'id="form"' not in page.text  # paid: no Pay button

    # the merchant API gives the same page (Stripe's fields)
    shown = api.get(f"/v1/invoices/{invoice['id']}")
    assert shown["hosted_invoice_url"].startswith(f"{stack_config['api_url']}/portal/invoices/")
    assert shown["invoice_pdf"] == shown["hosted_invoice_url"] + "/pdf"
    assert api.get(f"/v1/invoices/{invoice['id']}")["hosted_invoice_url"] == shown["hosted_invoice_url"]  # stable
    listed = api.get(f"/v1/customers/{invoice['customer']}/invoices")["data"]
    assert [i["hosted_invoice_url"] for i in listed] == [shown["hosted_invoice_url"]]
    assert requests.get(shown["hosted_invoice_url"], timeout=30).status_code == 200


def test_the_pdf_link_downloads_the_invoice_pdf(receipt):
    api, invoice, email = receipt
    pdf = requests.get(_invoice_link(email) + "/pdf", timeout=60)
    assert pdf.status_code == 200, pdf.text[:500]
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="{invoice["number"]}.pdf"'
    assert pdf.content.startswith(b"%PDF")
    _portal_headers(pdf)
    assert requests.get(api.get(f"/v1/invoices/{invoice['id']}")["invoice_pdf"], timeout=60).content == pdf.content


def test_a_tampered_or_foreign_link_is_a_4xx_page_never_a_500(stack_config, receipt):
    api, invoice, email = receipt
    base = stack_config["api_url"]
    link = _invoice_link(email)
    token = link.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    tampered = f"{payload}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
    for url in (f"{base}/portal/invoices/{tampered}", f"{base}/portal/invoices/{tampered}/pdf"):
        refused = requests.get(url, timeout=30, headers={"Accept-Language": "de-DE,de;q=0.9"})
        assert refused.status_code == 403 and "Dieser Link ist ungültig" in refused.text, refused.text[:300]
        _portal_headers(refused)
    assert requests.get(f"{base}/portal/invoices/not-a-token", timeout=30).status_code == 403
    assert requests.get(f"{base}/portal/invoices/session", timeout=30).status_code == 403
    session = requests.post(f"{base}/portal/invoices/session", json={"token": tampered}, timeout=30)
    assert session.status_code == 403 and session.json()["error"]["code"] == "link_invalid"

    # a card link does not open an invoice, and an invoice link does not open the card page
    card = api.post(f"/v1/customers/{invoice['customer']}/card_update_link", {}, expect=201)
    card_token = parse_qs(urlsplit(card["url"]).query)["token"][0]
    assert requests.get(f"{base}/portal/invoices/{card_token}", timeout=30).status_code == 403
    assert requests.get(f"{base}/portal/card", params={"token": token}, timeout=30).status_code == 403
    refused = requests.post(f"{base}/portal/card/session", json={"token": token}, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "link_invalid"
    refused = requests.post(f"{base}/portal/invoices/session", json={"token": card_token}, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "link_invalid"


def _declined_renewal(api: Api, stack, email: str, locale: str, card: str = DECLINING_CARD) -> tuple[dict, str]:
    """An open invoice: a trial whose card declines (or asks for 3-D Secure) when the trial ends."""
    price = api.catalog(currency="EUR", amount=2500, trial_days=3)
    started = api.subscribe(price["id"], email, card=card, address={"country": "DE"}, locale=locale)
    sub_id = started["subscription"]["id"]
    trial_end = _iso(started["subscription"]["trial_end"])
    api.advance(to=(trial_end + timedelta(hours=1)).isoformat())
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (sub["status"], invoice["status"]) == ("past_due", "open")
    template = "authentication_required" if card == THREE_D_SECURE_CARD else "payment_failed"
    _email(stack, invoice["customer"], template)
    return invoice, sub_id


def _fill_card(page, number: str) -> None:
    inputs = page.locator("#card input")
    inputs.first.wait_for()
    for index, value in enumerate([number, "12", "34", "123", "10115"]):
        inputs.nth(index).fill(value)


def test_an_open_invoice_is_paid_with_a_new_card_on_the_page(api: Api, stack, browser, tmp_path):
    invoice, sub_id = _declined_renewal(api, stack, "rechnung@example.de", "de")
    email = _email(stack, invoice["customer"], "payment_failed")
    link = _invoice_link(email)  # "Rechnung ansehen", next to the card link

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert f"Rechnung {invoice['number']}" in (page.text_content("#title") or "")
    assert format_money(invoice["amount_due"], "EUR", "de") in (page.text_content("#headline") or "")
    page.wait_for_selector("#form:not([hidden])")
    # a card that declines: said on the page, and another card can be tried at once
    _fill_card(page, DECLINING_CARD)
    page.click("#pay-button")
    page.wait_for_selector("#message.error", timeout=30_000)
    assert "Ihre Karte wurde abgelehnt" in (page.text_content("#message") or "")
    page.wait_for_selector("#pay-button:not([disabled])")
    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "open"
    _fill_card(page, "4242424242424242")
    page.screenshot(path=str(tmp_path / "invoice-open.png"), full_page=True)
    page.click("#pay-button")
    page.wait_for_selector("#thanks", timeout=30_000)  # reloaded from the server: paid
    assert "Vielen Dank" in (page.text_content("#thanks") or "")
    assert (page.text_content("#status") or "").strip() == "Bezahlt"
    assert "Bezahlt am" in (page.text_content("#subline") or "")
    assert page.locator("#pay-button").count() == 0
    page.screenshot(path=str(tmp_path / "invoice-paid.png"), full_page=True)
    assert not violations, violations

    paid = api.get(f"/v1/invoices/{invoice['id']}")
    assert paid["status"] == "paid" and paid["amount_paid"] == invoice["amount_due"]
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    assert api.get(f"/v1/customers/{invoice['customer']}")["default_payment_method"]["last4"] == "4242"


def test_a_3d_secure_renewal_is_confirmed_on_the_invoice_page(api: Api, stack, browser, tmp_path):
    """The renewal (off-session) needs authentication: the invoice page confirms the invoice's own
    PaymentIntent — no card to type, nothing charged twice."""
    invoice, sub_id = _declined_renewal(api, stack, "faktura@example.se", "sv", card=THREE_D_SECURE_CARD)
    link = api.get(f"/v1/invoices/{invoice['id']}")["hosted_invoice_url"]
    page = browser.new_page()
    page.goto(link)
    page.wait_for_selector("#form:not([hidden])")
    assert page.locator("#card").is_hidden()
    assert (page.text_content("#pay-button") or "").strip() == "Bekräfta betalningen"
    page.click("#pay-button")
    page.get_by_role("button", name="Complete authentication").click(timeout=30_000)
    page.wait_for_selector("#thanks", timeout=30_000)
    page.screenshot(path=str(tmp_path / "invoice-3ds-paid.png"), full_page=True)
    paid = api.get(f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["payment_intent"]) == ("paid", invoice["payment_intent"])
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"


def test_a_void_invoice_shows_void_and_an_expired_link_says_so(api: Api, stack, stack_config):
    """Last in the module: it moves the clock past the links' validity."""
    price = api.catalog(currency="EUR", amount=900)
    declined = api.subscribe(price["id"], "void@example.fr", card=DECLINING_CARD, locale="fr")
    invoice = declined["invoice"]
    api.post(f"/v1/invoices/{invoice['id']}/void", {})
    link = api.get(f"/v1/invoices/{invoice['id']}")["hosted_invoice_url"]
    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and "Cette facture a été annulée" in page.text and 'id="form"' not in page.text

    api.advance("32d")
    expired = requests.get(link, timeout=30, headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert expired.status_code == 403 and "Ce lien a expiré" in expired.text
    _portal_headers(expired)
    session = requests.post(
        f"{stack_config['api_url']}/portal/invoices/session", json={"token": link.rsplit("/", 1)[1]}, timeout=30
    )
    assert session.status_code == 403 and session.json()["error"]["code"] == "link_expired"
