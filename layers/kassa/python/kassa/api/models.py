"""Request bodies of the HTTP API (validated by Powertools with pydantic; errors name the field)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from kassa.domain.cancellation import CancellationFeedback, CancellationReason
from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import SUPPORTED_LOCALES, Address
from kassa.domain.discounts import Duration
from kassa.domain.money import normalize_currency
from kassa.domain.pausing import PauseBehavior
from kassa.domain.periods import Interval
from kassa.domain.proration import ProrationBehavior
from kassa.domain.trials import MissingPaymentMethod

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(Strict):
    name: str = Field(min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=1000)
    tax_code: str | None = None


class RecurringIn(Strict):
    interval: Interval
    interval_count: StrictInt = Field(default=1, ge=1)
    trial_period_days: StrictInt | None = Field(default=None, ge=1, le=730)


class PriceIn(Strict):
    product: str = Field(min_length=1)
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code")
    unit_amount: StrictInt = Field(ge=0, description="in the currency's minor unit (cents for EUR, yen for JPY)")
    recurring: RecurringIn
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    nickname: str | None = Field(default=None, max_length=250)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        try:
            return normalize_currency(value)
        except Exception as error:
            raise ValueError(f"unsupported currency {value!r}") from error


class CustomerIn(Strict):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    name: str | None = Field(default=None, max_length=250)
    address: Address
    preferred_locale: str = "en"
    tax_id: str | None = Field(
        default=None, max_length=40, description="EU VAT number with its country prefix, or a national business number"
    )
    tax_exempt: bool = False

    @field_validator("preferred_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in SUPPORTED_LOCALES:
            raise ValueError(f"preferred_locale must be one of {', '.join(SUPPORTED_LOCALES)}")
        return value


class CheckoutIn(Strict):
    price_id: str = Field(min_length=1)
    quantity: StrictInt = Field(default=1, ge=1, le=10000)
    customer_id: str | None = None
    customer: CustomerIn | None = None
    trial_days: StrictInt | None = Field(default=None, ge=1, le=730)
    billing_cycle_anchor: AwareDatetime | None = Field(
        default=None, description="when the first full period starts; the time before it is prorated"
    )
    backdate_start_date: AwareDatetime | None = Field(default=None, description="a start in the past, charged now")
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS
    coupon: str | None = Field(default=None, min_length=1)
    promotion_code: str | None = Field(default=None, min_length=1, description="a code the customer entered")
    trial_end_behavior: MissingPaymentMethod = Field(
        default=MissingPaymentMethod.CREATE_INVOICE, description="when a trial ends without a card on file"
    )


class CouponIn(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str | None = Field(default=None, max_length=40)
    percent_off: str | StrictInt | None = Field(
        default=None, description="a decimal string ('12.5') or an integer percentage, never a float"
    )
    amount_off: StrictInt | None = Field(default=None, ge=1)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    duration: Duration
    duration_in_months: StrictInt | None = Field(default=None, ge=1, le=120)
    max_redemptions: StrictInt | None = Field(default=None, ge=1)
    redeem_by: AwareDatetime | None = None
    applies_to: list[str] | None = Field(default=None, description="product ids")


class PromotionCodeIn(Strict):
    code: str = Field(min_length=1, max_length=64)
    coupon: str = Field(min_length=1)
    max_redemptions: StrictInt | None = Field(default=None, ge=1)
    expires_at: AwareDatetime | None = None
    customer: str | None = None
    first_time_transaction: bool = False


class PauseCollectionIn(Strict):
    behavior: PauseBehavior = Field(description="what becomes of invoices generated while paused")
    resumes_at: AwareDatetime | None = Field(default=None, description="collection resumes by itself then")


class CancelIn(Strict):
    at_period_end: bool = Field(default=False, description="cancel when the current period ends (undoable until then)")
    reason: CancellationReason = CancellationReason.CANCELLATION_REQUESTED
    feedback: CancellationFeedback | None = None
    comment: str | None = Field(default=None, max_length=5000)
    prorate: bool = Field(default=False, description="credit the unused time (immediate cancellation only)")


class ChangeIn(Strict):
    price_id: str | None = Field(default=None, min_length=1, description="the new price (default: keep)")
    quantity: StrictInt | None = Field(default=None, ge=1, le=10000)
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS
    schedule_downgrade_at_period_end: bool = Field(
        default=False, description="a cheaper plan takes effect at the period end instead of now"
    )


class InvoiceItemIn(Strict):
    amount: StrictInt = Field(description="per unit, in the subscription currency's minor unit; negative: a credit")
    description: str = Field(min_length=1, max_length=250)
    quantity: StrictInt = Field(default=1, ge=1, le=10000)


class CompleteIn(Strict):
    setup_intent_id: str = Field(min_length=1)


class PortalTokenIn(Strict):
    token: str = Field(min_length=1, max_length=2000, description="the signed link's token")


class PortalConfirmIn(PortalTokenIn):
    setup_intent_id: str = Field(min_length=1, description="the SetupIntent confirmed by Stripe.js")
