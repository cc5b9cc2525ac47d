"""The API's edge over HTTP through the local gateway and the deployed handlers: how bodies are read
whatever their Content-Type, the errors for no body, malformed JSON, a wrong method and an unknown
route, and the OpenAPI document (its server, every function's routes, summaries, response schemas)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration


def _auth(config: dict[str, Any], **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {config['api_secret_key']}", **headers}


def _error(resp: requests.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"type", "code", "message"} <= set(body["error"]), body
    return dict(body["error"])


# ----------------------------------------------------------------------------- request bodies


def test_a_json_body_sent_as_form_data_is_read_as_json(config, uid):
    # what `curl -d '{"name":"Coffee club"}'` sends: Content-Type application/x-www-form-urlencoded
    resp = requests.post(
        f"{config['api_url']}/v1/products",
        data=json.dumps({"name": f"Coffee club {uid}"}),
        headers=_auth(config, **{"Content-Type": "application/x-www-form-urlencoded"}),
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == f"Coffee club {uid}"


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json; charset=utf-8"])
def test_a_json_body_is_read_as_json_whatever_the_content_type(config, uid, content_type):
    headers = _auth(config) if content_type is None else _auth(config, **{"Content-Type": content_type})
    resp = requests.post(
        f"{config['api_url']}/v1/tax/quote",
        data=json.dumps({"country": "NL", "amount": 10000, "currency": "EUR"}).encode(),
        headers=headers,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["object"] == "tax.quote"


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_no_body_says_a_json_body_is_required(config, content_type):
    resp = requests.post(
        f"{config['api_url']}/v1/products", headers=_auth(config, **{"Content-Type": content_type}), timeout=30
    )
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert error["code"] == "parameter_invalid"
    assert error["message"] == "a JSON body is required"
    assert error["param"] == "body"


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_malformed_json_names_the_reason_and_where(config, content_type):
    resp = requests.post(
        f"{config['api_url']}/v1/products",
        data='{"name":',
        headers=_auth(config, **{"Content-Type": content_type}),
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert error["param"] == "body"
    assert error["message"] == "the body is not valid JSON: Expecting value at line 1 column 9"


def test_a_body_that_is_not_an_object_names_the_body(config):
    resp = requests.post(f"{config['api_url']}/v1/products", json=[1, 2], headers=_auth(config), timeout=30)
    assert resp.status_code == 400, resp.text
    assert _error(resp)["param"] == "body"


def test_a_missing_field_is_still_named(config):
    resp = requests.post(f"{config['api_url']}/v1/products", json={}, headers=_auth(config), timeout=30)
    assert resp.status_code == 400, resp.text
    assert _error(resp)["message"] == "missing required field name"
    assert _error(resp)["param"] == "name"


# ----------------------------------------------------------------------------- routes


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/products", "GET, POST"),  # checkout's resolver
        ("GET", "/v1/tax/quote", "POST"),  # the tax function's resolver
        ("DELETE", "/v1/prices/price_x", "GET, POST"),
        ("POST", "/openapi.json", "GET"),  # a GET-only route of the gateway
        ("GET", "/webhooks/stripe", "POST"),
    ],
)
def test_a_wrong_method_on_an_existing_path_is_a_405_with_allow(config, method, path, allow):
    resp = requests.request(method, config["api_url"] + path, headers=_auth(config), timeout=30)
    assert resp.status_code == 405, resp.text
    assert resp.headers["Allow"] == allow
    error = _error(resp)
    assert error["code"] == "method_not_allowed"
    assert method in error["message"] and path in error["message"]


@pytest.mark.parametrize("path", ["/v1/nowhere", "/v1/tax/nowhere", "/nowhere"])
def test_an_unknown_route_is_route_not_found(config, path):
    resp = requests.get(config["api_url"] + path, headers=_auth(config), timeout=30)
    assert resp.status_code == 404, resp.text
    assert _error(resp)["code"] == "route_not_found"


def test_a_missing_object_is_still_resource_missing(config, uid):
    resp = requests.get(f"{config['api_url']}/v1/prices/price_{uid}", headers=_auth(config), timeout=30)
    assert resp.status_code == 404, resp.text
    assert _error(resp)["code"] == "resource_missing"


# ----------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def document(config) -> dict[str, Any]:
    resp = requests.get(f"{config['api_url']}/openapi.json", timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_the_document_names_the_server_it_was_fetched_from(config, document):
    assert document["servers"] == [{"url": config["api_url"]}]


def test_docs_and_openapi_json_serve_the_same_document(config, document):
    as_json = requests.get(f"{config['api_url']}/docs", params={"format": "json"}, timeout=30)
    assert as_json.status_code == 200
    assert as_json.json() == document
    page = requests.get(f"{config['api_url']}/docs", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'"url": "{config["api_url"]}"' in page.text
    assert '"/v1/tax/quote"' in page.text


def test_the_document_lists_the_tax_routes(document):
    assert {"/v1/tax/quote", "/v1/tax/reports/jurisdictions", "/v1/tax/reports/oss"} <= set(document["paths"])
    assert "QuoteIn" in document["components"]["schemas"]
    assert "/v1/products" in document["paths"] and "/v1/checkout" in document["paths"]


def test_every_operation_has_a_summary_a_success_schema_and_error_schemas(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            summary = operation.get("summary", "")
            assert summary and path not in summary and not re.match(r"^[A-Z]+ /", summary), (method, path, summary)
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            success = [code for code in responses if code.startswith("2")]
            assert success, (method, path)
            for code in success:
                content = responses[code]["content"]
                if path.endswith(("/pdf", "/ubl")):  # a document: its file type, not JSON (docs/documents.md)
                    assert list(content) in (["application/pdf"], ["application/xml"]), (method, path)
                media = next(iter(content))
                assert content[media]["schema"], (method, path)
            assert "400" in responses, (method, path)
            for code, response in responses.items():
                if code.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Error", (method, path, code)
    assert document["paths"]["/v1/products"]["post"]["responses"]["201"]
    assert "201" not in document["paths"]["/v1/products"]["get"]["responses"]
    assert document["paths"]["/v1/prices"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KassaList"
    }
    assert document["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["type", "code", "message"]


def test_try_it_out_reaches_the_api_at_the_documented_server(config, document, uid):
    """What Swagger UI's "Try it out" sends: servers[0].url + the path, with the bearer token."""
    base = document["servers"][0]["url"]
    assert "bearer" in json.dumps(document["components"]["securitySchemes"]).lower()
    listed = requests.get(base + "/v1/prices", headers=_auth(config, Accept="application/json"), timeout=30)
    assert listed.status_code == 200, listed.text
    assert listed.json()["object"] == "list"
    quoted = requests.post(
        base + "/v1/tax/quote",
        json={"country": "DE", "amount": 1000, "currency": "EUR"},
        headers=_auth(config),
        timeout=30,
    )
    assert quoted.status_code == 200, quoted.text
