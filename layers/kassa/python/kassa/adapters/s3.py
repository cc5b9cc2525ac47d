"""The ``FileStore`` port on Amazon S3: private, encrypted objects by key.

The bucket (infra/data.py) blocks public access, encrypts at rest and refuses plain HTTP; each
function may read and write only the key prefixes infra/wiring.py gives it. ``only_if_absent``
is S3's conditional write (``If-None-Match: *``): of two writers of one key, the second gets 412
and the first object stays. Throttling, 5xx answers and network failures are ``Unavailable``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kassa.adapters import usage
from kassa.domain.errors import Unavailable

_RETRYABLE = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"})


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
        try:
            self._s3.put_object(**params)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code in _RETRYABLE:
                raise Unavailable(f"S3 refused {key} for now ({code})") from error
            raise
        except BotoCoreError as error:
            raise Unavailable(f"S3 could not be reached for {key}: {error}") from error
        finally:
            usage.count("s3.put_object")
        return True

    def get(self, key: str) -> bytes | None:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            body: bytes = response["Body"].read()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code in _RETRYABLE:
                raise Unavailable(f"S3 refused {key} for now ({code})") from error
            raise
        except BotoCoreError as error:
            raise Unavailable(f"S3 could not be reached for {key}: {error}") from error
        finally:
            usage.count("s3.get_object")
        return body
