"""The payloads of Stripe events too large for a DynamoDB item live in the files bucket under
``webhooks/``: webhook_ingest may put and get only those objects (never documents), the processor may
only read them, and they expire a day after their records (30 days)."""

from __future__ import annotations

from typing import Any

from infra_cfn import allowed, bucket_id, function_id, join_parts, resources, role_of_function, role_statements

from infra import wiring
from kassa.adapters.dynamodb import WEBHOOK_RETENTION
from kassa.services.webhooks import PAYLOADS_PREFIX, payload_key


def _s3_grants(cfn: dict[str, Any], name: str) -> dict[str, list[str]]:
    """action -> the object keys (after the bucket ARN) the function may reach in the files bucket."""
    bucket = bucket_id(cfn, "files")
    grants: dict[str, list[str]] = {}
    for action, resource in allowed(role_statements(cfn, role_of_function(cfn, function_id(cfn, name)))):
        if not str(action).startswith("s3:"):
            continue
        parts = join_parts(resource)
        assert parts[0] == {"Fn::GetAtt": [bucket, "Arn"]}, resource  # no other bucket
        grants.setdefault(action, []).extend(parts[1:])
    return grants


def test_webhook_ingest_puts_and_gets_only_webhook_payloads(cfn: dict[str, Any]) -> None:
    grants = _s3_grants(cfn, "webhook_ingest")
    assert grants == {"s3:GetObject": ["/webhooks/*"], "s3:PutObject": ["/webhooks/*"]}
    assert not any("documents/" in key for keys in grants.values() for key in keys)


def test_the_processor_only_reads_webhook_payloads(cfn: dict[str, Any]) -> None:
    assert _s3_grants(cfn, "webhook_processor") == {"s3:GetObject": ["/webhooks/*"]}


def test_the_documents_functions_cannot_reach_webhook_payloads(cfn: dict[str, Any]) -> None:
    for name in ("api", "dunning"):
        assert all(keys == ["/documents/*"] for keys in _s3_grants(cfn, name).values()), name


def test_the_service_keys_payloads_under_the_wired_prefix() -> None:
    assert PAYLOADS_PREFIX == wiring.WEBHOOK_PAYLOADS_PREFIX
    assert payload_key("evt_1").startswith(wiring.WEBHOOK_PAYLOADS_PREFIX)


def test_webhook_payloads_expire_a_day_after_their_records(cfn: dict[str, Any]) -> None:
    bucket = resources(cfn, "AWS::S3::Bucket")[bucket_id(cfn, "files")]
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules == [
        {
            "ExpirationInDays": WEBHOOK_RETENTION.days + 1,
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            "Prefix": wiring.WEBHOOK_PAYLOADS_PREFIX,
            "Status": "Enabled",
        }
    ]


def test_every_media_type_is_binary_so_a_browser_downloads_the_pdf(cfn: dict[str, Any]) -> None:
    """A browser following the hosted page's Download link sends Accept: text/html first; only '*/*'
    makes API Gateway decode the function's base64 PDF for it."""
    (api,) = resources(cfn, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"]
