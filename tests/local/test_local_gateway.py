"""The emulated API Gateway: routing, proxy events, responses, local routes."""

from __future__ import annotations

import base64

import pytest
import requests

from infra import wiring
from kassa_local.gateway import find_route, http_response, routes_from
from kassa_local.stack import LocalStack

# -- routing, without a server ------------------------------------------------------------------

ROUTES = routes_from(
    [
        wiring.Function(name="a", description="", timeout_s=1, routes=(wiring.Route("ANY", "/v1/{proxy+}"),)),
        wiring.Function(name="b", description="", timeout_s=1, routes=(wiring.Route("GET", "/v1/things/{id}"),)),
        wiring.Function(name="c", description="", timeout_s=1, routes=(wiring.Route("GET", "/v1/things/special"),)),
        wiring.Function(name="d", description="", timeout_s=1, routes=(wiring.Route("POST", "/webhooks/stripe"),)),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/v1/things/42", "b", {"id": "42"}),
        ("GET", "/v1/things/special", "c", {}),
        ("POST", "/v1/things/42", "a", {"proxy": "things/42"}),
        ("DELETE", "/v1/a/b/c", "a", {"proxy": "a/b/c"}),
        ("GET", "/v1/things/42/", "b", {"id": "42"}),
        ("POST", "/webhooks/stripe", "d", {}),
    ],
)
def test_routes_pick_the_most_specific_resource(method: str, path: str, function: str, params: dict) -> None:
    found = find_route(ROUTES, method, path)
    assert found is not None
    route, got = found
    assert (route.function.name, got) == (function, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1"), ("GET", "/v2/x"), ("GET", "/webhooks/stripe"), ("GET", "/"), ("GET", "/v1//x")],
)
def test_no_route(method: str, path: str) -> None:
    assert find_route(ROUTES, method, path) is None


def test_malformed_handler_response_is_a_502() -> None:
    assert http_response({"body": "no status"}).status == 502
    assert http_response(None).status == 502


def test_multi_value_headers_win_over_headers() -> None:
    resp = http_response(
        {"statusCode": 204, "headers": {"X-A": "single", "X-B": "b"}, "multiValueHeaders": {"x-a": ["1", "2"]}}
    )
    assert sorted(resp.headers) == [("X-B", "b"), ("x-a", "1"), ("x-a", "2")]
    assert resp.body == b""


# -- through HTTP ----------------------------------------------------------------------------------


def test_request_becomes_a_rest_proxy_event(fresh: LocalStack) -> None:
    resp = requests.get(
        f"{fresh.api_url}/v1/things/a%20b?x=1&x=2&y=", headers={"X-Test": "yes", "Accept": "application/json"}
    )
    assert resp.status_code == 200
    assert resp.headers["X-Single"] == "one"
    assert resp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    payload = resp.json()
    event = payload["event"]
    assert event["resource"] == "/v1/things/{id}"
    assert event["path"] == "/v1/things/a b"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["X-Test"] == "yes"
    assert event["multiValueHeaders"]["X-Test"] == ["yes"]
    assert event["stageVariables"] is None
    assert event["body"] is None and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["resourcePath"] == "/v1/things/{id}"
    assert ctx["httpMethod"] == "GET"
    assert ctx["stage"] == "local"
    # served at the gateway's root (like a custom domain): the path carries no /local stage prefix
    assert ctx["path"] == "/v1/things/a b"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["requestId"]
    # request time and the handler's clock are the virtual clock
    assert ctx["requestTimeEpoch"] == int(fresh.clock.now().timestamp() * 1000)
    assert payload["now"] == fresh.clock.now().isoformat()
    assert payload["context"]["function_name"] == "api"
    assert payload["context"]["memory_limit_in_mb"] == 512
    assert 0 < payload["context"]["remaining_ms"] <= 29_000


def test_bodies_text_and_binary(fresh: LocalStack) -> None:
    resp = requests.post(f"{fresh.api_url}/v1/checkout", json={"price_id": "price_1"})
    assert resp.status_code == 201
    event = resp.json()["event"]
    assert event["resource"] == "/v1/{proxy+}"
    assert event["pathParameters"] == {"proxy": "checkout"}
    assert event["body"] == '{"price_id": "price_1"}'
    assert event["isBase64Encoded"] is False

    raw = b"\x00\xff\xfe binary"
    event = requests.put(f"{fresh.api_url}/v1/blob", data=raw).json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw

    resp = requests.get(f"{fresh.api_url}/v1/binary")
    assert resp.content == b"\x00\xff\x10"


def test_unknown_route_is_a_404_json_error(fresh: LocalStack) -> None:
    resp = requests.get(f"{fresh.api_url}/nowhere")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "route_not_found"
    assert requests.get(f"{fresh.api_url}/_local/nowhere").json()["error"]["code"] == "route_not_found"
    assert requests.post(f"{fresh.api_url}/demo/nowhere").json()["error"]["code"] == "route_not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/webhooks/stripe", "POST"),
        ("GET", "/_local/clock/advance", "POST"),
        ("POST", "/_local/health", "GET"),
        ("DELETE", "/_local/outbox.json", "GET, HEAD"),
        ("POST", "/storefront", "GET, HEAD"),
        ("POST", "/demo/prices", "GET"),
        ("GET", "/demo/checkout/sub_1/complete", "POST"),
    ],
)
def test_a_wrong_method_on_a_known_path_is_a_405_with_allow(
    fresh: LocalStack, method: str, path: str, allow: str
) -> None:
    resp = requests.request(method, fresh.api_url + path)
    assert resp.status_code == 405, resp.text
    assert resp.headers["Allow"] == allow
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_handler_exception_is_a_502(fresh: LocalStack) -> None:
    resp = requests.get(f"{fresh.api_url}/v1/boom")
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}


def test_keep_alive_session(fresh: LocalStack) -> None:
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(f"{fresh.api_url}/v1/things/1").status_code == 200


def test_local_routes(fresh: LocalStack) -> None:
    health = requests.get(f"{fresh.api_url}/_local/health").json()
    assert health["status"] == "ok"
    assert sorted(health["pollers"]) == ["worker", "worker2"]

    clock = requests.get(f"{fresh.api_url}/_local/clock").json()
    assert clock["now"] == fresh.clock.now().isoformat().replace("+00:00", "Z")
    assert {s["schedule"] for s in clock["schedules"]} == {"hourly", "every-45"}

    bad = requests.post(f"{fresh.api_url}/_local/clock/advance", json={"by": "soon"})
    assert bad.status_code == 400
    assert "invalid duration" in bad.json()["error"]["message"]
    assert requests.post(f"{fresh.api_url}/_local/clock/advance", json={}).status_code == 400

    page = requests.get(f"{fresh.api_url}/storefront")
    assert page.status_code == 200 and "confirmCardSetup" in page.text
    assert requests.get(f"{fresh.api_url}/").text == page.text
    config = requests.get(f"{fresh.api_url}/storefront/config.json").json()
    assert config["publishable_key"].startswith("pk_test_local_")
    assert config["stripe_js_url"].endswith("/js.stripe.com/v3/")
    assert requests.get(config["stripe_js_url"]).status_code == 200


def test_demo_backend_forwards_with_the_secret_key(fresh: LocalStack) -> None:
    prices = requests.get(f"{fresh.api_url}/demo/prices").json()["event"]
    assert (prices["httpMethod"], prices["path"]) == ("GET", "/v1/prices")
    assert prices["headers"]["Authorization"] == f"Bearer {fresh.api_secret_key}"

    checkout = requests.post(f"{fresh.api_url}/demo/checkout", json={"price_id": "p"}).json()["event"]
    assert (checkout["httpMethod"], checkout["path"], checkout["body"]) == ("POST", "/v1/checkout", '{"price_id": "p"}')

    done = requests.post(f"{fresh.api_url}/demo/checkout/sub_1/complete", json={"setup_intent_id": "seti_1"})
    assert done.json()["event"]["path"] == "/v1/checkout/sub_1/complete"
    assert requests.get(f"{fresh.api_url}/demo/other").status_code == 404
