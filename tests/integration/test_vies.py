"""ViesClient (the domain's ViesChecker on the VIES REST API) against a stub VIES on 127.0.0.1, and
DynamoViesCache against moto in-process (``mock_aws``).

No test reaches the real network. The moto mock is started without resetting moto's backends (a
local stack's in-process moto server may be running for the other integration tests) and uses its
own table, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kassa.adapters import usage
from kassa.adapters.clock import VirtualClock
from kassa.adapters.vies import MISSING, DynamoViesCache, Missing, ViesClient
from kassa.domain.customer import Address
from kassa.domain.tax import RuleId, TaxCustomer, TaxLineInput, TaxSettings, ViesChecker, quote_tax

pytestmark = pytest.mark.integration

REGISTERED = "DE136695976"
NOT_REGISTERED = "FI20774740"
SERVER_ERROR = "IT00743110157"
SLOW = "PL5260250995"
GARBAGE = "SE556188840401"
MS_UNAVAILABLE = "ESA28015865"
ERROR_WRAPPERS = "ATU13585627"
NOT_AN_OBJECT = "BE0403019261"
NOT_A_BOOL = "FR40303265045"
GREEK = "EL094259216"
T0 = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


def _answer(vat: str, valid: bool, user_error: str) -> dict[str, Any]:
    """What VIES's REST API answers (the fields kassa reads, plus a few it ignores)."""
    return {
        "isValid": valid,
        "requestDate": "2026-03-31T09:00:00.000Z",
        "userError": user_error,
        "name": "EXAMPLE GMBH" if valid else "---",
        "address": "---",
        "requestIdentifier": "",
        "originalVatNumber": vat[2:],
        "vatNumber": vat[2:],
        "viesApproximate": {"name": "---", "street": "---", "postalCode": "---", "city": "---"},
    }


class StubVies:
    """GET /ms/{CC}/vat/{number}: counts the requests per number; behaviour chosen by number."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.paths: list[str] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                stub.paths.append(self.path)
                parts = self.path.removeprefix("/rest-api").strip("/").split("/")
                if len(parts) != 4 or parts[0] != "ms" or parts[2] != "vat":
                    self._send(404, b'{"error": "not found"}')
                    return
                vat = parts[1] + parts[3]
                stub.requests[vat] += 1
                if vat == SLOW:
                    stub.release.wait(5)
                    with contextlib.suppress(OSError):  # the client gave up long ago
                        self._send(200, json.dumps(_answer(vat, True, "VALID")).encode())
                    return
                if vat == SERVER_ERROR:
                    self._send(500, b'{"errorWrappers": [{"error": "SERVICE_UNAVAILABLE"}]}')
                elif vat == GARBAGE:
                    self._send(200, b"<html>maintenance</html>", "text/html")
                elif vat == MS_UNAVAILABLE:
                    self._send(200, json.dumps(_answer(vat, False, "MS_UNAVAILABLE")).encode())
                elif vat == ERROR_WRAPPERS:
                    body = {"actionSucceed": False, "errorWrappers": [{"error": "MS_MAX_CONCURRENT_REQ"}]}
                    self._send(200, json.dumps(body).encode())
                elif vat == NOT_AN_OBJECT:
                    self._send(200, b"[true]")
                elif vat == NOT_A_BOOL:
                    self._send(200, b'{"isValid": "true", "userError": "VALID"}')
                elif vat == NOT_REGISTERED:
                    self._send(200, json.dumps(_answer(vat, False, "INVALID")).encode())
                else:
                    self._send(200, json.dumps(_answer(vat, True, "VALID")).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rest-api"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-vies", daemon=True
        )

    def __enter__(self) -> StubVies:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stub() -> Iterator[StubVies]:
    with StubVies() as running:
        yield running


@pytest.fixture
def vies(stub: StubVies) -> Iterator[ViesClient]:
    client = ViesClient(stub.url, timeout_s=2.0)
    yield client
    client.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ----------------------------------------------------------------------------- the client


def test_it_is_the_domains_vies_checker(vies: ViesClient) -> None:
    checker: ViesChecker = vies
    assert checker.check(REGISTERED) is True


def test_registered_and_not_registered(vies: ViesClient, stub: StubVies) -> None:
    assert vies.check(REGISTERED) is True
    assert vies.check(NOT_REGISTERED) is False
    assert stub.paths == ["/rest-api/ms/DE/vat/136695976", "/rest-api/ms/FI/vat/20774740"]


def test_the_number_is_normalized_and_greece_keeps_el(vies: ViesClient, stub: StubVies) -> None:
    assert vies.check(" de 136.695-976 ") is True
    assert vies.check(GREEK) is True
    assert stub.paths == ["/rest-api/ms/DE/vat/136695976", "/rest-api/ms/EL/vat/094259216"]


@pytest.mark.parametrize(
    "number",
    [SERVER_ERROR, GARBAGE, MS_UNAVAILABLE, ERROR_WRAPPERS, NOT_AN_OBJECT, NOT_A_BOOL],
    ids=["http-500", "not-json", "ms-unavailable", "error-wrappers", "json-not-an-object", "isValid-not-a-bool"],
)
def test_vies_that_cannot_tell_gives_none(
    vies: ViesClient, stub: StubVies, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="kassa.adapters.vies"):
        assert vies.check(number) is None
    assert stub.requests[number] == 1
    assert any("VIES" in record.getMessage() for record in caplog.records)


def test_a_slow_vies_gives_none_within_the_timeout(stub: StubVies) -> None:
    client = ViesClient(stub.url, timeout_s=0.5)
    try:
        started = time.monotonic()
        assert client.check(SLOW) is None
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert 0.4 <= elapsed < 1.5, elapsed
    assert stub.requests[SLOW] == 1


def test_an_unreachable_vies_gives_none() -> None:
    client = ViesClient(f"http://127.0.0.1:{closed_port()}/rest-api", timeout_s=1.0)
    started = time.monotonic()
    assert client.check(REGISTERED) is None
    assert time.monotonic() - started < 1.5
    client.close()


def test_a_number_without_country_prefix_is_not_sent(vies: ViesClient, stub: StubVies) -> None:
    assert vies.check("136695976") is None
    assert vies.check("") is None
    assert stub.paths == []


def test_a_positive_timeout_is_required() -> None:
    with pytest.raises(ValueError):
        ViesClient(timeout_s=0)


class BrokenCache:
    def __init__(self) -> None:
        self.puts = 0

    def get(self, vat_number: str) -> bool | None | Missing:
        raise RuntimeError("cache down")

    def put(self, vat_number: str, valid: bool, checked_at: datetime) -> None:
        self.puts += 1
        raise RuntimeError("cache down")


def test_a_failing_cache_never_stops_the_check(stub: StubVies) -> None:
    cache = BrokenCache()
    client = ViesClient(stub.url, timeout_s=2.0, cache=cache)
    assert client.check(REGISTERED) is True
    assert cache.puts == 1
    client.close()


def test_the_engine_uses_the_answer(vies: ViesClient) -> None:
    """End to end with the domain: registered → reverse charge confirmed; not registered → consumer."""
    settings = TaxSettings(home_country="NL", oss_registered=True)

    def quote(country: str, tax_id: str) -> Any:
        return quote_tax(
            [TaxLineInput(amount=10000)],
            currency="EUR",
            customer=TaxCustomer(address=Address(country=country), tax_id=tax_id),
            settings=settings,
            tax_date=date(2025, 9, 1),
            vies=vies,
        )

    confirmed = quote("DE", REGISTERED)
    assert confirmed.reverse_charge and confirmed.vies_verified is True
    assert confirmed.rule is not None and confirmed.rule.id is RuleId.EU_REVERSE_CHARGE
    refused = quote("FI", NOT_REGISTERED)
    assert not refused.reverse_charge and refused.vies_verified is False
    assert refused.rule is not None and refused.rule.id is RuleId.EU_OSS
    assert refused.tax_amount == 2550
    unknown = quote("IT", SERVER_ERROR)  # VIES cannot tell: the valid number keeps its reverse charge
    assert unknown.reverse_charge and unknown.vies_verified is None


# ----------------------------------------------------------------------------- the DynamoDB cache


@pytest.fixture
def dynamo() -> Iterator[tuple[Any, str]]:
    """A table with pk/sk string keys and a TTL on expires_at, on moto in-process."""
    mock = mock_aws()
    mock.start(reset=False)  # leave any in-process moto server's data alone
    try:
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url="https://dynamodb.us-east-1.amazonaws.com",  # intercepted by the mock, whatever the env says
        )
        table = f"vies-cache-{uuid.uuid4().hex[:8]}"
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
        try:
            yield client, table
        finally:
            client.delete_table(TableName=table)
    finally:
        mock.stop(remove_data=False)


def test_a_cached_answer_is_returned_without_asking_vies(stub: StubVies, dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    clock = VirtualClock(T0)
    vies = ViesClient(stub.url, timeout_s=2.0, cache=DynamoViesCache(client, table, clock=clock), clock=clock)
    try:
        assert vies.check(REGISTERED) is True
        assert vies.check(REGISTERED) is True
        assert vies.check("DE 136 695 976") is True
    finally:
        vies.close()
    assert stub.requests[REGISTERED] == 1
    item = client.get_item(TableName=table, Key={"pk": {"S": f"VIES#{REGISTERED}"}, "sk": {"S": "RESULT"}})["Item"]
    assert item["valid"] == {"BOOL": True}
    assert item["checked_at"] == {"S": "2026-03-31T09:00:00Z"}
    assert int(item["expires_at"]["N"]) == int((T0 + timedelta(days=30)).timestamp())


def test_a_not_registered_answer_is_kept_one_day(stub: StubVies, dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    clock = VirtualClock(T0)
    cache = DynamoViesCache(client, table, clock=clock)
    vies = ViesClient(stub.url, timeout_s=2.0, cache=cache, clock=clock)
    try:
        assert vies.check(NOT_REGISTERED) is False
        clock.advance(timedelta(hours=23))
        assert vies.check(NOT_REGISTERED) is False
        assert stub.requests[NOT_REGISTERED] == 1
        clock.advance(timedelta(hours=2))  # expired (DynamoDB may not have deleted it yet): ask again
        assert cache.get(NOT_REGISTERED) is MISSING
        assert vies.check(NOT_REGISTERED) is False
        assert stub.requests[NOT_REGISTERED] == 2
    finally:
        vies.close()
    item = client.get_item(TableName=table, Key={"pk": {"S": f"VIES#{NOT_REGISTERED}"}, "sk": {"S": "RESULT"}})["Item"]
    assert item["valid"] == {"BOOL": False}
    assert int(item["expires_at"]["N"]) == int((T0 + timedelta(hours=25, days=1)).timestamp())


def test_an_unavailable_answer_is_not_cached(stub: StubVies, dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    vies = ViesClient(stub.url, timeout_s=2.0, cache=DynamoViesCache(client, table))
    try:
        assert vies.check(SERVER_ERROR) is None
        assert vies.check(SERVER_ERROR) is None
    finally:
        vies.close()
    assert stub.requests[SERVER_ERROR] == 2
    assert "Item" not in client.get_item(
        TableName=table, Key={"pk": {"S": f"VIES#{SERVER_ERROR}"}, "sk": {"S": "RESULT"}}
    )


def test_the_cache_reads_a_string_flag_and_counts_its_calls(dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    clock = VirtualClock(T0)
    cache = DynamoViesCache(client, table, clock=clock)
    assert cache.get(GREEK) is MISSING
    client.put_item(
        TableName=table,
        Item={
            "pk": {"S": f"VIES#{GREEK}"},
            "sk": {"S": "RESULT"},
            "valid": {"S": "true"},
            "checked_at": {"S": "2026-03-30T09:00:00Z"},
            "expires_at": {"N": str(int((T0 + timedelta(days=1)).timestamp()))},
        },
    )
    usage.reset()
    assert cache.get(GREEK) is True
    cache.put(REGISTERED, True, T0)
    counts = usage.snapshot()
    assert counts.get("calls.dynamodb.get_item", 0) >= 1
    assert counts.get("calls.dynamodb.put_item", 0) >= 1
    assert counts.get("units.dynamodb.read", 0) > 0 and counts.get("units.dynamodb.write", 0) > 0


def test_a_storage_error_reads_as_cannot_tell(stub: StubVies, dynamo: tuple[Any, str]) -> None:
    client, _ = dynamo
    cache = DynamoViesCache(client, "no-such-table")
    assert cache.get(REGISTERED) is None  # ResourceNotFoundException: logged, not raised
    cache.put(REGISTERED, True, T0)  # likewise
    vies = ViesClient(stub.url, timeout_s=2.0, cache=cache)
    try:
        assert vies.check(REGISTERED) is True
    finally:
        vies.close()
    assert stub.requests[REGISTERED] == 1
