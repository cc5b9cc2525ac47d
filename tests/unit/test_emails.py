"""Customer emails: every template in every language, babel formatting, escaping, overrides, fallback."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

import pytest
from jinja2 import DictLoader, UndefinedError
from jinja2.exceptions import SecurityError

from kassa.domain.customer import SUPPORTED_LOCALES
from kassa.domain.dunning import EMAIL_TEMPLATES
from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money
from kassa.domain.settings import MerchantSettings
from kassa.emails import (
    TEMPLATES,
    Branding,
    EmailTemplateError,
    available_languages,
    format_day,
    format_money,
    format_month,
    render,
    resolve_locale,
)
from kassa.emails.render import format_clock_time, placeholders, to_decimal, translations

NBSP, NNBSP = "\u00a0", "\u202f"
T = datetime(2025, 3, 14, 10, tzinfo=UTC)
LOCALES = list(SUPPORTED_LOCALES)  # every language a customer may choose
BRAND = Branding(name="Bakkerij", colour="#aa3300", support_email="hulp@bakkerij.test")

CONTEXTS: dict[str, dict[str, object]] = {
    "receipt": {
        "invoice_number": "KASSA-0001",
        "amount_paid": 1500,
        "currency": "EUR",
        "paid_at": T,
        "customer_name": "Anna",
        "plan_name": "Pro",
        "period_start": T,
        "period_end": datetime(2025, 4, 14, tzinfo=UTC),
        "card_brand": "visa",
        "card_last4": "4242",
        "invoice_url": "https://shop.test/invoices/1",
    },
    "upcoming_renewal": {"plan_name": "Pro", "amount": 1500, "currency": "EUR", "renews_at": T},
    "trial_ending": {
        "plan_name": "Pro",
        "trial_end": T,
        "amount": 1500,
        "currency": "EUR",
        "has_payment_method": False,
        "update_card_url": "https://shop.test/card",
    },
    "payment_failed": {
        "invoice_number": "KASSA-0002",
        "amount_due": 1500,
        "currency": "EUR",
        "update_card_url": "https://shop.test/card?token=abc&x=1",
        "next_retry_at": T,
    },
    "authentication_required": {
        "invoice_number": "KASSA-0003",
        "amount_due": 1500,
        "currency": "EUR",
        "authentication_url": "https://shop.test/auth/pi_1",
    },
    "card_expiring": {
        "card_brand": "mastercard",
        "card_last4": "4444",
        "exp_month": 4,
        "exp_year": 2025,
        "update_card_url": "https://shop.test/card",
    },
    "subscription_canceled": {"plan_name": "Pro", "canceled_at": T, "reason": "payment_failed"},
    "win_back": {
        "plan_name": "Pro",
        "ended_at": T,
        "resubscribe_url": "https://shop.test/again",
        "coupon_code": "WELCOME20",
    },
    "payment_reminder": {
        "invoice_number": "KASSA-0004",
        "amount_due": 1500,
        "currency": "EUR",
        "unpaid_since": T,
        "update_card_url": "https://shop.test/card",
    },
    "account_suspended": {"amount_due": 1500, "currency": "EUR", "update_card_url": "https://shop.test/card"},
    "portal_login": {"portal_url": "https://shop.test/portal/session/a.b", "expires_at": T, "customer_name": "Anna"},
}


def required_only(name: str) -> dict[str, object]:
    return {k: v for k, v in CONTEXTS[name].items() if k in TEMPLATES[name].required}


# ---------------------------------------------------------------------------- catalogue
def test_the_catalogue_matches_the_domain_and_the_samples() -> None:
    assert set(TEMPLATES) == EMAIL_TEMPLATES == set(CONTEXTS)


def test_the_supported_locales_are_the_translated_languages() -> None:
    # one list: a customer may choose exactly the languages that have a translations file
    assert len(set(SUPPORTED_LOCALES)) == len(SUPPORTED_LOCALES)
    assert set(SUPPORTED_LOCALES) == available_languages()
    assert {"en", "nl", "de", "fr", "es", "it", "pl", "sv"} <= set(SUPPORTED_LOCALES)


def _raw_translations(language: str) -> list[tuple[str, object]]:
    """The file's key/value pairs as written (a duplicated key would be lost by a dict)."""
    text = (files("kassa.emails") / "translations" / f"{language}.json").read_text(encoding="utf-8")
    pairs: list[tuple[str, object]] = []

    def keep(items: list[tuple[str, object]]) -> dict[str, object]:
        pairs.extend(items)
        return dict(items)

    json.loads(text, object_pairs_hook=keep)
    return pairs


@pytest.mark.parametrize("language", [lang for lang in LOCALES if lang != "en"])
def test_every_language_has_exactly_the_english_strings(language: str) -> None:
    english = translations("en")
    pairs = _raw_translations(language)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"{language}.json repeats {sorted({k for k in keys if keys.count(k) > 1})}"
    strings = translations(language)
    assert not english.keys() - strings.keys(), f"{language}.json misses {sorted(english.keys() - strings.keys())}"
    assert not strings.keys() - english.keys(), f"{language}.json has extra {sorted(strings.keys() - english.keys())}"
    for key, text in strings.items():
        assert text.strip(), (language, key)
        assert placeholders(text) == placeholders(english[key]), (language, key)
    # an untranslated copy of English fails: only labels made of placeholders and punctuation (and
    # words the languages share, such as "Period") may equal the English string
    same = sorted(key for key, text in strings.items() if text == english[key])
    assert len(same) <= len(english) // 10, f"{language}.json still has English for {same}"


def test_english_is_complete_and_every_template_key_exists() -> None:
    english = translations("en")
    assert all(text.strip() for text in english.values())
    keys = [key for key, _ in _raw_translations("en")]
    assert len(keys) == len(set(keys))
    used: set[str] = set()
    for item in (files("kassa.emails") / "templates").iterdir():
        if item.name.endswith(".j2"):
            used |= set(re.findall(r'\bt\("([a-z_.]+)"', item.read_text(encoding="utf-8")))
    assert used, "no t(...) call found in the templates"
    assert not used - english.keys(), f"templates use keys missing in en.json: {sorted(used - english.keys())}"


@pytest.mark.parametrize(("name", "locale"), list(itertools.product(sorted(TEMPLATES), LOCALES)))
def test_every_template_renders_in_every_language(name: str, locale: str) -> None:
    for context in (CONTEXTS[name], required_only(name)):
        email = render(name, locale, context, BRAND)
        assert email.subject and email.html and email.text
        assert "\n" not in email.subject
        assert email.html.startswith("<!DOCTYPE html>") and f'<html lang="{locale}">' in email.html
        assert "Bakkerij" in email.html and "Bakkerij" in email.text
        assert "hulp@bakkerij.test" in email.text
        for value in context.values():
            if isinstance(value, str) and value.startswith("https://"):
                assert value in email.text  # every link is in the text part too
        assert "{" not in email.text and "}" not in email.text  # no unformatted placeholder


CHECKOUT = {  # a declined checkout's first payment: no invoice number yet, complete it before the expiry
    "invoice_number": None,
    "amount_due": 1500,
    "currency": "EUR",
    "update_card_url": "https://shop.test/card",
    "complete_by": datetime(2025, 3, 14, 15, tzinfo=UTC),
}


@pytest.mark.parametrize("locale", LOCALES)
def test_a_declined_checkout_reads_in_every_language(locale: str) -> None:
    english = render("payment_failed", "en", CHECKOUT, BRAND)
    for context in (CHECKOUT, {**CHECKOUT, "card_brand": "visa", "card_last4": "4242"}):
        email = render("payment_failed", locale, context, BRAND)
        assert email.locale == locale
        assert format_day(CHECKOUT["complete_by"], locale) in email.text  # type: ignore[arg-type]
        assert format_clock_time(CHECKOUT["complete_by"], locale) in email.text  # type: ignore[arg-type]
        assert format_money(1500, "EUR", locale) in email.text
        assert "None" not in email.subject + email.text  # the missing invoice number is not shown
        if locale != "en":
            assert email.subject != english.subject and email.text != english.text
        if "card_brand" in context:
            assert "Visa" in email.text and "4242" in email.text


@pytest.mark.parametrize("locale", LOCALES)
def test_money_and_dates_in_every_email_follow_the_locale(locale: str) -> None:
    pln = {**CONTEXTS["payment_reminder"], "amount_due": 1250, "currency": "PLN"}
    email = render("payment_reminder", locale, pln, BRAND)
    assert format_money(1250, "PLN", locale) in email.text and format_money(1250, "PLN", locale) in email.html
    assert format_day(T, locale) in email.text and format_day(T, locale) in email.html
    expiring = render("card_expiring", locale, CONTEXTS["card_expiring"], BRAND)
    assert format_month(4, 2025, locale) in expiring.text


@pytest.mark.parametrize(
    ("locale", "amount", "day", "greeting"),
    [
        ("es", f"12,50{NBSP}PLN", "14 de marzo de 2025", "Hola:"),
        ("it", f"12,50{NBSP}PLN", "14 marzo 2025", "Ciao,"),
        ("pl", f"12,50{NBSP}zł", "14 marca 2025", "Dzień dobry,"),
        ("sv", f"12,50{NBSP}PLN", "14 mars 2025", "Hej,"),
    ],
)
def test_the_new_languages_read_right(locale: str, amount: str, day: str, greeting: str) -> None:
    email = render("payment_reminder", locale, {**CONTEXTS["payment_reminder"], "amount_due": 1250, "currency": "PLN"})
    assert email.text.startswith(f"{greeting}\n\n")
    assert amount in email.text and day in email.text
    assert "KASSA-0004" in email.subject and "Reminder" not in email.subject


def test_polish_and_swedish_cards_fit_the_sentence() -> None:
    # Polish names the card in the nominative ("karta Visa …"), inside a parenthesis or as the subject
    renewal = {**CONTEXTS["upcoming_renewal"], "card_brand": "visa", "card_last4": "4242"}
    branded = render("upcoming_renewal", "pl", renewal).text
    assert "z zapisanej metody płatności (karta Visa z końcówką 4242)." in branded
    unbranded = render("upcoming_renewal", "pl", {**renewal, "card_brand": None}).text
    assert "(karta z końcówką 4242)." in unbranded
    expiring = render("card_expiring", "pl", CONTEXTS["card_expiring"]).text
    assert "Twoja karta Mastercard z końcówką 4444, którą" in expiring and "(data ważności: kwiecień 2025)" in expiring
    assert "från ditt Visa-kort som slutar på 4242." in render("upcoming_renewal", "sv", renewal).text
    assert "i slutet av april 2025" in render("card_expiring", "sv", CONTEXTS["card_expiring"]).text


def test_english_receipt_reads_right() -> None:
    email = render("receipt", "en", CONTEXTS["receipt"], BRAND)
    assert email.subject == "Receipt KASSA-0001 from Bakkerij"
    assert email.text.startswith("Hello Anna,\n\nThank you for your payment of €15.00 on March 14, 2025.")
    assert "Payment method: Visa ending in 4242" in email.text
    assert "Period: March 14, 2025 – April 14, 2025" in email.text
    assert "View invoice:\nhttps://shop.test/invoices/1" in email.text
    assert email.locale == "en"


@pytest.mark.parametrize(
    ("locale", "subject", "phrase"),
    [
        ("nl", "Betaling mislukt voor factuur KASSA-0002", "We proberen het opnieuw op 14 maart 2025."),
        ("de", "Zahlung für Rechnung KASSA-0002 fehlgeschlagen", "Wir versuchen es am 14. März 2025 erneut."),
        ("fr", "Échec du paiement de la facture KASSA-0002", "Nous réessaierons le 14 mars 2025."),
        ("es", "Error en el pago de la factura KASSA-0002", "Volveremos a intentarlo el 14 de marzo de 2025."),
        ("it", "Pagamento non riuscito per la fattura KASSA-0002", "Riproveremo in data 14 marzo 2025."),
        ("pl", "Płatność za fakturę KASSA-0002 nie powiodła się", "Spróbujemy ponownie 14 marca 2025."),
        ("sv", "Betalningen för faktura KASSA-0002 misslyckades", "Vi försöker igen den 14 mars 2025."),
        ("en", "Payment failed for invoice KASSA-0002", "We will try again on March 14, 2025."),
    ],
)
def test_payment_failed_in_each_language(locale: str, subject: str, phrase: str) -> None:
    email = render("payment_failed", locale, CONTEXTS["payment_failed"], BRAND)
    assert email.subject == subject
    assert phrase in email.text and phrase in email.html
    # the secure card-update link, escaped in HTML and verbatim in text
    assert 'href="https://shop.test/card?token=abc&amp;x=1"' in email.html
    assert "https://shop.test/card?token=abc&x=1" in email.text


def test_optional_parts_follow_the_context() -> None:
    hard = render("payment_failed", "en", {**CONTEXTS["payment_failed"], "next_retry_at": None})
    assert "try again" not in hard.text and "Please update your payment method" in hard.text
    with_card = render(
        "payment_failed", "en", {**CONTEXTS["payment_failed"], "card_brand": "amex", "card_last4": "0005"}
    )
    assert "from your American Express ending in 0005" in with_card.text
    coupon = render("win_back", "de", {**CONTEXTS["win_back"], "coupon_expires_at": date(2025, 4, 1)})
    assert "Verwenden Sie den Code WELCOME20" in coupon.text and "bis zum 1. April 2025 gültig" in coupon.text
    plain = render("win_back", "de", required_only("win_back"))
    assert "Code" not in plain.text
    trial = render("trial_ending", "fr", {**CONTEXTS["trial_ending"], "has_payment_method": True})
    assert "continuera ensuite" in trial.text
    expiring = render("card_expiring", "nl", CONTEXTS["card_expiring"], BRAND)
    assert "Mastercard eindigend op 4444" in expiring.text and "eind april 2025" in expiring.text
    canceled = render("subscription_canceled", "en", required_only("subscription_canceled"))
    assert "could not collect" not in canceled.text
    unpaid = render("subscription_canceled", "en", CONTEXTS["subscription_canceled"])  # reason payment_failed
    assert "could not collect the outstanding payment" in unpaid.text and "could not collect" in unpaid.html


def test_no_name_greets_generically() -> None:
    assert render("receipt", "nl", required_only("receipt")).text.startswith("Beste klant,")
    assert render("receipt", "de", {**CONTEXTS["receipt"], "customer_name": "Jörg"}).text.startswith("Hallo Jörg,")


# ---------------------------------------------------------------------------- money and dates
@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (1500, "EUR", "nl", f"€{NBSP}15,00"),
        (1500, "EUR", "de", f"15,00{NBSP}€"),
        (1500, "EUR", "fr", f"15,00{NBSP}€"),  # babel puts a no-break space before the symbol
        (1500, "EUR", "en", "€15.00"),
        (1200, "JPY", "en", "¥1,200"),
        (1200, "JPY", "de", f"1.200{NBSP}¥"),
        (1200, "JPY", "nl", f"JP¥{NBSP}1.200"),
        (1200, "JPY", "fr", f"1{NNBSP}200{NBSP}JPY"),  # French groups with a narrow no-break space
        (4500, "KWD", "en", "KWD4.500"),
        (4500, "KWD", "de", f"4,500{NBSP}KWD"),
        (4500, "KWD", "fr", f"4,500{NBSP}KWD"),
        (123456789, "EUR", "fr", f"1{NNBSP}234{NNBSP}567,89{NBSP}€"),
        (123456789, "USD", "en", "$1,234,567.89"),
        (-1500, "EUR", "en", "-€15.00"),
        (1, "EUR", "nl", f"€{NBSP}0,01"),
        (0, "JPY", "en", "¥0"),
        (1500, "IQD", "en", "IQD1.500"),  # kassa's exponent (ISO 4217: 3), not CLDR's 0
        (1999, "eur", "en", "€19.99"),
        (1500, "EUR", "nl_BE", f"€{NBSP}15,00"),
        (1250, "PLN", "pl", f"12,50{NBSP}zł"),
        (1500, "EUR", "pl", f"15,00{NBSP}€"),
        (123456789, "PLN", "pl", f"1{NBSP}234{NBSP}567,89{NBSP}zł"),
        (1250, "SEK", "sv", f"12,50{NBSP}kr"),
        (123456789, "SEK", "sv", f"1{NBSP}234{NBSP}567,89{NBSP}kr"),
        (1500, "EUR", "es", f"15,00{NBSP}€"),
        (123456789, "EUR", "es", f"1.234.567,89{NBSP}€"),
        (1500, "EUR", "it", f"15,00{NBSP}€"),
        (1200, "JPY", "it", f"1.200{NBSP}JPY"),
    ],
)
def test_money_formatting(amount: int, currency: str, locale: str, expected: str) -> None:
    assert format_money(amount, currency, locale) == expected


def test_money_is_exact() -> None:
    assert to_decimal(1500, "EUR") == Decimal("15.00")
    assert to_decimal(1200, "JPY") == Decimal("1200")
    assert to_decimal(4500, "KWD") == Decimal("4.500")
    big = 10**20 + 1  # more digits than a float holds
    assert format_money(big, "EUR", "en") == "€1,000,000,000,000,000,000.01"
    assert format_money(Money(4500, "KWD"), locale="de") == f"4,500{NBSP}KWD"


@pytest.mark.parametrize("bad", [15.0, Decimal("15.00"), "1500", True])
def test_money_refuses_anything_but_integer_minor_units(bad: object) -> None:
    with pytest.raises(EmailTemplateError):
        format_money(bad, "EUR", "en")  # type: ignore[arg-type]


def test_unknown_currency_fails() -> None:
    with pytest.raises(InvalidInput):
        format_money(100, "XXX", "en")
    with pytest.raises(EmailTemplateError):
        render("payment_failed", "en", {**CONTEXTS["payment_failed"], "currency": "XXX"})


@pytest.mark.parametrize(
    ("locale", "long", "month"),
    [
        ("en", "March 14, 2025", "March 2025"),
        ("nl", "14 maart 2025", "maart 2025"),
        ("de", "14. März 2025", "März 2025"),
        ("fr", "14 mars 2025", "mars 2025"),
        ("es", "14 de marzo de 2025", "marzo de 2025"),
        ("it", "14 marzo 2025", "marzo 2025"),
        ("pl", "14 marca 2025", "marzec 2025"),
        ("sv", "14 mars 2025", "mars 2025"),
    ],
)
def test_dates_are_localized(locale: str, long: str, month: str) -> None:
    assert format_day(T, locale) == long
    assert format_day(date(2025, 3, 14), locale) == long
    assert format_month(3, 2025, locale) == month


def test_dates_in_a_time_zone_and_naive_ones_refused() -> None:
    late = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)
    assert format_day(late, "en") == "March 14, 2025"
    assert format_day(late, "en", tz="Europe/Amsterdam") == "March 15, 2025"
    email = render("payment_failed", "en", {**CONTEXTS["payment_failed"], "next_retry_at": late}, timezone="Asia/Tokyo")
    assert "March 15, 2025" in email.text
    with pytest.raises(EmailTemplateError):
        format_day(datetime(2025, 3, 14), "en")  # noqa: DTZ001


# ---------------------------------------------------------------------------- escaping and safety
def test_customer_names_are_escaped_in_html_only() -> None:
    name = '<script>alert("x")</script> & Co'
    email = render("receipt", "en", {**CONTEXTS["receipt"], "customer_name": name, "plan_name": "<b>Pro</b>"})
    assert "<script>" not in email.html and "<b>Pro</b>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in email.html
    assert "&lt;b&gt;Pro&lt;/b&gt;" in email.html
    assert email.text.startswith(f"Hello {name},")  # plain text is not HTML


def test_subject_cannot_carry_a_header_break() -> None:
    email = render("upcoming_renewal", "en", {**CONTEXTS["upcoming_renewal"], "plan_name": "Pro\r\nBcc: x@y.test"})
    assert "\n" not in email.subject and "\r" not in email.subject


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "//evil.test", 42])
def test_links_must_be_http(url: object) -> None:
    with pytest.raises(EmailTemplateError, match="update_card_url"):
        render("payment_failed", "en", {**CONTEXTS["payment_failed"], "update_card_url": url})


def test_missing_and_reserved_variables_fail_loudly() -> None:
    context = dict(CONTEXTS["payment_failed"])
    del context["update_card_url"]
    with pytest.raises(EmailTemplateError, match="update_card_url"):
        render("payment_failed", "en", context)
    with pytest.raises(EmailTemplateError, match="reserved"):
        render("payment_failed", "en", {**CONTEXTS["payment_failed"], "branding": "x"})
    with pytest.raises(EmailTemplateError, match="unknown email template"):
        render("newsletter", "en", {})


def test_strict_undefined_in_an_override() -> None:
    overrides = {"receipt.txt.j2": "{{ invoice_numbr }}"}
    with pytest.raises(UndefinedError):
        render("receipt", "en", CONTEXTS["receipt"], overrides=overrides)


def test_merchant_templates_run_sandboxed() -> None:
    overrides = {"receipt.txt.j2": "{{ t.__globals__ }}"}
    with pytest.raises(SecurityError):
        render("receipt", "en", CONTEXTS["receipt"], overrides=overrides)


# ---------------------------------------------------------------------------- overrides and branding
def test_override_a_template_with_a_dict() -> None:
    overrides = {
        "receipt.subject.j2": "Thanks! {{ money(amount_paid, currency) }}",
        "receipt.txt.j2": "Paid {{ money(amount_paid, currency) }} for {{ plan_name }} <3",
        "nl/receipt.txt.j2": "Betaald: {{ money(amount_paid, currency) }}",
    }
    english = render("receipt", "en", CONTEXTS["receipt"], overrides=overrides)
    assert english.subject == "Thanks! €15.00"
    assert english.text == "Paid €15.00 for Pro <3\n"
    assert "Thank you for your payment" in english.html  # the HTML part was not overridden
    dutch = render("receipt", "nl", CONTEXTS["receipt"], overrides=overrides)
    assert dutch.text == f"Betaald: €{NBSP}15,00\n"  # a per-language override wins
    assert dutch.subject == f"Thanks! €{NBSP}15,00"


def test_override_the_layout_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "layout.html.j2").write_text(
        '<!DOCTYPE html><html lang="{{ language }}"><body class="custom">{% block content %}{% endblock %}'
        "<footer>{{ branding.name }}</footer></body></html>",
        encoding="utf-8",
    )
    email = render("payment_reminder", "de", CONTEXTS["payment_reminder"], BRAND, overrides=tmp_path)
    assert 'class="custom"' in email.html and "<footer>Bakkerij</footer>" in email.html
    assert "Erinnerung" in email.subject


def test_override_with_a_loader_and_a_template_of_the_merchants_own() -> None:
    loader = DictLoader(
        {
            "final_notice.subject.j2": "{{ t('payment_reminder.subject', number=invoice_number) }}",
            "final_notice.html.j2": "<p>{{ invoice_number }}</p>",
            "final_notice.txt.j2": "{{ invoice_number }}",
        }
    )
    email = render("final_notice", "fr", {"invoice_number": "<7>"}, overrides=loader)
    assert email.subject == f"Rappel{NBSP}: la facture <7> est toujours impayée"
    assert email.html == "<p>&lt;7&gt;</p>\n" and email.text == "<7>\n"


def test_branding() -> None:
    brand = Branding(name="Bakkerij", colour="#0a7", logo_url="https://cdn.test/logo.png", support_email="a@b.test")
    email = render("receipt", "en", CONTEXTS["receipt"], brand)
    assert 'src="https://cdn.test/logo.png"' in email.html and 'alt="Bakkerij"' in email.html
    assert "border-top:4px solid #0a7" in email.html and "background:#0a7" in email.html
    assert "The Bakkerij team" in email.text and "a@b.test" in email.text
    default = render("receipt", "en", CONTEXTS["receipt"])
    assert "The kassa team" in default.text and "Questions?" not in default.text


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"colour": "red; background:url(x)"}, "branding.colour"),
        ({"colour": "#12345"}, "branding.colour"),
        ({"logo_url": "http://cdn.test/logo.png"}, "branding.logo_url"),
        ({"logo_url": "javascript:alert(1)"}, "branding.logo_url"),
        ({"name": " "}, "branding.name"),
        ({"support_email": "nobody"}, "branding.support_email"),
    ],
)
def test_branding_is_validated(kwargs: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        Branding(**kwargs)
    assert error.value.param == param


def test_branding_from_merchant_settings() -> None:
    settings = MerchantSettings(seller_name="Bakkerij Jansen", support_email="info@jansen.test")
    brand = Branding.from_settings(settings, colour="#336699")
    assert (brand.name, brand.support_email, brand.colour) == ("Bakkerij Jansen", "info@jansen.test", "#336699")


def test_merchant_templates_may_be_per_supported_language_only() -> None:
    names = [f"{language}/receipt.txt.j2" for language in SUPPORTED_LOCALES]
    settings = MerchantSettings.model_validate({"emails": {"templates": dict.fromkeys(names, "Betaald")}})
    assert sorted(settings.emails.templates) == sorted(names)
    polish = render("receipt", "pl", CONTEXTS["receipt"], overrides=settings.emails.templates)
    assert polish.text == "Betaald\n" and "Dziękujemy" in polish.html  # the text body is the merchant's
    for bad in ("pt/receipt.txt.j2", "p/receipt.txt.j2", "pl|sv/receipt.txt.j2", "PL/receipt.txt.j2"):
        with pytest.raises(ValueError, match="must be named"):
            MerchantSettings.model_validate({"emails": {"templates": {bad: "x"}}})


# ---------------------------------------------------------------------------- locales
@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("nl", ("nl", "nl")),
        ("nl-BE", ("nl", "nl_BE")),
        ("de_AT", ("de", "de_AT")),
        ("fr-CA", ("fr", "fr_CA")),
        ("en_GB", ("en", "en_GB")),
        ("es", ("es", "es")),
        ("es-MX", ("es", "es_MX")),
        ("pl_PL", ("pl", "pl_PL")),
        ("sv-FI", ("sv", "sv_FI")),
        ("pt", ("en", "en")),
        ("pt-BR", ("en", "en")),
        ("zz", ("en", "en")),
        ("", ("en", "en")),
        (None, ("en", "en")),
        ("../../etc/passwd", ("en", "en")),
    ],
)
def test_locale_resolution(locale: str | None, expected: tuple[str, str]) -> None:
    assert resolve_locale(locale) == expected


def test_unknown_locale_falls_back_to_english() -> None:
    email = render("payment_failed", "pt", CONTEXTS["payment_failed"], BRAND)
    assert email.subject == "Payment failed for invoice KASSA-0002"
    assert "€15.00" in email.text and "March 14, 2025" in email.text
    assert email.locale == "en" and '<html lang="en">' in email.html


def test_a_regional_locale_formats_for_its_region() -> None:
    email = render("receipt", "de-CH", CONTEXTS["receipt"])
    assert email.locale == "de_CH" and "Vielen Dank" in email.text
    assert f"EUR{NBSP}15.00" in email.text  # Swiss German formatting of euros
