"""Outbound webhooks: signing (checked with the stripe SDK's own verifier), the backoff schedule,
wildcard matching, the 3-day disable with its email, SSRF refusals, duplicate and stale messages,
and the HTTP sender against a receiver on 127.0.0.1 (500, timeout, refused, redirect)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from fakes import FakeMailer, FakeOutbox, FixedClock
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.adapters.webhooks import (
    NO_EVENT,
    DynamoWebhookStore,
    EventBridgeWebhookRule,
    HttpWebhookSender,
    MemoryWebhookStore,
    rule_pattern,
)
from kassa.domain.errors import InvalidInput, Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.webhooks import (
    DISABLE_AFTER,
    EVENT_TYPES,
    MAX_ENDPOINTS,
    MAX_RETRY_GAP,
    RETRY_FOR,
    SIGNATURE_HEADER,
    Delivery,
    EndpointLimitReached,
    SigningSecret,
    WebhookEndpoint,
    after_attempt,
    check_enabled_events,
    matches,
    payload,
    refused_address,
    retry_gap,
    retry_schedule,
    roll_secret,
    signature_header,
    subscribed,
    valid_secrets,
)
from kassa.services.outbound_webhooks import Notify, Webhooks, redeliver_window
from kassa.services.ports import WebhookResponse
from kassa_local.webhooks_cli import WebhookReceiver

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC = "93.184.216.34"


def _event(n: int = 1, type_: str = "invoice.paid", at: datetime = START) -> DomainEvent:
    return DomainEvent(id=f"evt_{n}", type=type_, created=at, data={"id": f"in_{n}", "object": "invoice"})


# ------------------------------------------------------------------------------------------- signing
def test_the_signature_verifies_with_the_stripe_sdk_and_a_roll_signs_with_both_secrets() -> None:
    body = payload(_event())
    now = int(time.time())
    header = signature_header(body, ["whsec_new", "whsec_old"], now)
    assert header.startswith(f"t={now},v1=") and header.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):  # during a roll, either secret verifies
        assert stripe.WebhookSignature.verify_header(body.decode(), header, secret, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_other", tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):  # the payload is signed, not only the time
        stripe.WebhookSignature.verify_header(body.decode() + " ", header, "whsec_new", tolerance=300)
    event = stripe.Webhook.construct_event(body.decode(), header, "whsec_old")
    assert event["id"] == "evt_1" and event["type"] == "invoice.paid" and event["created"] == int(START.timestamp())


def test_a_rolled_secret_signs_for_24_hours_then_stops() -> None:
    endpoint = WebhookEndpoint(id="we_1", url="https://x.example", enabled_events=["*"],
                               secrets=[SigningSecret(secret="whsec_a")], created=START)  # fmt: skip
    rolled = roll_secret(endpoint, "whsec_b", START)
    assert valid_secrets(rolled, START + timedelta(hours=23, minutes=59)) == ["whsec_b", "whsec_a"]
    assert valid_secrets(rolled, START + timedelta(hours=24)) == ["whsec_b"]
    twice = roll_secret(rolled, "whsec_c", START + timedelta(hours=1))  # a's expiry is kept, not extended
    assert [(s.secret, s.expires_at) for s in twice.secrets] == [
        ("whsec_c", None),
        ("whsec_b", START + timedelta(hours=25)),
        ("whsec_a", START + timedelta(hours=24)),
    ]


# ------------------------------------------------------------------------------------------- backoff
def test_backoff_grows_by_three_from_a_minute_capped_at_six_hours_and_ends_after_three_days() -> None:
    assert [retry_gap(n) for n in range(1, 8)] == [
        timedelta(minutes=1), timedelta(minutes=3), timedelta(minutes=9), timedelta(minutes=27),
        timedelta(minutes=81), timedelta(minutes=243), MAX_RETRY_GAP,
    ]  # fmt: skip
    times = retry_schedule(START)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:-1] == sorted(gaps[:-1]) and max(gaps) == MAX_RETRY_GAP  # the last one is cut at 3 days
    assert times[-1] - START == RETRY_FOR  # the last try at 3 days exactly
    assert len(times) == 18  # the first try, 6 growing retries (6 h 4 m in all), 10 six-hourly ones, the last


# ------------------------------------------------------------------------------------------- matching
@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "invoice.paid", True),
        (["invoice.paid"], "invoice.paid", True),
        (["invoice.paid"], "invoice.payment_failed", False),
        (["customer.subscription.*"], "customer.subscription.updated", True),
        (["customer.subscription.*"], "customer.updated", False),
        (["customer.*"], "customer.subscription.deleted", True),
        (["invoice.*"], "invoiced.thing", False),
    ],
)
def test_matching(patterns: list[str], event_type: str, expected: bool) -> None:
    assert matches(patterns, event_type) is expected


def test_enabled_events_must_be_types_kassa_sends() -> None:
    assert check_enabled_events(["invoice.paid", "customer.subscription.*", "invoice.paid"]) == [
        "invoice.paid", "customer.subscription.*"]  # fmt: skip
    for bad, param in ((["invoice.payed"], "enabled_events.0"), (["*", "nothing.*"], "enabled_events.1"),
                       ([], "enabled_events")):  # fmt: skip
        with pytest.raises(InvalidInput) as refused:
            check_enabled_events(bad)
        assert refused.value.param == param
    assert "customer.subscription.updated" in EVENT_TYPES


# ------------------------------------------------------------------------------------------- fakes
class FakeSender:
    def __init__(self, answers: list[int | None] | None = None, default: int | None = 200) -> None:
        self.answers = list(answers or [])
        self.default = default
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        self.posts.append((url, body, headers))
        status = self.answers.pop(0) if self.answers else self.default
        return WebhookResponse(status, 5, None if status else "timed out")


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], datetime]] = []

    def send_at(self, messages: list[tuple[dict[str, Any], datetime]], now: datetime) -> None:
        self.messages.extend(messages)

    def run(self, service: Webhooks, clock: FixedClock, until: datetime) -> list[str]:
        """Deliver the queued messages in due order, moving the clock to each due time."""
        outcomes: list[str] = []
        while self.messages:
            self.messages.sort(key=lambda m: m[1])
            message, due = self.messages.pop(0)
            if due > until:
                self.messages.insert(0, (message, due))
                break
            if due > clock.now():
                clock.set(due)
            outcomes.append(service.handle(message))
        return outcomes


def _service(sender: FakeSender, clock: FixedClock, **kwargs: Any) -> tuple[Webhooks, FakeQueue]:
    queue = FakeQueue()
    kwargs.setdefault("public_only", False)
    return Webhooks(MemoryWebhookStore(), clock, sender=sender, queue=queue, **kwargs), queue


def _envelope(event: DomainEvent) -> dict[str, Any]:
    return {"detail-type": event.type, "source": "kassa", "detail": event.model_dump(mode="json")}


# ------------------------------------------------------------------------------------------- service
def test_retries_until_a_success_then_stop_and_the_log_says_so() -> None:
    clock = FixedClock(START)
    sender = FakeSender([500, None, 503])
    service, queue = _service(sender, clock)
    endpoint = service.create("http://127.0.0.1:9/hook", ["invoice.*"])
    assert service.handle(_envelope(_event())) == "fanned_out:1"
    assert service.handle(_envelope(_event(2, "customer.created"))) == "fanned_out:0"  # not subscribed
    outcomes = queue.run(service, clock, START + timedelta(days=4))
    assert outcomes == ["retrying", "retrying", "retrying", "delivered"]
    assert clock.now() == START + timedelta(minutes=1 + 3 + 9)  # the backoff, in the clock's time
    [delivery] = service.deliveries(endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 4, 200)
    assert service.get(endpoint.id).failing_since is None
    _, body, headers = sender.posts[-1]
    assert json.loads(body)["id"] == "evt_1" and headers["Kassa-Event-Id"] == "evt_1"
    secret = service.get(endpoint.id).secrets[0].secret
    stripe.WebhookSignature.verify_header(body.decode(), headers[SIGNATURE_HEADER], secret, tolerance=None)


def test_duplicates_and_stale_messages_send_nothing_more() -> None:
    clock = FixedClock(START)
    sender = FakeSender()
    service, queue = _service(sender, clock)
    service.create("http://127.0.0.1:9/hook", ["*"])
    service.handle(_envelope(_event()))
    service.handle(_envelope(_event()))  # the bus delivered the event twice: claimed once, both queued
    queue.messages.append(queue.messages[0])  # and SQS delivered an attempt twice
    assert sorted(queue.run(service, clock, START)) == ["delivered", "stale", "stale"]
    assert len(sender.posts) == 1


def test_an_endpoint_failing_for_three_days_is_disabled_and_the_merchant_emailed_once() -> None:
    clock = FixedClock(START)
    outbox, mailer = FakeOutbox(), FakeMailer()
    notify = Notify(outbox, mailer, "billing@example.com", lambda: "owner@shop.example")
    service, queue = _service(FakeSender(default=500), clock, notify=notify)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    for n in range(3):  # three events, retried side by side
        clock.advance(minutes=7)
        service.handle(_envelope(_event(n, at=clock.now())))
        queue.run(service, clock, clock.now())  # the first attempt, at once
    queue.run(service, clock, START + timedelta(days=5))
    stored = service.get(endpoint.id)
    assert stored.status == "disabled" and stored.disabled_reason == "failing"
    assert stored.failing_since == START + timedelta(minutes=7)
    assert clock.now() - stored.failing_since >= DISABLE_AFTER
    assert [(e.template, e.to) for e, _ in mailer.sent] == [("webhook_endpoint_disabled", "owner@shop.example")]
    assert endpoint.url in mailer.sent[0][0].text
    statuses = {d.status for d in service.deliveries(endpoint.id)}
    assert statuses <= {"failed"}
    # disabled: a new event is not even queued; enabled again, the 3 days start over
    posts = len(service._sender.posts)  # type: ignore[union-attr]  # noqa: SLF001
    assert service.handle(_envelope(_event(9, at=clock.now()))) == "fanned_out:0"
    assert len(service._sender.posts) == posts  # type: ignore[union-attr]  # noqa: SLF001
    again = service.update(endpoint.id, disabled=False)
    assert again.status == "enabled" and again.failing_since is None


def test_one_success_within_three_days_keeps_the_endpoint_enabled() -> None:
    endpoint = WebhookEndpoint(id="we_1", url="https://x.example", enabled_events=["*"],
                               secrets=[SigningSecret(secret="s")], created=START)  # fmt: skip
    failing, disabled = after_attempt(endpoint, START, ok=False)
    assert failing.failing_since == START and not disabled
    later, disabled = after_attempt(failing, START + DISABLE_AFTER - timedelta(seconds=1), ok=False)
    assert not disabled and later.status == "enabled"
    healed, _ = after_attempt(later, START + DISABLE_AFTER - timedelta(seconds=1), ok=True)
    assert healed.failing_since is None
    _, disabled = after_attempt(failing, START + DISABLE_AFTER, ok=False)
    assert disabled


def test_redelivery_of_one_event_and_of_a_time_range() -> None:
    clock = FixedClock(START)
    sender = FakeSender()
    service, queue = _service(sender, clock)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    for n in range(4):
        service.handle(_envelope(_event(n, at=START + timedelta(hours=n))))
    queue.run(service, clock, START)
    assert len(sender.posts) == 4
    clock.advance(hours=5)
    [one] = service.redeliver(endpoint.id, event_id="evt_2")
    assert one.event_id == "evt_2"
    ranged = service.redeliver(endpoint.id, since=START + timedelta(hours=1), until=START + timedelta(hours=2))
    assert sorted(d.event_id for d in ranged) == ["evt_1", "evt_2"]
    queue.run(service, clock, clock.now())
    assert [json.loads(body)["id"] for _, body, _ in sender.posts[4:]].count("evt_2") >= 1
    assert sorted(json.loads(body)["id"] for _, body, _ in sender.posts[4:]) in (
        ["evt_1", "evt_2"],
        ["evt_1", "evt_2", "evt_2"],
    )
    with pytest.raises(InvalidInput):
        service.redeliver(endpoint.id)


# ------------------------------------------------------------------------------------------- SSRF
def _resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str) -> list[str]:
        if host in table:
            return table[host]
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            return [host]
        except OSError:
            raise socket.gaierror("no such host") from None

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://internal.example/hook",  # resolves to 10.0.0.7
        "https://both.example/hook",  # one public, one private address
        "http://hooks.example/hook",  # https only in AWS
        "https://user:pw@hooks.example/hook",
    ],
)
def test_aws_mode_refuses_private_link_local_and_loopback_targets(url: str) -> None:
    resolve = _resolver({"internal.example": ["10.0.0.7"], "both.example": [PUBLIC, "192.168.1.1"],
                         "hooks.example": [PUBLIC]})  # fmt: skip
    service, _ = _service(FakeSender(), FixedClock(START), public_only=True, resolve=resolve)
    with pytest.raises(InvalidInput) as refused:
        service.create(url, ["*"])
    assert refused.value.param == "url"
    assert service.create("https://hooks.example/hook", ["*"]).url == "https://hooks.example/hook"


def test_refused_addresses() -> None:
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "::1", "fe80::1",
                    "fc00::1", "0.0.0.0", "100.64.0.1", "::ffff:10.0.0.1", "224.0.0.1"):  # fmt: skip
        assert refused_address(address), address
    assert refused_address(PUBLIC) is None and refused_address("2606:4700::1111") is None


def test_the_sender_checks_the_address_again_at_delivery_time() -> None:
    """DNS rebinding: the host was public when the endpoint was created, private now."""
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    service, _ = _service(FakeSender(), FixedClock(START), public_only=True, resolve=lambda host: next(answers))
    endpoint = service.create("https://rebind.example/hook", ["*"])
    sender = HttpWebhookSender(public_only=True, resolve=lambda host: next(answers, ["127.0.0.1"]))
    result = sender.post(endpoint.url, b"{}", {})
    assert result.status is None and result.error is not None and "refused" in result.error
    localhost = HttpWebhookSender(public_only=True).post("https://localhost/hook", b"{}", {})
    assert localhost.status is None and "refused" in (localhost.error or "")


# ------------------------------------------------------------------------------------------- HTTP
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_sender_outcomes() -> None:
    answers: dict[str, int | float] = {"fail": 500, "redirect": 302, "slow": 1.0}
    with WebhookReceiver(0, respond=lambda event_id, nth: answers.get(event_id, 200)) as receiver:
        sender = HttpWebhookSender(public_only=False, timeout_s=0.3)

        def post(event_id: str, body: bytes | None = None) -> WebhookResponse:
            return sender.post(receiver.url, body or json.dumps({"id": event_id}).encode(), {})

        assert post("ok").status == 200
        assert post("fail").status == 500
        redirect = post("redirect")
        assert redirect.status == 302 and redirect.error == "HTTP 302"  # a failure, and not followed:
        assert [r.event["id"] for r in receiver.received].count("redirect") == 1  # the Location is itself
        slow = post("slow")
        assert slow.status is None and "timed out" in (slow.error or "")
        too_big = post("big", b"x" * (256 * 1024 + 1))
        assert too_big.status is None and "larger" in (too_big.error or "")
        assert "big" not in {r.event.get("id") for r in receiver.received}
    refused = HttpWebhookSender(public_only=False).post(f"http://127.0.0.1:{_closed_port()}/x", b"{}", {})
    assert refused.status is None and "connection failed" in (refused.error or "")


def test_a_payload_over_256_kb_is_never_sent_nor_retried() -> None:
    clock = FixedClock(START)
    sender = FakeSender()
    service, queue = _service(sender, clock)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    big = DomainEvent(id="evt_big", type="invoice.paid", created=START, data={"id": "in_1", "memo": "x" * 262_144})
    service.handle(_envelope(big))
    assert queue.run(service, clock, START + timedelta(days=4)) == ["too_large"]
    [delivery] = service.deliveries(endpoint.id)
    assert delivery.status == "failed" and "larger" in (delivery.error or "") and sender.posts == []


def test_a_redelivery_starts_a_new_round_of_retries_from_one_minute() -> None:
    clock = FixedClock(START)
    sender = FakeSender(default=500)
    service, queue = _service(sender, clock)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    service.handle(_envelope(_event()))
    queue.run(service, clock, START + timedelta(days=4))
    [dead] = service.deliveries(endpoint.id)
    assert (dead.status, dead.attempts) == ("failed", 18)
    service.update(endpoint.id, disabled=False)  # three days of failures disabled it
    clock.advance(days=1)
    redelivered_at = clock.now()
    service.redeliver(endpoint.id, event_id="evt_1")
    queue.run(service, clock, redelivered_at + timedelta(minutes=4))
    [again] = service.deliveries(endpoint.id)
    assert again.attempts == 21  # at once, +1 min, +3 min: the backoff starts over
    assert again.next_attempt_at == redelivered_at + timedelta(minutes=1 + 3 + 9)


class SqsLikeQueue(FakeQueue):
    """Delivers a message at its due time or after SQS's longest delay (15 min), whichever is first."""

    def send_at(self, messages: list[tuple[dict[str, Any], datetime]], now: datetime) -> None:
        self.messages.extend((m, min(due, now + timedelta(minutes=15))) for m, due in messages)


def test_waits_longer_than_the_queue_delay_hop_until_their_time() -> None:
    clock = FixedClock(START)
    sender = FakeSender(default=500)
    service = Webhooks(MemoryWebhookStore(), clock, sender=sender, queue=(queue := SqsLikeQueue()), public_only=False)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    attempts: list[datetime] = []
    real_post = sender.post

    def timed_post(url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        attempts.append(clock.now())
        return real_post(url, body, headers)

    sender.post = timed_post  # type: ignore[method-assign]
    service.handle(_envelope(_event()))
    outcomes = queue.run(service, clock, START + timedelta(days=4))
    assert attempts == retry_schedule(START)  # every attempt at its time, none early
    assert outcomes.count("early") == 275  # the hops over 15 minutes (docs/benchmarks.md)
    [delivery] = service.deliveries(endpoint.id)
    assert (delivery.status, delivery.attempts) == ("failed", 18)


def test_the_sqs_queue_caps_the_delay_and_carries_the_due_time() -> None:
    from kassa.adapters.webhooks import DUE_ATTRIBUTE, SqsDelayedQueue

    sent: list[dict[str, Any]] = []

    class Client:
        def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            sent.extend(kwargs["Entries"])
            return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]]}

    due = [START, START + timedelta(seconds=61.5), START + timedelta(hours=2)]
    SqsDelayedQueue(Client(), "https://sqs/q").send_at([({"n": i}, at) for i, at in enumerate(due)], START)
    assert [e["DelaySeconds"] for e in sent] == [0, 62, 900]
    assert [int(e["MessageAttributes"][DUE_ATTRIBUTE]["StringValue"]) for e in sent] == [
        int(d.timestamp()) for d in due
    ]
    sent.clear()
    SqsDelayedQueue(Client(), "https://sqs/q", max_delay_s=0).send_at([({"n": 0}, due[2])], START)  # the local stack
    assert sent[0]["DelaySeconds"] == 0 and json.loads(sent[0]["MessageBody"]) == {"n": 0}


@given(data=st.data(), n_events=st.integers(1, 5), failures=st.integers(0, 4))
@settings(max_examples=40)
def test_duplicated_and_reordered_messages_still_deliver_each_event_once(
    data: st.DataObject, n_events: int, failures: int
) -> None:
    """SQS and EventBridge deliver at least once and in any order: whatever the copies and the order,
    each event is answered 2xx exactly once per endpoint, after its endpoint's failures."""
    clock = FixedClock(START)
    answered: list[tuple[str, str, int]] = []  # (url, event id, status)

    class Flaky(FakeSender):
        def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
            event_id = json.loads(body)["id"]
            tried = sum(1 for u, e, _ in answered if (u, e) == (url, event_id))
            status = 500 if tried < failures else 200
            answered.append((url, event_id, status))
            return WebhookResponse(status, 5, None if status == 200 else "HTTP 500")

    service, queue = _service(Flaky(), clock)
    urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    for url in urls:
        service.create(url, ["invoice.*"])
    copies = st.integers(1, 2)
    pending = [(_envelope(_event(n, at=START)), START) for n in range(n_events) for _ in range(data.draw(copies))]
    while pending or queue.messages:
        pending += [(m, due) for m, due in queue.messages for _ in range(data.draw(copies))]  # duplicates
        queue.messages.clear()
        soonest = min(due for _, due in pending)
        ready = [i for i, (_, due) in enumerate(pending) if due <= max(soonest, clock.now())]
        message, due = pending.pop(data.draw(st.sampled_from(ready)))  # any order among the due ones
        if due > clock.now():
            clock.set(due)
        service.handle(message)
    ok = Counter((url, event_id) for url, event_id, status in answered if status == 200)
    assert ok == Counter({(url, f"evt_{n}"): 1 for url in urls for n in range(n_events)})
    assert len(answered) == len(urls) * n_events * (failures + 1)  # no attempt more than the schedule's


def test_a_save_that_fails_after_the_post_loses_no_retry() -> None:
    """The next attempt is queued before the outcome is saved: the message is received again (SQS), and
    of the two next-attempt messages one proceeds, the other is stale."""
    from kassa.domain.errors import Unavailable

    class FlakyStore(MemoryWebhookStore):
        failures = 1

        def save_delivery(self, delivery: Delivery) -> Delivery:
            if self.failures:
                self.failures -= 1
                raise Unavailable("storage is throttling; retry")
            return super().save_delivery(delivery)

    clock = FixedClock(START)
    sender, queue = FakeSender([500, 500, 200]), FakeQueue()
    service = Webhooks(FlakyStore(), clock, sender=sender, queue=queue, public_only=False)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    service.handle(_envelope(_event()))
    [(first, _)] = queue.messages
    queue.messages.clear()
    with pytest.raises(Unavailable):
        service.handle(first)
    assert service.handle(first) == "retrying"  # SQS delivers the failed message again
    assert sorted(queue.run(service, clock, START + timedelta(hours=1))) == ["delivered", "stale"]
    [delivery] = service.deliveries(endpoint.id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2) and len(sender.posts) == 3


def test_every_event_kassa_publishes_can_be_subscribed_to() -> None:
    """``EVENT_TYPES`` (what ``enabled_events`` accepts, docs/webhooks.md) covers every
    ``DomainEvent.of("<type>", …)`` in the code: a new event type must be added there too."""
    import re
    from pathlib import Path

    import kassa

    root = Path(kassa.__file__).parent
    published = {
        match.group(1)
        for path in root.rglob("*.py")
        for match in re.finditer(r'DomainEvent\.of\(\s*"([a-z_.]+)"', path.read_text())
    }
    assert len(published) > 20
    assert published <= set(EVENT_TYPES), sorted(published - set(EVENT_TYPES))


# ------------------------------------------------------------------------------------------- the route
class FakeRoute:
    """The EventBridge rule in front of the delivery queue: what was put, or a refusal."""

    def __init__(self) -> None:
        self.puts: list[list[str]] = []
        self.down = False

    def route(self, subscribed: list[str], *, cached: bool = False) -> None:
        if self.down:
            raise Unavailable("EventBridge is unavailable")
        self.puts.append(subscribed)


def _endpoint(n: int, events: list[str], status: str = "enabled") -> WebhookEndpoint:
    return WebhookEndpoint(id=f"we_{n}", url="https://x.example", enabled_events=events, status=status,  # type: ignore[arg-type]
                           secrets=[SigningSecret(secret="s")], created=START)  # fmt: skip


def test_what_the_enabled_endpoints_subscribe_to_together() -> None:
    assert subscribed([]) == []
    assert subscribed([_endpoint(1, ["*"], status="disabled")]) == []
    both = [_endpoint(1, ["invoice.paid", "customer.created"]), _endpoint(2, ["invoice.*", "customer.created"])]
    assert subscribed(both) == ["customer.created", "invoice.*"]  # invoice.paid is in invoice.*
    nested = [_endpoint(1, ["customer.subscription.*"]), _endpoint(2, ["customer.*"])]
    assert subscribed(nested) == ["customer.*"]
    assert subscribed([*both, _endpoint(3, ["*"])]) == ["*"]
    assert subscribed([*both, _endpoint(3, ["*"], status="disabled")]) == ["customer.created", "invoice.*"]


def test_the_rule_pattern_filters_by_detail_type_with_prefixes_and_lets_nothing_through_for_no_endpoint() -> None:
    assert rule_pattern(["*"], "kassa") == {"source": ["kassa"]}
    assert rule_pattern(["invoice.paid", "customer.subscription.*"], "kassa") == {
        "source": ["kassa"], "detail-type": ["invoice.paid", {"prefix": "customer.subscription."}]}  # fmt: skip
    nothing = rule_pattern([], "kassa")
    assert nothing["detail-type"] == [NO_EVENT] and NO_EVENT not in EVENT_TYPES


class FakeEvents:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_rule(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"RuleArn": "arn"}


def test_the_eventbridge_rule_is_put_disabled_without_endpoints_and_a_cached_repeat_is_skipped() -> None:
    client = FakeEvents()
    rule = EventBridgeWebhookRule(client, "kassa-events", f"kassa-test-{time.monotonic_ns()}", "kassa")
    rule.route([])
    assert (client.calls[-1]["State"], json.loads(client.calls[-1]["EventPattern"])) == (
        "DISABLED", {"source": ["kassa"], "detail-type": [NO_EVENT]})  # fmt: skip
    rule.route(["invoice.*"])
    assert client.calls[-1]["State"] == "ENABLED" and client.calls[-1]["EventBusName"] == "kassa-events"
    rule.route(["invoice.*"], cached=True)  # a burst of narrowing fan-outs: one put
    assert len(client.calls) == 2
    rule.route(["invoice.*"])  # an endpoint change always puts (another container may have put since)
    assert len(client.calls) == 3


def test_endpoint_changes_keep_the_route_to_the_enabled_endpoints_events() -> None:
    clock, route = FixedClock(START), FakeRoute()
    service, _ = _service(FakeSender(), clock, route=route)
    first = service.create("http://127.0.0.1:9/a", ["invoice.paid"])
    second = service.create("http://127.0.0.1:9/b", ["customer.subscription.*"])
    assert route.puts == [["invoice.paid"], ["invoice.paid", "customer.subscription.*"]]
    service.update(second.id, description="no route change")
    assert len(route.puts) == 2
    service.update(second.id, disabled=True)
    service.update(first.id, enabled_events=["*"])
    service.delete(first.id)
    assert route.puts[2:] == [["invoice.paid"], ["*"], []]  # no enabled endpoint: nothing comes
    route.down = True
    with pytest.raises(Unavailable):
        service.create("http://127.0.0.1:9/c", ["*"])
    assert [e.id for e in service.endpoints()] == [second.id]  # not left receiving nothing


def test_an_event_nobody_wants_narrows_the_route_and_so_does_a_disable_for_failing() -> None:
    clock, route = FixedClock(START), FakeRoute()
    service, queue = _service(FakeSender(default=500), clock, route=route)
    endpoint = service.create("http://127.0.0.1:9/a", ["invoice.*"])
    route.puts.clear()
    # the deployed rule (every event) let a customer.created through
    assert service.handle(_envelope(_event(1, "customer.created"))) == "fanned_out:0"
    assert route.puts == [["invoice.*"]]
    route.puts.clear()
    service.handle(_envelope(_event(2)))
    queue.run(service, clock, START + timedelta(days=4))
    assert service.get(endpoint.id).status == "disabled"
    assert route.puts == [[]]  # narrowed once, when the endpoint was disabled
    route.down = True  # a route that cannot be narrowed only costs: the event is still handled
    assert service.handle(_envelope(_event(3, "customer.created"))) == "fanned_out:0"


# ------------------------------------------------------------------------------------------- resume
def test_pending_retries_are_resumed_from_the_store_after_a_restart() -> None:
    clock = FixedClock(START)
    sender = FakeSender([500, 500])
    store = MemoryWebhookStore()
    service = Webhooks(store, clock, sender=sender, queue=FakeQueue(), public_only=False)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    service.handle(_envelope(_event(1)))
    service.handle(_envelope(_event(2)))
    service._require_queue().run(service, clock, START)  # type: ignore[attr-defined]  # noqa: SLF001
    retrying = {d.event_id: d.next_attempt_at for d in store.pending_deliveries(10)}
    assert retrying == {"evt_1": START + timedelta(minutes=1), "evt_2": START + timedelta(minutes=1)}
    # a restart: the queued retries are gone (the local stack's consumer held them in memory)
    restarted = Webhooks(store, clock, sender=sender, queue=FakeQueue(), public_only=False)
    assert restarted.resume() == 2
    queue = restarted._require_queue()  # noqa: SLF001
    assert sorted(due for _, due in queue.messages) == [START + timedelta(minutes=1)] * 2  # type: ignore[attr-defined]
    assert queue.run(restarted, clock, START + timedelta(hours=1)) == ["delivered", "delivered"]  # type: ignore[attr-defined]
    assert {d.status for d in restarted.deliveries(endpoint.id)} == {"succeeded"}
    assert store.pending_deliveries(10) == [] and restarted.resume() == 0


def test_an_attempt_waits_at_most_10_seconds_unless_the_environment_says_otherwise() -> None:
    from infra import wiring
    from kassa.adapters import container

    assert HttpWebhookSender().timeout_s == 10.0
    assert container._env(()).webhook_timeout_s == 10.0  # noqa: SLF001 - a function given no KASSA_WEBHOOK_TIMEOUT_S
    assert not any("KASSA_WEBHOOK_TIMEOUT_S" in fn.environment for fn in wiring.FUNCTIONS)  # none is, in AWS
    assert container._env((("KASSA_WEBHOOK_TIMEOUT_S", "0.5"),)).webhook_timeout_s == 0.5  # noqa: SLF001


def test_an_answer_trickled_past_the_timeout_is_a_failure() -> None:
    """Every read arrives within the read timeout, the whole answer does not: not a success."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: 123456\r\n\r\nok":
                conn.sendall(bytes([byte]))
                time.sleep(0.02)  # each byte well within the 0.3 s read timeout; 1.2 s in all

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        result = HttpWebhookSender(public_only=False, timeout_s=0.3).post(f"http://127.0.0.1:{port}/x", b"{}", {})
    finally:
        thread.join(5)
        server.close()
    assert result.status is None and "timed out" in (result.error or "")


def test_the_endpoint_list_is_read_consistently_so_a_route_put_after_a_change_sees_it() -> None:
    """sync_route lists the endpoints right after a change (and again after its put, to catch a
    concurrent change): an eventually consistent query could miss the change and leave the route too
    narrow, so the endpoints' query is strongly consistent."""

    class RecordingClient:
        def __init__(self) -> None:
            self.queries: list[dict[str, Any]] = []

        def query(self, **kwargs: Any) -> dict[str, Any]:
            self.queries.append(kwargs)
            return {"Items": []}

    client = RecordingClient()
    assert DynamoWebhookStore(client, "billing").list_endpoints() == []
    assert [q.get("ConsistentRead") for q in client.queries] == [True]


def test_a_route_put_while_changes_keep_coming_ends_with_the_last_list_put() -> None:
    """Each put of sync_route races another endpoint change (3 in a row): the loop gives up
    re-listing after its rounds, but what it listed last is what stays put, never an older list."""
    clock = FixedClock(START)
    concurrent = [["customer.created"], ["invoice.voided"], ["customer.subscription.*"]]

    class RacedRoute(FakeRoute):
        def route(self, subscribed: list[str], *, cached: bool = False) -> None:
            super().route(subscribed, cached=cached)
            if concurrent:  # another request changes an endpoint while this put is on its way
                n = 10 + len(concurrent)
                service.store.add_endpoint(_endpoint(n, concurrent.pop(0)))

    route = RacedRoute()
    service, _ = _service(FakeSender(), clock, route=route)
    service.create("http://127.0.0.1:9/a", ["invoice.paid"])
    assert not concurrent
    assert route.puts[-1] == subscribed(service.endpoints())


# ------------------------------------------------------------------------------------------- the endpoint limit
class _Interleaved:
    """The store, with both creates held at the write until each has got there: whatever a create
    checks before writing, both have checked it before either writes."""

    def __init__(self, inner: MemoryWebhookStore) -> None:
        self.inner = inner
        self.together = threading.Barrier(2, timeout=5)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_endpoint(self, endpoint: WebhookEndpoint, *args: Any, **kwargs: Any) -> None:
        self.together.wait()
        self.inner.add_endpoint(endpoint, *args, **kwargs)


def test_two_creates_interleaved_at_the_limit_one_is_refused_naming_it_and_a_delete_frees_a_place() -> None:
    from kassa.api.common import domain_error_response

    store = MemoryWebhookStore()
    service = Webhooks(store, FixedClock(START), sender=FakeSender(), queue=FakeQueue(), public_only=False,
                       route=FakeRoute())  # fmt: skip
    for n in range(MAX_ENDPOINTS - 1):
        service.create(f"http://127.0.0.1:9/{n}", ["invoice.paid"])
    service.store = _Interleaved(store)  # type: ignore[assignment]
    outcomes: list[Any] = []

    def create(n: int) -> None:
        try:
            outcomes.append(service.create(f"http://127.0.0.1:9/race{n}", ["*"]))
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes.append(error)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    created = [o for o in outcomes if isinstance(o, WebhookEndpoint)]
    refused = [o for o in outcomes if not isinstance(o, WebhookEndpoint)]
    assert len(created) == 1 and len(refused) == 1, outcomes
    [error] = refused
    assert isinstance(error, EndpointLimitReached) and f"at most {MAX_ENDPOINTS} webhook endpoints" in error.message
    answer = domain_error_response(error)  # what the API answers
    assert answer.status_code == 400
    assert json.loads(str(answer.body))["error"]["message"] == error.message
    assert len(store.list_endpoints()) == MAX_ENDPOINTS
    service.store = store
    with pytest.raises(EndpointLimitReached):
        service.create("http://127.0.0.1:9/one-more", ["*"])
    service.delete(created[0].id)  # a place again, for one
    service.create("http://127.0.0.1:9/again", ["*"])
    with pytest.raises(EndpointLimitReached):
        service.create("http://127.0.0.1:9/and-another", ["*"])
    assert len(service.endpoints()) == MAX_ENDPOINTS


# ------------------------------------------------------------------------------------------- the route heals
class _Crash(BaseException):
    """The process dies (a Lambda timeout, an out-of-memory kill): nothing after it runs."""


class CrashingRoute(FakeRoute):
    def __init__(self) -> None:
        super().__init__()
        self.crash = False

    def route(self, subscribed: list[str], *, cached: bool = False) -> None:
        if self.crash:
            raise _Crash
        super().route(subscribed, cached=cached)


def test_an_endpoint_written_whose_rule_put_never_came_is_routed_by_the_scheduled_check() -> None:
    route = CrashingRoute()
    service, _ = _service(FakeSender(), FixedClock(START), route=route)
    service.create("http://127.0.0.1:9/a", ["invoice.paid"])
    assert service.heal_route() == "in_sync" and route.puts == [["invoice.paid"]]  # nothing behind: no put
    route.crash = True
    with pytest.raises(_Crash):  # the endpoint is written, the API dies before its rule put
        service.create("http://127.0.0.1:9/b", ["customer.created"])
    assert sorted(e.enabled_events[0] for e in service.endpoints()) == ["customer.created", "invoice.paid"]
    assert route.puts[-1] == ["invoice.paid"]  # too narrow: customer.created would never come
    route.crash = False
    assert service.route_behind()
    assert service.heal_route() == "synced"
    assert route.puts[-1] == ["customer.created", "invoice.paid"]
    assert matches(route.puts[-1], "customer.created")
    assert not service.route_behind() and service.heal_route() == "in_sync"
    assert len(route.puts) == 2  # healed once


def test_a_change_saved_whose_rule_put_failed_is_routed_by_the_scheduled_check() -> None:
    route = CrashingRoute()
    service, _ = _service(FakeSender(), FixedClock(START), route=route)
    endpoint = service.create("http://127.0.0.1:9/a", ["invoice.paid"])
    route.down = True
    with pytest.raises(Unavailable):  # 503: the change is saved
        service.update(endpoint.id, enabled_events=["invoice.*"])
    route.down = False
    assert service.heal_route() == "synced" and route.puts[-1] == ["invoice.*"]
    service.update(endpoint.id, description="not a route change")
    assert not service.route_behind()
    route.crash = True
    with pytest.raises(_Crash):
        service.delete(endpoint.id)
    route.crash = False
    assert service.heal_route() == "synced" and route.puts[-1] == []  # nothing comes any more


def test_a_disable_for_failing_whose_narrowing_was_skipped_is_put_by_the_check() -> None:
    """The narrowing after a disable may be skipped (this container put the same a moment ago): it
    never marks the route put, so the check puts it once."""
    clock, route = FixedClock(START), FakeRoute()
    service, queue = _service(FakeSender(default=500), clock, route=route)
    endpoint = service.create("http://127.0.0.1:9/a", ["invoice.*"])
    service.handle(_envelope(_event(1)))
    queue.run(service, clock, START + timedelta(days=4))
    assert service.get(endpoint.id).status == "disabled" and route.puts[-1] == []
    assert service.heal_route() == "synced" and route.puts[-1] == []
    assert service.heal_route() == "in_sync"


# ------------------------------------------------------------------------------------------- redelivery range
@pytest.mark.parametrize(
    ("since", "until", "param"),
    [
        (START + timedelta(minutes=1), None, "since"),  # in the future: alone
        (START + timedelta(minutes=1), START + timedelta(hours=1), "since"),  # in the future: with until
        (START - timedelta(days=30, seconds=1), None, "since"),  # alone, more than 30 days to now
        (START - timedelta(days=31), START - timedelta(days=0.5), "until"),  # both, more than 30 days apart
        (START - timedelta(hours=1), START - timedelta(hours=2), "until"),  # until before since
        (None, START - timedelta(hours=1), "since"),  # until alone
    ],
)
def test_a_redelivery_range_is_checked_whichever_bounds_are_given(
    since: datetime | None, until: datetime | None, param: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        redeliver_window(since, until, START)
    assert refused.value.param == param


def test_a_redelivery_range_within_30_days_is_taken_as_given() -> None:
    assert redeliver_window(START - timedelta(days=30), None, START) == (START - timedelta(days=30), None)
    both = (START - timedelta(days=40), START - timedelta(days=10))
    assert redeliver_window(*both, START) == both
    assert redeliver_window(START, START + timedelta(days=1), START) == (START, START + timedelta(days=1))


def test_the_redeliver_route_refuses_a_single_bad_bound_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from kassa.adapters import container
    from kassa.api import webhook_endpoints as routes

    clock = FixedClock(START)
    service, queue = _service(FakeSender(), clock)
    endpoint = service.create("http://127.0.0.1:9/hook", ["*"])
    service.handle(_envelope(_event(1, at=START - timedelta(days=2))))
    monkeypatch.setattr(container, "webhooks", lambda with_delivery=True: service)
    cases = [
        ({"since": START + timedelta(hours=1)}, "since"),
        ({"since": START - timedelta(days=45)}, "since"),
        ({"until": START - timedelta(days=1)}, "since"),
        ({"event": "evt_1", "until": START}, "event"),
        ({"since": START - timedelta(days=45), "until": START}, "until"),
    ]
    for body, param in cases:
        with pytest.raises(InvalidInput) as refused:
            routes.redeliver_webhooks(endpoint.id, routes.RedeliverIn(**body))
        assert refused.value.param == param, body
    queue.messages.clear()
    answer = routes.redeliver_webhooks(endpoint.id, routes.RedeliverIn(since=START - timedelta(days=3)))
    assert [d["event_id"] for d in answer["data"]] == ["evt_1"] and len(queue.messages) == 1
