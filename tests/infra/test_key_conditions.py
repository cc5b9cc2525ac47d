"""Least privilege on the table's items: each function reaches only the partition keys its wiring lists
(``dynamodb:LeadingKeys``), on the table and its indexes, and no request without leading keys (Scan)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from infra_cfn import as_list, function_id, role_of_function, role_statements, table_id

from infra import wiring
from infra.functions import ITEM_APPEND_ACTIONS, ITEM_READ_ACTIONS, ITEM_WRITE_ACTIONS, leading_key_patterns

RESTRICTED = [fn.name for fn in wiring.FUNCTIONS if fn.table_key_prefixes]


def _dynamodb_statements(cfn: dict[str, Any], name: str) -> list[dict[str, Any]]:
    statements = role_statements(cfn, role_of_function(cfn, function_id(cfn, name)))
    return [st for st in statements if any(str(a).startswith("dynamodb:") for a in as_list(st["Action"]))]


def test_every_function_with_table_access_is_limited_by_key() -> None:
    for fn in wiring.FUNCTIONS:
        for table in set(fn.tables_read) | set(fn.tables_write):
            assert table in fn.table_key_prefixes, f"{fn.name} reaches all of {table}"


@pytest.mark.parametrize("name", RESTRICTED)
def test_each_dynamodb_statement_carries_the_wiring_key_conditions(cfn: dict[str, Any], name: str) -> None:
    spec = wiring.function(name)
    prefixes = spec.table_key_prefixes["billing"]
    statements = _dynamodb_statements(cfn, name)
    expected = {frozenset(ITEM_READ_ACTIONS): prefixes.read}
    if "billing" in spec.tables_write:
        expected[frozenset(ITEM_WRITE_ACTIONS)] = prefixes.write
        if prefixes.append:
            expected[frozenset(ITEM_APPEND_ACTIONS)] = prefixes.append
    assert {frozenset(as_list(st["Action"])) for st in statements} == set(expected)
    for st in statements:
        keys = expected[frozenset(as_list(st["Action"]))]
        assert st["Condition"] == {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": leading_key_patterns(keys)},
            "Null": {"dynamodb:LeadingKeys": "false"},
        }
        assert "dynamodb:Scan" not in as_list(st["Action"])
        assert table_id(cfn, "billing") in str(st["Resource"])


def test_webhook_ingest_writes_only_webhook_records_and_reads_only_those_and_invoices(template: Template) -> None:
    """The internet-facing function: ``WHEVT#`` records, and the ``INV#`` item ``already_settled`` reads."""
    for actions, keys in ((sorted(ITEM_READ_ACTIONS), ["WHEVT#*", "INV#*"]), (sorted(ITEM_WRITE_ACTIONS), ["WHEVT#*"])):
        template.has_resource_properties(
            "AWS::IAM::Policy",
            {
                "Roles": [{"Ref": Match.string_like_regexp("WebhookIngestRole")}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Action": actions,
                                    "Effect": "Allow",
                                    "Condition": {
                                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys},
                                        "Null": {"dynamodb:LeadingKeys": "false"},
                                    },
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_the_renewal_sweep_reads_only_the_due_index_partitions(cfn: dict[str, Any]) -> None:
    (statement,) = _dynamodb_statements(cfn, "renewal_sweep")
    assert statement["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["DUE#*"]}


def test_no_function_but_the_processor_touches_webhook_records_beyond_ingest() -> None:
    holders = {fn.name for fn in wiring.FUNCTIONS for p in fn.table_key_prefixes.values() if "WHEVT#" in p.read}
    assert holders == {"webhook_ingest", "webhook_processor"}


def test_the_analytics_function_writes_only_the_analytics_items(cfn: dict[str, Any]) -> None:
    statements = _dynamodb_statements(cfn, "analytics")
    written = [s for s in statements if "dynamodb:PutItem" in s["Action"]]
    assert len(written) == 1
    assert written[0]["Condition"]["ForAllValues:StringLike"] == {
        "dynamodb:LeadingKeys": [f"{prefix}*" if prefix.endswith("#") else prefix for prefix in wiring.ANALYTICS_KEYS]
    }
    # and nobody else writes them: the billing use cases only read them (the api's reports)
    writers = {fn.name for fn in wiring.FUNCTIONS for p in fn.table_key_prefixes.values() if "AN#" in p.write}
    assert writers == {"analytics"}


def test_the_api_may_only_create_audit_entries_never_update_or_delete_them(cfn: dict[str, Any]) -> None:
    """The audit trail is append-only: ``AUDIT#`` items get PutItem alone (the adapter's put is
    conditional on ``attribute_not_exists(pk)``), and no write statement of any function reaches them."""
    assert wiring.function("api").table_key_prefixes["billing"].append == ("AUDIT#",)
    for fn in RESTRICTED:
        for st in _dynamodb_statements(cfn, fn):
            patterns = st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            actions = set(as_list(st["Action"]))
            if any(p.startswith("AUDIT#") for p in patterns) and actions - set(ITEM_READ_ACTIONS):
                assert fn == "api" and actions == {"dynamodb:PutItem"} and patterns == ["AUDIT#*"]
            if actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}:
                assert not any(p.startswith("AUDIT") for p in patterns), (fn, patterns)
