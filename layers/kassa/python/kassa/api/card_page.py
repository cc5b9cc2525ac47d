"""The card-update page (``/portal/card``) in the customer's language.

The page reached from a payment-failed email and from the customer portal (``/portal/account/card``):
``static/card.html.j2`` (the hosted invoice page's autoescaped environment) rendered on the server with
the words of ``static/card_page.<language>.json`` — the portal's languages; every language has exactly
English's keys (a test keeps them equal). The page's script says what happens next (saving, 3-D
Secure, declines) with the same words, handed to it as a JSON block: the script itself is the same in
every language, so its CSP hash is too (``script_hashes``). The SEPA mandate's text comes, in the same
language, from ``kassa.emails.render.mandate_terms`` through ``/portal/card/session``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from kassa import i18n
from kassa.api.invoice_page import DEFAULT_LANGUAGE, page_locale

_PACKAGE = "kassa.api"
_PREFIX = "card_page."


def card_languages() -> frozenset[str]:
    """Languages with a card-page translations file (``static/card_page.<language>.json``)."""
    return i18n.languages(_PACKAGE, "static", _PREFIX)


def card_strings(language: str) -> Mapping[str, str]:
    if language not in card_languages():
        raise KeyError(f"no card page translations for {language!r}")
    return i18n.strings(_PACKAGE, "static", language, _PREFIX)


def card_language(locale: str | None) -> str:
    """The page's language for a customer's ``preferred_locale`` (``nl-BE`` → nl; English otherwise)."""
    language, _ = page_locale(locale)
    return language if language in card_languages() else DEFAULT_LANGUAGE


@cache
def _template() -> Any:
    from kassa.api.invoice_page import _environment

    return _environment().get_template("card.html.j2")


def render_card(locale: str | None) -> str:
    """The page in the language of ``locale``."""
    language = card_language(locale)
    words = dict(card_strings(language))
    return str(_template().render(page="card", lang=language, t=words.__getitem__, words=words))


def render_refused(locale: str | None, code: str) -> str:
    """The page shown for a link that opens nothing (expired, tampered), in the language of ``locale``."""
    language = card_language(locale)
    words = card_strings(language)
    body = words.get(f"refused.{code}") or words["refused.link_invalid"]
    return str(_template().render(page="refused", lang=language, t=words.__getitem__, words={}, body=body))


def _inline(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)


@cache
def script_hashes() -> tuple[str, ...]:
    """CSP hashes of the page's own inline script (the same in every language: its words are data)."""
    return tuple(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _inline(render_card(DEFAULT_LANGUAGE))
    )
