"""An HTTP client for a running local stack (demo, bench, end-to-end tests), and Stripe.js's part of the card flow."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import requests


class Api:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.base = config["api_url"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {config['api_secret_key']}"

    def request(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response

    def get(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        return self.request("GET", path, expect, **kwargs).json()

    def post(self, path: str, body: Any, expect: int = 200) -> Any:
        return self.request("POST", path, expect, json=body).json()

    def advance(self, by: str | None = None, to: str | None = None, deliveries: int = 1) -> dict[str, Any]:
        body: dict[str, Any] = {"by": by} if by else {"to": to}
        if deliveries != 1:
            body["deliveries"] = deliveries
        response = requests.post(self.base + "/_local/clock/advance", json=body, timeout=600)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        params = {"type": type_} if type_ else {}
        response = requests.get(self.base + "/_local/events", params=params, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        return body["data"] if isinstance(body, dict) else body

    def wait_events(self, type_: str, predicate: Any, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [e for e in self.events(type_) if predicate(e)]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        return found

    # ---- what a storefront does
    def catalog(self, currency: str = "EUR", amount: int = 1500, trial_days: int | None = None) -> dict[str, Any]:
        product = self.post("/v1/products", {"name": "Coffee club"}, expect=201)
        recurring: dict[str, Any] = {"interval": "month"}
        if trial_days:
            recurring["trial_period_days"] = trial_days
        return self.post(
            "/v1/prices",
            {"product": product["id"], "currency": currency, "unit_amount": amount, "recurring": recurring},
            expect=201,
        )

    def subscribe(
        self,
        price_id: str,
        email: str,
        card: str = "4242424242424242",
        address: dict[str, str] | None = None,
        tax_id: str | None = None,
        locale: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        customer: dict[str, Any] = {
            "email": email,
            "name": email.split("@")[0],
            "address": address or {"country": "NL"},
        }
        if locale:
            customer["preferred_locale"] = locale
        if tax_id:
            customer["tax_id"] = tax_id
        started = self.post("/v1/checkout", {"price_id": price_id, "customer": customer, **extra}, expect=201)
        confirm_card_setup(self.config, started["setup_intent_id"], started["client_secret"], card)
        done = self.post(
            f"/v1/checkout/{started['subscription']['id']}/complete", {"setup_intent_id": started["setup_intent_id"]}
        )
        return {**started, **done}


def confirm_card_setup_request(
    config: dict[str, Any], setup_intent: str, client_secret: str, card: str
) -> requests.Response:
    """What Stripe.js's ``confirmCardSetup`` sends in the browser: only the publishable key and the
    client secret, never the secret key."""
    return requests.post(
        f"{config['stripe_url']}/v1/setup_intents/{setup_intent}/confirm",
        data={
            "key": config["stripe_publishable_key"],
            "client_secret": client_secret,
            "payment_method_data[type]": "card",
            "payment_method_data[card][number]": card,
            "payment_method_data[card][exp_month]": "12",
            "payment_method_data[card][exp_year]": "2034",
            "payment_method_data[card][cvc]": "123",
        },
        timeout=30,
    )


def confirm_sepa_debit_setup_request(
    config: dict[str, Any], setup_intent: str, client_secret: str, iban: str, name: str, email: str
) -> requests.Response:
    """What Stripe.js's ``confirmSepaDebitSetup`` sends in the browser (localstripe's shim):
    ``payment_method_data[type]=sepa_debit`` with the IBAN and the account holder's name and email."""
    return requests.post(
        f"{config['stripe_url']}/v1/setup_intents/{setup_intent}/confirm",
        data={
            "key": config["stripe_publishable_key"],
            "client_secret": client_secret,
            "payment_method_data[type]": "sepa_debit",
            "payment_method_data[sepa_debit][iban]": iban,
            "payment_method_data[billing_details][name]": name,
            "payment_method_data[billing_details][email]": email,
        },
        timeout=30,
    )


def confirm_card_setup(config: dict[str, Any], setup_intent: str, client_secret: str, card: str) -> dict[str, Any]:
    response = confirm_card_setup_request(config, setup_intent, client_secret, card)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    if body.get("status") == "requires_action":
        # a card that asks for 3-D Secure (4000 0027 6000 3184): what the shim sends once the person
        # clicks "Complete authentication" in its dialog
        response = requests.post(
            f"{config['stripe_url']}/v1/setup_intents/{setup_intent}/confirm",
            data={"key": config["stripe_publishable_key"], "client_secret": client_secret},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return body


def authenticate_payment(config: dict[str, Any], client_secret: str, success: bool = True) -> dict[str, Any]:
    """What the shim's ``confirmCardPayment`` sends once the person completes (or fails) 3-D Secure
    in its dialog: only the publishable key and the PaymentIntent's client secret."""
    payment_intent = client_secret.split("_secret_", 1)[0]
    response = requests.post(
        f"{config['stripe_url']}/v1/payment_intents/{payment_intent}/_authenticate",
        params={"success": "true" if success else "false"},
        data={"key": config["stripe_publishable_key"], "client_secret": client_secret},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def signed_webhook(config: dict[str, Any], event: dict[str, Any], secret: str | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    key = (secret or config["webhook_secret"]).encode()
    signature = hmac.new(key, f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={timestamp},v1={signature}"
