"""Local AWS: moto in server mode, and provisioning of every resource declared in ``infra/wiring.py``.

Physical names are the logical names (one moto server per process, state reset on start): table
``billing``, queues ``webhook-events`` and ``renewals`` (each with a ``<name>-dlq``), the bus
``kassa-events``, secrets ``kassa/stripe`` and ``kassa/api``, and the SES sender identities (the
address and its domain, verified at once). Only the local "event tap" is extra: a queue
``kassa-event-tap`` that an EventBridge rule fills with every ``kassa*`` event on the bus.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

import boto3
import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from infra import wiring

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("kassa_local.aws")

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
EVENT_TAP_QUEUE = "kassa-event-tap"
EVENT_TAP_RULE = "kassa-event-tap"
EVENT_TAP_PATTERN = {"source": [{"prefix": "kassa"}]}
DLQ_SUFFIX = "-dlq"
DLQ_RETENTION_S = 14 * 24 * 3600
# KASSA_PUBLIC_URL before the gateway listens (its port may be picked at start); the stack then sets
# the real one with LocalResolver.set_public_url and in the environment
PUBLIC_URL_PENDING = "http://127.0.0.1:0"


def dlq_name(queue: str) -> str:
    return f"{queue}{DLQ_SUFFIX}"


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """What boto3 needs to reach moto unchanged (no code path knows it is local)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


# Variables that would make boto3 look elsewhere for credentials; removed while the stack runs.
AWS_ENV_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class SerializedMoto:
    """WSGI wrapper handling one moto request at a time.

    moto's server is not thread-safe under load: concurrent TransactWriteItems calls fail inside
    moto ("dictionary changed size during iteration") and can lose a write that was answered as
    successful, and concurrent first requests to different services race in its lazy backend
    set-up. Requests stay concurrent on the wire (keep-alive connections, one thread each) but are
    executed one by one. Safe because the local stack only ever short-polls SQS
    (``WaitTimeSeconds=0``), so no request holds the lock while waiting.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            return list(self._app(environ, start_response))


class MotoServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer, bound to 127.0.0.1, that can stop while clients keep connections.

    moto's server speaks HTTP/1.1 keep-alive; boto3 keeps idle connections in its pool, and
    ``server_close`` joins every connection thread. ``stop`` therefore shuts the open client
    sockets down first, so every thread is joined and the port is free when it returns.
    """

    def __init__(self, port: int = 0) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._start_error: BaseException | None = None

    def _server_entry(self) -> None:
        connections, conn_lock = self._connections, self._conn_lock

        class Handler(MotoRequestHandler):
            def setup(self) -> None:
                super().setup()
                with conn_lock:
                    connections.add(self.connection)

            def finish(self) -> None:
                with conn_lock:
                    connections.discard(self.connection)
                super().finish()

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        app = SerializedMoto(DomainDispatcherApplication(create_backend_app))
        try:
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=Handler)
            # werkzeug makes connection threads daemons, which server_close (in serve_forever's
            # finally) does not join: tracked instead, so stop() returns with none left behind
            if isinstance(self._server, socketserver.ThreadingMixIn):
                self._server.daemon_threads = False
        except BaseException as exc:  # e.g. the port is taken: reported by start()
            self._start_error = exc
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()

    def start(self) -> None:
        self._start_error = None
        self._thread = threading.Thread(target=self._server_entry, name="kassa-moto", daemon=True)
        self._thread.start()
        if not self._server_ready_event.wait(30):
            raise RuntimeError("moto server did not start within 30 s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            reason = "address in use" if isinstance(self._start_error, SystemExit) else self._start_error
            raise OSError(f"moto server cannot listen on 127.0.0.1:{self._port}: {reason}")

    @property
    def port(self) -> int:
        return self.get_host_and_port()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server_ready_event.clear()
        if self._server is not None:
            self._server.shutdown()  # serve_forever returns, then server_close joins the threads
        with self._conn_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # pragma: no cover - diagnostic
                log.warning("moto server thread did not stop within 10 s")

    def reset(self) -> None:
        """Forget every resource (moto's backends are process-wide)."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()


@dataclass
class Clients:
    endpoint_url: str
    sqs: SQSClient = field(init=False)
    dynamodb: DynamoDBClient = field(init=False)
    events: EventBridgeClient = field(init=False)
    secretsmanager: SecretsManagerClient = field(init=False)
    ses: Any = field(init=False)  # SES v1 (no mypy_boto3_ses stubs installed)
    s3: Any = field(init=False)

    def __post_init__(self) -> None:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        self.sqs = session.client("sqs", endpoint_url=self.endpoint_url)
        self.dynamodb = session.client("dynamodb", endpoint_url=self.endpoint_url)
        self.events = session.client("events", endpoint_url=self.endpoint_url)
        self.secretsmanager = session.client("secretsmanager", endpoint_url=self.endpoint_url)
        self.ses = session.client("ses", endpoint_url=self.endpoint_url)
        self.s3 = session.client("s3", endpoint_url=self.endpoint_url)

    def close(self) -> None:
        for client in (self.sqs, self.dynamodb, self.events, self.secretsmanager, self.ses, self.s3):
            client.close()


class LocalResolver(wiring.Resolver):
    """Logical → physical names on the local stack (the names are the logical names)."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()
        self._public_url: str | None = None

    def table(self, name: str) -> str:
        return name

    def queue_url(self, name: str) -> str:
        with self._lock:
            if name not in self._urls:
                self._urls[name] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            return self._urls[name]

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"

    def secret(self, name: str) -> str:
        return name

    def bus(self) -> str:
        return wiring.BUS_NAME

    def public_url(self) -> str:
        """The gateway's URL once the stack has set it; ``PUBLIC_URL_PENDING`` before."""
        return self._public_url or PUBLIC_URL_PENDING

    def set_public_url(self, url: str) -> None:
        self._public_url = url.rstrip("/")

    def bucket(self, name: str) -> str:
        return name


def create_table(ddb: DynamoDBClient, table: wiring.Table) -> None:
    keys = {table.partition_key, table.sort_key}
    for index in table.indexes:
        keys |= {index.partition_key, index.sort_key}
    params: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": [
            {"AttributeName": table.partition_key, "KeyType": "HASH"},
            {"AttributeName": table.sort_key, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in sorted(keys)],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.indexes:
        params["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": index.projection},
            }
            for index in table.indexes
        ]
    ddb.create_table(**params)
    if table.ttl_attribute:
        ddb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )


def create_queue(sqs: SQSClient, resolver: LocalResolver, queue: wiring.Queue) -> None:
    sqs.create_queue(QueueName=dlq_name(queue.name), Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    redrive = {
        "deadLetterTargetArn": resolver.queue_arn(dlq_name(queue.name)),
        "maxReceiveCount": str(queue.max_receive_count),
    }
    sqs.create_queue(
        QueueName=queue.name,
        Attributes={
            "VisibilityTimeout": str(queue.visibility_timeout_s),
            "MessageRetentionPeriod": str(queue.retention_days * 24 * 3600),
            "RedrivePolicy": json.dumps(redrive),
        },
    )


def create_event_tap(sqs: SQSClient, events: EventBridgeClient, resolver: LocalResolver) -> str:
    """Queue + rule that receive every kassa event on the bus; returns the queue URL."""
    url = sqs.create_queue(QueueName=EVENT_TAP_QUEUE)["QueueUrl"]
    events.put_rule(
        Name=EVENT_TAP_RULE,
        EventBusName=wiring.BUS_NAME,
        EventPattern=json.dumps(EVENT_TAP_PATTERN),
        State="ENABLED",
        Description="local stack: copy every kassa domain event to the event tap queue",
    )
    events.put_targets(
        Rule=EVENT_TAP_RULE,
        EventBusName=wiring.BUS_NAME,
        Targets=[{"Id": "event-tap", "Arn": resolver.queue_arn(EVENT_TAP_QUEUE)}],
    )
    return url


def email_senders(functions: Iterable[wiring.Function], environment: dict[str, str] | None = None) -> list[str]:
    """The From addresses the functions send email from: the wiring default, every function's
    ``KASSA_EMAIL_FROM``, and an override in ``environment`` (e.g. the stack's ``extra_env``)."""
    senders = [wiring.DEFAULT_EMAIL_FROM]
    senders += [fn.environment[wiring.EMAIL_FROM_ENV] for fn in functions if wiring.EMAIL_FROM_ENV in fn.environment]
    if environment and environment.get(wiring.EMAIL_FROM_ENV):
        senders.append(environment[wiring.EMAIL_FROM_ENV])
    return list(dict.fromkeys(senders))


def verify_senders(ses: Any, senders: Iterable[str]) -> None:
    """Verify each sender address and its domain on moto's SES (immediately verified there), so
    ``SendEmail`` from them is accepted as in an account whose identities are set up."""
    for sender in senders:
        address = parseaddr(sender)[1] or sender
        ses.verify_email_identity(EmailAddress=address)
        if "@" in address:
            ses.verify_domain_identity(Domain=address.rsplit("@", 1)[1].lower())


def provision(
    clients: Clients,
    resolver: LocalResolver,
    *,
    secrets: dict[str, dict[str, str]],
    tables: Iterable[wiring.Table] = wiring.TABLES,
    queues: Iterable[wiring.Queue] = wiring.QUEUES,
    senders: Iterable[str] = (wiring.DEFAULT_EMAIL_FROM,),
    buckets: Iterable[wiring.Bucket] = wiring.BUCKETS,
) -> str:
    """Create every wiring resource on moto. Returns the event tap queue URL."""
    for table in tables:
        create_table(clients.dynamodb, table)
    for bucket in buckets:  # private and encrypted, as on AWS
        clients.s3.create_bucket(Bucket=resolver.bucket(bucket.name))
        clients.s3.put_bucket_encryption(
            Bucket=resolver.bucket(bucket.name),
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    for queue in queues:
        create_queue(clients.sqs, resolver, queue)
    clients.events.create_event_bus(Name=wiring.BUS_NAME)
    for name, value in secrets.items():
        clients.secretsmanager.create_secret(Name=name, SecretString=json.dumps(value))
    verify_senders(clients.ses, senders)
    queue_names = {q.name for q in queues}
    for route in wiring.EVENT_ROUTES:
        if route.queue in queue_names:
            create_event_route(clients.events, resolver, route)
    return create_event_tap(clients.sqs, clients.events, resolver)


def create_event_route(events: EventBridgeClient, resolver: LocalResolver, route: wiring.EventRoute) -> None:
    """The wiring's rule: these kassa events from the bus to the route's queue (as on AWS)."""
    name = route.rule_name if route.managed else route.name  # a managed rule is put by its name
    events.put_rule(Name=name, EventBusName=wiring.BUS_NAME, EventPattern=json.dumps(route.pattern()), State="ENABLED")
    events.put_targets(
        Rule=name,
        EventBusName=wiring.BUS_NAME,
        Targets=[{"Id": route.queue, "Arn": resolver.queue_arn(route.queue)}],
    )
