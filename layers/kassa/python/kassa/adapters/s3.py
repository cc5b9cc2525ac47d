"""The ``FileStore`` port on Amazon S3: private, encrypted objects by key.

The bucket (infra/data.py) blocks public access, encrypts at rest and refuses plain HTTP; each
function may read and write only the key prefixes infra/wiring.py gives it. ``only_if_absent``
is S3's conditional write (``If-None-Match: *``): of two writers of one key, the second gets 412
and the first object stays. Throttling, 5xx answers and network failures are ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from kassa.adapters import usage
from kassa.domain.errors import Unavailable

_RETRYABLE = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"})
_TAKEN = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})  # put only_if_absent
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})  # get
T = TypeVar("T")


class S3FileStore:
    """``client``: an S3 client, or a function that makes one — called on first use, so a handler
    that may need the bucket (a webhook too large for its record) pays for the client only then."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @property
    def _s3(self) -> Any:
        if callable(self._client):
            self._client = self._client()
        return self._client

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
            "ServerSideEncryption": "AES256",
        }
        if only_if_absent:
            params["IfNoneMatch"] = "*"
        # put_object answers a dict; None is the key already taken (only_if_absent)
        return self._translated("put_object", key, _TAKEN, lambda: self._s3.put_object(**params)) is not None

    def get(self, key: str) -> bytes | None:
        return self._translated(
            "get_object", key, _MISSING, lambda: self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        )

    def _translated(self, operation: str, key: str, absent: frozenset[str], call: Callable[[], T]) -> T | None:
        """``call()``, one S3 ``operation`` on ``key`` (counted); None when S3 answers a code in
        ``absent``; throttling, 5xx answers and network failures are ``Unavailable``."""
        try:
            return call()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in absent:
                return None
            if code in _RETRYABLE:
                raise Unavailable(f"S3 refused {key} for now ({code})") from error
            raise
        except BotoCoreError as error:
            raise Unavailable(f"S3 could not be reached for {key}: {error}") from error
        finally:
            usage.count(f"s3.{operation}")
