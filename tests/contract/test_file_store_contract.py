"""The FileStore contract (documents, large event payloads), on memory and on S3 (moto): objects
round-trip byte for byte, a missing key is None, and ``only_if_absent`` lets the first writer win."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from kassa.adapters.memory import MemoryFileStore
from kassa.adapters.s3 import S3FileStore

FILE_STORES = [pytest.param("memory", id="memory"), pytest.param("s3", id="s3", marks=pytest.mark.integration)]


@pytest.fixture(params=FILE_STORES)
def files(request: pytest.FixtureRequest, uid: str) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryFileStore()
        return
    stack = request.getfixturevalue("stack")
    client = stack.client("s3")
    yield S3FileStore(client, stack.environment.get("FILES_BUCKET", "files"))


def test_an_object_round_trips_byte_for_byte(files: Any, uid: str) -> None:
    data = os.urandom(70_000) + "€ ł ß".encode()
    assert files.put(f"documents/{uid}/invoice.pdf", data, "application/pdf") is True
    assert files.get(f"documents/{uid}/invoice.pdf") == data


def test_a_missing_key_is_none(files: Any, uid: str) -> None:
    assert files.get(f"documents/{uid}/nothing.pdf") is None


def test_only_if_absent_keeps_the_first_object(files: Any, uid: str) -> None:
    key = f"documents/{uid}/once.xml"
    assert files.put(key, b"<first/>", "application/xml", only_if_absent=True) is True
    assert files.put(key, b"<second/>", "application/xml", only_if_absent=True) is False
    assert files.get(key) == b"<first/>"


def test_a_plain_put_replaces(files: Any, uid: str) -> None:
    key = f"webhooks/{uid}.json"
    files.put(key, b"{}", "application/json")
    files.put(key, b'{"a": 1}', "application/json")
    assert files.get(key) == b'{"a": 1}'
