"""Bank debits in the domain: payment method kinds and what a checkout offers, the SEPA mandate (text,
creditor identifier, pre-notification), the settlement state machine through ``processing`` and the
banks' return reasons (kassa.domain.payment_methods)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from kassa.domain.customer import Address, Customer, PaymentMethodSummary, card_expiry_key
from kassa.domain.dunning import DeclineClass, classify
from kassa.domain.errors import InvalidInput
from kassa.domain.payment_methods import (
    BANK_RETURN_REASONS,
    Mandate,
    PaymentMethodKind,
    SettlementEffect,
    SettlementNews,
    accepted_mandate,
    ensure_types,
    may_charge,
    offered_types,
    pre_notification_at,
    return_reason_class,
    settlement_effect,
    validate_creditor_id,
)
from kassa.domain.settings import MerchantSettings
from kassa.emails.render import available_languages, mandate_terms

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
CARD, SEPA, ACH = PaymentMethodKind.CARD, PaymentMethodKind.SEPA_DEBIT, PaymentMethodKind.US_BANK_ACCOUNT


# ----------------------------------------------------------------------------- what a checkout offers
def test_the_merchant_offers_cards_by_default() -> None:
    assert MerchantSettings().payment_method_types == (CARD,)
    assert offered_types(MerchantSettings().payment_method_types, [None], "EUR") == (CARD,)


def test_a_price_narrows_the_merchants_types_and_the_currency_filters_bank_debits() -> None:
    merchant = [CARD, SEPA, ACH]
    assert offered_types(merchant, [None], "EUR") == (CARD, SEPA)  # ACH collects dollars only
    assert offered_types(merchant, [None], "usd") == (CARD, ACH)
    assert offered_types(merchant, [["sepa_debit"]], "EUR") == (SEPA,)
    assert offered_types(merchant, [["card", "sepa_debit"], ["sepa_debit"]], "EUR") == (SEPA,)
    # a price cannot add a type the merchant did not switch on
    assert offered_types([CARD], [["card", "sepa_debit"]], "EUR") == (CARD,)


def test_nothing_left_to_pay_with_names_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        offered_types([CARD, SEPA], [["sepa_debit"]], "USD", param="items[0].price")
    assert caught.value.param == "items[0].price"


def test_payment_method_types_are_validated_naming_the_entry() -> None:
    assert ensure_types(["card", "sepa_debit"], "payment_method_types") == (CARD, SEPA)
    with pytest.raises(InvalidInput) as caught:
        ensure_types(["card", "paypal"], "payment_method_types")
    assert caught.value.param == "payment_method_types[1]"
    with pytest.raises(InvalidInput):
        ensure_types(["card", "card"], "payment_method_types")
    with pytest.raises(ValidationError):
        MerchantSettings.model_validate({"payment_method_types": ["card", "card"]})
    with pytest.raises(ValidationError):
        MerchantSettings.model_validate({"payment_method_types": ["bitcoin"]})


# ----------------------------------------------------------------------------- mandates
def test_the_creditor_identifier_is_checked_with_iso_7064() -> None:
    assert validate_creditor_id("DE98 ZZZ0 9999 9999 99") == "DE98ZZZ09999999999"  # the Bundesbank's example
    with pytest.raises(InvalidInput) as caught:
        validate_creditor_id("DE97ZZZ09999999999")
    assert caught.value.param == "bank_debits.sepa_creditor_id"
    with pytest.raises(InvalidInput):
        validate_creditor_id("not an id")
    settings = MerchantSettings.model_validate({"bank_debits": {"sepa_creditor_id": "de98zzz09999999999"}})
    assert settings.bank_debits.sepa_creditor_id == "DE98ZZZ09999999999"
    with pytest.raises(ValidationError) as invalid:
        MerchantSettings.model_validate({"bank_debits": {"sepa_creditor_id": "DE00ZZZ09999999999"}})
    assert invalid.value.errors()[0]["loc"] == ("bank_debits", "sepa_creditor_id")


CREDITOR = "DE98ZZZ09999999999"
#: how each language names the creditor identifier, and the words that open the rulebook's mandate
#: (EPC: "you authorise (A) [creditor] to send instructions to your bank … and (B) your bank to debit")
MANDATE_WORDING = {
    "en": ("creditor identifier", "you authorise (A) Koffie BV", "within 8 weeks"),
    "de": ("Gläubiger-Identifikationsnummer", "Ich ermächtige Koffie BV", "innerhalb von acht Wochen"),
    "nl": ("incassant-ID", "geeft u toestemming aan (A) Koffie BV", "binnen 8 weken"),
    "fr": ("identifiant créancier SEPA", "vous autorisez (A) Koffie BV", "dans les 8 semaines"),
    "es": ("identificador del acreedor", "usted autoriza (A) a Koffie BV", "dentro de las ocho semanas"),
    "it": ("codice identificativo del creditore", "lei autorizza (A) Koffie BV", "nel termine di 8 settimane"),
    "pl": ("identyfikator wierzyciela", "upoważniasz (A) Koffie BV", "w ciągu 8 tygodni"),
    "sv": ("borgenärens identifieringskod", "ger du (A) Koffie BV", "inom 8 veckor"),
}


def test_every_customer_language_has_the_mandate_wording() -> None:
    assert set(MANDATE_WORDING) == available_languages()


@pytest.mark.parametrize("language", sorted(MANDATE_WORDING))
def test_the_mandate_names_the_creditor_its_identifier_the_refund_right_and_the_notice_in_each_language(
    language: str,
) -> None:
    label, opening, refund = MANDATE_WORDING[language]
    terms = mandate_terms(
        language,
        ["card", "sepa_debit", "us_bank_account"],
        seller_name="Koffie BV",
        creditor_id=CREDITOR,
        pre_notification_days=None,
    )
    assert terms is not None and terms["language"] == language
    text = terms["sepa_debit"]
    assert f"Koffie BV ({label} {CREDITOR})" in text  # the creditor's name and identifier, filled in
    assert opening in text and refund in text
    assert " 14 " in text  # the notice before each debit: the rulebook's 14 days
    assert "{" not in text and "}" not in text
    assert terms["sepa_debit_accept"] and "SEPA" in terms["sepa_debit_accept"]
    assert "Koffie BV" in terms["us_bank_account"] and "{" not in terms["us_bank_account"]
    if language != "en":  # translated, not English
        english = mandate_terms(
            "en", ["sepa_debit"], seller_name="Koffie BV", creditor_id=CREDITOR, pre_notification_days=None
        )
        assert english is not None and english["sepa_debit"] != text


def test_the_mandate_follows_the_customers_locale_and_falls_back_to_english() -> None:
    def sepa(locale: str | None, **kwargs: object) -> str:
        defaults: dict[str, object] = {
            "seller_name": "Koffie BV",
            "creditor_id": CREDITOR,
            "pre_notification_days": None,
        }
        terms = mandate_terms(locale, ["sepa_debit"], **{**defaults, **kwargs})  # type: ignore[arg-type]
        assert terms is not None
        return str(terms["sepa_debit"])

    assert sepa("de-AT").startswith("Ich ermächtige") and sepa("nl_BE").startswith("Door uw IBAN")
    assert sepa("pt") == sepa(None) == sepa("en")  # a language kassa does not speak: English
    assert "at least 3 days before" in sepa("en", creditor_id=None, pre_notification_days=3)
    assert "Koffie BV and Stripe" in sepa("en", creditor_id=None)  # no identifier yet: the name alone
    assert "mindestens 5 Tage vorher" in sepa("de", pre_notification_days=5)
    assert (
        mandate_terms("de", ["card"], seller_name="Koffie BV", creditor_id=CREDITOR, pre_notification_days=None) is None
    )


def test_an_accepted_mandate_keeps_when_where_and_with_what_browser() -> None:
    mandate = accepted_mandate(
        now=NOW, reference="NXDSYREGC9PSMKWY", ip_address="203.0.113.7", user_agent="Mozilla/5.0 " + "x" * 600
    )
    assert (mandate.reference, mandate.accepted_at, mandate.ip_address) == ("NXDSYREGC9PSMKWY", NOW, "203.0.113.7")
    assert mandate.user_agent is not None and len(mandate.user_agent) == 500
    with pytest.raises(InvalidInput):
        accepted_mandate(now=datetime(2026, 3, 2), reference=None, ip_address=None, user_agent=None)


def test_a_customers_default_method_can_be_a_bank_account_that_never_expires() -> None:
    account = PaymentMethodSummary(
        payment_method_id="pm_sepa_1",
        type=SEPA,
        last4="3000",
        bank_code="37040044",
        country="DE",
        mandate=Mandate(reference="M-1", accepted_at=NOW),
    )
    customer = Customer(
        id="cus_1", email="a@example.com", address=Address(country="NL"), created=NOW, default_payment_method=account
    )
    stored = Customer.model_validate(customer.model_dump(mode="json"))
    assert stored.default_payment_method == account
    assert account.is_bank_account and account.settles_later and card_expiry_key(account) is None
    card = PaymentMethodSummary(payment_method_id="pm_card", brand="visa", last4="4242", exp_month=1, exp_year=2030)
    assert card.type is CARD and not card.settles_later and card_expiry_key(card) == "pm_card:2030-01"


def test_pre_notification_is_14_days_before_the_debit_unless_the_mandate_says_otherwise() -> None:
    debit = datetime(2026, 4, 1, tzinfo=UTC)
    assert pre_notification_at(debit, None) == debit - timedelta(days=14)
    assert pre_notification_at(debit, None, default_days=5) == debit - timedelta(days=5)
    agreed = Mandate(reference="M", accepted_at=NOW, pre_notification_days=2)
    assert pre_notification_at(debit, agreed, default_days=5) == debit - timedelta(days=2)


# ----------------------------------------------------------------------------- settlement
def _effect(outcome: str | None, news: SettlementNews, attempt: int | None = 1, **kw: object) -> SettlementEffect:
    return settlement_effect(
        collectable=bool(kw.get("collectable", True)),
        attempt_count=int(kw.get("attempt_count", 1)),  # type: ignore[call-overload]
        attempt_outcome=outcome,
        news=news,
        news_attempt=attempt,
    )


P, S, F = SettlementNews.PROCESSING, SettlementNews.SUCCEEDED, SettlementNews.FAILED


@pytest.mark.parametrize(
    ("outcome", "news", "attempt", "expected"),
    [
        (None, P, 1, SettlementEffect.RECORD_PROCESSING),  # the charge went to the bank
        ("processing", P, 1, SettlementEffect.IGNORE),  # the same news twice
        ("processing", S, 1, SettlementEffect.MARK_PAID),  # settled
        ("processing", F, 1, SettlementEffect.RECORD_FAILURE),  # returned by the bank
        (None, F, 1, SettlementEffect.RECORD_FAILURE),  # failed before processing was recorded (reordered)
        ("declined", P, 1, SettlementEffect.IGNORE),  # processing delivered after failed (reordered)
        ("succeeded", P, 1, SettlementEffect.IGNORE),
        ("declined", F, 1, SettlementEffect.IGNORE),  # the failure twice: one effect
        ("declined", S, 1, SettlementEffect.MARK_PAID),  # a late succeeded after failed: the money came
        ("processing", F, None, SettlementEffect.RECORD_FAILURE),  # an intent without kassa's attempt number
    ],
)
def test_the_settlement_state_machine(
    outcome: str | None, news: SettlementNews, attempt: int | None, expected: SettlementEffect
) -> None:
    assert _effect(outcome, news, attempt) is expected


def test_an_older_attempts_news_and_a_closed_invoice_change_nothing() -> None:
    assert _effect("processing", F, attempt=1, attempt_count=2) is SettlementEffect.IGNORE
    assert _effect(None, P, attempt=1, attempt_count=2) is SettlementEffect.IGNORE
    assert _effect("declined", S, attempt=1, attempt_count=2) is SettlementEffect.MARK_PAID  # money is money
    for news in (P, S, F):
        assert _effect("succeeded", news, collectable=False) is SettlementEffect.IGNORE


def test_never_charge_while_an_attempt_is_processing() -> None:
    assert not may_charge("processing")
    assert all(may_charge(o) for o in (None, "declined", "requires_action", "succeeded"))


# ----------------------------------------------------------------------------- return reasons
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("insufficient_funds", DeclineClass.SOFT),
        ("AM04", DeclineClass.SOFT),
        ("R01", DeclineClass.SOFT),
        ("account_closed", DeclineClass.HARD),
        ("bank_account_closed", DeclineClass.HARD),
        ("AC04", DeclineClass.HARD),
        ("debit_not_authorized", DeclineClass.HARD),  # mandate revoked
        ("MD01", DeclineClass.HARD),  # no mandate
        ("no_account", DeclineClass.HARD),
        ("R07", DeclineClass.HARD),
        ("generic_could_not_process", DeclineClass.SOFT),
    ],
)
def test_bank_return_reasons_are_classified_by_dunning(code: str, expected: DeclineClass) -> None:
    assert classify("payment_intent_payment_attempt_failed", code) is expected
    assert return_reason_class(code) == expected.value


def test_every_return_reason_is_hard_or_soft_in_lower_case() -> None:
    assert all(code == code.lower() and cls in ("hard", "soft") for code, cls in BANK_RETURN_REASONS.items())
    assert return_reason_class("card_declined") is None
