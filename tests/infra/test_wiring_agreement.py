"""The synthesized template against ``infra/wiring.py``: every expectation here is derived from the wiring,
so changing the wiring without the infra (or the infra without the wiring) fails."""

from __future__ import annotations

from typing import Any

import pytest
from infra_cfn import (
    SentinelResolver,
    actions_on,
    api_methods,
    by_tag,
    dlq_id,
    function_id,
    queue_id,
    rate_minutes,
    refs,
    resources,
    role_of_function,
    role_statements,
    secret_id,
    sentinel_target,
    table_id,
)

from infra import wiring
from infra.settings import TAG_FUNCTION, TAG_QUEUE, TAG_TABLE

FUNCTIONS = {fn.name: fn for fn in wiring.FUNCTIONS}
fn_names = pytest.mark.parametrize("name", sorted(FUNCTIONS))
triggered_fn_names = pytest.mark.parametrize("name", sorted(n for n, f in FUNCTIONS.items() if f.queue_trigger))


def _props(cfn: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(cfn["Resources"][logical_id]["Properties"])


# -- the set of resources is the set the wiring declares ------------------------------------------


def test_exactly_the_wiring_functions_exist(cfn: dict[str, Any]) -> None:
    lambdas = resources(cfn, "AWS::Lambda::Function")
    tagged = by_tag(cfn, "AWS::Lambda::Function", TAG_FUNCTION)
    assert sorted(tagged) == sorted(FUNCTIONS)
    assert all(len(ids) == 1 for ids in tagged.values()), tagged
    assert len(lambdas) == len(wiring.FUNCTIONS), "a Lambda function that the wiring does not declare"


def test_exactly_the_wiring_tables_and_queues_exist(cfn: dict[str, Any]) -> None:
    assert sorted(by_tag(cfn, "AWS::DynamoDB::Table", TAG_TABLE)) == sorted(t.name for t in wiring.TABLES)
    assert len(resources(cfn, "AWS::DynamoDB::Table")) == len(wiring.TABLES)
    assert sorted(by_tag(cfn, "AWS::SQS::Queue", TAG_QUEUE)) == sorted(q.name for q in wiring.QUEUES)


# -- per function ------------------------------------------------------------------------------


@fn_names
def test_function_sizing_and_handler(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    props = _props(cfn, function_id(cfn, name))
    assert props["Timeout"] == spec.timeout_s
    assert props["MemorySize"] == spec.memory_mb
    assert props["Handler"] == spec.handler
    assert props["Description"] == spec.description


@fn_names
def test_function_environment_is_the_wiring_environment(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    expected = wiring.function_environment(spec, SentinelResolver())
    actual = _props(cfn, function_id(cfn, name))["Environment"]["Variables"]
    assert set(actual) == set(expected)
    for key, value in expected.items():
        target = sentinel_target(cfn, value)
        if target is None:
            assert actual[key] == value, key
        else:
            assert refs(actual[key]) == {target}, f"{key} should resolve {value} ({target}), got {actual[key]}"


@fn_names
def test_queue_trigger(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    fid = function_id(cfn, name)
    mappings = [
        m["Properties"]
        for m in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if refs(m["Properties"]["FunctionName"]) == {fid}
    ]
    if spec.queue_trigger is None:
        assert mappings == []
        return
    trigger = spec.queue_trigger
    assert len(mappings) == 1, mappings
    (mapping,) = mappings
    assert refs(mapping["EventSourceArn"]) == {queue_id(cfn, trigger.queue)}
    assert mapping["BatchSize"] == trigger.batch_size
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == trigger.max_batching_window_s
    assert mapping.get("ScalingConfig", {}).get("MaximumConcurrency") == trigger.max_concurrency
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.get("Enabled", True) is True


@triggered_fn_names
def test_trigger_queue_visibility_covers_retries(cfn: dict[str, Any], name: str) -> None:
    """AWS: a Lambda-triggered queue's visibility timeout should be at least 6x the function timeout."""
    trigger = FUNCTIONS[name].queue_trigger
    assert trigger is not None
    timeout = _props(cfn, function_id(cfn, name))["Timeout"]
    visibility = _props(cfn, queue_id(cfn, trigger.queue))["VisibilityTimeout"]
    assert visibility >= 6 * timeout


@fn_names
def test_schedule(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    fid = function_id(cfn, name)
    schedules = [
        s["Properties"]
        for s in resources(cfn, "AWS::Scheduler::Schedule").values()
        if refs(s["Properties"]["Target"]["Arn"]) == {fid}
    ]
    if spec.schedule is None:
        assert schedules == []
        return
    assert len(schedules) == 1, schedules
    (schedule,) = schedules
    assert schedule["Name"] == spec.schedule.name
    assert rate_minutes(schedule["ScheduleExpression"]) == spec.schedule.every_minutes
    assert schedule.get("State", "ENABLED") == "ENABLED"
    target = schedule["Target"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert refs(target["DeadLetterConfig"]["Arn"]) == {dlq_id(cfn, f"schedule/{spec.schedule.name}")}


def test_schedule_count(cfn: dict[str, Any]) -> None:
    assert len(resources(cfn, "AWS::Scheduler::Schedule")) == sum(1 for f in wiring.FUNCTIONS if f.schedule)


@fn_names
def test_routes_point_to_their_function(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    methods = api_methods(cfn)
    fid = function_id(cfn, name)
    for route in spec.routes:
        key = (route.method, route.path)
        assert key in methods, f"missing API method {key}"
        integration = methods[key]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["IntegrationHttpMethod"] == "POST"
        assert refs(integration["Uri"]) == {fid}, f"{key} does not integrate with {name}"


def test_no_route_beyond_the_wiring(cfn: dict[str, Any]) -> None:
    declared = {(r.method, r.path) for fn in wiring.FUNCTIONS for r in fn.routes}
    assert set(api_methods(cfn)) == declared


@fn_names
def test_grants_follow_the_wiring(cfn: dict[str, Any], name: str) -> None:
    """Tables, queues, secrets and the bus: exactly the access the wiring lists, nothing more."""
    spec = FUNCTIONS[name]
    statements = role_statements(cfn, role_of_function(cfn, function_id(cfn, name)))
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}

    for table in wiring.TABLES:
        actions = actions_on(statements, table_id(cfn, table.name))
        if table.name in spec.tables_write:
            assert writes <= actions
        else:
            assert not actions & writes, f"{name} may write {table.name}"
        if table.name in spec.tables_read or table.name in spec.tables_write:
            assert {"dynamodb:GetItem", "dynamodb:Query"} <= actions
        else:
            assert actions == set(), f"{name} may access {table.name}"

    for queue in wiring.QUEUES:
        actions = actions_on(statements, queue_id(cfn, queue.name))
        assert ("sqs:SendMessage" in actions) == (queue.name in spec.queues_send), queue.name
        consumes = spec.queue_trigger is not None and spec.queue_trigger.queue == queue.name
        assert ("sqs:ReceiveMessage" in actions) == consumes, queue.name

    for secret in wiring.SECRETS:
        actions = actions_on(statements, secret_id(cfn, secret))
        assert ("secretsmanager:GetSecretValue" in actions) == (secret in spec.secrets), secret
        assert not {a for a in actions if a.startswith("secretsmanager:Put")}, secret

    put_events = {action for st in statements for action in _actions(st) if action == "events:PutEvents"}
    assert bool(put_events) == spec.publishes_events


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return action if isinstance(action, list) else [action]
