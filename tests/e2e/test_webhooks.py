"""Outbound webhooks on the local stack: a receiver on 127.0.0.1 verifies every signature with the
stripe SDK, gets every event of a checkout exactly once after failures on the first tries
(connection refused, 500, timeout), in any order, on the virtual clock's retry schedule; a disabled
endpoint gets nothing; the delivery log, a secret roll, redelivery and ``kassa webhooks listen``."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections import Counter

import pytest

from kassa_local.client import Api
from kassa_local.webhooks_cli import WebhookReceiver, cmd_listen

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_every_event_arrives_once_verified_after_refused_500_and_timeout(api: Api, stack, monkeypatch) -> None:
    monkeypatch.setenv("KASSA_WEBHOOK_TIMEOUT_S", "0.5")  # the functions read it per invocation
    port = _free_port()  # nothing listens there yet: the first attempts are refused
    url = f"http://127.0.0.1:{port}/webhooks"
    endpoint = api.post("/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]}, expect=201)
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
    off = api.post("/v1/webhook_endpoints", {"url": url + "/off", "enabled_events": ["invoice.*"]}, expect=201)
    assert api.post(f"/v1/webhook_endpoints/{off['id']}", {"disabled": True})["status"] == "disabled"
    listed = api.get("/v1/webhook_endpoints")["data"]
    assert {e["id"] for e in listed} >= {endpoint["id"], off["id"]} and all("secret" not in e for e in listed)

    stack.clear_events()
    price = api.catalog(currency="EUR", amount=1500)
    done = api.subscribe(price["id"], "wh.lifecycle@example.com")
    assert done["invoice"]["status"] == "paid"
    stack.drain()
    published = {e["detail"]["id"]: e["detail"]["type"] for e in stack.events()}
    assert {"invoice.paid", "customer.subscription.created", "customer.created"} <= set(published.values())

    # 2nd try: 500; 3rd: held past the timeout; 4th: 200
    def respond(event_id: str, nth: int) -> int | float:
        return {1: 500, 2: 1.0}.get(nth, 200)

    with WebhookReceiver(port, secrets=[endpoint["secret"]], respond=respond) as receiver:
        api.advance("1m")  # the first retry
        assert {r.event["id"] for r in receiver.received} == set(published)
        api.advance("3m")
        api.advance("9m")
        accepted = receiver.accepted()
        counts = Counter(r.event["id"] for r in accepted)
        assert set(counts) == set(published) and set(counts.values()) == {1}  # each once, whatever the order
        assert all(r.verified for r in receiver.received)
        assert all(r.nth == 3 for r in accepted)
        api.advance("1d")  # nothing more is due
        assert len(receiver.accepted()) == len(published)

    log = api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries?limit=100")["data"]
    assert {d["event_id"] for d in log} == set(published)
    assert {(d["status"], d["attempts"], d["response_code"]) for d in log} == {("succeeded", 4, 200)}
    assert all(isinstance(d["latency_ms"], int) for d in log)
    assert api.get(f"/v1/webhook_endpoints/{off['id']}/deliveries")["data"] == []  # disabled: nothing

    # a roll: deliveries carry a v1 for the new and the old secret (24 h); a redelivery shows it
    rolled = api.post(f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret", {})
    assert rolled["secret"] != endpoint["secret"] and rolled["previous_secret_expires_at"]
    paid = next(i for i, t in published.items() if t == "invoice.paid")
    with WebhookReceiver(port, secrets=[endpoint["secret"]]) as receiver:
        api.post(f"/v1/webhook_endpoints/{endpoint['id']}/redeliver", {"event": paid})
        stack.drain()
        [again] = receiver.accepted()
        assert again.event["id"] == paid and again.verified and again.signature.count("v1=") == 2
        receiver.secrets = [rolled["secret"]]
        assert receiver.verify(again.body, again.signature)  # either secret verifies during the roll
        receiver.secrets = ["whsec_unrelated"]
        assert not receiver.verify(again.body, again.signature)
        # a time range: every event of the lifecycle once more
        times = sorted(d["event_created"] for d in log)
        ranged = api.post(f"/v1/webhook_endpoints/{endpoint['id']}/redeliver", {"since": times[0], "until": times[-1]})
        assert {d["event_id"] for d in ranged["data"]} == set(published)
        stack.drain()
        assert Counter(r.event["id"] for r in receiver.accepted()) == Counter({**dict.fromkeys(published, 1), paid: 2})
    api.request("DELETE", f"/v1/webhook_endpoints/{off['id']}", expect=200)
    api.request("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200)
    api.get(f"/v1/webhook_endpoints/{endpoint['id']}", expect=404)


def test_bad_endpoints_are_refused_with_the_field_named(api: Api) -> None:
    bad = api.post("/v1/webhook_endpoints", {"url": "ftp://x", "enabled_events": ["*"]}, expect=400)
    assert bad["error"]["param"] == "url"
    bad = api.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:1/x", "enabled_events": ["nope"]}, expect=400)
    assert bad["error"]["param"] == "enabled_events.0"
    assert api.post("/v1/webhook_endpoints/we_missing/roll_secret", {}, expect=404)["error"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://localhost/hook",  # a hostname resolving to a loopback address
        "http://hooks.example.com/hook",  # https only
    ],
)
def test_aws_mode_refuses_private_targets_through_the_api(api: Api, monkeypatch, url: str) -> None:
    monkeypatch.setenv("KASSA_WEBHOOK_MODE", "aws")  # what a deployed function runs with (the default)
    refused = api.post("/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]}, expect=400)
    assert refused["error"]["param"] == "url"
    assert all(e["url"] != url for e in api.get("/v1/webhook_endpoints")["data"])  # nothing written


def test_kassa_webhooks_listen_prints_deliveries_and_cleans_up(api: Api, stack, capsys) -> None:
    args = argparse.Namespace(state_dir=str(stack.state_dir), port=0, events="customer.*", json=False, max=0)
    stop = threading.Event()
    runner = threading.Thread(target=cmd_listen, args=(args, stop), daemon=True)
    runner.start()
    listed = lambda: api.get("/v1/webhook_endpoints")["data"]  # noqa: E731
    _wait(lambda: any(e["description"] == "kassa webhooks listen" for e in listed()))
    created = api.post(
        "/v1/customers", {"email": "listen@example.com", "name": "Lis Ten", "address": {"country": "NL"}}, expect=201
    )
    stack.drain()
    printed: list[str] = []

    def shown() -> bool:
        printed.append(capsys.readouterr().out)
        return created["id"] in "".join(printed)

    _wait(shown)
    stop.set()
    runner.join(15)
    assert not runner.is_alive()
    out = "".join(printed) + capsys.readouterr().out
    assert "--> customer.created" in out and "(verified)" in out and "stopped" in out
    assert all(e["description"] != "kassa webhooks listen" for e in api.get("/v1/webhook_endpoints")["data"])


def test_three_days_of_retries_on_the_virtual_clock_disable_the_endpoint_and_email_the_merchant(
    api: Api, stack
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/webhooks"  # never listens
    endpoint = api.post("/v1/webhook_endpoints", {"url": dead, "enabled_events": ["customer.created"]}, expect=201)
    api.post("/v1/customers", {"email": "gone@example.com", "name": "Gone", "address": {"country": "NL"}}, expect=201)
    stack.drain()
    [delivery] = api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries")["data"]
    assert (delivery["status"], delivery["attempts"]) == ("retrying", 1)
    assert "connection failed" in delivery["error"]
    api.advance("2d23h")
    assert api.get(f"/v1/webhook_endpoints/{endpoint['id']}")["status"] == "enabled"
    api.advance("2h")
    after = api.get(f"/v1/webhook_endpoints/{endpoint['id']}")
    assert (after["status"], after["disabled_reason"]) == ("disabled", "failing")
    [delivery] = api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries")["data"]
    assert (delivery["status"], delivery["attempts"]) == ("failed", 18)  # the whole schedule, in virtual time
    mails = [m for m in stack.outbox() if m["template"] == "webhook_endpoint_disabled"]
    assert len(mails) == 1 and mails[0]["status"] == "sent" and dead in mails[0]["text"]


def test_the_rule_follows_the_enabled_endpoints_and_without_one_nothing_reaches_the_delivery_queue(
    api: Api, stack
) -> None:
    events = stack.client("events")

    def rule() -> tuple[str, dict]:  # type: ignore[type-arg]
        found = events.describe_rule(Name="kassa-webhooks", EventBusName="kassa-events")
        return found["State"], json.loads(found["EventPattern"])

    def deliveries() -> int:  # the delivery function's invocations so far
        return int(stack.stats()["functions"].get("webhook_delivery", {}).get("invocations", 0))

    def customer(n: int) -> None:
        body = {"email": f"rule{n}@example.com", "name": "Ru Le", "address": {"country": "NL"}}
        api.post("/v1/customers", body, expect=201)
        stack.drain()

    for e in api.get("/v1/webhook_endpoints")["data"]:
        api.request("DELETE", f"/v1/webhook_endpoints/{e['id']}", expect=200)
    state, pattern = rule()
    assert state == "DISABLED" and pattern["source"] == ["kassa"]
    before = deliveries()
    customer(1)
    assert deliveries() == before  # no endpoint: the event never reaches the queue nor the function
    with WebhookReceiver(0) as receiver:
        endpoint = api.post("/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["customer.*"]},
                            expect=201)  # fmt: skip
        assert rule() == ("ENABLED", {"source": ["kassa"], "detail-type": [{"prefix": "customer."}]})
        api.post(f"/v1/webhook_endpoints/{endpoint['id']}", {"enabled_events": ["invoice.paid"]})
        assert rule() == ("ENABLED", {"source": ["kassa"], "detail-type": ["invoice.paid"]})
        before = deliveries()
        customer(2)
        assert deliveries() == before and receiver.received == []  # customer.created is not subscribed
        api.post(f"/v1/webhook_endpoints/{endpoint['id']}", {"enabled_events": ["customer.*"]})
        customer(3)
        assert [r.event["type"] for r in receiver.accepted()] == ["customer.created"]
        api.post(f"/v1/webhook_endpoints/{endpoint['id']}", {"disabled": True})
        assert rule()[0] == "DISABLED"
        customer(4)
        assert len(receiver.received) == 1  # disabled: nothing more
    api.request("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", expect=200)
