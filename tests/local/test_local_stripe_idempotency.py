"""The local Stripe honours ``Idempotency-Key`` as Stripe does (localstripe alone ignores it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kassa_local.localstripe_server import LocalStripe

SECRET = "sk_test_local_idempotency"


@pytest.fixture(scope="module")
def local_stripe() -> Iterator[LocalStripe]:
    server = LocalStripe(port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _post(server: LocalStripe, path: str, data: dict[str, Any], key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {SECRET}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(server.url + path, data=data, headers=headers, timeout=10)


def _count(kind: str) -> int:
    from localstripe.resources import store

    return sum(1 for name in store if name.startswith(f"{kind}:"))


@pytest.fixture
def paid_setup(local_stripe: LocalStripe) -> dict[str, str]:
    customer = _post(local_stripe, "/v1/customers", {"email": "idem@example.com"}).json()["id"]
    card = _post(
        local_stripe,
        "/v1/payment_methods",
        {
            "type": "card",
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    ).json()["id"]
    attached = _post(local_stripe, f"/v1/payment_methods/{card}/attach", {"customer": customer})
    assert attached.status_code == 200, attached.text
    return {"customer": customer, "payment_method": card}


def _intent_params(setup: dict[str, str], amount: int = 1500) -> dict[str, str]:
    return {
        "amount": str(amount),
        "currency": "eur",
        "customer": setup["customer"],
        "payment_method": setup["payment_method"],
        "off_session": "true",
        "confirm": "true",
        "metadata[kassa_invoice]": "in_test",
        "metadata[kassa_attempt]": "1",
    }


def test_same_key_same_parameters_creates_one_payment_intent_and_one_refund(
    local_stripe: LocalStripe, paid_setup: dict[str, str]
) -> None:
    intents, refunds = _count("payment_intent"), _count("refund")
    key = f"kassa-in_test-attempt-1-{uuid.uuid4().hex}"
    first = _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup), key)
    second = _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup), key)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["status"] == "succeeded"
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["Idempotency-Key"] == key
    assert _count("payment_intent") == intents + 1

    refund_key = f"kassa-refund-cn_{uuid.uuid4().hex}"
    params = {"payment_intent": first.json()["id"], "amount": "500"}
    refunded = [_post(local_stripe, "/v1/refunds", params, refund_key) for _ in range(3)]
    assert {r.status_code for r in refunded} == {200}, [r.text for r in refunded]
    assert len({r.json()["id"] for r in refunded}) == 1
    assert _count("refund") == refunds + 1


def test_same_key_other_parameters_or_endpoint_is_an_idempotency_error(
    local_stripe: LocalStripe, paid_setup: dict[str, str]
) -> None:
    intents = _count("payment_intent")
    key = f"key-{uuid.uuid4().hex}"
    assert _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup), key).status_code == 200
    other = _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup, amount=2500), key)
    assert other.status_code == 400, other.text
    assert other.json()["error"]["type"] == "idempotency_error"
    assert "same parameters" in other.json()["error"]["message"]
    elsewhere = _post(local_stripe, "/v1/customers", {"email": "x@example.com"}, key)
    assert elsewhere.status_code == 400
    assert elsewhere.json()["error"]["type"] == "idempotency_error"
    assert _count("payment_intent") == intents + 1
    assert local_stripe.idempotency.stats()["rejected"] >= 2


def test_the_stripe_sdk_gets_the_replay(local_stripe: LocalStripe, paid_setup: dict[str, str]) -> None:
    """What the Stripe adapter sends (stripe-python, form-encoded, its own headers) is replayed too,
    and other parameters under the key raise the SDK's IdempotencyError."""
    import stripe

    client = stripe.StripeClient(SECRET, base_addresses={"api": local_stripe.url}, max_network_retries=0)
    intents = _count("payment_intent")
    params: dict[str, Any] = {
        "amount": 1500,
        "currency": "eur",
        "customer": paid_setup["customer"],
        "payment_method": paid_setup["payment_method"],
        "off_session": True,
        "confirm": True,
        "metadata": {"kassa_invoice": "in_sdk", "kassa_attempt": "1"},
    }
    options: Any = {"idempotency_key": f"kassa-in_sdk-attempt-1-{uuid.uuid4().hex}"}
    first = client.v1.payment_intents.create(params, options)
    again = client.v1.payment_intents.create(params, options)
    assert again.id == first.id
    assert _count("payment_intent") == intents + 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create({**params, "amount": 1600}, options)


def test_without_a_key_or_on_reads_nothing_changes(local_stripe: LocalStripe, paid_setup: dict[str, str]) -> None:
    intents = _count("payment_intent")
    assert _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup)).status_code == 200
    assert _post(local_stripe, "/v1/payment_intents", _intent_params(paid_setup)).status_code == 200
    assert _count("payment_intent") == intents + 2  # localstripe itself never dedupes
    read = requests.get(
        f"{local_stripe.url}/v1/customers/{paid_setup['customer']}",
        headers={"Authorization": f"Bearer {SECRET}", "Idempotency-Key": "ignored-on-get"},
        timeout=10,
    )
    assert read.status_code == 200
    too_long = _post(local_stripe, "/v1/customers", {"email": "y@example.com"}, "k" * 256)
    assert too_long.status_code == 400


def test_a_declined_charge_is_replayed_not_charged_again(local_stripe: LocalStripe, paid_setup: dict[str, str]) -> None:
    """A 402 is the result of executing the request: Stripe saves it, so a retry does not charge again."""
    declining = _post(
        local_stripe,
        "/v1/payment_methods",
        {
            "type": "card",
            "card[number]": "4000000000000341",
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    ).json()["id"]
    assert _post(local_stripe, f"/v1/payment_methods/{declining}/attach", {"customer": paid_setup["customer"]}).ok
    intents = _count("payment_intent")
    params = {**_intent_params(paid_setup), "payment_method": declining}
    key = f"declined-{uuid.uuid4().hex}"
    first = _post(local_stripe, "/v1/payment_intents", params, key)
    second = _post(local_stripe, "/v1/payment_intents", params, key)
    assert first.status_code == 402, first.text
    assert (second.status_code, second.json()) == (402, first.json())
    assert _count("payment_intent") <= intents + 1
