"""The dashboard's sign-in and session over the api handler (the emulated API Gateway): the cookie's
attributes, the CSRF header on /v1, sign-out, a read-only user, the page's headers, the CLI that
adds users, and the search and filters the dashboard reads."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests

from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts
from kassa.domain.dashboard import CSRF_HEADER, SESSION_COOKIE
from kassa.services import dashboard
from kassa_local import cli
from kassa_local.stack import LocalStack

pytestmark = pytest.mark.integration

PASSWORD = "a long dashboard password"


def _sign_in(stack: LocalStack, body: dict[str, Any]) -> requests.Response:
    return requests.post(stack.api_url + "/dashboard/session", json=body, timeout=30)


def _token(response: requests.Response) -> str:
    """The session token from Set-Cookie (requests keeps no Secure cookie over http)."""
    header = response.headers["Set-Cookie"]
    first = header.split(";", 1)[0]
    name, _, value = first.partition("=")
    assert name == SESSION_COOKIE
    return value


def _call(stack: LocalStack, method: str, path: str, token: str, csrf: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Cookie": f"{SESSION_COOKIE}={token}"}
    if csrf is not None:
        headers[CSRF_HEADER] = csrf
    return requests.request(method, stack.api_url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def accounts(stack: LocalStack, table: str) -> DynamoDashboardAccounts:
    return DynamoDashboardAccounts(stack.client("dynamodb"), table)


def test_signing_in_with_the_key_sets_a_strict_cookie_and_never_echoes_the_key(stack: LocalStack) -> None:
    signed = _sign_in(stack, {"key": stack.api_secret_key})

    assert signed.status_code == 200, signed.text
    cookie = signed.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert attribute in cookie
    assert stack.api_secret_key not in signed.text and stack.api_secret_key not in cookie
    body = signed.json()
    assert body["actor"]["type"] == "key" and body["actor"]["role"] == "full" and body["csrf_token"]
    token, csrf = _token(signed), body["csrf_token"]

    listed = _call(stack, "GET", "/v1/customers?limit=1", token, csrf)
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    assert _call(stack, "GET", "/dashboard/session", token, None).json()["csrf_token"] == csrf


def test_a_v1_request_with_the_cookie_but_without_its_csrf_header_is_refused(stack: LocalStack, uid: str) -> None:
    signed = _sign_in(stack, {"key": stack.api_secret_key})
    token, csrf = _token(signed), signed.json()["csrf_token"]
    body = {"email": f"csrf-{uid}@example.com", "address": {"country": "DE"}}

    missing = _call(stack, "POST", "/v1/customers", token, None, json=body)
    wrong = _call(stack, "POST", "/v1/customers", token, csrf[:-2] + "xx", json=body)
    read = _call(stack, "GET", "/v1/customers", token, None)

    for refused in (missing, wrong, read):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "csrf_token_invalid"
        assert refused.json()["error"]["param"] == CSRF_HEADER
    lookup = requests.get(
        stack.api_url + f"/v1/customers?email=csrf-{uid}@example.com", headers=stack.auth_headers, timeout=30
    )
    assert lookup.json()["data"] == []  # nothing was written
    made = _call(stack, "POST", "/v1/customers", token, csrf, json=body)
    assert made.status_code == 201, made.text


def test_sign_out_ends_the_session_and_clears_the_cookie(stack: LocalStack) -> None:
    signed = _sign_in(stack, {"key": stack.api_secret_key})
    token, csrf = _token(signed), signed.json()["csrf_token"]

    without_csrf = _call(stack, "DELETE", "/dashboard/session", token, None)
    out = _call(stack, "DELETE", "/dashboard/session", token, csrf)

    assert without_csrf.status_code == 403
    assert out.status_code == 200 and "Max-Age=0" in out.headers["Set-Cookie"]
    after = _call(stack, "GET", "/v1/customers", token, csrf)
    assert after.status_code == 401 and after.json()["error"]["code"] == "session_expired"
    assert _call(stack, "GET", "/dashboard/session", token, csrf).json()["signed_in"] is False


def test_a_read_only_user_reads_but_may_not_change_anything(stack: LocalStack, accounts, uid: str) -> None:
    email = f"viewer-{uid}@example.com"
    user = dashboard.add_user(accounts, email, PASSWORD, "read_only", stack.clock.now())
    signed = _sign_in(stack, {"email": email.upper(), "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    assert signed.json()["actor"] == {"type": "user", "id": user.id, "role": "read_only", "email": email}
    token, csrf = _token(signed), signed.json()["csrf_token"]

    assert _call(stack, "GET", "/v1/subscriptions?limit=1", token, csrf).status_code == 200
    denied = _call(stack, "POST", "/v1/customers", token, csrf, json={"email": f"x-{uid}@example.com"})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied" and user.id in denied.json()["error"]["message"]


def test_wrong_credentials_are_a_401_and_an_empty_body_a_400(stack: LocalStack) -> None:
    for body in ({"key": "ksk_wrong"}, {"email": "nobody@example.com", "password": PASSWORD}):
        refused = _sign_in(stack, body)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "sign_in_refused"
        assert "Set-Cookie" not in refused.headers
    empty = _sign_in(stack, {})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "email"
    unknown = _sign_in(stack, {"key": "x", "role": "full"})
    assert unknown.status_code == 400  # no such field
    nobody = requests.get(stack.api_url + "/dashboard/session", timeout=30)
    assert nobody.status_code == 200 and nobody.json() == {"object": "dashboard_session", "signed_in": False}


def test_another_sites_page_can_neither_sign_in_nor_use_the_cookie_elsewhere(stack: LocalStack) -> None:
    forged = requests.post(
        stack.api_url + "/dashboard/session",
        json={"key": stack.api_secret_key},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "cross_origin"
    assert "Set-Cookie" not in forged.headers
    own = requests.post(
        stack.api_url + "/dashboard/session",
        json={"key": stack.api_secret_key},
        headers={"Origin": stack.api_url},
        timeout=30,
    )
    assert own.status_code == 200
    # the tax function's resolver holds no sessions: there the cookie is no key
    tax = _call(stack, "GET", "/v1/tax/reports/oss", _token(own), own.json()["csrf_token"])
    assert tax.status_code == 401 and tax.json()["error"]["code"] == "invalid_api_key"


def test_the_page_and_its_assets_carry_strict_headers_and_no_key(stack: LocalStack) -> None:
    page = requests.get(stack.api_url + "/dashboard", timeout=30)
    chart = requests.get(stack.api_url + "/dashboard/assets/chart.umd.min.js", timeout=30)
    missing = requests.get(stack.api_url + "/dashboard/assets/../app.py", timeout=30)

    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert stack.api_secret_key not in page.text
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]  # requests un-gzips it
    assert chart.headers["Content-Encoding"] == "gzip" and int(chart.headers["Content-Length"]) < 80_000
    assert chart.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]
    assert missing.status_code == 404
    slash = requests.get(stack.api_url + "/dashboard/", timeout=30, allow_redirects=False)
    assert slash.status_code == 301 and slash.headers["Location"] == "../dashboard"


def test_the_cli_adds_a_user_who_can_sign_in(stack: LocalStack, uid: str, monkeypatch, capsys) -> None:
    email = f"cli-{uid}@example.com"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = cli.main(
        ["--state-dir", str(stack.state_dir), "dashboard", "add-user", "--email", email, "--password-stdin"]
    )

    assert code == 0 and email in capsys.readouterr().out
    assert _sign_in(stack, {"email": email, "password": PASSWORD}).status_code == 200
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    with pytest.raises(SystemExit, match="already exists"):
        cli.main(["--state-dir", str(stack.state_dir), "dashboard", "add-user", "--email", email, "--password-stdin"])

    signed = _sign_in(stack, {"email": email, "password": PASSWORD})
    assert cli.main(["--state-dir", str(stack.state_dir), "dashboard", "remove-user", "--email", email]) == 0
    ended = _call(stack, "GET", "/v1/customers", _token(signed), signed.json()["csrf_token"])
    assert ended.status_code == 401  # the removed user's session ends at once
    assert _sign_in(stack, {"email": email, "password": PASSWORD}).status_code == 401


def test_customers_are_found_by_a_part_of_their_name(stack: LocalStack, uid: str) -> None:
    headers = stack.auth_headers
    for name in (f"Zelda {uid} Fitzgerald", f"Scott {uid}"):
        made = requests.post(
            stack.api_url + "/v1/customers",
            json={"email": f"{name.split()[0].lower()}-{uid}@example.com", "name": name, "address": {"country": "US"}},
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 201, made.text
    found = requests.get(stack.api_url + f"/v1/customers?name=zelda {uid}", headers=headers, timeout=30).json()
    both = requests.get(stack.api_url + f"/v1/customers?name={uid}", headers=headers, timeout=30).json()
    bad = requests.get(stack.api_url + "/v1/invoices?total[gte]=12.5", headers=headers, timeout=30)

    assert [c["name"] for c in found["data"]] == [f"Zelda {uid} Fitzgerald"]
    assert sorted(c["name"] for c in both["data"]) == [f"Scott {uid}", f"Zelda {uid} Fitzgerald"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "total[gte]"


def test_retrying_a_declined_invoice_is_a_402_card_error(api) -> None:
    """What the dashboard's Retry payment shows when the card on file declines."""
    price = api.catalog(currency="EUR", amount=1100)
    started = api.subscribe(price["id"], f"retry-{price['id']}@example.com", card="4000000000000341")
    invoice = started["subscription"]["latest_invoice"]

    retried = api.request("POST", f"/v1/invoices/{invoice}/pay", json={})

    assert retried.status_code == 402, retried.text
    error = retried.json()["error"]
    assert (error["type"], error["param"]) == ("card_error", "payment_method") and "declined" in error["message"]
    assert api.get(f"/v1/invoices/{invoice}")["status"] == "open"
