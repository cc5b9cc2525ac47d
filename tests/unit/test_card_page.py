"""The card-update page in the customer's language: every language has every string with the same
placeholders, the page and its refusals render in each (words escaped, the script's words handed over
as data), and the inline script — the same in every language — keeps one CSP hash."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest
from translations import assert_every_language_has_every_string, assert_word_files_are_json_objects_of_strings

from kassa.api.card_page import card_language, card_languages, card_strings, render_card, render_refused, script_hashes
from kassa.api.portal_page import portal_languages
from kassa.domain.customer import SUPPORTED_LOCALES
from kassa.emails.render import mandate_terms

#: the words the page's script looks up (t("…")): each must be in the files
_SCRIPT_KEY = re.compile(r"""\bt\(\s*"([a-z_.]+)"|\?\s*"([a-z_.]+)"\s*:\s*"([a-z_.]+)\"""")


def test_the_card_page_speaks_the_portals_languages():
    assert card_languages() == portal_languages() == frozenset(SUPPORTED_LOCALES)


def test_every_language_has_every_card_page_string_with_the_same_placeholders():
    assert_every_language_has_every_string(card_strings)


def test_the_files_are_json_objects_of_strings():
    assert_word_files_are_json_objects_of_strings("card_page")


def test_every_word_the_script_asks_for_is_in_the_files():
    source = (files("kassa.api") / "static" / "card.html.j2").read_text(encoding="utf-8")
    asked = {key for match in _SCRIPT_KEY.findall(source) for key in match if key}
    assert {"intro_card", "saving", "card_saved", "save_bank_account"} <= asked
    assert asked <= set(card_strings("en")), asked - set(card_strings("en"))


@pytest.mark.parametrize("language", sorted(SUPPORTED_LOCALES))
def test_the_page_renders_in_the_customers_language(language):
    html = render_card(language)
    words = card_strings(language)
    assert f'<html lang="{language}">' in html
    for key in ("title", "method_sepa_debit", "account_holder", "save_card"):
        assert words[key].replace("'", "&#39;") in html, key
    handed = re.search(r'<script type="application/json" id="card-words">(.*?)</script>', html, re.DOTALL)
    assert handed is not None and json.loads(handed.group(1)) == dict(words)
    refused = render_refused(language, "link_expired")
    assert words["refused.link_expired"].replace("'", "&#39;") in refused and "<script" not in refused


def test_the_mandate_is_shown_in_the_pages_language():
    """The SEPA mandate the page shows comes from the emails' terms in the same language."""
    for language in SUPPORTED_LOCALES:
        terms = mandate_terms(
            language, ["card", "sepa_debit"], seller_name="Shop", creditor_id="NL00ZZZ1", pre_notification_days=5
        )
        assert terms is not None and terms["language"] == card_language(language)


def test_a_customer_locale_picks_the_language_and_anything_else_is_english():
    assert card_language("nl-BE") == "nl" and card_language("sv_SE") == "sv"
    assert card_language("xx") == "en" and card_language(None) == "en"
    assert '<html lang="en">' in render_card("pt")


def test_the_inline_script_is_the_same_in_every_language_so_one_csp_hash_fits():
    hashes = set()
    for language in SUPPORTED_LOCALES:
        html = render_card(language)
        scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
        assert len(scripts) == 1
        hashes.add(scripts[0])
    assert len(hashes) == 1 and len(script_hashes()) == 1


def test_words_are_escaped_in_the_json_block():
    html = render_card("en")
    handed = re.search(r'id="card-words">(.*?)</script>', html, re.DOTALL)
    assert handed is not None and "</" not in handed.group(1)
