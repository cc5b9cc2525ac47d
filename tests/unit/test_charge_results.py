"""Stripe's answers to a charge as kassa's ChargeResult: one mapping for the Stripe adapter, the
simulator's in-memory gateway and the test fake."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import stripe

from kassa.adapters.stripe_gateway import StripeGateway
from kassa.domain.money import Money
from kassa.services.ports import ChargeResult, ChargeStatus, charge_result_from_card_error, intent_status
from kassa_local.memory_gateway import DeclineModel, MemoryGateway


def _stripe_answering(error: stripe.CardError) -> StripeGateway:
    gateway = StripeGateway("sk_test_x", "pk_test_x")

    def create(*args: Any, **kwargs: Any) -> Any:
        raise error

    gateway._client = SimpleNamespace(v1=SimpleNamespace(payment_intents=SimpleNamespace(create=create)))  # type: ignore[assignment]
    return gateway


def _charge(gateway: Any, invoice: str, off_session: bool = True) -> ChargeResult:
    return gateway.charge(  # type: ignore[no-any-return]
        customer="cus_1", payment_method="pm_1", amount=Money(500, "EUR"), invoice_id=invoice, attempt=1,
        description="x", off_session=off_session,
    )  # fmt: skip


@pytest.mark.parametrize("code", ["authentication_required", "payment_intent_authentication_failure"])
def test_a_card_error_asking_for_authentication_waits_for_the_customer(code: str) -> None:
    result = charge_result_from_card_error({"code": code, "payment_intent": {"id": "pi_1"}}, attempt=3)
    assert result.status is ChargeStatus.REQUIRES_ACTION and result.code == code
    assert result.payment_intent == "pi_1" and result.attempt == 3


def test_a_card_error_without_a_reason_is_a_card_declined_decline() -> None:
    result = charge_result_from_card_error({"payment_intent": "not an object", "message": "No."})
    assert result == ChargeResult(
        ChargeStatus.DECLINED, None, code="card_declined", decline_code="card_declined", message="No."
    )
    expired = charge_result_from_card_error({"code": "expired_card", "payment_intent": {"client_secret": "s"}})
    assert expired.decline_code is None and expired.client_secret == "s"


def test_the_intent_is_left_waiting_for_3ds_on_session_and_for_a_card_otherwise() -> None:
    assert intent_status(ChargeStatus.REQUIRES_ACTION, off_session=False) == "requires_action"
    assert intent_status(ChargeStatus.REQUIRES_ACTION, off_session=True) == "requires_payment_method"
    assert intent_status(ChargeStatus.DECLINED, off_session=False) == "requires_payment_method"
    assert intent_status(ChargeStatus.SUCCEEDED, off_session=True) == "succeeded"
    assert intent_status(ChargeStatus.PROCESSING, off_session=True) == "processing"


@pytest.mark.parametrize("decline", ["insufficient_funds", "authentication_required", "expired_card"])
def test_the_simulator_and_the_stripe_adapter_report_a_decline_alike(decline: str) -> None:
    simulator = MemoryGateway(declines=DeclineModel(rate=1.0, seed=2))
    invoice = next(
        f"in_{n}" for n in range(2000) if (d := simulator.declines.first_decline(f"in_{n}")) and d.name == decline
    )
    simulated = _charge(simulator, invoice)
    cls = simulator.declines.outcome(invoice, 1)
    assert cls is not None and cls.name == decline
    body = {
        "error": {
            "type": "card_error",
            "code": cls.code,
            "decline_code": cls.decline_code,
            "message": cls.message,
            "payment_intent": {"id": simulated.payment_intent, "status": "requires_payment_method"},
        }
    }
    error = stripe.CardError(cls.message, None, cls.code, json_body=body)
    assert _charge(_stripe_answering(error), invoice) == simulated
    assert simulated.status is (
        ChargeStatus.REQUIRES_ACTION if decline == "authentication_required" else ChargeStatus.DECLINED
    )
