"""The items property: any sequence of item changes keeps the invoices' sum equal to what the items
cost over the time they were held, within one minor unit per line.

A subscription of 1–3 items (per unit and graduated tiers, with flat fees) in EUR, JPY or KWD goes
through random item changes — add, change the quantity, change the price, delete (never the last) —
at random seconds inside its periods, each with ``always_invoice`` or ``create_prorations``, and
renews a few periods, all through the real services on the in-memory store (fakes.make_world). The
customer is in Oregon, where the seller is not registered: no tax, so a subtotal is what was billed.

Independently of the services, the test records which items were held from when to when and prices
that time exactly: Σ full-period amount × seconds held / seconds of the period (a Fraction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from fakes import World, make_world
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kassa.domain.catalog import Price, Recurring
from kassa.domain.customer import Address
from kassa.domain.items import ItemChange, SubscriptionItem
from kassa.domain.periods import Interval
from kassa.domain.pricing import BillingScheme, PriceTerms, Tier, TiersMode
from kassa.domain.proration import ProrationBehavior, whole_seconds
from kassa.domain.subscription import Subscription
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.plan_changes import change_plan
from kassa.services.renewals import process_due

START = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)  # an end-of-month anchor: periods of 28–31 days
PB = ProrationBehavior

CURRENCY = st.sampled_from(["EUR", "JPY", "KWD"])
AMOUNT = st.integers(min_value=0, max_value=50_000)
TIERS = st.tuples(st.integers(1, 5), st.integers(1, 10), AMOUNT, AMOUNT, AMOUNT, st.integers(0, 3000)).map(
    lambda t: (
        Tier(up_to=t[0], unit_amount=t[2], flat_amount=t[5]),
        Tier(up_to=t[0] + t[1], unit_amount=t[3]),
        Tier(up_to=None, unit_amount=t[4]),
    )
)
TERMS = st.one_of(
    AMOUNT.map(lambda a: PriceTerms(unit_amount=a)),
    TIERS.map(
        lambda tiers: PriceTerms(billing_scheme=BillingScheme.TIERED, tiers_mode=TiersMode.GRADUATED, tiers=tiers)
    ),
)
# (kind, which item / price, quantity, behaviour, periods to renew first, share of the period)
STEP = st.tuples(
    st.sampled_from(["add", "quantity", "price", "delete"]),
    st.integers(0, 5),
    st.integers(1, 25),
    st.sampled_from([PB.ALWAYS_INVOICE, PB.CREATE_PRORATIONS]),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.fractions(min_value=0, max_value=1),
)


@dataclass
class Held:
    """What the customer had: the items from ``since`` on, inside the billing period ``period``."""

    items: list[SubscriptionItem]
    since: datetime
    period: tuple[datetime, datetime]
    cost: Fraction = Fraction(0)

    def until(self, t: datetime) -> None:
        """Price the time from ``since`` to ``t`` of every item held."""
        start, end = self.period
        share = Fraction(whole_seconds(self.since, t), whole_seconds(start, end))
        self.cost += sum((Fraction(item.priced().amount) * share for item in self.items), Fraction(0))
        self.since = t


def sub_of(world: World, sub_id: str) -> Subscription:
    return world.store.get_subscription(sub_id)


def renew(world: World, sub_id: str, held: Held) -> None:
    sub = sub_of(world, sub_id)
    world.clock.set(sub.current_period_end)
    held.until(sub.current_period_end)
    assert process_due(world.billing, sub_id) == "paid"
    assert process_due(world.billing, sub_id) == "nothing"  # a redelivery does nothing
    renewed = sub_of(world, sub_id)
    assert renewed.current_period_start == sub.current_period_end and renewed.pending_lines == []
    held.items, held.period = list(renewed.items), (renewed.current_period_start, renewed.current_period_end)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    currency=CURRENCY,
    catalog=st.lists(TERMS, min_size=5, max_size=5),
    initial=st.lists(
        st.tuples(st.integers(0, 4), st.integers(1, 25)), min_size=1, max_size=3, unique_by=lambda x: x[0]
    ),
    steps=st.lists(STEP, max_size=10),
    tail=st.integers(1, 3),
)
def test_item_changes_bill_exactly_what_the_items_cost_over_the_time_held(
    currency: str,
    catalog: list[PriceTerms],
    initial: list[tuple[int, int]],
    steps: list[tuple[str, int, int, PB, int, Fraction]],
    tail: int,
) -> None:
    world = make_world(START)
    product = create_product(world.billing, "Plan")
    prices: list[Price] = [
        create_price(world.billing, product.id, currency, terms, Recurring(interval=Interval.MONTH))
        for terms in catalog
    ]
    checkout = start_checkout(
        world.billing,
        items=[(prices[i].id, q) for i, q in initial],
        email="ada@example.com",
        name="Ada",
        address=Address(country="US", state="OR"),
    )
    complete_checkout(world.billing, checkout.subscription.id, checkout.setup_intent.id)
    sub_id = checkout.subscription.id
    sub = sub_of(world, sub_id)
    held = Held(list(sub.items), sub.current_period_start, (sub.current_period_start, sub.current_period_end))

    for kind, which, quantity, behavior, skip, share in steps:
        for _ in range(skip):
            renew(world, sub_id, held)
        sub = sub_of(world, sub_id)
        length = whole_seconds(sub.current_period_start, sub.current_period_end)
        t = sub.current_period_start + timedelta(seconds=int(length * share))
        t = max(t, world.billing.now() + timedelta(seconds=1))  # one change per second: ids derive from it
        if t >= sub.current_period_end:
            continue
        on = {item.price for item in sub.items}
        free = [p for p in prices if p.id not in on]
        target = sub.items[which % len(sub.items)]
        if kind == "add" and free and len(sub.items) < 4:
            change = ItemChange(price=free[which % len(free)].id, quantity=quantity)
        elif kind == "quantity" and quantity != target.quantity:
            change = ItemChange(id=target.id, quantity=quantity)
        elif kind == "price" and free:
            change = ItemChange(id=target.id, price=free[which % len(free)].id)
        elif kind == "delete" and len(sub.items) > 1:
            change = ItemChange(id=target.id, deleted=True)
        else:
            continue
        world.clock.set(t)
        held.until(t)
        change_plan(world.billing, sub_id, items=[change], behavior=behavior)
        held.items = list(sub_of(world, sub_id).items)

    for _ in range(tail):  # the pending prorations go on the next renewal invoice
        renew(world, sub_id, held)
    held.until(sub_of(world, sub_id).current_period_end)  # the last period is billed in advance

    invoices = [i for i in world.store.invoices.values() if i.subscription == sub_id]
    lines = [line for invoice in invoices for line in invoice.lines]
    assert all(invoice.tax == 0 for invoice in invoices)
    assert sub_of(world, sub_id).pending_lines == []
    billed = sum(invoice.subtotal for invoice in invoices)
    assert billed == sum(line.amount for line in lines)
    # only proration lines are rounded (half up, at most half a minor unit each); full periods are exact
    rounded = sum(1 for line in lines if line.proration)
    event(f"proration lines: {min(rounded, 10) // 5 * 5}+")
    event(f"exact: {billed == held.cost}")
    assert abs(billed - held.cost) <= Fraction(rounded, 2)
    assert abs(billed - held.cost) <= len(lines)  # the wording: one minor unit per line
