"""The assembled stack: provisioning from wiring, environment, localstripe and webhooks, CLI clock."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import requests
import stripe

from infra import wiring
from kassa.adapters import clock as clock_port
from kassa_local import cli
from kassa_local.scheduler import iso
from kassa_local.stack import LocalStack, read_state


def test_environment_is_the_union_of_the_functions_environments(stack: LocalStack) -> None:
    env = os.environ
    assert env["AWS_ENDPOINT_URL"] == stack.config.aws_endpoint_url
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["BILLING_TABLE"] == "billing"
    assert env["STRIPE_SECRET_NAME"] == wiring.STRIPE_SECRET
    assert env["API_SECRET_NAME"] == wiring.API_SECRET
    assert env["JOBS_QUEUE_URL"] == stack.queue_url("jobs")
    assert env["OTHER_QUEUE_URL"].endswith("/other")
    assert env["EVENT_BUS_NAME"] == wiring.BUS_NAME
    assert env["STRIPE_API_BASE"] == stack.config.stripe_url
    assert env["KASSA_LOCAL"] == "1"
    assert env["POWERTOOLS_SERVICE_NAME"] == "kassa"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["POWERTOOLS_METRICS_DISABLED"] == "true"
    assert env["KASSA_DUE_SHARDS"] == str(wiring.DUE_SHARDS)
    assert clock_port.current() is stack.clock


def test_resources_are_provisioned_from_wiring(stack: LocalStack) -> None:
    ddb = stack.client("dynamodb")
    table = ddb.describe_table(TableName="billing")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    gsis = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    assert set(gsis) == {index.name for index in wiring.BILLING_TABLE.indexes} == {"gsi1", "gsi2", "gsi3", "gsi4"}
    projections = {index.name: index.projection for index in wiring.BILLING_TABLE.indexes}
    assert {name: g["Projection"]["ProjectionType"] for name, g in gsis.items()} == projections
    assert projections["gsi4"] == "KEYS_ONLY"  # the merchant-wide listings fetch the objects by key
    assert [k["AttributeName"] for k in gsis["gsi1"]["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    ttl = ddb.describe_time_to_live(TableName="billing")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"

    sqs = stack.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url("jobs"), AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 2
    assert redrive["deadLetterTargetArn"].endswith(":jobs-dlq")
    assert attrs["VisibilityTimeout"] == "30"
    assert stack.dlq_url("other").endswith("/other-dlq")

    events = stack.client("events")
    assert events.describe_event_bus(Name=wiring.BUS_NAME)["Name"] == wiring.BUS_NAME
    rule = events.describe_rule(Name="kassa-event-tap", EventBusName=wiring.BUS_NAME)
    assert json.loads(rule["EventPattern"]) == {"source": [{"prefix": "kassa"}]}

    sm = stack.client("secretsmanager")
    stripe_secret = json.loads(sm.get_secret_value(SecretId=wiring.STRIPE_SECRET)["SecretString"])
    assert stripe_secret["secret_key"].startswith("sk_test_local_")
    assert stripe_secret["publishable_key"].startswith("pk_test_local_")
    assert stripe_secret["webhook_secret"].startswith("whsec_")
    api_secret = json.loads(sm.get_secret_value(SecretId=wiring.API_SECRET)["SecretString"])
    assert api_secret == {"secret_key": stack.api_secret_key}
    assert stack.api_secret_key.startswith("ksk_local_")


def test_local_json(stack: LocalStack) -> None:
    state = read_state(stack.state_dir)
    cfg = stack.config
    assert state == cfg.as_json()
    assert state["api_url"] == f"http://127.0.0.1:{state['ports']['api']}"
    assert state["openapi_url"] == state["api_url"] + "/openapi.json"
    assert state["docs_url"] == state["api_url"] + "/docs"
    assert state["storefront_url"] == state["api_url"] + "/storefront"
    assert state["dashboard_url"] == state["api_url"] + "/dashboard"
    assert state["stripe_url"] == f"http://127.0.0.1:{state['ports']['stripe']}"
    assert state["aws_endpoint_url"] == f"http://127.0.0.1:{state['ports']['aws']}"
    assert state["pid"] == os.getpid()
    assert all(port > 0 for port in state["ports"].values())


def test_localstripe_with_the_generated_key_and_a_verified_webhook(stack: LocalStack) -> None:
    cfg = stack.config
    assert requests.get(f"{cfg.stripe_url}/v1/customers").status_code == 401
    ok = requests.get(f"{cfg.stripe_url}/v1/customers", headers={"Authorization": f"Bearer {cfg.stripe_secret_key}"})
    assert ok.status_code == 200

    pickle = "/tmp/localstripe.pickle"
    pickled_before = os.path.getmtime(pickle) if os.path.exists(pickle) else None
    client = stripe.StripeClient(cfg.stripe_secret_key, base_addresses={"api": cfg.stripe_url})
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    assert customer.id.startswith("cus_")
    assert (os.path.getmtime(pickle) if os.path.exists(pickle) else None) == pickled_before  # no disk writes
    # localstripe posts customer.created ~1 s later; drain waits for in-flight webhooks
    hook = stack.modules["hook"]
    hook.EVENTS.clear()
    stack.drain()
    assert "customer.created" in hook.EVENTS  # verified with the webhook secret from Secrets Manager


def test_direct_invoke_and_stats(stack: LocalStack) -> None:
    before = stack.stats()["functions"]["quarter"]["invocations"]
    assert stack.invoke("quarter", {"time": iso(stack.clock.now())}) == {"ok": True}
    assert stack.stats()["functions"]["quarter"]["invocations"] == before + 1
    with pytest.raises(KeyError):
        stack.invoke("nope", {})


def test_cli_clock_show_and_advance(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--state-dir", str(stack.state_dir), "clock"]
    assert cli.main([*base, "show"]) == 0
    out = capsys.readouterr().out
    assert iso(stack.clock.now()) in out and "hourly" in out and "every-45" in out

    start = stack.clock.now()
    assert cli.main([*base, "advance", "2h"]) == 0
    out = capsys.readouterr().out
    assert "fired hourly at" in out
    assert stack.clock.now() == start + timedelta(hours=2)

    target = start + timedelta(hours=3)
    assert cli.main([*base, "advance", "--to", iso(target)]) == 0
    assert stack.clock.now() == target
    capsys.readouterr()

    with pytest.raises(SystemExit, match="backwards"):
        cli.main([*base, "advance", "--to", iso(start)])
    with pytest.raises(SystemExit):
        cli.main([*base, "advance"])


def test_cli_without_a_running_stack(tmp_path: object) -> None:
    with pytest.raises(SystemExit, match="no local stack running"):
        cli.main(["--state-dir", str(tmp_path), "clock", "show"])
