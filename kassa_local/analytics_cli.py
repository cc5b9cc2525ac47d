"""``kassa analytics``: the running local stack's subscription analytics.

    kassa analytics rebuild          # recompute every aggregate from the subscriptions and invoices
    kassa analytics mrr --from 2027-01 --to 2027-06 [--currency EUR]

``rebuild`` runs ``kassa.services.analytics.rebuild`` over the stack's moto table (``.kassa/local.json``
names its endpoint), the very function the deployed ``analytics`` Lambda runs on ``{"action": "rebuild"}``.
``mrr`` prints ``GET /v1/reports/mrr`` as a table.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlencode

from infra import wiring


def cmd_rebuild(args: argparse.Namespace) -> int:
    import boto3

    from kassa.adapters.analytics import DynamoAnalytics
    from kassa.adapters.dynamodb import DynamoStore
    from kassa.services.analytics import rebuild
    from kassa_local.aws import REGION
    from kassa_local.cli import running_stack

    state = running_stack(args)
    client = boto3.client(
        "dynamodb",
        endpoint_url=state["aws_endpoint_url"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    table = wiring.BILLING_TABLE.name  # the local stack's physical names are the logical ones
    summary = rebuild(DynamoStore(client, table, wiring.DUE_SHARDS), DynamoAnalytics(client, table))
    print(f"analytics rebuilt: {summary.customers} customer(s), {summary.aggregates} aggregate(s)")
    return 0


def cmd_mrr(args: argparse.Namespace) -> int:
    from kassa_local.cli import local_api

    query = {k: v for k, v in (("from", args.start), ("to", args.end), ("currency", args.currency)) if v}
    report = local_api(args, "GET", "/v1/reports/mrr?" + urlencode(query))
    columns = ("month", "mrr", "new", "expansion", "contraction", "churn", "reactivation", "customers")
    print(f"currency {report['currency']}")
    print("  ".join(f"{c:>12}" for c in columns))
    for row in report["data"]:
        print("  ".join(f"{row[c]!s:>12}" for c in columns))
    return 0


def add_analytics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analytics", help="rebuild or show the running stack's subscription analytics")
    analytics_sub = p.add_subparsers(dest="analytics_command", required=True)
    rebuild = analytics_sub.add_parser("rebuild", help="recompute the aggregates from subscriptions and invoices")
    rebuild.set_defaults(func=cmd_rebuild)
    mrr = analytics_sub.add_parser("mrr", help="MRR and its movements per month (GET /v1/reports/mrr)")
    mrr.add_argument("--from", dest="start", default=None, help="first month, YYYY-MM")
    mrr.add_argument("--to", dest="end", default=None, help="last month, YYYY-MM")
    mrr.add_argument("--currency", default=None, help="one currency as billed (default: the reporting currency)")
    mrr.set_defaults(func=cmd_mrr)
