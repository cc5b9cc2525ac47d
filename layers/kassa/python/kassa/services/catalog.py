"""Use case: the catalog — products and prices."""

from __future__ import annotations

from kassa.domain.catalog import Price, Product, Recurring, TaxBehavior
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.services.context import BillingContext


def create_product(
    ctx: BillingContext, name: str, description: str | None = None, tax_code: str | None = None
) -> Product:
    product = Product(id=new_id("prod", 14), name=name, description=description, tax_code=tax_code, created=ctx.now())
    ctx.store.put_product(product)
    ctx.emit(DomainEvent.of("product.created", product, product.created, cause="create"))
    return product


def create_price(
    ctx: BillingContext,
    product_id: str,
    currency: str,
    unit_amount: int,
    recurring: Recurring,
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE,
    nickname: str | None = None,
) -> Price:
    ctx.store.get_product(product_id)  # NotFound names the field
    price = Price(
        id=new_id("price", 20),
        product=product_id,
        currency=currency,
        unit_amount=unit_amount,
        recurring=recurring,
        tax_behavior=tax_behavior,
        nickname=nickname,
        created=ctx.now(),
    )
    ctx.store.put_price(price)
    ctx.emit(DomainEvent.of("price.created", price, price.created, cause="create"))
    return price
