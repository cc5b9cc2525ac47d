"""The local stack: kassa's Lambda functions, run in-process against moto and localstripe.

Development tooling, never deployed. ``LocalStack`` is used by ``kassa run`` and by pytest
fixtures alike::

    with LocalStack(api_port=0, aws_port=0, stripe_port=0, state_dir=tmp_path) as stack:
        requests.get(f"{stack.config.api_url}/v1/prices", headers=stack.auth_headers)
        stack.advance("35d")            # fires every schedule on the way, draining queues per tick
        stack.events(type="invoice.paid")

Everything is read from ``infra/wiring.py``: the tables, queues (+ DLQs), bus and secrets it
provisions on moto, the environment each function gets, which handler serves which route, which
queue feeds which function with which batch size, which schedule fires what.

moto's backends, localstripe's store, the process environment and the clock are process-wide:
one ``LocalStack`` runs per process at a time. ``start`` stops the one already running (with a
warning; ``replace_running=False`` refuses instead), resets moto and localstripe; ``stop``
restores the environment variables and the clock it replaced.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from infra import wiring
from kassa.adapters import clock as clock_port
from kassa.adapters.clock import VirtualClock
from kassa.adapters.outbox import DynamoOutbox
from kassa.domain.api_keys import (
    KeyFormatError,
    add_api_key,
    api_secret_value,
    parse_api_keys,
    roll_api_key,
    roll_link_keys,
)
from kassa.services.ports import OutboxRecord
from kassa_local.aws import (
    ACCOUNT_ID,
    AWS_ENV_REMOVED,
    REGION,
    Clients,
    LocalResolver,
    MotoServer,
    aws_environment,
    dlq_name,
    email_senders,
    provision,
)
from kassa_local.gateway import Gateway
from kassa_local.localstripe_server import LocalStripe
from kassa_local.pollers import EventTap, PauseGate, Poller, QueueConsumer, drain
from kassa_local.scheduler import FiredTick, IdleProbe, Scheduler, iso, parse_duration, parse_instant

log = logging.getLogger("kassa_local")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FUNCTIONS_DIR = REPO_ROOT / "functions"
DEFAULT_STATE_DIR = REPO_ROOT / ".kassa"
STATE_FILE = "local.json"

DEFAULT_PORTS = {
    "api": ("KASSA_API_PORT", 8000),
    "aws": ("KASSA_AWS_PORT", 5000),
    "stripe": ("KASSA_STRIPE_PORT", 8420),
}
WEBHOOK_ID = "kassa"
REAL_STRIPE_JS = "https://js.stripe.com/v3/"


def default_state_dir() -> Path:
    return Path(os.environ.get("KASSA_STATE_DIR") or DEFAULT_STATE_DIR)


def read_state(state_dir: Path | str | None = None) -> dict[str, Any]:
    """The running stack's ``local.json`` (raises FileNotFoundError when no stack runs)."""
    path = Path(state_dir or default_state_dir()) / STATE_FILE
    return dict(json.loads(path.read_text()))


class PortInUse(OSError):
    """A port the stack was asked to listen on is taken; the message names it and how to change it."""

    def __init__(self, which: str, port: int) -> None:
        env, _ = DEFAULT_PORTS[which]
        super().__init__(errno.EADDRINUSE, f"port {port} is in use: set {env} or pass --{which}-port")
        self.which, self.port = which, port

    def __str__(self) -> str:
        return str(self.strerror)


def _address_in_use(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            return True
        if "address in use" in str(error).lower() or "address already in use" in str(error).lower():
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def check_port_free(which: str, port: int) -> None:
    """Raise ``PortInUse`` when something listens on 127.0.0.1:``port`` (0: any free port, never taken).

    Bound with SO_REUSEADDR, as the servers are, so a port only in TIME_WAIT counts as free."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(which, port) from None
            raise


@contextlib.contextmanager
def _listening(which: str, port: int) -> Iterator[None]:
    """Turns a component's failure to bind ``port`` into ``PortInUse``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if port and not isinstance(error, PortInUse) and _address_in_use(error):
            raise PortInUse(which, port) from error
        raise


def _port(value: int | None, which: str) -> int:
    if value is not None:
        return int(value)
    env, default = DEFAULT_PORTS[which]
    return int(os.environ.get(env) or default)


@dataclass
class LocalConfig:
    """What ``start()`` writes to ``<state_dir>/local.json``."""

    api_url: str
    openapi_url: str
    docs_url: str
    storefront_url: str
    stripe_url: str
    aws_endpoint_url: str
    api_secret_key: str
    stripe_publishable_key: str
    stripe_secret_key: str
    webhook_secret: str
    ports: dict[str, int]
    pid: int
    real_stripe: bool = False
    stripe_js_url: str = ""
    # the API keys of kassa/api (id, role, expires_at, secret): api_secret_key is the first full one
    api_keys: list[dict[str, Any]] = field(default_factory=list)
    # which secrets each function holds (the wiring's): dunning signs links with kassa/links only
    function_secrets: dict[str, list[str]] = field(default_factory=dict)
    dashboard_url: str = ""  # the merchant dashboard (sign in with api_secret_key or a dashboard user)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FakeLambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(self, function: wiring.Function) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}"
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + function.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    timeouts: int = 0  # invocations that ran longer than the wiring timeout (not enforced locally)


@dataclass
class _Secrets:
    stripe_secret_key: str
    stripe_publishable_key: str
    webhook_secret: str
    api_secret_key: str
    real_stripe: bool
    link_secret_key: str = ""

    @classmethod
    def generate(cls, real_stripe: bool) -> _Secrets:
        if real_stripe:
            secret_key = os.environ["STRIPE_API_KEY"]
            publishable = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
            webhook = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
            if not publishable:
                log.warning("real Stripe mode without STRIPE_PUBLISHABLE_KEY: the storefront cannot work")
            if not webhook:
                log.warning("real Stripe mode without STRIPE_WEBHOOK_SECRET: webhooks will not verify")
                webhook = f"whsec_{secrets.token_hex(16)}"
        else:
            secret_key = f"sk_test_local_{secrets.token_hex(12)}"
            publishable = f"pk_test_local_{secrets.token_hex(12)}"
            webhook = f"whsec_{secrets.token_hex(16)}"
        return cls(
            stripe_secret_key=secret_key,
            stripe_publishable_key=publishable,
            webhook_secret=webhook,
            api_secret_key=f"ksk_local_{secrets.token_hex(16)}",
            real_stripe=real_stripe,
            link_secret_key=f"klk_local_{secrets.token_hex(16)}",
        )

    def secret_values(self) -> dict[str, dict[str, Any]]:
        return {
            wiring.STRIPE_SECRET: {
                "secret_key": self.stripe_secret_key,
                "publishable_key": self.stripe_publishable_key,
                "webhook_secret": self.webhook_secret,
            },
            wiring.API_SECRET: {"secret_key": self.api_secret_key},
            wiring.LINKS_SECRET: {"keys": [{"id": "link_local", "secret": self.link_secret_key}]},
        }


@dataclass
class _Started:
    """What has been started, so that a failed start can be undone piece by piece."""

    moto: MotoServer | None = None
    stripe: LocalStripe | None = None
    clients: Clients | None = None
    gateway: Gateway | None = None
    pollers: list[Poller] = field(default_factory=list)
    tap: EventTap | None = None
    state_file: Path | None = None
    modules: list[str] = field(default_factory=list)


class LocalStack:
    """moto + localstripe + the gateway, pollers and virtual-clock scheduler around the handlers.

    Ports: ``None`` reads ``KASSA_API_PORT`` (8000), ``KASSA_AWS_PORT`` (5000),
    ``KASSA_STRIPE_PORT`` (8420); ``0`` picks a free port. Everything binds 127.0.0.1.

    Real Stripe (test mode): when ``STRIPE_API_KEY`` is set, localstripe is not started, that key
    goes into the ``kassa/stripe`` secret with ``STRIPE_PUBLISHABLE_KEY`` and
    ``STRIPE_WEBHOOK_SECRET``, and ``STRIPE_API_BASE`` is not set.

    One stack per process: starting one stops the stack already running in this process, unless
    ``replace_running=False``, which raises instead.
    """

    _active: LocalStack | None = None  # the one stack running in this process
    _active_lock = threading.Lock()

    def __init__(
        self,
        api_port: int | None = None,
        aws_port: int | None = None,
        stripe_port: int | None = None,
        state_dir: Path | str | None = None,
        start_time: datetime | None = None,
        *,
        functions: Sequence[wiring.Function] = wiring.FUNCTIONS,
        functions_dir: Path | str | None = None,
        tables: Sequence[wiring.Table] = wiring.TABLES,
        queues: Sequence[wiring.Queue] = wiring.QUEUES,
        idle_probes: Mapping[str, IdleProbe] | None = None,
        retry_delay_s: int = 1,
        poll_interval_s: float = 0.25,
        background_pollers: bool = True,
        await_webhooks: bool = True,
        drain_timeout_s: float = 120,
        metrics: bool = False,
        extra_env: Mapping[str, str] | None = None,
        write_state: bool = True,
        real_stripe: bool | None = None,
        replace_running: bool = True,
    ) -> None:
        self.requested_ports = {
            "api": _port(api_port, "api"),
            "aws": _port(aws_port, "aws"),
            "stripe": _port(stripe_port, "stripe"),
        }
        self.ports = dict(self.requested_ports)  # the bound ports once started
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.functions: tuple[wiring.Function, ...] = tuple(functions)
        self.functions_dir = Path(functions_dir) if functions_dir is not None else DEFAULT_FUNCTIONS_DIR
        self.tables = tuple(tables)
        self.queues = tuple(queues)
        self._check_wiring()
        self.idle_probes = dict(idle_probes or {})
        self.retry_delay_s = retry_delay_s
        self.poll_interval_s = poll_interval_s
        self.background_pollers = background_pollers
        self.await_webhooks = await_webhooks
        self.drain_timeout_s = drain_timeout_s
        self.metrics = metrics
        self.extra_env = dict(extra_env or {})
        self.write_state = write_state
        self.real_stripe = bool(os.environ.get("STRIPE_API_KEY")) if real_stripe is None else real_stripe
        self.replace_running = replace_running
        self.start_time = start_time or datetime.now(UTC)
        self.clock = VirtualClock(self.start_time)

        self._config: LocalConfig | None = None
        self.resolver: LocalResolver | None = None
        self.gateway: Gateway | None = None
        self.scheduler: Scheduler | None = None
        self.consumers: dict[str, QueueConsumer] = {}
        self.modules: dict[str, ModuleType] = {}
        self.environment: dict[str, str] = {}
        self._secrets = _Secrets.generate(self.real_stripe)
        self._started = _Started()
        self._gate = PauseGate()
        self._saved_env: dict[str, str | None] = {}
        self._saved_clock: Any = None
        self._stats: dict[str, FunctionStats] = {fn.name: FunctionStats() for fn in self.functions}
        self._stats_lock = threading.Lock()
        self._invoke_locks: dict[str, threading.Lock] = {}
        self._lifecycle = threading.Lock()
        self.running = False

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        with self._lifecycle:
            if self.running:
                raise RuntimeError("the local stack is already running")
            previous = LocalStack._active
            if previous is not None:
                if not self.replace_running:
                    raise RuntimeError(
                        "another LocalStack runs in this process; moto, localstripe, the environment "
                        "and the clock are process-wide: stop it first"
                    )
                log.warning("stopping the LocalStack already running in this process: one at a time")
                previous.stop()
            with LocalStack._active_lock:
                if LocalStack._active is not None:
                    raise RuntimeError("another LocalStack started in this process meanwhile")
                LocalStack._active = self
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            self.running = True
        return self

    def stop(self) -> None:
        with self._lifecycle:
            if LocalStack._active is not self:
                return
            self._stop()
            self.running = False

    def _start(self) -> None:
        s = self._started
        t0 = time.monotonic()
        # 0. every requested port is free (before anything starts: the first error names the port)
        for which, port in self.requested_ports.items():
            if which != "stripe" or not self.real_stripe:
                check_port_free(which, port)
        # 1. moto
        s.moto = MotoServer(self.requested_ports["aws"])
        with _listening("aws", self.requested_ports["aws"]):
            s.moto.start()
        s.moto.reset()
        aws_url = s.moto.url
        self._set_env(aws_environment(aws_url))
        for name in AWS_ENV_REMOVED:
            self._set_env({name: None})
        # 2. localstripe
        if not self.real_stripe:
            s.stripe = LocalStripe(self.requested_ports["stripe"])
            with _listening("stripe", self.requested_ports["stripe"]):
                s.stripe.start()
        # 3. provisioning
        s.clients = Clients(aws_url)
        self.resolver = LocalResolver(s.clients.sqs)
        tap_url = provision(
            s.clients,
            self.resolver,
            secrets=self._secrets.secret_values(),
            tables=self.tables,
            queues=self.queues,
            senders=email_senders(self.functions, self.extra_env),
        )
        # 4. environment and clock
        self.environment = self._function_environment()
        self._set_env(self.environment)
        if self.real_stripe:
            self._set_env({"STRIPE_API_BASE": None})  # the stripe SDK's default: api.stripe.com
        self._saved_clock = clock_port.current()
        clock_port.install(self.clock)
        _reset_sdk_caches()
        # 5. handlers
        self._load_handlers()
        # 6. gateway, webhook registration
        s.gateway = self.gateway = Gateway(
            self.functions, self.invoke_function, self.clock.now, self, port=self.requested_ports["api"]
        )
        with _listening("api", self.requested_ports["api"]):
            s.gateway.start()
        api_url = s.gateway.url
        # the public URL (links in emails) is the gateway's, known only now (handlers read it per
        # call); one given in extra_env (e.g. a tunnel) is kept
        public_url = self.extra_env.get(wiring.PUBLIC_URL_ENV) or api_url
        self.resolver.set_public_url(public_url)
        self.environment[wiring.PUBLIC_URL_ENV] = public_url
        self._set_env({wiring.PUBLIC_URL_ENV: public_url})
        if s.stripe is not None:
            s.stripe.register_webhook(WEBHOOK_ID, f"{api_url}/webhooks/stripe", self._secrets.webhook_secret)
        # 7. pollers, event tap, scheduler
        for fn in self.functions:
            if fn.queue_trigger is None:
                continue
            q = fn.queue_trigger.queue
            self.consumers[fn.name] = QueueConsumer(
                fn,
                self.resolver.queue_url(q),
                self.resolver.queue_arn(q),
                s.clients.sqs,
                self.invoke_function,
                retry_delay_s=self.retry_delay_s,
                now=self.clock.now,
            )
        self._resume_webhooks()
        if self.background_pollers:
            for consumer in self.consumers.values():
                poller = Poller(consumer, self._gate, idle_s=self.poll_interval_s)
                s.pollers.append(poller)
                poller.start()
        s.tap = EventTap(s.clients.sqs, tap_url, idle_s=self.poll_interval_s)
        s.tap.start()
        self.scheduler = Scheduler(
            self.clock,
            self.functions,
            self.invoke_function,
            self._drain_locked,
            idle_probes=self.idle_probes,
            exclusive=self._gate.exclusive,
            timers=list(self.consumers.values()),
        )
        # 8. local.json
        stripe_url = s.stripe.url if s.stripe is not None else "https://api.stripe.com"
        self.ports = {
            "api": s.gateway.port,
            "aws": s.moto.port,
            "stripe": s.stripe.port if s.stripe is not None else 0,
        }
        self._config = LocalConfig(
            api_url=api_url,
            openapi_url=f"{api_url}/openapi.json",
            docs_url=f"{api_url}/docs",
            storefront_url=f"{api_url}/storefront",
            dashboard_url=f"{api_url}/dashboard",
            stripe_url=stripe_url,
            aws_endpoint_url=aws_url,
            api_secret_key=self._secrets.api_secret_key,
            stripe_publishable_key=self._secrets.stripe_publishable_key,
            stripe_secret_key=self._secrets.stripe_secret_key,
            webhook_secret=self._secrets.webhook_secret,
            ports=dict(self.ports),
            pid=os.getpid(),
            real_stripe=self.real_stripe,
            stripe_js_url=self._stripe_js_url(),
            api_keys=[key.as_json() for key in parse_api_keys({"secret_key": self._secrets.api_secret_key})],
            function_secrets={fn.name: list(fn.secrets) for fn in self.functions},
        )
        if self.write_state:
            s.state_file = self._write_state()
        log.info("local stack started in %.2f s: %s", time.monotonic() - t0, api_url)

    def _write_state(self) -> Path:
        """``local.json``, readable by its owner only (it holds the keys): mode 0600, written whole."""
        assert self._config is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(self._config.as_json(), indent=2) + "\n")
        os.chmod(tmp, 0o600)  # whatever the umask
        tmp.replace(path)
        return path

    # -- keys: kassa keys roll / add (POST /_local/keys) -----------------------------------------

    def _read_secret(self, name: str) -> dict[str, Any]:
        sm = self.client("secretsmanager")
        value = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
        assert isinstance(value, dict)
        return value

    def _put_secret(self, name: str, value: dict[str, Any]) -> None:
        self.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps(value))
        from kassa.adapters import container

        container._secrets_provider.cache_clear()  # noqa: SLF001 - AWS picks the new value up within 5 minutes

    def roll_keys(
        self,
        *,
        key: str | None = None,
        expires_in: timedelta = timedelta(hours=24),
        links: bool = False,
        add_role: str | None = None,
    ) -> dict[str, Any]:
        """Roll an API key (the old one valid ``expires_in`` more, virtual time), add a key of ``add_role``
        (``read_only``), or roll the link-signing key (``links``: the previous key still verifies).
        Updates the secret, ``api_secret_key`` (when the first full key changed) and ``local.json``."""
        now = self.clock.now()
        if links:
            value = roll_link_keys(self._read_secret(wiring.LINKS_SECRET))
            self._put_secret(wiring.LINKS_SECRET, value)
            self._secrets.link_secret_key = value["keys"][0]["secret"]
            return {"object": "link_keys", "keys": [{"id": k["id"]} for k in value["keys"]]}
        keys = parse_api_keys(self._read_secret(wiring.API_SECRET))
        if add_role is not None:
            kept, fresh = add_api_key(keys, now, add_role)
        else:
            kept, fresh = roll_api_key(keys, now, key_id=key, expires_in=expires_in)
        self._put_secret(wiring.API_SECRET, api_secret_value(kept))
        current = next(k for k in kept if k.role == "full")
        self._secrets.api_secret_key = current.secret
        if self._config is not None:
            self._config = replace(self._config, api_secret_key=current.secret, api_keys=[k.as_json() for k in kept])
            if self.write_state and self._started.state_file is not None:
                self._write_state()
        return {
            "object": "api_keys",
            "new_key": fresh.as_json(),
            "keys": [{k: v for k, v in entry.as_json().items() if k != "secret"} for entry in kept],
        }

    def keys_json(self, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action", "roll")
        if action not in ("roll", "add", "roll_links"):
            raise ValueError('"action" must be roll, add or roll_links')
        if action == "roll_links":
            return self.roll_keys(links=True)
        if action == "add":
            role = body.get("role", "read_only")
            if role not in ("full", "read_only"):
                raise ValueError('"role" must be full or read_only')
            return self.roll_keys(add_role=role)
        raw = body.get("expires_in", "24h")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError('"expires_in" must be a duration like "24h" or a number of seconds ("0": at once)')
        expires_in = (
            timedelta(seconds=raw) if isinstance(raw, int) else parse_duration(raw) if raw != "0" else timedelta(0)
        )
        key_id = body.get("key")
        if key_id is not None and not isinstance(key_id, str):
            raise ValueError('"key" must be a key id')
        try:
            return self.roll_keys(key=key_id, expires_in=expires_in)
        except KeyFormatError as error:
            raise ValueError(str(error)) from error

    def _stop(self) -> None:
        try:
            self._stop_components()
        finally:
            with LocalStack._active_lock:
                if LocalStack._active is self:
                    LocalStack._active = None

    def _stop_components(self) -> None:
        s = self._started
        for poller in s.pollers:
            poller.request_stop()
        if s.tap is not None:
            s.tap.request_stop()
        for poller in s.pollers:
            poller.join()
        if s.tap is not None:
            s.tap.join()
        if s.gateway is not None:
            s.gateway.stop()
        if s.stripe is not None:
            s.stripe.stop()
        if s.clients is not None:
            s.clients.close()
        if s.moto is not None:
            try:
                s.moto.reset()
            except Exception:
                log.debug("moto reset on stop failed", exc_info=True)
            s.moto.stop()
        if s.state_file is not None:
            try:
                if read_state(s.state_file.parent).get("pid") == os.getpid():
                    s.state_file.unlink()
            except (OSError, ValueError):
                pass
        for name in s.modules:
            sys.modules.pop(name, None)
        if self._saved_clock is not None:
            clock_port.install(self._saved_clock)
            self._saved_clock = None
        self._restore_env()
        _reset_sdk_caches()
        self._started = _Started()
        self.consumers = {}
        self.modules = {}
        self.gateway = None
        self.scheduler = None

    def _resume_webhooks(self) -> int:
        """Queue again the outbound webhook attempts the store has as pending (a consumer holds a
        delayed attempt in memory until its virtual time: new consumers know none of them)."""
        if "webhook_delivery" not in self.consumers:
            return 0
        from kassa.adapters import container

        return container.webhooks(with_delivery=False).resume()

    # -- environment and handlers ---------------------------------------------------------------

    def _check_wiring(self) -> None:
        queue_names = {q.name for q in self.queues}
        for fn in self.functions:
            if fn.queue_trigger is not None and fn.queue_trigger.queue not in queue_names:
                raise ValueError(f"{fn.name} is triggered by unknown queue {fn.queue_trigger.queue}")
            for q in fn.queues_send:
                if q not in queue_names:
                    raise ValueError(f"{fn.name} sends to unknown queue {q}")

    def _function_environment(self) -> dict[str, str]:
        """The union of every function's environment (they must agree), plus local settings."""
        assert self.resolver is not None
        env: dict[str, str] = {}
        for fn in self.functions:
            for key, value in wiring.function_environment(fn, self.resolver).items():
                if key == "POWERTOOLS_SERVICE_NAME":
                    continue
                if key in env and env[key] != value:
                    raise ValueError(f"functions disagree on {key}: {env[key]!r} vs {value!r}")
                env[key] = value
        env["POWERTOOLS_SERVICE_NAME"] = wiring.SERVICE_NAME
        env["KASSA_LOCAL"] = "1"
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        if not self.metrics:
            env["POWERTOOLS_METRICS_DISABLED"] = "true"
        if self._started.stripe is not None:
            env["STRIPE_API_BASE"] = self._started.stripe.url
        env["KASSA_STRIPE_JS_URL"] = self._stripe_js_url()
        # outbound webhooks: any URL (a receiver on 127.0.0.1); delays run on the virtual clock (pollers)
        env["KASSA_WEBHOOK_MODE"] = "local"
        env["KASSA_SQS_MAX_DELAY_S"] = "0"
        env.update(self.extra_env)
        return env

    def _stripe_js_url(self) -> str:
        """Stripe.js: localstripe's shim when it runs, the real one otherwise."""
        stripe = self._started.stripe
        return REAL_STRIPE_JS if stripe is None else f"{stripe.url}/js.stripe.com/v3/"

    def _set_env(self, values: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) variables, remembering the originals for ``stop``."""
        for key, value in values.items():
            if key not in self._saved_env:
                self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def _load_handlers(self) -> None:
        missing = [fn.name for fn in self.functions if not (self.functions_dir / fn.name / "handler.py").is_file()]
        if missing:
            raise FileNotFoundError(f"no handler.py under {self.functions_dir} for: {', '.join(missing)}")
        for fn in self.functions:
            self.modules[fn.name] = self._load_handler(fn)

    def _load_handler(self, fn: wiring.Function) -> ModuleType:
        folder = self.functions_dir / fn.name
        module_name = f"kassa_fn_{fn.name}"
        spec = importlib.util.spec_from_file_location(module_name, folder / "handler.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {folder / 'handler.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        self._started.modules.append(module_name)
        # a Lambda function's folder is its code root: siblings of handler.py import as top-level
        # modules; they are dropped from sys.modules afterwards so two functions' siblings of the
        # same name do not collide (import them at module level, not lazily inside the handler)
        before = set(sys.modules)
        sys.path.insert(0, str(folder))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(folder))
            for name in set(sys.modules) - before:
                mod_file = getattr(sys.modules[name], "__file__", None) or ""
                if name != module_name and mod_file.startswith(str(folder) + os.sep):
                    del sys.modules[name]
        if not callable(getattr(module, "lambda_handler", None)):
            raise ImportError(f"{folder / 'handler.py'} has no lambda_handler")
        return module

    # -- invocation -----------------------------------------------------------------------------

    def function(self, name: str) -> wiring.Function:
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        """Invoke one function directly, as Lambda would (raises what the handler raises)."""
        return self.invoke_function(self.function(name), event)

    def invoke_function(self, fn: wiring.Function, event: dict[str, Any]) -> Any:
        module = self.modules.get(fn.name)
        if module is None:
            raise RuntimeError(f"{fn.name} is not loaded (is the stack started?)")
        context = FakeLambdaContext(fn)
        # one execution environment per function, which (as on Lambda) runs one invocation at a
        # time: the handlers' module-level state (Powertools' resolver and its current event) is
        # never shared between two concurrent requests
        with self._invoke_locks.setdefault(fn.name, threading.Lock()):
            return self._invoke_locked(fn, module, event, context)

    def _invoke_locked(self, fn: wiring.Function, module: Any, event: dict[str, Any], context: Any) -> Any:
        t0 = time.perf_counter()
        error = False
        try:
            return module.lambda_handler(event, context)
        except Exception:
            error = True
            raise
        finally:
            ms = (time.perf_counter() - t0) * 1000
            with self._stats_lock:
                st = self._stats[fn.name]
                st.invocations += 1
                st.errors += int(error)
                st.total_ms += ms
                st.max_ms = max(st.max_ms, ms)
                if ms > fn.timeout_s * 1000:
                    st.timeouts += 1
                    log.warning("%s ran %.0f ms, over its %d s timeout", fn.name, ms, fn.timeout_s)

    # -- time, queues, events -------------------------------------------------------------------

    def advance(
        self, by: timedelta | str | None = None, to: datetime | str | None = None, deliveries: int = 1
    ) -> list[FiredTick]:
        """Move the virtual clock forward, firing every schedule tick on the way (see scheduler);
        ``deliveries=2`` fires each tick twice, as an at-least-once scheduler may."""
        if self.scheduler is None:
            raise RuntimeError("the local stack is not started")
        delta = parse_duration(by) if isinstance(by, str) else by
        target = parse_instant(to) if isinstance(to, str) else to
        return self.scheduler.advance(by=delta, to=target, deliveries=deliveries)

    def drain(self, timeout_s: float | None = None) -> int:
        """Deliver every queued message now (pollers paused), waiting for in-flight localstripe
        webhooks too. Returns the number of messages delivered."""
        with self._gate.exclusive():
            return self._drain_locked(timeout_s)

    def _drain_locked(self, timeout_s: float | None = None) -> int:
        stripe = self._started.stripe
        pending = stripe.pending_webhooks if stripe is not None and self.await_webhooks else None
        return drain(
            list(self.consumers.values()),
            pending_webhooks=pending,
            timeout_s=self.drain_timeout_s if timeout_s is None else timeout_s,
        )

    def paused(self) -> Any:
        """``with stack.paused():`` keeps the background pollers from delivering."""
        return self._gate.exclusive()

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every kassa event published on the bus so far (EventBridge envelopes), oldest first."""
        tap = self._started.tap
        if tap is None:
            return []
        tap.collect()
        return tap.events(type)

    def clear_events(self) -> None:
        if self._started.tap is not None:
            self._started.tap.collect()
            self._started.tap.clear()

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            functions = {name: asdict(st) for name, st in self._stats.items()}
        return {
            "functions": functions,
            "consumers": {name: c.stats_json() for name, c in self.consumers.items()},
            "skipped_ticks": self.scheduler.skipped if self.scheduler else 0,
        }

    # -- AWS helpers ----------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client on the local moto server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client(service, endpoint_url=self.config.aws_endpoint_url)  # type: ignore[call-overload]

    def queue_url(self, name: str) -> str:
        if self.resolver is None:
            raise RuntimeError("the local stack is not started")
        return self.resolver.queue_url(name)

    def dlq_url(self, name: str) -> str:
        return self.queue_url(dlq_name(name))

    # -- emails ---------------------------------------------------------------------------------

    def _outbox(self) -> DynamoOutbox:
        clients = self._started.clients
        if clients is None or self.resolver is None:
            raise RuntimeError("the local stack is not started")
        return DynamoOutbox(clients.dynamodb, self.resolver.table(wiring.BILLING_TABLE.name))

    def outbox(self, customer: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The customer emails in the outbox (all, or one customer's), newest first, as JSON-able
        dicts. Without a customer: every month from the stack's start time to the virtual now."""
        outbox = self._outbox()
        records: list[OutboxRecord] = []
        if customer:
            records = outbox.list_customer(customer, limit)
        else:
            for month in _months(self.start_time, max(self.start_time, self.clock.now())):
                records.extend(outbox.list_month(month, limit))
            records.sort(key=lambda r: (r.email.created, r.email.key), reverse=True)
        return [_outbox_json(r) for r in records[:limit]]

    def outbox_email(self, key: str) -> dict[str, Any] | None:
        """One outbox entry by its key (None when there is none)."""
        record = self._outbox().get(key)
        return _outbox_json(record) if record is not None else None

    def ses_sent_messages(self) -> list[dict[str, Any]]:
        """What moto's SES accepted (``SendEmail``: id, source, destinations, subject, body — the HTML
        part when there is one), oldest first. Read from moto's in-process SES backend: its
        ``/moto-api/data.json`` would serialize every tracked model (every DynamoDB item version)."""
        if self._started.moto is None:
            raise RuntimeError("the local stack is not started")
        from moto.ses.models import ses_backends

        backend = ses_backends[ACCOUNT_ID][REGION]
        return [
            {name: value for name, value in vars(message).items() if not name.startswith("_")}
            for message in list(backend.sent_messages)
        ]

    def outbox_json(self, customer: str | None) -> list[dict[str, Any]]:
        return self.outbox(customer)

    @property
    def config(self) -> LocalConfig:
        """What ``local.json`` holds (URLs, keys, ports); kept after ``stop`` as a record."""
        if self._config is None:
            raise RuntimeError("the local stack has not been started")
        return self._config

    @property
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <api secret key>`` for calls to /v1."""
        return {"Authorization": f"Bearer {self._secrets.api_secret_key}"}

    @property
    def api_secret_key(self) -> str:
        return self._secrets.api_secret_key

    @property
    def api_url(self) -> str:
        return self.config.api_url

    # -- StackControl (the gateway's /_local routes) ---------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "now": iso(self.clock.now()),
            "pid": os.getpid(),
            "real_stripe": self.real_stripe,
            "functions": [fn.name for fn in self.functions],
            "pollers": [p.consumer.function.name for p in self._started.pollers if p.alive],
            **self.stats(),
        }

    def clock_state(self) -> dict[str, Any]:
        return {
            "now": iso(self.clock.now()),
            "schedules": self.scheduler.next_ticks() if self.scheduler else [],
        }

    def advance_json(self, body: dict[str, Any]) -> dict[str, Any]:
        by, to = body.get("by"), body.get("to")
        if (by is None) == (to is None):
            raise ValueError('give exactly one of "by" (e.g. "35d") or "to" (ISO-8601)')
        if by is not None and not isinstance(by, str | int | float):
            raise ValueError('"by" must be a duration like "35d" or a number of seconds')
        if to is not None and not isinstance(to, str):
            raise ValueError('"to" must be an ISO-8601 timestamp')
        t0 = time.monotonic()
        deliveries = body.get("deliveries", 1)
        if isinstance(deliveries, bool) or not isinstance(deliveries, int) or not 1 <= deliveries <= 5:
            raise ValueError('"deliveries" must be an integer from 1 to 5')
        delta = timedelta(seconds=by) if isinstance(by, int | float) else parse_duration(by) if by else None
        fired = self.advance(by=delta, to=to, deliveries=deliveries)
        return {
            "now": iso(self.clock.now()),
            "fired": [f.as_json() for f in fired],
            "elapsed_s": round(time.monotonic() - t0, 3),
        }

    def drain_json(self) -> dict[str, Any]:
        return {"delivered": self.drain(), "now": iso(self.clock.now())}

    def events_json(self, type: str | None) -> list[dict[str, Any]]:
        return self.events(type)

    def storefront_config(self) -> dict[str, Any]:
        return {
            "publishable_key": self.config.stripe_publishable_key,
            "stripe_js_url": self.config.stripe_js_url,
            "api_url": self.config.api_url,
            "real_stripe": self.real_stripe,
        }


def _months(start: datetime, end: datetime) -> list[str]:
    """``YYYY-MM`` of every month from ``start``'s to ``end``'s (UTC), newest first."""
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    year, month = last.year, last.month
    months: list[str] = []
    while (year, month) >= (first.year, first.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def _outbox_json(record: OutboxRecord) -> dict[str, Any]:
    email = record.email
    return {
        "key": email.key,
        "template": email.template,
        "to": email.to,
        "customer": email.customer,
        "locale": email.locale,
        "reply_to": email.reply_to,
        "subject": email.subject,
        "text": email.text,
        "html": email.html,
        "status": record.status,
        "created": iso(email.created),
        "sent_at": iso(record.sent_at) if record.sent_at else None,
        "message_id": record.message_id,
        "error": record.error,
    }


def _reset_sdk_caches() -> None:
    """Forget clients, secrets and settings cached against a previous stack in this process: boto3's
    default session, Powertools Parameters' caches, and the ``functools`` caches (``cache_clear``)
    of the already imported ``kassa.adapters`` modules (e.g. the container's clients and env)."""
    import boto3

    boto3.DEFAULT_SESSION = None
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "kassa.adapters" or name.startswith("kassa.adapters.")):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and getattr(value, "__module__", None) == name:
                clear()


@contextlib.contextmanager
def fresh_stack(start_time: datetime | None = None, **overrides: Any) -> Iterator[LocalStack]:
    """A throwaway stack on free ports with its own state dir and the idle probes, logging only
    warnings from the handlers (``kassa demo``, ``kassa bench``, tests)."""
    from kassa_local.probes import default_idle_probes

    with tempfile.TemporaryDirectory() as state:
        options: dict[str, Any] = {
            "api_port": 0,
            "aws_port": 0,
            "stripe_port": 0,
            "state_dir": state,
            "start_time": start_time,
            "idle_probes": default_idle_probes(),
            "extra_env": {"POWERTOOLS_LOG_LEVEL": "WARNING"},
            **overrides,
        }
        with LocalStack(**options) as stack:
            yield stack
