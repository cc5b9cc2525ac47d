"""Use case: coupons and promotion codes, and redeeming one for a subscription."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from kassa.domain.customer import Customer
from kassa.domain.discounts import (
    Coupon,
    Discount,
    PromotionCode,
    Redeemability,
    Unredeemable,
    discount_applies,
    has_prior_transactions,
    is_redeemable,
    redeem,
    running_discount_start,
    set_code_active,
    start_discount,
)
from kassa.domain.discounts import delete_coupon as mark_coupon_deleted
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.subscription import Subscription, ensure_not_ended
from kassa.services.context import (
    CONTENDED_RETRIES,
    RETRIES,
    BillingContext,
    publish_subscription_updated,
    retry_pause,
    update_subscription,
)
from kassa.services.ports import Page


def create_coupon(ctx: BillingContext, **fields: Any) -> Coupon:
    coupon = Coupon(**{"id": fields.pop("id", None) or new_id("co", 12), **fields, "created": ctx.now()})
    ctx.store.put_coupon(coupon)
    ctx.emit(DomainEvent.of("coupon.created", coupon, ctx.now(), cause="create"))
    return coupon


def create_promotion_code(ctx: BillingContext, code: str, coupon_id: str, **fields: Any) -> PromotionCode:
    fields.setdefault("created", ctx.now())
    promo = PromotionCode(id=new_id("promo", 14), code=code, coupon=ctx.store.get_coupon(coupon_id), **fields)
    ctx.store.put_promotion_code(promo)
    ctx.emit(DomainEvent.of("promotion_code.created", promo, ctx.now(), cause="create"))
    return promo


def load_offer(ctx: BillingContext, coupon_id: str | None, code: str | None) -> Coupon | PromotionCode:
    """The coupon, or the entered promotion code with its coupon as stored now (NotFound naming the field)."""
    if code is not None:
        promo = ctx.store.get_promotion_code(code)
        return promo.model_copy(update={"coupon": ctx.store.get_coupon(promo.coupon.id)})
    if coupon_id is None:
        raise InvalidInput("give a coupon or a promotion_code", param="coupon")
    return ctx.store.get_coupon(coupon_id)


def prior_transactions(ctx: BillingContext, customer_id: str | None) -> bool:
    """Whether the customer ever paid (Stripe's test for ``first_time_transaction`` codes): a paid
    invoice or one with money paid towards it, read from the store. A customer not created yet has none."""
    if customer_id is None:
        return False
    cursor = None
    while True:
        page = ctx.store.list_customer_invoices(customer_id, 100, cursor)
        if has_prior_transactions(page.items):
            return True
        if not page.has_more or not page.items:
            return False
        cursor = page.items[-1].id


def _redeemability(
    ctx: BillingContext,
    offer: Coupon | PromotionCode,
    customer: Customer | None,
    products: Collection[str],
    currency: str,
) -> Redeemability:
    customer_id = customer.id if customer is not None else None
    return is_redeemable(
        offer,
        ctx.now(),
        customer_id,
        list(products),
        currency=currency,
        has_prior_transactions=_has_prior(ctx, offer, customer_id),
    )


def _has_prior(ctx: BillingContext, offer: Coupon | PromotionCode, customer_id: str | None) -> bool:
    """Only a ``first_time_transaction`` code needs the customer's invoices read."""
    first_time_only = isinstance(offer, PromotionCode) and offer.first_time_transaction
    return first_time_only and prior_transactions(ctx, customer_id)


def check_redeemable(
    ctx: BillingContext,
    coupon_id: str | None,
    code: str | None,
    customer: Customer | None,
    products: Collection[str],
    currency: str,
) -> None:
    """Refuse (InvalidInput naming coupon or promotion_code; NotFound when unknown) an offer that
    could not be redeemed — before anything is written. ``customer`` None: a customer not created
    yet (no transactions; a customer-restricted code is not theirs). Counts nothing."""
    offer = load_offer(ctx, coupon_id, code)
    _redeemability(ctx, offer, customer, products, currency).raise_if_not(_param(offer))


def _param(offer: Coupon | PromotionCode) -> str:
    return "promotion_code" if isinstance(offer, PromotionCode) else "coupon"


def _redemption(
    ctx: BillingContext,
    coupon_id: str | None,
    code: str | None,
    customer: Customer,
    products: Collection[str],
    currency: str,
) -> tuple[Coupon, PromotionCode | None]:
    """The offer as stored now, checked and with one more redemption: the coupon (and the code) to
    count with ``count_redemption`` (InvalidInput naming the field when it cannot be redeemed)."""
    offer = load_offer(ctx, coupon_id, code)
    prior = _has_prior(ctx, offer, customer.id)
    redeemed = redeem(offer, ctx.now(), customer.id, list(products), currency=currency, has_prior_transactions=prior)
    if isinstance(redeemed, PromotionCode):
        return redeemed.coupon, redeemed
    return redeemed, None


def redeem_for(
    ctx: BillingContext,
    coupon_id: str | None,
    code: str | None,
    customer: Customer,
    products: Collection[str],
    currency: str,
    sub: Subscription,
) -> Subscription:
    """Redeem a coupon or a customer-entered promotion code for a new subscription: the redemption is
    counted under a condition and the subscription carries the discount from its current period.
    A ``first_time_transaction`` code is refused to a customer who paid before (the store's invoices)."""
    coupon, promo = _redemption(ctx, coupon_id, code, customer, products, currency)
    ctx.store.count_redemption(coupon, promo)  # under a condition: never past max_redemptions
    discount = start_discount(
        coupon, sub.current_period_start, customer=customer.id, subscription=sub.id, promotion_code=code
    )
    ctx.emit(DomainEvent.of("customer.discount.created", discount, ctx.now(), cause="create"))
    return sub.model_copy(update={"discount": discount.model_dump(mode="json")})


# ---------------------------------------------------------------- discounts on existing subscriptions
def apply_subscription_discount(
    ctx: BillingContext, subscription_id: str, coupon_id: str | None = None, code: str | None = None
) -> Subscription:
    """``POST /v1/subscriptions/{id}/discount``: redeem a coupon or promotion code under the checkout's
    rules and put its discount on the subscription, replacing any current one. The first invoice it
    covers is the next one (the next period's, or the trial's end); the current one is left as it is.

    The redemption and the subscription's new discount are one write (``count_redemption`` with the
    subscription, under its version), computed from a fresh read each attempt: of two identical
    requests at once one counts and the other, retried, finds the discount on and counts nothing; a
    failed write counts nothing. Replacing another coupon's discount does not un-count that one."""
    if (coupon_id is None) == (code is None):
        raise InvalidInput("give a coupon or a promotion_code (one of them)", param="coupon")
    customer: Customer | None = None
    for attempt in range(CONTENDED_RETRIES):
        if attempt:
            retry_pause(attempt)
        sub = ctx.store.get_subscription(subscription_id)
        ensure_not_ended(sub)
        if customer is None:  # a subscription's customer never changes
            customer = ctx.store.get_customer(sub.customer)
        products = [item.product or ctx.price(item.price).product for item in sub.items]
        if _already_applied(sub, coupon_id, code):
            # asked again: refused as the first time would be now (a deleted coupon, an inactive code), but
            # never counted twice — the redemptions already include this one — and nothing is published
            offer = load_offer(ctx, coupon_id, code)
            reasons = _redeemability(ctx, offer, customer, products, sub.currency).reasons
            Redeemability(tuple(r for r in reasons if r not in _COUNTED)).raise_if_not(_param(offer))
            return sub
        coupon, promo = _redemption(ctx, coupon_id, code, customer, products, sub.currency)
        now = ctx.now()
        start = running_discount_start(now, sub.current_period_start)
        discount = start_discount(coupon, start, customer=customer.id, subscription=sub.id, promotion_code=code)
        changed = sub.model_copy(update={"discount": discount.model_dump(mode="json")})
        try:
            saved = ctx.store.count_redemption(coupon, promo, changed)
        except Conflict:  # the subscription, the coupon or the code changed since read: read them again
            continue
        assert saved is not None  # given the subscription, the store returns it as saved
        publish_subscription_updated(ctx, sub, saved, ["discount"], cause=f"discount:{coupon.id}:{now.isoformat()}")
        if sub.discount is None:
            ctx.emit(DomainEvent.of("customer.discount.created", discount, now, cause="create"))
        else:  # Stripe: switching from one coupon to another
            ctx.emit(
                DomainEvent.of(
                    "customer.discount.updated", discount, now, cause="replace", previous={"coupon": sub.discount}
                )
            )
        return saved
    raise Conflict(f"subscription {subscription_id} kept changing; retry")


_COUNTED = frozenset({Unredeemable.COUPON_MAX_REDEMPTIONS, Unredeemable.CODE_MAX_REDEMPTIONS})


def _already_applied(sub: Subscription, coupon_id: str | None, code: str | None) -> bool:
    """Whether the subscription's discount is this very coupon (or code, case-insensitively) and still
    covers the next invoice: applying it again is the same request repeated, not a new redemption."""
    if sub.discount is None:
        return False
    current = Discount.model_validate(sub.discount)
    if code is not None:
        same = current.promotion_code is not None and current.promotion_code.casefold() == code.casefold()
    else:
        same = current.promotion_code is None and current.coupon.id == coupon_id
    return same and discount_applies(current, sub.current_period_end)


def remove_subscription_discount(ctx: BillingContext, subscription_id: str) -> Subscription:
    """``DELETE /v1/subscriptions/{id}/discount``: the next invoices are not discounted (NotFound when
    there is none); invoices already made keep their discount."""
    found: list[Discount] = []

    def remove(current: Subscription) -> dict[str, Any]:
        # the discount removed is the one on the fresh read (it may have been replaced meanwhile)
        if current.discount is None:
            raise NotFound(f"subscription {subscription_id} has no discount", param="discount")
        found[:] = [Discount.model_validate(current.discount)]
        return {"discount": None}

    saved = update_subscription(ctx, subscription_id, remove, cause="discount_deleted")
    removed = found[-1]
    ctx.emit(DomainEvent.of("customer.discount.deleted", removed, ctx.now(), cause="delete"))
    return saved


# ---------------------------------------------------------------- the merchant's coupons and codes
FILTER_BATCH = 100


def _filtered(
    fetch: Callable[[int, str | None], Page], limit: int, starting_after: str | None, keep: Callable[[Any], bool]
) -> Page:
    """Filter over the store's pages, reading on until ``limit`` + 1 matches (``has_more`` exact; the
    cursor stays an object of the unfiltered listing), as the catalog listings do."""
    matching: list[Any] = []
    cursor = starting_after
    while True:
        batch = fetch(max(FILTER_BATCH, limit + 1), cursor)
        matching.extend(item for item in batch.items if keep(item))
        if len(matching) > limit:
            return Page(matching[:limit], has_more=True)
        if not batch.has_more or not batch.items:
            return Page(matching, has_more=False)
        cursor = batch.items[-1].id


def list_coupons(ctx: BillingContext, limit: int, starting_after: str | None, active: bool | None = None) -> Page:
    """Coupons, newest first; ``active``: only those that can (or only those that cannot) be redeemed
    now — not deleted, not past ``redeem_by``, redemptions left (Stripe's ``valid``)."""
    if active is None:
        return ctx.store.list_coupons(limit, starting_after)
    now = ctx.now()
    return _filtered(ctx.store.list_coupons, limit, starting_after, lambda c: is_redeemable(c, now).ok is active)


def list_promotion_codes(
    ctx: BillingContext,
    limit: int,
    starting_after: str | None,
    active: bool | None = None,
    code: str | None = None,
    coupon: str | None = None,
) -> Page:
    """Promotion codes, newest first; ``active`` filters on the code's flag, ``code`` finds one
    (case-insensitively), ``coupon`` those of one coupon."""

    def keep(promo: PromotionCode) -> bool:
        return (active is None or promo.active is active) and (coupon is None or promo.coupon.id == coupon)

    if code is not None:
        try:
            found = ctx.store.get_promotion_code(code)
        except NotFound:
            return Page([], has_more=False)
        return Page([found] if keep(found) else [], has_more=False)
    if active is None and coupon is None:
        return ctx.store.list_promotion_codes(limit, starting_after)
    return _filtered(ctx.store.list_promotion_codes, limit, starting_after, keep)


def update_promotion_code(ctx: BillingContext, promotion_code_id: str, active: bool) -> PromotionCode:
    """``POST /v1/promotion_codes/{id}`` {active}: deactivate (no more redemptions) or reactivate;
    publishes ``promotion_code.updated`` with the previous value."""
    for _ in range(RETRIES):
        promo = ctx.store.get_promotion_code_by_id(promotion_code_id)
        updated = set_code_active(promo, active, ctx.store.get_coupon(promo.coupon.id))
        if updated.active == promo.active:
            return updated
        try:
            saved = ctx.store.save_promotion_code(updated)
        except Conflict:
            continue
        now = ctx.now()
        ctx.emit(
            DomainEvent.of(
                "promotion_code.updated", saved, now, cause=f"active:{saved.version}", previous={"active": promo.active}
            )
        )
        return saved
    raise Conflict("the promotion code kept changing; retry")


def delete_coupon(ctx: BillingContext, coupon_id: str) -> Coupon:
    """``DELETE /v1/coupons/{id}``: the coupon can no longer be redeemed (also through its codes);
    discounts already made from it go on (they hold their own copy). Deleting twice changes nothing."""
    for _ in range(RETRIES):
        coupon = ctx.store.get_coupon(coupon_id)
        deleted = mark_coupon_deleted(coupon)
        if deleted is coupon:
            return coupon
        try:
            saved = ctx.store.save_coupon(deleted)
        except Conflict:
            continue
        ctx.emit(DomainEvent.of("coupon.deleted", saved, ctx.now(), cause="delete"))
        return saved
    raise Conflict("the coupon kept changing; retry")
