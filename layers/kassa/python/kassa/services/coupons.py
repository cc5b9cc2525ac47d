"""Use case: coupons and promotion codes, and redeeming one for a subscription."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kassa.domain.customer import Customer
from kassa.domain.discounts import Coupon, PromotionCode, redeem, start_discount
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.subscription import Subscription
from kassa.services.context import BillingContext


def create_coupon(ctx: BillingContext, **fields: Any) -> Coupon:
    coupon = Coupon(**{"id": fields.pop("id", None) or new_id("co", 12), **fields, "created": ctx.now()})
    ctx.store.put_coupon(coupon)
    ctx.emit(DomainEvent.of("coupon.created", coupon, ctx.now(), cause="create"))
    return coupon


def create_promotion_code(ctx: BillingContext, code: str, coupon_id: str, **fields: Any) -> PromotionCode:
    promo = PromotionCode(id=new_id("promo", 14), code=code, coupon=ctx.store.get_coupon(coupon_id), **fields)
    ctx.store.put_promotion_code(promo)
    ctx.emit(DomainEvent.of("promotion_code.created", promo, ctx.now(), cause="create"))
    return promo


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
    counted under a condition and the subscription carries the discount from its current period."""
    offer: Coupon | PromotionCode
    if code is not None:
        promo = ctx.store.get_promotion_code(code)
        offer = promo.model_copy(update={"coupon": ctx.store.get_coupon(promo.coupon.id)})
    else:
        assert coupon_id is not None
        offer = ctx.store.get_coupon(coupon_id)
    redeemed = redeem(offer, ctx.now(), customer.id, list(products), currency=currency)
    coupon = redeemed.coupon if isinstance(redeemed, PromotionCode) else redeemed
    ctx.store.count_redemption(coupon, redeemed if isinstance(redeemed, PromotionCode) else None)
    discount = start_discount(
        coupon, sub.current_period_start, customer=customer.id, subscription=sub.id, promotion_code=code
    )
    ctx.emit(DomainEvent.of("customer.discount.created", discount, ctx.now(), cause="create"))
    return sub.model_copy(update={"discount": discount.model_dump(mode="json")})
