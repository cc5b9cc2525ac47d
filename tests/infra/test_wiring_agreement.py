"""The synthesized template against ``infra/wiring.py``: every expectation here is derived from the wiring,
so changing the wiring without the infra (or the infra without the wiring) fails."""

from __future__ import annotations

from typing import Any

import pytest
from infra_cfn import (
    SentinelResolver,
    actions_on,
    actions_with_prefix,
    api_methods,
    as_list,
    by_tag,
    dlq_id,
    function_id,
    join_parts,
    queue_id,
    rate_minutes,
    refs,
    resources,
    rest_api_id,
    role_of_function,
    role_statements,
    rules_on_bus,
    secret_id,
    sentinel_target,
    table_id,
)
from infra_synth import Synth

from infra import wiring
from infra.functions import email_sender
from infra.settings import API_STAGE_NAME, EMAIL_FROM_CONTEXT, EVENT_SOURCE, TAG_FUNCTION, TAG_QUEUE, TAG_TABLE

FUNCTIONS = {fn.name: fn for fn in wiring.FUNCTIONS}
fn_names = pytest.mark.parametrize("name", sorted(FUNCTIONS))
triggered_fn_names = pytest.mark.parametrize("name", sorted(n for n, f in FUNCTIONS.items() if f.queue_trigger))
scheduled_and_triggered_fn_names = pytest.mark.parametrize(
    "name", sorted(n for n, f in FUNCTIONS.items() if f.queue_trigger and f.schedule)
)
event_routes = pytest.mark.parametrize("route", wiring.EVENT_ROUTES, ids=lambda r: r.name)


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


def _sender(synth: Synth, spec: wiring.Function) -> str:
    """The sender address this synthesis gives a ``sends_email`` function (wiring, or the context override)."""
    return email_sender(spec, synth.app.node.try_get_context(EMAIL_FROM_CONTEXT))


@fn_names
def test_function_environment_is_the_wiring_environment(synth: Synth, cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    expected = wiring.function_environment(spec, SentinelResolver())
    if spec.sends_email:
        expected[wiring.EMAIL_FROM_ENV] = _sender(synth, spec)
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


@scheduled_and_triggered_fn_names
def test_function_with_both_a_schedule_and_a_queue_trigger(cfn: dict[str, Any], name: str) -> None:
    """A function may have both: its schedule invokes it and its queue's event source mapping polls for it."""
    spec = FUNCTIONS[name]
    assert spec.schedule is not None and spec.queue_trigger is not None
    fid = function_id(cfn, name)
    mappings = [
        m["Properties"]
        for m in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if refs(m["Properties"]["FunctionName"]) == {fid}
    ]
    schedules = [
        s["Properties"]
        for s in resources(cfn, "AWS::Scheduler::Schedule").values()
        if refs(s["Properties"]["Target"]["Arn"]) == {fid}
    ]
    assert [refs(m["EventSourceArn"]) for m in mappings] == [{queue_id(cfn, spec.queue_trigger.queue)}]
    assert [s["Name"] for s in schedules] == [spec.schedule.name]
    statements = role_statements(cfn, role_of_function(cfn, fid))
    assert "sqs:ReceiveMessage" in actions_on(statements, queue_id(cfn, spec.queue_trigger.queue))


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


# -- SES and the public URL ---------------------------------------------------------------------


def _ses_statements(cfn: dict[str, Any], name: str) -> list[dict[str, Any]]:
    statements = role_statements(cfn, role_of_function(cfn, function_id(cfn, name)))
    return [st for st in statements if any(str(a).startswith("ses:") for a in as_list(st["Action"]))]


def _identity_name(arn: Any) -> str:
    """``arn:<partition>:ses:<region>:<account>:identity/<name>`` (a Fn::Join) -> ``<name>``."""
    parts = join_parts(arn)
    assert parts[:3] == ["arn:", {"Ref": "AWS::Partition"}, ":ses:"], arn
    assert parts[3:6] == [{"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}], arn
    last = parts[6]
    assert len(parts) == 7 and isinstance(last, str) and last.startswith(":identity/"), arn
    return last.removeprefix(":identity/")


@fn_names
def test_ses_send_only_where_sends_email_and_only_from_the_sender(synth: Synth, cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    statements = _ses_statements(cfn, name)
    if not spec.sends_email:
        assert statements == [], f"{name} may send email but the wiring does not say sends_email"
        return
    sender = _sender(synth, spec)
    assert len(statements) == 1, statements
    (st,) = statements
    assert st["Effect"] == "Allow"
    assert set(as_list(st["Action"])) == {"ses:SendEmail", "ses:SendRawEmail"}
    # the identity of the address, or of its domain if the merchant verified the domain; nothing else
    assert sorted(_identity_name(r) for r in as_list(st["Resource"])) == sorted([sender, sender.split("@")[1]])
    assert st["Condition"] == {"StringEquals": {"ses:FromAddress": sender}}
    env = _props(cfn, function_id(cfn, name))["Environment"]["Variables"]
    assert env[wiring.EMAIL_FROM_ENV] == sender


def test_no_ses_permission_beyond_the_functions(cfn: dict[str, Any]) -> None:
    """Only the roles of sends_email functions hold any ses: action."""
    senders = {role_of_function(cfn, function_id(cfn, f.name)) for f in wiring.FUNCTIONS if f.sends_email}
    for policy in resources(cfn, "AWS::IAM::Policy").values():
        if actions_with_prefix(policy["Properties"]["PolicyDocument"]["Statement"], "ses:"):
            assert refs(policy["Properties"]["Roles"]) <= senders


@fn_names
def test_public_url_only_where_public_url(cfn: dict[str, Any], name: str) -> None:
    spec = FUNCTIONS[name]
    env = _props(cfn, function_id(cfn, name))["Environment"]["Variables"]
    assert (wiring.PUBLIC_URL_ENV in env) == spec.public_url
    if not spec.public_url:
        return
    # the stage URL without its trailing slash, i.e. the ApiUrl output with the stage reference spelled out,
    # built from the RestApi alone (no reference to the stage or deployment, which depend on the functions)
    stages = resources(cfn, "AWS::ApiGateway::Stage")
    stage_names = {lid: r["Properties"]["StageName"] for lid, r in stages.items()}
    assert list(stage_names.values()) == [API_STAGE_NAME]
    api_url = join_parts(cfn["Outputs"]["ApiUrl"]["Value"], stage_names)
    assert isinstance(api_url[-1], str) and api_url[-1].endswith("/")
    expected = [*api_url[:-1], api_url[-1].removesuffix("/")]
    assert join_parts(env[wiring.PUBLIC_URL_ENV]) == expected
    assert refs(env[wiring.PUBLIC_URL_ENV]) == {rest_api_id(cfn)}


# -- event routes: bus -> queue ------------------------------------------------------------------


def _rules_to(cfn: dict[str, Any], queue: str) -> list[dict[str, Any]]:
    qid = queue_id(cfn, queue)
    return [
        r["Properties"]
        for r in rules_on_bus(cfn).values()
        if any(refs(t["Arn"]) == {qid} for t in r["Properties"].get("Targets", []))
    ]


@event_routes
def test_event_route_is_a_rule_on_the_bus(cfn: dict[str, Any], route: wiring.EventRoute) -> None:
    rules = _rules_to(cfn, route.queue)
    assert len(rules) == 1, rules
    (rule,) = rules
    assert rule.get("State", "ENABLED") == "ENABLED"
    assert rule["EventPattern"] == route.pattern()
    assert rule["EventPattern"]["source"] == [EVENT_SOURCE]
    (target,) = rule["Targets"]
    assert refs(target["Arn"]) == {queue_id(cfn, route.queue)}
    assert refs(target["DeadLetterConfig"]["Arn"]) == {dlq_id(cfn, f"rule/{route.name}")}
    assert "Input" not in target and "InputPath" not in target  # the queue gets the whole event


def _lid_of_rule(cfn: dict[str, Any], route: wiring.EventRoute) -> str:
    qid = queue_id(cfn, route.queue)
    (lid,) = [
        lid
        for lid, r in rules_on_bus(cfn).items()
        if any(refs(t["Arn"]) == {qid} for t in r["Properties"].get("Targets", []))
    ]
    return lid


def _events_may_send(cfn: dict[str, Any], queue_lid: str, rule_lid: str) -> bool:
    for policy in resources(cfn, "AWS::SQS::QueuePolicy").values():
        if queue_lid not in refs(policy["Properties"]["Queues"]):
            continue
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                st["Effect"] == "Allow"
                and st.get("Principal") == {"Service": "events.amazonaws.com"}
                and "sqs:SendMessage" in as_list(st["Action"])
                and refs(st.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn")) == {rule_lid}
            ):
                return True
    return False


@event_routes
def test_event_route_queue_and_dlq_let_only_their_rule_send(cfn: dict[str, Any], route: wiring.EventRoute) -> None:
    rule = _lid_of_rule(cfn, route)
    queue = queue_id(cfn, route.queue)
    dlq = dlq_id(cfn, f"rule/{route.name}")
    assert _events_may_send(cfn, queue, rule), f"EventBridge may not send to {route.queue}"
    assert _events_may_send(cfn, dlq, rule), f"EventBridge may not send to the DLQ of rule {route.name}"
    # EventBridge delivers to SQS-managed SSE queues (not to ones encrypted with the AWS-managed KMS key)
    for lid in (queue, dlq):
        props = _props(cfn, lid)
        assert props.get("SqsManagedSseEnabled") is True and "KmsMasterKeyId" not in props, lid


def test_no_rule_beyond_the_wiring(cfn: dict[str, Any]) -> None:
    assert len(resources(cfn, "AWS::Events::Rule")) == len(wiring.EVENT_ROUTES)
    assert sorted(_lid_of_rule(cfn, route) for route in wiring.EVENT_ROUTES) == sorted(rules_on_bus(cfn))


@event_routes
def test_event_route_queue_has_a_consumer(route: wiring.EventRoute) -> None:
    """Routing events into a queue nobody polls would only fill its DLQ."""
    consumers = [f.name for f in wiring.FUNCTIONS if f.queue_trigger and f.queue_trigger.queue == route.queue]
    assert consumers, f"no function consumes {route.queue}"
