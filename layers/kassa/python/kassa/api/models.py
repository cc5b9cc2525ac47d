"""Request bodies of the HTTP API (validated by Powertools with pydantic; errors name the field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from kassa.domain.cancellation import CancellationFeedback, CancellationReason
from kassa.domain.catalog import TaxBehavior, UsageType
from kassa.domain.customer import SUPPORTED_LOCALES, Address
from kassa.domain.discounts import Duration
from kassa.domain.items import ItemChange
from kassa.domain.money import MAX_AMOUNT, normalize_currency
from kassa.domain.pausing import PauseBehavior
from kassa.domain.payments import RefundReason
from kassa.domain.periods import Interval
from kassa.domain.pricing import BillingScheme, PriceTerms, TiersMode
from kassa.domain.proration import ProrationBehavior
from kassa.domain.trials import MissingPaymentMethod
from kassa.domain.usage import Aggregation

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

# Tiers and transform_quantity are checked by the domain (PriceTerms.parse) so that an error names
# tiers[2].up_to; these schemas only document their shape in the OpenAPI document.
_MINOR_UNITS = {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT}
TierJson = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "up_to": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["inf"]}]},
                "unit_amount": _MINOR_UNITS,
                "flat_amount": _MINOR_UNITS,
            },
            "required": ["up_to"],
            "additionalProperties": False,
        }
    ),
]
TransformQuantityJson = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "divide_by": {"type": "integer", "minimum": 1},
                "round": {"type": "string", "enum": ["up", "down"]},
            },
            "required": ["divide_by", "round"],
            "additionalProperties": False,
        }
    ),
]


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
    usage_type: UsageType = Field(
        default=UsageType.LICENSED,
        description="licensed: a quantity billed in advance; metered: a meter's usage in arrears",
    )
    meter: str | None = Field(default=None, min_length=1, description="the meter a metered price bills (mtr_…)")


class PriceIn(Strict):
    product: str = Field(min_length=1)
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code")
    unit_amount: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_AMOUNT,
        description="per unit (or per package with transform_quantity), in the currency's minor unit "
        "(cents for EUR, yen for JPY); required for billing_scheme=per_unit, absent for tiered",
    )
    billing_scheme: BillingScheme = Field(
        default=BillingScheme.PER_UNIT, description="per_unit: unit_amount × quantity; tiered: priced by tiers"
    )
    tiers_mode: TiersMode | None = Field(
        default=None,
        description="graduated: each tier prices the units within it; volume: the tier the whole quantity "
        "falls into prices every unit. Required for billing_scheme=tiered",
    )
    tiers: list[TierJson] | None = Field(
        default=None,
        max_length=250,
        description="ascending tiers for billing_scheme=tiered: up_to (inclusive upper bound, an integer; "
        "the last tier's is the string 'inf'), unit_amount and/or flat_amount (integers in minor units; "
        "flat_amount is charged once per tier that has units)",
        examples=[
            [
                {"up_to": 5, "unit_amount": 700},
                {"up_to": 10, "unit_amount": 650},
                {"up_to": "inf", "unit_amount": 600, "flat_amount": 0},
            ]
        ],
    )
    transform_quantity: TransformQuantityJson | None = Field(
        default=None,
        description="package pricing for billing_scheme=per_unit: the quantity is divided by divide_by (>= 1) "
        "and rounded up or down before unit_amount applies",
        examples=[{"divide_by": 5, "round": "up"}],
    )
    unit_amount_decimal: str | None = Field(
        default=None,
        description="instead of unit_amount: a sub-unit price per unit as a decimal string of minor units "
        "(at most 12 decimal places, e.g. '0.05' cents per API call); a line is rounded once, half up",
        examples=["0.05"],
    )
    recurring: RecurringIn
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    nickname: str | None = Field(default=None, max_length=250)
    payment_method_types: list[str] | None = Field(
        default=None,
        max_length=3,
        description="narrows the merchant's payment_method_types for checkouts of this price: card, "
        "sepa_debit (EUR), us_bank_account (USD)",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        try:
            return normalize_currency(value)
        except Exception as error:
            raise ValueError(f"unsupported currency {value!r}") from error

    def terms(self) -> PriceTerms:
        """The pricing fields as checked PriceTerms (InvalidInput names the field, e.g. tiers[2].up_to)."""
        return PriceTerms.parse(
            billing_scheme=self.billing_scheme,
            unit_amount=self.unit_amount,
            tiers_mode=self.tiers_mode,
            tiers=self.tiers,
            transform_quantity=self.transform_quantity,
            unit_amount_decimal=self.unit_amount_decimal,
        )


class ProductUpdateIn(Strict):
    """``POST /v1/products/{id}``: only the fields given change; ``""`` (or null) removes description or tax_code."""

    name: str | None = Field(default=None, min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=1000)
    tax_code: str | None = None
    active: StrictBool | None = Field(default=None, description="false archives the product: it gets no new prices")


# A price's amounts and terms never change (Stripe: create a new price and archive this one).
IMMUTABLE_PRICE_FIELDS = (
    "product",
    "currency",
    "unit_amount",
    "billing_scheme",
    "tiers_mode",
    "tiers",
    "transform_quantity",
    "recurring",
    "tax_behavior",
)


class PriceUpdateIn(Strict):
    """``POST /v1/prices/{id}``: ``active`` and ``nickname`` only; a price's amounts and terms are immutable."""

    active: StrictBool | None = Field(
        default=None, description="false archives the price: it cannot be bought; subscriptions on it keep renewing"
    )
    nickname: str | None = Field(default=None, max_length=250, description='"" (or null) removes it')
    # Accepted only to be refused naming the field (hidden from the OpenAPI document).
    product: SkipJsonSchema[Any] = None
    currency: SkipJsonSchema[Any] = None
    unit_amount: SkipJsonSchema[Any] = None
    billing_scheme: SkipJsonSchema[Any] = None
    tiers_mode: SkipJsonSchema[Any] = None
    tiers: SkipJsonSchema[Any] = None
    transform_quantity: SkipJsonSchema[Any] = None
    recurring: SkipJsonSchema[Any] = None
    tax_behavior: SkipJsonSchema[Any] = None

    @field_validator(*IMMUTABLE_PRICE_FIELDS)
    @classmethod
    def _immutable(cls, value: Any, info: ValidationInfo) -> Any:
        raise PydanticCustomError(
            "immutable",
            "prices are immutable: {field} cannot change; create a new price and archive this one",
            {"field": info.field_name},
        )


class CustomerIn(Strict):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    name: str | None = Field(default=None, max_length=250)
    address: Address
    preferred_locale: str = "en"
    tax_id: str | None = Field(
        default=None, max_length=40, description="EU VAT number with its country prefix, or a national business number"
    )
    tax_exempt: bool = False
    peppol_id: str | None = Field(
        default=None, max_length=60, description="Peppol participant id '<scheme>:<id>' where e-invoices go"
    )

    @field_validator("preferred_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in SUPPORTED_LOCALES:
            raise ValueError(f"preferred_locale must be one of {', '.join(SUPPORTED_LOCALES)}")
        return value


class CheckoutIn(Strict):
    price_id: str | None = Field(default=None, min_length=1, description="shorthand for one item: its price")
    quantity: StrictInt = Field(default=1, ge=1, le=10000, description="shorthand: the one item's quantity")
    items: list[ItemIn] | None = Field(
        default=None, min_length=1, max_length=20, description="the subscription's items: [{price, quantity}]"
    )
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
    billing_thresholds: BillingThresholdsIn | None = Field(
        default=None, description="progressive billing: usage reaching amount_gte is invoiced at once"
    )


class CouponIn(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str | None = Field(default=None, max_length=40)
    percent_off: str | StrictInt | None = Field(
        default=None, description="a decimal string ('12.5') or an integer percentage, never a float"
    )
    amount_off: StrictInt | None = Field(default=None, ge=1, le=MAX_AMOUNT)
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


class ItemIn(Strict):
    price: str = Field(min_length=1)
    quantity: StrictInt | None = Field(
        default=None, ge=1, le=100000, description="default 1; a metered price takes none (its meter counts)"
    )


class BillingThresholdsIn(Strict):
    amount_gte: StrictInt = Field(
        ge=1, le=MAX_AMOUNT, description="invoice the usage so far when it reaches this amount (minor units)"
    )


class ChangeIn(Strict):
    price_id: str | None = Field(
        default=None, min_length=1, description="shorthand for a one-item subscription: the new price (default: keep)"
    )
    quantity: StrictInt | None = Field(default=None, ge=1, le=10000, description="shorthand: the one item's quantity")
    items: list[ItemChange] | None = Field(
        default=None,
        max_length=20,
        description='Stripe\'s item list: {"price", "quantity"} adds an item; {"id", "quantity"} or {"id", "price"} '
        'changes one; {"id", "deleted": true} removes one',
    )
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS
    schedule_downgrade_at_period_end: bool = Field(
        default=False, description="a cheaper plan takes effect at the period end instead of now"
    )


class InvoiceItemIn(Strict):
    amount: StrictInt = Field(
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="per unit, in the subscription currency's minor unit; negative: a credit",
    )
    description: str = Field(min_length=1, max_length=250)
    quantity: StrictInt = Field(default=1, ge=1, le=10000)


class MandateAcceptanceIn(Strict):
    """How the customer accepted a bank-debit mandate on the merchant's page (Stripe's
    ``customer_acceptance.online``): the browser's IP address and user agent, which the merchant's back
    end saw; kept with the mandate."""

    ip_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)


class CompleteIn(Strict):
    setup_intent_id: str = Field(min_length=1)
    mandate_acceptance: MandateAcceptanceIn | None = Field(
        default=None, description="a bank account's mandate: the customer's IP address and user agent"
    )


class ConfirmPaymentIn(Strict):
    payment_intent: str = Field(
        min_length=1, max_length=255, description="the PaymentIntent Stripe.js confirmed (confirmCardPayment)"
    )


class RedirectPaymentIn(Strict):
    payment_method_type: Literal["ideal", "bancontact"] = Field(
        description="one of the checkout's redirect_payment_method_types: ideal (customers in NL), bancontact (BE)"
    )
    return_url: str = Field(
        min_length=1,
        max_length=2048,
        description="where the bank sends the customer back (the storefront): Stripe appends payment_intent "
        "and redirect_status; then call /v1/checkout/{id}/confirm_payment with that payment_intent",
    )


class PortalTokenIn(Strict):
    token: str = Field(min_length=1, max_length=2000, description="the signed link's token")


class PortalConfirmIn(PortalTokenIn):
    setup_intent_id: str = Field(min_length=1, description="the SetupIntent confirmed by Stripe.js")


class PortalConfirmPaymentIn(PortalTokenIn):
    payment_intent: str = Field(min_length=1, max_length=255, description="the PaymentIntent Stripe.js confirmed")


class PayIn(Strict):
    paid_out_of_band: bool = Field(
        default=False, description="mark the invoice paid without charging (the money came another way)"
    )


class RefundIn(Strict):
    invoice: str = Field(min_length=1, description="the paid invoice whose payment is refunded")
    amount: StrictInt | None = Field(
        default=None, ge=1, le=MAX_AMOUNT, description="minor units; default: all that is left refundable"
    )
    reason: RefundReason | None = None


class CustomerUpdateIn(Strict):
    """``POST /v1/customers/{id}``: only the fields given change; null (or ``""``) removes name or tax_id."""

    email: str | None = Field(
        default=None, pattern=EMAIL_PATTERN, max_length=254, description="unique (case-insensitive)"
    )
    name: str | None = Field(default=None, max_length=250)
    address: Address | None = Field(default=None, description="invoices finalized from now on are taxed from it")
    preferred_locale: str | None = None
    tax_id: str | None = Field(
        default=None, max_length=40, description="EU VAT number with its country prefix, or a national business number"
    )
    tax_exempt: StrictBool | None = None
    peppol_id: str | None = Field(
        default=None, max_length=60, description="Peppol participant id '<scheme>:<id>'; null removes it"
    )

    @field_validator("preferred_locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and value not in SUPPORTED_LOCALES:
            raise ValueError(f"preferred_locale must be one of {', '.join(SUPPORTED_LOCALES)}")
        return value


class DiscountIn(Strict):
    """``POST /v1/subscriptions/{id}/discount``: a coupon or a customer-entered promotion code."""

    coupon: str | None = Field(default=None, min_length=1)
    promotion_code: str | None = Field(default=None, min_length=1, description="the code, as the customer typed it")


class PromotionCodeUpdateIn(Strict):
    active: StrictBool = Field(description="false: the code can no longer be redeemed (true reactivates it)")


class MeterIn(Strict):
    event_name: str = Field(
        min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$", description="the event_name events carry"
    )
    display_name: str = Field(min_length=1, max_length=250)
    aggregation: Aggregation = Field(description="count, sum, max, unique_count (of value_property) or latest")
    value_property: str | None = Field(
        default=None, min_length=1, max_length=100, description="the payload key aggregated (default: value)"
    )


class UsageAlertIn(Strict):
    amount_gte: StrictInt | None = Field(
        ge=1, le=MAX_AMOUNT, description="minor units of usage accrued in a period (null removes the alert)"
    )


class DashboardSignInIn(Strict):
    """Sign in to the dashboard with an email and password, or with one of the merchant's secret keys."""

    email: str | None = Field(default=None, max_length=254)
    password: str | None = Field(default=None, max_length=1000)
    key: str | None = Field(default=None, max_length=500, description="a secret key (ksk_…)")


class VariantIn(Strict):
    price: str = Field(min_length=1, max_length=255, description="an active price of the experiment's product")
    weight: StrictInt = Field(ge=1, le=100, description="percent of new checkouts; the weights sum to 100")
    name: str | None = Field(default=None, min_length=1, max_length=100, description="default: A, B, …")


class ExperimentIn(Strict):
    name: str = Field(min_length=1, max_length=250)
    product: str = Field(min_length=1, max_length=255, description="new checkouts of this product are split")
    variants: list[VariantIn] = Field(min_length=2, max_length=10)


class AssignmentIn(Strict):
    email: str | None = Field(default=None, min_length=3, max_length=254, description="a visitor, before checkout")
    customer_id: str | None = Field(default=None, min_length=1, max_length=255, description="a known customer")
