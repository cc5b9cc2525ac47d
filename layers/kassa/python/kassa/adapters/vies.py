"""VIES (the Commission's VAT Information Exchange System) over its REST API: the domain's ``ViesChecker``.

    vies = ViesClient(cache=DynamoViesCache(container.client("dynamodb"), table))
    quote_tax(lines, ..., vies=vies)
    vies.check("DE136695976")  # True (registered), False (not registered), None (VIES could not tell)

``check`` asks ``GET {base_url}/ms/{CC}/vat/{number}`` and reads ``isValid`` from the JSON answer. It
never raises and never waits longer than ``timeout_s``: the request runs on a worker thread with
the same socket timeout, so even a stalled DNS lookup cannot hold up a quote. A network error, a
timeout, an HTTP error, a member state reported unavailable (``userError`` such as
``MS_UNAVAILABLE``, or ``errorWrappers``) or unexpected JSON gives None, with a warning in the log.

Answers are cached (``ViesCache``): a cached answer is returned without a network call. None is
never cached, so the next quote asks again. ``DynamoViesCache`` keeps answers in the billing table
(``pk=VIES#<number>``, ``sk=RESULT``), expired by its ``expires_at`` TTL: 30 days for a registered
number, 1 day for an unregistered one (a new registration shows up in VIES within a day or so).

Standard library only (``urllib``): ``requests`` is not in the Lambda runtime.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from kassa.adapters import clock as clocks
from kassa.adapters import usage
from kassa.adapters.dynamodb import _n, _s, capacity_units

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ec.europa.eu/taxation_customs/vies/rest-api"
MAX_BODY = 64 * 1024  # a VIES answer is well under 1 KB; never read an unbounded body
# "userError" values that are real answers; any other (MS_UNAVAILABLE, TIMEOUT, MS_MAX_CONCURRENT_REQ,
# SERVICE_UNAVAILABLE, GLOBAL_MAX_CONCURRENT_REQ, INVALID_INPUT, …) means VIES could not tell.
ANSWER_CODES = frozenset({"VALID", "INVALID"})
_VAT = re.compile(r"([A-Z]{2})([0-9A-Z+*]{2,13})")


class Missing(Enum):
    """The type of ``MISSING``: a cache has no (unexpired) answer for the number."""

    MISSING = "missing"


MISSING = Missing.MISSING


class Clock(Protocol):
    def now(self) -> datetime: ...


class ViesCache(Protocol):
    """Where VIES answers are kept.

    ``get`` returns the cached answer (True/False), ``MISSING`` when there is none (or it expired),
    or None when the cache itself could not tell (storage error): the client then asks VIES, as for
    ``MISSING``. Neither method should raise; the client guards against it anyway.
    """

    def get(self, vat_number: str) -> bool | None | Missing: ...

    def put(self, vat_number: str, valid: bool, checked_at: datetime) -> None: ...


def normalize_vat_number(vat_number: str) -> str:
    """Upper case, without spaces, dots or hyphens: "de 136.695.976" → "DE136695976"."""
    return re.sub(r"[\s.\-]", "", vat_number.upper())


class ViesClient:
    """The ``ViesChecker`` on the VIES REST API; thread-safe."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 3.0,
        cache: ViesCache | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self._base = base_url.rstrip("/")
        self._timeout = float(timeout_s)
        self._cache = cache
        self._clock = clock
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def timeout_s(self) -> float:
        return self._timeout

    def _now(self) -> datetime:
        return (self._clock or clocks.current()).now()

    def check(self, vat_number: str) -> bool | None:
        """True: registered; False: not registered; None: VIES could not tell (never raises)."""
        try:
            return self._check(vat_number)
        except Exception:  # a bug here must never stop billing
            log.warning("VIES check of %r failed unexpectedly", vat_number, exc_info=True)
            return None

    def _check(self, vat_number: str) -> bool | None:
        number = normalize_vat_number(vat_number)
        match = _VAT.fullmatch(number)
        if match is None:
            log.warning("VIES not asked: %r is not a VAT number with its country prefix", vat_number)
            return None
        cached = self._cached(number)
        if isinstance(cached, bool):
            usage.count("vies.cache_hit")
            return cached
        answer = self._ask(match.group(1), match.group(2))
        if answer is not None and self._cache is not None:
            try:
                self._cache.put(number, answer, self._now())
            except Exception:
                log.warning("could not cache the VIES answer for %s", number, exc_info=True)
        return answer

    def _cached(self, number: str) -> bool | None | Missing:
        if self._cache is None:
            return MISSING
        try:
            return self._cache.get(number)
        except Exception:
            log.warning("the VIES cache failed for %s; asking VIES", number, exc_info=True)
            return None

    # ------------------------------------------------------------------ network
    def url_for(self, country: str, number: str) -> str:
        return f"{self._base}/ms/{urllib.parse.quote(country, safe='')}/vat/{urllib.parse.quote(number, safe='')}"

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="vies")
            return self._pool

    def _ask(self, country: str, number: str) -> bool | None:
        url = self.url_for(country, number)
        usage.count("vies.request")
        future = self._executor().submit(self._fetch, url)
        try:
            status, body = future.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            log.warning("VIES did not answer within %.1f s for %s%s", self._timeout, country, number)
            return None
        except Exception as error:  # URLError, timeouts, resets, bad HTTP: VIES is unavailable
            log.warning("VIES unavailable for %s%s: %s", country, number, error)
            return None
        return self._parse(status, body, f"{country}{number}")

    def _fetch(self, url: str) -> tuple[int, bytes]:
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", "User-Agent": "kassa-vies/1"}, method="GET"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status), response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as error:  # 4xx/5xx: an answer, but not a usable one
            error.close()
            return int(error.code), b""

    @staticmethod
    def _parse(status: int, body: bytes, number: str) -> bool | None:
        if status != 200 or len(body) > MAX_BODY:
            log.warning("VIES answered HTTP %s (%d bytes) for %s", status, len(body), number)
            return None
        try:
            data: Any = json.loads(body)
        except ValueError:
            log.warning("VIES answered something that is not JSON for %s", number)
            return None
        if not isinstance(data, dict):
            log.warning("VIES answered unexpected JSON for %s", number)
            return None
        errors = data.get("errorWrappers")
        if errors:
            log.warning("VIES could not check %s: %s", number, errors)
            return None
        user_error = data.get("userError")
        if user_error is not None and user_error not in ANSWER_CODES:
            log.warning("VIES could not check %s: %s", number, user_error)
            return None
        valid = data.get("isValid")
        if not isinstance(valid, bool):
            log.warning("VIES answered without a boolean isValid for %s", number)
            return None
        return valid

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


class DynamoViesCache:
    """VIES answers in a DynamoDB table with ``pk``/``sk`` string keys and a TTL on ``expires_at``
    (the billing table). Storage errors are logged and read as "cannot tell" (never raised)."""

    VALID_FOR = timedelta(days=30)
    INVALID_FOR = timedelta(days=1)

    def __init__(self, client: Any, table: str, clock: Clock | None = None) -> None:
        self._db = client
        self._table = table
        self._clock = clock

    @staticmethod
    def key(vat_number: str) -> dict[str, dict[str, str]]:
        return {"pk": _s(f"VIES#{normalize_vat_number(vat_number)}"), "sk": _s("RESULT")}

    def _now(self) -> datetime:
        return (self._clock or clocks.current()).now()

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any] | None:
        kwargs.setdefault("ReturnConsumedCapacity", "TOTAL")
        try:
            response: dict[str, Any] = getattr(self._db, op)(**kwargs)
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
            log.warning("VIES cache %s failed (%s): %s", op, code or type(error).__name__, error)
            return None
        usage.count(f"dynamodb.{op}")
        kind, units = capacity_units(op, kwargs, response)
        usage.units(f"dynamodb.{kind}", units)
        usage.units(f"dynamodb.{kind}.{op}", units)
        return response

    def get(self, vat_number: str) -> bool | None | Missing:
        response = self._call("get_item", TableName=self._table, Key=self.key(vat_number), ConsistentRead=False)
        if response is None:
            return None
        item = response.get("Item")
        if not item:
            return MISSING
        expires = item.get("expires_at", {}).get("N")
        if expires is None or int(expires) <= int(self._now().timestamp()):
            return MISSING  # TTL deletion lags (up to days): an expired item is no answer
        valid = item.get("valid", {})
        if "BOOL" in valid:
            return bool(valid["BOOL"])
        if valid.get("S") in ("true", "false"):
            return valid["S"] == "true"
        return MISSING

    def put(self, vat_number: str, valid: bool, checked_at: datetime) -> None:
        if checked_at.tzinfo is None:
            raise ValueError("checked_at must be an aware datetime")
        expires = checked_at + (self.VALID_FOR if valid else self.INVALID_FOR)
        item = {
            **self.key(vat_number),
            "valid": {"BOOL": bool(valid)},
            "checked_at": _s(checked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            "expires_at": _n(int(expires.timestamp())),
        }
        self._call("put_item", TableName=self._table, Item=item)
