"""One-time backfill of the listing index (gsi4) for items stored before it existed.

    python -m kassa_local.backfill --table <physical billing table name> [--region eu-west-1] [--endpoint-url …]

Customers, subscriptions and invoices written before merchant-wide listings get their ``gsi4pk`` /
``gsi4sk`` attributes, subscriptions their price entries (``SUB#<id>`` / ``PRICE#<price>``). It Scans
the table once (the only Scan in kassa, run by hand, never by a function), updates each item on the
condition that it still has no listing attributes (an item written meanwhile already has them) and is
safe to run again. Uses the ordinary AWS credentials of the shell (boto3's default chain).
"""

from __future__ import annotations

import argparse
import sys

import boto3

from infra import wiring
from kassa.adapters.dynamodb import DynamoStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kassa_local.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the billing table's physical name (see the stack outputs)")
    parser.add_argument("--region", default=None)
    parser.add_argument("--endpoint-url", default=None, help="e.g. a local moto server")
    args = parser.parse_args(argv)
    client = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url)
    updated = DynamoStore(client, args.table, wiring.DUE_SHARDS).backfill_list_index()
    print(f"{updated} items given their listing index entries")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
