"""Rolled and restricted API keys and link keys over the api handler (the emulated API Gateway), and the
headers of the customer pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import requests

from infra import wiring
from kassa.adapters import container
from kassa_local.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def keys_restored(stack: LocalStack) -> Iterator[LocalStack]:
    """Roll keys freely: the shared stack gets its API and link secrets (and local.json) back afterwards."""
    sm = stack.client("secretsmanager")
    saved = {
        name: sm.get_secret_value(SecretId=name)["SecretString"] for name in (wiring.API_SECRET, wiring.LINKS_SECRET)
    }
    secrets, config = replace(stack._secrets), stack.config  # noqa: SLF001
    try:
        yield stack
    finally:
        for name, value in saved.items():
            sm.put_secret_value(SecretId=name, SecretString=value)
        container._secrets_provider.cache_clear()  # noqa: SLF001
        stack._secrets, stack._config = secrets, config  # noqa: SLF001


def _get(stack: LocalStack, path: str, key: str) -> requests.Response:
    return requests.get(stack.api_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _post(stack: LocalStack, path: str, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(stack.api_url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)


def test_after_a_roll_the_old_and_the_new_key_are_valid(keys_restored: LocalStack) -> None:
    stack = keys_restored
    old = stack.api_secret_key
    rolled = stack.roll_keys(expires_in=timedelta(hours=24))
    new = rolled["new_key"]["secret"]
    assert new != old and stack.api_secret_key == new
    assert _get(stack, "/v1/prices", old).status_code == 200
    assert _get(stack, "/v1/prices", new).status_code == 200
    assert _post(stack, "/v1/products", old, {"name": "rolled"}).status_code == 201
    # the secret holds both, the old one with its expiry; local.json names the new one
    value = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=wiring.API_SECRET)["SecretString"])
    assert [k["secret"] for k in value["keys"]] == [new, old]
    assert "expires_at" in value["keys"][1] and "expires_at" not in value["keys"][0]
    state = json.loads((stack.state_dir / "local.json").read_text())
    assert state["api_secret_key"] == new
    assert [k["id"] for k in state["api_keys"]] == [k["id"] for k in value["keys"]]


def test_an_expired_key_is_refused(keys_restored: LocalStack) -> None:
    stack = keys_restored
    old = stack.api_secret_key
    new = stack.roll_keys(expires_in=timedelta(0))["new_key"]["secret"]
    refused = _get(stack, "/v1/prices", old)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert _get(stack, "/v1/prices", new).status_code == 200


def test_an_expiry_in_the_past_is_refused_and_one_in_the_future_accepted(keys_restored: LocalStack) -> None:
    stack = keys_restored
    now = stack.clock.now()
    current = stack.api_secret_key
    keys = [
        {"id": "current", "secret": current, "role": "full"},
        {"id": "gone", "secret": "ksk_gone_0123456789abcdef", "expires_at": (now.timestamp() - 1)},
        {"id": "soon", "secret": "ksk_soon_0123456789abcdef", "expires_at": (now.timestamp() + 3600)},
    ]
    stack.client("secretsmanager").put_secret_value(SecretId=wiring.API_SECRET, SecretString=json.dumps({"keys": keys}))
    container._secrets_provider.cache_clear()  # noqa: SLF001
    assert _get(stack, "/v1/prices", "ksk_gone_0123456789abcdef").status_code == 401
    assert _get(stack, "/v1/prices", "ksk_soon_0123456789abcdef").status_code == 200


def test_a_read_only_key_reads_but_may_not_post(keys_restored: LocalStack) -> None:
    stack = keys_restored
    added = stack.roll_keys(add_role="read_only")["new_key"]
    assert added["role"] == "read_only"
    assert _get(stack, "/v1/prices", added["secret"]).status_code == 200
    refused = _post(stack, "/v1/products", added["secret"], {"name": "not allowed"})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "permission_denied" and "POST" in error["message"] and added["id"] in error["message"]
    assert (
        requests.delete(
            stack.api_url + "/v1/coupons/x", headers={"Authorization": f"Bearer {added['secret']}"}, timeout=30
        ).status_code
        == 403
    )
    # the full key still may
    assert _post(stack, "/v1/products", stack.api_secret_key, {"name": "allowed"}).status_code == 201


def _card_link(stack: LocalStack, uid: str) -> str:
    key = stack.api_secret_key
    customer = _post(
        stack,
        "/v1/customers",
        key,
        {"email": f"links-{uid}@example.com", "name": "Links", "address": {"country": "DE"}},
    ).json()
    created = _post(stack, f"/v1/customers/{customer['id']}/card_update_link", key, {})
    assert created.status_code == 201, created.text
    return str(created.json()["url"]).replace(str(created.json()["url"]).split("/portal/")[0], stack.api_url)


def test_links_stay_valid_after_an_api_key_roll(keys_restored: LocalStack, uid: str) -> None:
    stack = keys_restored
    link = _card_link(stack, uid)
    assert requests.get(link, timeout=30).status_code == 200
    stack.roll_keys(expires_in=timedelta(0))  # the old API key is gone at once
    assert requests.get(link, timeout=30).status_code == 200


def test_links_signed_with_the_previous_link_key_stay_valid(keys_restored: LocalStack, uid: str) -> None:
    stack = keys_restored
    before = _card_link(stack, uid)
    stack.roll_keys(links=True)
    after = _card_link(stack, uid + "b")
    assert requests.get(before, timeout=30).status_code == 200
    assert requests.get(after, timeout=30).status_code == 200
    stack.roll_keys(links=True)  # a second roll drops the key that signed `before`
    assert requests.get(before, timeout=30).status_code == 403
    assert requests.get(after, timeout=30).status_code == 200


def test_the_dunning_function_holds_no_api_key(stack: LocalStack) -> None:
    assert wiring.API_SECRET not in wiring.function("dunning").secrets
    assert wiring.LINKS_SECRET in wiring.function("dunning").secrets
    assert stack.config.function_secrets["dunning"] == list(wiring.function("dunning").secrets)


# ------------------------------------------------------------------------------- portal headers

PORTAL_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _assert_portal_headers(response: requests.Response, stripe_js_url: str) -> None:
    for name, value in PORTAL_HEADERS.items():
        assert response.headers.get(name) == value, name
    csp = {d.split()[0]: d.split()[1:] for d in response.headers["Content-Security-Policy"].split("; ")}
    stripe_origin = "/".join(stripe_js_url.split("/")[:3])
    assert "'self'" in csp["script-src"] and stripe_origin in csp["script-src"]
    assert "'unsafe-inline'" not in csp["script-src"] and "*" not in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'none'"]


def test_the_card_page_and_its_calls_send_the_security_headers(stack: LocalStack, uid: str) -> None:
    link = _card_link(stack, uid)
    page = requests.get(link, timeout=30)
    assert page.status_code == 200
    _assert_portal_headers(page, stack.config.stripe_js_url)
    refused = requests.get(stack.api_url + "/portal/card?token=forged.token", timeout=30)
    assert refused.status_code == 403
    _assert_portal_headers(refused, stack.config.stripe_js_url)
    session = requests.post(stack.api_url + "/portal/card/session", json={"token": "forged.token"}, timeout=30)
    assert session.status_code == 403
    _assert_portal_headers(session, stack.config.stripe_js_url)
    # the merchant API is not a page: no portal CSP there
    assert "Content-Security-Policy" not in _get(stack, "/v1/prices", stack.api_secret_key).headers
