"""Recording what a merchant request changed (docs/audit.md): the objects it names are read before
it runs and again after it succeeded, and one entry per object that changed is appended to the
audit log, with the fields before and after (``kassa.domain.audit``: redacted, write-once ids).

The API layer (``kassa.api.audit``) decides which requests are recorded (successful writes to
``/v1``) and who acted; this module knows how to read each kind of object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kassa.domain.audit import (
    AuditedRequest,
    AuditEvent,
    PendingAudit,
    PendingRef,
    audit_event,
    changes,
    pending_key,
    redact,
)
from kassa.domain.errors import NotFound
from kassa.services.ports import AuditLog, BillingStore, Clock

SETTINGS = "settings"

#: how each kind of object is read (None: it does not exist)
_LOADERS: dict[str, Callable[[BillingStore, str], Any]] = {
    "product": lambda store, i: store.get_product(i),
    "price": lambda store, i: store.get_price(i),
    "customer": lambda store, i: store.get_customer(i),
    "subscription": lambda store, i: store.get_subscription(i),
    "invoice": lambda store, i: store.get_invoice(i),
    "credit_note": lambda store, i: store.get_credit_note(i),
    "coupon": lambda store, i: store.get_coupon(i),
    "promotion_code": lambda store, i: store.get_promotion_code_by_id(i),
    "meter": lambda store, i: store.get_meter(i),
    SETTINGS: lambda store, _: store.get_settings(),
}
#: the kind of an object named by a path parameter, or by an id's prefix (a body's ``invoice``)
KIND_OF_PARAMETER = {f"{kind}_id": kind for kind in _LOADERS}
KIND_OF_PREFIX = {"prod_": "product", "price_": "price", "cus_": "customer", "sub_": "subscription", "in_": "invoice",
                  "cn_": "credit_note", "promo_": "promotion_code", "mtr_": "meter"}  # fmt: skip


@dataclass(frozen=True)
class Ref:
    kind: str
    id: str


#: what an id looks like (anything else names no stored object: it is not read)
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def kind_of(object_id: str) -> str | None:
    if not ID_PATTERN.match(object_id):
        return None
    return next((kind for prefix, kind in KIND_OF_PREFIX.items() if object_id.startswith(prefix)), None)


def refs_in(value: Any, depth: int = 1) -> list[Ref]:
    """The objects a JSON answer shows (``{"object", "id"}``, at the top and ``depth`` levels in)."""
    found: list[Ref] = []
    if isinstance(value, Mapping):
        kind, object_id = value.get("object"), value.get("id")
        if isinstance(kind, str) and kind in _LOADERS and isinstance(object_id, str):
            found.append(Ref(kind, object_id))
        if depth > 0:
            for nested in value.values():
                found += refs_in(nested, depth - 1)
    return found


def refs_named(path_parameters: Mapping[str, str], body: Any) -> list[Ref]:
    """The objects a request names: its path parameters, and the ids of known kinds in its body's
    top-level fields (a refund's ``invoice``, a checkout's ``customer_id``)."""
    found = [
        Ref(KIND_OF_PARAMETER[name], value)
        for name, value in path_parameters.items()
        if name in KIND_OF_PARAMETER and ID_PATTERN.match(value)
    ]
    if isinstance(body, Mapping):
        for value in body.values():
            if isinstance(value, str) and (kind := kind_of(value)) is not None:
                found.append(Ref(kind, value))
    return list(dict.fromkeys(found))


def _created_since(doc: Mapping[str, Any] | None, started: datetime) -> bool:
    created = (doc or {}).get("created")
    if not isinstance(created, str):
        return False
    return datetime.fromisoformat(created) >= started.replace(microsecond=0)


def snapshot(store: BillingStore, ref: Ref) -> dict[str, Any] | None:
    try:
        model = _LOADERS[ref.kind](store, ref.id)
    except NotFound:
        return None
    return model.model_dump(mode="json") if model is not None else None


def snapshots(store: BillingStore, refs: Iterable[Ref]) -> dict[Ref, dict[str, Any] | None]:
    return {ref: snapshot(store, ref) for ref in dict.fromkeys(refs)}


def record(
    log: AuditLog,
    store: BillingStore,
    clock: Clock,
    request: AuditedRequest,
    before: Mapping[Ref, dict[str, Any] | None],
    shown: Iterable[Ref],
    started: datetime,
    created: datetime | None = None,
    redacted: bool = False,
) -> list[AuditEvent]:
    """After a successful request: read the objects it named or answered again, and append one entry
    per object that changed (an entry already there — a replay — is not written again). An object
    the answer shows without the request naming it counts only when the request created it (a
    checkout's new customer): one that existed before (a customer found by email) was not read
    before, so what changed on it is not known."""
    refs = list(dict.fromkeys([*before, *shown]))
    after = snapshots(store, refs)
    if redacted:  # ``before`` was kept redacted (a pending record): compare like with like
        after = {ref: redact(state) if state else state for ref, state in after.items()}
    refs = [ref for ref in refs if ref in before or _created_since(after.get(ref), started)]
    changed = [(ref, before.get(ref), after.get(ref)) for ref in refs]
    changed = [(ref, old, new) for ref, old, new in changed if changes(old, new)]
    if not changed:  # a no-op write: the settings are not read for nothing
        return []
    retention = store.get_settings().audit_retention_days
    now = created or clock.now()  # to the microsecond: the listing's order (entries of one instant: by id)
    return [e for ref, old, new in changed if (e := record_change(log, request, ref, old, new, now, retention))]


def record_change(
    log: AuditLog,
    request: AuditedRequest,
    ref: Ref,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
    retention_days: int,
) -> AuditEvent | None:
    """Append the entry of one object's change, once (None: nothing changed, or it is there already).
    Also for changes to objects the store does not hold (API keys rolled by a dashboard action)."""
    event = audit_event(request, object_id=ref.id, object_type=ref.kind, before=before, after=after, created=now,
                        retention_days=retention_days)  # fmt: skip
    return event if event is not None and log.append(event) else None


#: how long a request may still be working on its pending record (the api function's timeout, 29 s,
#: and some): older ones are delivered by whoever comes next
PENDING_GRACE = timedelta(minutes=2)
DELIVERED_PER_CALL = 5


def hold(
    log: AuditLog, request: AuditedRequest, before: Mapping[Ref, dict[str, Any] | None], started: datetime
) -> PendingAudit:
    """Before a request runs: its pending record, with what it names as it is (redacted). When it cannot
    be written this raises, and the request is not run: a change is recorded, or not made."""
    named = [PendingRef(kind=ref.kind, id=ref.id, before=redact(state) if state else None)
             for ref, state in before.items()]  # fmt: skip
    pending = PendingAudit(key=pending_key(request), created=started, actor=request.actor,
                           request_key=request.request_key, method=request.method, route=request.route,
                           path=request.path, request_id=request.request_id,
                           idempotency_key=request.idempotency_key, named=named)  # fmt: skip
    log.hold(pending)
    return pending


def answered(pending: PendingAudit, shown: Iterable[Ref], when: datetime) -> PendingAudit:
    """The pending record once its request answered: what the answer showed, and when."""
    return pending.model_copy(
        update={"shown": [PendingRef(kind=r.kind, id=r.id) for r in dict.fromkeys(shown)], "answered": when}
    )


def deliver(log: AuditLog, store: BillingStore, clock: Clock, pending: PendingAudit) -> list[AuditEvent]:
    """Write the entries of a pending record left behind, then remove it. The objects are read as they
    are now; the entries get the ids the request would have given them (written once), so a record
    delivered twice, or after the request wrote some of its entries, adds nothing twice."""
    before = {Ref(r.kind, r.id): r.before for r in pending.named}
    shown = [Ref(r.kind, r.id) for r in pending.shown or []]
    written = record(log, store, clock, pending.request, before, shown, pending.created,
                     created=pending.answered or pending.created, redacted=True)  # fmt: skip
    log.release(pending.key)
    return written


def deliver_stale(log: AuditLog, store: BillingStore, clock: Clock, limit: int = DELIVERED_PER_CALL) -> int:
    """Deliver up to ``limit`` pending records no request is working on any more (see PENDING_GRACE)."""
    found = log.stale(clock.now() - PENDING_GRACE, limit)
    for pending in found:
        deliver(log, store, clock, pending)
    return len(found)
