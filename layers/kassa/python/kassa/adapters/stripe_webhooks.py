"""Stripe webhook signature verification with the stripe SDK."""

from __future__ import annotations

from typing import Any

from kassa.domain.errors import InvalidInput
from kassa.services.webhooks import SIGNATURE_TOLERANCE_S


def stripe_verifier(payload: str, header: str | None, secret: str) -> dict[str, Any]:
    from stripe import SignatureVerificationError, Webhook  # the SDK's own verification

    try:
        event = Webhook.construct_event(payload, header, secret, tolerance=SIGNATURE_TOLERANCE_S)
    except SignatureVerificationError as error:
        raise InvalidInput(
            f"invalid Stripe-Signature: {error.user_message or error}", param="Stripe-Signature"
        ) from error
    except (ValueError, AttributeError, TypeError) as error:  # the SDK assumes a JSON object
        raise InvalidInput("the body is not a JSON Stripe event", param="body") from error
    return dict(event.to_dict() if hasattr(event, "to_dict") else event)
