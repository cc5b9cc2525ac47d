"""The outbound webhooks' resources: every kassa event is routed to the delivery queue, which triggers
the delivery function; that function may send to its own queue (the retries), send the merchant's
email, and reach only the endpoints, deliveries and outbox items of the table."""

from __future__ import annotations

from typing import Any

from infra_cfn import (
    actions_on,
    actions_with_prefix,
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


def test_every_kassa_event_goes_to_the_delivery_queue(cfn: dict[str, Any]) -> None:
    qid = queue_id(cfn, QUEUE)
    [rule] = [r["Properties"] for r in rules_on_bus(cfn).values()
              if any(refs(t["Arn"]) == {qid} for t in r["Properties"]["Targets"])]  # fmt: skip
    assert rule["EventPattern"] == {"source": [EVENT_SOURCE]}  # no detail-type: all of them
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
    assert not actions_with_prefix(statements, "events:")  # it publishes nothing
    env = cfn["Resources"][fid]["Properties"]["Environment"]["Variables"]
    assert refs(env["WEBHOOK_DELIVERIES_QUEUE_URL"]) == {qid}
    assert "KASSA_WEBHOOK_MODE" not in env  # AWS: the default, public https endpoints only


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
