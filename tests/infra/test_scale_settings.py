"""The settings renewals at scale imply (infra/wiring.py, docs/operations.md): a 100,000 cohort due in
one hour renews within the hour at Stripe's live rate, paced by kassa's shared bucket and not by
Lambda; the deployed stack carries those settings."""

from __future__ import annotations

from typing import Any

from infra_cfn import function_id, queue_id, refs, resources

from infra import wiring
from kassa.adapters.stripe_gateway import STRIPE_BUDGETS, STRIPE_RATE_LIMITS

COHORT = 100_000  # subscriptions due in the same hour


def test_wiring_and_the_gateway_agree_on_stripes_limits_and_kassas_budget() -> None:
    assert wiring.STRIPE_RATE_LIMIT == STRIPE_RATE_LIMITS
    assert {mode: (b.rate, b.burst) for mode, b in STRIPE_BUDGETS.items()} == wiring.STRIPE_BUDGET
    for mode, (rate, burst) in wiring.STRIPE_BUDGET.items():
        assert rate + burst <= wiring.STRIPE_RATE_LIMIT[mode]  # over any second, within Stripe's limit


def test_a_cohort_due_in_one_hour_renews_within_the_hour_at_the_live_rate() -> None:
    rate, _ = wiring.STRIPE_BUDGET["live"]
    reachable = wiring.renewals_per_s(rate)  # the bucket's 90/s or the invoice counter's 40/s, the lower
    assert reachable == min(rate, wiring.INVOICE_NUMBERS_PER_S) == 40
    worker_rate = wiring.RENEWAL_CONCURRENCY / wiring.RENEWAL_SECONDS  # renewals/s the workers can do
    assert reachable <= worker_rate <= 1.5 * reachable  # enough workers, not many more (they would wait)
    renewals_per_hour = reachable * 3600
    assert renewals_per_hour >= COHORT
    assert wiring.RENEWALS_PER_SWEEP >= COHORT  # one sweep enqueues the whole cohort
    assert renewals_per_hour >= wiring.RENEWALS_PER_SWEEP  # and no more than renews before the next sweep
    # test mode (25 requests/s; the bucket 20/s: 72,000 an hour) enqueues 57,600 a sweep: two sweeps there
    assert wiring.renewals_per_sweep(wiring.renewals_per_s(wiring.STRIPE_BUDGET["test"][0])) == 57_600


def test_lambda_concurrency_fits_an_accounts_default_limit() -> None:
    triggered = [f.queue_trigger.max_concurrency or 0 for f in wiring.FUNCTIONS if f.queue_trigger]
    assert sum(triggered) <= 1000 - 100  # AWS keeps 100 of the default 1,000 unreserved


def _function(cfn: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = cfn["Resources"][function_id(cfn, name)]["Properties"]
    return props


def test_the_stack_renews_with_the_declared_concurrency_and_batch(cfn: dict[str, Any]) -> None:
    worker = function_id(cfn, "renewal_worker")
    (mapping,) = [
        m["Properties"]
        for m in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if refs(m["Properties"]["FunctionName"]) == {worker}
    ]
    assert refs(mapping["EventSourceArn"]) == {queue_id(cfn, "renewals")}
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == wiring.RENEWAL_CONCURRENCY == 25
    assert mapping["BatchSize"] == 10
    visibility = cfn["Resources"][queue_id(cfn, "renewals")]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * _function(cfn, "renewal_worker")["Timeout"]


def test_the_sweep_has_the_time_and_the_limit_for_a_large_cohort(cfn: dict[str, Any]) -> None:
    sweep = _function(cfn, "renewal_sweep")
    assert sweep["Timeout"] == 300
    assert sweep["Environment"]["Variables"]["KASSA_SWEEP_LIMIT"] == str(wiring.RENEWALS_PER_SWEEP)


def test_every_function_that_calls_stripe_may_take_from_the_shared_bucket() -> None:
    for fn in wiring.FUNCTIONS:
        if wiring.STRIPE_SECRET in fn.secrets and fn.name != "webhook_ingest":  # ingest only verifies signatures
            assert "RATELIMIT#" in fn.table_key_prefixes["billing"].write, fn.name
