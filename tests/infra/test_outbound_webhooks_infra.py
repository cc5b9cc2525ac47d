"""The outbound webhooks' resources: a rule named for kassa to put (deployed with every kassa event)
routes events to the delivery queue, which triggers the delivery function; that function may send to
its own queue (the retries), send the merchant's email, put that one rule, and reach only the
endpoints, deliveries and outbox items of the table."""

from __future__ import annotations

from typing import Any

import pytest
from infra_cfn import (
    actions_on,
    actions_with_prefix,
    allowed,
    bus_id,
    dlq_id,
    function_id,
    queue_id,
    refs,
    resources,
    role_of_function,
    role_statements,
    rules_on_bus,
)

from infra import wiring
from infra.settings import EVENT_SOURCE

QUEUE = wiring.WEBHOOK_DELIVERY_QUEUE.name


def _rule(cfn: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    qid = queue_id(cfn, QUEUE)
    [(lid, rule)] = [(lid, r["Properties"]) for lid, r in rules_on_bus(cfn).items()
                     if any(refs(t["Arn"]) == {qid} for t in r["Properties"]["Targets"])]  # fmt: skip
    return lid, rule


def test_the_rule_to_the_delivery_queue_is_named_for_kassa_to_put_and_deployed_with_every_event(
    cfn: dict[str, Any],
) -> None:
    qid = queue_id(cfn, QUEUE)
    _, rule = _rule(cfn)
    # deployed as before (nothing lost on a deploy); the first endpoint change, or the first event no
    # endpoint wants, puts the endpoints' detail-types by this name
    assert rule["EventPattern"] == {"source": [EVENT_SOURCE]}
    assert rule["Name"] == wiring.WEBHOOKS_ROUTE.rule_name and rule.get("State", "ENABLED") == "ENABLED"
    [target] = rule["Targets"]
    assert refs(target["DeadLetterConfig"]["Arn"]) == {dlq_id(cfn, "rule/webhooks")}
    props = cfn["Resources"][qid]["Properties"]
    assert props["VisibilityTimeout"] >= 6 * wiring.function("webhook_delivery").timeout_s
    assert refs(props["RedrivePolicy"]["deadLetterTargetArn"]) == {dlq_id(cfn, QUEUE)}


def test_the_delivery_function_is_triggered_by_the_queue_and_may_send_its_retries_to_it(cfn: dict[str, Any]) -> None:
    fid = function_id(cfn, "webhook_delivery")
    qid = queue_id(cfn, QUEUE)
    [mapping] = [m["Properties"] for m in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
                 if refs(m["Properties"]["FunctionName"]) == {fid}]  # fmt: skip
    assert refs(mapping["EventSourceArn"]) == {qid}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    statements = role_statements(cfn, role_of_function(cfn, fid))
    assert "sqs:SendMessage" in actions_on(statements, qid)
    assert "ses:SendEmail" in actions_with_prefix(statements, "ses:")
    assert not actions_with_prefix(statements, "events:Put") - {"events:PutRule"}  # it publishes nothing
    env = cfn["Resources"][fid]["Properties"]["Environment"]["Variables"]
    assert refs(env["WEBHOOK_DELIVERIES_QUEUE_URL"]) == {qid}
    assert "KASSA_WEBHOOK_MODE" not in env  # AWS: the default, public https endpoints only


@pytest.mark.parametrize("function", ["api", "webhook_delivery"])
def test_the_api_and_the_delivery_function_may_put_that_rule_only(cfn: dict[str, Any], function: str) -> None:
    fid = function_id(cfn, function)
    rid, _ = _rule(cfn)
    statements = role_statements(cfn, role_of_function(cfn, fid))
    put_rule = [resource for action, resource in allowed(statements) if action == "events:PutRule"]
    assert put_rule and all(refs(resource) == {rid} for resource in put_rule)
    assert not actions_with_prefix(statements, "events:") - {"events:PutRule", "events:PutEvents"}
    env = cfn["Resources"][fid]["Properties"]["Environment"]["Variables"]
    assert env[wiring.RULE_NAME_ENV] == wiring.WEBHOOKS_ROUTE.rule_name
    assert refs(env[wiring.RULE_BUS_ENV]) == {bus_id(cfn)}


def test_the_api_may_queue_redeliveries(cfn: dict[str, Any]) -> None:
    statements = role_statements(cfn, role_of_function(cfn, function_id(cfn, "api")))
    assert "sqs:SendMessage" in actions_on(statements, queue_id(cfn, QUEUE))


def test_only_the_api_and_the_delivery_function_reach_webhook_endpoints() -> None:
    reaching = {
        fn.name
        for fn in wiring.FUNCTIONS
        for access in fn.table_key_prefixes.values()
        if set(access.read) & set(wiring.OUTBOUND_WEBHOOK_KEYS)
    }
    assert reaching == {"api", "webhook_delivery"}
