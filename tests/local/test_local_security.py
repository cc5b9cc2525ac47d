"""The local stack as a target: local.json readable by its owner only, /_local routes closed to other
web pages, a listen backlog that holds a burst of connections; and ``kassa keys`` rolling keys."""

from __future__ import annotations

import json
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from infra import wiring
from kassa_local import cli
from kassa_local.stack import STATE_FILE, LocalStack


def test_local_json_is_written_with_mode_0600(stack: LocalStack) -> None:
    mode = stat.S_IMODE((stack.state_dir / STATE_FILE).stat().st_mode)
    assert mode == 0o600, oct(mode)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another local port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_browser_request_cannot_move_the_clock(fresh: LocalStack, headers: dict[str, str]) -> None:
    before = fresh.clock.now()
    # what a web page can send without a CORS preflight: a text/plain POST
    resp = requests.post(
        fresh.api_url + "/_local/clock/advance",
        data='{"by": "35d"}',
        headers={"Content-Type": "text/plain", **headers},
        timeout=10,
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "cross_origin_refused"
    assert fresh.clock.now() == before
    assert requests.post(fresh.api_url + "/_local/keys", json={}, headers=headers, timeout=10).status_code == 403
    assert requests.get(fresh.api_url + "/_local/outbox.json", headers=headers, timeout=10).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the CLI, curl
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_the_cli_and_the_gateways_own_pages_still_reach_the_local_routes(fresh: LocalStack, headers: dict) -> None:
    own = {"Origin": f"http://127.0.0.1:{fresh.ports['api']}"} if headers.get("Sec-Fetch-Site") == "same-origin" else {}
    resp = requests.post(
        fresh.api_url + "/_local/clock/advance", json={"by": "1s"}, headers={**headers, **own}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert requests.get(fresh.api_url + "/_local/clock", headers={**headers, **own}, timeout=10).status_code == 200


def test_the_api_routes_are_not_affected_by_the_origin_check(fresh: LocalStack) -> None:
    resp = requests.get(fresh.api_url + "/v1/things/1", headers={"Origin": "https://shop.example"}, timeout=10)
    assert resp.status_code == 200


def test_a_burst_of_150_concurrent_connections_is_served_without_a_reset(stack: LocalStack) -> None:
    server = stack._started.gateway._server  # noqa: SLF001
    assert server is not None and server.request_queue_size >= 100
    port = stack.ports["api"]
    ready = threading.Barrier(150)

    def one(_: int) -> str:
        ready.wait(timeout=30)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        return data.split(b"\r\n", 1)[0].decode()

    with ThreadPoolExecutor(max_workers=150) as pool:
        lines = list(pool.map(one, range(150)))  # a reset raises ConnectionResetError here
    assert lines == ["HTTP/1.1 204 No Content"] * 150


def test_kassa_keys_roll_gives_a_new_key_and_keeps_the_old_one_for_a_while(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    old = stack.api_secret_key
    assert cli.main(["--state-dir", str(stack.state_dir), "keys", "roll", "--expires-in", "1h"]) == 0
    out = capsys.readouterr().out
    state = json.loads((stack.state_dir / STATE_FILE).read_text())
    new = state["api_secret_key"]
    assert new != old and new == stack.api_secret_key and new in out
    assert stat.S_IMODE((stack.state_dir / STATE_FILE).stat().st_mode) == 0o600
    value = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=wiring.API_SECRET)["SecretString"])
    assert [k["secret"] for k in value["keys"]] == [new, old]
    assert value["keys"][1]["expires_at"] and [k["id"] for k in state["api_keys"]] == [k["id"] for k in value["keys"]]

    assert cli.main(["--state-dir", str(stack.state_dir), "keys", "add", "--role", "read_only"]) == 0
    value = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=wiring.API_SECRET)["SecretString"])
    assert [k["role"] for k in value["keys"]] == ["full", "full", "read_only"]

    links_before = stack.client("secretsmanager").get_secret_value(SecretId=wiring.LINKS_SECRET)["SecretString"]
    assert cli.main(["--state-dir", str(stack.state_dir), "keys", "roll", "--links"]) == 0
    links = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=wiring.LINKS_SECRET)["SecretString"])
    assert links["keys"][1]["secret"] == json.loads(links_before)["keys"][0]["secret"]
    assert "link key rolled" in capsys.readouterr().out
