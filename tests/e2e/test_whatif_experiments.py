"""On the local stack: the history export round trip for the pricing what-if, and price
experiments over HTTP and in the storefront (a real browser: the visitor sees their variant's price
and the checkout charges it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from kassa_local import whatif
from kassa_local.cli import main
from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def _price(api: Api, product: dict[str, Any], amount: int, **recurring: Any) -> dict[str, Any]:
    body = {
        "product": product["id"],
        "currency": "EUR",
        "unit_amount": amount,
        "recurring": {"interval": "month", **recurring},
    }
    return dict(api.post("/v1/prices", body, expect=201))


def test_the_history_export_round_trip(api: Api, stack_config: dict[str, Any], tmp_path: Path, capsys) -> None:
    """Two customers subscribe, a month renews; `kassa export --history` writes what the API holds and
    `kassa simulate` re-bills it: the unchanged book gives the actual figures, +20 % gives 12.00 a
    period; nothing in the stack changes."""
    product = api.post("/v1/products", {"name": "History coffee"}, expect=201)
    price = _price(api, product, 1000)
    for email in ("h1@example.com", "h2@example.com"):
        api.subscribe(price["id"], email)
    api.advance(by="32d")
    state = tmp_path / "state"
    state.mkdir()
    (state / "local.json").write_text(json.dumps(stack_config))
    out = tmp_path / "history.json"
    assert main(["--state-dir", str(state), "export", "--history", "--from", "2026-01-01", "--to", "2026-12-31",
                 "--out", str(out)]) == 0  # fmt: skip
    raw = json.loads(out.read_text())
    mine = [s for s in raw["subscriptions"] if s["items"]["data"][0]["price"] == price["id"]]
    assert len(mine) == 2 and all(s["status"] == "active" for s in mine)
    invoices = [i for i in raw["invoices"] if i["subscription"] in {s["id"] for s in mine}]
    assert len(invoices) == 4 and all(i["status"] == "paid" for i in invoices)
    mine_customers = [c for c in raw["customers"] if c["id"] in {s["customer"] for s in mine}]
    assert len(mine_customers) == 2 and all(c["currency"] == "EUR" and "email" not in c for c in mine_customers)
    assert "h1@example.com" not in out.read_text()  # no personal data in the export

    history = whatif.load_history(raw)
    same = whatif.report(history, whatif.rebill(history, whatif.parse_price_book({}, history.prices)))
    coffee = [r for r in same if r.plan == "History coffee"]
    assert sum(r.actual_revenue for r in coffee) == sum(r.whatif_revenue for r in coffee) == 4000
    before = api.get(f"/v1/prices/{price['id']}")

    book = tmp_path / "book.json"
    book.write_text(json.dumps({"name": "+20%", "prices": {price["id"]: {"unit_amount": 1200}}}))
    csv_path, svg_path = tmp_path / "w.csv", tmp_path / "w.svg"
    code = main(["simulate", "--history", str(out), "--price-book", str(book), "--csv", str(csv_path),
                 "--chart", str(svg_path)])  # fmt: skip
    assert code == 0
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:] if ",History coffee," in line]
    assert sum(int(r[6]) for r in rows) == 4000 and sum(int(r[7]) for r in rows) == 4800
    assert svg_path.read_text().startswith("<svg")
    assert api.get(f"/v1/prices/{price['id']}") == before  # the stack is untouched

    # the same export as the simulator's scenario: the stack's own catalog, countries and plan mix
    report_path = tmp_path / "sim.json"
    code = main(["simulate", "--scenario", str(out), "--subscriptions", "8", "--months", "1", "--no-progress",
                 "--json", str(report_path)])  # fmt: skip
    report = json.loads(report_path.read_text())
    assert code == 0 and report["ok"] and report["checkouts"]["completed"] >= 1
    assert "history" in report["scenario"]


@pytest.fixture(scope="module")
def experiment_catalog(stack_config: dict[str, Any]) -> dict[str, Any]:
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Experiment tea"}, expect=201)
    control = _price(api, product, 900)
    variant = _price(api, product, 1100)
    return {"product": product, "control": control, "variant": variant}


def test_experiments_over_http(api: Api, experiment_catalog: dict[str, Any]) -> None:
    product, control, variant = (experiment_catalog[k] for k in ("product", "control", "variant"))
    bad = api.request("POST", "/v1/experiments", json={
        "name": "t", "product": product["id"],
        "variants": [{"price": control["id"], "weight": 60}, {"price": variant["id"], "weight": 30}],
    })  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "variants", bad.text
    body = {
        "name": "Tea at 11",
        "product": product["id"],
        "variants": [{"price": control["id"], "weight": 50, "name": "nine"}, {"price": variant["id"], "weight": 50}],
    }
    created = api.post("/v1/experiments", body, expect=201)
    assert created["status"] == "running" and [v["name"] for v in created["variants"]] == ["nine", "B"]
    again = api.request("POST", "/v1/experiments", json=body)
    assert again.status_code == 409 and again.json()["error"]["param"] == "product"
    assert created["id"] in [e["id"] for e in api.get("/v1/experiments")["data"]]

    charged = {}
    for n in range(6):
        email = f"tea{n}@example.com"
        shown = api.post(f"/v1/products/{product['id']}/experiment_assignment", {"email": email})
        done = api.subscribe(control["id"], email)
        assert done["subscription"]["price"] == shown["price"]
        assert done["invoice"]["subtotal"] == (900 if shown["variant"] == "a" else 1100)
        by_id = api.post(f"/v1/products/{product['id']}/experiment_assignment", {"customer_id": done["customer"]["id"]})
        assert by_id["variant"] == shown["variant"]
        charged[shown["variant"]] = charged.get(shown["variant"], 0) + 1
    report = api.get(f"/v1/experiments/{created['id']}")
    figures = {v["id"]: v for v in report["variants"]}
    for variant_id, count in charged.items():
        assert figures[variant_id]["checkouts_started"] == figures[variant_id]["checkouts_paid"] == count
        assert figures[variant_id]["conversion_rate"] == "1.0000"
        assert figures[variant_id]["mrr"] == count * (900 if variant_id == "a" else 1100)

    # the storefront's back end: one variant per product, the visitor's (the first without an email)
    def shown(email: str = "") -> set[str]:
        found = requests.get(f"{api.base}/demo/prices", params={"email": email} if email else {}, timeout=30)
        return {p["id"] for p in found.json()["data"]} & {control["id"], variant["id"]}

    assert shown() == {control["id"]}
    for n in range(4):
        email = f"tea{n}@example.com"
        assigned = api.post(f"/v1/products/{product['id']}/experiment_assignment", {"email": email})
        assert shown(email) == {assigned["price"]}
    stopped = api.post(f"/v1/experiments/{created['id']}/stop", {})
    assert stopped["status"] == "stopped"
    assert shown() == {control["id"], variant["id"]}  # stopped: every price again
    gone = api.request("POST", f"/v1/products/{product['id']}/experiment_assignment", json={"email": "x@example.com"})
    assert gone.status_code == 404


def test_the_storefront_shows_the_visitors_variant_and_charges_it(
    api: Api, stack_config: dict[str, Any], browser, tmp_path: Path
) -> None:
    product = api.post("/v1/products", {"name": "Experiment matcha"}, expect=201)
    control, variant = _price(api, product, 1300), _price(api, product, 1700)
    api.post("/v1/experiments", {
        "name": "Matcha at 17", "product": product["id"],
        "variants": [{"price": control["id"], "weight": 50}, {"price": variant["id"], "weight": 50}],
    }, expect=201)  # fmt: skip
    prices = {"a": control, "b": variant}

    def variant_of(email: str) -> str:
        return str(api.post(f"/v1/products/{product['id']}/experiment_assignment", {"email": email})["variant"])

    first = variant_of("ada@example.com")  # the storefront's email field starts with it
    other = "b" if first == "a" else "a"
    email = next(f"matcha{n}@example.com" for n in range(50) if variant_of(f"matcha{n}@example.com") == other)
    page = browser.new_page()
    page.goto(stack_config["storefront_url"])
    page.locator(f"input[name=price][value={prices[first]['id']}]").wait_for()  # the prefilled email's
    assert page.locator(f"input[name=price][value={prices[other]['id']}]").count() == 0
    page.fill("#email", email)
    page.fill("#name", "Tasting Person")  # leaving the email field asks for the visitor's prices
    shown = page.locator(f"input[name=price][value={prices[other]['id']}]")
    shown.wait_for()
    assert page.locator(f"input[name=price][value={prices[first]['id']}]").count() == 0
    chosen = prices[other]
    label = page.locator(f"label.price:has(input[value={chosen['id']}])")
    assert f"{chosen['unit_amount'] // 100}.00" in (label.text_content() or "")
    shown.check()
    page.locator("#card input").first.click()
    for text in ["4242 4242 4242 4242", "12", "2034", "123", "75001"]:
        page.keyboard.type(text, delay=15)
    page.click("#subscribe")
    page.wait_for_function("document.getElementById('status').textContent.includes(' is ')", timeout=30_000)
    page.screenshot(path=str(tmp_path / "storefront-experiment.png"), full_page=True)
    status = page.text_content("#status") or ""
    assert "is active" in status, status
    sub = api.get(f"/v1/subscriptions/{status.split('Subscription ', 1)[1].split(' ', 1)[0]}")
    assert sub["price"] == chosen["id"] and sub["experiment"]["variant"] == other
    assert api.get(f"/v1/invoices/{sub['latest_invoice']}")["subtotal"] == chosen["unit_amount"]
