"""The customer portal's rules and use cases over the in-memory store: return URLs, settings that name
the field they refuse, single-use expiring session links, the session cookie's token, isolation
between customers, the plans a customer may switch to, cancellation with a reason and a retention
offer made once, sign-in by email (no enumeration, one email per window), and the pages' words in
every language."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fakes import FakeMailer, FakeOutbox, World
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from translations import assert_every_language_has_every_string, assert_word_files_are_json_objects_of_strings

from kassa.api.portal_page import Words, portal_languages, portal_strings, render, render_refused
from kassa.domain.customer import SUPPORTED_LOCALES, Address
from kassa.domain.errors import IllegalTransition, InvalidInput, NotFound
from kassa.domain.links import CARD_PURPOSES, INVOICE_PURPOSES, LinkExpired, LinkRefused, sign_link, verify_link
from kassa.domain.portal import PortalSettings, check_return_url, csrf_matches, csrf_token
from kassa.domain.settings import MerchantSettings
from kassa.services import catalog, coupons, portal
from kassa.services.dunning import Dunning

SECRET = "portal-test-secret"
PUBLIC = "https://billing.shop.example"


@pytest.fixture
def shop(world: World):
    product, basic = world.catalog(unit_amount=1000)
    premium = catalog.create_price(world.billing, product.id, "eur", 2000, basic.recurring, nickname="Premium")
    other_product, other = world.catalog(unit_amount=500)
    coupons.create_coupon(world.billing, id="STAY25", percent_off="25", duration="repeating", duration_in_months=3)
    settings = MerchantSettings(
        portal=PortalSettings.model_validate(
            {
                "subscription_update": {"products": {product.id: [basic.id, premium.id]}},
                "subscription_cancel": {"retention_coupon": "STAY25", "reasons": ["too_expensive", "other"]},
                "subscription_pause": {"enabled": True},
            }
        )
    )
    world.store.put_settings(settings)
    return {"basic": basic, "premium": premium, "other": other, "other_product": other_product}


def _subscriber(world: World, price, email: str):
    return world.active_subscription(price, email=email).subscription


# ---------------------------------------------------------------------------------- return URLs, settings
@pytest.mark.parametrize(
    "url",
    ["https://shop.example/account", "http://localhost:3000/back", "http://127.0.0.1:8080/x?y=1"],
)
def test_a_return_url_is_https_or_this_machine(url):
    assert check_return_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://shop.example/",  # plain http off this machine
        "https://user:pw@shop.example/",
        "//shop.example/x",
        "https://",
        "https://shop.example/" + "x" * 2000,
        "https://shop.example/a b",
        "",
    ],
)
def test_a_return_url_that_could_hurt_is_refused_naming_return_url(url):
    with pytest.raises(InvalidInput) as refused:
        check_return_url(url)
    assert refused.value.param == "return_url"


def test_the_merchant_may_list_the_hosts_a_return_url_points_to():
    assert check_return_url("https://shop.example/a", ["shop.example"])
    with pytest.raises(InvalidInput, match="not one of"):
        check_return_url("https://evil.example/a", ["shop.example"])


@pytest.mark.parametrize(
    ("portal", "where"),
    [
        ({"subscription_cancel": {"reasons": ["bored"]}}, "portal.subscription_cancel.reasons"),
        ({"subscription_cancel": {"reasons": ["other", "other"]}}, "portal.subscription_cancel.reasons"),
        ({"subscription_cancel": {"mode": "tomorrow"}}, "portal.subscription_cancel.mode"),
        ({"subscription_update": {"products": {"prod_a": []}}}, "portal.subscription_update.products"),
        ({"subscription_update": {"products": {"prod_a": ["sku_1"]}}}, "portal.subscription_update.products"),
        ({"subscription_update": {"products": {"nope": ["price_1"]}}}, "portal.subscription_update.products"),
        ({"subscription_update": {"proration_behavior": "later"}}, "portal.subscription_update.proration_behavior"),
        ({"default_return_url": "javascript:x"}, "portal.default_return_url"),
        ({"return_url_hosts": ["a.example"], "default_return_url": "https://b.example"}, "portal.default_return_url"),
        ({"session_minutes": 0}, "portal.session_minutes"),
        ({"surprise": True}, "portal.surprise"),
    ],
)
def test_portal_settings_name_the_field_they_refuse(portal, where):
    with pytest.raises(ValidationError) as refused:
        MerchantSettings.model_validate({"portal": portal})
    locations = {".".join(str(p) for p in e["loc"]) for e in refused.value.errors()}
    assert any(loc == where or loc.startswith(f"{where}.") for loc in locations), locations


# ---------------------------------------------------------------------------------- sessions
def test_a_session_link_opens_once_and_names_no_token_in_its_event(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    info, url = portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, "https://shop.example/back")
    assert url.startswith(f"{PUBLIC}/portal/session/")
    [event] = world.publisher.of_type("billing_portal.session.created")
    assert event.data["id"] == info.id and event.data["customer"] == sub.customer
    assert "url" not in event.data and url.rsplit("/", 1)[1] not in json.dumps(event.data)
    token = url.rsplit("/", 1)[1]

    opened = portal.open_session(world.billing, [SECRET], token)
    assert opened.link.customer == sub.customer and opened.link.return_url == "https://shop.example/back"
    link, customer = portal.session_of(world.billing, [SECRET], opened.cookie)
    assert customer.id == sub.customer and link.session == info.id
    with pytest.raises(portal.LinkUsed):
        portal.open_session(world.billing, [SECRET], token)


def test_a_session_link_expires_and_the_session_too(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    _, url = portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, None)
    world.clock.advance(minutes=61)  # link_minutes: 60
    with pytest.raises(LinkExpired):
        portal.open_session(world.billing, [SECRET], url.rsplit("/", 1)[1])
    _, url = portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, None)
    opened = portal.open_session(world.billing, [SECRET], url.rsplit("/", 1)[1])
    world.clock.advance(minutes=61)  # session_minutes: 60
    with pytest.raises(LinkExpired):
        portal.session_of(world.billing, [SECRET], opened.cookie)


def test_portal_tokens_open_nothing_else_and_other_links_open_no_session(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    _, url = portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, None)
    token = url.rsplit("/", 1)[1]
    now = world.clock.now()
    for purposes in (CARD_PURPOSES, INVOICE_PURPOSES):
        with pytest.raises(LinkRefused):
            verify_link(SECRET, token, now, purposes)
    with pytest.raises(LinkRefused):  # the session link is not the cookie
        portal.session_of(world.billing, [SECRET], token)
    card, _ = sign_link(SECRET, sub.customer, "card_update", now, timedelta(days=1))
    with pytest.raises(LinkRefused):
        portal.open_session(world.billing, [SECRET], card)
    with pytest.raises(LinkRefused):  # a tampered payload
        portal.open_session(world.billing, [SECRET], "x" + token[1:])
    with pytest.raises(LinkRefused):  # another merchant's key
        portal.open_session(world.billing, ["another-secret"], token)


def test_a_session_needs_a_known_customer_and_the_portal_switched_on(world: World, shop):
    with pytest.raises(NotFound) as missing:
        portal.create_session(world.billing, SECRET, PUBLIC, "cus_nobody", None)
    assert missing.value.param == "customer"
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    with pytest.raises(InvalidInput):
        portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, "http://shop.example")
    settings = world.store.get_settings()
    world.store.put_settings(settings.model_copy(update={"portal": PortalSettings(enabled=False)}))
    with pytest.raises(IllegalTransition):
        portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, None)


def test_csrf_tokens_belong_to_their_session():
    token = csrf_token(SECRET, "bps_a")
    assert csrf_matches([SECRET], "bps_a", token)
    assert csrf_matches(["new-key", SECRET], "bps_a", token)  # during a key rotation
    assert not csrf_matches([SECRET], "bps_b", token)
    assert not csrf_matches([SECRET], "bps_a", None) and not csrf_matches([SECRET], "bps_a", "")


# ---------------------------------------------------------------------------------- isolation
def test_another_customers_subscription_or_invoice_is_not_found(world: World, shop):
    mine = _subscriber(world, shop["basic"], "ada@example.com")
    theirs = _subscriber(world, shop["basic"], "bob@example.com")
    their_invoice = world.store.get_subscription(theirs.id).latest_invoice
    assert their_invoice is not None
    for attempt in (
        lambda: portal.subscription(world.billing, mine.customer, theirs.id),
        lambda: portal.invoice(world.billing, mine.customer, their_invoice),
        lambda: portal.change(world.billing, mine.customer, theirs.id, shop["premium"].id, 1, preview=True),
        lambda: portal.cancel(world.billing, mine.customer, theirs.id, None, None),
        lambda: portal.pause(world.billing, mine.customer, theirs.id),
        lambda: portal.accept_retention(world.billing, mine.customer, theirs.id),
        lambda: portal.subscription(world.billing, mine.customer, "sub_unknown"),
        lambda: portal.invoice(world.billing, mine.customer, "in_unknown"),
    ):
        with pytest.raises(NotFound):
            attempt()
    after = world.store.get_subscription(theirs.id)
    assert (after.cancel_at_period_end, after.pause_collection, after.discount) == (False, None, None)
    mine_invoice = world.store.get_subscription(mine.id).latest_invoice
    assert portal.invoice(world.billing, mine.customer, mine_invoice or "").customer == mine.customer


# ---------------------------------------------------------------------------------- plan changes
def test_a_change_among_the_offered_prices_is_previewed_then_made_as_the_api_makes_it(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    world.clock.advance(days=15)
    preview = portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=True)
    prorations = [line.amount for line in preview.upcoming.lines if line.proration]
    assert len(prorations) == 2 and prorations[0] < 0 < prorations[1]
    assert world.store.get_subscription(sub.id).items[0].price == shop["basic"].id  # nothing changed
    before = len(world.publisher.of_type("customer.subscription.updated"))

    changed = portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False)
    assert changed.subscription.items[0].price == shop["premium"].id
    assert [line["amount"] for line in changed.subscription.pending_lines] == prorations
    assert len(world.publisher.of_type("customer.subscription.updated")) == before + 1


def test_a_price_the_merchant_does_not_offer_is_refused(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    for price, quantity, param in (
        (shop["other"].id, 1, "price"),  # another product's
        ("price_unknown", 1, "price"),
        (shop["basic"].id, 1, "price"),  # no change at all
        (shop["basic"].id, 0, "quantity"),
        (shop["basic"].id, 101, "quantity"),
    ):
        with pytest.raises(InvalidInput) as refused:
            portal.change(world.billing, sub.customer, sub.id, price, quantity, preview=True)
        assert refused.value.param == param, (price, quantity)
    # quantity alone: allowed by default
    more = portal.change(world.billing, sub.customer, sub.id, shop["basic"].id, 3, preview=False)
    assert more.subscription.items[0].quantity == 3
    # a product the settings do not list cannot be changed here
    other = _subscriber(world, shop["other"], "bob@example.com")
    with pytest.raises(IllegalTransition):
        portal.change(world.billing, other.customer, other.id, shop["other"].id, 2, preview=True)


def _merchant_change_after_the_first_read(world: World, monkeypatch, sub_id: str, change) -> list[str]:
    """The store hands the portal its first read of the subscription, and then — before the portal
    can write — the merchant's API changes the subscription (the portal's copy is stale once)."""
    read = world.store.get_subscription
    landed: list[str] = []

    def stale_then_concurrent(subscription_id: str):
        found = read(subscription_id)
        if subscription_id == sub_id and not landed:
            landed.append("merchant")
            change()
        return found

    monkeypatch.setattr(world.store, "get_subscription", stale_then_concurrent)
    return landed


def test_a_merchant_change_landing_during_a_portal_change_is_decided_on_the_fresh_subscription(
    world: World, shop, monkeypatch
):
    """The customer asks for Basic × 3 (a quantity change, they think) while the merchant's API moves
    the subscription to Premium. The portal's write loses to the merchant's; it is computed again from
    the fresh subscription and checked again: the customer gets what they asked for — Basic × 3 —
    prorated from Premium, never Premium × 3 (the merchant's plan with the customer's quantity)."""
    from kassa.services import plan_changes

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    world.clock.advance(days=10)
    landed = _merchant_change_after_the_first_read(
        world, monkeypatch, sub.id, lambda: plan_changes.change_plan(world.billing, sub.id, price_id=shop["premium"].id)
    )
    changed = portal.change(world.billing, sub.customer, sub.id, shop["basic"].id, 3, preview=False)
    assert landed == ["merchant"]
    after = world.store.get_subscription(sub.id)
    assert (after.price, after.quantity) == (shop["basic"].id, 3)
    assert changed.subscription.version == after.version and changed.before is not None
    assert changed.before.price == shop["premium"].id  # decided on the read it was written under
    # the merchant's change and the customer's are both there, in order: Basic → Premium → Basic × 3
    updates = world.publisher.of_type("customer.subscription.updated")[-2:]
    assert [u.previous_attributes["price"] for u in updates] == [shop["basic"].id, shop["premium"].id]
    assert [(u.data["items"][0]["price"], u.data["items"][0]["quantity"]) for u in updates] == [
        (shop["premium"].id, 1),
        (shop["basic"].id, 3),
    ]
    credited = [line["price"] for line in after.pending_lines if line["amount"] < 0]
    assert shop["premium"].id in credited  # the unused Premium time, which the merchant's change charged


def test_a_portal_change_whose_intent_no_longer_fits_the_fresh_subscription_is_a_conflict(
    world: World, shop, monkeypatch
):
    """The merchant's API schedules the cancellation while the customer's change is being made: on
    the fresh subscription the change is not offered any more. Refused as a Conflict (409: review it
    again), not as the customer's bad input, and the merchant's change stands alone."""
    from kassa.domain.cancellation import CancellationDetails
    from kassa.domain.errors import Conflict
    from kassa.services import cancellation

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    _merchant_change_after_the_first_read(
        world,
        monkeypatch,
        sub.id,
        lambda: cancellation.cancel(world.billing, sub.id, at_period_end=True, details=CancellationDetails()),
    )
    with pytest.raises(Conflict) as refused:
        portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False)
    assert refused.value.param == "subscription"
    after = world.store.get_subscription(sub.id)
    assert after.cancel_at_period_end and (after.price, after.quantity) == (shop["basic"].id, 1)


def test_a_confirmed_preview_is_not_applied_to_a_plan_the_customer_did_not_see(world: World, shop, monkeypatch):
    """The confirm form carries the plan the preview was computed from (``seen``): when the merchant
    changed it meanwhile — before the request, or during it — the change is refused (Conflict) and
    the merchant's plan stays; on the plan seen it is made."""
    from kassa.domain.errors import Conflict
    from kassa.services import plan_changes

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    seen = (shop["basic"].id, 1)
    plan_changes.change_plan(world.billing, sub.id, quantity=2)  # the merchant, after the preview
    with pytest.raises(Conflict):
        portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False, seen=seen)
    assert (world.store.get_subscription(sub.id).price, world.store.get_subscription(sub.id).quantity) == (
        shop["basic"].id,
        2,
    )
    seen = (shop["basic"].id, 2)  # previewed again
    _merchant_change_after_the_first_read(
        world, monkeypatch, sub.id, lambda: plan_changes.change_plan(world.billing, sub.id, quantity=4)
    )
    with pytest.raises(Conflict):
        portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False, seen=seen)
    after = world.store.get_subscription(sub.id)
    assert (after.price, after.quantity) == (shop["basic"].id, 4)
    made = portal.change(
        world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False, seen=(shop["basic"].id, 4)
    )
    assert (made.subscription.price, made.subscription.quantity) == (shop["premium"].id, 1)


def test_an_unrelated_write_during_a_portal_change_is_kept_and_the_change_made(world: World, shop, monkeypatch):
    """A one-off item the merchant adds while the change is made: the portal's write loses, is
    computed again from the fresh read (the intent still fits) and made; the item is kept."""
    from kassa.services.invoicing import add_invoice_item

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    _merchant_change_after_the_first_read(
        world, monkeypatch, sub.id, lambda: add_invoice_item(world.billing, sub.id, amount=500, description="setup")
    )
    changed = portal.change(
        world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False, seen=(shop["basic"].id, 1)
    )
    assert changed.subscription.price == shop["premium"].id
    assert "setup" in [line["description"] for line in world.store.get_subscription(sub.id).pending_lines]


# ---------------------------------------------------------------------------------- cancellation
def test_cancel_at_the_period_end_with_a_reason_offered_by_the_merchant(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    with pytest.raises(InvalidInput) as refused:
        portal.cancel(world.billing, sub.customer, sub.id, "unused", None)  # not among this merchant's reasons
    assert refused.value.param == "reason"
    canceled = portal.cancel(world.billing, sub.customer, sub.id, "too_expensive", "  pricey  ")
    assert canceled.cancel_at_period_end and canceled.status.value == "active"
    assert canceled.cancellation_details == {
        "reason": "cancellation_requested",
        "feedback": "too_expensive",
        "comment": "pricey",
    }
    with pytest.raises(IllegalTransition):  # asked twice: nothing to cancel any more
        portal.cancel(world.billing, sub.customer, sub.id, None, None)
    assert not portal.undo_cancel(world.billing, sub.customer, sub.id).cancel_at_period_end


def test_the_retention_coupon_is_offered_once_and_accepted_once(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    with pytest.raises(IllegalTransition):  # never offered: cannot be taken
        portal.accept_retention(world.billing, sub.customer, sub.id)
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None  # not used up
    other = _subscriber(world, shop["basic"], "bob@example.com")
    offer = portal.retention_offer(world.billing, world.store.get_subscription(other.id))
    assert offer is not None and offer.id == "STAY25"
    kept = portal.accept_retention(world.billing, other.customer, other.id)
    assert kept.discount["coupon"]["id"] == "STAY25" and not kept.cancel_at_period_end
    with pytest.raises(IllegalTransition):
        portal.accept_retention(world.billing, other.customer, other.id)
    assert world.publisher.of_type("customer.discount.created") or world.publisher.of_type(
        "customer.subscription.updated"
    )


def test_the_retention_offer_is_used_up_by_an_answer_not_by_showing_it(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    for _ in range(2):  # the cancel page opened, and the customer went back: offered again next time
        assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None
    # declined by canceling after it was offered: not offered again, not even after "Don't cancel"
    portal.cancel(world.billing, sub.customer, sub.id, "too_expensive", None)
    portal.undo_cancel(world.billing, sub.customer, sub.id)
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is None
    with pytest.raises(IllegalTransition):
        portal.accept_retention(world.billing, sub.customer, sub.id)
    assert world.store.get_subscription(sub.id).discount is None
    # taken: used up
    other = _subscriber(world, shop["basic"], "bob@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(other.id)) is not None
    portal.accept_retention(world.billing, other.customer, other.id)
    assert portal.retention_offer(world.billing, world.store.get_subscription(other.id)) is None


def test_taking_the_offer_before_it_was_shown_does_not_use_it_up(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    with pytest.raises(IllegalTransition):
        portal.accept_retention(world.billing, sub.customer, sub.id)
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None


def test_two_concurrent_acceptances_apply_the_coupon_once(world: World, shop, monkeypatch):
    """The second request reads the subscription before the first applied the coupon (so it still
    looks offered and not taken): the once-only claim of the answer lets one of them through."""
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None
    read = world.store.get_subscription
    outcomes: list[str] = []

    def stale_then_concurrent(subscription_id: str):
        found = read(subscription_id)
        if not outcomes:  # the concurrent request runs between this read and this request's write
            outcomes.append("started")
            portal.accept_retention(world.billing, sub.customer, sub.id)
            outcomes.append("applied")
        return found

    monkeypatch.setattr(world.store, "get_subscription", stale_then_concurrent)
    with pytest.raises(IllegalTransition, match="answered already"):
        portal.accept_retention(world.billing, sub.customer, sub.id)
    assert outcomes == ["started", "applied"]
    monkeypatch.setattr(world.store, "get_subscription", read)
    assert read(sub.id).discount["coupon"]["id"] == "STAY25"
    assert len(world.publisher.of_type("customer.discount.created")) == 1


def test_an_accept_whose_coupon_cannot_be_applied_leaves_the_offer_standing(world: World, shop, monkeypatch):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None
    apply = coupons.apply_subscription_discount

    def failing(*args, **kwargs):
        raise IllegalTransition("the store refused the write", param="subscription")

    monkeypatch.setattr(coupons, "apply_subscription_discount", failing)
    with pytest.raises(IllegalTransition, match="refused the write"):
        portal.accept_retention(world.billing, sub.customer, sub.id)
    monkeypatch.setattr(coupons, "apply_subscription_discount", apply)
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None  # not used up
    assert portal.accept_retention(world.billing, sub.customer, sub.id).discount["coupon"]["id"] == "STAY25"


def test_a_cancel_from_the_offer_page_that_fails_leaves_the_offer_standing(world: World, shop, monkeypatch):
    from kassa.services import cancellation

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None
    cancel = cancellation.cancel

    def failing(*args, **kwargs):
        raise IllegalTransition("the store refused the write", param="subscription")

    monkeypatch.setattr(cancellation, "cancel", failing)
    with pytest.raises(IllegalTransition, match="refused the write"):
        portal.cancel(world.billing, sub.customer, sub.id, "too_expensive", None, offered=True)
    monkeypatch.setattr(cancellation, "cancel", cancel)
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None  # not used up


def test_an_accept_and_a_cancel_sent_at_once_are_exclusive(world: World, shop, monkeypatch):
    """Both sent from the cancel page that showed the offer: whichever claims the answer first wins,
    the other is refused — never the discount applied and the subscription canceled."""
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(sub.id)) is not None
    portal.accept_retention(world.billing, sub.customer, sub.id)
    with pytest.raises(IllegalTransition, match="answered already"):
        portal.cancel(world.billing, sub.customer, sub.id, "too_expensive", None, offered=True)
    kept = world.store.get_subscription(sub.id)
    assert kept.discount["coupon"]["id"] == "STAY25" and not kept.cancel_at_period_end
    # the other order: the accept reads the subscription, then the cancel runs; the cancel wins
    other = _subscriber(world, shop["basic"], "bob@example.com")
    assert portal.retention_offer(world.billing, world.store.get_subscription(other.id)) is not None
    read = world.store.get_subscription
    canceled: list[bool] = []

    def then_the_cancel(subscription_id: str):
        found = read(subscription_id)
        if not canceled:
            canceled.append(True)
            portal.cancel(world.billing, other.customer, other.id, "too_expensive", None, offered=True)
        return found

    monkeypatch.setattr(world.store, "get_subscription", then_the_cancel)
    with pytest.raises(IllegalTransition, match="answered already"):
        portal.accept_retention(world.billing, other.customer, other.id)
    monkeypatch.setattr(world.store, "get_subscription", read)
    assert read(other.id).discount is None and read(other.id).cancel_at_period_end
    # later, from a page without the offer (it was taken): canceling is still possible
    assert portal.cancel(world.billing, sub.customer, sub.id, "too_expensive", None).cancel_at_period_end


def test_pause_and_resume_when_the_merchant_allows_it(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    paused = portal.pause(world.billing, sub.customer, sub.id)
    assert paused.pause_collection["behavior"] == "void"
    with pytest.raises(IllegalTransition):
        portal.pause(world.billing, sub.customer, sub.id)
    assert portal.resume(world.billing, sub.customer, sub.id).pause_collection is None
    settings = world.store.get_settings()
    world.store.put_settings(settings.model_copy(update={"portal": PortalSettings()}))  # pausing off by default
    with pytest.raises(IllegalTransition):
        portal.pause(world.billing, sub.customer, sub.id)


# ---------------------------------------------------------------------------------- billing details
def test_billing_details_go_through_the_customer_update(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    with pytest.raises(InvalidInput) as refused:
        portal.update_details(world.billing, sub.customer, {"tax_id": "DE123", "address": Address(country="DE")})
    assert refused.value.param == "tax_id"
    updated = portal.update_details(
        world.billing, sub.customer, {"address": Address(country="DE", city="Berlin"), "tax_id": "DE136695976"}
    )
    assert (updated.address.country, updated.tax_id) == ("DE", "DE136695976")
    event = world.publisher.of_type("customer.updated")[-1]
    assert event.data["tax_id"] == "DE136695976" and event.previous_attributes["tax_id"] is None
    with pytest.raises(InvalidInput) as refused:
        portal.update_details(world.billing, sub.customer, {"email": "x@example.com"})
    assert refused.value.param == "email"


# ---------------------------------------------------------------------------------- sign-in by email
def test_sign_in_by_email_asks_once_per_window_and_says_nothing_about_unknown_emails(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    portal.request_login(world.billing, "nobody@example.com")
    portal.request_login(world.billing, "not an email")
    assert world.publisher.of_type(portal.LOGIN_REQUESTED) == []
    portal.request_login(world.billing, "ada@example.com")
    portal.request_login(world.billing, " ADA@example.com ")
    [request] = world.publisher.of_type(portal.LOGIN_REQUESTED)
    assert request.data["id"] == sub.customer
    world.clock.advance(minutes=16)
    portal.request_login(world.billing, "ada@example.com")
    assert len(world.publisher.of_type(portal.LOGIN_REQUESTED)) == 2

    outbox, mailer = FakeOutbox(), FakeMailer()
    dunning = Dunning(world.billing, outbox, mailer, sender="s@x.example", link_secret=SECRET, public_url=PUBLIC)
    envelope = {"detail-type": portal.LOGIN_REQUESTED, "detail": request.model_dump(mode="json")}
    assert dunning.handle_event(envelope) == "sent"
    assert dunning.handle_event(envelope) == "duplicate"  # redelivered: one email
    [(email, _)] = mailer.sent
    link = next(word for word in email.text.split() if "/portal/login/" in word)  # a page, then a POST
    opened = portal.open_session(world.billing, [SECRET], link.rsplit("/", 1)[1])
    assert opened.link.customer == sub.customer


# ---------------------------------------------------------------------------------- words
def test_every_language_has_every_portal_string_with_the_same_placeholders():
    assert portal_languages() == frozenset(SUPPORTED_LOCALES)
    assert_every_language_has_every_string(portal_strings)


def test_the_files_are_json_objects_of_strings():
    assert_word_files_are_json_objects_of_strings("portal_page")


@pytest.mark.parametrize("language", sorted(SUPPORTED_LOCALES))
def test_pages_render_in_every_language_with_the_merchants_name_escaped(language):
    settings = MerchantSettings(seller_name="<Bakkerij & Co>")
    words = Words(language)
    html = render_refused("link_used", words, settings, "/portal")
    assert f'lang="{language}"' in html and "&lt;Bakkerij &amp; Co&gt;" in html and "<Bakkerij" not in html
    assert words.t("refused.used_title") in html.replace("&#39;", "'")
    login = render("login", {**_view(words, settings), "sent": True, "title": words.t("login_title")})
    assert words.t("login_sent").replace("'", "&#39;") in login
    assert words.money(123456, "EUR") != words.money(123456, "JPY")


def _view(words: Words, settings: MerchantSettings) -> dict:
    from kassa.api.portal_page import base_view

    return base_view(words, settings, base="/portal")


def test_an_unknown_language_falls_back_to_english():
    assert Words("xx").language == "en" and Words(None).language == "en" and Words("nl-BE").language == "nl"


def test_the_configuration_names_a_product_price_or_coupon_that_does_not_fit(world: World, shop):
    product = shop["basic"].product
    good = world.store.get_settings().portal
    portal.check_configuration(world.billing, good)
    for products, coupon, param in (
        ({"prod_missing": [shop["basic"].id]}, None, "portal.subscription_update.products.prod_missing"),
        ({product: [shop["basic"].id, "price_missing"]}, None, f"portal.subscription_update.products.{product}[1]"),
        ({product: [shop["other"].id]}, None, f"portal.subscription_update.products.{product}[0]"),
        ({}, "NOPE", "portal.subscription_cancel.retention_coupon"),
    ):
        candidate = good.model_copy(
            update={
                "subscription_update": good.subscription_update.model_copy(update={"products": products}),
                "subscription_cancel": good.subscription_cancel.model_copy(update={"retention_coupon": coupon}),
            }
        )
        with pytest.raises(InvalidInput) as refused:
            portal.check_configuration(world.billing, candidate)
        assert refused.value.param == param


def test_the_next_invoice_is_taxed_from_the_details_the_customer_gave(world: World, shop):
    from kassa.services.invoicing import upcoming_invoice

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    portal.update_details(world.billing, sub.customer, {"address": Address(country="NL", city="Utrecht")})
    consumer = upcoming_invoice(world.billing, world.store.get_subscription(sub.id))
    assert consumer.tax == 210 and consumer.tax_rule != "eu_reverse_charge"  # Dutch VAT, 21%
    portal.update_details(
        world.billing, sub.customer, {"address": Address(country="DE", city="Berlin"), "tax_id": "DE136695976"}
    )
    business = upcoming_invoice(world.billing, world.store.get_subscription(sub.id))
    assert (business.tax, business.tax_rule) == (0, "eu_reverse_charge")


def test_the_account_page_offers_what_the_subscriptions_state_and_the_settings_allow(world: World, shop):
    from kassa.domain.portal import allowed_actions

    settings = world.store.get_settings().portal
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    now = world.clock.now()
    assert allowed_actions(settings, world.store.get_subscription(sub.id), now) == {
        "change": True,
        "cancel": True,
        "undo_cancel": False,
        "pause": True,
        "resume": False,
    }
    portal.cancel(world.billing, sub.customer, sub.id, None, None)
    assert allowed_actions(settings, world.store.get_subscription(sub.id), now) == {
        "change": False,  # a cancellation is pending
        "cancel": False,
        "undo_cancel": True,
        "pause": True,
        "resume": False,
    }
    other = _subscriber(world, shop["other"], "bob@example.com")  # a product the settings do not list
    assert allowed_actions(settings, world.store.get_subscription(other.id), now)["change"] is False


def test_a_merchant_may_cancel_immediately_and_invoice_changes_at_once(world: World, shop):
    settings = world.store.get_settings()
    configured = settings.portal.model_copy(
        update={
            "subscription_cancel": settings.portal.subscription_cancel.model_copy(update={"mode": "immediately"}),
            "subscription_update": settings.portal.subscription_update.model_copy(
                update={"proration_behavior": "always_invoice"}
            ),
        }
    )
    world.store.put_settings(settings.model_copy(update={"portal": configured}))
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    world.clock.advance(days=10)
    preview = portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=True)
    assert preview.invoice is not None and preview.invoice.amount_due > 0  # due now, shown before confirming
    assert world.store.get_subscription(sub.id).items[0].price == shop["basic"].id
    changed = portal.change(world.billing, sub.customer, sub.id, shop["premium"].id, 1, preview=False)
    assert changed.invoice is not None and changed.invoice.total == preview.invoice.total
    ended = portal.cancel(world.billing, sub.customer, sub.id, "other", None)
    assert ended.status.value == "canceled"
    assert world.publisher.of_type("customer.subscription.deleted")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"(sub|in)_[A-Za-z0-9]{0,24}", fullmatch=True))
def test_no_id_reaches_another_customers_subscription_or_invoice(wanted):
    from fakes import make_world

    world = make_world()
    _, price = world.catalog(unit_amount=1000)
    theirs = world.active_subscription(price, email="bob@example.com").subscription
    mine = world.active_subscription(price, email="ada@example.com").subscription
    for candidate in (wanted, theirs.id, world.store.get_subscription(theirs.id).latest_invoice or ""):
        if candidate.startswith("sub_") and candidate == mine.id:
            continue
        with pytest.raises(NotFound):
            portal.subscription(world.billing, mine.customer, candidate)
        with pytest.raises(NotFound):
            portal.invoice(world.billing, mine.customer, candidate)


def test_an_open_invoice_is_offered_for_payment_and_a_paid_one_as_a_pdf(world: World, shop):
    from kassa.api.portal_page import invoice_row
    from kassa.domain.invoice import InvoiceStatus

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    paid = world.store.get_invoice(world.store.get_subscription(sub.id).latest_invoice or "")
    words = Words("de")
    row = invoice_row(words, paid)
    assert (row["status_label"], row["pdf"], row["payable"]) == ("Bezahlt", True, False)
    assert row["amount"] == words.money(paid.total, paid.currency)
    unpaid = paid.model_copy(update={"status": InvoiceStatus.OPEN, "amount_due": paid.total, "amount_paid": 0})
    assert invoice_row(words, unpaid)["payable"] is True


def test_renewal_emails_link_to_the_portals_sign_in_while_it_is_on(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    customer = world.store.get_customer(sub.customer)
    context = {"plan_name": "Basic", "amount": 1210, "currency": "EUR", "renews_at": world.clock.now()}
    outbox, mailer = FakeOutbox(), FakeMailer()
    dunning = Dunning(world.billing, outbox, mailer, sender="s@x.example", link_secret=SECRET, public_url=PUBLIC)
    dunning.send("upcoming_renewal", customer, context, "k1")
    assert f"{PUBLIC}/portal/login" in mailer.sent[-1][0].text
    settings = world.store.get_settings()
    world.store.put_settings(settings.model_copy(update={"portal": PortalSettings(enabled=False)}))
    off = Dunning(world.billing, outbox, mailer, sender="s@x.example", link_secret=SECRET, public_url=PUBLIC)
    off.send("upcoming_renewal", customer, context, "k2")
    assert "/portal/login" not in mailer.sent[-1][0].text


# ---------------------------------------------------------------------------------- the routes, in process
class _Routes:
    """The api function's resolver on the world's store: requests as API Gateway hands them over,
    with the browser's cookie kept."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        from kassa.adapters import container

        self.world, self.cookie, self.settings_reads = world, "", 0
        reads = world.store.get_settings

        def counted():
            self.settings_reads += 1
            return reads()

        monkeypatch.setattr(world.store, "get_settings", counted)
        monkeypatch.setattr(container, "billing", lambda with_gateway=True: world.billing)
        monkeypatch.setattr(container, "store", lambda: world.store)
        monkeypatch.setattr(container, "link_keys", lambda: (SECRET,))
        monkeypatch.setattr(container, "now", world.billing.now)
        monkeypatch.setenv("KASSA_PUBLIC_URL", PUBLIC)

    def __call__(
        self, method: str, path: str, form: dict | None = None, cookie: str | None = None, accept: str | None = None
    ) -> dict:
        from urllib.parse import urlencode, urlsplit

        from kassa.api.app import app

        parts = urlsplit(path)
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if pair) or None
        headers = {"Host": "billing.shop.example", "Accept-Language": "en"}
        if accept is not None:
            headers["Accept"] = accept
        jar = self.cookie if cookie is None else cookie
        if jar:
            headers["Cookie"] = f"kassa_portal={jar}"
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        event = {
            "resource": "/portal/{proxy+}",
            "path": parts.path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
            "requestContext": {"stage": "$default", "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"}},
            "body": urlencode(form) if form is not None else None,
            "isBase64Encoded": False,
        }
        self.settings_reads = 0
        answer = app.resolve(event, None)
        for set_cookie in answer.get("multiValueHeaders", {}).get("Set-Cookie", []):
            name, _, rest = set_cookie.partition("=")
            if name == "kassa_portal":
                self.cookie = rest.split(";", 1)[0]
        return answer

    def csrf(self, html: str) -> str:
        import re

        found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert found is not None
        return found.group(1)

    def sign_in(self, customer: str) -> dict:
        _, url = portal.create_session(self.world.billing, SECRET, PUBLIC, customer, "https://shop.example/back")
        opened = self("GET", url.removeprefix(PUBLIC))
        assert opened["statusCode"] == 303 and self.cookie
        return self("GET", "/portal/account")


@pytest.fixture
def routes(world: World, shop, monkeypatch: pytest.MonkeyPatch) -> _Routes:
    return _Routes(world, monkeypatch)


def test_signing_out_ends_the_session_on_the_server(world: World, shop, routes):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    account = routes.sign_in(sub.customer)
    assert account["statusCode"] == 200
    old = routes.cookie
    refused = routes("POST", "/portal/account/logout", {})  # no CSRF token: still signed in
    assert refused["statusCode"] == 403
    assert routes("GET", "/portal/account", cookie=old)["statusCode"] == 200
    out = routes("POST", "/portal/account/logout", {"csrf": routes.csrf(account["body"])})
    assert out["statusCode"] == 303 and out["multiValueHeaders"]["Location"][0].endswith("/portal/login")
    assert routes.cookie == ""  # the browser's copy deleted
    replayed = routes("GET", "/portal/account", cookie=old)  # and the value kept opens nothing
    assert replayed["statusCode"] == 401
    assert Words("en").t("refused.signed_out_title") in replayed["body"].replace("&#39;", "'")
    answer = routes("POST", f"/portal/account/subscriptions/{sub.id}/cancel", {"csrf": "x"}, cookie=old)
    assert answer["statusCode"] == 401 and not world.store.get_subscription(sub.id).cancel_at_period_end


def test_a_signed_out_session_is_refused_by_the_service(world: World, shop):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    _, url = portal.create_session(world.billing, SECRET, PUBLIC, sub.customer, None)
    opened = portal.open_session(world.billing, [SECRET], url.rsplit("/", 1)[1])
    portal.session_of(world.billing, [SECRET], opened.cookie)
    portal.sign_out(world.billing, [SECRET], opened.cookie)
    portal.sign_out(world.billing, [SECRET], opened.cookie)  # twice: nothing more
    portal.sign_out(world.billing, [SECRET], "forged.token")  # no session: nothing
    with pytest.raises(LinkRefused):
        portal.session_of(world.billing, [SECRET], opened.cookie)


def test_each_portal_request_reads_the_settings_once(world: World, shop, routes):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    account = routes.sign_in(sub.customer)
    assert account["statusCode"] == 200 and routes.settings_reads == 1
    csrf = routes.csrf(account["body"])
    premium = shop["premium"].id
    for method, path, form in (
        ("GET", "/portal/account", None),
        ("GET", f"/portal/account/subscriptions/{sub.id}/change", None),
        ("GET", f"/portal/account/subscriptions/{sub.id}/preview?price={premium}&quantity=1", None),
        ("POST", f"/portal/account/subscriptions/{sub.id}/change", {"csrf": csrf, "price": premium, "quantity": "1"}),
        ("GET", f"/portal/account/subscriptions/{sub.id}/cancel", None),
        ("POST", f"/portal/account/subscriptions/{sub.id}/cancel", {"csrf": csrf, "reason": "other"}),
        ("POST", f"/portal/account/subscriptions/{sub.id}/renew", {"csrf": csrf}),
        ("POST", f"/portal/account/subscriptions/{sub.id}/pause", {"csrf": csrf}),
        ("POST", f"/portal/account/subscriptions/{sub.id}/resume", {"csrf": csrf}),
        ("GET", "/portal/account/details", None),
        ("POST", "/portal/account/details", {"csrf": csrf, "name": "Ada L"}),
        ("GET", "/portal/account/card", None),
        ("GET", "/portal/account/invoices/in_nothere", None),
        ("GET", "/portal/account/subscriptions/sub_nothere/cancel", None),
        ("GET", "/portal/login", None),
        ("POST", "/portal/login", {"email": "ada@example.com"}),
    ):
        answer = routes(method, path, form)
        assert answer["statusCode"] in (200, 303, 404), (path, answer["statusCode"])
        assert "error=action" not in str(answer.get("multiValueHeaders")), path  # each action was made
        assert routes.settings_reads == 1, (method, path, routes.settings_reads)
    assert world.store.get_subscription(sub.id).price == premium


@pytest.mark.parametrize("language", ["de", "pl"])
def test_the_card_page_reached_from_the_portal_speaks_the_customers_language(world: World, shop, routes, language):
    import base64
    import hashlib
    import re

    from kassa.api.card_page import card_strings
    from kassa.services import customers

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    customers.update_customer(world.billing, sub.customer, {"preferred_locale": language})
    routes.sign_in(sub.customer)
    onward = routes("GET", "/portal/account/card")
    assert onward["statusCode"] == 303
    page = routes("GET", onward["multiValueHeaders"]["Location"][0].removeprefix(PUBLIC))
    html = page["body"]
    assert page["statusCode"] == 200 and f'<html lang="{language}">' in html
    assert card_strings(language)["title"] in html and "Update your card" not in html
    # the served page's inline script is the one its CSP allows
    [script] = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page["multiValueHeaders"]["Content-Security-Policy"][0]
    # a link that opens nothing: a 403 page in the browser's language, naming no customer
    refused = routes("GET", "/portal/card?token=forged.token")
    assert refused["statusCode"] == 403 and card_strings("en")["refused.link_invalid"] in refused["body"]


def test_the_cancel_sent_from_the_offer_page_loses_to_an_accept_sent_with_it(world: World, shop, routes):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    page = routes("GET", f"/portal/account/subscriptions/{sub.id}/cancel")["body"]
    assert 'name="offered" value="1"' in page  # the cancel form says it was sent with the offer shown
    taken = routes("POST", f"/portal/account/subscriptions/{sub.id}/retention", {"csrf": csrf})
    assert "notice=retained" in str(taken["multiValueHeaders"])
    lost = routes("POST", f"/portal/account/subscriptions/{sub.id}/cancel", {"csrf": csrf, "offered": "1"})
    assert "error=action" in str(lost["multiValueHeaders"])
    kept = world.store.get_subscription(sub.id)
    assert kept.discount["coupon"]["id"] == "STAY25" and not kept.cancel_at_period_end
    again = routes("GET", f"/portal/account/subscriptions/{sub.id}/cancel")["body"]
    assert 'name="offered"' not in again  # answered: the page opened again offers nothing, and cancels


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what a browser's form post accepts


def test_a_quantity_of_unicode_digits_is_refused_naming_the_field_not_a_500(world: World, shop, routes):
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    for quantity in ("²", "١٢", " "):
        form = {"csrf": csrf, "price": shop["premium"].id, "quantity": quantity}
        answer = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept=BROWSER)
        assert answer["statusCode"] == 400 and 'data-param="quantity"' in answer["body"], quantity
    assert world.store.get_subscription(sub.id).price == shop["basic"].id


@pytest.mark.parametrize(
    ("price", "quantity", "param"),
    [
        ("premium", "abc", "quantity"),  # not a number
        ("premium", "0", "quantity"),  # out of range
        ("premium", "101", "quantity"),  # over settings.portal.subscription_update.max_quantity
        ("price_unknown", "1", "price"),
        ("other", "1", "price"),  # another product's price
        ("basic", "1", "price"),  # no change at all
    ],
)
def test_a_bad_field_on_the_change_post_is_a_400_naming_it_and_changes_nothing(
    world: World, shop, routes, price, quantity, param
):
    """A browser's form post gets the change form again (400) with the field marked and said in the
    customer's words; a script asking for JSON gets the API's error naming the field. Nothing is written
    either way, and no event is published."""
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    price_id = shop[price].id if price in shop else price
    before = world.store.get_subscription(sub.id)
    events = len(world.publisher.events)
    form = {"csrf": csrf, "price": price_id, "quantity": quantity}
    page = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept=BROWSER)
    assert page["statusCode"] == 400, page.get("multiValueHeaders")
    assert page["multiValueHeaders"]["Content-Type"][0].startswith("text/html")
    assert f'data-param="{param}"' in page["body"] and f'id="{param}-problem"' in page["body"]
    assert 'id="change-form"' in page["body"]  # the form again, to correct it
    answer = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept="application/json")
    assert answer["statusCode"] == 400
    error = json.loads(answer["body"])["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert world.store.get_subscription(sub.id) == before
    assert len(world.publisher.events) == events
    # the preview answers the same: a 400 naming the field
    preview = routes("GET", f"/portal/account/subscriptions/{sub.id}/preview?price={price_id}&quantity={quantity}")
    assert preview["statusCode"] == 400 and f'data-param="{param}"' in preview["body"]
    preview = routes(
        "GET",
        f"/portal/account/subscriptions/{sub.id}/preview?price={price_id}&quantity={quantity}",
        accept="application/json",
    )
    assert preview["statusCode"] == 400 and json.loads(preview["body"])["error"]["param"] == param


def test_the_change_form_posted_as_json_is_answered_as_json(world: World, shop, routes):
    """A script may post the change as a JSON object (with the session's CSRF token, as every POST)."""
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    from kassa.api.app import app

    def post(body: dict) -> dict:
        event = {
            "resource": "/portal/{proxy+}",
            "path": f"/portal/account/subscriptions/{sub.id}/change",
            "httpMethod": "POST",
            "headers": {
                "Host": "billing.shop.example",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Cookie": f"kassa_portal={routes.cookie}",
            },
            "multiValueHeaders": {},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "requestContext": {"stage": "$default", "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"}},
            "body": json.dumps(body),
            "isBase64Encoded": False,
        }
        return app.resolve(event, None)

    refused = post({"csrf": csrf, "price": shop["premium"].id, "quantity": 2.5})
    assert refused["statusCode"] == 400 and json.loads(refused["body"])["error"]["param"] == "quantity"
    assert world.store.get_subscription(sub.id).price == shop["basic"].id
    made = post({"csrf": csrf, "price": shop["premium"].id, "quantity": 2})
    assert made["statusCode"] == 303
    assert (world.store.get_subscription(sub.id).price, world.store.get_subscription(sub.id).quantity) == (
        shop["premium"].id,
        2,
    )


def test_a_new_country_in_the_billing_details_drops_the_old_countrys_state(world: World, shop, routes):
    """A US customer in Oregon moves to Germany: "OR" is no German state, and taxing the next invoice
    by it would be wrong; the form has no state field, so the one on file stays only for the US."""
    sub = _subscriber(world, shop["basic"], "ada@example.com")
    customer = world.store.get_customer(sub.customer)
    world.store.save_customer(customer.model_copy(update={"address": Address(country="US", state="OR")}))
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    kept = routes("POST", "/portal/account/details", {"csrf": csrf, "country": "US", "city": "Portland"})
    assert kept["statusCode"] in (200, 303), kept["body"]
    assert world.store.get_customer(sub.customer).address.state == "OR"
    moved = routes("POST", "/portal/account/details", {"csrf": csrf, "country": "DE", "city": "Berlin"})
    assert moved["statusCode"] in (200, 303), moved["body"]
    address = world.store.get_customer(sub.customer).address
    assert (address.country, address.state, address.city) == ("DE", None, "Berlin")


def test_a_preview_confirmed_after_the_merchant_changed_the_plan_is_a_409_to_review_again(world: World, shop, routes):
    """The confirm form carries the plan its preview was computed from; the merchant's API changes
    the quantity before the customer confirms: the portal answers 409 with the change form and says
    the subscription changed (JSON: the API's conflict), and nothing of the customer's is written."""
    import re

    from kassa.services import plan_changes

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    routes.sign_in(sub.customer)
    preview = routes("GET", f"/portal/account/subscriptions/{sub.id}/preview?price={shop['premium'].id}&quantity=1")
    assert preview["statusCode"] == 200
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', preview["body"]))
    assert (form["from_price"], form["from_quantity"]) == (shop["basic"].id, "1")
    plan_changes.change_plan(world.billing, sub.id, quantity=2)  # the merchant, meanwhile
    after_merchant = world.store.get_subscription(sub.id)
    page = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept=BROWSER)
    assert page["statusCode"] == 409 and 'id="change-form"' in page["body"]
    assert Words("en").t("error.changed") in page["body"]
    answer = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept="application/json")
    assert answer["statusCode"] == 409 and json.loads(answer["body"])["error"]["code"] == "conflict"
    assert world.store.get_subscription(sub.id) == after_merchant
    # previewed again, on the merchant's plan: confirmed and made
    again = routes("GET", f"/portal/account/subscriptions/{sub.id}/preview?price={shop['premium'].id}&quantity=2")
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', again["body"]))
    made = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept=BROWSER)
    assert made["statusCode"] == 303 and "notice=changed" in str(made["multiValueHeaders"])
    assert world.store.get_subscription(sub.id).price == shop["premium"].id


@pytest.mark.parametrize("after_read", [1, 2])
def test_a_billing_details_save_keeps_what_the_merchant_changed_meanwhile(world: World, shop, routes, after_read):
    """While the customer's form is saved, the merchant's API changes the customer's email and the
    address's state (the form has neither). The merchant's change lands after the request's first read
    of the customer (its session) or after the update's own read (its write then loses, and is made
    again from a fresh read): either way only the form's fields are written — the merchant's email and
    state stay, the customer's name and city are saved."""
    from kassa.services import customers

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    customer = world.store.get_customer(sub.customer)
    world.store.save_customer(customer.model_copy(update={"address": Address(country="US", state="OR")}))
    csrf = routes.csrf(routes.sign_in(sub.customer)["body"])
    read = world.store.get_customer
    reads: list[int] = []

    def merchant_after(customer_id: str):
        found = read(customer_id)
        reads.append(len(reads) + 1)
        if customer_id == sub.customer and len(reads) == after_read:
            customers.update_customer(
                world.billing,
                customer_id,
                {"email": "ada.l@example.com", "address": Address(country="US", state="WA", city="Spokane")},
            )
        return found

    routes.world.store.get_customer = merchant_after  # type: ignore[method-assign]
    try:
        form = {"csrf": csrf, "name": "Ada L", "country": "US", "city": "Portland", "line1": "1 Main St"}
        saved = routes("POST", "/portal/account/details", form)
    finally:
        routes.world.store.get_customer = read  # type: ignore[method-assign]
    assert saved["statusCode"] == 303 and "notice=details_saved" in str(saved["multiValueHeaders"])
    after = world.store.get_customer(sub.customer)
    assert after.email == "ada.l@example.com" and after.address.state == "WA"  # the merchant's
    assert (after.name, after.address.city, after.address.line1) == ("Ada L", "Portland", "1 Main St")  # the form's
    assert world.store.find_customer_by_email("ada.l@example.com") is not None


def test_a_change_confirmed_after_the_merchant_scheduled_the_cancellation_says_so_on_the_account(
    world: World, shop, routes
):
    """The subscription cannot be changed here any more (a cancellation is pending): no change form to
    show again, so the browser goes to the account, which says the subscription changed; JSON: 409."""
    import re

    from kassa.domain.cancellation import CancellationDetails
    from kassa.services import cancellation

    sub = _subscriber(world, shop["basic"], "ada@example.com")
    routes.sign_in(sub.customer)
    preview = routes("GET", f"/portal/account/subscriptions/{sub.id}/preview?price={shop['premium'].id}&quantity=1")
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', preview["body"]))
    cancellation.cancel(world.billing, sub.id, at_period_end=True, details=CancellationDetails())  # the merchant
    answer = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept="application/json")
    assert answer["statusCode"] == 409 and json.loads(answer["body"])["error"]["param"] == "subscription"
    page = routes("POST", f"/portal/account/subscriptions/{sub.id}/change", form, accept=BROWSER)
    location = page["multiValueHeaders"]["Location"][0]
    assert page["statusCode"] == 303 and location.endswith("/portal/account?error=changed")
    account = routes("GET", location.removeprefix(PUBLIC))
    assert Words("en").t("error.changed") in account["body"]
    after = world.store.get_subscription(sub.id)
    assert after.cancel_at_period_end and after.price == shop["basic"].id


def test_a_change_posted_to_another_customers_subscription_is_a_404_page_or_json(world: World, shop, routes):
    mine = _subscriber(world, shop["basic"], "ada@example.com")
    theirs = _subscriber(world, shop["basic"], "bob@example.com")
    csrf = routes.csrf(routes.sign_in(mine.customer)["body"])
    for target in (theirs.id, "sub_doesnotexist", "nonsense"):
        form = {"csrf": csrf, "price": shop["premium"].id, "quantity": "1"}
        page = routes("POST", f"/portal/account/subscriptions/{target}/change", form, accept=BROWSER)
        assert page["statusCode"] == 404 and "text/html" in page["multiValueHeaders"]["Content-Type"][0], target
        answer = routes("POST", f"/portal/account/subscriptions/{target}/change", form, accept="application/json")
        assert answer["statusCode"] == 404
        assert json.loads(answer["body"])["error"] == {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": "no such subscription",
            "param": "subscription",
        }
    assert world.store.get_subscription(theirs.id).price == shop["basic"].id
