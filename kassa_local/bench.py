"""``kassa bench``: renew N subscriptions on the local stack and report what one renewal costs.

Counts come from the code paths themselves (kassa.adapters.usage: DynamoDB consumed capacity via
ReturnConsumedCapacity, Stripe calls, SQS sends, EventBridge entries) and from the local stack
(invocations, handler time, SQS batches). The AWS list-price cost per renewal is computed from
those counts; Lambda GB-seconds use the handler time measured here, which is an upper bound of
what a warm arm64 Lambda takes (moto over HTTP is slower than DynamoDB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import wiring

# us-east-1 list prices (see ../shared/brief/facts.md)
PRICE = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s_arm64": 0.0000133334,
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "eventbridge_event": 1.00 / 1e6,
    "scheduler_invocation": 1.00 / 1e6,
    "ses_email": 0.10 / 1000,  # outbound email (the receipt after each paid renewal)
    # API Gateway REST APIs, first 333 million requests a month (AWS's us-east-1 list price; not in
    # facts.md): what every HTTP call to kassa costs before a function runs
    "apigw_rest_request": 3.50 / 1e6,
    "s3_put": 0.005 / 1000,  # PUT of an invoice PDF (documents/…)
    "s3_get": 0.0004 / 1000,
    "s3_gb_month": 0.023,  # S3 Standard storage
}
#: invoices whose PDF the bench renders and stores (through GET /v1/invoices/{id}/pdf), then fetches again
PDF_SAMPLE = 20

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)

#: ``--scenario``: what each bench subscription holds
SCENARIOS = ("one-item", "three-items", "both", "usage", "scale")


def _catalog(api: Any, scenario: str) -> list[dict[str, Any]]:
    """The checkout ``items`` of one bench subscription, after creating their products and prices.

    one-item: a 19.99 EUR monthly box. three-items: a 19.99 EUR monthly base (per unit), 12 seats
    priced in graduated tiers (1–5 at 7.00, 6–10 at 6.50, 11+ at 6.00: 7950) and a 5.00 add-on,
    each of its own product (so each line carries its product's name and tax code)."""
    month = {"interval": "month"}
    box = api.post("/v1/products", {"name": "Bench box"}, expect=201)
    base = api.post(
        "/v1/prices", {"product": box["id"], "currency": "EUR", "unit_amount": 1999, "recurring": month}, expect=201
    )
    if scenario == "one-item":
        return [{"price": base["id"], "quantity": 1}]
    seats_product = api.post("/v1/products", {"name": "Bench seats"}, expect=201)
    seats = api.post(
        "/v1/prices",
        {
            "product": seats_product["id"],
            "currency": "EUR",
            "recurring": month,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [
                {"up_to": 5, "unit_amount": 700},
                {"up_to": 10, "unit_amount": 650},
                {"up_to": "inf", "unit_amount": 600},
            ],
        },
        expect=201,
    )
    addon_product = api.post("/v1/products", {"name": "Bench add-on"}, expect=201)
    addon = api.post(
        "/v1/prices",
        {"product": addon_product["id"], "currency": "EUR", "unit_amount": 500, "recurring": month},
        expect=201,
    )
    return [
        {"price": base["id"], "quantity": 1},
        {"price": seats["id"], "quantity": 12},
        {"price": addon["id"], "quantity": 1},
    ]


def _subscribe(api: Any, items: list[dict[str, Any]], n: int) -> None:
    from kassa_local.client import confirm_card_setup

    # moto's server occasionally fails a transaction under concurrent load (an internal race);
    # kassa answers 503 and nothing is half-written, so a retry is safe — a customer created by a
    # request that failed later is then found by its email and checked out by id
    email = f"bench{n}@example.com"
    body: dict[str, Any] = {"items": items, "customer": {"email": email, "address": {"country": "NL"}}}
    for _ in range(3):
        response = api.request("POST", "/v1/checkout", json=body)
        if response.status_code == 409 and "customer" in body:
            found = api.get(f"/v1/customers?email={email}")["data"]
            body = {"items": items, "customer_id": found[0]["id"]}
            continue
        if response.status_code != 503:
            break
    assert response.status_code == 201, response.text
    started = response.json()
    confirm_card_setup(api.config, started["setup_intent_id"], started["client_secret"], "4242424242424242")
    api.post(f"/v1/checkout/{started['subscription']['id']}/complete", {"setup_intent_id": started["setup_intent_id"]})


def run(n: int, progress: bool = True, scenario: str = "one-item") -> dict[str, Any]:
    from kassa_local.client import Api
    from kassa_local.stack import fresh_stack

    with fresh_stack(START, drain_timeout_s=900) as stack:  # 200 echoes and emails take longer than 120 s here
        assert stack.config is not None
        api = Api(stack.config.as_json())
        items = _catalog(api, scenario)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=3) as pool:
            for done, _ in enumerate(pool.map(lambda i: _subscribe(api, items, i), range(n)), 1):
                if progress and (done % max(1, n // 20) == 0 or done == n):
                    print(f"\r  subscribing {done}/{n}", end="", flush=True)
        if progress:
            print(f"  ({time.perf_counter() - t0:.1f} s)")
        counts, before, after, fired, wall, renewals = _renew_once(stack)
        pdf = _pdf_figures(api, stack, [i["id"] for i in renewals[:PDF_SAMPLE]])
    figures = _report(n, len(renewals), counts, before, after, len(fired), wall, pdf)
    figures["scenario"] = scenario
    figures["invoice_lines"] = round(sum(len(i.get("lines", [])) for i in renewals) / max(len(renewals), 1), 2)
    figures["invoice_total"] = renewals[0].get("total") if renewals else None
    return figures


def _renew_once(stack: Any) -> tuple[dict[str, float], dict[str, Any], dict[str, Any], list[Any], float, list[Any]]:
    """Every subscription renews once, measured: the billable calls, the stack's stats before and
    after, the schedule ticks fired, the wall time and the renewal invoices paid."""
    from kassa.adapters import usage

    stack.drain()  # what came before (first invoices, ingested events) settles before we measure
    usage.reset()
    before = stack.stats()
    t1 = time.perf_counter()
    fired = stack.advance(by="32d")  # every subscription renews once (a month is at most 31 days)
    stack.drain()
    wall = time.perf_counter() - t1
    after = stack.stats()
    counts = usage.snapshot()
    renewals = [
        e["detail"]["data"]
        for e in stack.events("invoice.paid")
        if e["detail"]["data"]["billing_reason"] == "subscription_cycle"
    ]
    return counts, before, after, fired, wall, renewals


def _pdf_figures(api: Any, stack: Any, invoice_ids: list[str]) -> dict[str, Any]:
    """Render and store the PDF of each sampled renewal invoice (the first GET), then serve it again
    from the files bucket (the second GET): the api function's handler time for each, and the size."""
    if not invoice_ids:
        return {}
    sizes: list[int] = []
    handler_ms: dict[str, float] = {}
    for attempt in ("render_and_store", "served_from_storage"):
        before = stack.stats()
        for invoice_id in invoice_ids:
            response = api.request("GET", f"/v1/invoices/{invoice_id}/pdf", expect=200)
            if attempt == "render_and_store":
                sizes.append(len(response.content))
        after = stack.stats()
        handler_ms[attempt] = round(_delta(before, after, "api", "total_ms") / len(invoice_ids), 1)
    return {
        "sample": len(invoice_ids),
        "render_and_store_ms": handler_ms["render_and_store"],
        "served_from_storage_ms": handler_ms["served_from_storage"],
        "pdf_bytes": round(statistics.mean(sizes)),
    }


def _delta(before: dict[str, Any], after: dict[str, Any], fn: str, key: str) -> float:
    return float(after["functions"][fn][key]) - float(before["functions"][fn][key])


def _report(
    n: int,
    paid: int,
    counts: dict[str, float],
    before: dict[str, Any],
    after: dict[str, Any],
    ticks: int,
    wall: float,
    pdf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    per = 1.0 / max(paid, 1)
    functions = {fn.name: fn for fn in wiring.FUNCTIONS}
    invocations = {name: _delta(before, after, name, "invocations") for name in functions}
    handler_ms = {name: _delta(before, after, name, "total_ms") for name in functions}
    gb_s = sum(handler_ms[name] / 1000 * functions[name].memory_mb / 1024 for name in functions)
    triggered = [fn.name for fn in wiring.FUNCTIONS if fn.queue_trigger]
    sqs_batches = sum(invocations[name] for name in triggered)
    sqs_requests = counts.get("calls.sqs.send_message_batch", 0) + 2 * sqs_batches  # receive + delete per batch
    stripe_calls = sum(v for k, v in counts.items() if k.startswith("calls.stripe."))
    dynamo_writes = sum(
        v
        for k, v in counts.items()
        if k.startswith("calls.dynamodb.")
        and k.split(".")[-1] in ("put_item", "update_item", "transact_write_items", "delete_item")
    )
    figures: dict[str, Any] = {
        "subscriptions": n,
        "renewals_paid": paid,
        "schedule_ticks_fired": ticks,
        "wall_s": round(wall, 2),
        "per_renewal": {
            "dynamodb_read_units": round(counts.get("units.dynamodb.read", 0) * per, 2),
            "dynamodb_write_units": round(counts.get("units.dynamodb.write", 0) * per, 2),
            "dynamodb_write_requests": round(dynamo_writes * per, 2),
            "dynamodb_requests": round(sum(v for k, v in counts.items() if k.startswith("calls.dynamodb.")) * per, 2),
            "sqs_requests": round(sqs_requests * per, 2),
            "eventbridge_events": round(counts.get("calls.events.entries", 0) * per, 2),
            "stripe_calls": round(stripe_calls * per, 2),
            "emails_sent": round(counts.get("calls.ses.send_email", 0) * per, 2),
            "lambda_invocations": round(sum(invocations.values()) * per, 3),
            "handler_ms": round(sum(handler_ms.values()) * per, 1),
        },
        "dynamodb_units_by_operation": {
            k[len("units.dynamodb.") :]: round(v * per, 2)
            for k, v in counts.items()
            if k.startswith("units.dynamodb.") and k.count(".") == 3
        },
        "stripe_calls_by_kind": {
            k[len("calls.stripe.") :]: v for k, v in counts.items() if k.startswith("calls.stripe.")
        },
        "invocations": invocations,
    }
    p = figures["per_renewal"]
    cost = {
        "lambda_requests": p["lambda_invocations"] * PRICE["lambda_request"],
        "lambda_compute": gb_s * per * PRICE["lambda_gb_s_arm64"],
        "dynamodb": p["dynamodb_write_units"] * PRICE["dynamodb_wru"]
        + p["dynamodb_read_units"] * PRICE["dynamodb_rru"],
        "sqs": p["sqs_requests"] * PRICE["sqs_request"],
        "eventbridge": p["eventbridge_events"] * PRICE["eventbridge_event"],
        "scheduler": ticks * per * PRICE["scheduler_invocation"],
        "ses": p["emails_sent"] * PRICE["ses_email"],
    }
    cost["total"] = sum(cost.values())
    cost["total_without_email"] = cost["total"] - cost["ses"]
    if pdf:  # one invoice PDF per renewal, rendered and stored once (not in the totals above)
        memory_gb = functions["api"].memory_mb / 1024
        cost["pdf_document"] = (
            pdf["render_and_store_ms"] / 1000 * memory_gb * PRICE["lambda_gb_s_arm64"]
            + PRICE["lambda_request"]
            + PRICE["s3_put"]
            + PRICE["s3_get"]  # the request that made it found nothing first
        )
        cost["pdf_storage_per_month"] = pdf["pdf_bytes"] / 1024**3 * PRICE["s3_gb_month"]
        cost["total_with_pdf"] = cost["total"] + cost["pdf_document"]
        figures["per_renewal"]["pdf_render_and_store_ms"] = pdf["render_and_store_ms"]
        figures["pdf_document"] = pdf
    figures["cost_usd_per_renewal"] = {k: float(f"{v:.3g}") for k, v in cost.items()}
    return figures


def cold_starts() -> dict[str, float]:
    """Each handler's import in a fresh interpreter, median of 5, from the layers' bytecode as
    ``make layer`` builds them (kassa_local/coldstart.py; ``make bench-imports`` for both ways)."""
    from kassa_local.coldstart import measure

    figures = measure([fn.name for fn in wiring.FUNCTIONS], runs=5)
    return {name: by_mode["bytecode"]["wall_ms"] for name, by_mode in figures.items()}


def _hybrid_catalog(api: Any) -> list[dict[str, Any]]:
    """A hybrid plan: a fixed 29.00 EUR a month and API calls at 0.2 cents (€0.002) for the first
    10,000, 0.1 cents beyond (graduated, unit_amount_decimal), billed in arrears from a count meter."""
    meter = api.post(
        "/v1/meters", {"event_name": "bench_call", "display_name": "API calls", "aggregation": "count"}, expect=201
    )
    base_product = api.post("/v1/products", {"name": "Bench platform"}, expect=201)
    calls_product = api.post("/v1/products", {"name": "Bench API calls"}, expect=201)
    month = {"interval": "month"}
    base = api.post(
        "/v1/prices",
        {"product": base_product["id"], "currency": "EUR", "unit_amount": 2900, "recurring": month},
        expect=201,
    )
    tiers = [{"up_to": 10_000, "unit_amount_decimal": "0.2"}, {"up_to": "inf", "unit_amount_decimal": "0.1"}]
    metered = api.post(
        "/v1/prices",
        {
            "product": calls_product["id"],
            "currency": "EUR",
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": tiers,
            "recurring": {**month, "usage_type": "metered", "meter": meter["id"]},
        },
        expect=201,
    )
    return [{"price": base["id"]}, {"price": metered["id"]}]


def _ingestion_figures(
    events: int, calls: int, counts: dict[str, float], before: dict[str, Any], after: dict[str, Any], wall: float
) -> dict[str, Any]:
    """Per event and per million events, from the counts of one ingestion run."""
    per = 1.0 / max(events, 1)
    fn = wiring.function("meter_ingest")
    invocations = _delta(before, after, fn.name, "invocations")
    handler_ms = _delta(before, after, fn.name, "total_ms")
    wru = counts.get("units.dynamodb.write", 0) * per
    rru = counts.get("units.dynamodb.read", 0) * per
    gb_s = handler_ms / 1000 * fn.memory_mb / 1024 * per
    million = {
        "api_gateway": calls * per * PRICE["apigw_rest_request"] * 1e6,
        "lambda_requests": invocations * per * PRICE["lambda_request"] * 1e6,
        "lambda_compute_measured_on_moto": gb_s * PRICE["lambda_gb_s_arm64"] * 1e6,
        "dynamodb": (wru * PRICE["dynamodb_wru"] + rru * PRICE["dynamodb_rru"]) * 1e6,
        "eventbridge": counts.get("calls.events.entries", 0) * per * PRICE["eventbridge_event"] * 1e6,
        "sqs": counts.get("calls.sqs.send_message_batch", 0) * per * PRICE["sqs_request"] * 1e6,
    }
    million["total"] = sum(million.values())
    million["total_with_lambda_compute_at_50ms_per_call"] = (
        million["total"]
        - million["lambda_compute_measured_on_moto"]
        + calls * per * 0.05 * fn.memory_mb / 1024 * PRICE["lambda_gb_s_arm64"] * 1e6
    )
    return {
        "events": events,
        "http_calls": calls,
        "events_per_s_local": round(events / wall, 1) if wall else None,
        "per_event": {
            "dynamodb_write_units": round(wru, 3),
            "dynamodb_read_units": round(rru, 3),
            "dynamodb_requests": round(sum(v for k, v in counts.items() if k.startswith("calls.dynamodb.")) * per, 3),
            "lambda_invocations": round(invocations * per, 3),
            "handler_ms": round(handler_ms * per, 2),
        },
        "dynamodb_units_by_operation_per_event": {
            k[len("units.dynamodb.") :]: round(v * per, 3)
            for k, v in counts.items()
            if k.startswith("units.dynamodb.") and k.count(".") == 3
        },
        "usd_per_million_events": {k: round(v, 3) for k, v in million.items()},
    }


def run_usage(n: int, events_per_customer: int = 500, singles: int = 100, progress: bool = True) -> dict[str, Any]:
    """The usage scenario: N hybrid subscriptions, ``events_per_customer`` events each through the
    batch endpoint (100 a call), ``singles`` more one per call, then every subscription renews once
    (the fixed fee in advance, the usage in arrears)."""
    from kassa.adapters import usage
    from kassa_local.client import Api
    from kassa_local.stack import fresh_stack

    with fresh_stack(START, drain_timeout_s=900) as stack:
        assert stack.config is not None
        api = Api(stack.config.as_json())
        items = _hybrid_catalog(api)
        for i in range(n):
            _subscribe(api, items, i)
        stack.drain()
        customers = [s["customer"] for s in api.get("/v1/subscriptions?limit=100")["data"]][:n]
        out: dict[str, Any] = {"scenario": "usage", "subscriptions": n}
        for label, size, total in (("batch_100", 100, events_per_customer), ("batch_1", 1, singles)):
            usage.reset()
            before = stack.stats()
            calls, sent = 0, 0
            t0 = time.perf_counter()
            for c, customer in enumerate(customers):
                count = total if size == 100 else max(1, total // len(customers))
                batch = [
                    {"event_name": "bench_call", "customer": customer, "identifier": f"{label}-{c}-{k}", "payload": {}}
                    for k in range(count)
                ]
                for start in range(0, len(batch), size):
                    chunk = batch[start : start + size]
                    if size == 1:
                        api.post("/v1/meter_events", chunk[0], expect=201)
                    else:
                        api.post("/v1/meter_events/batch", {"events": chunk})
                    calls += 1
                    sent += len(chunk)
                if progress:
                    print(f"\r  {label}: {sent} events", end="", flush=True)
            wall = time.perf_counter() - t0
            if progress:
                print(f" ({wall:.1f} s)")
            out[label] = _ingestion_figures(sent, calls, usage.snapshot(), before, stack.stats(), wall)
        counts, before, after, fired, wall, renewals = _renew_once(stack)
    renewal = _report(n, len(renewals), counts, before, after, len(fired), wall)
    renewal["invoice_lines"] = round(sum(len(i.get("lines", [])) for i in renewals) / max(len(renewals), 1), 2)
    renewal["invoice_total"] = renewals[0].get("total") if renewals else None
    out["metered_renewal"] = renewal
    return out


def run_scale(n: int) -> dict[str, Any]:
    """The scale scenario (kassa_local/scale.py, in process, virtual time): a cohort due in one hour
    renewed with the deployed settings (the invoice counter the limit); the same with the counter out
    of the way (the bucket alone holding Stripe to its limit); without the bucket (429s and their
    retries); and test mode's limit."""
    from kassa_local.scale import simulate

    live = wiring.STRIPE_BUDGET["live"][0]
    runs: dict[str, dict[str, Any]] = {
        "live_deployed_settings": {"workers": wiring.RENEWAL_CONCURRENCY, "mode": "live"},
        "live_bucket_only": {"workers": wiring.renewal_concurrency(live), "mode": "live", "counter_rate": None},
        "live_without_bucket": {
            "workers": 2 * wiring.renewal_concurrency(live),
            "mode": "live",
            "counter_rate": None,
            "use_bucket": False,
        },
        "test_mode": {"workers": wiring.renewal_concurrency(wiring.renewals_per_s(20)), "mode": "test"},
    }
    out: dict[str, Any] = {}
    for name, kwargs in runs.items():
        print(f"  {name}: {n} subscriptions …", flush=True)
        out[name], _ = simulate(n, **kwargs)
    return out


#: scenarios measured by one function of their own: (headline, the function)
SINGLE_RUNS = {
    "usage": ("{n} hybrid subscriptions, events in batches of 100 and 1", run_usage),
    "scale": ("{n} subscriptions due in one hour, in process, virtual time", run_scale),
}


def main(args: argparse.Namespace) -> int:
    if args.scenario in SINGLE_RUNS:
        headline, measure = SINGLE_RUNS[args.scenario]
        print(f"kassa bench ({args.scenario}): {headline.format(n=args.subscriptions)}")
        measured = measure(args.subscriptions)
        print(json.dumps(measured, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(measured, indent=2) + "\n")
        return 0
    scenarios = ["one-item", "three-items"] if args.scenario == "both" else [args.scenario]
    figures: dict[str, Any] = {}
    for scenario in scenarios:
        print(f"kassa bench ({scenario}): {args.subscriptions} subscriptions renewing once on a fresh local stack")
        figures[scenario] = run(args.subscriptions, scenario=scenario)
    if len(scenarios) > 1:
        figures["side_by_side"] = _side_by_side(figures, scenarios)
    else:
        figures = figures[scenarios[0]]
    print("measuring cold-start imports (fresh process, median of 5, compiled layers) …")
    figures["import_ms_over_bare_interpreter"] = cold_starts()
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


#: the figures shown next to each other for the scenarios of one run
SIDE_BY_SIDE = (
    "stripe_calls",
    "dynamodb_write_requests",
    "dynamodb_write_units",
    "dynamodb_read_units",
    "sqs_requests",
    "eventbridge_events",
)


def _side_by_side(figures: dict[str, Any], scenarios: list[str]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {
        key: {s: figures[s]["per_renewal"][key] for s in scenarios} for key in SIDE_BY_SIDE
    }
    for key in ("total", "total_without_email", "total_with_pdf", "pdf_document"):
        if all(key in figures[s]["cost_usd_per_renewal"] for s in scenarios):
            table[f"aws_cost_usd_{key}"] = {s: figures[s]["cost_usd_per_renewal"][key] for s in scenarios}
    return table


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="renew N subscriptions on a fresh local stack and print per-renewal costs")
    p.add_argument("--subscriptions", "-n", type=int, default=200)
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="both",
        help="one-item (a 19.99 EUR box), three-items (base + seats in graduated tiers + add-on), "
        "or both, each on its own fresh stack, reported side by side (default); usage: hybrid subscriptions "
        "(a fixed fee + a metered price) ingesting events in batches of 100 and 1, then renewing; scale: a "
        "cohort due in one hour renewed in process against a rate-limited fake Stripe (virtual time)",
    )
    p.add_argument("--json", help="also write the figures to this file")
    p.set_defaults(func=main)
