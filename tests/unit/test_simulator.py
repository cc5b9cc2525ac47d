"""``kassa simulate``: the deployed services in one process over in-memory AWS and Stripe, with and
without faults; the invariants it checks, and that they can fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from infra import wiring
from kassa.adapters.memory import MemoryStore
from kassa.domain.errors import Conflict, PaymentProviderError, Unavailable
from kassa.domain.money import Money
from kassa.services.ports import ChargeStatus
from kassa_local.cli import main
from kassa_local.faults import FaultPlan, FaultyGateway, FaultyStore, SimulatedCrash
from kassa_local.memory_gateway import Charge, DeclineModel, MemoryGateway
from kassa_local.sim_invariants import check
from kassa_local.simulator import (
    DEFAULT_SCENARIO,
    Scenario,
    SimOptions,
    SimQueue,
    Simulation,
    mrr_by_month,
    summary,
)

REQUIRED = ("renewals", "invoices", "charges_succeeded", "double_charges", "lost_invoices", "duplicate_invoices",
            "ledger_balanced", "wall_s")  # fmt: skip


def _simulate(**kwargs: object) -> Simulation:
    sim = Simulation(SimOptions(**kwargs))  # type: ignore[arg-type]
    sim.report_json = sim.run()  # type: ignore[attr-defined]
    return sim


@pytest.fixture(scope="module")
def quiet() -> Simulation:
    return _simulate(subscriptions=25, months=3, seed=7, decline_rate=0.2)


@pytest.fixture(scope="module")
def faulty() -> Simulation:
    return _simulate(subscriptions=40, months=4, seed=3, decline_rate=0.1, faults=True, fault_scale=3)


def test_a_small_seed_bills_every_period_once_and_balances(quiet: Simulation) -> None:
    report = quiet.report_json  # type: ignore[attr-defined]
    assert set(REQUIRED) <= report.keys()
    assert report["ok"], report["violations"]
    assert report["renewals"] >= 25  # two renewals for most of 25 subscriptions in 3 months
    assert report["double_charges"] == report["lost_invoices"] == report["duplicate_invoices"] == 0
    assert report["number_gaps"] == report["unmatched_paid_invoices"] == report["stuck_invoices"] == 0
    assert report["ledger_balanced"] is True
    # the money the invoices say was paid is what Stripe charged
    assert report["revenue"] == report["charged"]
    assert report["charges_succeeded"] == report["invoices_paid"]
    # declines were dunned (emails through the notifications queue) and some recovered
    assert report["dunning"]["invoices_failed"] > 0
    assert report["dunning"]["emails"].get("receipt", 0) == report["invoices_paid"]
    assert report["dunning"]["emails"].get("payment_failed", 0) > 0
    assert [m["month"] for m in report["mrr_by_month"]] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert not report["errors"] and not any(report["record_failures"].values())


def test_the_same_seed_gives_the_same_run(quiet: Simulation) -> None:
    second = _simulate(subscriptions=25, months=3, seed=7, decline_rate=0.2)
    again, first = dict(second.report_json), dict(quiet.report_json)  # type: ignore[attr-defined]
    for timing in ("wall_s", "cpu_s", "renewals_per_s"):
        first.pop(timing), again.pop(timing)
    assert again == first
    assert sorted(second.memory.invoices) == sorted(quiet.memory.invoices)  # the same ids, from the seed


def test_faults_at_every_boundary_leave_the_invariants_intact(faulty: Simulation) -> None:
    report = faulty.report_json  # type: ignore[attr-defined]
    assert report["ok"], report["violations"]
    injected = report["faults_injected"]
    for kind in ("dynamodb.throttle", "dynamodb.conflict", "stripe.lost_response", "sqs.redelivery",
                 "eventbridge.duplicate", "webhook.duplicate", "webhook.delay"):  # fmt: skip
        assert injected.get(kind, 0) > 0, kind
    # the faults were felt: records failed and were delivered again
    assert sum(sum(f.values()) for f in report["record_failures"].values()) > 0
    assert report["renewals"] > 40


def test_the_invariants_catch_a_double_charge_a_lost_invoice_and_a_number_gap(quiet: Simulation) -> None:
    store, stripe, now = quiet.memory, quiet.stripe, quiet.clock.now()
    assert check(store, stripe, now)["ok"]
    paid = next(
        i
        for i in store.invoices.values()
        if i.status.value == "paid" and i.billing_reason.value == "subscription_cycle"
    )
    first = next(c for c in stripe.intents.values() if c.invoice == paid.id and c.status == "succeeded")
    stripe.intents["pi_second"] = Charge("pi_second", paid.id, 9, first.customer, first.payment_method, first.amount,
                                          first.currency, "succeeded", first.result)  # fmt: skip
    found = check(store, stripe, now)
    assert found["double_charges"] == 1 and not found["ok"] and found["violations"]["double_charges"] == [paid.id]
    assert not found["ledger_balanced"]  # Stripe took more than the invoices say
    del stripe.intents["pi_second"]

    removed = store.invoices.pop(paid.id)
    try:
        found = check(store, stripe, now)
        assert found["lost_invoices"] >= 1 and found["number_gaps"] == 1 and found["unmatched_charges"] == 1
    finally:
        store.invoices[paid.id] = removed
    assert check(store, stripe, now)["ok"]


def test_the_invariants_catch_a_balance_that_is_not_its_ledger(quiet: Simulation) -> None:
    store, stripe, now = quiet.memory, quiet.stripe, quiet.clock.now()
    customer = next(iter(store.customers.values()))
    store.customers[customer.id] = customer.model_copy(update={"balance": -500, "balance_currency": "EUR"})
    try:
        found = check(store, stripe, now)
        assert found["balance_mismatches"] == 1 and not found["ledger_balanced"] and not found["ok"]
    finally:
        store.customers[customer.id] = customer


def test_the_queues_deliver_their_functions_batches_and_analytics_refreshes_a_customer_once_a_batch(
    quiet: Simulation,
) -> None:
    triggers = {fn.queue_trigger.queue: fn.queue_trigger.batch_size for fn in wiring.FUNCTIONS if fn.queue_trigger}
    assert {name: q.batch_size for name, q in quiet.queues.items()} == {name: triggers[name] for name in quiet.queues}
    outcomes = quiet.report_json["outcomes"]  # type: ignore[attr-defined]
    refreshes = outcomes.get("analytics:changed", 0) + outcomes.get("analytics:unchanged", 0)
    # a renewal publishes several events of its customer: the batch answers them with one refresh
    assert outcomes["analytics:coalesced"] > refreshes > 0
    assert quiet.report_json["analytics_consistent"]  # type: ignore[attr-defined]


def test_a_batch_is_one_invocation_and_a_failing_record_alone_is_delivered_again() -> None:
    invocations: list[list[str]] = []

    def invocation() -> Callable[[dict[str, Any], int], object]:
        seen: list[str] = []
        invocations.append(seen)

        def record(body: dict[str, Any], receives: int) -> object:
            seen.append(body["id"])
            if body["id"] == "bad" and receives < 2:
                raise Unavailable("throttled")
            return "ok"

        return record

    queue = SimQueue("q", invocation, FaultPlan(seed=1, enabled=False), max_receive_count=5, batch_size=3)
    queue.send([{"id": i} for i in ("a", "bad", "b", "c")])
    while queue.messages:
        queue.deliver()
    assert invocations == [["a", "bad", "b"], ["c", "bad"], ["bad"]]
    assert queue.failures == {"Unavailable": 2} and not queue.dead


# ---------------------------------------------------------------------------------- the parts
def test_a_timeout_after_commit_has_written_and_raises_what_dynamodb_raises() -> None:
    store = MemoryStore()
    plan = FaultPlan(seed=1, enabled=True, rates={"dynamodb.timeout_after_commit": 1.0})
    faulty = FaultyStore(store, plan)
    from kassa.domain.settings import MerchantSettings

    with pytest.raises(Conflict):
        faulty.put_settings(MerchantSettings())
    assert store.settings is not None  # committed before the answer was lost
    plan.rates = {"crash_between_writes": 1.0}
    with pytest.raises(SimulatedCrash):
        faulty.put_timer("timer:x", datetime(2026, 1, 1, tzinfo=UTC))
    assert "timer:x" in store.timers
    plan.rates = {"dynamodb.throttle": 1.0}
    with pytest.raises(Unavailable):
        faulty.get_settings()


def test_a_lost_stripe_answer_charged_once_and_the_retry_replays_it() -> None:
    stripe = MemoryGateway(declines=DeclineModel(rate=0))
    plan = FaultPlan(seed=1, enabled=True, rates={"stripe.lost_response": 1.0})
    gateway = FaultyGateway(stripe, plan)
    args = dict(customer="cus_1", payment_method="pm_1", amount=Money(1000, "EUR"), invoice_id="in_1", attempt=1,
                description="x")  # fmt: skip
    with pytest.raises(PaymentProviderError):
        gateway.charge(**args)
    assert len(stripe.succeeded()) == 1
    plan.enabled = False
    replay = gateway.charge(**args)  # the same idempotency key: Stripe's first answer, nothing charged
    assert replay.status is ChargeStatus.SUCCEEDED and len(stripe.succeeded()) == 1
    assert [e["type"] for e in stripe.take_webhooks()] == ["payment_intent.succeeded"]


def test_the_decline_model_is_reproducible_and_hard_declines_do_not_recover() -> None:
    model = DeclineModel(rate=1.0, seed=5)
    outcomes = {f"in_{n}": model.first_decline(f"in_{n}") for n in range(300)}
    assert outcomes == {f"in_{n}": DeclineModel(rate=1.0, seed=5).first_decline(f"in_{n}") for n in range(300)}
    assert len({d.name for d in outcomes.values() if d}) >= 8  # every class shows up
    for invoice, decline in outcomes.items():
        assert decline is not None
        if decline.recovers == 0:
            assert model.outcome(invoice, 5) == decline
    assert DeclineModel(rate=0.0).outcome("in_1", 1) is None


def test_off_session_authentication_waits_for_the_customer() -> None:
    stripe = MemoryGateway(declines=DeclineModel(rate=1.0, seed=1))
    invoice = next(
        f"in_{n}"
        for n in range(500)
        if (d := stripe.declines.first_decline(f"in_{n}")) and d.code == "authentication_required"
    )
    result = stripe.charge(customer="c", payment_method="pm", amount=Money(500, "EUR"), invoice_id=invoice, attempt=1,
                           description="x")  # fmt: skip
    assert result.status is ChargeStatus.REQUIRES_ACTION and result.code == "authentication_required"
    assert stripe.intents[result.payment_intent or ""].status == "requires_payment_method"


def test_a_scenario_mistake_names_its_field() -> None:
    raw = json.loads(DEFAULT_SCENARIO.read_text())
    del raw["plans"][1]["currency"]
    with pytest.raises(ValueError, match=r"plans\[1\]\.currency"):
        Scenario.parse(raw)
    raw = json.loads(DEFAULT_SCENARIO.read_text())
    raw["countries"][0]["currency"] = "CHF"
    with pytest.raises(ValueError, match=r"countries\[0\]\.currency CHF has no plan"):
        Scenario.parse(raw)


def test_mrr_by_month_is_the_analytics_functions_and_its_movements_add_up(quiet: Simulation) -> None:
    report = quiet.report_json  # type: ignore[attr-defined]
    months = report["mrr_by_month"]
    assert report["analytics_consistent"] and months == mrr_by_month(quiet.memory, quiet.clock.now())
    assert [m["month"] for m in months] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    before: dict[str, int] = {}
    for row in months:
        for currency, mrr in row["mrr"].items():
            moved = row["movements"][currency]
            change = moved["new"] + moved["expansion"] + moved["reactivation"] - moved["contraction"] - moved["churn"]
            assert mrr - before.get(currency, 0) == change
            before[currency] = mrr
    assert all(v > 0 for v in months[-1]["mrr"].values())


def test_the_command_writes_the_report(tmp_path) -> None:
    out = tmp_path / "sim.json"
    code = main(
        ["simulate", "--subscriptions", "6", "--months", "2", "--seed", "2", "--no-progress", "--json", str(out)]
    )
    report = json.loads(out.read_text())
    assert code == 0 and report["ok"] and set(REQUIRED) <= report.keys()
    assert report["subscriptions"] == 6 and report["months"] == 2


def test_a_failing_run_prints_its_seed_to_replay(quiet: Simulation) -> None:
    report = dict(quiet.report_json)  # type: ignore[attr-defined]
    assert summary(report).endswith("OK")
    report.update(ok=False, double_charges=1)
    text = summary(report)
    assert "double charges 1" in text and text.endswith("FAILED — replay with --seed 7")


def test_the_help_describes_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "simulator:" in text and "pricing what-if:" in text  # the two argument groups
    assert "kassa simulate --subscriptions 1000 --months 12" in text
    assert "kassa simulate --history history.json --price-book new.json" in text
    simulator, what_if = text.split("\nsimulator:\n")[1].split("\npricing what-if:\n")
    assert "--subscriptions N" in simulator and "--faults" in simulator and "--history" not in simulator
    assert "--history FILE" in what_if and "--price-book FILE" in what_if and "--subscriptions" not in what_if


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--history", "h.json", "--price-book", "b.json", "--subscriptions", "5"],
         ["--history", "--price-book", "--subscriptions"]),
        (["--faults", "--months", "3", "--elasticity", "0.1"], ["--elasticity", "--months", "--faults"]),
        (["--csv", "out.csv", "--no-progress"], ["--csv", "--no-progress"]),
    ],
)  # fmt: skip
def test_mixing_the_two_modes_is_an_error_naming_the_options(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", *argv])
    assert done.value.code == 2
    error = capsys.readouterr().err
    assert "kassa simulate: error:" in error and all(option in error for option in named)
