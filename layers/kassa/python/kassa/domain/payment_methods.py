"""Payment methods beyond cards: bank debits (SEPA Direct Debit, ACH) with their mandates, their
asynchronous settlement and the banks' return reasons. Pure: no I/O, ``now`` is passed in.

- **Kinds** (``PaymentMethodKind``): ``card`` settles at once; ``sepa_debit`` and
  ``us_bank_account`` (ACH Direct Debit) are *delayed notification* methods — a PaymentIntent is
  ``processing`` for days (SEPA typically 5 business days, ACH 4) until Stripe sends
  ``payment_intent.succeeded`` or ``payment_intent.payment_failed`` (docs.stripe.com/payments/sepa-debit,
  /payments/ach-direct-debit). iDEAL and Bancontact are paid once by redirect; with
  ``setup_future_usage: off_session`` their first payment generates a ``sepa_debit`` PaymentMethod
  (``payment_method_details.<ideal|bancontact>.generated_sepa_debit``), which renewals then debit.
- **Which kinds a checkout offers** (:func:`offered_types`): the merchant's ``payment_method_types``
  (default ``["card"]``), narrowed by each price's own list, and by currency (SEPA debits euros, ACH
  dollars: Stripe's supported currencies for them); and which redirect methods may pay its first
  invoice (:func:`redirect_types`: iDEAL for Dutch, Bancontact for Belgian customers, in euros, with
  SEPA Direct Debit on).
- **The mandate** (:class:`Mandate`): the debtor's authorisation — reference, when, from which IP
  and user agent — kept with the customer. The text shown before it is accepted is in the customer's
  language (``kassa.emails.render.mandate_terms``, strings ``mandate.*`` of the emails' translations:
  the SEPA Core rulebook's wording with the creditor's name and identifier, the right to a refund
  within :data:`SEPA_REFUND_WEEKS` weeks, and the pre-notification period).
- **Settlement** (:func:`settlement_effect`): what news about an invoice's PaymentIntent does to it,
  order-tolerant and idempotent; never a second charge while one is processing (:func:`may_charge`).
- **Return reasons** (:data:`BANK_RETURN_REASONS`): Stripe's bank-debit failure codes and the raw
  SEPA (ISO 20022) and ACH (NACHA) return codes, hard (ask for a new payment method, no retry) or
  soft (retried on the dunning schedule). ``kassa.domain.dunning.classify`` reads this table.
- **Pre-notification** (:func:`pre_notification_at`): SEPA requires the debtor to be told amount and
  date before each debit — 14 calendar days by default (SEPA Core rulebook), or what the mandate says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kassa.domain.errors import InvalidInput


class PaymentMethodKind(StrEnum):
    CARD = "card"
    SEPA_DEBIT = "sepa_debit"
    US_BANK_ACCOUNT = "us_bank_account"
    # redirect methods: a checkout's first payment only, which leaves a sepa_debit for the renewals
    IDEAL = "ideal"
    BANCONTACT = "bancontact"


#: settle days after the charge (Stripe's "delayed notification payment methods")
ASYNC_SETTLEMENT = frozenset({PaymentMethodKind.SEPA_DEBIT, PaymentMethodKind.US_BANK_ACCOUNT})
#: need a mandate from the account holder before they are debited
NEEDS_MANDATE = ASYNC_SETTLEMENT
#: the currency each bank debit can collect (Stripe: SEPA Direct Debit eur only, ACH usd only)
DEBIT_CURRENCY: Mapping[PaymentMethodKind, str] = {
    PaymentMethodKind.SEPA_DEBIT: "EUR",
    PaymentMethodKind.US_BANK_ACCOUNT: "USD",
    PaymentMethodKind.IDEAL: "EUR",
    PaymentMethodKind.BANCONTACT: "EUR",
}
#: redirect methods whose first payment, saved for later (``setup_future_usage``), leaves a SEPA mandate
SEPA_GENERATING = frozenset({"ideal", "bancontact"})
#: whose customers a redirect method is offered to (their address): iDEAL is the Dutch banks' method,
#: Bancontact the Belgian
REDIRECT_COUNTRY: Mapping[str, str] = {"ideal": "NL", "bancontact": "BE"}
DEFAULT_TYPES: tuple[PaymentMethodKind, ...] = (PaymentMethodKind.CARD,)

#: SEPA Core rulebook: the debtor is pre-notified at least 14 calendar days before the debit unless
#: the mandate agrees on another period
DEFAULT_PRE_NOTIFICATION_DAYS = 14
#: SEPA Core: a debtor may ask their bank for a refund of an authorised debit for 8 weeks, no questions asked
SEPA_REFUND_WEEKS = 8


def _narrowed(
    merchant: Sequence[PaymentMethodKind | str],
    price_lists: Iterable[Sequence[PaymentMethodKind | str] | None],
    currency: str,
) -> list[PaymentMethodKind]:
    offered = [PaymentMethodKind(t) for t in merchant] or list(DEFAULT_TYPES)
    for narrowing in price_lists:
        if narrowing is not None:
            allowed = {PaymentMethodKind(t) for t in narrowing}
            offered = [t for t in offered if t in allowed]
    code = currency.upper()
    return [t for t in offered if DEBIT_CURRENCY.get(t, code) == code]


def offered_types(
    merchant: Sequence[PaymentMethodKind | str],
    price_lists: Iterable[Sequence[PaymentMethodKind | str] | None],
    currency: str,
    param: str = "payment_method_types",
) -> tuple[PaymentMethodKind, ...]:
    """The payment method types a checkout's SetupIntent (and the card page) offers: the merchant's,
    narrowed by every price that names its own (a price can only narrow, never add one the merchant
    has not switched on), then by the currency. The redirect methods (iDEAL, Bancontact) are not among
    them: they pay a first invoice (:func:`redirect_types`). None left is an InvalidInput naming ``param``."""
    offered = [t for t in _narrowed(merchant, price_lists, currency) if t.value not in SEPA_GENERATING]
    if not offered:
        code = currency.upper()
        raise InvalidInput(
            f"no payment method type is left for this checkout in {code}: the settings offer "
            f"{', '.join(PaymentMethodKind(t).value for t in merchant)}, the prices narrow them "
            "(sepa_debit collects EUR, us_bank_account USD)",
            param=param,
        )
    return tuple(dict.fromkeys(offered))


def redirect_types(
    merchant: Sequence[PaymentMethodKind | str],
    price_lists: Iterable[Sequence[PaymentMethodKind | str] | None],
    currency: str,
    country: str | None,
) -> tuple[str, ...]:
    """The redirect methods a checkout's first invoice may be paid with (Stripe: a PaymentIntent with
    ``payment_method_types=[ideal]``, ``setup_future_usage=off_session``): those the merchant and every
    price offer, in euros, for a customer in the method's country (iDEAL NL, Bancontact BE), and only
    while SEPA Direct Debit is offered too — the renewals debit the ``sepa_debit`` it generates."""
    narrowed = _narrowed(merchant, price_lists, currency)
    if PaymentMethodKind.SEPA_DEBIT not in narrowed:
        return ()
    where = (country or "").upper()
    return tuple(t.value for t in narrowed if t.value in SEPA_GENERATING and REDIRECT_COUNTRY[t.value] == where)


def check_redirect_types(kinds: Sequence[PaymentMethodKind | str]) -> None:
    """iDEAL and Bancontact are offered with ``sepa_debit``: the mandate they leave is a SEPA one."""
    values = {PaymentMethodKind(k).value for k in kinds}
    if values & SEPA_GENERATING and PaymentMethodKind.SEPA_DEBIT.value not in values:
        named = ", ".join(sorted(values & SEPA_GENERATING))
        raise ValueError(f"{named} leaves a SEPA Direct Debit mandate for the renewals: offer sepa_debit too")


def ensure_types(values: Sequence[str], param: str) -> tuple[PaymentMethodKind, ...]:
    """A list of payment method types as given by a merchant (unique, known, at least one)."""
    if not values:
        raise InvalidInput("give at least one payment method type", param=param)
    kinds = []
    for i, value in enumerate(values):
        try:
            kinds.append(PaymentMethodKind(value))
        except ValueError:
            known = ", ".join(k.value for k in PaymentMethodKind)
            raise InvalidInput(f"{value!r} is not a payment method type ({known})", param=f"{param}[{i}]") from None
    if len(set(kinds)) != len(kinds):
        raise InvalidInput("each payment method type once", param=param)
    return tuple(kinds)


# ====================================================================== mandates
class Mandate(BaseModel):
    """The debtor's authorisation to debit their account, as accepted online (Stripe's
    ``mandate_data.customer_acceptance``): kept with the customer for as long as the method is used."""

    model_config = ConfigDict(frozen=True)

    # the mandate reference the bank sees (Stripe: payment_method_details.sepa_debit.reference)
    reference: str | None = None
    stripe_mandate: str | None = None  # mandate_… (None where Stripe has no object for it, e.g. localstripe)
    url: str | None = None  # Stripe's hosted copy of the mandate
    accepted_at: datetime | None = None  # when the customer accepted it (kassa's clock at the confirmation)
    ip_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    acceptance: Literal["online", "offline"] = "online"
    # days before each debit that the debtor is told amount and date (None: the rulebook's 14)
    pre_notification_days: int | None = Field(default=None, ge=1, le=60)
    # generated by the first payment of another method (iDEAL, Bancontact)
    generated_from: str | None = None


def accepted_mandate(
    *,
    now: datetime,
    reference: str | None,
    ip_address: str | None,
    user_agent: str | None,
    stripe_mandate: str | None = None,
    url: str | None = None,
    generated_from: str | None = None,
) -> Mandate:
    """A mandate accepted now (online: the customer clicked through the mandate text on our page)."""
    if now.tzinfo is None:
        raise InvalidInput("a mandate's acceptance time must be timezone-aware", param="accepted_at")
    return Mandate(
        reference=reference,
        stripe_mandate=stripe_mandate,
        url=url,
        accepted_at=now,
        ip_address=(ip_address or None) and ip_address[:64],
        user_agent=(user_agent or None) and user_agent[:500],
        generated_from=generated_from,
    )


def _to_digits(text: str) -> str:
    return "".join(str(int(ch, 36)) for ch in text)


def validate_creditor_id(value: str, param: str = "bank_debits.sepa_creditor_id") -> str:
    """A SEPA Creditor Identifier: country, 2 check digits, a 3-character business code (not part of
    the check) and the national identifier; checked with ISO 7064 MOD 97-10 over the national part,
    the country and "00" (EPC262-08). ``DE98ZZZ09999999999`` is the Bundesbank's example."""
    cid = "".join(value.split()).upper()
    if not (8 <= len(cid) <= 35) or not cid.isalnum() or not cid[:2].isalpha() or not cid[2:4].isdigit():
        raise InvalidInput(f"{value!r} is not a SEPA creditor identifier (e.g. DE98ZZZ09999999999)", param=param)
    national = cid[7:]
    check = 98 - int(_to_digits(national + cid[:2] + "00")) % 97
    if check != int(cid[2:4]):
        raise InvalidInput(f"{value!r}: the check digits of this creditor identifier are wrong", param=param)
    return cid


def pre_notification_at(debit_at: datetime, mandate: Mandate | None, default_days: int | None = None) -> datetime:
    """When the debtor must have been told about a debit on ``debit_at``: the mandate's period, else
    the merchant's, else the rulebook's 14 days before it."""
    days = (mandate.pre_notification_days if mandate else None) or default_days or DEFAULT_PRE_NOTIFICATION_DAYS
    return debit_at - timedelta(days=days)


def renewal_notice_days(
    upcoming_days: int | None,
    kind: PaymentMethodKind | None,
    mandate: Mandate | None,
    *,
    pre_notification: bool,
    default_days: int | None = None,
) -> int | None:
    """How many days before a renewal the customer is reminded (``upcoming_renewal``): the merchant's
    ``upcoming_renewal_days``; for a SEPA Direct Debit customer at least the pre-notification period
    (the mandate's, else the merchant's, else 14), unless the merchant switched pre-notification off."""
    if kind is PaymentMethodKind.SEPA_DEBIT and pre_notification:
        return max(upcoming_days or 0, pre_notification_days(mandate, default_days))
    return upcoming_days


def pre_notification_days(mandate: Mandate | None, default_days: int | None = None) -> int:
    return (mandate.pre_notification_days if mandate else None) or default_days or DEFAULT_PRE_NOTIFICATION_DAYS


# ====================================================================== settlement
class SettlementNews(StrEnum):
    """What Stripe says about one attempt's PaymentIntent (synchronous answer or webhook)."""

    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SettlementEffect(StrEnum):
    RECORD_PROCESSING = "record_processing"  # the attempt is with the bank: wait, charge nothing more
    MARK_PAID = "mark_paid"
    RECORD_FAILURE = "record_failure"  # the attempt failed: dunning takes over (by its return reason)
    IGNORE = "ignore"  # a duplicate, stale or reordered report: no effect


def settlement_effect(
    *,
    collectable: bool,
    attempt_count: int,
    attempt_outcome: str | None,
    news: SettlementNews,
    news_attempt: int | None,
) -> SettlementEffect:
    """The state machine of an invoice's payment through ``processing``, order-tolerant:

    ``in flight`` —processing→ ``processing`` —succeeded→ ``paid`` (final)
                                             —failed→ ``declined`` (dunned; a retry is a new attempt)

    - ``succeeded`` pays a collectable invoice from any state, also after a ``failed`` (the money
      arrived; a late success wins) — it never changes a paid or void invoice;
    - ``processing`` is recorded only while the attempt has no outcome: after ``failed`` or
      ``succeeded`` (reordered events) it changes nothing, and twice it is one effect;
    - ``failed`` of the current attempt is recorded while it is in flight or processing; of an
      earlier attempt, or reported again, it changes nothing.
    """
    if not collectable:
        return SettlementEffect.IGNORE  # paid or void: final (a late failure after paid is a dispute)
    if news is SettlementNews.SUCCEEDED:
        return SettlementEffect.MARK_PAID
    stale = news_attempt is not None and news_attempt < attempt_count
    if news is SettlementNews.PROCESSING:
        if stale or attempt_outcome is not None:
            return SettlementEffect.IGNORE
        return SettlementEffect.RECORD_PROCESSING
    if stale:
        return SettlementEffect.IGNORE
    if attempt_outcome in (None, "processing", "requires_action"):
        return SettlementEffect.RECORD_FAILURE
    return SettlementEffect.IGNORE  # the same attempt's failure again: one effect


def may_charge(attempt_outcome: str | None) -> bool:
    """Never charge an invoice again while one of its attempts is with the bank."""
    return attempt_outcome != "processing"


# ====================================================================== return reasons
#: Bank-debit failure reasons: ``hard`` — the account or mandate cannot be debited again, ask the
#: customer for a new payment method and do not retry; ``soft`` — retried on the dunning schedule.
#: Stripe's codes (docs.stripe.com/declines/network-codes: ACH R01/R09 → insufficient_funds, R02 →
#: bank_account_closed, R03/R04 → bank_account_invalid_details, R05/R07/R08/R10/R11/R29 →
#: debit_not_authorized) plus the raw SEPA (ISO 20022 ExternalStatusReason) and ACH return codes a
#: bank reports, for integrations that pass them through.
BANK_RETURN_REASONS: Mapping[str, Literal["hard", "soft"]] = {
    # Stripe's codes
    "insufficient_funds": "soft",
    "generic_could_not_process": "soft",
    "could_not_process": "soft",
    "account_closed": "hard",
    "bank_account_closed": "hard",
    "no_account": "hard",
    "invalid_account_number": "hard",
    "bank_account_invalid_details": "hard",
    "account_frozen": "hard",
    "bank_account_frozen": "hard",
    "bank_account_restricted": "hard",
    "bank_account_unusable": "hard",
    "bank_ownership_changed": "hard",
    "debit_not_authorized": "hard",  # the mandate was revoked, or there is none
    "invalid_currency": "hard",
    "branch_does_not_exist": "hard",
    "incorrect_account_holder_name": "hard",
    "incorrect_account_holder_address": "hard",
    "refer_to_customer": "hard",
    "payment_method_microdeposit_verification_timeout": "hard",
    # SEPA R-transaction reason codes (ISO 20022)
    "am04": "soft",  # insufficient funds
    "ms03": "soft",  # reason not specified
    "ff01": "soft",  # technical problem
    "ac01": "hard",  # incorrect account number
    "ac04": "hard",  # account closed
    "ac06": "hard",  # account blocked
    "ag01": "hard",  # transaction forbidden on this account
    "md01": "hard",  # no valid mandate
    "md07": "hard",  # debtor deceased
    "ms02": "hard",  # refused by the debtor
    "sl01": "hard",  # specific service offered by the debtor bank (debit blocked)
    "rr04": "hard",  # regulatory reason
    # ACH (NACHA) return codes
    "r01": "soft",  # insufficient funds
    "r09": "soft",  # uncollected funds
    "r02": "hard",  # account closed
    "r03": "hard",  # no account
    "r04": "hard",  # invalid account number
    "r05": "hard",  # unauthorised debit to a consumer account
    "r07": "hard",  # authorisation revoked
    "r08": "hard",  # payment stopped
    "r10": "hard",  # not authorised by the customer
    "r16": "hard",  # account frozen
    "r20": "hard",  # non-transaction account
    "r29": "hard",  # corporate customer advises not authorised
}


def return_reason_class(code: str | None) -> Literal["hard", "soft"] | None:
    """The class of a bank's return reason (None: not a bank-debit reason)."""
    return BANK_RETURN_REASONS.get((code or "").strip().lower())


# ====================================================================== disputes on bank debits
def dispute_contestable(kind: str | None, debited_at: datetime | None, disputed_at: datetime | None) -> bool:
    """Whether the merchant can answer a dispute with evidence. SEPA Core: for 8 weeks after the debit
    the debtor gets a refund from their bank on request, no questions asked (a mandate is no defence);
    after that, until 13 months, only an unauthorised debit can be claimed, which the mandate answers.
    ACH: a return of a debit the customer says was unauthorised cannot be defended. Cards: contestable."""
    if kind == PaymentMethodKind.SEPA_DEBIT.value:
        if debited_at is None or disputed_at is None:
            return False
        return disputed_at - debited_at > timedelta(weeks=SEPA_REFUND_WEEKS)
    return kind != PaymentMethodKind.US_BANK_ACCOUNT.value
