"""``kassa``: the local stack's command line.

    kassa run [--api-port N] [--aws-port N] [--stripe-port N] [--start-time ISO]
    kassa clock show
    kassa clock advance 35d
    kassa clock advance --to 2027-01-01T00:00:00Z
    kassa keys roll [--expires-in 24h] [--key ID] [--links]
    kassa keys add [--role read_only]
    kassa export --from 2026-01-01 --to 2026-03-31 --out export.zip
    kassa dashboard add-user --email ops@example.com [--role read_only] [--password-stdin]
    kassa dashboard remove-user --email ops@example.com
    kassa webhooks listen [--port N] [--events invoice.*,customer.subscription.*]
    kassa simulate --subscriptions 1000 --months 12 [--seed 1] [--faults] [--json FILE]
    kassa export --history --from 2026-01-01 --to 2026-12-31 --out history.json
    kassa simulate --history history.json --price-book new.json [--elasticity 0.1]

Subcommands register themselves in ``SUBCOMMANDS``: a function that receives the argparse
sub-parsers object, adds its parser and sets ``func`` (``args.func(args) -> int``). The commands
that talk to a running stack find it through ``<state dir>/local.json`` (``running_stack()``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from kassa_local.scheduler import parse_instant

SubcommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


# -- helpers shared by the subcommands --------------------------------------------------------


def state_dir_of(args: argparse.Namespace) -> Path:
    from kassa_local.stack import default_state_dir

    return Path(args.state_dir) if getattr(args, "state_dir", None) else default_state_dir()


def running_stack(args: argparse.Namespace) -> dict[str, Any]:
    """The running stack's local.json, or exit with a hint."""
    from kassa_local.stack import STATE_FILE, read_state

    state_dir = state_dir_of(args)
    try:
        return read_state(state_dir)
    except FileNotFoundError:
        hint = f"no local stack running ({state_dir / STATE_FILE} not found): start one with `kassa run`"
        raise SystemExit(hint) from None


def local_api(
    args: argparse.Namespace, method: str, path: str, body: Any = None, *, timeout: float | None = 600
) -> Any:
    """Call the running stack's gateway (``/_local/…``, ``/v1/…`` with the API secret key)."""
    state = running_stack(args)
    headers = {"Authorization": f"Bearer {state['api_secret_key']}"}
    try:
        resp = requests.request(method, state["api_url"] + path, json=body, headers=headers, timeout=timeout)
    except requests.ConnectionError as exc:
        raise SystemExit(f"the local stack at {state['api_url']} does not answer: {exc}") from exc
    try:
        payload = resp.json()
    except ValueError:
        payload = resp.text
    if resp.status_code >= 400:
        raise SystemExit(f"{method} {path} → {resp.status_code}: {json.dumps(payload, indent=2)}")
    return payload


# -- kassa run --------------------------------------------------------------------------------


def add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="start the local stack and run until Ctrl-C")
    p.add_argument("--api-port", type=int, default=None, help="gateway port (env KASSA_API_PORT, 8000)")
    p.add_argument("--aws-port", type=int, default=None, help="moto port (env KASSA_AWS_PORT, 5000)")
    p.add_argument("--stripe-port", type=int, default=None, help="localstripe port (env KASSA_STRIPE_PORT, 8420)")
    p.add_argument("--start-time", default=None, help="virtual clock start, ISO-8601 (default: now)")
    p.add_argument("--functions-dir", default=None, help="handlers folder (default: <repo>/functions)")
    p.add_argument(
        "--every-tick",
        action="store_true",
        help="fire every schedule tick on advance (no idle probes: slower, same outcome)",
    )
    p.add_argument("--no-seed", action="store_true", help="do not create the demo catalog on an empty stack")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging of the stack itself")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from kassa_local.stack import STATE_FILE, LocalStack, PortInUse

    probes: dict[str, Any] = {}
    if not args.every_tick:
        try:
            from kassa_local.probes import default_idle_probes
        except ImportError:  # pragma: no cover - the probes module is optional
            pass
        else:
            probes = dict(default_idle_probes())
    stack = LocalStack(
        idle_probes=probes,
        api_port=args.api_port,
        aws_port=args.aws_port,
        stripe_port=args.stripe_port,
        state_dir=state_dir_of(args),
        start_time=parse_instant(args.start_time) if args.start_time else None,
        functions_dir=args.functions_dir,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            stack.start()
        except PortInUse as error:  # one line naming the port and how to change it, no traceback
            print(f"kassa run: {error}", file=sys.stderr)
            return 1
        cfg = stack.config
        if not args.no_seed:
            from kassa_local.client import Api
            from kassa_local.demo import seed_catalog

            try:
                seeded = seed_catalog(Api(cfg.as_json()))
            except Exception as error:  # the stack runs anyway; the catalog can be made through the API
                print(f"could not create the demo catalog: {error}", file=sys.stderr)
                seeded = 0
            if seeded:
                print(f"created a demo catalog ({seeded} prices) so the storefront has something to sell")
        print(
            "\n".join(
                [
                    "kassa local stack is running",
                    f"  API          {cfg.api_url}",
                    f"  OpenAPI      {cfg.openapi_url}",
                    f"  Swagger UI   {cfg.docs_url}",
                    f"  Storefront   {cfg.storefront_url}",
                    f"  Dashboard    {cfg.dashboard_url}  (sign in with the API key in settings,"
                    " or `kassa dashboard add-user`)",
                    f"  Stripe       {cfg.stripe_url}"
                    + ("  (real Stripe, test mode)" if cfg.real_stripe else "  (localstripe)"),
                    f"  AWS (moto)   {cfg.aws_endpoint_url}",
                    f"  clock        {stack.clock.now().isoformat()} (virtual; `kassa clock advance 35d`)",
                    f"  settings     {stack.state_dir / STATE_FILE}",
                    "Ctrl-C to stop.",
                ]
            ),
            flush=True,
        )
        while not done.wait(0.5):
            pass
        print("stopping…", flush=True)
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


# -- kassa clock ------------------------------------------------------------------------------


def add_clock(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("clock", help="show or advance the running stack's virtual clock")
    clock_sub = p.add_subparsers(dest="clock_command", required=True)
    show = clock_sub.add_parser("show", help="current virtual time and each schedule's next tick")
    show.set_defaults(func=cmd_clock_show)
    adv = clock_sub.add_parser(
        "advance", help="advance by a duration (35d, 12h, 90m, 1w2d) or --to a time, firing schedules"
    )
    adv.add_argument("duration", nargs="?", help="e.g. 35d (units s, m, h, d, w)")
    adv.add_argument("--to", dest="to", default=None, help="ISO-8601 target, e.g. 2027-01-01T00:00:00Z")
    adv.add_argument("--list", action="store_true", help="list every fired tick, however many")
    adv.set_defaults(func=cmd_clock_advance)


def cmd_clock_show(args: argparse.Namespace) -> int:
    state = local_api(args, "GET", "/_local/clock")
    print(f"now  {state['now']}")
    for s in state.get("schedules", []):
        print(f"  {s['schedule']:<20} every {s['every_minutes']} min → {s['function']}, next {s['next']}")
    return 0


def cmd_clock_advance(args: argparse.Namespace) -> int:
    if (args.duration is None) == (args.to is None):
        raise SystemExit("give a duration (e.g. 35d) or --to <ISO-8601>, not both")
    body = {"by": args.duration} if args.duration is not None else {"to": args.to}
    result = local_api(args, "POST", "/_local/clock/advance", body, timeout=None)
    fired = result.get("fired", [])
    if len(fired) <= LIST_TICKS_UP_TO or args.list:
        for tick in fired:
            mark = "" if tick.get("ok", True) else "  (handler failed)"
            print(f"  fired {tick['schedule']} at {tick['at']}{mark}")
    else:  # a summary per schedule; failures are always listed
        by_schedule: dict[str, list[dict[str, Any]]] = {}
        for tick in fired:
            by_schedule.setdefault(tick["schedule"], []).append(tick)
        for name, ticks in by_schedule.items():
            print(f"  fired {name} {len(ticks)} times, {ticks[0]['at']} … {ticks[-1]['at']}")
            for tick in ticks:
                if not tick.get("ok", True):
                    print(f"    failed at {tick['at']}")
    print(f"now  {result['now']}  ({len(fired)} tick(s) fired in {result.get('elapsed_s', '?')} s)")
    return 0


LIST_TICKS_UP_TO = 20


# -- entry point ------------------------------------------------------------------------------


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.demo import add_demo as add

    add(sub)


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.bench import add_bench as add

    add(sub)


def add_tax(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.tax_cli import add_tax as add

    add(sub)


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.export import add_export as add

    add(sub)


def add_analytics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.analytics_cli import add_analytics as add

    add(sub)


# -- kassa keys ---------------------------------------------------------------------------------


def add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="roll the running stack's API key or link key, or add a restricted key")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    roll = keys_sub.add_parser("roll", help="a new API key; the old one stays valid for --expires-in")
    roll.add_argument("--key", default=None, help="the id of the key to roll (default: the first full key)")
    roll.add_argument(
        "--expires-in", default="24h", help="how long the old key stays valid, virtual time (24h; 0: at once)"
    )
    roll.add_argument(
        "--links", action="store_true", help="roll the link-signing key instead (links already sent stay valid)"
    )
    roll.set_defaults(func=cmd_keys_roll)
    add = keys_sub.add_parser("add", help="add a key (default: a read_only key, which may only GET)")
    add.add_argument("--role", choices=("read_only", "full"), default="read_only")
    add.set_defaults(func=cmd_keys_add)


def _print_keys(result: dict[str, Any]) -> None:
    for key in result.get("keys", []):
        expiry = f"  expires {key['expires_at']}" if key.get("expires_at") else ""
        print(f"{key['id']}  {key.get('role', 'link')}{expiry}")


def cmd_keys_roll(args: argparse.Namespace) -> int:
    if args.links:
        result = local_api(args, "POST", "/_local/keys", {"action": "roll_links"})
        print("link key rolled; links signed with the previous key stay valid until they expire")
        _print_keys(result)
        return 0
    body: dict[str, Any] = {"action": "roll", "expires_in": args.expires_in}
    if args.key:
        body["key"] = args.key
    result = local_api(args, "POST", "/_local/keys", body)
    print(f"new key {result['new_key']['id']} ({result['new_key']['role']}): {result['new_key']['secret']}")
    print("(local.json's api_secret_key is the new key)")
    _print_keys(result)
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    result = local_api(args, "POST", "/_local/keys", {"action": "add", "role": args.role})
    print(f"new key {result['new_key']['id']} ({result['new_key']['role']}): {result['new_key']['secret']}")
    _print_keys(result)
    return 0


def add_dashboard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.dashboard_cli import add_dashboard as add

    add(sub)


def add_webhooks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.webhooks_cli import add_webhooks as add

    add(sub)


def add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa_local.simulator import add_simulate as add

    add(sub)


SUBCOMMANDS: list[SubcommandAdder] = [
    add_run, add_clock, add_demo, add_bench, add_tax, add_keys, add_export, add_analytics, add_dashboard,
    add_webhooks,
    add_simulate,
]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa", description="kassa local development stack")
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("KASSA_STATE_DIR"),
        help="where local.json lives (env KASSA_STATE_DIR, default <repo>/.kassa)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`kassa tax quote … | head -1`): no traceback. stdout goes to devnull
        # so that the interpreter's own flush at exit does not fail again (Python's documented recipe)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
