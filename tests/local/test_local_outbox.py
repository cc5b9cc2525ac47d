"""The local outbox: SES sender identities verified on moto, the outbox page and its JSON, one email's
HTML and text, what moto's SES recorded, and the environment the dunning function needs."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
import requests

from infra import wiring
from kassa.adapters.outbox import DynamoOutbox
from kassa.adapters.ses import SesMailer
from kassa.domain.errors import InvalidInput
from kassa.services.ports import OutgoingEmail
from kassa_local.aws import PUBLIC_URL_PENDING
from kassa_local.stack import LocalStack


def _deliver(stack: LocalStack, customer: str, subject: str, n: int = 1) -> OutgoingEmail:
    """What the notification service does: claim, send through SES, mark sent."""
    mail = OutgoingEmail(
        key=f"in_{customer}:payment_failed:{n}",
        template="payment_failed",
        to=f"{customer}@example.org",
        customer=customer,
        locale="de-DE",
        subject=subject,
        html=f"<html><body><h1>Zahlung fehlgeschlagen</h1><p>Rechnung {n}</p></body></html>",
        text=f"Zahlung fehlgeschlagen\nRechnung {n}\n",
        created=stack.clock.now(),
    )
    outbox = DynamoOutbox(stack.client("dynamodb"), "billing")
    assert outbox.claim(mail) is None
    message_id = SesMailer(stack.client("ses")).send(mail, wiring.DEFAULT_EMAIL_FROM)
    outbox.mark_sent(mail.key, message_id, stack.clock.now())
    return mail


@pytest.fixture
def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:10]}"


def test_outbox_page_json_and_bodies(stack: LocalStack, customer: str) -> None:
    hostile = '<script>alert("x")</script> & Co'
    first = _deliver(stack, customer, "Ihre Rechnung", 1)
    second = _deliver(stack, customer, hostile, 2)
    api = stack.api_url

    listed = requests.get(f"{api}/_local/outbox.json", params={"customer": customer}, timeout=10)
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert [e["key"] for e in data] == [second.key, first.key]  # newest first (same second: by key)
    assert data[0]["status"] == "sent" and data[0]["subject"] == hostile
    assert {"key", "template", "to", "locale", "subject", "text", "html", "status", "created"} <= set(data[0])

    everything = requests.get(f"{api}/_local/outbox.json", timeout=10).json()["data"]
    assert {first.key, second.key} <= {e["key"] for e in everything}
    assert stack.outbox(customer) == data

    page = requests.get(f"{api}/_local/outbox", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page.text
    assert f'href="/_local/outbox/{quote(first.key, safe="")}"' in page.text
    assert first.to in page.text and "payment_failed" in page.text and "de-DE" in page.text

    body = requests.get(f"{api}/_local/outbox/{quote(first.key, safe='')}", timeout=10)
    assert body.status_code == 200 and body.text == first.html
    assert "script-src" not in body.headers["Content-Security-Policy"]  # default-src 'none': no scripts
    text = requests.get(f"{api}/_local/outbox/{quote(first.key, safe='')}", params={"format": "text"}, timeout=10)
    assert text.status_code == 200 and text.text == first.text
    assert text.headers["Content-Type"].startswith("text/plain")

    assert requests.get(f"{api}/_local/outbox/nothing-here", timeout=10).status_code == 404
    bad = requests.get(f"{api}/_local/outbox/{quote(first.key, safe='')}", params={"format": "pdf"}, timeout=10)
    assert bad.status_code == 400


def test_ses_recorded_the_messages(stack: LocalStack, customer: str) -> None:
    mail = _deliver(stack, customer, "Ihre Rechnung")
    sent = [m for m in stack.ses_sent_messages() if m["destinations"]["ToAddresses"] == [mail.to]]
    assert len(sent) == 1
    assert sent[0]["source"] == wiring.DEFAULT_EMAIL_FROM and sent[0]["subject"] == "Ihre Rechnung"
    record = DynamoOutbox(stack.client("dynamodb"), "billing").get(mail.key)
    assert record is not None and record.message_id == sent[0]["id"]


def test_only_the_verified_identities_may_send(stack: LocalStack, customer: str) -> None:
    identities = stack.client("ses").list_identities()["Identities"]
    assert {"billing@example.com", "example.com"} <= set(identities)
    mail = OutgoingEmail(
        key=f"k:{customer}",
        template="t",
        to="a@example.org",
        customer=None,
        locale="en",
        subject="s",
        html="<p>h</p>",
        text="t",
        created=stack.clock.now(),
    )
    with pytest.raises(InvalidInput):
        SesMailer(stack.client("ses")).send(mail, "billing@elsewhere.example")


def test_environment_has_the_public_and_stripe_js_urls(stack: LocalStack) -> None:
    import os

    assert os.environ[wiring.PUBLIC_URL_ENV] == stack.api_url != PUBLIC_URL_PENDING
    assert stack.environment[wiring.PUBLIC_URL_ENV] == stack.api_url
    assert stack.resolver is not None and stack.resolver.public_url() == stack.api_url
    assert stack.environment["KASSA_STRIPE_JS_URL"] == stack.config.stripe_js_url
    assert os.environ["KASSA_STRIPE_JS_URL"].endswith("/js.stripe.com/v3/")
