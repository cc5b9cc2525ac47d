"""``kassa webhooks listen``: a webhook receiver on 127.0.0.1, like ``stripe listen``.

It registers an endpoint on the running local stack pointing at itself (``POST /v1/webhook_endpoints``),
prints each event it receives (signature checked with the stripe SDK's own
``stripe.WebhookSignature.verify_header`` on the ``Kassa-Signature`` header), answers 200, and on
Ctrl-C (or SIGTERM, or after ``--max`` events) deletes the endpoint and stops.

``WebhookReceiver`` is the same receiver for tests: it records every request, and ``respond`` decides
each answer (a status, or a delay longer than the sender's timeout).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe

SIGNATURE_HEADER = "Kassa-Signature"  # as kassa.domain.webhooks.SIGNATURE_HEADER
PATH = "/webhooks"
DEFAULT_PORT = 8470
PORT_ENV = "KASSA_WEBHOOKS_PORT"
TOLERANCE_S = None  # the local stack's virtual clock may be far from the wall clock: no age check


@dataclass(frozen=True)
class Received:
    event: dict[str, Any]
    body: str  # as received: what the signature signs
    signature: str
    verified: bool
    answered: int | None  # the status sent back (None: held past the sender's timeout)
    nth: int  # the how-many-th request for this event id (1: the first)


Respond = Callable[[str, int], int | float]
"""``respond(event_id, nth)`` → a status code to answer, or a float: seconds to wait before answering 200."""


class WebhookReceiver:
    def __init__(self, port: int = 0, secrets: list[str] | None = None, respond: Respond | None = None,
                 on_delivery: Callable[[Received], None] | None = None) -> None:  # fmt: skip
        self.secrets = list(secrets or [])
        self.respond: Respond = respond or (lambda event_id, nth: 200)
        self.on_delivery = on_delivery
        self.received: list[Received] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._requested_port = port
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self._requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="kassa-webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    # -- what was received
    def accepted(self) -> list[Received]:
        """The deliveries answered with a 2xx."""
        with self._lock:
            return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]

    def verify(self, body: str, header: str) -> bool:
        for secret in self.secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_S)
                return True
            except stripe.SignatureVerificationError:
                continue
        return False

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode("utf-8", "replace")
        header = request.headers.get(SIGNATURE_HEADER, "")
        try:
            event = json.loads(body)
        except ValueError:
            event = {"raw": body}
        event_id = str(event.get("id", "")) if isinstance(event, dict) else ""
        with self._lock:
            nth = self._counts[event_id] = self._counts.get(event_id, 0) + 1
        answer = self.respond(event_id, nth)
        status: int | None = 200
        if isinstance(answer, float):
            threading.Event().wait(answer)  # longer than the sender waits: it times out
            status = None
        else:
            status = int(answer)
        record = Received(event, body, header, self.verify(body, header), status, nth)
        with self._lock:
            self.received.append(record)
        try:
            request.send_response(status or 200)
            if status is not None and 300 <= status < 400:  # to itself: a sender that follows it shows twice
                request.send_header("Location", self.url)
            request.send_header("Content-Length", "2")
            request.end_headers()
            request.wfile.write(b"ok")
        except OSError:  # the sender gave up waiting
            pass
        if self.on_delivery is not None:
            self.on_delivery(record)


# -- kassa webhooks listen ----------------------------------------------------------------------


def add_webhooks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("webhooks", help="outbound webhooks of the running stack")
    webhooks_sub = p.add_subparsers(dest="webhooks_command", required=True, metavar="WEBHOOKS_COMMAND")
    listen = webhooks_sub.add_parser(
        "listen",
        help="receive the stack's webhooks on 127.0.0.1 and print them (like `stripe listen`)",
        description="Registers an endpoint on the running local stack pointing at a receiver on 127.0.0.1, "
        "prints every event (signature verified), answers 200; Ctrl-C deletes the endpoint and stops.",
    )
    listen.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(PORT_ENV) or DEFAULT_PORT),
        help=f"receiver port on 127.0.0.1 (env {PORT_ENV}, default {DEFAULT_PORT}; 0: any free one)",
    )
    listen.add_argument("--events", default="*", help='comma-separated event types or wildcards (default "*")')
    listen.add_argument("--json", action="store_true", help="print each event's whole JSON")
    listen.add_argument("--max", type=int, default=0, help="stop after this many events (0: until Ctrl-C)")
    listen.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    from kassa_local.cli import local_api

    stop = stop or threading.Event()
    seen = threading.Semaphore(0)

    def show(record: Received) -> None:
        event = record.event
        check = "verified" if record.verified else "SIGNATURE INVALID"
        if args.json:
            print(json.dumps(event, indent=2), flush=True)
        else:
            obj = (event.get("data") or {}).get("object") or {}
            print(f"--> {event.get('type')} [{event.get('id')}] {obj.get('id', '')} ({check})", flush=True)
        seen.release()

    receiver = WebhookReceiver(args.port, on_delivery=show)
    try:
        receiver.start()
    except OSError as error:
        raise SystemExit(f"port {args.port} is in use: pass --port or set {PORT_ENV}") from error
    endpoint_id = None
    previous: dict[signal.Signals, Any] = {}
    try:
        events = [e.strip() for e in args.events.split(",") if e.strip()]
        wanted = {"url": receiver.url, "enabled_events": events, "description": "kassa webhooks listen"}
        endpoint = local_api(args, "POST", "/v1/webhook_endpoints", wanted)
        endpoint_id = endpoint["id"]
        receiver.secrets = [endpoint["secret"]]
        print(f"Ready! Listening on {receiver.url} as {endpoint_id}; signing secret {endpoint['secret']}", flush=True)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        count = 0
        while not stop.is_set():
            if seen.acquire(timeout=0.2):
                count += 1
                if args.max and count >= args.max:
                    break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if endpoint_id is not None:
            try:
                local_api(args, "DELETE", f"/v1/webhook_endpoints/{endpoint_id}", timeout=10)
            except SystemExit as error:  # the stack is gone already
                print(f"could not delete {endpoint_id}: {error}", flush=True)
        receiver.stop()
    print("stopped", flush=True)
    return 0
