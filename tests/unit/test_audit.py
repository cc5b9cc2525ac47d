"""The audit trail's rules and the in-memory log: before/after per field, secrets and card data
redacted, one entry per (actor, request, object), written once (docs/audit.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from kassa.adapters import container
from kassa.adapters.audit import MemoryAuditLog
from kassa.adapters.memory import MemoryStore
from kassa.api import audit as api_audit
from kassa.api.audit import audit_middleware
from kassa.api.common import ACTOR
from kassa.domain.audit import REDACTED, Actor, AuditedRequest, AuditEvent, PendingAudit, audit_event, changes, redact
from kassa.domain.catalog import Product
from kassa.domain.dashboard import Actor as DashboardActor
from kassa.domain.errors import InvalidInput, NotFound, Unavailable
from kassa.domain.settings import MerchantSettings
from kassa.services import audit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = Actor(type="api_key", id="key_live_1")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


def test_changes_name_each_field_before_and_after_and_skip_the_version() -> None:
    before = {"id": "prod_1", "name": "Basic", "description": None, "version": 3}
    after = {"id": "prod_1", "name": "Pro", "description": "the pro plan", "version": 4}
    assert changes(before, after) == {
        "description": {"before": None, "after": "the pro plan"},
        "name": {"before": "Basic", "after": "Pro"},
    }
    assert changes(before, {**before, "version": 9}) == {}


def test_secrets_and_card_data_are_redacted_at_any_depth() -> None:
    customer = {
        "email": "a@example.com",
        "default_payment_method": {"card": {"brand": "visa", "last4": "4242", "exp_month": 12}},
        "nested": [{"client_secret": "seti_123_secret_abc", "iban": "NL91ABNA0417164300", "ok": 1}],
        "seller_iban": "NL91ABNA0417164300",
        "webhook_signing_secret": "whsec_1",
    }
    clean = redact(customer)
    text = repr(clean)
    for secret in ("4242", "seti_123_secret_abc", "NL91ABNA0417164300", "whsec_1", "visa"):
        assert secret not in text
    assert clean["email"] == "a@example.com" and clean["nested"][0]["ok"] == 1
    # a secret that changed shows as changed, never its values
    diff = changes({"seller_iban": "NL91ABNA0417164300"}, {"seller_iban": "DE89370400440532013000"})
    assert diff == {"seller_iban": {"before": REDACTED, "after": REDACTED}}


def test_an_entry_per_actor_request_and_object_and_none_without_a_change() -> None:
    def entry(request_key: str, object_id: str = "prod_1", after: dict | None = None):  # type: ignore[no-untyped-def]
        request = AuditedRequest(actor=KEY, request_key=request_key, method="POST", route="POST /v1/products",
                                 path="/v1/products")  # fmt: skip
        return audit_event(request, object_id=object_id, object_type="product", before=None, created=NOW,
                           after={"name": "Basic"} if after is None else after, retention_days=10)  # fmt: skip

    first = entry("idem:k1")
    assert first is not None and first.action == "created" and first.expires_at == NOW + timedelta(days=10)
    assert entry("idem:k1").id == first.id  # the same request again: the same entry
    assert entry("idem:k2").id != first.id and entry("idem:k1", "prod_2").id != first.id
    assert entry("req:1", after={}) is None  # nothing to show: no entry
    same = AuditedRequest(actor=KEY, request_key="req:2", method="POST", route="r", path="p")
    assert audit_event(same, object_id="prod_1", object_type="product", before={"name": "x"}, after={"name": "x"},
                       created=NOW, retention_days=1) is None  # fmt: skip


def test_the_memory_log_writes_once_and_lists_in_order_with_a_cursor() -> None:
    log = MemoryAuditLog()
    events = [
        audit_event(
            AuditedRequest(
                actor=KEY,
                request_key=f"req:{i}",
                method="POST",
                route="POST /v1/products/{product_id}",
                path=f"/v1/products/prod_{i % 2}",
            ),
            object_id=f"prod_{i % 2}",
            object_type="product",
            before={"name": "a"},
            after={"name": str(i)},
            created=NOW + timedelta(minutes=i),
            retention_days=30,
        )  # fmt: skip
        for i in range(5)
    ]
    assert all(e is not None and log.append(e) for e in events)
    first = events[0]
    assert first is not None
    rewritten = first.model_copy(update={"changes": {"name": {"before": "a", "after": "forged"}}})
    assert log.append(rewritten) is False
    end = NOW + timedelta(hours=1)
    [stored] = [e for e in log.list("prod_0", NOW, end, 10, None).items if e.id == first.id]
    assert stored.changes == first.changes
    page = log.list(None, NOW, end, 2, None)
    assert [e.path for e in page.items] == ["/v1/products/prod_0", "/v1/products/prod_1"] and page.has_more
    rest = log.list(None, NOW, end, 10, page.items[-1].id)
    assert len(rest.items) == 3 and not rest.has_more
    assert [e.object_id for e in log.list("prod_1", NOW, end, 10, None).items] == ["prod_1", "prod_1"]
    assert log.list(None, NOW + timedelta(minutes=3), end, 10, None).items[0].created == NOW + timedelta(minutes=3)
    with pytest.raises(NotFound):
        log.list(None, NOW, end, 10, "aud_unknown")
    with pytest.raises(InvalidInput):
        log.list(None, end, NOW, 10, None)


def test_record_reads_the_objects_again_and_appends_what_changed() -> None:
    store = MemoryStore(settings=MerchantSettings(audit_retention_days=365))
    store.put_product(Product(id="prod_1", name="Basic", created=NOW - timedelta(days=1)))
    log, clock = MemoryAuditLog(), Clock(NOW)
    named = audit.refs_named({"product_id": "prod_1"}, {"invoice": "in_x", "name": "Pro"})
    assert named == [audit.Ref("product", "prod_1"), audit.Ref("invoice", "in_x")]
    before = audit.snapshots(store, named)
    assert before[audit.Ref("invoice", "in_x")] is None  # no such invoice: nothing to compare
    store.save_product(store.get_product("prod_1").model_copy(update={"name": "Pro"}))
    request = AuditedRequest(actor=KEY, request_key="req:abc", method="POST",
                                   route="POST /v1/products/{product_id}", path="/v1/products/prod_1")  # fmt: skip
    [written] = audit.record(log, store, clock, request, before, [], NOW)
    assert written.changes == {"name": {"before": "Basic", "after": "Pro"}}
    assert written.expires_at == NOW + timedelta(days=365)
    # the same request recorded again (a retry that reached the route once more): nothing new
    assert audit.record(log, store, clock, request, before, [], NOW) == []
    assert len(log.events) == 1
    # an object the answer shows but the request did not name: only when the request created it
    store.put_product(Product(id="prod_new", name="New", created=NOW))
    shown = audit.refs_in({"object": "product", "id": "prod_new", "x": {"object": "product", "id": "prod_1"}})
    assert shown == [audit.Ref("product", "prod_new"), audit.Ref("product", "prod_1")]
    other = AuditedRequest(actor=KEY, request_key="req:def", method="POST", route="POST /v1/products",
                                 path="/v1/products")  # fmt: skip
    created = audit.record(log, store, clock, other, {}, shown, NOW)
    assert [(e.object_id, e.action) for e in created] == [("prod_new", "created")]


def test_a_change_outside_the_store_is_recorded_once_with_its_secret_redacted() -> None:
    log = MemoryAuditLog()
    user = Actor(type="user", id="usr_1")
    request = AuditedRequest(actor=user, request_key="req:roll", method="POST", route="POST /dashboard/keys/roll",
                                   path="/dashboard/keys/roll")  # fmt: skip
    ref = audit.Ref("api_key", "key_2")
    rolled = audit.record_change(log, request, ref, None, {"id": "key_2", "secret": "sk_live_abc", "role": "full"},
                                 NOW, 30)  # fmt: skip
    assert rolled is not None and rolled.actor == user and rolled.action == "created"
    assert (
        rolled.changes["secret"] == {"before": None, "after": REDACTED} and "sk_live_abc" not in log.events[rolled.id]
    )
    assert audit.record_change(log, request, ref, None, {"id": "key_2"}, NOW, 30) is None  # its id is there


# ------------------------------------------------------------------ recorded once, or not made
class _Event:
    def __init__(self, method: str, path: str, body: str | None, headers: dict[str, str]) -> None:
        self.http_method, self.path, self.body, self.headers = method, path, body, headers
        self.request_context = SimpleNamespace(request_id="req-1")


def _app(method: str, path: str, route: str, params: dict[str, str], body: str | None = None) -> Any:
    return SimpleNamespace(
        current_event=_Event(method, path, body, {}),
        request=SimpleNamespace(route=route, path_parameters=params),
        context={ACTOR: DashboardActor(kind="key", id="key_live_1", role="full")},
    )


class _FailingLog(MemoryAuditLog):
    """A log whose entries (or whose pending records) cannot be written, as when DynamoDB throttles."""

    def __init__(self) -> None:
        super().__init__()
        self.entries_fail = self.holds_fail = False

    def append(self, event: AuditEvent) -> bool:
        if self.entries_fail:
            raise Unavailable("throttled")
        return super().append(event)

    def hold(self, pending: PendingAudit) -> None:
        if self.holds_fail:
            raise Unavailable("throttled")
        super().hold(pending)


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> tuple[MemoryStore, _FailingLog, Clock]:
    store = MemoryStore(settings=MerchantSettings(audit_retention_days=365))
    store.put_product(Product(id="prod_1", name="Basic", created=NOW - timedelta(days=1)))
    log, clock = _FailingLog(), Clock(NOW)
    monkeypatch.setattr(container, "store", lambda: store)
    monkeypatch.setattr(container, "audit_log", lambda: log)
    monkeypatch.setattr(container.clocks, "current", lambda: clock)
    monkeypatch.setattr(api_audit, "_swept_at", None, raising=False)  # each test a fresh warm function
    return store, log, clock


def _rename(store: MemoryStore, name: str) -> Any:
    def route(_: Any) -> dict[str, Any]:
        store.save_product(store.get_product("prod_1").model_copy(update={"name": name}))
        return {"object": "product", "id": "prod_1"}

    return route


def test_an_entry_that_cannot_be_written_with_the_change_is_delivered_later_once(
    wired: tuple[MemoryStore, _FailingLog, Clock],
) -> None:
    store, log, clock = wired
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})
    log.entries_fail = True
    assert audit_middleware(app, _rename(store, "Pro")) == {"object": "product", "id": "prod_1"}  # answered
    assert log.events == {} and len(log.pending) == 1  # not lost: pending, with what the answer showed
    audit.deliver_stale(log, store, clock)
    assert log.events == {} and len(log.pending) == 1  # too young: the request may still be at work
    log.entries_fail = False
    clock.at = NOW + timedelta(minutes=5)
    assert audit.deliver_stale(log, store, clock) == 1
    [entry] = [AuditEvent.model_validate_json(e) for e in log.events.values()]
    assert entry.changes == {"name": {"before": "Basic", "after": "Pro"}} and entry.created == NOW
    assert log.pending == {}
    # delivered again (a second reader that listed it too): the same id, written once
    pending = audit.hold(log, audit.AuditedRequest(actor=entry.actor, request_key="req:req-1", method="POST",
                         route=entry.route, path=entry.path), {audit.Ref("product", "prod_1"): {"name": "Basic"}},
                         NOW)  # fmt: skip
    assert audit.deliver(log, store, clock, pending) == [] and len(log.events) == 1 and log.pending == {}


def test_the_next_write_delivers_what_an_earlier_one_left_behind(wired: tuple[MemoryStore, _FailingLog, Clock]) -> None:
    store, log, clock = wired
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})
    log.entries_fail = True
    audit_middleware(app, _rename(store, "Pro"))
    log.entries_fail = False
    clock.at = NOW + timedelta(minutes=5)
    app.current_event.request_context.request_id = "req-2"
    audit_middleware(app, _rename(store, "Max"))
    # the late one reads the product as it is now (as a concurrent change shows in an entry: docs/audit.md)
    names = sorted((e["request_id"], e["changes"]["name"]["before"]) for e in map(json.loads, log.events.values()))
    assert names == [("req-1", "Basic"), ("req-2", "Pro")]
    assert log.pending == {}


def test_a_change_whose_record_cannot_be_kept_is_not_made(wired: tuple[MemoryStore, _FailingLog, Clock]) -> None:
    store, log, _ = wired
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})
    log.holds_fail = True
    with pytest.raises(Unavailable):  # a 5xx (retryable), before the route ran
        audit_middleware(app, _rename(store, "Pro"))
    assert store.get_product("prod_1").name == "Basic" and log.events == {}


def test_a_failed_request_leaves_no_pending_record(wired: tuple[MemoryStore, _FailingLog, Clock]) -> None:
    store, log, _ = wired
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})

    def refused(_: Any) -> Any:
        raise InvalidInput("no", param="name")

    with pytest.raises(InvalidInput):
        audit_middleware(app, refused)
    assert log.pending == {} and log.events == {}
    audit_middleware(app, _rename(store, "Pro"))
    assert log.pending == {} and len(log.events) == 1


def test_writes_look_for_records_left_behind_once_a_minute_not_on_every_request(
    wired: tuple[MemoryStore, _FailingLog, Clock],
) -> None:
    """The Query of PENDAUDIT#ALL is not per request: a warm function looks once a minute at most."""
    store, log, clock = wired
    looked: list[datetime] = []
    stale = log.stale

    def counted(until: datetime, limit: int) -> list[PendingAudit]:
        looked.append(until)
        return stale(until, limit)

    log.stale = counted  # type: ignore[method-assign]
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})
    for n, name in enumerate(["Pro", "Max", "Ultra"]):
        app.current_event.request_context.request_id = f"req-{n}"
        audit_middleware(app, _rename(store, name))
    assert len(looked) == 1 and len(log.events) == 3
    clock.at = NOW + timedelta(minutes=1)
    audit_middleware(app, _rename(store, "Mega"))
    assert len(looked) == 2


def test_a_write_that_changed_nothing_does_not_read_the_retention(
    wired: tuple[MemoryStore, _FailingLog, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings (for the entries' retention) are read only when there is an entry to write."""
    store, log, _ = wired
    reads: list[int] = []
    settings = store.get_settings
    monkeypatch.setattr(store, "get_settings", lambda: reads.append(1) or settings())
    app = _app("POST", "/v1/products/prod_1", "/v1/products/{product_id}", {"product_id": "prod_1"})
    audit_middleware(app, _rename(store, "Basic"))  # the name it has: nothing changed
    assert reads == [] and log.events == {} and log.pending == {}
    app.current_event.request_context.request_id = "req-2"
    audit_middleware(app, _rename(store, "Pro"))
    assert reads == [1] and len(log.events) == 1
