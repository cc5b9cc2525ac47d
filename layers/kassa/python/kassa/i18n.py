"""Translation files: one JSON file per language in a package folder, mapping keys to strings.

Shared by the customer emails (``kassa.emails``), the PDFs (``kassa.documents``) and the hosted
invoice page (``kassa.api.invoice_page``); each names its files ``<folder>/<prefix><language><suffix>``
and raises its own error for a language it does not speak. No I/O beyond the package's own files.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from types import MappingProxyType


class TranslationsError(ValueError):
    """A translations file does not map keys to strings."""


@cache
def languages(package: str, folder: str, prefix: str = "", suffix: str = ".json") -> frozenset[str]:
    """The languages with a file ``<folder>/<prefix><language><suffix>`` in ``package``."""
    return frozenset(
        item.name[len(prefix) : -len(suffix)]
        for item in (files(package) / folder).iterdir()
        if item.name.startswith(prefix) and item.name.endswith(suffix)
    )


@cache
def strings(package: str, folder: str, language: str, prefix: str = "", suffix: str = ".json") -> Mapping[str, str]:
    """The strings of ``<folder>/<prefix><language><suffix>`` in ``package`` (read once)."""
    name = f"{prefix}{language}{suffix}"
    data = json.loads((files(package) / folder / name).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise TranslationsError(f"{folder}/{name} must map keys to strings")
    return MappingProxyType(data)


def placeholders(text: str) -> frozenset[str]:
    """The names of a string's ``{placeholders}``."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)
