"""``kassa dashboard add-user``: a user of the merchant dashboard, with a password (hashed with
hashlib.scrypt) and a role, written to the billing table.

    kassa dashboard add-user --email ops@example.com [--role full|read_only] [--password-stdin] [--reset]
    kassa dashboard remove-user --email ops@example.com
    kassa dashboard add-user --email ops@example.com --table kassa-billing-…   (a deployed stack:
                                                                                the default AWS credentials)

Without ``--table`` it writes to the running local stack's table (moto, from local.json). The password
is asked twice on the terminal, or read as one line from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from typing import Any

from infra import wiring
from kassa_local.scheduler import parse_instant


def add_dashboard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dashboard", help="the merchant dashboard's users")
    dash = p.add_subparsers(dest="dashboard_command", required=True)
    add = dash.add_parser("add-user", help="add a dashboard user (or, with --reset, set a new password and role)")
    add.add_argument("--email", required=True)
    add.add_argument("--role", choices=("full", "read_only"), default="full", help="full (default) or read_only")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--reset", action="store_true", help="the email has a user: give it this password and role")
    add.add_argument("--table", default=None, help="a deployed billing table (default AWS credentials)")
    add.set_defaults(func=cmd_add_user)
    remove = dash.add_parser("remove-user", help="remove a dashboard user (their sessions end at once)")
    remove.add_argument("--email", required=True)
    remove.add_argument("--table", default=None, help="a deployed billing table (default AWS credentials)")
    remove.set_defaults(func=cmd_remove_user)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the passwords differ")
    return first


def _accounts(args: argparse.Namespace) -> tuple[Any, datetime]:
    """The table's accounts and the time to stamp the user with (the local stack's virtual clock)."""
    import boto3

    from kassa.adapters.clock import SystemClock
    from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts

    if args.table:
        return DynamoDashboardAccounts(boto3.client("dynamodb"), args.table), SystemClock().now()
    from kassa_local.cli import local_api, running_stack

    state = running_stack(args)
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("dynamodb", endpoint_url=state["aws_endpoint_url"])
    now = parse_instant(local_api(args, "GET", "/_local/clock")["now"])
    return DynamoDashboardAccounts(client, wiring.BILLING_TABLE.name), now


def cmd_add_user(args: argparse.Namespace) -> int:
    from kassa.domain.errors import DomainError
    from kassa.services.dashboard import add_user

    accounts, now = _accounts(args)
    try:
        user = add_user(accounts, args.email, _password(args), args.role, now, replace=args.reset)
    except DomainError as error:
        raise SystemExit(f"kassa dashboard add-user: {error.message}") from error
    print(f"dashboard user {user.id} <{user.email}> ({user.role})")
    return 0


def cmd_remove_user(args: argparse.Namespace) -> int:
    from kassa.domain.errors import DomainError
    from kassa.services.dashboard import remove_user

    accounts, _ = _accounts(args)
    try:
        removed = remove_user(accounts, args.email)
    except DomainError as error:
        raise SystemExit(f"kassa dashboard remove-user: {error.message}") from error
    if not removed:
        raise SystemExit(f"kassa dashboard remove-user: no dashboard user {args.email}")
    print(f"dashboard user <{args.email.strip().lower()}> removed")
    return 0
