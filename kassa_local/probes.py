"""Idle probes: when would a scheduled handler next find work? Lets the virtual clock skip ticks
on which the handler would find nothing due (see docs/local-stack.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime


def renewal_probe(now: datetime) -> datetime | None:
    from kassa.adapters import container

    return container.store().next_due_after(now)  # type: ignore[no-any-return]


def dunning_probe(now: datetime) -> datetime | None:
    from kassa.adapters import container

    return container.store().next_dunning_after(now)  # type: ignore[no-any-return]


def webhook_route_probe(now: datetime) -> datetime | None:
    """Now when an endpoint change's rule put never came (the tick would put it), else no tick."""
    from kassa.adapters import container

    return now if container.webhooks(with_delivery=False).route_behind() else None


def default_idle_probes() -> dict[str, Callable[[datetime], datetime | None]]:
    return {"renewal-sweep": renewal_probe, "dunning-sweep": dunning_probe, "webhook-route": webhook_route_probe}
