"""Properties of the deployed resources, with ``aws_cdk.assertions``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from infra_cfn import (
    actions_with_prefix,
    allowed,
    api_methods,
    as_list,
    bus_id,
    by_tag,
    dlq_id,
    function_id,
    queue_id,
    refs,
    resources,
    role_of_function,
    role_statements,
)

from infra import wiring
from infra.settings import EMAIL_FROM_CONTEXT, TAG_DEAD_LETTER_OF
from infra.stack import create_app

# -- data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", wiring.TABLES, ids=lambda t: t.name)
def test_table(template: Template, spec: wiring.Table) -> None:
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": {"SSEEnabled": True},
                    "DeletionProtectionEnabled": True,
                    "KeySchema": [
                        {"AttributeName": spec.partition_key, "KeyType": "HASH"},
                        {"AttributeName": spec.sort_key, "KeyType": "RANGE"},
                    ],
                    "TimeToLiveSpecification": (
                        {"AttributeName": spec.ttl_attribute, "Enabled": True} if spec.ttl_attribute else Match.absent()
                    ),
                    "GlobalSecondaryIndexes": [
                        {
                            "IndexName": index.name,
                            "KeySchema": [
                                {"AttributeName": index.partition_key, "KeyType": "HASH"},
                                {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                        for index in spec.indexes
                    ]
                    or Match.absent(),
                    "Tags": Match.array_with([{"Key": "kassa:table", "Value": spec.name}]),
                }
            ),
        },
    )


# -- messaging ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", wiring.QUEUES, ids=lambda q: q.name)
def test_queue_with_dlq(cfn: dict[str, Any], template: Template, spec: wiring.Queue) -> None:
    props = cfn["Resources"][queue_id(cfn, spec.name)]["Properties"]
    assert props["VisibilityTimeout"] == spec.visibility_timeout_s
    assert props["MessageRetentionPeriod"] == spec.retention_days * 86400
    assert props["SqsManagedSseEnabled"] is True
    assert props["RedrivePolicy"]["maxReceiveCount"] == spec.max_receive_count
    dlq = dlq_id(cfn, spec.name)
    assert refs(props["RedrivePolicy"]["deadLetterTargetArn"]) == {dlq}
    dlq_props = cfn["Resources"][dlq]["Properties"]
    assert dlq_props["SqsManagedSseEnabled"] is True
    assert dlq_props["MessageRetentionPeriod"] > props["MessageRetentionPeriod"]
    assert "RedrivePolicy" not in dlq_props


def test_every_queue_enforces_ssl(cfn: dict[str, Any]) -> None:
    policies = resources(cfn, "AWS::SQS::QueuePolicy").values()
    for qid in resources(cfn, "AWS::SQS::Queue"):
        denies = [
            st
            for p in policies
            if qid in refs(p["Properties"]["Queues"])
            for st in p["Properties"]["PolicyDocument"]["Statement"]
            if st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies, f"{qid} accepts plain HTTP"


def test_every_dlq_has_an_alarm(cfn: dict[str, Any], template: Template) -> None:
    dlqs = [lid for ids in by_tag(cfn, "AWS::SQS::Queue", TAG_DEAD_LETTER_OF).values() for lid in ids]
    assert len(dlqs) == len(wiring.QUEUES) + sum(1 for f in wiring.FUNCTIONS if f.schedule) + len(wiring.EVENT_ROUTES)
    alarms = resources(cfn, "AWS::CloudWatch::Alarm").values()
    for dlq in dlqs:
        matching = [
            a["Properties"]
            for a in alarms
            if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and refs(a["Properties"].get("Dimensions", [])) == {dlq}
        ]
        assert len(matching) == 1, f"no alarm on {dlq}"
        (alarm,) = matching
        assert alarm["Namespace"] == "AWS/SQS"
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"], f"the alarm on {dlq} notifies no one"


def test_event_bus_with_archive(cfn: dict[str, Any], template: Template) -> None:
    bus = bus_id(cfn)
    template.has_resource_properties(
        "AWS::Events::Archive",
        {"SourceArn": {"Fn::GetAtt": [bus, "Arn"]}, "RetentionDays": Match.any_value()},
    )


# -- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", wiring.SECRETS)
def test_secret_has_placeholder_value(template: Template, name: str) -> None:
    template.has_resource(
        "AWS::SecretsManager::Secret",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {"Name": name, "GenerateSecretString": Match.object_like({"GenerateStringKey": Match.any_value()})}
            ),
        },
    )


# -- layers and functions -------------------------------------------------------------------------


def test_two_layers_for_arm64_python313(template: Template) -> None:
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)
    template.all_resources_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleArchitectures": ["arm64"], "CompatibleRuntimes": ["python3.13"]},
    )


def test_every_function_arm64_python313_traced_with_both_layers(cfn: dict[str, Any], template: Template) -> None:
    layers = list(resources(cfn, "AWS::Lambda::LayerVersion"))
    template.all_resources_properties(
        "AWS::Lambda::Function",
        {
            "Architectures": ["arm64"],
            "Runtime": "python3.13",
            "Handler": "handler.lambda_handler",
            "TracingConfig": {"Mode": "Active"},
            "Layers": Match.array_with([{"Ref": lid} for lid in sorted(layers)]),
        },
    )
    for props in (r["Properties"] for r in resources(cfn, "AWS::Lambda::Function").values()):
        assert {next(iter(refs(layer))) for layer in props["Layers"]} == set(layers)


def test_every_function_has_its_own_log_group_with_retention(cfn: dict[str, Any]) -> None:
    groups = resources(cfn, "AWS::Logs::LogGroup")
    seen = set()
    for props in (r["Properties"] for r in resources(cfn, "AWS::Lambda::Function").values()):
        (group,) = refs(props["LoggingConfig"]["LogGroup"])
        assert groups[group]["Properties"]["RetentionInDays"] > 0
        seen.add(group)
    assert len(seen) == len(wiring.FUNCTIONS)


def test_every_function_has_its_own_role_without_managed_policies(cfn: dict[str, Any]) -> None:
    roles = [role_of_function(cfn, lid) for lid in resources(cfn, "AWS::Lambda::Function")]
    assert len(set(roles)) == len(roles)
    for role in roles:
        assert not cfn["Resources"][role]["Properties"].get("ManagedPolicyArns"), role


def test_queue_triggers_report_batch_item_failures(template: Template) -> None:
    template.resource_count_is("AWS::Lambda::EventSourceMapping", sum(1 for f in wiring.FUNCTIONS if f.queue_trigger))
    template.all_resources_properties(
        "AWS::Lambda::EventSourceMapping", {"FunctionResponseTypes": ["ReportBatchItemFailures"]}
    )


def test_renewal_sweep_schedule(cfn: dict[str, Any], template: Template) -> None:
    spec = wiring.function("renewal_sweep").schedule
    assert spec is not None
    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "Name": spec.name,
            "ScheduleExpression": Match.string_like_regexp(r"^rate\("),
            "State": "ENABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": Match.object_like(
                {
                    "Arn": {"Fn::GetAtt": [function_id(cfn, "renewal_sweep"), "Arn"]},
                    "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [dlq_id(cfn, f"schedule/{spec.name}"), "Arn"]}},
                    "RetryPolicy": {
                        "MaximumRetryAttempts": Match.any_value(),
                        "MaximumEventAgeInSeconds": spec.every_minutes * 60,
                    },
                }
            ),
        },
    )


# -- API ------------------------------------------------------------------------------------------


def test_api_stage_logs_traces_and_throttles(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "LoggingLevel": "ERROR",
                            "DataTraceEnabled": False,
                            "ThrottlingRateLimit": Match.any_value(),
                            "ThrottlingBurstLimit": Match.any_value(),
                        }
                    )
                ]
            ),
        },
    )
    template.has_resource_properties("AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}})


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("ANY", "/v1/{proxy+}", "api"),
        ("GET", "/openapi.json", "api"),
        ("GET", "/docs", "api"),
        ("POST", "/webhooks/stripe", "webhook_ingest"),
        ("ANY", "/portal/{proxy+}", "api"),
    ],
)
def test_public_routes(cfn: dict[str, Any], method: str, path: str, function: str) -> None:
    """The routes clients and Stripe depend on (test_wiring_agreement derives the full set from wiring)."""
    methods = api_methods(cfn)
    assert (method, path) in methods
    props = methods[(method, path)]
    assert props["AuthorizationType"] == "NONE"  # authentication happens in the function
    assert props["Integration"]["Type"] == "AWS_PROXY"
    assert refs(props["Integration"]["Uri"]) == {function_id(cfn, function)}


# -- least privilege ------------------------------------------------------------------------------


def _statements(cfn: dict[str, Any], function: str) -> list[dict[str, Any]]:
    return role_statements(cfn, role_of_function(cfn, function_id(cfn, function)))


def test_renewal_sweep_cannot_write_the_table(cfn: dict[str, Any]) -> None:
    dynamodb = actions_with_prefix(_statements(cfn, "renewal_sweep"), "dynamodb:")
    assert {"dynamodb:Query", "dynamodb:GetItem"} <= dynamodb
    assert not dynamodb & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def test_renewal_sweep_cannot_read_secrets_or_put_events(cfn: dict[str, Any]) -> None:
    statements = _statements(cfn, "renewal_sweep")
    assert not actions_with_prefix(statements, "secretsmanager:")
    assert not actions_with_prefix(statements, "events:")


def test_webhook_ingest_cannot_put_events(cfn: dict[str, Any]) -> None:
    statements = _statements(cfn, "webhook_ingest")
    assert not actions_with_prefix(statements, "events:")
    assert "sqs:SendMessage" in actions_with_prefix(statements, "sqs:")


def test_no_wildcard_actions_and_star_resources_only_for_xray(cfn: dict[str, Any]) -> None:
    for policy in resources(cfn, "AWS::IAM::Policy").values():
        for action, resource in allowed(policy["Properties"]["PolicyDocument"]["Statement"]):
            assert action != "*" and not action.endswith(":*"), action
            if resource == "*":
                assert action.startswith("xray:"), f"{action} on *"


def test_only_the_scheduler_and_api_gateway_may_invoke(cfn: dict[str, Any]) -> None:
    for permission in resources(cfn, "AWS::Lambda::Permission").values():
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
        assert permission["Properties"].get("SourceArn"), "invoke permission without a source"


# -- the SES sender identity from context ----------------------------------------------------------


def test_email_from_context_overrides_the_sender_and_its_grant(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``-c kassa:emailFrom=…`` sets KASSA_EMAIL_FROM of every sends_email function and scopes its SES grant."""
    sender = "invoices@billing.shop.example"
    _app, stack = create_app(str(tmp_path), nag=False, context={EMAIL_FROM_CONTEXT: sender})
    cfn = Template.from_stack(stack).to_json()
    senders = [f for f in wiring.FUNCTIONS if f.sends_email]
    assert senders
    for spec in senders:
        fid = function_id(cfn, spec.name)
        env = cfn["Resources"][fid]["Properties"]["Environment"]["Variables"]
        assert env[wiring.EMAIL_FROM_ENV] == sender
        ses = [st for st in _statements_of(cfn, fid) if any(str(a).startswith("ses:") for a in as_list(st["Action"]))]
        assert [st["Condition"] for st in ses] == [{"StringEquals": {"ses:FromAddress": sender}}]
        identities = json.dumps(ses[0]["Resource"])
        assert f":identity/{sender}" in identities and ":identity/billing.shop.example" in identities
        assert wiring.DEFAULT_EMAIL_FROM not in identities


def test_email_from_context_must_be_an_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="e-mail address"):
        create_app(str(tmp_path), nag=False, context={EMAIL_FROM_CONTEXT: "not-an-address"})


def _statements_of(cfn: dict[str, Any], function_logical_id: str) -> list[dict[str, Any]]:
    return role_statements(cfn, role_of_function(cfn, function_logical_id))
