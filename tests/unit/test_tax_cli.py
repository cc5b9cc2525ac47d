"""``kassa tax quote`` (kassa_local/tax_cli.py): offline quotes with the engine, through argparse.

``add_tax`` is registered on a parser built here (kassa_local/cli.py's SUBCOMMANDS list is not
touched). The one VIES test uses a stub on 127.0.0.1; nothing reaches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from stdnum.de import vat as de_vat

from kassa.domain.tax import EU_REVERSE_CHARGE_MENTION
from kassa_local.tax_cli import add_tax

DE_VAT = "DE136695976"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kassa")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_tax(sub)
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(["tax", "quote", *argv])
    return int(args.func(args) or 0)


def quote_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run(*argv, "--json") == 0
    out = capsys.readouterr().out
    result: dict[str, Any] = json.loads(out)
    return result


def failure(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kassa tax quote: error: ")
    return captured.err


def test_dutch_consumer_of_a_dutch_seller(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(capsys, "--country", "NL", "--amount", "10000", "--currency", "EUR", "--date", "2025-09-01")
    assert (q["jurisdiction"], q["rate"], q["taxable_amount"], q["tax_amount"], q["total"]) == (
        "NL",
        "21",
        10000,
        2100,
        12100,
    )
    assert q["rule"]["id"] == "eu_domestic"
    assert q["rule"]["description"].startswith("Domestic supply in NL to a consumer")
    assert q["reverse_charge"] is False and q["legal_mention"] is None
    (line,) = q["lines"]
    assert [(c["jurisdiction"], c["tax_type"], c["rate"], c["tax_amount"]) for c in line["components"]] == [
        ("NL", "VAT", "21", 2100)
    ]
    assert q["inputs"] == {
        "country": "NL",
        "state": None,
        "postal_code": None,
        "vat_id": None,
        "customer_type": "individual",
        "exempt": False,
        "amounts": [10000],
        "currency": "EUR",
        "tax_behavior": "exclusive",
        "tax_code": "saas",
        "date": "2025-09-01",
        "seller_country": "NL",
        "oss": True,
        "threshold_exceeded": False,
        "registrations": [],
        "vies": False,
    }


def test_finland_on_the_day_of_its_rate_change(capsys: pytest.CaptureFixture[str]) -> None:
    before = quote_json(capsys, "--country", "FI", "--amount", "10000", "--date", "2024-08-31")
    after = quote_json(capsys, "--country", "FI", "--amount", "10000", "--date", "2024-09-01")
    assert (before["rate"], before["tax_amount"]) == ("24", 2400)
    assert (after["rate"], after["tax_amount"], after["rule"]["id"]) == ("25.5", 2550, "eu_b2c_oss")


def test_finland_without_oss_below_the_threshold_pays_dutch_vat(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(capsys, "--country", "FI", "--amount", "10000", "--date", "2024-09-01", "--no-oss")
    assert (q["jurisdiction"], q["rate"], q["rule"]["id"]) == ("NL", "21", "eu_b2c_below_threshold")


def test_german_business_is_reverse_charged(capsys: pytest.CaptureFixture[str]) -> None:
    assert de_vat.is_valid(DE_VAT)
    q = quote_json(capsys, "--country", "DE", "--vat-id", DE_VAT, "--customer-type", "business", "--amount", "10000")
    assert (q["rate"], q["tax_amount"], q["total"]) == ("0", 0, 10000)
    assert q["reverse_charge"] is True
    assert q["legal_mention"] == EU_REVERSE_CHARGE_MENTION
    assert q["rule"]["id"] == "eu_reverse_charge"
    assert q["customer_tax_id"] == DE_VAT and q["vies_verified"] is None
    assert q["inputs"]["customer_type"] == "business"


def test_a_vat_id_alone_makes_a_business(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(capsys, "--country", "DE", "--vat-id", DE_VAT, "--amount", "10000")
    assert q["reverse_charge"] is True and q["inputs"]["customer_type"] == "business"


def test_california_says_saas_is_not_taxable(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys,
        "--country",
        "US-CA",
        "--amount",
        "10000",
        "--currency",
        "USD",
        "--registration",
        "US-CA",
        "--date",
        "2025-09-01",
    )
    assert (q["jurisdiction"], q["tax_amount"], q["rule"]["id"]) == ("US-CA", 0, "not_taxable")
    assert q["inputs"]["state"] == "CA" and q["inputs"]["registrations"] == ["US-CA"]


def test_washington_with_registrations_given_twice_and_with_commas(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys,
        *("--country", "US", "--state", "wa", "--amount", "10000", "--amount", "2500", "--currency", "USD"),
        *("--seller-country", "US", "--no-oss", "--registration", "GB,US-WA", "--registration", "CA"),
    )
    assert (q["jurisdiction"], q["rate"], q["tax_amount"], q["rule"]["id"]) == ("US-WA", "6.5", 813, "registered")
    assert [line["tax_amount"] for line in q["lines"]] == [650, 163]
    assert q["inputs"]["registrations"] == ["CA", "GB", "US-WA"]


def test_inclusive_amounts(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys, "--country", "NL", "--amount", "12100", "--tax-behavior", "inclusive", "--date", "2025-09-01"
    )
    assert (q["taxable_amount"], q["tax_amount"], q["total"]) == (10000, 2100, 12100)


def test_nontaxable_tax_code(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(capsys, "--country", "NL", "--amount", "10000", "--tax-code", "txcd_00000000")
    assert (q["tax_amount"], q["rule"]["id"]) == (0, "product_nontaxable")


def test_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--country", "FI", "--amount", "10000", "--date", "2024-09-01") == 0
    out = capsys.readouterr().out
    assert "consumer in FI, seller NL (OSS)" in out
    assert "eu_b2c_oss" in out
    assert "25.5%" in out
    assert "100.00 EUR" in out and "25.50 EUR" in out and "125.50 EUR" in out
    assert "FI VAT 25.5% on 100.00 EUR = 25.50 EUR" in out


def test_human_summary_of_a_reverse_charge(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--country", "DE", "--vat-id", DE_VAT, "--amount", "10000", "--amount", "500") == 0
    out = capsys.readouterr().out
    assert f"{DE_VAT} (not confirmed by VIES)" in out
    assert EU_REVERSE_CHARGE_MENTION in out
    assert "line-2: 5.00 EUR + 0.00 EUR = 5.00 EUR (0%)" in out


# ----------------------------------------------------------------------------- refused input


def test_a_business_needs_a_vat_id(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--country", "DE", "--customer-type", "business", "--amount", "10000")
    assert "business" in err and "--vat-id" in err


def test_an_individual_with_a_vat_id_is_contradictory(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--country", "DE", "--customer-type", "individual", "--vat-id", DE_VAT, "--amount", "1")
    assert "--vat-id" in err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("--country", "N1"), "--country"),
        (("--country", "US"), "--state"),
        (("--country", "US-WA", "--state", "OR"), "--country"),
        (("--country", "NL", "--currency", "ABC"), "--currency"),
        (("--country", "NL", "--registration", "XX"), "--registration"),
        (("--country", "NL", "--seller-country", "N1"), "--seller-country"),
        (("--country", "NL", "--tax-code", "books"), "--tax-code"),
        (("--country", "NL", "--seller-country", "US", "--threshold-exceeded"), "--threshold-exceeded"),
    ],
)
def test_invalid_input_names_the_option(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], option: str) -> None:
    err = failure(capsys, *argv, "--amount", "100")
    assert option in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ("--country", "NL", "--amount", "ten"),
        ("--country", "NL", "--amount", "100", "--date", "2025-13-01"),
        ("--country", "NL", "--amount", "100", "--tax-behavior", "gross"),
        (
            "--amount",
            "100",
        ),
    ],
)
def test_argparse_refuses_malformed_options(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(*argv)
    assert exit_.value.code == 2
    assert "kassa tax quote: error:" in capsys.readouterr().err


def test_tax_without_a_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["tax"])
    assert exit_.value.code == 2


# ----------------------------------------------------------------------------- VIES, on request only


@pytest.fixture
def stub_vies() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            paths.append(self.path)
            body = json.dumps({"isValid": True, "userError": "VALID", "name": "---", "address": "---"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rest-api", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_vies_is_asked_only_when_requested(
    capsys: pytest.CaptureFixture[str], stub_vies: tuple[str, list[str]]
) -> None:
    url, paths = stub_vies
    offline = quote_json(capsys, "--country", "DE", "--vat-id", DE_VAT, "--amount", "10000")
    assert offline["vies_verified"] is None and paths == []
    online = quote_json(capsys, "--country", "DE", "--vat-id", DE_VAT, "--amount", "10000", "--vies-url", url)
    assert online["vies_verified"] is True and online["inputs"]["vies"] is True
    assert paths == ["/rest-api/ms/DE/vat/136695976"]


# ----------------------------------------------------------------------------- the real process


def _kassa_tax_quote(stdout: Any) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "kassa_local.cli", "tax", "quote", "--country", "NL", "--amount", "10000"]
    return subprocess.Popen([*argv, "--currency", "EUR"], stdout=stdout, stderr=subprocess.PIPE)


def test_a_reader_that_goes_away_gets_no_broken_pipe_traceback() -> None:
    """`kassa tax quote … | head -1`: the reader closes the pipe before the quote is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: every write gets EPIPE
    try:
        proc = _kassa_tax_quote(write_end)
    finally:
        os.close(write_end)
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert err == b""


def test_piped_into_head_prints_the_first_line_only() -> None:
    result = subprocess.run(
        f"{shlex.quote(sys.executable)} -m kassa_local.cli tax quote --country NL --amount 10000 --currency EUR"
        " | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.startswith("Tax quote ") and result.stdout.count("\n") == 1, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
