"""Checks every translated page's word files share (the portal's, the card page's)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib.resources import files

from kassa.domain.customer import SUPPORTED_LOCALES
from kassa.emails.render import placeholders


def assert_every_language_has_every_string(strings_of: Callable[[str], Mapping[str, str]]) -> None:
    """Each language has English's keys, each string non-blank with English's placeholders."""
    english = strings_of("en")
    for language in SUPPORTED_LOCALES:
        strings = strings_of(language)
        assert set(strings) == set(english), (language, set(english) ^ set(strings))
        for key, text in strings.items():
            assert placeholders(text) == placeholders(english[key]), (language, key)
            assert text.strip(), (language, key)


def assert_word_files_are_json_objects_of_strings(stem: str) -> None:
    """``kassa/api/static/<stem>.<language>.json`` is a JSON object of strings in every language."""
    folder = files("kassa.api") / "static"
    for language in SUPPORTED_LOCALES:
        data = json.loads((folder / f"{stem}.{language}.json").read_text(encoding="utf-8"))
        assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values()), language
