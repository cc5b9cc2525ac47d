"""Domain events, named like Stripe's (invoice.paid, customer.subscription.updated …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kassa.domain.ids import derived_id


class DomainEvent(BaseModel):
    id: str
    type: str
    created: datetime
    data: dict[str, Any]
    previous_attributes: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        type: str,
        obj: BaseModel,
        now: datetime,
        *,
        cause: str,
        previous: dict[str, Any] | None = None,
    ) -> DomainEvent:
        """``cause`` makes the id deterministic: the same change published twice has one id."""
        data = obj.model_dump(mode="json")
        return cls(
            id=derived_id("evt", type, str(data.get("id")), cause),
            type=type,
            created=now,
            data=data,
            previous_attributes=previous or {},
        )
