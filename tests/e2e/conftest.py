from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kassa_local.client import Api
from kassa_local.probes import default_idle_probes
from kassa_local.stack import LocalStack

# A month-end start exercises the anchor clamping (Jan 31 → Feb 28 → Mar 31 → Apr 30).
START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


# one fresh stack per module: a module's scenario (e.g. consecutive invoice numbers) is not
# interleaved with another module's renewals
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(
        api_port=0,
        aws_port=0,
        stripe_port=0,
        state_dir=tmp_path_factory.mktemp("kassa"),
        start_time=START,
        idle_probes=default_idle_probes(),
        extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def stack_config(stack):
    return stack.config.as_json()


@pytest.fixture
def api(stack_config):
    return Api(stack_config)


# a real browser: Debian's chromium driven by Playwright (`make test` installs it when missing)
CHROMIUM = os.environ.get("KASSA_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


# ---------------------------------------------------------------- a SEPA merchant (the bank-debit tests)
SEPA_CREDITOR = "DE98ZZZ09999999999"


def sepa_settings(api: Api, **extra: Any) -> None:
    """The merchant (Koffie Club BV) offers card and SEPA Direct Debit under its creditor identifier."""
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings.update(seller_name="Koffie Club BV", payment_method_types=["card", "sepa_debit"], **extra)
    settings["bank_debits"] = {"sepa_creditor_id": SEPA_CREDITOR}
    api.request("PUT", "/v1/settings", expect=200, json=settings)


@pytest.fixture(scope="module")
def sepa_merchant(stack_config) -> str:
    """A SEPA-enabled merchant on this module's stack; its creditor identifier."""
    sepa_settings(Api(stack_config))
    return SEPA_CREDITOR


@pytest.fixture
def past_due(api):
    """Makes a customer whose card (by default one that attaches and then declines) fails the first
    renewal after a 3-day trial at EUR 25.00:
    ``(subscription id, customer id, the open invoice)``."""

    def make(email: str, locale: str | None = "de", card: str = "4000000000000341") -> tuple[str, str, dict[str, Any]]:
        price = api.catalog(currency="EUR", amount=2500, trial_days=3)
        started = api.subscribe(price["id"], email, card=card, locale=locale)
        sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]
        trial_end = datetime.fromisoformat(started["subscription"]["trial_end"].replace("Z", "+00:00"))
        api.advance(to=(trial_end + timedelta(hours=1)).isoformat())
        sub = api.get(f"/v1/subscriptions/{sub_id}")
        invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
        assert (sub["status"], invoice["status"]) == ("past_due", "open")
        return sub_id, customer, invoice

    return make


@pytest.fixture
def csp_page(browser):
    """Opens a new page: ``(page, the Content Security Policy violations its console reports)``."""

    def open_page(**options: Any) -> tuple[Any, list[str]]:
        page = browser.new_page(**options)
        violations: list[str] = []
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page, violations

    return open_page
