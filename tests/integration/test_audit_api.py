"""The audit trail over the api handler (the emulated API Gateway) on the shared local stack: each
change recorded once with its fields before and after, who made it, nothing for a failed request or
a replay, secrets redacted, entries that cannot be rewritten (docs/audit.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from infra import wiring
from kassa.adapters.audit import DynamoAuditLog
from kassa.domain.audit import Actor, AuditedRequest, event_id
from kassa.services import audit
from kassa_local.client import Api
from kassa_local.stack import LocalStack

pytestmark = pytest.mark.integration


def _events(api: Api, object_id: str, **params: Any) -> list[dict[str, Any]]:
    return api.get("/v1/audit_events", params={"object": object_id, **params})["data"]


def _key_id(stack: LocalStack) -> str:
    value = stack.client("secretsmanager").get_secret_value(SecretId=wiring.API_SECRET)["SecretString"]
    keys = json.loads(value).get("keys")
    return str(keys[0]["id"]) if keys else "default"


def test_a_product_created_and_renamed_is_recorded_once_per_change(stack: LocalStack, api: Api, uid: str) -> None:
    product = api.post("/v1/products", {"name": f"Audit {uid}"}, expect=201)
    key = f"rename-{uid}"
    headers = {"Idempotency-Key": key}
    url = f"{api.base}/v1/products/{product['id']}"
    first = api.session.post(url, json={"name": f"Renamed {uid}"}, headers=headers, timeout=30)
    replay = api.session.post(url, json={"name": f"Renamed {uid}"}, headers=headers, timeout=30)
    assert first.status_code == replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    api.post(f"/v1/products/{product['id']}", {"name": f"Renamed {uid}"})  # a retry that changes nothing
    # failed requests record nothing: a 400 (validation, then the domain's) and a 404
    assert api.request("POST", f"/v1/products/{product['id']}", json={"active": "maybe"}).status_code == 400
    assert api.request("POST", f"/v1/products/{product['id']}", json={"active": None}).status_code == 400
    assert api.request("POST", f"/v1/products/prod_missing{uid}", json={"name": "x"}).status_code == 404

    events = _events(api, product["id"])
    # the local clock stands still: both entries have the same time, and entries of one instant list by id
    created, renamed = sorted(events, key=lambda e: e["action"])
    actor = {"type": "api_key", "id": _key_id(stack), "dashboard": False}
    assert created["object"] == "audit_event" and created["action"] == "created"
    assert created["actor"] == actor and created["route"] == "POST /v1/products"
    assert created["changes"]["name"] == {"before": None, "after": f"Audit {uid}"}
    assert renamed["action"] == "updated" and renamed["idempotency_key"] == key
    assert renamed["route"] == "POST /v1/products/{product_id}" and renamed["path"] == f"/v1/products/{product['id']}"
    assert renamed["changes"] == {"name": {"before": f"Audit {uid}", "after": f"Renamed {uid}"}}
    assert _events(api, f"prod_missing{uid}") == []
    # pagination: one at a time, oldest first
    page = api.get("/v1/audit_events", params={"object": product["id"], "limit": 1})
    assert page["has_more"] and page["data"][0]["id"] == events[0]["id"]
    rest = api.get("/v1/audit_events", params={"object": product["id"], "limit": 1, "starting_after": events[0]["id"]})
    assert [e["id"] for e in rest["data"]] == [events[1]["id"]] and not rest["has_more"]


def test_an_entry_cannot_be_rewritten_and_expires_with_the_retention(
    stack: LocalStack, api: Api, ddb: Any, table: str, uid: str
) -> None:
    product = api.post("/v1/products", {"name": f"Kept {uid}"}, expect=201)
    [entry] = _events(api, product["id"])
    log = DynamoAuditLog(ddb, table)
    stored = log.get(entry["id"])
    forged = stored.model_copy(update={"changes": {"name": {"before": None, "after": "forged"}}})
    assert log.append(forged) is False
    assert log.get(entry["id"]) == stored
    item = ddb.get_item(TableName=table, Key={"pk": {"S": f"AUDIT#{entry['id']}"}, "sk": {"S": "AUDIT"}})["Item"]
    retention = api.get("/v1/settings")["audit_retention_days"]
    assert int(item["expires_at"]["N"]) == int(stored.created.timestamp()) + retention * 86400


def test_settings_changes_are_recorded_with_secrets_redacted(stack: LocalStack, api: Api, ddb: Any, table: str) -> None:
    settings = api.get("/v1/settings")
    original = {k: v for k, v in settings.items() if k != "object"}
    iban = "NL91ABNA0417164300"
    seen = {e["id"] for e in _events(api, "settings", limit=100)}
    try:
        changed = api.request("PUT", "/v1/settings", expect=200, json={**original, "seller_iban": iban})
        assert changed.json()["seller_iban"] == iban
        api.request("PUT", "/v1/settings", expect=200, json={**original, "seller_iban": iban})  # the same again
    finally:
        api.request("PUT", "/v1/settings", expect=200, json=original)
    events = [e for e in _events(api, "settings", limit=100) if e["id"] not in seen]
    # set, (the same again: nothing), restored: two entries, the IBAN's values redacted
    assert sorted(e["changes"]["seller_iban"]["after"] or "" for e in events) == ["", "[redacted]"]
    [set_iban] = [e for e in events if e["changes"]["seller_iban"]["after"]]
    before = "[redacted]" if original.get("seller_iban") else None
    assert set_iban["changes"] == {"seller_iban": {"before": before, "after": "[redacted]"}}
    assert set_iban["route"] == "PUT /v1/settings" and set_iban["object_type"] == "settings"
    raw = ddb.get_item(TableName=table, Key={"pk": {"S": f"AUDIT#{set_iban['id']}"}, "sk": {"S": "AUDIT"}})["Item"]
    assert iban not in json.dumps(raw)


def test_unauthenticated_and_bad_queries(stack: LocalStack, api: Api) -> None:
    assert requests.get(f"{api.base}/v1/audit_events", timeout=30).status_code == 401
    bad = api.request("GET", "/v1/audit_events", params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"
    wide = api.request("GET", "/v1/audit_events", params={"from": "2020-01-01"})
    assert wide.status_code == 400 and wide.json()["error"]["param"] == "from"
    assert api.request("GET", "/v1/exports/journal", params={"from": "2026-01-01"}).json()["error"]["param"] == "to"
    assert api.request("GET", "/v1/reports/revenue", params={"from": "2026-1", "to": "2026-02"}).status_code == 400


def test_the_journal_and_the_revenue_report_query_the_tax_months_never_scan(stack: LocalStack, api: Api) -> None:
    from kassa.adapters import usage
    from kassa.services.accounting import LOOKBACK_MONTHS

    usage.reset()
    journal = api.get("/v1/exports/journal", params={"from": "2026-03-01", "to": "2026-03-31"})
    calls = usage.snapshot()
    assert "calls.dynamodb.scan" not in calls
    # the month and the 37 before it, for invoices and for credit notes
    assert calls["calls.dynamodb.query"] >= 2 * (LOOKBACK_MONTHS + 1)
    assert all(t["debit"] == t["credit"] for t in journal["totals"])
    usage.reset()
    api.get("/v1/reports/revenue", params={"from": "2026-01", "to": "2026-03"})
    assert "calls.dynamodb.scan" not in usage.snapshot()


def test_a_change_through_the_dashboard_names_its_user(stack: LocalStack, api: Api, table: str, uid: str) -> None:
    from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts
    from kassa.domain.dashboard import CSRF_HEADER, SESSION_COOKIE
    from kassa.services import dashboard

    accounts = DynamoDashboardAccounts(stack.client("dynamodb"), table)
    email, password = f"auditor-{uid}@example.com", "a long dashboard password"
    user = dashboard.add_user(accounts, email, password, "full", stack.clock.now())
    signed = requests.post(
        stack.api_url + "/dashboard/session", json={"email": email, "password": password}, timeout=30
    )
    assert signed.status_code == 200, signed.text
    token = signed.headers["Set-Cookie"].split(";", 1)[0].partition("=")[2]
    headers = {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: signed.json()["csrf_token"]}
    made = requests.post(stack.api_url + "/v1/products", json={"name": f"Dash {uid}"}, headers=headers, timeout=30)
    assert made.status_code == 201, made.text
    [entry] = _events(api, made.json()["id"])
    assert entry["actor"] == {"type": "user", "id": user.id, "dashboard": True}


def test_a_pending_record_left_behind_is_delivered_by_the_next_write(
    stack: LocalStack, api: Api, ddb: Any, table: str, uid: str
) -> None:
    # as if the entry of a rename could not be written after the change: the change is there, its
    # pending record too (written before the route ran), the entry not
    product = api.post("/v1/products", {"name": f"Before {uid}"}, expect=201)
    before = api.get(f"/v1/products/{product['id']}")
    api.post(f"/v1/products/{product['id']}", {"name": f"After {uid}"})
    log = DynamoAuditLog(ddb, table)
    actor = Actor(type="api_key", id=_key_id(stack))
    request = AuditedRequest(actor=actor, request_key=f"req:lost-{uid}", method="POST",
                             route="POST /v1/products/{product_id}", path=f"/v1/products/{product['id']}")  # fmt: skip
    started = datetime(2020, 1, 1, tzinfo=UTC)
    pending = audit.hold(log, request, {audit.Ref("product", product["id"]): before}, started)
    assert [p.key for p in log.stale(started, 10)] == [pending.key]
    api.post("/v1/products", {"name": f"Other {uid}"}, expect=201)  # the next write delivers it
    expected = event_id(actor, request.request_key, product["id"])
    lost = [e for e in _events(api, product["id"]) if e["id"] == expected]
    assert [e["changes"]["name"] for e in lost] == [{"before": f"Before {uid}", "after": f"After {uid}"}]
    assert lost[0]["created"].startswith("2020-01-01")
    assert log.stale(started, 10) == []
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": f"PENDAUDIT#{pending.key}"},
                                                           "sk": {"S": "PENDAUDIT"}})  # fmt: skip


def test_an_object_that_is_no_id_is_a_400_naming_it(api: Api) -> None:
    """Not a 500 from DynamoDB (an index key is at most 2 KB): ids are what kassa gives out."""
    for bad in ["x" * 3000, "prod_1 OR 1"]:
        answer = api.request("GET", "/v1/audit_events", params={"object": bad})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "object"
