"""``kassa export``: a period's invoice and credit-note documents in one zip, for the accountant.

    kassa export --from 2026-01-01 --to 2026-03-31 --out export.zip [--format pdf,ubl]

Through the API of the running local stack (``.kassa/local.json``): ``GET /v1/invoices`` with
``created[gte]`` / ``created[lte]`` (every page), then each finalized invoice's
``/v1/invoices/{id}/pdf`` and ``/ubl`` and each of its credit notes' ``/v1/credit_notes/{id}/pdf``
and ``/ubl``. The zip holds ``invoices/<number>.pdf|.xml``, ``credit_notes/<number>.pdf|.xml`` and
``index.csv`` (one row per document: kind, number, id, invoice, status, currency, total, date,
customer, files, and why a file is missing — e.g. no UBL without the seller's VAT number). Drafts
and unnumbered invoices have no documents and are left out. Every document is made once and kept
in the files bucket, so exporting a period twice renders nothing new.

With ``--history`` it writes the merchant's billing history instead, as one JSON file for the pricing
what-if (``kassa simulate --history``, docs/whatif.md): every product, price and coupon, the
subscriptions created up to ``--to`` (any status), their customers (id, country, currency and tax
status only) and the invoices created in the period (with their lines), in the API's own shape
without personal data (no email, name, address or tax id)::

    kassa export --history --from 2026-01-01 --to 2026-12-31 --out history.json

The same works against a deployed API with ``--api-url`` and ``--key`` (or ``KASSA_API_KEY``); the
client then sends ``Accept: application/pdf`` so that API Gateway returns the PDF's bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import zipfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import requests

FORMATS = {"pdf": ("pdf", "application/pdf"), "ubl": ("xml", "application/xml")}
INDEX_COLUMNS = (
    "kind", "number", "id", "invoice", "status", "currency", "total", "created", "customer", "files", "missing",
)  # fmt: skip


class Exporter:
    def __init__(self, base: str, key: str, timeout: float = 120) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout

    def json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.session.get(self.base + path, params=params, timeout=self.timeout)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} → {response.status_code}: {response.text}")
        return response.json()

    def every(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every page of a list route."""
        found: list[dict[str, Any]] = []
        params = {**(params or {}), "limit": 100}
        while True:
            page = self.json(path, params)
            found += page["data"]
            if not page.get("has_more") or not page["data"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        return found

    def invoices(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every invoice created in [start, end], oldest first."""
        found = self.every(
            "/v1/invoices", {"created[gte]": int(start.timestamp()), "created[lte]": int(end.timestamp())}
        )
        return sorted(found, key=lambda i: (i.get("created") or "", i.get("number") or "", i["id"]))

    def history(self, start: datetime, end: datetime, as_of: datetime) -> dict[str, Any]:
        """The billing history of [start, end] for ``kassa simulate --history`` (kassa_local.whatif),
        as of ``as_of`` (the time of the export: the stack's clock). No personal data: customers are
        their id, country, currency and tax status (from the customer list, not one GET each), and
        the invoices and subscriptions lose the buyer's details (``without_personal_data``)."""
        until = int(end.timestamp())
        subscriptions = self.every("/v1/subscriptions", {"status": "all", "created[lte]": until})
        wanted = {s["customer"] for s in subscriptions}
        listed = {c["id"]: c for c in self.every("/v1/customers", {"created[lte]": until}) if c["id"] in wanted}
        # a customer the list did not give (none should be missing): read it alone
        listed.update({c: self.json(f"/v1/customers/{c}") for c in sorted(wanted - set(listed))})
        currencies: dict[str, str] = {}
        for sub in sorted(subscriptions, key=lambda s: (s["created"], s["id"])):
            currencies.setdefault(sub["customer"], sub["currency"])
        invoices = [i for i in self.invoices(start, end) if i.get("subscription")]
        return {
            "object": "kassa_history",
            "version": 1,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "as_of": as_of.isoformat(),
            "products": self.every("/v1/products"),
            "prices": self.every("/v1/prices"),
            "coupons": self.every("/v1/coupons"),
            "customers": [history_customer(listed[c], currencies.get(c)) for c in sorted(wanted)],
            "subscriptions": [
                without_personal_data(s) for s in sorted(subscriptions, key=lambda s: (s["created"], s["id"]))
            ],
            "invoices": [without_personal_data(i) for i in invoices],
        }

    def credit_notes(self, invoice_id: str) -> list[dict[str, Any]]:
        return list(self.json(f"/v1/invoices/{invoice_id}/credit_notes")["data"])

    def document(self, path: str, media: str) -> tuple[bytes | None, str]:
        """(bytes, "") or (None, why not)."""
        response = self.session.get(self.base + path, headers={"Accept": media}, timeout=self.timeout)
        if response.status_code == 200:
            return response.content, ""
        try:
            reason = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            reason = response.text[:200]
        return None, f"{response.status_code}: {reason}"


# what the what-if needs of a customer (docs/whatif.md): never the email, name, address or tax id
def history_customer(customer: dict[str, Any], currency: str | None) -> dict[str, Any]:
    return {
        "object": "customer",
        "id": customer["id"],
        "country": (customer.get("address") or {}).get("country"),
        "currency": customer.get("balance_currency") or currency,
        "tax_exempt": bool(customer.get("tax_exempt")),
        "has_tax_id": bool(customer.get("tax_id")),
        "created": customer.get("created"),
    }


# the parts of an invoice or a subscription that name or locate a person: the buyer's (and the
# seller's) party, the tax id, a cancellation's free-text comment
PERSONAL_FIELDS = ("buyer", "seller", "customer_tax_id")


def without_personal_data(body: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in body.items() if k not in PERSONAL_FIELDS}
    details = kept.get("cancellation_details")
    if isinstance(details, dict) and "comment" in details:
        kept["cancellation_details"] = {k: v for k, v in details.items() if k != "comment"}
    return kept


def _day(value: str, *, end: bool) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError as error:
        raise SystemExit(f"dates are YYYY-MM-DD, got {value!r}") from error
    return datetime.combine(day, time.max.replace(microsecond=0) if end else time.min, tzinfo=UTC)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "document"


def export(
    client: Exporter, start: datetime, end: datetime, out: Path, formats: list[str], *, progress: bool = True
) -> dict[str, int]:
    """Write the zip; returns counts (invoices, credit notes, files, missing files)."""
    counts = {"invoices": 0, "credit_notes": 0, "files": 0, "missing": 0}
    index = io.StringIO()
    rows = csv.writer(index)
    rows.writerow(INDEX_COLUMNS)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(kind: str, folder: str, obj: dict[str, Any], route: str, invoice: str) -> None:
            written, missing = [], []
            for fmt in formats:
                extension, media = FORMATS[fmt]
                data, why = client.document(f"{route}/{obj['id']}/{fmt}", media)
                name = f"{folder}/{_safe(obj['number'])}.{extension}"
                if data is None:
                    missing.append(f"{fmt} {why}")
                    counts["missing"] += 1
                    continue
                archive.writestr(name, data)
                written.append(name)
                counts["files"] += 1
            rows.writerow(
                [kind, obj["number"], obj["id"], invoice, obj.get("status"), obj.get("currency"), obj.get("total"),
                 obj.get("created"), obj.get("customer"), " ".join(written), "; ".join(missing)]
            )  # fmt: skip

        invoices = [i for i in client.invoices(start, end) if i.get("number") and i.get("status") != "draft"]
        for n, invoice in enumerate(invoices, 1):
            add("invoice", "invoices", invoice, "/v1/invoices", invoice["id"])
            counts["invoices"] += 1
            for note in client.credit_notes(invoice["id"]):
                add("credit_note", "credit_notes", note, "/v1/credit_notes", invoice["id"])
                counts["credit_notes"] += 1
            if progress:
                print(f"\r  {n}/{len(invoices)} invoices", end="", flush=True)
        if progress and invoices:
            print()
        archive.writestr("index.csv", index.getvalue())
    return counts


def cmd_export(args: argparse.Namespace) -> int:
    start, end = _day(args.from_, end=False), _day(args.to, end=True)
    if end < start:
        raise SystemExit("--to is before --from")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise SystemExit(f"--format is a comma-separated list of {', '.join(FORMATS)}")
    if args.api_url:
        key = args.key or os.environ.get("KASSA_API_KEY")
        if not key:
            raise SystemExit("--api-url needs --key (or KASSA_API_KEY)")
        base = args.api_url
        clock = None
    else:
        from kassa_local.cli import local_api, running_stack

        state = running_stack(args)
        base, key = state["api_url"], args.key or state["api_secret_key"]
        # the local stack's time is virtual: the history is as of its clock
        clock = local_api(args, "GET", "/_local/clock")["now"] if args.history else None
    if args.history:
        out = Path(args.out or "history.json")
        as_of = datetime.fromisoformat(clock.replace("Z", "+00:00")) if clock else datetime.now(UTC)
        history = Exporter(base, key).history(start, end, as_of)
        out.write_text(json.dumps(history, indent=1))
        print(
            f"{out}: {len(history['subscriptions'])} subscriptions of {len(history['customers'])} customers, "
            f"{len(history['invoices'])} invoices, {len(history['prices'])} prices"
        )
        return 0
    out = Path(args.out or "export.zip")
    counts = export(Exporter(base, key), start, end, out, formats)
    print(
        f"{out}: {counts['invoices']} invoices and {counts['credit_notes']} credit notes, "
        f"{counts['files']} files" + (f", {counts['missing']} missing (see index.csv)" if counts["missing"] else "")
    )
    return 0


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="a period's invoice and credit-note PDFs and UBL files in one zip")
    p.add_argument("--from", dest="from_", required=True, help="first day, YYYY-MM-DD (invoices created from then)")
    p.add_argument("--to", required=True, help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--out", default=None, help="the file to write (default export.zip, history.json with --history)")
    p.add_argument(
        "--history",
        action="store_true",
        help="the billing history (customers, subscriptions, invoices, catalog) as JSON for `kassa simulate`",
    )
    p.add_argument("--format", default="pdf,ubl", help="pdf, ubl or pdf,ubl (default)")
    p.add_argument("--api-url", default=None, help="a deployed API instead of the running local stack")
    p.add_argument("--key", default=None, help="the API key (default: the local stack's; read-only keys do)")
    p.set_defaults(func=cmd_export)
